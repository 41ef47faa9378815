"""pytest-benchmark suite: one training step per (config, variant, method).

    pytest bench/ --benchmark-columns=median,min,max

Each method uses the same harness as `fastgrad bench` (fastgrad.bench); the
CLI interleaves the methods round by round, which is the fairer comparison.
Thread counts: FASTGRAD_BENCH_THREADS (default 1).
"""

import os

import numpy as np
import pytest

from fastgrad import bench

THREADS = int(os.environ.get("FASTGRAD_BENCH_THREADS", "1"))
METHODS = bench.available_methods(["fastgrad", "fastgrad-dense", "fastgrad-factored",
                                   "reference", "floor", "torch", "jax"])


SCENARIOS = [(c, v) for c in bench.CONFIGS for v in bench.VARIANTS]
if bench.treebank_available():   # real parser states (pip install turkish-treebanks)
    SCENARIOS.append((bench.TREEBANK, bench.REAL))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("config,variant", SCENARIOS)
def test_training_step(benchmark, config, variant, method):
    bench.set_threads(THREADS)
    cfg = bench.get_config(config)
    idx, y = bench.make_batch(cfg, variant)
    step = bench.METHODS[method](cfg, idx, y, np.float32, 0)
    benchmark.group = f"{config}-{variant}"
    benchmark.extra_info.update(threads=THREADS, distinct_pairs=bench.distinct_pairs(idx),
                                occurrences=idx.size)
    benchmark.pedantic(step, rounds=7, warmup_rounds=2)
