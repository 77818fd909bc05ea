"""Executors: in-process, process pool and dask give the same results; a failing task fails
alone; results stream in as tasks complete."""

from __future__ import annotations

import math
import platform
import time

import pytest

from pipeline.errors import ConfigError
from pipeline.execute import available_cpus, execute, worker_info
from pipeline.runner import run
from tests.test_runner import electrode


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
        out.append((s["sample_id"], s["gate"]["outcome"], s["claim15"]["met"],
                    s["claim15"]["properties"]["Sa"]["value"],
                    s["claim15"]["properties"]["porosity"]["value"],
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
    from pipeline import execute as ex

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

    from pipeline.errors import (
        ConfigError,
        ElectrodeQCError,
        MeasurementError,
        MissingCalibration,
        UnreadableInput,
    )
    from pipeline.store import DuplicateKey

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

    with caplog.at_level(logging.WARNING, logger="pipeline.execute"):
        got = dict(execute(_die_on_one, list(range(12)), jobs=2))
    from concurrent.futures.process import BrokenProcessPool

    assert isinstance(got[1], BrokenProcessPool)
    assert [got[i] for i in range(12) if i != 1] == [100 + i for i in range(12) if i != 1]
    (msg,) = [r.getMessage() for r in caplog.records if "worker process died" in r.getMessage()]
    assert int(msg.split("; ")[1].split()[0]) <= 3


def _thread_pools(_):
    """The compute thread pools of this worker after a task's imports, and its malloc
    setting."""
    import os

    import scipy.linalg  # noqa: F401 - SciPy's own BLAS, loaded lazily by the pipeline
    import sklearn.mixture  # noqa: F401 - scikit-learn's OpenMP, likewise
    from threadpoolctl import threadpool_info

    return ({(i["internal_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()},
            os.environ.get("MALLOC_TRIM_THRESHOLD_"))


@pytest.mark.parametrize("kw", [{"jobs": 2}, {"jobs": 2, "scheduler": "auto"}],
                         ids=["pool", "dask"])
def test_workers_run_one_compute_thread_per_library(kw):
    """Libraries a task loads after the worker started (SciPy's BLAS, scikit-learn's
    OpenMP) get one thread too: spare threads spin and take the other workers' cores. The
    local dask cluster leaves glibc's adaptive mmap threshold alone (a fixed trim threshold
    makes every image-sized array a fresh mapping)."""
    for _, (pools, trim) in execute(_thread_pools, [0, 1], **kw):
        assert pools and set(pools.values()) == {1}, pools
        assert any(api == "openmp" for api, _ in pools), pools
        assert trim is None


def test_dask_logs_follow_ours():
    """dask sets its loggers to INFO as it is imported: without -v they stay quiet."""
    import logging

    from pipeline.execute import _import_distributed

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


def _mapped_for_an_array(_):
    """Bytes glibc maps afresh (outside its heap) for a new 24 MB array in this worker."""
    import ctypes

    import numpy as np

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    before = mallinfo2().hblkhd
    a = np.empty(3 * 2**20)
    mapped = mallinfo2().hblkhd - before
    del a
    return mapped


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
@pytest.mark.parametrize("kw", [{"jobs": 2}, {"jobs": 2, "scheduler": "auto"}],
                         ids=["pool", "dask"])
def test_workers_keep_image_arrays_on_the_heap(kw):
    """Workers take image-sized arrays from the heap, where freed memory is reused. By
    default glibc maps each such array afresh and unmaps it when freed, and the next
    sample faults every page in again, zeroed (~10 % of a sample's CPU)."""
    for _, mapped in execute(_mapped_for_an_array, [0, 1], **kw):
        assert mapped == 0, mapped


def test_dask_runs_many_samples_in_chunks_that_fail_sample_by_sample():
    """With many samples each dask task runs a few (`chunk_size`); results still come back
    per sample, a failing sample fails alone, and a chunk whose worker dies is run again
    sample by sample, so only the sample that kills its worker fails."""
    import dask
    import distributed  # noqa: F401 - dask's config for it, before it is set

    from pipeline.execute import MAX_CHUNK, chunk_size

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
