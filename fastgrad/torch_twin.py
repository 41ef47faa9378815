"""The network of fastgrad in PyTorch: one twin for every comparison.

The benchmark times it, the parser example times it beside fastgrad, and the
tests and ``tools/optim_deviation.py`` compare fastgrad's optimizers with
``torch.optim`` through it. It is written the way a PyTorch user would write
the network (a sparse ``nn.Embedding`` for L, plain tensors for W, b1, U, b2),
starts from given fastgrad parameters, and is never a dependency: importing
this module does not import torch; making a twin does.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["TorchTwin", "TORCH_OPTIMIZERS"]

TORCH_OPTIMIZERS = ("sgd", "momentum", "adagrad", "adam")


class TorchTwin:
    """The network and an optimizer in PyTorch, starting from the parameters p.

    Parameters
    ----------
    p : fastgrad.Params
        Starting parameters (copied; p is never written).
    optimizer : {"sgd", "momentum", "adagrad", "adam"}
        torch.optim.SGD, SGD with momentum, Adagrad, or SparseAdam on L with Adam
        on the dense parameters (what fastgrad's Adam does).
    lr, momentum, eps : float
        The optimizer's hyperparameters (momentum for "momentum", eps for
        "adagrad"; Adam keeps torch's defaults).
    dropout : float
        Drop probability on the hidden layer; 0 for none.
    masks : callable, optional
        ``masks(step, shape) -> ndarray``: the dropout mask (already scaled by
        1/keep) of the step-th call, to replay fastgrad's masks exactly; without
        it torch draws its own (torch.nn.functional.dropout).
    """

    def __init__(self, p, optimizer: str = "sgd", lr: float = 0.1, *, momentum: float = 0.9,
                 eps: float = 1e-10, dropout: float = 0.0,
                 masks: Callable[[int, tuple], np.ndarray] | None = None):
        import torch

        if optimizer not in TORCH_OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {TORCH_OPTIMIZERS}, got {optimizer!r}")
        self._torch = torch
        dtype = torch.float64 if p.L.dtype == np.float64 else torch.float32
        self.L = torch.nn.Embedding(*p.L.shape, sparse=True, dtype=dtype)
        with torch.no_grad():
            self.L.weight.copy_(torch.from_numpy(p.L))
        self.dense = [torch.nn.Parameter(torch.from_numpy(a.copy())) for a in p[1:]]
        every = [self.L.weight, *self.dense]
        if optimizer == "sgd":
            self.optimizers = [torch.optim.SGD(every, lr=lr)]
        elif optimizer == "momentum":
            self.optimizers = [torch.optim.SGD(every, lr=lr, momentum=momentum)]
        elif optimizer == "adagrad":
            self.optimizers = [torch.optim.Adagrad(every, lr=lr, eps=eps)]
        else:
            self.optimizers = [torch.optim.SparseAdam([self.L.weight], lr=lr),
                               torch.optim.Adam(self.dense, lr=lr)]
        self.dropout, self.masks, self.steps = dropout, masks, 0

    def step(self, idx: np.ndarray, y: np.ndarray) -> float:
        """One training step on a batch; returns the mean loss before the update."""
        torch = self._torch
        W, b1, U, b2 = self.dense
        x = self.L(torch.from_numpy(np.asarray(idx, np.int64))).reshape(len(idx), -1)
        h = torch.relu(x @ W + b1)
        if self.dropout and self.masks is not None:
            h = h * torch.from_numpy(self.masks(self.steps, tuple(h.shape)))
        elif self.dropout:
            h = torch.nn.functional.dropout(h, self.dropout)
        loss = torch.nn.functional.cross_entropy(h @ U + b2,
                                                 torch.from_numpy(np.asarray(y, np.int64)))
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in self.optimizers:
            opt.step()
        self.steps += 1
        return loss.item()

    def params(self) -> list[np.ndarray]:
        """The current parameters as NumPy arrays, in fastgrad.Params' order."""
        return [self.L.weight.detach().numpy(), *(a.detach().numpy() for a in self.dense)]
