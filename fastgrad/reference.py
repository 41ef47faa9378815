"""The NumPy reference: fastgrad's API in plain NumPy, line by line from the derivation.

This is the oracle the compiled kernels are tested against and the readable twin
of ``_kernels.pyx``. It validates nothing and is not fast; it is meant to be
obviously right. Shapes follow the derivation: one row per example,

    x  = [L[w_0], ..., L[w_{m-1}]]      (N, m*d)
    z  = x W + b1                       (N, Dh)
    h  = relu(z)
    θ  = h U + b2                       (N, Nc)
    ŷ  = softmax(θ),  J = mean CE(y, ŷ)

Every computation runs in the parameters' dtype, as the kernels do.
"""

from __future__ import annotations

import numpy as np

from fastgrad._types import Gradients, SparseRows

__all__ = ["forward", "predict_proba", "predict", "loss", "loss_and_grad", "sgd_step",
           "dropout_mask", "SGD", "AdaGrad", "Adam", "train_step"]


def dropout_mask(shape, dtype, dropout, rng):
    """Inverted dropout's multiplier: 1/(1-dropout) where a unit is kept, else 0.

    A unit is kept where its uniform draw u < 1 - dropout; the draws are
    rng.random(shape, dtype), the same stream the kernels read.
    """
    if dropout == 0:
        return None
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    keep = 1 - dropout
    u = rng.random(shape, dtype=dtype)
    return np.where(u < dtype.type(keep), dtype.type(1 / keep), dtype.type(0))


def forward(p, idx, mask=None):
    """(x, z, h, θ) for a batch: the intermediate values of the derivation.

    mask: a dropout multiplier for h (see dropout_mask), or None.
    """
    L, W, b1, U, b2 = p
    idx = np.asarray(idx)
    x = L[idx].reshape(idx.shape[0], -1)        # x = [L[w_0], ..., L[w_{m-1}]]
    z = x @ W + b1                               # z = x W + b1
    h = np.maximum(z, 0)                         # h = relu(z)
    if mask is not None:
        h = h * mask                             # h = relu(z) ∘ dropout mask
    theta = h @ U + b2                           # θ = h U + b2
    return x, z, h, theta


def _softmax(theta):
    shifted = theta - theta.max(axis=1, keepdims=True)   # max-subtracted: exp cannot overflow
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True), shifted


def _mean_xent(theta, y):
    """J = (1/N) Σ_n -log ŷ[n, y_n], computed as log-sum-exp(θ_n) - θ_n[y_n]."""
    _, shifted = _softmax(theta)
    y = np.asarray(y)
    log_z = np.log(np.exp(shifted.astype(np.float64)).sum(axis=1))
    return float(np.mean(log_z - shifted[np.arange(len(y)), y]))


def _mask(p, idx, dropout, rng):
    return dropout_mask((np.shape(idx)[0], p[1].shape[1]), p[0].dtype, dropout, rng)


def predict_proba(p, idx):
    """ŷ = softmax(θ), shape (N, Nc)."""
    return _softmax(forward(p, idx)[3])[0]


def predict(p, idx):
    """argmax_c ŷ, shape (N,)."""
    return np.argmax(predict_proba(p, idx), axis=1)


def loss(p, idx, y, dropout=0.0, rng=None):
    """Mean cross-entropy J (with dropout on h when dropout > 0)."""
    return _mean_xent(forward(p, idx, _mask(p, idx, dropout, rng))[3], y)


def loss_and_grad(p, idx, y, dropout=0.0, rng=None):
    """(J, Gradients) of the mean cross-entropy, by the derivation."""
    L, W, b1, U, b2 = p
    idx, y = np.asarray(idx), np.asarray(y)
    n, m = idx.shape
    d = L.shape[1]
    mask = _mask(p, idx, dropout, rng)
    x, z, h, theta = forward(p, idx, mask)
    y_hat, _ = _softmax(theta)
    onehot = np.zeros_like(y_hat)
    onehot[np.arange(n), y] = 1
    delta1 = (y_hat - onehot) / n                # δ1 = ŷ - y  (of the mean loss: / N)
    dU = h.T @ delta1                            # dU = hᵀ δ1
    db2 = delta1.sum(axis=0)                     # db2 = Σ δ1
    delta2 = (delta1 @ U.T) * np.sign(np.maximum(z, 0))   # δ2 = δ1 Uᵀ ∘ relu'(z)
    if mask is not None:
        delta2 = delta2 * mask                   # ... ∘ the dropout mask
    dW = x.T @ delta2                            # dW = xᵀ δ2
    db1 = delta2.sum(axis=0)                     # db1 = Σ δ2
    dx = delta2 @ W.T                            # ∂J/∂x = δ2 Wᵀ, one (N, m*d) row per example
    dense_dL = np.zeros_like(L)
    np.add.at(dense_dL, idx.ravel(), dx.reshape(n * m, d))   # dL[w_i] += δ2 W[d·i:d·(i+1)]ᵀ
    rows = np.unique(idx)
    grads = Gradients(L=SparseRows(rows.astype(np.int64), dense_dL[rows]),
                      W=dW, b1=db1, U=dU, b2=db2)
    return _mean_xent(theta, y), grads


def sgd_step(p, idx, y, lr):
    """In place: every parameter -= lr * its gradient (L at its touched rows)."""
    value, g = loss_and_grad(p, idx, y)
    L, W, b1, U, b2 = p
    L[g.L.rows] -= lr * g.L.values
    for param, grad in zip((W, b1, U, b2), (g.W, g.b1, g.U, g.b2)):
        param -= lr * grad
    return value



# ---------------------------------------------------------------------------
# Optimizers, from the papers' formulas (rows of L: only those a batch touched)
# ---------------------------------------------------------------------------

class SGD:
    """b = μ b + g;  p -= lr b   (μ = 0: p -= lr g)."""

    def __init__(self, p, lr, momentum=0.0):
        self.lr, self.momentum = lr, momentum
        self.buf = [np.zeros_like(a) for a in p]

    def update(self, param, grad, i, rows=None):
        """The new value of param (all of parameter i, or its given rows)."""
        if self.momentum == 0:
            return param - self.lr * grad
        buf = self.buf[i] if rows is None else self.buf[i][rows]
        buf = self.momentum * buf + grad
        if rows is None:
            self.buf[i][...] = buf
        else:
            self.buf[i][rows] = buf
        return param - self.lr * buf


class AdaGrad:
    """Duchi et al.: G += g²;  p -= lr g / (√G + eps), or / √(G + eps) (CoreNLP)."""

    def __init__(self, p, lr=0.01, eps=1e-6, eps_inside_sqrt=False):
        self.lr, self.eps, self.inside = lr, eps, eps_inside_sqrt
        self.G = [np.zeros_like(a) for a in p]

    def update(self, param, grad, i, rows=None):
        G = (self.G[i] if rows is None else self.G[i][rows]) + grad * grad
        if rows is None:
            self.G[i][...] = G
        else:
            self.G[i][rows] = G
        denom = np.sqrt(G + self.eps) if self.inside else np.sqrt(G) + self.eps
        return param - self.lr * grad / denom


class Adam:
    """Kingma & Ba, Algorithm 1: m̂ = m/(1-β1ᵗ), v̂ = v/(1-β2ᵗ), p -= lr m̂/(√v̂ + eps).

    Rows of L follow torch.optim.SparseAdam, where eps is added before the bias
    correction: p -= lr m̂ / (√v̂ + eps/√(1-β2ᵗ)).
    """

    def __init__(self, p, lr=5e-4, betas=(0.9, 0.999), eps=1e-8):
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0
        self.m = [np.zeros_like(a) for a in p]
        self.v = [np.zeros_like(a) for a in p]

    def update(self, param, grad, i, rows=None):
        beta1, beta2 = self.betas
        sel = slice(None) if rows is None else rows
        m = beta1 * self.m[i][sel] + (1 - beta1) * grad
        v = beta2 * self.v[i][sel] + (1 - beta2) * grad * grad
        self.m[i][sel], self.v[i][sel] = m, v
        m_hat = m / (1 - beta1 ** self.t)
        v_hat = v / (1 - beta2 ** self.t)
        eps = self.eps if rows is None else self.eps / np.sqrt(1 - beta2 ** self.t)
        return param - self.lr * m_hat / (np.sqrt(v_hat) + eps)


def train_step(p, idx, y, opt, dropout=0.0, l2=0.0, rng=None):
    """loss_and_grad, L2 added to each gradient (L: touched rows), then opt's update."""
    value, g = loss_and_grad(p, idx, y, dropout, rng)
    if isinstance(opt, Adam):
        opt.t += 1
    L = p[0]
    rows = g.L.rows
    L[rows] = opt.update(L[rows], g.L.values + l2 * L[rows], 0, rows)
    for i, (param, grad) in enumerate(zip(p[1:], g[1:]), start=1):
        param[...] = opt.update(param, grad + l2 * param, i)
    return value
