#!/usr/bin/env bash
# FERPlus on a CPU, "baseline first" (README, "Real faces: FERPlus"): every command behind the FERPlus numbers.
#   FERPLUS=/path/to/FERPlus OUT=runs/ferplus_cpu SEEDS="0 1 2" bash scripts/ferplus_cpu.sh [stage1|cluster|stage2|eval|all|ablate]
# Finished steps are skipped (their metrics.json exists), so an interrupted run can be restarted as it is.
# `ablate` (11 LAN runs of ~11 min; not part of `all`) needs stage1 and cluster; ALPHAS=0,0.5,1 skips 0.25 and 0.75.
set -euo pipefail
R=${FERPLUS:-data/FERPlus}
OUT=${OUT:-runs/ferplus_cpu}
SEEDS=${SEEDS:-0 1 2}
STEP=${1:-all}
L=${LANFER:-lanfer}
B=$OUT/stage1/best.safetensors

stage1() {  # the plain ResNet-18 from scratch: the backbone the guidance is fitted on
  # 5 of the 8 planned epochs (5 x 391 steps of the 8-epoch cosine schedule): what the committed results ran
  [ -f $OUT/stage1/metrics.json ] || $L train configs/ferplus_cpu_resnet18.yaml --set data.root=$R \
      --set train.max_steps=1955 --out $OUT/stage1
}
cluster() {  # K=2 guidance centres on the stage-1 backbone's F_o (4x4 lattice at 112 px), once for every seed
  [ -f $OUT/guidance/guidance.safetensors ] || $L cluster configs/ferplus_cpu_lan.yaml --set data.root=$R \
      --set model.pretrained=$B --out $OUT/guidance
}
stage2() {  # like for like: the same initial weights, guidance, epochs, schedule and seeds; only the head differs
  for s in $SEEDS; do
    [ -f $OUT/resnet18_s$s/metrics.json ] || $L train configs/ferplus_cpu_resnet18_ft.yaml --set data.root=$R \
        --set model.pretrained=$B --set seed=$s --out $OUT/resnet18_s$s
    [ -f $OUT/lan_s$s/metrics.json ] || $L train configs/ferplus_cpu_lan.yaml --set data.root=$R \
        --set model.pretrained=$B --set guidance.path=$OUT/guidance/guidance.safetensors --set seed=$s \
        --out $OUT/lan_s$s
  done
}
evals() {  # Pose-FERPlus-30 / -45 (RAN's lists, evaluated whole) for every finished run
  for run in $OUT/stage1 $OUT/resnet18_s* $OUT/lan_s*; do
    [ -f $run/metrics.json ] || continue
    for p in 30 45; do
      [ -f $run/pose$p/metrics.json ] || $L eval $run/best.safetensors --data configs/ferplus_cpu_lan.yaml \
          --set data.root=$R --split test --subset $R/pose_${p}_ferplus_list.txt --out $run/pose$p > /dev/null
    done
  done
}
ablate() {  # the paper's Figure 7 (alpha at fusion add) and Table 6 (fusion at alpha 0.5), sharing their cells,
            # each cell also on Pose-FERPlus-30/-45; then alpha 0 vs 0.5 over 3 seeds with the paired tests
  local P="--subset pose30=$R/pose_30_ferplus_list.txt --subset pose45=$R/pose_45_ferplus_list.txt"
  local A="$L ablate configs/ferplus_cpu_lan.yaml --set data.root=$R --set model.pretrained=$B
           --set guidance.path=$OUT/guidance/guidance.safetensors --runs $OUT/ablate --no-progress $P"
  $A --alpha ${ALPHAS:-0,0.25,0.5,0.75,1} --fusion add --out $OUT/ablate/alpha
  $A --alpha 0.5 --fusion add,concat,average --out $OUT/ablate/fusion
  $A --alpha 0,0.5 --fusion add --seeds 3 --out $OUT/ablate/guidance
  local G=$OUT/ablate/add_alpha
  $L compare --a ${G}0.5_seed0 ${G}0.5_seed1 ${G}0.5_seed2 --b ${G}0_seed0 ${G}0_seed1 ${G}0_seed2 $P \
      --out $OUT/ablate/compare_alpha
}
case $STEP in
  stage1) stage1 ;; cluster) cluster ;; stage2) stage2 ;; eval) evals ;; ablate) ablate ;;
  all) stage1; cluster; stage2; evals ;;
  *) echo "unknown step $STEP (stage1|cluster|stage2|eval|all|ablate)" >&2; exit 2 ;;
esac
