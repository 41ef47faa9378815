"""How the embedding gradient's rows travel between the ranks of a data-parallel step
(fastgrad.distributed): the byte model that picks an exchange, the exchanges
themselves over MPI, and a rank's buffers for them, reused from step to step.
"""

from __future__ import annotations

import numpy as np

from fastgrad import _kernels
from fastgrad._types import Shape
from fastgrad._workspace import dense_gradient_buffer

__all__ = ["EXCHANGES", "COLLECTIVE_BYTES", "choose_exchange", "Buffers", "buffers_for",
           "exchange_rows"]

EXCHANGES = ("auto", "allgather", "union", "dense")
# The latency of one collective, as bytes moved in the same time: MPICH's shared
# memory allreduce took ~4 µs for 8 KB and ~216 µs for 2 MB on 2 ranks
# (shared/notes/mpi-scouting.md §2), ~10 GB/s after ~3 µs of latency: ~32 KB.
COLLECTIVE_BYTES = 32 << 10


def choose_exchange(size: int, vocab: int, embed_dim: int, itemsize: int,
                    touched: list[int]) -> str:
    """The embedding gradient's exchange that moves the fewest bytes per rank.

    touched: the number of distinct rows each rank's shard touched. A ring
    allreduce moves about 2 (P-1)/P times its buffer per rank, an allgather
    (P-1)/P times the gathered total:
      allgather  (rows as int64 + values) of every rank
      union      a |V|-byte bitmap, then the union's rows (at most min(|V|, Σk))
      dense      the whole |V| x (d+1) table (values and a touched flag)
    and each collective's latency counts as COLLECTIVE_BYTES.

    Parameters
    ----------
    size, vocab, embed_dim, itemsize : int
        Ranks, |V|, d and the bytes of one value.
    touched : list of int
        Distinct rows each rank's shard touched.

    Returns
    -------
    str
        One of EXCHANGES: "allgather", "union" or "dense".
    """
    if size == 1:
        return "allgather"
    costs = exchange_costs(size, vocab, embed_dim, itemsize, touched)
    return min(costs, key=lambda k: (costs[k], EXCHANGES.index(k)))


def exchange_costs(size: int, vocab: int, embed_dim: int, itemsize: int,
                   touched: list[int]) -> dict:
    """The byte model behind choose_exchange: bytes per rank of each exchange (its
    collectives' latency counted as COLLECTIVE_BYTES each)."""
    share = (size - 1) / size
    total = sum(touched)
    row_bytes = embed_dim * itemsize
    return {   # allgather and union take two collectives, dense one
        "allgather": share * total * (8 + row_bytes) + 2 * COLLECTIVE_BYTES,
        "union": 2 * share * (vocab + min(vocab, total) * row_bytes) + 2 * COLLECTIVE_BYTES,
        "dense": 2 * share * vocab * (row_bytes + itemsize) + COLLECTIVE_BYTES,
    }


class Buffers:
    """A rank's buffers for one model shape, reused from step to step."""

    def __init__(self, shape: Shape):
        self.shape = shape
        # an empty shard's gradients
        self.zero_dense, self.zero_views = dense_gradient_buffer(shape)
        self.zero_dense.fill(0)
        self.values = np.empty((0, shape.embed_dim), shape.dtype)
        self.merged_rows = np.empty(0, np.int64)
        self.merged_values = np.empty((0, shape.embed_dim), shape.dtype)
        self.gathered_rows = np.empty(0, np.int64)
        self.gathered_values = np.empty((0, shape.embed_dim), shape.dtype)
        self.table = np.full(shape.n_vocab, -1, np.int32)
        self.bitmap = np.zeros(shape.n_vocab, np.uint8)
        self.dense_L: np.ndarray | None = None
        self.draws = np.empty((0, shape.hidden), shape.dtype)
        self.stats = np.zeros(3, np.float64)

    @staticmethod
    def grown(buf: np.ndarray, rows: int) -> np.ndarray:
        """buf with room for at least `rows` rows (grown by a quarter when it must grow)."""
        if buf.shape[0] >= rows:
            return buf
        return np.empty((rows + rows // 4 + 16,) + buf.shape[1:], buf.dtype)


_buffers: dict = {}


def buffers_for(shape: Shape) -> Buffers:
    buf = _buffers.get(shape)
    if buf is None:
        if len(_buffers) >= 4:
            _buffers.pop(next(iter(_buffers)))
        buf = _buffers[shape] = Buffers(shape)
    return buf


def exchange_rows(comm, MPI, exchange: str, buf: Buffers, my_rows: np.ndarray,
                   my_values: np.ndarray, touched: list[int]):
    """The summed embedding gradient (rows, values) of the global batch, on every rank.

    Returns (rows, values, bytes this rank sent).
    """
    d = buf.shape.embed_dim
    if exchange == "allgather":
        total = sum(touched)
        buf.gathered_rows = rows_in = buf.grown(buf.gathered_rows, total)
        buf.gathered_values = values_in = buf.grown(buf.gathered_values, total)
        comm.Allgatherv(my_rows, [rows_in, touched])
        comm.Allgatherv(my_values, [values_in, [t * d for t in touched]])
        buf.merged_rows = out_rows = buf.grown(buf.merged_rows, total)
        buf.merged_values = out_values = buf.grown(buf.merged_values, total)
        n = _kernels.merge_rows(rows_in[:total], values_in[:total], buf.table, out_rows,
                                out_values)
        return out_rows[:n], out_values[:n], my_rows.nbytes + my_values.nbytes
    if exchange == "union":
        bitmap = buf.bitmap
        bitmap[my_rows] = 1
        comm.Allreduce(MPI.IN_PLACE, bitmap, op=MPI.BOR)
        union = np.flatnonzero(bitmap)
        bitmap.fill(0)
        buf.merged_values = values = buf.grown(buf.merged_values, len(union))
        out = values[:len(union)]
        out.fill(0)
        out[np.searchsorted(union, my_rows)] = my_values
        comm.Allreduce(MPI.IN_PLACE, out, op=MPI.SUM)
        return union, out, bitmap.nbytes + out.nbytes
    if exchange == "dense":
        shape = buf.shape
        if buf.dense_L is None:
            buf.dense_L = np.empty((shape.n_vocab, d + 1), shape.dtype)
        table = buf.dense_L
        table.fill(0)
        table[my_rows, :d] = my_values
        table[my_rows, d] = 1   # touched by this rank: the sum counts the ranks
        comm.Allreduce(MPI.IN_PLACE, table, op=MPI.SUM)
        rows = np.flatnonzero(table[:, d])
        return rows, np.ascontiguousarray(table[rows, :d]), table.nbytes
    raise ValueError(f"exchange must be one of {EXCHANGES}, got {exchange!r}")
