#!/usr/bin/env bash
# The GPU checks of this repository in one run, for a machine with an NVIDIA GPU (docs/benchmarks.md,
# "On a GPU machine"): the GPU tests, the inference benchmarks on CUDA, the grey-level mapping's
# cost on that machine's host, and the live chain with torch with and without CUDA graphs, for
# both shipped models, and flip-averaged for the default one. Each step has its own time limit and log; a failing step is recorded and the
# next one runs. Outputs in $OUT (default runs/gpu-checks): one log per step, summary.txt (each
# step's exit status and seconds), the benchmarks' JSON and the chains' latency.json/latency.png.
#
#   bash benchmarks/gpu_checks.sh                 # about 5 minutes on an H100 (before the flip-averaged chain)
#   STEP_TIMEOUT=120 OUT=/tmp/gpu bash benchmarks/gpu_checks.sh
set -u
OUT=${OUT:-runs/gpu-checks}
STEP_TIMEOUT=${STEP_TIMEOUT:-240}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
: > "$OUT/summary.txt"

step() {  # step NAME COMMAND...: run COMMAND with a time limit, its output in $OUT/NAME.log
  local name=$1 start rc
  shift
  start=$(date +%s)
  timeout "$STEP_TIMEOUT" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "$name: exit $rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
}

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1;
  python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.cuda.is_available())" 2>&1; } > "$OUT/machine.txt"
cat "$OUT/machine.txt"

step gpu-tests python -m pytest -q -rs -m gpu tests
step inference python -m pytest -q benchmarks/test_bench_inference.py -k cuda --benchmark-only \
  --bench-sizes 256x256,512x512 --bench-rounds 20 --benchmark-json "$OUT/inference.json"
step levels python -m pytest -q benchmarks/test_bench_levels.py --benchmark-only --benchmark-json "$OUT/levels.json"
for weights in drnn drnn_fast; do
  for graphs in "" --cuda-graphs; do
    step "chain-$weights${graphs:+-graphs}" python -m benchmarks.latency --backend torch --weights "weights/$weights.pt" \
      $graphs --fps 60 --size 512x512 --frames 600 --warmup 60 --baseline-frames 0 \
      --out "$OUT/chain-$weights${graphs:+-graphs}"
  done
done
step chain-drnn-graphs-flip python -m benchmarks.latency --backend torch --weights weights/drnn.pt --cuda-graphs \
  --flip-average --fps 60 --size 512x512 --frames 600 --warmup 60 --baseline-frames 0 --out "$OUT/chain-drnn-graphs-flip"
