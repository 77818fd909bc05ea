"""How a run meets the results store: stored results reused, new ones appended as they
arrive (a pressed sample after its before-pressing partner, so its void reduction goes in
with it), older particle tables retired once the new row is in, the run's end recorded; the
watcher's one-sample unit of work; and the report rebuilt from the store alone.
"""

from __future__ import annotations

import datetime as _dt
import logging
import sys
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.batch.config import load_run_config
from pipeline.batch.identity import digests_of, hash_files, idempotency_key, inputs
from pipeline.batch.measure import default_max_memory
from pipeline.batch.results import RunHeader, RunResult, pair, write_results
from pipeline.batch.store import DuplicateKey, Store
from pipeline.batch.task import measure_task, table_name
from pipeline.errors import ConfigError
from pipeline.report.tables import retire_particle_tables
from pipeline.report.trends import trends

__all__ = ["RETRIED", "Settler", "close_store", "needs_retry", "process_sample_into_store",
           "report_from_store", "retire_tables", "reused_record", "store_record"]

log = logging.getLogger(__name__)


def retire_tables(out, sample_id: str, key: str, particles) -> None:
    """Once a sample's new row is stored (or decided, without a store), its older particle
    tables move to tables/particles-superseded/."""
    if out is not None and particles is not None:
        retire_particle_tables(Path(out), sample_id, keep=table_name(sample_id, key))


RETRIED = "measured again: the stored measurement had failed (out of memory, a worker lost)"


def needs_retry(rec: dict[str, Any]) -> bool:
    """A stored record that a later run measures again instead of reusing: its task failed
    as a whole (a worker died, out of memory), or a file was refused for a memory limit or
    ran out of memory. An unreadable file is not retried: the same bytes fail the same way."""
    return bool(rec.get("task_failed")) or any(
        im.get("retry") for im in rec.get("images") or [])


class Settler:
    """Stores measured samples as they arrive. A sample paired with a before-pressing sample
    of the same run waits until that one is in, so that its void reduction is stored with
    it. A sample whose task failed is stored too, with its reasons (indeterminate), and
    releases whoever waits for it. Samples in `retry` were stored before with a failure
    that may not repeat: their new row supersedes that one although the key is the same."""

    def __init__(self, st, run_id, out, keys, records, ids, force, created, *,
                 retry: set[str] | None = None):
        self.st, self.run_id, self.out, self.keys = st, run_id, out, keys
        self.records, self.ids, self.force, self.created = records, ids, force, created
        self.retry = set(retry or ())
        self.waiting: dict[str, list[tuple[str, dict, Any]]] = {}

    def add(self, sid: str, rec: dict[str, Any], particles, *, failed: bool) -> None:
        self.records[sid] = rec
        partner = rec.get("pair")
        if not failed and partner and partner in self.ids and partner not in self.records:
            self.waiting.setdefault(partner, []).append((sid, rec, particles))
            return
        self._store(sid, rec, particles)

    def _store(self, sid: str, rec: dict[str, Any], particles) -> None:
        pair(rec, self.records)
        if self.st is not None:
            rec = store_record(self.st, rec, self.keys[sid], self.run_id, particles,
                               force=self.force, created=self.created,
                               again=RETRIED if sid in self.retry else None)
            self.records[sid] = rec
        retire_tables(self.out, sid, self.keys[sid], particles)
        for w in self.waiting.pop(sid, []):
            self._store(*w)

    def flush(self) -> None:
        for sid in list(self.waiting):
            for w in self.waiting.pop(sid, []):
                self._store(*w)


def close_store(st, run_id, status: str) -> None:
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


def reused_record(hit: dict[str, Any]) -> dict[str, Any]:
    """A stored row's record, marked as reused (row, run and time it was stored)."""
    rec = dict(hit["record"])
    rec["stored"] = {"row_id": hit["row_id"], "run_id": hit["run_id"],
                     "created_utc": hit["created_utc"], "reused": True}
    return rec


def store_record(st, rec: dict[str, Any], key: str, run_id: str, particles, *,
                 force: bool, created: str, again: str | None = None) -> dict[str, Any]:
    """Append a measured sample to the store (`Store.append` says why it supersedes a row;
    `again` is the reason when the same input is measured again after a failure). If
    another process stored this very input meanwhile, its row is reported instead."""
    try:
        row, _ = st.append(rec, key=key, run_id=run_id, particles=particles, force=force,
                           again=again)
    except DuplicateKey:  # a concurrent run stored this very input first
        hit = st.current([key]).get(key)
        if hit is None:
            raise
        return reused_record(hit)
    rec["stored"] = {"row_id": row, "run_id": run_id, "created_utc": created, "reused": False}
    return rec


def process_sample_into_store(sample, store, *, out: str | Path | None = None,
                              cfg=None, force: bool = False,
                              run_id: str | None = None) -> dict[str, Any]:
    """Measure one discovered sample in this process and add it to `store` (the watcher's
    unit of work). Idempotent: a sample whose key is stored already is not measured again
    (unless `force`); the stored record is returned with ``stored.reused`` True."""
    cfg = cfg or load_run_config(max_memory=default_max_memory(1))
    digests = hash_files(inputs(sample.files))
    key = idempotency_key(sample, cfg, digests)
    hit = None if force else store.current([key]).get(key)
    again = None
    if hit is not None and needs_retry(hit["record"]):
        hit, again = None, RETRIED
    if hit is not None:
        return reused_record(hit)
    res = measure_task((sample, cfg, None if out is None else Path(out), "none", key,
                        digests_of(sample.files, digests)))
    rec = res["record"]
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    rec["provenance"].update(package_version=__version__, created_utc=created,
                             idempotency_key=key, worker=res["worker"],
                             particles_table=res["particles"], **cfg.identities())
    partner = store.latest(rec["pair"]) if rec.get("pair") else None
    if partner is not None:  # its before-pressing partner, stored already
        pair(rec, {rec["pair"]: partner["record"]})
    own_run = run_id is None
    if own_run:
        run_id = store.begin_run(folder=str(Path(sample.files[0]).parent) if sample.files
                                 else sample.id, package_version=__version__,
                                 meta={"watch": True})
    status = "failed"
    try:
        rec = store_record(store, rec, key, run_id, res["particles"], force=force,
                           created=created, again=again)
        retire_tables(out, sample.id, key, res["particles"])
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
    out = Path(out)
    cfg = load_run_config(spec, gate_spec)
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
    records = [reused_record(r) for r in sorted(rows, key=lambda r: r["record"]["sample_id"])]
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    from sqlalchemy.engine import make_url

    where = make_url(st.url).render_as_string(hide_password=True)
    run = RunHeader(f"results store {where}", out, cfg, None, created)
    return write_results(records, {}, run, trends=trends(history, cfg.spec))
