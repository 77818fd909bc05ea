"""The reader registry: which reader opens which file, decided by content.

A reader is one small object (compare xarray's ``BackendEntrypoint``)::

    class Reader(Protocol):
        name: str              # short id, e.g. "x3p"
        kind: str              # "height" or "sem"
        suffixes: tuple        # usual suffixes, for `formats` and as a tie-break only
        description: str       # one line for `electrode-qc formats`
        expects: str           # what `can_open` looks for, logged when a file is declined
        priority: int          # lower is tried first; fallbacks use a high number
        label: str             # optional: maker or format for messages ("FEI"); else name
        def can_open(self, head: bytes, path: Path) -> bool: ...
        def open(self, path: Path) -> xarray.DataArray: ...

`can_open` sees the first `HEAD_BYTES` bytes of the file; it sniffs magic bytes or zip
members, never the suffix alone. Built-in readers are listed below; third-party readers
register through the ``electrode_qc.readers`` entry-point group.

When no reader recognises a file, the error is one line that says what the content looks
like and what to export instead (`pipeline.ingest.sniff`); what each reader expected goes to
the log (INFO). When a kind is asked and only a reader of the other kind recognises the file,
the error is `WrongKind`, and `COMMANDS_BY_KIND` / `commands_for` tell which commands take
the file.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pipeline.errors import ElectrodeQCError, UnreadableInput, WrongKind
from pipeline.ingest.rasters import as_rasters
from pipeline.ingest.sniff import describe_unrecognised

__all__ = [
    "COMMANDS_BY_KIND",
    "HEAD_BYTES",
    "KIND_NAMES",
    "Reader",
    "WrongKind",
    "commands_for",
    "find_reader",
    "read",
    "readers",
    "refresh",
    "sha256_file",
]

log = logging.getLogger(__name__)

HEAD_BYTES = 4096
ENTRY_POINT_GROUP = "electrode_qc.readers"

BUILTIN_READERS: tuple[str, ...] = (
    "pipeline.ingest.height.x3p:X3PReader",
    "pipeline.ingest.height.gwy:GwyReader",
    "pipeline.ingest.height.sur:SurReader",
    "pipeline.ingest.height.plu:PluReader",
    "pipeline.ingest.height.zygo:ZygoDatReader",
    "pipeline.ingest.height.al3d:Al3dReader",
    "pipeline.ingest.height.zon:ZonReader",
    "pipeline.ingest.height.keyence_vk:VK4Reader",
    "pipeline.ingest.height.keyence_vk:VK6Reader",
    "pipeline.ingest.height.keyence_csv:KeyenceCsvReader",
    "pipeline.ingest.height.tiff:FloatTiffReader",
    "pipeline.ingest.height.surftopo:SurfaceTopographyReader",
    "pipeline.ingest.sem.fei:FeiReader",
    "pipeline.ingest.sem.zeiss:ZeissReader",
    "pipeline.ingest.sem.fibics:FibicsReader",
    "pipeline.ingest.sem.tescan:TescanReader",
    "pipeline.ingest.sem.phenom:PhenomReader",
    "pipeline.ingest.sem.hitachi:HitachiReader",
    "pipeline.ingest.sem.jeol:JeolReader",
    "pipeline.ingest.sem.olympus:OlympusSisReader",
    "pipeline.ingest.sem.imagej:ImageJReader",
    "pipeline.ingest.sem.generic:GenericTiffReader",
)

# What a file of each kind is called in messages, and the commands that measure it.
KIND_NAMES = {"sem": "an SEM image", "height": "a height map"}
COMMANDS_BY_KIND: dict[str, tuple[str, ...]] = {
    "sem": ("particles", "porosity", "protrusions"),
    "height": ("surface",),
}


def commands_for(kind: str) -> str:
    """The commands that take a file of `kind`, as advice: ``"use particles, porosity or
    protrusions"`` for ``"sem"``, ``"use surface"`` for ``"height"``; "" for an unknown kind."""
    cmds = COMMANDS_BY_KIND.get(kind, ())
    if not cmds:
        return ""
    return "use " + (cmds[0] if len(cmds) == 1 else ", ".join(cmds[:-1]) + " or " + cmds[-1])


@runtime_checkable
class Reader(Protocol):
    name: str
    kind: str
    suffixes: tuple[str, ...]
    description: str
    expects: str
    priority: int

    def can_open(self, head: bytes, path: Path) -> bool: ...

    def open(self, path: Path) -> Any: ...


def _load(spec: str) -> Reader:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)()


@functools.lru_cache(maxsize=1)
def _registered() -> tuple[Reader, ...]:
    """Built-in and plug-in readers, loaded once per process (entry-point scans are slow).

    `refresh()` forgets them, for a process that installs a plug-in while running.
    """
    found: list[Reader] = []
    for spec in BUILTIN_READERS:
        try:
            found.append(_load(spec))
        except ModuleNotFoundError as exc:
            if exc.name != spec.partition(":")[0]:
                raise
            log.warning("built-in reader %s is missing from this installation", spec)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            found.append(obj() if isinstance(obj, type) else obj)
        except Exception as exc:  # a broken plug-in must not break the built-ins
            log.warning("reader plug-in %s could not be loaded: %s", ep.name, exc)
    return tuple(sorted(found, key=lambda r: getattr(r, "priority", 50)))


def refresh() -> None:
    """Forget the loaded readers; the next call of `readers()` loads them again."""
    _registered.cache_clear()


def readers() -> list[Reader]:
    """All registered readers, in the order they are tried (by priority)."""
    return list(_registered())


def _head(path: Path) -> bytes:
    if not path.exists():
        raise UnreadableInput(path, "file does not exist")
    if not path.is_file():
        raise UnreadableInput(path, "not a regular file")
    try:
        with path.open("rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError as exc:
        raise UnreadableInput(path, f"cannot be opened ({exc.strerror or exc})") from None


def _accepts(r: Reader, head: bytes, path: Path, declined: list[str]) -> bool:
    try:
        ok = bool(r.can_open(head, path))
    except Exception as exc:  # sniffing must never crash the run
        declined.append(f"{r.name}: sniffing failed ({type(exc).__name__}: {exc})")
        return False
    if not ok:
        declined.append(f"{r.name}: expects {r.expects}")
    return ok


def _wrong_kind(path: Path, r: Reader, kind: str) -> WrongKind:
    found = r.kind
    what = KIND_NAMES.get(found, f"a {found} file")
    if found == "sem":
        what += f" ({getattr(r, 'label', None) or r.name})"
    asked = KIND_NAMES.get(kind, f"a {kind} file")
    return WrongKind(path, f"{path.name} is {what}, not {asked}", found_kind=found,
                     reader=r.name)


def find_reader(path: str | Path, *, kind: str | None = None) -> Reader:
    """The first reader whose `can_open` accepts the file.

    Parameters
    ----------
    path : str or Path
        The file.
    kind : {"height", "sem"}, optional
        Only readers of this kind may open it.

    Raises
    ------
    WrongKind
        `kind` is given, no reader of that kind recognises the file, and a reader of the
        other kind does (an SEM image given to a height-map command, or the reverse).
    UnreadableInput
        No reader recognises the file: one line naming what the content looks like and what
        to export instead. What each reader expected is logged at INFO.
    """
    path = Path(path)
    head = _head(path)
    if not head:
        raise UnreadableInput(path, "file is empty")
    declined: list[str] = []
    others: list[Reader] = []
    for r in readers():
        if kind is not None and r.kind != kind:
            others.append(r)
            continue
        if _accepts(r, head, path, declined):
            return r
    for r in others:  # only to say what the file is: the wrong command was used
        if _accepts(r, head, path, declined):
            raise _wrong_kind(path, r, kind)
    log.info("%s: no reader recognises this file; readers tried:\n  %s", path,
             "\n  ".join(declined))
    suffix = path.suffix.lower()
    for r in readers():  # a reader for this suffix whose optional dependency is missing
        if getattr(r, "available", True) is False and suffix and suffix in r.suffixes:
            raise UnreadableInput(path, f"no reader recognises this file: the {r.name} reader "
                                        f"of {suffix} files needs {r.expects}")

    raise UnreadableInput(path, f"no reader recognises this file: {describe_unrecognised(head)}")


def sha256_file(path: str | Path, *, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read(path: str | Path, *, kind: str | None = None, sha256: bool | str = True,
         as_xarray: bool = True):
    """Read an instrument file into an `xarray.DataArray` (see docs/design.md, Data model).

    Parameters
    ----------
    path : str or Path
        The file. Its content, not its suffix, decides the reader.
    kind : {"height", "sem"}, optional
        Only a reader of this kind may open the file; a file that a reader of the other
        kind recognises raises `WrongKind` (the wrong command for the file).
    sha256 : bool or str, default True
        The file's SHA-256 for provenance (``attrs["source_sha256"]``): True computes it
        (in a second thread, while the file is parsed); a 64-digit hex string is a digest
        the caller already has (an orchestrator that hashed the file when it found it);
        False leaves it None.
    as_xarray : bool, default True
        False returns a `pipeline.ingest.dataarray.Raster` (values, coords, attrs) without
        importing xarray: for commands that only look at a file (`electrode-qc inspect`).

    Raises
    ------
    WrongKind
        `kind` is given and the file is of the other kind (an `UnreadableInput`).
    UnreadableInput
        The file is missing, of no known format, truncated, corrupt or unsafe to parse, or
        its data cannot be real (a constant height block, an absurd pixel size).
    """
    from concurrent.futures import ThreadPoolExecutor

    path = Path(path)
    given = None
    if isinstance(sha256, str):
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower()):
            raise ValueError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")
        given = sha256.lower()
    head = _head(path)  # existence and readability first: a clear error, no thread started
    # The provenance hash reads the file in a second thread while the readers sniff and
    # parse it: hashlib releases the GIL, so on two cores the hash mostly overlaps.
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(sha256_file, path) if (sha256 is True and head) else None
        reader = find_reader(path, kind=kind)
        try:
            if as_xarray:
                da = reader.open(path)
            else:
                with as_rasters():
                    da = reader.open(path)
        except ElectrodeQCError:
            raise
        except Exception as exc:
            # Whatever a parser raises on untrusted bytes (struct.error, ValueError, a codec's
            # own error, ...) means this file cannot be read: say which reader and why.
            raise UnreadableInput(
                path, f"{reader.name} reader could not parse the file: {type(exc).__name__}: {exc}"
            ) from exc
        da.attrs["source_sha256"] = digest.result() if digest is not None else given
    da.attrs["reader"] = reader.name
    da.attrs["source_path"] = str(path)
    return da
