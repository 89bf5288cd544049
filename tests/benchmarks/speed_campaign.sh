#!/usr/bin/env bash
# Every figure of BENCHMARKS.md's "Intel Xeon (Sapphire Rapids class)" section, in one go, from the project root:
#
#     bash tests/benchmarks/speed_campaign.sh [REV]        # REV: the commit to check against (default dcffb10)
#
# Run it on a quiet machine (nothing else busy: the script prints the load average before and after); it takes
# about 40 minutes on 2 cores. Needs torch (the `bench` extra). Everything goes to stdout; keep it with the date.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH=$PWD
REV=${1:-dcffb10}
PY=${PYTHON:-python}

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), at $(git rev-parse --short=10 HEAD); load: $(cut -d' ' -f1-3 /proc/loadavg)"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|L2 cache|L3 cache)'
echo "flags that matter: $(grep -m1 -o -w -E 'avx2|avx512f|avx512_bf16|amx_tile|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
$PY -c "import numpy; c = numpy.show_config(mode='dicts')['Build Dependencies']['blas']; print('numpy', numpy.__version__, c['openblas configuration'])"
$PY -c "import torch; print('torch', torch.__version__, 'oneDNN' if torch.backends.mkldnn.is_available() else '')"
echo "OpenBLAS kernel at run time: $(OPENBLAS_VERBOSE=2 $PY -c 'import numpy as np; a = np.ones((64, 64), np.float32); a @ a' 2>&1 | head -1)"

echo; echo "== 1. the working tree against $REV, every workload (1 thread on the CPU clock, then 2 threads)"
$PY tests/benchmarks/bench.py --against "$REV" --threads 1 --clock cpu --repeats 21 --steps 8
$PY tests/benchmarks/bench.py --against "$REV" --threads 2 --repeats 21 --steps 8

echo; echo "== 2. charrnn against PyTorch, every workload (2 threads, the table's method; then 1 thread)"
$PY tests/benchmarks/bench.py --threads 2 --repeats 15
$PY tests/benchmarks/bench.py --threads 1 --clock cpu --repeats 11 --steps 8

echo; echo "== 3. where a step goes: charrnn's phases, its GEMMs alone, PyTorch's operators"
for threads in 2 1; do
  $PY tests/benchmarks/profile_step.py --cell lstm --batch 16 --threads $threads --steps 20 --floor --torch
  $PY tests/benchmarks/profile_step.py --cell lstm --batch 32 --threads $threads --steps 20 --floor --torch
  $PY tests/benchmarks/profile_step.py --cell gru --batch 32 --threads $threads --steps 20 --floor --torch
  $PY tests/benchmarks/profile_step.py --cell rnn --batch 32 --threads $threads --steps 20 --floor --torch
done
echo "== done $(date -u '+%H:%M UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
