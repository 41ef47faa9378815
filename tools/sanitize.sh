#!/usr/bin/env bash
# Run the test suite against a build with AddressSanitizer and Cython's checks on.
#
#   bash tools/sanitize.sh            # ~5 minutes on 2 cores
#
# The extension is compiled with -fsanitize=address and FASTGRAD_CYTHON_DEBUG=1
# (boundscheck, wraparound, initializedcheck), installed into a throwaway venv, and
# the whole suite runs with libasan preloaded (Python itself is not instrumented, so
# leak detection is off; every out-of-bounds or use-after-free access in the kernels
# aborts the run with a report). Exit status 0 means the suite passed under ASan.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
cp -r "$root"/{fastgrad,tests,setup.py,pyproject.toml,MANIFEST.in,README.md,LICENSE,CHANGELOG.md} \
    "$work/src/"
find "$work/src" \( -name '*.so' -o -name '*.c' -o -name __pycache__ \) -prune -exec rm -rf {} +

python3 -m venv "$work/venv"
. "$work/venv/bin/activate"
pip install --quiet "numpy>=2" "scipy>=1.13" "Cython>=3" "setuptools>=70.1" wheel threadpoolctl \
    pytest pytest-benchmark hypothesis turkish-treebanks

export FASTGRAD_CYTHON_DEBUG=1
export CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g"
export LDFLAGS="-fsanitize=address"
pip install --quiet --no-build-isolation --no-deps "$work/src"

libasan="$(gcc -print-file-name=libasan.so)"
cd "$work/src"
echo "running the suite under AddressSanitizer ($libasan), Cython checks on"
LD_PRELOAD="$libasan" ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1" \
    FASTGRAD_HYPOTHESIS_EXAMPLES=40 pytest -q -p no:cacheprovider tests "$@" \
    --deselect tests/test_memory.py::test_resident_memory_is_flat
# (deselected: ASan's quarantine keeps freed memory resident on purpose, so RSS grows)
echo "ASan: no memory errors (suite passed)"
