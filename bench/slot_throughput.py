"""SLOT eval throughput at the real shape on one GPU: ours (loss-carrying positions only) against
the all-positions computation that PR #1313 runs, on the same model, windows and GPU.

    python bench/slot_throughput.py DATA_DIR [--batches 20]

The model is the 11x512 record model with random weights (throughput does not depend on them);
windows are #1313's: seq_len 2048, stride 96, 32 windows per batch, 24 AdamW steps. Upstream's
8xH100 run took 231-255 s for 646,059 windows, about 2.9 ms per window per GPU.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "record"))

from evaluate import EvalConfig, compile_hidden, fixed_scorer, sliding_windows, window_batch  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from runtime import load_val_tokens, manifest_paths, read_manifest  # noqa: E402
from slot import SlotConfig, fit_sizes, slot_scorer  # noqa: E402


def all_positions_scorer(model, slot: SlotConfig, autocast):
    """#1313's inner loop: logits and CE for all seq_len positions, the loss masked to the scored ones."""
    weight, cap = model.tok_emb.weight.detach().float(), model.cfg.logit_softcap

    def score(b):
        x, y = b.x, b.y
        scored = torch.zeros_like(x, dtype=torch.bool)
        scored[b.rows, b.cols] = True
        with torch.no_grad(), autocast():
            h = model.hidden(x)
        h = h.float()
        mask = scored.float()
        delta = torch.zeros(x.size(0), 1, h.size(-1), device=x.device, requires_grad=True)
        bias = torch.zeros(x.size(0), 1, weight.size(0), device=x.device, requires_grad=True)
        opt = torch.optim.AdamW([delta, bias], lr=slot.lr, weight_decay=1e-8, eps=1e-5)
        for i in range(slot.steps):
            for g in opt.param_groups:
                g["lr"] = slot.lr_min + 0.5 * (slot.lr - slot.lr_min) * (1 + math.cos(math.pi * i / slot.steps))
            logits = cap * torch.tanh((F.linear(h + delta, weight) + bias) / cap)
            nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
            loss = (nll * mask).sum() / mask.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = cap * torch.tanh((F.linear(h + delta, weight) + bias) / cap)
            return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)[scored]

    return score


def timed(score, tokens, windows, cfg, batches, device) -> tuple[float, float]:
    """(ms per window, mean NLL) over `batches` batches after one warm-up batch."""
    def run(batch):
        return score(window_batch(tokens, batch, cfg.seq_len, device))

    # Warm-up on the first batch (window 0 scores everything) and on one of the steady shape, so
    # that compilation is not timed; every later batch has the same shapes.
    run(windows[: cfg.batch_seqs])
    run(windows[cfg.batch_seqs : 2 * cfg.batch_seqs])
    torch.cuda.synchronize()
    t0, nll = time.perf_counter(), []
    for b in range(batches):
        nll.append(run(windows[(b + 2) * cfg.batch_seqs : (b + 3) * cfg.batch_seqs]).double())
    torch.cuda.synchronize()
    ms = 1000 * (time.perf_counter() - t0) / (batches * cfg.batch_seqs)
    return ms, torch.cat(nll).mean().item()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dir")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--compile", action="store_true", help="compile the forward as the eval stage does on GPU")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of our published SLOT")
    args = ap.parse_args()
    device = torch.device("cuda")
    torch.set_float32_matmul_precision("high")  # TF32, as #1313 sets and as our eval stages do
    torch.manual_seed(0)
    model = GPT(GPTConfig()).to(device).eval()
    for p in model.parameters():  # trained-looking weights, so that SLOT has something to move
        p.data.normal_(0, 0.02)
    manifest = read_manifest(str(Path(args.data_dir) / "manifest.json"))
    tokens = load_val_tokens(manifest_paths(manifest, "val"), 2048).to(device)  # as eval_windows does
    cfg = EvalConfig(seq_len=2048, stride=96, batch_seqs=32)
    windows = sliding_windows(len(tokens) - 1, cfg.seq_len, cfg.stride, as_published=True)
    slot = SlotConfig(enabled=True, mode="published", steps=24, lr=0.012, lr_min=0.001, batch_seqs=32)
    sizes = fit_sizes(cfg.seq_len, cfg.stride, slot.batch_seqs)  # the fixed fit shapes of the eval stage on GPU
    autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    print(f"{torch.cuda.get_device_name()} torch {torch.__version__}; {len(windows)} windows available, timing {args.batches} batches of 32")
    rows = [
        ("sliding (fixed predictor)", fixed_scorer(model, autocast)),
        ("SLOT published, all positions (#1313's computation)", all_positions_scorer(model, slot, autocast)),
        ("SLOT published, loss positions only (ours)", slot_scorer(model, slot, autocast, sizes)),
        ("SLOT causal, context positions (ours)", slot_scorer(model, SlotConfig(**{**slot.__dict__, "mode": "causal"}), autocast, sizes)),
    ]
    if args.compile:
        compile_hidden(model)
    results = {}
    for name, score in rows:
        ms, nll = timed(score, tokens, windows, cfg, args.batches, device)
        results[name] = (ms, nll)
        print(f"{name:55s} {ms:7.3f} ms/window  {1000 / ms:8.1f} windows/s  mean NLL {nll:.6f}")
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            timed(rows[2][1], tokens, windows, cfg, 4, device)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=60))
    ref, ours = results[rows[1][0]], results[rows[2][0]]
    print(f"speed-up of ours over the all-positions computation: {ref[0] / ours[0]:.2f}x; |mean NLL difference| {abs(ref[1] - ours[1]):.2e}")
    print(f"full val set at stride 96 on 8 GPUs, extrapolated: {ours[0] * 646059 / 8 / 1000:.1f} s (upstream: 231-255 s)")


if __name__ == "__main__":
    main()
