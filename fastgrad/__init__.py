"""fastgrad: Cython kernels that train the embedding-window classifier on the CPU.

The network (Chen & Manning 2014): x = [L[w_0] ... L[w_{m-1}]], h = relu(xW + b1),
ŷ = softmax(hU + b2), J = mean cross-entropy. See README.md for the derivation.
"""

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
from fastgrad._evaluate import evaluate
from fastgrad._fit import EpochStats, fit
from fastgrad import reference
from fastgrad._gradcheck import gradcheck
from fastgrad._io import ModelFileError, load, save
from fastgrad._info import show_config

__all__ = [
    "__version__", "Params", "Gradients", "SparseRows", "init_params", "predict_proba",
    "predict", "loss", "loss_and_grad", "sgd_step", "gradcheck", "reference",
    "set_num_threads", "get_num_threads", "choose_path", "show_config",
    "SGD", "AdaGrad", "Adam", "train_step", "Precomputed", "precompute",
    "EpochStats", "evaluate", "fit", "save", "load", "ModelFileError",
]
