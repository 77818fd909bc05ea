"""The workers' tuning, checked where it is measured: one compute thread per library, and
image-sized arrays taken from the heap (glibc).

Run by hand: ``python benchmarks/worker_tuning.py``. For a process pool and a local dask
cluster of 2 workers each, it prints the compute thread pools a worker has after a task
loaded SciPy's BLAS and scikit-learn's OpenMP (all must run 1 thread: spare threads spin
and take the other workers' cores), whether the cluster left glibc's adaptive mmap
threshold alone (no MALLOC_TRIM_THRESHOLD_), and the bytes glibc maps afresh for a new
24 MB array (0: it comes from the heap, where freed memory is reused; by default glibc
maps each such array and faults every page in again, ~10 % of a sample's CPU). Exits 1 when
a check fails.
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def thread_pools(_):
    """The compute thread pools of this worker after a task's imports, and its malloc
    setting."""
    import os

    import scipy.linalg  # noqa: F401 - SciPy's own BLAS, loaded lazily by the pipeline
    import sklearn.mixture  # noqa: F401 - scikit-learn's OpenMP, likewise
    from threadpoolctl import threadpool_info

    return ({(i["internal_api"], i["filepath"]): i["num_threads"] for i in threadpool_info()},
            os.environ.get("MALLOC_TRIM_THRESHOLD_"))


def mapped_for_an_array(_):
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


def _both(_):
    """`thread_pools` and `mapped_for_an_array` in one task."""
    return thread_pools(_), mapped_for_an_array(_)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from pipeline.batch.execute import execute, prewarm, prewarm_local_cluster
    from pipeline.batch.task import TASK_IMPORTS

    ok = True
    glibc = platform.libc_ver()[0] == "glibc"
    cases = (("pool", {"jobs": 2}, None), ("dask", {"jobs": 2, "scheduler": "auto"}, None),
             ("pool, warmed as a run warms it", {"jobs": 2}, prewarm),
             ("dask, warmed as a run warms it", {"jobs": 2, "scheduler": "auto"},
              prewarm_local_cluster))
    for name, kw, warm in cases:
        if warm is not None:  # one execute per warm start: the checks share its workers
            warm(2, warm=TASK_IMPORTS)
            both = list(execute(_both, [0, 1], **kw))
            for i, ((pools, trim), mapped) in both:
                good = set(pools.values()) == {1} and trim is None and (mapped == 0 or not glibc)
                ok &= good
                print(f"{name} worker {i}: threads {sorted(set(pools.values()))}, "
                      f"{mapped} bytes mapped: {'ok' if good else 'FAIL'}")
            continue
        for i, (pools, trim) in execute(thread_pools, [0, 1], **kw):
            good = bool(pools) and set(pools.values()) == {1} and \
                any(api == "openmp" for api, _ in pools) and trim is None
            ok &= good
            print(f"{name} worker {i}: threads {sorted(set(pools.values()))} over "
                  f"{len(pools)} pools, MALLOC_TRIM_THRESHOLD_ {trim}: "
                  f"{'ok' if good else 'FAIL'}")
        if glibc:
            for i, mapped in execute(mapped_for_an_array, [0, 1], **kw):
                ok &= mapped == 0
                print(f"{name} worker {i}: {mapped} bytes mapped for a 24 MB array: "
                      f"{'ok' if mapped == 0 else 'FAIL'}")
    print("worker tuning:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
