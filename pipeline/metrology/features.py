"""ISO 25178-2 feature parameters: density of peaks Spd, with hills and Wolf pruning.

Hills (ISO 25178-2 "motifs" of the hill kind). Every valid point drains upward to its
highest strictly higher 8-neighbour (steepest ascent, the rainfall form of the watershed of
-z); a flat shelf drains through itself to a point beside it, at the same height, that has
a higher neighbour. A regional maximum over the 8-neighbourhood (a point or plateau with
only lower neighbours) is a peak, and its hill is every point that drains to it. The path
from a point up to its peak never descends, so two touching hills connect at their
*saddle*: over all pairs of 8-neighbouring points, one in each hill, the largest of
min(z_p, z_q); this is also the pass height between the two peaks over any path.

Wolf pruning (ISO 25178-2 / -3). The hill with the smallest local peak height (its peak
minus its highest saddle, where descending from the peak first meets a neighbour) is
merged into the neighbour across that saddle; the merged hill keeps the higher peak and,
with every other neighbour, the higher saddle; this repeats until every local peak height
is at least the pruning height (by default 5 % of Sz).

Implementation of the pruning: the saddles are taken from the highest down with a
union-find; two hills meeting at saddle s always join and the one with the lower peak ends
with local height (its peak - s). A peak survives iff that height is >= the pruning height
(the highest peak of each connected valid region always survives). This change tree
("merge tree") yields the same surviving peaks as the one-at-a-time merge; for surfaces
without two peaks of exactly equal height it is also what morphological dynamics
(scikit-image ``h_maxima``) give, which the tests use as an independent check. Two peaks of
exactly equal height joined by a shallow saddle count as one here, as Wolf pruning merges
them; ``h_maxima`` keeps both.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from pipeline.errors import MeasurementError
from pipeline.metrology.spatial import check_height_map

__all__ = ["EDGE_POLICY", "spd"]

logger = logging.getLogger(__name__)

EDGE_POLICY = (
    "a peak is counted only if no point of its peak plateau lies on the border of the "
    "field or next to (8-neighbourhood) an invalid point, where it could be the flank of "
    "a hill that continues outside the data; the density is over the area of the points "
    "that meet the same condition (valid, off the border, no invalid neighbour), so that "
    "counted peaks and area come from the same window"
)

# Neighbour offsets (drow, dcol) covering each 8-neighbour pair once.
_PAIRS = ((0, 1), (1, 0), (1, 1), (1, -1))
# The eight neighbours, in the order that breaks ties of steepest ascent.
_OFFSETS = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0))
# Rows per block of the passes over the whole map: the block's temporaries stay in cache.
_BLOCK_ROWS = 64


def _pair_views(a: np.ndarray, dr: int, dc: int, rows: slice | None = None):
    """Views (first, second) of ``a`` for the point pairs at offset (dr, dc) whose first
    point lies in `rows` (default: every row that has a partner)."""
    m, n = a.shape
    if rows is None:
        rows = slice(0, m - dr)
    rows_p, rows_q = rows, slice(rows.start + dr, rows.stop + dr)
    if dc >= 0:
        cols_p, cols_q = slice(0, n - dc), slice(dc, n)
    else:
        cols_p, cols_q = slice(-dc, n), slice(0, n + dc)
    return a[rows_p, cols_p], a[rows_q, cols_q]


def _saddles(hills: np.ndarray, z: np.ndarray, n_hills: int):
    """Touching hill pairs (lo, hi) and the saddle height where each pair meets.

    Row block by row block (`_BLOCK_ROWS`), so the temporaries stay in cache; a hill label
    of 0 (an invalid point) is looked for only when there is one.
    """
    m = hills.shape[0]
    any_invalid = not hills.all()
    key_parts, h_parts = [], []
    for r0 in range(0, m, _BLOCK_ROWS):
        r1 = min(r0 + _BLOCK_ROWS, m)
        for dr, dc in _PAIRS:
            if r0 + dr >= m:
                continue
            rows = slice(r0, min(r1, m - dr))
            a, b = _pair_views(hills, dr, dc, rows)
            za, zb = _pair_views(z, dr, dc, rows)
            touch = a != b
            if any_invalid:
                touch &= a > 0
                touch &= b > 0
            if not touch.any():
                continue
            la, lb = a[touch].astype(np.int64), b[touch].astype(np.int64)
            key = np.minimum(la, lb) * (n_hills + 1) + np.maximum(la, lb)
            h = np.minimum(za[touch], zb[touch])
            # runs of one pair along a boundary: keep the highest of each run
            starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
            key_parts.append(key[starts])
            h_parts.append(np.maximum.reduceat(h, starts))
    if not key_parts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0)
    key = np.concatenate(key_parts)
    h = np.concatenate(h_parts)
    order = np.argsort(key, kind="stable")
    key, h = key[order], h[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    saddle = np.maximum.reduceat(h, starts)
    key = key[starts]
    return key // (n_hills + 1), key % (n_hills + 1), saddle


def _surviving_peaks(peak_z: np.ndarray, lo, hi, saddle, threshold: float) -> np.ndarray:
    """Hill ids whose peak survives Wolf pruning at ``threshold`` (see module docstring)."""
    n_hills = peak_z.size - 1
    order = np.argsort(-saddle, kind="stable")
    parent = list(range(n_hills + 1))
    peak = peak_z.tolist()
    survivors = []
    for u, v, s in zip(lo[order].tolist(), hi[order].tolist(), saddle[order].tolist()):
        while parent[u] != u:  # find with path halving
            parent[u] = parent[parent[u]]
            u = parent[u]
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        if u == v:
            continue
        # u becomes the root with the higher peak (ties: the smaller id, deterministic).
        if peak[v] > peak[u] or (peak[v] == peak[u] and v < u):
            u, v = v, u
        if peak[v] - s >= threshold:
            survivors.append(v)
        parent[v] = u
    roots = [i for i in range(1, n_hills + 1) if parent[i] == i]
    return np.asarray(survivors + roots, dtype=np.int64)


def _steepest_neighbour(pad: np.ndarray) -> np.ndarray:
    """For each point of the padded map ``pad`` (a -inf border, -inf at invalid points): the
    index into `_OFFSETS` of its highest strictly higher 8-neighbour (the first in that order
    on a tie), or -1 when none is higher. Row block by row block."""
    m, n = pad.shape[0] - 2, pad.shape[1] - 2
    arg = np.full((m, n), -1, dtype=np.int8)
    best = np.empty((_BLOCK_ROWS, n))
    higher = np.empty((_BLOCK_ROWS, n), dtype=bool)
    for r0 in range(0, m, _BLOCK_ROWS):
        r1 = min(r0 + _BLOCK_ROWS, m)
        b, h, a = best[:r1 - r0], higher[:r1 - r0], arg[r0:r1]
        np.copyto(b, pad[1 + r0:1 + r1, 1:n + 1])
        for k, (dr, dc) in enumerate(_OFFSETS):
            nb = pad[1 + dr + r0:1 + dr + r1, 1 + dc:n + 1 + dc]
            np.greater(nb, b, out=h)
            np.maximum(b, nb, out=b)
            np.copyto(a, k, where=h)
    return arg


def _hills(z: np.ndarray, valid: np.ndarray):
    """Hill segmentation by steepest ascent.

    See the module docstring. ``z`` may hold NaN where ``valid`` is False; invalid points
    belong to no hill and never count as a neighbour. Point indices are int32 (a map of up
    to 2**31 - 1 points), which halves the memory the pointer jumping walks through.

    Returns
    -------
    hills : (M, N) int32 ndarray
        Hill id per point, 1..n_hills; 0 for invalid points.
    peak_plateau : (M, N) int32 ndarray
        Hill id on the points of each peak plateau, 0 elsewhere.
    n_hills : int
    """
    from scipy import ndimage

    m, n = z.shape
    if m * n >= 2**31:
        raise MeasurementError(None, f"Spd: a {m} x {n} map has more points than Spd indexes "
                                     "(2**31 - 1); measure it in parts")
    pad = np.full((m + 2, n + 2), -np.inf)
    work = pad[1:-1, 1:-1]
    np.copyto(work, z, where=valid)
    arg = _steepest_neighbour(pad)
    arg[~valid] = -1
    flat_step = np.array([dr * n + dc for dr, dc in _OFFSETS] + [0], dtype=np.int32)
    up = np.arange(m * n, dtype=np.int32)
    up += flat_step[arg.ravel()]  # arg == -1 picks the trailing 0: points to itself

    # Points with no strictly higher neighbour: connected sets of them are flat plateaus.
    flat = arg == -1
    flat &= valid
    del arg
    comp, n_comp = ndimage.label(flat, structure=np.ones((3, 3), dtype=bool))
    rows, cols = np.nonzero(flat)
    labels_flat = comp[rows, cols]
    idx = (rows * n + cols).astype(np.int32)
    z_flat = work[rows, cols]
    flat_pad = np.zeros((m + 2, n + 2), dtype=bool)
    flat_pad[1:-1, 1:-1] = flat
    del flat
    exit_to = np.full(n_comp + 1, -1, dtype=np.int32)
    for dr, dc in _OFFSETS:
        r2, c2 = rows + (1 + dr), cols + (1 + dc)
        way_out = ~flat_pad[r2, c2] & (pad[r2, c2] == z_flat)
        exit_to[labels_flat[way_out]] = idx[way_out] + (dr * n + dc)
    del flat_pad, pad, work
    is_peak = exit_to < 0
    is_peak[0] = False
    rep = np.full(n_comp + 1, -1, dtype=np.int32)
    rep[labels_flat] = idx  # any point of the plateau represents it
    up[idx] = np.where(is_peak[labels_flat], rep[labels_flat], exit_to[labels_flat])

    # Pointer jumping: every point ends at its peak's representative. (Fancy indexing on
    # int32 walks half the memory of np.take, which converts the indices to intp.)
    while True:
        nxt = up[up]
        if np.array_equal(nxt, up):
            break
        up = nxt
    del nxt
    hill_of_comp = np.zeros(n_comp + 1, dtype=np.int32)
    n_hills = int(np.count_nonzero(is_peak))
    hill_of_comp[is_peak] = np.arange(1, n_hills + 1, dtype=np.int32)
    hill_at = np.zeros(m * n, dtype=np.int32)
    hill_at[rep[is_peak]] = hill_of_comp[is_peak]
    hills = hill_at[up].reshape(m, n)
    del up, hill_at
    peak_plateau = hill_of_comp[comp]
    return hills, peak_plateau, n_hills


def spd(z, dx_um: float, dy_um: float, *, pruning_pct_sz: float = 5.0) -> dict:
    """Density of peaks Spd (ISO 25178-2), peaks per mm², after Wolf pruning.

    Parameters
    ----------
    z : (M, N) ndarray
        Heights in micrometres, levelled and filtered; NaN where unmeasured.
    dx_um, dy_um : float
        Pixel size along x (a row) and along y (a column), micrometres.
    pruning_pct_sz : float, optional
        Pruning height as a percentage of Sz (max - min of the valid points); ISO 25178-3
        default 5 %. Hills whose local peak height is below it are merged (module
        docstring); 0 keeps every regional maximum.

    Returns
    -------
    dict
        ``Spd_per_mm2``: counted peaks / window area (mm²). ``n_peaks``: peaks counted.
        ``pruning_height_um``: the pruning height. ``edge_policy``: :data:`EDGE_POLICY`.
        ``area_mm2``: the window area. ``n_hills``: hills before pruning.
        ``n_excluded_edge``: surviving peaks left out by the edge policy.

    Raises
    ------
    ValueError
        ``pruning_pct_sz`` is negative or not finite.
    MeasurementError
        No valid point lies off the border with all its neighbours valid.
    """
    z = check_height_map(z, dx_um, dy_um)
    if not (math.isfinite(pruning_pct_sz) and pruning_pct_sz >= 0):
        raise ValueError(f"pruning_pct_sz must be a finite percentage >= 0; "
                         f"got {pruning_pct_sz!r}")
    valid = np.isfinite(z)
    # The window: valid points off the border whose eight neighbours are all valid.
    m, n = z.shape
    window = np.zeros_like(valid)
    inner = valid[1:-1, 1:-1].copy()
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            inner &= valid[1 + dr:m - 1 + dr, 1 + dc:n - 1 + dc]
    window[1:-1, 1:-1] = inner
    n_window = int(np.count_nonzero(window))
    if n_window == 0:
        raise MeasurementError(None, f"Spd: the {m} x {n} height map has no valid point off "
                                     "the border with all its neighbours valid")
    zmin = float(np.min(z, where=valid, initial=np.inf))
    zmax = float(np.max(z, where=valid, initial=-np.inf))
    threshold = pruning_pct_sz / 100.0 * (zmax - zmin)

    hills, peak_plateau, n_hills = _hills(z, valid)
    on_plateau = peak_plateau > 0
    peak_z = np.full(n_hills + 1, -np.inf)
    peak_z[peak_plateau[on_plateau]] = z[on_plateau]
    # A peak sits at the edge if any point of its plateau is outside the window.
    at_edge = np.zeros(n_hills + 1, dtype=bool)
    at_edge[peak_plateau[on_plateau & ~window]] = True

    lo, hi, saddle = _saddles(hills, z, n_hills)
    survivors = _surviving_peaks(peak_z, lo, hi, saddle, threshold)
    counted = survivors[~at_edge[survivors]]
    area_mm2 = n_window * float(dx_um) * float(dy_um) * 1e-6
    n_peaks = int(counted.size)
    logger.debug("Spd: %d hills, %d survive pruning at %.4g um, %d counted over %.4g mm2",
                 n_hills, survivors.size, threshold, n_peaks, area_mm2)
    return {
        "Spd_per_mm2": n_peaks / area_mm2,
        "n_peaks": n_peaks,
        "pruning_height_um": threshold,
        "edge_policy": EDGE_POLICY,
        "area_mm2": area_mm2,
        "n_hills": n_hills,
        "n_excluded_edge": int(survivors.size - n_peaks),
    }
