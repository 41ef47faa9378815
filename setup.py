"""Build the compiled kernels.

OpenMP is used when the compiler accepts it (the row-parallel loops then run
on several threads) and silently left out otherwise (e.g. Apple clang): the
kernels are the same, their prange loops just run serially.

FASTGRAD_CYTHON_DEBUG=1 at build time turns Cython's boundscheck, wraparound
and initializedcheck back on, for hunting memory errors.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup


def _compiler_accepts(flag):
    cc = (sysconfig.get_config_var("CC") or "cc").split()
    if not shutil.which(cc[0]):
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        result = subprocess.run(cc + [flag, src, "-o", os.path.join(tmp, "probe")],
                                capture_output=True)
        return result.returncode == 0


wants_openmp = os.environ.get("FASTGRAD_OPENMP", "1") != "0"
if sys.platform == "win32":
    openmp_compile, openmp_link = (["/openmp"] if wants_openmp else []), []
    optimize = ["/O2"]
else:
    use_openmp = wants_openmp and _compiler_accepts("-fopenmp")
    openmp_compile = openmp_link = ["-fopenmp"] if use_openmp else []
    # No errno from sqrt and no trapping floating point (nothing here reads errno or
    # enables FP traps): without them the optimizer and exp loops cannot vectorize.
    # No FMA contraction: the multiversioned row loops (AVX2 and plain x86-64) then give
    # the same bits on every CPU.
    optimize = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-ffp-contract=off"]

debug = os.environ.get("FASTGRAD_CYTHON_DEBUG", "0") not in ("", "0")
directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": debug,
    "initializedcheck": debug,
    "cdivision": True,
}

# One extension per module that stands alone: the step's kernels (with their
# .pxi parts and C headers), the groupings, the typed workspace, the parser's
# transition system, CoNLL-U, skip-gram, and the parallel uniform draws.
extensions = [
    Extension(
        f"fastgrad.{name}",
        [f"fastgrad/{name}.pyx"],
        include_dirs=[np.get_include(), "fastgrad"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"),
                       ("FASTGRAD_OPENMP", "1" if openmp_compile else "0")],
        extra_compile_args=optimize + openmp_compile,
        extra_link_args=openmp_link,
        depends=["fastgrad/_c_portability.h", "fastgrad/_constants.h", "fastgrad/_row_loops.h",
                 "fastgrad/_blas_pointers.h", "fastgrad/_skipgram.h", "fastgrad/_arc_loss.h",
                 "fastgrad/_uniform.h"],
    )
    for name in ("_kernels", "_grouping", "_workspace", "_arc_standard", "_conllu", "_skipgram",
                 "_uniform")
]

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
