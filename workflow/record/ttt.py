"""Score-first test-time training (TTT), the eval of PR #549 and of every merged record after it.

The validation stream is cut into chunks of `chunk_tokens` targets. For each chunk in order:
  1. score it: the sliding windows whose first scored target lies in the chunk, under no_grad,
     with the model as it stands (every target is scored exactly once, as in eval_sliding);
  2. train on it: `epochs` passes of SGD (or AdamW) over the chunk's targets, cut into seq_len
     sequences, with the learning rate on a cosine across chunks.
The last chunk is scored and never trained on. So each target's score depends only on the
artifact and the tokens before it: training only ever sees targets that are already scored.
The causality audit (ttt_audit) checks exactly that on this code.

Under torchrun a chunk's windows are split across ranks for scoring, and each training step's
sequences too; the gradients are summed across ranks before the step, so every rank holds the
same weights.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F

from evaluate import EvalConfig, EvalSetup, Window, audit_counts, audit_totals, eval_cli, flip_audit, fixed_scorer, rank_share, run_eval_stage, score_label, sliding_windows, static_shapes, window_batch
from model import GPT
from runtime import Dist, StageProgress, UserError, load_hparams, now, run_main, settings_from, sync
from scoring import ScoreSums


@dataclass
class TTTConfig:
    enabled: bool = False
    headline: bool = False  # the record's claimed score is this eval's
    chunk_tokens: int = 32768  # targets per chunk (#549: 32,768, 1,893 chunks on sp1024 val)
    seq_len: int | None = None  # scoring windows and training sequences; None: eval.seq_len
    stride: int | None = None  # None: eval.stride
    score_batch_seqs: int = 32  # windows per scoring batch
    optimizer: str = "sgd"  # "sgd" (with momentum) or "adamw"
    lr: float = 0.002
    lr_schedule: str = "cosine"  # "cosine": lr * (1 + cos(pi * k / (chunks - 1))) / 2 for chunk k; "constant"
    momentum: float = 0.9  # SGD momentum; AdamW's beta1
    weight_decay: float = 0.0
    epochs: int = 3  # passes over each scored chunk
    batch_seqs: int = 32  # training sequences per step, over all ranks
    grad_clip: float = 1.0  # max global grad norm (0 = no clipping)
    adapt: list = field(default_factory=lambda: ["*"])  # parameter names (fnmatch patterns) that train
    freeze: list = field(default_factory=list)  # ... minus these, e.g. "blocks.0.*"
    compile: bool = True  # GPU: compile the training forward (the CPU always runs eagerly)
    audit_chunks: int = 3  # chunks the causality audit runs through (0 = no audit)
    audit_chunk_tokens: int | None = None  # their length; None: chunk_tokens


def windows_by_chunk(windows: list[Window], chunk_tokens: int, total: int) -> list[list[Window]]:
    """Each window goes to the chunk holding its first scored target (#549's assignment)."""
    chunks: list[list[Window]] = [[] for _ in range(math.ceil(total / chunk_tokens))]
    for w in windows:
        start, _, first = w
        chunks[(start + first) // chunk_tokens].append(w)
    return chunks


def chunk_lr(ttt: TTTConfig, k: int, num_chunks: int) -> float:
    if ttt.lr_schedule == "constant":
        return ttt.lr
    return ttt.lr * 0.5 * (1 + math.cos(math.pi * k / max(num_chunks - 1, 1)))


def adapted_params(model: GPT, ttt: TTTConfig) -> list[torch.nn.Parameter]:
    """The parameters TTT trains (adapt minus freeze); the others are frozen for the whole eval."""
    chosen = []
    for name, p in model.named_parameters():
        on = any(fnmatch.fnmatchcase(name, pat) for pat in ttt.adapt) and not any(fnmatch.fnmatchcase(name, pat) for pat in ttt.freeze)
        p.requires_grad_(on)
        if on:
            chosen.append(p)
    if not chosen:
        raise UserError(f"eval.ttt.adapt {ttt.adapt} minus eval.ttt.freeze {ttt.freeze} matches no parameter of the model")
    return chosen


def make_optimizer(params, ttt: TTTConfig) -> torch.optim.Optimizer:
    if ttt.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=ttt.lr, betas=(ttt.momentum, 0.999), weight_decay=ttt.weight_decay)
    return torch.optim.SGD(params, lr=ttt.lr, momentum=ttt.momentum, weight_decay=ttt.weight_decay)


def train_loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed NLL of a training batch. The class's hidden (GPT's or FrontierGPT's), not model.hidden:
    on GPU the eval replaces the latter with a compiled, graph-replayed forward meant for scoring only."""
    return F.cross_entropy(model.logits(type(model).hidden(model, x)).flatten(0, 1), y.flatten(), reduction="sum")


_COMPILED: dict = {}


def compiled_train_loss():
    """One compiled training forward per process, reused by every TTT pass (the audit's too)."""
    if "train_loss" not in _COMPILED:
        _COMPILED["train_loss"] = torch.compile(train_loss, dynamic=False)
    return _COMPILED["train_loss"]


class ChunkTrainer:
    """Trains the model on one already-scored chunk: epochs x steps of batch_seqs sequences."""

    def __init__(self, model: GPT, ttt: TTTConfig, seq_len: int, dist: Dist, autocast):
        self.model, self.ttt, self.seq_len, self.dist, self.autocast = model, ttt, seq_len, dist, autocast
        self.params = adapted_params(model, ttt)
        self.opt = make_optimizer(self.params, ttt)
        self.loss_sum = compiled_train_loss() if ttt.compile and dist.device.type == "cuda" else train_loss
        self.tokens_trained = 0

    def train(self, tokens: torch.Tensor, lo: int, hi: int, lr: float) -> None:
        """Targets lo..hi-1 of `tokens` (those of one chunk), cut into whole seq_len sequences."""
        n_seqs = (hi - lo) // self.seq_len
        for group in self.opt.param_groups:
            group["lr"] = lr
        pos = torch.arange(self.seq_len, device=tokens.device)
        for _ in range(self.ttt.epochs):
            for s in range(0, n_seqs, self.ttt.batch_seqs):
                step = list(range(s, min(s + self.ttt.batch_seqs, n_seqs)))
                mine = rank_share(step, self.dist)
                self.opt.zero_grad(set_to_none=False)
                if mine:
                    idx = lo + torch.tensor(mine, device=tokens.device)[:, None] * self.seq_len + pos[None, :]
                    with self.autocast():
                        loss = self.loss_sum(self.model, tokens[idx], tokens[idx + 1])
                    # The step's mean over all ranks' targets: each rank divides by the step's total.
                    (loss / (len(step) * self.seq_len)).backward()
                for p in self.params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    self.dist.all_reduce_sum(p.grad)
                if self.ttt.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.params, self.ttt.grad_clip)
                self.opt.step()
                self.tokens_trained += len(step) * self.seq_len


def ttt_windows(ttt: TTTConfig, cfg: EvalConfig) -> tuple[int, int]:
    return ttt.seq_len or cfg.seq_len, ttt.stride or cfg.stride


def score_then_train(model: GPT, tokens: torch.Tensor, ttt: TTTConfig, cfg: EvalConfig, dist: Dist, autocast, on_scored, progress: str | None = None) -> dict:
    """The TTT pass over `tokens`: every chunk scored (on_scored(windows, batch, nll) per batch),
    then trained on, except the last. Changes the model's weights. Returns what it did.
    progress: a label under which chunks done (scored and trained) are reported (StageProgress)."""
    seq_len, stride = ttt_windows(ttt, cfg)
    total = len(tokens) - 1
    chunks = windows_by_chunk(sliding_windows(total, seq_len, stride, cfg.as_published), ttt.chunk_tokens, total)
    report = StageProgress(len(chunks), progress, unit="chunks", rank=dist.rank, device=dist.device) if progress else None
    trainer = ChunkTrainer(model, ttt, seq_len, dist, autocast)
    score = fixed_scorer(model, autocast, stride)
    pad = ttt.score_batch_seqs if static_shapes(dist.device) else 0
    score_s = train_s = 0.0
    for k, windows in enumerate(chunks):
        t0 = now()
        mine = rank_share(windows, dist)
        for i in range(0, len(mine), ttt.score_batch_seqs):
            batch = mine[i : i + ttt.score_batch_seqs]
            b = window_batch(tokens, batch, seq_len, dist.device, pad)
            on_scored(batch, b, score(b))
        sync(dist.device)
        t1 = now()
        score_s += t1 - t0
        if k < len(chunks) - 1 and ttt.epochs > 0:
            lo = k * ttt.chunk_tokens
            trainer.train(tokens, lo, min(lo + ttt.chunk_tokens, total), chunk_lr(ttt, k, len(chunks)))
            sync(dist.device)
            train_s += now() - t1
        if report is not None:
            report.update(k + 1)
    return {
        "chunks": len(chunks),
        "tokens_trained": trainer.tokens_trained,
        "adapted_params": sum(p.numel() for p in trainer.params),
        "score_time_ms": int(1000 * score_s),
        "train_time_ms": int(1000 * train_s),
    }


def eval_ttt(s: EvalSetup, ttt: TTTConfig) -> dict:
    """val_loss / val_bpb of score-first TTT over the whole stream, each target scored once."""
    cfg, dist, luts = s.cfg, s.dist, s.luts
    t0 = now()
    sums = ScoreSums(dist.device)
    tokens = s.val_tokens.to(dist.device)
    done = score_then_train(s.model, tokens, ttt, cfg, dist, s.autocast, lambda w, b, nll: sums.add(nll, b.x[b.rows, b.cols], b.y[b.rows, b.cols], luts, b.targets), "ttt")
    result = sums.result(dist)
    seq_len, stride = ttt_windows(ttt, cfg)
    result.update(eval_time_ms=int(1000 * (now() - t0)), **done, chunk_tokens=ttt.chunk_tokens, seq_len=seq_len, stride=stride)
    result.update(optimizer=ttt.optimizer, lr=ttt.lr, epochs=ttt.epochs)
    return result


# ----------------------------------------------------------------------------- causality audit


def ttt_audit(model: GPT, val_tokens: torch.Tensor, cfg: EvalConfig, ttt: TTTConfig, dist: Dist, autocast, vocab_size: int, run=score_then_train) -> dict:
    """Flip one target, run TTT again over the same stretch, and require that no earlier score moved.

    The stretch is `audit_chunks` chunks (of audit_chunk_tokens, default chunk_tokens: ordering,
    not chunk length, is what the audit checks) from the middle of the stream, run by `run` (the
    real score_then_train, with every other setting of the eval) from the artifact's weights each time. Flipped: the last target of the first
    chunk, and a middle and the last target of the second, i.e. targets whose chunk is trained on
    before later chunks are scored. Every target before the flipped one, in its chunk and in all
    earlier chunks, must keep its score exactly (CPU) or within 1e-6 (GPU). Later targets may
    move (through their context, and through training on the flipped chunk). Each rank checks
    the targets it scored; the counts are summed. The model's weights are restored at the end.
    """
    ttt = replace(ttt, chunk_tokens=ttt.audit_chunk_tokens or ttt.chunk_tokens)
    total = len(val_tokens) - 1
    n = min(ttt.audit_chunks * ttt.chunk_tokens, total)
    if ttt.audit_chunks <= 0 or n <= ttt.chunk_tokens:
        return {"checked": False, "verdict": "not run"}
    lo = (total - n) // 2
    stretch = val_tokens[lo : lo + n + 1].to(dist.device)
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def scores(tokens: torch.Tensor) -> dict[int, float]:
        out: dict[int, float] = {}

        def keep(windows, b, nll):
            keys = [start + pos for start, length, first in windows for pos in range(first, length)]
            out.update(zip(keys, nll.double().cpu().tolist()))

        model.load_state_dict(saved)
        run(model, tokens, ttt, cfg, dist, autocast, keep)
        return out

    c = ttt.chunk_tokens
    flips = sorted({c - 1, min(c + c // 2, n - 1), min(2 * c - 1, n - 1)})
    tolerance = 0.0 if dist.device.type == "cpu" else 1e-6
    counts = flip_audit(scores, stretch, flips, vocab_size, tolerance)
    model.load_state_dict(saved)
    compared, violations, worst = audit_totals(dist, *counts)
    return {
        "checked": True,
        "chunks": math.ceil(n / c),
        "chunk_tokens": c,
        "first_target": lo,
        "flipped_targets": [lo + t for t in flips],
        **audit_counts(compared, violations, worst, tolerance),
    }


def ttt_main(argv=None) -> None:
    args = eval_cli("Score-first test-time training eval of a compressed artifact.").parse_args(argv)
    hp = load_hparams(args.hparams)
    ttt = settings_from(TTTConfig, hp["ttt"])

    def score(s):
        # The audit first, from the artifact's weights (it restores them); then the eval itself.
        audit = ttt_audit(s.model, s.val_tokens, s.cfg, ttt, s.dist, s.autocast, s.model.cfg.vocab_size)
        r = eval_ttt(s, ttt)
        r["audit"] = audit
        extra = f" chunks:{r['chunks']} epochs:{ttt.epochs} lr:{ttt.lr} stride:{r['stride']} audit:{audit['verdict']}"
        return score_label("ttt"), {"method": "ttt", **r}, extra

    run_eval_stage(args, hp, score)


if __name__ == "__main__":
    run_main(ttt_main)
