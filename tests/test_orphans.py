"""No orphans: when `electrode-qc run --jobs 2` is killed (SIGKILL, as the out-of-memory
killer does), its pool workers exit within seconds instead of running on to no one."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="finds the workers through /proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of process `pid`, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"  # a zombie has exited


def _workers(parent: int) -> list[int]:
    """The pool workers (multiprocessing's spawned children) of process `parent`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _stat(int(entry))
        if st is None or st[1] != parent:
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            found.append(int(entry))
    return found


@pytest.fixture
def export(tmp_path) -> Path:
    """Twelve electrodes: the example ones, each under three names."""
    root = tmp_path / "export"
    root.mkdir()
    folders = sorted(p for p in SAMPLES.iterdir() if p.is_dir())
    assert folders
    for copy in range(3):
        for f in folders:
            shutil.copytree(f, root / f"{f.name}-{copy}")
    return root


def test_killing_the_run_leaves_no_workers(export, tmp_path):
    exe = Path(sys.executable).with_name("electrode-qc")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "pipeline.cli"]
    proc = subprocess.Popen([*cmd, "run", str(export), "--out", str(tmp_path / "out"),
                             "--jobs", "2"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        while len(seen) < 2 and time.monotonic() < deadline and proc.poll() is None:
            seen.update(_workers(proc.pid))
            time.sleep(0.1)
        assert len(seen) >= 2, "the run started no pool workers"
        time.sleep(2.0)  # the workers import and start measuring
        assert proc.poll() is None, "the run ended before it could be killed"
        workers = [pid for pid in seen if _alive(pid)]
        assert workers
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in workers if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for pid in seen:  # what this test started, if the check above failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
