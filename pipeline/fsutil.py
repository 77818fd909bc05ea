"""Writing output files: whole or not at all, never through a planted link, and a full disk
reported as what it is.

Every output file (results.json, tables, particle tables, previews, report.html, instrument
profiles) is written the same way: a new temporary file is made in the target's folder with
`tempfile.mkstemp` (a name nobody can guess, created with ``O_EXCL``: a symbolic link
planted in the folder cannot redirect the write), the data is written and flushed to disk
(``fsync``), and the file is renamed over the target (``os.replace``, atomic on POSIX and
Windows). A reader sees the old file or the new one, never half of one. On any failure the
temporary file is removed and nothing is left behind; an ``OSError`` (disk full, file too
large, read-only file system, permission denied, quota exceeded ...) becomes an
`OutputError` whose one-line message names the file and the cause::

    out/results.json: cannot write: No space left on device

The new file gets the permissions a plain ``open(path, "w")`` would give it (``0o666``
less the umask), not ``mkstemp``'s owner-only ``0o600``.

`check_writable` proves an output folder can take a file before a run measures anything.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pipeline.errors import OutputError

__all__ = ["OutputError", "atomic_open", "atomic_path", "atomic_write_bytes",
           "check_writable", "ensure_folder"]

_PROBE = b"electrode-qc output folder check\n" * 128  # 4 KiB: at least one block


def _cause(exc: OSError) -> str:
    """The cause of `exc` in a few words ("No space left on device"), on one line."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return " ".join(str(exc).split()) or type(exc).__name__


def _error(path: str | os.PathLike, exc: OSError, doing: str = "cannot write") -> OutputError:
    return OutputError(path, f"{doing}: {_cause(exc)}")


def _umask() -> int:
    """This process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting it, and set it back at once
    os.umask(mask)
    return mask


def _temporary(path: Path, suffix: str = "") -> tuple[int, Path]:
    """A new, empty temporary file beside `path` (O_EXCL, unguessable name): fd and path."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                suffix=f".tmp{suffix}")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o666 & ~_umask())
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise
    return fd, Path(name)


def _unlink_quietly(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


@contextlib.contextmanager
def _replacing(path: Path, tmp: Path) -> Iterator[None]:
    """Move `tmp` over `path` when the block ends without an error; remove it otherwise
    (an ``OSError`` becomes an `OutputError` naming `path`)."""
    try:
        yield
        os.replace(tmp, path)
    except OSError as exc:
        _unlink_quietly(tmp)
        raise _error(path, exc) from exc
    except BaseException:
        _unlink_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[bytes]]:
    """A binary file to write `path`'s new content to; it replaces `path` when the block
    ends without an error.

    For writers that take a file object (``json``, ``numpy.savez``, ``pandas.to_parquet``,
    ``pyarrow.parquet.write_table``, ``pyarrow.csv.write_csv``). The folder must exist.

    Raises
    ------
    OutputError
        The file could not be written (the ``OSError`` is its ``__cause__``). Other
        exceptions raised in the block pass through. Either way the temporary file is
        removed and `path` is left as it was.
    """
    path = Path(path)
    try:
        fd, tmp = _temporary(path)
    except OSError as exc:
        raise _error(path, exc) from exc
    with _replacing(path, tmp), open(fd, "wb") as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write `path`'s new content to, for writers that take only a
    path (and for checking a file before it goes into place); it replaces `path` when the
    block ends without an error.

    The temporary file exists (empty, made by `tempfile.mkstemp` beside `path`, ending in
    `suffix`) and the writer overwrites it. Prefer `atomic_open` where the writer takes a
    file object: a path is opened again by name, a file object is not.

    Raises
    ------
    OutputError
        As `atomic_open`; the temporary file is removed on any failure.
    """
    path = Path(path)
    try:
        fd, tmp = _temporary(path, suffix)
        os.close(fd)
    except OSError as exc:
        raise _error(path, exc) from exc
    with _replacing(path, tmp):
        yield tmp
        fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see the module's docstring); returns the path.

    Raises
    ------
    OutputError
        The file could not be written; `path` is left as it was and nothing else remains.
    """
    path = Path(path)
    with atomic_open(path) as f:
        f.write(data)
    return path


def ensure_folder(folder: str | os.PathLike) -> Path:
    """Create `folder` and its parents if needed; returns it.

    Raises
    ------
    OutputError
        It cannot be created (a file in the way, no permission, read-only, disk full).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _error(folder, exc, "cannot create the folder") from exc
    return folder


def check_writable(folder: str | os.PathLike) -> Path:
    """Create `folder` (and its parents) if needed and prove it can take a file: a
    temporary file is made, written, flushed to disk and removed. Returns the folder.

    Run before measuring anything, so that a full disk or a read-only folder stops a run
    at once rather than after the measurements.

    Raises
    ------
    OutputError
        The folder cannot be created or cannot take a file, with the cause.
    """
    folder = ensure_folder(folder)
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".electrode-qc-check.", suffix=".tmp")
    except OSError as exc:
        raise _error(folder, exc, "cannot write to the output folder") from exc
    try:
        with open(fd, "wb") as f:
            f.write(_PROBE)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise _error(folder, exc, "cannot write to the output folder") from exc
    finally:
        _unlink_quietly(Path(name))
    return folder
