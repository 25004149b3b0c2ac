"""Export stage: EMA weights -> int6/int8 quantized, compressed artifact; and loading it back.

Attention and MLP matrices become `matrix_bits` integers with one fp16 scale per row, the clip of
each row chosen from a few percentiles by reconstruction error (PR #1313's "GPTQ-lite"), optionally
with full-Hessian GPTQ error feedback calibrated on training tokens (export.gptq); the
embedding becomes `embed_bits` integers per row; small and control tensors stay fp16. The artifact
is a torch.save of plain tensors and strings (loaded with weights_only=True, so loading never runs
pickled code), compressed with lzma, zstd or brotli.

The April records' options are off unless set (docs/config.md): act-order GPTQ and GPTQ on the
tied embedding here, the others in frontier_export.py, called only when their key is on.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import shutil
from dataclasses import dataclass, field

import torch

from build import build_model
from model import GPT
from calib_gen import generated_batches  # bundled only with export.gptq.calibration: generated
from frontier_export import LQERConfig, clip_sigma, lqer_delta, lqer_terms, pergroup_pack, pergroup_unpack, prune_ones, quantize_rows_sd, sd_scales, transpose_bytes, untranspose_bytes  # bundled only when an April export key is on
from runtime import RunLog, TokenStream, UserError, autocast_for, load_hparams, manifest_paths, now, read_manifest, run_main, settings_from, sync, torch_bytes, write_bytes_atomic, write_json_atomic

ARTIFACT_FORMAT = "pgolf-quant/1"
ARTIFACT_FORMAT_LQER = "pgolf-quant/2"  # /1 plus an "lqer" entry: low-rank terms added at dequantize
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESSORS = ("lzma", "zstd", "brotli")
PERGROUP = "pergroup"  # the April records' per-group lrzip compression (needs the artifact, not bytes)
PERGROUP_MAGIC = b"PGRP"  # then frontier_export.pack_streams' streams
SHUFFLE_MAGIC = b"BSHF"  # a shuffled payload: magic, one stride byte, then frontier_export.transpose_bytes
BROTLI_TAG = b"\xb7"  # first byte of a brotli artifact (neither xz nor zstd starts with it)


@dataclass
class GPTQConfig:
    """Full-Hessian GPTQ for the int<matrix_bits> matrices (off: per-row percentile clip only)."""

    enabled: bool = False
    block_size: int = 128  # columns quantized together before their error is pushed to the rest
    damp: float = 0.01  # added to the Hessian's diagonal, as a fraction of its mean diagonal
    calib_batches: int = 8
    calib_batch_seqs: int = 8
    calib_seq_len: int = 1024
    device: str = "auto"
    # GPTQ reads training data after training, so its time counts against the training budget
    # (checked by the record stage and logged by the record script; not part of the export id).
    train_budget_seconds: float = 600.0
    act_order: bool = False  # quantize columns in order of falling Hessian diagonal (the April records)
    embed: bool = False  # the tied embedding too, with the Hessian of the final hidden states
    calibration: str = "train"  # or "generated": sequences the model samples itself (PR #1229; calib_gen.py)
    gen_temperature: float = 0.8  # softmax temperature of those samples
    gen_seed: int = 42  # their generator's seed


@dataclass
class ExportConfig:
    matrix_bits: int = 6
    embed_bits: int = 8
    clip_percentiles: list = field(default_factory=lambda: [99.9, 99.95, 99.99, 99.999, 100.0])
    embed_clip_percentile: float = 99.99984
    passthrough_max_numel: int = 65536  # tensors this small stay fp16
    compressor: str = "lzma"
    compress_level: int = 6
    gptq: dict = field(default_factory=dict)  # GPTQConfig's fields
    # The April records' export (docs/config.md "Export"); each is off when absent.
    clip_sigmas: dict = field(default_factory=dict)  # {matrix, attn, mlp, embed}: row clip = k * row std
    lqer: dict = field(default_factory=dict)  # frontier_export.LQERConfig's fields
    byte_shuffle: int = 0  # stride of the byte transpose before compression (0: none)
    prune_to_bytes: int = 0  # zero +-1 matrix entries, cheapest first, until the artifact fits (0: off)



def quantize_rows(w: torch.Tensor, bits: int, percentiles: list[float]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric per-row quantization; each row keeps the clip percentile with the lowest MSE.

    Returns (q int8, scale fp16, chosen percentile index per row).
    """
    qmax = 2 ** (bits - 1) - 1
    w = w.float()
    best_err = torch.full((w.size(0),), float("inf"), device=w.device)
    best_q = torch.zeros_like(w, dtype=torch.int8)
    best_scale = torch.zeros(w.size(0), dtype=torch.float16, device=w.device)
    best_idx = torch.zeros(w.size(0), dtype=torch.int64, device=w.device)
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



def gptq_quantize_rows(w: torch.Tensor, hessian: torch.Tensor, bits: int, percentiles: list[float], block_size: int = 128, damp: float = 0.01, scale: torch.Tensor | None = None, act_order: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ (Frantar et al. 2022) with the row scales of quantize_rows: same (q, scale, index) output.

    Columns are quantized left to right; each column's rounding error, weighted by the inverse
    Hessian of the layer's inputs (H = X^T X), is pushed onto the columns not yet quantized, so
    correlated inputs compensate for each other. Work happens in blocks of block_size columns,
    with the upper Cholesky factor of H^-1 giving each step's update row. `scale` replaces the
    percentile scales (e.g. sd_scales); act_order quantizes the columns with the largest Hessian
    diagonal first (the result comes back in the original column order).
    """
    qmax = 2 ** (bits - 1) - 1
    if scale is None:
        _, scale, idx = quantize_rows(w, bits, percentiles)
    else:
        idx = torch.zeros(w.size(0), dtype=torch.int64, device=w.device)
    s = scale.float().clamp_min(1e-12)
    W = w.float().clone()
    H = hessian.float().clone()
    dead = torch.diagonal(H) == 0  # inputs that were always zero: their weights do not matter
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    cols = W.size(1)
    mean_diag = torch.diagonal(H).mean()
    order = None
    if act_order:
        order = torch.argsort(torch.diagonal(H) + damp * mean_diag, descending=True)
        W, H = W[:, order], H[order][:, order]
    for attempt in range(4):  # a near-singular H gets more damping
        Hd = H + (damp * 10**attempt) * mean_diag * torch.eye(cols, device=H.device)
        L, info = torch.linalg.cholesky_ex(Hd)
        if int(info) == 0:
            break
    else:
        raise UserError(f"GPTQ: the Hessian is not positive definite even with damp {damp * 1000}")
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = W1[:, i]
            q = torch.clamp(torch.round(col / s), -qmax, qmax)
            Q[:, i1 + i] = q
            err = (col - q * s) / Hinv1[i, i]
            W1[:, i:] -= err[:, None] * Hinv1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    if order is not None:
        Q = Q[:, torch.argsort(order)]
    return Q.to(torch.int8), scale, idx


def calibration_batches(manifest: dict, g: GPTQConfig) -> list[torch.Tensor]:
    """Token batches for GPTQ, read from the TRAINING shards (never validation), from their start."""
    stream = TokenStream(manifest_paths(manifest, "train"))
    n = g.calib_batch_seqs * g.calib_seq_len
    return [torch.from_numpy(stream.take(n).astype("int64")).reshape(g.calib_batch_seqs, g.calib_seq_len) for _ in range(g.calib_batches)]


def collect_hessians(model: GPT, names: list[str], batches: list[torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """H = X^T X / rows of the inputs of each named weight's linear layer, over the calibration batches."""
    modules = dict(model.named_modules())
    hessians, rows, hooks = {}, {}, []

    def hook_for(name: str):
        def hook(module, inputs, output):
            x = inputs[0].detach().float().reshape(-1, inputs[0].size(-1))
            hessians[name] = hessians.get(name, 0) + x.T @ x
            rows[name] = rows.get(name, 0) + x.size(0)

        return hook

    for name in names:
        module = modules.get(name.removesuffix(".weight"))
        if isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(hook_for(name)))
    autocast = autocast_for(device)
    try:
        with torch.no_grad(), autocast():
            for ids in batches:
                hidden = model.hidden(ids.to(device))
                if EMBED_WEIGHT in names:  # the tied head's inputs: the final hidden states
                    hook_for(EMBED_WEIGHT)(None, (hidden,), None)
    finally:
        for h in hooks:
            h.remove()
    return {name: H / rows[name] for name, H in hessians.items()}


def gptq_device(pref: str) -> torch.device:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("export.gptq.device: cuda requested but torch sees no GPU")
        return torch.device("cuda")
    return torch.device("cpu")


EMBED_WEIGHT = "tok_emb.weight"


def gptq_names(state: dict, cfg: ExportConfig) -> list[str]:
    """The tensors GPTQ quantizes: the attention/MLP matrices, and the tied embedding with gptq.embed."""
    embed = settings_from(GPTQConfig, cfg.gptq).embed
    return [n for n, t in state.items() if tensor_kind(n, t, cfg) == "matrix" or (embed and n == EMBED_WEIGHT and tensor_kind(n, t, cfg) == "embed")]


def gptq_hessians(checkpoint: dict, cfg: ExportConfig, manifest: dict, log: RunLog) -> dict[str, torch.Tensor]:
    """The Hessian of every int<matrix_bits> matrix, from forward passes of the (EMA) checkpoint."""
    g = settings_from(GPTQConfig, cfg.gptq)
    device = gptq_device(g.device)
    model = build_model(checkpoint["config"]).to(device)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    names = gptq_names(checkpoint["state_dict"], cfg)
    if g.calibration == "generated":
        vocab = checkpoint["config"]["vocab_size"]
        batches = generated_batches(model, vocab, g.calib_batches, g.calib_batch_seqs, g.calib_seq_len, g.gen_temperature, g.gen_seed, device)
        source = f"generated tokens (temperature {g.gen_temperature}, seed {g.gen_seed})"
    else:
        batches, source = calibration_batches(manifest, g), "train tokens"
    hessians = collect_hessians(model, names, batches, device)
    log(f"gptq: calibration {g.calib_batches}x{g.calib_batch_seqs}x{g.calib_seq_len} {source}, {len(hessians)} matrices, device:{device.type}")
    return hessians


def tensor_kind(name: str, t: torch.Tensor, cfg: ExportConfig) -> str:
    """matrix: attention/MLP weights (matrix_bits); embed: embeddings and other large 2-D tensors
    (embed_bits); fp16: small, non-2-D or non-float tensors."""
    if not t.is_floating_point() or t.ndim != 2 or t.numel() <= cfg.passthrough_max_numel:
        return "fp16"
    return "matrix" if ".attn." in name or ".mlp." in name else "embed"


def quantize_tensor(name: str, t: torch.Tensor, kind: str, cfg: ExportConfig, g: GPTQConfig, hessians: dict | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(q, scale, bits) of one matrix or embedding: GPTQ where it has a Hessian (the embedding only
    with export.gptq.embed), rounding otherwise; scales from clip_sigmas when its group has one."""
    bits = cfg.embed_bits if kind == "embed" else cfg.matrix_bits
    percentiles = [cfg.embed_clip_percentile] if kind == "embed" else cfg.clip_percentiles
    sigmas = clip_sigma(name, cfg.clip_sigmas) if cfg.clip_sigmas else None
    H = hessians.get(name) if hessians and (kind == "matrix" or g.embed) else None
    if H is not None:
        w = t.to(H.device)
        sd = sd_scales(w, bits, sigmas) if sigmas is not None else None
        qn, sc, _ = gptq_quantize_rows(w, H, bits, percentiles, g.block_size, g.damp, scale=sd, act_order=g.act_order)
        return qn.cpu(), sc.cpu(), bits
    if sigmas is not None:
        qn, sc = quantize_rows_sd(t, bits, sigmas)
        return qn, sc, bits
    qn, sc, _ = quantize_rows(t, bits, percentiles)
    return qn, sc, bits


def quantize_state(state: dict, model_config: dict, cfg: ExportConfig, hessians: dict | None = None) -> tuple[dict, dict]:
    """Builds the artifact object and a summary of what happened to each tensor kind.

    With hessians (GPTQ), the matrices that have one are quantized with error feedback.
    """
    g = settings_from(GPTQConfig, cfg.gptq)
    q, scale, bits, fp = {}, {}, {}, {}
    stats = {"matrix": 0, "embed": 0, "fp16": 0, "rmse": {}}
    for name, t in state.items():
        kind = tensor_kind(name, t, cfg)
        stats[kind] += t.numel()
        if kind == "fp16":
            fp[name] = t.to(torch.float16) if t.is_floating_point() else t
            continue
        qn, sc, bits[name] = quantize_tensor(name, t, kind, cfg, g, hessians)
        q[name], scale[name] = qn, sc
        recon = qn.float() * sc.float()[:, None]
        stats["rmse"][name] = float(((recon - t.float()) ** 2).mean().sqrt())
    artifact = {"format": ARTIFACT_FORMAT, "config": model_config, "q": q, "scale": scale, "bits": bits, "fp": fp}
    if cfg.lqer.get("enabled"):
        artifact["format"] = ARTIFACT_FORMAT_LQER
        artifact["lqer"] = lqer_terms(state, q, scale, settings_from(LQERConfig, cfg.lqer))
    return artifact, stats



def dequantize_state(artifact: dict) -> dict:
    state = {name: t.float() if t.is_floating_point() else t for name, t in artifact["fp"].items()}
    for name, qn in artifact["q"].items():
        state[name] = qn.float() * artifact["scale"][name].float()[:, None]
    for name, f in artifact.get("lqer", {}).items():
        state[name] = state[name] + lqer_delta(f)
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
    if blob.startswith(PERGROUP_MAGIC):
        return torch_bytes(pergroup_unpack(blob[len(PERGROUP_MAGIC):]))
    if blob.startswith(XZ_MAGIC):
        return lzma.decompress(blob)
    if blob.startswith(ZSTD_MAGIC):
        import zstandard

        return zstandard.ZstdDecompressor().decompress(blob)
    if blob.startswith(BROTLI_TAG):
        import brotli

        return brotli.decompress(blob[1:])
    raise UserError("not an xz, zstd or brotli stream")



def byte_shuffle(data: bytes, stride: int) -> bytes:
    """SHUFFLE_MAGIC, the stride, then the bytes transposed in `stride`-byte words; data as it is
    for a stride below 2 (export.byte_shuffle off)."""
    if stride < 2 or len(data) < stride:
        return data
    return SHUFFLE_MAGIC + bytes([stride]) + transpose_bytes(data, stride)


def byte_unshuffle(data: bytes) -> bytes:
    """The inverse of byte_shuffle; data without its magic is returned as it is."""
    if len(data) < 5 or not data.startswith(SHUFFLE_MAGIC):
        return data
    return untranspose_bytes(data[5:], data[4])


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
    if blob.startswith(PERGROUP_MAGIC) and shutil.which("lrzip") is None:
        raise UserError(f"{path}: a pergroup artifact: loading it needs the lrzip program on PATH (apt-get install lrzip)")
    try:
        payload = decompress(blob)
    except UserError as e:
        raise UserError(f"{path}: corrupt artifact ({e})") from None
    except Exception as e:  # lzma.LZMAError, zstd.ZstdError, brotli.error, EOFError: truncated or garbled
        raise UserError(f"{path}: corrupt artifact, cannot decompress ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'truncated'})") from None
    try:
        artifact = torch.load(io.BytesIO(byte_unshuffle(payload)), weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path}: refused or unreadable artifact payload (weights-only load: {first})") from None
    if not isinstance(artifact, dict) or artifact.get("format") not in (ARTIFACT_FORMAT, ARTIFACT_FORMAT_LQER):
        found = artifact.get("format") if isinstance(artifact, dict) else type(artifact).__name__
        raise UserError(f"{path}: unknown artifact format {found!r} (expected {ARTIFACT_FORMAT} or {ARTIFACT_FORMAT_LQER})")
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


def pack_artifact(artifact: dict, cfg: ExportConfig) -> bytes:
    """The artifact's bytes: serialized, byte-shuffled when asked, then compressed; or per group."""
    if cfg.compressor == PERGROUP:
        return PERGROUP_MAGIC + pergroup_pack(artifact, cfg.compress_level)
    return compress(byte_shuffle(torch_bytes(artifact), cfg.byte_shuffle), cfg.compressor, cfg.compress_level)




def prune_ones_to_fit(artifact: dict, cfg: ExportConfig) -> tuple[dict, dict]:
    """frontier_export.prune_ones down to cfg.prune_to_bytes, the artifact packed as export packs it."""
    return prune_ones(artifact, cfg.prune_to_bytes, lambda a: pack_artifact(a, cfg))


def export(checkpoint: dict, cfg: ExportConfig, log: RunLog, manifest: dict | None = None) -> tuple[bytes, dict]:
    """Quantize + compress. With export.gptq.enabled, `manifest` gives the train shards to calibrate on."""
    state = checkpoint["state_dict"]
    raw = torch_bytes(state)
    log(f"Serialized model: {len(raw)} bytes")
    g = settings_from(GPTQConfig, cfg.gptq)
    for key, on in (("embed", g.embed), ("act_order", g.act_order)):
        if on and not g.enabled:
            raise UserError(f"export.gptq.{key}: true needs export.gptq.enabled: true (it changes GPTQ only)")
    hessians, gptq_ms = None, 0.0
    t0 = now()
    if g.enabled:
        if manifest is None and g.calibration == "train":
            raise UserError("export.gptq.enabled: GPTQ calibrated on training tokens needs the training data (pass --data manifest.json)")
        hessians = gptq_hessians(checkpoint, cfg, manifest, log)
    artifact, stats = quantize_state(state, checkpoint["config"], cfg, hessians)
    if g.enabled:
        sync(next(iter(hessians.values())).device if hessians else torch.device("cpu"))
        gptq_ms = round(1000.0 * (now() - t0), 1)  # export.json's value, so the log line agrees with it
        log(f"gptq_time_ms:{gptq_ms:.0f} (calibration + quantization; counts against the training budget)")
    pruned = None
    if cfg.prune_to_bytes:
        artifact, pruned = prune_ones_to_fit(artifact, cfg)
        log(f"selective_prune: {pruned['pruned']}/{pruned['candidates']} +-1 values zeroed, {pruned['bytes_before']} -> {pruned['bytes_after']} bytes (target {cfg.prune_to_bytes})")
    payload = torch_bytes(artifact)
    blob = pack_artifact(artifact, cfg)
    label = f"int{cfg.matrix_bits}+{cfg.compressor}"  # GPTQ changes the values, not the format
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
        "gptq": g.enabled,
        "gptq_time_ms": gptq_ms,
        "params_by_kind": {k: stats[k] for k in ("matrix", "embed", "fp16")},
        "rmse": stats["rmse"],
    }
    if pruned is not None:
        metrics["selective_prune"] = pruned
    return blob, metrics


def export_main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Quantize and compress a trained checkpoint.")
    ap.add_argument("--hparams", required=True, help="JSON file: the config's export block")
    ap.add_argument("--model", required=True, help="model.pt written by the train stage")
    ap.add_argument("--out", required=True, help="compressed artifact to write")
    ap.add_argument("--metrics", required=True, help="export.json to write")
    ap.add_argument("--data", help="data manifest.json: GPTQ calibrates on its train shards")
    args = ap.parse_args(argv)
    cfg = settings_from(ExportConfig, load_hparams(args.hparams))
    checkpoint = torch.load(args.model, map_location="cpu", weights_only=True)
    blob, metrics = export(checkpoint, cfg, RunLog(), read_manifest(args.data) if args.data else None)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_bytes_atomic(args.out, blob)
    write_json_atomic(args.metrics, metrics)


if __name__ == "__main__":
    run_main(export_main)
