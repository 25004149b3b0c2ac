#!/usr/bin/env bash
# GPU smoke run of the real preset's code path on one GPU: train (record shape, per-GPU batch of the
# record, 60 steps), export, roundtrip / sliding / published-SLOT eval on 65,536 val targets.
# GPTQ=1 exports with export.gptq on (calibrated on the train shards, on the GPU).
# Needs: results/gpu_smoke/{train,export,eval}.json (bench/make_gpu_smoke_hparams.py) and a data
# manifest (any pgolf data dir with a 1024-token vocabulary). Usage: bench/gpu_smoke.sh DATA_DIR OUT_DIR
set -euo pipefail
DATA=$1/manifest.json
OUT=$2
HP=results/gpu_smoke
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
torchrun --standalone --nproc_per_node 1 workflow/record/train.py --hparams $HP/train.json --data "$DATA" \
  --seed 1337 --out-dir "$OUT" 2>&1 | tee "$OUT/train.log"
EXPORT_HP=$HP/export.json
[ "${GPTQ:-0}" = 1 ] && EXPORT_HP=$HP/export_gptq.json
python workflow/record/quantize.py --hparams $EXPORT_HP --model "$OUT/model.pt" --data "$DATA" \
  --out "$OUT/final_model.ptz" --metrics "$OUT/export.json" 2>&1 | tee "$OUT/export.log"
for m in roundtrip sliding; do
  torchrun --standalone --nproc_per_node 1 workflow/record/evaluate.py $m --hparams $HP/eval.json \
    --artifact "$OUT/final_model.ptz" --export-json "$OUT/export.json" --data "$DATA" --out "$OUT/$m.json" 2>&1 | tee "$OUT/$m.log"
done
torchrun --standalone --nproc_per_node 1 workflow/record/slot.py --mode published --hparams $HP/eval.json \
  --artifact "$OUT/final_model.ptz" --export-json "$OUT/export.json" --data "$DATA" --out "$OUT/slot.json" 2>&1 | tee "$OUT/slot.log"
rm -f "$OUT/model.pt"
