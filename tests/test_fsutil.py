"""Output files are written whole or not at all, never through a planted link, and a full
disk, a read-only file system or a too-large file is an OutputError naming the file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile

import pytest

from pipeline.errors import ElectrodeQCError
from pipeline.fsutil import (
    OutputError,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    check_writable,
    ensure_folder,
)
from tests.helpers import enospc


# ---- atomic writes -----------------------------------------------------------------------
def test_atomic_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "results.json"
    target.write_bytes(b"old")
    assert atomic_write_bytes(target, b"new") == target
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_new_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.csv", b"x")
        with atomic_path(tmp_path / "b.toml") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    if os.name == "posix":  # not mkstemp's owner-only 0o600
        assert (tmp_path / "a.csv").stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "b.toml").stat().st_mode & 0o777 == 0o640


def test_a_link_planted_at_the_temporary_name_does_not_redirect_the_write(tmp_path,
                                                                          monkeypatch):
    """The old predictable name (.NAME.tmp), and the very name mkstemp is about to try: the
    link and the file it points to are left as they were."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "results.json"
    for name in (".results.json.tmp", "results.json.tmp", ".results.json.guess.tmp"):
        (out / name).symlink_to(victim)
    names = iter(["guess", "other"])
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: names)
    atomic_write_bytes(target, b"{}")
    assert target.read_bytes() == b"{}" and not target.is_symlink()
    assert victim.read_bytes() == b"precious"
    assert all((out / n).is_symlink() and (out / n).resolve() == victim
               for n in (".results.json.tmp", "results.json.tmp", ".results.json.guess.tmp"))


def test_a_link_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    target = tmp_path / "report.html"
    target.symlink_to(victim)
    atomic_write_bytes(target, b"<html>")
    assert victim.read_bytes() == b"precious"
    assert not target.is_symlink() and target.read_bytes() == b"<html>"


def test_a_failed_write_leaves_nothing_and_names_the_file(tmp_path, monkeypatch):
    target = tmp_path / "report" / "results.json"
    target.parent.mkdir()
    target.write_bytes(b"previous")
    enospc(monkeypatch)
    with pytest.raises(OutputError) as exc:
        atomic_write_bytes(target, b"new")
    assert str(exc.value) == f"{target}: cannot write: No space left on device"
    assert isinstance(exc.value, ElectrodeQCError) and exc.value.exit_code == 2
    assert isinstance(exc.value.__cause__, OSError)
    assert exc.value.__cause__.errno == errno.ENOSPC
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in target.parent.iterdir()) == ["results.json"]


def test_an_error_of_the_writer_passes_through_and_leaves_nothing(tmp_path):
    target = tmp_path / "t.parquet"
    for cm in (atomic_open, atomic_path):
        with pytest.raises(ValueError, match="bad table"), cm(target):
            raise ValueError("bad table")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_for_writers_that_need_a_path(tmp_path, monkeypatch):
    target = tmp_path / "profile.toml"
    with atomic_path(target, suffix=".toml") as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".toml") and tmp.exists()
        assert not target.exists()
        tmp.write_text("id = 'x'\n")
    assert target.read_text() == "id = 'x'\n" and list(tmp_path.iterdir()) == [target]
    enospc(monkeypatch)
    with pytest.raises(OutputError, match=r"profile.toml: cannot write: No space left"), \
            atomic_path(target) as tmp:
        tmp.write_text("id = 'y'\n")
    assert target.read_text() == "id = 'x'\n" and list(tmp_path.iterdir()) == [target]


def test_a_missing_folder_is_an_output_error(tmp_path):
    with pytest.raises(OutputError, match=r"nope/a.json: cannot write: No such file"):
        atomic_write_bytes(tmp_path / "nope" / "a.json", b"x")


def test_a_full_disk_is_an_output_error_and_leaves_nothing(full_disk):
    target = full_disk / "results.json"
    with pytest.raises(OutputError) as exc:
        atomic_write_bytes(target, b"x" * 200_000)
    assert str(exc.value) == f"{target}: cannot write: No space left on device"
    assert list(full_disk.iterdir()) == []


def test_a_read_only_file_system_is_an_output_error(read_only):
    with pytest.raises(OutputError, match=r"results.json: cannot write: Read-only file system"):
        atomic_write_bytes(read_only / "results.json", b"x")
    with pytest.raises(OutputError, match=r"cannot create the folder: Read-only file system"):
        ensure_folder(read_only / "tables")


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_a_file_over_the_size_limit_is_an_output_error(tmp_path):
    """EFBIG (the process's file-size limit, as on a file system's maximum file size)."""
    code = """
import resource, sys
from pipeline.fsutil import OutputError, atomic_write_bytes
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
try:
    atomic_write_bytes(sys.argv[1], b"x" * 1_000_000)
except OutputError as exc:
    print(exc)
"""
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.parquet")],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{tmp_path / 'big.parquet'}: cannot write: File too large"
    assert list(tmp_path.iterdir()) == []


# ---- the output folder, before a run -----------------------------------------------------
def test_check_writable_makes_the_folder_and_leaves_nothing(tmp_path):
    out = tmp_path / "a" / "b"
    assert check_writable(out) == out
    assert out.is_dir() and list(out.iterdir()) == []


def test_check_writable_refuses_a_full_disk(full_disk):
    with pytest.raises(OutputError) as exc:
        check_writable(full_disk)
    assert str(exc.value) == (f"{full_disk}: cannot write to the output folder: "
                              "No space left on device")
    assert exc.value.exit_code == 2 and list(full_disk.iterdir()) == []


def test_check_writable_refuses_a_read_only_folder(read_only):
    with pytest.raises(OutputError, match="cannot write to the output folder: Read-only"):
        check_writable(read_only)
    with pytest.raises(OutputError, match="cannot create the folder: Read-only"):
        check_writable(read_only / "out")


def test_check_writable_refuses_a_file_in_the_way(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(OutputError, match=r"out: cannot create the folder: File exists"):
        check_writable(tmp_path / "out")
    with pytest.raises(OutputError, match=r"cannot create the folder: Not a directory"):
        check_writable(tmp_path / "out" / "sub")


def test_check_writable_refuses_a_folder_without_permission(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes to any folder")
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="cannot write to the output folder: "
                                              "Permission denied"):
            check_writable(folder)
    finally:
        folder.chmod(0o700)


def test_output_error_survives_the_trip_from_a_worker():
    import pickle

    err = OutputError("out/tables/particles/S1.parquet", "cannot write: Disk quota exceeded")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is OutputError and str(back) == str(err) and back.exit_code == 2
