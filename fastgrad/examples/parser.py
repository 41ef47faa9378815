"""Chen & Manning's (2014) transition-based dependency parser on a real treebank:
the showcase of fastgrad (``fastgrad parser`` with no subcommand).

The network fastgrad trains is the one this parser was made with. The parser
itself is the package ``fastgrad.parser`` (CoNLL-U reading, the arc-standard
system and its oracle, the 48 features, scoring, the model); this file trains
it on the bundled data and reports accuracy and speed beside the peers.

The data: the Turkish treebanks of the ``turkish-treebanks`` package
(Apache-2.0), two CoNLL-U files in its wheel, split by sentence index % 10
(0-7 train, 8 dev, 9 test) within each file. Its own reader needs an old
protobuf, so the files are found through importlib.metadata and read here.

Run: ``fastgrad parser`` (or ``python -m fastgrad.examples.parser``). For your
own treebank: ``fastgrad parser train|parse|evaluate`` (see README).
It ships inside the wheel so that an installed fastgrad can run it and so
that ``fastgrad bench --config treebank`` can extract real parser states.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import sys
import time
from pathlib import Path

import numpy as np

import fastgrad
from fastgrad._cli_types import positive_int
from fastgrad._timing import time_round
from fastgrad.parser import conllu
from fastgrad.parser.model import to_tree
from fastgrad.parser.scoring import score_words
from fastgrad.parser.training import init_like_paper, make_optimizer
from fastgrad.parser.transitions import (  # noqa: F401  (the parser's pieces, for tests)
    N_FEATURES, Instances, State, Tree, features, gold_sequence, is_projective,
    make_instances, parse,
)
from fastgrad.parser.vocab import NULL, ROOT, UNK, Vocabulary  # noqa: F401

TREEBANK_PACKAGE = "turkish-treebanks"
TREEBANK_FILES = ("data/web.conllu", "data/wiki.conllu")
INSTALL_HINT = (f"the parser example reads the {TREEBANK_PACKAGE} package: "
                f"pip install {TREEBANK_PACKAGE}  (or pip install 'fastgrad[examples]')")


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

def treebank_paths() -> list[Path]:
    """The CoNLL-U files of the installed turkish-treebanks package."""
    try:
        dist = importlib.metadata.distribution(TREEBANK_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(INSTALL_HINT) from None
    found = {str(f).replace("\\", "/"): Path(str(f.locate())) for f in dist.files or ()}
    missing = [name for name in TREEBANK_FILES if name not in found]
    if missing:
        raise SystemExit(f"{TREEBANK_PACKAGE} is installed but lacks {missing}; {INSTALL_HINT}")
    return [found[name] for name in TREEBANK_FILES]


def load_splits() -> dict[str, list[Tree]]:
    """train/dev/test by the package's split: sentence index % 10 within each file."""
    splits: dict[str, list[Tree]] = {"train": [], "dev": [], "test": []}
    for path in treebank_paths():
        for i, sentence in enumerate(conllu.read(path, need_tree=True)):
            part = "train" if i % 10 < 8 else ("dev" if i % 10 == 8 else "test")
            splits[part].append(to_tree(sentence))
    return splits


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------

def attachment_scores(trees, parses, vocab: Vocabulary) -> dict:
    """The official UAS/LAS (fastgrad.parser.scoring) of parses of gold Trees."""
    return score_words((t.heads, t.labels, t.tags, heads, [vocab.labels[k] for k in labels])
                       for t, (heads, labels) in zip(trees, parses))


def right_neighbour_baseline(sentences) -> float:
    """UAS of attaching every word to the next one (the last to the root)."""
    right = total = 0
    for s in sentences:
        n = len(s.words)
        for k, h in enumerate(s.heads, start=1):
            right += h == (k + 1 if k < n else 0)
            total += 1
    return right / total


# ---------------------------------------------------------------------------
# Training and the command
# ---------------------------------------------------------------------------

def peer_speeds(p, data: Instances, batch_size: int, n_batches: int = 5) -> dict:
    """States/s of one training step with fastgrad, the NumPy reference and PyTorch
    (when installed), on the same real batches, interleaved."""
    from fastgrad import reference

    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(len(data.y), batch_size, replace=False))
               for _ in range(n_batches)]
    q = fastgrad.Params(*(a.copy() for a in p))
    r = fastgrad.Params(*(a.copy() for a in p))
    opt, opt_ref = fastgrad.AdaGrad(q), reference.AdaGrad(r)
    steps = {
        "fastgrad": lambda b: fastgrad.train_step(q, data.idx[b], data.y[b], opt, dropout=0.5,
                                                  rng=0),
        "numpy reference": lambda b: reference.train_step(r, data.idx[b], data.y[b], opt_ref,
                                                          dropout=0.5, rng=0),
    }
    torch_step = _torch_step(p)
    if torch_step is not None:
        steps["pytorch"] = lambda b: torch_step(data.idx[b], data.y[b])
    times: dict[str, list] = {k: [] for k in steps}
    for b in batches:
        batch_steps = {name: functools.partial(step, b) for name, step in steps.items()}
        for name, seconds in time_round(batch_steps, settle=True).items():
            times[name].append(seconds)
    return {k: batch_size / float(np.median(v)) for k, v in times.items()}


def _torch_step(p):
    """The same training step in PyTorch (fastgrad.torch_twin), or None without torch."""
    try:
        from fastgrad.torch_twin import TorchTwin
        twin = TorchTwin(p, "adagrad", 0.01, eps=1e-6, dropout=0.5)
    except ImportError:
        return None
    import warnings
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    return twin.step


def main(argv=None) -> int:
    from fastgrad.parser.options import add_training_options

    ap = argparse.ArgumentParser(
        prog="fastgrad parser", description=__doc__.split("\n\n")[0],
        epilog="For your own treebank: fastgrad parser {train,parse,evaluate} --help")
    add_training_options(ap, epochs=8)
    ap.add_argument("--max-train", type=positive_int, default=None,
                    help="use only this many sentences")
    ap.add_argument("--no-peers", action="store_true", help="skip the reference/torch timing")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    splits = load_splits()
    train = splits["train"][:args.max_train]
    vocab = Vocabulary(train)
    data = make_instances(train, vocab)
    print(f"treebank: {len(train)} train / {len(splits['dev'])} dev / {len(splits['test'])} "
          f"test sentences; {data.n_skipped} non-projective training sentences skipped; "
          f"{len(data.y)} training states; vocabulary {vocab.size} ({vocab.n_words} words, "
          f"{vocab.n_tags} tags, {vocab.n_label_entries} labels); {vocab.n_transitions} "
          f"transitions; features extracted in {time.perf_counter() - t0:.1f}s")

    p = init_like_paper(vocab, args.embed_dim, args.hidden, args.seed)
    opt = make_optimizer(args.optimizer, p, args.lr)
    dev = splits["dev"]
    dev_data = make_instances(dev, vocab)
    history = fastgrad.fit(p, data.idx, data.y, opt, epochs=args.epochs,
                           batch_size=args.batch_size, dropout=args.dropout, l2=args.l2,
                           shuffle_seed=args.seed, validation=(dev_data.idx, dev_data.y))
    for h in history:
        print(f"epoch {h.epoch}: loss {h.loss:.4f}, train acc {h.accuracy:.3f}, dev transition "
              f"acc {h.val_accuracy:.3f}, {h.examples_per_s:,.0f} states/s")
    train_seconds = sum(h.seconds for h in history)

    pre = fastgrad.precompute(p, vocab.rows_to_cache())
    results = {}
    for name in ("dev", "test"):
        t1 = time.perf_counter()
        parses = parse(pre.predict_proba, splits[name], vocab)
        seconds = time.perf_counter() - t1
        results[name] = (attachment_scores(splits[name], parses, vocab), seconds)
    print(f"\ntrained {args.epochs} epochs in {train_seconds:.1f}s "
          f"({len(data.y) * args.epochs / train_seconds:,.0f} training states/s, "
          f"{fastgrad.get_num_threads()} threads); precomputed cache: {pre}")
    print("| split | UAS | LAS | LAS full label | UAS no punct | LAS no punct | words/s |")
    print("|---|---|---|---|---|---|---|")
    for name, (scores, seconds) in results.items():
        print(f"| {name} | {scores['uas']:.2f} | {scores['las']:.2f} | {scores['las_full']:.2f} | "
              f"{scores['uas_no_punct']:.2f} | {scores['las_no_punct']:.2f} | "
              f"{scores['words'] / seconds:,.0f} |")
    print(f"(baseline, every word attached to its right neighbour: dev UAS "
          f"{right_neighbour_baseline(dev):.2%})")
    if not args.no_peers:
        speeds = peer_speeds(p, data, args.batch_size)
        print("\none training step on real parser states (batch "
              f"{args.batch_size}, AdaGrad, dropout 0.5), same run, median of 5:")
        for name, rate in speeds.items():
            print(f"  {name:>16}: {rate:>10,.0f} states/s  "
                  f"({speeds['fastgrad'] / rate:.1f}x slower than fastgrad)"
                  if name != "fastgrad" else f"  {name:>16}: {rate:>10,.0f} states/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
