"""One definition of the particles that count: every path gives the same x50 for an image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import pipeline
from pipeline.cli import app
from pipeline.segmentation.particles import find_particles
from pipeline.segmentation.psd import aggregate_primaries, counted, size_distribution


@pytest.fixture(scope="module")
def sem_file(tmp_path_factory):
    from pipeline.synth import particle_image, write_sem_tiff

    img, _ = particle_image((384, 512), pixel_nm=2.0, seed=5)
    return write_sem_tiff(tmp_path_factory.mktemp("paths") / "psd.tif", img, pixel_um=0.002)


def test_notebook_cli_and_file_record_give_one_x50(sem_file):
    from pipeline.batch.measure import _psd

    da = pipeline.read(sem_file)
    table = find_particles(da)
    notebook = size_distribution(table)["x50_nm"]
    r = CliRunner().invoke(app, ["particles", str(sem_file), "--json"])
    assert r.exit_code == 0, r.output
    cli = json.loads(r.stdout)[0]["x50_nm"]
    record = _psd(da, {})[0]["ecd_median_nm"]
    # the rows that count are carbon, inner, not merge suspects: the median of exactly those
    kept = table[counted(table)]["ecd_nm"]
    assert notebook == pytest.approx(float(np.median(kept)), rel=1e-12)
    assert cli == pytest.approx(notebook, rel=1e-12)
    assert record == pytest.approx(notebook, rel=1e-12)
    # silver and merge suspects are not in it
    assert len(kept) < len(table)
    # the aggregate-based primary size: one value per whole aggregate, the same everywhere
    prim = size_distribution(table)["primary_size"]
    per_agg = aggregate_primaries(table)
    assert prim["n_aggregates"] == per_agg.size > 0
    assert prim["mean_nm"] == pytest.approx(float(per_agg.mean()), rel=1e-12)
    assert json.loads(r.stdout)[0]["primary_size"]["mean_nm"] == pytest.approx(prim["mean_nm"], rel=1e-12)
    assert _psd(da, {})[0]["primary_size_nm"] == pytest.approx(prim["mean_nm"], rel=1e-12)


def test_counted_excludes_edge_silver_and_merge_suspects():
    import pandas as pd

    t = pd.DataFrame({"ecd_nm": [40.0, 50.0, 60.0, 70.0, np.nan],
                      "phase": ["carbon", "silver", "carbon", "carbon", "carbon"],
                      "touches_edge": [False, False, True, False, False],
                      "merge_suspect": [False, False, False, True, False]})
    assert counted(t).tolist() == [True, False, False, False, False]
    assert counted(t, "silver").tolist() == [False, True, False, False, False]


def test_unknown_method_is_refused(sem_file):
    with pytest.raises(ValueError, match="method must be one of"):
        find_particles(pipeline.read(sem_file), method="magic")


@pytest.mark.parametrize("method", ["seams", "classic"])
def test_particles_command_takes_the_method(sem_file, method):
    """A method other than the default ('learned') gives its own numbers."""
    r = CliRunner().invoke(app, ["particles", str(sem_file), "--json", "--method", method])
    assert r.exit_code == 0, r.output
    x50 = json.loads(r.stdout)[0]["x50_nm"]
    da = pipeline.read(sem_file)
    assert x50 == pytest.approx(size_distribution(find_particles(da, method=method))["x50_nm"])
    assert x50 != pytest.approx(size_distribution(find_particles(da))["x50_nm"], rel=1e-9)


def test_unknown_method_on_the_command_line(sem_file):
    bad = CliRunner().invoke(app, ["particles", str(sem_file), "--method", "magic"])
    assert bad.exit_code == 2 and "--method" in bad.output


def test_run_results_json_gives_the_same_x50(sem_file, tmp_path):
    """A one-image electrode: results.json's pooled x50 is the notebook's x50 of that image."""
    import shutil

    from pipeline.batch.runner import run

    root = tmp_path / "export"
    (root / "e1").mkdir(parents=True)
    shutil.copy(sem_file, root / "e1" / "psd-01.tif")
    out = tmp_path / "out"
    run(root, out, report=False)
    doc = json.loads((out / "results.json").read_text())
    (sample,) = [s for s in doc["samples"] if s["sample_id"] == "e1"]
    dist = size_distribution(find_particles(pipeline.read(sem_file)))
    notebook = dist["x50_nm"]
    assert sample["metrics"]["psd"]["x50_nm"] == pytest.approx(notebook, rel=1e-12)
    assert sample["metrics"]["psd"]["primary_size"]["mean_nm"] == pytest.approx(
        dist["primary_size"]["mean_nm"], rel=1e-12)
    (image,) = [im for im in sample["images"] if im["role"] == "psd"]
    assert image["results"]["ecd_median_nm"] == pytest.approx(notebook, rel=1e-12)
