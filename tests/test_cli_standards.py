import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app


def _tiff_height(path, z, px_um):
    import tifffile

    tifffile.imwrite(path, z.astype(np.float32),
                     metadata={"pixel_size_um": {"x": px_um, "y": px_um}, "z_unit": "um"})


def test_calibrate_grating_writes_a_profile(tmp_path):
    # a 2-D sinusoidal grating, period 17.3 px, pitch 500 nm -> 500/17.3 nm per pixel
    y, x = np.mgrid[0:300, 0:320]
    z = np.sin(2 * np.pi * x / 17.3) + np.sin(2 * np.pi * y / 17.3)
    img = tmp_path / "grating.tif"
    _tiff_height(img, z, 0.03)  # recorded pixel 30 nm; true 28.90 nm
    out = tmp_path / "prof.toml"
    r = CliRunner().invoke(app, ["calibrate", "grating", str(img), "--pitch-nm", "500",
                                 "--out", str(out), "--json"])
    assert r.exit_code == 2 and "needs at least one of vendor" in r.output  # nothing to match
    r = CliRunner().invoke(app, ["calibrate", "grating", str(img), "--pitch-nm", "500",
                                 "--out", str(out), "--vendor", "Acme", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["profile"] == str(out) and out.is_file()
    from pipeline.instruments import load_profile

    prof = load_profile(out)
    assert prof.id == "prof"
    assert res["x"]["pixel_size_um"] == pytest.approx(0.5 / 17.3, rel=2e-3)


def test_calibrate_step_reports_z_scale(tmp_path):
    z = np.zeros((120, 160))
    z[:, 80:] = 1.0  # measured 1.0 um step
    z += np.random.default_rng(0).normal(scale=0.002, size=z.shape)
    m = tmp_path / "step.tif"
    _tiff_height(m, z, 0.5)
    r = CliRunner().invoke(app, ["calibrate", "step", str(m), "--height-um", "1.02", "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["z_scale"] == pytest.approx(1.02, rel=5e-3)


def test_calibrate_grating_on_noise_is_refused(tmp_path):
    img = tmp_path / "noise.tif"
    _tiff_height(img, np.random.default_rng(1).normal(size=(128, 128)), 0.03)
    r = CliRunner().invoke(app, ["calibrate", "grating", str(img), "--pitch-nm", "500"])
    # read, but nothing to measure: a measurement failure (3), not unreadable input (4)
    assert r.exit_code == 3 and "Traceback" not in r.output
