"""The fair efficiency of fit itself over MPI (issue #26), where `fastgrad bench --distributed`
times train_step on one batch again and again:

    mpiexec -n 2 python tools/fit_efficiency.py [--steps 60] [--repeats 4]

fit over 2 ranks (2048-row batches of real parser states, 1024 a rank, shuffled) against
two independent one-process fits of 1024-row batches started together (both cores busy);
AdaGrad, float32, one thread a rank. Prints the medians over the repeats.
"""

import argparse
import time

import numpy as np
from mpi4py import MPI

import fastgrad
from fastgrad import bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    fastgrad.set_num_threads(1)
    config, states, moves = bench.treebank_data()
    per_rank = 1024
    rows = per_rank * size * args.steps
    idx, y = np.ascontiguousarray(states[:rows]), np.ascontiguousarray(moves[:rows])
    mine = slice(rank * rows // size, (rank + 1) * rows // size)

    def model():
        p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                                 config.hidden, config.n_classes, dtype=np.float32, seed=0)
        return p, fastgrad.AdaGrad(p, lr=0.01)

    together, alone = [], []
    for repeat in range(args.repeats):
        p, opt = model()
        comm.Barrier()
        t0 = time.perf_counter()
        fastgrad.fit(p, idx, y, opt, batch_size=per_rank * size, comm=comm, shuffle_seed=repeat)
        together.append((time.perf_counter() - t0) / args.steps * 1e3)
        p, opt = model()
        comm.Barrier()
        t0 = time.perf_counter()
        fastgrad.fit(p, idx[mine], y[mine], opt, batch_size=per_rank, shuffle_seed=repeat)
        alone.append(max(comm.allgather((time.perf_counter() - t0) / args.steps * 1e3)))
    if rank == 0:
        d, i = np.median(together), np.median(alone)
        print(f"fit, {size} ranks: {d:.2f} ms a step; {size} independent: {i:.2f} ms; "
              f"fair efficiency {i / d:.2f} (each repeat: {np.round(together, 2).tolist()}, "
              f"{np.round(alone, 2).tolist()})")


if __name__ == "__main__":
    main()
