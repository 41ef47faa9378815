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

from fastgrad._api import Gradients, SparseRows

__all__ = ["forward", "predict_proba", "predict", "loss", "loss_and_grad", "sgd_step"]


def forward(p, idx):
    """(x, z, h, θ) for a batch: the intermediate values of the derivation."""
    L, W, b1, U, b2 = p
    idx = np.asarray(idx)
    x = L[idx].reshape(idx.shape[0], -1)        # x = [L[w_0], ..., L[w_{m-1}]]
    z = x @ W + b1                               # z = x W + b1
    h = np.maximum(z, 0)                         # h = relu(z)
    theta = h @ U + b2                           # θ = h U + b2
    return x, z, h, theta


def _softmax(theta):
    shifted = theta - theta.max(axis=1, keepdims=True)   # max-subtracted: exp cannot overflow
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True), shifted


def predict_proba(p, idx):
    """ŷ = softmax(θ), shape (N, Nc)."""
    return _softmax(forward(p, idx)[3])[0]


def predict(p, idx):
    """argmax_c ŷ, shape (N,)."""
    return np.argmax(predict_proba(p, idx), axis=1)


def loss(p, idx, y):
    """J = (1/N) Σ_n -log ŷ[n, y_n], computed as log-sum-exp(θ_n) - θ_n[y_n]."""
    _, shifted = _softmax(forward(p, idx)[3])
    y = np.asarray(y)
    log_z = np.log(np.exp(shifted.astype(np.float64)).sum(axis=1))
    return float(np.mean(log_z - shifted[np.arange(len(y)), y]))


def loss_and_grad(p, idx, y):
    """(J, Gradients) of the mean cross-entropy, by the derivation."""
    L, W, b1, U, b2 = p
    idx, y = np.asarray(idx), np.asarray(y)
    n, m = idx.shape
    d = L.shape[1]
    x, z, h, theta = forward(p, idx)
    y_hat, _ = _softmax(theta)
    onehot = np.zeros_like(y_hat)
    onehot[np.arange(n), y] = 1
    delta1 = (y_hat - onehot) / n                # δ1 = ŷ - y  (of the mean loss: / N)
    dU = h.T @ delta1                            # dU = hᵀ δ1
    db2 = delta1.sum(axis=0)                     # db2 = Σ δ1
    delta2 = (delta1 @ U.T) * np.sign(h)         # δ2 = δ1 Uᵀ ∘ relu'(z),  relu'(z) = sgn(h)
    dW = x.T @ delta2                            # dW = xᵀ δ2
    db1 = delta2.sum(axis=0)                     # db1 = Σ δ2
    dx = delta2 @ W.T                            # ∂J/∂x = δ2 Wᵀ, one (N, m*d) row per example
    dense_dL = np.zeros_like(L)
    np.add.at(dense_dL, idx.ravel(), dx.reshape(n * m, d))   # dL[w_i] += δ2 W[d·i:d·(i+1)]ᵀ
    rows = np.unique(idx)
    grads = Gradients(L=SparseRows(rows.astype(np.int64), dense_dL[rows]),
                      W=dW, b1=db1, U=dU, b2=db2)
    return loss(p, idx, y), grads


def sgd_step(p, idx, y, lr):
    """In place: every parameter -= lr * its gradient (L at its touched rows)."""
    value, g = loss_and_grad(p, idx, y)
    L, W, b1, U, b2 = p
    L[g.L.rows] -= lr * g.L.values
    for param, grad in zip((W, b1, U, b2), (g.W, g.b1, g.U, g.b2)):
        param -= lr * grad
    return value

