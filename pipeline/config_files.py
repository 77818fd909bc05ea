"""The configuration files (calibration/: specs, recipes, discovery rules, materials,
instrument profiles): find, load, validate the schema version, hash, extend.

Every file carries ``schema_version``. The loader refuses versions newer than it knows,
migrates older ones step by step (``_MIGRATIONS[kind][v]`` turns version v into v + 1),
and returns the file's identity (id, path, SHA-256) for provenance on every result.

Where the files come from, first found wins, file by file:

1. the site folder named by ``$ELECTRODE_QC_CALIBRATION`` (the command line's
   ``--calibration DIR`` sets it for the process and its workers): the site's instrument
   profiles, custom specs, recipes, discovery rules or materials;
2. the defaults shipped inside the package (``pipeline/_calibration``, copied from the
   repository's top-level calibration/ when a wheel is built, read through
   importlib.resources); in a source tree or an editable install, which have no bundled
   copy, the repository's calibration/ itself.

`calibration_file` finds one file; `calibration_dirs` lists the folders of a kind of file
(the instrument profiles of the site and the packaged ones are used together).

A spec may name another with ``extends = "<id>"`` (`extend`; the file ``<id>.toml``): it then
holds only what differs, its ``[[property]]`` entries merged by name into the base's. Its
identity carries the base's identity too, so a result names both files and their hashes.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import Any

from pipeline.errors import ConfigError

__all__ = [
    "SCHEMA_VERSIONS",
    "SITE_ENV",
    "CalibrationFile",
    "FromFile",
    "calibration_dirs",
    "calibration_file",
    "config_number",
    "defaults_dir",
    "extend",
    "load_versioned",
    "site_dir",
]

#: The environment variable naming the site calibration folder (``--calibration DIR``).
SITE_ENV = "ELECTRODE_QC_CALIBRATION"

#: The newest schema version this package knows, per kind of file.
SCHEMA_VERSIONS: dict[str, int] = {"recipe": 1, "instrument": 1, "materials": 1, "discovery": 1,
                                   "spec": 1, "manifest": 1}

_MIGRATIONS: dict[str, dict[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "recipe": {},
    "instrument": {},
    "materials": {},
    "discovery": {},
    "spec": {},
    "manifest": {},
}


@dataclass(frozen=True)
class CalibrationFile:
    """A loaded calibration file: its content (migrated) and its identity."""

    kind: str
    id: str
    path: str
    sha256: str
    schema_version: int
    data: dict[str, Any]
    extends: CalibrationFile | None = None

    def identity(self) -> dict[str, Any]:
        """id, path, SHA-256 and schema version (and the base's identity, when it extends
        one): what a result records of the file."""
        out = {
            "id": self.id,
            "path": self.path,
            "sha256": self.sha256,
            "schema_version": self.schema_version,
        }
        if self.extends is not None:
            out["extends"] = self.extends.identity()
        return out


class FromFile:
    """What a typed configuration read from one versioned file (its ``file``, a
    `CalibrationFile`) answers for that file: id, SHA-256, path, the file it extends, and the
    identity a result records."""

    file: CalibrationFile

    @property
    def id(self) -> str:
        return self.file.id

    @property
    def sha256(self) -> str:
        return self.file.sha256

    @property
    def path(self) -> str:
        return self.file.path

    @property
    def extends(self) -> CalibrationFile | None:
        return self.file.extends

    def identity(self) -> dict[str, Any]:
        """What a result records of the file (`CalibrationFile.identity`)."""
        return self.file.identity()


def defaults_dir() -> Path:
    """The default calibration files: the package's bundled copy, else the repository's.

    A wheel or a regular install carries them as ``pipeline/_calibration``; a source tree or
    an editable install has none and uses calibration/ at the top of the repository.
    """
    bundled = files("pipeline").joinpath("_calibration")
    if isinstance(bundled, Path) and bundled.is_dir():
        return bundled
    root = Path(__file__).resolve().parent.parent
    if (root / "calibration").is_dir() and (root / "pyproject.toml").is_file():
        return root / "calibration"
    raise ConfigError(
        str(bundled),
        "the default calibration files shipped with electrode-qc are missing (no "
        "pipeline/_calibration in the installed package, and no source tree with a "
        "calibration/ folder); reinstall electrode-qc from a wheel or its repository",
    )


def site_dir() -> Path | None:
    """The site calibration folder named by $ELECTRODE_QC_CALIBRATION, or None when unset.

    A name that is not an existing folder is a ConfigError: a misspelt site folder must not
    quietly fall back to the defaults.
    """
    env = os.environ.get(SITE_ENV)
    if not env:
        return None
    folder = Path(env).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            folder,
            f"the site calibration folder ({SITE_ENV} or --calibration) does not exist or is "
            "not a folder; name a folder that holds site files such as instruments/*.toml, "
            "or unset it to use the defaults",
        )
    return folder


def _relative(relative_path: str | PurePosixPath) -> PurePosixPath:
    rel = PurePosixPath(relative_path)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        raise ValueError(f"a calibration path is relative to the calibration folder and stays "
                         f"inside it, got {str(relative_path)!r}")
    return rel


def calibration_dirs(subfolder: str = "") -> list[Path]:
    """The folders to look in for `subfolder` (e.g. ``"instruments"``), first one wins.

    The site folder's (when $ELECTRODE_QC_CALIBRATION is set), then the defaults'; only
    folders that exist are listed, so a site folder without instruments/ adds no profiles.
    """
    rel = _relative(subfolder) if subfolder else PurePosixPath()
    site = site_dir()
    roots = [site, defaults_dir()] if site is not None else [defaults_dir()]
    return [root / rel for root in roots if (root / rel).is_dir()]


def calibration_file(relative_path: str | PurePosixPath) -> Path:
    """The calibration file at `relative_path` (e.g. ``"specs/claim15.toml"``).

    The site folder's copy when it has one, else the default. A file in neither is a
    ConfigError naming every place looked in.
    """
    rel = _relative(relative_path)
    site = site_dir()
    places = ([(site / rel, f"site folder, {SITE_ENV}")] if site is not None else []) + [
        (defaults_dir() / rel, "defaults shipped with electrode-qc")]
    for path, _what in places:
        if path.is_file():
            return path
    looked = " and ".join(f"{path} ({what})" for path, what in places)
    hint = "" if site is not None else f"; a site folder ({SITE_ENV} or --calibration) may supply it"
    raise ConfigError(str(rel), f"no such calibration file: looked in {looked}{hint}")


def load_versioned(path: str | Path, kind: str) -> CalibrationFile:
    """Load a TOML calibration file of `kind`, checking and migrating its schema version."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(path, f"cannot read {kind} file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"{kind} file is not valid TOML: {exc}") from None
    newest = SCHEMA_VERSIONS[kind]
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(path, f"{kind} file needs an integer schema_version >= 1, found {version!r}")
    if version > newest:
        raise ConfigError(
            path,
            f"{kind} schema_version {version} is newer than this electrode-qc knows ({newest}); "
            "upgrade electrode-qc",
        )
    while version < newest:
        data = _MIGRATIONS[kind][version](data)
        version += 1
        data["schema_version"] = version
    return CalibrationFile(
        kind=kind,
        id=str(data.get("id") or path.stem),
        path=str(path),
        sha256=hashlib.sha256(raw).hexdigest(),
        schema_version=version,
        data=data,
    )


def config_number(path, where: str, value: Any, *, lo: float | None = None,
                  hi: float | None = None, positive: bool = False, allow_zero: bool = True,
                  text: bool = False) -> float:
    """`value` of the setting `where` in the file `path` as a float, or a ConfigError that
    names both: a number (a TOML bool is not one; with `text`, a string such as a CSV cell
    may hold it), finite, > 0 when `positive`, not 0 unless `allow_zero`, within [lo, hi].

    >>> config_number("r.toml", "[outliers] n_sigma", 6, lo=1, hi=100)
    6.0
    >>> config_number("r.toml", "[outliers] n_sigma", 0.5, lo=1, hi=100)
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: r.toml: [outliers] n_sigma = 0.5 is outside its range [1, 100]
    """
    if text and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(path, f"{where} must be a number, found {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(path, f"{where} must be a number, found {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(path, f"{where} must be finite, found {value!r}")
    if positive and v <= 0:
        raise ConfigError(path, f"{where} must be > 0, found {v!r}")
    if not allow_zero and v == 0:
        raise ConfigError(path, f"{where} must not be 0")
    if lo is not None and hi is not None and not lo <= v <= hi:
        raise ConfigError(path, f"{where} = {v:g} is outside its range [{lo:g}, {hi:g}]")
    if lo is not None and v < lo:
        raise ConfigError(path, f"{where} = {v:g} is below its limit {lo:g}")
    if hi is not None and v > hi:
        raise ConfigError(path, f"{where} = {v:g} is above its limit {hi:g}")
    return v


MAX_EXTENDS = 4  # how deep a chain of ``extends`` may go
_FOLDERS = {"spec": "specs"}  # the kinds that may extend another, and their sub-folder
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")  # a file name in the same folder, no path


def extend(cf: CalibrationFile, *, merge_by_name: tuple[str, ...] = (), depth: int = 0
           ) -> CalibrationFile:
    """`cf` on top of the file it ``extends`` (itself when it extends none).

    The base, named by its file name without ``.toml``, is looked for beside `cf`, else
    among the calibration files of its kind (`calibration_file`; `load_spec` uses this for
    specs, the only kind that may extend another today). Top-level values of `cf`
    replace the base's; for each table array in `merge_by_name` (e.g. ``"property"``), an
    entry of `cf` with the ``name`` of a base entry updates that entry, and other entries are
    added after the base's. A chain longer than `MAX_EXTENDS`, a file that extends itself
    or a base of another kind is a ConfigError.

    >>> spec = extend(load_versioned(defaults_dir() / "specs" / "gate-production.toml", "spec"),
    ...               merge_by_name=("property",))
    >>> spec.extends.id, [p["name"] for p in spec.data["property"]], spec.data["combine"]
    ('claim15', ['porosity', 'Sa', 'Sz'], 'all')
    """
    base_id = cf.data.get("extends")
    if base_id is None:
        return cf
    if (not isinstance(base_id, str) or not _ID.fullmatch(base_id) or base_id == cf.id
            or depth >= MAX_EXTENDS):
        raise ConfigError(cf.path, f"extends = {base_id!r}: name another {cf.kind} file by its id "
                                   f"(not itself; at most {MAX_EXTENDS} levels)")
    base_path = Path(cf.path).parent / f"{base_id}.toml"
    if not base_path.is_file():
        base_path = calibration_file(PurePosixPath(_FOLDERS.get(cf.kind, ".")) / f"{base_id}.toml")
    base = extend(load_versioned(base_path, cf.kind), merge_by_name=merge_by_name,
                  depth=depth + 1)
    data = {k: v for k, v in base.data.items() if k not in ("id", "title")}
    data.update({k: v for k, v in cf.data.items() if k not in merge_by_name})
    for key in merge_by_name:
        entries = [dict(e) for e in base.data.get(key) or []]
        index = {e.get("name"): i for i, e in enumerate(entries)}
        for e in cf.data.get(key) or []:
            if e.get("name") in index:
                entries[index[e["name"]]].update(e)
            else:
                entries.append(dict(e))
        if entries:
            data[key] = entries
    return CalibrationFile(kind=cf.kind, id=cf.id, path=cf.path, sha256=cf.sha256,
                           schema_version=cf.schema_version, data=data, extends=base)
