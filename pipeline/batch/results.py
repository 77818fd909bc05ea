"""A run's results: the exit code of its samples, the void reduction of paired samples, and
results.json, the tables and the report written from the sample records (`write_results`)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.batch.config import RunConfig
from pipeline.errors import (
    EXIT_INDETERMINATE,
    EXIT_INTERNAL,
    EXIT_NONCONFORMING,
    EXIT_OK,
    EXIT_UNREADABLE,
)
from pipeline.gravimetric import void_reduction
from pipeline.report.tables import write_outputs

__all__ = ["EXIT_INTERRUPTED", "RESULTS_SCHEMA_VERSION", "RunHeader", "RunResult", "pair", "pairs",
           "verdict_exit_code", "worst_exit_code", "write_results"]

RESULTS_SCHEMA_VERSION = 2
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
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


def worst_exit_code(codes: Iterable[int]) -> int:
    """The worst of exit codes, in the order 0 < 1 < 3 < 4 < 70.

    >>> worst_exit_code([0, 3, 4, 3])
    4
    """
    codes = [c for c in codes if c]
    return max(codes, key=_EXIT_ORDER.index) if codes else EXIT_OK


def verdict_exit_code(records: list[dict[str, Any]], *, skip_before: bool = True) -> int:
    """The exit code of a verdict over samples (`gate`, `run --strict`): 1 if a sample is
    non-conforming; else 4 or 70 if a file could not be read or hit an internal error
    (its sample is indeterminate); else 3 if a sample is indeterminate; else 0. Samples
    measured before pressing are not judged unless `skip_before` is False."""
    judged = [r for r in records if not (skip_before and r.get("state") == "before")]
    if any(r["gate"]["outcome"] == "non-conforming" for r in judged):
        return EXIT_NONCONFORMING
    failed = worst_exit_code(im["exit_code"] for r in judged for im in r["images"]
                             if im["exit_code"] in (EXIT_UNREADABLE, EXIT_INTERNAL))
    if failed:
        return failed
    if any(r["gate"]["outcome"] != "conforming" for r in judged):
        return EXIT_INDETERMINATE
    return EXIT_OK


def pairs(records: list[dict[str, Any]]) -> None:
    """Void reduction for samples paired with a separately measured before-pressing sample."""
    by_id = {r["sample_id"]: r for r in records}
    for r in records:
        pair(r, by_id)


def pair(r: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> None:
    """Set `r`'s void reduction from its pair partner's porosity in `by_id`, if both are
    known and `r` has none yet (a manifest's gravimetric before/after comes first)."""
    partner = r.get("pair")
    if not partner or partner not in by_id or r.get("void_reduction_pct") is not None:
        return
    before = by_id[partner]["spec"]["properties"].get("porosity", {}).get("value")
    after = r["spec"]["properties"].get("porosity", {}).get("value")
    if before is not None and after is not None:
        r["void_reduction_pct"] = 100.0 * void_reduction(before, after)
        r["void_reduction_source"] = f"paired sample {partner}"


@dataclass(frozen=True)
class RunHeader:
    """What results.json says of the run beside its samples: the folder measured, the output
    folder (None: nothing is written), the configuration (`RunConfig`, whose identities it
    records), the manifest's identity, the start time, whether the exit code is the verdict's
    (`strict`) and whether the HTML report is written."""

    folder: str | Path
    out: str | Path | None
    cfg: RunConfig
    manifest_id: dict[str, Any] | None
    created: str
    strict: bool = False
    report: bool = True


def write_results(records: list[dict[str, Any]], artifacts: dict[str, Any], run: RunHeader,
                  *, trends=None, not_measured: int | None = None,
                  pictures: dict | None = None, notes: list[str] | None = None) -> RunResult:
    """results.json, tables and report of `records` (written when ``run.out`` is not None);
    the run's exit code: the worst file's, or the verdict's with ``run.strict``, or 130 for an
    interrupted run, whose missing samples `not_measured` counts."""
    pairs(records)
    code = _run_exit_code(records, run.strict, not_measured)
    out = run.out
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "package_version": __version__,
        "created_utc": run.created,
        "folder": str(run.folder),
        "out": None if out is None else str(out),
        "exit_code": code,
        "counts": _counts(records, not_measured),
        **run.cfg.identities(),
        "manifest": run.manifest_id,
        "notes": list(notes or []),
        **({"report_pictures": pictures} if pictures and run.report else {}),
        "samples": records,
    }
    result = RunResult(code, results, None if out is None else Path(out))
    if out is not None:
        result.files_written = write_outputs(Path(out), results, artifacts, html=run.report,
                                             trends=trends)
    return result


def _run_exit_code(records: list[dict[str, Any]], strict: bool,
                   not_measured: int | None) -> int:
    """The run's exit code: 130 when it was interrupted (`not_measured` not None), else the
    verdict's with `strict`, else the worst file's."""
    if strict:
        code = verdict_exit_code(records)
    else:
        code = worst_exit_code(im["exit_code"] for r in records for im in r["images"])
    if not_measured is not None:
        code = EXIT_INTERRUPTED
    return code


def _counts(records: list[dict[str, Any]], not_measured: int | None) -> dict[str, int]:
    """results.json's counts: samples, their files (measured, failed, unreadable), samples
    reused from the store, and of an interrupted run the samples not measured."""
    images = [im for r in records for im in r["images"]]
    return {
        "samples": len(records),
        "files": len(images),
        "measured_files": sum(im["status"] == "ok" for im in images),
        "failed_files": sum(im["status"] == "error" for im in images),
        "unreadable_files": sum(im["exit_code"] == EXIT_UNREADABLE for im in images),
        "reused_from_store": sum(bool((r.get("stored") or {}).get("reused")) for r in records),
        **({} if not_measured is None else {"not_measured": not_measured}),
    }
