"""Artifact bytes and roundtrip val_bpb of one trained checkpoint under every export choice.

Rows: matrix bits (int6, and int4 as an extra) x quantizer (per-row percentile clip, GPTQ); columns:
compressed bytes for lzma, zstd and brotli, and the roundtrip val_bpb of the dequantized model
(the compressor does not change the weights, so one score per row). CPU is fine at the embedded
default's size:

    python bench/compare_export.py --model results/train/<train_id>/seed42/model.pt \
        --data results/data/<data_id>/manifest.json [--config config.yaml] [--out table.md]

The export settings (clip percentiles, embedding bits, GPTQ calibration) come from the config's
export block; the eval length and token cap from its eval block.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "record"))

from model import GPT, GPTConfig  # noqa: E402
from quantize import COMPRESSORS, ExportConfig, compress, dequantize_state, gptq_hessians, quantize_state  # noqa: E402
from runtime import Dist, RunLog, autocast_for, load_val_tokens, manifest_paths, read_manifest, settings_from, torch_bytes  # noqa: E402
from scoring import byte_luts, eval_sequences  # noqa: E402
from runtime import tokenizer_path  # noqa: E402

LEVELS = {"lzma": 9, "zstd": 22, "brotli": 11}  # each compressor at its densest setting


def roundtrip_bpb(artifact: dict, val_tokens, seq_len: int, luts, dist: Dist) -> float:
    model = GPT(settings_from(GPTConfig, artifact["config"]))
    model.load_state_dict(dequantize_state(artifact))
    return eval_sequences(model, val_tokens, seq_len, 32, dist, luts, autocast_for(dist.device))["val_bpb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model.pt of the train stage (EMA weights)")
    ap.add_argument("--data", required=True, help="data manifest.json (GPTQ calibrates on its train shards)")
    ap.add_argument("--config", default="config.yaml", help="config whose export and eval blocks to use")
    ap.add_argument("--bits", default="6,4", help="matrix bit widths to compare")
    ap.add_argument("--out", help="also write the table (markdown) here")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    config = yaml.safe_load(Path(args.config).read_text())
    checkpoint = torch.load(args.model, map_location="cpu", weights_only=True)
    manifest = read_manifest(args.data)
    dist = Dist("cpu")
    ecfg = config["eval"]
    val_tokens = load_val_tokens(manifest_paths(manifest, "val"), ecfg["seq_len"], ecfg["max_tokens"])
    luts = byte_luts(tokenizer_path(manifest), checkpoint["config"]["vocab_size"], dist.device)
    quiet = RunLog(rank=1)

    float_model = GPT(settings_from(GPTConfig, checkpoint["config"]))
    float_model.load_state_dict(checkpoint["state_dict"])
    float_bpb = eval_sequences(float_model, val_tokens, ecfg["seq_len"], 32, dist, luts, autocast_for(dist.device))["val_bpb"]

    lines = [
        f"checkpoint `{args.model}`; roundtrip over {len(val_tokens) - 1} val tokens; float (EMA) val_bpb {float_bpb:.5f}",
        "",
        "| matrices | quantizer | " + " | ".join(f"{c} bytes" for c in COMPRESSORS) + " | roundtrip val_bpb | quantize s |",
        "|---|---|" + "---:|" * (len(COMPRESSORS) + 2),
    ]
    for bits in [int(b) for b in args.bits.split(",")]:
        for method in ("percentile", "gptq"):
            block = {**config["export"], "matrix_bits": bits, "gptq": {**config["export"]["gptq"], "enabled": method == "gptq", "device": "cpu"}}
            cfg = settings_from(ExportConfig, block)
            t0 = time.perf_counter()
            hessians = gptq_hessians(checkpoint, cfg, manifest, quiet) if method == "gptq" else None
            artifact, _ = quantize_state(checkpoint["state_dict"], checkpoint["config"], cfg, hessians)
            seconds = time.perf_counter() - t0
            payload = torch_bytes(artifact)
            sizes = [len(compress(payload, c, LEVELS[c])) for c in COMPRESSORS]
            bpb = roundtrip_bpb(artifact, val_tokens, ecfg["seq_len"], luts, dist)
            lines.append(f"| int{bits} | {method} | " + " | ".join(f"{n:,}" for n in sizes) + f" | {bpb:.5f} | {seconds:.1f} |")
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
