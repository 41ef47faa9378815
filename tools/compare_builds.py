"""Two builds of fastgrad measured in turn: before/after figures from one session.

    python tools/compare_builds.py BEFORE_TREE AFTER_TREE [--alternations 4] \\
        profile [phase_profile.py options]
    python tools/compare_builds.py BEFORE_TREE AFTER_TREE [--alternations 2] \\
        bench [fastgrad bench options]

Each tree is a checkout with its extensions built in place (``python setup.py
build_ext --inplace``; a second checkout: ``git worktree add ../before REV``). The
two run alternately, before then after, then after then before, ..., each in a
fresh process that imports fastgrad from its tree (PYTHONPATH, run from /), so a
load that comes and goes falls on both. Printed: for ``profile``, each phase's
median over the alternations, before -> after; for ``bench``, each method's
median over the alternations of its per-run medians, and floor / fastgrad for
each build. The machine's noise is no smaller for this: quote the spread too.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

TOOLS = os.path.dirname(os.path.abspath(__file__))


def run_build(tree, kind, extra, out):
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    if kind == "profile":
        cmd = [sys.executable, os.path.join(TOOLS, "phase_profile.py"), *extra, "--json", out]
    else:
        cmd = [sys.executable, "-m", "fastgrad", "bench", *extra, "--json", out]
    subprocess.run(cmd, env=env, cwd="/", check=True, stdout=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def phase_key(name):
    return name.split(" (+")[0]   # a phase's name may gain a note in parentheses


def collect_profile(runs):
    """{(scenario, row): [ms per run]}"""
    out = {}
    for rows in runs:
        for r in rows:
            out.setdefault((r["scenario"], "total"), []).append(r["total"])
            for k, v in r["phases"].items():
                out.setdefault((r["scenario"], phase_key(k)), []).append(v)
    return out


def collect_bench(runs):
    """{(config, variant, threads, method): [median ms per run]}"""
    out = {}
    for results in runs:
        for r in results:
            key = (r["config"], r["variant"], r["threads"], r["method"])
            out.setdefault(key, []).append(r["median_ms"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--alternations", type=int, default=4)
    ap.add_argument("kind", choices=("profile", "bench"))
    args, extra = ap.parse_known_args()
    runs = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        for a in range(args.alternations):
            order = ("before", "after") if a % 2 == 0 else ("after", "before")
            for name in order:
                out = os.path.join(tmp, f"{name}{a}.json")
                runs[name].append(run_build(getattr(args, name), args.kind, extra, out))
                print(f"alternation {a + 1}/{args.alternations}: {name} done", file=sys.stderr)
    collect = collect_profile if args.kind == "profile" else collect_bench
    before, after = collect(runs["before"]), collect(runs["after"])
    for key in after:
        if key not in before:
            continue
        b, a = before[key], after[key]
        print(" | ".join(map(str, key)) + f": {statistics.median(b):.3f} ({min(b):.3f}-{max(b):.3f})"
              f" -> {statistics.median(a):.3f} ({min(a):.3f}-{max(a):.3f})")
    if args.kind == "bench":
        for name, table in (("before", before), ("after", after)):
            for (c, v, t, m), times in sorted(table.items()):
                if m != "fastgrad" or (c, v, t, "floor") not in table:
                    continue
                ratio = statistics.median(table[(c, v, t, "floor")]) / statistics.median(times)
                print(f"{name}: {c} {v} {t} threads: floor/fastgrad {ratio:.2f}x")


if __name__ == "__main__":
    main()
