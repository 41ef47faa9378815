"""fastgrad: Cython kernels that train the embedding-window classifier on the CPU.

The network (Chen & Manning 2014): x = [L[w_0] ... L[w_{m-1}]], h = relu(xW + b1),
ŷ = softmax(hU + b2), J = mean cross-entropy. See README.md for the derivation.
"""

import os as _os

# libgomp reads OMP_WAIT_POLICY once, when it is loaded (with the kernels, below).
# Its default spins at every barrier; when another process holds a core, the
# spinning thread steals the time of the one it waits for. Measured here with
# one busy core: two-thread steps of 8 ms median and 137 ms worst spinning,
# 5.4 ms and 12 ms passive, and no difference on an idle machine. So the kernels'
# OpenMP starts passive unless the user chose otherwise; the variable is removed
# again at once, so libraries loaded later keep their own defaults.
_WAIT_POLICY_SET = "OMP_WAIT_POLICY" not in _os.environ
if _WAIT_POLICY_SET:
    _os.environ["OMP_WAIT_POLICY"] = "passive"
try:
    from fastgrad import _kernels  # noqa: F401  (loads libgomp)
finally:
    if _WAIT_POLICY_SET:
        del _os.environ["OMP_WAIT_POLICY"]

from fastgrad._version import __version__
from fastgrad._api import (
    Gradients,
    Params,
    SparseRows,
    choose_path,
    get_num_threads,
    init_params,
    loss,
    loss_and_grad,
    predict,
    predict_proba,
    set_num_threads,
    sgd_step,
)
from fastgrad._optim import SGD, AdaGrad, Adam, train_step
from fastgrad._precompute import Precomputed, precompute
from fastgrad._fit import EpochStats, evaluate, fit
from fastgrad import reference
from fastgrad._gradcheck import gradcheck
from fastgrad._info import show_config

__all__ = [
    "__version__", "Params", "Gradients", "SparseRows", "init_params", "predict_proba",
    "predict", "loss", "loss_and_grad", "sgd_step", "gradcheck", "reference",
    "set_num_threads", "get_num_threads", "choose_path", "show_config",
    "SGD", "AdaGrad", "Adam", "train_step", "Precomputed", "precompute",
    "EpochStats", "evaluate", "fit",
]
