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
    EXIT_USAGE,
    ElectrodeQCError,
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


def _measure_task(payload: tuple) -> dict[str, Any]:
    """One sample in a worker: measure, write its particle table, return a small record."""
    from pipeline.execute import worker_info
    from pipeline.sample import measure_sample

    sample, cfg, out, pictures, key = payload
    previews = pictures in ("all", "attention")
    rec, art, tabs = measure_sample(sample, cfg, previews=previews)
    if pictures == "attention" and not needs_attention(rec):
        art, previews = None, False
    ref = None
    if out is not None and tabs.get("particles") is not None:
        from pipeline.report.tables import write_particle_table

        # the sample's older tables are retired by the parent once this row is stored
        ref = write_particle_table(tabs["particles"], Path(out), _table_name(sample.id, key))
    if previews and out is not None:
        from pipeline.report import preview_cache

        try:
            preview_cache.save(Path(out), sample.id, key, art)
        except OSError as exc:  # the pictures are in this run's report all the same
            log.warning("%s: previews not kept for later runs: %s", sample.id, exc)
    return {"record": rec, "artifacts": art if previews else None, "particles": ref,
            "worker": worker_info()}


def needs_attention(rec: dict[str, Any]) -> bool:
    """A sample the report shows pictures of when only some get them: not conforming at
    the gate, claim 15 not met (or undecided), or a file that could not be measured."""
    return (rec.get("gate", {}).get("outcome") != "conforming"
            or rec.get("claim15", {}).get("met") is not True
            or any(im.get("status") == "error" for im in rec.get("images") or []))


def _table_name(sample_id: str, key: str) -> str:
    return f"{sample_id}-{key[:12]}"


def _retire_tables(out, sample_id: str, key: str, particles) -> None:
    """Once a sample's new row is stored (or decided, without a store), its older particle
    tables move to tables/particles-superseded/."""
    if out is not None and particles is not None:
        from pipeline.report.tables import retire_particle_tables

        retire_particle_tables(Path(out), sample_id, keep=_table_name(sample_id, key))


def run(folder: str | Path, out: str | Path | None, *, spec: str | Path | None = None,
        gate_spec: str | Path | None = None, recipe: str | Path | None = None,
        strict: bool = False, report: bool = True, single: bool = False,
        today: _dt.date | None = None, jobs: int | None = 1, scheduler: str | None = None,
        db: str | None = None, store: bool = True, force: bool = False,
        pictures: str = "auto") -> RunResult:
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
        Treat `folder` as one electrode's folder (`gate`).
    jobs, scheduler : optional
        Samples run in `jobs` processes (None: every CPU available), or on dask
        (`pipeline.execute`). Results are the same whichever runs them.
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
    from pipeline.execute import available_cpus, discard_warm, prewarm, prewarm_local_cluster
    from pipeline.ingest.discover import discover

    folder = Path(folder)
    cfg = _config(spec, gate_spec, recipe, today)
    samples, manifest_id = discover(folder, rules=cfg.rules, single=single)
    if not samples:
        from pipeline.errors import ConfigError

        raise ConfigError(folder, "holds no samples: no image files and no manifest entry")
    if pictures not in PICTURES:
        from pipeline.errors import ConfigError

        raise ConfigError(None, f"pictures {pictures!r}: expected one of {', '.join(PICTURES)}")
    if pictures == "auto":
        pictures = "all" if len(samples) <= PICTURES_ALL_UP_TO else "attention"
    n_jobs = available_cpus() if jobs is None else int(jobs)
    if scheduler == "auto" and n_jobs >= 1:
        prewarm_local_cluster(n_jobs)  # the cluster starts while this process hashes
    elif scheduler is None and n_jobs > 1 and len(samples) > n_jobs:
        prewarm(n_jobs)  # workers import while this process hashes and asks the store
    try:
        return _run_samples(samples, manifest_id, cfg, folder, out, strict=strict,
                            report=report, jobs=n_jobs, scheduler=scheduler, db=db,
                            store=store, force=force, pictures=pictures)
    finally:
        discard_warm()


def _run_samples(samples, manifest_id, cfg, folder, out, *, strict, report, jobs, scheduler,
                 db, store, force, pictures) -> RunResult:
    from pipeline import __version__
    from pipeline.execute import discard_warm, execute

    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    if not (report and out is not None):
        pictures = "none"
    st = None
    if store and (db is not None or out is not None):
        from pipeline.store import Store

        st = Store.open(db, out=None if out is None else Path(out))
    records: dict[str, dict[str, Any]] = {}
    artifacts: dict[str, Any] = {}
    run_id, status, bar = None, "failed", None
    try:
        from pipeline.identity import hash_files, idempotency_key, inputs

        sha = hash_files(inputs(f for s in samples for f in s.files))
        keys = {s.id: idempotency_key(s, cfg, sha) for s in samples}
        if st is not None:
            run_id = st.begin_run(folder=str(folder), package_version=__version__,
                                  meta={"jobs": jobs, "scheduler": scheduler, "force": force,
                                        **cfg.identities()})
        todo, reused = _plan(samples, keys, st, force, pictures, out, records, artifacts)
        if len(todo) <= 1:  # nothing for a pool to do: stop the pre-started one now
            discard_warm()
        bar = _progress(len(todo))
        settle = _Settler(st, run_id, out, keys, records, {s.id for s in samples}, force,
                          created)
        payloads = [(s, cfg, None if out is None else Path(out), pictures, keys[s.id])
                    for s in todo]
        try:
            for i, res in execute(_measure_task, payloads, jobs=jobs, scheduler=scheduler):
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
                    report, not_measured=len(samples) - len(ordered))
        raise
    finally:
        if bar is not None:
            bar[0].stop()
        if st is not None:
            _close_store(st, run_id, status)
    ordered = [records[s.id] for s in samples if s.id in records]
    result = _finish(ordered, artifacts, folder, out, cfg, manifest_id, created, strict,
                     report, pictures={"policy": pictures, "samples": len(ordered),
                                       "with_pictures": len(artifacts),
                                       "all_up_to": PICTURES_ALL_UP_TO})
    return result


def _plan(samples, keys, st, force, pictures, out, records, artifacts):
    """Which samples to measure: those whose key is not current in the store, and stored
    ones whose kept pictures are missing when the report shows them (pictures only)."""
    reused: dict[str, dict[str, Any]] = {}
    todo = []
    current = st.current(keys.values()) if st is not None and not force else {}
    for s in samples:
        hit = current.get(keys[s.id])
        if hit is None:
            todo.append(s)
            continue
        reused[s.id] = hit
        records[s.id] = _reused_record(hit)
        if pictures == "all" or (pictures == "attention" and needs_attention(hit["record"])):
            # the pictures kept by the run that measured it, else measure it again for them
            from pipeline.report import preview_cache

            kept = preview_cache.load(Path(out), s.id, keys[s.id])
            if kept is None:
                todo.append(s)
            else:
                artifacts[s.id] = kept
    return todo, reused


class _Settler:
    """Stores measured samples as they arrive. A sample paired with a before-pressing sample
    of the same run waits until that one is in, so that its void reduction is stored with
    it; a failed sample is recorded (not stored) and releases whoever waits for it."""

    def __init__(self, st, run_id, out, keys, records, ids, force, created):
        self.st, self.run_id, self.out, self.keys = st, run_id, out, keys
        self.records, self.ids, self.force, self.created = records, ids, force, created
        self.waiting: dict[str, list[tuple[str, dict, Any]]] = {}

    def add(self, sid: str, rec: dict[str, Any], particles, *, failed: bool) -> None:
        self.records[sid] = rec
        pair = rec.get("pair")
        if not failed and pair and pair in self.ids and pair not in self.records:
            self.waiting.setdefault(pair, []).append((sid, rec, particles))
            return
        if not failed:
            self._store(sid, rec, particles)
        for w in self.waiting.pop(sid, []):
            self._store(*w)

    def _store(self, sid: str, rec: dict[str, Any], particles) -> None:
        _pair(rec, self.records)
        if self.st is not None:
            rec = _store_record(self.st, rec, self.keys[sid], self.run_id, particles,
                                force=self.force, created=self.created)
            self.records[sid] = rec
        _retire_tables(self.out, sid, self.keys[sid], particles)
        for w in self.waiting.pop(sid, []):
            self._store(*w)

    def flush(self) -> None:
        for sid in list(self.waiting):
            for w in self.waiting.pop(sid, []):
                self._store(*w)


def _close_store(st, run_id, status: str) -> None:
    """Record how the run ended and close the store. A failure to record it does not hide
    an error already on its way (the database may be what failed)."""
    in_flight = sys.exc_info()[1]  # the error that ends the run, if one does
    try:
        if run_id is not None:
            st.finish_run(run_id, status)
    except Exception:
        if in_flight is None:
            raise
        log.warning("could not record the end of run %s in %s", run_id, st.display_url,
                    exc_info=True)
    finally:
        st.close()


def _reused_record(hit: dict[str, Any]) -> dict[str, Any]:
    rec = dict(hit["record"])
    rec["stored"] = {"row_id": hit["row_id"], "run_id": hit["run_id"],
                     "created_utc": hit["created_utc"], "reused": True}
    return rec


def _store_record(st, rec: dict[str, Any], key: str, run_id: str, particles, *,
                  force: bool, created: str) -> dict[str, Any]:
    """Append a measured sample to the store (`Store.append` says why it supersedes a row).
    If another process stored this very input meanwhile, its row is reported instead."""
    from pipeline.store import DuplicateKey

    try:
        row, _ = st.append(rec, key=key, run_id=run_id, particles=particles, force=force)
    except DuplicateKey:  # a concurrent run stored this very input first
        hit = st.current([key]).get(key)
        if hit is None:
            raise
        return _reused_record(hit)
    rec["stored"] = {"row_id": row, "run_id": run_id, "created_utc": created, "reused": False}
    return rec


def _failed_record(sample, exc: Exception, cfg: _Config) -> dict[str, Any]:
    """A sample whose task failed as a whole: every file marked, nothing decided."""
    msg = f"{sample.id}: {type(exc).__name__}: {exc}"
    code = getattr(exc, "exit_code", EXIT_INTERNAL)
    images = [{"path": str(f), "role": None, "status": "error", "error": msg,
               "exit_code": code, "results": None} for f in sample.files] or [
        {"path": sample.id, "role": None, "status": "error", "error": msg, "exit_code": code,
         "results": None}]
    from pipeline.report.claims import evaluate_spec

    undecided = evaluate_spec(cfg.spec, {})
    undecided["rule"] = "one or more" if undecided["combine"] == "any" else "all"
    gate = evaluate_spec(cfg.gate_spec, {}, blockers=[msg])
    return {"sample_id": sample.id, "title": sample.manifest.get("title", sample.id),
            "state": sample.state, "pair": sample.manifest.get("pair"), "claim15": undecided,
            "particle_claims": {"met": None, "claims": []},
            "gate": {"outcome": "indeterminate", "rule": gate["rule"], "reasons": gate["reasons"],
                     "combine": gate["combine"], "properties": gate["properties"],
                     "spec": gate["spec"]},
            "void_reduction_pct": None,
            "metrics": {k: None for k in ("Sa_um", "Sz_um", "porosity_cross_section",
                                          "porosity_gravimetric", "protrusions_per_mm2",
                                          "psd")},
            "images": images, "flags": [msg], "notes": list(sample.notes),
            "provenance": {"inputs": [{"path": str(f), "sha256": None, "reader": None,
                                       "pixel_size_source": None} for f in sample.files]}}


def _finish(records, artifacts, folder, out, cfg, manifest_id, created, strict, report,
            trends=None, not_measured: int | None = None, pictures: dict | None = None):
    """results.json, tables and report of `records`. `not_measured` (an interrupted run:
    exit code 130) counts the samples that are missing."""
    from pipeline import __version__

    _pairs(records)
    codes = [im["exit_code"] for r in records for im in r["images"]]
    code = _worst(codes)
    if code == EXIT_OK and strict and any(r["gate"]["outcome"] == "non-conforming"
                                          and r.get("state") != "before" for r in records):
        code = EXIT_NONCONFORMING
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
            "unreadable_files": sum(im["exit_code"] == EXIT_UNREADABLE
                                    for r in records for im in r["images"]),
            "reused_from_store": sum(bool((r.get("stored") or {}).get("reused"))
                                     for r in records),
            **({} if not_measured is None else {"not_measured": not_measured}),
        },
        **cfg.identities(),
        "manifest": manifest_id,
        **({"report_pictures": pictures} if pictures and report else {}),
        "samples": records,
    }
    result = RunResult(code, results, None if out is None else Path(out))
    if out is not None:
        from pipeline.report.tables import write_outputs

        result.files_written = write_outputs(Path(out), results, artifacts, html=report,
                                             trends=trends)
    return result


def process_sample_into_store(sample, store, *, out: str | Path | None = None,
                              cfg: _Config | None = None, force: bool = False,
                              run_id: str | None = None) -> dict[str, Any]:
    """Measure one discovered sample in this process and add it to `store` (the watcher's
    unit of work). Idempotent: a sample whose key is stored already is not measured again
    (unless `force`); the stored record is returned with ``stored.reused`` True."""
    from pipeline import __version__

    cfg = cfg or _config(None, None, None, None)
    from pipeline.identity import hash_files, idempotency_key, inputs

    key = idempotency_key(sample, cfg, hash_files(inputs(sample.files)))
    hit = None if force else store.current([key]).get(key)
    if hit is not None:
        return _reused_record(hit)
    res = _measure_task((sample, cfg, None if out is None else Path(out), "none", key))
    rec = res["record"]
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    rec["provenance"].update(package_version=__version__, created_utc=created,
                             idempotency_key=key, worker=res["worker"],
                             particles_table=res["particles"], **cfg.identities())
    partner = store.latest(rec["pair"]) if rec.get("pair") else None
    if partner is not None:  # its before-pressing partner, stored already
        _pair(rec, {rec["pair"]: partner["record"]})
    own_run = run_id is None
    if own_run:
        run_id = store.begin_run(folder=str(Path(sample.files[0]).parent) if sample.files
                                 else sample.id, package_version=__version__,
                                 meta={"watch": True})
    status = "failed"
    try:
        rec = _store_record(store, rec, key, run_id, res["particles"], force=force,
                            created=created)
        _retire_tables(out, sample.id, key, res["particles"])
        status = "completed"
    finally:
        if own_run:
            store.finish_run(run_id, status)
    return rec


def report_from_store(db: str | None, out: str | Path, *, spec: str | Path | None = None,
                      gate_spec: str | Path | None = None) -> RunResult:
    """Rebuild report.html, results.json and the tables from the results store alone.

    The latest (not superseded) row of every sample is reported, with a trend chart per
    metric over every stored measurement. `db` None means SQLite at OUT/results.db.
    """
    from pipeline.errors import ConfigError
    from pipeline.report.trends import trends
    from pipeline.store import Store

    out = Path(out)
    cfg = _config(spec, gate_spec, None, None)
    if db is None or db.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        where = out / "results.db" if db is None else Path(make_url(db).database or "")
        if not where.is_file():
            raise ConfigError(where, "no results store here; give --db URL of an existing "
                                     "store, or the --out folder of a run")
    st = Store.open(db, out=out)
    try:
        rows = st.samples(latest_only=True)
        history = st.history()
    finally:
        st.close()
    records = []
    for r in sorted(rows, key=lambda r: r["record"]["sample_id"]):
        rec = dict(r["record"])
        rec["stored"] = {"row_id": r["row_id"], "run_id": r["run_id"],
                         "created_utc": r["created_utc"], "reused": True}
        records.append(rec)
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    from sqlalchemy.engine import make_url

    where = make_url(st.url).render_as_string(hide_password=True)
    return _finish(records, {}, f"results store {where}", out, cfg, None, created,
                   False, True, trends=trends(history, cfg.spec))


def _pairs(records: list[dict[str, Any]]) -> None:
    """Void reduction for samples paired with a separately measured before-pressing sample."""
    by_id = {r["sample_id"]: r for r in records}
    for r in records:
        _pair(r, by_id)


def _pair(r: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> None:
    """Set `r`'s void reduction from its pair partner's porosity in `by_id`, if both are
    known and `r` has none yet (a manifest's gravimetric before/after comes first)."""
    from pipeline.segmentation.porosity import void_reduction

    pair = r.get("pair")
    if not pair or pair not in by_id or r.get("void_reduction_pct") is not None:
        return
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
