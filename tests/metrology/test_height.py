import math

import numpy as np
import pytest

from pipeline.metrology.height import height_parameters


def test_sinusoid_sa_is_two_a_over_pi():
    a = 0.37
    n = 4000  # whole periods
    x = np.arange(n) / n * 2 * np.pi * 10
    z = np.tile(a * np.sin(x), (7, 1))
    p = height_parameters(z)
    # N = 400 samples per period: the mean of |sin| over the samples is (2/N) cot(pi/N),
    # which tends to the continuous 2/pi as N grows (relative gap pi^2 / (3 N^2)).
    per = 400
    assert p["Sa_um"] == pytest.approx(a * 2 / per / math.tan(math.pi / per), rel=1e-9)
    assert p["Sa_um"] == pytest.approx(2 * a / math.pi, rel=math.pi**2 / (3 * per**2) * 1.01)
    assert p["Sq_um"] == pytest.approx(a / math.sqrt(2), rel=1e-9)
    assert p["Sp_um"] == pytest.approx(a, rel=1e-6)
    assert p["Sv_um"] == pytest.approx(a, rel=1e-6)
    assert p["Sz_um"] == pytest.approx(2 * a, rel=1e-6)
    assert p["Ssk"] == pytest.approx(0.0, abs=1e-9)
    assert p["Sku"] == pytest.approx(1.5, rel=1e-9)  # kurtosis of a sine, not the excess


def test_hand_worked_values():
    z = np.array([[0.0, 1.0], [2.0, 5.0]])
    # mean 2; deviations -2 -1 0 3
    p = height_parameters(z)
    assert p["Sa_um"] == pytest.approx(6 / 4)
    assert p["Sq_um"] == pytest.approx(math.sqrt(14 / 4))
    assert p["Sp_um"] == pytest.approx(3.0) and p["Sv_um"] == pytest.approx(2.0)
    assert p["Ssk"] == pytest.approx((18 / 4) / (14 / 4) ** 1.5)
    assert p["Sku"] == pytest.approx((98 / 4) / (14 / 4) ** 2)


def test_matches_numpy_on_gaussian_surface_with_blocks():
    rng = np.random.default_rng(7)
    z = rng.normal(loc=76000.0, scale=0.8, size=(301, 257))  # odd sizes cross block edges
    d = z - z.mean()
    p = height_parameters(z)
    assert p["Sa_um"] == pytest.approx(np.abs(d).mean(), rel=1e-10)
    assert p["Sq_um"] == pytest.approx(np.sqrt((d**2).mean()), rel=1e-10)
    assert p["Sku"] == pytest.approx((d**4).mean() / (d**2).mean() ** 2, rel=1e-8)
    assert p["Sp_um"] == pytest.approx(d.max(), rel=1e-9)


def test_nan_holes_away_from_features_do_not_change_parameters():
    a = 0.5
    nx = 1000
    x = np.arange(nx) / nx * 2 * np.pi * 10
    z = np.tile(a * np.sin(x), (50, 1))
    full = height_parameters(z)
    holed = z.copy()
    holed[10:20, :] = np.nan  # whole rows: the remaining points keep the same distribution
    holed[30, ::7] = np.nan
    hp = height_parameters(holed)
    for k in ("Sa_um", "Sq_um", "Sz_um", "Ssk", "Sku"):
        assert hp[k] == pytest.approx(full[k], rel=2e-3, abs=1e-4), k


def test_flat_surface_and_empty():
    p = height_parameters(np.zeros((4, 4)))
    assert p["Sa_um"] == 0 and math.isnan(p["Ssk"]) and math.isnan(p["Sku"])
    with pytest.raises(ValueError, match="no valid point"):
        height_parameters(np.full((3, 3), np.nan))
