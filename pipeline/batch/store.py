"""The results store: every measured sample, append-only, in SQLite or PostgreSQL.

SQLAlchemy Core, no ORM. A verdict row is never updated or deleted: a re-measurement is a new
`samples` row whose ``supersedes`` names the row it replaces, with a reason. The constraints
keep every sample's rows one chain (one first row per sample id, no row superseded twice), so
exactly one row per sample is the latest. The schema is made and upgraded by the Alembic
migrations in ``pipeline/batch/migrations``, run by `Store.open`.

SQLite runs in WAL mode with foreign keys on and a busy timeout, and a write transaction takes
the write lock at BEGIN (``BEGIN IMMEDIATE``); PostgreSQL writes take an advisory lock per
sample id. Either way "read the latest row, then add one after it" is atomic.

JSON (records, run metadata, image results) is stored as TEXT; numbers are floats or NULL,
never NaN.

A run records the process that runs it (host, pid and the process's start time) in its
meta. A run left "running" by a process that died without recording its end (killed, out
of memory, power lost) is marked "aborted" when the next run on the same host begins;
runs of other hosts are left as they are (their processes cannot be seen from here).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Self

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url

from pipeline import __version__
from pipeline.batch.store_tables import (
    IMAGES,
    IS_LATEST,
    LATER,
    METADATA,
    QUARANTINE,
    ROWS,
    RUNS,
    SAMPLES,
    SCHEMA_HEAD,
    decode,
    json_text,
    now,
    sample_values,
)
from pipeline.errors import EXIT_USAGE, ConfigError, ElectrodeQCError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["METADATA", "RUN_STATUSES", "DuplicateKey", "Store", "display_url", "normalize_url",
           "process_gone", "process_started", "this_process"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
_KEY_CHUNK = 500  # keys per IN (...) query
BUSY_TIMEOUT_S = 30
CONNECT_TIMEOUT_S = 10
RUN_STATUSES = ("completed", "failed", "interrupted", "aborted")
_MIGRATION_LOCK = 0x45514353_544F5245  # pg_advisory_xact_lock key while migrating
_DRIVERS = {"sqlite": "sqlite", "sqlite+pysqlite": "sqlite", "postgresql": "postgresql+psycopg",
            "postgres": "postgresql+psycopg", "postgresql+psycopg": "postgresql+psycopg"}


class DuplicateKey(ElectrodeQCError):
    """A sample row whose idempotency key is stored already (and the caller did not force)."""

    exit_code = EXIT_USAGE

    def __init__(self, key: str, row_id: int, sample_id: str):
        self.key, self.row_id, self.sample_id = key, row_id, sample_id
        super().__init__(None, f"idempotency key {key} is stored already (row {row_id}, sample "
                               f"{sample_id!r}); look it up with find_key, or re-measure with "
                               "force=True (--force)")

    def __reduce__(self):
        return type(self), (self.key, self.row_id, self.sample_id)


def normalize_url(url: str | URL) -> URL:
    """The SQLAlchemy URL the store uses: ``postgresql://`` (and ``postgres://``) go through
    psycopg 3. Raises `ConfigError` (password masked) for a malformed or unsupported URL."""
    try:
        u = make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:
        raise ConfigError(display_url(url), f"not a database URL ({exc}); expected "
                          "sqlite:///PATH or postgresql://USER@HOST:PORT/DB") from None
    driver = _DRIVERS.get(u.drivername)
    if driver is None:
        raise ConfigError(display_url(u), f"unsupported database {u.drivername!r}; the results "
                          "store runs on sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    return u.set(drivername=driver)


def display_url(url: str | URL) -> str:
    """`url` with its password masked, for messages and reports."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        text = str(url)
        scheme, sep, rest = text.partition("://")
        cred, at, host = rest.rpartition("@")
        if sep and at and ":" in cred:
            return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
        return text


def _sqlite_connect(dbapi_conn, _record) -> None:
    # pysqlite's own transaction handling off: the "begin" hook below issues BEGIN itself
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
    cur.execute("PRAGMA foreign_keys = ON")
    mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    cur.close()
    if mode.lower() not in ("wal", "memory"):
        log.warning("SQLite refused WAL journal mode (got %s); concurrent readers may block", mode)


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("eqc_write")
                         else "BEGIN")


def _engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(url, pool_pre_ping=True,
                            connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


def _alembic_config():
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    cfg.set_main_option("path_separator", "os")
    return cfg


def _lock_key(text: str) -> int:
    """A signed 64-bit advisory lock key for `text`."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None


def process_started(pid: int) -> str | None:
    """When process `pid` started, as ``"<boot id>:<clock ticks since boot>"`` (Linux), so
    that a pid reused by a later process, or after a reboot, is told apart; None where the
    system does not say (or there is no such process)."""
    boot = _boot_id()
    if boot is None:
        return None
    try:
        with open(f"/proc/{int(pid)}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def _pid_namespace() -> str | None:
    """This process's pid namespace (Linux): containers that share a host name and a
    database see one another's pids as other processes."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except (OSError, AttributeError):
        return None


def this_process() -> dict:
    """Host, pid namespace, pid and start time of this process, as `Store.begin_run`
    records them."""
    return {"host": socket.gethostname(), "pid_namespace": _pid_namespace(),
            "pid": os.getpid(), "started": process_started(os.getpid())}


def _here(proc: dict) -> bool:
    """True if `proc` (`this_process` of some run) ran where this process can see it."""
    return (proc.get("host") == socket.gethostname()
            and proc.get("pid_namespace") == _pid_namespace())


def process_gone(proc: dict) -> bool:
    """True if the process `proc` (as `this_process` gave it, on this host) has ended: no
    process has its pid, or the one that has it started at another time (a reused pid).
    False when that cannot be told."""
    pid, started = proc.get("pid"), proc.get("started")
    if not isinstance(pid, int) or pid <= 0:
        return False
    if started is not None and _boot_id() is not None:
        return process_started(pid) != started
    if os.name != "posix":  # no signal 0 to ask with
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, and belongs to another user
        return False
    return False


class Store:
    """The results store at one database URL. Open with `Store.open`; close when done
    (or use it as a context manager).

    Attributes
    ----------
    url : str
        The normalized URL (``sqlite:///...`` or ``postgresql+psycopg://...``), password
        included; `display_url` is the one to show.
    """

    def __init__(self, url: URL, engine: Engine):
        self._u = url
        self.url = url.render_as_string(hide_password=False)
        self._engine = engine
        self._write = engine.execution_options(eqc_write=True)
        self._pg = url.get_backend_name() == "postgresql"

    @property
    def display_url(self) -> str:
        return display_url(self._u)

    def __repr__(self) -> str:
        return f"Store({self.display_url!r})"

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, url: str | None = None, *, out: Path | None = None) -> Store:
        """Open (and create or upgrade to the newest schema) the store at `url`.

        Parameters
        ----------
        url : str, optional
            ``sqlite:///PATH`` or ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`` (also
            ``postgresql+psycopg://``). None: SQLite at ``out / "results.db"``.
        out : path, optional
            The output folder (created) when `url` is None.

        Raises
        ------
        ConfigError
            A malformed or unsupported URL, a database that cannot be reached or opened, or
            one whose schema is newer than this package knows. The message shows the URL
            with its password masked.
        """
        if url is None:
            if out is None:
                raise ConfigError(None, "no results database: give a database URL (--db) or "
                                  "an output folder")
            out = Path(out)
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(out, f"cannot create the output folder: {exc}") from None
            u = URL.create("sqlite", database=str(out.resolve() / "results.db"))
        else:
            u = normalize_url(url)
        try:
            engine = _engine(u)
        except ImportError as exc:
            raise ConfigError(display_url(u), f"the database driver is not installed ({exc}); "
                              "for PostgreSQL: pip install 'electrode-qc[postgres]'") from None
        store = cls(u, engine)
        try:
            store._migrate()
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            raise ConfigError(store.display_url, store._problem(exc)) from None
        except BaseException:
            engine.dispose()
            raise
        return store

    def _problem(self, exc: sa.exc.DBAPIError) -> str:
        msg = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
        if self._u.password:
            msg = msg.replace(str(self._u.password), "***")
        if isinstance(exc, sa.exc.OperationalError):
            return (f"cannot open the results database: {msg}; check the URL, that the server "
                    "runs and accepts this user, and that the file's folder exists")
        return f"cannot bring the results database's schema up to date: {msg}"

    def _at_head(self) -> bool:
        """Whether the store is at `SCHEMA_HEAD` already, read with one plain query (Alembic,
        slow to import, is loaded only when there is something to do or to refuse)."""
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
        except sa.exc.DBAPIError:  # no such table yet: a new store
            return False
        return [tuple(r) for r in rows] == [(SCHEMA_HEAD,)]

    def _migrate(self) -> None:
        """Bring the schema to the newest revision (under a write lock, only if needed)."""
        if self._at_head():
            return
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        cfg = _alembic_config()
        script = ScriptDirectory.from_config(cfg)
        head = script.get_current_head()
        with self._engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
        self._refuse_newer(heads, script)
        if heads == (head,):
            return
        with self._write.begin() as conn:
            if self._pg:  # one process at a time migrates
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            self._refuse_newer(MigrationContext.configure(conn).get_current_heads(), script)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _refuse_newer(self, heads: tuple[str, ...], script) -> None:
        known = {r.revision for r in script.walk_revisions()}
        unknown = sorted(h for h in heads if h not in known)
        if unknown:
            raise ConfigError(self.display_url, (
                f"the database's schema is at revision {', '.join(unknown)}, newer than "
                f"electrode-qc {__version__} knows (newest: {script.get_current_head()}); "
                "open it with the newer electrode-qc that wrote it"))

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- runs ----------------------------------------------------------------------------
    def begin_run(self, *, folder: str, package_version: str, meta: dict) -> str:
        """Record the start of a run (status "running"); returns its run_id.

        `meta` is stored with ``"process"``: this process's host, pid and start time
        (`this_process`). Runs of this host left "running" by a process that has ended are
        marked "aborted" first (`abort_stale_runs`).
        """
        self.abort_stale_runs()
        run_id = uuid.uuid4().hex
        with self._write.begin() as conn:
            conn.execute(RUNS.insert().values(
                run_id=run_id, folder=str(folder), package_version=str(package_version),
                started_utc=now(), finished_utc=None, status="running",
                meta_json=json_text({**meta, "process": this_process()})))
        return run_id

    def abort_stale_runs(self) -> list[str]:
        """Mark "aborted" every run still "running" whose process, on this host, has ended
        without recording the run's end (killed, out of memory, power lost); returns their
        run_ids. Their ``finished_utc`` stays empty: when they ended is not known. Runs of
        other hosts (or other containers: another pid namespace), and runs that do not say
        which process ran them, are left alone."""
        with self._engine.connect() as conn:
            running = conn.execute(sa.select(RUNS.c.run_id, RUNS.c.meta_json)
                                   .where(RUNS.c.status == "running")).all()
        stale = []
        for run_id, text in running:
            try:
                proc = json.loads(text).get("process")
            except (ValueError, AttributeError):
                continue
            if isinstance(proc, dict) and _here(proc) and process_gone(proc):
                stale.append((run_id, proc.get("pid")))
        aborted = []
        for run_id, pid in stale:
            with self._write.begin() as conn:
                n = conn.execute(RUNS.update().where(RUNS.c.run_id == run_id,
                                                     RUNS.c.status == "running")
                                 .values(status="aborted")).rowcount
            if n == 1:
                log.warning("run %s (process %s on %s) ended without recording its end: "
                            "marked aborted", run_id, pid, socket.gethostname())
                aborted.append(run_id)
        return aborted

    def finish_run(self, run_id: str, status: str) -> None:
        """Set a run's final status: "completed", "failed" or "interrupted" ("aborted" is
        what `abort_stale_runs` gives a run whose process died)."""
        if status not in RUN_STATUSES:
            raise ValueError(f"run status {status!r}: expected one of {', '.join(RUN_STATUSES)}")
        with self._write.begin() as conn:
            n = conn.execute(RUNS.update().where(RUNS.c.run_id == run_id)
                             .values(status=status, finished_utc=now())).rowcount
        if n != 1:
            raise ValueError(f"no run {run_id!r} in {self.display_url}")

    def runs(self) -> list[dict]:
        """Every run, oldest first, with "meta" (JSON-decoded)."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(RUNS).order_by(RUNS.c.started_utc, RUNS.c.run_id))
            return [decode(r, "meta_json", "meta") for r in rows.mappings()]

    # ---- samples -------------------------------------------------------------------------
    def find_key(self, key: str) -> dict | None:
        """The stored sample row with idempotency key `key` (the newest if re-measured with
        force), with "record" (JSON-decoded) and "superseded_by"; None if there is none."""
        q = ROWS.where(SAMPLES.c.idempotency_key == key).order_by(SAMPLES.c.row_id.desc())
        with self._engine.connect() as conn:
            row = conn.execute(q.limit(1)).mappings().first()
        return None if row is None else decode(row, "record_json", "record")

    def latest(self, sample_id: str) -> dict | None:
        """The newest row of `sample_id`: the one no other row supersedes."""
        q = (ROWS.where(SAMPLES.c.sample_id == sample_id, IS_LATEST)
             .order_by(SAMPLES.c.row_id.desc()).limit(1))
        with self._engine.connect() as conn:
            row = conn.execute(q).mappings().first()
        return None if row is None else decode(row, "record_json", "record")

    def current(self, keys) -> dict[str, dict]:
        """The rows whose idempotency key is in `keys` and that are still their sample's
        latest, by key: the inputs whose stored result is current. A key that a later
        measurement superseded (input A, then B, then A again) is left out. One query per
        500 keys."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, dict] = {}
        with self._engine.connect() as conn:
            for i in range(0, len(keys), _KEY_CHUNK):
                q = ROWS.where(SAMPLES.c.idempotency_key.in_(keys[i:i + _KEY_CHUNK]), IS_LATEST)
                for row in conn.execute(q).mappings():
                    found[row["idempotency_key"]] = decode(row, "record_json", "record")
        return found

    def add_sample(self, record: dict, *, key: str, run_id: str, reason: str | None = None,
                   particles: dict | None = None, force: bool = False) -> int:
        """Store one measured sample and its images in one transaction; returns the row_id.

        If `record["sample_id"]` has a latest row already, the new row supersedes it and
        `reason` is required (``ValueError`` otherwise); without one, `reason` is not stored.
        `key` may be stored once: a second row with a stored key raises `DuplicateKey`
        unless `force` (a deliberate re-measurement of the same input). `particles` is
        ``{"path", "sha256", "rows"}`` of the particle table the worker wrote.
        """
        def decide(conn: Connection, prev) -> tuple[str | None, bool]:
            if not force:
                self._refuse_duplicate(conn, key)
            if prev is not None and not reason:
                raise ValueError(f"sample {record['sample_id']!r} has a stored row "
                                 f"({prev.row_id}): a new row supersedes it and needs a reason")
            return reason, force

        return self._add(record, key, run_id, particles, force, decide)[0]

    def append(self, record: dict, *, key: str, run_id: str, particles: dict | None = None,
               force: bool = False, again: str | None = None) -> tuple[int, str | None]:
        """Store a new measurement of a sample, choosing the reason it supersedes the latest
        row in the same transaction: "new input, calibration or software"; "input restored
        to an earlier state" when `key` is stored on an older row (A, B, then A again);
        "re-measured (--force)" when the latest row has `key` and `force` is given.

        With `again` (a reason, e.g. "measured again: the stored measurement had failed"),
        a new row of the same input supersedes the latest with that reason, as with
        `force`.

        Returns ``(row_id, reason)``. Raises `DuplicateKey` when the latest row has `key`
        already and neither `force` nor `again` is given (another run stored this very input
        first).
        """
        def decide(conn: Connection, prev) -> tuple[str | None, bool]:
            stored = conn.execute(sa.select(SAMPLES.c.row_id, SAMPLES.c.sample_id)
                                  .where(SAMPLES.c.idempotency_key == key)
                                  .order_by(SAMPLES.c.row_id.desc()).limit(1)).first()
            if prev is not None and prev.idempotency_key == key:
                if again:
                    return again, True
                if not force:
                    raise DuplicateKey(key, prev.row_id, prev.sample_id)
                return "re-measured (--force)", True
            if stored is None:
                return (None if prev is None else "new input, calibration or software"), force
            if prev is None and not force:
                raise DuplicateKey(key, stored.row_id, stored.sample_id)
            return "input restored to an earlier state", True

        return self._add(record, key, run_id, particles, force or bool(again), decide)

    def _add(self, record: dict, key: str, run_id: str, particles: dict | None, force: bool,
             decide) -> tuple[int, str | None]:
        """The transaction behind `add_sample` and `append`: lock, check the run, find the
        latest row, let `decide(conn, prev)` give (reason, forced), insert sample and images."""
        sample_id = str(record["sample_id"])
        values, images = sample_values(record, key, particles)
        forced = force
        try:
            with self._write.begin() as conn:
                if self._pg:  # writers of one sample id queue here
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"),
                                 {"k": _lock_key(sample_id)})
                version = conn.execute(sa.select(RUNS.c.package_version)
                                       .where(RUNS.c.run_id == run_id)).scalar()
                if version is None:
                    raise ValueError(f"no run {run_id!r} in {self.display_url}: begin_run first")
                prev = conn.execute(
                    sa.select(SAMPLES.c.row_id, SAMPLES.c.sample_id, SAMPLES.c.idempotency_key)
                    .where(SAMPLES.c.sample_id == sample_id,
                           ~sa.exists().where(LATER.c.supersedes == SAMPLES.c.row_id))
                    .order_by(SAMPLES.c.row_id.desc()).limit(1)).first()
                reason, forced = decide(conn, prev)
                version = (record.get("provenance") or {}).get("package_version") or version
                row_id = conn.execute(SAMPLES.insert().values(
                    **values, forced=bool(forced), run_id=run_id, package_version=str(version),
                    supersedes=None if prev is None else prev.row_id,
                    supersede_reason=None if prev is None else str(reason))
                ).inserted_primary_key[0]
                if images:
                    conn.execute(IMAGES.insert(), [dict(im, sample_row_id=row_id)
                                                   for im in images])
        except sa.exc.IntegrityError:
            # an unforced row's key is unique: if it is taken, a writer of another sample id
            # stored it meanwhile; any other constraint failure is raised as it is
            if not forced:
                with self._engine.connect() as conn:
                    self._refuse_duplicate(conn, key)
            raise
        return int(row_id), None if prev is None else str(reason)

    @staticmethod
    def _refuse_duplicate(conn: Connection, key: str) -> None:
        hit = conn.execute(sa.select(SAMPLES.c.row_id, SAMPLES.c.sample_id)
                           .where(SAMPLES.c.idempotency_key == key)
                           .order_by(SAMPLES.c.row_id).limit(1)).first()
        if hit is not None:
            raise DuplicateKey(key, hit.row_id, hit.sample_id)

    def samples(self, *, latest_only: bool = True) -> list[dict]:
        """Stored sample rows with "record" (the full sample record, JSON-decoded) and
        "superseded_by", ordered by sample id and newest first within a sample. With
        `latest_only` only the rows no other row supersedes (one per sample)."""
        q = ROWS.where(IS_LATEST) if latest_only else ROWS
        q = q.order_by(SAMPLES.c.sample_id, SAMPLES.c.row_id.desc())
        with self._engine.connect() as conn:
            return [decode(r, "record_json", "record") for r in conn.execute(q).mappings()]

    def images(self, row_id: int) -> list[dict]:
        """The image rows of sample row `row_id`, in record order, "results" JSON-decoded."""
        q = (sa.select(IMAGES).where(IMAGES.c.sample_row_id == row_id)
             .order_by(IMAGES.c.position))
        with self._engine.connect() as conn:
            return [decode(r, "results_json", "results") for r in conn.execute(q).mappings()]

    def history(self) -> pd.DataFrame:
        """Every stored sample row, oldest first: row_id, sample_id, state ("before",
        "after" or None), created_utc, porosity_frac, Sa_um, Sz_um, void_reduction_pct
        (floats, NaN where not measured), gate_outcome and superseded (bool)."""
        import pandas as pd

        q = (sa.select(SAMPLES.c.row_id, SAMPLES.c.sample_id, SAMPLES.c.state,
                       SAMPLES.c.created_utc,
                       SAMPLES.c.porosity_frac, SAMPLES.c.sa_um.label("Sa_um"),
                       SAMPLES.c.sz_um.label("Sz_um"), SAMPLES.c.void_reduction_pct,
                       SAMPLES.c.gate_outcome, LATER.c.row_id.label("superseded_by"))
             .select_from(SAMPLES.outerjoin(LATER, LATER.c.supersedes == SAMPLES.c.row_id))
             .order_by(SAMPLES.c.row_id))
        with self._engine.connect() as conn:
            rows = conn.execute(q).all()
        cols = ["row_id", "sample_id", "state", "created_utc", "porosity_frac", "Sa_um", "Sz_um",
                "void_reduction_pct", "gate_outcome", "superseded_by"]
        df = pd.DataFrame([tuple(r) for r in rows], columns=cols)
        df["row_id"] = df["row_id"].astype("int64")
        for c in ("porosity_frac", "Sa_um", "Sz_um", "void_reduction_pct"):
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        df["superseded"] = df.pop("superseded_by").notna().astype(bool)
        df["state"] = pd.Series([r[2] for r in rows], index=df.index, dtype=object)
        return df

    # ---- quarantine ----------------------------------------------------------------------
    def quarantine(self, path: str, reason: str, *, sha256: str | None = None,
                   run_id: str | None = None) -> int:
        """Record a file that will not be processed, and why; returns the entry's id."""
        with self._write.begin() as conn:
            return int(conn.execute(QUARANTINE.insert().values(
                path=str(path), sha256=sha256, reason=str(reason), created_utc=now(),
                run_id=run_id)).inserted_primary_key[0])

    def quarantined(self) -> list[dict]:
        """Every quarantine entry, oldest first."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(QUARANTINE).order_by(QUARANTINE.c.id)).mappings()
            return [dict(r) for r in rows]
