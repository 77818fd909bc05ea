from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import REALDATA


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
