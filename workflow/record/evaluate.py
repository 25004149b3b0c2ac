"""Eval stage: scores the dequantized artifact on the validation split.

Two fixed-predictor evals: `roundtrip` (non-overlapping seq_len chunks) and `sliding` (a window
every `stride` tokens, each scoring only targets no earlier window scored, so every target is
scored exactly once with at least seq_len - stride tokens of context).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from model import GPT, GPTConfig
from quantize import load_artifact
from runtime import Dist, RunLog, autocast_for, load_hparams, load_val_tokens, manifest_paths, now, read_manifest, run_main, sync, tokenizer_path, write_json_atomic, settings_from
from scoring import ScoreSums, byte_luts, eval_sequences


@dataclass
class EvalConfig:
    seq_len: int = 2048
    stride: int = 64
    batch_seqs: int = 32
    max_tokens: int = 0  # 0: the whole validation split



def sliding_windows(total: int, seq_len: int, stride: int) -> list[tuple[int, int, int]]:
    """Windows (start, length, first scored offset) over `total` targets.

    A window starts every `stride` targets; it scores from where the previous window's scoring
    ended, so the last window, truncated at the end of the stream, scores only what is left.
    """
    windows, start, scored_to = [], 0, 0
    while scored_to < total:
        end = min(start + seq_len, total)
        windows.append((start, end - start, scored_to - start))
        scored_to = end
        start += stride
    return windows


def window_batch(val_tokens: torch.Tensor, batch: list[tuple[int, int, int]], seq_len: int, device: torch.device):
    """Zero-padded inputs/targets [B, seq_len] and a mask of the positions each window scores."""
    x = torch.zeros(len(batch), seq_len, dtype=torch.int64)
    y = torch.zeros_like(x)
    scored = torch.zeros(len(batch), seq_len, dtype=torch.bool)
    for i, (start, length, first) in enumerate(batch):
        x[i, :length] = val_tokens[start : start + length]
        y[i, :length] = val_tokens[start + 1 : start + length + 1]
        scored[i, first:length] = True
    return x.to(device), y.to(device), scored.to(device)


def rank_share(items: list, dist: Dist) -> list:
    n = len(items)
    return items[n * dist.rank // dist.world_size : n * (dist.rank + 1) // dist.world_size]


@torch.no_grad()
def eval_sliding(model: GPT, val_tokens: torch.Tensor, cfg: EvalConfig, dist: Dist, luts, autocast) -> dict:
    model.eval()
    t0 = now()
    windows = sliding_windows(len(val_tokens) - 1, cfg.seq_len, cfg.stride)
    mine = rank_share(windows, dist)
    sums = ScoreSums(dist.device)
    for b in range(0, len(mine), cfg.batch_seqs):
        x, y, scored = window_batch(val_tokens, mine[b : b + cfg.batch_seqs], cfg.seq_len, dist.device)
        with autocast():
            nll = model.token_nll(x, y)
        sums.add(nll[scored], x[scored], y[scored], luts)
    sync(dist.device)
    result = sums.result(dist)
    result.update(eval_time_ms=int(1000 * (now() - t0)), windows=len(windows), stride=cfg.stride, seq_len=cfg.seq_len)
    return result


def load_eval_model(artifact_path: str, device: torch.device) -> GPT:
    config, state = load_artifact(artifact_path)
    model = GPT(settings_from(GPTConfig, config)).to(device)
    model.load_state_dict(state)
    model.eval()
    return model


class EvalSetup:
    """What every eval needs: processes, the dequantized model, validation tokens, byte tables."""

    def __init__(self, artifact_path: str, manifest: dict, cfg: EvalConfig, dist: Dist):
        if dist.device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        self.dist, self.cfg = dist, cfg
        self.model = load_eval_model(artifact_path, dist.device)
        self.val_tokens = load_val_tokens(manifest_paths(manifest, "val"), cfg.seq_len, cfg.max_tokens)
        self.luts = byte_luts(tokenizer_path(manifest), self.model.cfg.vocab_size, dist.device)
        self.autocast = autocast_for(dist.device)


def eval_cli(description: str, methods: list[str] | None = None) -> argparse.ArgumentParser:
    """Arguments shared by the eval stage entry points (evaluate.py, slot.py)."""
    ap = argparse.ArgumentParser(description=description)
    if methods:
        ap.add_argument("method", choices=methods)
    ap.add_argument("--hparams", required=True, help="JSON file: the config's eval block")
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--data", required=True, help="data manifest.json")
    ap.add_argument("--out", required=True, help="metrics JSON to write")
    return ap


def log_score(log: RunLog, label: str, r: dict, extra: str = "") -> None:
    log(f"{label} val_loss:{r['val_loss']:.4f} val_bpb:{r['val_bpb']:.4f}{extra} eval_time:{r['eval_time_ms']}ms")
    log(f"{label}_exact val_loss:{r['val_loss']:.8f} val_bpb:{r['val_bpb']:.8f}")


def run_eval_stage(args, hp: dict, score) -> None:
    """Sets up, scores with score(setup) -> (label, result, extra), logs, writes the JSON."""
    dist = Dist(hp.get("device", "auto"))
    setup = EvalSetup(args.artifact, read_manifest(args.data), settings_from(EvalConfig, hp), dist)
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
            return "final_roundtrip", {"method": "roundtrip", **r}, ""
        r = eval_sliding(s.model, s.val_tokens, s.cfg, s.dist, s.luts, s.autocast)
        return "final_sliding_window", {"method": "sliding", **r}, f" stride:{s.cfg.stride} windows:{r['windows']}"

    run_eval_stage(args, load_hparams(args.hparams), score)


if __name__ == "__main__":
    run_main(eval_main)
