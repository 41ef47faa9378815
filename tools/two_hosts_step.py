"""Distributed steps over a link slower than memory: run under tools/two_hosts.sh run.

For each config (skewed indices, ROWS rows per rank, float32, AdaGrad, 1 thread), each
rank first steps alone on its own shard at the same time as the other (the fair
one-process baseline: both "hosts" busy), then the ranks step together with each
exchange of the embedding gradient forced in turn (allgather, union, dense) and with
the automatic choice. Printed (rank 0), per exchange: the median step, its compute and
exchange parts, the bytes this rank sent on veth0 per step (measured) next to the byte
model's prediction (fastgrad._row_exchange.exchange_costs, plus the dense allreduce),
and the efficiency (alone / together). Before timing, one step of each exchange is
checked against one process stepping on the concatenated global batch (float64).

    tools/two_hosts.sh run python tools/two_hosts_step.py --label 1gbit [--json OUT]
"""

import argparse
import json
import statistics
import time

import numpy as np
from mpi4py import MPI

import fastgrad
import fastgrad.distributed as fd
from fastgrad import bench
from fastgrad._row_exchange import exchange_costs

EXCHANGES = ("allgather", "union", "dense", "auto")


def tx_bytes() -> int:
    with open("/sys/class/net/veth0/statistics/tx_bytes") as f:
        return int(f.read())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="?")
    ap.add_argument("--configs", default="parser,cm2014")
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    fastgrad.set_num_threads(1)
    rows = []
    for name in args.configs.split(","):
        config = bench.get_config(name)
        big = bench.Config(name, args.rows * size, config.embed_dim, config.hidden,
                           config.n_classes, config.slot_groups)
        idx, y = bench.make_batch(big, "skewed", seed=1)
        lo, hi = fd.shard_bounds(len(idx), rank, size)

        def fresh(dtype=np.float32):
            p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                                     config.hidden, config.n_classes, dtype=dtype, seed=0)
            return p, fastgrad.AdaGrad(p, lr=0.01)

        # one process on the concatenated batch (float64): what every exchange must equal
        ref, ref_opt = fresh(np.float64)
        fastgrad.train_step(ref, idx, y, ref_opt)
        agree = {}
        for exchange in EXCHANGES:
            p, opt = fresh(np.float64)
            fd.train_step(p, idx[lo:hi], y[lo:hi], opt, comm, exchange=exchange)
            worst = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-30))
                        for a, b in zip(p, ref))
            agree[exchange] = comm.allreduce(worst, op=MPI.MAX)
        # alone: each rank on its own shard, both at once
        p, opt = fresh()
        comm.Barrier()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            fastgrad.train_step(p, idx[lo:hi], y[lo:hi], opt)
            times.append(time.perf_counter() - t0)
        alone = comm.allreduce(statistics.median(times[2:]), op=MPI.MAX)
        for exchange in EXCHANGES:
            p, opt = fresh()
            times, reports = [], []
            comm.Barrier()
            sent = tx_bytes()
            for _ in range(args.steps):
                t0 = time.perf_counter()
                fd.train_step(p, idx[lo:hi], y[lo:hi], opt, comm, exchange=exchange)
                times.append(time.perf_counter() - t0)
                reports.append(fd.last_step())
            sent = (tx_bytes() - sent) / args.steps
            step = comm.allreduce(statistics.median(times[2:]), op=MPI.MAX)
            touched = comm.allgather(int(np.unique(idx[lo:hi]).size))
            model = exchange_costs(size, config.n_vocab, config.embed_dim, 4, touched)
            last = reports[-1]
            row = {"link": args.label, "config": name, "exchange": exchange,
                   "chosen": last.exchange, "step_ms": 1e3 * step, "alone_ms": 1e3 * alone,
                   "efficiency": alone / step,
                   "compute_ms": 1e3 * statistics.median(r.seconds_compute for r in reports[2:]),
                   "exchange_ms": 1e3 * statistics.median(r.seconds_exchange
                                                          for r in reports[2:]),
                   "sent_MB": sent / 1e6,
                   "model_MB": (2 * (size - 1) / size * last.bytes_dense
                                + model[last.exchange]) / 1e6,
                   "max_rel_diff_vs_one_process": agree[exchange]}
            rows.append(row)
    if rank == 0:
        print(f"| link | config | exchange | chosen | step ms | alone ms | efficiency | "
              f"compute ms | exchange ms | sent MB/step | model MB/step | vs 1 process |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['link']} | {r['config']} | {r['exchange']} | {r['chosen']} | "
                  f"{r['step_ms']:.1f} | {r['alone_ms']:.1f} | {r['efficiency']:.2f} | "
                  f"{r['compute_ms']:.1f} | {r['exchange_ms']:.1f} | {r['sent_MB']:.2f} | "
                  f"{r['model_MB']:.2f} | {r['max_rel_diff_vs_one_process']:.1e} |")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
