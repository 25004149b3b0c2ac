"""Per-document evals with test-time training: LoRA TTT reset at every document, and phased TTT.

The validation stream is cut into documents at BOS tokens. A document owns the targets predicted
from its own tokens (the last one is the next document's BOS), so every target of the stream is
scored exactly once, as in the sliding eval. A document is read from its own start only: its
windows never reach into the document before it, so nothing crosses a boundary in attention.

LoRA TTT (`lora_ttt`): each document is scored `chunk_tokens` targets at a time, every chunk
with the context of its document up to seq_len tokens. After a chunk is scored, the document's
own low-rank adapters (rank r on the chosen projections, output scaled by alpha / r) take
`grad_steps` Adam steps on that chunk; the next chunk is scored with them. Adapters belong to one
document: at the next document B is zeroed (A too, unless warm_start_a keeps the directions A has
learnt). `batch_docs` consecutive documents are adapted side by side, each on its own row of the
batched adapters.

Phased TTT (`phased_ttt`): documents are scored as above (with the per-document adapters, as the
records do, or by the fixed model with lora: false). After the first prefix_docs * p / phases
documents have been scored, for p = 1..phases, the whole model takes SGD passes over every
document scored so far, then scoring goes on with the new weights. Global passes never see a
document that is not scored yet: a phase boundary always ends a batch of documents.

Both are score-first by construction; doc_audit re-runs this code with one target flipped to
check it. Before the eval, doc_budget times the real code on the first documents and stops the
stage if the whole validation split would take more than max_seconds.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from evaluate import EvalConfig, EvalSetup, audit_counts, audit_totals, eval_cli, flip_audit, rank_share, run_eval_stage, score_label
from model import GPT
from runtime import Dist, StageProgress, UserError, load_hparams, now, run_main, settings_from, sync
from scoring import ScoreSums


@dataclass
class LoraTTTConfig:
    enabled: bool = False
    headline: bool = False  # the record's claimed score is this eval's
    seq_len: int | None = None  # most context a chunk is scored with; None: eval.seq_len
    chunk_tokens: int = 48  # targets per scoring step of a document (1.0611: 48)
    batch_docs: int = 64  # documents adapted side by side (1.0611: 64)
    bos_id: int = 1
    rank: int = 96  # 1.0611: 96
    alpha: float = 144.0  # adapter output times alpha / rank (1.0611: 144)
    lr: float = 1e-4  # Adam (1.0611: 1e-4)
    beta1: float = 0.0
    beta2: float = 0.999
    weight_decay: float = 1.0  # AdamW's decoupled decay (1.0611: 1.0)
    warm_start_a: bool = True  # keep A across documents, zero only B (1.0611: on)
    grad_steps: int = 1  # adapter steps per scored chunk
    targets: list = field(default_factory=lambda: ["blocks.*.attn.q", "blocks.*.attn.k", "blocks.*.attn.v", "blocks.*.attn.proj", "blocks.*.mlp.down"])
    max_seconds: float = 0.0  # stop before the eval when its estimate exceeds this (0 = no check)
    estimate_docs: int = 0  # documents timed for the estimate (0 = batch_docs)
    audit_docs: int = 4  # documents the causality audit runs through (0 = no audit)


@dataclass
class PhasedTTTConfig:
    enabled: bool = False
    headline: bool = False
    lora: bool = True  # score with the per-document adapters of eval.lora_ttt (as the records)
    prefix_docs: int = 2000  # documents the phases cover (1.0611: 2000)
    phases: int = 1  # global passes, after prefix_docs * p / phases documents (1.0611: 1; 04-14: 3)
    lr: float = 0.001  # SGD, cosine over the chunks of one pass (1.0611: 0.001)
    momentum: float = 0.9
    epochs: int = 1  # passes over each chunk
    chunk_tokens: int = 32768  # training targets per lr step of the cosine (1.0611: 32768)
    batch_seqs: int = 32  # sequences per SGD step
    grad_clip: float = 1.0  # max global grad norm (0 = none)
    respect_doc_boundaries: bool = True  # training sequences never span two documents
    max_seconds: float = 0.0
    estimate_docs: int = 0  # 0 = lora_ttt.batch_docs
    audit_docs: int = 4


Doc = tuple[int, int]  # (first input position, number of targets)


def documents(tokens: torch.Tensor, bos_id: int) -> list[Doc]:
    """The documents of a token stream: a new one at every BOS (and at position 0)."""
    total = len(tokens) - 1
    starts = [0] + [int(p) for p in (tokens[1:total] == bos_id).nonzero().flatten() + 1]
    ends = starts[1:] + [total]
    return [(a, b - a) for a, b in zip(starts, ends)]


# ----------------------------------------------------------------------------- adapters


class BatchedLoRA(nn.Module):
    """One rank-r adapter per document of a batch: x [B, T, in] -> x A_b^T B_b^T * alpha / r."""

    def __init__(self, docs: int, d_in: int, d_out: int, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.bound, self.scale, self.gen = 1.0 / math.sqrt(d_in), alpha / rank, generator
        self.A = nn.Parameter(torch.empty(docs, rank, d_in))
        self.B = nn.Parameter(torch.zeros(docs, d_out, rank))
        self.reset(fresh_a=True)

    @torch.no_grad()
    def reset(self, fresh_a: bool) -> None:
        if fresh_a:
            self.A.copy_(torch.rand(self.A.shape, generator=self.gen) * 2 * self.bound - self.bound)
        self.B.zero_()

    def forward(self, x: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """rows: which documents' adapters the batch's rows are (None: all, in order)."""
        A, B = (self.A, self.B) if rows is None else (self.A[rows], self.B[rows])
        return (x @ A.transpose(1, 2).to(x.dtype)) @ B.transpose(1, 2).to(x.dtype) * self.scale


class DocAdapters:
    """Batched adapters on the model's chosen linear layers, added to their outputs by forward hooks
    while attached. reset() starts every row afresh: the boundary between documents."""

    def __init__(self, model: GPT, cfg: LoraTTTConfig, docs: int, device: torch.device):
        chosen = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear) and any(fnmatch.fnmatchcase(n, p) for p in cfg.targets)]
        if not chosen:
            raise UserError(f"eval.lora_ttt.targets {cfg.targets} match no linear layer of the model")
        gen = torch.Generator().manual_seed(0)
        self.cfg, self.docs = cfg, docs
        self.layers = [(m, BatchedLoRA(docs, m.in_features, m.out_features, cfg.rank, cfg.alpha, gen).to(device)) for _, m in chosen]
        self.params = [p for _, a in self.layers for p in a.parameters()]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-10, weight_decay=cfg.weight_decay)
        self.hooks = []
        self.rows = None  # the documents (adapter rows) of the batch being run

    def reset(self) -> None:
        for _, a in self.layers:
            a.reset(fresh_a=not self.cfg.warm_start_a)
        self.opt.state.clear()

    def attach(self) -> None:
        for m, a in self.layers:
            self.hooks.append(m.register_forward_hook(lambda mod, inp, out, a=a: out + a(inp[0], self.rows)))

    def detach(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []


# ----------------------------------------------------------------------------- scoring a batch of documents


def doc_chunks(n: int, chunk: int) -> int:
    return math.ceil(n / chunk)


def chunk_window(doc: Doc, ci: int, chunk: int, seq_len: int) -> tuple[int, int, int]:
    """Chunk ci of a document: (first input position, window length, first scored offset). The
    window ends with the chunk and starts at most seq_len back, never before the document."""
    a, n = doc
    lo, hi = ci * chunk, min((ci + 1) * chunk, n)
    start = max(0, hi - seq_len)
    return a + start, hi - start, lo - start


def chunk_batch(tokens: torch.Tensor, docs: list[Doc], ci: int, chunk: int, seq_len: int):
    """Inputs, targets [B, W] (zero past each window), the mask of the targets scored at step ci and
    each cell's input position in the stream."""
    wins = [chunk_window(d, ci, chunk, seq_len) if ci < doc_chunks(d[1], chunk) else (0, 0, 0) for d in docs]
    W = max(length for _, length, _ in wins)
    pos = torch.arange(W, device=tokens.device)
    starts = torch.tensor([s for s, _, _ in wins], device=tokens.device)
    lengths = torch.tensor([length for _, length, _ in wins], device=tokens.device)
    firsts = torch.tensor([f for _, _, f in wins], device=tokens.device)
    valid = pos[None, :] < lengths[:, None]
    idx = (starts[:, None] + pos[None, :]).clamp_max(len(tokens) - 2)
    x, y = torch.where(valid, tokens[idx], 0), torch.where(valid, tokens[idx + 1], 0)
    return x, y, valid & (pos[None, :] >= firsts[:, None]), idx


def token_losses(model: GPT, x: torch.Tensor, y: torch.Tensor, autocast) -> torch.Tensor:
    """[B, T] NLL of every position (the class's hidden, not the instance's: the eval's compiled forward is for scoring only)."""
    with autocast():
        h = type(model).hidden(model, x)
        return F.cross_entropy(model.logits(h).flatten(0, 1), y.flatten(), reduction="none").view_as(y)


def adapt_after_score(model, adapters, x, y, scored, at, train_rows, autocast, on_scored) -> None:
    """One chunk step: score it with the adapters as they stand, then train them on it (the rows of
    documents with chunks still to come). Score first: a leaky test variant swaps the two."""
    loss = token_losses(model, x, y, autocast)
    on_scored(loss.detach(), x, y, scored, at)
    if adapters is None or not train_rows.any():
        return
    for step in range(adapters.cfg.grad_steps):
        if step > 0:
            loss = token_losses(model, x, y, autocast)
        per_doc = (loss * scored).sum(1) / scored.sum(1).clamp_min(1)
        adapters.opt.zero_grad(set_to_none=False)
        (per_doc * train_rows).sum().backward()
        adapters.opt.step()


def score_docs(model, tokens, docs: list[Doc], lora: LoraTTTConfig, seq_len: int, adapters, autocast, on_scored, step=adapt_after_score, tick=None) -> None:
    """Scores a batch of documents chunk by chunk, adapting each document's own adapters as it goes
    (tick() after each chunk step)."""
    if not docs:
        return
    if adapters is not None:
        adapters.reset()
    nchunks = [doc_chunks(n, lora.chunk_tokens) for _, n in docs]
    for ci in range(max(nchunks)):
        active = [i for i, nc in enumerate(nchunks) if ci < nc]  # finished documents leave the batch
        x, y, scored, at = chunk_batch(tokens, [docs[i] for i in active], ci, lora.chunk_tokens, seq_len)
        if adapters is not None:
            adapters.rows = torch.tensor(active, device=x.device)
        train_rows = torch.tensor([ci < nchunks[i] - 1 for i in active], device=x.device, dtype=torch.float32)
        step(model, adapters, x, y, scored, at, train_rows, autocast, on_scored)
        if tick is not None:
            tick()


# ----------------------------------------------------------------------------- global phases


def doc_sequences(docs: list[Doc], seq_len: int, respect: bool) -> list[tuple[int, int]]:
    """Training sequences (first input position, length) over consecutive documents: each document
    cut on its own (respect), or the documents' stretch as one stream."""
    spans = docs if respect else [(docs[0][0], sum(n for _, n in docs))] if docs else []
    return [(a + s, min(seq_len, n - s)) for a, n in spans for s in range(0, n, seq_len)]


def global_pass(model: GPT, tokens: torch.Tensor, docs: list[Doc], ph: PhasedTTTConfig, seq_len: int, dist: Dist, autocast) -> int:
    """SGD over already-scored documents: chunks of chunk_tokens targets, lr on a cosine across
    them, `epochs` passes over each. Every rank holds the same weights after each step. Returns
    the targets trained on."""
    seqs = doc_sequences(docs, seq_len, ph.respect_doc_boundaries)
    chunks, cur, size = [], [], 0
    for s in seqs:
        cur.append(s)
        size += s[1]
        if size >= ph.chunk_tokens:
            chunks.append(cur)
            cur, size = [], 0
    if cur:
        chunks.append(cur)
    params = [p for p in model.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=ph.lr, momentum=ph.momentum)
    pos = torch.arange(seq_len, device=tokens.device)
    trained = 0
    for k, chunk in enumerate(chunks):
        for g in opt.param_groups:
            g["lr"] = ph.lr * 0.5 * (1 + math.cos(math.pi * k / max(len(chunks) - 1, 1)))
        for _ in range(ph.epochs):
            for i in range(0, len(chunk), ph.batch_seqs):
                step = chunk[i : i + ph.batch_seqs]
                mine = rank_share(step, dist)
                opt.zero_grad(set_to_none=False)
                if mine:
                    starts = torch.tensor([a for a, _ in mine], device=tokens.device)
                    lengths = torch.tensor([n for _, n in mine], device=tokens.device)
                    valid = pos[None, :] < lengths[:, None]
                    idx = (starts[:, None] + pos[None, :]).clamp_max(len(tokens) - 2)
                    x, y = torch.where(valid, tokens[idx], 0), torch.where(valid, tokens[idx + 1], 0)
                    loss = (token_losses(model, x, y, autocast) * valid).sum()
                    (loss / sum(n for _, n in step)).backward()
                for p in params:
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    dist.all_reduce_sum(p.grad)
                if ph.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, ph.grad_clip)
                opt.step()
                trained += sum(n for _, n in step)
    for p in params:
        p.requires_grad_(False)
    return trained


def scored_prefix(docs: list[Doc], scored: int) -> list[Doc]:
    """The documents a global phase trains on: those scored so far (a leaky test variant adds more)."""
    return docs[:scored]


def phase_ends(n_docs: int, ph: PhasedTTTConfig | None) -> list[int]:
    """Document counts after which a global phase runs (none after the last document: nothing is
    left to score with what it would learn)."""
    if ph is None or ph.phases <= 0:
        return []
    prefix = min(ph.prefix_docs, n_docs)
    return sorted({prefix * p // ph.phases for p in range(1, ph.phases + 1)} - {0, n_docs})


def doc_groups(n_docs: int, batch_docs: int, ends: list[int]) -> list[tuple[int, int]]:
    """Batches of consecutive documents, cut at every phase end."""
    groups, lo = [], 0
    for stop in sorted(set(ends) | {n_docs}):
        for a in range(lo, stop, batch_docs):
            groups.append((a, min(a + batch_docs, stop)))
        lo = stop
    return groups


def doc_ttt_pass(model: GPT, tokens: torch.Tensor, lora: LoraTTTConfig, ph: PhasedTTTConfig | None, seq_len: int, dist: Dist, autocast, on_scored,
                 progress: str | None = None, step=adapt_after_score, phase_docs=scored_prefix, docs: list[Doc] | None = None) -> dict:
    """Scores `tokens` document by document (on_scored(nll [B, T], x, y, scored mask) per chunk step),
    with per-document adapters (always for lora_ttt, `ph` None; with ph.lora for phased TTT), and
    global phases when `ph` is given. (`enabled` is not read: the stage's block leaves it out.) Changes
    the model's weights when phases run. Each rank scores its share of every batch of documents."""
    docs = documents(tokens, lora.bos_id) if docs is None else docs
    ends = phase_ends(len(docs), ph)
    groups = doc_groups(len(docs), lora.batch_docs, ends)
    use_lora = ph is None or ph.lora
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = DocAdapters(model, lora, max(len(rank_share(list(range(lo, hi)), dist)) for lo, hi in groups), dist.device) if use_lora else None
    # Progress in chunk steps (a step scores one chunk of every unfinished document of a batch).
    steps = sum(max((doc_chunks(n, lora.chunk_tokens) for _, n in rank_share(docs[lo:hi], dist)), default=0) for lo, hi in groups)
    report = StageProgress(steps, progress, unit="chunk steps", rank=dist.rank, device=dist.device) if progress else None
    done_steps = [0]

    def tick():
        done_steps[0] += 1
        report.update(done_steps[0])

    score_s = phase_s = 0.0
    phase_targets = 0
    if adapters is not None:
        adapters.attach()
    try:
        for lo, hi in groups:
            t0 = now()
            score_docs(model, tokens, rank_share(docs[lo:hi], dist), lora, seq_len, adapters, autocast, on_scored, step, tick if report else None)
            sync(dist.device)
            score_s += now() - t0
            if hi in ends:
                t1 = now()
                if adapters is not None:
                    adapters.detach()
                phase_targets += global_pass(model, tokens, phase_docs(docs, hi), ph, seq_len, dist, autocast)
                if adapters is not None:
                    adapters.attach()
                sync(dist.device)
                phase_s += now() - t1
                if dist.is_main and progress:
                    print(f"{progress}: phase {ends.index(hi) + 1} of {len(ends)} after {hi} documents, {phase_targets} targets trained, {phase_s:.0f}s in phases", flush=True)
    finally:
        if adapters is not None:
            adapters.detach()
    return {
        "docs": len(docs),
        "phase_ends": ends,
        "phase_targets_trained": phase_targets,
        "adapter_params": sum(p.numel() for p in adapters.params) if adapters is not None else 0,
        "score_time_ms": int(1000 * score_s),
        "phase_time_ms": int(1000 * phase_s),
    }


def summing(sums: ScoreSums, luts):
    """on_scored for the eval: adds each scored target to the running sums (the evals' byte count;
    a byte sidecar takes the target's own position, one past its input's)."""
    return lambda nll, x, y, scored, at: sums.add(nll[scored], x[scored], y[scored], luts, at[scored] + 1)


def variant(name: str, lora: LoraTTTConfig, ph: PhasedTTTConfig):
    """(the variant's own settings, its phases or None) of `lora_ttt` or `phased_ttt`."""
    return (lora, None) if name == "lora_ttt" else (ph, ph)


def eval_doc_ttt(s: EvalSetup, name: str, lora: LoraTTTConfig, ph: PhasedTTTConfig) -> dict:
    """val_loss / val_bpb of a variant over the whole stream, every target scored once."""
    t0 = now()
    seq_len = lora.seq_len or s.cfg.seq_len
    sums = ScoreSums(s.dist.device)
    tokens = s.val_tokens.to(s.dist.device)
    done = doc_ttt_pass(s.model, tokens, lora, variant(name, lora, ph)[1], seq_len, s.dist, s.autocast, summing(sums, s.luts), name)
    r = sums.result(s.dist)
    r.update(eval_time_ms=int(1000 * (now() - t0)), seq_len=seq_len, chunk_tokens=lora.chunk_tokens, **done)
    return r


# ----------------------------------------------------------------------------- budget


def doc_budget(s: EvalSetup, name: str, lora: LoraTTTConfig, ph: PhasedTTTConfig) -> dict:
    """Times the real code on the first documents, from the artifact's weights (restored after),
    and extrapolates to the whole stream: scoring by targets, phases by the targets they train
    on. Raises UserError (one line) when the estimate exceeds the variant's max_seconds."""
    own, phases = variant(name, lora, ph)
    seq_len = lora.seq_len or s.cfg.seq_len
    tokens = s.val_tokens.to(s.dist.device)
    docs = documents(tokens, lora.bos_id)
    k = min(own.estimate_docs or lora.batch_docs, len(docs))
    head = docs[:k]
    saved = {key: v.detach().clone() for key, v in s.model.state_dict().items()}
    # One phase, after all but the last timed document (a phase after the last never runs).
    probe = replace(phases, prefix_docs=max(k - 1, 1), phases=1) if phases is not None else None
    done = doc_ttt_pass(s.model, tokens, lora, probe, seq_len, s.dist, s.autocast, lambda *a: None, docs=head)
    s.model.load_state_dict(saved)
    head_targets = sum(n for _, n in head)
    total = sum(n for _, n in docs)
    est = done["score_time_ms"] / 1000 * total / head_targets
    if phases is not None and done["phase_targets_trained"]:
        per_target = done["phase_time_ms"] / 1000 / done["phase_targets_trained"]
        ends = phase_ends(len(docs), phases)
        trained = sum(sum(n for _, n in docs[:e]) for e in ends) * phases.epochs
        est += per_target * trained
    out = {"timed_docs": k, "timed_targets": head_targets, "timed_phase_targets": done["phase_targets_trained"], "targets": total,
           "estimate_s": round(est, 1), "max_seconds": own.max_seconds}
    if own.max_seconds and est > own.max_seconds:
        raise UserError(f"eval.{name}: estimated {est:.0f}s for {total} targets in {len(docs)} documents (timed on the first {k} documents, {head_targets} targets, on {s.dist.world_size} process(es) of {s.dist.device.type}) exceeds eval.{name}.max_seconds {own.max_seconds:g}")
    return out


# ----------------------------------------------------------------------------- causality audit


def doc_audit(model: GPT, val_tokens: torch.Tensor, cfg: EvalConfig, name: str, lora: LoraTTTConfig, ph: PhasedTTTConfig, dist: Dist, autocast, vocab_size: int,
              step=adapt_after_score, phase_docs=scored_prefix) -> dict:
    """Flip one target, run the variant again over the same documents, require no earlier score moved.

    The stretch is `audit_docs` consecutive documents from the middle of the stream, in batches of
    two documents (so adapters are reset and warm A carried between batches), with phases at every
    second document for phased TTT (so there are several). It runs the real doc_ttt_pass from the
    artifact's weights each time. Flipped: the last target of the first document, a middle target
    of the second and the last target of the last one before the first phase (each the last text
    target, before the next document's BOS): targets whose
    document is trained on before later ones are scored. Every target before the flipped one must
    keep its score exactly (CPU) or within 1e-6 (GPU). The model's weights are restored at the end.
    """
    own, phases = variant(name, lora, ph)
    docs = documents(val_tokens, lora.bos_id)
    n = min(own.audit_docs, len(docs))
    if n < 2:
        return {"checked": False, "verdict": "not run"}
    lo = (len(docs) - n) // 2
    chosen = docs[lo : lo + n]
    a0 = chosen[0][0]
    end = chosen[-1][0] + chosen[-1][1]
    stretch = val_tokens[a0 : end + 1].to(dist.device)
    local = [(a - a0, m) for a, m in chosen]
    seq_len = lora.seq_len or cfg.seq_len
    small = replace(lora, batch_docs=2)
    probe = replace(phases, prefix_docs=n - 1, phases=max(n // 2, 1)) if phases is not None else None
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def scores(tokens: torch.Tensor) -> dict[int, float]:
        out: dict[int, float] = {}

        def keep(nll, x, y, scored, at):
            out.update(zip(at[scored].tolist(), nll[scored].double().cpu().tolist()))

        model.load_state_dict(saved)
        doc_ttt_pass(model, tokens, small, probe, seq_len, dist, autocast, keep, step=step, phase_docs=phase_docs, docs=local)
        return out

    # Text targets (not the next document's BOS): a document's last, a middle one, the last before a phase.
    last = [a + m - 2 for a, m in local]
    first_phase = phase_ends(n, probe)[:1]
    flips = sorted({last[0], local[1][0] + local[1][1] // 2, *(last[e - 1] for e in first_phase)})
    tolerance = 0.0 if dist.device.type == "cpu" else 1e-6
    counts = flip_audit(scores, stretch, flips, vocab_size, tolerance)
    model.load_state_dict(saved)
    compared, violations, worst = audit_totals(dist, *counts)
    return {
        "checked": True,
        "docs": n,
        "first_target": a0,
        "flipped_targets": [a0 + t for t in flips],
        **audit_counts(compared, violations, worst, tolerance),
    }


def doc_ttt_main(argv=None) -> None:
    ap = eval_cli("Per-document LoRA TTT or phased TTT eval of a compressed artifact.", ["lora_ttt", "phased_ttt"])
    args = ap.parse_args(argv)
    hp = load_hparams(args.hparams)
    lora = settings_from(LoraTTTConfig, hp.get("lora_ttt", {}))
    ph = settings_from(PhasedTTTConfig, hp.get("phased_ttt", {}))
    name = args.method

    def score(s):
        # The budget and the audit first, from the artifact's weights (both restore them).
        budget = doc_budget(s, name, lora, ph)
        if s.dist.is_main:
            print(f"{name}_estimate: {budget['estimate_s']}s for {budget['targets']} targets (timed on {budget['timed_docs']} documents), max_seconds:{budget['max_seconds']:g}", flush=True)
        audit = doc_audit(s.model, s.val_tokens, s.cfg, name, lora, ph, s.dist, s.autocast, s.model.cfg.vocab_size)
        r = eval_doc_ttt(s, name, lora, ph)
        r.update(audit=audit, budget=budget)
        extra = f" docs:{r['docs']} chunk:{lora.chunk_tokens}"
        if name == "phased_ttt":
            extra += f" phases:{len(r['phase_ends'])} prefix_docs:{ph.prefix_docs} lora:{int(ph.lora)}"
        else:
            extra += f" rank:{lora.rank} lr:{lora.lr}"
        return score_label(name), {"method": name, **r}, extra + f" audit:{audit['verdict']}"

    run_eval_stage(args, hp, score)


if __name__ == "__main__":
    run_main(doc_ttt_main)
