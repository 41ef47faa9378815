"""Central finite differences against fastgrad's analytic gradients."""

from __future__ import annotations

import numbers

import numpy as np

from fastgrad._api import loss, loss_and_grad
from fastgrad._types import Params
from fastgrad._validate import check_params


def gradcheck(p, idx, y, eps: float = 1e-6, n_samples: int = 30, seed=0,
              path: str = "auto", dropout: float = 0.0, dropout_seed: int = 0) -> dict:
    """Worst relative error of the analytic gradient, per parameter.

    Works on float64 copies of p (p itself is never touched). For each
    parameter, n_samples entries (all of them, if fewer; for L, entries of
    the rows the batch touches) are perturbed by ±eps and the central
    difference (J(θ+eps) - J(θ-eps)) / 2eps is compared with the analytic
    gradient by CS224n's criterion |num - ana| / max(1, |num|, |ana|).
    Returns {"L": err, "W": err, "b1": err, "U": err, "b2": err}; values
    below about 1e-6 mean the gradient is right. With dropout > 0 every
    evaluation replays the mask of dropout_seed, so the differences see the
    same thinned network as the analytic gradient.
    """
    check_params(p, writeable=False)
    if not isinstance(eps, numbers.Real) or not 0 < eps < 1:
        raise ValueError(f"eps must be a real number in (0, 1), got {eps!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) \
            or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    q = Params(*(np.array(a, dtype=np.float64, order="C") for a in p))
    def mask():
        return {"dropout": dropout, "rng": dropout_seed}

    _, g = loss_and_grad(q, idx, y, path=path, **mask())
    dense = {"L": g.L.to_dense(q.L.shape[0]), "W": g.W, "b1": g.b1, "U": g.U, "b2": g.b2}
    rng = np.random.default_rng(seed)
    worst = {}
    for name, param in zip(Params._fields, q):
        flat = param.reshape(-1)
        if name == "L":
            d = param.shape[1]
            candidates = (g.L.rows[:, None] * d + np.arange(d)).reshape(-1)
        else:
            candidates = np.arange(flat.size)
        if candidates.size > n_samples:
            candidates = rng.choice(candidates, size=n_samples, replace=False)
        analytic = dense[name].reshape(-1)
        err = 0.0
        for i in candidates:
            saved = flat[i]
            flat[i] = saved + eps
            j_plus = loss(q, idx, y, path=path, **mask())
            flat[i] = saved - eps
            j_minus = loss(q, idx, y, path=path, **mask())
            flat[i] = saved
            num = (j_plus - j_minus) / (2 * eps)
            ana = float(analytic[i])
            err = max(err, abs(num - ana) / max(1.0, abs(num), abs(ana)))
        worst[name] = err
    return worst
