"""Where a training step's time goes, phase by phase, at each thread count.

    python tools/phase_profile.py [--config parser,cm2014] [--variant uniform,skewed]
                                  [--threads 1,2] [--path auto] [--steps 20]
                                  [--rows N] [--json PATH]

Each row: ms per sgd_step spent in each phase of the kernel (fastgrad._kernels.PHASES,
timed by its phase clock), then, timed apart, what the Python side does around the
kernel: grouping the batch by (slot, row), validating and copying the indices, and
holding BLAS at one thread; the rest of the step is Python. --rows N: the batch's
first N rows only (the parser command's batches are 256 rows). Needs a build with OpenMP.
"""

import argparse
import json
import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastgrad
from fastgrad import _kernels, _step, _threads, bench


def profile(config, variant, n_threads, path, steps, n_rows=None):
    fastgrad.set_num_threads(n_threads)
    threadpool_limits(n_threads)
    idx, y = bench.make_batch(config, variant)
    idx, y = np.ascontiguousarray(idx[:n_rows]), np.ascontiguousarray(y[:n_rows])
    p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                             config.hidden, config.n_classes, dtype=np.float32)
    prepared = _step.prepare(p, idx, y, path, writeable=True, backward=True)
    for _ in range(3):
        fastgrad.sgd_step(p, idx, y, 1e-3, path=path)
    _kernels.set_phase_timing(True)
    t0 = time.perf_counter()
    for _ in range(steps):
        fastgrad.sgd_step(p, idx, y, 1e-3, path=path)
    total = (time.perf_counter() - t0) / steps
    phases = {k: v / steps for k, v in _kernels.phase_timing().items()}
    _kernels.set_phase_timing(False)
    phases["group (slot, row) keys"] = 0.0
    if prepared.path == "factored":
        phases["group (slot, row) keys"] = seconds_per_call(
            lambda: prepared.ws.group_slots(n_threads), steps)
    phases["validate, copy indices"] = seconds_per_call(
        lambda: _step.prepare_batch(p, idx, y, writeable=True), steps)
    phases["BLAS thread toggles"] = seconds_per_call(toggle_blas_threads, steps)
    phases["rest (Python)"] = total - sum(phases.values())
    return prepared.path, total, phases


def seconds_per_call(call, repeats):
    t0 = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - t0) / repeats


def toggle_blas_threads():
    with _threads._single_threaded_blas:   # what every kernel call does around the kernel
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="parser,cm2014", help="also treebank (real states)")
    ap.add_argument("--variant", default="uniform,skewed")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--path", default="auto")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rows", type=int, help="the batch's first N rows only")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON (ms)")
    args = ap.parse_args()
    rows = []
    for c in args.config.split(","):
        for v in bench.variants_of(c, args.variant.split(",")):   # treebank: its real states
            for t in (int(s) for s in args.threads.split(",")):
                path, total, phases = profile(bench.get_config(c), v, t, args.path, args.steps,
                                             args.rows)
                rows.append((f"{c} {v} {t}T {path}", total, phases))
    names = list(rows[0][2])
    width = max(len(n) for n in names)
    print(f"{'ms per step':{width}s}  " + "  ".join(f"{r[0]:>24s}" for r in rows))
    print(f"{'total':{width}s}  " + "  ".join(f"{r[1] * 1e3:24.3f}" for r in rows))
    for name in names:
        print(f"{name:{width}s}  " + "  ".join(f"{r[2][name] * 1e3:24.3f}" for r in rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"scenario": label, "total": total * 1e3,
                        "phases": {k: v * 1e3 for k, v in phases.items()}}
                       for label, total, phases in rows], f, indent=1)


if __name__ == "__main__":
    main()
