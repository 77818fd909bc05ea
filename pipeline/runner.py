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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import (
    EXIT_INDETERMINATE,
    EXIT_INTERNAL,
    EXIT_NONCONFORMING,
    EXIT_OK,
    EXIT_UNREADABLE,
    EXIT_USAGE,
    ElectrodeQCError,
    one_line,
)

__all__ = ["RESULTS_SCHEMA_VERSION", "RunResult", "gate", "process_sample_into_store",
           "report_from_store", "run"]


log = logging.getLogger(__name__)

RESULTS_SCHEMA_VERSION = 1
PICTURES = ("auto", "all", "attention", "none")
PICTURES_ALL_UP_TO = 20  # "auto": every sample's pictures up to this many samples
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


def _worst(codes) -> int:
    codes = [c for c in codes if c]
    return max(codes, key=_EXIT_ORDER.index) if codes else EXIT_OK


@dataclass
class _Config:
    spec: Any
    gate_spec: Any
    particle_claims: Any
    layer_claims: Any
    recipe: Any
    rules: Any
    profiles: list
    materials: dict
    today: _dt.date
    max_memory: int | None = None  # bytes one measurement may use; None: no limit

    def identities(self) -> dict[str, Any]:
        return {"spec": self.spec.identity(), "gate_spec": self.gate_spec.identity(),
                "particle_claims": self.particle_claims.identity(),
                "layer_claims": self.layer_claims.identity(),
                "recipe": dict(self.recipe.identity), "discovery": self.rules.identity(),
                "materials": self.materials.get("identity"),
                "instrument_profiles": [{"id": p.id, "path": p.path} for p in self.profiles]}


def _config(spec, gate_spec, recipe, today, max_memory: int | None = None) -> _Config:
    from pipeline.ingest.discover import load_rules
    from pipeline.instruments import load_profiles
    from pipeline.metrology.recipe import load_recipe
    from pipeline.report.claims import load_layer_claims, load_particle_claims, load_spec
    from pipeline.segmentation.porosity import load_materials

    return _Config(
        spec=load_spec(spec, default="claim15"),
        gate_spec=load_spec(gate_spec, default="gate-production"),
        particle_claims=load_particle_claims(),
        layer_claims=load_layer_claims(),
        recipe=load_recipe(recipe),
        rules=load_rules(),
        profiles=load_profiles(),
        materials=load_materials(),
        today=today or _dt.date.today(),
        max_memory=max_memory,
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


def _measure_task(payload: tuple) -> dict[str, Any]:
    """One sample in a worker: measure, write its particle table, return a small record."""
    from pipeline.execute import worker_info
    from pipeline.sample import measure_sample

    sample, cfg, out, pictures, key = payload
    previews = pictures in ("all", "attention")
    rec, art, tabs = measure_sample(sample, cfg, previews=previews)
    if pictures == "attention" and not needs_attention(rec):
        art, previews = None, False
    ref = write_error = None
    if out is not None and tabs.get("particles") is not None:
        from pipeline.report.tables import write_particle_table

        # the sample's older tables are retired by the parent once this row is stored
        from pipeline.stored import table_name

        try:
            ref = write_particle_table(tabs["particles"], Path(out),
                                       table_name(sample.id, key))
        except (OSError, ElectrodeQCError) as exc:  # the measurement is kept all the same
            write_error = f"{sample.id}: particle table not written: {one_line(exc)}"
            rec["flags"].append(write_error)
    if previews and out is not None:
        from pipeline.report import preview_cache

        try:
            preview_cache.save(Path(out), sample.id, key, art)
        except (OSError, ElectrodeQCError) as exc:  # in this run's report all the same
            log.warning("%s: previews not kept for later runs: %s", sample.id, one_line(exc))
    return {"record": rec, "artifacts": art if previews else None, "particles": ref,
            "worker": worker_info(), "write_error": write_error}



def needs_attention(rec: dict[str, Any]) -> bool:
    """A sample the report shows pictures of when only some get them: not conforming at
    the gate, claim 15 not met (or undecided), or a file that could not be measured."""
    return (rec.get("gate", {}).get("outcome") != "conforming"
            or rec.get("claim15", {}).get("met") is not True
            or any(im.get("status") == "error" for im in rec.get("images") or []))


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
        (`pipeline.execute`; `security` for a ``tls://`` scheduler). Results are the same
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
    """
    from pipeline.errors import ConfigError
    from pipeline.execute import available_cpus, discard_warm, prewarm, prewarm_local_cluster
    from pipeline.ingest.discover import discover
    from pipeline.measure import default_max_memory

    folder = Path(folder)
    if pictures not in PICTURES:
        raise ConfigError(None, f"pictures {pictures!r}: expected one of {', '.join(PICTURES)}")
    n_jobs = available_cpus() if jobs is None else int(jobs)
    if max_memory is None and (scheduler is None or scheduler == "auto"):
        max_memory = default_max_memory(n_jobs)
    cfg = _config(spec, gate_spec, recipe, today, max_memory)
    notes: list[str] = []
    samples, manifest_id = discover(folder, rules=cfg.rules, single=single, notes=notes,
                                    exclude=[] if out is None else [Path(out)])
    if not samples:
        raise ConfigError(folder, "holds no samples: no image files and no manifest entry"
                          + "".join(f"; {n}" for n in notes))
    if out is not None:  # before anything is measured: a run that cannot write loses nothing
        from pipeline.fsutil import check_writable

        check_writable(Path(out))
    if pictures == "auto":
        pictures = "all" if len(samples) <= PICTURES_ALL_UP_TO else "attention"
    if scheduler == "auto" and n_jobs >= 1:
        prewarm_local_cluster(n_jobs)  # the cluster starts while this process hashes
    elif scheduler is None and n_jobs > 1 and len(samples) > n_jobs:
        prewarm(n_jobs)  # workers import while this process hashes and asks the store
    try:
        return _run_samples(samples, manifest_id, cfg, folder, out, strict=strict,
                            report=report, jobs=n_jobs, scheduler=scheduler, db=db,
                            store=store, force=force, pictures=pictures, notes=notes,
                            security=security)
    finally:
        discard_warm()


def _run_samples(samples, manifest_id, cfg, folder, out, *, strict, report, jobs, scheduler,
                 db, store, force, pictures, notes, security) -> RunResult:
    from pipeline import __version__
    from pipeline.execute import discard_warm, execute
    from pipeline.stored import Settler, close_store

    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    if not (report and out is not None):
        pictures = "none"
    st = None
    if store and (db is not None or out is not None):
        from pipeline.store import Store

        st = Store.open(db, out=None if out is None else Path(out))
    records: dict[str, dict[str, Any]] = {}
    artifacts: dict[str, Any] = {}
    write_errors: list[str] = []
    run_id, status, bar = None, "failed", None
    try:
        from pipeline.identity import hash_files, idempotency_key, inputs

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
            for i, res in execute(_measure_task, payloads, jobs=jobs, scheduler=scheduler,
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
            _finish(ordered, artifacts, folder, out, cfg, manifest_id, created, strict,
                    report, not_measured=len(samples) - len(ordered), notes=notes)
        raise
    finally:
        if bar is not None:
            bar[0].stop()
        if st is not None:
            close_store(st, run_id, status)
    ordered = [records[s.id] for s in samples if s.id in records]
    res = _finish(ordered, artifacts, folder, out, cfg, manifest_id, created, strict,
                  report, pictures={"policy": pictures, "samples": len(ordered),
                                    "with_pictures": len(artifacts),
                                    "all_up_to": PICTURES_ALL_UP_TO}, notes=notes)
    if write_errors:  # measured and stored, but an output could not be written
        from pipeline.errors import OutputError

        raise OutputError(None, write_errors[0] + (f" (and {len(write_errors) - 1} more)"
                                                   if len(write_errors) > 1 else ""))
    return res


def _plan(samples, keys, st, force, pictures, out, records, artifacts, retry):
    """Which samples to measure: those whose key is not current in the store, stored ones
    whose measurement failed in a way that may not repeat (their ids go into `retry`: the
    new row supersedes the stored one), and stored ones whose kept pictures are missing
    when the report shows them (pictures only)."""
    from pipeline import stored
    reused: dict[str, dict[str, Any]] = {}
    todo = []
    current = st.current(keys.values()) if st is not None and not force else {}
    for s in samples:
        hit = current.get(keys[s.id])
        if hit is not None and stored.needs_retry(hit["record"]):
            retry.add(s.id)
            hit = None
        if hit is None:
            todo.append(s)
            continue
        reused[s.id] = hit
        records[s.id] = stored.reused_record(hit)
        if pictures == "all" or (pictures == "attention" and needs_attention(hit["record"])):
            # the pictures kept by the run that measured it, else measure it again for them
            from pipeline.report import preview_cache

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


def _failed_record(sample, exc: Exception, cfg: _Config) -> dict[str, Any]:
    """A sample whose task failed as a whole: every file marked, nothing decided (both
    decisions indeterminate with the failure as their reason)."""
    from pipeline.report.claims import evaluate_spec
    from pipeline.sample import decision_record, gate_record

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


def verdict_exit_code(records: list[dict[str, Any]], *, skip_before: bool = True) -> int:
    """The exit code of a verdict over samples (`gate`, `run --strict`): 1 if a sample is
    non-conforming; else 4 or 70 if a file could not be read or hit an internal error
    (its sample is indeterminate); else 3 if a sample is indeterminate; else 0. Samples
    measured before pressing are not judged unless `skip_before` is False."""
    judged = [r for r in records if not (skip_before and r.get("state") == "before")]
    if any(r["gate"]["outcome"] == "non-conforming" for r in judged):
        return EXIT_NONCONFORMING
    failed = _worst(im["exit_code"] for r in judged for im in r["images"]
                    if im["exit_code"] in (EXIT_UNREADABLE, EXIT_INTERNAL))
    if failed:
        return failed
    if any(r["gate"]["outcome"] != "conforming" for r in judged):
        return EXIT_INDETERMINATE
    return EXIT_OK


def _finish(records, artifacts, folder, out, cfg, manifest_id, created, strict, report,
            trends=None, not_measured: int | None = None, pictures: dict | None = None,
            notes: list[str] | None = None):
    """results.json, tables and report of `records`. `not_measured` (an interrupted run:
    exit code 130) counts the samples that are missing."""
    from pipeline import __version__
    from pipeline.stored import pairs

    pairs(records)
    if strict:
        code = verdict_exit_code(records)
    else:
        code = _worst(im["exit_code"] for r in records for im in r["images"])
    if not_measured is not None:
        code = EXIT_INTERRUPTED
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
            "failed_files": sum(im["status"] == "error" for r in records for im in r["images"]),
            "unreadable_files": sum(im["exit_code"] == EXIT_UNREADABLE
                                    for r in records for im in r["images"]),
            "reused_from_store": sum(bool((r.get("stored") or {}).get("reused"))
                                     for r in records),
            **({} if not_measured is None else {"not_measured": not_measured}),
        },
        **cfg.identities(),
        "manifest": manifest_id,
        "notes": list(notes or []),
        **({"report_pictures": pictures} if pictures and report else {}),
        "samples": records,
    }
    result = RunResult(code, results, None if out is None else Path(out))
    if out is not None:
        from pipeline.report.tables import write_outputs

        result.files_written = write_outputs(Path(out), results, artifacts, html=report,
                                             trends=trends)
    return result


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
    res.exit_code = verdict_exit_code(res.samples[:1], skip_before=False)
    res.results["exit_code"] = res.exit_code
    return res


# the store-facing part of the API (pipeline.stored imports this module only when called)
from pipeline.stored import process_sample_into_store, report_from_store
