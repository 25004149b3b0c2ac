"""Scoring shared by the train stage (pre-quantization check) and the eval stage: bits per byte.

val_bpb follows the challenge's accounting: nats per target token, converted to bits, times
tokens per byte, where each target's bytes come from its SentencePiece piece, or, for a CaseOps
dataset (docs/caseops.md), from the validation byte sidecar: each val token's bytes in the
ORIGINAL text. ByteCounter is that one rule, shared by every eval.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from runtime import Dist, UserError, load_shard, manifest_paths, now, sync, tokenizer_path


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


class ByteCounter:
    """The bytes each scored target is worth: from the piece tables (byte_luts), or, when the
    dataset has val byte sidecars, the sidecar entry at the target's position in the val tokens."""

    def __init__(self, luts, sidecar: torch.Tensor | None = None):
        self.luts, self.sidecar = luts, sidecar

    def __call__(self, x: torch.Tensor, y: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        if self.sidecar is None:
            return target_bytes(x, y, self.luts)
        if positions is None:
            raise ValueError("a byte sidecar needs the targets' positions in the val tokens")
        return self.sidecar[positions].to(torch.float64)


def load_val_byte_sidecar(manifest: dict, num_val_tokens: int) -> torch.Tensor | None:
    """The val byte sidecars (split val_bytes) concatenated, aligned with the first num_val_tokens
    val tokens as load_val_tokens trims them; None for a dataset without them."""
    if not any(f["split"] == "val_bytes" for f in manifest["files"]):
        return None
    counts = np.concatenate([load_shard(p) for p in manifest_paths(manifest, "val_bytes")])
    val_total = sum(f["num_tokens"] for f in manifest["files"] if f["split"] == "val")
    if len(counts) != val_total:
        raise UserError(f"{manifest['_root']}/manifest.json: the val byte sidecars hold {len(counts)} entries, the val shards {val_total} tokens")
    return torch.from_numpy(counts[:num_val_tokens].astype(np.int32))


def byte_counter(manifest: dict, num_val_tokens: int, vocab_size: int, device: torch.device) -> ByteCounter:
    """The dataset's byte rule: its tokenizer's piece tables, and its val byte sidecar if it has one."""
    sidecar = load_val_byte_sidecar(manifest, num_val_tokens)
    luts = byte_luts(tokenizer_path(manifest), vocab_size, device)
    return ByteCounter(luts, None if sidecar is None else sidecar.to(device))


def target_bytes(x: torch.Tensor, y: torch.Tensor, luts, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Bytes credited for predicting y after context token x (element-wise, float64); `luts` is the
    piece tables or a ByteCounter (positions: each y's index in the val tokens, for a sidecar)."""
    if isinstance(luts, ByteCounter):
        return luts(x, y, positions)
    base_bytes, has_space, is_boundary = luts
    return base_bytes[y].to(torch.float64) + (has_space[y] & ~is_boundary[x]).to(torch.float64)


class ScoreSums:
    """Running float64 sums of NLL, target count and target bytes, reducible across ranks."""

    def __init__(self, device: torch.device):
        self.t = torch.zeros(3, dtype=torch.float64, device=device)

    def add(self, nll: torch.Tensor, x: torch.Tensor, y: torch.Tensor, luts, positions: torch.Tensor | None = None) -> None:
        self.t[0] += nll.to(torch.float64).sum()
        self.t[1] += nll.numel()
        self.t[2] += target_bytes(x, y, luts, positions).sum()

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
        positions = torch.arange(s * seq_len + 1, e * seq_len + 1, device=dist.device).view(-1, seq_len)
        sums.add(nll, x, y, luts, positions)
    sync(dist.device)
    result = sums.result(dist)
    result["eval_time_ms"] = int(1000 * (now() - t0))
    return result
