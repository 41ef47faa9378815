"""One interleaved timing round, shared by the benchmark harness and the parser example."""

from __future__ import annotations

import time

__all__ = ["SETTLE_S", "time_round"]

SETTLE_S = 0.12  # quiet time before each method at more than one thread (see time_round)


def time_round(steps: dict, settle: bool) -> dict:
    """One interleaved round: seconds of one call of each step, in turn.

    The previous step's thread pool (OpenBLAS, torch, XLA) keeps its workers
    spinning for ~0.1 s after its last call; on a machine with as many cores as
    threads they can halve the next step's speed (bench/results/design-measurements.md).
    That belongs to nobody's step: with settle, each waits SETTLE_S first; each
    then makes one untimed call (workspaces, first-call costs) before the timed one.
    """
    seconds = {}
    for name, step in steps.items():
        if settle:
            time.sleep(SETTLE_S)
        step()
        t0 = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - t0
    return seconds
