"""Scoring shared by the train stage (pre-quantization check) and the eval stage: bits per byte.

val_bpb follows the challenge's accounting: nats per target token, converted to bits, times
tokens per byte, where each target's bytes come from its SentencePiece piece.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from runtime import Dist, now, sync


def byte_luts(sp_model_path: Path, vocab_size: int, device: torch.device):
    """Per-token lookup tables (base_bytes, has_space, is_boundary).

    base_bytes: UTF-8 length of the piece without its leading '▁' (1 for byte-fallback pieces);
    has_space: the piece starts with '▁', worth one byte unless the previous token is a boundary;
    is_boundary: control, unknown and unused ids, and ids past the tokenizer's vocabulary.
    """
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(sp_model_path))
    size = max(sp.vocab_size(), vocab_size)
    base_bytes = np.zeros(size, dtype=np.int16)
    has_space = np.zeros(size, dtype=np.bool_)
    is_boundary = np.ones(size, dtype=np.bool_)
    for i in range(sp.vocab_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        is_boundary[i] = False
        if sp.is_byte(i):
            base_bytes[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            has_space[i] = True
            piece = piece[1:]
        base_bytes[i] = len(piece.encode("utf-8"))
    return tuple(torch.from_numpy(a).to(device) for a in (base_bytes, has_space, is_boundary))


def target_bytes(x: torch.Tensor, y: torch.Tensor, luts) -> torch.Tensor:
    """Bytes credited for predicting y after context token x (element-wise, float64)."""
    base_bytes, has_space, is_boundary = luts
    return base_bytes[y].to(torch.float64) + (has_space[y] & ~is_boundary[x]).to(torch.float64)


class ScoreSums:
    """Running float64 sums of NLL, target count and target bytes, reducible across ranks."""

    def __init__(self, device: torch.device):
        self.t = torch.zeros(3, dtype=torch.float64, device=device)

    def add(self, nll: torch.Tensor, x: torch.Tensor, y: torch.Tensor, luts) -> None:
        self.t[0] += nll.to(torch.float64).sum()
        self.t[1] += nll.numel()
        self.t[2] += target_bytes(x, y, luts).sum()

    def result(self, dist: Dist) -> dict:
        loss_sum, tokens, nbytes = dist.all_reduce_sum(self.t.clone()).tolist()
        val_loss = loss_sum / tokens
        return {
            "val_loss": val_loss,
            "val_bpb": val_loss / math.log(2.0) * tokens / nbytes,
            "tokens": int(tokens),
            "bytes": int(nbytes),
        }


@torch.no_grad()
def eval_sequences(model, val_tokens: torch.Tensor, seq_len: int, batch_seqs: int, dist: Dist, luts, autocast) -> dict:
    """Scores every target once in non-overlapping seq_len chunks (sequences split across ranks)."""
    model.eval()
    t0 = now()
    num_seqs = (len(val_tokens) - 1) // seq_len
    lo, hi = num_seqs * dist.rank // dist.world_size, num_seqs * (dist.rank + 1) // dist.world_size
    sums = ScoreSums(dist.device)
    for s in range(lo, hi, batch_seqs):
        e = min(s + batch_seqs, hi)
        chunk = val_tokens[s * seq_len : e * seq_len + 1].to(dist.device)
        x, y = chunk[:-1].view(-1, seq_len), chunk[1:].view(-1, seq_len)
        with autocast():
            nll = model.token_nll(x, y)
        sums.add(nll, x, y, luts)
    sync(dist.device)
    result = sums.result(dist)
    result["eval_time_ms"] = int(1000 * (now() - t0))
    return result
