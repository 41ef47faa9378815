#!/usr/bin/env bash
# Issue 3's thread-scaling curve on a many-core machine (the device tool lends one
# with 16 cores): build the kernels in place with that machine's Python, check them,
# then run the bench grid at 1..16 threads, fastgrad beside the floor and PyTorch,
# the phase profile of fastgrad's step (tools/phase_profile.py) at 1, 4 and 16, and
# fastgrad and the floor once more with OMP_WAIT_POLICY=active.
#   bash tools/device_scaling.sh            (results in $OUT, or ./scaling-out)
# CONFIGS, VARIANTS, THREADS, METHODS, ROUNDS override the grid; PROFILE_THREADS and
# POLICY_THREADS the thread counts of the last two parts.
set -uo pipefail
export PYTHONPATH=$PWD   # the kernels are built in place
out=${OUT:-scaling-out}
mkdir -p "$out"
{
  echo "cores: $(nproc)"
  lscpu | grep -E '^(Model name|Thread|Core|Socket|NUMA node\(s\)|L2|L3)' || true
  grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile' /proc/cpuinfo | sort | uniq -c || true
  python3 -c "import sys, numpy, scipy, threadpoolctl; print(sys.version.split()[0], 'numpy', numpy.__version__, 'scipy', scipy.__version__, 'threadpoolctl', threadpoolctl.__version__)"
  python3 -c "import torch; print('torch', torch.__version__, torch.__config__.parallel_info().splitlines()[:6])"
  gcc --version | head -1
} 2>&1 | tee "$out/machine.txt"
python3 setup.py build_ext --inplace > "$out/build.log" 2>&1 || { tail -40 "$out/build.log"; exit 1; }
python3 -m fastgrad config 2>&1 | tee -a "$out/machine.txt"
timeout 120 python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels.py tests/test_api.py 2>&1 | tail -3
PYTHONUNBUFFERED=1 python3 -m fastgrad bench --config "${CONFIGS:-parser,cm2014}" \
  --variant "${VARIANTS:-uniform,skewed}" --threads "${THREADS:-1,2,4,8,16}" \
  --methods "${METHODS:-fastgrad,fastgrad-dense,floor,floor-scipy,torch}" \
  --rounds "${ROUNDS:-5}" --warmup 1 --json "$out/scaling.json" 2>/dev/null | tee "$out/scaling.txt"
for path in auto dense; do
  PYTHONUNBUFFERED=1 python3 tools/phase_profile.py --config "${CONFIGS:-parser,cm2014}" \
    --variant "${VARIANTS:-uniform,skewed}" --threads "${PROFILE_THREADS:-1,4,16}" --path $path \
    2>&1 | tee "$out/phases-$path.txt"
done
# libgomp's wait policy: spinning workers (active) against the default
echo "OMP_WAIT_POLICY=active, fastgrad and the floor:"
OMP_WAIT_POLICY=active PYTHONUNBUFFERED=1 python3 -m fastgrad bench --config "${CONFIGS:-parser,cm2014}" \
  --variant "${VARIANTS:-uniform,skewed}" --threads "${POLICY_THREADS:-16}" --methods fastgrad,floor \
  --rounds "${ROUNDS:-5}" --warmup 1 --json "$out/active.json" 2>/dev/null | tee "$out/active.txt"
