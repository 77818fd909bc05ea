"""Versioned data files in calibration/: find, load, validate the schema version, hash.

Every file carries ``schema_version``. The loader refuses versions newer than it knows,
migrates older ones step by step (``_MIGRATIONS[kind][v]`` turns version v into v + 1),
and returns the file's identity (id, path, SHA-256) for provenance on every result.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError

__all__ = ["SCHEMA_VERSIONS", "CalibrationFile", "calibration_dir", "load_versioned"]

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

    def identity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path,
            "sha256": self.sha256,
            "schema_version": self.schema_version,
        }


def calibration_dir() -> Path:
    """The calibration/ folder: $ELECTRODE_QC_CALIBRATION, else the one beside the package."""
    env = os.environ.get("ELECTRODE_QC_CALIBRATION")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "calibration"


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
