"""A verdict only on evidence: a file that failed, a property not measured or a memory limit
keeps every decision of its sample from "conforming"; `run --strict` and `gate` exit with
the same verdict; failed samples are stored and measured again."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.batch.runner import gate, run, verdict_exit_code
from pipeline.cli import app
from tests.factories import electrode, manifest


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _store_rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT sample_id, gate_outcome, record_json FROM samples "
                           "ORDER BY row_id").fetchall()


@pytest.fixture
def good(tmp_path):
    """One electrode that passes everything: porosity 0.30 (gravimetric), Sa 0.05, Sz 0.6."""
    root = tmp_path / "export"
    electrode(root / "good", seed=1, psd=False)
    manifest(root / "samples.toml", {"good": (0.30, None)})
    return root


def test_good_electrode_is_conforming(good, tmp_path):
    res = run(good, tmp_path / "out", report=False)
    s = res.samples[0]
    assert res.exit_code == 0
    assert s["gate"]["outcome"] == "conforming" and s["spec"]["met"] is True


def test_a_truncated_height_map_makes_every_verdict_indeterminate(good, tmp_path):
    _truncate(good / "good" / "height-02.x3p")
    out = tmp_path / "out"
    res = run(good, out, report=True, jobs=1)
    s = res.samples[0]
    assert res.exit_code == 4
    assert s["gate"]["outcome"] == "indeterminate"
    assert s["spec"]["met"] is None and s["spec"]["outcome"] == "indeterminate"
    for decision in (s["gate"], s["spec"]):
        assert any("height-02.x3p" in r and r.startswith("unreadable input")
                   for r in decision["reasons"]), decision["reasons"]
    # results.json, the store and the report say the same
    written = json.loads((out / "results.json").read_text())["samples"][0]
    assert written["gate"]["outcome"] == "indeterminate"
    rows = _store_rows(out / "results.db")
    assert [r[1] for r in rows] == ["indeterminate"]
    html = (out / "report.html").read_text()
    assert "height-02.x3p" in html
    # gate --json: the outcome agrees with the exit code
    r = CliRunner().invoke(app, ["gate", str(good / "good"), "--json"])
    shown = json.loads(r.stdout)
    assert r.exit_code == 4 and shown["exit_code"] == 4, r.output
    assert shown["gate"]["outcome"] == "indeterminate"
    # run --strict: an indeterminate electrode with an unreadable file is not 0
    r = CliRunner().invoke(app, ["run", str(good), "--out", str(tmp_path / "o2"), "--strict",
                                 "--no-html"])
    assert r.exit_code == 4, r.output
    assert "1 file(s) failed" in r.stdout


def test_production_gate_needs_every_property(tmp_path):
    """Porosity 54.9 % with good Sa and Sz: claim 15 is met (one or more), the production
    gate is non-conforming; with combine = "any" the gate takes the claim's reading."""
    root = tmp_path / "export"
    electrode(root / "porous", seed=2, psd=False, surface=False)
    manifest(root / "samples.toml", {"porous": (0.549, None)})
    res = run(root, None, strict=True)
    s = res.samples[0]
    assert s["spec"]["met"] is True and s["spec"]["properties"]["porosity"]["met"] is False
    assert s["gate"]["outcome"] == "non-conforming" and s["gate"]["combine"] == "all"
    assert s["gate"]["properties"]["porosity"]["statement"] == "fail"
    assert res.exit_code == 1
    r = CliRunner().invoke(app, ["run", str(root), "--out", str(tmp_path / "o"), "--strict",
                                 "--no-html"])
    assert r.exit_code == 1 and "gate non-conforming" in r.stdout, r.output
    from pipeline.config_files import calibration_file

    any_spec = tmp_path / "any.toml"
    any_spec.write_text(calibration_file("specs/gate-production.toml").read_text()
                        .replace('combine = "all"', 'combine = "any"'))
    r = CliRunner().invoke(app, ["run", str(root), "--out", str(tmp_path / "o3"), "--strict",
                                 "--no-html", "--gate-spec", str(any_spec)])
    assert r.exit_code == 0, r.output
    assert "gate conforming (any one property)" in r.stdout


def test_only_height_maps_is_indeterminate_at_the_gate(tmp_path):
    root = tmp_path / "export"
    folder = root / "maps"
    electrode(folder, seed=3, psd=False, surface=False)
    (folder / "xsec-01.tif").unlink()
    res = run(root, None, strict=True)
    s = res.samples[0]
    assert s["spec"]["met"] is True  # Sa and Sz hold: the claim's "one or more"
    assert s["gate"]["outcome"] == "indeterminate"
    assert "porosity: not measured" in s["gate"]["reasons"]
    assert res.exit_code == 3
    assert gate(folder).exit_code == 3


def test_verdict_exit_code_order():
    def rec(outcome, codes=(), state="after"):
        return {"state": state, "gate": {"outcome": outcome},
                "images": [{"exit_code": c} for c in codes]}

    assert verdict_exit_code([rec("conforming")]) == 0
    assert verdict_exit_code([rec("conforming"), rec("indeterminate")]) == 3
    assert verdict_exit_code([rec("indeterminate", [4]), rec("conforming")]) == 4
    assert verdict_exit_code([rec("indeterminate", [70]), rec("indeterminate", [4])]) == 70
    assert verdict_exit_code([rec("indeterminate", [4]), rec("non-conforming")]) == 1
    assert verdict_exit_code([rec("non-conforming", state="before")]) == 0
    assert verdict_exit_code([rec("non-conforming", state="before")], skip_before=False) == 1


def test_run_help_documents_the_exit_codes():
    r = CliRunner().invoke(app, ["run", "--help"], terminal_width=100)
    assert r.exit_code == 0
    text = " ".join(r.output.split())
    assert "Exit codes" in text and "70 internal error" in text
    assert "1 with --strict: an electrode is non-conforming" in text


# --- memory -----------------------------------------------------------------------------------

def test_a_memory_limit_refuses_before_measuring_and_a_later_run_measures_it(good, tmp_path):
    from pipeline.batch.measure import estimate_memory

    out = tmp_path / "out"
    # enough for the 96 x 128 height maps, not for the 240 x 320 surface image
    limit = estimate_memory((96, 128), "height") + 1000
    assert estimate_memory((240, 320), "surface") > limit
    res = run(good, out, report=False, max_memory=limit)
    s = res.samples[0]
    refused = [im for im in s["images"] if im["status"] == "error"]
    assert [Path(im["path"]).name for im in refused] == ["surface-100x.tif", "xsec-01.tif"]
    assert all("--max-memory" in im["error"] and im["retry"] for im in refused)
    assert res.exit_code == 4 and s["gate"]["outcome"] == "indeterminate"
    assert any(r.startswith("memory limit: ") for r in s["gate"]["reasons"])
    # the same input with a larger limit is measured again, not reused from the store
    again = run(good, out, report=False)
    s2 = again.samples[0]
    assert again.exit_code == 0 and s2["gate"]["outcome"] == "conforming"
    assert s2["stored"]["reused"] is False
    rows = _store_rows(out / "results.db")
    assert [r[1] for r in rows] == ["indeterminate", "conforming"]


def test_max_memory_option(good, tmp_path):
    r = CliRunner().invoke(app, ["run", str(good), "--out", str(tmp_path / "o"), "--no-html",
                                 "--max-memory", "66M"])
    assert r.exit_code == 4, r.output
    assert "gate indeterminate; 2 file(s) failed" in r.output
    r = CliRunner().invoke(app, ["run", str(good), "--out", str(tmp_path / "o"),
                                 "--max-memory", "lots"])
    assert r.exit_code == 2 and "--max-memory 'lots'" in r.output


def test_parse_memory():
    from pipeline.batch.measure import parse_memory
    from pipeline.errors import ConfigError

    assert parse_memory("8G") == 8 * 2**30
    assert parse_memory("512m") == 512 * 2**20
    assert parse_memory("1.5GiB") == int(1.5 * 2**30)
    assert parse_memory("2000000000") == 2_000_000_000
    with pytest.raises(ConfigError, match="less than 1 MiB"):
        parse_memory("10k")


def test_memory_error_is_exit_4_naming_the_file(good, tmp_path, monkeypatch):
    import pipeline.batch.measure

    def exhausted(da, ctx):
        raise MemoryError

    monkeypatch.setitem(pipeline.batch.measure._BY_ROLE, "height", exhausted)
    res = run(good, None, jobs=1)
    s = res.samples[0]
    bad = [im for im in s["images"] if im["status"] == "error"]
    assert len(bad) == 2 and all("out of memory" in im["error"] for im in bad)
    assert {Path(im["path"]).name for im in bad} == {"height-01.x3p", "height-02.x3p"}
    assert res.exit_code == 4 and s["gate"]["outcome"] == "indeterminate"


def test_memory_error_in_a_one_stage_command_is_exit_4(tmp_path, monkeypatch):
    import pipeline.metrology.texture

    folder = electrode(tmp_path / "e", seed=4, psd=False, surface=False)

    def exhausted(*a, **k):
        raise MemoryError

    monkeypatch.setattr(pipeline.metrology.texture, "surface_texture", exhausted)
    r = CliRunner().invoke(app, ["surface", str(folder / "height-01.x3p")])
    assert r.exit_code == 4
    assert "height-01.x3p: out of memory" in r.output and "Traceback" not in r.output


# --- failed samples ---------------------------------------------------------------------------

def test_a_failed_sample_is_stored_and_measured_again(good, tmp_path, monkeypatch):
    import pipeline.batch.task

    real = pipeline.batch.task.measure_sample

    def dies(sample, cfg, **kw):
        raise MemoryError

    out = tmp_path / "out"
    monkeypatch.setattr(pipeline.batch.task, "measure_sample", dies)
    res = run(good, out, report=False, jobs=1)
    s = res.samples[0]
    assert res.exit_code == 4 and s["task_failed"] is True
    assert s["gate"]["outcome"] == "indeterminate" and s["spec"]["met"] is None
    assert any("out of memory" in r for r in s["gate"]["reasons"])
    rows = _store_rows(out / "results.db")
    assert [(r[0], r[1]) for r in rows] == [("good", "indeterminate")]
    assert "out of memory" in rows[0][2]
    monkeypatch.setattr(pipeline.batch.task, "measure_sample", real)
    again = run(good, out, report=False, jobs=1)
    assert again.exit_code == 0 and again.samples[0]["gate"]["outcome"] == "conforming"
    assert [r[1] for r in _store_rows(out / "results.db")] == ["indeterminate", "conforming"]
    # and a third run reuses the good row
    third = run(good, out, report=False, jobs=1)
    assert third.samples[0]["stored"]["reused"] is True


# --- outputs ------------------------------------------------------------------------------------

def test_an_output_folder_that_cannot_be_made_stops_before_measuring(good, tmp_path,
                                                                    monkeypatch):
    import pipeline.batch.task

    measured = []
    monkeypatch.setattr(pipeline.batch.task, "measure_sample",
                        lambda *a, **k: measured.append(a) or 1 / 0)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    db = tmp_path / "store.db"
    r = CliRunner().invoke(app, ["run", str(good), "--out", str(blocker / "out"),
                                 "--db", f"sqlite:///{db}", "--jobs", "1"])
    assert r.exit_code == 2, r.output
    assert str(blocker / "out") in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert measured == [] and not db.exists()


def test_a_measurement_again_after_a_failure_says_why(good, tmp_path, monkeypatch):
    import pipeline.batch.task
    from pipeline.batch.persist import RETRIED

    out = tmp_path / "out"
    real = pipeline.batch.task.measure_sample
    monkeypatch.setattr(pipeline.batch.task, "measure_sample",
                        lambda *a, **k: (_ for _ in ()).throw(MemoryError))
    run(good, out, report=False, jobs=1)
    monkeypatch.setattr(pipeline.batch.task, "measure_sample", real)
    run(good, out, report=False, jobs=1)
    with sqlite3.connect(out / "results.db") as con:
        reasons = [r[0] for r in con.execute(
            "SELECT supersede_reason FROM samples ORDER BY row_id")]
    assert reasons == [None, RETRIED]
