"""The training options that ``fastgrad parser train`` and the showcase share."""

from __future__ import annotations

import argparse

from fastgrad._cli_types import int_value, positive_int, real_in


def tag_columns(text: str) -> list:
    """argparse type: a comma-separated choice from upos, xpos, feats."""
    names = [t.strip().lower() for t in text.split(",")]
    bad = [n for n in names if n not in ("upos", "xpos", "feats")]
    if bad or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"choose distinct columns from upos,xpos,feats, got {text!r}")
    return names


def add_training_options(ap, *, epochs: int, hidden: int = 200, embed_dim: int = 50,
                         optimizer: str = "adagrad") -> None:
    """The hyperparameters the showcase and train share (with defaults of their own:
    the showcase keeps Chen & Manning's, train has the ones chosen by dev scores)."""
    ap.add_argument("--epochs", type=positive_int, default=epochs)
    ap.add_argument("--hidden", type=positive_int, default=hidden)
    ap.add_argument("--embed-dim", type=positive_int, default=embed_dim)
    ap.add_argument("--optimizer", choices=["adagrad", "adam"], default=optimizer)
    ap.add_argument("--lr", type=real_in(0.0, float("inf"), low_open=True), default=None,
                    help="default: 0.01 AdaGrad, 5e-4 Adam")
    ap.add_argument("--batch-size", type=positive_int, default=256)
    ap.add_argument("--dropout", type=real_in(0.0, 1.0, high_open=True), default=0.5)
    ap.add_argument("--l2", type=real_in(0.0, float("inf")), default=1e-8)
    ap.add_argument("--seed", type=int_value, default=0)
