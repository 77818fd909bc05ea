import math

import numpy as np
import pytest

import pipeline
from pipeline.errors import ConfigError, MeasurementError
from pipeline.ingest.dataarray import height_dataarray

KEYS = ["Sa_um", "Sq_um", "Sp_um", "Sv_um", "Sz_um", "Ssk", "Sku", "Sdq", "Sdr_pct", "Sal_um", "Str", "Spd_per_mm2", "invalid_fraction", "sz_without_outliers_um", "recipe"]


def _da(z, dx=0.5, dy=0.5):
    return height_dataarray(z, path="synthetic", dx_um=dx, dy_um=dy, pixel_size_source="test",
                            vendor="test", fmt="test")


def _sine(a=0.2, wavelength=20.0, n=400, dx=0.5, tilt=0.0):
    x = (np.arange(n) + 0.5) * dx
    y = (np.arange(n) + 0.5) * dx
    X, Y = np.meshgrid(x, y)
    return a * np.sin(2 * np.pi * X / wavelength) + tilt * (X + 0.3 * Y) + 7.0


def test_keys_and_sinusoid_values():
    res = pipeline.surface_texture(_da(_sine()), level="none")
    assert set(KEYS) <= set(res)
    # 40 samples per period: the sampled mean of |sin| is within pi^2 / (3 * 40^2) of 2/pi
    assert res["Sa_um"] == pytest.approx(2 * 0.2 / math.pi, rel=2.1e-3)
    # the samples nearest the crests sit half a sample (pi/40 of phase) from them
    assert res["Sz_um"] == pytest.approx(0.4 * math.cos(math.pi / 40), rel=1e-9)
    assert res["recipe"]["id"] == "default" and len(res["recipe"]["sha256"]) == 64
    assert res["invalid_fraction"] == 0 and res["n_outliers"] == 0
    assert res["sz_without_outliers_um"] == res["Sz_um"]


def test_tilted_plane_levels_to_zero():
    res = pipeline.surface_texture(_da(_sine(a=0.0, tilt=0.05)))
    assert res["Sa_um"] < 1e-10 and res["Sz_um"] < 1e-10


def test_nan_holes_away_from_features_do_not_change_parameters():
    z = _sine(a=0.3, wavelength=10.0)  # 20 px per period
    full = pipeline.surface_texture(_da(z))
    holed = z.copy()
    holed[100:140, :] = np.nan  # whole rows: every remaining row is the same profile
    holed[300:310, 40:60] = np.nan
    res = pipeline.surface_texture(_da(holed))
    assert res["invalid_fraction"] == pytest.approx((40 * 400 + 200) / 400**2)
    for k in ("Sa_um", "Sq_um", "Sz_um", "Sp_um", "Sv_um", "Sdq", "Sdr_pct"):
        assert res[k] == pytest.approx(full[k], rel=3e-3), k


def test_spikes_are_reported_and_can_be_removed(tmp_path):
    rng = np.random.default_rng(5)
    z = rng.normal(scale=0.05, size=(300, 300))
    z[[10, 100, 200], [20, 150, 250]] = [4.0, -3.0, 5.0]
    res = pipeline.surface_texture(_da(z))
    assert res["Sz_um"] > 7.9
    assert res["n_outliers"] >= 3
    assert res["sz_without_outliers_um"] < 0.7
    assert any(f.startswith("sz_spike_sensitive") for f in res["flags"])
    recipe = tmp_path / "remove.toml"
    recipe.write_text('schema_version = 1\nid = "rm"\n[outliers]\naction = "remove"\n')
    rm = pipeline.surface_texture(_da(z), recipe=recipe)
    assert rm["Sz_um"] == pytest.approx(res["sz_without_outliers_um"])
    assert rm["sz_with_outliers_um"] == pytest.approx(res["Sz_um"])
    assert rm["recipe"]["id"] == "rm"


def test_band_pass_removes_waviness():
    # roughness at 4 um on a waviness of 1000 um; lambda_c 40 um keeps only the roughness,
    # lambda_s 0.8 um passes it with the Gaussian's transmission exp(-ln2 (0.8/4)^2)
    n, dx = 4000, 0.125
    x = (np.arange(n) + 0.5) * dx
    X, _ = np.meshgrid(x, x[:100])
    rough = 0.1 * np.sin(2 * np.pi * X / 4.0)
    z = rough + 0.3 * np.sin(2 * np.pi * X / 1000.0)
    raw = pipeline.surface_texture(_da(z, dx, dx), level="none")
    res = pipeline.surface_texture(_da(z, dx, dx), level="none", lambda_s=0.8, lambda_c=40.0)
    t_s = math.exp(-math.log(2) * (0.8 / 4.0) ** 2)
    expected = t_s * pipeline.surface_texture(_da(rough, dx, dx), level="none")["Sa_um"]
    assert res["Sa_um"] == pytest.approx(expected, rel=5e-3)
    assert raw["Sa_um"] > 1.4 * res["Sa_um"]  # without the filters the waviness counts
    assert not any("undersampled" in f for f in res["flags"])


def test_all_nan_map_is_refused():
    z = np.full((20, 20), np.nan)
    z[0, 0], z[0, 1] = 1.0, 2.0  # two valid points: read, but fewer than a plane needs
    with pytest.raises(MeasurementError, match="valid points"):
        pipeline.surface_texture(_da(z))


def test_bad_options():
    da = _da(_sine())
    with pytest.raises(ConfigError, match="level"):
        pipeline.surface_texture(da, level="cubic")
    with pytest.raises(ConfigError, match="shorter"):
        pipeline.surface_texture(da, lambda_s=10.0, lambda_c=5.0)
    with pytest.raises(ConfigError, match="positive"):
        pipeline.surface_texture(da, lambda_c=float("nan"))


def test_flat_map_gives_zero_heights_and_flags_undefined_spatial_parameters():
    # a file with constant heights is refused when read (height_dataarray); the
    # measurement itself still handles a flat map that reaches it (built here directly)
    da = _da(_sine(n=50))
    flat = da.copy(data=np.full(da.shape, 2.5))
    res = pipeline.surface_texture(flat)
    assert res["Sa_um"] == 0 and res["Sz_um"] == 0
    assert res["Sal_um"] is None and res["Str"] is None
    assert any(f.startswith("Sal_Str_undefined") for f in res["flags"])


def test_collinear_valid_points_cannot_be_plane_levelled():
    z = np.full((10, 10), np.nan)
    z[4, :] = np.linspace(0, 1, 10)
    with pytest.raises(MeasurementError, match="synthetic: the valid points lie on one line"):
        pipeline.surface_texture(_da(z), level="plane")


@pytest.mark.parametrize("px", [float("nan"), 0.0, -1.0])
def test_bad_pixel_size_on_the_dataarray(px):
    da = _da(_sine())
    da.attrs["pixel_size_um"] = {"x": px, "y": 0.5}
    with pytest.raises(MeasurementError, match="synthetic: pixel size x"):
        pipeline.surface_texture(da)


def test_absurd_nesting_index_is_refused():
    with pytest.raises(MeasurementError, match="more than ten times the field"):
        pipeline.surface_texture(_da(_sine()), lambda_c=1e300)
