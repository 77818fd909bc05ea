"""Executors: in-process, process pool and dask give the same results; a failing task fails
alone; results stream in as tasks complete."""

from __future__ import annotations

import math
import platform
import time

import pytest

from pipeline.batch.execute import available_cpus, execute, worker_info
from pipeline.batch.runner import run
from pipeline.errors import ConfigError
from tests.factories import electrode


def _square_or_fail(x):
    if x == 3:
        raise ValueError("three is bad")
    return x * x


@pytest.mark.parametrize("jobs", [1, 2])
def test_one_task_fails_alone(jobs):
    got = dict(execute(_square_or_fail, list(range(6)), jobs=jobs))
    assert sorted(got) == list(range(6))
    assert isinstance(got[3], ValueError) and "three is bad" in str(got[3])
    assert [got[i] for i in (0, 1, 2, 4, 5)] == [0, 1, 4, 16, 25]


def test_jobs_validated_and_default():
    with pytest.raises(ConfigError, match="--jobs must be >= 1"):
        execute(_square_or_fail, [1], jobs=0)
    assert available_cpus() >= 1
    info = worker_info()
    assert info["electrode_qc"] and info["packages"]["numpy"]


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    for i in range(3):
        electrode(root / f"e{i}", seed=20 + i, surface=False,
                  sa=(0.05 + 0.01 * i, 0.052 + 0.01 * i))
    (root / "e3").mkdir()
    (root / "e3" / "psd-01.tif").write_bytes(b"II*\x00broken")
    return root


def _summary(res):
    out = []
    for s in res.samples:
        psd = s["metrics"]["psd"] or {}
        out.append((s["sample_id"], s["gate"]["outcome"], s["spec"]["met"],
                    s["spec"]["properties"]["Sa"]["value"],
                    s["spec"]["properties"]["porosity"]["value"],
                    psd.get("x50_nm"), tuple(m["mean_nm"] for m in psd.get("modes", [])),
                    tuple(im["status"] for im in s["images"])))
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for u, v in zip(x, y):
            if isinstance(u, float) and isinstance(v, float):
                assert math.isclose(u, v, rel_tol=1e-12), (x, y)
            else:
                assert u == v, (x, y)


def test_pool_and_dask_match_in_process(export, tmp_path):
    one = run(export, tmp_path / "o1", jobs=1, report=False, store=False)
    pool = run(export, tmp_path / "o2", jobs=2, report=False, store=False)
    dask = run(export, tmp_path / "o3", jobs=2, scheduler="auto", report=False, store=False)
    assert one.exit_code == pool.exit_code == dask.exit_code == 4  # e3 is unreadable
    _same(_summary(one), _summary(pool))
    _same(_summary(pool), _summary(dask))
    workers = {s["provenance"]["worker"]["pid"] for s in dask.samples
               if "worker" in s["provenance"]}
    assert workers and all(s["provenance"]["worker"]["electrode_qc"] for s in dask.samples
                           if "worker" in s["provenance"])


def _die_on_one(x):
    if x == 1:
        import os

        os._exit(3)  # the worker process dies, as on an out-of-memory kill
    return x + 100


def test_a_dying_worker_fails_only_its_own_task():
    got = dict(execute(_die_on_one, list(range(6)), jobs=2))
    assert sorted(got) == list(range(6))
    from concurrent.futures.process import BrokenProcessPool

    assert isinstance(got[1], BrokenProcessPool)
    assert [got[i] for i in (0, 2, 3, 4, 5)] == [100, 102, 103, 104, 105]


def test_a_prewarmed_local_cluster_is_used_once_or_closed():
    """`prewarm_local_cluster` starts a cluster in the background: the next dask execute
    takes it (and closes it when done); one that is never taken is closed by discard_warm."""
    from pipeline.batch import execute as ex

    ex.prewarm_local_cluster(1)
    warm = ex._WARM[("dask", 1)]
    got = dict(execute(_square_or_fail, [0, 1, 2], jobs=1, scheduler="auto"))
    assert got == {0: 0, 1: 1, 2: 4} and ("dask", 1) not in ex._WARM
    _closes_soon(*warm.result(timeout=60))

    ex.prewarm_local_cluster(1)
    unused = ex._WARM[("dask", 1)]
    ex.discard_warm()
    assert ex._WARM == {}
    _closes_soon(*unused.result(timeout=60))


def _closes_soon(cluster, client) -> None:
    """The cluster and its client are closed (in the background) within 30 s."""
    deadline = time.monotonic() + 30
    while cluster.status.name != "closed" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.status == "closed" and cluster.status.name == "closed"


class _Odd(Exception):
    """An exception that pickles but cannot be unpickled (its __init__ wants two arguments)."""

    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


def _raise_kinds(x):
    from pipeline.errors import MissingCalibration, UnreadableInput

    if x == 0:
        raise UnreadableInput("/data/e0/psd-01.tif", "bad magic")
    if x == 1:
        raise MissingCalibration("/data/e1/psd-01.tif", "no pixel size")
    if x == 2:
        raise _Odd("left", "right")
    return x


def test_errors_survive_the_trip_back_from_a_worker():
    """Typed errors keep their type, message and exit code across processes; an exception
    that cannot be unpickled comes back as a RuntimeError naming it, and nothing else fails."""
    import pickle

    from pipeline.batch.store import DuplicateKey
    from pipeline.errors import (
        ConfigError,
        ElectrodeQCError,
        MeasurementError,
        MissingCalibration,
        UnreadableInput,
    )

    for err in (ElectrodeQCError("f.tif", "x"), UnreadableInput("f.tif", "bad magic"),
                MissingCalibration(None, "no scale"), ConfigError("r.toml", "bad key"),
                MeasurementError("f.x3p", "all invalid"), DuplicateKey("ab" * 32, 7, "S1")):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert back.exit_code == err.exit_code and back.path == err.path
    for kw in ({"jobs": 1}, {"jobs": 2}, {"jobs": 2, "scheduler": "auto"}):
        got = dict(execute(_raise_kinds, list(range(5)), **kw))
        assert type(got[0]) is UnreadableInput and got[0].exit_code == 4, kw
        assert str(got[0]) == "/data/e0/psd-01.tif: bad magic"
        assert type(got[1]) is MissingCalibration and got[1].exit_code == 3
        # as it is where it unpickles (in process; dask's tblib pickles any exception),
        # else a RuntimeError that names it
        assert type(got[2]) is _Odd or "_Odd: left and right" in str(got[2])
        assert "left and right" in str(got[2])
        assert (got[3], got[4]) == (3, 4)


def test_a_dying_worker_costs_only_the_tasks_in_flight(caplog):
    """Tasks not yet started when a worker dies go on in a fresh pool; only the ones in
    flight (at most jobs + 1) are run again alone."""
    import logging

    with caplog.at_level(logging.WARNING, logger="pipeline.batch.execute"):
        got = dict(execute(_die_on_one, list(range(12)), jobs=2))
    from concurrent.futures.process import BrokenProcessPool

    assert isinstance(got[1], BrokenProcessPool)
    assert [got[i] for i in range(12) if i != 1] == [100 + i for i in range(12) if i != 1]
    (msg,) = [r.getMessage() for r in caplog.records if "worker process died" in r.getMessage()]
    assert int(msg.split("; ")[1].split()[0]) <= 3


def test_dask_logs_follow_ours():
    """dask sets its loggers to INFO as it is imported: without -v they stay quiet."""
    import logging

    from pipeline.batch.execute import _import_distributed

    root = logging.getLogger()
    before = root.level, logging.getLogger("distributed").level
    try:
        root.setLevel(logging.WARNING)
        logging.getLogger("distributed").setLevel(logging.INFO)
        _import_distributed()
        assert not logging.getLogger("distributed.scheduler").isEnabledFor(logging.INFO)
        root.setLevel(logging.INFO)
        logging.getLogger("distributed").setLevel(logging.NOTSET)
        _import_distributed()
        assert logging.getLogger("distributed.scheduler").isEnabledFor(logging.INFO)
    finally:
        root.setLevel(before[0])
        logging.getLogger("distributed").setLevel(before[1])


def test_dask_runs_many_samples_in_chunks_that_fail_sample_by_sample():
    """With many samples each dask task runs a few (`chunk_size`); results still come back
    per sample, a failing sample fails alone, and a chunk whose worker dies is run again
    sample by sample, so only the sample that kills its worker fails."""
    import dask
    import distributed  # noqa: F401 - dask's config for it, before it is set

    from pipeline.batch.execute import MAX_CHUNK, chunk_size

    assert chunk_size(200, 2) == MAX_CHUNK and chunk_size(16, 2) == 1
    assert chunk_size(24, 1) == 3 and chunk_size(1, 4) == 1
    got = dict(execute(_square_or_fail, list(range(40)), jobs=1, scheduler="auto"))
    assert sorted(got) == list(range(40))
    assert isinstance(got[3], ValueError)
    assert all(got[i] == i * i for i in range(40) if i != 3)

    # a task fails the first time its worker dies under it; one task at a time per worker,
    # so that no other task is on the worker when it dies
    with dask.config.set({"distributed.scheduler.allowed-failures": 0,
                          "distributed.scheduler.worker-saturation": 1.0}):
        got = dict(execute(_die_on_one, list(range(24)), jobs=1, scheduler="auto"))
    assert sorted(got) == list(range(24))
    assert isinstance(got[1], Exception)  # dask's KilledWorker
    assert all(got[i] == 100 + i for i in range(24) if i != 1)


# ---- a remote scheduler: unreachable, TLS ------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_a_config_error_of_one_line():
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as exc:
        dict(execute(_square_or_fail, [0, 1], scheduler=address))
    assert time.monotonic() - t0 < 15  # a guard against hanging, not a benchmark
    msg = str(exc.value)
    assert msg.startswith(f"cannot reach the dask scheduler at {address}: ")
    # the last attempt was refused, or (on a loaded machine) itself timed out
    assert "Connection refused" in msg or "no answer (tried for" in msg, msg
    assert "\n" not in msg and "<" not in msg
    assert exc.value.exit_code == 2


def test_the_cause_of_a_time_out_is_the_last_attempt_s_failure():
    from pipeline.batch.execute import SCHEDULER_TIMEOUT_S, _why

    def timed_out(cause: Exception) -> OSError:
        exc = OSError(f"Timed out trying to connect to tcp://10.0.0.9:8786 after "
                      f"{SCHEDULER_TIMEOUT_S} s")
        exc.__cause__ = cause
        return exc

    refused = ConnectionError("in <distributed.comm.tcp.TCPConnector object at 0x7f>: "
                              "ConnectionRefusedError: [Errno 111] Connection refused")
    assert _why(timed_out(refused)) == (f"ConnectionRefusedError: [Errno 111] Connection "
                                        f"refused (tried for {SCHEDULER_TIMEOUT_S} s)")
    assert _why(timed_out(TimeoutError())) == f"no answer (tried for {SCHEDULER_TIMEOUT_S} s)"
    assert _why(ValueError("unknown address scheme 'htp'")) == "unknown address scheme 'htp'"


@pytest.mark.parametrize(("scheduler", "security", "match"), [
    ("auto", {"require_encryption": True}, "applies to a remote scheduler"),
    (None, {"require_encryption": True}, "applies to a remote scheduler"),
    ("tls://127.0.0.1:1", {"tls_ca_fle": "ca.pem"},
     r"dask security: Unknown parameters: \['tls_ca_fle'\]; expected tls_ca_file"),
    ("tls://127.0.0.1:1", {"tls_ca_file": "/no/such/ca.pem"},
     r"^/no/such/ca.pem: dask security tls_ca_file: no such file"),
    ("tls://127.0.0.1:1", "ca.pem", "expected a distributed.security.Security or a mapping"),
])
def test_bad_dask_security_is_a_config_error(scheduler, security, match):
    with pytest.raises(ConfigError, match=match):
        execute(_square_or_fail, [0, 1], jobs=2, scheduler=scheduler, security=security)


def test_a_tls_scheduler_needs_certificates():
    with pytest.raises(ConfigError, match=r"the dask scheduler at tls://127.0.0.1:1 speaks "
                                          r"TLS: give its certificates"):
        dict(execute(_square_or_fail, [0], scheduler="tls://127.0.0.1:1"))


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A CA and a certificate it signed (for scheduler, worker and client alike)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make test certificates")
    d = tmp_path_factory.mktemp("tls")

    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
        "ca.pem", "-days", "2", "-subj", "/CN=electrode-qc test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
        "-subj", "/CN=127.0.0.1")
    ssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "node.pem", "-days", "2")
    return {"tls_ca_file": str(d / "ca.pem"), "tls_client_cert": str(d / "node.pem"),
            "tls_client_key": str(d / "node.key"), "require_encryption": True}


def test_tasks_run_on_a_tls_scheduler_with_the_given_certificates(certificates):
    """A mapping of Security's arguments, or a Security, reaches the client; without them
    (or over tcp://) the TLS scheduler is not reached, and that is a ConfigError."""
    import distributed
    from distributed.security import Security

    node = {"tls_ca_file": certificates["tls_ca_file"],
            **{f"tls_{who}_{part}": certificates[f"tls_client_{part}"]
               for who in ("scheduler", "worker", "client") for part in ("cert", "key")}}
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", protocol="tls://",
                                  dashboard_address=None,
                                  security=Security(**node, require_encryption=True)) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tls://")
        got = dict(execute(_square_or_fail, [0, 1, 2, 3], scheduler=address,
                           security=certificates))
        assert got[2] == 4 and isinstance(got[3], ValueError)
        got = dict(execute(_square_or_fail, [5], scheduler=address,
                           security=Security(**certificates)))
        assert got == {0: 25}
        with pytest.raises(ConfigError, match=f"cannot reach the dask scheduler at "
                                              f"{address.replace('tls', 'tcp')}: "):
            dict(execute(_square_or_fail, [0], scheduler=address.replace("tls", "tcp")))


# ---- no orphans ------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """True while process `pid` runs (a zombie, dead but not yet reaped, does not)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:  # no /proc: signal 0 is all there is
        return True


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    import os

    return os.getpid()


def test_a_pool_started_from_a_thread_outlives_the_thread():
    """The parent-death signal follows the thread that started a worker: a pool that a
    short-lived thread starts relies on the watch thread, so the workers live on when the
    thread ends (and run their tasks)."""
    import threading

    from pipeline.batch import execute as ex

    def start() -> None:  # the pool, and both its workers ready (their watches set)
        ex.prewarm(2)
        ready: set[int] = set()
        while len(ready) < 2:
            ready.update(f.result() for f in [ex._WARM[2].submit(_pid_after, 0.2)
                                              for _ in range(2)])

    t = threading.Thread(target=start)
    t.start()
    t.join()
    try:
        pids = [p.pid for p in ex._WARM[2]._processes.values()]
        assert len(pids) == 2
        time.sleep(1.0)  # a parent-death signal would have come by now
        assert all(_alive(pid) for pid in pids)
        got = dict(execute(_square_or_fail, list(range(6)), jobs=2))
        assert got[5] == 25 and isinstance(got[3], ValueError)
    finally:
        ex.discard_warm()


_ORPHAN = """
import os, sys, time
from pipeline.batch.execute import exit_with_parent
exit_with_parent(int(sys.argv[1]), parent_death_signal=sys.argv[2] == "1")
print(os.getpid(), flush=True)
time.sleep(60)
"""

_MIDDLE = """
import subprocess, sys, os, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]],
                         stdout=subprocess.PIPE, text=True)
print(child.stdout.readline().strip(), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("signal_on_death", ["1", "0"], ids=["pdeathsig", "watch-thread"])
def test_a_worker_exits_when_its_parent_is_killed(signal_on_death):
    """Each of the two watches alone: the parent-death signal (Linux), and the thread that
    watches os.getppid() (everywhere)."""
    import os
    import signal
    import subprocess
    import sys

    if signal_on_death == "1" and platform.system() != "Linux":
        pytest.skip("the parent-death signal is Linux's")
    middle = subprocess.Popen([sys.executable, "-c", _MIDDLE, _ORPHAN, signal_on_death],
                              stdout=subprocess.PIPE, text=True)
    worker = int(middle.stdout.readline())
    middle.stdout.close()
    try:
        assert _alive(worker)
        os.kill(middle.pid, signal.SIGKILL)
        middle.wait(timeout=30)
        deadline = time.monotonic() + 10
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(worker)
    finally:
        if _alive(worker):
            os.kill(worker, signal.SIGKILL)
