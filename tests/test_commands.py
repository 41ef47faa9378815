"""The fastgrad command's benchmarks run end to end (tiny sizes: smoke tests, not timings)."""

import pytest

import fastgrad
from fastgrad import _threads, bench_contention
from fastgrad.__main__ import main


@pytest.fixture(autouse=True)
def _thread_counts_restored():
    """The bench commands set the whole process's thread counts (fastgrad's, the
    BLAS's, OpenMP's in this thread), as a command may; the tests that run after these
    in the same process must not inherit them."""
    from threadpoolctl import threadpool_limits

    saved = _threads._user_threads
    with threadpool_limits(limits=None):     # restores every library's count on exit
        yield
    fastgrad.set_num_threads(saved)


def test_bench_runs_and_prints_its_table(capsys):
    assert main(["bench", "--config", "window", "--variant", "skewed", "--threads", "1",
                 "--methods", "fastgrad,floor", "--rounds", "1", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert "window" in out and "floor/fg" in out


def test_inference_bench_takes_its_sizes(capsys):
    assert main(["inference", "--config", "window", "--sizes", "1,5"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| window")]
    assert [row.split("|")[2].strip() for row in rows] == ["1", "5"]


def test_contention_bench_starts_and_stops_its_busy_process(monkeypatch, capsys):
    started = []
    real_start = bench_contention.start_busy_process

    def start(core, seconds):
        started.append(real_start(core, seconds))
        return started[-1]

    monkeypatch.setattr(bench_contention, "ROUND_S", 0.02)
    monkeypatch.setattr(bench_contention, "start_busy_process", start)
    assert main(["bench", "--contention", "--config", "parser", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| fastgrad 1 thread |" in out and "fastgrad contended: default / 1 thread" in out
    assert len(started) == 1 and started[0].poll() is not None    # killed, not left spinning


@pytest.mark.parametrize("seconds", [0.2])
def test_busy_process_stops_by_itself(seconds):
    busy = bench_contention.start_busy_process(0, seconds)
    assert busy.wait(timeout=30) == 0
