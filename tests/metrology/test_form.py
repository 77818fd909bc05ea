import numpy as np
import pytest

from pipeline.metrology.form import fit_plane, level, remove_plane, remove_polynomial


def _grid(ny=60, nx=80, dx=0.5, dy=0.25):
    x = (np.arange(nx) - (nx - 1) / 2) * dx
    y = (np.arange(ny) - (ny - 1) / 2) * dy
    return np.meshgrid(x, y)


def test_tilted_plane_levels_to_zero():
    X, Y = _grid()
    z = 76000.0 + 0.3 * X - 0.7 * Y
    c, a, b = fit_plane(z, 0.5, 0.25)
    assert (c, a, b) == pytest.approx((76000.0, 0.3, -0.7), rel=1e-12, abs=1e-9)
    assert np.abs(remove_plane(z, 0.5, 0.25)).max() < 1e-8


def test_plane_fit_ignores_nan_and_keeps_them():
    X, Y = _grid()
    z = 2.0 + 0.1 * X + 0.05 * Y
    z[5:9, 10:30] = np.nan
    z[0, 0] = np.nan
    r = remove_plane(z, 0.5, 0.25)
    assert np.isnan(r[5:9, 10:30]).all() and np.isnan(r[0, 0])
    assert np.nanmax(np.abs(r)) < 1e-10


def test_plane_fit_matches_lstsq_on_rough_surface_with_holes():
    rng = np.random.default_rng(3)
    X, Y = _grid()
    z = 1.0 + 0.02 * X - 0.03 * Y + rng.normal(scale=0.1, size=X.shape)
    z[rng.random(z.shape) < 0.1] = np.nan
    v = np.isfinite(z)
    A = np.column_stack([np.ones(v.sum()), X[v], Y[v]])
    ref, *_ = np.linalg.lstsq(A, z[v], rcond=None)
    assert fit_plane(z, 0.5, 0.25) == pytest.approx(tuple(ref), rel=1e-9, abs=1e-12)


def test_polynomial_removes_quadratic_form():
    X, Y = _grid()
    z = 0.5 + 0.1 * X + 0.02 * X**2 - 0.01 * X * Y + 0.03 * Y**2
    z[3, 3] = np.nan
    assert np.nanmax(np.abs(remove_polynomial(z, 2, 0.5, 0.25))) < 1e-9
    # a plane cannot remove curvature
    assert np.nanmax(np.abs(remove_plane(z, 0.5, 0.25))) > 0.1


def test_level_names():
    X, _Y = _grid()
    z = X * 0.1
    assert level(z, "none") is z
    assert np.abs(level(z, "plane", 0.5, 0.25)).max() < 1e-12
    assert np.abs(level(z, "poly:3", 0.5, 0.25)).max() < 1e-9
    with pytest.raises(ValueError, match="unknown levelling"):
        level(z, "sphere")
    with pytest.raises(ValueError, match="fewer than 3 valid points"):
        fit_plane(np.full((3, 3), np.nan))
