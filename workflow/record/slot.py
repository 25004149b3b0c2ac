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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from evaluate import EvalConfig, eval_cli, rank_share, run_eval_stage, sliding_windows, window_batch
from runtime import Dist, load_hparams, now, run_main, settings_from, sync
from scoring import ScoreSums


@dataclass
class SlotConfig:
    enabled: bool = False
    mode: str = "causal"
    steps: int = 24
    lr: float = 0.012
    lr_min: float = 0.001
    batch_seqs: int = 32



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
    args = eval_cli("SLOT eval of a compressed artifact.").parse_args(argv)
    hp = load_hparams(args.hparams)
    slot = settings_from(SlotConfig, hp["slot"])

    def score(s):
        r = eval_slot(s.model, s.val_tokens, s.cfg, slot, s.dist, s.luts, s.autocast)
        return f"final_slot_{slot.mode}", {"method": f"slot_{slot.mode}", **r}, f" steps:{slot.steps} lr:{slot.lr} stride:{s.cfg.stride}"

    run_eval_stage(args, hp, score)


if __name__ == "__main__":
    run_main(slot_main)
