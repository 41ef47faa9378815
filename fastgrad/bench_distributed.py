"""``fastgrad bench --distributed``: data-parallel steps timed under mpiexec.

Run as ``mpiexec -n P fastgrad bench --distributed`` (each rank one thread by
default: the launcher's ranks share the host's cores). For each config, round
after round (so every measurement sees the same machine noise), it times:

* ``1x1``: rank 0 alone, one thread, on N rows (the other ranks wait, asleep);
* ``1xP``: rank 0 alone, P threads, on the global batch of P·N rows;
* ``Px1 weak``: P ranks of one thread, N rows each (global batch P·N);
* ``Px1 strong``: P ranks of one thread on a global batch of N rows (N/P each);
* ``independent``: every rank alone on its own N rows, all at the same time (P
  independent processes, every core busy: the fair baseline of a distributed step).

and reports the median step, compute and exchange time per step, bytes moved,
and parallel efficiency: weak T(1x1, N) / T(Px1, N each); fair T(independent) /
T(Px1, N each); strong T(1x1, N) / (P · T(Px1, N/P each)); then the weak step phase
by phase (fastgrad.distributed.STEP_PHASES).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

import fastgrad
import fastgrad.distributed as fd
from fastgrad import bench


def _idle_wait(comm) -> None:
    """Wait at a barrier without spinning (MPI's blocking barrier busy-polls a core)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.0005)


def _alone(comm, work):
    """Run work() on rank 0 while the others sleep; rank 0's median step, broadcast."""
    result = work() if comm.Get_rank() == 0 else None
    _idle_wait(comm)
    return comm.bcast(result, root=0)


def _steps(step, n_steps: int) -> list[float]:
    times = []
    for _ in range(n_steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def run(comm, configs, rows_per_rank: int, rounds: int, steps: int, dtype) -> list[dict]:
    from mpi4py import MPI
    size, rank = comm.Get_size(), comm.Get_rank()
    results = []
    for name in configs:
        config = bench.get_config(name)
        variant = bench.variants_of(name, ["skewed"])[0]
        big = bench.Config(config.name, rows_per_rank * size, config.embed_dim, config.hidden,
                           config.n_classes, config.slot_groups)
        idx, y = bench.make_batch(big, variant, seed=1)
        lo, hi = fd.shard_bounds(len(idx), rank, size)
        slo, shi = fd.shard_bounds(rows_per_rank, rank, size)
        p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                                 config.hidden, config.n_classes, dtype=dtype, seed=0)
        opt = fastgrad.AdaGrad(p, lr=0.01)
        fd.broadcast(p, opt, comm)
        local = fastgrad.Params(*(a.copy() for a in p))
        local_opt = fastgrad.AdaGrad(local, lr=0.01)

        def one_process(rows, threads):
            def work():
                fastgrad.set_num_threads(threads)
                try:
                    return statistics.median(_steps(
                        lambda: fastgrad.train_step(local, idx[:rows], y[:rows], local_opt),
                        steps))
                finally:
                    fastgrad.set_num_threads(1)
            return work

        def distributed(a, b):
            reports = []

            def step():
                fd.train_step(p, idx[a:b], y[a:b], opt, comm)
                reports.append(fd.last_step())
            comm.Barrier()
            times = _steps(step, steps)
            worst = comm.allreduce(statistics.median(times), op=MPI.MAX)
            return worst, reports

        def side_by_side():
            """Every rank steps alone on its own rows at the same time (the fair
            baseline: as many independent processes as ranks, all cores busy)."""
            local_p = fastgrad.Params(*(a.copy() for a in p))
            local_o = fastgrad.AdaGrad(local_p, lr=0.01)
            comm.Barrier()
            times = _steps(lambda: fastgrad.train_step(local_p, idx[lo:hi], y[lo:hi], local_o),
                           steps)
            return comm.allreduce(statistics.median(times), op=MPI.MAX)

        samples = {"1x1": [], f"1x{size}": [], "weak": [], "strong": [], "independent": []}
        reports = {"weak": [], "strong": []}
        fastgrad.set_num_threads(1)
        for _ in range(rounds + 1):   # the first round warms up and is dropped
            r1 = _alone(comm, one_process(rows_per_rank, 1))
            rp = _alone(comm, one_process(rows_per_rank * size, size))
            independent = side_by_side()
            weak, weak_reports = distributed(lo, hi)
            strong, strong_reports = distributed(slo, shi)
            for key, value in (("1x1", r1), (f"1x{size}", rp), ("weak", weak),
                               ("strong", strong), ("independent", independent)):
                samples[key].append(value)
            reports["weak"] += weak_reports
            reports["strong"] += strong_reports
        medians = {k: statistics.median(v[1:]) for k, v in samples.items()}
        row = {"config": name, "ranks": size, "rows_per_rank": rows_per_rank,
               **{f"{k}_ms": 1e3 * v for k, v in medians.items()},
               "weak_efficiency": medians["1x1"] / medians["weak"],
               "fair_efficiency": medians["independent"] / medians["weak"],
               "strong_efficiency": medians["1x1"] / (size * medians["strong"]),
               "ranks_vs_threads": medians[f"1x{size}"] / medians["weak"]}
        for kind in ("weak", "strong"):
            last = reports[kind][len(reports[kind]) // 2:]
            row[f"{kind}_compute_ms"] = 1e3 * statistics.median(r.seconds_compute for r in last)
            row[f"{kind}_exchange_ms"] = 1e3 * statistics.median(r.seconds_exchange
                                                                  for r in last)
            row[f"{kind}_exchange"] = last[-1].exchange
            row[f"{kind}_bytes_dense"] = last[-1].bytes_dense
            row[f"{kind}_bytes_embedding"] = last[-1].bytes_embedding
            row[f"{kind}_touched_rows"] = last[-1].touched_rows
            row[f"{kind}_phases_ms"] = {
                phase: 1e3 * statistics.median(r.phases[phase] for r in last)
                for phase in fd.STEP_PHASES}
        results.append(row)
    return results


def format_table(results) -> str:
    lines = []
    for r in results:
        p = r["ranks"]
        lines.append(
            f"{r['config']:>9} | N={r['rows_per_rank']}/rank | 1x1 {r['1x1_ms']:.2f} ms | "
            f"1x{p} on {p}N {r[f'1x{p}_ms']:.2f} ms | {p}x1 weak {r['weak_ms']:.2f} ms "
            f"(compute {r['weak_compute_ms']:.2f}, exchange {r['weak_exchange_ms']:.2f}; "
            f"{r['weak_exchange']}, dense {r['weak_bytes_dense'] / 1e6:.2f} MB + L "
            f"{r['weak_bytes_embedding'] / 1e6:.2f} MB sent) eff {r['weak_efficiency']:.2f}, "
            f"fair eff {r['fair_efficiency']:.2f} ({p} independent processes "
            f"{r['independent_ms']:.2f} ms) | "
            f"{p}x1 vs 1x{p}: {r['ranks_vs_threads']:.2f}x | "
            f"strong {r['strong_ms']:.2f} ms eff {r['strong_efficiency']:.2f}")
    lines += ["", "weak-scaling step, phase by phase (ms, medians of rank 0's steps):",
              "| config | " + " | ".join(fd.STEP_PHASES) + " | sum | exchange, bytes sent |",
              "|---|" + "---|" * (len(fd.STEP_PHASES) + 2)]
    for r in results:
        phases = r["weak_phases_ms"]
        lines.append(f"| {r['config']} | " + " | ".join(f"{phases[k]:.2f}" for k in fd.STEP_PHASES)
                     + f" | {sum(phases.values()):.2f} | {r['weak_exchange']}, dense "
                     f"{r['weak_bytes_dense'] / 1e6:.2f} MB + L "
                     f"{r['weak_bytes_embedding'] / 1e6:.2f} MB |")
    return "\n".join(lines)


def main(args) -> int:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    dtype = np.dtype(args.dtype)
    results = run(comm, args.config, args.rows_per_rank, args.rounds, args.steps, dtype)
    if comm.Get_rank() == 0:
        print(f"fastgrad bench --distributed: {comm.Get_size()} ranks, {args.dtype}, "
              f"{MPI.Get_library_version().splitlines()[0]}")
        print(format_table(results))
        if args.json:
            import json
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    return 0
