"""Export folders -> samples, and the role of each file, from rules kept as data.

An export folder holds one sub-folder per electrode (the folder name is the sample id), or
files side by side whose names start with the sample id (``[grouping] sample_pattern`` of
calibration/discovery.toml); image files at the top that match no pattern form one sample
named after the folder. An optional manifest, ``samples.toml`` or ``samples.csv`` at the top,
gives sample ids, the pressing state, the before-pressing state or a paired sample for void
reduction, layer thickness, areal mass, the recipe and role overrides. A sample listed in the
manifest without files is still a sample: it is judged on its gravimetric porosity alone.

Roles: ``psd`` (high-magnification SEM), ``surface`` (low-magnification SEM), ``cross_section``
and ``height``. `assign_role` applies the ``[[rule]]`` tables in order to an image as read
(its kind and pixel size) and its file name; a manifest override wins.
"""

from __future__ import annotations

import csv
import fnmatch
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.calibration import CalibrationFile, calibration_dir, load_versioned
from pipeline.errors import ConfigError

__all__ = ["ROLES", "Sample", "assign_role", "discover", "load_manifest", "load_rules"]

log = logging.getLogger(__name__)

ROLES = ("psd", "surface", "cross_section", "height")
MANIFEST_NAMES = ("samples.toml", "samples.csv")
_SAMPLE_KEYS = {
    "id", "folder", "title", "state", "pair", "thickness_um", "u_thickness_um",
    "areal_mass_mg_cm2", "u_areal_mass_mg_cm2", "expected_min_diameter_nm", "recipe",
    "before", "roles", "notes",
}
_BEFORE_KEYS = {"thickness_um", "u_thickness_um", "areal_mass_mg_cm2", "u_areal_mass_mg_cm2"}
_RULE_KEYS = {"role", "kind", "name", "pixel_nm_min", "pixel_nm_max"}


@dataclass
class Sample:
    """One electrode: its id, files (sorted) and manifest entry (empty dict if none)."""

    id: str
    files: list[Path] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return str(self.manifest.get("state", "after"))


def load_rules(path: str | Path | None = None) -> CalibrationFile:
    """calibration/discovery.toml (or `path`), validated."""
    path = Path(path) if path is not None else calibration_dir() / "discovery.toml"
    cf = load_versioned(path, "discovery")
    d = cf.data
    grouping = d.get("grouping", {})
    pat = grouping.get("sample_pattern")
    if pat is not None:
        try:
            rx = re.compile(pat)
        except re.error as exc:
            raise ConfigError(path, f"[grouping] sample_pattern is not a valid regex: {exc}") from None
        if "sample" not in rx.groupindex:
            raise ConfigError(path, "[grouping] sample_pattern needs a (?P<sample>...) group")
    skip = grouping.get("skip", [])
    if not isinstance(skip, list) or not all(isinstance(s, str) for s in skip):
        raise ConfigError(path, "[grouping] skip must be a list of file-name globs")
    rules = d.get("rule", [])
    if not isinstance(rules, list) or not rules:
        raise ConfigError(path, "discovery rules need at least one [[rule]]")
    for i, r in enumerate(rules, 1):
        extra = set(r) - _RULE_KEYS
        if extra:
            raise ConfigError(path, f"[[rule]] {i}: unknown keys {sorted(extra)}")
        if r.get("role") not in ROLES:
            raise ConfigError(path, f"[[rule]] {i}: role must be one of {ROLES}, "
                                    f"found {r.get('role')!r}")
        if r.get("kind") not in (None, "sem", "height"):
            raise ConfigError(path, f"[[rule]] {i}: kind must be 'sem' or 'height'")
        names = r.get("name", [])
        if isinstance(names, str):
            r["name"] = [names]
        elif not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(path, f"[[rule]] {i}: name must be a glob or a list of globs")
        for k in ("pixel_nm_min", "pixel_nm_max"):
            v = r.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not v > 0):
                raise ConfigError(path, f"[[rule]] {i}: {k} must be a positive number")
    return cf


def _num(path, sid, key, value, *, required=False) -> float | None:
    if value is None or value == "":
        if required:
            raise ConfigError(path, f"sample {sid!r}: {key} is required")
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(path, f"sample {sid!r}: {key} must be a number, found {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(path, f"sample {sid!r}: {key} must be a finite positive number, "
                                f"found {value!r}")
    return v


def _validate_sample(path: Path, s: dict[str, Any]) -> dict[str, Any]:
    sid = s.get("id")
    if not isinstance(sid, str) or not sid.strip() or "/" in sid or "\\" in sid:
        raise ConfigError(path, f"every sample needs an id without slashes, found {sid!r}")
    extra = set(s) - _SAMPLE_KEYS
    if extra:
        raise ConfigError(path, f"sample {sid!r}: unknown keys {sorted(extra)}")
    out = dict(s)
    if out.get("state", "after") not in ("before", "after"):
        raise ConfigError(path, f"sample {sid!r}: state must be 'before' or 'after', "
                                f"found {out.get('state')!r}")
    for k in ("thickness_um", "u_thickness_um", "areal_mass_mg_cm2", "u_areal_mass_mg_cm2",
              "expected_min_diameter_nm"):
        if k in out:
            out[k] = _num(path, sid, k, out[k])
    recipe = out.get("recipe")
    if recipe is not None:
        if not isinstance(recipe, dict) or not recipe:
            raise ConfigError(path, f"sample {sid!r}: recipe must map components to masses")
        out["recipe"] = {str(k): _num(path, sid, f"recipe {k}", v, required=True)
                         for k, v in recipe.items()}
    before = out.get("before")
    if before is not None:
        if not isinstance(before, dict) or set(before) - _BEFORE_KEYS:
            raise ConfigError(path, f"sample {sid!r}: [before] takes only {sorted(_BEFORE_KEYS)}")
        out["before"] = {k: _num(path, sid, f"before {k}", v) for k, v in before.items()}
    roles = out.get("roles")
    if roles is not None and (not isinstance(roles, dict)
                              or any(v not in ROLES for v in roles.values())):
        raise ConfigError(path, f"sample {sid!r}: roles maps file globs to one of {ROLES}")
    return out


def _csv_sample(row: dict[str, str]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    before: dict[str, str] = {}
    for k, v in row.items():
        if k is None or v is None or not str(v).strip():
            continue
        k, v = k.strip(), str(v).strip()
        if k.startswith("before_"):
            before[k[len("before_"):]] = v
        elif k == "recipe":  # "carbon_black=6; silver=2; pvdf=0.56"
            s["recipe"] = {a.strip(): b.strip() for a, b in
                           (p.split("=", 1) for p in v.split(";") if "=" in p)}
        else:
            s[k] = v
    if before:
        s["before"] = before
    return s


def load_manifest(folder: str | Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """The manifest of an export folder: ``({sample id: entry}, identity)``, or ``({}, None)``.

    ``samples.toml`` takes ``[[sample]]`` tables; ``samples.csv`` one row per sample with the
    same keys as columns, ``before_<key>`` for the before-pressing state and ``recipe`` as
    ``"component=mass; ..."``.
    """
    folder = Path(folder)
    found = [folder / n for n in MANIFEST_NAMES if (folder / n).is_file()]
    if not found:
        return {}, None
    if len(found) > 1:
        raise ConfigError(folder, "both samples.toml and samples.csv are present; keep one")
    path = found[0]
    if path.suffix == ".toml":
        cf = load_versioned(path, "manifest")
        rows = cf.data.get("sample", [])
        ident = cf.identity()
    else:
        import hashlib

        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ConfigError(path, "samples.csv is not UTF-8 text") from None
        rows = [_csv_sample(r) for r in csv.DictReader(text.splitlines())]
        ident = {"id": "samples.csv", "path": str(path),
                 "sha256": hashlib.sha256(raw).hexdigest(), "schema_version": 1}
    if not isinstance(rows, list):
        raise ConfigError(path, "the manifest needs [[sample]] tables")
    entries: dict[str, dict[str, Any]] = {}
    for r in rows:
        if not isinstance(r, dict):
            raise ConfigError(path, "every [[sample]] must be a table")
        s = _validate_sample(path, r)
        if s["id"] in entries:
            raise ConfigError(path, f"sample id {s['id']!r} is listed twice")
        entries[s["id"]] = s
    for s in entries.values():
        pair = s.get("pair")
        if pair is not None and pair not in entries:
            raise ConfigError(path, f"sample {s['id']!r}: pair {pair!r} is not in the manifest")
        if pair is not None and "before" in s:
            raise ConfigError(path, f"sample {s['id']!r}: give either pair or [before], not both")
    return entries, ident


def _skipped(name: str, globs: list[str]) -> bool:
    low = name.lower()
    return any(fnmatch.fnmatch(low, g.lower()) for g in globs)


def _files_in(folder: Path, skip: list[str], notes: list[str]) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name in MANIFEST_NAMES and p.parent == folder:
            continue
        if any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if _skipped(p.name, skip):
            notes.append(f"skipped {p.relative_to(folder)}: not an image (discovery skip rule)")
            continue
        out.append(p)
    return out


def discover(folder: str | Path, *, rules: CalibrationFile | None = None,
             single: bool = False) -> tuple[list[Sample], dict[str, Any] | None]:
    """The samples of an export folder (or, with `single`, the folder as one sample).

    Returns the samples, sorted by id, and the manifest identity (None without a manifest).
    Raises ConfigError when the folder does not exist or the manifest is invalid.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(folder, "is not a folder")
    rules = rules or load_rules()
    grouping = rules.data.get("grouping", {})
    skip = list(grouping.get("skip", []))
    pattern = re.compile(grouping["sample_pattern"]) if grouping.get("sample_pattern") else None
    manifest, ident = load_manifest(folder)
    single_id = folder.name
    if single:  # the electrode's own entry: in its folder's manifest, else its parent's
        entries, eid = (manifest, ident) if manifest else load_manifest(folder.parent)
        mine = [sid for sid, m in entries.items() if m.get("folder", sid) == folder.name]
        if not mine and len(manifest) == 1:  # a manifest inside the folder, for it alone
            mine = list(manifest)
        manifest, ident = ({mine[0]: entries[mine[0]]}, eid) if mine else ({}, None)
        single_id = mine[0] if mine else folder.name
    else:
        mapped: dict[str, str] = {}
        for sid, m in manifest.items():
            f = m.get("folder")
            if f is None:
                continue
            if f in mapped:
                raise ConfigError(ident["path"], f"samples {mapped[f]!r} and {sid!r} both "
                                                 f"name folder {f!r}")
            if not (folder / f).is_dir():
                raise ConfigError(ident["path"], f"sample {sid!r}: folder {f!r} is not a "
                                                 f"sub-folder of {folder}")
            mapped[f] = sid
    samples: dict[str, Sample] = {}

    def sample(sid: str) -> Sample:
        if sid not in samples:
            samples[sid] = Sample(sid)
        return samples[sid]

    if single:
        s = sample(single_id)
        s.files = _files_in(folder, skip, s.notes)
    else:
        by_folder = {m.get("folder", sid): sid for sid, m in manifest.items()}
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            if p.is_dir():
                s = sample(by_folder.get(p.name, p.name))
                s.files = sorted(s.files + _files_in(p, skip, s.notes))
            elif p.is_file() and p.name not in MANIFEST_NAMES:
                if _skipped(p.name, skip):
                    log.info("skipped %s: not an image (discovery skip rule)", p)
                    continue
                m = pattern.match(p.name) if pattern else None
                sid = m.group("sample") if m else folder.name
                sample(by_folder.get(sid, sid)).files.append(p)
    for sid, entry in manifest.items():
        sample(sid).manifest = entry
    out = [s for s in sorted(samples.values(), key=lambda s: s.id)
           if s.files or s.manifest or s.notes]
    for s in out:
        s.files.sort()
        if not s.files and not s.manifest:
            s.notes.append("no image files")
    log.info("%s: %d samples, %d files", folder, len(out), sum(len(s.files) for s in out))
    return out, ident


def assign_role(da, path: str | Path, rules: CalibrationFile,
                overrides: dict[str, str] | None = None) -> str | None:
    """The role of an image as read (`da`, with kind and pixel size) named `path`.

    Manifest `overrides` ({file glob: role}) win; then the first ``[[rule]]`` whose kind,
    name globs and pixel-size range all hold. None when no rule matches.
    """
    name = Path(path).name.lower()
    for glob, role in (overrides or {}).items():
        if fnmatch.fnmatch(name, glob.lower()):
            return role
    kind = da.attrs.get("kind")
    ps = da.attrs.get("pixel_size_um")
    px_nm = max(float(ps["x"]), float(ps["y"])) * 1e3 if ps else None
    for r in rules.data.get("rule", []):
        if r.get("kind") and r["kind"] != kind:
            continue
        names = r.get("name") or []
        if names and not any(fnmatch.fnmatch(name, g.lower()) for g in names):
            continue
        lo, hi = r.get("pixel_nm_min"), r.get("pixel_nm_max")
        if (lo is not None or hi is not None) and px_nm is None:
            continue
        if lo is not None and px_nm < lo or hi is not None and px_nm > hi:
            continue
        return r["role"]
    return None

