"""Shared assertions and helpers for tests."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import pytest

from pipeline.errors import UnreadableInput

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT.parent / "shared" / "realdata"


def realfile(*parts: str) -> Path:
    """Path of one real file; the calling test skips when it is absent."""
    p = REALDATA.joinpath(*parts)
    if not p.is_file():
        pytest.skip(f"real instrument file {'/'.join(parts)} not present")
    return p


def assert_unreadable(path: Path, match: str) -> UnreadableInput:
    """`pipeline.read(path)` raises UnreadableInput naming the file and matching `match`, in
    one line; `electrode-qc inspect path` exits 4 with that message and no traceback."""
    from typer.testing import CliRunner

    import pipeline
    from pipeline.cli import app

    with pytest.raises(UnreadableInput, match=match) as info:
        pipeline.read(path)
    assert str(path) in str(info.value)
    assert "\n" not in info.value.problem, info.value.problem  # one line, details in the log
    result = CliRunner().invoke(app, ["inspect", str(path)])
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output
    # the command line shows the same message (a terminal may wrap it)
    assert re.search(match, result.output.replace("\n", " ")), result.output
    return info.value


def cli_json(args: list[str]) -> object:
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def no_temporaries(folder: Path) -> list[str]:
    """Names in `folder` (recursively) that look like a temporary file of the writers."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.startswith(".") or p.name.endswith(".tmp"))


def enospc(monkeypatch) -> None:
    """Make flushing a written file to disk fail as on a full disk (for this test only)."""
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
