"""A run whose process died without recording its end is marked "aborted" by the next run on
the same host; runs of other hosts, of live processes and of unknown processes stay as
they are (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from pipeline.batch.store import RUN_STATUSES, Store, process_gone, process_started, this_process


def _set_process(url: str, run_id: str, proc: dict | None) -> None:
    """Rewrite the "process" a run's meta names, past the store (as another host or an
    earlier version of the package would have stored it)."""
    from pipeline.batch.store import normalize_url

    engine = sa.create_engine(normalize_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            meta = json.loads(conn.execute(sa.text("SELECT meta_json FROM runs WHERE run_id = :r"),
                                           {"r": run_id}).scalar())
            if proc is None:
                meta.pop("process")
            else:
                meta["process"] = proc
            conn.execute(sa.text("UPDATE runs SET meta_json = :m WHERE run_id = :r"),
                         {"m": json.dumps(meta), "r": run_id})
    finally:
        engine.dispose()


def _begin_in_child(url: str) -> str:
    """begin_run in a process that exits without finishing the run (as a killed one does)."""
    code = ("import sys; from pipeline.batch.store import Store; st = Store.open(sys.argv[1]); "
            "print(st.begin_run(folder='killed', package_version='0.1.0', meta={'jobs': 2}))")
    res = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                         timeout=120, check=True)
    return res.stdout.strip()


def _status(st: Store) -> dict[str, str]:
    return {r["run_id"]: r["status"] for r in st.runs()}


def test_a_dead_process_s_run_is_aborted_by_the_next_run(db_url, caplog):
    dead = _begin_in_child(db_url)
    with Store.open(db_url) as st:
        (run,) = st.runs()
        proc = run["meta"]["process"]
        assert run["status"] == "running" and proc["pid"] != os.getpid()
        assert proc["host"] == this_process()["host"]
        with caplog.at_level("WARNING", logger="pipeline.batch.store"):
            new = st.begin_run(folder="next", package_version="0.1.0", meta={})
        assert _status(st) == {dead: "aborted", new: "running"}
        assert next(r for r in st.runs() if r["run_id"] == dead)["finished_utc"] is None
        assert any(dead in r.getMessage() and "marked aborted" in r.getMessage()
                   for r in caplog.records)
        # the live run of this very process is left alone, again and again
        assert st.abort_stale_runs() == []
        st.begin_run(folder="third", package_version="0.1.0", meta={})
        assert _status(st)[new] == "running"


def test_other_hosts_unknown_processes_and_live_ones_are_left_alone(db_url):
    with Store.open(db_url) as st:
        me = this_process()
        runs = {name: st.begin_run(folder=name, package_version="0.1.0", meta={})
                for name in ("other-host", "other-container", "legacy", "reused-pid",
                             "finished", "parent")}
        st.finish_run(runs["finished"], "completed")
    _set_process(db_url, runs["other-host"], dict(me, host="qc-line-7", pid=2**22 + 5))
    _set_process(db_url, runs["other-container"],
                 dict(me, pid_namespace="pid:[1]", pid=2**22 + 5))
    _set_process(db_url, runs["legacy"], None)  # stored before runs named their process
    # a pid now held by another process than the run's (reused): the run's process is gone
    _set_process(db_url, runs["reused-pid"], dict(me, started="another-boot:12345"))
    _set_process(db_url, runs["parent"], dict(me, pid=os.getppid(),
                                             started=process_started(os.getppid())))
    with Store.open(db_url) as st:
        aborted = st.abort_stale_runs()
        assert aborted == ([runs["reused-pid"]] if me["started"] is not None else [])
        got = _status(st)
    assert got[runs["other-host"]] == got[runs["other-container"]] == "running"
    assert got[runs["legacy"]] == got[runs["parent"]] == "running"
    assert got[runs["finished"]] == "completed"


def test_aborted_is_a_run_status():
    assert "aborted" in RUN_STATUSES


def test_process_gone():
    me = this_process()
    assert not process_gone(me)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_gone(dict(me, pid=child.pid, started=None))
    assert not process_gone(dict(me, pid=None)) and not process_gone({})


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="process start times: Linux")
def test_a_reused_pid_is_told_apart_by_its_start_time():
    me = this_process()
    assert me["started"] == process_started(os.getpid()) and ":" in me["started"]
    assert process_gone(dict(me, started=me["started"] + "0"))
