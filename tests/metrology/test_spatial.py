"""Sdq, Sdr, the areal ACF, Sal and Str (pipeline.metrology.spatial) against analytic values.

Oracles: cells worked by hand; planes (the triangulation is exact for them); sinusoids
(exact discrete slopes, the continuous Sdr integral by quadrature); a brute-force
triangulation with cross products; a brute-force ACF by direct sums; Gaussian random fields
whose ACF is exp(-(r/l)^2), so the ACF falls to s at r = l*sqrt(-ln s); SurfaceTopography's
rms_gradient (MIT, an independent implementation) on synthetic and real maps.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from pipeline.errors import MeasurementError
from pipeline.metrology.acf import acf_decay, autocorrelation, sal_str
from pipeline.metrology.spatial import sdq, sdr
from tests.helpers import realfile

SQRT_LN5 = math.sqrt(math.log(5.0))


def grid(m: int, n: int, dx: float, dy: float):
    """(x, y) in um at the points of an (m, n) map; x along a row, y down a column."""
    y, x = np.mgrid[0:m, 0:n].astype(np.float64)
    return x * dx, y * dy


def gaussian_field(shape, lx_um, ly_um, dx_um, dy_um, seed):
    """Periodic Gaussian random field with ACF exp(-(tx/lx)^2 - (ty/ly)^2).

    The amplitude filter is the square root of the power spectrum of that ACF,
    exp(-pi^2 (lx^2 kx^2 + ly^2 ky^2)), with k in cycles per um.
    """
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(shape)
    kx = np.fft.fftfreq(shape[1], d=dx_um)[None, :]
    ky = np.fft.fftfreq(shape[0], d=dy_um)[:, None]
    gain = np.exp(-(math.pi**2) * (lx_um**2 * kx**2 + ly_um**2 * ky**2) / 2.0)
    return np.fft.ifft2(np.fft.fft2(white) * gain).real


def brute_triangulation(z, dx, dy):
    """Sdr (%) and Sdq from 3-D cross products, cell by cell, both diagonal splits averaged."""
    p00 = np.stack(np.broadcast_arrays(0.0, 0.0, z[:-1, :-1]), -1)
    p01 = np.stack(np.broadcast_arrays(dx, 0.0, z[:-1, 1:]), -1)
    p10 = np.stack(np.broadcast_arrays(0.0, dy, z[1:, :-1]), -1)
    p11 = np.stack(np.broadcast_arrays(dx, dy, z[1:, 1:]), -1)

    def area(a, b, c):
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=-1)

    split1 = area(p00, p01, p11) + area(p00, p11, p10)
    split2 = area(p00, p01, p10) + area(p01, p11, p10)
    cell = 0.5 * (split1 + split2)
    ok = np.isfinite(cell)
    g2 = (((z[:-1, 1:] - z[:-1, :-1]) ** 2 + (z[1:, 1:] - z[1:, :-1]) ** 2) / (2 * dx * dx)
          + ((z[1:, :-1] - z[:-1, :-1]) ** 2 + (z[1:, 1:] - z[:-1, 1:]) ** 2) / (2 * dy * dy))
    return (cell[ok].sum() / (ok.sum() * dx * dy) - 1.0) * 100.0, math.sqrt(g2[ok].mean())


# ---------------------------------------------------------------- Sdr, Sdq: worked by hand

def test_one_cell_with_one_corner_raised_worked_by_hand():
    # Corners z00 = z01 = z10 = 0, z11 = 1, unit pixels. Split along z00-z11: two triangles
    # with normals (0,-1,1) and (-1,0,1), area sqrt(2)/2 each. Split along z01-z10: a flat
    # triangle (1/2) and one with normal (-1,-1,1), area sqrt(3)/2. Sdr is their mean - 1.
    z = np.array([[0.0, 0.0], [0.0, 1.0]])
    expected = ((math.sqrt(2.0) + (1.0 + math.sqrt(3.0)) / 2.0) / 2.0 - 1.0) * 100.0
    assert sdr(z, 1.0, 1.0) == pytest.approx(expected, rel=1e-13)
    # Four corner triangles' squared gradients: 0, 1, 1, 2 -> mean 1.
    assert sdq(z, 1.0, 1.0) == pytest.approx(1.0, rel=1e-13)


def test_one_cell_non_square_pixels_worked_by_hand():
    # z = x on a 2 x 2 cell with dx = 2, dy = 0.5: slope 1/2 along x -> sqrt(1.25) - 1.
    z = np.array([[0.0, 2.0], [0.0, 2.0]]) / 2.0
    assert sdr(z, 2.0, 0.5) == pytest.approx((math.sqrt(1.25) - 1.0) * 100.0, rel=1e-13)
    assert sdq(z, 2.0, 0.5) == pytest.approx(0.5, rel=1e-13)


def test_flat_plane_is_zero():
    z = np.full((50, 40), 3.7)
    assert abs(sdr(z, 0.3, 0.7)) < 1e-12
    assert sdq(z, 0.3, 0.7) == 0.0


@pytest.mark.parametrize("a", [0.01, 0.3, 1.0, 5.0])
def test_tilted_plane_along_x_is_exact(a):
    x, _y = grid(64, 48, 0.25, 0.25)
    z = a * x + 2.0
    assert sdr(z, 0.25, 0.25) == pytest.approx((math.sqrt(1 + a * a) - 1) * 100, rel=1e-12)
    assert sdq(z, 0.25, 0.25) == pytest.approx(a, rel=1e-12)


@pytest.mark.parametrize(("dx", "dy"), [(1.0, 1.0), (0.128, 0.315), (2.0, 0.5)])
def test_tilted_plane_both_axes_non_square_pixels_is_exact(dx, dy):
    a, b = 0.4, -1.3
    x, y = grid(37, 53, dx, dy)
    z = a * x + b * y
    assert sdr(z, dx, dy) == pytest.approx((math.sqrt(1 + a * a + b * b) - 1) * 100, rel=1e-12)
    assert sdq(z, dx, dy) == pytest.approx(math.hypot(a, b), rel=1e-12)


def test_matches_brute_force_triangulation_with_invalid_points():
    rng = np.random.default_rng(3)
    z = rng.standard_normal((31, 43))
    z[rng.random(z.shape) < 0.08] = np.nan
    z[10:14, 20:25] = np.nan
    ref_sdr, ref_sdq = brute_triangulation(z, 0.7, 0.2)
    assert sdr(z, 0.7, 0.2) == pytest.approx(ref_sdr, rel=1e-12)
    assert sdq(z, 0.7, 0.2) == pytest.approx(ref_sdq, rel=1e-12)


def test_all_valid_fast_path_matches_brute_force():
    # sdq sums all-valid maps row-weighted, without per-cell masks; several block sizes.
    rng = np.random.default_rng(4)
    for shape in [(2, 2), (3, 7), (130, 9), (300, 257)]:
        z = rng.standard_normal(shape)
        ref_sdr, ref_sdq = brute_triangulation(z, 1.5, 0.4)
        assert sdr(z, 1.5, 0.4) == pytest.approx(ref_sdr, rel=1e-12)
        assert sdq(z, 1.5, 0.4) == pytest.approx(ref_sdq, rel=1e-12)


def test_invalid_cells_excluded_from_area_and_projected_area():
    # A plane with holes is still exactly the plane: only whole valid cells are counted.
    x, _y = grid(40, 40, 1.0, 1.0)
    z = 0.5 * x
    z[5, 5] = z[20, 0] = np.nan
    z[30:, 30:] = np.nan
    assert sdr(z, 1.0, 1.0) == pytest.approx((math.sqrt(1.25) - 1) * 100, rel=1e-12)
    # One steep step in the only cell row that keeps it: exclusion is by cell, not point.
    z = np.zeros((3, 4))
    z[2, 3] = 10.0
    z[1, 3] = np.nan  # removes the cells (0,2) and (1,2), which hold the step
    assert abs(sdr(z, 1.0, 1.0)) < 1e-12


def test_mirror_and_transpose_invariance():
    # Both diagonal splits averaged: a mirror image has the same area. Transposing the map
    # with the pixel sizes swapped is the same surface.
    rng = np.random.default_rng(5)
    z = rng.standard_normal((60, 45)) + 3 * np.sin(np.arange(45) / 2.0)  # varies along x
    ref = sdr(z, 0.9, 0.35)
    assert sdr(z[:, ::-1], 0.9, 0.35) == pytest.approx(ref, rel=1e-12)
    assert sdr(z[::-1, :], 0.9, 0.35) == pytest.approx(ref, rel=1e-12)
    assert sdr(z.T, 0.35, 0.9) == pytest.approx(ref, rel=1e-12)
    assert sdq(z.T, 0.35, 0.9) == pytest.approx(sdq(z, 0.9, 0.35), rel=1e-12)
    # ... while swapping the pixel sizes alone changes it (the test can fail).
    assert abs(sdr(z, 0.35, 0.9) / ref - 1) > 0.05


# ---------------------------------------------------------------- Sdr, Sdq: sinusoids

def continuous_sdr_sinusoid(amplitude, wavelength):
    """100 * (mean over a period of sqrt(1 + z'(x)^2) - 1) for z = A sin(2 pi x / L)."""
    from scipy.integrate import quad

    c = amplitude * 2 * math.pi / wavelength
    mean, _ = quad(lambda t: math.sqrt(1 + (c * math.cos(t)) ** 2), 0, 2 * math.pi,
                   epsabs=1e-14, epsrel=1e-13)
    return (mean / (2 * math.pi) - 1) * 100


@pytest.mark.parametrize(("amplitude", "dx", "dy"), [(0.05, 0.5, 0.5), (0.4, 0.5, 1.7)])
def test_sinusoid_against_analytic_integral(amplitude, dx, dy):
    lam = 32 * dx  # 32 points per period; the cells span 6 whole periods
    n = 6 * 32 + 1
    x, _y = grid(50, n, dx, dy)
    z = amplitude * np.sin(2 * math.pi * x / lam)
    # The forward difference sees the slope times sinc(k dx / 2): relative error of the
    # squared slope (k dx)^2 / 12 = 3.2e-3 here, so Sdr (~ slope^2) within 0.5 %.
    assert sdr(z, dx, dy) == pytest.approx(continuous_sdr_sinusoid(amplitude, lam), rel=5e-3)
    # Sdq exactly: mean of (2 A sin(k dx / 2) cos(.) / dx)^2 over whole periods.
    k = 2 * math.pi / lam
    exact = math.sqrt(2) * amplitude * math.sin(k * dx / 2) / dx
    assert sdq(z, dx, dy) == pytest.approx(exact, rel=1e-10)
    assert sdq(z, dx, dy) == pytest.approx(amplitude * k / math.sqrt(2), rel=2e-3)
    # The same surface along y with the pixel sizes swapped.
    assert sdr(z.T.copy(), dy, dx) == pytest.approx(sdr(z, dx, dy), rel=1e-12)


def test_small_slopes_sdr_is_half_sdq_squared():
    # sqrt(1 + g^2) - 1 = g^2 / 2 - g^4 / 8 ...: Sdr = 50 Sdq^2 (1 - O(Sdq^2)).
    z = 0.02 * gaussian_field((200, 160), 6.0, 6.0, 1.0, 1.0, seed=1)
    q = sdq(z, 1.0, 1.0)
    assert q < 0.01
    assert sdr(z, 1.0, 1.0) == pytest.approx(50 * q * q, rel=1e-3)


def test_scale_non_square_pixels_same_physical_surface():
    # z = A sin(2 pi x / Lx) + B sin(2 pi y / Ly) sampled with square and non-square pixels
    # gives the continuous Sdr (double integral) within the sampling error (>= 24 pt/period).
    from scipy.integrate import dblquad

    A, B, Lx, Ly = 0.3, 0.5, 24.0, 36.0
    cx, cy = A * 2 * math.pi / Lx, B * 2 * math.pi / Ly
    integral, _ = dblquad(lambda v, u: math.sqrt(1 + (cx * math.cos(u)) ** 2
                                                 + (cy * math.cos(v)) ** 2),
                          0, 2 * math.pi, 0, 2 * math.pi, epsabs=1e-12, epsrel=1e-11)
    expected = (integral / (4 * math.pi**2) - 1) * 100
    for dx, dy in [(0.5, 0.5), (0.5, 1.5), (1.0, 0.25)]:
        m, n = round(4 * Ly / dy) + 1, round(4 * Lx / dx) + 1  # 4 whole periods each way
        x, y = grid(m, n, dx, dy)
        z = A * np.sin(2 * math.pi * x / Lx) + B * np.sin(2 * math.pi * y / Ly)
        assert sdr(z, dx, dy) == pytest.approx(expected, rel=1e-2)


# ---------------------------------------------------------------- Sdq: independent oracle

def st_topography(heights_xy, px, py):
    with warnings.catch_warnings():  # NuMPI warns that mpi4py is absent
        warnings.simplefilter("ignore", ImportWarning)
        from SurfaceTopography import Topography
    return Topography(heights_xy, physical_sizes=(heights_xy.shape[0] * px,
                                                  heights_xy.shape[1] * py), periodic=False)


def test_sdq_agrees_with_surfacetopography_rms_gradient():
    # SurfaceTopography averages x and y forward differences each over all of its pairs;
    # ours weighs the first/last row and column by 1/2 (cells), a relative difference
    # O(1/M + 1/N). Its arrays are indexed [x, y]: ours transposed.
    z = gaussian_field((300, 200), 4.0, 9.0, 0.5, 2.0, seed=2)
    topo = st_topography(z.T, 0.5, 2.0)
    assert sdq(z, 0.5, 2.0) == pytest.approx(topo.rms_gradient(), rel=3e-3)
    assert abs(sdq(z, 2.0, 0.5) / topo.rms_gradient() - 1) > 0.05


@pytest.mark.realdata
def test_sdq_real_non_square_x3p_against_surfacetopography():
    path = realfile("heightmaps", "surftopo_x3p-2.x3p")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ImportWarning)
        from SurfaceTopography import open_topography
    topo = open_topography(str(path)).topography()
    assert topo.unit == "m"
    px, py = (float(p) * 1e6 for p in topo.pixel_size)  # 0.128 x 0.315 um (SOURCES.md)
    assert (px, py) == (pytest.approx(0.1277, rel=1e-3), pytest.approx(0.3146, rel=1e-3))
    z = np.asarray(topo.heights(), dtype=np.float64).T * 1e6  # (y, x) in um
    assert sdq(z, px, py) == pytest.approx(topo.rms_gradient(), rel=3e-3)
    # Sdr of a surface this smooth: 50 Sdq^2 to within the fourth-order term.
    q = sdq(z, px, py)
    assert sdr(z, px, py) == pytest.approx(50 * q * q, rel=5 * q * q)


# ---------------------------------------------------------------- ACF

def lag_slices(t: int, size: int):
    """Slices of the first and second point of every pair at lag t along one axis."""
    return (slice(0, size - t), slice(t, size)) if t >= 0 else (slice(-t, size), slice(0, size + t))


def brute_acf(z, ty, tx):
    """ACF at one lag by direct sums over the valid pairs."""
    valid = np.isfinite(z)
    f = np.where(valid, z - z[valid].mean(), 0.0)
    var = (f[valid] ** 2).mean()
    (ra, rb), (ca, cb) = lag_slices(ty, z.shape[0]), lag_slices(tx, z.shape[1])
    pairs = (valid[ra, ca] & valid[rb, cb]).sum()
    return np.nan if pairs == 0 else (f[ra, ca] * f[rb, cb]).sum() / pairs / var


def test_acf_worked_by_hand():
    # Mean 0, variance 1; neighbours along x have opposite signs, along y equal signs.
    z = np.array([[1.0, -1.0], [1.0, -1.0]])
    acf, tx, ty = autocorrelation(z, 2.0, 3.0)
    assert acf.shape == (3, 3)
    np.testing.assert_allclose(tx, [-2.0, 0.0, 2.0])
    np.testing.assert_allclose(ty, [-3.0, 0.0, 3.0])
    np.testing.assert_allclose(acf, [[-1, 1, -1], [-1, 1, -1], [-1, 1, -1]], atol=1e-12)


def test_acf_matches_direct_sums_with_missing_points():
    rng = np.random.default_rng(8)
    z = rng.standard_normal((7, 9)) + np.arange(9) * 0.3
    z[rng.random(z.shape) < 0.25] = np.nan
    acf, _tx, _ty = autocorrelation(z, 1.0, 1.0)
    assert acf.shape == (13, 17)
    for i, t_y in enumerate(range(-6, 7)):
        for j, t_x in enumerate(range(-8, 9)):
            ref = brute_acf(z, t_y, t_x)
            if np.isnan(ref):
                assert np.isnan(acf[i, j])
            else:
                assert acf[i, j] == pytest.approx(ref, rel=1e-9, abs=1e-12)
    assert acf[6, 8] == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(acf, acf[::-1, ::-1], rtol=1e-9, atol=1e-12)  # ACF(-t)


def test_acf_no_wrap_around():
    # A periodic FFT would correlate the first and last columns; zero padding must not.
    z = np.zeros((4, 6))
    z[:, 0], z[:, -1] = 1.0, -1.0
    acf, _, _ = autocorrelation(z, 1.0, 1.0)
    assert acf[3, 5 + 1] == pytest.approx(brute_acf(z, 0, 1), abs=1e-12)
    assert acf[3, 5 + 5] == pytest.approx(brute_acf(z, 0, 5), rel=1e-12)
    assert acf[3, 5 + 5] < 0  # first column (+) against last (-)


def test_acf_max_lag_frac():
    z = gaussian_field((64, 80), 3.0, 3.0, 1.0, 1.0, seed=0)
    full, _, _ = autocorrelation(z, 1.0, 1.0)
    half, tx, ty = autocorrelation(z, 1.0, 1.0, max_lag_frac=0.5)
    assert half.shape == (2 * 31 + 1, 2 * 39 + 1)
    assert tx[-1] == 39.0 and ty[-1] == 31.0
    np.testing.assert_allclose(half, full[63 - 31:63 + 32, 79 - 39:79 + 40], atol=1e-12)


# ---------------------------------------------------------------- Sal, Str

def axis_angle_deg(a, b):
    """Angle between two directions (lines, so modulo 180 degrees)."""
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_isotropic_gaussian_field(seed):
    # ACF exp(-(r/l)^2) falls to 0.2 at r = l sqrt(ln 5). Estimation noise of the ACF
    # ~ l / L (here 6 / 1024) and the minimum over directions give ~2 % low; 5 % allowed.
    l_um = 6.0
    z = gaussian_field((1024, 1024), l_um, l_um, 1.0, 1.0, seed)
    sal, str_ = sal_str(z, 1.0, 1.0)
    assert sal == pytest.approx(l_um * SQRT_LN5, rel=0.05)
    assert 0.85 < str_ <= 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_isotropic_gaussian_field_non_square_pixels(seed):
    # l = 6 um sampled with 0.5 x 1.5 um pixels (12 and 4 pixels per l).
    z = gaussian_field((1024, 1024), 6.0, 6.0, 0.5, 1.5, seed)
    sal, str_ = sal_str(z, 0.5, 1.5)
    assert sal == pytest.approx(6.0 * SQRT_LN5, rel=0.05)
    assert str_ > 0.8
    # Wrong pixel sizes make it anisotropic (the test can fail).
    assert sal_str(z, 1.5, 0.5)[1] < 0.3


def test_anisotropic_gaussian_field():
    # lx = 40, ly = 4 px: decay lengths 40 and 4 sqrt(ln 5): Str = 0.1, slowest along x.
    z = gaussian_field((768, 768), 40.0, 4.0, 1.0, 1.0, seed=3)
    out = acf_decay(z, 1.0, 1.0)
    assert out["Sal_um"] == pytest.approx(4.0 * SQRT_LN5, rel=0.05)
    assert out["Str"] < 0.3
    assert out["Str"] == pytest.approx(0.1, rel=0.25)
    assert axis_angle_deg(out["slowest_direction_deg"], 0.0) < 5
    assert axis_angle_deg(out["fastest_direction_deg"], 90.0) < 5
    assert out["n_censored"] == 0 and not out["str_upper_bound"]


def test_missing_points_counted_by_pairs():
    # 30 % of points missing: normalising by the valid pairs keeps Sal; normalising by the
    # field overlap would scale the ACF by 0.7 and move Sal to l sqrt(ln 3.5), 12 % short.
    z = gaussian_field((768, 768), 6.0, 6.0, 1.0, 1.0, seed=4)
    ref_sal, ref_str = sal_str(z, 1.0, 1.0)
    holed = z.copy()
    holed[np.random.default_rng(9).random(z.shape) < 0.3] = np.nan
    holed[100:180, 300:420] = np.nan
    sal, str_ = sal_str(holed, 1.0, 1.0)
    assert sal == pytest.approx(ref_sal, rel=0.03)
    assert str_ == pytest.approx(ref_str, abs=0.05)


@pytest.mark.parametrize(("lam", "dx", "dy", "along_y"),
                         [(32.0, 1.0, 1.0, False), (50.0, 1.0, 1.0, False),
                          (40.0, 0.5, 2.0, False), (40.0, 2.0, 0.5, True)])
def test_sinusoid_sal_and_str(lam, dx, dy, along_y):
    # ACF of a sinusoid: cos(2 pi t / lam); it falls to 0.2 at lam acos(0.2) / (2 pi), and
    # never along the crests: Str is small and only an upper bound.
    x, y = grid(300, 320, dx, dy)
    z = np.sin(2 * math.pi * (y if along_y else x) / lam + 0.3)
    out = acf_decay(z, dx, dy)
    expected = lam * math.acos(0.2) / (2 * math.pi)
    assert out["Sal_um"] == pytest.approx(expected, abs=dy if along_y else dx)
    assert out["Str"] < 0.1
    assert out["n_censored"] > 0 and out["str_upper_bound"]
    assert axis_angle_deg(out["fastest_direction_deg"], 90.0 if along_y else 0.0) < 1
    assert sal_str(z, dx, dy) == (out["Sal_um"], out["Str"])


def test_no_direction_decays_gives_nan():
    # Search only lags up to 2 % of the field (10 px) for a field with Sal ~ 25 px.
    z = gaussian_field((512, 512), 20.0, 20.0, 1.0, 1.0, seed=5)
    out = acf_decay(z, 1.0, 1.0, max_lag_frac=0.02)
    assert math.isnan(out["Sal_um"]) and math.isnan(out["Str"])
    assert out["n_censored"] == out["n_directions"]
    # The default search area finds it.
    assert acf_decay(z, 1.0, 1.0)["Sal_um"] == pytest.approx(20 * SQRT_LN5, rel=0.1)


def test_threshold_s():
    # exp(-(r/l)^2) = s  ->  r = l sqrt(-ln s).
    z = gaussian_field((768, 768), 6.0, 6.0, 1.0, 1.0, seed=6)
    for s in (0.1, 0.5):
        sal, _ = sal_str(z, 1.0, 1.0, s=s)
        assert sal == pytest.approx(6.0 * math.sqrt(-math.log(s)), rel=0.05)


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("func", [sdq, sdr, sal_str, autocorrelation])
def test_bad_pixel_size(func):
    z = np.zeros((4, 4))
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"dx_um must be a finite pixel size > 0"):
            func(z, bad, 1.0)
        with pytest.raises(ValueError, match=r"dy_um must be a finite pixel size > 0"):
            func(z, 1.0, bad)


@pytest.mark.parametrize("func", [sdq, sdr, sal_str, autocorrelation])
def test_bad_shape(func):
    with pytest.raises(ValueError, match=r"two-dimensional \(M, N\); got shape \(10,\)"):
        func(np.zeros(10), 1.0, 1.0)
    with pytest.raises(MeasurementError, match=r"shape \(1, 10\) is too small"):
        func(np.zeros((1, 10)), 1.0, 1.0)


@pytest.mark.parametrize("func", [sdq, sdr])
def test_no_valid_cell(func):
    z = np.zeros((6, 6))
    z[::2, ::2] = np.nan  # every cell has one invalid corner
    with pytest.raises(MeasurementError, match=r"no cell of the 6 x 6 height map has four valid"):
        func(z, 1.0, 1.0)
    with pytest.raises(MeasurementError, match=r"no cell"):
        func(np.full((3, 3), np.nan), 1.0, 1.0)


def test_acf_all_invalid_and_flat():
    with pytest.raises(MeasurementError, match=r"every point of the height map is invalid"):
        sal_str(np.full((5, 5), np.nan), 1.0, 1.0)
    with pytest.raises(MeasurementError, match=r"zero variance"):
        sal_str(np.full((5, 5), 2.0), 1.0, 1.0)
    with pytest.raises(MeasurementError, match=r"zero variance"):
        autocorrelation(np.full((5, 5), 2.0), 1.0, 1.0)


def test_bad_acf_options():
    z = gaussian_field((32, 32), 3.0, 3.0, 1.0, 1.0, seed=0)
    for s in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match=r"s must be in \(0, 1\)"):
            sal_str(z, 1.0, 1.0, s=s)
    for frac in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"max_lag_frac must be in \(0, 1\]"):
            autocorrelation(z, 1.0, 1.0, max_lag_frac=frac)
        with pytest.raises(ValueError, match=r"max_lag_frac must be in \(0, 1\]"):
            acf_decay(z, 1.0, 1.0, max_lag_frac=frac)
    with pytest.raises(ValueError, match=r"n_directions must be >= 4"):
        acf_decay(z, 1.0, 1.0, n_directions=2)


def test_input_not_modified():
    z = gaussian_field((40, 50), 3.0, 3.0, 1.0, 1.0, seed=0)
    z[3, 4] = np.nan
    before = z.copy()
    sdq(z, 1.0, 1.0), sdr(z, 1.0, 1.0), sal_str(z, 1.0, 1.0), autocorrelation(z, 1.0, 1.0)
    np.testing.assert_array_equal(z, before)
