from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REALDATA

# end-to-end orchestration: runs, the store, the watcher, worker processes, the installed
# package; with the long accuracy tests (marked one by one) `pytest -m "not slow"` leaves
# the unit tests, about a seventh of the suite's time
SLOW_MODULES = {
    "test_batch_store.py", "test_execute.py", "test_orphans.py", "test_packaging.py",
    "test_patent_examples.py", "test_run_containment.py", "test_runner.py",
    "test_sample_images.py", "test_verdict_evidence.py", "test_watch.py",
    "test_cli_startup.py", "store/test_store.py", "store/test_stale_runs.py",
    "store/test_failed_samples.py", "report/test_chromium.py", "test_noop_rerun.py",
}


def pytest_collection_modifyitems(config, items):
    root = Path(__file__).parent
    for item in items:
        rel = Path(item.fspath).relative_to(root).as_posix()
        if rel in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def realdata() -> Path:
    """The folder of real instrument files; tests that need it skip when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real instrument files not present ({REALDATA.name} folder absent)")
    return REALDATA


@contextlib.contextmanager
def _tmpfs(folder: Path, *options: str) -> Iterator[Path]:
    """A 2 MB tmpfs mounted at `folder` (root only: the test skips otherwise)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root")
    folder.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(("size=2m", *options)),
                          "tmpfs", str(folder)], capture_output=True, text=True, check=False)
    if res.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    """A folder on a file system with no space left (a 2 MB tmpfs, filled)."""
    with _tmpfs(tmp_path / "full") as folder:
        out = folder / "out"
        out.mkdir()
        with open(folder / "filler", "wb") as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        yield out


@pytest.fixture
def read_only(tmp_path) -> Iterator[Path]:
    """A folder on a read-only file system."""
    with _tmpfs(tmp_path / "ro", "ro") as folder:
        yield folder
