#!/usr/bin/env bash
# The seed paper's Table 1 protocol on the shared CIFAR-10 copy, for two ResNet-20 checkpoints;
# then docs/reproduction.md is generated from the result records.
set -euo pipefail
SHARED=${SHARED:-../shared/data}
DIR=${DIR:-data/cifar}
OUT=${OUT:-results/repro}
BENCH=${BENCH:-.venv/bin/bench}
[ -d "$DIR/cifar-10-batches-py" ] || .venv/bin/python "$SHARED/prepare_cifar10.py" --out "$DIR"
mkdir -p "$OUT"
timed() { local t0; t0=$(date +%s); "$@"; printf '%s\t%s\n' "$(( $(date +%s) - t0 ))" "$*" >> "$OUT/walltime.tsv"; }

DETS=ae,zhou,combined,msp,energy,mahalanobis
SHIFTS=mix,gaussian_noise,salt_pepper,fgsm,brightness_contrast,pixel_dropout
TIN=$DIR/ood/tinyimagenet_test_resize32.npz
TINV=$DIR/ood/tinyimagenet_val_resize32.npz
OOD="mnist,npz:$TIN,npz:$TINV,npz:$TINV(exclude=cifar10_overlap),npz:$DIR/ood/dtd_subset10_resize32.npz"
WEIGHTS=${WEIGHTS:-akamaster/resnet20-12fca82f.th shiftbench/resnet20-cifar10jpeg-a926624b.pt akamaster/resnet56-4bfd9763.th}
for w in $WEIGHTS; do
  W=$SHARED/weights/$w
  MODEL=$(basename "$w" | cut -d- -f1)  # resnet20 / resnet56
  COMMON=(--dataset cifar10 --data-root "$DIR" --model "$MODEL" --weights "$W" --detector "$DETS" --out "$OUT")
  timed "$BENCH" run "${COMMON[@]}" --attack "$SHIFTS" --severities 1,3,5 --ood "$OOD"
  timed "$BENCH" run "${COMMON[@]}" --attack "" --ood "npz:$TIN,npz:$TINV(exclude=cifar10_overlap)" --ood-jpeg 75
done
.venv/bin/python scripts/make_reproduction.py "$OUT" > docs/reproduction.md
