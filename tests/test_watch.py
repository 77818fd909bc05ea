"""pipeline.batch.watch: files measured once complete, bad files quarantined, nothing missed, clean stop.

The watcher runs in a thread (or, for signals, a subprocess) with short intervals; every
wait has a timeout, so a broken watcher fails a test instead of hanging it. Each test runs
against an in-memory fake of the store and the real one on SQLite.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.batch import watch as watch_module
from pipeline.batch.watch import Watcher
from pipeline.errors import ConfigError, UnreadableInput
from pipeline.ingest.registry import read, sha256_file
from pipeline.synth import write_sem_tiff, write_x3p
from tests.helpers import ROOT

TIMEOUT = 10.0  # seconds any single wait may take before the test fails
STABLE = 0.4
BROKEN = b"II*\x00" + bytes(range(256)) * 8  # a TIFF magic, then nothing a reader accepts


class FakeStore:
    """The two Store methods the watcher uses, in memory (`pipeline.batch.store.Store` API)."""

    url = "memory://"

    def __init__(self):
        self.rows: list[dict] = []
        self._lock = threading.Lock()

    def quarantine(self, path, reason, *, sha256=None, run_id=None) -> int:
        with self._lock:
            self.rows.append({"row_id": len(self.rows) + 1, "path": str(path), "sha256": sha256,
                              "reason": reason, "run_id": run_id})
            return len(self.rows)

    def quarantined(self) -> list[dict]:
        with self._lock:
            return [dict(r) for r in self.rows]

    def close(self) -> None:
        pass


@pytest.fixture(params=["fake", "sqlite"])
def store(request, tmp_path):
    if request.param == "fake":
        yield FakeStore()
        return
    from pipeline.batch.store import Store

    s = Store.open(None, out=tmp_path / "out")
    try:
        yield s
    finally:
        s.close()


@dataclass
class Call:
    id: str
    files: dict[str, str]  # file name -> SHA-256 of its bytes when process_sample was called
    notes: list[str]
    manifest: dict


class Recorder:
    """A `process_sample` that records what it was given; `wait` for calls with a timeout."""

    def __init__(self, fail: Exception | None = None, fail_times: int = 0):
        self.calls: list[Call] = []
        self._cond = threading.Condition()
        self._fail, self._fail_times = fail, fail_times

    def __call__(self, sample):
        call = Call(sample.id, {f.name: sha256_file(f) for f in sample.files},
                    list(sample.notes), dict(sample.manifest))
        with self._cond:
            self.calls.append(call)
            self._cond.notify_all()
        if self._fail is not None and self._fail_times > 0:
            self._fail_times -= 1
            raise self._fail

    def of(self, sid: str) -> list[Call]:
        with self._cond:
            return [c for c in self.calls if c.id == sid]

    def wait(self, sid: str, n: int = 1) -> list[Call]:
        with self._cond:
            ok = self._cond.wait_for(lambda: sum(c.id == sid for c in self.calls) >= n, TIMEOUT)
            assert ok, f"sample {sid} not processed {n}x within {TIMEOUT} s; calls: {self.calls}"
        return self.of(sid)


def wait_until(pred, what: str, timeout: float = TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def running(watcher: Watcher):
    """Run `watcher.run()` in a thread; stop it and re-raise its error on exit."""
    errors: list[BaseException] = []

    def target():
        try:
            watcher.run()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    try:
        yield errors
    finally:
        watcher.stop()
        t.join(timeout=TIMEOUT)
    assert not t.is_alive(), f"the watcher did not stop within {TIMEOUT} s"
    if errors:
        raise errors[0]


def make_watcher(folder, store, rec, **kw) -> Watcher:
    kw = {"stable_seconds": STABLE, "scan_interval_s": 60.0, "poll_interval_s": 0.1, **kw}
    return Watcher(folder, store=store, process_sample=rec, **kw)


def x3p_bytes(tmp_path: Path, n: int = 64, seed: int = 0) -> bytes:
    z = np.random.default_rng(seed).normal(0.0, 0.05, (n, n))
    return write_x3p(tmp_path / f"src-{n}-{seed}.x3p", z, dx_um=0.1, dy_um=0.1).read_bytes()


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def sem_tiff(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.random.default_rng(seed).integers(0, 255, (64, 64)).astype(np.uint8)
    return write_sem_tiff(path, img, pixel_um=0.01, databar_rows=0)


def snapshot(folder: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(folder)): (sha256_file(p), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def barrier(folder: Path, rec: Recorder, name: str) -> None:
    """Add a one-file sample and wait for it: the watcher has gone round its loop since."""
    sem_tiff(folder / name / "s.tif", seed=len(name))
    rec.wait(name)


# -- the watch test ---------------------------------------------------------------
@pytest.mark.parametrize("poll", [False, True], ids=["events", "polling"])
def test_slow_large_file_measured_once_complete_and_broken_file_quarantined(tmp_path, store, poll):
    folder = tmp_path / "export"
    folder.mkdir()
    data = x3p_bytes(tmp_path, n=1024)  # about 8 MB
    assert len(data) > 7_000_000
    # the readers' first use imports them (about a second), which would stall the watcher's
    # loop while the file is written and hide a watcher that reads files too early
    read(tmp_path / "src-1024-0.x3p")
    read(sem_tiff(tmp_path / "warm.tif"))
    with pytest.raises(UnreadableInput):
        read(put(tmp_path / "warm-broken.tif", BROKEN))
    rec = Recorder()
    w = make_watcher(folder, store, rec, poll=poll, stable_seconds=1.0)
    big = folder / "S1" / "map.x3p"
    big.parent.mkdir()
    with running(w):
        bad = put(folder / "S1" / "broken.tif", BROKEN)
        put(folder / "S2" / "only-broken.tif", BROKEN[:600])
        chunks = np.array_split(np.frombuffer(data, np.uint8), 8)
        with big.open("wb") as fh:  # pauses longer than the tick and polling, shorter than stable
            for c in chunks:
                fh.write(c.tobytes())
                fh.flush()
                time.sleep(0.25)
        assert rec.of("S1") == [], "processed while the file was still being written"
        (call,) = rec.wait("S1")
        before = snapshot(folder)
        barrier(folder, rec, "S9")
        rows = wait_until(lambda: len(store.quarantined()) >= 2 and store.quarantined(),
                          "two quarantine rows")
    # the final bytes, once; the quarantined file goes with its sample (which it keeps
    # indeterminate until it is replaced)
    assert call.files == {"map.x3p": sha256_file(big), "broken.tif": sha256_file(bad)}
    assert sha256_file(big) == __import__("hashlib").sha256(data).hexdigest()
    assert len(rec.of("S1")) == 1
    (s2,) = rec.of("S2")  # its only file is quarantined: judged (indeterminate) all the same
    assert list(s2.files) == ["only-broken.tif"]
    assert any("quarantined S1/broken.tif: no reader recognises this file" in n for n in call.notes)
    by_path = {Path(r["path"]).name: r for r in rows}
    assert sorted(by_path) == ["broken.tif", "only-broken.tif"]
    assert by_path["broken.tif"]["sha256"] == sha256_file(bad)
    assert "no reader recognises this file" in by_path["broken.tif"]["reason"]
    after = snapshot(folder)
    assert {k: v for k, v in after.items() if k in before} == before  # inputs untouched
    assert set(after) - set(before) == {"S9/s.tif"}


def test_quarantined_once_per_content_and_again_when_bytes_change(tmp_path, store):
    folder = tmp_path / "export"
    bad = put(folder / "S1" / "broken.tif", BROKEN)
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        wait_until(lambda: store.quarantined(), "the first quarantine row")
        os.utime(bad, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # touched, same bytes
        barrier(folder, rec, "B1")
        time.sleep(STABLE)  # the touched file is due by now whatever the event order
        barrier(folder, rec, "B2")
        assert len(store.quarantined()) == 1
        bad.write_bytes(BROKEN + b"more junk")
        wait_until(lambda: len(store.quarantined()) == 2, "a second row for the new bytes")
        barrier(folder, rec, "B3")
    rows = store.quarantined()
    first = __import__("hashlib").sha256(BROKEN).hexdigest()
    assert [r["sha256"] for r in rows] == [first, sha256_file(bad)]
    # the sample is passed with its quarantined file (indeterminate), once per content
    assert [c.files for c in rec.of("S1")] == [{"broken.tif": first},
                                              {"broken.tif": sha256_file(bad)}]
    # a new watcher on the same store does not quarantine the same bytes again
    rec2 = Recorder()
    with running(make_watcher(folder, store, rec2)):
        barrier(folder, rec2, "B4")
    assert len(store.quarantined()) == 2


def test_unopenable_file_is_quarantined_not_retried_forever(tmp_path, store, monkeypatch):
    """A stable file that cannot be opened (permissions; simulated, as root reads anything)
    is quarantined with the reason; its sample goes on with it among its files, so that
    the measurement fails on it again and the sample is not judged on the other alone."""

    folder = tmp_path / "export"
    locked = put(folder / "S1" / "locked.x3p", x3p_bytes(tmp_path, seed=5))
    put(folder / "S1" / "open.x3p", x3p_bytes(tmp_path, seed=6))
    real_read = watch_module.read

    def read(path, *a, **k):
        if Path(path).name == "locked.x3p":
            raise PermissionError(13, "Permission denied")
        return real_read(path, *a, **k)

    monkeypatch.setattr(watch_module, "read", read)
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        (call,) = rec.wait("S1")
        wait_until(lambda: store.quarantined(), "a quarantine row for the locked file")
    assert list(call.files) == ["locked.x3p", "open.x3p"]
    assert any("quarantined S1/locked.x3p" in n for n in call.notes)
    (row,) = store.quarantined()
    assert row["path"] == str(locked) and "Permission denied" in row["reason"]


# -- nothing missed -----------------------------------------------------------------------
@pytest.mark.parametrize("poll", [False, True], ids=["events", "polling"])
def test_file_added_while_stopped_is_picked_up_at_start(tmp_path, store, poll):
    folder = tmp_path / "export"
    put(folder / "S1" / "a.x3p", x3p_bytes(tmp_path, seed=1))
    rec = Recorder()
    with running(make_watcher(folder, store, rec, poll=poll)):
        rec.wait("S1")
    new = put(folder / "S3" / "late.x3p", x3p_bytes(tmp_path, seed=3))
    rec2 = Recorder()
    with running(make_watcher(folder, store, rec2, poll=poll)):
        (call,) = rec2.wait("S3")
        rec2.wait("S1")  # the restarted watcher offers it again; the store's key makes it a no-op
    assert call.files == {"late.x3p": sha256_file(new)}
    assert rec.of("S3") == []


def test_periodic_scan_finds_a_file_whose_event_never_came(tmp_path, store):
    folder = tmp_path / "export"
    folder.mkdir()
    rec = Recorder()
    # the polling observer would only look after 60 s: only the scan can find the file
    w = make_watcher(folder, store, rec, poll=True, poll_interval_s=60.0, scan_interval_s=0.3)
    with running(w):
        time.sleep(0.2)  # after the start-up scan
        f = put(folder / "S1" / "a.x3p", x3p_bytes(tmp_path))
        (call,) = rec.wait("S1")
    assert call.files == {"a.x3p": sha256_file(f)}


def test_folder_moved_in_whole_is_picked_up(tmp_path, store):
    folder = tmp_path / "export"
    folder.mkdir()
    staged = tmp_path / "staging" / "S5"
    sem_tiff(staged / "one.tif", seed=1)
    sem_tiff(staged / "two.tif", seed=2)
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        time.sleep(0.2)
        staged.rename(folder / "S5")
        (call,) = rec.wait("S5")
    assert sorted(call.files) == ["one.tif", "two.tif"]  # one call, both files


# -- what counts as a change --------------------------------------------------------------
def test_skipped_and_hidden_files_are_ignored(tmp_path, store):
    folder = tmp_path / "export"
    put(folder / "S1" / "a.x3p", x3p_bytes(tmp_path))
    put(folder / "S1" / "a.x3p.truth.json", b"{not json")
    put(folder / "S1" / "notes.txt", b"\x00\x01 binary junk")
    put(folder / "S1" / ".a.x3p.part", BROKEN)
    put(folder / ".trash" / "x.tif", BROKEN)
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        (call,) = rec.wait("S1")
        barrier(folder, rec, "B1")
    assert list(call.files) == ["a.x3p"]
    assert store.quarantined() == []


def test_touched_file_is_not_measured_again_changed_bytes_are(tmp_path, store):
    folder = tmp_path / "export"
    f = put(folder / "S1" / "a.x3p", x3p_bytes(tmp_path, seed=1))
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        rec.wait("S1")
        os.utime(f, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
        time.sleep(STABLE)
        barrier(folder, rec, "B1")
        assert len(rec.of("S1")) == 1
        f.write_bytes(x3p_bytes(tmp_path, seed=2))
        calls = rec.wait("S1", 2)
    assert calls[1].files == {"a.x3p": sha256_file(f)} != calls[0].files


def test_late_sidecar_reprocesses_its_sample(tmp_path, store):
    import tifffile

    folder = tmp_path / "export"
    img = folder / "S1" / "s4800.tif"
    img.parent.mkdir(parents=True)
    tifffile.imwrite(img, np.random.default_rng(1).integers(20, 230, (64, 80)).astype(np.uint8))
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        rec.wait("S1")
        (folder / "S1" / "s4800.txt").write_text(
            "[SemImageFile]\r\nInstructName=S-4800\r\nPixelSize=12.5\r\nMagnification=5000\r\n"
            "AcceleratingVoltage=5000 Volt\r\nSignalName=SE\r\n", encoding="utf-8")
        calls = rec.wait("S1", 2)
        barrier(folder, rec, "B1")
    assert len(rec.of("S1")) == 2
    assert calls[0].files == calls[1].files  # same image bytes, read again with its sidecar


def test_manifest_change_reprocesses_only_the_samples_whose_entry_changed(tmp_path, store):
    folder = tmp_path / "export"
    put(folder / "S1" / "a.x3p", x3p_bytes(tmp_path, seed=1))
    put(folder / "S2" / "b.x3p", x3p_bytes(tmp_path, seed=2))
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        rec.wait("S1")
        rec.wait("S2")
        (folder / "samples.toml").write_text(
            'schema_version = 1\nid = "m"\n[[sample]]\nid = "S1"\nthickness_um = 13.7\n'
            '[[sample]]\nid = "weighed"\nthickness_um = 15.0\nareal_mass_mg_cm2 = 2.0\n'
            'files = "none"\n')
        calls = rec.wait("S1", 2)
        (weighed,) = rec.wait("weighed")  # listed in the manifest without files
        barrier(folder, rec, "B1")
    assert calls[1].manifest["thickness_um"] == 13.7 and calls[0].manifest == {}
    assert len(rec.of("S2")) == 1
    assert weighed.files == {} and weighed.manifest["areal_mass_mg_cm2"] == 2.0


# -- failures of process_sample -----------------------------------------------------------
def test_failed_sample_is_retried_at_the_next_scan(tmp_path, store, caplog):
    folder = tmp_path / "export"
    put(folder / "S1" / "a.x3p", x3p_bytes(tmp_path))
    rec = Recorder(fail=RuntimeError("database went away"), fail_times=1)
    with running(make_watcher(folder, store, rec, scan_interval_s=0.5)):
        rec.wait("S1", 2)
        barrier(folder, rec, "B1")
        time.sleep(0.6)  # past another scan: a sample processed without error is not redone
    assert len(rec.of("S1")) == 2
    assert "processing sample S1 failed" in caplog.text and "database went away" in caplog.text


def test_config_error_from_process_sample_stops_the_watcher(tmp_path, store):
    folder = tmp_path / "export"
    put(folder / "S1" / "a.x3p", x3p_bytes(tmp_path))
    rec = Recorder(fail=ConfigError("spec.toml", "bad spec"), fail_times=1)
    w = make_watcher(folder, store, rec)
    with pytest.raises(ConfigError, match="bad spec"), running(w) as errors:
        wait_until(lambda: errors, "the watcher to end with the error")  # by itself, no stop()
    assert len(rec.calls) == 1


# -- stopping -----------------------------------------------------------------------------
SCRIPT = """
import json, sys, time
from pathlib import Path
from pipeline.batch.watch import Watcher, watch
from tests.test_watch import FakeStore

folder, marks, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def process(sample):
    (marks / (sample.id + ".started")).write_text("")
    time.sleep(1.0)
    (marks / (sample.id + ".done")).write_text(json.dumps([f.name for f in sample.files]))

if mode == "watch":
    rc = watch(folder, out=marks / "out", stable_seconds=0.2, process_sample=process)
else:
    rc = Watcher(folder, store=FakeStore(), process_sample=process, stable_seconds=0.2).run_forever()
print("returned", rc, flush=True)
sys.exit(rc)
"""


@pytest.mark.parametrize("mode", ["watcher", "watch"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_ends_run_forever_cleanly_after_the_current_sample(tmp_path, sig, mode):
    folder, marks = tmp_path / "export", tmp_path / "marks"
    marks.mkdir()
    sem_tiff(folder / "S1" / "a.tif", seed=1)
    sem_tiff(folder / "S2" / "b.tif", seed=2)
    put(folder / "S3" / "broken.tif", BROKEN)
    before = snapshot(folder)
    script = tmp_path / "run_watch.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(folder), str(marks), mode],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        started = wait_until(lambda: sorted(marks.glob("*.started")), "a sample to start", 30)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert b"returned 0" in out
    assert len(started) == 1  # the second sample was not begun after the signal
    sid = started[0].stem
    assert (marks / f"{sid}.done").read_text() == f'["{"a.tif" if sid == "S1" else "b.tif"}"]'
    assert snapshot(folder) == before
    if mode == "watch":
        import sqlite3

        con = sqlite3.connect(marks / "out" / "results.db")
        try:
            assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        finally:
            con.close()


def test_run_forever_restores_signal_handlers_and_returns_0(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()

    def mine(signum, frame):
        pass

    prev = signal.signal(signal.SIGTERM, mine)
    try:
        w = make_watcher(folder, FakeStore(), Recorder())
        seen = {}

        def stopper():
            time.sleep(0.3)
            seen["during"] = signal.getsignal(signal.SIGTERM)
            w.stop()

        threading.Thread(target=stopper, daemon=True).start()
        assert w.run_forever() == 0
        assert seen["during"] is not mine
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, prev)


# -- configuration ------------------------------------------------------------------------
def test_bad_watcher_arguments(tmp_path):
    with pytest.raises(ConfigError, match="is not a folder"):
        Watcher(tmp_path / "nope", store=FakeStore(), process_sample=Recorder())
    with pytest.raises(ConfigError, match="stable_seconds must be a positive"):
        Watcher(tmp_path, store=FakeStore(), process_sample=Recorder(), stable_seconds=0)


def test_watch_refuses_outputs_inside_the_watched_folder(tmp_path):
    from pipeline.batch.watch import watch

    folder = tmp_path / "export"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is not a folder"):
        watch(tmp_path / "nope", out=tmp_path / "out")
    with pytest.raises(ConfigError, match="needs --out"):
        watch(folder)
    with pytest.raises(ConfigError, match="output folder is inside the watched folder"):
        watch(folder, out=folder / "results")
    with pytest.raises(ConfigError, match="database is inside the watched folder"):
        watch(folder, db_url=f"sqlite:///{folder / 'r.db'}")
    assert list(folder.iterdir()) == []


def test_default_process_sample_is_the_stores(monkeypatch, tmp_path):
    from pipeline.batch import persist
    from pipeline.batch.watch import _store_process_sample
    from pipeline.ingest.discover import Sample

    got = []
    monkeypatch.setattr(persist, "process_sample_into_store",
                        lambda sample, store, *, out: got.append((sample, store, out)) or "ok")
    st, s = FakeStore(), Sample("S1")
    assert _store_process_sample(st, tmp_path)(s) == "ok"
    assert got == [(s, st, tmp_path)]


def test_end_to_end_with_the_runner_into_sqlite(tmp_path):
    """The default process_sample (the runner's) measures once; a restart reuses the row."""
    from pipeline.batch.store import Store
    from pipeline.batch.watch import _store_process_sample

    folder, out = tmp_path / "export", tmp_path / "out"
    f = put(folder / "S1" / "map.x3p", x3p_bytes(tmp_path, n=128))
    put(folder / "S1" / "broken.tif", BROKEN)
    results = []
    st = Store.open(None, out=out)
    try:
        default = _store_process_sample(st, out)

        def process(sample):
            results.append(default(sample))

        for _ in range(2):  # the second watcher starts on the same folder and store
            n = len(results)
            with running(make_watcher(folder, st, process)):
                wait_until(lambda n=n: len(results) > n, "the sample stored", 30)
        rows = st.samples(latest_only=False)
        quarantined = st.quarantined()
    finally:
        st.close()
    assert [r["stored"]["reused"] for r in results] == [False, True]
    assert len(rows) == 1
    rec = rows[0]["record"]
    assert [Path(i["path"]).name for i in rec["provenance"]["inputs"]] == ["broken.tif",
                                                                           "map.x3p"]
    assert {Path(i["path"]).name: i["sha256"]
                for i in rec["provenance"]["inputs"]}["map.x3p"] == sha256_file(f)
    assert any("quarantined S1/broken.tif" in n for n in rec["notes"])
    # the quarantined file keeps the sample from a verdict until it is replaced
    assert rec["gate"]["outcome"] == "indeterminate"
    assert any("broken.tif" in r for r in rec["gate"]["reasons"])
    assert [Path(q["path"]).name for q in quarantined] == ["broken.tif"]


def test_a_file_quarantined_after_its_sample_was_judged_sends_it_again(tmp_path, store):
    """A sample measured on its good file, then a broken file of it arrives: the sample is
    passed again with the quarantined file among its files (so it cannot stay conforming on
    the others alone), and once more when that file is replaced by good bytes."""
    folder = tmp_path / "export"
    put(folder / "S1" / "map.x3p", x3p_bytes(tmp_path, n=64, seed=1))
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        (first,) = rec.wait("S1")
        bad = put(folder / "S1" / "late.tif", BROKEN)
        second = rec.wait("S1", 2)[1]
        sem_tiff(folder / "S1" / "late.tif", seed=3)
        third = rec.wait("S1", 3)[2]
    assert set(first.files) == {"map.x3p"}
    assert set(second.files) == {"map.x3p", "late.tif"}
    assert second.files["late.tif"] == __import__("hashlib").sha256(BROKEN).hexdigest()
    assert any("quarantined S1/late.tif" in n for n in second.notes)
    assert set(third.files) == {"map.x3p", "late.tif"}
    assert third.files["late.tif"] == sha256_file(bad)
    assert not any("quarantined" in n for n in third.notes)


def test_watch_prints_one_line_per_stored_sample(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import pipeline.batch.watch
    from pipeline.cli import app

    record = {"sample_id": "S1", "spec": {"met": None, "properties": {},
                                          "spec": {"id": "claim15", "sha256": "0" * 64}},
              "gate": {"outcome": "indeterminate", "combine": "all"},
              "images": [{"status": "error"}]}

    def fake_watch(folder, *, on_stored, **kw):
        on_stored(record)
        return 0

    monkeypatch.setattr(pipeline.batch.watch, "watch", fake_watch)
    r = CliRunner().invoke(app, ["watch", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines() == [
        "S1: Claim 15 undecided (); gate indeterminate; 1 file(s) failed"]


def test_a_link_out_of_the_folder_is_never_read(tmp_path, store, monkeypatch):

    folder = tmp_path / "export"
    secret = put(tmp_path / "outside" / "secret.x3p", x3p_bytes(tmp_path, seed=8))
    put(folder / "S1" / "map.x3p", x3p_bytes(tmp_path, seed=9))
    (folder / "S1" / "link.x3p").symlink_to(secret)
    (folder / "S2").symlink_to(secret.parent, target_is_directory=True)
    opened = []
    real_read = watch_module.read
    monkeypatch.setattr(watch_module, "read", lambda p, *a, **k: opened.append(Path(p).resolve())
                        or real_read(p, *a, **k))
    rec = Recorder()
    with running(make_watcher(folder, store, rec)):
        (call,) = rec.wait("S1")
        barrier(folder, rec, "B1")
    assert set(call.files) == {"map.x3p"}
    assert secret.resolve() not in opened
    assert rec.of("S2") == [] and store.quarantined() == []
