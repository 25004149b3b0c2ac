"""Eval stage: scores the dequantized artifact on the validation split.

Two fixed-predictor evals: `roundtrip` (non-overlapping seq_len chunks) and `sliding` (a window
every `stride` tokens, each scoring only targets no earlier window scored, so every target is
scored exactly once with at least seq_len - stride tokens of context). Every windowed eval
(sliding here, SLOT in slot.py) is a "scorer" of window batches, which the causality audit
re-runs with one target changed.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
import torch.nn.functional as F

from build import build_model
from model import GPT
from quantize import expected_sha256, load_artifact
from runtime import Dist, RunLog, StageProgress, autocast_for, load_hparams, load_val_tokens, manifest_paths, now, read_manifest, run_main, sync, write_json_atomic, settings_from
from scoring import ByteCounter, ScoreSums, byte_counter, eval_sequences


@dataclass
class EvalConfig:
    seq_len: int = 2048
    stride: int = 64
    batch_seqs: int = 32
    max_tokens: int = 0  # 0: the whole validation split
    as_published: bool = False  # upstream's windows: the tail windows score the last tokens again
    audit_windows: int = 8  # windows the causality audit re-scores after each flip (0 = no audit)


Window = tuple[int, int, int]  # (start, length, first scored offset)


def sliding_windows(total: int, seq_len: int, stride: int, as_published: bool = False) -> list[Window]:
    """Windows over `total` targets, one starting every `stride` targets.

    Ours: each window scores from where the previous one's scoring ended, so every target is
    scored exactly once and the stream ends with the first window that reaches its end.
    as_published: the upstream rule (first window scores everything, later ones their last
    `stride` targets, windows start up to the end of the stream), which scores the last targets
    several times: 62,023,616 scored for 62,021,632 targets at stride 64 and seq_len 2048.
    """
    if as_published:
        windows = []
        for start in range(0, total, stride):
            length = min(start + seq_len, total) - start
            windows.append((start, length, 0 if start == 0 else max(length - stride, 0)))
        return windows
    windows, start, scored_to = [], 0, 0
    while scored_to < total:
        end = min(start + seq_len, total)
        windows.append((start, end - start, scored_to - start))
        scored_to = end
        start += stride
    return windows


@dataclass
class WindowBatch:
    """One batch of windows: zero-padded inputs/targets [B, seq_len] and where the scored targets are.

    Every index is worked out on the host from the window list, so scoring a batch never waits on
    the GPU (no nonzero(), no boolean-mask indexing): the host prepares the next batch while the
    device still runs this one.
    """

    x: torch.Tensor
    y: torch.Tensor
    rows: torch.Tensor  # the scored targets, row-major: window index ...
    cols: torch.Tensor  # ... and position within the window
    firsts: list[int]  # each window's first scored position
    lowest_col: int  # the earliest scored position in any window (seq_len if none is scored)
    targets: torch.Tensor | None = None  # the scored targets' indices in the token stream (byte sidecars)

    def context(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-major positions strictly before each window's first scored position."""
        mask = torch.arange(self.x.size(1))[None, :] < torch.tensor(self.firsts)[:, None]
        rows, cols = mask.nonzero(as_tuple=True)
        return rows.to(self.x.device, non_blocking=True), cols.to(self.x.device, non_blocking=True)


def static_shapes(device: torch.device) -> bool:
    """On GPU the eval forward and the SLOT fit are compiled for fixed shapes, so batches are padded
    to one size (a new shape would cost a compile of tens of seconds); the CPU runs them as they are."""
    return device.type == "cuda"


def window_batch(tokens: torch.Tensor, batch: list[Window], seq_len: int, device: torch.device, pad_to: int = 0) -> WindowBatch:
    """Builds a batch from token stream `tokens` (on the host or already on `device`).

    pad_to: add empty windows (no inputs, nothing scored) until the batch holds this many.
    """
    batch = list(batch) + [(0, 0, 0)] * max(pad_to - len(batch), 0)
    starts, lengths, firsts = (torch.tensor(v) for v in zip(*batch))
    pos = torch.arange(seq_len)
    valid = pos[None, :] < lengths[:, None]
    rows, cols = (valid & (pos[None, :] >= firsts[:, None])).nonzero(as_tuple=True)
    at = tokens.device
    idx = (starts.to(at)[:, None] + pos.to(at)[None, :]).clamp_max(len(tokens) - 2)
    keep = valid.to(at)
    x, y = torch.where(keep, tokens[idx], 0), torch.where(keep, tokens[idx + 1], 0)
    put = lambda t: t.to(device, non_blocking=True)  # noqa: E731
    lowest = int(cols.min()) if len(cols) else seq_len
    targets = starts[rows] + cols + 1
    return WindowBatch(put(x), put(y), put(rows), put(cols), firsts.tolist(), lowest, put(targets))


def rank_share(items: list, dist: Dist) -> list:
    n = len(items)
    return items[n * dist.rank // dist.world_size : n * (dist.rank + 1) // dist.world_size]


# A scorer maps one WindowBatch to the NLL of each of its scored targets, row-major. Every eval
# method is a scorer, so the scoring loop and the causality audit run the real code.


# The last layer runs for the scored tail of each window only (GPT.hidden's tail), where every
# scored position of a batch lies in its windows' last `stride` positions: all batches but the
# stream's first and last. The same function; PGOLF_EVAL_TAIL=0 turns it off, for benchmarks.
TAIL = os.environ.get("PGOLF_EVAL_TAIL", "1") != "0"


def scored_hidden(model: GPT, b: WindowBatch, tail: int) -> torch.Tensor:
    """Final hidden states at the batch's scored positions, [scored targets, D], row-major; with
    tail > 0, from GPT.hidden's tail form whenever every scored position lies in the last `tail`."""
    T = b.x.size(1)
    if TAIL and 0 < tail < T and b.lowest_col >= T - tail:
        return model.hidden(b.x, tail)[b.rows, b.cols - (T - tail)]
    return model.hidden(b.x)[b.rows, b.cols]


def fixed_scorer(model: GPT, autocast, tail: int = 0):
    """The model as a fixed predictor: nothing adapts at eval time. tail: the eval's stride (see
    scored_hidden)."""

    @torch.no_grad()
    def score(b: WindowBatch):
        # Only the scored positions go through the output head (about stride of seq_len per
        # window): the same NLLs as model.token_nll(b.x, b.y)[b.rows, b.cols], for less work.
        with autocast():
            logits = model.logits(scored_hidden(model, b, tail))
        return F.cross_entropy(logits, b.y[b.rows, b.cols], reduction="none")

    return score


def eval_windows(score, val_tokens: torch.Tensor, windows: list[Window], batch_seqs: int, seq_len: int, dist: Dist, luts, desc: str = "eval") -> dict:
    sums = ScoreSums(dist.device)
    mine = rank_share(windows, dist)
    tokens = val_tokens.to(dist.device)  # batches are gathered where they are scored
    pad = batch_seqs if static_shapes(dist.device) else 0
    progress = StageProgress(len(mine), f"{desc} (rank 0's share)" if dist.world_size > 1 else desc, rank=dist.rank, device=dist.device)
    for i in range(0, len(mine), batch_seqs):
        b = window_batch(tokens, mine[i : i + batch_seqs], seq_len, dist.device, pad)
        sums.add(score(b), b.x[b.rows, b.cols], b.y[b.rows, b.cols], luts, b.targets)
        progress.update(min(i + batch_seqs, len(mine)))
    sync(dist.device)
    return sums.result(dist)


def eval_sliding(s: EvalSetup) -> dict:
    cfg = s.cfg
    s.model.eval()
    t0 = now()
    windows = sliding_windows(len(s.val_tokens) - 1, cfg.seq_len, cfg.stride, cfg.as_published)
    result = eval_windows(fixed_scorer(s.model, s.autocast, cfg.stride), s.val_tokens, windows, cfg.batch_seqs, cfg.seq_len, s.dist, s.luts, "sliding")
    result.update(eval_time_ms=int(1000 * (now() - t0)), windows=len(windows), stride=cfg.stride, seq_len=cfg.seq_len)
    return result


# ----------------------------------------------------------------------------- causality audit


def target_scores(score, tokens: torch.Tensor, windows: list[Window], seq_len: int, device, pad_to: int = 0) -> dict:
    """(window index, target index t) -> NLL of tokens[t + 1] given tokens[..t], as the scorer computes it."""
    nll = score(window_batch(tokens, windows, seq_len, device, pad_to)).double().cpu().tolist()
    keys = [(w, start + pos) for w, (start, length, off) in enumerate(windows) for pos in range(off, length)]
    return dict(zip(keys, nll))


def flip_audit(scores, tokens: torch.Tensor, flips: list[int], vocab_size: int, tolerance: float, position=lambda key: key) -> tuple[int, int, float]:
    """The core of every causality audit: scores(tokens) maps keys to target scores; for each t in
    flips, tokens[t + 1] (target t) is replaced and every target before t (position(key) < t) must
    keep its score within `tolerance`. Returns (scores compared, violations, largest change)."""
    base = scores(tokens)
    compared, violations, worst = 0, 0, 0.0
    for t in flips:
        flipped = tokens.clone()
        flipped[t + 1] = (flipped[t + 1] + 1) % vocab_size
        after = scores(flipped)
        for key, before in base.items():
            if position(key) < t:
                change = abs(after[key] - before)
                compared += 1
                worst = max(worst, change)
                violations += change > tolerance
    return compared, violations, worst


def audit_totals(dist: Dist, compared: int, violations: int, worst: float) -> tuple[int, int, float]:
    """flip_audit's counts summed over ranks, the largest change their maximum."""
    counts = dist.all_reduce_sum(torch.tensor([compared, violations], dtype=torch.float64, device=dist.device)).tolist()
    worst_t = torch.tensor([worst], dtype=torch.float64, device=dist.device)
    if dist.enabled:
        tdist.all_reduce(worst_t, op=tdist.ReduceOp.MAX)
    return int(counts[0]), int(counts[1]), worst_t.item()


def audit_counts(compared: int, violations: int, worst: float, tolerance: float) -> dict:
    """The part of every audit's result that flip_audit's counts give, with its verdict."""
    return {"scores_compared": compared, "violations": violations, "max_abs_change": worst, "tolerance": tolerance,
            "verdict": "pass" if violations == 0 else "fail"}


def causality_audit(score, val_tokens: torch.Tensor, windows: list[Window], cfg: EvalConfig, vocab_size: int, device, batch_seqs: int = 0) -> dict:
    """Flip one target token, re-score, and require that no earlier target's score moved.

    Score-first (Issue #1017 C1/C3) means the score of target t depends only on the artifact and
    tokens[..t]. We take `audit_windows` consecutive windows from the middle of the stream, score
    them, then for a few targets t (the last scored target of some windows) replace tokens[t + 1]
    and score the same windows again: every target before t, in any of these windows, must keep
    its score exactly (CPU) or within 1e-6 (GPU kernels are not bitwise repeatable). A parameter
    fitted on a target before that target is scored shows up as a moved score. On GPU the audit
    batch is padded to `batch_seqs` (default cfg.batch_seqs), the shape the eval itself compiled.
    """
    if cfg.audit_windows <= 0 or len(windows) < 2:
        return {"checked": False, "verdict": "not run"}
    mid = len(windows) // 2
    subset = windows[mid : mid + cfg.audit_windows]
    tolerance = 0.0 if device.type == "cpu" else 1e-6
    pad = (batch_seqs or cfg.batch_seqs) if static_shapes(device) else 0
    flips = sorted({subset[k][0] + subset[k][1] - 1 for k in (0, len(subset) // 2, len(subset) - 1)})
    scores = lambda tokens: target_scores(score, tokens, subset, cfg.seq_len, device, pad)  # noqa: E731
    compared, violations, worst = flip_audit(scores, val_tokens, flips, vocab_size, tolerance, position=lambda key: key[1])
    return {
        "checked": True,
        "windows": len(subset),
        "flipped_targets": flips,
        **audit_counts(compared, violations, worst, tolerance),
    }


def load_eval_model(artifact_path: str, device: torch.device, expect_sha256: str | None = None) -> GPT:
    config, state = load_artifact(artifact_path, expect_sha256)
    model = build_model(config).to(device)
    model.load_state_dict(state)
    model.eval()
    return model


def compile_hidden(model: GPT) -> None:
    """On GPU the eval forward is compiled and replayed as a CUDA graph (batches have one padded
    shape, see static_shapes), so a batch costs one launch instead of hundreds; on CPU it stays eager.
    Each call's output is overwritten by the next call: every scorer consumes it at once."""
    if next(model.parameters()).is_cuda:
        model.hidden = torch.compile(model.hidden, dynamic=False, mode="reduce-overhead")


@dataclass
class EvalSetup:
    """What every eval needs: the model, validation tokens, settings, processes, byte tables, autocast."""

    model: GPT
    val_tokens: torch.Tensor
    cfg: EvalConfig
    dist: Dist
    luts: tuple | ByteCounter  # piece tables, or the dataset's ByteCounter (its sidecar when it has one)
    autocast: object

    @classmethod
    def load(cls, artifact_path: str, manifest: dict, cfg: EvalConfig, dist: Dist, expect_sha256: str | None = None) -> EvalSetup:
        """From the compressed artifact (dequantized; rank 0 checks its sha256) and the data manifest."""
        if dist.device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        model = load_eval_model(artifact_path, dist.device, expect_sha256)
        compile_hidden(model)
        val_tokens = load_val_tokens(manifest_paths(manifest, "val"), cfg.seq_len, cfg.max_tokens)
        luts = byte_counter(manifest, len(val_tokens), model.cfg.vocab_size, dist.device)
        return cls(model, val_tokens, cfg, dist, luts, autocast_for(dist.device))


def eval_cli(description: str, methods: list[str] | None = None) -> argparse.ArgumentParser:
    """Arguments shared by the eval stage entry points (evaluate.py, slot.py)."""
    ap = argparse.ArgumentParser(description=description)
    if methods:
        ap.add_argument("method", choices=methods)
    ap.add_argument("--hparams", required=True, help="JSON file: the config's eval block")
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--export-json", help="export.json of the artifact: its bytes must match the sha256 recorded there")
    ap.add_argument("--data", required=True, help="data manifest.json")
    ap.add_argument("--out", required=True, help="metrics JSON to write")
    return ap


def score_label(method: str) -> str:
    """The log label of a method's final score, without `_exact` (the record code's copy of
    pgolf.rules.method_label; tests/test_rules.py checks that the two agree)."""
    return f"final_{method}"


def log_score(log: RunLog, label: str, r: dict, extra: str = "") -> None:
    log(f"{label} val_loss:{r['val_loss']:.4f} val_bpb:{r['val_bpb']:.4f}{extra} eval_time:{r['eval_time_ms']}ms")
    log(f"{label}_exact val_loss:{r['val_loss']:.8f} val_bpb:{r['val_bpb']:.8f}")


def run_eval_stage(args, hp: dict, score) -> None:
    """Sets up, scores with score(setup) -> (label, result, extra), logs, writes the JSON."""
    dist = Dist(hp.get("device", "auto"))
    setup = EvalSetup.load(args.artifact, read_manifest(args.data), settings_from(EvalConfig, hp), dist, expected_sha256(args.export_json))
    label, r, extra = score(setup)
    log_score(RunLog(dist.rank), label, r, extra)
    if dist.is_main:
        write_json_atomic(args.out, {"label": label, **r})
    dist.close()


def eval_main(argv=None) -> None:
    args = eval_cli("Score a compressed artifact on the validation split.", ["roundtrip", "sliding"]).parse_args(argv)

    def score(s: EvalSetup):
        if args.method == "roundtrip":
            r = eval_sequences(s.model, s.val_tokens, s.cfg.seq_len, s.cfg.batch_seqs, s.dist, s.luts, s.autocast)
            return score_label("roundtrip"), {"method": "roundtrip", **r}, ""
        r = eval_sliding(s)
        windows = sliding_windows(len(s.val_tokens) - 1, s.cfg.seq_len, s.cfg.stride, s.cfg.as_published)
        r["audit"] = causality_audit(fixed_scorer(s.model, s.autocast, s.cfg.stride), s.val_tokens, windows, s.cfg, s.model.cfg.vocab_size, s.dist.device)
        return score_label("sliding_window"), {"method": "sliding", **r}, f" stride:{s.cfg.stride} windows:{r['windows']} audit:{r['audit']['verdict']}"

    run_eval_stage(args, load_hparams(args.hparams), score)


if __name__ == "__main__":
    run_main(eval_main)
