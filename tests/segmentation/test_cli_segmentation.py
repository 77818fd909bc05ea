import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from pipeline.cli import app


def _imagej_sem(path, img, px_um):
    tifffile.imwrite(path, img, imagej=True, resolution=(1 / px_um, 1 / px_um),
                     metadata={"unit": "um"})


def test_protrusions_command(tmp_path):
    p = tmp_path / "surface.tif"
    _imagej_sem(p, _bumps(), 1.0)
    r = CliRunner().invoke(app, ["protrusions", str(p), "--bump-diameter-um", "12", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)[0]
    assert out["count"] == 3
    assert abs(out["per_mm2"] - 3 / (0.24 * 0.32)) < 1.0


def _bumps(seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:240, 0:320]
    img = 100 + rng.normal(scale=4, size=x.shape)
    for cy, cx in ((60, 60), (120, 200), (180, 100)):
        img += 70 * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * 5.0**2))
    return np.clip(img, 0, 255).astype(np.uint8)


def test_protrusions_command_refuses_an_uncalibrated_image(tmp_path):
    p = tmp_path / "nocal.tif"
    tifffile.imwrite(p, _bumps())  # a plain TIFF: no pixel size anywhere
    r = CliRunner().invoke(app, ["protrusions", str(p)])
    assert r.exit_code == 3, r.output  # missing calibration: indeterminate
    assert "no pixel size" in r.output and "None per mm2" not in r.output
    assert "Traceback" not in r.output


def test_protrusions_command_refuses_a_blank_image(tmp_path):
    p = tmp_path / "blank.tif"
    _imagej_sem(p, np.zeros((240, 320), np.uint8), 1.0)
    r = CliRunner().invoke(app, ["protrusions", str(p), "--json"])
    assert r.exit_code == 4, r.output
    assert "the image is blank" in json.loads(r.stdout)[0]["error"]


def test_porosity_command_refuses_a_blank_image(tmp_path):
    p = tmp_path / "flat.tif"
    _imagej_sem(p, np.full((100, 120), 128, np.uint8), 0.01)
    r = CliRunner().invoke(app, ["porosity", str(p)])
    assert r.exit_code == 4, r.output
    assert "the image is blank" in r.output
    assert "Traceback" not in r.output


def test_porosity_command_without_a_collector_is_indeterminate(tmp_path):
    # a real-looking image in which the measurement finds no current collector: exit 3
    rng = np.random.default_rng(2)
    p = tmp_path / "dark.tif"
    _imagej_sem(p, np.clip(rng.normal(60, 20, (200, 240)), 0, 255).astype(np.uint8), 0.01)
    r = CliRunner().invoke(app, ["porosity", str(p)])
    assert r.exit_code == 3, r.output
    assert "no current collector or substrate" in r.output


def test_particles_command_finding_nothing_is_indeterminate(tmp_path):
    rng = np.random.default_rng(0)
    p = tmp_path / "noise.tif"
    _imagej_sem(p, np.clip(rng.normal(60, 8, (256, 256)), 0, 255).astype(np.uint8), 0.002)
    r = CliRunner().invoke(app, ["particles", str(p), "--json"])
    assert r.exit_code == 3, r.output
    assert "no particles found" in json.loads(r.stdout)[0]["error"]


def test_particles_command_on_a_synthetic_fei_image(tmp_path):
    from pipeline.synth import particle_image, write_sem_tiff

    img, _truth = particle_image((384, 512), pixel_nm=2.0, seed=3)
    p = write_sem_tiff(tmp_path / "psd.tif", img, pixel_um=0.002)
    out_table = tmp_path / "particles.parquet"
    r = CliRunner().invoke(app, ["particles", str(p), "--json", "--table", str(out_table)])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)[0]
    assert res["n"] > 50 and res["modes"]
    import pandas as pd

    assert len(pd.read_parquet(out_table)) >= res["n"]
    contract = {"path", "n", "x10_nm", "x50_nm", "x90_nm", "modes", "bic_k", "share_ge_100nm",
                "merge_suspect_share", "ag_area_frac", "flags"}
    assert contract <= set(res)
    for m in res["modes"]:
        assert {"mean_nm", "sd_nm", "number_share", "volume_share", "n"} <= set(m)
    assert res["x10_nm"] < res["x50_nm"] < res["x90_nm"]


def test_particles_command_keeps_good_files_when_one_is_bad(tmp_path):
    from pipeline.synth import particle_image, write_sem_tiff

    img, _ = particle_image((384, 512), pixel_nm=2.0, seed=4)
    good = write_sem_tiff(tmp_path / "good.tif", img, pixel_um=0.002)
    black = write_sem_tiff(tmp_path / "black.tif", np.zeros_like(img), pixel_um=0.002)
    r = CliRunner().invoke(app, ["particles", str(black), str(good), "--json"])
    assert r.exit_code == 4, r.output  # a blank image is unreadable input
    res = json.loads(r.stdout)
    assert "the image is blank" in res[0]["error"] and "all black" in res[0]["error"]
    assert "black.tif" in res[0]["path"]
    assert res[1]["n"] > 50


@pytest.mark.slow
def test_porosity_command_on_a_synthetic_cross_section(tmp_path):
    from pipeline.synth import cross_section_image, write_sem_tiff

    img, truth = cross_section_image(porosity=0.45, seed=2)
    p = write_sem_tiff(tmp_path / "xsec.tif", img, pixel_um=0.05)
    r = CliRunner().invoke(app, ["porosity", str(p), "--json"])
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert res["path"] == str(p)
    assert abs(res["porosity_frac"] - truth["porosity_frac"]) <= 0.015
    lo, hi = res["band"]
    assert lo <= res["porosity_frac"] <= hi
