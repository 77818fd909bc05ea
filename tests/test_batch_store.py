"""Runs with the results store: re-runs are no-ops, --force supersedes, a batch killed with
SIGKILL and run again stores every sample once with no partial rows, and the report is
rebuilt from the store alone with trend charts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from pipeline.batch.runner import run
from pipeline.batch.store import Store
from pipeline.cli import app
from tests.factories import electrode, paired_export

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("store-export")
    for i in range(3):
        electrode(root / f"e{i}", seed=30 + i, psd=False, surface=False,
                  sa=(0.04 + 0.02 * i, 0.041 + 0.02 * i))
    return root


def test_rerun_is_a_no_op_and_force_supersedes(export, tmp_path):
    out = tmp_path / "out"
    first = run(export, out, report=False)
    assert first.results["counts"]["reused_from_store"] == 0
    again = run(export, out, report=False)
    assert again.results["counts"]["reused_from_store"] == 3
    assert [s["spec"] for s in again.samples] == [s["spec"] for s in first.samples]
    forced = run(export, out, report=False, force=True)
    assert forced.results["counts"]["reused_from_store"] == 0
    with Store.open(None, out=out) as st:
        rows = st.samples(latest_only=False)
        latest = st.samples(latest_only=True)
        assert len(rows) == 6 and len(latest) == 3
        assert {r["supersede_reason"] for r in latest} == {"re-measured (--force)"}
        hist = st.history()
        assert len(hist) == 6 and int(hist["superseded"].sum()) == 3


def test_a_rerun_with_jobs_measures_nothing_and_leaves_no_worker(export, tmp_path,
                                                                  monkeypatch):
    """Everything is stored already: no sample is measured, and the pool started ahead of
    time is stopped before the run returns."""
    import multiprocessing as mp

    from pipeline.batch import task as task_mod

    out = tmp_path / "out"
    run(export, out, report=False, jobs=1)
    calls = []
    real = task_mod.measure_sample
    monkeypatch.setattr(task_mod, "measure_sample", lambda *a, **k: calls.append(a) or
                        real(*a, **k))
    again = run(export, out, report=False, jobs=2)
    assert again.results["counts"]["reused_from_store"] == 3 and calls == []
    assert mp.active_children() == []


def test_changed_input_supersedes_with_reason(export, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(export, src)
    out = tmp_path / "out"
    run(src, out, report=False)
    from pipeline import synth

    z, _ = synth.height_map((96, 128), pixel_um=0.2, sa_um=0.2, sz_um=1.5, seed=99)
    synth.write_x3p(src / "e0" / "height-03.x3p", z, dx_um=0.2, dy_um=0.2)
    res = run(src, out, report=False)
    assert res.results["counts"]["reused_from_store"] == 2
    with Store.open(None, out=out) as st:
        e0 = st.latest("e0")
        assert e0["supersede_reason"] == "new input, calibration or software"
        assert e0["record"]["metrics"]["Sa_um"]["n"] == 3


def _count(db: Path, sql: str) -> int:
    eng = sa.create_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as c:
            return int(c.execute(sa.text(sql)).scalar())
    finally:
        eng.dispose()


def test_sigkill_half_way_then_rerun_stores_each_sample_once(tmp_path):
    root = tmp_path / "export"
    n = 8
    for i in range(n):
        electrode(root / f"k{i}", seed=40 + i, surface=False)  # ~0.3 s of work each
    out = tmp_path / "out"
    db = out / "results.db"
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(root), "--out", str(out),
           "--no-html", "--jobs", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                stored = _count(db, "select count(*) from samples")
            except sa.exc.OperationalError:  # tables not created yet
                stored = 0
            if stored >= 2:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the batch finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    killed_at = _count(db, "select count(*) from samples")
    assert 2 <= killed_at < n
    # every stored sample is whole: its images are there, and no image without its sample
    assert _count(db, "select count(*) from images where sample_row_id not in "
                      "(select row_id from samples)") == 0
    assert _count(db, "select count(*) from samples s where (select count(*) from images i "
                      "where i.sample_row_id = s.row_id) != 4") == 0
    again = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert _count(db, "select count(*) from samples") == n
    assert _count(db, "select count(distinct sample_id) from samples") == n
    assert _count(db, "select count(*) from samples where supersedes is not null") == 0
    with Store.open(None, out=out) as st:
        runs = st.runs()
        assert len(runs) == 2 and runs[-1]["status"] == "completed"
        assert runs[0]["status"] != "completed"  # the killed one never finished


def test_report_from_store_with_trends(export, tmp_path):
    out = tmp_path / "out"
    run(export, out, report=False)
    run(export, out, report=False, force=True)
    rep = tmp_path / "rebuilt"
    r = CliRunner().invoke(app, ["report", "--db", f"sqlite:///{out / 'results.db'}",
                                 "--out", str(rep)])
    assert r.exit_code == 0, r.output
    html = (rep / "report.html").read_text()
    assert 'id="trends"' in html and "Individuals and moving range per metric" in html
    assert html.count('src="data:image/png;base64,') >= 3
    import json

    import jsonschema

    from pipeline.report.tables import results_schema

    data = json.loads((rep / "results.json").read_text())
    jsonschema.validate(data, results_schema())
    assert sorted(s["sample_id"] for s in data["samples"]) == ["e0", "e1", "e2"]
    assert all(s["stored"]["reused"] for s in data["samples"])


def test_report_from_an_empty_or_missing_store(tmp_path):
    r = CliRunner().invoke(app, ["report", "--db", "postgresql://u:secret@127.0.0.1:1/none",
                                 "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "secret" not in r.output


def test_changed_sidecar_changes_the_key(tmp_path):
    from pipeline.batch.config import load_run_config
    from pipeline.batch.identity import hash_files, idempotency_key, inputs
    from pipeline.ingest.discover import discover

    folder = tmp_path / "e"
    folder.mkdir()
    (folder / "psd-01.tif").write_bytes(b"image")
    (folder / "psd-01.txt").write_text("PixelSize=2.0\n")
    (folder / "other.txt").write_text("not a sidecar of psd-01")
    cfg = load_run_config()
    (s,), _ = discover(tmp_path / "e", single=True)
    assert [p.name for p in inputs(s.files)] == ["psd-01.tif", "psd-01.txt"]
    k1 = idempotency_key(s, cfg, hash_files(inputs(s.files)))
    (folder / "other.txt").write_text("changed, still not a sidecar")
    assert idempotency_key(s, cfg, hash_files(inputs(s.files))) == k1
    (folder / "psd-01.txt").write_text("PixelSize=2.5\n")
    assert idempotency_key(s, cfg, hash_files(inputs(s.files))) != k1


def test_a_lapsed_certificate_changes_the_key(tmp_path):
    """The verdict turns indeterminate the day an instrument certificate lapses, so a stored
    result from before that day is not reused after it."""
    import dataclasses
    import datetime as dt

    from pipeline.batch.config import load_run_config
    from pipeline.batch.identity import hash_files, idempotency_key, inputs
    from pipeline.ingest.discover import discover

    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "psd-01.tif").write_bytes(b"image")
    (s,), _ = discover(tmp_path / "e", single=True)
    sha = hash_files(inputs(s.files))
    cfg = load_run_config(today=dt.date(2020, 1, 1))
    dated = [p for p in cfg.profiles if p.certificate]
    assert dated, "a shipped instrument profile carries a certificate"
    until = min(p.certificate["valid_until"] for p in dated)

    def key_on(day):
        return idempotency_key(s, dataclasses.replace(cfg, today=day), sha)

    assert key_on(until) == key_on(until - dt.timedelta(days=30))
    assert key_on(until + dt.timedelta(days=1)) != key_on(until)


def test_unhashable_file_does_not_stop_the_run(tmp_path, monkeypatch):
    """A file that cannot be opened (here: it vanishes after discovery) costs only itself:
    exit 4, the rest of its sample measured."""
    from pipeline.batch.identity import hash_files

    got = hash_files([tmp_path / "gone.tif"])
    assert got[str(tmp_path / "gone.tif")].startswith("unreadable:")
    root = tmp_path / "export"
    electrode(root / "v", seed=50, psd=False, surface=False)
    victim = root / "v" / "psd-09.tif"
    victim.write_bytes(b"soon gone")
    from pipeline.batch import runner

    real = runner.hash_files
    calls = []

    def vanish_then_hash(paths):
        calls.append(paths)
        victim.unlink(missing_ok=True)
        return real(paths)

    monkeypatch.setattr(runner, "hash_files", vanish_then_hash)
    res = run(root, tmp_path / "out", report=False)
    assert calls and res.exit_code == 4
    s = res.samples[0]
    assert any("psd-09.tif" in im["path"] and im["status"] == "error" for im in s["images"])
    assert s["spec"]["properties"]["Sa"]["value"] is not None


def test_report_needs_an_existing_store(tmp_path):
    r = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "new")])
    assert r.exit_code == 2 and "no results store here" in r.output
    r = CliRunner().invoke(app, ["report", "--db", f"sqlite:///{tmp_path / 'nothere.db'}",
                                 "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and not (tmp_path / "nothere.db").exists()


def test_rerun_keeps_the_report_pictures_without_measuring(export, tmp_path, monkeypatch):
    """The pictures of stored samples are the finished ones their run kept, else drawn from
    the previews it kept; a sample with neither is measured again for its pictures only
    (nothing stored again)."""
    from pipeline.batch import task as task_mod

    out = tmp_path / "out"
    run(export, out)
    html = (out / "report.html").read_text()
    n_img = html.count("<img")
    assert len(list((out / "previews").glob("*.npz"))) == 3
    calls = []
    real = task_mod.measure_sample
    monkeypatch.setattr(task_mod, "measure_sample",
                        lambda s, *a, **k: calls.append(s.id) or real(s, *a, **k))
    again = run(export, out)
    assert again.results["counts"]["reused_from_store"] == 3 and calls == []
    assert (out / "report.html").read_text().count("<img") == n_img > 0
    # the finished pictures suffice: their previews may go
    next((out / "previews").glob("e0-*.npz")).unlink()
    run(export, out)
    assert calls == [] and (out / "report.html").read_text().count("<img") == n_img
    # without finished pictures (gone, or unreadable) the previews are drawn; without
    # those either, the sample is measured again for them
    for sid in ("e0", "e1", "e2"):
        next((out / "previews").glob(f"{sid}-*.pictures.json")).unlink()
    next((out / "previews").glob("e1-*.npz")).unlink()
    (out / "previews" / ".junk").write_bytes(b"x")
    next((out / "previews").glob("e2-*.npz")).write_bytes(b"not an npz")
    third = run(export, out)
    assert sorted(calls) == ["e0", "e1", "e2"]
    assert third.results["counts"]["reused_from_store"] == 3
    assert (out / "report.html").read_text().count("<img") == n_img
    assert len(list((out / "previews").glob("*.npz"))) == 3  # kept again
    with Store.open(None, out=out) as st:
        assert len(st.samples(latest_only=False)) == 3  # pictures only: nothing stored again


def test_input_a_then_b_then_a_again_is_current(export, tmp_path):
    import shutil

    from pipeline import synth

    src = tmp_path / "src"
    shutil.copytree(export / "e0", src / "e0")
    out = tmp_path / "out"
    a = (src / "e0" / "height-01.x3p").read_bytes()
    first = run(src, out, report=False).samples[0]["spec"]["properties"]["Sa"]["value"]
    z, _ = synth.height_map((96, 128), pixel_um=0.2, sa_um=0.3, sz_um=2.0, seed=7)
    synth.write_x3p(src / "e0" / "height-01.x3p", z, dx_um=0.2, dy_um=0.2)
    run(src, out, report=False)
    (src / "e0" / "height-01.x3p").write_bytes(a)
    back = run(src, out, report=False).samples[0]
    assert back["spec"]["properties"]["Sa"]["value"] == pytest.approx(first)
    with Store.open(None, out=out) as st:
        latest = st.latest("e0")
        assert latest["record"]["spec"]["properties"]["Sa"]["value"] == pytest.approx(first)
        assert latest["supersede_reason"] == "input restored to an earlier state"
        assert len(st.samples(latest_only=False)) == 3


def test_concurrent_store_of_the_same_input_reuses_the_other_row(export, tmp_path):
    """Two runs measure the same input; the second to store finds, in its transaction, that
    the other stored it first (its view of the store was stale) and reports that row."""
    from pipeline.batch.persist import store_record

    out = tmp_path / "out"
    rec = run(export, out, report=False).samples[0]
    key = rec["provenance"]["idempotency_key"]
    with Store.open(None, out=out) as st:
        before = len(st.samples(latest_only=False))
        run_id = st.begin_run(folder="x", package_version="0", meta={})
        got = store_record(st, dict(rec), key, run_id, None, force=False, created="now")
        assert got["stored"]["reused"] is True
        assert got["stored"]["row_id"] == st.find_key(key)["row_id"]
        assert len(st.samples(latest_only=False)) == before


def test_particle_tables_hold_each_sample_once(tmp_path):
    import pandas as pd

    from pipeline import synth

    root = tmp_path / "export"
    electrode(root / "p1", seed=60, surface=False)
    out = tmp_path / "out"
    first = run(root, out, report=False)
    n = first.samples[0]["provenance"]["particles_table"]["rows"]
    z, _ = synth.height_map((96, 128), pixel_um=0.2, sa_um=0.1, sz_um=1.2, seed=61)
    synth.write_x3p(root / "p1" / "height-03.x3p", z, dx_um=0.2, dy_um=0.2)
    run(root, out, report=False)  # new input: a new key, a new table
    assert len(pd.read_parquet(out / "tables" / "particles")) == n
    assert len(list((out / "tables" / "particles-superseded").glob("*.parquet"))) == 1
    assert len(list((out / "tables" / "particles-csv").glob("*.csv"))) == 1


@pytest.mark.parametrize("jobs", [1, 2])
def test_paired_void_reduction_is_stored_whatever_the_order(tmp_path, jobs):
    """The pressed sample comes first (by name) and waits for its before-pressing partner,
    so the store holds its void reduction, as results.json does."""
    root = paired_export(tmp_path / "export", "a-pressed", "b-coated")
    out = tmp_path / "out"
    res = run(root, out, report=False, jobs=jobs)
    want = {s["sample_id"]: s["void_reduction_pct"] for s in res.samples}
    assert want["a-pressed"] == pytest.approx(100 * (0.55 - 0.30) / 0.55, abs=4)
    with Store.open(None, out=out) as st:
        h = st.history().set_index("sample_id")
        assert h.loc["a-pressed", "void_reduction_pct"] == pytest.approx(want["a-pressed"])
        assert h.loc["b-coated", "state"] == "before"
        stored = st.latest("a-pressed")["record"]
        assert stored["void_reduction_source"] == "paired sample b-coated"


def test_an_interrupted_run_writes_what_it_measured(export, tmp_path, monkeypatch):
    import json

    from pipeline.batch import runner

    real = runner.measure_task
    calls = []

    def interrupt_second(payload):
        calls.append(payload[0].id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(payload)

    monkeypatch.setattr(runner, "measure_task", interrupt_second)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(export, out, report=False, jobs=1)
    data = json.loads((out / "results.json").read_text())
    assert data["exit_code"] == 130 and data["counts"]["not_measured"] == 2
    assert [s["sample_id"] for s in data["samples"]] == ["e0"]
    import jsonschema

    from pipeline.report.tables import results_schema

    jsonschema.validate(data, results_schema())
    with Store.open(None, out=out) as st:
        assert [r["sample_id"] for r in st.samples()] == ["e0"]
        assert [r["status"] for r in st.runs()] == ["interrupted"]
    monkeypatch.setattr(runner, "measure_task", real)
    again = run(export, out, report=False, jobs=1)  # and the next run does the rest
    assert again.exit_code == 0 and again.results["counts"]["reused_from_store"] == 1


def test_watched_pressed_sample_takes_its_stored_partner(tmp_path):
    """One sample at a time (the watcher's unit): the pressed sample's void reduction comes
    from its before-pressing partner's stored row."""
    from pipeline.batch.runner import process_sample_into_store
    from pipeline.ingest.discover import discover

    root = paired_export(tmp_path / "export", "a-pressed", "b-coated")
    samples, _ = discover(root)
    by = {s.id: s for s in samples}
    with Store.open(None, out=tmp_path / "out") as st:
        before = process_sample_into_store(by["b-coated"], st)
        after = process_sample_into_store(by["a-pressed"], st)
        b = before["spec"]["properties"]["porosity"]["value"]
        a = after["spec"]["properties"]["porosity"]["value"]
        assert after["void_reduction_pct"] == pytest.approx(100 * (b - a) / b)
        assert st.history().set_index("sample_id").loc["a-pressed", "void_reduction_pct"] == \
            pytest.approx(after["void_reduction_pct"])


def test_recording_the_run_s_end_does_not_hide_the_error_that_ended_it():
    from pipeline.batch.persist import close_store

    class Broken:
        display_url = "sqlite:///x"
        closed = False

        def finish_run(self, run_id, status):
            raise RuntimeError("database gone")

        def close(self):
            self.closed = True

    st = Broken()
    with pytest.raises(ValueError, match="the real problem"):
        try:
            raise ValueError("the real problem")
        finally:
            close_store(st, "r1", "failed")
    assert st.closed
    st = Broken()
    with pytest.raises(RuntimeError, match="database gone"):  # nothing else to report
        close_store(st, "r1", "completed")
    assert st.closed


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Three electrodes, one of them porous and rough (no claim-15 property met)."""
    root = tmp_path_factory.mktemp("mixed")
    for i, rough in enumerate((False, True, False)):
        electrode(root / f"m{i}", seed=70 + i, psd=False, surface=False,
                  sa=(0.3, 0.301) if rough else (0.04 + 0.01 * i, 0.041 + 0.01 * i),
                  sz=(2.0, 2.1) if rough else (0.6, 0.62),
                  xsec_porosity=0.55 if rough else 0.35)
    return root


def test_pictures_only_for_samples_that_need_attention(mixed, tmp_path, monkeypatch):
    import json

    from pipeline.batch import runner
    from pipeline.batch import task as task_mod

    monkeypatch.setattr(runner, "PICTURES_ALL_UP_TO", 2)  # "auto" on 3 samples: attention
    out = tmp_path / "out"
    res = run(mixed, out)
    outcome = {s["sample_id"]: s["gate"]["outcome"] for s in res.samples}
    assert outcome == {"m0": "conforming", "m1": "non-conforming", "m2": "conforming"}
    data = json.loads((out / "results.json").read_text())
    assert data["report_pictures"] == {"policy": "attention", "samples": 3, "with_pictures": 1,
                                       "all_up_to": 2}
    html = (out / "report.html").read_text()
    assert "Pictures are shown for the 1 of 3 samples that need attention" in html
    sections = {}
    for sec in html.split('<section class="sample"')[1:]:
        head = sec.split("</h2>")[0]
        sections[next(sid for sid in ("m0", "m1", "m2") if sid in head)] = sec
    assert "<img" in sections["m1"] and "<img" not in sections["m0"] + sections["m2"]
    assert [p.name.split("-")[0] for p in (out / "previews").glob("*.npz")] == ["m1"]
    calls = []
    real = task_mod.measure_sample
    monkeypatch.setattr(task_mod, "measure_sample",
                        lambda s, *a, **k: calls.append(s.id) or real(s, *a, **k))
    again = run(mixed, out)  # the conforming ones need no pictures: nothing is measured
    assert calls == [] and again.results["counts"]["reused_from_store"] == 3
    assert (out / "report.html").read_text().count("<img") == html.count("<img")
    everything = run(mixed, out, pictures="all")  # their pictures now: measured for them
    assert sorted(calls) == ["m0", "m2"]
    assert everything.results["report_pictures"]["with_pictures"] == 3
    assert (out / "report.html").read_text().count("<img") > html.count("<img")


def test_pictures_none_and_a_bad_choice(mixed, tmp_path):
    from pipeline.errors import ConfigError

    res = run(mixed, tmp_path / "out", pictures="none")
    assert res.results["report_pictures"]["with_pictures"] == 0
    assert "data:image/png" not in (tmp_path / "out" / "report.html").read_text()
    kept = [p.name for p in (tmp_path / "out" / "previews").glob("*")]
    assert kept == ["tables.json"]  # no pictures kept; the tables' state only
    with pytest.raises(ConfigError, match="pictures 'some': expected one of auto, all"):
        run(mixed, tmp_path / "o2", pictures="some")
    r = CliRunner().invoke(app, ["run", str(mixed), "--out", str(tmp_path / "o3"),
                                 "--pictures", "some"])
    assert r.exit_code == 2 and "expected one of" in r.output


def test_a_run_that_fails_early_records_it_and_keeps_its_error(export, tmp_path, monkeypatch):
    from pipeline.batch import runner

    def boom(*a, **k):
        raise RuntimeError("boom while planning")

    monkeypatch.setattr(runner, "_plan", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom while planning"):
        run(export, out, report=False, jobs=1)
    with Store.open(None, out=out) as st:
        assert [r["status"] for r in st.runs()] == ["failed"] and st.samples() == []
