"""SLOT eval: per sliding window, fit a hidden-state offset and a logit bias on the frozen model.

mode "published" is PR #1313's algorithm: the offset [1, D] and bias [1, V] of each window are
fitted with AdamW on the very targets the window then scores. That leaks the answers into the
prediction (it breaks score-before-update, Issue #1017 C1/C3); it is here to reproduce the number.
mode "causal" fits them only on the window's context positions, strictly before its scored
slice, then scores the slice and discards them; the first window (no context) gets none.
The schedule is #1313's cosine, lr_i = lr_min + (lr - lr_min) * (1 + cos(pi * i / steps)) / 2, whose
last step never reaches lr_min, unless `schedule: corrected`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from evaluate import EvalSetup, causality_audit, eval_cli, eval_windows, run_eval_stage, score_label, scored_hidden, sliding_windows, static_shapes
from runtime import load_hparams, now, run_main, settings_from


@dataclass
class SlotConfig:
    enabled: bool = False
    mode: str = "causal"
    steps: int = 24
    lr: float = 0.012
    lr_min: float = 0.001
    batch_seqs: int = 32
    schedule: str = "published"  # "corrected": the cosine reaches lr_min on the last step
    # The seed family's variants (issue #26), each #1313's when absent.
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-5  # #1324: 1e-8; #1229: torch's defaults (betas 0.9/0.999, eps 1e-8, weight decay 0.01)
    adam_weight_decay: float = 1e-8
    hyper_lr: float = 0.0  # > 0: PR #675's hypergradient lr instead of the cosine (see fit_offsets)


def slot_lr(slot: SlotConfig, i: int) -> float:
    """Cosine from lr towards lr_min. #1313 divides by `steps`, so its last step stops short of
    lr_min (0.001047 for 24 steps); "corrected" divides by steps - 1."""
    span = slot.steps if slot.schedule == "published" else max(slot.steps - 1, 1)
    return slot.lr_min + 0.5 * (slot.lr - slot.lr_min) * (1 + math.cos(math.pi * i / span))


ADAM_BETAS, ADAM_EPS, WEIGHT_DECAY = (0.9, 0.999), 1e-5, 1e-8  # #1313's AdamW settings


def fit_offsets(h_fit, y_fit, rows, n_windows: int, weight, cap: float, lrs: tuple[float, ...], count,
                adam: tuple = (*ADAM_BETAS, ADAM_EPS, WEIGHT_DECAY), hyper: tuple | None = None, lr_trace: list | None = None):
    """Fits each window's offset [D] and bias [V] to the mean CE of its fit positions with AdamW.

    The gradient is written out (CE through the tanh softcap, summed per window) and AdamW is
    PyTorch's update rule, step for step, so that the whole fit is a short run of element-wise
    kernels that torch.compile fuses on GPU instead of hundreds of tiny autograd launches.
    `count` (a 0-dim tensor, so its value never triggers a recompile) is the number of real fit
    positions, the mean's denominator; padding positions point at an extra window row whose
    parameters are thrown away.
    adam: (beta1, beta2, eps, weight decay). hyper: (rate, lr_lo, lr_hi, real windows) for PR #675's
    hypergradient lr: the first step uses lrs[0]; every later one the previous lr plus rate times
    the dot product of this step's and the previous step's gradients (both parameters, all real
    windows of the batch), clamped to [lr_lo, lr_hi]. lr_trace: a list that gets each step's lr
    (for tests and measurements; it syncs with the device every step).
    """
    b1, b2, eps, wd = adam
    delta = h_fit.new_zeros(n_windows, h_fit.size(1))
    bias = h_fit.new_zeros(n_windows, weight.size(0))
    state = [(delta, torch.zeros_like(delta), torch.zeros_like(delta)), (bias, torch.zeros_like(bias), torch.zeros_like(bias))]
    onehot = F.one_hot(y_fit, weight.size(0)).to(h_fit.dtype)
    # Per-window sums as a matmul with the [windows, positions] membership matrix: deterministic on
    # GPU, where index_add_ sums with atomics in a varying order, and AdamW's normalisation would
    # blow that noise up past the causality audit's tolerance. The offset's gradient is the bias
    # gradient through the (linear) head.
    member = F.one_hot(rows, n_windows).T.to(h_fit.dtype)
    lr_t, prev = None, None
    for step, lr in enumerate(lrs, start=1):
        t = torch.tanh((F.linear(h_fit + delta[rows], weight) + bias[rows]) / cap)
        grad_z = (torch.softmax(cap * t, dim=-1) - onehot) * (1 - t * t) / count
        grad_bias = member @ grad_z
        grads = (grad_bias @ weight, grad_bias)
        if hyper is not None:
            rate, lo, hi, real = hyper
            if prev is None:
                lr_t = h_fit.new_full((), lrs[0])
            else:
                lr_t = (lr_t + rate * sum((g[:real] * p[:real]).sum() for g, p in zip(grads, prev))).clamp(lo, hi)
            prev = grads
            if lr_trace is not None:
                lr_trace.append(lr_t.item())
        for (param, m, v), g in zip(state, grads):
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / math.sqrt(1 - b2**step)).add_(eps)
            if lr_t is None:
                param.mul_(1 - lr * wd)
                param.addcdiv_(m, denom, value=-lr / (1 - b1**step))
            else:
                param.mul_(1 - lr_t * wd)
                param.sub_(m / denom * (lr_t / (1 - b1**step)))
    return delta, bias


def fit_sizes(seq_len: int, stride: int, batch_seqs: int) -> tuple[int, ...]:
    """Fit-position counts the compiled fit is built for (GPU): a batch's fit positions are padded
    up to the smallest that holds them. A full batch scores `stride` targets a window, the stream's
    first window all of them; causal fits on up to seq_len - stride context positions a window. So
    a whole eval, audit included, compiles the fit once or twice instead of once per batch shape.
    """
    b = batch_seqs
    return tuple(sorted({b * stride, seq_len + (b - 1) * stride, b * max(seq_len - stride, 1), b * seq_len}))


def slot_scorer(model, slot: SlotConfig, autocast, sizes: tuple[int, ...] = (), tail: int = 0, lr_trace: list | None = None):
    """SLOT as a scorer: fit a per-window hidden offset [D] and logit bias [V], then score.

    Only the positions that carry loss are pushed through the output head: the scored slice in
    published mode (about `stride` of seq_len positions), the context in causal mode. The result
    equals the all-positions computation of #1313, whose masked-out positions add nothing.
    sizes: pad the fit positions to these counts (fit_sizes; on GPU, where the fit is compiled).
    tail: the eval's stride; published mode needs the hidden states of the scored positions alone,
    so the last layer runs for those (evaluate.scored_hidden).
    lr_trace: gets every fit step's lr with hyper_lr on (fit_offsets).
    """
    weight = model.tok_emb.weight.detach().float()
    cap = model.cfg.logit_softcap
    lrs = tuple(slot_lr(slot, i) if slot.hyper_lr <= 0 else slot.lr for i in range(slot.steps))
    adam = (slot.adam_beta1, slot.adam_beta2, slot.adam_eps, slot.adam_weight_decay)
    fit_fn = torch.compile(fit_offsets, dynamic=False) if weight.is_cuda else fit_offsets

    @torch.no_grad()
    def score(b):
        n = b.x.size(0)
        # published: fit on the scored targets themselves; causal: on each window's context,
        # everything before its first scored position.
        y_scored = b.y[b.rows, b.cols]
        if slot.mode == "published":
            with autocast():
                h_scored = scored_hidden(model, b, tail).float()
            rows, h_fit, y_fit = b.rows, h_scored, y_scored
        else:
            with autocast():
                h = model.hidden(b.x)
            h = h.float()
            rows, cols = b.context()
            h_scored, h_fit, y_fit = h[b.rows, b.cols], h[rows, cols], b.y[rows, cols]
        count = len(rows)
        if count:
            pad = next((s for s in sizes if s >= count), count) - count
            if pad:  # padding positions fit an extra window row (index n), dropped below
                h_fit = torch.cat([h_fit, h_fit.new_zeros(pad, h_fit.size(1))])
                y_fit = torch.cat([y_fit, y_fit.new_zeros(pad)])
                rows = torch.cat([rows, rows.new_full((pad,), n)])
            count_t = torch.full((), float(count), device=h_fit.device)
            hyper = (slot.hyper_lr, slot.lr_min, 2 * slot.lr, n) if slot.hyper_lr > 0 else None
            delta, bias = fit_fn(h_fit, y_fit, rows, n + 1 if sizes else n, weight, cap, lrs, count_t, adam, hyper, lr_trace)
            delta, bias = delta[:n], bias[:n]
        else:
            delta, bias = h_scored.new_zeros(n, h_scored.size(-1)), h_scored.new_zeros(n, weight.size(0))
        logits = cap * torch.tanh((F.linear(h_scored + delta[b.rows], weight) + bias[b.rows]) / cap)
        return F.cross_entropy(logits, y_scored, reduction="none")

    return score


def eval_slot(s: EvalSetup, slot: SlotConfig) -> dict:
    cfg = s.cfg
    s.model.eval()
    t0 = now()
    windows = sliding_windows(len(s.val_tokens) - 1, cfg.seq_len, cfg.stride, cfg.as_published)
    sizes = fit_sizes(cfg.seq_len, cfg.stride, slot.batch_seqs) if static_shapes(s.dist.device) else ()
    scorer = slot_scorer(s.model, slot, s.autocast, sizes, cfg.stride)
    result = eval_windows(scorer, s.val_tokens, windows, slot.batch_seqs, cfg.seq_len, s.dist, s.luts, f"slot {slot.mode}")
    result.update(eval_time_ms=int(1000 * (now() - t0)), windows=len(windows), stride=cfg.stride, mode=slot.mode, steps=slot.steps, lr=slot.lr)
    return result


def slot_main(argv=None) -> None:
    ap = eval_cli("SLOT eval of a compressed artifact.")
    ap.add_argument("--mode", choices=["published", "causal"], required=True)
    args = ap.parse_args(argv)
    hp = load_hparams(args.hparams)
    slot = settings_from(SlotConfig, {**hp["slot"], "mode": args.mode})

    def score(s):
        r = eval_slot(s, slot)
        windows = sliding_windows(len(s.val_tokens) - 1, s.cfg.seq_len, s.cfg.stride, s.cfg.as_published)
        sizes = fit_sizes(s.cfg.seq_len, s.cfg.stride, slot.batch_seqs) if static_shapes(s.dist.device) else ()
        scorer = slot_scorer(s.model, slot, s.autocast, sizes, s.cfg.stride)
        r["audit"] = causality_audit(scorer, s.val_tokens, windows, s.cfg, s.model.cfg.vocab_size, s.dist.device, slot.batch_seqs)
        extra = f" steps:{slot.steps} lr:{slot.lr} stride:{s.cfg.stride} audit:{r['audit']['verdict']}"
        return score_label(f"slot_{slot.mode}"), {"method": f"slot_{slot.mode}", **r}, extra

    run_eval_stage(args, hp, score)


if __name__ == "__main__":
    run_main(slot_main)
