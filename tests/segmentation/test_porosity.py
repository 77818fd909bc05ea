"""Porosity: gravimetric (hand-worked, Monte Carlo), void reduction (patent Table 1) and
cross-sections (synthetic with known pore fraction)."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import ConfigError, MeasurementError, UnreadableInput
from pipeline.gravimetric import gravimetric_porosity, load_materials, void_reduction
from pipeline.ingest.dataarray import sem_dataarray
from pipeline.segmentation.cross_section import porosity_from_cross_section

EMB1 = {"carbon_black/40nm": 3.0, "carbon_black/80nm": 3.0, "Ag": 2.0, "PVdF": 0.56}
DENS = {"carbon_black": 1.86, "silver": 10.49, "pvdf": 1.78}


# --- gravimetric ----------------------------------------------------------------------------

def test_embodiment1_pore_free_density_by_hand():
    # by hand: 8.56 g of solid occupy 6/1.86 + 2/10.49 + 0.56/1.78
    #        = 3.22581 + 0.19066 + 0.31461 = 3.73108 cm3 -> 8.56 / 3.73108 = 2.2942 g/cm3
    vol = 6 / 1.86 + 2 / 10.49 + 0.56 / 1.78
    assert vol == pytest.approx(3.73108, abs=2e-5)
    r = gravimetric_porosity(thickness_um=10.0, areal_mass_mg_cm2=1.0, recipe=EMB1)
    assert r["pore_free_density_g_cm3"] == pytest.approx(2.294, abs=5e-4)
    assert r["pore_free_density_g_cm3"] == pytest.approx(8.56 / vol, rel=1e-9)
    assert r["mass_fractions"]["carbon black"] == pytest.approx(6 / 8.56, rel=1e-12)
    assert r["materials"]["id"] == "materials" and len(r["materials"]["sha256"]) == 64


def test_porosity_hand_worked():
    # 1.0 mg/cm2 over 10 um -> apparent density 1e-3 g / 1e-3 cm3 = 1.0 g/cm3
    # porosity = 1 - 1.0 / 2.2942 = 0.56413
    r = gravimetric_porosity(thickness_um=10.0, areal_mass_mg_cm2=1.0, recipe=EMB1,
                             densities=DENS)
    assert r["apparent_density_g_cm3"] == pytest.approx(1.0, rel=1e-12)
    assert r["porosity_frac"] == pytest.approx(1 - 3.73108 / 8.56, abs=1e-5)
    assert r["porosity_frac"] == pytest.approx(0.56413, abs=1e-5)
    assert r["u_porosity_frac"] == 0.0  # caller densities without uncertainty, exact inputs


def test_porosity_out_of_range_names_inputs():
    with pytest.raises(MeasurementError, match=r"-0\.\d+ is outside .*thickness 5 um.*areal mass 2"):
        gravimetric_porosity(thickness_um=5.0, areal_mass_mg_cm2=2.0, recipe=EMB1)  # 4 g/cm3
    with pytest.raises(MeasurementError, match=r"0\.9\d+ is outside .*thickness 100 um"):
        gravimetric_porosity(thickness_um=100.0, areal_mass_mg_cm2=0.5, recipe=EMB1)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="'unobtainium'.*known materials: carbon black"):
        gravimetric_porosity(thickness_um=10, areal_mass_mg_cm2=1, recipe={"unobtainium": 1})
    with pytest.raises(ConfigError, match="positive total"):
        gravimetric_porosity(thickness_um=10, areal_mass_mg_cm2=1, recipe={"Ag": -1})
    with pytest.raises(MeasurementError, match="must be positive"):
        gravimetric_porosity(thickness_um=0, areal_mass_mg_cm2=1, recipe=EMB1)
    with pytest.raises(MeasurementError, match="uncertainties must be >= 0"):
        gravimetric_porosity(thickness_um=10, areal_mass_mg_cm2=1, recipe=EMB1, thickness_u_um=-1)


def test_materials_file_bad(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text('schema_version = 1\n[materials.x]\ndensity_g_cm3 = -2\n')
    with pytest.raises(ConfigError, match="'x'.*not physical"):
        load_materials(p)
    p.write_text('schema_version = 2\n')
    with pytest.raises(ConfigError, match="newer than"):
        load_materials(p)
    p.write_text('schema_version = 1\n')
    with pytest.raises(ConfigError, match="no \\[materials"):
        load_materials(p)


def test_materials_file_content():
    m = load_materials()
    assert m.table["carbon black"][0] == pytest.approx(1.86)
    assert m.table["silver"][0] == pytest.approx(10.49)
    assert m.table["pvdf"][0] == pytest.approx(1.78)
    assert {"graphite", "stainless steel"} <= set(m.table)
    assert all(u > 0 for _, u in m.table.values())


def test_uncertainty_matches_monte_carlo():
    t, ut, ma, um = 12.0, 0.3, 1.1, 0.02
    r = gravimetric_porosity(thickness_um=t, areal_mass_mg_cm2=ma, recipe=EMB1,
                             thickness_u_um=ut, areal_mass_u=um)
    mats = load_materials().table
    rng = np.random.default_rng(7)
    n = 400_000
    tt = rng.normal(t, ut, n)
    mm = rng.normal(ma, um, n)
    rho = {k: rng.normal(*mats[k], n) for k in ("carbon black", "silver", "pvdf")}
    s = (6 / rho["carbon black"] + 2 / rho["silver"] + 0.56 / rho["pvdf"]) / 8.56
    p = 1 - 10 * mm / tt * s
    assert r["u_porosity_frac"] == pytest.approx(p.std(), rel=0.03)
    assert r["porosity_frac"] == pytest.approx(p.mean(), abs=0.1 * p.std())
    assert r["U_porosity_frac"] == pytest.approx(2 * r["u_porosity_frac"], rel=1e-12)
    assert sum(r["budget"].values()) == pytest.approx(r["u_porosity_frac"] ** 2, rel=1e-12)
    assert r["budget"]["density:carbon black"] > r["budget"]["density:silver"]


# --- void reduction ---------------------------------------------------------------------------

@pytest.mark.parametrize("before, after, reported", [
    (57.1, 36.4, 36), (66.6, 44.5, 33), (69.3, 50.3, 27), (71.0, 53.0, 25)])
def test_void_reduction_patent_table1(before, after, reported):
    assert 100 * void_reduction(before, after) == pytest.approx(reported, abs=0.5)


def test_void_reduction_by_hand_and_bad():
    assert void_reduction(0.5, 0.25) == pytest.approx(0.5, rel=1e-12)
    with pytest.raises(MeasurementError, match="before > 0"):
        void_reduction(0, 0.1)


# --- cross-sections -------------------------------------------------------------------------

def _cross_section(seed, porosity, *, shape=(480, 640), layer=(90, 400), collector="bottom",
                   dtype=np.uint8, noise=8.0, blur=1.2):
    """Overlapping solid discs in a band, a bright collector band, blur and noise.

    Returns the image and the true pore fraction of the band from the generated mask."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    nx = shape[1]
    y0, y1 = layer
    band = np.zeros((y1 - y0, nx), bool)
    yy, xx = np.mgrid[0:band.shape[0], 0:nx]
    while 1 - band.mean() > porosity:
        for _ in range(20):
            r = rng.uniform(7, 18)
            cy, cx = rng.uniform(-r, band.shape[0] + r), rng.uniform(0, nx)
            a0, a1 = min(max(int(cy - r), 0), band.shape[0]), max(min(int(cy + r) + 2, band.shape[0]), 0)
            b0, b1 = max(int(cx - r), 0), min(int(cx + r) + 2, nx)
            sub = (yy[a0:a1, b0:b1] - cy) ** 2 + (xx[a0:a1, b0:b1] - cx) ** 2 <= r * r
            band[a0:a1, b0:b1] |= sub
    truth = 1 - band.mean()
    img = np.full(shape, 35.0)                       # embedding / vacuum above the layer
    img[y0:y1][band] = 150.0 + rng.normal(0, 6)      # solid
    img[y0:y1][~band] = 45.0                         # pores
    img[y1:] = 225.0                                 # current collector
    img = gaussian_filter(img, blur) + rng.normal(0, noise, shape)
    if collector == "top":
        img = img[::-1]
    full = 255.0 if dtype == np.uint8 else 65535.0
    img = np.clip(img * (full / 255.0), 0, full).astype(dtype)
    return img, truth


def _da(img, pixel=None):
    return sem_dataarray(img, path="xsec.tif", pixel_size_um=pixel,
                         pixel_size_source=None if pixel is None else "test",
                         vendor="synthetic", fmt="tiff")


@pytest.mark.slow
@pytest.mark.parametrize("porosity", [0.3, 0.45, 0.6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cross_section_porosity_within_1_5_points(seed, porosity):
    side = "bottom" if seed % 2 == 0 else "top"
    img, truth = _cross_section(seed, porosity, collector=side)
    assert abs(truth - porosity) < 0.05  # the generator did what was asked
    r = porosity_from_cross_section(_da(img))
    assert abs(r["porosity_frac"] - truth) <= 0.015
    assert r["band"][0] <= r["porosity_frac"] <= r["band"][1]
    assert r["collector_side"] == side
    # truth layer: rows 90-399 (collector at bottom), mirrored when the collector is on top
    top, bottom = (90, 399) if side == "bottom" else (80, 389)
    assert abs(r["layer_top_row"] - top) <= 10 and abs(r["layer_bottom_row"] - bottom) <= 3
    assert r["thickness_um"] is None and "no_pixel_size" in r["flags"]


def test_cross_section_uint16_and_thickness():
    img, truth = _cross_section(5, 0.45, dtype=np.uint16)
    r = porosity_from_cross_section(_da(img, pixel=(0.05, 0.05)))
    assert abs(r["porosity_frac"] - truth) <= 0.015
    assert r["thickness_um"] == pytest.approx(0.05 * r["thickness_px"], rel=1e-12)
    assert r["thickness_um"] == pytest.approx(0.05 * 310, abs=0.05 * 12)
    assert 0 < r["U_thickness_um"] < 0.05 * 12
    assert r["threshold"] > 255  # 16-bit grey levels, band step scaled by 257
    assert 0.005 < r["band"][1] - r["band"][0] < 0.08
    assert "no_pixel_size" not in r["flags"]


@pytest.mark.parametrize("value", [0, 255])
def test_cross_section_blank_image_is_unreadable(value):
    img = np.full((200, 300), value, np.uint8)
    with pytest.raises(UnreadableInput, match="xsec.tif: the image is blank") as info:
        porosity_from_cross_section(_da(img))
    assert info.value.exit_code == 4


def test_cross_section_without_contrast_is_a_measurement_error():
    # noise of a grey level or two: a real but featureless image, indeterminate (exit 3)
    rng = np.random.default_rng(5)
    img = np.clip(np.rint(rng.normal(120, 0.8, (200, 300))), 0, 255).astype(np.uint8)
    with pytest.raises(MeasurementError, match="xsec.tif: cross-section has no contrast") as info:
        porosity_from_cross_section(_da(img))
    assert info.value.exit_code == 3


def test_cross_section_collector_without_layer_is_error():
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(35, 8, (300, 400)), 0, 255)
    img[220:] = 225 + rng.normal(0, 8, (80, 400))
    with pytest.raises(MeasurementError, match="no porous layer next to the dense band"):
        porosity_from_cross_section(_da(img.astype(np.uint8)))


def test_cross_section_without_collector_is_error():
    img, _ = _cross_section(4, 0.45)
    img = img[:380]  # the collector cropped away: a porous layer on nothing
    with pytest.raises(MeasurementError, match="no current collector or substrate"):
        porosity_from_cross_section(_da(img))
