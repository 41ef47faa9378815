"""Max deviation of fastgrad's optimizers from the reference formulas and from torch.optim.

    python tools/optim_deviation.py

Ten train_steps (dropout 0.3 with replayed masks, l2 0 so that torch's sparse optimizers
compare) on a problem whose every batch touches every row of L (torch's dense momentum then
equals the lazy rows), in float64 and float32; prints the largest absolute difference of
any parameter after the ten steps, and of any loss along the way.
"""

from __future__ import annotations

import sys

import numpy as np

import fastgrad
from fastgrad import reference
from fastgrad.testing import OPTIMIZERS, batches, copy_params, make_problem, torch_twin_run


def main() -> int:
    try:
        import torch  # noqa: F401
        have_torch = True
    except ImportError:
        have_torch = False
    print("| optimizer | dtype | max |Δparam| vs reference | max |Δloss| vs reference | "
          "max |Δparam| vs torch | max |Δloss| vs torch |")
    print("|---|---|---|---|---|---|")
    for name in ("sgd", "momentum", "adagrad", "adam"):
        for dtype in (np.float64, np.float32):
            p, idx, y = make_problem(dtype, n=64, n_vocab=12)
            idx[:3].flat[:12] = np.arange(12)
            steps = [(s, np.concatenate([idx[:3], bi]), np.concatenate([y[:3], by]))
                     for s, bi, by in batches(idx[3:], y[3:])]
            q, r = copy_params(p), copy_params(p)
            opt, opt_ref = OPTIMIZERS[name][0](fastgrad, p), OPTIMIZERS[name][0](reference, q)
            ours = [fastgrad.train_step(p, bi, by, opt, dropout=0.3, rng=s) for s, bi, by in steps]
            refs = [reference.train_step(q, bi, by, opt_ref, dropout=0.3, rng=s)
                    for s, bi, by in steps]
            dev_ref = max(float(np.max(np.abs(a - b))) for a, b in zip(p, q))
            loss_ref = max(abs(a - b) for a, b in zip(ours, refs))
            cells = [f"{dev_ref:.1e}", f"{loss_ref:.1e}"]
            if have_torch:
                losses, final = torch_twin_run(r, steps, name, 0.3)
                cells += [f"{max(float(np.max(np.abs(a - b))) for a, b in zip(p, final)):.1e}",
                          f"{max(abs(a - b) for a, b in zip(ours, losses)):.1e}"]
            else:
                cells += ["(torch not installed)", ""]
            print(f"| {name} | {np.dtype(dtype).name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
