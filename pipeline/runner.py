"""The main job: discover -> measure -> decide -> write (results.json, tables, report.html).

`run(folder, out)` measures every sample of an export folder; `gate(sample_folder)` one
electrode. Both return a `RunResult` with the exit code and the per-sample records; the
command line is a thin layer over them.

Exit codes of `run`: 0 when every file was measured; otherwise the worst of 3 (missing
calibration), 4 (unreadable input or a measurement refused) and 70 (internal error); with
``strict`` 1 when all was measured but a sample is non-conforming. Results already measured
are written whatever the exit code.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import (
    EXIT_INDETERMINATE,
    EXIT_INTERNAL,
    EXIT_NONCONFORMING,
    EXIT_OK,
    EXIT_UNREADABLE,
)

__all__ = ["RESULTS_SCHEMA_VERSION", "RunResult", "gate", "run"]

log = logging.getLogger(__name__)

RESULTS_SCHEMA_VERSION = 1
_EXIT_ORDER = (EXIT_OK, EXIT_NONCONFORMING, EXIT_INDETERMINATE, EXIT_UNREADABLE, EXIT_INTERNAL)


@dataclass
class RunResult:
    """What a run produced: the exit code, the results.json content and where it went."""

    exit_code: int
    results: dict[str, Any]
    out: Path | None = None
    files_written: list[Path] = field(default_factory=list)

    @property
    def samples(self) -> list[dict[str, Any]]:
        return self.results["samples"]


def _worst(codes) -> int:
    codes = [c for c in codes if c]
    return max(codes, key=_EXIT_ORDER.index) if codes else EXIT_OK


@dataclass
class _Config:
    spec: Any
    gate_spec: Any
    particle_claims: Any
    recipe: Any
    rules: Any
    profiles: list
    materials: dict
    today: _dt.date

    def identities(self) -> dict[str, Any]:
        return {"spec": self.spec.identity(), "gate_spec": self.gate_spec.identity(),
                "particle_claims": self.particle_claims.identity(),
                "recipe": dict(self.recipe.identity), "discovery": self.rules.identity(),
                "materials": self.materials.get("identity"),
                "instrument_profiles": [{"id": p.id, "path": p.path} for p in self.profiles]}


def _config(spec, gate_spec, recipe, today) -> _Config:
    from pipeline.ingest.discover import load_rules
    from pipeline.instruments import load_profiles
    from pipeline.metrology.recipe import load_recipe
    from pipeline.report.claims import load_particle_claims, load_spec
    from pipeline.segmentation.porosity import load_materials

    return _Config(
        spec=load_spec(spec, default="claim15"),
        gate_spec=load_spec(gate_spec, default="gate-production"),
        particle_claims=load_particle_claims(),
        recipe=load_recipe(recipe),
        rules=load_rules(),
        profiles=load_profiles(),
        materials=load_materials(),
        today=today or _dt.date.today(),
    )


def _progress(total: int):  # -> (Progress, advance) or None
    """A rich progress bar on stderr, or None when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import Progress

    p = Progress(console=Console(stderr=True), transient=True)
    p.start()
    task = p.add_task("measuring", total=total)
    return p, (lambda: p.advance(task))


def run(folder: str | Path, out: str | Path | None, *, spec: str | Path | None = None,
        gate_spec: str | Path | None = None, recipe: str | Path | None = None,
        strict: bool = False, report: bool = True, single: bool = False,
        today: _dt.date | None = None) -> RunResult:
    """Measure, decide and report every sample of an export folder.

    Parameters
    ----------
    folder : path
        The export folder (see `pipeline.ingest.discover`).
    out : path or None
        Output folder for results.json, tables/ and report.html (created); None writes
        nothing.
    spec, gate_spec, recipe : path, optional
        Claim spec (default calibration/specs/claim15.toml), production gate spec (default
        gate-production.toml) and measurement recipe (default recipes/default.toml).
    strict : bool
        Exit 1 when a sample is non-conforming (and nothing worse happened).
    report : bool
        Write report.html (needs the image previews kept in memory).
    single : bool
        Treat `folder` as one electrode's folder (`gate`).
    """
    from pipeline import __version__
    from pipeline.ingest.discover import discover
    from pipeline.sample import measure_sample

    folder = Path(folder)
    cfg = _config(spec, gate_spec, recipe, today)
    samples, manifest_id = discover(folder, rules=cfg.rules, single=single)
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    records, artifacts, tables = [], {}, []
    bar = _progress(sum(max(len(s.files), 1) for s in samples))
    try:
        for s in samples:
            rec, art, tabs = measure_sample(s, cfg, previews=report and out is not None,
                                            advance=bar[1] if bar else None)
            rec["provenance"].update(package_version=__version__, created_utc=created,
                                     manifest=manifest_id, **cfg.identities())
            records.append(rec)
            artifacts[s.id] = art
            tables.append(tabs)
    finally:
        if bar is not None:
            bar[0].stop()
    _pairs(records)
    codes = [im["exit_code"] for r in records for im in r["images"]]
    code = _worst(codes)
    if code == EXIT_OK and strict and any(r["gate"]["outcome"] == "non-conforming"
                                          for r in records):
        code = EXIT_NONCONFORMING
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "package_version": __version__,
        "created_utc": created,
        "folder": str(folder),
        "out": None if out is None else str(out),
        "exit_code": code,
        "counts": {
            "samples": len(records),
            "files": sum(len(r["images"]) for r in records),
            "measured_files": sum(im["status"] == "ok" for r in records for im in r["images"]),
            "unreadable_files": sum(im["exit_code"] == EXIT_UNREADABLE
                                    for r in records for im in r["images"]),
        },
        **cfg.identities(),
        "manifest": manifest_id,
        "samples": records,
    }
    result = RunResult(code, results, None if out is None else Path(out))
    if out is not None:
        from pipeline.report.tables import write_outputs

        result.files_written = write_outputs(Path(out), results, tables, artifacts, html=report)
    return result


def _pairs(records: list[dict[str, Any]]) -> None:
    """Void reduction for samples paired with a separately measured before-pressing sample."""
    from pipeline.segmentation.porosity import void_reduction

    by_id = {r["sample_id"]: r for r in records}
    for r in records:
        pair = r.get("pair")
        if not pair or pair not in by_id or r.get("void_reduction_pct") is not None:
            continue
        before = by_id[pair]["claim15"]["properties"].get("porosity", {}).get("value")
        after = r["claim15"]["properties"].get("porosity", {}).get("value")
        if before is not None and after is not None:
            r["void_reduction_pct"] = 100.0 * void_reduction(before, after)
            r["void_reduction_source"] = f"paired sample {pair}"


def gate(sample_folder: str | Path, *, spec: str | Path | None = None,
         recipe: str | Path | None = None, out: str | Path | None = None,
         today: _dt.date | None = None) -> RunResult:
    """One electrode through the production gate; the exit code is the verdict.

    0 conforming, 1 non-conforming, 3 indeterminate, 4 unreadable input, 70 internal error.
    """
    from pipeline.errors import ConfigError

    res = run(sample_folder, out, gate_spec=spec, recipe=recipe, single=True,
              report=out is not None, today=today)
    if not res.samples:
        raise ConfigError(sample_folder, "holds no sample (no image files and no manifest entry)")
    s = res.samples[0]
    codes = [im["exit_code"] for im in s["images"]]
    worst = _worst(c for c in codes if c != EXIT_INDETERMINATE)
    if worst in (EXIT_UNREADABLE, EXIT_INTERNAL):
        res.exit_code = worst
    else:
        res.exit_code = {"conforming": EXIT_OK, "non-conforming": EXIT_NONCONFORMING}.get(
            s["gate"]["outcome"], EXIT_INDETERMINATE)
    res.results["exit_code"] = res.exit_code
    return res
