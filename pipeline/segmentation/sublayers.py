"""Two sub-layers in a cross-section: where the particle size changes with depth (claims 10-11).

Claim 10 describes a first sub-layer of the first (smaller) carbon and silver against the
solid electrolyte, and a second of both carbons and silver against the current collector;
claim 11 a thickness ratio of 1:5 to 1:10 (the patent: the thinnest part of the first to the
thickest part of the second). In a section the second sub-layer holds larger particles than
the first, so the boundary is where the particle sections grow with depth.

Method (`sublayers`). The particle sections are the maxima of the solid's Euclidean
distance transform over 5 x 5 neighbourhoods (an inscribed radius at each particle's
centre), without those whose inscribed disc reaches the top surface, the collector or a
masked region (particles cut by them look small). Their depth below the top surface (per
column) orders them; the boundary is the depth that best separates finer sections above
from larger below, by the rank-sum (Mann-Whitney) statistic ``z`` of the sections above,
over depths leaving one median section diameter on each side. Two sub-layers are reported
when ``z >= Z_MIN``, the lower median radius exceeds the upper by ``MIN_RADIUS_RATIO`` and
each sub-layer holds ``MIN_SUBLAYER_DIAMETERS`` of its own sections' diameters; else one. The boundary's standard uncertainty is a quarter of
the range of depths whose ``z^2`` lies within 4 of the best (a deviance interval of about
95 %), and never less than the upper sections' median radius (the sections cluster by
particle, so the statistic alone claims too much); the thicknesses carry it and the top
surface's spread.

Measured on the realistic cross-section model (``benchmarks/sublayers.py``, upper particles
3-5 px, lower a mix of those and 6-10 px, silver in both, 3 seeds per ratio): the ratio
within 10 % in 9 of 12 scenes (+3 to +7 % at 1:3, -5 to +25 % at 1:5, -0.4 to +7 % at 1:8,
-23 to +9 % at 1:12, where the first sub-layer is three particles thick); claim 11 judged
right or undecided within U in 12 of 12. One-layer scenes give z up to 6.7 (12 seeds) and
two-layer ones 7.2-10.2 at 1:12, hence ``Z_MIN``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pipeline.numerics import exact_edt

__all__ = ["inscribed_peaks", "sublayers"]

Z_MIN = 7.0                   # rank statistic of a boundary
MIN_RADIUS_RATIO = 1.25       # lower / upper median section radius
MIN_SUBLAYER_DIAMETERS = 1.5  # each sub-layer at least this many of its section diameters
PROFILE_BIN_PX = 4            # the depth profile's bins


def inscribed_peaks(phase: np.ndarray, size: int, min_px: float):
    """(distance map, peaks): the Euclidean distance transform of `phase` and its maxima over
    `size` x `size` neighbourhoods of at least `min_px` (an inscribed radius at each particle
    section's centre)."""
    from scipy.ndimage import maximum_filter

    d = exact_edt(phase)
    return d, (d >= min_px) & (d == maximum_filter(d, size=size))


def _sections(solid: np.ndarray, top: np.ndarray, stop: int, valid: np.ndarray,
              columns: np.ndarray):
    """(depth below the top, inscribed radius) of the particle sections (px), without those
    cut by the top, the collector or a masked region."""
    import cv2

    d, ridge = inscribed_peaks(solid, 5, 1.5)
    rows = np.arange(solid.shape[0])[:, None]
    depth = rows - top[None, :]
    to_mask = cv2.distanceTransform(valid.astype(np.uint8), cv2.DIST_L2, 3)
    keep = (ridge & (depth >= d + 1) & (stop - rows >= d + 1) & (to_mask >= d + 1)
            & columns[None, :])
    return depth[keep].astype(np.int64), d[keep].astype(float)


def sublayers(solid: np.ndarray, top: np.ndarray, stop: int, *, valid: np.ndarray | None = None,
              columns: np.ndarray | None = None, u_top_px: float = 0.0) -> dict[str, Any]:
    """The layer's sub-layers from the particle sections' size against depth.

    Parameters
    ----------
    solid : (M, N) bool ndarray
        The section's solid, oriented with the collector at the foot.
    top : (N,) int ndarray
        Each column's first layer row (the top surface, towards the solid electrolyte).
    stop : int
        The collector's first row.
    valid : (M, N) bool ndarray, optional
        Pixels outside masked regions (sections cut by a mask are left out).
    columns : (N,) bool ndarray, optional
        The columns to use (those with valid layer pixels).
    u_top_px : float
        Standard uncertainty of the top surface's position (px), carried into the lower
        sub-layer's thickness and the ratio.

    Returns
    -------
    dict
        ``n_layers`` (1 or 2), ``boundary_depth_px`` and ``u_boundary_px`` (below the top
        surface; None with one layer), ``thickness_px`` [upper, lower] (means) and
        ``u_thickness_px``, ``ratio`` (upper / lower, means), ``ratio_claim`` (the thinnest
        upper over the thickest lower, as claim 11 reads) and ``u_ratio``, ``radius_px``
        [upper, lower] (median section radii), ``z``, ``n_sections``, ``profile``
        ({"depth_px", "radius_px"}: the median section radius per ``PROFILE_BIN_PX`` of depth).
    """
    from scipy.stats import rankdata

    top = np.asarray(top, np.int64)
    valid = np.ones(solid.shape, bool) if valid is None else valid
    columns = np.ones(top.size, bool) if columns is None else np.asarray(columns, bool)
    thick = (stop - top)[columns].astype(float)
    depth_max = int(thick.max())
    dep, rad = _sections(solid, top, stop, valid, columns)
    bins = np.arange(0, depth_max + PROFILE_BIN_PX, PROFILE_BIN_PX)
    which = np.digitize(dep, bins) - 1
    prof = [float(np.median(rad[which == i])) if np.any(which == i) else None
            for i in range(bins.size - 1)]
    out: dict[str, Any] = {
        "n_layers": 1, "boundary_depth_px": None, "u_boundary_px": None,
        "thickness_px": [float(thick.mean())], "u_thickness_px": None, "ratio": None,
        "ratio_claim": None, "u_ratio": None, "radius_px": [float(np.median(rad))] if rad.size else [],
        "z": None, "n_sections": int(rad.size),
        "profile": {"depth_px": (bins[:-1] + PROFILE_BIN_PX / 2).tolist(), "radius_px": prof},
    }
    if rad.size < 40:
        return out
    n = rad.size
    r = rankdata(rad)
    cnt = np.bincount(dep, minlength=depth_max + 1).astype(float)
    rsum = np.bincount(dep, weights=r, minlength=depth_max + 1)
    n1, r1 = np.cumsum(cnt), np.cumsum(rsum)   # sections at depth <= k
    n2 = n - n1
    sd = np.sqrt(np.maximum(n1 * n2 * (n + 1) / 12.0, 1e-12))
    z = (n1 * (n + 1) / 2.0 - r1) / sd          # > 0: the sections above are finer
    k_all = np.arange(depth_max + 1) + 1        # boundary between depth k - 1 and k
    diameter = 2.0 * float(np.median(rad))
    ok = (n1 >= 20) & (n2 >= 20) & (k_all >= diameter) & (thick.mean() - k_all >= diameter)
    if not ok.any():
        return out
    zz = np.where(ok, z, -np.inf)
    i = int(np.argmax(zz))
    k = int(k_all[i])
    upper, lower = rad[dep < k], rad[dep >= k]
    r_up, r_lo = float(np.median(upper)), float(np.median(lower))
    out["z"] = float(zz[i])
    if zz[i] < Z_MIN or r_lo < MIN_RADIUS_RATIO * r_up:
        return out
    # each sub-layer must hold its own sections' diameters
    if k < MIN_SUBLAYER_DIAMETERS * 2 * r_up or thick.mean() - k < MIN_SUBLAYER_DIAMETERS * 2 * r_lo:
        return out
    # the depths whose z^2 lies within 4 of the best (a deviance interval of about 95 %)
    near = np.flatnonzero(ok & (z > 0) & (z * z >= zz[i] ** 2 - 4.0))
    u_k = max(0.25 * float(k_all[near].max() - k_all[near].min()), 1.0)
    # ... but no finer than the upper particles' radius: a boundary between two particle
    # populations is not defined more closely (sections are not independent draws)
    u_k = max(u_k, r_up)
    up = float(k)                    # the upper sub-layer follows the top surface
    lo = thick - k
    u_up, u_lo = u_k, math.hypot(u_k, u_top_px)
    ratio = float(up / lo.mean())
    lo_max = float(lo.max())
    claim = up / lo_max
    # claim = k / L with L = T_max - k: the boundary moves both, the top moves L
    u_ratio = math.hypot((lo_max + k) / lo_max ** 2 * u_k, k / lo_max ** 2 * u_top_px)
    out.update(n_layers=2, boundary_depth_px=float(k), u_boundary_px=u_k,
               thickness_px=[up, float(lo.mean())], u_thickness_px=[u_up, u_lo],
               ratio=ratio, ratio_claim=claim, u_ratio=u_ratio, radius_px=[r_up, r_lo])
    return out
