"""Export folders -> samples, and the role of each file, from rules kept as data.

An export folder holds one sub-folder per electrode (the folder name is the sample id), or
files side by side whose names start with the sample id (``[grouping] sample_pattern`` of
calibration/discovery.toml). Files at the top that match no pattern belong to no sample:
they are named in a folder-level note and not measured, unless the folder is explicitly one
electrode: with ``single=True`` every file under it is that electrode's, and a manifest entry
with ``folder = "."``, or whose id is the folder's own name, takes the files at the top that
match no pattern. An optional manifest, ``samples.toml`` or ``samples.csv`` at the top, gives
sample ids, the pressing state, the before-pressing state or a paired sample for void
reduction, layer thickness, areal mass, the recipe and role overrides. Every manifest entry
must find its files (its sub-folder, or files named after it): one that finds none is a
ConfigError naming the closest folder or file prefix, unless it says ``files = "none"``, a
sample judged on its gravimetric porosity alone.

What discovery reads stays inside the export folder. A symbolic link (file or folder, at any
depth) that leads out of it, loops or leads nowhere is skipped with a folder-level note and
never read; a link that stays inside is followed, and a file reached twice counts once (its
own path wins over a link to it); folders deeper than `MAX_DEPTH` are not entered. A
manifest ``folder`` is ``"."`` or a sub-folder at the top, never a path or a link out of the
export folder. Paths given as `exclude` (the run's output folder) are not read. Sample ids name output files, so ids with control or bidirectional-formatting
characters, slashes, ``.`` or ``..``, or longer than `MAX_ID_BYTES` in UTF-8 are refused.

Roles: ``psd`` (high-magnification SEM), ``surface`` (low-magnification SEM), ``cross_section``
and ``height``. `assign_role` applies the ``[[rule]]`` tables in order to an image as read
(its kind and pixel size) and its file name; a manifest override wins.
"""

from __future__ import annotations

import csv
import difflib
import errno
import fnmatch
import itertools
import logging
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from pipeline.config_files import (
    CalibrationFile,
    FromFile,
    calibration_file,
    config_number,
    load_versioned,
)
from pipeline.errors import ConfigError

__all__ = [
    "MAX_DEPTH",
    "MAX_ID_BYTES",
    "ROLES",
    "DiscoveryRules",
    "RoleRule",
    "Sample",
    "assign_role",
    "discover",
    "load_manifest",
    "load_rules",
    "magnification_class",
]

log = logging.getLogger(__name__)

ROLES = ("psd", "surface", "cross_section", "height")
MANIFEST_NAMES = ("samples.toml", "samples.csv")
# Outputs are named "<sample id>-<12 hex digits>.parquet" (and .csv): 21 bytes beyond the id,
# and most file systems allow 255 bytes per name (ext4, XFS, APFS; NTFS 255 UTF-16 units).
# 200 leaves room for those suffixes and for the temporary names written beside an output.
MAX_ID_BYTES = 200
# C0 controls, DEL, C1 controls, the bidirectional marks, embeddings, overrides and isolates
# (a name shown in a report or a terminal must read as it is stored)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # bytes of a file name that are not UTF-8
_SAMPLE_KEYS = {
    "id", "folder", "files", "title", "state", "pair", "thickness_um", "u_thickness_um",
    "areal_mass_mg_cm2", "u_areal_mass_mg_cm2", "expected_min_diameter_nm", "recipe",
    "before", "roles", "notes",
}
_BEFORE_KEYS = {"thickness_um", "u_thickness_um", "areal_mass_mg_cm2", "u_areal_mass_mg_cm2"}
_RULE_KEYS = {"role", "kind", "name", "pixel_nm_min", "pixel_nm_max"}
_NO_FILES = 'if it has no images on purpose (weighed only), say files = "none" in its entry'
# Folders below the export folder that discovery enters: exports are a few levels deep; a
# deeper tree is not an export (and would exhaust the recursion of the walk).
MAX_DEPTH = 32
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


def _check_grouping(path, grouping: dict[str, Any]) -> None:
    """[grouping]: a sample_pattern regex with a (?P<sample>...) group; skip globs."""
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


def _check_rule(path, i: int, r: dict[str, Any]) -> None:
    """[[rule]] number `i`: known keys, a role, a kind, name globs (a single glob becomes a
    list, in place), positive pixel-size bounds."""
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


@dataclass(frozen=True)
class RoleRule:
    """One ``[[rule]]`` of the discovery rules: the role it gives, the reader's kind it needs
    (None: any), the case-insensitive file-name globs of which one must match (none: any name)
    and the pixel-size range in nm (None: open on that side)."""

    role: str
    kind: str | None
    names: tuple[str, ...]
    pixel_nm_min: float | None
    pixel_nm_max: float | None

    def matches(self, kind: str | None, name_lower: str, px_nm: float | None) -> bool:
        """Whether an image of reader kind `kind`, lower-case file name `name_lower` and pixel
        size `px_nm` (nm, None when unknown) meets the rule; an unknown pixel size meets no
        rule with a pixel-size bound."""
        if self.kind and self.kind != kind:
            return False
        if self.names and not any(fnmatch.fnmatch(name_lower, g.lower()) for g in self.names):
            return False
        lo, hi = self.pixel_nm_min, self.pixel_nm_max
        if lo is None and hi is None:
            return True
        if px_nm is None:
            return False
        return not (lo is not None and px_nm < lo or hi is not None and px_nm > hi)


@dataclass(frozen=True)
class DiscoveryRules(FromFile):
    """Validated discovery rules: the ``[grouping]`` sample pattern (None: none) and skip
    globs, the ``[[rule]]`` tables in order, the ``[magnification] pixel_nm_edges`` (nm), and
    the file they came from (`identity`). Numbers are kept as the file gives them."""

    file: CalibrationFile
    sample_pattern: str | None
    skip: tuple[str, ...]
    rules: tuple[RoleRule, ...]
    pixel_nm_edges: tuple[float, ...]


def load_rules(path: str | Path | None = None) -> DiscoveryRules:
    """calibration/discovery.toml (or `path`), validated.

    Examples
    --------
    >>> r = load_rules()
    >>> r.identity()["id"], r.rules[0].role, r.rules[0].kind
    ('discovery', 'height', 'height')
    >>> r.rules[4].pixel_nm_max, r.pixel_nm_edges[:3]
    (20.0, (1.0, 3.0, 10.0))
    """
    path = Path(path) if path is not None else calibration_file("discovery.toml")
    cf = load_versioned(path, "discovery")
    d = cf.data
    grouping = d.get("grouping", {})
    _check_grouping(path, grouping)
    rules = d.get("rule", [])
    if not isinstance(rules, list) or not rules:
        raise ConfigError(path, "discovery rules need at least one [[rule]]")
    for i, r in enumerate(rules, 1):
        _check_rule(path, i, r)
    edges = d.get("magnification", {}).get("pixel_nm_edges", [])
    if (not isinstance(edges, list) or any(isinstance(e, bool) or not isinstance(e, (int, float))
                                           or not e > 0 for e in edges)
            or any(b <= a for a, b in itertools.pairwise(edges))):
        raise ConfigError(path, "[magnification] pixel_nm_edges must be increasing positive "
                                "numbers (nm)")
    return DiscoveryRules(
        file=cf,
        sample_pattern=grouping.get("sample_pattern") or None,
        skip=tuple(grouping.get("skip", [])),
        rules=tuple(RoleRule(role=r["role"], kind=r.get("kind"),
                             names=tuple(r.get("name") or ()),
                             pixel_nm_min=r.get("pixel_nm_min"),
                             pixel_nm_max=r.get("pixel_nm_max"))
                    for r in rules),
        pixel_nm_edges=tuple(edges),
    )


def magnification_class(pixel_nm: float, rules: DiscoveryRules | None = None) -> str:
    """The magnification class of a field of view: the band of
    ``[magnification] pixel_nm_edges`` (discovery rules) its pixel size falls in, named by
    that band ("100-300 nm/px"; "< 1 nm/px" and ">= 10000 nm/px" outside the edges)."""
    edges = [float(e) for e in (rules if rules is not None else load_rules()).pixel_nm_edges]
    p = float(pixel_nm)
    if not edges:
        return "all"
    if p < edges[0]:
        return f"< {edges[0]:g} nm/px"
    for lo, hi in itertools.pairwise(edges):
        if p < hi:
            return f"{lo:g}-{hi:g} nm/px"
    return f">= {edges[-1]:g} nm/px"


def _num(path, sid, key, value, *, required=False) -> float | None:
    """A manifest's positive number (TOML or a CSV cell), or None when it is not given."""
    if value is None or value == "":
        if required:
            raise ConfigError(path, f"sample {sid!r}: {key} is required")
        return None
    return config_number(path, f"sample {sid!r}: {key}", value, positive=True, text=True)


def _shown(name: str) -> str:
    """`name` as a note shows it: escaped when it holds control characters or non-UTF-8."""
    return repr(name) if _CONTROL.search(name) or _SURROGATE.search(name) else name


def _names(paths: list[Path], limit: int = 10) -> str:
    shown = ", ".join(_shown(p.name) for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _check_id(sid: str, path: str | Path | None, fix: str) -> None:
    """Refuse a sample id that cannot name output files or would not read as it is stored."""
    if sid in (".", "..") or "/" in sid or "\\" in sid:
        raise ConfigError(path, f"sample id {sid!r} must be one name without slashes, not "
                                f"'.' or '..' (it names output files); {fix}")
    bad = _CONTROL.search(sid)
    if bad:
        raise ConfigError(path, f"sample id {sid!r} contains the control character "
                                f"U+{ord(bad.group()):04X}; {fix}")
    bad = _SURROGATE.search(sid)
    if bad:
        raise ConfigError(path, f"sample id {sid!r} is not UTF-8 text (U+{ord(bad.group()):04X} "
                                f"stands for a byte that is not); {fix}")
    n = len(sid.encode("utf-8"))
    if n > MAX_ID_BYTES:
        raise ConfigError(path, f"sample id {sid[:40]!r}... is {n} bytes long in UTF-8, more "
                                f"than the {MAX_ID_BYTES} that output file names allow; {fix}")


def _folder_value(path: Path, sid: str, f: Any) -> str:
    """A manifest ``folder``: "." or one sub-folder at the top of the export folder."""
    if not isinstance(f, str) or not f.strip():
        raise ConfigError(path, f"sample {sid!r}: folder must name a sub-folder, found {f!r}")
    if f.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", f):
        raise ConfigError(path, f"sample {sid!r}: folder {f!r} is an absolute path; name a "
                                f"sub-folder of the export folder")
    parts = [p for p in re.split(r"[/\\]", f) if p not in ("", ".")]
    if ".." in parts:
        raise ConfigError(path, f"sample {sid!r}: folder {f!r} leads out of the export folder; "
                                f"name a sub-folder of it")
    if len(parts) > 1:
        raise ConfigError(path, f"sample {sid!r}: folder {f!r} is nested; name a sub-folder at "
                                f"the top of the export folder, or '.' for the folder itself")
    return parts[0] if parts else "."


def _check_tables(path: Path, sid: str, out: dict[str, Any]) -> None:
    """A sample's [recipe] (component -> mass, all required) and [before] (thickness and
    areal mass before pressing), as numbers, in place."""
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


def _validate_sample(path: Path, s: dict[str, Any]) -> dict[str, Any]:
    sid = s.get("id")
    if not isinstance(sid, str) or not sid.strip():
        raise ConfigError(path, f"every sample needs an id, found {sid!r}")
    _check_id(sid, path, "rename the manifest entry")
    extra = set(s) - _SAMPLE_KEYS
    if extra:
        raise ConfigError(path, f"sample {sid!r}: unknown keys {sorted(extra)}")
    out = dict(s)
    if out.get("state", "after") not in ("before", "after"):
        raise ConfigError(path, f"sample {sid!r}: state must be 'before' or 'after', "
                                f"found {out.get('state')!r}")
    if out.get("files", "none") != "none":
        raise ConfigError(path, f"sample {sid!r}: files takes only \"none\" (a sample judged "
                                f"on its gravimetric porosity alone), found {out['files']!r}")
    if "folder" in out:
        out["folder"] = _folder_value(path, sid, out["folder"])
    for k in ("thickness_um", "u_thickness_um", "areal_mass_mg_cm2", "u_areal_mass_mg_cm2",
              "expected_min_diameter_nm"):
        if k in out:
            out[k] = _num(path, sid, k, out[k])
    _check_tables(path, sid, out)
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
    ``"component=mass; ..."``. A manifest that is a link out of `folder` is refused, unread.
    """
    folder = Path(folder)
    found = [folder / n for n in MANIFEST_NAMES if (folder / n).is_file()]
    if not found:
        return {}, None
    if len(found) > 1:
        raise ConfigError(folder, "both samples.toml and samples.csv are present; keep one")
    path = found[0]
    if not _inside(os.path.realpath(path), os.path.realpath(folder)):
        raise ConfigError(path, "is a link that leads out of the folder; put the manifest "
                                "itself in the folder")
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


def _inside(real: str, top: str) -> bool:
    return real == top or real.startswith(os.path.join(top, ""))


class _Entry(NamedTuple):
    path: Path     # as reached from the export folder (through links, if any)
    real: str      # resolved
    is_dir: bool
    is_link: bool  # this entry is a symbolic link
    linked: bool   # reached through a link (this entry or a folder above it)


class _Walk:
    """An export folder's files, read without leaving it; `notes` says what was skipped."""

    def __init__(self, root: Path, exclude: Iterable[str | Path], skip: list[str],
                 level: int):
        self.root = root
        self.level = level
        self.real = os.path.realpath(root)
        # the export folder itself, or a folder holding it, is not something to skip inside it
        self.exclude = sorted({x for x in map(os.path.realpath, exclude)
                               if x != self.real and _inside(x, self.real)})
        self.skip = skip
        self.notes: list[str] = []
        self.visited: set[str] = set()

    def note(self, text: str, level: int | None = None) -> None:
        self.notes.append(text)
        log.log(self.level if level is None else level, "%s: %s", self.root, text)

    def rel(self, p: Path) -> str:
        return _shown(p.relative_to(self.root).as_posix())

    def excluded(self, real: str) -> bool:
        return any(_inside(real, x) for x in self.exclude)

    def _resolve(self, p: Path) -> str | None:
        """Where link `p` leads when it is followed (inside the folder, existing), else None."""
        try:
            real = os.path.realpath(p, strict=True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                why = "a symlink loop"
            elif not _inside(os.path.realpath(p), self.real):
                why = "it leads out of the export folder"
            else:
                why = "it leads to nothing"
            self.note(f"skipped link {self.rel(p)}: {why}")
            return None
        if not _inside(real, self.real):
            self.note(f"skipped link {self.rel(p)}: it leads out of the export folder, and "
                      f"discovery reads only inside it")
            return None
        return real

    def entries(self, folder: _Entry) -> Iterator[_Entry]:
        """The folders and regular files in `folder`, by name; hidden ones left out. Lazy, so
        notes come in the order of the walk."""
        try:
            with os.scandir(folder.path) as it:
                items = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            if folder.path == self.root:
                raise ConfigError(self.root, f"cannot be listed: {exc.strerror or exc}") from None
            self.note(f"skipped {self.rel(folder.path)}: cannot be listed "
                      f"({exc.strerror or exc})")
            return
        for e in items:
            if e.name.startswith("."):
                continue
            p = folder.path / e.name
            try:
                if e.is_symlink():
                    real = self._resolve(p)
                    if real is None:
                        continue
                    mode = os.stat(real).st_mode
                    is_dir, is_file, link = stat.S_ISDIR(mode), stat.S_ISREG(mode), True
                else:
                    real, link = os.path.join(folder.real, e.name), False
                    is_dir = e.is_dir(follow_symlinks=False)
                    is_file = not is_dir and e.is_file(follow_symlinks=False)
            except OSError as exc:
                self.note(f"skipped {self.rel(p)}: cannot be read ({exc.strerror or exc})")
                continue
            if self.excluded(real):
                self.note(f"skipped {self.rel(p)}: excluded from discovery (an output folder "
                          f"is not read as input)", logging.INFO)
            elif is_dir or is_file:
                yield _Entry(p, real, is_dir, link, folder.linked or link)
            else:
                self.note(f"skipped {self.rel(p)}: not a regular file or folder")

    def files(self, folder: _Entry, ancestors: frozenset[str], notes: list[str],
              base: Path) -> list[_Entry]:
        """Every regular file under `folder`; skip-rule notes (relative to `base`) to `notes`."""
        if folder.is_link and folder.real in ancestors | {self.real}:
            self.note(f"skipped link {self.rel(folder.path)}: a symlink loop (it leads back to "
                      f"a folder that holds it)")
            return []
        if folder.is_link and folder.real in self.visited:
            self.note(f"skipped link {self.rel(folder.path)}: it leads to a folder read already")
            return []
        if len(ancestors) > MAX_DEPTH:
            self.note(f"skipped {self.rel(folder.path)}: more than {MAX_DEPTH} folders deep")
            return []
        self.visited.add(folder.real)
        ancestors = ancestors | {folder.real}
        out = []
        for e in self.entries(folder):
            if e.is_dir:
                out += self.files(e, ancestors, notes, base)
            elif folder.path == self.root and e.path.name in MANIFEST_NAMES:
                continue
            elif _skipped(e.path.name, self.skip):
                notes.append(f"skipped {_shown(e.path.relative_to(base).as_posix())}: not an "
                             f"image (discovery skip rule)")
            else:
                out.append(e)
        return out

    def unique(self, found: list[tuple[str, _Entry]]) -> list[tuple[str, _Entry]]:
        """One (sample id, entry) per file: its own path wins over a link to it, else the
        first link found."""
        keep: dict[str, _Entry] = {}
        for _, e in found:
            k = keep.get(e.real)
            if k is None or k.linked and not e.linked:
                keep[e.real] = e
        out = []
        for sid, e in found:
            if keep[e.real] is e:
                out.append((sid, e))
            else:
                self.note(f"skipped {self.rel(e.path)}: the same file as "
                          f"{self.rel(keep[e.real].path)}, reached through a link")
        return out


def _single_entry(folder: Path, name: str, manifest: dict[str, dict[str, Any]],
                  ident: dict[str, Any] | None,
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None, str]:
    """The entry of one electrode's folder: in its own manifest, else in its parent's."""
    own = bool(manifest)
    entries, eid = (manifest, ident) if own else load_manifest(Path(os.path.abspath(folder)).parent)
    mine = [sid for sid, m in entries.items()
            if m.get("folder", sid) == name or own and m.get("folder") == "."]
    if not mine and own and len(entries) == 1:  # a manifest inside the folder, for it alone
        mine = list(entries)
    if not mine:
        return {}, None, name
    return {mine[0]: entries[mine[0]]}, eid, mine[0]


def _map_folders(walk: _Walk, manifest: dict[str, dict[str, Any]],
                 ident: dict[str, Any] | None) -> dict[str, str]:
    """{folder name: sample id} from the manifest; a ``folder`` must be a folder inside."""
    mapped: dict[str, str] = {}
    for sid, m in manifest.items():
        f = m.get("folder")
        if f is None:
            continue
        mpath = ident["path"] if ident else None
        if f in mapped:
            raise ConfigError(mpath, f"samples {mapped[f]!r} and {sid!r} both name folder {f!r}")
        real = os.path.realpath(walk.root / f)
        if f == ".":
            pass
        elif not _inside(real, walk.real):
            raise ConfigError(mpath, f"sample {sid!r}: folder {f!r} is a link that leads out of "
                                     f"the export folder; discovery reads only inside it")
        elif f.startswith("."):
            raise ConfigError(mpath, f"sample {sid!r}: folder {f!r} is hidden (its name starts "
                                     f"with '.') and hidden folders are not read; rename it")
        elif not os.path.isdir(real):
            with os.scandir(walk.root) as it:
                there = [e.name for e in it if e.is_dir() and not e.name.startswith(".")]
            raise ConfigError(mpath, f"sample {sid!r}: folder {f!r} is not a sub-folder of "
                                     f"{walk.root}{_did_you_mean(f, there)}")
        elif walk.excluded(real):
            raise ConfigError(mpath, f"sample {sid!r}: folder {f!r} is excluded from discovery "
                                     f"(an output folder)")
        mapped[f] = sid
    return {m.get("folder", sid): sid for sid, m in manifest.items()}


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    by_low = {c.lower(): c for c in sorted(candidates, reverse=True)}
    best = difflib.get_close_matches(name.lower(), list(by_low), n=1, cutoff=0.6)
    return f"; did you mean {by_low[best[0]]!r}?" if best else ""


def _without_files(sid: str, entry: dict[str, Any], s: Sample, mname: str, single: str | None,
                   dirs: set[str], candidates: list[str]) -> str | None:
    """Why manifest entry `sid` is wrong about its files (`s.files`), or None. `single`: the
    folder's name in the single-sample case."""
    if entry.get("files") == "none":
        if not s.files:
            return None
        return (f"sample {sid!r} in {mname} says files = \"none\", but finds files "
                f"({_names(s.files, 5)}); remove files = \"none\", or move the files")
    if s.files:
        return None
    f = entry.get("folder", sid)
    if single is not None:
        where = f"is meant for folder {single!r}, which holds no image files"
    elif f == ".":
        where = "(folder = \".\") finds no image files at the top of the export folder"
    elif f in dirs:
        where = f"finds no image files in its folder {f!r}"
    else:
        where = f"matches no folder and no files{_did_you_mean(sid, candidates)}"
    return f"sample {sid!r} in {mname} {where}; {_NO_FILES}"


def discover(folder: str | Path, *, rules: DiscoveryRules | None = None, single: bool = False,
             exclude: Iterable[str | Path] = (), notes: list[str] | None = None,
             ) -> tuple[list[Sample], dict[str, Any] | None]:
    """The samples of an export folder (or, with `single`, the folder as one sample).

    Parameters
    ----------
    folder : path
        The export folder: a sub-folder per electrode, files named ``<sample>_<role>...``
        (``[grouping] sample_pattern``), an optional manifest (samples.toml / samples.csv).
    rules : DiscoveryRules, optional
        Discovery rules (default calibration/discovery.toml, see `load_rules`).
    single : bool
        `folder` is one electrode: every file under it belongs to one sample, named by the
        manifest entry meant for it (in its own manifest, else in its parent's: the entry
        whose ``folder``, or id, is the folder's name), else by the folder's name.
    exclude : iterable of paths
        Paths not read (compared resolved), such as the run's output folder when it lies
        inside `folder`; a folder-level note names what was skipped. Paths outside `folder`,
        and `folder` itself, change nothing.
    notes : list of str, optional
        Folder-level notes are appended here: files at the top attributed to no sample,
        links skipped (out of the folder, loops, nowhere, a file reached twice), excluded
        paths. They are logged too, as warnings when `notes` is not given. Notes about one
        sample (its files skipped by the skip rules) go to `Sample.notes`.

    Returns
    -------
    samples : list of Sample
        Sorted by id, each with its files sorted.
    manifest : dict or None
        The manifest's identity (None without a manifest).

    Raises
    ------
    ConfigError
        The folder does not exist; the manifest is invalid or names a folder outside the
        export folder; a manifest entry finds no files (unless it says ``files = "none"``),
        or says ``files = "none"`` and finds some; a sample id from the manifest, a folder or
        a file name holds control characters, slashes, is ``.`` / ``..``, or is longer than
        `MAX_ID_BYTES` bytes in UTF-8.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(folder, "is not a folder")
    rules = rules or load_rules()
    pattern = re.compile(rules.sample_pattern) if rules.sample_pattern else None
    walk = _Walk(folder, exclude, list(rules.skip),
                 logging.WARNING if notes is None else logging.INFO)
    name = Path(os.path.abspath(folder)).name
    manifest, ident = load_manifest(folder)
    found_samples = _Found()
    dirs: set[str] = set()
    top = _Entry(folder, walk.real, True, False, False)
    if single:
        manifest, ident, sid = _single_entry(folder, name, manifest, ident)
        s = found_samples.sample(sid, "rename the folder")
        found = [(sid, e) for e in walk.files(top, frozenset(), s.notes, folder)]
    else:
        found = _walk_export(walk, top, name, manifest, ident, pattern, found_samples, dirs)
    samples = found_samples.by_id
    for sid, e in walk.unique(found):
        samples[sid].files.append(e.path)
    for sid, entry in manifest.items():
        found_samples.sample(sid, "").manifest = entry
    out = [s for s in sorted(samples.values(), key=lambda s: s.id)
           if s.files or s.manifest or s.notes]
    for s in out:
        if s.id not in manifest:
            _check_id(s.id, folder, found_samples.fixes[s.id])
    if manifest:
        _check_manifest_files(manifest, ident, samples, name if single else None, dirs)
    _sort_files(out)
    if notes is not None:
        notes.extend(walk.notes)
    log.info("%s: %d samples, %d files", folder, len(out), sum(len(s.files) for s in out))
    return out, ident


def _sort_files(samples: list[Sample]) -> None:
    """Each sample's files in order; a sample with neither files nor a manifest entry gets a
    note saying so."""
    for s in samples:
        s.files.sort()
        if not s.files and not s.manifest:
            s.notes.append("no image files")


class _Found:
    """The samples found so far, by id, with what to rename when an id is refused."""

    def __init__(self) -> None:
        self.by_id: dict[str, Sample] = {}
        self.fixes: dict[str, str] = {}

    def sample(self, sid: str, fix: str) -> Sample:
        if sid not in self.by_id:
            self.by_id[sid], self.fixes[sid] = Sample(sid), fix
        return self.by_id[sid]


def _walk_export(walk: _Walk, top: _Entry, name: str, manifest: dict[str, Any], ident,
                 pattern, found_samples: _Found, dirs: set[str]) -> list[tuple[str, _Entry]]:
    """(sample id, file) pairs of an export folder: a sub-folder per electrode, files named
    by `pattern`, loose files for the folder's own sample when the manifest says it is one
    electrode; the names of the sub-folders go into `dirs`, loose files into a note."""
    found: list[tuple[str, _Entry]] = []
    by_folder = _map_folders(walk, manifest, ident)
    # loose files belong to the folder only when the manifest says it is one electrode
    owner = by_folder.get(".")
    if owner is None and name in manifest and "folder" not in manifest[name]:
        owner = name
    loose = []
    walk.visited.add(walk.real)
    for e in walk.entries(top):
        if e.is_dir:
            dirs.add(e.path.name)
            s = found_samples.sample(by_folder.get(e.path.name, e.path.name), "rename the folder")
            found += [(s.id, f) for f in
                      walk.files(e, frozenset({walk.real}), s.notes, e.path)]
        elif e.path.name in MANIFEST_NAMES:
            continue
        elif _skipped(e.path.name, walk.skip):
            log.info("skipped %s: not an image (discovery skip rule)", e.path)
        elif m := pattern.match(e.path.name) if pattern else None:
            s = found_samples.sample(by_folder.get(m["sample"], m["sample"]),
                                     "rename the files whose names start with it")
            found.append((s.id, e))
        elif owner is not None:
            found.append((found_samples.sample(owner, "").id, e))
        else:
            loose.append(e.path)
    if loose:
        walk.note(f"not attributed to a sample: {_names(loose)}; name them "
                  f"<sample>_psd..., put them in a sub-folder per electrode, or run with "
                  f"--single-sample")
    return found


def _check_manifest_files(manifest: dict[str, Any], ident, samples: dict[str, Sample],
                          single_name: str | None, dirs: set[str]) -> None:
    """Every manifest entry finds files (or says ``files = "none"`` and finds none); one
    ConfigError lists every entry that does not."""
    candidates = [s.id for s in samples.values() if s.id not in manifest]
    problems = [p for sid, entry in manifest.items()
                if (p := _without_files(sid, entry, samples[sid], Path(ident["path"]).name,
                                        single_name, dirs, candidates))]
    if problems:
        raise ConfigError(ident["path"], "\n".join(problems))


def assign_role(da, path: str | Path, rules: DiscoveryRules,
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
    return next((r.role for r in rules.rules if r.matches(kind, name, px_nm)), None)

