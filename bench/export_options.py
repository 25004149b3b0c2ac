"""Artifact bytes and roundtrip val loss of one checkpoint with each April export option on vs off.

Each row is the config's export block (GPTQ on the CPU) with one option switched on, then all the
1.0611 record's quantizer options together (config/frontier-8xh100.yaml's export settings), with
the config's compressor and with per-group lrzip (which needs the lrzip program):

    python bench/export_options.py --model results/train/<train_id>/seed42/model.pt \
        --data results/data/<data_id>/manifest.json [--config config.yaml] [--out table.md]

Bytes are the compressed artifact (the config's compressor and level); val loss / val_bpb are the
dequantized model's over the eval block's tokens (sequences of eval.seq_len, no sliding window).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "record"))

from model import GPT, GPTConfig  # noqa: E402
from quantize import ExportConfig, GPTQConfig, dequantize_state, gptq_hessians, pack_artifact, prune_ones_to_fit, quantize_state  # noqa: E402
from runtime import Dist, RunLog, autocast_for, load_val_tokens, manifest_paths, read_manifest, settings_from, tokenizer_path  # noqa: E402
from scoring import byte_luts, eval_sequences  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def variants(export: dict, frontier: dict, base_bytes: int | None) -> list[tuple[str, dict]]:
    gptq = {**export["gptq"], "enabled": True, "device": "cpu"}
    rows = [
        ("off (the config's export)", {}),
        ("clip_sigmas (record's k)", {"clip_sigmas": frontier["clip_sigmas"]}),
        ("gptq (percentile clip)", {"gptq": gptq}),
        ("gptq + act_order", {"gptq": {**gptq, "act_order": True}}),
        ("gptq + act_order + embed", {"gptq": {**gptq, "act_order": True, "embed": True}}),
        ("lqer (record's, no GPTQ)", {"lqer": frontier["lqer"]}),
        ("byte_shuffle 2", {"byte_shuffle": 2}),
    ]
    if base_bytes:
        rows.append((f"prune_to_bytes {int(base_bytes * 0.98):,} (98% of off)", {"prune_to_bytes": int(base_bytes * 0.98)}))
    rows.append(("compressor pergroup (lrzip -L 9)", {"compressor": "pergroup", "compress_level": 9}))
    record = {
        "embed_bits": frontier["embed_bits"], "clip_sigmas": frontier["clip_sigmas"], "lqer": frontier["lqer"], "byte_shuffle": 2,
        "gptq": {**gptq, "act_order": True, "embed": True},
    }
    rows.append(("all of the record's quantizer (embed_bits 7), shuffle 2", record))
    rows.append(("the same, compressor pergroup (lrzip -L 9)", {**record, "compressor": "pergroup", "compress_level": 9}))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model.pt of the train stage (EMA weights)")
    ap.add_argument("--data", required=True, help="data manifest.json (GPTQ calibrates on its train shards)")
    ap.add_argument("--config", default=str(ROOT / "config.yaml"), help="config whose export and eval blocks to use")
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--rows", help="only these rows (0-based, comma-separated; row 0 always runs: the others compare with it)")
    args = ap.parse_args()

    torch.use_deterministic_algorithms(True)
    config = yaml.safe_load(Path(args.config).read_text())
    frontier = yaml.safe_load((ROOT / "config" / "frontier-8xh100.yaml").read_text())["export"]
    checkpoint = torch.load(args.model, map_location="cpu", weights_only=True)
    manifest = read_manifest(args.data)
    dist = Dist("cpu")
    ecfg = config["eval"]
    val_tokens = load_val_tokens(manifest_paths(manifest, "val"), ecfg["seq_len"], ecfg["max_tokens"])
    luts = byte_luts(tokenizer_path(manifest), checkpoint["config"]["vocab_size"], dist.device)

    def score(state: dict) -> dict:
        model = GPT(settings_from(GPTConfig, checkpoint["config"]))
        model.load_state_dict(state)
        return eval_sequences(model, val_tokens, ecfg["seq_len"], 32, dist, luts, autocast_for(dist.device))

    ref = score(checkpoint["state_dict"])
    lines = [
        f"checkpoint `{args.model}`; {len(val_tokens) - 1} val tokens; float (EMA) val_loss {ref['val_loss']:.5f}, val_bpb {ref['val_bpb']:.5f}; "
        f"compressor {config['export']['compressor']} {config['export']['compress_level']}",
        "",
        "| export option | artifact bytes | vs off | roundtrip val_loss | val_bpb | export s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = None  # the first row's bytes; the pruning row's target follows from it
    rows = variants(config["export"], frontier, None)
    done = 0
    wanted = None if not args.rows else {0, *(int(r) for r in args.rows.split(","))}
    while done < len(rows):
        label, over = rows[done]
        if wanted is not None and done not in wanted:
            done += 1
            continue
        cfg = settings_from(ExportConfig, {**config["export"], **over})
        if cfg.compressor == "pergroup" and shutil.which("lrzip") is None:
            lines.append(f"| {label} | (lrzip not installed here: not measured) | | | | |")
            print(lines[-1], flush=True)
            done += 1
            continue
        t0 = time.perf_counter()
        hessians = gptq_hessians(checkpoint, cfg, manifest, RunLog(rank=1)) if settings_from(GPTQConfig, cfg.gptq).enabled else None
        artifact, _ = quantize_state(checkpoint["state_dict"], checkpoint["config"], cfg, hessians)
        if cfg.prune_to_bytes:
            artifact, _ = prune_ones_to_fit(artifact, cfg)
        n = len(pack_artifact(artifact, cfg))
        seconds = time.perf_counter() - t0
        res = score(dequantize_state(artifact))
        if base is None:
            base = n
            rows = variants(config["export"], frontier, base)
        lines.append(f"| {label} | {n:,} | {100.0 * (n - base) / base:+.2f}% | {res['val_loss']:.5f} | {res['val_bpb']:.5f} | {seconds:.1f} |")
        print(lines[-1], flush=True)
        done += 1
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
