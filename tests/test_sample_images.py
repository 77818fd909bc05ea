"""The committed example electrodes in sample_images/ agree with their manifest, their truth
files and the patent's Tables 1 and 2, and the generator script reproduces them byte for byte.

The patent values are typed in here (not taken from the script) so that the script and the
files are checked against an independent copy.
"""

from __future__ import annotations

import json
import math
import runpy
import tomllib
from pathlib import Path

import numpy as np
import pytest

import pipeline
from pipeline.gravimetric import gravimetric_porosity
from pipeline.metrology.form import remove_plane
from pipeline.metrology.height import height_parameters

SAMPLES = Path(__file__).resolve().parents[1] / "sample_images"

# Table 1 (porosity %, before / after isostatic pressing; void reduction %) and Table 2 (Sa, Sz
# in um; Comparative Example 3 is not in the patent: the values asked for in issue 5).
TABLE_1 = {"embodiment-1": (57.1, 36.4, 36), "comparative-1": (66.6, 44.5, 33),
           "comparative-2": (69.3, 50.3, 27), "comparative-3": (71.0, 53.0, 25)}
TABLE_2 = {"embodiment-1": (0.07, 0.92), "comparative-1": (0.13, 1.13),
           "comparative-2": (0.18, 1.52), "comparative-3": (0.20, 1.70)}
# carbon-black sizes (nm) of each example and the number share of each
MODES_NM = {"embodiment-1": [40, 80], "comparative-1": [40], "comparative-2": [120],
            "comparative-3": [120, 200]}
FILES = ["psd-01.tif", "surface-100x.tif", "xsec-01.tif", "height-01.x3p", "height-02.x3p"]
IDS = list(TABLE_1)


def _manifest() -> dict:
    with (SAMPLES / "samples.toml").open("rb") as f:
        return tomllib.load(f)


def _sample(sample_id: str) -> dict:
    (s,) = [s for s in _manifest()["sample"] if s["id"] == sample_id]
    return s


def _truth(path: Path) -> dict:
    return json.loads(Path(str(path) + ".truth.json").read_text())


def test_layout_and_manifest_ids():
    m = _manifest()
    assert m["schema_version"] == 1
    assert [s["id"] for s in m["sample"]] == IDS
    folders = sorted(p.name for p in SAMPLES.iterdir() if p.is_dir())
    assert folders == sorted(IDS)
    for sid in IDS:
        names = sorted(p.name for p in (SAMPLES / sid).iterdir())
        assert names == sorted(FILES + [f + ".truth.json" for f in FILES]), sid


def test_total_size_under_budget():
    total = sum(p.stat().st_size for p in SAMPLES.rglob("*") if p.is_file())
    assert total < 25e6, f"sample_images/ holds {total / 1e6:.2f} MB"


@pytest.mark.parametrize("sample_id", IDS)
def test_manifest_reproduces_table_1(sample_id):
    s = _sample(sample_id)
    before_pct, after_pct, reduction_pct = TABLE_1[sample_id]
    r = s["recipe"]
    carbon = sum(v for k, v in r.items() if k.split("/")[0] == "carbon_black")
    assert (carbon, r["silver"], r["pvdf"]) == (6.0, 2.0, 0.56)
    assert sorted(int(k.split("/")[1].removesuffix("nm")) for k in r
                  if k.startswith("carbon_black/")) == MODES_NM[sample_id]
    assert s.get("state", "after") == "after"
    assert s["expected_min_diameter_nm"] == MODES_NM[sample_id][0]
    got = {}
    for state, entry in (("after", s), ("before", s["before"])):
        assert entry["areal_mass_mg_cm2"] == s["areal_mass_mg_cm2"]
        assert entry["thickness_um"] == round(entry["thickness_um"], 2)
        g = gravimetric_porosity(thickness_um=entry["thickness_um"],
                                 areal_mass_mg_cm2=entry["areal_mass_mg_cm2"], recipe=r,
                                 thickness_u_um=entry["u_thickness_um"],
                                 areal_mass_u=entry["u_areal_mass_mg_cm2"])
        got[state] = 100.0 * g["porosity_frac"]
    assert got["before"] == pytest.approx(before_pct, abs=0.1)
    assert got["after"] == pytest.approx(after_pct, abs=0.1)
    reduction = 100.0 * (got["before"] - got["after"]) / got["before"]
    assert reduction == pytest.approx(reduction_pct, abs=1.0)


@pytest.mark.parametrize("sample_id", IDS)
def test_height_maps_match_truth_and_table_2(sample_id):
    sa, sz = [], []
    for name in ("height-01.x3p", "height-02.x3p"):
        path = SAMPLES / sample_id / name
        truth = _truth(path)
        da = pipeline.read(path)
        ps = da.attrs["pixel_size_um"]
        assert (ps["x"], ps["y"]) == (pytest.approx(truth["pixel_um"], rel=1e-9),) * 2
        assert list(da.shape) == truth["shape"]
        z = np.asarray(da.values, dtype=np.float64)
        assert np.isnan(z).mean() == pytest.approx(truth["invalid_fraction"], abs=0.002)
        hp = height_parameters(remove_plane(z, ps["x"], ps["y"]))
        assert hp["Sa_um"] == pytest.approx(truth["sa_um"], rel=1e-4)
        assert hp["Sz_um"] == pytest.approx(truth["sz_um"], rel=1e-4)
        assert 0 < len(truth["protrusions"])
        assert max(b["height_um"] for b in truth["protrusions"]) < truth["sz_um"]
        sa.append(hp["Sa_um"])
        sz.append(hp["Sz_um"])
    assert sa[0] != sa[1]  # two different maps
    assert np.mean(sa) == pytest.approx(TABLE_2[sample_id][0], abs=1e-4)
    assert np.mean(sz) == pytest.approx(TABLE_2[sample_id][1], abs=1e-4)


@pytest.mark.parametrize("sample_id", IDS)
def test_psd_image_holds_the_modes(sample_id):
    path = SAMPLES / sample_id / "psd-01.tif"
    truth = _truth(path)
    da = pipeline.read(path)
    assert list(da.shape) == truth["shape"]
    px_nm = 1e3 * da.attrs["pixel_size_um"]["x"]
    assert px_nm == pytest.approx(truth["pixel_nm"], rel=1e-9)
    assert px_nm <= min(MODES_NM[sample_id]) / 20.0 + 1e-9
    assert [m[0] for m in truth["modes"]] == MODES_NM[sample_id]
    whole = [p for p in truth["particles"] if not p["touches_edge"]]
    assert any(p["phase"] == "silver" for p in whole)
    for k, d_nm in enumerate(MODES_NM[sample_id]):
        d = np.array([p["diameter_nm"] for p in whole if p["mode"] == k])
        assert d.size >= 500, f"mode {k}: {d.size} whole particles"
        assert math.exp(np.log(d).mean()) == pytest.approx(d_nm, rel=0.03)


@pytest.mark.parametrize("sample_id", IDS)
def test_cross_section_and_surface(sample_id):
    s = _sample(sample_id)
    path = SAMPLES / sample_id / "xsec-01.tif"
    truth = _truth(path)
    da = pipeline.read(path)
    assert list(da.shape) == truth["shape"]
    assert 1e3 * da.attrs["pixel_size_um"]["x"] == pytest.approx(50.0, rel=1e-9)
    assert 100 * truth["porosity_frac"] == pytest.approx(TABLE_1[sample_id][1], abs=0.2)
    rows = truth["layer_bottom_row"] - truth["layer_top_row"] + 1
    assert rows * 0.05 == pytest.approx(s["thickness_um"], abs=0.05)

    path = SAMPLES / sample_id / "surface-100x.tif"
    truth = _truth(path)
    da = pipeline.read(path)
    assert list(da.shape) == truth["shape"]
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(1.0, rel=1e-9)
    assert truth["count"] == len(truth["protrusions"])


def test_embodiment_has_fewest_surface_protrusions():
    counts = {sid: _truth(SAMPLES / sid / "surface-100x.tif")["count"] for sid in IDS}
    assert all(counts["embodiment-1"] * 4 < counts[sid] for sid in IDS[1:]), counts


def test_script_regenerates_identical_bytes(tmp_path, capsys):
    """One electrode (the quickest, ~1.5 s) and the manifest, regenerated into tmp_path."""
    # run_path compiles the script without writing sample_images/__pycache__
    main = runpy.run_path(str(SAMPLES / "make_samples.py"), run_name="make_samples")["main"]
    assert main(["--out", str(tmp_path), "--only", "comparative-2"]) == 0
    assert "comparative-2" in capsys.readouterr().out
    assert (tmp_path / "samples.toml").read_bytes() == (SAMPLES / "samples.toml").read_bytes()
    new = sorted(p.name for p in (tmp_path / "comparative-2").iterdir())
    assert new == sorted(FILES + [f + ".truth.json" for f in FILES])
    for name in new:
        a = (tmp_path / "comparative-2" / name).read_bytes()
        b = (SAMPLES / "comparative-2" / name).read_bytes()
        assert a == b, f"{name} differs from the committed file"
