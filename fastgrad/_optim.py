"""Optimizers and the fused training step.

An optimizer is a small object that holds its state arrays, shaped like the
parameters; ``train_step`` runs forward, backward and the optimizer's update in
one kernel call (``MODE_UPDATE``): the embedding rows a batch touched are
summed and updated one at a time together with their own state rows, so no
gradient array for L is ever built, and L2 is added to each gradient inside
that same update loop.

Conventions (so results compare with the tools users know):

* SGD: torch.optim.SGD (dampening 0, no Nesterov): b = μ b + g, p -= lr b.
* AdaGrad: torch.optim.Adagrad: G += g², p -= lr g / (√G + eps); with
  ``eps_inside_sqrt=True``, CoreNLP's p -= lr g / √(G + eps).
* Adam: torch.optim.Adam for W, b1, U, b2; torch.optim.SparseAdam for L.
* Lazy rows of L: a row's state changes only on steps whose batch touches it.
  For AdaGrad and plain SGD this is exactly the dense algorithm (an untouched
  row has g = 0 and would not move). For momentum and Adam it is the lazy
  (sparse) variant: an untouched row neither moves nor decays its buffers,
  as with torch.optim.SparseAdam.
* L2 (weight decay, added to the gradient as l2·p, like torch's weight_decay):
  applied to W, b1, U, b2 every step and to the touched rows of L only, at
  the step that touches them (Chen & Manning regularise the embeddings a batch
  used; a row not seen is not decayed). The returned loss is the data loss,
  without the penalty.
"""

from __future__ import annotations

import math
import numpy as np

from fastgrad import _kernels
from fastgrad._step import (
    Prepared, UpdateRule, draw_dropout, prepare, refuse_nonfinite_step, run_kernel,
)
from fastgrad._threads import _ParamsWriteLock
from fastgrad._types import Params, Shape
from fastgrad._validate import check_dropout, check_params, check_real

__all__ = ["SGD", "AdaGrad", "Adam", "train_step"]


def _check_eps(eps) -> float:
    # eps = 0 would divide 0 by 0 wherever a gradient entry has always been 0
    eps = check_real(eps, "eps")
    if eps == 0:
        raise ValueError("eps must be > 0, got 0.0")
    return eps


def _zeros_like_params(p: Params) -> Params:
    return Params(*(np.zeros_like(a, order="C") for a in p))


class Optimizer:
    """Base of the optimizers: hyperparameters, state arrays and a step count.

    ``state1`` / ``state2`` are Params-shaped arrays (or None when the rule keeps
    none): momentum buffers, AdaGrad's sums of squares, Adam's first and second
    moments. ``steps`` counts the updates applied (a refused step is not counted).
    """

    _kind: int = _kernels.RULE_SGD
    state1: Params | None = None
    state2: Params | None = None

    def __init__(self, p, lr: float):
        self._shape: Shape = check_params(p, writeable=True)
        self.lr = check_real(lr, "lr")
        self.steps = 0

    def _rule(self, l2: float) -> UpdateRule:
        """The kernels' update rule for the next step."""
        raise NotImplementedError

    def hyperparameters(self) -> dict:
        """The settings that define the update (not the state arrays, nor the step count)."""
        return {k: v for k, v in vars(self).items()
                if k not in ("state1", "state2", "_shape", "steps")}

    def _check_for(self, shape: Shape) -> None:
        if shape != self._shape:
            raise ValueError(f"opt was made for parameters {self._shape}, but p has {shape}; "
                             "make one optimizer per parameter set")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr}, steps={self.steps})"


class SGD(Optimizer):
    """Stochastic gradient descent, with optional (heavy-ball) momentum.

    Parameters
    ----------
    p : Params
        The parameters it will update (their shapes and dtype; state is made here).
    lr : float >= 0
    momentum : float in [0, 1)
        0: plain SGD; otherwise b = momentum b + g, p -= lr b (torch.optim.SGD).
    """

    def __init__(self, p, lr: float, momentum: float = 0.0):
        super().__init__(p, lr)
        self.momentum = check_real(momentum, "momentum", 0.0, 1.0, high_open=True)
        if self.momentum > 0:
            self._kind = _kernels.RULE_MOMENTUM
            self.state1 = _zeros_like_params(Params(*p))

    def _rule(self, l2: float) -> UpdateRule:
        return UpdateRule(self._kind, self.lr, l2, momentum=self.momentum)


class AdaGrad(Optimizer):
    """AdaGrad (Duchi et al. 2011), Chen & Manning's optimizer: lr 0.01, eps 1e-6.

    Parameters
    ----------
    p : Params
    lr : float >= 0
    eps : float > 0
        p -= lr g / (sqrt(G) + eps) (torch.optim.Adagrad), or / sqrt(G + eps) with
        eps_inside_sqrt (Stanford CoreNLP's parser).
    eps_inside_sqrt : bool
    initial_accumulator : float >= 0
        G's starting value.
    """

    _kind = _kernels.RULE_ADAGRAD

    def __init__(self, p, lr: float = 0.01, eps: float = 1e-6,
                 eps_inside_sqrt: bool = False, initial_accumulator: float = 0.0):
        super().__init__(p, lr)
        self.eps = _check_eps(eps)
        self.eps_inside_sqrt = bool(eps_inside_sqrt)
        initial = check_real(initial_accumulator, "initial_accumulator")
        self.state1 = _zeros_like_params(Params(*p))
        if initial:
            for a in self.state1:
                a.fill(initial)

    def _rule(self, l2: float) -> UpdateRule:
        return UpdateRule(self._kind, self.lr, l2, eps=self.eps,
                           eps_inside_sqrt=self.eps_inside_sqrt)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015): torch.optim.Adam on W, b1, U, b2, SparseAdam on L.

    Parameters
    ----------
    p : Params
    lr : float >= 0
    betas : (float, float), each in [0, 1)
    eps : float > 0
    """

    _kind = _kernels.RULE_ADAM

    def __init__(self, p, lr: float = 5e-4, betas=(0.9, 0.999), eps: float = 1e-8):
        super().__init__(p, lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.betas = (check_real(beta1, "betas[0]", 0.0, 1.0, high_open=True),
                      check_real(beta2, "betas[1]", 0.0, 1.0, high_open=True))
        self.eps = _check_eps(eps)
        self.state1 = _zeros_like_params(Params(*p))
        self.state2 = _zeros_like_params(Params(*p))

    def _rule(self, l2: float) -> UpdateRule:
        beta1, beta2 = self.betas
        t = self.steps + 1
        correction1 = 1.0 - beta1 ** t
        correction2 = 1.0 - beta2 ** t
        return UpdateRule(self._kind, self.lr, l2, eps=self.eps, beta1=beta1, beta2=beta2,
                           dense_step=self.lr / correction1,                      # Adam
                           dense_denom_scale=1.0 / math.sqrt(correction2),
                           sparse_step=self.lr * math.sqrt(correction2) / correction1)  # SparseAdam


def train_step(p, idx, y, opt: Optimizer, *, dropout: float = 0.0, l2: float = 0.0,
               rng=None, path: str = "auto") -> float:
    """One fused training step in place: forward, backward, the optimizer's update.

    Parameters
    ----------
    p : Params
        Updated in place.
    idx : int array (N, m)
        Rows of L, each in [0, |V|).
    y : int array (N,)
        Classes, each in [0, Nc).
    opt : SGD, AdaGrad or Adam
        Made for p's shape and dtype; its state is updated with p.
    dropout : float in [0, 1)
        Inverted dropout on the hidden layer (the probability of dropping a
        unit), folded into the ReLU mask of the backward pass.
    l2 : float >= 0
        Weight decay, see the module's conventions.
    rng : int, None or numpy.random.Generator
        Draws the dropout mask: the same seed gives the same step bit for bit.
    path : {"auto", "dense", "factored"}

    Returns
    -------
    float
        The batch's mean loss before the update (the data loss). If it is not
        finite, nothing is written (parameters and optimizer state) and
        FloatingPointError is raised.
    """
    return _train_step(p, idx, y, opt, dropout, l2, rng, path)[0]


def _check_optimizer(opt) -> Optimizer:
    if not isinstance(opt, Optimizer):
        raise TypeError(f"opt must be a fastgrad optimizer (SGD, AdaGrad, Adam), "
                        f"got {type(opt).__name__}")
    return opt


def _train_step(p, idx, y, opt, dropout, l2, rng, path) -> tuple[float, int]:
    """train_step, also returning how many rows the model got right before the update."""
    _check_optimizer(opt)
    dropout = check_dropout(dropout)
    l2 = check_real(l2, "l2")
    prepared = prepare(p, idx, y, path, writeable=True, backward=True)
    opt._check_for(prepared.ws.shape)
    return _update(prepared, opt, dropout, l2, rng, _ParamsWriteLock(prepared.p))


def _update(prepared: Prepared, opt, dropout: float, l2: float, rng, lock) -> tuple[float, int]:
    """The step of a prepared, checked call: dropout drawn, the update run under
    lock (p's _ParamsWriteLock); (loss, rows the model got right before it)."""
    keep = draw_dropout(prepared, dropout, rng)
    with lock:   # the rule's step count and the update, together
        value = float(run_kernel(_kernels.MODE_UPDATE, prepared, opt._rule(l2),
                           opt.state1, opt.state2, keep)[0])
        if math.isfinite(value):
            opt.steps += 1
    refuse_nonfinite_step(value, "parameter or optimizer state")
    return value, int(np.count_nonzero(prepared.ws.row_correct[:prepared.n]))
