#!/usr/bin/env bash
# The whole CIFAR-10 matrix (all detectors, all shifts, --ood all) with ResNet-18 on one device,
# prepared for a session that is lent a GPU (docs/performance.md, "Not yet"):
#
#   DEVICE=cuda OUT=$OUT/gpu bash scripts/gpu_matrix.sh          # on the device machine
#   DEVICE=cpu  OUT=results/cpu WEIGHTS=resnet18.pt bash scripts/gpu_matrix.sh
#   python scripts/compare_runs.py results/cpu/records $OUT/gpu/records
#
# Without WEIGHTS it first trains the CIFAR ResNet-18 (`bench train`, EPOCHS epochs) on DEVICE
# and keeps the checkpoint in OUT, so the CPU run can use the same file (MODEL, DETECTORS,
# ATTACKS and PRECISION narrow or change the run; ADAPTIVE=0 skips the short adaptive_pgd run
# that follows the matrix, ADAPTIVE_DETECTORS narrows it). Wall times (seconds, exit code, command) go to
# OUT/walltime.tsv, records to OUT/records. SHARED is the shared data folder (prepare_cifar10.py
# builds the data root from it).
set -euo pipefail
SHARED=${SHARED:-../shared/data}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-results/matrix-$DEVICE}
EPOCHS=${EPOCHS:-15}
BENCH=${BENCH:-.venv/bin/bench}
PY=${PY:-.venv/bin/python}
PRECISION=${PRECISION:-fp32}
MODEL=${MODEL:-resnet18}
DETECTORS=${DETECTORS:-all}
ATTACKS=${ATTACKS:-all}
mkdir -p "$OUT"
DATA=$OUT/data
[ -d "$DATA/cifar-10-batches-py" ] || "$PY" "$SHARED/prepare_cifar10.py" --out "$DATA"
# a step's wall time is kept even when it fails (bench run exits 1 if any cell failed)
timed() {
  local t0=$SECONDS rc=0
  "$@" || rc=$?
  printf '%s\t%s\t%s\n' "$((SECONDS - t0))" "$rc" "$*" >> "$OUT/walltime.tsv"
  return "$rc"
}
trap 'cat "$OUT/walltime.tsv" 2>/dev/null' EXIT
if [ -z "${WEIGHTS:-}" ]; then
  WEIGHTS=$OUT/resnet18-cifar10.pt
  [ -f "$WEIGHTS" ] || timed "$BENCH" train --model "$MODEL" --dataset cifar10 --data-root "$DATA" \
    --epochs "$EPOCHS" --device "$DEVICE" --out "$WEIGHTS"
fi
export BENCH_HOME=$OUT/home
status=0   # a failed cell fails the script at the end, after every step has run
timed "$BENCH" run --dataset cifar10 --data-root "$DATA" --model "$MODEL" --weights "$WEIGHTS" \
  --detector "$DETECTORS" --attack "$ATTACKS" --ood all --device "$DEVICE" --precision "$PRECISION" \
  --out "$OUT/records" --json > "$OUT/records.jsonl" || status=$?
# attacks aimed at the detector (not in `all`): a short run of each adaptive path on DEVICE
if [ "${ADAPTIVE:-1}" != 0 ]; then
  timed "$BENCH" run --dataset cifar10 --data-root "$DATA" \
    --model "$MODEL" --weights "$WEIGHTS" --detector "${ADAPTIVE_DETECTORS:-ae,combined,zhou,msp}" \
    --attack 'adaptive_pgd(n=256,steps=5)' --device "$DEVICE" --precision "$PRECISION" \
    --out "$OUT/records-adaptive" --json > "$OUT/records-adaptive.jsonl" || status=$?
fi
exit "$status"
