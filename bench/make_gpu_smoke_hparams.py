"""Writes the stage settings for bench/gpu_smoke.sh: the real preset, shortened to a smoke run.

    python bench/make_gpu_smoke_hparams.py results/gpu_smoke

The device image has no PyYAML or pgolf, so the merged, shortened blocks travel as JSON.
"""

import json
import sys
from pathlib import Path

import yaml

from pgolf.config import merge_overlay
from pgolf.config import check_config

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
config = yaml.safe_load(Path("config.yaml").read_text())
merge_overlay(config, yaml.safe_load(Path("config/fineweb-8xh100.yaml").read_text()))
check_config(config)
train = config["train"]
# One H100 instead of eight: the per-GPU batch of the record (48 x 2048 tokens), a few dozen steps.
train.update(nproc_per_node=1, batch_tokens=48 * 2048, iterations=60, max_wallclock_seconds=0, warmdown_iters=20,
             train_log_every=10, val_every=0, val_max_tokens=65536)
# Throughput at the real shape on one GPU: the record's 786,432-token step as 8 micro-batches.
throughput = {**train, "grad_accum_steps": 8, "batch_tokens": 786432, "iterations": 60, "warmup_steps": 20,
              "train_log_every": 10, "val_max_tokens": 65536}
(out / "train_throughput.json").write_text(json.dumps(throughput, sort_keys=True))
(out / "train_throughput_eager.json").write_text(json.dumps({**throughput, "compile": "off", "iterations": 12, "warmup_steps": 2}, sort_keys=True))
# The first 200 steps of a real run, for comparing loss curves with the #1313 script: in a 600 s run
# the LR multiplier is 1 and late QAT is off that early, hence no warmdown here.
(out / "train_curve.json").write_text(json.dumps({**throughput, "iterations": 200, "warmdown_iters": 0}, sort_keys=True))
evalb = config["eval"]
evalb.update(nproc_per_node=1, max_tokens=65536)
(out / "train.json").write_text(json.dumps(train, sort_keys=True))
(out / "export.json").write_text(json.dumps(config["export"], sort_keys=True))
(out / "export_gptq.json").write_text(json.dumps({**config["export"], "gptq": {**config["export"]["gptq"], "enabled": True}}, sort_keys=True))
(out / "eval.json").write_text(json.dumps(evalb, sort_keys=True))
print(f"wrote {out}/train.json, train_throughput*.json, export.json, eval.json")
