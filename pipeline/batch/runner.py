"""The main job: discover -> measure -> decide -> write (results.json, tables, report.html).

`run(folder, out)` measures every sample of an export folder; `gate(sample_folder)` one
electrode. Both return a `RunResult` with the exit code and the per-sample records; the
command line is a thin layer over them.

Exit codes of `run`: 0 when every file was measured; otherwise the worst of 3 (missing
calibration, or a measurement that found nothing or refused the image), 4 (unreadable
input, or out of memory) and 70 (internal error). With ``strict`` the verdict decides, as
for `gate` (`verdict_exit_code`): 1 if a sample is non-conforming, else 4 or 70 if a file
failed, else 3 if a sample is indeterminate, else 0. Results already measured are written
whatever the exit code. A file that failed makes its sample's decisions indeterminate.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.batch.config import RunConfig, load_run_config
from pipeline.batch.execute import (
    available_cpus,
    discard_warm,
    execute,
    prewarm,
    prewarm_local_cluster,
)
from pipeline.batch.identity import hash_files, idempotency_key, inputs
from pipeline.batch.measure import default_max_memory
from pipeline.batch.persist import (
    Settler,
    close_store,
    needs_retry,
    process_sample_into_store,
    report_from_store,
    reused_record,
)
from pipeline.batch.results import (
    RESULTS_SCHEMA_VERSION,
    RunResult,
    verdict_exit_code,
    write_results,
)
from pipeline.batch.sample import decision_record, gate_record
from pipeline.batch.store import Store
from pipeline.batch.task import TASK_IMPORTS, measure_task, needs_attention
from pipeline.conformity import evaluate_spec
from pipeline.errors import (
    EXIT_INTERNAL,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    ConfigError,
    ElectrodeQCError,
    OutputError,
)
from pipeline.fsutil import check_writable
from pipeline.ingest.discover import discover
from pipeline.report import preview_cache

__all__ = ["RESULTS_SCHEMA_VERSION", "RunResult", "gate", "process_sample_into_store",
           "report_from_store", "run", "verdict_exit_code"]


log = logging.getLogger(__name__)

PICTURES = ("auto", "all", "attention", "none")
PICTURES_ALL_UP_TO = 20  # "auto": every sample's pictures up to this many samples


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
        today: _dt.date | None = None, jobs: int | None = 1, scheduler: str | None = None,
        db: str | None = None, store: bool = True, force: bool = False,
        pictures: str = "auto", max_memory: int | None = None,
        security: Any = None) -> RunResult:
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
        Write report.html (the workers then return image previews).
    single : bool
        Treat `folder` as one electrode's folder (`gate`, ``--single-sample``): files at
        its top with no sample prefix are then this sample's, not left out with a note.
    jobs, scheduler, security : optional
        Samples run in `jobs` processes (None: every CPU available), or on dask
        (`pipeline.batch.execute`; `security` for a ``tls://`` scheduler). Results are the same
        whichever runs them.
    max_memory : int, optional
        Bytes one measurement may use (default: 75 % of the machine's memory divided by
        `jobs`); a file whose measurement would need more is refused (exit 4) before it
        is measured, and is measured again by a later run.
    db, store, force : optional
        Results go to the store at `db` (a SQLAlchemy URL), by default SQLite at
        OUT/results.db (no store when `store` is False or there is neither `db` nor `out`).
        A sample whose idempotency key is stored already is not measured again unless
        `force`; its stored record is reported.
    pictures : {"auto", "all", "attention", "none"}
        Which samples report.html shows pictures of: every one ("all"), only those that
        need attention ("attention": not conforming, claim 15 not met, or a failed file),
        or none. "auto" is "all" for up to 20 samples and "attention" beyond: every picture
        of a few hundred samples makes a report of several hundred MB.

    Examples
    --------
    >>> res = run("sample_images", None, report=False, store=False)
    >>> res.exit_code, [s["claim15"]["met"] for s in res.samples]
    (0, [False, False, False, True])
    """
    folder = Path(folder)
    if pictures not in PICTURES:
        raise ConfigError(None, f"pictures {pictures!r}: expected one of {', '.join(PICTURES)}")
    n_jobs = available_cpus() if jobs is None else int(jobs)
    if max_memory is None and (scheduler is None or scheduler == "auto"):
        max_memory = default_max_memory(n_jobs)
    cfg = load_run_config(spec, gate_spec, recipe, today, max_memory)
    notes: list[str] = []
    samples, manifest_id = discover(folder, rules=cfg.rules, single=single, notes=notes,
                                    exclude=[] if out is None else [Path(out)])
    if not samples:
        raise ConfigError(folder, "holds no samples: no image files and no manifest entry"
                          + "".join(f"; {n}" for n in notes))
    if out is not None:  # before anything is measured: a run that cannot write loses nothing
        check_writable(Path(out))
    if pictures == "auto":
        pictures = "all" if len(samples) <= PICTURES_ALL_UP_TO else "attention"
    if scheduler == "auto" and n_jobs >= 1:
        prewarm_local_cluster(n_jobs, warm=TASK_IMPORTS)  # the cluster starts while this process hashes
    elif scheduler is None and n_jobs > 1 and len(samples) > n_jobs:
        prewarm(n_jobs, warm=TASK_IMPORTS)  # workers import while this process hashes and asks the store
    try:
        return _run_samples(samples, manifest_id, cfg, folder, out, strict=strict,
                            report=report, jobs=n_jobs, scheduler=scheduler, db=db,
                            store=store, force=force, pictures=pictures, notes=notes,
                            security=security)
    finally:
        discard_warm()


def _run_samples(samples, manifest_id, cfg, folder, out, *, strict, report, jobs, scheduler,
                 db, store, force, pictures, notes, security) -> RunResult:
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    if not (report and out is not None):
        pictures = "none"
    st = None
    if store and (db is not None or out is not None):
        st = Store.open(db, out=None if out is None else Path(out))
    records: dict[str, dict[str, Any]] = {}
    artifacts: dict[str, Any] = {}
    write_errors: list[str] = []
    run_id, status, bar = None, "failed", None
    try:
        sha = hash_files(inputs(f for s in samples for f in s.files))
        keys = {s.id: idempotency_key(s, cfg, sha) for s in samples}
        if st is not None:
            run_id = st.begin_run(folder=str(folder), package_version=__version__,
                                  meta={"jobs": jobs, "scheduler": scheduler, "force": force,
                                        **cfg.identities()})
        retry: set[str] = set()
        todo, reused = _plan(samples, keys, st, force, pictures, out, records, artifacts,
                             retry)
        if len(todo) <= 1:  # nothing for a pool to do: stop the pre-started one now
            discard_warm()
        bar = _progress(len(todo))
        settle = Settler(st, run_id, out, keys, records, {s.id for s in samples}, force,
                         created, retry=retry)
        payloads = [(s, cfg, None if out is None else Path(out), pictures, keys[s.id])
                    for s in todo]
        try:
            for i, res in execute(measure_task, payloads, jobs=jobs, scheduler=scheduler,
                                  security=security):
                s = todo[i]
                if bar:
                    bar[1]()
                if s.id in reused:  # measured for its pictures only
                    if not isinstance(res, Exception) and res["artifacts"] is not None:
                        artifacts[s.id] = res["artifacts"]
                    continue
                if isinstance(res, ElectrodeQCError) and res.exit_code == EXIT_USAGE:
                    raise res
                if isinstance(res, Exception):
                    rec = _failed_record(s, res, cfg)
                else:
                    rec = res["record"]
                    if res.get("write_error"):
                        write_errors.append(res["write_error"])
                    rec["provenance"]["worker"] = res["worker"]
                    rec["provenance"]["particles_table"] = res["particles"]
                    if res["artifacts"] is not None:
                        artifacts[s.id] = res["artifacts"]
                rec["provenance"].update(package_version=__version__, created_utc=created,
                                         manifest=manifest_id, idempotency_key=keys[s.id],
                                         **cfg.identities())
                settle.add(s.id, rec, None if isinstance(res, Exception) else res["particles"],
                           failed=isinstance(res, Exception))
        finally:
            settle.flush()  # samples still waiting for a pair partner that never came
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        ordered = [records[s.id] for s in samples if s.id in records]
        if out is not None:  # what was measured is written, then the interrupt goes on
            write_results(ordered, artifacts, folder=folder, out=out, cfg=cfg,
                          manifest_id=manifest_id, created=created, strict=strict,
                          report=report, not_measured=len(samples) - len(ordered),
                          notes=notes)
        raise
    finally:
        if bar is not None:
            bar[0].stop()
        if st is not None:
            close_store(st, run_id, status)
    ordered = [records[s.id] for s in samples if s.id in records]
    res = write_results(ordered, artifacts, folder=folder, out=out, cfg=cfg,
                        manifest_id=manifest_id, created=created, strict=strict,
                        report=report, pictures={"policy": pictures, "samples": len(ordered),
                                    "with_pictures": len(artifacts),
                                    "all_up_to": PICTURES_ALL_UP_TO}, notes=notes)
    if write_errors:  # measured and stored, but an output could not be written
        raise OutputError(None, write_errors[0] + (f" (and {len(write_errors) - 1} more)"
                                                   if len(write_errors) > 1 else ""))
    return res


def _plan(samples, keys, st, force, pictures, out, records, artifacts, retry):
    """Which samples to measure: those whose key is not current in the store, stored ones
    whose measurement failed in a way that may not repeat (their ids go into `retry`: the
    new row supersedes the stored one), and stored ones whose kept pictures are missing
    when the report shows them (pictures only)."""
    reused: dict[str, dict[str, Any]] = {}
    todo = []
    current = st.current(keys.values()) if st is not None and not force else {}
    for s in samples:
        hit = current.get(keys[s.id])
        if hit is not None and needs_retry(hit["record"]):
            retry.add(s.id)
            hit = None
        if hit is None:
            todo.append(s)
            continue
        reused[s.id] = hit
        records[s.id] = reused_record(hit)
        if pictures == "all" or (pictures == "attention" and needs_attention(hit["record"])):
            # the pictures kept by the run that measured it, else measure it again for them
            kept = preview_cache.load(Path(out), s.id, keys[s.id])
            if kept is None:
                todo.append(s)
            else:
                artifacts[s.id] = kept
    return todo, reused


def _task_failure(sample, exc: Exception) -> tuple[str, int]:
    """A one-line message and the exit code for a sample whose task failed as a whole."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, MemoryError):
        return ((f"{sample.id}: out of memory while measuring it; lower --jobs, raise "
                 "--max-memory or measure its large files alone"), EXIT_UNREADABLE)
    if isinstance(exc, BrokenProcessPool):
        return ((f"{sample.id}: the worker process measuring it died (killed, out of memory, "
                 "or a crash in a native library)"), EXIT_UNREADABLE)
    if isinstance(exc, ElectrodeQCError):
        return f"{sample.id}: {exc}", exc.exit_code
    return f"{sample.id}: internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL


def _failed_record(sample, exc: Exception, cfg: RunConfig) -> dict[str, Any]:
    """A sample whose task failed as a whole: every file marked, nothing decided (both
    decisions indeterminate with the failure as their reason)."""
    msg, code = _task_failure(sample, exc)
    images = [{"path": str(f), "role": None, "status": "error", "error": msg,
               "exit_code": code, "results": None} for f in sample.files] or [
        {"path": sample.id, "role": None, "status": "error", "error": msg, "exit_code": code,
         "results": None}]
    blockers = [f"failed input: {msg}"]
    return {"sample_id": sample.id, "title": sample.manifest.get("title", sample.id),
            "state": sample.state, "pair": sample.manifest.get("pair"),
            "claim15": decision_record(evaluate_spec(cfg.spec, {}, blockers=blockers)),
            "particle_claims": {"met": None, "claims": []},
            "layer_claims": {"met": None, "claims": []},
            "gate": gate_record(evaluate_spec(cfg.gate_spec, {}, blockers=blockers)),
            "void_reduction_pct": None,
            "metrics": {k: None for k in ("Sa_um", "Sz_um", "porosity_cross_section",
                                          "thickness_cross_section_um", "porosity_gravimetric",
                                          "protrusions_per_mm2", "protrusions_by_class",
                                          "layers", "psd")},
            "images": images, "flags": [], "notes": list(sample.notes),
            "task_failed": True,
            "provenance": {"inputs": [{"path": str(f), "sha256": None, "reader": None,
                                       "pixel_size_source": None} for f in sample.files]}}


def gate(sample_folder: str | Path, *, spec: str | Path | None = None,
         recipe: str | Path | None = None, out: str | Path | None = None,
         today: _dt.date | None = None) -> RunResult:
    """One electrode through the production gate; the exit code is the verdict.

    0 conforming, 1 non-conforming, 3 indeterminate, 4 unreadable input, 70 internal error.

    Examples
    --------
    >>> res = gate("sample_images/embodiment-1")
    >>> res.exit_code, res.samples[0]["gate"]["outcome"]
    (0, 'conforming')
    """
    res = run(sample_folder, out, gate_spec=spec, recipe=recipe, single=True,
              report=out is not None, today=today)
    if not res.samples:
        raise ConfigError(sample_folder, "holds no sample (no image files and no manifest entry)")
    res.exit_code = verdict_exit_code(res.samples[:1], skip_before=False)
    res.results["exit_code"] = res.exit_code
    return res
