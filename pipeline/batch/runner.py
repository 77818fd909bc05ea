"""The main job: discover -> measure -> decide -> write (results.json, tables, report.html).

`run(folder, out)` measures every sample of an export folder (its settings a `RunOptions`,
or its fields as keywords); `gate(sample_folder)` one electrode. Both return a `RunResult`
with the exit code and the per-sample records; the command line is a thin layer over them.

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
from dataclasses import dataclass, field, fields, replace
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
from pipeline.batch.identity import digests_of, hash_files, idempotency_key, inputs
from pipeline.batch.measure import default_max_memory
from pipeline.batch.persist import (
    Settler,
    close_store,
    needs_retry,
    process_sample_into_store,
    report_from_store,
    reused_record,
)
from pipeline.batch.records import ImageRecord, SampleRecord
from pipeline.batch.results import (
    RESULTS_SCHEMA_VERSION,
    RunHeader,
    RunResult,
    verdict_exit_code,
    write_results,
)
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
from pipeline.report.html import FINISHED, drawn_by

__all__ = ["RESULTS_SCHEMA_VERSION", "RunOptions", "RunResult", "gate",
           "process_sample_into_store", "report_from_store", "run", "verdict_exit_code"]


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


@dataclass(frozen=True)
class RunOptions:
    """How `run` measures, decides and reports an export folder; every field has the default
    `run` uses when it is not given.

    Attributes
    ----------
    spec : path, optional
        Claim spec (default calibration/specs/claim15.toml).
    gate_spec : path, optional
        Production gate spec (default gate-production.toml).
    recipe : path, optional
        Measurement recipe (default recipes/default.toml).
    strict : bool
        Exit 1 when a sample is non-conforming (and nothing worse happened).
    report : bool
        Write report.html (the workers then return image previews).
    single : bool
        Treat `folder` as one electrode's folder (`gate`, ``--single-sample``): files at
        its top with no sample prefix are then this sample's, not left out with a note.
    today : date, optional
        The day the instrument profiles' calibrations are dated against (default: today).
    jobs : int or None
        Samples run in `jobs` processes (None: every CPU available). Results are the same
        whichever runs them.
    scheduler : str, optional
        Run the samples on dask instead (`pipeline.batch.execute`): a scheduler address, or
        "auto" for a local cluster of `jobs` workers.
    security : optional
        TLS for a ``tls://`` `scheduler` (a ``distributed.security.Security`` or a mapping of
        its keyword arguments).
    db : str, optional
        Results go to the store at `db` (a SQLAlchemy URL), by default SQLite at
        OUT/results.db.
    store : bool
        Keep results in a store (none when False, or when there is neither `db` nor `out`).
    force : bool
        Measure again a sample whose idempotency key is stored already; without it the
        stored record is reported.
    pictures : {"auto", "all", "attention", "none"}
        Which samples report.html shows pictures of: every one ("all"), only those that
        need attention ("attention": not conforming, claim 15 not met, or a failed file),
        or none. "auto" is "all" for up to 20 samples and "attention" beyond: every picture
        of a few hundred samples makes a report of several hundred MB.
    max_memory : int, optional
        Bytes one measurement may use (default: 75 % of the machine's memory divided by
        `jobs`); a file whose measurement would need more is refused (exit 4) before it
        is measured, and is measured again by a later run.

    Examples
    --------
    >>> opts = RunOptions(report=False, store=False)
    >>> opts.jobs, replace(opts, jobs=2).jobs
    (1, 2)
    """

    spec: str | Path | None = None
    gate_spec: str | Path | None = None
    recipe: str | Path | None = None
    strict: bool = False
    report: bool = True
    single: bool = False
    today: _dt.date | None = None
    jobs: int | None = 1
    scheduler: str | None = None
    db: str | None = None
    store: bool = True
    force: bool = False
    pictures: str = "auto"
    max_memory: int | None = None
    security: Any = None


_OPTION_NAMES = frozenset(f.name for f in fields(RunOptions))


def _options(options: RunOptions | None, overrides: dict[str, Any]) -> RunOptions:
    """`options` (default `RunOptions()`) with the fields named in `overrides` replaced; a
    name that is no field of `RunOptions` is a TypeError, as for any unknown keyword."""
    if options is not None and not isinstance(options, RunOptions):
        raise TypeError(f"run() options must be a RunOptions, not {type(options).__name__}")
    unknown = sorted(set(overrides) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"run() got an unexpected keyword argument {unknown[0]!r}")
    return replace(options or RunOptions(), **overrides)


def run(folder: str | Path, out: str | Path | None, options: RunOptions | None = None,
        **overrides: Any) -> RunResult:
    """Measure, decide and report every sample of an export folder.

    Parameters
    ----------
    folder : path
        The export folder (see `pipeline.ingest.discover`).
    out : path or None
        Output folder for results.json, tables/ and report.html (created); None writes
        nothing.
    options : RunOptions, optional
        How to measure, decide and report (see `RunOptions` for each field and its default).
    **overrides
        `RunOptions` fields by name, replacing those of `options`: ``run(folder, out,
        report=False, jobs=2)`` is ``run(folder, out, RunOptions(report=False, jobs=2))``.
        Any other keyword is a TypeError.

    Examples
    --------
    >>> res = run("sample_images", None, report=False, store=False)
    >>> res.exit_code, [s["spec"]["met"] for s in res.samples]
    (0, [False, False, False, True])
    """
    opts = _options(options, overrides)
    folder = Path(folder)
    if opts.pictures not in PICTURES:
        raise ConfigError(None, f"pictures {opts.pictures!r}: expected one of {', '.join(PICTURES)}")
    n_jobs = available_cpus() if opts.jobs is None else int(opts.jobs)
    cfg = load_run_config(opts.spec, opts.gate_spec, opts.recipe, opts.today,
                          _max_memory(opts, n_jobs))
    notes: list[str] = []
    samples, manifest_id = discover(folder, rules=cfg.rules, single=opts.single, notes=notes,
                                    exclude=[] if out is None else [Path(out)])
    if not samples:
        raise ConfigError(folder, "holds no samples: no image files and no manifest entry"
                          + "".join(f"; {n}" for n in notes))
    if out is not None:  # before anything is measured: a run that cannot write loses nothing
        check_writable(Path(out))
    pictures = opts.pictures
    if pictures == "auto":
        pictures = "all" if len(samples) <= PICTURES_ALL_UP_TO else "attention"
    _prewarm(opts.scheduler, n_jobs, len(samples))
    try:
        return _run_samples(samples, manifest_id, cfg, folder, out,
                            replace(opts, jobs=n_jobs, pictures=pictures), notes)
    finally:
        discard_warm()


def _max_memory(opts: RunOptions, n_jobs: int) -> int | None:
    """The bytes one measurement may use: `opts.max_memory`, else, for samples measured on
    this machine, 75 % of its memory divided by the `n_jobs` processes."""
    if opts.max_memory is None and (opts.scheduler is None or opts.scheduler == "auto"):
        return default_max_memory(n_jobs)
    return opts.max_memory


def _prewarm(scheduler: str | None, n_jobs: int, n_samples: int) -> None:
    """Start the workers (a local dask cluster, or a process pool when there are more samples
    than processes) while this process hashes the inputs and asks the store."""
    if scheduler == "auto" and n_jobs >= 1:
        prewarm_local_cluster(n_jobs, warm=TASK_IMPORTS)  # the cluster starts while this process hashes
    elif scheduler is None and n_jobs > 1 and n_samples > n_jobs:
        prewarm(n_jobs, warm=TASK_IMPORTS)  # workers import while this process hashes and asks the store


@dataclass
class _Batch:
    """One run over its samples: what `run` resolved, and the records, report pictures and
    output errors gathered as the samples are measured."""

    samples: list
    manifest_id: str | None
    cfg: RunConfig
    folder: Path
    out: str | Path | None
    options: RunOptions  # `jobs` a number and `pictures` not "auto" (resolved by `run`)
    notes: list[str]
    created: str
    pictures: str  # "none" when no report is written
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[str, Any] = field(default_factory=dict)
    write_errors: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # file path -> SHA-256, hashed once

    def ordered(self) -> list[dict[str, Any]]:
        """The records gathered so far, in the samples' order."""
        return [self.records[s.id] for s in self.samples if s.id in self.records]

    def write(self, ordered: list[dict[str, Any]], **kwargs: Any) -> RunResult:
        """`write_results` of `ordered` with this run's artifacts and settings."""
        run = RunHeader(self.folder, self.out, self.cfg, self.manifest_id, self.created,
                        strict=self.options.strict, report=self.options.report)
        return write_results(ordered, self.artifacts, run, **kwargs)


def _run_samples(samples, manifest_id, cfg, folder, out, options: RunOptions,
                 notes) -> RunResult:
    """Measure `samples` (those current in the store reused), store them, and write the
    results; the store's run row ends completed, interrupted or failed."""
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    b = _Batch(samples, manifest_id, cfg, folder, out, options, notes, created,
               pictures=options.pictures if options.report and out is not None else "none")
    st = _open_store(options, out)
    run_id, status, bar = None, "failed", None
    try:
        sha = hash_files(inputs(f for s in samples for f in s.files))
        b.digests = sha
        keys = {s.id: idempotency_key(s, cfg, sha) for s in samples}
        run_id = _begin_run(st, b)
        retry: set[str] = set()
        todo, reused = _plan(samples, keys, st, options.force, b.pictures, out, b.records,
                             b.artifacts, retry)
        if len(todo) <= 1:  # nothing for a pool to do: stop the pre-started one now
            discard_warm()
        bar = _progress(len(todo))
        settle = Settler(st, run_id, out, keys, b.records, {s.id for s in samples},
                         options.force, created, retry=retry)
        _measure(b, todo, reused, keys, settle, bar)
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        _write_interrupted(b)
        raise
    finally:
        _close(bar, st, run_id, status)
    ordered = b.ordered()
    res = b.write(ordered, pictures={"policy": b.pictures, "samples": len(ordered),
                                     "with_pictures": len(b.artifacts),
                                     "all_up_to": PICTURES_ALL_UP_TO}, notes=notes)
    _raise_write_errors(b.write_errors)
    return res


def _open_store(options: RunOptions, out: str | Path | None) -> Store | None:
    """The results store of the run, or None when it keeps none (`options.store` False, or
    neither `options.db` nor `out`)."""
    if options.store and (options.db is not None or out is not None):
        return Store.open(options.db, out=None if out is None else Path(out))
    return None


def _begin_run(st: Store | None, b: _Batch) -> str | None:
    """The store's row of this run (its settings and configuration identities), or None
    without a store."""
    if st is None:
        return None
    return st.begin_run(folder=str(b.folder), package_version=__version__,
                        meta={"jobs": b.options.jobs, "scheduler": b.options.scheduler,
                              "force": b.options.force, **b.cfg.identities()})


def _measure(b: _Batch, todo: list, reused: dict[str, dict[str, Any]], keys: dict[str, str],
             settle: Settler, bar) -> None:
    """Measure the samples `todo` and settle each record as it comes (samples in `reused`
    are measured for their report pictures only)."""
    payloads = [(s, b.cfg, None if b.out is None else Path(b.out), b.pictures, keys[s.id],
                 digests_of(s.files, b.digests)) for s in todo]
    try:
        for i, res in execute(measure_task, payloads, jobs=b.options.jobs,
                              scheduler=b.options.scheduler, security=b.options.security):
            s = todo[i]
            if bar:
                bar[1]()
            if s.id in reused:  # measured for its pictures only
                if not isinstance(res, Exception) and res["artifacts"] is not None:
                    b.artifacts[s.id] = res["artifacts"]
                continue
            rec = _record_of(b, s, res)
            rec["provenance"].update(package_version=__version__, created_utc=b.created,
                                     manifest=b.manifest_id, idempotency_key=keys[s.id],
                                     **b.cfg.identities())
            failed = isinstance(res, Exception)
            settle.add(s.id, rec, None if failed else res["particles"], failed=failed)
    finally:
        settle.flush()  # samples still waiting for a pair partner that never came


def _record_of(b: _Batch, s, res) -> dict[str, Any]:
    """The record of sample `s` from its task's result `res` (an exception when the task
    failed as a whole: a usage error stops the run); keeps its pictures and output error."""
    if isinstance(res, ElectrodeQCError) and res.exit_code == EXIT_USAGE:
        raise res
    if isinstance(res, Exception):
        return _failed_record(s, res, b.cfg)
    rec = res["record"]
    if res.get("write_error"):
        b.write_errors.append(res["write_error"])
    rec["provenance"]["worker"] = res["worker"]
    rec["provenance"]["particles_table"] = res["particles"]
    if res["artifacts"] is not None:
        b.artifacts[s.id] = res["artifacts"]
    return rec


def _write_interrupted(b: _Batch) -> None:
    """Write what an interrupted run measured (when it has an output folder)."""
    ordered = b.ordered()
    if b.out is not None:  # what was measured is written, then the interrupt goes on
        b.write(ordered, not_measured=len(b.samples) - len(ordered), notes=b.notes)


def _close(bar, st: Store | None, run_id: str | None, status: str) -> None:
    """Stop the progress bar and end the store's run row with `status`."""
    if bar is not None:
        bar[0].stop()
    if st is not None:
        close_store(st, run_id, status)


def _raise_write_errors(write_errors: list[str]) -> None:
    """An OutputError naming the first output that could not be written, if any."""
    if write_errors:  # measured and stored, but an output could not be written
        raise OutputError(None, write_errors[0] + (f" (and {len(write_errors) - 1} more)"
                                                   if len(write_errors) > 1 else ""))


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
            # its finished pictures, else the previews kept by the run that measured it
            # (the report draws them), else measure it again for them
            finished = preview_cache.load_pictures(Path(out), s.id, keys[s.id], drawn_by())
            if finished is not None:
                artifacts[s.id] = {FINISHED: finished}
                continue
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
    images = [ImageRecord(str(f), status="error", error=msg, exit_code=code).to_json()
              for f in sample.files or [sample.id]]
    blockers = [f"failed input: {msg}"]
    return SampleRecord.of(
        sample, spec=evaluate_spec(cfg.spec, {}, blockers=blockers),
        gate=evaluate_spec(cfg.gate_spec, {}, blockers=blockers),
        images=images, task_failed=True,
        provenance={"inputs": [{"path": str(f), "sha256": None, "reader": None,
                                "pixel_size_source": None} for f in sample.files]}).to_json()


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
    res = run(sample_folder, out, RunOptions(gate_spec=spec, recipe=recipe, single=True,
                                             report=out is not None, today=today))
    if not res.samples:
        raise ConfigError(sample_folder, "holds no sample (no image files and no manifest entry)")
    res.exit_code = verdict_exit_code(res.samples[:1], skip_before=False)
    res.results["exit_code"] = res.exit_code
    return res
