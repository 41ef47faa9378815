"""The benchmark harness: fastgrad side by side with the reference, the dense GEMM
floor and (when installed) PyTorch and JAX, on the named configs.

One training step of each method is timed in turn, round after round, so that
every method sees the same machine noise; after a warm-up the medians (with
min and max) of the rounds are reported. ``python -m fastgrad bench`` is the
command-line front end; ``bench/test_bench.py`` runs the same steps under
pytest-benchmark.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import fastgrad
from fastgrad._progress import ProgressBar
from fastgrad import reference
from fastgrad._timing import SETTLE_S, time_round  # noqa: F401  (the harness's timing round)


@dataclass(frozen=True)
class Config:
    """A network shape and the vocabulary ranges its slots draw from."""

    name: str
    n: int
    embed_dim: int
    hidden: int
    n_classes: int
    slot_groups: tuple  # ((number of slots, vocabulary size of each), ...)

    @property
    def n_features(self) -> int:
        return sum(count for count, _ in self.slot_groups)

    @property
    def n_vocab(self) -> int:
        return sum(size for _, size in self.slot_groups)


CONFIGS = {
    # Chen & Manning's parser at the size of the derivation: 18 word and 18 POS slots
    "parser": Config("parser", 1024, 50, 200, 3, ((18, 4955), (18, 45))),
    # their full feature set: 18 words, 18 POS tags, 12 arc labels
    "cm2014": Config("cm2014", 1024, 50, 200, 79, ((18, 20000), (18, 45), (12, 40))),
    # a window tagger: 5 words of a 50k vocabulary
    "window": Config("window", 2048, 50, 100, 9, ((5, 50000),)),
    # Bengio's neural language model: 4 context words, a 10k-word softmax
    "nplm": Config("nplm", 512, 64, 256, 10000, ((4, 10000),)),
}
VARIANTS = ("uniform", "skewed")
# The treebank config: real parser states (fastgrad.examples.parser) when the optional
# turkish-treebanks package is installed; its one variant is "real".
TREEBANK = "treebank"
REAL = "real"
_treebank_cache: dict = {}


def treebank_available() -> bool:
    import importlib.metadata
    try:
        importlib.metadata.distribution("turkish-treebanks")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def treebank_data():
    """(Config, training-state features, gold transitions) of the treebank, built once."""
    if not _treebank_cache:
        from fastgrad.examples import parser as example
        train = example.load_splits()["train"]
        vocab = example.Vocabulary(train)
        data = example.make_instances(train, vocab)
        config = Config(TREEBANK, 1024, 50, 200, vocab.n_transitions,
                        ((18, vocab.n_words), (18, vocab.n_tags), (12, vocab.n_label_entries)))
        _treebank_cache.update(config=config, idx=data.idx.astype(np.int64),
                               y=data.y.astype(np.int64))
    return _treebank_cache["config"], _treebank_cache["idx"], _treebank_cache["y"]


def get_config(name: str) -> Config:
    return treebank_data()[0] if name == TREEBANK else CONFIGS[name]


def variants_of(name: str, requested) -> list:
    return [REAL] if name == TREEBANK else list(requested)


def make_batch(config: Config, variant: str, seed: int = 0):
    """(idx, y) for one batch: each slot draws from its own vocabulary range,
    uniformly or with Zipf frequencies p(rank) ∝ 1/rank (rank 1 = the range's first row)."""
    rng = np.random.default_rng(seed)
    if variant == REAL:   # a random batch of real parser states
        _, states, moves = treebank_data()
        rows = np.sort(rng.choice(len(moves), size=config.n, replace=False))
        return np.ascontiguousarray(states[rows]), np.ascontiguousarray(moves[rows])
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    columns, offset = [], 0
    for count, size in config.slot_groups:
        if variant == "uniform":
            draws = rng.integers(0, size, size=(config.n, count))
        else:
            weights = 1.0 / np.arange(1, size + 1)
            draws = rng.choice(size, size=(config.n, count), p=weights / weights.sum())
        columns.append(draws + offset)
        offset += size
    idx = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype=np.int64)
    y = rng.integers(0, config.n_classes, size=config.n).astype(np.int64)
    return idx, y


def distinct_pairs(idx: np.ndarray) -> int:
    """K: the number of distinct (slot, row) pairs of a batch."""
    return int(sum(len(np.unique(idx[:, j])) for j in range(idx.shape[1])))


# ---------------------------------------------------------------------------
# The methods: each a factory returning a zero-argument training step
# ---------------------------------------------------------------------------

LR = 1e-3


def _fastgrad_step(path):
    def factory(config, idx, y, dtype, seed):
        p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                                 config.hidden, config.n_classes, dtype=dtype, seed=seed)
        return lambda: fastgrad.sgd_step(p, idx, y, LR, path=path)
    return factory


def _reference_step(config, idx, y, dtype, seed):
    p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                             config.hidden, config.n_classes, dtype=dtype, seed=seed)
    return lambda: reference.sgd_step(p, idx, y, LR)


def _floor_arrays(config, dtype, seed) -> dict:
    """Operands and preallocated outputs of a step's six products, at the config's shapes."""
    rng = np.random.default_rng(seed)
    n, width, hidden, nc = config.n, config.n_features * config.embed_dim, config.hidden, \
        config.n_classes

    def rand(*shape):
        return rng.standard_normal(shape).astype(dtype)

    return {"x": rand(n, width), "W": rand(width, hidden), "h": rand(n, hidden),
            "U": rand(hidden, nc), "delta1": rand(n, nc), "delta2": rand(n, hidden),
            "z": np.empty((n, hidden), dtype), "theta": np.empty((n, nc), dtype),
            "dU": np.empty((hidden, nc), dtype), "d1U": np.empty((n, hidden), dtype),
            "dW": np.empty((width, hidden), dtype), "dx": np.empty((n, width), dtype)}


def _floor_step(config, idx, y, dtype, seed):
    """Only the six matrix products of one step (numpy's matmul, numpy's BLAS)."""
    a = _floor_arrays(config, dtype, seed)
    x, W, h, U, delta1, delta2 = (a[k] for k in ("x", "W", "h", "U", "delta1", "delta2"))

    def step():
        np.matmul(x, W, out=a["z"])               # xW
        np.matmul(h, U, out=a["theta"])           # hU
        np.matmul(h.T, delta1, out=a["dU"])       # hᵀδ1
        np.matmul(delta1, U.T, out=a["d1U"])      # δ1Uᵀ
        np.matmul(x.T, delta2, out=a["dW"])       # xᵀδ2
        np.matmul(delta2, W.T, out=a["dx"])       # δ2Wᵀ
    step.arrays = a   # the operands and outputs, for the tests
    return step


def _floor_scipy_step(config, idx, y, dtype, seed):
    """The same six products through scipy's BLAS, the one fastgrad's kernels call
    (a scipy wheel carries its own OpenBLAS, apart from numpy's). Row-major
    products are computed as their column-major transposes on F-ordered views,
    into the preallocated outputs: no copies."""
    from scipy.linalg import blas

    gemm = blas.sgemm if np.dtype(dtype) == np.float32 else blas.dgemm
    a = _floor_arrays(config, dtype, seed)
    x, W, h, U, delta1, delta2 = (a[k] for k in ("x", "W", "h", "U", "delta1", "delta2"))

    def step():
        gemm(1.0, W.T, x.T, c=a["z"].T, overwrite_c=True)                        # xW
        gemm(1.0, U.T, h.T, c=a["theta"].T, overwrite_c=True)                    # hU
        gemm(1.0, delta1.T, h.T, trans_b=True, c=a["dU"].T, overwrite_c=True)    # hᵀδ1
        gemm(1.0, U.T, delta1.T, trans_a=True, c=a["d1U"].T, overwrite_c=True)   # δ1Uᵀ
        gemm(1.0, delta2.T, x.T, trans_b=True, c=a["dW"].T, overwrite_c=True)    # xᵀδ2
        gemm(1.0, W.T, delta2.T, trans_a=True, c=a["dx"].T, overwrite_c=True)    # δ2Wᵀ
    step.arrays = a   # the operands and outputs, for the tests
    return step


def _torch_step(config, idx, y, dtype, seed):
    from fastgrad.torch_twin import TorchTwin

    p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                             config.hidden, config.n_classes, dtype=dtype, seed=seed)
    twin = TorchTwin(p, "sgd", LR)
    return lambda: twin.step(idx, y)


def _jax_step(config, idx, y, dtype, seed):
    # XLA runs its own thread pool, sized once at import; set_threads cannot reach it
    import jax
    import jax.numpy as jnp

    if dtype == np.float64:
        jax.config.update("jax_enable_x64", True)
    p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                             config.hidden, config.n_classes, dtype=dtype, seed=seed)
    params = tuple(jnp.asarray(a) for a in p)
    j_idx, j_y = jnp.asarray(idx), jnp.asarray(y)

    def loss_fn(params, idx, y):
        L, W, b1, U, b2 = params
        h = jax.nn.relu(L[idx].reshape(idx.shape[0], -1) @ W + b1)
        logp = jax.nn.log_softmax(h @ U + b2)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    @jax.jit
    def update(params, idx, y):
        value, grads = jax.value_and_grad(loss_fn)(params, idx, y)
        return value, tuple(a - LR * g for a, g in zip(params, grads))

    state = {"params": params}

    def step():
        value, state["params"] = update(state["params"], j_idx, j_y)
        value.block_until_ready()
    return step


METHODS = {
    "fastgrad": _fastgrad_step("auto"),
    "fastgrad-dense": _fastgrad_step("dense"),
    "fastgrad-factored": _fastgrad_step("factored"),
    "reference": _reference_step,
    "floor": _floor_step,
    "floor-scipy": _floor_scipy_step,
    "torch": _torch_step,
    "jax": _jax_step,
}
OPTIONAL = {"torch": "torch", "jax": "jax"}
# on request only (--methods), to keep the default run under two minutes
NOT_DEFAULT = ("fastgrad-factored", "floor-scipy")


def available_methods(names=None):
    """The methods to run: all (or those named) whose optional package is installed."""
    import importlib.util

    names = [m for m in METHODS if m not in NOT_DEFAULT] if names is None else list(names)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    return [n for n in names
            if n not in OPTIONAL or importlib.util.find_spec(OPTIONAL[n]) is not None]


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------

@dataclass
class Result:
    config: str
    variant: str
    threads: int
    dtype: str
    method: str
    times_ms: list = field(default_factory=list)
    distinct_pairs: int = 0
    occurrences: int = 0
    path: str = ""

    @property
    def median(self) -> float:
        return float(np.median(self.times_ms))

    def as_dict(self) -> dict:
        return {"config": self.config, "variant": self.variant, "threads": self.threads,
                "dtype": self.dtype, "method": self.method, "median_ms": self.median,
                "min_ms": float(min(self.times_ms)), "max_ms": float(max(self.times_ms)),
                "rounds": len(self.times_ms), "distinct_pairs": self.distinct_pairs,
                "occurrences": self.occurrences, "path": self.path}


def set_threads(n_threads: int) -> None:
    """The same thread budget for every method: fastgrad, the BLAS and the peers."""
    from threadpoolctl import threadpool_limits

    fastgrad.set_num_threads(n_threads)
    threadpool_limits(limits=n_threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n_threads)


def run_scenario(config: Config, variant: str, n_threads: int, dtype, methods,
                 rounds: int = 9, warmup: int = 2, seed: int = 0, on_round=None):
    """Time every method on one (config, variant, threads, dtype); returns Results."""
    dtype = np.dtype(dtype).type
    set_threads(n_threads)
    idx, y = make_batch(config, variant, seed)
    k = distinct_pairs(idx)
    steps = {m: METHODS[m](config, idx, y, dtype, seed) for m in methods}
    results = {m: Result(config.name, variant, n_threads, np.dtype(dtype).name, m,
                         distinct_pairs=k, occurrences=idx.size) for m in methods}
    path = fastgrad.choose_path(config.n, config.n_features, config.embed_dim, config.hidden, k)
    if "fastgrad" in results:
        results["fastgrad"].path = path
    for _ in range(warmup):
        for step in steps.values():
            step()
    for _ in range(rounds):
        for m, seconds in time_round(steps, settle=n_threads > 1).items():
            results[m].times_ms.append(seconds * 1e3)
        if on_round is not None:
            on_round()
    return list(results.values())


def run(configs, variants, threads, dtype, methods, rounds=9, warmup=2, progress=None):
    """Every scenario of the grid; returns the list of Results."""
    scenarios = [(c, v, t) for c in configs for v in variants_of(c, variants) for t in threads]
    bar = ProgressBar(len(scenarios) * rounds, enabled=progress)
    results = []
    for c, v, t in scenarios:
        label = f"{c} {v} {t}T"
        results += run_scenario(get_config(c), v, t, dtype, methods, rounds=rounds,
                                warmup=warmup, on_round=lambda: bar.advance(label))
    bar.close()
    return results


def cache_rows(config: Config, top_words: int) -> list:
    """Per slot, the rows a parser would cache: a tag or label slot every row of its
    range, a word slot its top_words most frequent (the first rows: Zipf rank order)."""
    rows, offset = [], 0
    for count, size in config.slot_groups:
        k = size if size <= 100 else min(size, top_words)
        rows += [np.arange(offset, offset + k)] * count
        offset += size
    return rows


INFERENCE_SIZES = (1, 16, 64, 256, 1024, 4096)


def run_inference(config: Config, sizes=INFERENCE_SIZES, top_words: int = 1000, rounds: int = 20,
                  dtype=np.float32, variant: str = "skewed") -> list[dict]:
    """predict_proba against precompute(...).predict_proba, interleaved, per batch size."""
    p = fastgrad.init_params(config.n_vocab, config.n_features, config.embed_dim,
                             config.hidden, config.n_classes, dtype=dtype, seed=0)
    t0 = time.perf_counter()
    pre = fastgrad.precompute(p, cache_rows(config, top_words))
    build_s = time.perf_counter() - t0
    batches = [make_batch(config, variant, seed=1)[0]]
    while sum(len(b) for b in batches) < max(sizes):
        batches.append(make_batch(config, variant, seed=1 + len(batches))[0])
    idx_all = np.concatenate(batches)
    rows = []
    for n in sizes:
        idx = np.ascontiguousarray(idx_all[:n])
        calls = {"predict_proba": lambda: fastgrad.predict_proba(p, idx),
                 "precomputed": lambda: pre.predict_proba(idx)}
        reps = max(1, 2000 // n)   # small batches: time many calls per round
        times: dict[str, list[float]] = {k: [] for k in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                call()
                t = time.perf_counter()
                for _ in range(reps):
                    call()
                times[name].append((time.perf_counter() - t) / reps)
        plain, cached = (float(np.median(times[k])) for k in calls)
        hit = float(np.mean(pre.cache_pos[np.arange(idx.shape[1]), idx] >= 0))
        rows.append({"config": config.name, "n": n, "predict_proba_ms": plain * 1e3,
                     "precomputed_ms": cached * 1e3, "speedup": plain / cached,
                     "hit_rate": hit, "cache_mib": pre.nbytes / 2**20, "build_s": build_s})
    return rows


def format_table(results) -> str:
    """ms/step (median and min–max) per scenario, and fastgrad's ratio to each method."""
    scenarios: dict[tuple, dict[str, Result]] = {}
    for r in results:
        scenarios.setdefault((r.config, r.variant, r.threads, r.dtype), {})[r.method] = r
    methods = [m for m in METHODS if any(m in s for s in scenarios.values())]
    head = ["config", "variant", "thr", "K/(N*m)"] + [f"{m} ms" for m in methods]
    ratios = [m for m in methods if m != "fastgrad"]
    head += [f"{m}/fg" for m in ratios]
    rows = [head]
    for (config, variant, threads, dtype), by_method in scenarios.items():
        any_r = next(iter(by_method.values()))
        row = [config, variant, str(threads), f"{any_r.distinct_pairs / any_r.occurrences:.2f}"]
        for m in methods:
            r = by_method.get(m)
            row.append("-" if r is None else
                       f"{r.median:.2f} ({min(r.times_ms):.1f}-{max(r.times_ms):.1f})")
        fg = by_method.get("fastgrad")
        for m in ratios:
            r = by_method.get(m)
            row.append("-" if r is None or fg is None else f"{r.median / fg.median:.2f}x")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = ("ms per training step (median, min-max over the rounds); X/fg = X's median "
            "over fastgrad's: above 1 means fastgrad is faster. K/(N*m): distinct "
            "(slot, row) pairs per occurrence. At more than one thread each method "
            f"starts after {SETTLE_S:g} s of quiet, so no pool's spinning workers are "
            "billed to the next method.")
    if "jax" in methods:
        note += ("\njax: XLA's thread pool is sized at import and is not capped by --threads "
                 "(it uses every core in every row).")
    return "\n".join(lines) + "\n" + note


def plot(results, path: str) -> None:
    """A PNG bar chart of the medians (needs matplotlib)."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys((r.config, r.variant, r.threads) for r in results))
    methods = list(dict.fromkeys(r.method for r in results))
    med = {(r.config, r.variant, r.threads, r.method): r.median for r in results}
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(scenarios)), 4))
    width = 0.8 / len(methods)
    for i, m in enumerate(methods):
        xs = [s + i * width for s in range(len(scenarios))]
        ax.bar(xs, [med.get((*sc, m), math.nan) for sc in scenarios], width, label=m)
    ax.set_xticks([s + 0.4 - width / 2 for s in range(len(scenarios))])
    ax.set_xticklabels([f"{c}\n{v} {t}T" for c, v, t in scenarios], fontsize=8)
    ax.set_ylabel("ms per training step (median)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
