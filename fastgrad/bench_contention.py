"""fastgrad bench --contention: training throughput on a quiet machine and beside a
busy process, at one thread and at the default thread count.

A user's machine is rarely quiet: another process (a compile, a notebook, a second
training run) keeps a core busy. This starts its own busy process, pinned to one
core and stopped after a bounded time, and times training steps (AdaGrad, dropout
0.5, the parser's real states when turkish-treebanks is installed) for fastgrad at
1 thread and at its default, and PyTorch likewise when installed. Methods take
turns within each round, so a change in the machine's load touches all alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

import fastgrad
from fastgrad import bench
from fastgrad._timing import SETTLE_S

BATCH = 256
ROUND_S = 0.3          # each method trains for about this long per round
BUSY_LIMIT_S = 600     # the busy process stops by itself after this, whatever happens here


def start_busy_process(core: int, seconds: float) -> subprocess.Popen:
    """A process spinning on `core` (pinned where the OS allows) for `seconds` at most."""
    code = ("import os, time\n"
            f"if hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {{{core}}})\n"
            f"end = time.monotonic() + {seconds}\n"
            "while time.monotonic() < end: pass\n")
    return subprocess.Popen([sys.executable, "-c", code])


def workload(config_name: str | None):
    """(name, p, idx, y): parameters and a pool of training states."""
    name = config_name or (bench.TREEBANK if bench.treebank_available() else "parser")
    config = bench.get_config(name)
    if name == bench.TREEBANK:
        _, idx, y = bench.treebank_data()
    else:
        batches = [bench.make_batch(config, "skewed", seed=s) for s in range(8)]
        idx = np.concatenate([b[0] for b in batches])
        y = np.concatenate([b[1] for b in batches])
    p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                             config.hidden, config.n_classes, dtype=np.float32, seed=0)
    return name, p, idx, y


def methods(p, n_default: int) -> dict:
    """name -> (set up threads, one training step on a batch)."""
    out = {}
    for label, n in (("1 thread", 1), (f"default ({n_default})", None)):
        q = fastgrad.Params(*(a.copy() for a in p))
        opt = fastgrad.AdaGrad(q, lr=0.01, eps=1e-6)
        rng = np.random.default_rng(0)
        out[f"fastgrad {label}"] = (
            lambda n=n: fastgrad.set_num_threads(n),
            lambda i, y, q=q, opt=opt, rng=rng: fastgrad.train_step(q, i, y, opt, dropout=0.5,
                                                                      rng=rng))
    try:
        import torch
        from fastgrad.torch_twin import TorchTwin
    except ImportError:
        return out
    import warnings
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    torch_default = torch.get_num_threads()
    for label, n in (("1 thread", 1), (f"default ({torch_default})", torch_default)):
        twin = TorchTwin(p, "adagrad", 0.01, eps=1e-6, dropout=0.5)
        out[f"torch {label}"] = (lambda n=n: torch.set_num_threads(n), twin.step)
    return out


def run_round(calls: dict, idx, y, rng) -> dict:
    """States/s of each method trained for ~ROUND_S, in turn."""
    rates = {}
    for name, (setup, step) in calls.items():
        setup()
        time.sleep(SETTLE_S)   # no other pool's spinning workers billed to this one
        states, start = 0, time.perf_counter()
        while time.perf_counter() - start < ROUND_S:
            b = rng.integers(0, len(y), BATCH)
            step(idx[b], y[b])
            states += BATCH
        rates[name] = states / (time.perf_counter() - start)
    return rates


def main(args) -> int:
    name, p, idx, y = workload(args.config[0] if args.config_given else None)
    n_default = fastgrad.get_num_threads()
    calls = methods(p, n_default)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    busy_core = cores[-1]
    rng = np.random.default_rng(0)
    print(f"fastgrad bench --contention: {name} states, batch {BATCH}, AdaGrad, dropout 0.5, "
          f"float32; {len(cores)} usable cores; {args.rounds} rounds of ~{ROUND_S:g} s per "
          f"method; contended = one process spinning on core {busy_core}")
    for warm in calls.values():   # workspaces and pools made before any timing
        warm[0]()
        warm[1](idx[:BATCH], y[:BATCH])
    results: dict = {}
    for condition in ("quiet", "contended"):
        busy = start_busy_process(busy_core, BUSY_LIMIT_S) if condition == "contended" else None
        try:
            if busy is not None:
                time.sleep(0.5)   # the scheduler has placed it
            for _ in range(args.rounds):
                for method, rate in run_round(calls, idx, y, rng).items():
                    results.setdefault((condition, method), []).append(rate)
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    fastgrad.set_num_threads(None)
    print("| method | quiet states/s median (worst) | contended median (worst) | "
          "contended / quiet |")
    print("|---|---|---|---|")
    for method in calls:
        q, c = results[("quiet", method)], results[("contended", method)]
        print(f"| {method} | {np.median(q):,.0f} ({min(q):,.0f}) | {np.median(c):,.0f} "
              f"({min(c):,.0f}) | {np.median(c) / np.median(q):.2f} |")
    for lib in ("fastgrad", "torch"):
        one = [m for m in calls if m.startswith(lib) and "1 thread" in m]
        default = [m for m in calls if m.startswith(lib) and "default" in m]
        if one and default:
            for condition in ("quiet", "contended"):
                d, o = results[(condition, default[0])], results[(condition, one[0])]
                print(f"{lib} {condition}: default / 1 thread = {np.median(d) / np.median(o):.2f}x "
                      f"median, {min(d) / np.median(o):.2f}x worst round")
    return 0
