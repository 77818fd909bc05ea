import numpy as np

from pipeline.metrology.outliers import outlier_mask


def test_robust_n_sigma_finds_spikes_not_noise():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=0.01, size=(200, 200))
    z[5, 5], z[50, 60], z[150, 10] = 1.0, -0.8, 0.5
    m = outlier_mask(z, "n_sigma", n_sigma=6.0)
    assert sorted(map(tuple, np.argwhere(m))) == [(5, 5), (50, 60), (150, 10)]


def test_quantised_surface_with_zero_mad_still_finds_spikes():
    rng = np.random.default_rng(3)
    z = np.round(rng.normal(scale=0.0004, size=(100, 100)), 3)  # 1 nm steps, mostly 0
    assert np.median(np.abs(z - np.median(z))) == 0
    z[[10, 20, 30], [10, 20, 30]] = 1.0
    m = outlier_mask(z, "n_sigma", n_sigma=6.0)
    assert m[10, 10] and m[20, 20] and m[30, 30]
    assert m.sum() < 20


def test_material_ratio_and_none_and_nan():
    z = np.arange(10000, dtype=float).reshape(100, 100)
    z[0, 0] = np.nan
    m = outlier_mask(z, "material_ratio", material_ratio_pct=0.1)
    assert 15 <= m.sum() <= 22 and not m[0, 0]
    assert not outlier_mask(z, "none").any()
    assert not outlier_mask(np.ones((5, 5)), "n_sigma").any()  # all equal: nothing stands out
