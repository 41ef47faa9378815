"""A checkpoint written on P ranks resumes on Q ranks (1 -> 2, 2 -> 1, 2 -> 3): the same
global batches in the same order, so the resumed run equals one never stopped, to the
order of float sums; a resume with another batch size is refused on every rank. Each
run is an mpiexec job under a timeout, so a hang fails the test."""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastgrad
from fastgrad.testing import mpiexec

pytestmark = pytest.mark.skipif(mpiexec() is None, reason="needs mpiexec and mpi4py")

JOB = """
import sys, numpy as np, fastgrad
from mpi4py import MPI
from fastgrad.testing import make_problem
mode, path, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
comm = MPI.COMM_WORLD
p, idx, y = make_problem(np.float64, n=96, seed=5)
opt = fastgrad.AdaGrad(p, lr=0.05)
kwargs = dict(batch_size=batch, dropout=0.2, l2=1e-4, shuffle_seed=3, progress=False,
              comm=comm if comm.Get_size() > 1 else None)
if mode == "first":        # stopped after one of two epochs, mid-run state on disk
    fastgrad.fit(p, idx, y, opt, epochs=1, checkpoint=path, checkpoint_every=2, **kwargs)
else:
    try:
        fastgrad.fit(p, idx, y, opt, epochs=2, resume=path if mode == "resume" else None,
                     **kwargs)
    except ValueError as e:   # each rank says so itself (an uncaught one would abort the job)
        print(f"rank {comm.Get_rank()} refused: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    if comm.Get_rank() == 0:
        fastgrad.save(out, p, opt)
"""


def launch(tmp_path, ranks, *args, check=True):
    script = tmp_path / "job.py"
    script.write_text(JOB, encoding="utf-8")
    cmd = [sys.executable, str(script), *map(str, args)]
    if ranks > 1:
        cmd = [mpiexec(), "-n", str(ranks), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd="/",
                         env=dict(os.environ, PYTHONPATH="", OMP_NUM_THREADS="1"))
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.mark.parametrize("before,after", [(1, 2), (2, 1), (2, 3)])
def test_a_checkpoint_resumes_on_another_number_of_ranks(tmp_path, before, after):
    ck, resumed, whole = tmp_path / "ck.npz", tmp_path / "resumed.npz", tmp_path / "whole.npz"
    launch(tmp_path, before, "first", ck, "-", 16)
    launch(tmp_path, after, "resume", ck, resumed, 16)
    launch(tmp_path, 1, "whole", "-", whole, 16)
    p, opt, _ = fastgrad.load(resumed)
    q, opt_q, _ = fastgrad.load(whole)
    assert opt.steps == opt_q.steps == 12
    for a, b in zip((*p, *opt.state1), (*q, *opt_q.state1)):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_a_resume_with_another_batch_size_is_refused_on_every_rank(tmp_path):
    ck = tmp_path / "ck.npz"
    launch(tmp_path, 2, "first", ck, "-", 16)
    out = launch(tmp_path, 2, "resume", ck, tmp_path / "x.npz", 24, check=False)
    assert out.returncode != 0 and not (tmp_path / "x.npz").exists()
    for rank in (0, 1):
        assert f"rank {rank} refused: " in out.stderr and "batch_size" in out.stderr, out.stderr
