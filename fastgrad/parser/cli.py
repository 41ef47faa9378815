"""``fastgrad parser``: the showcase, and train / parse / evaluate on any CoNLL-U file.

    fastgrad parser                                   # the showcase on the bundled treebank
    fastgrad parser train --train T.conllu --dev D.conllu --model M.npz
    fastgrad parser parse --model M.npz IN.conllu -o OUT.conllu   (- or nothing: stdin/stdout)
    fastgrad parser evaluate --model M.npz GOLD.conllu [--json]

Bad argument values are usage errors (exit status 2); a file that cannot be read
or used is one line naming the file (and line) and what is wrong (exit status 1).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from fastgrad._cli_types import non_negative_int, positive_int, real_in
from fastgrad.parser.options import add_training_options, tag_columns

SUBCOMMANDS = ("train", "parse", "evaluate")


def _train_parser(sub) -> None:
    t = sub.add_parser("train", help="train on a CoNLL-U file, keep the best epoch on dev",
                       description="Train the parser; the model with the best dev LAS is saved "
                                   "(atomically) after each epoch that improves it.")
    t.add_argument("--train", required=True, metavar="FILE.conllu")
    t.add_argument("--dev", required=True, metavar="FILE.conllu")
    t.add_argument("--model", required=True, metavar="OUT", help="the model file to write")
    t.add_argument("--embeddings", metavar="FILE",
                   help="word2vec text format: initial rows of L for the words it has "
                        "(instead of the skip-gram vectors trained here)")
    t.add_argument("--word-vectors", choices=["skipgram", "none"], default="skipgram",
                   help="skipgram (default): the word rows of L start from skip-gram vectors "
                        "trained on the training file's forms (and --raw-text); none: random")
    t.add_argument("--raw-text", metavar="FILE", default=None,
                   help="more text for the skip-gram vectors: UTF-8, one sentence a line, "
                        "words separated by spaces (streamed)")
    t.add_argument("--skipgram-epochs", type=positive_int, default=15,
                   help="passes over the text for the word vectors (default 15)")
    t.add_argument("--skipgram-window", type=positive_int, default=2,
                   help="the skip-gram's largest context distance (default 2)")
    t.add_argument("--oracle", choices=["dynamic", "static"], default="dynamic",
                   help="dynamic (default): after --explore-after epochs, train on the states "
                        "the model itself reaches, with the dynamic oracle's targets; "
                        "static: the gold derivations only")
    t.add_argument("--explore-after", type=non_negative_int, default=1, metavar="EPOCHS",
                   help="static epochs before exploring (default 1)")
    t.add_argument("--explore-p", type=real_in(0.0, 1.0), default=0.9, metavar="P",
                   help="while exploring, follow the model's move with this probability, "
                        "else the oracle's (default 0.9)")
    t.add_argument("--word-dropout", type=real_in(0.0, float("inf")), default=0.25,
                   metavar="ALPHA",
                   help="a training word seen c times becomes UNK with probability "
                        "ALPHA/(ALPHA+c) in each epoch's rows (default 0.25; 0: off)")
    t.add_argument("--lr-decay", type=real_in(0.0, 1.0, low_open=True), default=0.9,
                   metavar="FACTOR", help="epoch e trains at lr x FACTOR^(e-1) (default 0.9)")
    t.add_argument("--nonprojective", choices=["lift", "skip"], default="lift",
                   help="lift (default): train on non-projective trees made projective "
                        "and output non-projective parses (pseudo-projective parsing); "
                        "skip: leave them out, output projective trees")
    add_training_options(t, epochs=20, hidden=400, embed_dim=100, optimizer="adam")
    t.add_argument("--patience", type=positive_int, default=5,
                   help="stop after this many epochs without a better dev LAS (default 5)")
    t.add_argument("--min-count", type=positive_int, default=2,
                   help="words seen fewer times in training map to UNK (default 2)")
    t.add_argument("--tag-columns", type=tag_columns, default=None, metavar="COLUMNS",
                   help="comma-separated tag columns for the tag features, from upos,xpos,feats "
                        "(default: upos, and xpos and feats where most training words have them)")
    t.add_argument("--threads", type=positive_int, default=None,
                   help="the kernels' threads for the whole run (default: the usable cores); "
                        "fixed, so that the same command and --seed give the same model")
    t.add_argument("--quiet", action="store_true", help="no progress lines")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="fastgrad parser", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", metavar="{train,parse,evaluate}")
    _train_parser(sub)
    p = sub.add_parser("parse", help="fill HEAD and DEPREL of a CoNLL-U file",
                       description="The words and the tag columns the model was trained on "
                                   "(UPOS, and XPOS and FEATS where it used them) are read; "
                                   "HEAD and DEPREL are written; every other column, comment "
                                   "and multiword line is kept.")
    p.add_argument("--model", required=True)
    _threads_option(p)
    p.add_argument("input", nargs="?", default="-", metavar="INPUT.conllu",
                   help="the file to parse (- or nothing: standard input)")
    p.add_argument("-o", "--output", default="-", metavar="OUTPUT.conllu",
                   help="where to write (- or nothing: standard output)")
    e = sub.add_parser("evaluate", help="UAS and LAS on a gold CoNLL-U file",
                       description="Parse the gold file's words with the model (or read "
                                   "--system) and score by the CoNLL 2018 shared task's "
                                   "definitions.")
    e.add_argument("--model", default=None)
    e.add_argument("gold", metavar="GOLD.conllu")
    e.add_argument("--system", default=None, metavar="PARSED.conllu",
                   help="score this parsed file instead of parsing with --model")
    e.add_argument("--json", action="store_true", help="one JSON object on standard output")
    _threads_option(e)
    return ap


def _threads_option(sub) -> None:
    """--threads of parse and evaluate (train has its own, which also fixes the model)."""
    sub.add_argument("--threads", type=positive_int, default=None,
                     help="the kernels' threads (default: the usable cores, or "
                          "OMP_NUM_THREADS); the parses are the same at any count")


def _report(scores: dict) -> str:
    lines = ["| | UAS | LAS | LAS full label |", "|---|---|---|---|"]
    for name, suffix in (("all words", ""), ("no punctuation", "_no_punct")):
        lines.append(f"| {name} | {scores['uas' + suffix]:.2f} | {scores['las' + suffix]:.2f} | "
                     f"{scores['las_full' + suffix]:.2f} |")
    lines.append(f"({scores['words']} words, {scores['words_no_punct']} without punctuation; "
                 "LAS compares the universal part of DEPREL, as the CoNLL 2018 script does)")
    return "\n".join(lines)


# Launchers' variables for the size of the whole job: MPICH's hydra, Open MPI, MVAPICH.
_WORLD_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launcher_comm():
    """MPI.COMM_WORLD when an MPI launcher started this process as one of several
    (mpiexec -n N fastgrad parser train ...), else None (a plain run: no mpi4py import)."""
    size = max((int(os.environ[v]) for v in _WORLD_SIZE_VARIABLES
                if os.environ.get(v, "").isdigit()), default=1)
    if size <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError(f"started by an MPI launcher as one of {size} processes, but "
                           "mpi4py is not installed (pip install 'fastgrad[mpi]'); every "
                           "process would train alone and write the same model") from None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.Get_size() > 1 else None


def run(args, log, comm=None) -> int:
    from fastgrad._files import output_file, same_file
    from fastgrad.parser import conllu
    from fastgrad.parser.model import ParserModel, ParserModelError
    from fastgrad.parser.scoring import attachment_scores
    from fastgrad.parser.training import train
    from fastgrad.parser.word_vectors import SkipGramOptions

    if args.command == "train":
        for data in (args.train, args.dev):
            if same_file(args.model, data):
                raise ParserModelError(f"--model {args.model} is the treebank {data}: "
                                       "training would overwrite it")
        summary = train(args.train, args.dev, args.model, epochs=args.epochs,
                        hidden=args.hidden, embed_dim=args.embed_dim, optimizer=args.optimizer,
                        lr=args.lr, batch_size=args.batch_size, dropout=args.dropout,
                        l2=args.l2, seed=args.seed, min_count=args.min_count,
                        embeddings=args.embeddings, patience=args.patience,
                        tag_columns=args.tag_columns, threads=args.threads,
                        nonprojective=args.nonprojective, word_vectors=args.word_vectors,
                        raw_text=args.raw_text, oracle=args.oracle,
                        explore_after=args.explore_after, explore_p=args.explore_p,
                        word_dropout=args.word_dropout, lr_decay=args.lr_decay,
                        skipgram=SkipGramOptions(epochs=args.skipgram_epochs,
                                                 window=args.skipgram_window), comm=comm,
                        log=(lambda _: None) if args.quiet else log)
        if comm is None or comm.Get_rank() == 0:
            log(f"best epoch {summary['best_epoch']}: dev UAS {summary['dev']['uas']:.2f} "
                f"LAS {summary['dev']['las']:.2f}; model in {args.model}")
        return 0
    if args.threads is not None:   # parse or evaluate (train returned above)
        from fastgrad import set_num_threads
        set_num_threads(args.threads)
    if args.command == "parse":   # streamed: memory holds one block of the input
        model = ParserModel.load(args.model)
        with output_file(args.output) as out:
            for chunk in conllu.chunks(args.input, need_tree=False):
                out.write(model.parse_chunk(chunk))
        return 0
    gold = conllu.read(args.gold, need_tree=True)
    if args.system is not None:
        system = conllu.read(args.system, need_tree=True)
        name = args.system
    else:
        system = ParserModel.load(args.model).parse(gold)
        name = "parsed"
    scores = attachment_scores(gold, system, system_name=name)
    if args.json:
        print(json.dumps(scores))
    else:
        print(_report(scores))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in SUBCOMMANDS + ("-h", "--help"):
        from fastgrad.examples import parser as showcase
        return showcase.main(argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return 0
    if args.command == "evaluate" and (args.model is None) == (args.system is None):
        ap.error("evaluate needs --model (to parse the gold words) or --system (a parsed file)")

    def log(message: str) -> None:
        print(message, file=sys.stderr if args.command == "parse" else sys.stdout, flush=True)

    from fastgrad import ModelFileError
    from fastgrad.parser.conllu import CoNLLUError
    from fastgrad.parser.model import ParserModelError
    prefix, comm = f"fastgrad parser {args.command}", None
    try:
        if args.command == "train":
            comm = launcher_comm()
            if comm is not None:
                prefix += f" (rank {comm.Get_rank()})"
        return run(args, log, comm)
    except (CoNLLUError, ModelFileError, ParserModelError) as e:
        print(f"{prefix}: error: {e}", file=sys.stderr)
    except OSError as e:   # a file that cannot be read or written
        where = f"{e.filename}: " if e.filename else ""
        print(f"{prefix}: error: {where}{e.strerror or e}", file=sys.stderr)
    except (ValueError, RuntimeError) as e:   # embeddings file, nothing to learn, no mpi4py
        print(f"{prefix}: error: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        kept = f"; the best model so far is in {args.model}" if args.command == "train" else ""
        print(f"{prefix}: interrupted{kept}", file=sys.stderr)
        if comm is not None:
            comm.Abort(130)
        return 130
    except BaseException:
        if comm is not None:   # a rank that dies must end the job, not leave the others waiting
            import traceback
            traceback.print_exc()
            sys.stderr.flush()
            comm.Abort(1)
        raise
    return 1
