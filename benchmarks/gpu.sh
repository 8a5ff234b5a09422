#!/usr/bin/env bash
# The GPU checks as one prepared command (run from the repo root on a CUDA machine):
#   OUT=/tmp/gpu bash benchmarks/gpu.sh
# 1. every benchmark of run_all.py at its small size, with --device cuda where a script takes it
#    (one table of ratios, also as markdown, in $OUT/bench/);
# 2. LAN vs ResNet-18 training-step time at the paper's 224 px, batch 64 (fp32 and bf16 autocast, then each
#    under torch.compile);
# 3. the guidance clustering on the GPU at RAF-DB size, and at AffectNet size from a float16 store on disk
#    (14.4 GB, written under $WORK and deleted; skipped when $WORK has under 20 GB free);
# 4. `lanfer demo` at 224 px (the paper's 7x7 lattice) with more people, 3 folds and 15 epochs.
# Results land in $OUT as JSON/HTML/logs; the demo's bulky run folder stays in $WORK.
# Written without a GPU at hand: read, not run (say so when you quote it).
set -u
OUT=${OUT:-runs/gpu}
WORK=${WORK:-/tmp/lanfer-gpu}
PY=${PY:-python3}
DEMO_TIMEOUT=${DEMO_TIMEOUT:-300}
mkdir -p "$OUT" "$WORK"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi -L | tee "$OUT/device.txt"
$PY benchmarks/_common.py | tee -a "$OUT/device.txt"
$PY benchmarks/run_all.py --device cuda --quiet --markdown --out "$OUT/bench" --timeout 300 | tee "$OUT/run_all.txt"
$PY benchmarks/bench_train_step.py --device cuda --size 224 --batch 64 --steps 20 --out "$OUT/step_fp32.json"
$PY benchmarks/bench_train_step.py --device cuda --size 224 --batch 64 --steps 20 --amp --out "$OUT/step_bf16.json"
# the LAN head's overhead target (< 10% of the step): its ~15 small kernels fused by torch.compile
timeout 420 $PY benchmarks/bench_train_step.py --device cuda --size 224 --batch 64 --steps 20 \
    --modes bf16+compile,fp32+compile --out "$OUT/step_compile.json"
$PY benchmarks/bench_guidance.py --device cuda --sklearn-positions 2 --out "$OUT/guidance_cuda.json" | tail -14
if [ "$(df -Pk "$WORK" | awk 'NR==2 {print $4}')" -gt $((20 * 1024 * 1024)) ]; then
    $PY benchmarks/bench_guidance_scale.py --device cuda --dir "$WORK" --out "$OUT/guidance_scale_cuda.json" | tail -6
else
    echo "bench_guidance_scale.py skipped: under 20 GB free in $WORK" | tee "$OUT/guidance_scale_cuda.txt"
fi
timeout "$DEMO_TIMEOUT" $PY -m lanfer.cli demo --out "$WORK/demo" --image-size 224 --identities 40 \
    --pretrain-identities 120 --pretrain-epochs 10 --folds 3 --epochs 15 --batch-size 64 --workers 12 2>&1 \
    | grep -v -E "it/s\]|img/s\]|s/it\]" | tail -40
cp "$WORK/demo/metrics.json" "$OUT/demo_metrics.json" 2>/dev/null
cp "$WORK/demo/report.html" "$OUT/demo_report.html" 2>/dev/null
ls -la "$OUT"
