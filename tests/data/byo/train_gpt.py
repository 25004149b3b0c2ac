"""A tiny upstream-style record script for testing pgolf's bring-your-own-script mode.

Like the upstream train_gpt.py files it reads its settings from environment variables, trains on
the challenge's shards (DATA_PATH, TOKENIZER_PATH), writes a compressed int6 artifact into the
current directory and prints the legacy log lines (step lines, sizes, final_*_exact). The model is
a low-rank bigram model (logits = E[x] @ U + b) trained with Adam in numpy: seconds on a CPU.

Test knobs: SKIP_FINAL_METRIC=1 leaves out the final score lines; ARTIFACT_PAD_BYTES=N appends N
random bytes after the compressed stream (an over-size artifact that still loads).
"""

import glob
import io
import lzma
import math
import os
import time
from pathlib import Path

import numpy as np
import sentencepiece as spm

DATA_PATH = os.environ.get("DATA_PATH", "./data/datasets/fineweb10B_sp1024")
TOKENIZER_PATH = os.environ.get("TOKENIZER_PATH", "./data/tokenizers/fineweb_1024_bpe.model")
SEED = int(os.environ.get("SEED", 1337))
VOCAB_SIZE = int(os.environ.get("VOCAB_SIZE", 1024))
MODEL_DIM = int(os.environ.get("MODEL_DIM", 16))
ITERATIONS = int(os.environ.get("ITERATIONS", 20))
TRAIN_BATCH_TOKENS = int(os.environ.get("TRAIN_BATCH_TOKENS", 2048))
LR = float(os.environ.get("LR", 0.05))
TRAIN_LOG_EVERY = int(os.environ.get("TRAIN_LOG_EVERY", 5))
VAL_MAX_TOKENS = int(os.environ.get("VAL_MAX_TOKENS", 8192))
SKIP_FINAL_METRIC = os.environ.get("SKIP_FINAL_METRIC", "0") == "1"
ARTIFACT_PAD_BYTES = int(os.environ.get("ARTIFACT_PAD_BYTES", 0))
ARTIFACT = "final_model.int6.ptz"


def log0(msg):
    print(msg, flush=True)


def load_shard(path):
    header = np.fromfile(path, dtype="<i4", count=256)
    assert header[0] == 20240520 and header[1] == 1, f"{path}: bad shard header"
    return np.fromfile(path, dtype="<u2", count=int(header[2]), offset=1024).astype(np.int64)


def byte_luts(sp):
    base = np.zeros(VOCAB_SIZE, dtype=np.int64)
    space = np.zeros(VOCAB_SIZE, dtype=bool)
    boundary = np.ones(VOCAB_SIZE, dtype=bool)
    for i in range(sp.get_piece_size()):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        space[i] = piece.startswith("\u2581")
        base[i] = len(piece.removeprefix("\u2581").encode("utf-8"))
    return base, space, boundary


def forward(params, x):
    return params["E"][x] @ params["U"] + params["b"]


def nll(params, x, y):
    logits = forward(params, x)
    logits -= logits.max(axis=1, keepdims=True)
    logz = np.log(np.exp(logits).sum(axis=1))
    return logz - logits[np.arange(len(y)), y]


def evaluate(params, val, luts):
    started = time.perf_counter()
    x, y = val[:-1], val[1:]
    loss = sum(float(nll(params, x[i : i + 4096], y[i : i + 4096]).sum()) for i in range(0, len(y), 4096))
    base, space, boundary = luts
    nbytes = int((base[y] + (space[y] & ~boundary[x])).sum())
    val_loss = loss / len(y)
    return val_loss, val_loss / math.log(2) * len(y) / nbytes, int((time.perf_counter() - started) * 1000)


def train_step(params, state, x, y, step):
    logits = forward(params, x)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())
    probs[np.arange(len(y)), y] -= 1.0
    dlogits = probs / len(y)
    grads = {"U": params["E"][x].T @ dlogits, "b": dlogits.sum(axis=0), "E": np.zeros_like(params["E"])}
    np.add.at(grads["E"], x, dlogits @ params["U"].T)
    for k, g in grads.items():  # Adam
        m, v = state[k]
        m[:] = 0.9 * m + 0.1 * g
        v[:] = 0.999 * v + 0.001 * g * g
        params[k] -= LR * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return loss


def quantize(params):
    out = {"b": params["b"].astype(np.float16)}
    for k in ("E", "U"):
        w = params[k]
        scale = np.maximum(np.abs(w).max(axis=1, keepdims=True) / 31.0, 1e-8)
        out[f"{k}.q"] = np.clip(np.round(w / scale), -31, 31).astype(np.int8)
        out[f"{k}.scale"] = scale.astype(np.float16)
    return out


def dequantize(blob):
    params = {"b": blob["b"].astype(np.float64)}
    for k in ("E", "U"):
        params[k] = blob[f"{k}.q"].astype(np.float64) * blob[f"{k}.scale"].astype(np.float64)
    return params


def main():
    code = Path(__file__).read_bytes()
    rng = np.random.default_rng(SEED)
    sp = spm.SentencePieceProcessor(model_file=TOKENIZER_PATH)
    train_files = sorted(glob.glob(os.path.join(DATA_PATH, "fineweb_train_*.bin")))
    val_files = sorted(glob.glob(os.path.join(DATA_PATH, "fineweb_val_*.bin")))
    log0(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={TOKENIZER_PATH}")
    log0(f"train_loader:dataset:{Path(DATA_PATH).name} train_shards:{len(train_files)}")
    train = np.concatenate([load_shard(p) for p in train_files])
    val = np.concatenate([load_shard(p) for p in val_files])[: VAL_MAX_TOKENS + 1]
    log0(f"val_loader:shards pattern={DATA_PATH}/fineweb_val_*.bin tokens:{len(val) - 1}")
    params = {
        "E": rng.normal(0, 0.02, (VOCAB_SIZE, MODEL_DIM)),
        "U": rng.normal(0, 0.02, (MODEL_DIM, VOCAB_SIZE)),
        "b": np.zeros(VOCAB_SIZE),
    }
    state = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    log0(f"model_params:{sum(v.size for v in params.values())}")
    log0(f"seed:{SEED}")
    luts = byte_luts(sp)
    train_ms, pos = 0.0, 0
    for step in range(1, ITERATIONS + 1):
        started = time.perf_counter()
        if pos + TRAIN_BATCH_TOKENS + 1 > len(train):
            pos = 0
        chunk = train[pos : pos + TRAIN_BATCH_TOKENS + 1]
        pos += TRAIN_BATCH_TOKENS
        loss = train_step(params, state, chunk[:-1], chunk[1:], step)
        train_ms += (time.perf_counter() - started) * 1000
        if step <= 2 or step % TRAIN_LOG_EVERY == 0 or step == ITERATIONS:
            log0(f"step:{step}/{ITERATIONS} train_loss:{loss:.4f} train_time:{train_ms:.0f}ms step_avg:{train_ms / step:.2f}ms")
    val_loss, val_bpb, eval_ms = evaluate(params, val, luts)
    log0(f"step:{ITERATIONS}/{ITERATIONS} val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} train_time:{train_ms:.0f}ms step_avg:{train_ms / ITERATIONS:.2f}ms")
    log0(f"DIAGNOSTIC post_ema val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{eval_ms}ms")
    raw = io.BytesIO()
    np.savez(raw, **{k: v.astype(np.float32) for k, v in params.items()})
    log0(f"Serialized model: {len(raw.getvalue())} bytes")
    log0(f"Code size: {len(code)} bytes")
    packed = io.BytesIO()
    np.savez(packed, **quantize(params))
    blob = lzma.compress(packed.getvalue(), preset=6) + rng.bytes(ARTIFACT_PAD_BYTES)
    with open(ARTIFACT, "wb") as f:
        f.write(blob)
    size = os.path.getsize(ARTIFACT)
    log0(f"Serialized model int6+lzma: {size} bytes")
    log0(f"Total submission size int6+lzma: {size + len(code)} bytes")
    with open(ARTIFACT, "rb") as f:
        restored = dequantize(np.load(io.BytesIO(lzma.LZMADecompressor().decompress(f.read()))))
    q_loss, q_bpb, q_ms = evaluate(restored, val, luts)
    if SKIP_FINAL_METRIC:
        log0("final eval skipped")
        return
    log0(f"final_int6_roundtrip val_loss:{q_loss:.4f} val_bpb:{q_bpb:.4f} eval_time:{q_ms}ms")
    log0(f"final_int6_roundtrip_exact val_loss:{q_loss:.8f} val_bpb:{q_bpb:.8f}")


if __name__ == "__main__":
    main()
