"""The dense gradient's sum over the ranks of one host: MPI Allreduce against a
shared-memory window (each rank copies its gradient into its own segment, a
barrier, every rank adds the segments in rank order, a barrier before anyone
writes again). A measurement for issue #26, not used by fastgrad.distributed:

    mpiexec -n 2 python tools/shm_allreduce.py [--entries 495000] [--repeats 300]

Prints the median milliseconds of each and their largest difference.
"""

import argparse
import time

import numpy as np
from mpi4py import MPI


def median_ms(call, comm, repeats):
    for _ in range(20):
        call()
    comm.Barrier()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=495_000,
                    help="float32 entries (the cm2014 config's 1.98 MB)")
    ap.add_argument("--repeats", type=int, default=300)
    args = ap.parse_args()
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    if node.Get_size() != comm.Get_size():
        raise SystemExit("every rank must be on one host")
    n, size = args.entries, comm.Get_size()
    grad = np.random.default_rng(rank).random(n, dtype=np.float32)
    out = np.empty(n, np.float32)

    def allreduce():
        out[:] = grad
        comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)

    win = MPI.Win.Allocate_shared(size * n * 4 if node.Get_rank() == 0 else 0, 4, comm=node)
    buf, _ = win.Shared_query(0)
    segments = np.ndarray(buffer=buf, dtype=np.float32, shape=(size, n))
    win.Lock_all()

    def shared():
        segments[rank][:] = grad    # a kernel could write its gradient here directly
        win.Sync()
        node.Barrier()
        win.Sync()
        np.copyto(out, segments[0])
        for r in range(1, size):
            np.add(out, segments[r], out=out)
        node.Barrier()              # double-buffered segments would not need this one

    a, b = median_ms(allreduce, comm, args.repeats), median_ms(shared, comm, args.repeats)
    reference = grad.copy()
    comm.Allreduce(MPI.IN_PLACE, reference, op=MPI.SUM)
    shared()
    if rank == 0:
        print(f"{size} ranks, {n} float32: Allreduce {a:.3f} ms, shared window {b:.3f} ms; "
              f"largest difference {np.abs(out - reference).max():.2e}")
    win.Unlock_all()
    win.Free()


if __name__ == "__main__":
    main()
