"""The record's single-process entry point: train, export, then every eval, in one torchrun job.

The pipeline runs these steps as separate Snakemake stages; a record folder runs them all here:
    torchrun --standalone --nproc_per_node=8 train_gpt.py --data <dir>/manifest.json --seed 1337
The settings the record was produced with are embedded in train_gpt.py as RECORD_CONFIG.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

from evaluate import EvalConfig, eval_sliding, load_eval_model
from model import GPTConfig
from quantize import ExportConfig, export
from runtime import Dist, RunLog, UserError, autocast_for, load_val_tokens, log_environment, manifest_paths, read_manifest, tokenizer_path, write_bytes_atomic, write_json_atomic
from scoring import byte_luts, eval_sequences
from slot import SlotConfig, eval_slot
from train import TrainConfig, train


def record_main(argv, config: dict) -> None:
    ap = argparse.ArgumentParser(description="Train, export and evaluate one seed of this record.")
    ap.add_argument("--data", default="data/manifest.json", help="data manifest.json (pgolf data format)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "1337")))
    ap.add_argument("--out-dir", default=".", help="where final_model.ptz and results.json go")
    args = ap.parse_args(argv)

    tcfg, ecfg = config["train"], config["eval"]
    manifest = read_manifest(args.data)
    dist = Dist(tcfg["device"])
    log = RunLog(dist.rank)
    log_environment(log, [__file__])
    model_cfg = GPTConfig.from_dict({**tcfg["model"], "vocab_size": manifest["tokenizer"]["vocab_size"]})
    model, train_metrics = train(TrainConfig.from_dict(tcfg), model_cfg, manifest, args.seed, dist, log)

    artifact_path = os.path.join(args.out_dir, "final_model.ptz")
    if dist.is_main:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        blob, export_metrics = export({"config": model_cfg.to_dict(), "state_dict": state}, ExportConfig.from_dict(config["export"]), log)
        write_bytes_atomic(artifact_path, blob)
        code_bytes = os.path.getsize(__file__)
        log(f"Code size: {code_bytes} bytes")
        log(f"Total submission size {export_metrics['label']}: {code_bytes + len(blob)} bytes")
    dist.barrier()

    if dist.device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    qmodel = load_eval_model(artifact_path, dist.device)
    ev = EvalConfig.from_dict(ecfg)
    val_tokens = load_val_tokens(manifest_paths(manifest, "val"), ev.seq_len, ev.max_tokens)
    luts = byte_luts(tokenizer_path(manifest), model_cfg.vocab_size, dist.device)
    autocast = autocast_for(dist.device)
    results = {"train": train_metrics}
    results["roundtrip"] = eval_sequences(qmodel, val_tokens, ev.seq_len, ev.batch_seqs, dist, luts, autocast)
    results["sliding"] = eval_sliding(qmodel, val_tokens, ev, dist, luts, autocast)
    slot = SlotConfig.from_dict(ecfg["slot"])
    if slot.enabled:
        results["slot"] = eval_slot(qmodel, val_tokens, ev, slot, dist, luts, autocast)
    for name, label in (("roundtrip", "final_roundtrip"), ("sliding", "final_sliding_window"), ("slot", f"final_slot_{slot.mode}")):
        if name in results:
            r = results[name]
            log(f"{label}_exact val_loss:{r['val_loss']:.8f} val_bpb:{r['val_bpb']:.8f}")
    if dist.is_main:
        write_json_atomic(os.path.join(args.out_dir, "results.json"), results)
    dist.close()
