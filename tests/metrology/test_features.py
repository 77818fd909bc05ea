"""Spd with Wolf pruning (pipeline.metrology.features) against known peak counts.

Oracles: grids of Gaussian bumps (count known by construction), the egg-box
cos(2 pi x / L) cos(2 pi y / L) (2 maxima per L x L cell: both cosines +1 or both -1), two
bumps whose saddle is measured on the samples, scikit-image h_maxima (morphological
dynamics, an independent algorithm) and a pixel-by-pixel merge tree written here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from pipeline.errors import MeasurementError
from pipeline.metrology.features import EDGE_POLICY, spd


def window_points(z) -> int:
    """Valid points off the border with all 8 neighbours valid (the documented window)."""
    valid = np.isfinite(z)
    inner = ndimage.binary_erosion(valid, structure=np.ones((3, 3)), border_value=0)
    return int(inner.sum())


def bumps(m, n, centres, sigma_px, height=1.0):
    """Gaussian bumps of one height at (row, col) centres on a zero base."""
    y, x = np.mgrid[0:m, 0:n].astype(np.float64)
    z = np.zeros((m, n))
    for r, c in centres:
        z += height * np.exp(-((x - c) ** 2 + (y - r) ** 2) / (2 * sigma_px**2))
    return z


def lattice(m, n, pitch, margin):
    return [(r, c) for r in np.arange(margin, m - margin + 1, pitch)
            for c in np.arange(margin, n - margin + 1, pitch)]


# ---------------------------------------------------------------- known counts

@pytest.mark.parametrize(("dx", "dy"), [(1.0, 1.0), (0.25, 0.8)])
def test_grid_of_gaussian_bumps(dx, dy):
    centres = lattice(200, 260, 20, 10)  # 10 x 13 = 130 bumps, peaks 10 px from the border
    z = bumps(200, 260, centres, 3.0)
    out = spd(z, dx, dy)
    assert out["n_peaks"] == 130
    area_mm2 = window_points(z) * dx * dy * 1e-6
    assert out["area_mm2"] == pytest.approx(area_mm2, rel=1e-12)
    assert out["Spd_per_mm2"] == pytest.approx(130 / area_mm2, rel=1e-12)
    assert out["pruning_height_um"] == pytest.approx(0.05 * (z.max() - z.min()), rel=1e-12)
    assert out["edge_policy"] == EDGE_POLICY


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bumps_with_noise_are_pruned(seed):
    # Noise of +-1 % of the bump height makes thousands of maxima; each has a local peak
    # height of at most 2 % of Sz, below the 5 % pruning height. The bumps (local height
    # ~ 100 %) all remain.
    centres = lattice(200, 260, 20, 10)
    z = bumps(200, 260, centres, 3.0)
    z += np.random.default_rng(seed).uniform(-0.01, 0.01, z.shape)
    out = spd(z, 1.0, 1.0)
    assert out["n_hills"] > 1000
    assert out["n_peaks"] == 130
    # Without pruning every hill survives (the pruning is what the test measures).
    bare = spd(z, 1.0, 1.0, pruning_pct_sz=0.0)
    assert bare["n_peaks"] + bare["n_excluded_edge"] == out["n_hills"]
    assert bare["n_peaks"] > 5 * 130


@pytest.mark.parametrize(("dx", "dy"), [(1.0, 1.0), (0.5, 2.0)])
def test_egg_box(dx, dy):
    # z = cos(2 pi x / Lx) cos(2 pi y / Ly): maxima where both cosines are +1 and where both
    # are -1, 2 per Lx x Ly cell, all of local height 1 (saddles at 0). The field holds 8 x 8
    # cells, shifted by L/8 so that no maximum falls on the border: 128 peaks.
    lam_px = 64
    j = np.arange(8 * lam_px) + lam_px / 8
    phase = 2 * np.pi * j / lam_px
    z = np.cos(phase)[None, :] * np.cos(phase)[:, None]
    out = spd(z, dx, dy)
    assert out["n_peaks"] == 128
    lx_um, ly_um = lam_px * dx, lam_px * dy
    n_window = (8 * lam_px - 2) ** 2
    assert out["Spd_per_mm2"] == pytest.approx(128 / (n_window * dx * dy * 1e-6), rel=1e-12)
    # The window leaves out a one-point border: (512 / 510)^2 = 1.008 x 2 / (Lx Ly).
    assert out["Spd_per_mm2"] == pytest.approx(2 / (lx_um * ly_um) * 1e6, rel=0.01)


def test_egg_box_with_maxima_on_the_border():
    # Unshifted, maxima lie on row 0 / column 0: they are excluded (they might be flanks of
    # hills outside the field). Interior: 7 x 7 (both +1) + 8 x 8 (both -1) = 113.
    lam_px = 64
    phase = 2 * np.pi * np.arange(8 * lam_px) / lam_px
    z = np.cos(phase)[None, :] * np.cos(phase)[:, None]
    out = spd(z, 1.0, 1.0)
    assert out["n_peaks"] == 113
    assert out["n_excluded_edge"] >= 15  # 8 + 8 - 1 on row 0 / column 0, more at the far edges


def test_wolf_pruning_threshold_on_two_bumps():
    # Bumps of height 1.0 and 0.9 close enough that the smaller one's local height (its peak
    # minus the saddle between them) is ~8 % of Sz. The ridge runs along row 20 (mirror
    # symmetry), so the pass is the lowest point of that row between the two maxima, which
    # the sum puts at columns 36 and 44.
    z = bumps(41, 81, [(20, 35)], 4.0) + bumps(41, 81, [(20, 45)], 4.0, height=0.9)
    row = z[20]
    assert row[36] > max(row[35], row[37]) and row[44] > max(row[43], row[45])
    small_peak = row[44]
    saddle = row[36:45].min()
    local_pct = (small_peak - saddle) / (z.max() - z.min()) * 100
    assert 5 < local_pct < 15
    assert spd(z, 1.0, 1.0, pruning_pct_sz=local_pct * 1.01)["n_peaks"] == 1
    assert spd(z, 1.0, 1.0, pruning_pct_sz=local_pct * 0.99)["n_peaks"] == 2
    assert spd(z, 1.0, 1.0)["n_peaks"] == 2  # default 5 %


def test_equal_peaks_merge_when_their_saddle_is_shallow():
    # Two bumps of exactly equal height (mirror images), saddle 12.7 % of Sz below them.
    # Wolf pruning at 20 % merges one into the other: one peak. (Morphological dynamics
    # keep both, as neither reaches a strictly higher peak: the one case where h_maxima
    # differs.)
    z = bumps(31, 41, [(15, 15), (15, 25)], 4.0)
    assert z[15, 15] == z[15, 25]
    assert spd(z, 1.0, 1.0, pruning_pct_sz=20.0)["n_peaks"] == 1
    assert spd(z, 1.0, 1.0, pruning_pct_sz=5.0)["n_peaks"] == 2
    assert h_maxima_count(z, 0.2 * (z.max() - z.min())) == 2


def test_flat_and_ramp_have_no_peaks():
    assert spd(np.full((20, 30), 1.5), 1.0, 1.0)["n_peaks"] == 0
    y, x = np.mgrid[0:20, 0:30]
    out = spd(0.1 * x + 0.05 * y, 1.0, 1.0)  # its maximum is a corner
    assert out["n_peaks"] == 0 and out["n_excluded_edge"] == 1


# ---------------------------------------------------------------- invalid points

def test_nan_holes():
    centres = lattice(200, 260, 20, 10)
    z = bumps(200, 260, centres, 3.0)
    z[55:86, 55:86] = np.nan  # swallows the bump at (70, 70) whole (5 sigma around it)
    z[125:130, 131:136] = np.nan  # (129, 131) is a neighbour of the peak at (130, 130)
    z[168:173, 20:26] = np.nan  # on the flank of (170, 30), 4 points from its peak
    out = spd(z, 1.0, 1.0)
    # (70, 70) is gone, (130, 130) is excluded (invalid neighbour), (170, 30) still counts.
    assert out["n_peaks"] == 128
    assert out["n_excluded_edge"] >= 1
    assert out["area_mm2"] == pytest.approx(window_points(z) * 1e-6, rel=1e-12)
    assert out["Spd_per_mm2"] == pytest.approx(128 / out["area_mm2"], rel=1e-12)
    # Sz (and the pruning height) from the valid points only.
    assert out["pruning_height_um"] == pytest.approx(0.05 * (np.nanmax(z) - np.nanmin(z)))


def test_island_cut_off_by_invalid_points():
    # A bump inside a ring of NaN: its peak and its neighbours are valid, so it counts.
    z = bumps(80, 80, [(40, 40), (15, 15)], 3.0)
    yy, xx = np.mgrid[0:80, 0:80]
    r = np.hypot(yy - 40, xx - 40)
    z[(r > 10) & (r < 13)] = np.nan
    assert spd(z, 1.0, 1.0)["n_peaks"] == 2


# ---------------------------------------------------------------- independent oracles

def h_maxima_count(z, h):
    from skimage.measure import label
    from skimage.morphology import h_maxima

    return label(h_maxima(z, h), connectivity=2, return_num=True)[1]


@pytest.mark.parametrize("seed", range(6))
def test_all_surviving_peaks_match_h_maxima(seed):
    # Continuous heights (no two peaks equal): peaks that survive Wolf pruning at h are the
    # maxima of dynamic >= h, which h_maxima finds by grey reconstruction. Compare before
    # the edge policy: n_peaks + n_excluded_edge.
    rng = np.random.default_rng(seed)
    z = ndimage.gaussian_filter(rng.standard_normal((150, 170)), rng.uniform(1.0, 4.0))
    for pct in (1.0, 5.0, 15.0):
        out = spd(z, 1.0, 1.0, pruning_pct_sz=pct)
        h = pct / 100 * (z.max() - z.min())
        assert out["n_peaks"] + out["n_excluded_edge"] == h_maxima_count(z, h)
    assert out["n_excluded_edge"] + out["n_peaks"] < out["n_hills"]


def merge_tree_count(z, threshold):
    """Peaks surviving pruning, from a pixel-by-pixel merge tree: points from the highest
    down, each joining its already-visited 8-neighbours; where two components meet at
    height h the one with the lower peak ends with local height (peak - h)."""
    m, n = z.shape
    order = sorted((-z[i, j], i * n + j) for i in range(m) for j in range(n)
                   if np.isfinite(z[i, j]))
    parent, peak = {}, {}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    survivors = 0
    for neg_h, p in order:
        h = -neg_h
        parent[p], peak[p] = p, h
        i, j = divmod(p, n)
        for q in [(i + a) * n + j + b for a in (-1, 0, 1) for b in (-1, 0, 1)
                  if (a or b) and 0 <= i + a < m and 0 <= j + b < n]:
            if q not in parent:
                continue
            ra, rb = find(p), find(q)
            if ra == rb:
                continue
            if peak[ra] < peak[rb] or (peak[ra] == peak[rb] and ra > rb):
                ra, rb = rb, ra
            if rb != p and peak[rb] - h >= threshold:  # p itself is no peak: it joins
                survivors += 1
            parent[rb] = ra
    return survivors + sum(1 for k in parent if parent[k] == k)


@pytest.mark.parametrize("seed", range(8))
def test_plateaus_and_holes_against_pixel_merge_tree(seed):
    # Quantised heights (many plateaus, equal peaks) with invalid points: hills, plateau
    # drainage and saddles against the pixel-level merge tree.
    rng = np.random.default_rng(100 + seed)
    z = ndimage.gaussian_filter(rng.standard_normal((40, 47)), rng.uniform(0.7, 2.5))
    z = np.round(z / np.ptp(z) * rng.choice([4, 8, 16])) if seed % 4 else z
    if seed % 2:
        z[rng.random(z.shape) < 0.06] = np.nan
    for pct in (2.0, 10.0):
        out = spd(z, 1.0, 1.0, pruning_pct_sz=pct)
        threshold = pct / 100 * (np.nanmax(z) - np.nanmin(z))
        assert out["pruning_height_um"] == pytest.approx(threshold, rel=1e-12)
        assert out["n_peaks"] + out["n_excluded_edge"] == merge_tree_count(z, threshold)


# ---------------------------------------------------------------- bad input

def test_bad_input():
    z = bumps(20, 20, [(10, 10)], 2.0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"pruning_pct_sz must be a finite percentage"):
            spd(z, 1.0, 1.0, pruning_pct_sz=bad)
    with pytest.raises(ValueError, match=r"dy_um must be a finite pixel size > 0"):
        spd(z, 1.0, 0.0)
    with pytest.raises(ValueError, match=r"two-dimensional"):
        spd(np.zeros(5), 1.0, 1.0)
    with pytest.raises(MeasurementError, match=r"too small"):
        spd(np.zeros((1, 5)), 1.0, 1.0)
    with pytest.raises(MeasurementError, match=r"no valid point off the border"):
        spd(np.zeros((2, 50)), 1.0, 1.0)
    with pytest.raises(MeasurementError, match=r"no valid point off the border"):
        spd(np.full((10, 10), np.nan), 1.0, 1.0)


def test_input_not_modified():
    z = bumps(30, 30, [(15, 15)], 3.0)
    z[2, 2] = np.nan
    before = z.copy()
    spd(z, 1.0, 1.0)
    np.testing.assert_array_equal(z, before)
