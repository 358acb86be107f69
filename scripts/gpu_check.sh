#!/usr/bin/env bash
# The GPU check: environment report, the GPU-marked tests, and a GPU sweep (CPU rows beside it),
# all written under $OUT. Run from the repository root on a machine with a CUDA-enabled JAX:
#
#   OUT=out bash scripts/gpu_check.sh
#
# Overridable for a smoke test on a CPU-only machine:
#   BACKENDS=cpu SIZES=3x4 ENGINES=numpy,jit MIN_RUN_TIME=0.01 OUT=out bash scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out}
BACKENDS=${BACKENDS:-gpu,cpu}
SIZES=${SIZES:-3x4,1000x1000,4000x4000,8192x8192}
ENGINES=${ENGINES:-numpy,eager,jit,torch_eager,torch_compile}
MIN_RUN_TIME=${MIN_RUN_TIME:-0.2}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
status=0

"$PYTHON" -m experiments.env_check --format=json > "$OUT/env.json" || status=1
"$PYTHON" -m experiments.device_placement --require_gpu > "$OUT/device_placement.txt" 2>&1 \
  || { [ "$BACKENDS" != "cpu" ] && status=1; }

# The GPU-marked tests (skipped, not failed, where JAX sees no GPU).
"$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests 2>&1 | tee "$OUT/gpu_tests.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# Engines whose framework is missing there are dropped rather than failing the sweep.
available=$("$PYTHON" - "$ENGINES" <<'PY'
import sys
from funcgrad.bench.engines import ENGINES
print(",".join(n for n in sys.argv[1].split(",") if ENGINES[n].available()))
PY
)
"$PYTHON" -m experiments.compare --backends="$BACKENDS" --engines="$available" \
  --sizes="$SIZES" --min_run_time="$MIN_RUN_TIME" \
  --output_json="$OUT/gpu_compare.json" --output_csv="$OUT/gpu_compare.csv" \
  --plot="$OUT/gpu_compare.png" \
  2> "$OUT/gpu_compare.log" | tee "$OUT/gpu_compare.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "gpu_check: exit $status; results in $OUT"
exit "$status"
