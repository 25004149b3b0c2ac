"""The April records' export options (docs/config.md, "Export"): SD clipping (export.clip_sigmas),
LQER corrections (export.lqer), the byte shuffle, per-group lrzip compression (compressor
pergroup) and +-1 pruning to a byte target (prune_to_bytes). quantize.py calls this module only
when one of those keys is on, and `pgolf bundle` ships it only then; the artifact's framing (format
names, stream magics) stays in quantize.py.
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass

import numpy as np
import torch

from runtime import UserError, torch_bytes

PERGROUP_SORTED = ("tok_emb.weight", "attn.q.weight", "mlp.up.weight")  # groups whose rows are similarity-sorted


@dataclass
class LQERConfig:
    """Low-rank correction of the largest quantization errors (the 1.0611 record's LQER)."""

    enabled: bool = False
    rank: int = 4
    top_k: int = 3  # tensors corrected: those with the largest Frobenius error norm
    factor_bits: int = 4  # symmetric per-row factors (when asym is off or B does not split in groups)
    asym: bool = False  # A: one int2 scale per matrix; B: int4 in groups of `group` values
    group: int = 64



def clip_group(name: str) -> str:
    """Which export.clip_sigmas entry a tensor uses (the records' grouping by name)."""
    if "tok_emb" in name:
        return "embed"
    return "mlp" if ".mlp." in name else "attn" if ".attn." in name else "matrix"


def clip_sigma(name: str, sigmas: dict) -> float | None:
    """k of the tensor's group in export.clip_sigmas (its own, else matrix's); None: percentile clipping."""
    return sigmas.get(clip_group(name), sigmas.get("matrix"))


def sd_scales(w: torch.Tensor, bits: int, sigmas: float) -> torch.Tensor:
    """One fp16 scale per row, so that the clip range is `sigmas` standard deviations of the row."""
    qmax = 2 ** (bits - 1) - 1
    return (sigmas * w.float().std(dim=1) / qmax).clamp_min(1e-10).to(torch.float16)


def quantize_rows_sd(w: torch.Tensor, bits: int, sigmas: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest with the std-based row scales of sd_scales: (q int8, scale fp16)."""
    qmax = 2 ** (bits - 1) - 1
    scale = sd_scales(w, bits, sigmas)
    q = torch.clamp(torch.round(w.float() / scale.float()[:, None]), -qmax, qmax)
    return q.to(torch.int8), scale



def lqer_factors_sym(A: torch.Tensor, B: torch.Tensor, bits: int) -> dict:
    """Both factors as int<bits> with one fp16 scale per row."""
    top = 2 ** (bits - 1) - 1
    out = {}
    for key, m in (("A", A), ("B", B)):
        sc = (m.abs().amax(dim=1).clamp_min(1e-10) / top).to(torch.float16)
        out[key] = torch.clamp(torch.round(m / sc.float()[:, None]), -top, top).to(torch.int8)
        out[key + "s"] = sc
    return out


def lqer_factors_asym(A: torch.Tensor, B: torch.Tensor, group: int) -> dict:
    """A as int2 in [-2, 1] with one scale (|A|max / 1.5); B as int4 in [-8, 7] with one scale per
    `group` consecutive values (|group|max / 7.5)."""
    a_scale = (A.abs().amax().clamp_min(1e-10) / 1.5).to(torch.float16)
    qa = torch.clamp(torch.round(A / a_scale.float()), -2, 1).to(torch.int8)
    Bg = B.reshape(-1, group)
    b_scale = (Bg.abs().amax(dim=1).clamp_min(1e-10) / 7.5).to(torch.float16)
    qb = torch.clamp(torch.round(Bg / b_scale.float()[:, None]), -8, 7).to(torch.int8).reshape(B.shape)
    return {"A": qa, "As": a_scale, "B": qb, "Bs": b_scale}


def lqer_terms(state: dict, q: dict, scale: dict, lc: LQERConfig) -> dict:
    """For the top_k quantized tensors by error norm ||W - Q*s||: E ~ A @ B from E's rank-`rank`
    SVD (A = U*S, B = V^T), both factors quantized. Returns {name: factors (+ "asym": 0/1)}."""
    errors = {}
    for name in q:
        E = state[name].detach().float().cpu() - q[name].float() * scale[name].float()[:, None]
        errors[name] = (E, float(E.norm()))
    ranked = sorted(errors.items(), key=lambda kv: -kv[1][1])[: lc.top_k]
    terms = {}
    for name, (E, _) in ranked:
        U, S, Vh = torch.linalg.svd(E, full_matrices=False)
        r = min(lc.rank, S.numel())
        A, B = (U[:, :r] * S[:r]).contiguous(), Vh[:r, :].contiguous()
        if lc.asym and B.numel() % lc.group == 0:
            terms[name] = {**lqer_factors_asym(A, B, lc.group), "asym": 1}
        else:
            terms[name] = {**lqer_factors_sym(A, B, lc.factor_bits), "asym": 0}
    return terms


def lqer_delta(f: dict) -> torch.Tensor:
    """The dequantized A @ B of one lqer_terms entry."""
    if f["asym"]:
        A = f["A"].float() * f["As"].float()
        group = f["B"].numel() // f["Bs"].numel()
        B = (f["B"].reshape(-1, group).float() * f["Bs"].float()[:, None]).reshape(f["B"].shape)
    else:
        A = f["A"].float() * f["As"].float()[:, None]
        B = f["B"].float() * f["Bs"].float()[:, None]
    return A @ B



def transpose_bytes(data: bytes, stride: int) -> bytes:
    """Byte 0 of every `stride`-byte word, then byte 1 of every word, ...: the high and the low bytes
    of the fp16 values (and the int8 planes) each become one run, which compresses better."""
    arr = np.frombuffer(data, dtype=np.uint8)
    return np.concatenate([arr[k::stride] for k in range(stride)]).tobytes()


def untranspose_bytes(body: bytes, stride: int) -> bytes:
    """The inverse of transpose_bytes."""
    body = np.frombuffer(body, dtype=np.uint8)
    if stride < 2:
        return body.tobytes()
    out, start = np.empty_like(body), 0
    for k in range(stride):
        n = len(range(k, body.size, stride))
        out[k::stride] = body[start : start + n]
        start += n
    return out.tobytes()


def group_key(name: str) -> str:
    """A tensor's per-group compression group: its name without the `blocks.<i>.` prefix."""
    parts = name.split(".")
    return ".".join(parts[2:]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else name


def similarity_order(m: np.ndarray) -> np.ndarray:
    """A row order in which each row is followed by the nearest (L1) row not yet taken, from row 0:
    similar rows end up next to each other, which helps the compressor."""
    rows = m.astype(np.float32)
    left = np.ones(len(rows), dtype=bool)
    order = np.empty(len(rows), dtype=np.int64)
    cur = 0
    for i in range(len(rows)):
        order[i], left[cur] = cur, False
        if i + 1 < len(rows):
            idx = np.flatnonzero(left)
            cur = idx[np.argmin(np.abs(rows[idx] - rows[cur]).sum(axis=1))]
    return order


def run_lrzip(args: list[str]) -> None:
    import subprocess

    if shutil.which("lrzip") is None:
        raise UserError("export.compressor: pergroup needs the lrzip program on PATH (apt-get install lrzip), or choose brotli")
    subprocess.run(["lrzip", *args], capture_output=True, check=True)


def lrzip_bytes(data: bytes, level: int, decompress_: bool = False) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pgolf_lrz_") as d:
        src, dst = os.path.join(d, "in"), os.path.join(d, "out")
        with open(src, "wb") as f:
            f.write(data)
        run_lrzip(["-d", "-f", "-o", dst, src] if decompress_ else ["-z", "-L", str(level), "-o", dst, src])
        with open(dst, "rb") as f:
            return f.read()


def pack_streams(streams: list[bytes]) -> bytes:
    """The number of streams and each one's length (uint32 little-endian), then the streams
    (quantize.py puts its PGRP magic in front)."""
    head = np.array([len(streams), *map(len, streams)], dtype="<u4").tobytes()
    return head + b"".join(streams)


def unpack_streams(blob: bytes) -> list[bytes]:
    n = int(np.frombuffer(blob, dtype="<u4", count=1)[0])
    lengths = np.frombuffer(blob, dtype="<u4", count=n, offset=4).tolist()
    out, at = [], 4 + 4 * n
    for length in lengths:
        out.append(blob[at : at + length])
        at += length
    return out


def pergroup_pack(artifact: dict, level: int) -> bytes:
    """Per-group compression: the int8 matrices of one group (a tensor name without its block
    index) as one stream, each transposed (column-major: a column's values are neighbours), the
    PERGROUP_SORTED groups with their rows similarity-sorted first, through `lrzip -L level`;
    everything else (scales, fp16 tensors, LQER terms, the row orders) one brotli-11 stream."""
    import brotli

    groups: dict[str, list[str]] = {}
    for name, qn in artifact["q"].items():
        if qn.dtype == torch.int8 and qn.ndim == 2:
            groups.setdefault(group_key(name), []).append(name)
    streams, orders, shapes = [], {}, {}
    for key, names in groups.items():
        planes = []
        for name in names:
            m = artifact["q"][name].numpy()
            if key in PERGROUP_SORTED:
                order = similarity_order(m)
                orders[name] = torch.from_numpy(order.astype(np.int32))
                m = m[order]
            planes.append(np.ascontiguousarray(m.T).tobytes())
            shapes[name] = list(m.shape)
        streams.append(lrzip_bytes(b"".join(planes), level))
    grouped = {n for names in groups.values() for n in names}
    rest = {**artifact, "q": {n: t for n, t in artifact["q"].items() if n not in grouped}}
    rest["pergroup"] = {"groups": list(groups.values()), "shapes": shapes, "orders": orders}
    streams.append(brotli.compress(torch_bytes(rest), quality=11))
    return pack_streams(streams)


def pergroup_unpack(blob: bytes) -> dict:
    """The artifact dict pergroup_pack was given (weights-only load of its brotli part)."""
    import brotli

    streams = unpack_streams(blob)
    rest = torch.load(io.BytesIO(brotli.decompress(streams[-1])), weights_only=True)
    info = rest.pop("pergroup")
    q = dict(rest["q"])
    for names, stream in zip(info["groups"], streams[:-1]):
        data, at = np.frombuffer(lrzip_bytes(stream, 0, decompress_=True), dtype=np.int8), 0
        for name in names:
            rows, cols = info["shapes"][name]
            m = data[at : at + rows * cols].reshape(cols, rows).T
            at += rows * cols
            if name in info["orders"]:
                back = np.empty(rows, dtype=np.int64)
                back[info["orders"][name].numpy()] = np.arange(rows)
                m = m[back]
            q[name] = torch.from_numpy(np.ascontiguousarray(m))
    return {**rest, "q": q}



def prune_candidates(artifact: dict) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """Every +-1 entry of the attention/MLP matrices, cheapest first: zeroing one costs its
    row's scale squared in reconstruction error. Ties keep tensor order, then position.
    Returns (tensor names, tensor index per candidate, flat position per candidate)."""
    names = [n for n in artifact["q"] if clip_group(n) in ("attn", "mlp")]
    which, where, cost = [], [], []
    for i, name in enumerate(names):
        qn, sc = artifact["q"][name], artifact["scale"][name].float()
        pos = torch.nonzero(qn.reshape(-1).abs() == 1).squeeze(1)
        which.append(torch.full_like(pos, i))
        where.append(pos)
        cost.append(sc[pos // qn.size(1)] ** 2)
    if not names:
        return names, torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
    order = torch.sort(torch.cat(cost), stable=True).indices
    return names, torch.cat(which)[order], torch.cat(where)[order]


def prune_ones(artifact: dict, target: int, pack) -> tuple[dict, dict]:
    """Zero the fewest cheapest +-1 matrix entries (prune_candidates' order) with which the
    artifact, packed by `pack` (artifact -> bytes: quantize.pack_artifact), fits `target` bytes
    (export.prune_to_bytes), found by bisection; all of them if even that does not fit."""
    names, which, where = prune_candidates(artifact)

    def pruned(n: int) -> dict:
        q = dict(artifact["q"])
        for i, name in enumerate(names):
            pos = where[:n][which[:n] == i]
            if pos.numel():
                flat = q[name].clone().reshape(-1)
                flat[pos] = 0
                q[name] = flat.reshape(q[name].shape)
        return {**artifact, "q": q}

    def size(n: int) -> int:
        return len(pack(pruned(n)))

    before = size(0)
    lo, hi = 0, len(where)
    if before > target and size(hi) <= target:
        while lo < hi:
            mid = (lo + hi) // 2
            if size(mid) <= target:
                hi = mid
            else:
                lo = mid + 1
    elif before > target:
        lo = hi  # even every candidate is not enough: prune them all
    out = pruned(lo)
    return out, {"candidates": len(where), "pruned": lo, "bytes_before": before, "bytes_after": size(lo)}
