import math

import numpy as np
import pytest

from pipeline.metrology.filters import (
    SIGMA_PER_LAMBDA,
    band_pass,
    gaussian_lowpass,
    l_filter,
    s_filter,
)


def test_sigma_constant():
    assert SIGMA_PER_LAMBDA == pytest.approx(0.18739, abs=1e-5)
    # 50 % transmission of the continuous Gaussian at the nesting index
    assert math.exp(-2 * math.pi**2 * SIGMA_PER_LAMBDA**2) == pytest.approx(0.5, rel=1e-12)


def _transmission(wavelength_um, cutoff_um, *, n=None, axis="x"):
    """Amplitude ratio of a sinusoid after the low-pass, measured in the field's centre."""
    dx = min(1.0, wavelength_um / 10)  # at least 10 samples per period
    n = n or int(max(40 * cutoff_um, 8 * wavelength_um) / dx) + 64
    n = min(n, 6000)
    x = (np.arange(n) + 0.5) * dx
    wave = np.sin(2 * np.pi * x / wavelength_um)
    z = np.tile(wave, (24, 1)) if axis == "x" else np.tile(wave[:, None], (1, 24))
    low = gaussian_lowpass(z, dx, dx, cutoff_um)
    line = low[12] if axis == "x" else low[:, 12]
    c = slice(n // 4, 3 * n // 4)
    s = np.sin(2 * np.pi * x[c] / wavelength_um)
    co = np.cos(2 * np.pi * x[c] / wavelength_um)
    amp = np.hypot(line[c] @ s, line[c] @ co) / (s @ s)
    return amp


@pytest.mark.parametrize("cutoff", [8.0, 25.0, 80.0, 250.0])
@pytest.mark.parametrize("axis", ["x", "y"])
def test_transmission_half_at_cutoff(cutoff, axis):
    # direct engine for small cut-offs, pyramid for large ones: both must give 50 %
    assert _transmission(cutoff, cutoff, axis=axis) == pytest.approx(0.5, abs=0.005)


@pytest.mark.parametrize("cutoff", [8.0, 80.0])
def test_transmission_a_decade_away(cutoff):
    assert _transmission(10 * cutoff, cutoff) > 0.99  # long waves pass the low-pass
    assert _transmission(cutoff / 10, cutoff) < 1e-6  # short waves are removed


def test_l_filter_is_complement_and_s_filter_smooths():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 300))
    lp = gaussian_lowpass(z, 0.5, 0.5, 10.0)
    # float32 convolutions: agreement to about 1e-7 of the height range
    np.testing.assert_allclose(l_filter(z, 0.5, 0.5, 10.0), z - lp, rtol=0, atol=1e-6 * np.abs(z).max())
    assert s_filter(z, 0.5, 0.5, 2.0).std() < 0.5 * z.std()


def _exact_lowpass(z, sx, sy):
    from scipy.signal import fftconvolve

    def k(s):
        r = math.ceil(8 * s)
        g = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        return g / g.sum()

    w = np.isfinite(z).astype(float)
    zf = np.where(w > 0, z, 0.0)

    def blur(a):
        return fftconvolve(fftconvolve(a, k(sx)[None, :], mode="same"), k(sy)[:, None], mode="same")

    with np.errstate(divide="ignore", invalid="ignore"):
        out = blur(zf) / blur(w)
    out[w == 0] = np.nan
    return out


@pytest.mark.parametrize("cutoff_px", [6.0, 40.0, 300.0])
def test_matches_exact_normalised_convolution(cutoff_px):
    rng = np.random.default_rng(int(cutoff_px))
    z = rng.normal(size=(400, 500))
    z[100:140, 200:260] = np.nan  # a hole
    dx, dy = 0.2, 0.3  # non-square pixels
    cutoff = cutoff_px * dx
    ours = gaussian_lowpass(z, dx, dy, cutoff)
    ref = _exact_lowpass(z, SIGMA_PER_LAMBDA * cutoff / dx, SIGMA_PER_LAMBDA * cutoff / dy)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    err = np.nanmax(np.abs(ours - ref))
    assert err < 1e-3 * np.nanstd(ref) + 1e-12, err


@pytest.mark.parametrize("cutoff_px", [30.0, 600.0])  # direct and pyramid engines
@pytest.mark.parametrize("holes", [False, True])
def test_constant_is_reproduced_everywhere(cutoff_px, holes):
    z = np.full((220, 260), 76000.25)  # absolute heights, as al3d files store them
    if holes:
        z[40:50, 60:70] = np.nan
    out = gaussian_lowpass(z, 1.0, 1.0, cutoff_px)
    np.testing.assert_allclose(out[np.isfinite(out)], 76000.25, rtol=0, atol=1e-9)
    assert np.array_equal(np.isnan(out), np.isnan(z))


def test_large_offset_does_not_cost_precision():
    rng = np.random.default_rng(4)
    rough = rng.normal(scale=0.01, size=(300, 300))
    a = gaussian_lowpass(rough + 76000.0, 1.0, 1.0, 200.0) - 76000.0
    b = gaussian_lowpass(rough, 1.0, 1.0, 200.0)
    assert np.abs(a - b).max() < 1e-6 * 0.01


def test_band_pass_order_and_validation():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(100, 100))
    np.testing.assert_allclose(
        band_pass(z, 1, 1, 2.0, 20.0), l_filter(s_filter(z, 1, 1, 2.0), 1, 1, 20.0),
        rtol=0, atol=1e-6 * np.abs(z).max(),
    )
    assert band_pass(z, 1, 1, None, None) is z
    with pytest.raises(ValueError, match="must be shorter"):
        band_pass(z, 1, 1, 20.0, 2.0)


@pytest.mark.parametrize("cutoff_px", [2000.0, 20000.0])
def test_cutoff_far_beyond_the_field_stays_bounded_and_exact(cutoff_px):
    # kernels longer than the field: the work arrays stay within twice the field and the
    # result still equals the exact normalised convolution (and a constant stays constant)
    rng = np.random.default_rng(9)
    z = rng.normal(size=(120, 90))
    out = gaussian_lowpass(z, 1.0, 1.0, cutoff_px)
    s = SIGMA_PER_LAMBDA * cutoff_px
    ref = _exact_lowpass(z, s, s)
    assert np.abs(out - ref).max() < 1e-3 * np.abs(ref).max() + 1e-6
    flat = gaussian_lowpass(np.full((120, 90), 5.0), 1.0, 1.0, cutoff_px)
    np.testing.assert_allclose(flat, 5.0, rtol=1e-9)


@pytest.mark.parametrize("holes", [False, True])
def test_plane_subtracted_on_the_way_in_equals_levelling_first(holes):
    from pipeline.metrology.form import plane_terms, remove_plane

    rng = np.random.default_rng(11)
    y, x = np.mgrid[0:150, 0:170] * 0.5
    z = 76000.0 + 0.2 * x - 0.1 * y + rng.normal(scale=0.05, size=x.shape)
    if holes:
        z[30:40, 50:90] = np.nan
    a = band_pass(remove_plane(z, 0.5, 0.5), 0.5, 0.5, 2.0, 25.0)
    b = band_pass(z, 0.5, 0.5, 2.0, 25.0, form=plane_terms(z, 0.5, 0.5))
    assert np.array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * np.nanmax(np.abs(a)))
