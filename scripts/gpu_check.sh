#!/usr/bin/env bash
# The GPU check: environment report, the GPU-marked tests, a GPU sweep of the tutorial's
# workloads up to 64M elements (CPU rows beside it), the same sweep again against the baseline
# the first saved (--compare_to, at --precision=0.05), the model workloads, a crossover on the GPU
# with a precision target, and the benchmark's targets (the answers group included). At most
# eight files land in $OUT (what a device machine sends back): the JSON of each measurement, one
# text summary, one plot and a tarball of every log.
# Run from the repository root on a machine with a CUDA-enabled JAX:
#
#   OUT=out bash scripts/gpu_check.sh
#
# Overridable for a smoke test on a CPU-only machine:
#   BACKENDS=cpu SIZES=3x4 ENGINES=numpy,jit MODEL_SIZES=16x128 MAX_ELEMENTS=100 \
#     SCAN_ENGINES= BENCHMARK_TARGETS=small MIN_RUN_TIME=0.01 OUT=out bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out}
BACKENDS=${BACKENDS:-gpu,cpu}
SIZES=${SIZES:-3x4,1000x1000,4000x4000,8192x8192}
ENGINES=${ENGINES:-numpy,eager,jit,jit_packed,torch_eager,torch_compile,tf_eager,tf_function,tf_xla}
# The engines that loop over a training workload's steps, added for the models (empty: none).
SCAN_ENGINES=${SCAN_ENGINES-jit_scan,jit_scan_fused}
MODEL_SIZES=${MODEL_SIZES:-128x512,1024x2048}
ATTENTION_SIZES=${ATTENTION_SIZES:-256x256,1024x512}
MAX_ELEMENTS=${MAX_ELEMENTS:-16000000}
BENCHMARK_TARGETS=${BENCHMARK_TARGETS:-all}
MIN_RUN_TIME=${MIN_RUN_TIME:-0.2}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
LOGS=$(mktemp -d)
status=0
crossover_backend=${BACKENDS%%,*}

"$PYTHON" -m experiments.env_check --format=json > "$OUT/env.json" || status=1
"$PYTHON" -m experiments.device_placement --require_gpu > "$LOGS/device_placement.txt" 2>&1 \
  || { [ "$BACKENDS" != "cpu" ] && status=1; }

# The GPU-marked tests (skipped, not failed, where JAX sees no GPU), from the files that mark any
# (collecting every file would import every framework first).
# In this process (no -n: pytest-xdist may be absent where this runs).
gpu_test_files=$(grep -l "mark\.gpu" tests/test_*.py || echo tests)
# shellcheck disable=SC2086 # one word per file
"$PYTHON" -m pytest -q -m gpu -p no:cacheprovider -o addopts="-ra --strict-markers" $gpu_test_files \
  > "$LOGS/gpu_tests.txt" 2>&1 || status=1

# Engines whose framework is missing there are dropped rather than failing the sweep.
available=$("$PYTHON" - "$ENGINES" <<'PY'
import sys
from funcgrad.bench.engines import ENGINES
print(",".join(n for n in sys.argv[1].split(",") if ENGINES[n].available()))
PY
)
"$PYTHON" -m experiments.compare --backends="$BACKENDS" --engines="$available" \
  --sizes="$SIZES" --min_run_time="$MIN_RUN_TIME" --output_json="$OUT/gpu_compare.json" \
  --save_baseline="$LOGS/gpu_baseline.json" \
  --plot="$OUT/gpu_compare.png" > "$LOGS/gpu_compare.txt" 2> "$LOGS/gpu_compare.log" || status=1
# The same sweep against the baseline it just saved: on a quiet device most rows say no change.
"$PYTHON" -m experiments.compare --backends="$BACKENDS" --engines="$available" \
  --sizes="$SIZES" --min_run_time="$MIN_RUN_TIME" --compare_to="$LOGS/gpu_baseline.json" \
  --precision=0.05 --output_json="$LOGS/gpu_compare_again.json" > "$LOGS/gpu_changes.txt" \
  2> "$LOGS/gpu_changes.log" || status=1

# The models, each at its own sizes (an attention DIM is a multiple of 64).
for case in "mlp,mlp_train:$MODEL_SIZES" "attention:$ATTENTION_SIZES"; do
  name=${case%%:*}; sizes=${case#*:}
  "$PYTHON" -m experiments.compare --backends="$BACKENDS" --engines="$available${SCAN_ENGINES:+,$SCAN_ENGINES}" \
    --workloads="$name" --sizes="$sizes" --min_run_time="$MIN_RUN_TIME" \
    --output_json="$LOGS/models_${name%%,*}.json" \
    >> "$LOGS/gpu_models.txt" 2>> "$LOGS/gpu_models.log" || status=1
done
"$PYTHON" - "$LOGS/models_mlp.json" "$LOGS/models_attention.json" "$OUT/gpu_models.json" <<'PY'
import json, sys
parts = [json.load(open(p)) for p in sys.argv[1:3]]
merged = {"machine": parts[0]["machine"], "results": [r for p in parts for r in p["results"]],
          "speedups": [s for p in parts for s in p["speedups"]]}
json.dump(merged, open(sys.argv[3], "w"), indent=2)
PY
[ $? -eq 0 ] || status=1

"$PYTHON" -m experiments.crossover --backend="$crossover_backend" --engines=numpy,eager,jit \
  --max_elements="$MAX_ELEMENTS" --min_run_time="$MIN_RUN_TIME" --precision=0.05 \
  --output_json="$OUT/crossover.json" > "$LOGS/crossover.txt" 2> "$LOGS/crossover.log" \
  || status=1

"$PYTHON" -m experiments.benchmark --targets="$BENCHMARK_TARGETS" \
  --min_run_time="$MIN_RUN_TIME" --output_json="$OUT/benchmark.json" \
  > "$LOGS/benchmark.md" 2> "$LOGS/benchmark.log" || status=1

cat "$LOGS/gpu_compare.txt" "$LOGS/gpu_changes.txt" "$LOGS/gpu_models.txt" "$LOGS/crossover.txt" \
  "$LOGS/benchmark.md" \
  > "$OUT/summary.txt"
tar -czf "$OUT/logs.tar.gz" -C "$LOGS" .
rm -rf "$LOGS"
echo "gpu_check: exit $status; results in $OUT"
exit "$status"
