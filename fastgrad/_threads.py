"""Threads: how many the kernels use, BLAS held at one while they run, and write locks.

How many threads a kernel call uses is decided at each call, in this order (the
first that applies wins), as scikit-learn's _openmp_effective_n_threads does:

1. ``set_num_threads(n)``, until ``set_num_threads(None)``;
2. OpenMP's own setting, when a limit is in force: ``OMP_NUM_THREADS``, or
   threadpoolctl's ``threadpool_limits(n)`` (it sets OpenMP's count, which the
   kernels read at every call), or ``omp_set_num_threads``;
3. under a launcher that starts several processes on one host (mpiexec, srun,
   mpirun) and leaves each one every core: the cores divided among those
   processes, so ranks × threads never exceed the cores;
4. the usable cores (the process's CPU affinity).

Each is bounded by the usable cores. When the count comes from rule 3 or 4 (no
count was asked for), a step uses fewer threads while other processes keep some
of those cores busy (``threads_for_step``): a thread that shares its core with
a busy process runs at half speed or less and every parallel loop waits for it,
so on a busy machine more threads made a step slower than one thread
(bench/results/contention-2core.txt). The kernels' results are fixed for a
given thread count, not across counts, so a run that must repeat bit for bit
on a busy machine sets its count (any of rules 1-2).
"""

from __future__ import annotations

import numbers
import os
import threading
import time

from fastgrad import _kernels

__all__ = ["set_num_threads", "get_num_threads", "thread_count_source", "threads_for_step"]


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# Launchers' variables for the number of processes of a job on this host: MPICH's
# hydra, Open MPI, PMIx, MVAPICH, Slurm (whose value may read "4(x2)").
_LOCAL_RANK_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_LOCAL_SIZE",
                         "MV2_COMM_WORLD_LOCAL_SIZE", "SLURM_STEP_TASKS_PER_NODE",
                         "SLURM_TASKS_PER_NODE")


def local_processes() -> int:
    """How many processes of this job a launcher started on this host (1 without one)."""
    for name in _LOCAL_RANK_VARIABLES:
        value = os.environ.get(name, "")
        digits = value.split("(")[0].split(",")[0].strip()
        if digits.isdigit() and int(digits) > 0:
            return int(digits)
    return 1


_user_threads: int | None = None


def set_num_threads(n_threads: int | None) -> None:
    """Set how many threads fastgrad's kernels use; None returns to the default rules.

    Parameters
    ----------
    n_threads : int or None
        A positive count (used as given, even above the cores), or None: follow
        OpenMP's setting (OMP_NUM_THREADS, threadpoolctl), then the cores shared
        among the processes a launcher started on this host (see the module's rules).

    The kernels have one thread pool, OpenMP's: they split the matrix products
    by rows themselves and run BLAS single-threaded while they work (see
    _single_threaded_blas), so BLAS's workers never fight the row loops.
    Results are identical run to run for a given count.
    """
    global _user_threads
    if n_threads is None:
        _user_threads = None
        return
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral) \
            or n_threads < 1:
        raise ValueError(f"n_threads must be a positive integer or None, got {n_threads!r}")
    _user_threads = int(n_threads)


def _resolve() -> tuple[int, str]:
    if _user_threads is not None:
        return _user_threads, "set_num_threads"
    cores = usable_cores()
    openmp = _kernels.openmp_max_threads()
    if not _kernels.OPENMP:
        return 1, "a build without OpenMP"
    if "OMP_NUM_THREADS" in os.environ and openmp >= 1:
        return min(openmp, cores), "OMP_NUM_THREADS"
    if openmp < cores:
        return openmp, "OpenMP's limit (threadpoolctl or omp_set_num_threads)"
    local = local_processes()
    if local > 1 and cores >= (os.cpu_count() or cores):
        # the launcher left every core to every process: share them out
        return max(1, cores // local), f"the cores shared by {local} processes on this host"
    return cores, "the usable cores"


def get_num_threads() -> int:
    """The thread count the kernels use on their next call (see the module's rules).

    Without a count set (rules 3-4), a step uses fewer while other processes keep
    cores busy (see threads_for_step)."""
    return _resolve()[0]


def thread_count_source() -> str:
    """Which rule set get_num_threads()'s count (shown by show_config)."""
    source = _resolve()[1]
    if source.startswith(_ADAPTIVE_SOURCES):
        busy = _other_load.cores_busy()
        return (f"{source}, fewer while other processes keep cores busy "
                f"(now {busy:.1f} busy)")
    return source


# ---------------------------------------------------------------------------
# Cores kept busy by other processes
# ---------------------------------------------------------------------------

# The rules (by the start of their name) whose count a step lowers while other processes
# keep cores busy: the counts nobody asked for (rules 3 and 4).
_ADAPTIVE_SOURCES = ("the usable cores", "the cores shared by")


class _OtherLoad:
    """How many of this process's usable cores other processes keep busy: the CPU
    time of those cores (Linux's /proc/stat) less this process's own, over the
    last SAMPLE_S or more. Read at most once per SAMPLE_S; 0 where it cannot be read."""

    SAMPLE_S = 0.1

    def __init__(self):
        self._lock = threading.Lock()
        self._last: tuple | None = None
        self._busy = 0.0
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._readable = os.path.exists("/proc/stat") and hasattr(os, "sched_getaffinity")

    def _cpu_seconds(self) -> float | None:
        """Busy seconds of the usable cores since boot, every process together."""
        try:
            cpus = {f"cpu{c}" for c in os.sched_getaffinity(0)}
            busy = 0
            with open("/proc/stat") as f:
                for line in f:
                    fields = line.split()
                    if fields and fields[0] in cpus:
                        # user nice system idle iowait irq softirq steal
                        v = [int(x) for x in fields[1:9]]
                        busy += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
            return busy / self._tick
        except (OSError, ValueError, IndexError):
            return None

    def cores_busy(self) -> float:
        if not self._readable:
            return 0.0
        now = time.monotonic()
        with self._lock:
            if self._last is not None and now - self._last[0] < self.SAMPLE_S:
                return self._busy
            total = self._cpu_seconds()
            if total is None:
                self._readable = False
                return 0.0
            sample = (now, total, time.process_time())
            if self._last is not None:
                elapsed = now - self._last[0]
                others = (total - self._last[1]) - (sample[2] - self._last[2])
                self._busy = max(0.0, others / elapsed)
            self._last = sample
            return self._busy


_other_load = _OtherLoad()


def threads_for_step() -> int:
    """The thread count of the next kernel call: get_num_threads(), less the cores
    other processes keep busy when no count was asked for (rules 3-4), at least 1."""
    count, source = _resolve()
    if source.startswith(_ADAPTIVE_SOURCES):
        free = usable_cores() - _other_load.cores_busy()
        return max(1, min(count, int(free + 0.5)))
    return count


# ---------------------------------------------------------------------------
# BLAS held at one thread while a kernel runs
# ---------------------------------------------------------------------------

def _blas_thread_functions(controller):
    """(get, set) of one BLAS's thread count.

    For OpenBLAS the two C functions are looked up once and kept: threadpoolctl
    looks them up on every call, which leaves ctypes objects for the garbage
    collector at every step. Any other BLAS goes through threadpoolctl.
    """
    lookup = getattr(controller, "_get_symbol", None)   # private: used only when present
    if controller.internal_api == "openblas" and lookup is not None:
        if getattr(controller, "threading_layer", "") == "openmp":
            names = ("omp_get_max_threads", "omp_set_num_threads")
        else:
            names = ("openblas_get_num_threads", "openblas_set_num_threads")
        get, set_ = (lookup(name) for name in names)
        if get is not None and set_ is not None:
            return get, set_
    return controller.get_num_threads, controller.set_num_threads


def _kernel_blas_functions() -> list:
    """(get, set) thread-count functions of the BLAS the kernels call
    (fastgrad/_blas_library.py): its own where it exports them (scipy-openblas32),
    else threadpoolctl's controllers of the BLAS that scipy.linalg.cython_blas calls.

    A scipy wheel carries its own OpenBLAS (in scipy.libs or scipy/.dylibs), apart
    from numpy's; only that one is held, since changing the thread count of numpy's
    wakes its idle workers. When no BLAS lives inside scipy's tree (a shared system
    or conda BLAS), every BLAS is.
    """
    blas = _kernels.BLAS
    if blas.get_threads is not None and blas.set_threads is not None:
        return [(blas.get_threads, blas.set_threads)]
    import scipy
    import scipy.linalg  # noqa: F401  (loads the BLAS)
    from threadpoolctl import ThreadpoolController

    controllers = ThreadpoolController().select(user_api="blas").lib_controllers
    scipy_root = os.path.dirname(os.path.realpath(scipy.__file__))
    own = [c for c in controllers
           if os.path.realpath(c.filepath).startswith((scipy_root + ".libs", scipy_root + os.sep))]
    return [_blas_thread_functions(c) for c in own or controllers]


class _SingleThreadedBlas:
    """Holds the kernels' BLAS at one thread while any kernel runs.

    OpenBLAS keeps its workers spinning for a while after a threaded call; had
    they run beside the kernels' OpenMP threads, each layer would steal the
    other's cores. The BLAS is the one the kernels call (_kernel_blas_functions);
    the first caller in saves and sets the counts, the last one out restores them.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._functions = None
        self._saved = []

    def __enter__(self):
        with self._lock:
            if self._depth == 0:
                if self._functions is None:
                    self._functions = _kernel_blas_functions()
                self._saved.clear()
                for get, set_ in self._functions:
                    n = get()
                    self._saved.append(n)
                    if n != 1:
                        set_(1)
            self._depth += 1

    def __exit__(self, *exc):
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for (_, set_), n in zip(self._functions, self._saved):
                    if n is not None and n != 1:
                        set_(n)


_single_threaded_blas = _SingleThreadedBlas()


# ---------------------------------------------------------------------------
# Write locks keyed by the arrays' memory
# ---------------------------------------------------------------------------
# In-place updates of the same memory from two Python threads are serialized; updates
# of unrelated arrays never wait for each other. Each array is keyed by the memory
# block that owns it (the root of its .base chain, where numpy allocated it): two
# views of one table share a key, so models that share an embedding table serialize
# on it, and arrays from different allocations never share one. A lock lives while
# some update holds or waits on it; locks are taken in key order (no deadlock).

_registry_lock = threading.Lock()
_locks: dict[tuple[int, int], list] = {}    # key -> [lock, users]
_lock_waits = [0]                            # acquisitions that had to wait (for tests)


def _memory_key(a) -> tuple[int, int]:
    owner = a
    while isinstance(getattr(owner, "base", None), type(a)):
        owner = owner.base
    interface = owner.__array_interface__
    return interface["data"][0], owner.nbytes


def lock_waits() -> int:
    """How many write-lock acquisitions had to wait for another thread, so far."""
    return _lock_waits[0]


class _ParamsWriteLock:
    """Held around a whole in-place update (and an optimizer's step count)."""

    def __init__(self, p):
        self._keys = sorted({_memory_key(a) for a in p})
        self._held: list = []

    def __enter__(self):
        with _registry_lock:
            entries = []
            for key in self._keys:
                entry = _locks.get(key)
                if entry is None:
                    entry = _locks[key] = [threading.Lock(), 0]
                entry[1] += 1
                entries.append(entry)
        for entry in entries:
            if not entry[0].acquire(blocking=False):
                with _registry_lock:
                    _lock_waits[0] += 1
                entry[0].acquire()
            self._held.append(entry)

    def __exit__(self, *exc):
        with _registry_lock:
            for key, entry in zip(self._keys, self._held):
                entry[0].release()
                entry[1] -= 1
                if entry[1] == 0:
                    del _locks[key]
        self._held = []
