"""Command line: ``python -m fastgrad bench`` (the benchmark) and ``python -m fastgrad demo``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from fastgrad._cli_types import nonnegative_int, positive_int, positive_int_list


def demo(args) -> int:
    """Check the gradients by finite differences, then train a small problem."""
    import fastgrad

    rng = np.random.default_rng(0)
    p = fastgrad.init_params(n_vocab=200, n_features=6, embed_dim=8, hidden=32, n_classes=5,
                             dtype=np.float64, seed=0)
    idx = rng.integers(0, 200, size=(64, 6))
    y = idx[:, 0] % 5  # learnable: the class is a function of the first word
    errors = fastgrad.gradcheck(p, idx, y)
    print("gradcheck, worst relative error per parameter (float64):")
    for name, err in errors.items():
        print(f"  {name:>2}: {err:.2e}")
    ok = max(errors.values()) < 1e-6
    print("  ->", "OK" if ok else "FAILED")
    p32 = fastgrad.Params(*(a.astype(np.float32) for a in p))
    t0 = time.perf_counter()
    for step in range(1, 301):
        J = fastgrad.sgd_step(p32, idx, y, 0.5)
        if step in (1, 10, 100, 300):
            print(f"step {step:3d}: loss {J:.4f}")
    accuracy = np.mean(fastgrad.predict(p32, idx) == y)
    print(f"trained 300 float32 steps in {time.perf_counter() - t0:.3f}s; "
          f"training accuracy {accuracy:.2%}")
    return 0 if ok else 1


def bench(args) -> int:
    from fastgrad import bench as harness

    methods = harness.available_methods(args.methods.split(",") if args.methods else None)
    missing = sorted(set(harness.OPTIONAL) - set(methods)) if not args.methods else []
    print(f"fastgrad bench: configs {','.join(args.config)}, variants {','.join(args.variant)}, "
          f"threads {','.join(map(str, args.threads))}, {args.dtype}, {args.rounds} rounds")
    if missing:
        print(f"(optional peers not installed: {', '.join(missing)}; "
              "pip install torch==2.13.0 jax jaxlib)")
    results = harness.run(args.config, args.variant, args.threads, np.dtype(args.dtype),
                          methods, rounds=args.rounds, warmup=args.warmup)
    print(harness.format_table(results))
    if args.json:
        from fastgrad._files import output_file
        with output_file(args.json) as f:
            f.write(json.dumps([r.as_dict() for r in results], indent=1).encode())
        print(f"results written to {args.json}")
    if args.plot:
        harness.plot(results, args.plot)
        print(f"chart written to {args.plot}")
    return 0


def inference(args) -> int:
    from fastgrad import bench as harness

    print(f"precomputed inference ({args.dtype}, {args.variant} indices; word slots cache "
          f"their {args.top_words} most frequent rows, tag and label slots every row)")
    print("| config | N | predict_proba ms | precomputed ms | speed-up | cache hits | "
          "cache MiB |")
    print("|---|---|---|---|---|---|---|")
    for c in args.config:
        for r in harness.run_inference(harness.get_config(c), sizes=args.sizes,
                                       top_words=args.top_words,
                                       dtype=np.dtype(args.dtype), variant=args.variant):
            print(f"| {c} | {r['n']} | {r['predict_proba_ms']:.3f} | {r['precomputed_ms']:.3f} "
                  f"| {r['speedup']:.2f}x | {r['hit_rate']:.1%} | {r['cache_mib']:.1f} |")
    return 0


def _check_bench_outputs(parser, args) -> None:
    """What could only fail at the end of a long benchmark fails before it starts:
    unknown methods, an output path that cannot be written, --plot without matplotlib."""
    import importlib.util

    from fastgrad import bench as harness

    if args.methods is not None:
        try:
            harness.available_methods(args.methods.split(","))
        except ValueError as err:
            parser.error(str(err))
    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path is None:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            parser.error(f"{option} {path}: is a folder, not a file")
        if not os.path.isdir(folder):
            parser.error(f"{option} {path}: its folder does not exist")
        if not os.access(folder, os.W_OK) or (os.path.exists(path)
                                              and not os.access(path, os.W_OK)):
            parser.error(f"{option} {path}: not writable")
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        parser.error("--plot needs matplotlib: pip install matplotlib")


def main(argv=None) -> int:
    import fastgrad

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["parser"]:   # the parser has its own options
        from fastgrad.parser import cli
        return cli.main(argv[1:])
    from fastgrad.bench import CONFIGS, TREEBANK, VARIANTS, treebank_available

    parser = argparse.ArgumentParser(prog="python -m fastgrad", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fastgrad {fastgrad.__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("demo", help="gradient check and a short training run (the default)")
    sub.add_parser("config", help="print fastgrad.show_config()")
    sub.add_parser("parser", help="train and evaluate Chen & Manning's parser on a treebank "
                                  "(fastgrad parser --help)")
    b = sub.add_parser("bench", help="ms per training step: fastgrad vs reference, floor, peers")
    default_configs = list(CONFIGS) + ([TREEBANK] if treebank_available() else [])
    b.add_argument("--config", type=lambda s: s.split(","), default=default_configs,
                   help=f"comma-separated, from {','.join(CONFIGS)},{TREEBANK} (default: all; "
                        f"{TREEBANK}, real parser states, needs pip install turkish-treebanks)")
    b.add_argument("--variant", type=lambda s: s.split(","), default=list(VARIANTS),
                   help="uniform,skewed (default: both)")
    b.add_argument("--threads", type=positive_int_list, default=[1, 2],
                   help="comma-separated thread counts (default: 1,2)")
    b.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    b.add_argument("--methods", default=None,
                   help="comma-separated subset of fastgrad,fastgrad-dense,fastgrad-factored,"
                        "reference,floor,torch,jax (default: all installed but "
                        "fastgrad-factored)")
    b.add_argument("--rounds", type=positive_int, default=5, help="timed rounds per scenario")
    b.add_argument("--warmup", type=int, default=1, choices=range(0, 100), metavar="0..99",
                   help="untimed rounds first")
    b.add_argument("--distributed", action="store_true",
                   help="data-parallel steps over MPI: run as mpiexec -n P fastgrad bench "
                        "--distributed (weak and strong scaling, compute vs exchange, bytes)")
    b.add_argument("--contention", action="store_true",
                   help="training states/s quiet and beside a busy process it starts, at 1 "
                        "thread and the default (and torch's, when installed)")
    b.add_argument("--rows-per-rank", type=positive_int, default=1024,
                   help="with --distributed: rows of each rank's shard (default 1024)")
    b.add_argument("--steps", type=positive_int, default=10,
                   help="with --distributed: steps timed per measurement (default 10)")
    b.add_argument("--json", metavar="PATH", help="write the results as JSON")
    b.add_argument("--plot", metavar="PATH", help="write a PNG bar chart (needs matplotlib)")
    inf = sub.add_parser("inference", help="predict_proba vs precomputed inference")
    inf.add_argument("--config", type=lambda s: s.split(","), default=["parser", "cm2014"])
    inf.add_argument("--top-words", type=nonnegative_int, default=1000)
    inf.add_argument("--sizes", type=positive_int_list, default=[1, 16, 64, 256, 1024, 4096],
                     help="comma-separated batch sizes (default 1,16,64,256,1024,4096)")
    inf.add_argument("--variant", choices=VARIANTS, default="skewed")
    inf.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    args = parser.parse_args(argv)
    for c in getattr(args, "config", ()):
        if c == TREEBANK and not treebank_available():
            parser.error(f"config {TREEBANK} needs the turkish-treebanks package: "
                         "pip install turkish-treebanks")
        if c not in CONFIGS and c != TREEBANK:
            parser.error(f"unknown config {c!r}; choose from {', '.join(CONFIGS)}, {TREEBANK}")
    if args.command == "inference":
        return inference(args)
    if args.command == "bench":
        for v in args.variant:
            if v not in VARIANTS:
                parser.error(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
        _check_bench_outputs(parser, args)
        if args.contention:
            from fastgrad import bench_contention
            args.config_given = "--config" in argv
            return bench_contention.main(args)
        if args.distributed:
            try:
                from fastgrad import bench_distributed
                import mpi4py  # noqa: F401
            except ImportError:
                parser.error("--distributed needs mpi4py: pip install 'fastgrad[mpi]'")
            if "--config" not in " ".join(argv):
                args.config = ["parser", "cm2014"] + (
                    [TREEBANK] if treebank_available() else [])
            return bench_distributed.main(args)
        return bench(args)
    if args.command == "config":
        fastgrad.show_config()
        return 0
    return demo(args)


if __name__ == "__main__":
    sys.exit(main())
