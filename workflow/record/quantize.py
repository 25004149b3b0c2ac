"""Export stage: EMA weights -> int6/int8 quantized, compressed artifact; and loading it back.

Attention and MLP matrices become `matrix_bits` integers with one fp16 scale per row, the clip of
each row chosen from a few percentiles by reconstruction error (PR #1313's "GPTQ-lite"); the
embedding becomes `embed_bits` integers per row; small and control tensors stay fp16. The artifact
is a torch.save of plain tensors and strings (loaded with weights_only=True, so loading never runs
pickled code), compressed with lzma, zstd or brotli.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
from dataclasses import dataclass, field

import torch

from runtime import RunLog, UserError, load_hparams, run_main, torch_bytes, write_bytes_atomic, write_json_atomic, settings_from

ARTIFACT_FORMAT = "pgolf-quant/1"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESSORS = ("lzma", "zstd", "brotli")
BROTLI_TAG = b"\xb7"  # first byte of a brotli artifact (neither xz nor zstd starts with it)


@dataclass
class ExportConfig:
    matrix_bits: int = 6
    embed_bits: int = 8
    clip_percentiles: list = field(default_factory=lambda: [99.9, 99.95, 99.99, 99.999, 100.0])
    embed_clip_percentile: float = 99.99984
    passthrough_max_numel: int = 65536  # tensors this small stay fp16
    compressor: str = "lzma"
    compress_level: int = 6



def quantize_rows(w: torch.Tensor, bits: int, percentiles: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric per-row quantization; each row keeps the clip percentile with the lowest MSE.

    Returns (q int8, scale fp16, chosen percentile index per row).
    """
    qmax = 2 ** (bits - 1) - 1
    w = w.float()
    best_err = torch.full((w.size(0),), float("inf"))
    best_q = torch.zeros_like(w, dtype=torch.int8)
    best_scale = torch.zeros(w.size(0), dtype=torch.float16)
    best_idx = torch.zeros(w.size(0), dtype=torch.int64)
    absw = w.abs()
    for i, pct in enumerate(percentiles):
        clip = absw.amax(dim=1) if pct >= 100.0 else torch.quantile(absw, pct / 100.0, dim=1)
        scale = (clip.clamp_min(1e-12) / qmax).to(torch.float16)
        s = scale.float().clamp_min(1e-12)[:, None]
        q = torch.clamp(torch.round(w / s), -qmax, qmax)
        err = ((q * s - w) ** 2).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_q[better] = q[better].to(torch.int8)
        best_scale[better] = scale[better]
        best_idx[better] = i
    return best_q, best_scale, best_idx


def tensor_kind(name: str, t: torch.Tensor, cfg: ExportConfig) -> str:
    """matrix: attention/MLP weights (matrix_bits); embed: embeddings and other large 2-D tensors
    (embed_bits); fp16: small, non-2-D or non-float tensors."""
    if not t.is_floating_point() or t.ndim != 2 or t.numel() <= cfg.passthrough_max_numel:
        return "fp16"
    return "matrix" if ".attn." in name or ".mlp." in name else "embed"


def quantize_state(state: dict, model_config: dict, cfg: ExportConfig) -> tuple[dict, dict]:
    """Builds the artifact object and a summary of what happened to each tensor kind."""
    q, scale, bits, fp = {}, {}, {}, {}
    stats = {"matrix": 0, "embed": 0, "fp16": 0, "rmse": {}}
    for name, t in state.items():
        kind = tensor_kind(name, t, cfg)
        stats[kind] += t.numel()
        if kind == "fp16":
            fp[name] = t.to(torch.float16) if t.is_floating_point() else t
            continue
        if kind == "embed":
            qn, sc, _ = quantize_rows(t, cfg.embed_bits, [cfg.embed_clip_percentile])
            bits[name] = cfg.embed_bits
        else:
            qn, sc, _ = quantize_rows(t, cfg.matrix_bits, cfg.clip_percentiles)
            bits[name] = cfg.matrix_bits
        q[name], scale[name] = qn, sc
        recon = qn.float() * sc.float()[:, None]
        stats["rmse"][name] = float(((recon - t.float()) ** 2).mean().sqrt())
    artifact = {"format": ARTIFACT_FORMAT, "config": model_config, "q": q, "scale": scale, "bits": bits, "fp": fp}
    return artifact, stats


def dequantize_state(artifact: dict) -> dict:
    state = {name: t.float() if t.is_floating_point() else t for name, t in artifact["fp"].items()}
    for name, qn in artifact["q"].items():
        state[name] = qn.float() * artifact["scale"][name].float()[:, None]
    return state


def compress(data: bytes, method: str, level: int) -> bytes:
    if method == "lzma":
        return lzma.compress(data, preset=level)
    if method == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=level).compress(data)
    if method == "brotli":
        import brotli

        # Brotli streams have no magic number: a one-byte tag tells decompress() what follows.
        return BROTLI_TAG + brotli.compress(data, quality=level)
    raise UserError(f"export.compressor: unknown compressor {method!r} (expected one of {', '.join(COMPRESSORS)})")


def decompress(blob: bytes) -> bytes:
    if blob.startswith(XZ_MAGIC):
        return lzma.decompress(blob)
    if blob.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().decompress(blob)
    if blob.startswith(BROTLI_TAG):
        import brotli

        return brotli.decompress(blob[1:])
    raise UserError("not an xz, zstd or brotli stream")


def artifact_sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def load_artifact(path: str, expect_sha256: str | None = None) -> tuple[dict, dict]:
    """(model config dict, float state dict) from a compressed artifact, with no access to the float weights.

    Safe on hostile input: the bytes are checked against the sha256 the export recorded (when
    given), and torch.load runs with weights_only=True, so no pickled object is ever constructed.
    Anything wrong is one UserError line naming the file.
    """
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise UserError(f"{path}: cannot read the artifact ({e.strerror})") from None
    if expect_sha256 is not None and artifact_sha256(blob) != expect_sha256:
        raise UserError(
            f"{path}: sha256 {artifact_sha256(blob)} does not match the exported artifact's {expect_sha256}"
            f" ({len(blob)} bytes): the file was changed after export"
        )
    try:
        payload = decompress(blob)
    except UserError as e:
        raise UserError(f"{path}: corrupt artifact ({e})") from None
    except Exception as e:  # lzma.LZMAError, zstd.ZstdError, brotli.error, EOFError: truncated or garbled
        raise UserError(f"{path}: corrupt artifact, cannot decompress ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated'})") from None
    try:
        artifact = torch.load(io.BytesIO(payload), weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: refused or unreadable artifact payload (weights-only load: {first})") from None
    if not isinstance(artifact, dict) or artifact.get("format") != ARTIFACT_FORMAT:
        found = artifact.get("format") if isinstance(artifact, dict) else type(artifact).__name__
        raise UserError(f"{path}: unknown artifact format {found!r} (expected {ARTIFACT_FORMAT})")
    return artifact["config"], dequantize_state(artifact)


def expected_sha256(export_json: str | None) -> str | None:
    """The artifact sha256 an export.json recorded (None: no check)."""
    if not export_json:
        return None
    try:
        with open(export_json, encoding="utf-8") as f:
            return json.load(f)["sha256"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"{export_json}: cannot read the artifact's sha256 ({type(e).__name__}: {e})") from None


def export(checkpoint: dict, cfg: ExportConfig, log: RunLog) -> tuple[bytes, dict]:
    state = checkpoint["state_dict"]
    raw = torch_bytes(state)
    log(f"Serialized model: {len(raw)} bytes")
    artifact, stats = quantize_state(state, checkpoint["config"], cfg)
    payload = torch_bytes(artifact)
    blob = compress(payload, cfg.compressor, cfg.compress_level)
    label = f"int{cfg.matrix_bits}+{cfg.compressor}"
    log(f"Serialized model {label}: {len(blob)} bytes (payload:{len(payload)} raw_torch:{len(raw)})")
    worst = max(stats["rmse"].items(), key=lambda kv: kv[1], default=("none", 0.0))
    log(f"quant: matrix_params:{stats['matrix']} embed_params:{stats['embed']} fp16_params:{stats['fp16']} worst_rmse:{worst[1]:.6f} ({worst[0]})")
    metrics = {
        "model_bytes": len(blob),
        "sha256": artifact_sha256(blob),
        "payload_bytes": len(payload),
        "raw_torch_bytes": len(raw),
        "label": label,
        "compressor": cfg.compressor,
        "params_by_kind": {k: stats[k] for k in ("matrix", "embed", "fp16")},
        "rmse": stats["rmse"],
    }
    return blob, metrics


def export_main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Quantize and compress a trained checkpoint.")
    ap.add_argument("--hparams", required=True, help="JSON file: the config's export block")
    ap.add_argument("--model", required=True, help="model.pt written by the train stage")
    ap.add_argument("--out", required=True, help="compressed artifact to write")
    ap.add_argument("--metrics", required=True, help="export.json to write")
    args = ap.parse_args(argv)
    cfg = settings_from(ExportConfig, load_hparams(args.hparams))
    checkpoint = torch.load(args.model, map_location="cpu", weights_only=True)
    blob, metrics = export(checkpoint, cfg, RunLog())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_bytes_atomic(args.out, blob)
    write_json_atomic(args.metrics, metrics)


if __name__ == "__main__":
    run_main(export_main)
