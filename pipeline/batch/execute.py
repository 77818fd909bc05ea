"""Run per-sample tasks in-process, in a process pool (``--jobs N``) or on dask.distributed
(``--scheduler ADDRESS`` or ``auto`` for a local cluster on loopback).

Every executor yields ``(index, result)`` pairs as tasks complete (results stream in), and
a task that raises yields ``(index, exception)``: one bad sample fails alone. Tasks are plain
module-level functions with picklable arguments; they return small records and write their
particle tables themselves. `worker_info` tells which package versions a worker ran.

Worker processes run `worker_setup` first: one thread per compute library, and freed image
memory kept for the next sample. On dask, many samples run a few per task (`chunk_size`).

No orphans: a pool worker exits when the process that started it dies, even by SIGKILL or
the out-of-memory killer (`exit_with_parent`: the parent-death signal on Linux, and a
thread that watches the parent process everywhere). The workers of the local dask cluster
do the same by dask's own means.

Dask and trust: dask pickles tasks and results, so a scheduler and its workers run code in
this process and this process runs code on them. A ``tcp://`` scheduler is neither
encrypted nor authenticated: use it on one machine or a network you trust. Across
machines use ``tls://`` with certificates, passed as ``execute(..., security=...)``: a
`distributed.security.Security`, or a mapping of its keyword arguments, for example::

    execute(fn, args, scheduler="tls://qc-sched.example:8786",
            security={"tls_ca_file": "ca.pem", "tls_client_cert": "client.pem",
                      "tls_client_key": "client.key", "require_encryption": True})

A scheduler that cannot be reached within `SCHEDULER_TIMEOUT_S` is a `ConfigError`.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pipeline
from pipeline.errors import ConfigError

__all__ = ["available_cpus", "discard_warm", "execute", "exit_with_parent",
           "keep_freed_memory", "prewarm", "prewarm_local_cluster", "single_threaded",
           "worker_info", "worker_setup"]

log = logging.getLogger(__name__)


def available_cpus() -> int:
    """CPUs this process may run on (affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def worker_info() -> dict[str, Any]:
    """Host, process and the versions of the packages that shape a result (a fresh copy;
    read once per process: reading package metadata takes milliseconds)."""
    info = _worker_info()
    return dict(info, pid=os.getpid(), packages=dict(info["packages"]))


@functools.cache
def _worker_info() -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    vers = {}
    for name in ("numpy", "scipy", "scikit-image", "opencv-python-headless", "scikit-learn",
                 "tifffile", "pandas"):
        try:
            vers[name] = version(name)
        except PackageNotFoundError:
            vers[name] = None
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "python": platform.python_version(), "electrode_qc": pipeline.__version__,
            "packages": vers}


# read by OpenMP, OpenBLAS, MKL, Accelerate and numexpr when their library is loaded
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def single_threaded() -> None:
    """Limit this worker process's compute libraries to one thread (OpenCV, BLAS, OpenMP).

    Run in every worker when samples run in parallel: N processes x M library threads on
    N cores only trade places on the CPU, and idle BLAS and OpenMP threads spin, taking
    cycles from the other workers. A thread pool can be limited only once its library is
    loaded, and the pipeline loads SciPy's BLAS and scikit-learn's OpenMP lazily, after
    this runs: so the environment variables those libraries read when they load are set
    too. For worker processes only: the variables pass on to any process started after.
    A single in-process job keeps the libraries' own threading.
    """
    for name in THREAD_ENV:
        os.environ[name] = "1"
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # pragma: no cover - OpenCV is a core dependency
        pass
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - comes with scikit-learn
        pass


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # arrays below this come from the heap and are reused
TRIM_THRESHOLD = 256 * 2**20  # free memory at the heap's top kept for the next sample


@functools.cache
def keep_freed_memory() -> bool:
    """Let this process reuse the memory of freed image-sized arrays (glibc only; True if
    applied).

    By default glibc maps arrays above an adaptive threshold afresh and hands back what
    is freed, so every new array of the next sample faults its pages in again, zeroed:
    ~4 000 page faults and ~10 % of a sample's CPU here, more in a thread other than the
    main one (dask runs tasks in one). With these settings arrays up to 32 MB come from
    the heap, and up to 256 MB of free heap is kept. Set once per process, in workers
    and in the command-line process; a process that only imports the package is left
    as it is.
    """
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    except (OSError, AttributeError):  # pragma: no cover - no mallopt in this C library
        return False


def worker_setup() -> None:
    """What every worker process runs first: one compute thread per library, and freed
    memory kept for the next sample."""
    single_threaded()
    keep_freed_memory()


PARENT_POLL_S = 1.0  # how often a worker looks whether its parent process is still there
_PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h)
_ORPHAN_EXIT = 1  # the exit status of a worker whose parent died (nobody reads it)


def exit_with_parent(parent_pid: int, *, parent_death_signal: bool = True) -> None:
    """Make this worker process exit when its parent process `parent_pid` dies, however it
    dies (SIGKILL and the out-of-memory killer included): a worker left behind holds its
    memory and CPU and runs on to no one.

    Two watches. On Linux, with `parent_death_signal`, the kernel sends SIGKILL to this
    process when its parent dies (``prctl(PR_SET_PDEATHSIG)``): at once, even while a task
    holds the GIL in a C library. That signal follows the parent *thread* that started this
    process, so the parent asks for it only when its main thread started the worker (the
    main thread lives as long as the process). Everywhere, a daemon thread compares
    ``os.getppid()`` with `parent_pid` every `PARENT_POLL_S` and ends the process with
    ``os._exit`` when it changed (an orphan is adopted by another process).
    """
    if parent_death_signal and platform.system() == "Linux":
        import ctypes
        import signal

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
        except (OSError, AttributeError):  # pragma: no cover - a C library without prctl
            log.debug("no prctl in this C library", exc_info=True)
    if os.getppid() != parent_pid:  # the parent died before the watches were set
        os._exit(_ORPHAN_EXIT)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="electrode-qc-parent-watch").start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL_S)
    log.debug("parent process %d is gone: exiting", parent_pid)
    os._exit(_ORPHAN_EXIT)


def _pool_initargs() -> tuple[int, bool]:
    """What a pool's workers need to watch this process: its pid, and whether this thread
    (which starts the workers: ProcessPoolExecutor spawns them in the thread that submits)
    is the main thread, the one whose death the parent-death signal follows."""
    return os.getpid(), threading.current_thread() is threading.main_thread()


def _pool_worker(parent_pid: int, main_thread: bool) -> None:
    """Pool initializer: `exit_with_parent`, then `worker_setup`."""
    exit_with_parent(parent_pid, parent_death_signal=main_thread)
    worker_setup()


_THREAD = threading.local()


def _safe_single(fn: Callable, arg: Any) -> Any:
    """`_safe` after `worker_setup`. Dask runs tasks on a worker thread of its own, and
    OpenMP's thread count is per calling thread: set it there, once per thread."""
    if not getattr(_THREAD, "single", False):
        worker_setup()
        _THREAD.single = True
    return _safe(fn, arg)


def _safe(fn: Callable, arg: Any) -> Any:
    try:
        return fn(arg)
    except Exception as exc:  # returned, not raised: one task's failure stays its own
        log.debug("task failed", exc_info=True)
        return _portable(exc)


def _portable(exc: Exception) -> Exception:
    """`exc`, or a RuntimeError with its type and message if it would not survive the trip
    to the parent process (an exception whose __init__ takes other arguments than its
    message cannot be unpickled there, and that breaks the whole pool)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return RuntimeError(f"{type(exc).__qualname__}: {exc}")
    return exc


def _in_process(fn, args) -> Iterator[tuple[int, Any]]:
    for i, a in enumerate(args):
        yield i, _safe(fn, a)


_WARM: dict[Any, Any] = {}  # jobs -> pool; ("dask", jobs) -> Future of a cluster


def _warm_worker(parent_pid: int, main_thread: bool, warm: tuple[str, ...]) -> None:
    """Initializer of a pre-started pool: `_pool_worker`, then the modules in `warm` (what
    the caller's task will import) imported up front."""
    import importlib

    _pool_worker(parent_pid, main_thread)
    for name in warm:
        importlib.import_module(name)
    single_threaded()  # and the libraries those imports loaded, whatever their environment


def dask_setup(worker) -> None:
    """Preload hook of the local cluster's workers (``preload=[..., "pipeline.batch.execute"]``,
    after the modules the caller's task imports): one thread per library, freed memory kept."""
    worker_setup()


def _noop() -> None:
    return None


def prewarm(jobs: int, *, warm: Sequence[str] = ()) -> None:
    """Start a pool of `jobs` workers now, importing the modules `warm` (what the task will
    need), for the next `execute` with the same `jobs` to use (a worker takes ~2 s to import
    the pipeline)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    discard_warm()
    ex = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"),
                             initializer=_warm_worker,
                             initargs=(*_pool_initargs(), tuple(warm)))
    for _ in range(jobs):  # each submit starts a worker, in this thread
        ex.submit(_noop)
    _WARM[jobs] = ex


def prewarm_local_cluster(jobs: int, *, warm: Sequence[str] = ()) -> None:
    """Start the local dask cluster of `jobs` workers in a background thread, its workers
    importing the modules `warm` (what the task will need), for the next ``execute(..., scheduler="auto")`` with the
    same `jobs` to use: the cluster's start-up (~2 s) overlaps this process's discovery,
    hashing and store look-ups."""
    from concurrent.futures import Future

    discard_warm()
    fut: Future = Future()

    def start() -> None:
        try:
            cluster, client = _local_cluster(jobs, warm)
        except BaseException as exc:  # handed to whoever takes the cluster
            fut.set_exception(exc)
            return
        fut.set_result((cluster, client))

    threading.Thread(target=start, name="electrode-qc-dask-start", daemon=True).start()
    _WARM[("dask", jobs)] = fut


def discard_warm() -> None:
    """Shut down a pre-started pool or local cluster that was not used. The pool's workers
    are stopped at once: they run nothing but their imports."""
    for key, warm in list(_WARM.items()):
        if isinstance(key, tuple):  # a local cluster, started or starting
            _close_when_started(warm)
        else:
            procs = list((getattr(warm, "_processes", None) or {}).values())
            warm.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
    _WARM.clear()


def _close_when_started(fut) -> None:
    def close(f) -> None:
        if f.exception() is None:
            cluster, client = f.result()
            _close_in_background(client, cluster)

    fut.add_done_callback(close)


def _pool(fn, args, jobs: int) -> Iterator[tuple[int, Any]]:
    """A spawn process pool with at most ``jobs + 1`` tasks in flight (one queued, so no
    worker waits). If a worker process dies (killed, out of memory, a crash in a native
    library), the pool breaks and every task in flight with it: each of those is run again
    alone, so only the task that kills its own worker fails, and the tasks not yet started
    go on in a fresh pool."""
    import multiprocessing as mp
    from collections import deque
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # workers start clean (no inherited threads or handles)
    queue = deque(range(len(args)))
    while queue:
        warm = _WARM.pop(jobs, None)
        if warm is None:
            discard_warm()
        suspects: list[int] = []
        with warm or ProcessPoolExecutor(max_workers=min(jobs, len(queue)), mp_context=ctx,
                                         initializer=_pool_worker,
                                         initargs=_pool_initargs()) as ex:
            running: dict[Any, int] = {}
            try:
                while queue or running:
                    while queue and len(running) <= jobs:
                        i = queue.popleft()
                        running[ex.submit(_safe, fn, args[i])] = i
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for f in done:
                        i = running.pop(f)
                        if f.exception() is None:
                            yield i, f.result()
                        else:  # only BrokenProcessPool: _safe returns the task's own errors
                            suspects.append(i)
                    if suspects:  # the pool is broken: everything still in flight with it
                        for f, i in running.items():
                            if f.done() and f.exception() is None:
                                yield i, f.result()
                            else:
                                suspects.append(i)
                        running.clear()
                        break
            finally:
                for f in running:
                    f.cancel()
        if suspects:
            log.warning("a worker process died; %d task(s) that were in flight run again, "
                        "each alone", len(suspects))
            for i in sorted(suspects):
                yield i, _alone(fn, args[i], ctx)


def _alone(fn, arg, ctx) -> Any:
    """``_safe(fn, arg)`` in a pool of its own: the BrokenProcessPool if it kills its worker."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_pool_worker,
                             initargs=_pool_initargs()) as ex:
        try:
            return ex.submit(_safe, fn, arg).result()
        except BrokenProcessPool as exc:
            return exc


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ConfigError(None, "--scheduler needs dask.distributed: pip install "
                                "'electrode-qc[dask]'") from None
    # dask sets its loggers to INFO when imported; they follow ours (-v) instead
    quiet = logging.getLogger().getEffectiveLevel()
    dask_log = logging.getLogger("distributed")
    if dask_log.getEffectiveLevel() < quiet:
        dask_log.setLevel(quiet)
    return distributed


def _local_cluster(jobs: int, warm: Sequence[str] = ()):
    """A LocalCluster of `jobs` one-thread worker processes on 127.0.0.1, and its client;
    each worker imports the modules `warm` as it starts."""
    import dask

    distributed = _import_distributed()
    # the workers' statistical profiler samples every thread's stack every 10 ms: on
    # tasks that spend much time in Python it costs ~20 %; nobody reads it here
    # and the event-loop watchdogs wake every 20-500 ms, taking the GIL from the task
    # (set for the cluster's own start only: its scheduler and workers read it then).
    # The nanny's default environment also sets MALLOC_TRIM_THRESHOLD_, and any fixed
    # threshold turns off glibc's adaptive mmap threshold: every image-sized array is then
    # mapped and unmapped afresh, and its pages faulted in (zeroed) on each use: 11-12 s of
    # system time in a 200-sample run. The workers keep one thread per library, as in the
    # pool (`worker_setup` then keeps freed memory on the heap).
    environ = {name: "1" for name in THREAD_ENV}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ,
                          "distributed.worker.profile.enabled": False,
                          "distributed.admin.tick.interval": "1s",
                          "distributed.admin.system-monitor.interval": "5s",
                          "distributed.worker.memory.monitor-interval": "2s"}):
        cluster = distributed.LocalCluster(n_workers=jobs, threads_per_worker=1,
                                           processes=True, host="127.0.0.1",
                                           dashboard_address="127.0.0.1:0",
                                           preload=[*warm, __name__])
    try:
        return cluster, distributed.Client(cluster, direct_to_workers=True)
    except BaseException:
        cluster.close()
        raise


# dask runs samples in chunks when there are many: its per-task work (the worker's state
# machine and messages, the scheduler's and the client's) is a few milliseconds of Python
# per task, taken from the measurement; chunks keep >= TASKS_PER_SLOT tasks per worker
# thread, so the end of a run still balances, and hold at most MAX_CHUNK samples
TASKS_PER_SLOT = 8
MAX_CHUNK = 4


def chunk_size(n: int, slots: int) -> int:
    """Samples per dask task for `n` samples on `slots` worker threads."""
    return max(1, min(MAX_CHUNK, n // max(1, slots * TASKS_PER_SLOT)))


def _safe_chunk(fn: Callable, chunk: Sequence[Any]) -> list[Any]:
    return [_safe_single(fn, a) for a in chunk]


SCHEDULER_TIMEOUT_S = 5  # to connect to a dask scheduler; then it is a ConfigError
_TLS_FILES = ("tls_ca_file", "tls_client_cert", "tls_client_key")


def _security(security, scheduler: str | None):
    """`security` as a `distributed.security.Security` (None stays None); `ConfigError`
    for unknown keys, missing certificate files, or security without a remote scheduler."""
    if security is None:
        return None
    if not scheduler or scheduler == "auto":
        raise ConfigError(None, "dask security (TLS certificates) applies to a remote "
                                "scheduler (--scheduler tls://HOST:PORT); the local cluster "
                                "listens on 127.0.0.1 only")
    _import_distributed()
    from distributed.security import Security

    if isinstance(security, Mapping):
        try:
            security = Security(**security)
        except TypeError as exc:
            raise ConfigError(None, f"dask security: {exc}; expected tls_ca_file, "
                                    "tls_client_cert, tls_client_key, require_encryption"
                              ) from None
    elif not isinstance(security, Security):
        raise ConfigError(None, f"dask security: expected a distributed.security.Security "
                                f"or a mapping of its arguments, not {type(security).__name__}")
    for name in _TLS_FILES:
        value = getattr(security, name, None)
        if value and "-----BEGIN" not in value and not os.path.isfile(value):
            raise ConfigError(value, f"dask security {name}: no such file")
    return security


def _why(exc: BaseException) -> str:
    """What went wrong connecting to a scheduler, in one line: for a time-out, the last
    failure (connection refused, name not known ...) and how long it was tried."""
    import re

    def line(e: BaseException) -> str:  # dask prefixes "in <its connector object>: "
        return re.sub(r"^in <[^>]*>: ", "", " ".join(str(e).split()))

    text = line(exc)
    if isinstance(exc, (OSError, TimeoutError)) and text.startswith("Timed out") \
            and exc.__cause__ is not None:  # the last attempt's failure, or its own time-out
        text = f"{line(exc.__cause__) or 'no answer'} (tried for {SCHEDULER_TIMEOUT_S} s)"
    return text or type(exc).__name__


def _connect(distributed, scheduler: str, security):
    """A client of the dask scheduler at `scheduler`, or a one-line `ConfigError` if it
    cannot be reached within `SCHEDULER_TIMEOUT_S` (or refuses the connection)."""
    from distributed.security import Security

    if security is None:  # dask's own configuration (distributed.comm.tls ...)
        security = Security()
    if scheduler.startswith("tls://") and not security.tls_ca_file:
        raise ConfigError(None, f"the dask scheduler at {scheduler} speaks TLS: give its "
                                "certificates (security: tls_ca_file, tls_client_cert, "
                                "tls_client_key)")
    try:
        return distributed.Client(scheduler, timeout=SCHEDULER_TIMEOUT_S, security=security)
    except (OSError, TimeoutError, ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(None, f"cannot reach the dask scheduler at {scheduler}: "
                                f"{_why(exc)}") from None


def _dask(fn, args, scheduler: str, jobs: int, security=None) -> Iterator[tuple[int, Any]]:
    """Tasks on dask, a few samples per task when there are many (`chunk_size`). Results
    stream in chunk by chunk; a sample that fails, fails alone. A chunk whose worker died
    is run again one sample per task, so only the sample that kills its worker fails.
    `security` (a `distributed.security.Security`) is for a remote scheduler."""
    distributed = _import_distributed()
    as_completed = distributed.as_completed

    cluster = None
    if scheduler == "auto":
        warm = _WARM.pop(("dask", jobs), None)
        cluster, client = warm.result() if warm is not None else _local_cluster(jobs)
    else:
        client = _connect(distributed, scheduler, security)
    try:
        slots = sum(client.nthreads().values()) or jobs
        k = chunk_size(len(args), slots)
        done = as_completed()
        index: dict[Any, list[int]] = {}

        def submit(chunks: list[list[int]], priority: int = 0) -> None:  # one graph update
            if not chunks:
                return
            futs = client.map(functools.partial(_safe_chunk, fn),
                              [[args[i] for i in c] for c in chunks], pure=False,
                              priority=priority)
            index.update((f.key, c) for f, c in zip(futs, chunks, strict=True))
            done.update(futs)

        # the last samples one per task, run last, so that the workers finish together
        tail = len(args) - slots * MAX_CHUNK if k > 1 else len(args)
        submit([list(range(i, min(i + k, tail))) for i in range(0, tail, k)], priority=1)
        submit([[i] for i in range(tail, len(args))])
        for f in done:
            chunk = index.pop(f.key)
            try:
                results = f.result()
            except Exception as exc:  # a worker lost mid-task
                if len(chunk) > 1:
                    submit([[i] for i in chunk])
                    f.release()
                    continue
                results = [exc]
            f.release()
            yield from zip(chunk, results, strict=True)
    finally:
        _close_in_background(client, cluster)


def _close_in_background(client, cluster) -> None:
    """Close `client`, then `cluster` if there is one, in a thread of their own: a local
    cluster takes ~0.5 s to stop its workers, time the caller spends writing its results.
    The thread is not a daemon, so the interpreter waits for it before it exits."""
    def close() -> None:
        client.close()
        if cluster is not None:
            cluster.close()

    threading.Thread(target=close, name="electrode-qc-dask-close").start()


def execute(fn: Callable[[Any], Any], args: Sequence[Any], *, jobs: int | None = 1,
            scheduler: str | None = None,
            security: Any = None) -> Iterator[tuple[int, Any]]:
    """Run ``fn(a)`` for every ``a`` in `args`; yield ``(index, result or exception)`` as
    each completes.

    Parameters
    ----------
    jobs : int or None
        Processes (None: `available_cpus`). 1 runs in this process.
    scheduler : str, optional
        A dask scheduler address (``tcp://HOST:PORT``, ``tls://HOST:PORT``), or "auto" for
        a LocalCluster of `jobs` workers on 127.0.0.1. Takes precedence over the process
        pool.
    security : distributed.security.Security or mapping, optional
        TLS for a remote scheduler: a ``Security``, or a mapping of its keyword arguments
        (``tls_ca_file``, ``tls_client_cert``, ``tls_client_key``, ``require_encryption``
        ...). See the module's docstring.

    Raises
    ------
    ConfigError
        `jobs` < 1; `security` that is malformed, names a missing file, or is given
        without a remote scheduler; a ``tls://`` scheduler without certificates. A
        scheduler that cannot be reached raises it when the iteration starts.
    """
    jobs = available_cpus() if jobs is None else int(jobs)
    if jobs < 1:
        raise ConfigError(None, f"--jobs must be >= 1, not {jobs}")
    sec = _security(security, scheduler)  # refused without a remote scheduler
    if scheduler:
        return _dask(fn, args, scheduler, jobs, sec)
    if jobs == 1 or len(args) <= 1:
        return _in_process(fn, args)
    return _pool(fn, args, min(jobs, len(args)))
