"""Thread-count rules (fastgrad._threads) and the write locks."""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastgrad
from fastgrad import _threads

from fastgrad.testing import make_problem


def run_child(code, **env):
    """Run code in a fresh interpreter with env set; returns its stdout's last line."""
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_NUM_THREADS", "MPI_LOCALNRANKS")}
    environment.update(env)
    # cwd "/": the child imports the installed fastgrad, never a source tree in cwd
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environment,
                         capture_output=True, text=True, check=True, timeout=120, cwd="/")
    return out.stdout.strip().splitlines()[-1]


CORES = _threads.usable_cores()
FULL_AFFINITY = CORES >= (os.cpu_count() or CORES)


def test_omp_num_threads_sets_the_count():
    code = "import fastgrad, fastgrad._threads as t; print(fastgrad.get_num_threads(), t.thread_count_source())"
    assert run_child(code, OMP_NUM_THREADS="1") == "1 OMP_NUM_THREADS"
    # bounded by the usable cores
    assert run_child(code, OMP_NUM_THREADS=str(CORES + 3)).split()[0] == str(CORES)


def test_threadpoolctl_limits_set_the_count():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fastgrad.set_num_threads(None)
    before = fastgrad.get_num_threads()
    with threadpoolctl.threadpool_limits(1):
        assert fastgrad.get_num_threads() == 1
    with threadpoolctl.threadpool_limits(1, user_api="openmp"):
        assert fastgrad.get_num_threads() == 1
    assert fastgrad.get_num_threads() == before


def test_set_num_threads_overrides_and_none_resets():
    try:
        fastgrad.set_num_threads(3)
        assert fastgrad.get_num_threads() == 3
        assert _threads.thread_count_source() == "set_num_threads"
    finally:
        fastgrad.set_num_threads(None)
    assert _threads.thread_count_source() != "set_num_threads"
    with pytest.raises(ValueError, match="n_threads must be a positive integer or None"):
        fastgrad.set_num_threads(0)


@pytest.mark.skipif(not FULL_AFFINITY or CORES < 2, reason="needs the whole machine's cores")
def test_processes_of_a_launcher_share_the_cores():
    code = "import fastgrad; print(fastgrad.get_num_threads())"
    assert run_child(code, MPI_LOCALNRANKS="2") == str(max(1, CORES // 2))
    assert run_child(code, OMPI_COMM_WORLD_LOCAL_SIZE=str(CORES * 4)) == "1"
    # an explicit OMP_NUM_THREADS wins over the sharing
    assert run_child(code, MPI_LOCALNRANKS="2", OMP_NUM_THREADS=str(CORES)) == str(CORES)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/task")
def test_one_thread_works_under_omp_num_threads_1():
    code = """
    import os, numpy as np, fastgrad
    def cpu_ticks():
        ticks = {}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks[tid] = int(fields[11]) + int(fields[12])   # utime + stime
        return ticks
    p = fastgrad.init_params(2000, 24, 32, 128, 10, seed=0)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 2000, (1024, 24)); y = rng.integers(0, 10, 1024)
    opt = fastgrad.AdaGrad(p)
    fastgrad.train_step(p, idx, y, opt)          # warm up: every pool that will exist exists
    before = cpu_ticks()
    for i in range(60):
        fastgrad.train_step(p, idx, y, opt, dropout=0.5, rng=i)
    after = cpu_ticks()
    busy = [t for t in after if after[t] - before.get(t, 0) > 2]
    print(len(busy))
    """
    assert run_child(code, OMP_NUM_THREADS="1") == "1"


def test_memory_keys_follow_the_allocation():
    a = np.zeros((10, 4))
    assert _threads._memory_key(a[2:]) == _threads._memory_key(a)
    assert _threads._memory_key(a.T) == _threads._memory_key(a)
    assert _threads._memory_key(np.zeros((10, 4))) != _threads._memory_key(a)


def test_independent_models_on_two_threads_never_wait():
    fastgrad.set_num_threads(1)
    try:
        for pair in range(20):   # many independent pairs in a row: none may serialize
            problems = [make_problem(np.float32, n=64, seed=10 * pair + k) for k in range(2)]
            opts = [fastgrad.SGD(p, lr=0.1) for p, _, _ in problems]
            before = _threads.lock_waits()
            barrier = threading.Barrier(2)

            def train(k):
                p, idx, y = problems[k]
                barrier.wait()
                for _ in range(30):
                    fastgrad.train_step(p, idx, y, opts[k])

            workers = [threading.Thread(target=train, args=(k,)) for k in range(2)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            assert _threads.lock_waits() == before
    finally:
        fastgrad.set_num_threads(None)


def test_models_sharing_an_embedding_table_share_its_lock():
    p, _, _ = make_problem(np.float64, seed=1)
    q = fastgrad.Params(p.L, *(a.copy() for a in p[1:]))
    assert {_threads._memory_key(a) for a in p} & {_threads._memory_key(a) for a in q} == \
        {_threads._memory_key(p.L)}


class _FakeClock:
    """Feeds _OtherLoad synthetic readings: every core's busy seconds and our own."""

    def __init__(self, monkeypatch, load):
        self.t, self.cpu, self.ours = 100.0, 0.0, 0.0
        monkeypatch.setattr(_threads.time, "monotonic", lambda: self.t)
        monkeypatch.setattr(_threads.time, "process_time", lambda: self.ours)
        monkeypatch.setattr(load, "_cpu_seconds", lambda: self.cpu)
        monkeypatch.setattr(load, "_readable", True)

    def advance(self, seconds, others, ours):
        self.t += seconds
        self.cpu += (others + ours) * seconds
        self.ours += ours * seconds


def test_steps_use_fewer_threads_while_other_processes_keep_cores_busy(monkeypatch):
    load = _threads._OtherLoad()
    monkeypatch.setattr(_threads, "_other_load", load)
    monkeypatch.setattr(_threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(_threads, "_resolve", lambda: (4, "the usable cores"))
    clock = _FakeClock(monkeypatch, load)
    assert _threads.threads_for_step() == 4                   # first reading: nothing known
    clock.advance(0.2, others=2.0, ours=2.0)                  # two cores busy elsewhere
    assert _threads.threads_for_step() == 2
    clock.advance(0.05, others=0.0, ours=2.0)                 # within SAMPLE_S: not re-read
    assert _threads.threads_for_step() == 2
    clock.advance(0.2, others=3.9, ours=0.1)
    assert _threads.threads_for_step() == 1                   # never fewer than one
    clock.advance(0.2, others=0.3, ours=4.0)                  # our own time is not "other"
    assert _threads.threads_for_step() == 4
    # an explicit count is obeyed whatever the load
    monkeypatch.setattr(_threads, "_resolve", lambda: (3, "set_num_threads"))
    clock.advance(0.2, others=4.0, ours=0.0)
    assert _threads.threads_for_step() == 3


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="reads /proc/stat")
def test_core_time_is_read_from_the_system():
    load = _threads._OtherLoad()
    first = load._cpu_seconds()
    sum(i * i for i in range(300_000))   # some CPU time passes
    assert first is not None and load._cpu_seconds() >= first > 0
    assert load.cores_busy() >= 0.0 and 1 <= _threads.threads_for_step() <= fastgrad.get_num_threads()
