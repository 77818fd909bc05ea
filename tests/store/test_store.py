"""The results store on SQLite and PostgreSQL: the same tests on both (see conftest.py)."""

from __future__ import annotations

import json
import math
import os
import socket
import threading

import jsonschema
import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pipeline.batch.store import METADATA, DuplicateKey, Store
from pipeline.errors import ConfigError, ElectrodeQCError
from tests.report.report_data import SHA, sample_result

TABLES = {"runs", "samples", "images", "quarantine", "alembic_version"}


@pytest.fixture
def store(db_url):
    st = Store.open(db_url)
    yield st
    st.close()


@pytest.fixture
def run_id(store) -> str:
    return store.begin_run(folder="exports/line-3", package_version="0.1.0",
                           meta={"jobs": 2, "scheduler": None})


def key(n: int) -> str:
    return f"{n:064x}"


def migrate(conn, revision: str, *, down: bool = False) -> None:
    """Alembic up (or `down`) to `revision` on `conn`, as Store.open runs it."""
    from alembic import command

    from pipeline.batch.store import _alembic_config

    cfg = _alembic_config()
    cfg.attributes["connection"] = conn
    (command.downgrade if down else command.upgrade)(cfg, revision)


def store_at_0002(url: str, record: dict, *, claim15_met: bool | None = None) -> None:
    """A store at revision 0002 holding `record` as sample S1 (row 1), as a release of
    results schema 1 wrote it."""
    from pipeline.batch.store import normalize_url

    engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            migrate(conn, "0002")
            conn.exec_driver_sql("INSERT INTO runs VALUES ('r1', 'f', '0.1.0', 't', NULL, "
                                 "'completed', '{}')")
            conn.execute(sa.text(
                "INSERT INTO samples (row_id, sample_id, idempotency_key, forced, run_id, "
                "created_utc, package_version, claim15_met, record_json) VALUES (1, 'S1', :k, "
                "false, 'r1', 't', '0.1.0', :m, :j)"),
                {"k": key(1), "m": claim15_met, "j": json.dumps(record)})
    finally:
        engine.dispose()


def raw_rows(url: str, table: str, where: str = "") -> list[tuple]:
    """Rows exactly as stored, read past the store (new engine, plain SQL)."""
    from pipeline.batch.store import normalize_url

    engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table} {where} "
                                                           "ORDER BY 1")]
    finally:
        engine.dispose()


# ---- schema and migrations --------------------------------------------------------------
def test_migrations_create_the_schema_from_empty(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with Store.open(db_url) as st:
        engine = sa.create_engine(make_url(st.url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            assert TABLES <= set(sa.inspect(conn).get_table_names())
            ctx = MigrationContext.configure(conn)
            assert ctx.get_current_heads() == ("0003",)
            # the migrations leave exactly the tables the store's queries describe
            assert compare_metadata(ctx, METADATA) == []
    finally:
        engine.dispose()


def test_the_schema_head_constant_is_the_newest_migration():
    """`Store` skips Alembic when the store is at SCHEMA_HEAD: it must be the newest."""
    from alembic.script import ScriptDirectory

    from pipeline.batch.store import _alembic_config
    from pipeline.batch.store_tables import SCHEMA_HEAD

    assert ScriptDirectory.from_config(_alembic_config()).get_current_head() == SCHEMA_HEAD


def test_opening_twice_keeps_the_data_and_the_schema(db_url):
    with Store.open(db_url) as st:
        rid = st.begin_run(folder="f", package_version="0.1.0", meta={})
        row = st.add_sample(sample_result("S1"), key=key(1), run_id=rid)
    before = raw_rows(db_url, "samples")
    with Store.open(db_url) as st:
        assert st.latest("S1")["row_id"] == row
    with Store.open(db_url) as st:
        assert [r["row_id"] for r in st.samples()] == [row]
    assert raw_rows(db_url, "samples") == before
    assert raw_rows(db_url, "alembic_version") == [("0003",)]


def test_upgrade_from_0001_fills_the_state_of_stored_rows(db_url):
    """A store written at revision 0001 (no state column) is upgraded on open; each row's
    state comes from its own stored record, and nothing else in the row changes."""

    from pipeline.batch.store import normalize_url

    engine = sa.create_engine(normalize_url(db_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            migrate(conn, "0001")
            conn.exec_driver_sql("INSERT INTO runs VALUES ('r1', 'f', '0.1.0', 't', NULL, "
                                 "'completed', '{}')")
            for row, (sid, state) in enumerate((("A", "before"), ("B", "after"), ("C", None),
                                                ("D", "sideways")), start=1):
                rec = json.dumps({**sample_result(sid), "state": state})
                conn.execute(sa.text(
                    "INSERT INTO samples (row_id, sample_id, idempotency_key, forced, run_id, "
                    "created_utc, package_version, record_json) VALUES (:r, :s, :k, false, "
                    "'r1', 't', '0.1.0', :j)"), {"r": row, "s": sid, "k": key(row), "j": rec})
        before = raw_rows(db_url, "samples")
    finally:
        engine.dispose()
    with Store.open(db_url) as st:
        h = st.history()
        assert h["state"].tolist() == ["before", "after", None, None]
        assert st.latest("A")["record"]["sample_id"] == "A"
    after = raw_rows(db_url, "samples")
    assert [r[:-1] for r in after] == before  # the new column is last; the rest unchanged
    assert raw_rows(db_url, "alembic_version") == [("0003",)]


def test_upgrade_to_0003_stores_the_decision_under_spec(db_url):
    """A record stored under results schema 1 (``claim15``; the gate's decision rule under
    ``rule``) is rewritten to schema 2 when the store is opened, its ``claim15_met`` column is
    ``spec_met``, and a downgrade gives back what was stored."""

    v2 = sample_result("S1")
    v1 = {k: v for k, v in v2.items() if k not in ("spec", "gate")}
    v1 = {"sample_id": "S1", "claim15": {
        "outcome": "conforming", "met": v2["spec"]["met"], "rule": "one or more",
        "combine": "any", "decision_rule": "simple", "reasons": [],
        "properties": v2["spec"]["properties"], "spec": v2["spec"]["spec"]},
        "gate": {"outcome": v2["gate"]["outcome"], "rule": "guard_band",
                 "combine": v2["gate"]["combine"], "reasons": v2["gate"]["reasons"],
                 "properties": v2["gate"]["properties"], "spec": v2["gate"]["spec"]},
        **{k: v for k, v in v1.items() if k != "sample_id"}}
    store_at_0002(db_url, v1, claim15_met=True)
    with Store.open(db_url) as st:
        rec = st.latest("S1")["record"]
        assert rec["spec"]["met"] is True and "claim15" not in rec and "rule" not in rec["spec"]
        assert rec["gate"]["decision_rule"] == "guard_band" and "rule" not in rec["gate"]
        assert rec["gate"]["met"] == {"conforming": True}.get(rec["gate"]["outcome"])
        assert st.latest("S1")["spec_met"] is True
        with st._write.begin() as conn:
            migrate(conn, "0002", down=True)
    back = raw_rows(db_url, "samples")[0]
    assert json.loads(next(c for c in back if isinstance(c, str) and c.startswith("{"))) == v1


def test_upgrade_to_0003_completes_the_decisions_of_the_first_releases(db_url, tmp_path):
    """Records of the first releases lack fields schema 2 requires (how the properties
    combine, the outcome, the reasons; a failed task's gate recorded no combine): 0003
    derives what it can, leaves the rest null, and the report of the store is written."""
    from pipeline.batch.persist import report_from_store
    from pipeline.report.tables import results_schema

    early = {"sample_id": "S1", "state": "after",
             "claim15": {"met": None, "rule": "all", "properties": {}},
             "gate": {"outcome": "indeterminate", "rule": "guard_band",
                      "reasons": ["failed input: S1: truncated"]},
             "particle_claims": {"met": None, "claims": []},
             "layer_claims": {"met": None, "claims": []}, "void_reduction_pct": None,
             "metrics": {}, "images": [], "flags": [], "notes": [], "task_failed": True,
             "provenance": {}}
    store_at_0002(db_url, early)
    with Store.open(db_url) as st:
        rec = st.latest("S1")["record"]
    schema = results_schema()
    for name in ("spec", "gate"):
        jsonschema.validate(rec[name], {"$defs": schema["$defs"], "$ref": "#/$defs/decision"})
    assert (rec["spec"]["combine"], rec["spec"]["outcome"]) == ("all", "indeterminate")
    assert rec["gate"]["decision_rule"] == "guard_band" and rec["gate"]["combine"] is None
    res = report_from_store(db_url, tmp_path / "report")
    assert res.samples[0]["spec"]["combine"] == "all"
    assert (tmp_path / "report" / "report.html").is_file()


def test_postgresql_url_goes_through_psycopg(pg_url):
    assert pg_url.startswith("postgresql://")
    with Store.open(pg_url) as st:
        assert st.url.startswith("postgresql+psycopg://")


def test_default_sqlite_is_wal_with_foreign_keys_and_a_busy_timeout(tmp_path):
    out = tmp_path / "new" / "out"
    with Store.open(out=out) as st:
        assert make_url(st.url).database == str(out / "results.db")
        with st._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    assert (out / "results.db").is_file()


# ---- adding and reading ------------------------------------------------------------------
def test_add_find_latest_samples_history(store, run_id):
    r1 = store.add_sample(sample_result("S1", porosity=0.31, sa_um=0.05, sz_um=0.8),
                          key=key(1), run_id=run_id,
                          particles={"path": "tables/particles/S1.parquet", "sha256": SHA,
                                     "rows": 1234})
    r2 = store.add_sample(sample_result("S2", outcome="non-conforming", porosity=0.45),
                          key=key(2), run_id=run_id)
    assert r2 > r1

    hit = store.find_key(key(1))
    assert hit["row_id"] == r1 and hit["sample_id"] == "S1" and hit["run_id"] == run_id
    assert hit["record"] == sample_result("S1", porosity=0.31, sa_um=0.05, sz_um=0.8)
    assert hit["porosity_frac"] == pytest.approx(0.31) and hit["sa_U"] == pytest.approx(0.006)
    assert hit["sz_um"] == pytest.approx(0.8) and hit["porosity_source"] == "gravimetric"
    assert hit["spec_met"] is True and hit["gate_outcome"] == "conforming"
    assert hit["void_reduction_pct"] == pytest.approx(36.2)
    assert hit["package_version"] == "0.1.0" and hit["supersedes"] is None
    assert (hit["particles_path"], hit["particles_sha256"], hit["particles_rows"]) == \
        ("tables/particles/S1.parquet", SHA, 1234)
    assert store.find_key(key(99)) is None

    assert store.latest("S2")["gate_outcome"] == "non-conforming"
    assert store.latest("nope") is None
    assert [(r["sample_id"], r["row_id"]) for r in store.samples()] == [("S1", r1), ("S2", r2)]

    imgs = store.images(r1)
    given = sample_result("S1", porosity=0.31, sa_um=0.05, sz_um=0.8)["images"]  # as given
    assert [(i["path"], i["role"], i["status"], i["reader"]) for i in imgs] == [
        (i["path"], i["role"], i["status"], i["reader"]) for i in given]
    assert imgs[:2] and [(i["path"], i["reader"]) for i in imgs[:2]] == [
        ("S1/psd-01.tif", "fei-tiff"), ("S1/height-01.x3p", "x3p")]
    assert [i["results"] for i in imgs] == [json.loads(json.dumps(i["results"])) for i in given]

    h = store.history()
    assert list(h.columns) == ["row_id", "sample_id", "state", "created_utc", "porosity_frac",
                               "Sa_um", "Sz_um", "void_reduction_pct", "gate_outcome",
                               "superseded"]
    assert h["row_id"].tolist() == [r1, r2] and h["sample_id"].tolist() == ["S1", "S2"]
    np.testing.assert_allclose(h["porosity_frac"], [0.31, 0.45], rtol=1e-12)
    assert h["superseded"].dtype == bool and not h["superseded"].any()


def test_supersede_chain_appends_and_never_updates(db_url, store, run_id):
    rows = [store.add_sample(sample_result("S1", porosity=0.30), key=key(1), run_id=run_id)]
    first_sample = raw_rows(db_url, "samples", f"WHERE row_id = {rows[0]}")
    first_images = raw_rows(db_url, "images", f"WHERE sample_row_id = {rows[0]}")
    rows.append(store.add_sample(sample_result("S1", porosity=0.32), key=key(2), run_id=run_id,
                                 reason="new input files"))
    rows.append(store.add_sample(sample_result("S1", porosity=0.34), key=key(2), run_id=run_id,
                                 reason="re-measured (--force)", force=True))

    latest = store.latest("S1")
    assert latest["row_id"] == rows[2] and latest["porosity_frac"] == pytest.approx(0.34)
    assert latest["supersedes"] == rows[1] and latest["supersede_reason"] == "re-measured (--force)"
    assert latest["superseded_by"] is None and latest["forced"] is True
    everything = store.samples(latest_only=False)
    assert [r["row_id"] for r in everything] == rows[::-1]  # newest first
    assert [r["supersedes"] for r in everything] == [rows[1], rows[0], None]
    assert [r["superseded_by"] for r in everything] == [None, rows[2], rows[1]]
    assert [r["row_id"] for r in store.samples()] == [rows[2]]
    assert store.find_key(key(2))["row_id"] == rows[2]  # the newest row with the key

    h = store.history()
    assert h["row_id"].tolist() == rows and h["superseded"].tolist() == [True, True, False]
    np.testing.assert_allclose(h["porosity_frac"], [0.30, 0.32, 0.34], rtol=1e-12)
    # the first row and its images are exactly as first written
    assert raw_rows(db_url, "samples", f"WHERE row_id = {rows[0]}") == first_sample
    assert raw_rows(db_url, "images", f"WHERE sample_row_id = {rows[0]}") == first_images
    assert len(raw_rows(db_url, "samples")) == 3


def test_superseding_needs_a_reason(db_url, store, run_id):
    store.add_sample(sample_result("S1"), key=key(1), run_id=run_id)
    with pytest.raises(ValueError, match=r"sample 'S1' has a stored row .*needs a reason"):
        store.add_sample(sample_result("S1"), key=key(2), run_id=run_id)
    assert len(raw_rows(db_url, "samples")) == 1


def test_the_constraints_keep_one_chain_per_sample(db_url, store, run_id):
    """Past the store's own checks: a second first row, or a row superseded twice, is refused."""
    r1 = store.add_sample(sample_result("S1"), key=key(1), run_id=run_id)
    store.add_sample(sample_result("S1"), key=key(2), run_id=run_id, reason="new input files")
    base = {"idempotency_key": key(3), "forced": False, "run_id": run_id, "created_utc": "t",
            "package_version": "0.1.0", "record_json": "{}", "sample_id": "S1"}
    from pipeline.batch.store_tables import SAMPLES

    for extra in ({}, {"supersedes": r1, "supersede_reason": "again"},
                  {"supersedes": r1 + 100, "supersede_reason": "no such row"}):
        with store._engine.begin() as conn, pytest.raises(sa.exc.IntegrityError):
            conn.execute(SAMPLES.insert().values(**base, **extra))
    assert len(raw_rows(db_url, "samples")) == 2


def test_duplicate_key_is_refused(db_url, store, run_id):
    r1 = store.add_sample(sample_result("S1"), key=key(7), run_id=run_id)
    for sid in ("S1", "S9"):
        with pytest.raises(DuplicateKey, match=rf"key {key(7)} is stored already \(row {r1}, "
                                               r"sample 'S1'\).*--force") as exc:
            store.add_sample(sample_result(sid), key=key(7), run_id=run_id, reason="again")
        assert isinstance(exc.value, ElectrodeQCError) and exc.value.exit_code == 2
        assert exc.value.row_id == r1
    assert len(raw_rows(db_url, "samples")) == 1 and store.latest("S9") is None


def test_append_chooses_the_reason_in_its_transaction(db_url, store, run_id):
    """A, B, A again, A forced: each new row's reason follows from what is stored."""
    a, b = key(1), key(2)
    first, reason = store.append(sample_result("S1", porosity=0.30), key=a, run_id=run_id)
    assert reason is None and store.latest("S1")["supersedes"] is None
    with pytest.raises(DuplicateKey) as exc:  # the latest row holds this very input
        store.append(sample_result("S1"), key=a, run_id=run_id)
    assert exc.value.row_id == first
    steps = [(b, False, "new input, calibration or software", False),
             (a, False, "input restored to an earlier state", True),
             (a, True, "re-measured (--force)", True)]
    for k, force, want, forced in steps:
        row, reason = store.append(sample_result("S1"), key=k, run_id=run_id, force=force)
        latest = store.latest("S1")
        assert (reason, latest["row_id"], latest["supersede_reason"]) == (want, row, want)
        assert latest["forced"] is forced and latest["idempotency_key"] == k
    with pytest.raises(DuplicateKey):  # another sample id cannot take a stored key
        store.append(sample_result("S9"), key=b, run_id=run_id)
    assert len(raw_rows(db_url, "samples")) == 4 and store.latest("S9") is None


def test_a_failed_restore_is_its_own_error_not_a_duplicate(db_url, store, run_id):
    """A, B, then A again with a bad image row: the constraint failure is raised as it is,
    not mistaken for another writer having stored key A (which sits on a superseded row)."""
    store.append(sample_result("S1"), key=key(1), run_id=run_id)
    store.append(sample_result("S1"), key=key(2), run_id=run_id)
    rec = sample_result("S1")
    rec["images"][0]["path"] = None  # images.path is NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        store.append(rec, key=key(1), run_id=run_id)
    assert len(raw_rows(db_url, "samples")) == 2
    assert store.latest("S1")["idempotency_key"] == key(2)


def test_current_gives_only_keys_that_are_still_latest(store, run_id):
    store.append(sample_result("S1"), key=key(1), run_id=run_id)
    store.append(sample_result("S1"), key=key(2), run_id=run_id)  # supersedes key 1
    store.append(sample_result("S2"), key=key(3), run_id=run_id)
    got = store.current([key(1), key(2), key(3), key(4), key(3)])
    assert sorted(got) == [key(2), key(3)]
    assert got[key(3)]["sample_id"] == "S2" and got[key(3)]["record"]["sample_id"] == "S2"
    assert got[key(2)]["superseded_by"] is None
    assert store.current([]) == {}
    many = [key(100 + i) for i in range(1200)] + [key(3)]  # more keys than one IN (...) holds
    assert list(store.current(many)) == [key(3)]


def test_unknown_run_is_refused(db_url, store):
    with pytest.raises(ValueError, match="no run 'nope'.*begin_run first"):
        store.add_sample(sample_result("S1"), key=key(1), run_id="nope")
    assert raw_rows(db_url, "samples") == []


# ---- atomicity ---------------------------------------------------------------------------
def test_a_bad_image_row_leaves_no_sample_row(db_url, store, run_id):
    rec = sample_result("S1")
    rec["images"][1]["path"] = None  # images.path is NOT NULL
    with pytest.raises(sa.exc.IntegrityError):
        store.add_sample(rec, key=key(1), run_id=run_id)
    assert raw_rows(db_url, "samples") == [] and raw_rows(db_url, "images") == []
    assert store.find_key(key(1)) is None
    # and the key is free for the next attempt
    assert store.add_sample(sample_result("S1"), key=key(1), run_id=run_id) > 0


def test_a_failure_after_the_sample_row_rolls_it_back(db_url, store, run_id):
    """An exception between the sample row and its image rows (a crash mid-transaction)."""
    seen = []

    def fail_on_images(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)
        if statement.startswith("INSERT INTO images"):
            raise RuntimeError("injected crash")

    sa.event.listen(store._engine, "before_cursor_execute", fail_on_images)
    try:
        with pytest.raises(RuntimeError, match="injected crash"):
            store.add_sample(sample_result("S1"), key=key(1), run_id=run_id)
    finally:
        sa.event.remove(store._engine, "before_cursor_execute", fail_on_images)
    # the sample row had been written in the transaction
    assert any(st.startswith("INSERT INTO samples") for st in seen)
    assert raw_rows(db_url, "samples") == [] and raw_rows(db_url, "images") == []
    assert store.latest("S1") is None


def test_concurrent_writers_keep_one_chain(db_url, store, run_id):
    """Two threads re-measuring one sample: every row stored, one linear chain, one latest."""
    errors = []

    def writer(offset: int) -> None:
        try:
            with Store.open(db_url) as st:
                for i in range(8):
                    st.add_sample(sample_result("S1"), key=key(offset + i), run_id=run_id,
                                  reason=f"writer {offset}")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in (100, 200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store.samples(latest_only=False)
    assert len(rows) == 16 and len(store.samples()) == 1
    chain = sorted(r["supersedes"] or 0 for r in rows)
    assert chain == [0] + sorted(r["row_id"] for r in rows)[:-1]


# ---- values ------------------------------------------------------------------------------
def test_missing_values_are_null_never_nan(db_url, store, run_id):
    rec = sample_result("S1")
    rec["spec"]["properties"]["porosity"]["value"] = float("nan")
    rec["spec"]["properties"]["Sa"]["value"] = np.float64(0.07)
    rec["spec"]["properties"]["Sz"]["U"] = np.inf
    rec["spec"]["met"] = None
    rec["void_reduction_pct"] = None
    row = store.add_sample(rec, key=key(1), run_id=run_id)
    hit = store.find_key(key(1))
    assert hit["porosity_frac"] is None and hit["sz_U"] is None
    assert hit["void_reduction_pct"] is None and hit["spec_met"] is None
    assert hit["sa_um"] == pytest.approx(0.07) and type(hit["sa_um"]) is float
    assert hit["record"]["spec"]["properties"]["porosity"]["value"] is None
    (stored,) = raw_rows(db_url, "samples", f"WHERE row_id = {row}")
    text = next(v for v in stored if isinstance(v, str) and v.startswith("{"))
    assert "NaN" not in text and json.loads(text)["void_reduction_pct"] is None
    h = store.history()
    assert math.isnan(h.loc[0, "porosity_frac"]) and h.loc[0, "Sa_um"] == pytest.approx(0.07)


# ---- runs and quarantine -----------------------------------------------------------------
def test_runs_begin_and_finish(store):
    rid = store.begin_run(folder="exports", package_version="0.1.0",
                          meta={"jobs": 4, "recipe": {"id": "default", "sha256": SHA}})
    (run,) = store.runs()
    assert (run["run_id"], run["status"], run["finished_utc"]) == (rid, "running", None)
    proc = run["meta"].pop("process")  # who runs it: tests/store/test_stale_runs.py
    assert proc["pid"] == os.getpid() and proc["host"] == socket.gethostname()
    assert run["meta"] == {"jobs": 4, "recipe": {"id": "default", "sha256": SHA}}
    store.finish_run(rid, "interrupted")
    (run,) = store.runs()
    assert run["status"] == "interrupted" and run["finished_utc"] >= run["started_utc"]
    with pytest.raises(ValueError, match="run status 'done': expected one of completed, "
                                         "failed, interrupted, aborted"):
        store.finish_run(rid, "done")
    with pytest.raises(ValueError, match="no run 'nope'"):
        store.finish_run("nope", "failed")


def test_quarantine(store, run_id):
    a = store.quarantine("exports/bad.tif", "truncated TIFF: strip 3 ends past the file",
                         sha256=SHA, run_id=run_id)
    b = store.quarantine("exports/odd.x3p", "not an X3P file")
    q = store.quarantined()
    assert [e["id"] for e in q] == [a, b]
    assert (q[0]["path"], q[0]["sha256"], q[0]["run_id"]) == ("exports/bad.tif", SHA, run_id)
    assert q[0]["reason"].startswith("truncated TIFF") and q[0]["created_utc"]
    assert (q[1]["sha256"], q[1]["run_id"]) == (None, None)
    with pytest.raises(sa.exc.IntegrityError):  # a run that does not exist
        store.quarantine("x", "y", run_id="nope")


# ---- refusals ----------------------------------------------------------------------------
@pytest.mark.parametrize(("url", "match"), [
    ("not a url", r"^not a url: not a database URL"),
    ("mysql://qc:s3cret@db.example/qc", r"^mysql://qc:\*\*\*@db.example/qc: unsupported database"),
    ("postgresql://qc:s3cret@127.0.0.1:{port}/qc",
     (r"^postgresql\+psycopg://qc:\*\*\*@127.0.0.1:\d+/qc: cannot open the results database: "
      r".*check the URL")),
    ("sqlite:///{tmp}/no/such/folder/results.db", r"cannot open the results database"),
])
def test_bad_url_is_a_config_error_with_the_password_masked(url, match, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=match) as exc:
        Store.open(url.format(port=port, tmp=tmp_path))
    assert "s3cret" not in str(exc.value) and exc.value.exit_code == 2


def test_no_url_and_no_folder_is_a_config_error():
    with pytest.raises(ConfigError, match="no results database: give a database URL"):
        Store.open()


def test_a_newer_database_is_refused(db_url):
    Store.open(db_url).close()
    from pipeline.batch.store import normalize_url

    engine = sa.create_engine(normalize_url(db_url), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0042_future'")
    engine.dispose()
    with pytest.raises(ConfigError, match=r"schema is at revision 0042_future, newer than "
                                          r"electrode-qc .* knows \(newest: 0003\)"):
        Store.open(db_url)
    assert raw_rows(db_url, "alembic_version") == [("0042_future",)]


def test_downgrade_to_0001_and_up_again_keeps_the_rows(db_url):
    """Through the store's own engine (SQLite foreign keys on), with image rows pointing at
    the samples table."""


    with Store.open(db_url) as st:
        rid = st.begin_run(folder="f", package_version="0.1.0", meta={})
        st.append(sample_result("S1"), key=key(1), run_id=rid)
        with st._write.begin() as conn:
            migrate(conn, "0001", down=True)
    assert raw_rows(db_url, "alembic_version") == [("0001",)]
    n_images = len(sample_result("S1")["images"])
    assert len(raw_rows(db_url, "samples")) == 1 and len(raw_rows(db_url, "images")) == n_images
    with Store.open(db_url) as st:
        assert st.history()["state"].tolist() == ["after"]
        assert len(st.images(st.latest("S1")["row_id"])) == n_images


def test_the_migrations_downgrade_to_empty(db_url):

    from pipeline.batch.store import normalize_url

    Store.open(db_url).close()
    engine = sa.create_engine(normalize_url(db_url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            migrate(conn, "base", down=True)
        with engine.connect() as conn:
            assert set(sa.inspect(conn).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    with Store.open(db_url) as st:  # and up again
        assert st.samples() == []
