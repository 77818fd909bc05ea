"""The notebook API gives production's numbers: `pipeline.read` applies the instrument
profile as a run does, `pipeline.measure` is a run's per-file measurement, the ``eqc``
accessor chains steps on a DataArray, and every exported function's example runs."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

import pipeline
from pipeline.synth import particle_image, write_sem_tiff
from tests.helpers import ROOT

FAST_DOCTESTS = ["pipeline.api", "pipeline.conformity", "pipeline.metrology.recipe",
                 "pipeline.metrology.texture", "pipeline.segmentation.cross_section",
                 "pipeline.segmentation.particles", "pipeline.segmentation.psd",
                 "pipeline.segmentation.protrusions", "pipeline.gravimetric",
                 "pipeline.numerics", "pipeline.jsonio", "pipeline.config_files",
                 "pipeline.batch.results", "pipeline.resultdict", "pipeline.batch.records",
                 "pipeline.uncertainty", "pipeline.ingest.discover"]


def _doctest(name: str, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples read sample_images/
    monkeypatch.delenv("ELECTRODE_QC_CALIBRATION", raising=False)
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0, res


@pytest.mark.parametrize("name", FAST_DOCTESTS)
def test_examples_in_the_docstrings_run(name, monkeypatch):
    _doctest(name, monkeypatch)


@pytest.mark.slow
def test_examples_of_run_and_gate(monkeypatch):
    _doctest("pipeline.batch.runner", monkeypatch)


def test_every_exported_name_has_an_example():
    for name in pipeline.__all__:
        if name == "__version__":
            continue
        obj = getattr(pipeline, name)
        doc = obj.__doc__ or ""
        if isinstance(obj, type):  # a class: its example may be on the class or not at all
            continue
        assert ">>> " in doc, f"pipeline.{name} has no example"


def _synth_site(tmp_path, monkeypatch, factor: float = 1.1):
    site = tmp_path / "site"
    (site / "instruments").mkdir(parents=True)
    (site / "instruments" / "synth.toml").write_text(
        'schema_version = 1\nid = "synth-fei"\n[match]\nvendor = "FEI"\n'
        f'model = "electrode-qc synth"\n[pixel_size]\ncorrection_factor = {factor}\n'
        'uncertainty_rel = 0.01\n')
    monkeypatch.setenv("ELECTRODE_QC_CALIBRATION", str(site))
    img, _ = particle_image((256, 320), seed=3)
    return write_sem_tiff(tmp_path / "psd-01.tif", img, pixel_um=0.002)


def test_read_applies_the_matching_profile_as_production_does(tmp_path, monkeypatch):
    tif = _synth_site(tmp_path, monkeypatch)
    raw = pipeline.read(tif, calibrate=False)
    da = pipeline.read(tif)
    assert da.attrs["calibration"] == "profile:synth-fei"
    assert da.attrs["pixel_size_um"]["x"] == pytest.approx(1.1 * raw.attrs["pixel_size_um"]["x"])
    # the file's record in a run carries the same pixel size
    rec = pipeline.measure(tif)
    assert rec["calibration"] == "profile:synth-fei"
    assert rec["pixel_size_um"]["x"] == pytest.approx(da.attrs["pixel_size_um"]["x"])


def test_measure_is_the_runs_measurement_of_the_file(tmp_path):
    from pipeline.batch.runner import run

    res = run(ROOT / "sample_images" / "embodiment-1", None, single=True, report=False,
              store=False)
    by_path = {im["path"]: im for im in res.samples[0]["images"]}
    for name in ("height-01.x3p", "xsec-01.tif"):
        f = ROOT / "sample_images" / "embodiment-1" / name
        rec = pipeline.measure(f)
        ran = by_path[str(f)]
        assert rec["role"] == ran["role"] and rec["status"] == ran["status"] == "ok"
        for k in ("Sa_um", "Sz_um", "porosity_frac", "thickness_um"):
            if k in ran["results"]:
                assert rec["results"][k] == pytest.approx(ran["results"][k], rel=1e-12)


def test_accessor_chains_steps_and_keeps_coordinates():
    da = pipeline.read(ROOT / "sample_images" / "embodiment-1" / "height-01.x3p")
    out = da.eqc.level("plane").eqc.band(None, 5.0)
    assert out.dims == da.dims and out.shape == da.shape
    np.testing.assert_array_equal(out["x"].values, da["x"].values)
    assert out.attrs["source_path"] == da.attrs["source_path"] and out.attrs["levelled"] == "plane"
    # a levelled map's mean is zero; the texture of the chain equals the one-call result
    assert abs(float(np.nanmean(da.eqc.level("plane").values))) < 1e-9
    one = pipeline.surface_texture(da, level="plane", lambda_s=None, lambda_c=5.0)
    chained = out.eqc.texture(level="none")
    assert chained["Sa_um"] == pytest.approx(one["Sa_um"], rel=1e-6)


def test_accessor_refuses_a_map_without_pixel_size():
    from pipeline.errors import MissingCalibration

    da = pipeline.read(ROOT / "sample_images" / "embodiment-1" / "height-01.x3p")
    bare = da.copy()
    bare.attrs["pixel_size_um"] = None
    with pytest.raises(MissingCalibration, match="no pixel size"):
        bare.eqc.level("plane")


def test_read_without_xarray_gives_a_raster_where_no_profile_applies(monkeypatch):
    from pipeline.ingest.dataarray import Raster

    monkeypatch.delenv("ELECTRODE_QC_CALIBRATION", raising=False)
    r = pipeline.read(ROOT / "sample_images" / "embodiment-1" / "psd-01.tif", as_xarray=False)
    assert isinstance(r, Raster) and r.attrs["kind"] == "sem"


def test_science_results_read_well_and_stay_dicts():
    import json
    import pickle

    from pipeline.jsonio import to_json

    da = pipeline.read(ROOT / "sample_images" / "embodiment-1" / "height-01.x3p")
    r = pipeline.surface_texture(da)
    assert repr(r).startswith("SurfaceTexture(Sa_um=0.068") and isinstance(r, dict)
    frame = r.to_frame()
    assert frame.shape[0] == 1 and frame["Sa_um"].iloc[0] == r["Sa_um"]
    again = pickle.loads(pickle.dumps(r))  # as a worker sends it back
    assert type(again) is type(r) and again == r
    assert json.loads(to_json(r))["Sa_um"] == r["Sa_um"]
