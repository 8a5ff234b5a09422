#!/usr/bin/env bash
# Class-aware second stage on FERPlus (issues 22 and 24, README "Every class"): each variant fine-tunes the seed-0
# face-pretrained LAN (BASE, a finished `scripts/ferplus_vggface2.sh` run) for one more epoch, then fits its
# operating point on validation only (`lanfer calibrate`, majority labels, so every variant is scored alike).
#   FERPLUS=/path/to/FERPlus BASE=runs/vggface2/lan_s0 OUT=runs/class_aware bash scripts/ferplus_class_aware.sh [train|calibrate|table|all]
#   VARIANTS="control votes" ... runs a subset; SEED=1 ... another seed of the second stage (default 0, as the
#   first stage; give it its own OUT). Finished steps are skipped.
# Variants (one change each against `control`, a plain extra epoch):
#   votes     cross-entropy to the annotators' vote distribution (data.options.label_mode=votes)
#   la        Menon et al.'s logit-adjusted loss, tau 1 (loss.logit_adjust=1)
#   balanced  class-balanced sampling (data.balanced_sampling=true)
#   cw        inverse-frequency class weights (loss.class_weight=1)
#   votes_la  votes and la together
#   wild      augmentation towards photographed faces: wider framing, rotation, blur, sharpening (data.augment=wild)
# Variants of `balanced` (one change each against it; session 8, aimed at contempt's recall):
#   balanced2       two epochs instead of one (train.epochs=2)
#   balanced_votes  balanced sampling (on the votes' arg-max) with cross-entropy to the vote distribution
#   balanced_hi     the first stage's peak rate, 3e-4, instead of 1e-4
#   balanced_distill  balanced sampling, each label mixed half-and-half with the soft targets of a teachers' file
#                   (loss.distill=$TEACHER, made by scripts/teacher_targets.py from the balanced models above)
#   balanced_distill9 the same with the teachers' share at 0.9 (loss.distill_weight=0.9; balanced sampling then
#                   draws on the mixture's arg-max, mostly the teachers')
set -euo pipefail
R=${FERPLUS:-data/FERPlus}
BASE=${BASE:-runs/vggface2/lan_s0}
OUT=${OUT:-runs/class_aware}
VARIANTS=${VARIANTS:-control votes la balanced cw votes_la wild}
SEED=${SEED:-0}
STEP=${1:-all}
L=${LANFER:-lanfer}
PY=${PYTHON:-python}

overrides() {
  case $1 in
    control) echo "" ;;
    votes) echo "--set data.options.label_mode=votes" ;;
    la) echo "--set loss.logit_adjust=1" ;;
    balanced) echo "--set data.balanced_sampling=true" ;;
    cw) echo "--set loss.class_weight=1" ;;
    votes_la) echo "--set data.options.label_mode=votes --set loss.logit_adjust=1" ;;
    wild) echo "--set data.augment=wild" ;;
    balanced2) echo "--set data.balanced_sampling=true --set train.epochs=2" ;;
    balanced_votes) echo "--set data.balanced_sampling=true --set data.options.label_mode=votes" ;;
    balanced_hi) echo "--set data.balanced_sampling=true --set train.lr=0.0003" ;;
    balanced_distill) echo "--set data.balanced_sampling=true --set loss.distill=${TEACHER:?set TEACHER=FILE.npz}" ;;
    balanced_distill9) echo "--set data.balanced_sampling=true --set loss.distill=${TEACHER:?set TEACHER=FILE.npz}" \
        "--set loss.distill_weight=0.9" ;;
    *) echo "unknown variant $1 (control, votes, la, balanced, cw, votes_la, wild, balanced2, balanced_votes," \
         "balanced_hi, balanced_distill, balanced_distill9)" >&2; exit 2 ;;
  esac
}
train() {
  for v in $VARIANTS; do
    local run=$OUT/$v extra
    extra=$(overrides $v)
    [ -f $run/metrics.json ] && continue
    [ -f $run/last.ckpt ] && extra="$extra --resume"
    # one epoch at a third of the first stage's peak rate, short warm-up, cosine to zero; the first stage's guidance.
    # A selection run: no test score at the end (train.final_test=false; runs before session 8 have one, unused)
    $L train ferplus_vggface2_lan --set data.root=$R --set model.init=$BASE/best.safetensors \
        --set guidance.path=$BASE/guidance.safetensors --set train.epochs=1 --set train.lr=0.0001 \
        --set train.warmup_epochs=0.1 --set train.final_test=false --set seed=$SEED $extra --out $run
  done
}
calibrate() {  # the tau table on val under the majority rule (the selection metric), T at the auto tau; from tau -1,
  # because a model trained with the logit-adjusted loss has balanced raw logits: tau -1 gives back plain CE's rule
  for v in $VARIANTS; do
    local run=$OUT/$v
    [ -f $run/metrics.json ] || continue
    [ -f $run/val_calibration.json ] || $L calibrate $run/best.safetensors --root $R --split val \
        --set data.options.label_mode=majority --min-tau=-1 --out $run/calibrated.safetensors \
        --record $run/val_calibration.json \
        --no-progress > /dev/null
  done
}
table() { $PY scripts/class_aware_table.py $OUT ${BASE_RECORD:-}; }
case $STEP in
  train) train ;; calibrate) calibrate ;; table) table ;;
  all) train; calibrate; table ;;
  *) echo "usage: $0 [train|calibrate|table|all]" >&2; exit 2 ;;
esac
