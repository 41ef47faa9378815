"""Training a parser (fastgrad parser train): the recipe around fastgrad.fit.

Set-up once (_prepare: the treebanks read, non-projective trees lifted, skip-gram
word vectors, the vocabulary, the static oracle's instances, the parameters);
then per epoch: exploration's instances (the dynamic oracle, after the first
epochs), word dropout on the rows, one epoch of fit, a greedy parse of the dev
set, and the model saved (atomically) when its dev LAS is the best so far.
Under MPI every rank runs the same recipe on its shard of each batch.
"""

from __future__ import annotations

import os
import time
from typing import Callable, NamedTuple

import numpy as np

import fastgrad
from fastgrad.parser import conllu
from fastgrad.parser.model import ParserModel, Treebank, available_tag_columns
from fastgrad.parser.projectivize import SEPARATOR, Lowering, projectivize_trees
from fastgrad.parser.scoring import score_arrays
from fastgrad.parser.transitions import Exploration, make_instances, parse_encoded
from fastgrad.parser.vocab import UNK, Vocabulary
from fastgrad.parser.word_vectors import SkipGramJob, SkipGramOptions

__all__ = ["train", "read_embeddings", "init_like_paper", "make_optimizer",
           "word_dropout_rows"]


NONPROJECTIVE = ("lift", "skip")
WORD_VECTORS = ("skipgram", "none")
ORACLES = ("dynamic", "static")


class _Setup(NamedTuple):
    vocab: Vocabulary
    data: object          # transitions.Instances
    p: fastgrad.Params
    opt: object
    dev_score: "_DevScorer"
    threads: int
    tag_columns: list
    n_lifted: int         # non-projective training trees lifted
    vectors_note: str     # for the progress line
    vectors_meta: dict    # for the model file
    trees: list           # the training trees (lifted)
    exploration: object   # transitions.Exploration (None: no epoch explores)
    word_counts: object   # _word_counts (None: no word dropout)


def _check_choices(nonprojective, word_vectors, raw_text, embeddings, oracle,
                   explore_after, explore_p, word_dropout, lr_decay) -> None:
    """train's options that argparse does not check for API callers."""
    if oracle not in ORACLES:
        raise ValueError(f"oracle must be one of {ORACLES}, got {oracle!r}")
    if not 0.0 <= explore_p <= 1.0 or explore_after < 0 or not word_dropout >= 0 \
            or not 0.0 < lr_decay <= 1.0:
        raise ValueError("explore_p must lie in [0, 1], lr_decay in (0, 1], explore_after "
                         "and word_dropout be >= 0")
    if nonprojective not in NONPROJECTIVE:
        raise ValueError(f"nonprojective must be one of {NONPROJECTIVE}, got {nonprojective!r}")
    if word_vectors not in WORD_VECTORS:
        raise ValueError(f"word_vectors must be one of {WORD_VECTORS}, got {word_vectors!r}")
    if raw_text is not None and (embeddings is not None or word_vectors != "skipgram"):
        raise ValueError("raw text feeds the skip-gram word vectors, which embeddings (or "
                         "word vectors 'none') replace: give one or the other")


def _prepare(train_sentences, dev_sentences, tag_columns, min_count, embed_dim, hidden,
             seed, embeddings, optimizer, lr, threads, comm, nonprojective, word_vectors,
             raw_text, skipgram, explores, word_dropout):
    """What train needs before its first epoch (the same on every rank); explores:
    whether an epoch will explore."""
    from fastgrad import _threads
    from fastgrad._arc_standard import projective_trees

    if threads is None:
        threads = max(1, _threads.usable_cores() // (1 if comm is None
                                                     else _threads.local_processes()))
    train_bank = Treebank.read(train_sentences)
    job, set_up_threads = None, threads
    if embeddings is None and word_vectors == "skipgram":
        # started first: the word vectors take longest, and need only the forms
        job = SkipGramJob(train_bank.columns[conllu.FORM], train_bank.lengths.tolist(),
                          embed_dim, raw_text=raw_text, seed=seed, options=skipgram)
        if threads >= 2:   # its C loop takes one of the threads, beside the set-up below
            job.start()
            set_up_threads = threads - 1
    try:
        dev_bank = Treebank.read(dev_sentences)
        if tag_columns is None:
            tag_columns = available_tag_columns(train_bank)
        trees, lifted = train_bank.trees(tag_columns), []
        if nonprojective == "lift":
            marked = next((k for k, lab in enumerate(train_bank.columns[conllu.DEPREL])
                           if SEPARATOR in lab), None)
            if marked is not None:
                raise ValueError(f"a training DEPREL holds {SEPARATOR!r} "
                                 f"({train_bank.columns[conllu.DEPREL][marked]!r}), which "
                                 "lifting non-projective trees writes into labels: skip "
                                 "them instead")
            trees, lifted = projectivize_trees(
                trees, projective_trees(train_bank.heads, train_bank.lengths))
        vocab = Vocabulary(trees, min_count=min_count, tag_columns=tag_columns,
                           extra_words=() if job is None else job.words)
        # (the instances do not depend on the thread count)
        data = make_instances(trees, vocab, n_threads=set_up_threads)
        if len(data.y) == 0:
            raise ValueError("no training sentence is projective: the arc-standard oracle "
                             "has nothing to learn from")
        dev_score = _DevScorer(dev_bank, vocab, Lowering(vocab.labels, nonprojective == "lift"))
        # made while the word vectors are trained (the core is free until they are
        # done); Exploration's arrays are not written before its first run
        exploration = Exploration(trees, vocab) if explores else None
        word_counts = _word_counts(trees, vocab) if word_dropout > 0 else None
    except BaseException:
        if job is not None:
            job.cancel()   # no loop left running behind the error, nor waited for
        raise
    vectors = None if job is None else job.result()
    p = init_like_paper(vocab, embed_dim, hidden, seed)
    if embeddings is not None:
        found = read_embeddings(embeddings, vocab, p.L)
        note = f"{found} words from {os.fspath(embeddings)}"
        meta = {"source": "file", "path": os.fspath(embeddings), "words": found}
    elif vectors is not None:
        rows = np.array([vocab.word_id[w] for w in vectors.words])
        p.L[rows] = vectors.vectors
        note = (f"word vectors: skip-gram on {vectors.n_tokens} tokens"
                + (f" (with {os.fspath(raw_text)})" if raw_text is not None else "")
                + f", {len(vectors.words)} words, {skipgram.epochs} epochs in "
                f"{vectors.seconds:.1f} s")
        meta = {"source": "skipgram", "raw_text": None if raw_text is None
                else os.fspath(raw_text), "words": len(vectors.words),
                "tokens": vectors.n_tokens, **skipgram._asdict()}
    else:
        note, meta = "random word vectors", {"source": "none"}
    opt = make_optimizer(optimizer, p, lr)
    return _Setup(vocab, data, p, opt, dev_score, threads, tag_columns,
                  len(lifted), note, meta, trees, exploration, word_counts)


def _evaluate_and_save(model, dev_score, best, model_path, comm):
    """The dev scores and whether they beat the best so far (then the model is saved);
    under MPI rank 0 does both and tells every rank, failures included."""
    scores = improved = error = None
    if comm is None or comm.Get_rank() == 0:
        try:
            scores = dev_score(model._predictor(refresh=True))
            improved = scores["las"] > best["las"]
            if improved:
                model.save(model_path)
        except (OSError, ValueError) as err:
            if comm is None:
                raise
            error = err
    if comm is not None:
        from fastgrad import distributed as fd

        fd._agree(comm, error, None)
        scores, improved = comm.bcast((scores, improved), root=0)
    return scores, improved


def _same_on_every_rank(comm, data) -> None:
    """Every rank parses the training set with the same parameters, so its explored
    instances agree; should a rank's floating point differ anyway (another BLAS
    path), rank 0's instances replace every rank's, so the ranks shard one data set."""
    import zlib

    digest = zlib.crc32(data.y.tobytes(), zlib.crc32(data.idx.tobytes()))
    if len(set(comm.allgather(digest))) > 1:
        comm.Bcast(data.idx, root=0)
        comm.Bcast(data.y, root=0)


def _word_counts(trees, vocab: Vocabulary) -> np.ndarray:
    """Training occurrences per id of the joint space (inf for everything but real
    words: NULL, ROOT, UNK, tags and labels are never dropped)."""
    counts = np.full(vocab.size, np.inf)
    unk = vocab.word_id[UNK]
    ids = np.fromiter((vocab.word_id.get(w, unk) for t in trees for w in t.words), np.int64)
    counts[3:vocab.n_words] = np.bincount(ids, minlength=vocab.size)[3:vocab.n_words]
    return counts


_DROPOUT_BLOCK_ROWS = 8192    # rows whose draws word_dropout_rows holds at once (in L2)


def word_dropout_rows(idx, counts, alpha: float, unk: int, seed: int, out=None):
    """A copy of training rows (into out, when given; out may be idx itself) whose
    18 word slots hold UNK with probability alpha / (alpha + count of the word) each.
    The draws are numpy's rng.random over each block of rows; for int32 rows both
    the draws and the replacement run on the kernels' threads (fastgrad._uniform,
    the same bits; EWT's 409,154 rows at two threads: 22 ms, numpy's passes 51 ms)."""
    from fastgrad import _threads, _uniform
    from fastgrad._step import fill_uniform

    if out is None or out.shape != idx.shape:
        out = idx.copy()
    elif out is not idx:
        np.copyto(out, idx)
    p_unk = np.ascontiguousarray(alpha / (alpha + counts), np.float64)   # per id
    rng = np.random.default_rng(seed)
    step = _DROPOUT_BLOCK_ROWS                   # bounded temporaries, the same draws
    fused = out.dtype == np.int32 and out.ndim == 2 and out.flags.c_contiguous
    threads = _threads.threads_for_step()
    draws = np.empty((min(step, len(out)), min(18, out.shape[1])))
    for start in range(0, len(out), step):
        words = out[start:start + step, :18]
        u = draws[:len(words)]
        fill_uniform(rng, u, threads)            # rng.random(words.shape)'s bits
        if not (fused and _uniform.drop_below(out[start:start + step], u, p_unk, unk,
                                              threads)):
            words[u < p_unk[words]] = unk
    return out


class _DevScorer:
    """The dev set encoded once; scores of a model's greedy parses (score_arrays)."""

    def __init__(self, bank: Treebank, vocab: Vocabulary, lowering: Lowering):
        self.bank, self.vocab, self.lowering = bank, vocab, lowering
        self.encoded = vocab.encode_all(bank.trees(vocab.tag_columns))

    def __call__(self, predictor) -> dict:
        heads, labels = parse_encoded(predictor, self.vocab, *self.encoded).result_arrays()
        heads = self.lowering(heads, labels, self.encoded[2])
        names = self.lowering.plain_names
        return score_arrays(self.bank.heads, self.bank.columns[conllu.DEPREL],
                            self.bank.columns[conllu.UPOS], heads,
                            [names[k] for k in labels.tolist()])


def init_like_paper(vocab: Vocabulary, embed_dim: int, hidden: int, seed: int):
    """fastgrad.init_params shapes; L uniform in ±0.01 as Chen & Manning's random embeddings."""
    p = fastgrad.init_params(vocab.size, vocab.n_features, embed_dim, hidden, vocab.n_transitions,
                             dtype=np.float32, seed=seed)
    p.L[:] = np.random.default_rng(seed).uniform(-0.01, 0.01, p.L.shape)
    return p


def make_optimizer(name: str, p, lr: float | None):
    if name == "adagrad":
        return fastgrad.AdaGrad(p, lr=0.01 if lr is None else lr, eps=1e-6)
    if name == "adam":
        return fastgrad.Adam(p, lr=5e-4 if lr is None else lr)
    raise ValueError(f"optimizer must be adagrad or adam, got {name!r}")


def read_embeddings(path, vocab: Vocabulary, L: np.ndarray) -> int:
    """Rows of L for the vocabulary's words from a word2vec text file; returns how
    many words were found. The first line may be the header "count dim"."""
    name = os.fspath(path)
    d, found = L.shape[1], 0
    with open(name, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.rstrip("\r\n").rstrip(" ").split(" ")
            if line_no == 1 and len(parts) == 2 and all(x.isdigit() for x in parts):
                if int(parts[1]) != d:
                    raise ValueError(f"{name}:1: vectors of {parts[1]} numbers, but the "
                                     f"model's embeddings have {d} (--embed-dim)")
                continue
            if len(parts) == 1 and not parts[0]:
                continue
            if len(parts) != d + 1:
                raise ValueError(f"{name}:{line_no}: a word and {len(parts) - 1} numbers, "
                                 f"where {d} were due (--embed-dim)")
            row = vocab.word_id.get(parts[0])
            try:
                values = np.array(parts[1:], dtype=np.float64)
            except ValueError:
                raise ValueError(f"{name}:{line_no}: not a number among the vector's "
                                 "values") from None
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{name}:{line_no}: the vector holds NaN or Inf")
            if row is not None and row >= 3:
                L[row] = values
                found += 1
    return found


def train(train_sentences, dev_sentences, model_path, *, epochs: int = 20,
          hidden: int = 400, embed_dim: int = 100, optimizer: str = "adam",
          lr: float | None = None, batch_size: int = 256, dropout: float = 0.5,
          l2: float = 1e-8, seed: int = 0, min_count: int = 2, embeddings=None,
          patience: int | None = 5, tag_columns=None, threads: int | None = None,
          nonprojective: str = "lift", word_vectors: str = "skipgram", raw_text=None,
          oracle: str = "dynamic", explore_after: int = 1, explore_p: float = 0.9,
          word_dropout: float = 0.25, lr_decay: float = 0.9,
          skipgram: SkipGramOptions = SkipGramOptions(),
          comm=None, log: Callable[[str], None] = print) -> dict:
    """Train on a gold CoNLL-U file (a path, or a list of conllu.Sentences; so the
    dev set), keeping (saving to model_path) the epoch with the best dev LAS;
    returns a summary (best epoch, its dev scores, states/s, history).

    tag_columns: which of "upos", "xpos", "feats" feed tag features (18 slots each);
    None: UPOS, and XPOS and FEATS where most training words have them.
    nonprojective: "lift" (pseudo-projective: non-projective training trees lifted,
    decorated labels, parses lowered; fastgrad.parser.projectivize) or "skip".
    word_vectors: "skipgram" (the word rows of L start from skip-gram vectors
    trained on the training forms, and raw_text, a file of one sentence a line, if
    given; fastgrad.parser.word_vectors) or "none"; embeddings (a word2vec text
    file) replaces them.
    oracle: "static" (every epoch trains on the static oracle's derivations) or
    "dynamic": after explore_after epochs, each epoch trains on the states met by
    parsing the training set with the model, following its best move with
    probability explore_p and the dynamic oracle's otherwise, each state's target
    the dynamic oracle's (transitions.Exploration).
    word_dropout: alpha of word dropout (Kiperwasser & Goldberg 2016): in each
    epoch's training rows a word seen c times in training becomes UNK with
    probability alpha / (alpha + c), so that UNK's rows learn from words like the
    unseen ones of new text (0: off).
    lr_decay: epoch e trains at lr · lr_decay^(e-1).
    threads: the kernels' thread count for the whole run (default: the usable
    cores, shared among the ranks a launcher started on this host), fixed so that
    the same command and seed give the same model.
    comm: an mpi4py communicator: data-parallel training (fastgrad.fit's comm), every
    global batch sharded by rank; every rank reads the files and builds the same
    vocabulary and instances; rank 0 alone logs, parses the dev set and writes the
    model, and every rank takes its early-stopping decision from rank 0's scores."""
    from fastgrad import _threads

    started = time.perf_counter()
    rank = 0 if comm is None else comm.Get_rank()
    if rank != 0:
        log = lambda _: None   # noqa: E731 (rank 0 alone reports)
    error, setup = None, None
    try:   # every rank builds the same vocabulary and instances from the same files
        _check_choices(nonprojective, word_vectors, raw_text, embeddings, oracle,
                       explore_after, explore_p, word_dropout, lr_decay)
        setup = _prepare(train_sentences, dev_sentences, tag_columns, min_count, embed_dim,
                         hidden, seed, embeddings, optimizer, lr, threads, comm,
                         nonprojective, word_vectors, raw_text, skipgram,
                         oracle == "dynamic" and epochs > explore_after, word_dropout)
    except (OSError, ValueError) as err:
        if comm is None:
            raise
        error = err
    if comm is not None:   # a rank that failed fails every rank, before any other collective
        from fastgrad import distributed as fd
        fd._agree(comm, error, None)
    vocab, data, p, opt, dev_score, threads, tag_columns = setup[:7]
    options = {"epochs": epochs, "hidden": hidden, "embed_dim": embed_dim,
               "optimizer": optimizer, "lr": opt.lr, "batch_size": batch_size,
               "dropout": dropout, "l2": l2, "seed": seed, "min_count": min_count,
               "embeddings": None if embeddings is None else os.fspath(embeddings),
               "tag_columns": list(tag_columns), "nonprojective": nonprojective,
               "oracle": oracle, "explore_after": explore_after, "explore_p": explore_p,
               "word_dropout": word_dropout, "lr_decay": lr_decay,
               "word_vectors": setup.vectors_meta}
    ranks = "" if comm is None else f" on each of {comm.Get_size()} MPI ranks"
    nonproj = f"{setup.n_lifted} non-projective, lifted" if nonprojective == "lift" \
        else f"{data.n_skipped} non-projective, skipped"
    log(f"training: {data.n_sentences + data.n_skipped} sentences ({nonproj}), "
        f"{len(data.y)} states; vocabulary {vocab.n_words} words, "
        f"{vocab.n_tags} tags, {len(vocab.labels)} labels; tag features from "
        f"{', '.join(tag_columns)}; {setup.vectors_note}"
        + f"; {threads} thread{'s' if threads > 1 else ''}{ranks}; "
        f"ready in {time.perf_counter() - started:.1f} s")
    best: dict = {"las": -1.0}
    history = []
    model = ParserModel(p, vocab, options)
    previous = _threads._user_threads
    fastgrad.set_num_threads(threads)
    try:
        dropped, explored = None, False
        exploration, word_counts = setup.exploration, setup.word_counts
        for epoch in range(1, epochs + 1):
            epoch_data, explore_note = data, ""
            if oracle == "dynamic" and epoch > explore_after:
                t0 = time.perf_counter()
                if not explored:   # the static rows are never used again
                    exploration.reuse(data)
                    data = dropped = setup = epoch_data = None
                    explored = True
                # (the dev parse just refreshed the cache, except on ranks other than 0)
                epoch_data = exploration.run(model._predictor(refresh=rank != 0), explore_p,
                                             seed * 100_003 + epoch, n_threads=threads)
                if comm is not None:
                    _same_on_every_rank(comm, epoch_data)
                explore_note = f"explored in {time.perf_counter() - t0:.1f} s, "
            if word_dropout > 0:   # dropped in place where the rows are not used again
                in_place = explored or (oracle == "dynamic" and epoch == explore_after)
                # (no other name may keep these rows: the static ones must be freed
                # before exploration's arrays are made)
                epoch_data = epoch_data._replace(idx=word_dropout_rows(
                    epoch_data.idx, word_counts, word_dropout, vocab.word_id[UNK],
                    seed * 100_003 + epoch, out=epoch_data.idx if in_place else dropped))
                if not in_place:
                    dropped = epoch_data.idx
            opt.lr = options["lr"] * lr_decay ** (epoch - 1)
            stats = fastgrad.fit(p, epoch_data.idx, epoch_data.y, opt, epochs=1,
                                 batch_size=batch_size, dropout=dropout, l2=l2,
                                 shuffle_seed=seed * 100_003 + epoch, comm=comm)[0]
            t0 = time.perf_counter()
            scores, improved = _evaluate_and_save(model, dev_score, best, model_path, comm)
            parse_seconds = time.perf_counter() - t0
            if improved:
                best = {"epoch": epoch, **scores}
            history.append({"epoch": epoch, "loss": stats.loss,
                            "states_per_s": stats.examples_per_s,
                            "dev_uas": scores["uas"], "dev_las": scores["las"]})
            log(f"epoch {epoch}: {explore_note}loss {stats.loss:.4f}, "
                f"{stats.examples_per_s:,.0f} states/s; "
                f"dev UAS {scores['uas']:.2f} LAS {scores['las']:.2f} "
                f"({scores['words'] / parse_seconds:,.0f} words/s parsed)"
                + (f"; saved to {model_path}" if improved else ""))
            if patience is not None and epoch - best["epoch"] >= patience:
                log(f"no better dev LAS for {patience} epochs: stopping")
                break
    finally:
        fastgrad.set_num_threads(previous)
    return {"best_epoch": best["epoch"], "dev": {k: v for k, v in best.items() if k != "epoch"},
            "history": history}
