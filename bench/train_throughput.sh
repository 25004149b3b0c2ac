#!/usr/bin/env bash
# Training throughput of the record model at the real shape on ONE GPU: 786,432 tokens per step as
# 8 micro-batches of 48 x 2048 (what one of the record's 8 GPUs does, times 8), compiled and eager.
# Needs results/gpu_smoke/train_throughput*.json (bench/make_gpu_smoke_hparams.py) and a data dir
# with a 1024-token vocabulary. Usage: bench/train_throughput.sh DATA_DIR OUT_DIR
set -euo pipefail
DATA=$1/manifest.json
OUT=$2
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
VARIANTS=${VARIANTS:-train_throughput train_throughput_eager}  # VARIANTS=train_throughput: compiled only
for variant in $VARIANTS; do
  torchrun --standalone --nproc_per_node 1 workflow/record/train.py --hparams results/gpu_smoke/$variant.json \
    --data "$DATA" --seed 1337 --out-dir "$OUT/$variant" 2>&1 | grep -v "^warmup_step" | tee "$OUT/$variant.log"
  rm -f "$OUT/$variant/model.pt"
done
python - "$OUT" "$VARIANTS" <<'PY'
import json, re, sys
from pathlib import Path
out = Path(sys.argv[1])
params = 26_862_694
for variant in sys.argv[2].split():
    m = json.loads((out / variant / "train.json").read_text())
    log = (out / f"{variant}.log").read_text()
    peak = re.search(r"peak memory allocated: (\d+) MiB", log).group(1)
    # Steady state: from the 10th step to the last one (late QAT, switched on near the end, is in it).
    steps = [(int(a), float(b)) for a, b in re.findall(r"^step:(\d+)/\d+ train_loss:\S+ train_time:(\d+)ms", log, re.M)]
    (s0, t0), (s1, t1) = steps[min(9, len(steps) - 2)], steps[-1]
    step_ms = (t1 - t0) / (s1 - s0)
    tok_s = 786432 / (step_ms / 1000)
    mfu = tok_s * 6 * params / 989e12
    print(f"{variant}: {step_ms:.1f} ms/step, {tok_s:,.0f} tokens/s/GPU, peak {peak} MiB, MFU(6N, dense bf16 989 TF) {100 * mfu:.1f}%, attention {m['attention']}")
PY
