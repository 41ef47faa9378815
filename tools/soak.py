"""Memory soak: many training steps, resident memory and Python allocations tracked.

    python tools/soak.py --steps 20000

Runs sgd_step and train_step (Adam, dropout 0.5, L2) alternately on a parser-shaped
problem (both paths appear: the batches alternate between skewed and uniform indices),
and prints the resident set size (VmRSS) at checkpoints and the net Python allocation
per step after warm-up (tracemalloc). Exit status 1 if RSS grew by more than --max-growth-mib
after warm-up.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tracemalloc

import numpy as np

import fastgrad


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--max-growth-mib", type=float, default=2.0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    p = fastgrad.init_params(5000, 36, 50, 200, 3, dtype=np.float32, seed=0)
    opt = fastgrad.Adam(p, lr=1e-4)
    n = 256
    skewed = (rng.zipf(1.5, size=(n, 36)) % 5000).astype(np.int64)
    uniform = rng.integers(0, 5000, size=(n, 36))
    y = rng.integers(0, 3, size=n)
    gen = np.random.default_rng(1)

    def step(i):
        idx = skewed if i % 4 < 2 else uniform
        if i % 2:
            fastgrad.sgd_step(p, idx, y, 1e-3)
        else:
            fastgrad.train_step(p, idx, y, opt, dropout=0.5, l2=1e-8, rng=gen)

    warmup = 200
    for i in range(warmup):
        step(i)
    gc.collect()
    base = rss_mib()
    print(f"after {warmup} warm-up steps: RSS {base:.1f} MiB")
    tracemalloc.start()
    traced0 = tracemalloc.get_traced_memory()[0]
    checkpoints = {args.steps // 10 * k for k in (1, 2, 5, 10)}
    for i in range(1, args.steps + 1):
        step(i)
        if i in checkpoints:
            gc.collect()
            print(f"step {i:>6}: RSS {rss_mib():.1f} MiB ({rss_mib() - base:+.2f}), "
                  f"Python heap {tracemalloc.get_traced_memory()[0] - traced0:+d} bytes")
    gc.collect()
    net = tracemalloc.get_traced_memory()[0] - traced0
    tracemalloc.stop()
    growth = rss_mib() - base
    print(f"{args.steps} steps: RSS growth {growth:+.2f} MiB, net Python allocation "
          f"{net / args.steps:+.3f} bytes/step")
    return 0 if growth <= args.max_growth_mib else 1


if __name__ == "__main__":
    sys.exit(main())
