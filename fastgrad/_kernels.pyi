"""Type stubs of the compiled kernels (fastgrad._kernels)."""

from typing import Any, Sequence

import numpy as np
import numpy.typing as npt

MODE_PROBA: int
MODE_LOSS: int
MODE_GRAD: int
MODE_UPDATE: int
PATH_DENSE: int
PATH_FACTORED: int
RULE_SGD: int
RULE_MOMENTUM: int
RULE_ADAGRAD: int
RULE_ADAM: int
OPENMP: bool
RADIX: int

PHASES: tuple[str, ...]

def openmp_max_threads() -> int: ...
def set_phase_timing(on: bool) -> None: ...
def phase_timing() -> dict[str, float]: ...
def group_slots(idx: npt.NDArray[np.int64], n: int, n_slots: int,
                tables: npt.NDArray[np.int32], local_row: npt.NDArray[np.int64],
                key_count: npt.NDArray[np.int64], slot_key: npt.NDArray[np.int64],
                key_row: npt.NDArray[np.int64],
                key_ptr: npt.NDArray[np.int64], occurrences: npt.NDArray[np.int64],
                pos: npt.NDArray[np.int64], slot_offsets: npt.NDArray[np.int64],
                n_threads: int) -> int: ...
def copy_indices(src: npt.NDArray[np.integer[Any]], dst: npt.NDArray[np.int64],
                 upper: int, n_threads: int = 1) -> tuple[int, int]: ...
def run_step(mode: int, path: int, L: npt.NDArray[np.floating[Any]],
             W: npt.NDArray[np.floating[Any]], b1: npt.NDArray[np.floating[Any]],
             U: npt.NDArray[np.floating[Any]], b2: npt.NDArray[np.floating[Any]],
             idx: npt.NDArray[np.int64], y: npt.NDArray[np.int64], n: int,
             ws: Any, n_threads: int, rule: Any = None,
             state1: Sequence[npt.NDArray[np.floating[Any]]] | None = None,
             state2: Sequence[npt.NDArray[np.floating[Any]]] | None = None,
             keep: float = 1.0, mean_over: float = 0.0
             ) -> tuple[float, int, npt.NDArray[np.floating[Any]] | None]: ...
def precomputed_proba(L: npt.NDArray[np.floating[Any]], W: npt.NDArray[np.floating[Any]],
                      b1: npt.NDArray[np.floating[Any]], U: npt.NDArray[np.floating[Any]],
                      b2: npt.NDArray[np.floating[Any]], idx: npt.NDArray[np.int64], n: int,
                      cache_pos: npt.NDArray[np.int32], table: npt.NDArray[np.floating[Any]],
                      ws: Any, n_threads: int) -> None: ...
def apply_update(rule: Any, L: npt.NDArray[np.floating[Any]], W: npt.NDArray[np.floating[Any]],
                 b1: npt.NDArray[np.floating[Any]], U: npt.NDArray[np.floating[Any]],
                 b2: npt.NDArray[np.floating[Any]], rows: npt.NDArray[np.int64],
                 values: npt.NDArray[np.floating[Any]], dW: npt.NDArray[np.floating[Any]],
                 db1: npt.NDArray[np.floating[Any]], dU: npt.NDArray[np.floating[Any]],
                 db2: npt.NDArray[np.floating[Any]],
                 state1: Sequence[npt.NDArray[np.floating[Any]]] | None,
                 state2: Sequence[npt.NDArray[np.floating[Any]]] | None,
                 n_threads: int) -> None: ...
def merge_rows(rows: npt.NDArray[np.int64], values: npt.NDArray[np.floating[Any]],
               table: npt.NDArray[np.int32], out_rows: npt.NDArray[np.int64],
               out_values: npt.NDArray[np.floating[Any]]) -> int: ...
