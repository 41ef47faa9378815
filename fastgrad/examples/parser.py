"""Chen & Manning's (2014) transition-based dependency parser, trained with fastgrad.

The showcase and the real benchmark of the library: the network fastgrad trains
is the one this parser was made with. Everything a parser needs is here, in
one file: a CoNLL-U reader, the arc-standard system and its static oracle
(non-projective sentences are skipped and counted), the paper's 48 features
(18 words, 18 POS tags, 12 arc labels over one joint vocabulary with NULL,
ROOT and UNK entries), training with fastgrad (AdaGrad with dropout as in the
paper, or Adam as in CS224n), greedy batched decoding through precomputed
first-layer products (§3.3), and UAS/LAS with and without punctuation.

The data: the Turkish treebanks of the ``turkish-treebanks`` package
(Apache-2.0), two CoNLL-U files in its wheel, split by sentence index % 10
(0-7 train, 8 dev, 9 test) within each file. Its own reader needs an old
protobuf, so the files are found through importlib.metadata and read here.

Run: ``fastgrad parser`` (or ``python -m fastgrad.examples.parser``).
It ships inside the wheel so that an installed fastgrad can run it and so
that ``fastgrad bench --config treebank`` can extract real parser states.
"""

from __future__ import annotations

import argparse
import bisect
import functools
import importlib.metadata
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np

import fastgrad
from fastgrad._timing import time_round

TREEBANK_PACKAGE = "turkish-treebanks"
TREEBANK_FILES = ("data/web.conllu", "data/wiki.conllu")
INSTALL_HINT = (f"the parser example reads the {TREEBANK_PACKAGE} package: "
                f"pip install {TREEBANK_PACKAGE}  (or pip install 'fastgrad[examples]')")

NULL, ROOT, UNK = "<NULL>", "<ROOT>", "<UNK>"
PUNCT_TAGS = ("PUNCT",)


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

class Sentence(NamedTuple):
    """One sentence; token i (1-based) is words[i-1], its head heads[i-1] (0 = root)."""

    words: list
    tags: list
    heads: list
    labels: list


def read_conllu(path) -> list[Sentence]:
    """The sentences of a CoNLL-U file (multiword-token and empty-node lines skipped)."""
    sentences: list[Sentence] = []
    rows: list[tuple] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                if rows:
                    sentences.append(Sentence(*map(list, zip(*rows))))
                    rows = []
                continue
            if line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 10 or "-" in cols[0] or "." in cols[0]:
                continue
            rows.append((cols[1], cols[3], int(cols[6]), cols[7]))
    if rows:
        sentences.append(Sentence(*map(list, zip(*rows))))
    return sentences


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


def load_splits() -> dict[str, list[Sentence]]:
    """train/dev/test by the package's split: sentence index % 10 within each file."""
    splits: dict[str, list[Sentence]] = {"train": [], "dev": [], "test": []}
    for path in treebank_paths():
        for i, sentence in enumerate(read_conllu(path)):
            part = "train" if i % 10 < 8 else ("dev" if i % 10 == 8 else "test")
            splits[part].append(sentence)
    return splits


def is_projective(heads) -> bool:
    """No two arcs cross (the root's arc from position 0 included)."""
    arcs = [(min(h, d), max(h, d)) for d, h in enumerate(heads, start=1)]
    for a, b in arcs:
        for c, e in arcs:
            if a < c < b < e:
                return False
    return True


# ---------------------------------------------------------------------------
# Vocabulary: one joint id space [words | tags | labels], as the paper's E
# ---------------------------------------------------------------------------

class Vocabulary:
    """Words (rare ones → UNK), tags and labels, each with NULL/ROOT/UNK entries."""

    def __init__(self, sentences, min_count: int = 2):
        counts = Counter(w for s in sentences for w in s.words)
        words = [NULL, ROOT, UNK] + sorted(w for w, c in counts.items() if c >= min_count)
        tags = [NULL, ROOT, UNK] + sorted({t for s in sentences for t in s.tags})
        self.labels = sorted({lab for s in sentences for lab in s.labels})
        label_entries = [NULL, UNK] + self.labels
        self.word_id = {w: i for i, w in enumerate(words)}
        self.tag_id = {t: len(words) + i for i, t in enumerate(tags)}
        self.label_id = {lab: len(words) + len(tags) + i for i, lab in enumerate(label_entries)}
        self.n_words, self.n_tags, self.n_label_entries = len(words), len(tags), len(label_entries)
        self.size = len(words) + len(tags) + len(label_entries)
        # transitions: 0 = SHIFT, 1 + k = LEFT-ARC(labels[k]), 1 + L + k = RIGHT-ARC(labels[k])
        self.n_transitions = 1 + 2 * len(self.labels)
        self.label_index = {lab: k for k, lab in enumerate(self.labels)}

    def encode(self, sentence: Sentence):
        """Per token (0 = ROOT): word ids and tag ids, as lists."""
        unk_w, unk_t = self.word_id[UNK], self.tag_id[UNK]
        words = [self.word_id[ROOT]] + [self.word_id.get(w, unk_w) for w in sentence.words]
        tags = [self.tag_id[ROOT]] + [self.tag_id.get(t, unk_t) for t in sentence.tags]
        return words, tags

    def rows_to_cache(self, sentences, top_words: int = 1000) -> list[np.ndarray]:
        """Per feature slot, the rows a parser caches: its most frequent words, every
        tag, every label (Chen & Manning cache the 10,000 most frequent words)."""
        counts = Counter(self.word_id.get(w, self.word_id[UNK]) for s in sentences
                         for w in s.words)
        specials = [self.word_id[NULL], self.word_id[ROOT], self.word_id[UNK]]
        frequent = np.unique(np.array(specials + [w for w, _ in counts.most_common(top_words)]))
        tags = np.arange(self.n_words, self.n_words + self.n_tags)
        labels = np.arange(self.n_words + self.n_tags, self.size)
        return [frequent] * 18 + [tags] * 18 + [labels] * 12


# ---------------------------------------------------------------------------
# The arc-standard system, its static oracle and the 48 features
# ---------------------------------------------------------------------------

N_FEATURES = 48


class State:
    """A parser configuration: stack, buffer position, the arcs built so far."""

    __slots__ = ("n", "stack", "next", "heads", "labels", "left", "right")

    def __init__(self, n_tokens: int):
        self.n = n_tokens                       # tokens 1..n, 0 is ROOT
        self.stack = [0]
        self.next = 1                           # the buffer is next..n
        self.heads = [-1] * (n_tokens + 1)
        self.labels = [-1] * (n_tokens + 1)     # label index of each attached token
        self.left: list[list[int]] = [[] for _ in range(n_tokens + 1)]   # sorted, left of it
        self.right: list[list[int]] = [[] for _ in range(n_tokens + 1)]  # sorted, right of it

    def done(self) -> bool:
        return self.next > self.n and len(self.stack) == 1

    def legal(self, n_labels: int) -> np.ndarray:
        """Boolean mask over the transitions."""
        mask = np.zeros(1 + 2 * n_labels, bool)
        mask[0] = self.next <= self.n
        if len(self.stack) > 2:                  # LEFT-ARC: s2 is a word, not ROOT
            mask[1:1 + n_labels] = True
        if len(self.stack) > 2 or (len(self.stack) == 2 and self.next > self.n):
            mask[1 + n_labels:] = True           # RIGHT-ARC to ROOT only at the end
        return mask

    def apply(self, transition: int, n_labels: int) -> None:
        if transition == 0:
            self.stack.append(self.next)
            self.next += 1
            return
        s1 = self.stack.pop()
        s2 = self.stack.pop()
        if transition <= n_labels:               # LEFT-ARC: s1 → s2
            head, dep, label = s1, s2, transition - 1
            bisect.insort(self.left[head], dep)
        else:                                    # RIGHT-ARC: s2 → s1
            head, dep, label = s2, s1, transition - 1 - n_labels
            bisect.insort(self.right[head], dep)
        self.heads[dep] = head
        self.labels[dep] = label
        self.stack.append(head)


def oracle(state: State, gold_heads, gold_labels, n_children, attached, n_labels) -> int:
    """The static arc-standard oracle: LEFT when s2's head is s1, RIGHT when s1's head
    is s2 and s1 has all its children, else SHIFT. gold_* are 1-based with a dummy 0."""
    if len(state.stack) >= 2:
        s1, s2 = state.stack[-1], state.stack[-2]
        if s2 != 0 and gold_heads[s2] == s1:
            return 1 + gold_labels[s2]
        if gold_heads[s1] == s2 and attached[s1] == n_children[s1]:
            return 1 + n_labels + gold_labels[s1]
    return 0


def features(state: State, words, tags, vocab: Vocabulary, out) -> None:
    """Chen & Manning's 48 features of a state, written into out (a row of ids).

    Words and tags of s1 s2 s3 b1 b2 b3, of lc1 rc1 lc2 rc2 of s1 and of s2, and of
    lc1(lc1) rc1(rc1) of s1 and of s2 (18 each); the labels of those 12 children.
    """
    null_w, null_t = vocab.word_id[NULL], vocab.tag_id[NULL]
    null_l = vocab.label_id[NULL]
    label_base = vocab.n_words + vocab.n_tags + 2     # labels[k] is label_base + k
    stack, left, right = state.stack, state.left, state.right
    tokens = [stack[-1] if len(stack) > 0 else -1,
              stack[-2] if len(stack) > 1 else -1,
              stack[-3] if len(stack) > 2 else -1]
    for k in range(3):
        b = state.next + k
        tokens.append(b if b <= state.n else -1)
    children = []
    for s in tokens[:2]:
        if s < 0:
            children += [-1] * 6
            continue
        lc, rc = left[s], right[s]
        lc1 = lc[0] if lc else -1
        rc1 = rc[-1] if rc else -1
        children += [lc1, rc1, lc[1] if len(lc) > 1 else -1, rc[-2] if len(rc) > 1 else -1,
                     left[lc1][0] if lc1 >= 0 and left[lc1] else -1,
                     right[rc1][-1] if rc1 >= 0 and right[rc1] else -1]
    # order: s1 s2 s3 b1 b2 b3, then per s1 and s2: lc1 rc1 lc2 rc2 lc1lc1 rc1rc1
    tokens += children
    labels = state.labels
    for i, t in enumerate(tokens):
        if t < 0:
            out[i] = null_w
            out[18 + i] = null_t
        else:
            out[i] = words[t]
            out[18 + i] = tags[t]
    for i, t in enumerate(children):
        out[36 + i] = label_base + labels[t] if t >= 0 else null_l


class Instances(NamedTuple):
    idx: np.ndarray        # (n_states, 48) feature ids
    y: np.ndarray          # (n_states,) gold transitions
    n_sentences: int
    n_skipped: int         # non-projective sentences


def gold_sequence(sentence: Sentence, vocab: Vocabulary):
    """The oracle's transitions for a projective sentence, with the states' features."""
    n = len(sentence.words)
    n_labels = len(vocab.labels)
    heads = [0] + sentence.heads
    labels = [0] + [vocab.label_index.get(lab, 0) for lab in sentence.labels]
    n_children = [0] * (n + 1)
    for h in sentence.heads:
        n_children[h] += 1
    attached = [0] * (n + 1)
    words, tags = vocab.encode(sentence)
    state = State(n)
    rows, moves = [], []
    while not state.done():
        row = [0] * N_FEATURES
        features(state, words, tags, vocab, row)
        t = oracle(state, heads, labels, n_children, attached, n_labels)
        rows.append(row)
        moves.append(t)
        if t != 0:
            attached[state.stack[-1] if t <= n_labels else state.stack[-2]] += 1
        state.apply(t, n_labels)
    return rows, moves, state


def make_instances(sentences, vocab: Vocabulary) -> Instances:
    rows, moves, n_used, n_skipped = [], [], 0, 0
    for sentence in sentences:
        if not is_projective(sentence.heads):
            n_skipped += 1
            continue
        r, m, _ = gold_sequence(sentence, vocab)
        rows += r
        moves += m
        n_used += 1
    return Instances(np.array(rows, np.int32), np.array(moves, np.int32), n_used, n_skipped)


# ---------------------------------------------------------------------------
# Greedy decoding (batched over sentences) and evaluation
# ---------------------------------------------------------------------------

def parse(predictor, sentences, vocab: Vocabulary):
    """Greedy parses: (heads, label indices) per sentence. predictor(idx) → probabilities;
    every unfinished sentence contributes one state to each call."""
    n_labels = len(vocab.labels)
    states = [State(len(s.words)) for s in sentences]
    encoded = [vocab.encode(s) for s in sentences]
    active = [i for i, s in enumerate(states) if not s.done()]
    batch = np.zeros((len(sentences), N_FEATURES), np.int64)
    while active:
        for row, i in enumerate(active):
            words, tags = encoded[i]
            features(states[i], words, tags, vocab, batch[row])
        proba = predictor(batch[:len(active)])
        for row, i in enumerate(active):
            scores = np.where(states[i].legal(n_labels), proba[row], -1.0)
            states[i].apply(int(np.argmax(scores)), n_labels)
        active = [i for i in active if not states[i].done()]
    return [(s.heads[1:], s.labels[1:]) for s in states]


def attachment_scores(sentences, parses, vocab: Vocabulary) -> dict:
    """UAS and LAS, over all tokens and over non-punctuation tokens."""
    totals = {"all": [0, 0, 0], "no_punct": [0, 0, 0]}
    for sentence, (heads, labels) in zip(sentences, parses):
        for k, (gold_h, gold_l, tag) in enumerate(zip(sentence.heads, sentence.labels,
                                                      sentence.tags)):
            right_head = heads[k] == gold_h
            right_label = right_head and vocab.labels[labels[k]] == gold_l \
                if 0 <= labels[k] < len(vocab.labels) else False
            for key in ("all",) if tag in PUNCT_TAGS else ("all", "no_punct"):
                totals[key][0] += 1
                totals[key][1] += right_head
                totals[key][2] += right_label
    return {key: {"uas": t[1] / max(t[0], 1), "las": t[2] / max(t[0], 1), "tokens": t[0]}
            for key, t in totals.items()}


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

def init_like_paper(vocab: Vocabulary, embed_dim: int, hidden: int, seed: int):
    """fastgrad.init_params shapes; L uniform in ±0.01 as Chen & Manning's random embeddings."""
    p = fastgrad.init_params(vocab.size, N_FEATURES, embed_dim, hidden, vocab.n_transitions,
                             dtype=np.float32, seed=seed)
    p.L[:] = np.random.default_rng(seed).uniform(-0.01, 0.01, p.L.shape)
    return p


def make_optimizer(name: str, p, lr: float | None):
    if name == "adagrad":
        return fastgrad.AdaGrad(p, lr=0.01 if lr is None else lr, eps=1e-6)
    if name == "adam":
        return fastgrad.Adam(p, lr=5e-4 if lr is None else lr)
    raise ValueError(f"optimizer must be adagrad or adam, got {name!r}")


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
    ap = argparse.ArgumentParser(prog="fastgrad parser", description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--embed-dim", type=int, default=50)
    ap.add_argument("--optimizer", choices=["adagrad", "adam"], default="adagrad")
    ap.add_argument("--lr", type=float, default=None, help="default: 0.01 AdaGrad, 5e-4 Adam")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--l2", type=float, default=1e-8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-train", type=int, default=None, help="use only this many sentences")
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

    pre = fastgrad.precompute(p, vocab.rows_to_cache(train))
    results = {}
    for name in ("dev", "test"):
        t1 = time.perf_counter()
        parses = parse(pre.predict_proba, splits[name], vocab)
        seconds = time.perf_counter() - t1
        results[name] = (attachment_scores(splits[name], parses, vocab), seconds)
    print(f"\ntrained {args.epochs} epochs in {train_seconds:.1f}s "
          f"({len(data.y) * args.epochs / train_seconds:,.0f} training states/s, "
          f"{fastgrad.get_num_threads()} threads); precomputed cache: {pre}")
    print("| split | UAS | LAS | UAS no punct | LAS no punct | sentences/s |")
    print("|---|---|---|---|---|---|")
    for name, (scores, seconds) in results.items():
        a, b = scores["all"], scores["no_punct"]
        print(f"| {name} | {a['uas']:.2%} | {a['las']:.2%} | {b['uas']:.2%} | {b['las']:.2%} | "
              f"{len(splits[name]) / seconds:,.0f} |")
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
