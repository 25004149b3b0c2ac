"""SLOT eval: per sliding window, fit a hidden-state offset and a logit bias on the frozen model.

mode "published" is PR #1313's algorithm: the offset [1, D] and bias [1, V] of each window are
fitted with AdamW on the very targets the window then scores. That leaks the answers into the
prediction (it breaks score-before-update, Issue #1017 C1/C3); it is here to reproduce the number.
mode "causal" fits them only on the window's context positions, strictly before its scored
slice, then scores the slice and discards them; the first window (no context) gets none.
Both keep #1313's schedule, lr_i = lr_min + (lr - lr_min) * (1 + cos(pi * i / steps)) / 2, whose
last step never reaches lr_min.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from evaluate import EvalConfig, load_eval_model, rank_share, sliding_windows, window_batch
from runtime import Dist, RunLog, autocast_for, load_hparams, load_val_tokens, manifest_paths, now, read_manifest, run_main, sync, tokenizer_path, write_json_atomic
from scoring import ScoreSums, byte_luts


@dataclass
class SlotConfig:
    enabled: bool = False
    mode: str = "causal"
    steps: int = 24
    lr: float = 0.012
    lr_min: float = 0.001
    batch_seqs: int = 32

    @classmethod
    def from_dict(cls, d: dict) -> "SlotConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def eval_slot(model, val_tokens: torch.Tensor, cfg: EvalConfig, slot: SlotConfig, dist: Dist, luts, autocast) -> dict:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    t0 = now()
    windows = sliding_windows(len(val_tokens) - 1, cfg.seq_len, cfg.stride)
    mine = rank_share(windows, dist)
    weight = model.tok_emb.weight.float()
    cap = model.cfg.logit_softcap
    sums = ScoreSums(dist.device)
    positions = torch.arange(cfg.seq_len, device=dist.device)[None, :]
    for b in range(0, len(mine), slot.batch_seqs):
        batch = mine[b : b + slot.batch_seqs]
        x, y, scored = window_batch(val_tokens, batch, cfg.seq_len, dist.device)
        with torch.no_grad(), autocast():
            h = model.hidden(x)
        h = h.float()
        if slot.mode == "published":
            fit = scored
        else:  # causal: the context of each window, everything before its first scored position
            first = torch.tensor([w[2] for w in batch], device=dist.device)[:, None]
            fit = positions < first
        delta = torch.zeros(len(batch), 1, h.size(-1), device=dist.device, requires_grad=True)
        bias = torch.zeros(len(batch), 1, weight.size(0), device=dist.device, requires_grad=True)
        opt = torch.optim.AdamW([delta, bias], lr=slot.lr, weight_decay=1e-8, eps=1e-5)
        n_fit = fit.sum()
        for i in range(slot.steps if n_fit > 0 else 0):
            for g in opt.param_groups:
                g["lr"] = slot.lr_min + 0.5 * (slot.lr - slot.lr_min) * (1 + math.cos(math.pi * i / slot.steps))
            logits = cap * torch.tanh((F.linear(h + delta, weight) + bias) / cap)
            nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
            loss = (nll * fit).sum() / n_fit
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = cap * torch.tanh((F.linear(h + delta, weight) + bias) / cap)
            nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
            sums.add(nll[scored], x[scored], y[scored], luts)
    sync(dist.device)
    result = sums.result(dist)
    result.update(eval_time_ms=int(1000 * (now() - t0)), windows=len(windows), stride=cfg.stride, mode=slot.mode, steps=slot.steps, lr=slot.lr)
    return result


def slot_main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="SLOT eval of a compressed artifact.")
    ap.add_argument("--hparams", required=True, help="JSON file: the config's eval block (with its slot block)")
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--data", required=True, help="data manifest.json")
    ap.add_argument("--out", required=True, help="metrics JSON to write")
    args = ap.parse_args(argv)

    hp = load_hparams(args.hparams)
    cfg, slot = EvalConfig.from_dict(hp), SlotConfig.from_dict(hp["slot"])
    manifest = read_manifest(args.data)
    dist = Dist(hp.get("device", "auto"))
    log = RunLog(dist.rank)
    if dist.device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    model = load_eval_model(args.artifact, dist.device)
    val_tokens = load_val_tokens(manifest_paths(manifest, "val"), cfg.seq_len, cfg.max_tokens)
    luts = byte_luts(tokenizer_path(manifest), model.cfg.vocab_size, dist.device)
    r = eval_slot(model, val_tokens, cfg, slot, dist, luts, autocast_for(dist.device))
    label = f"final_slot_{slot.mode}"
    log(f"{label} val_loss:{r['val_loss']:.4f} val_bpb:{r['val_bpb']:.4f} steps:{slot.steps} lr:{slot.lr} stride:{cfg.stride} eval_time:{r['eval_time_ms']}ms")
    log(f"{label}_exact val_loss:{r['val_loss']:.8f} val_bpb:{r['val_bpb']:.8f}")
    if dist.is_main:
        write_json_atomic(args.out, {"method": f"slot_{slot.mode}", "label": label, **r})
    dist.close()


if __name__ == "__main__":
    run_main(slot_main)
