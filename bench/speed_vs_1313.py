"""Speed of our record code against PR #1313's own script, side by side on one GPU, in one call.

    python bench/speed_vs_1313.py --data DATA_DIR --ref pr1313_train_gpt.py --out OUT
    python bench/speed_vs_1313.py --tiny --device cpu --data DATA_DIR   # our side only, a CPU smoke run

Parts (each one's failure is reported and the rest still run; results go to OUT/results.json):
  attention  attention kernels at the training shape, forward+backward, against fp64 math: SDPA's
             cuDNN and flash, and flash-attn-4's CuTe kernels where that package is importable
  profile    our train step in one process on random tokens (--profile-variants): GPU time by
             kernel kind (attention, GEMM, Triton-fused, ...) for forward+backward and for the
             optimizers+EMA, against wall time, and the compile warm-up
  train      our workflow/record/train.py (--train-variants: attention backend / compile_scope;
             a variant listed twice runs again on the compile cache its first run filled) and
             #1313's script, each in its own process, record shape: 786,432 tokens a step as 8
             micro-batches of 48 x 2048; ms/step over the steps after the 10th, tokens/s, peak
             memory, MFU, loss agreement, and the time the job spent outside its timed window
  eval       our eval stage code in fresh processes (random weights, seed 0): cold compile cache,
             warm cache (when each start-up phase ended and the first scored batch; sliding and
             published-SLOT ms/window, torch.profiler's top kernels), warm with the last layer
             on every position (PGOLF_EVAL_TAIL=0), and each other backend of --backends
  ref_slot   #1313's own eval_val_slot on the same windows, cold (its compile) and warm
  fusions    liger-kernel's fused head+cross-entropy, RMSNorm and partial RoPE against our compiled
             code for the same function, each alone at the training micro-batch (liger carried)
  bandwidth  inductor's own bandwidth profile (TORCHINDUCTOR_PROFILE=1) of one forward+backward
             micro-step: each generated Triton kernel's TB/s, against a plain copy's
  startup    the eval forward in fresh processes (--startup-modes): torch.compile of the whole
             forward, model.compile_regions, or AOTInductor (export + package, then load), cold
             and warm: time to first output, ms/window, error against eager
A table is printed last. MFU counts 6 x params FLOPs per token plus causal attention
(6 x 2 x layers x seq_len x model_dim per token, half of the full square), against 989 TFLOP/s
dense bf16 (the H100/H200 datasheet; ~800 is what a large bf16 matmul reaches on the lent H200).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "workflow" / "record"
sys.path.insert(0, str(RECORD))

TOKENS_PER_STEP = 786432
PEAK_TFLOPS = 989.0


def flops_per_token(params: int, layers: int = 11, seq_len: int = 2048, dim: int = 512) -> float:
    """Training FLOPs per token: 6N for the matmuls, plus causal attention's QK^T and PV
    (2 matmuls x 2 FLOP x seq_len/2 keys x dim, times 3 for forward and backward) per layer."""
    return 6 * params + 6 * layers * seq_len * dim


# ----------------------------------------------------------------------------- attention kernels


def part_attention(device) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from triton.testing import do_bench

    out = {}
    B, H, Hkv, T, D = 48, 8, 4, 2048, 64
    g = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(B, H, T, D, device=device, dtype=torch.bfloat16, generator=g, requires_grad=True)
    k = torch.randn(B, Hkv, T, D, device=device, dtype=torch.bfloat16, generator=g, requires_grad=True)
    v = torch.randn(B, Hkv, T, D, device=device, dtype=torch.bfloat16, generator=g, requires_grad=True)
    dy = torch.randn(B, H, T, D, device=device, dtype=torch.bfloat16, generator=g)
    sub = slice(0, 2)
    ref = F.scaled_dot_product_attention(
        q[sub].double(), k[sub].double().repeat_interleave(2, 1), v[sub].double().repeat_interleave(2, 1), is_causal=True
    )

    def sdpa(name):
        backend = SDPBackend.CUDNN_ATTENTION if name == "cudnn" else SDPBackend.FLASH_ATTENTION
        kk, vv = (k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)) if name == "cudnn" else (k, v)
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=kk.size(1) != H)

    kernels = {"flash": lambda: sdpa("flash"), "cudnn": lambda: sdpa("cudnn")}
    try:  # flash-attn-4's CuTe kernels (it has SM90 forward and backward), where carried
        from flash_attn.cute.interface import flash_attn_func as fa4

        def run_fa4():
            y = fa4(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), causal=True)
            return (y[0] if isinstance(y, tuple) else y).transpose(1, 2)

        kernels["fa4"] = run_fa4
    except Exception as e:  # noqa: BLE001 - not installed is a result
        out["fa4"] = dict(error=f"not importable: {type(e).__name__}: {e}"[:300])
    for name, fn in kernels.items():
        try:
            t0 = time.time()
            y = fn()
            torch.cuda.synchronize()
            first_call_s = time.time() - t0  # FA4 compiles its kernels on first use
            err = ((y[sub].double() - ref).norm() / ref.norm()).item()
            fwd = do_bench(fn, return_mode="median")
            fb = do_bench(lambda: torch.autograd.grad(fn(), (q, k, v), dy), return_mode="median")
            attn_flop = 4 * B * H * T * T * D / 2  # causal: half the square, QK^T and PV
            out[name] = dict(fwd_ms=fwd, fwd_bwd_ms=fb, rel_err_vs_fp64=err, fwd_tflops=attn_flop / fwd / 1e9, fwd_bwd_tflops=3.5 * attn_flop / fb / 1e9,
                             first_call_s=first_call_s)
        except Exception as e:  # noqa: BLE001 - a backend the machine lacks is a result, not a crash
            out[name] = dict(error=f"{type(e).__name__}: {e}"[:300])
    return out


# ----------------------------------------------------------------------------- library kernels against ours


def part_fusions(device) -> dict:
    """liger-kernel's fused kernels against the compiled code they would replace, at the training
    micro-batch (48 x 2048 tokens), forward+backward, each alone: the head (tied linear, softcap 30,
    mean cross-entropy) as FusedLinearCrossEntropy against our compiled GPT.nll_from_hidden path;
    RMSNorm; partial rotary (16 of 64 dims) on q and k. liger-kernel must be importable (carried:
    it is pure Python on Triton). Its RoPE rotates the other way round, so it gets -sin."""
    import torch
    import torch.nn.functional as F
    from triton.testing import do_bench

    from model import Rotary, rms_norm

    out = {"bandwidth": copy_bandwidth(device)}
    try:
        from liger_kernel.ops import LigerFusedLinearCrossEntropyFunction as FLCE
        from liger_kernel.ops import LigerRMSNormFunction, LigerRopeFunction
    except Exception as e:  # noqa: BLE001 - not carried is a result
        out["error"] = f"liger-kernel not importable: {type(e).__name__}: {e}"[:300]
        return out
    g = torch.Generator(device=device).manual_seed(0)
    N, D, V, cap = 48 * 2048, 512, 1024, 30.0
    bf = torch.bfloat16
    h = torch.randn(N, D, device=device, dtype=bf, generator=g).requires_grad_()
    w = (0.05 * torch.randn(V, D, device=device, generator=g)).requires_grad_()  # fp32, as tok_emb
    y = torch.randint(0, V, (N,), device=device, generator=g)

    def ours_head(h, w, y):
        z = F.linear(h, w.to(h.dtype)).float()
        return F.cross_entropy(cap * torch.tanh(z / cap), y)

    ours_head_c = torch.compile(ours_head, dynamic=False)

    def liger_head(h, w, y):
        return FLCE.apply(h, w.to(h.dtype), y, None, None, -100, 0.0, 0.0, "mean", cap)[0]  # (loss, z_loss, ...)

    x = torch.randn(48, 2048, D, device=device, dtype=bf, generator=g).requires_grad_()
    ones = torch.ones(D, device=device, dtype=bf)
    eps = torch.finfo(bf).eps  # F.rms_norm's default for bf16 inputs, as model.rms_norm uses
    ours_norm = torch.compile(lambda x: rms_norm(x), dynamic=False)

    def liger_norm(x):
        return LigerRMSNormFunction.apply(x, ones, eps, 0.0, "llama", False)

    rot = Rotary(16, 10000.0, 1024)
    q = torch.randn(48, 2048, 8, 64, device=device, dtype=bf, generator=g).requires_grad_()
    k = torch.randn(48, 2048, 4, 64, device=device, dtype=bf, generator=g).requires_grad_()
    ours_rope = torch.compile(lambda q, k: (rot(q), rot(k)), dynamic=False)
    T, d = 2048, 16
    base = 10000.0 * (T / 1024) ** (d / (d - 2))
    inv = 1.0 / (base ** (torch.arange(0, d, 2, device=device, dtype=torch.float32) / d))
    f = torch.outer(torch.arange(T, device=device, dtype=torch.float32), inv)
    cos, sin = torch.cat((f, f), -1).cos()[None].to(bf), torch.cat((f, f), -1).sin()[None].to(bf)

    def liger_rope(q, k):  # [B, H, T, D] views of [B, T, H, D] storage, rotated in place: clones first
        qq, kk = LigerRopeFunction.apply(q.clone().transpose(1, 2), k.clone().transpose(1, 2), cos, -sin, None, 1, d)
        return qq.transpose(1, 2), kk.transpose(1, 2)

    def ours_rope_cl(q, k):  # the same clones, so both sides pay them
        return ours_rope(q.clone(), k.clone())

    cases = {
        "head_ce": (ours_head_c, liger_head, (h, w, y)),
        "rms_norm": (ours_norm, liger_norm, (x,)),
        "rope_q_k": (ours_rope_cl, liger_rope, (q, k)),
    }
    for name, (ours, theirs, args) in cases.items():
        r = {}
        try:
            leaves = [a for a in args if a.requires_grad]
            outs, cot = {}, None
            for side, fn in (("ours", ours), ("liger", theirs)):
                res = fn(*args)
                res = res if isinstance(res, tuple) else (res,)
                if cot is None:  # one set of output gradients for both sides, so their gradients compare
                    cot = [torch.ones_like(t) if t.dim() == 0 else torch.randn_like(t) for t in res]
                # Cloned: liger's RoPE backward rotates the incoming gradient in place, and returns it.
                outs[side] = ([t.detach().clone() for t in res], [t.clone() for t in torch.autograd.grad(res, leaves, [c.clone() for c in cot])])
                r[f"{side}_fwd_ms"] = do_bench(lambda: fn(*args), return_mode="median")
                r[f"{side}_fwd_bwd_ms"] = do_bench(lambda: torch.autograd.grad(fn(*args), leaves, cot), return_mode="median")
            rel = lambda a, b: ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30)).item()  # noqa: E731
            (ro, go), (rl, gl) = outs["ours"], outs["liger"]
            r["out_rel_err"] = max(rel(a, b) for a, b in zip(ro, rl))
            r["grad_rel_err"] = max(rel(a, b) for a, b in zip(go, gl))
            r["speedup_fwd_bwd"] = r["ours_fwd_bwd_ms"] / r["liger_fwd_bwd_ms"]
        except Exception as e:  # noqa: BLE001 - a kernel that fails on this shape is a result
            r["error"] = f"{type(e).__name__}: {e}"[:300]
        out[name] = r
    return out


def copy_bandwidth(device) -> dict:
    """What a plain device-to-device copy of 1 GiB reaches: the practical ceiling for kernels that
    only move memory (the H200's datasheet says 4.8 TB/s)."""
    import torch
    from triton.testing import do_bench

    a = torch.empty(2**29, device=device, dtype=torch.bfloat16)
    b = torch.empty_like(a)
    ms = do_bench(lambda: b.copy_(a), return_mode="median")
    return {"copy_1gib_ms": ms, "copy_tb_per_s": 2 * a.numel() * 2 / (ms / 1e3) / 1e12}


# ----------------------------------------------------------------------------- training


STEP_RE = re.compile(r"^step:(\d+)/\d+ train_loss:(\S+) train_time:(\d+)ms", re.M)
PEAK_RE = re.compile(r"^peak memory allocated: (\d+) MiB", re.M)


def run_logged(cmd, env, log_path: Path, stop_pattern: str | None = None, timeout: float = 400) -> str:
    """Runs cmd, copies its output to log_path; with stop_pattern, ends it once a line matches."""
    lines = []
    with open(log_path, "w", buffering=1) as log:  # line-buffered: a killed bench keeps its log
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        t0 = time.time()
        for line in proc.stdout:
            log.write(line)
            lines.append(line)
            if stop_pattern and re.search(stop_pattern, line):
                proc.terminate()
                break
            if time.time() - t0 > timeout:
                proc.terminate()
                lines.append("bench: timed out\n")
                break
        proc.wait()
    return "".join(lines)


def child_result(cmd, env, log_path: Path, what: str) -> dict:
    """Runs one of this script's --child-* modes and returns the JSON of its BENCH_RESULT line."""
    log = run_logged(cmd, env, log_path)
    m = re.search(r"^BENCH_RESULT (.*)$", log, re.M)
    if not m:
        raise RuntimeError(f"{what} child wrote no result:\n" + log[-2000:])
    return json.loads(m.group(1))


def step_stats(log: str, first: int = 10, tokens_per_step: int = TOKENS_PER_STEP) -> dict:
    steps = [(int(a), float(b), int(c)) for a, b, c in STEP_RE.findall(log)]
    if len(steps) < 2:
        raise RuntimeError("fewer than two train_loss lines in the log:\n" + log[-1500:])
    start = next((s for s in steps if s[0] >= first), steps[0])
    end = steps[-1]
    ms = (end[2] - start[2]) / (end[0] - start[0])
    peak = PEAK_RE.search(log)
    return dict(
        ms_per_step=ms,
        tokens_per_s=tokens_per_step / (ms / 1000),
        steps_timed=f"{start[0]}-{end[0]}",
        losses={s[0]: s[1] for s in steps if s[0] % 10 == 0},
        peak_alloc_mib=int(peak.group(1)) if peak else None,
    )


def our_train_hparams(args, tiny: bool) -> dict:
    from model import GPTConfig
    from train import TrainConfig

    model = GPTConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, ve_layers=[1], bigram_dim=32, ve_dim=32).to_dict() if tiny else GPTConfig().to_dict()
    model.pop("vocab_size")
    train = TrainConfig().__dict__.copy()
    train.update(iterations=args.steps, max_wallclock_seconds=0, warmdown_iters=0, warmup_steps=args.warmup,
                 train_log_every=10, val_every=0, val_max_tokens=65536, compile="auto")
    if tiny:
        train.update(seq_len=128, batch_tokens=128 * 4 * 2, grad_accum_steps=2, val_max_tokens=4096, val_batch_seqs=4)
    else:
        train.update(grad_accum_steps=8)
    return {**train, "model": model, "device": args.device}


def attention_env(backend: str) -> dict:
    """Environment that makes model.py use `backend`: fa4 (flash-attn-4, where importable) or an
    SDPA kernel (auto, cudnn, flash) with flash-attn-4 switched off."""
    if backend == "fa4":
        return {"PGOLF_FA4": "1", "PGOLF_SDPA_BACKEND": "auto"}
    return {"PGOLF_FA4": "0", "PGOLF_SDPA_BACKEND": backend}


def compile_cache_root(args, out: Path) -> Path:
    return Path(args.compile_cache) if args.compile_cache else out / "compile_cache"


def part_train_ours(args, backend: str, out: Path, tiny: bool, scope: str = "model", label: str = "") -> dict:
    hp = out / f"train_hp_{backend}_{scope}.json"
    hparams = our_train_hparams(args, tiny)
    hparams["compile_scope"] = scope
    hp.write_text(json.dumps(hparams))
    # One compile cache for the bench (as the pipeline shares one among its stages and seeds): a
    # variant listed twice runs the second time on the cache the first one filled.
    env = {**os.environ, **attention_env(backend), "PYTHONUNBUFFERED": "1", "PGOLF_COMPILE_CACHE": str(compile_cache_root(args, out))}
    t0 = time.time()
    log = run_logged([sys.executable, "workflow/record/train.py", "--hparams", str(hp), "--data", str(Path(args.data) / "manifest.json"),
                      "--seed", "1337", "--out-dir", str(out / f"train_{backend}")], env, out / f"train_{label or f'ours_{backend}_{scope}'}.log")
    r = step_stats(log, first=2 if tiny else 10, tokens_per_step=hparams["batch_tokens"])
    r["wall_s"] = time.time() - t0
    m = re.search(r"^outside_timed_window (.*)$", log, re.M)
    r["outside_timed_window"] = m.group(1) if m else None
    p = re.search(r"^model_params:(\d+)", log, re.M)
    r["params"] = int(p.group(1))
    a = re.search(r"^attention:(\S+)", log, re.M)
    r["attention"] = a.group(1) if a else None
    (out / f"train_{backend}" / "model.pt").unlink(missing_ok=True)
    return r


def part_train_ref(args, out: Path) -> dict:
    data = Path(args.data)
    manifest = json.loads((data / "manifest.json").read_text())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DATA_PATH": str(data), "TOKENIZER_PATH": str(data / manifest["tokenizer"]["model"]),
           "ITERATIONS": str(args.steps + 1), "WARMDOWN_ITERS": "0", "WARMUP_STEPS": str(args.warmup), "MAX_WALLCLOCK_SECONDS": "0",
           "TRAIN_LOG_EVERY": "10", "VAL_LOSS_EVERY": "0", "SEED": "1337", "RUN_ID": "bench"}
    t0 = time.time()
    # Ended after its step `steps` line: what follows (a full-val eval, export, three evals) is not timed here.
    log = run_logged([sys.executable, str(Path(args.ref).resolve())], env, out / "train_ref.log", stop_pattern=rf"^step:{args.steps}/")
    r = step_stats(log)
    r["wall_s"] = time.time() - t0
    return r


# ----------------------------------------------------------------------------- where a train step's GPU time goes


KERNEL_KINDS = (  # first match wins; names as the profiler reports CUDA kernels
    ("attention", re.compile(r"fmha|flash|sdpa|attn|cudnn", re.I)),
    ("gemm", re.compile(r"gemm|nvjet|xmma|cutlass|cublas|wgmma|splitk", re.I)),
    ("triton (fused)", re.compile(r"^triton_")),
    ("copy/fill", re.compile(r"memcpy|memset|copy|fill|cat", re.I)),
    ("foreach/optim", re.compile(r"multi_tensor|foreach|adam", re.I)),
)


def kernel_kind(name: str) -> str:
    return next((kind for kind, pat in KERNEL_KINDS if pat.search(name)), "other")


def train_model(scope: str, device):
    """The preset's GPT on `device` and what a train step calls: the model compiled whole
    (scope model) or the model itself with its blocks compiled one by one (scope blocks)."""
    import torch

    from model import GPT, GPTConfig, compile_regions

    base = GPT(GPTConfig()).to(device)
    if scope == "blocks":
        compile_regions(base)
        return base, base
    return base, torch.compile(base, dynamic=False)


def profile_child(args) -> None:
    """Our train step at the record shape on random tokens, profiled: GPU time by kernel kind, for
    the 8 forward+backward micro-steps and for the optimizer+EMA part, against the step's wall time."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from model import attention_backend
    from runtime import autocast_for
    from train import EMA, TrainConfig, build_optimizers

    device = torch.device("cuda")
    torch.set_float32_matmul_precision("high")
    torch.manual_seed(0)
    cfg = TrainConfig(grad_accum_steps=8)
    base, model = train_model(args.scope, device)
    optimizers, _ = build_optimizers(base, cfg)
    ema = EMA(base, cfg.ema_decay)
    autocast = autocast_for(device)
    micro, accum = 48, 8
    g = torch.Generator(device=device).manual_seed(1)
    batches = [torch.randint(0, 1024, (micro, 2049), device=device, generator=g) for _ in range(accum)]

    def fwd_bwd():
        for b in batches:
            with autocast():
                loss = model(b[:, :-1], b[:, 1:]) / accum
            loss.backward()

    def update():
        torch.nn.utils.clip_grad_norm_(base.parameters(), cfg.grad_clip_norm)
        for opt in optimizers:
            opt.step()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        ema.update()

    t0 = time.time()
    for _ in range(3):  # compile and warm up
        fwd_bwd()
        update()
    torch.cuda.synchronize()
    res = {"scope": args.scope, "attention": attention_backend(device), "warmup_s": time.time() - t0}
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for part, fn in (("fwd_bwd", fwd_bwd), ("update", update), ("step", lambda: (fwd_bwd(), update()))):
        start.record()
        for _ in range(5):
            fn()
        end.record()
        torch.cuda.synchronize()
        res[f"{part}_ms"] = start.elapsed_time(end) / 5
    for part, fn in (("fwd_bwd", fwd_bwd), ("update", update)):
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            fn()
            torch.cuda.synchronize()
        kinds: dict[str, float] = {}
        top: dict[str, list] = {}  # kernel name -> [ms, launches]
        for e in prof.events():
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            us = getattr(e, "device_time", None) or e.cuda_time
            kinds[kernel_kind(e.name)] = kinds.get(kernel_kind(e.name), 0.0) + us / 1000
            t = top.setdefault(e.name[:90], [0.0, 0])
            t[0] += us / 1000
            t[1] += 1
        res[f"{part}_kinds_ms"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
        res[f"{part}_top_ms"] = dict(sorted(top.items(), key=lambda kv: -kv[1][0])[:40])
    res["peak_alloc_mib"] = torch.cuda.max_memory_allocated() // 2**20
    print("BENCH_RESULT " + json.dumps(res), flush=True)


def bandwidth_child(args) -> None:
    """One forward+backward micro-step (48 x 2048) with inductor's bandwidth profiling on
    (TORCHINDUCTOR_PROFILE=1, set by the parent before torch is imported): every Triton kernel that
    inductor generated is timed alone (L2 flushed) against the bytes it must move. Reports their
    total time, bytes and achieved TB/s, by kernel, against a plain copy's TB/s."""
    import torch
    from torch._inductor.runtime import triton_heuristics as th

    from runtime import autocast_for

    # Each compiled graph's wrapper calls start_graph() (which empties collected_calls) and
    # end_graph(); it imports both when it is generated, so patched here, before anything compiles,
    # end_graph keeps every graph's calls.
    calls: list = []
    real_end = th.end_graph

    def end_graph(output_file):
        calls.extend(th.collected_calls)
        return real_end(output_file)

    th.end_graph = end_graph
    device = torch.device("cuda")
    torch.manual_seed(0)
    _, model = train_model(args.scope, device)
    autocast = autocast_for(device)
    b = torch.randint(0, 1024, (48, 2049), device=device)
    t0 = time.time()
    with autocast():
        loss = model(b[:, :-1], b[:, 1:])
    loss.backward()
    torch.cuda.synchronize()  # calls: (ms, GB, GB/s, name) per launch, each kernel timed once
    if not calls:
        raise RuntimeError("inductor collected no bandwidth calls: is TORCHINDUCTOR_PROFILE=1 honoured by this torch?")
    by: dict[str, list] = {}
    for ms, gb, _, name in calls:
        t = by.setdefault(name, [0.0, 0.0, 0])
        t[0] += ms
        t[1] += gb
        t[2] += 1
    total_ms, total_gb = sum(c[0] for c in calls), sum(c[1] for c in calls)
    res = {"scope": args.scope, "compile_and_run_s": time.time() - t0, "launches": len(calls), "kernels": len(by),
           "triton_ms": total_ms, "triton_gb": total_gb, "triton_tb_per_s": total_gb / total_ms if total_ms else None,
           "copy": copy_bandwidth(device),
           "top": {n: [round(v[0], 3), round(v[1], 3), v[2], round(v[1] / max(v[0], 1e-9), 3)] for n, v in sorted(by.items(), key=lambda kv: -kv[1][0])[:25]}}
    print("BENCH_RESULT " + json.dumps(res), flush=True)


def part_bandwidth(args, scope: str, out: Path) -> dict:
    # Its own inductor cache: the profiling build of each kernel must not reach the shared one.
    env = {**os.environ, **attention_env("auto"), "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_PROFILE": "1",
           "TORCHINDUCTOR_CACHE_DIR": str(out / "bandwidth_cache" / "inductor"), "TRITON_CACHE_DIR": str(out / "bandwidth_cache" / "triton")}
    env.pop("PGOLF_COMPILE_CACHE", None)
    cmd = [sys.executable, __file__, "--child-bandwidth", "--data", args.data, "--scope", scope]
    return child_result(cmd, env, out / f"bandwidth_{scope}.log", "bandwidth")


def part_profile(args, backend: str, scope: str, out: Path) -> dict:
    env = {**os.environ, **attention_env(backend), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, __file__, "--child-profile", "--data", args.data, "--scope", scope]
    return child_result(cmd, env, out / f"profile_{backend}_{scope}.log", "profile")


# ----------------------------------------------------------------------------- eval (our side, own process)


def random_model(tiny: bool, device, vocab_size: int):
    import torch
    from model import GPT, GPTConfig

    torch.manual_seed(0)
    small = dict(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, ve_layers=[1], bigram_dim=32, ve_dim=32) if tiny else {}
    cfg = GPTConfig(vocab_size=vocab_size, **small)
    model = GPT(cfg).to(device).eval()
    for p in model.parameters():  # trained-looking weights, so that SLOT has something to move
        p.data.normal_(0, 0.02)
    return model


def eval_child(args) -> None:
    """One eval stage's work in this fresh process: sliding, then published SLOT, on our code."""
    import torch
    import evaluate as ev
    from evaluate import EvalConfig, EvalSetup, compile_hidden, eval_sliding
    from runtime import Dist, autocast_for, load_val_tokens, manifest_paths, read_manifest, tokenizer_path
    from scoring import byte_luts
    from slot import SlotConfig, eval_slot

    t_start = float(os.environ.get("BENCH_T0", time.time()))
    phases = {"imports": time.time() - t_start}  # seconds after the parent started this process
    tiny = args.tiny
    dist = Dist(args.device)
    phases["device_ready"] = time.time() - t_start
    manifest = read_manifest(str(Path(args.data) / "manifest.json"))
    model = random_model(tiny, dist.device, manifest["tokenizer"]["vocab_size"])
    phases["model_built"] = time.time() - t_start
    seq_len = 128 if tiny else 2048
    if args.compile_mode == "default":
        compile_hidden(model)
    elif dist.device.type == "cuda":
        model.hidden = torch.compile(model.hidden, dynamic=False, mode=args.compile_mode)
    val = load_val_tokens(manifest_paths(manifest, "val"), seq_len)[: args.eval_tokens + 1]
    luts = byte_luts(tokenizer_path(manifest), model.cfg.vocab_size, dist.device)
    autocast = autocast_for(dist.device)
    phases["data_loaded"] = time.time() - t_start
    cfg = EvalConfig(seq_len=seq_len, stride=96 if not tiny else 32, batch_seqs=32 if not tiny else 4, as_published=True)
    slot = SlotConfig(enabled=True, mode="published", steps=24, lr=0.012, lr_min=0.001, batch_seqs=cfg.batch_seqs)
    res = {"compile_cache": dist.compile_cache, "last_layer_tail": ev.TAIL, "phases": phases}

    first = {}

    real_add = ev.ScoreSums.add

    def add(self, *a, **k):  # the first scored batch: when a stage starts producing numbers
        real_add(self, *a, **k)
        if "t" not in first:
            if dist.device.type == "cuda":
                torch.cuda.synchronize()
            first["t"] = time.time() - t_start

    ev.ScoreSums.add = add
    r = eval_sliding(EvalSetup(model, val, cfg, dist, luts, autocast))
    res["first_batch_s"] = first["t"]
    res["sliding_cold_s"] = r["eval_time_ms"] / 1000
    r = eval_sliding(EvalSetup(model, val, cfg, dist, luts, autocast))
    res.update(windows=r["windows"], sliding_bpb=r["val_bpb"], sliding_ms_per_window=r["eval_time_ms"] / r["windows"])
    r = eval_slot(EvalSetup(model, val, cfg, dist, luts, autocast), slot)
    res["slot_cold_s"] = r["eval_time_ms"] / 1000
    t0 = time.perf_counter()
    r = eval_slot(EvalSetup(model, val, cfg, dist, luts, autocast), slot)
    res.update(slot_bpb=r["val_bpb"], slot_loss=r["val_loss"], slot_ms_per_window=1000 * (time.perf_counter() - t0) / r["windows"])
    res["stage_s"] = time.time() - t_start
    if args.profile and dist.device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            eval_slot(EvalSetup(model, val[: 32 * 96 * 4 + 2049], cfg, dist, luts, autocast), slot)
        res["profile"] = prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=70)
    print("BENCH_RESULT " + json.dumps(res), flush=True)


def part_eval_ours(args, backend: str, cache: Path | None, label: str, out: Path, profile: bool = False, tail: bool = True) -> dict:
    """tail=False: the last layer on every position (PGOLF_EVAL_TAIL=0), to measure what the tail saves."""
    # What the cache held before this child started, counted here before BENCH_T0 starts its clock:
    # a "cold" row run on an earlier call's cache (--compile-cache) is warm, and says so. The CPU
    # compiles nothing and uses no cache.
    held = sum(1 for p in cache.rglob("*") if p.is_file()) if cache is not None and cache.exists() else 0
    env = {**os.environ, **attention_env(backend), "PYTHONUNBUFFERED": "1", "PGOLF_EVAL_TAIL": "1" if tail else "0", "BENCH_T0": str(time.time())}
    if cache is not None:
        env["PGOLF_COMPILE_CACHE"] = str(cache)
    cmd = [sys.executable, __file__, "--child-eval", "--data", args.data, "--device", args.device, "--eval-tokens", str(args.eval_tokens),
           "--compile-mode", args.compile_mode] + (["--tiny"] if args.tiny else []) + (["--profile"] if profile else [])
    r = child_result(cmd, env, out / f"eval_{label}.log", "eval")
    r["cache_files_at_start"] = held if r["compile_cache"] else None
    return r


# ----------------------------------------------------------------------------- eval forward, ahead of time


def startup_child(args) -> None:
    """The eval forward (GPT.hidden with the stride-96 tail, batch 32 x 2048, bf16 autocast) in a
    fresh process, on the inductor cache the parent names, made ready one of STARTUP_MODES' ways:
    compile: torch.compile of the whole forward, reduce-overhead, as the eval stage does it;
    regions: model.compile_regions (regions_graphs: with reduce-overhead too); aoti: torch.export,
    then aoti_compile_and_package into --aoti-package once, and aoti_load_package in every later
    process, which loads the compiled library without dynamo tracing anything. Reports when each
    phase ended (seconds after the parent started this process), the first output, ms per window,
    and the output's error against the eager forward."""
    import torch

    from model import GPT, GPTConfig

    t_start = float(os.environ["BENCH_T0"])
    phases = {"imports": time.time() - t_start}
    device = torch.device("cuda")
    torch.zeros(1, device=device)
    phases["device_ready"] = time.time() - t_start
    torch.manual_seed(0)
    model = GPT(GPTConfig()).to(device).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.02)

    class Forward(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, ids):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return self.m.hidden(ids, 96)

    fwd = Forward(model)
    phases["model_built"] = time.time() - t_start
    g = torch.Generator(device=device).manual_seed(1)
    x = torch.randint(0, 1024, (32, 2048), device=device, generator=g)
    res = {"mode": args.startup_mode}
    pkg = Path(args.aoti_package)
    with torch.no_grad():
        if args.startup_mode == "aoti":
            if not pkg.exists():
                t0 = time.time()
                ep = torch.export.export(fwd, (x,))
                res["export_s"] = time.time() - t0
                print(f"aoti: exported in {res['export_s']:.1f}s", flush=True)
                t0 = time.time()
                torch._inductor.aoti_compile_and_package(ep, package_path=str(pkg))
                res["aoti_compile_s"] = time.time() - t0
                print(f"aoti: compiled in {res['aoti_compile_s']:.1f}s", flush=True)
                phases["compiled"] = time.time() - t_start
            run = torch._inductor.aoti_load_package(str(pkg))
            phases["package_loaded"] = time.time() - t_start
            res["package_mib"] = pkg.stat().st_size / 2**20
        elif args.startup_mode in ("regions", "regions_graphs"):  # model.compile_regions: like blocks share one graph
            from model import compile_regions

            # regions_graphs: each region also a CUDA graph (fails on torch 2.11: the blocks share
            # one graph, so each block's replay overwrites the outputs the next one reads).
            compile_regions(model, **({"mode": "reduce-overhead"} if args.startup_mode == "regions_graphs" else {}))
            run = fwd
        else:
            run = torch.compile(fwd, dynamic=False, mode="reduce-overhead")
        y = run(x)
        torch.cuda.synchronize()
        res["first_output_s"] = time.time() - t_start
        for _ in range(3):
            run(x)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(30):
            y = run(x)
        torch.cuda.synchronize()
        res["ms_per_window"] = 1000 * (time.perf_counter() - t0) / (30 * 32)
        with torch.compiler.set_stance("force_eager"):  # eager even where compile_regions compiled the blocks
            ref = fwd(x)
        res["rel_err_vs_eager"] = ((y.float() - ref.float()).norm() / ref.float().norm()).item()
    res["phases"] = phases
    print("BENCH_RESULT " + json.dumps(res), flush=True)


STARTUP_MODES = ("compile", "regions", "regions_graphs", "aoti")


def run_label(mode: str, done: dict) -> str:
    """mode_cold for a mode's first run, then mode_warm, mode_warm2, ... (done: the labels so far)."""
    runs = sum(1 for k in done if k.rsplit("_", 1)[0] == mode)
    return f"{mode}_cold" if runs == 0 else f"{mode}_warm" + (str(runs) if runs > 1 else "")


def part_startup(args, out: Path) -> dict:
    """--startup-modes in order, each in a fresh process on one inductor cache: a mode listed twice
    runs the second time warm. compile: torch.compile of the whole forward (as the eval stage);
    regions: model.compile_regions; aoti: export + AOTInductor package, loaded from then on."""
    root = out / "startup"
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    res = {}
    for mode in args.startup_modes.split(","):
        label = run_label(mode, res)
        env = {**os.environ, **attention_env("auto"), "PYTHONUNBUFFERED": "1", "BENCH_T0": str(time.time()),
               "TORCHINDUCTOR_CACHE_DIR": str(root / "cache" / "inductor"), "TRITON_CACHE_DIR": str(root / "cache" / "triton")}
        env.pop("PGOLF_COMPILE_CACHE", None)
        cmd = [sys.executable, __file__, "--child-startup", "--data", args.data, "--startup-mode", mode, "--aoti-package", str(root / "hidden.pt2")]
        try:
            res[label] = child_result(cmd, env, out / f"startup_{label}.log", "startup")
        except Exception as e:  # noqa: BLE001 - the next mode still runs
            res[label] = {"error": f"{type(e).__name__}: {e}"[-600:]}
    return res


# ----------------------------------------------------------------------------- #1313's own SLOT


def part_ref_slot(args) -> dict:
    import torch

    os.environ.update(EVAL_STRIDE="96", EVAL_SEQ_LEN="2048", SLOT_BATCH_SEQS="32", SLOT_STEPS="24", SLOT_LR="0.012", SLOT_LR_MIN="0.001")
    spec = importlib.util.spec_from_file_location("pr1313", Path(args.ref).resolve())
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    a = ref.Hyperparameters()
    device = torch.device("cuda")
    # As its main() sets them. TF32 matters most: its SLOT fit is fp32 matmuls, about 2x slower on
    # plain fp32 (4.09 ms/window measured so on 2026-12-02, against 2.25 in perf-notes).
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.enable_cudnn_sdp(False)
    torch.backends.cuda.enable_flash_sdp(True)
    torch.backends.cuda.enable_mem_efficient_sdp(False)
    torch.backends.cuda.enable_math_sdp(False)
    torch.manual_seed(0)
    model = ref.GPT(vocab_size=a.vocab_size, num_layers=a.num_layers, model_dim=a.model_dim, num_heads=a.num_heads, num_kv_heads=a.num_kv_heads,
                    mlp_mult=a.mlp_mult, tie_embeddings=a.tie_embeddings, tied_embed_init_std=a.tied_embed_init_std, logit_softcap=a.logit_softcap,
                    rope_base=a.rope_base, qk_gain_init=a.qk_gain_init, bigram_vocab_size=a.bigram_vocab_size, bigram_dim=a.bigram_dim,
                    xsa_last_n=a.xsa_last_n, rope_dims=a.rope_dims, ln_scale=a.ln_scale, ve_enabled=a.ve_enabled, ve_dim=a.ve_dim,
                    ve_layers=a.ve_layers, vrl_enabled=a.vrl_enabled).to(device).bfloat16()
    for m in model.modules():
        if isinstance(m, ref.CastedLinear):
            m.float()
    ref.restore_low_dim_params_to_fp32(model)
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    data = Path(args.data)
    manifest = json.loads((data / "manifest.json").read_text())
    sp = ref.spm.SentencePieceProcessor(model_file=str(data / manifest["tokenizer"]["model"]))
    luts = ref.build_sentencepiece_luts(sp, a.vocab_size, device)
    from runtime import load_val_tokens, manifest_paths, read_manifest

    # On the host, as its main() passes them: its loop slices them window by window.
    val = load_val_tokens(manifest_paths(read_manifest(str(data / "manifest.json")), "val"), 2048)[: args.eval_tokens + 1]
    windows = len([w for w in range(0, val.numel() - 1, 96)])
    res = {"windows": windows}
    for label in ("cold", "warm"):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss, bpb = ref.eval_val_slot(a, model, 0, 1, device, val, *luts)
        torch.cuda.synchronize()
        res[f"{label}_s"] = time.perf_counter() - t0
        res[f"{label}_bpb"] = bpb
    res["ms_per_window"] = 1000 * res["warm_s"] / windows
    torch.backends.cuda.enable_cudnn_sdp(True)
    torch.backends.cuda.enable_mem_efficient_sdp(True)
    torch.backends.cuda.enable_math_sdp(True)
    return res


# ----------------------------------------------------------------------------- driver


def table(results: dict) -> str:
    lines = []
    tr = results.get("train", {})
    ref = tr.get("ref")
    lines.append("== training, 786,432 tokens/step (8 x 48 x 2048), one GPU ==")
    lines.append(f"{'variant':28s} {'ms/step':>8s} {'Mtok/s':>7s} {'peak MiB':>9s} {'MFU':>6s} {'vs #1313':>8s}  losses@10/20/../last")
    for name, r in tr.items():
        if "error" in r:
            lines.append(f"{name:28s} error: {r['error'][:200]}")
            continue
        mfu = r["tokens_per_s"] * flops_per_token(r.get("params", 26862694)) / (PEAK_TFLOPS * 1e12)
        ratio = f"{ref['ms_per_step'] / r['ms_per_step']:.2f}x" if ref and "ms_per_step" in ref else "-"
        losses = "/".join(f"{v:.3f}" for _, v in sorted(r["losses"].items(), key=lambda kv: int(kv[0])))
        lines.append(f"{name:28s} {r['ms_per_step']:8.1f} {r['tokens_per_s'] / 1e6:7.3f} {str(r['peak_alloc_mib']):>9s} {100 * mfu:5.1f}% {ratio:>8s}  {losses}")
        if r.get("outside_timed_window"):
            lines.append(f"{'':28s} wall {r['wall_s']:.0f}s; outside_timed_window {r['outside_timed_window']}")
    ev = results.get("eval", {})
    rs = results.get("ref_slot", {})
    lines.append("== eval, published windows (seq 2048, stride 96, 32 a batch, 24 SLOT steps), random weights ==")
    for name, r in ev.items():
        if "error" in r:
            lines.append(f"{name:28s} error: {r['error'][:200]}")
            continue
        ratio = f"{rs['ms_per_window'] / r['slot_ms_per_window']:.2f}x #1313" if "ms_per_window" in rs else ""
        lines.append(f"{name:28s} first batch {r['first_batch_s']:6.1f}s stage {r['stage_s']:6.1f}s  sliding {r['sliding_ms_per_window']:.3f} ms/win"
                     f"  SLOT {r['slot_ms_per_window']:.3f} ms/win (cold {r['slot_cold_s']:.1f}s) {ratio}  bpb sliding {r['sliding_bpb']:.6f} slot {r['slot_bpb']:.6f}")
        if "phases" in r:
            held = r.get("cache_files_at_start")
            lines.append(f"{'':28s} last layer on the tail: {r['last_layer_tail']}; compile cache files at start: {held}; reached at (s): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items()) + f", first batch {r['first_batch_s']:.1f}")
    if rs:
        if "error" in rs:
            lines.append(f"{'#1313 eval_val_slot':28s} error: {rs['error'][:200]}")
        else:
            lines.append(f"{'#1313 eval_val_slot':28s} cold {rs['cold_s']:.1f}s warm {rs['warm_s']:.2f}s = {rs['ms_per_window']:.3f} ms/win over {rs['windows']} windows, bpb {rs['warm_bpb']:.6f}")
    def section(title: str, r: dict) -> bool:
        """Appends a part's header, and its error if it failed; True when there is more to print."""
        lines.append(title)
        if "error" in r:
            lines.append(f"error: {r['error'][:300]}")
        return "error" not in r

    for name, r in results.get("profile", {}).items():
        if not section(f"== GPU time of one train step, ours {name} (record shape, random tokens) ==", r):
            continue
        lines.append(f"step {r['step_ms']:.1f} ms = forward+backward x8 {r['fwd_bwd_ms']:.1f} + clip/optimizers/EMA {r['update_ms']:.1f};"
                     f" compile+3 warm-up steps {r['warmup_s']:.0f}s; peak {r['peak_alloc_mib']} MiB")
        for part in ("fwd_bwd", "update"):
            kinds = r[f"{part}_kinds_ms"]
            busy = sum(kinds.values())
            lines.append(f"  {part}: kernels {busy:.1f} ms of {r[part + '_ms']:.1f} ms wall: " + ", ".join(f"{k} {v:.1f}" for k, v in kinds.items()))
        top = r.get("fwd_bwd_top_ms", {})
        if top:
            lines.append("  fwd_bwd top kernels (ms per step, launches):")
            lines += [f"    {v[0]:7.1f} {v[1]:5d}  {n}" for n, v in list(top.items())[:20]]
    for name, r in results.get("bandwidth", {}).items():
        if not section(f"== inductor's Triton kernels, each timed alone, one forward+backward micro-step (48 x 2048), scope {name} ==", r):
            continue
        lines.append(f"{r['launches']} launches of {r['kernels']} kernels: {r['triton_ms']:.1f} ms, {r['triton_gb']:.1f} GB, {r['triton_tb_per_s']:.2f} TB/s;"
                     f" a plain 1 GiB copy: {r['copy']['copy_tb_per_s']:.2f} TB/s")
        lines += [f"    {v[0]:7.2f} ms {v[1]:6.2f} GB x{v[2]:<3d} {v[3]:5.2f} TB/s  {n[:80]}" for n, v in list(r["top"].items())[:15]]
    fu = results.get("fusions", {})
    if fu:
        lines.append("== liger-kernel against our compiled code, each alone, 48 x 2048 tokens, forward+backward ==")
        if "bandwidth" in fu:
            lines.append(f"plain 1 GiB copy: {fu['bandwidth']['copy_tb_per_s']:.2f} TB/s")
        if "error" in fu:
            lines.append(f"error: {fu['error'][:300]}")
        for name, r in fu.items():
            if name in ("bandwidth", "error"):
                continue
            if "error" in r:
                lines.append(f"{name:10s} error: {r['error'][:250]}")
                continue
            lines.append(f"{name:10s} ours fwd {r['ours_fwd_ms']:.3f} fwd+bwd {r['ours_fwd_bwd_ms']:.3f} ms | liger fwd {r['liger_fwd_ms']:.3f} fwd+bwd"
                         f" {r['liger_fwd_bwd_ms']:.3f} ms | ours/liger {r['speedup_fwd_bwd']:.2f}x | rel err out {r['out_rel_err']:.1e} grad {r['grad_rel_err']:.1e}")
    ao = results.get("startup", {})
    if ao:
        lines.append("== eval forward (hidden, tail 96, 32 x 2048) in a fresh process: whole-model compile, regional compile, AOTInductor ==")
        for name, r in ao.items():
            if "error" in r:
                lines.append(f"{name:13s} error: {r['error'][-250:]}")
                continue
            extra = "".join(f" {k} {r[k]:.1f}s" for k in ("export_s", "aoti_compile_s") if k in r)
            lines.append(f"{name:13s} first output {r['first_output_s']:5.1f}s  {r['ms_per_window']:.3f} ms/win  rel err {r['rel_err_vs_eager']:.1e}{extra}; reached at (s): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in r["phases"].items()))
    att = results.get("attention", {})
    if att:
        lines.append("== SDPA at 48 x 8 heads x 2048 x 64 (GQA 8/4), bf16 ==")
        for name, r in att.items():
            lines.append(f"{name:8s} " + (r["error"] if "error" in r else f"fwd {r['fwd_ms']:.2f} ms ({r['fwd_tflops']:.0f} TF/s), fwd+bwd {r['fwd_bwd_ms']:.2f} ms"
                                          f" ({r['fwd_bwd_tflops']:.0f} TF/s), rel err vs fp64 {r['rel_err_vs_fp64']:.1e}, first call {r['first_call_s']:.1f}s"))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="pgolf data dir (manifest.json, shards, tokenizer)")
    ap.add_argument("--ref", default=str(REPO.parent / "shared" / "reference" / "pr1313_train_gpt.py"))
    ap.add_argument("--out", default="results/bench_speed")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model, our side only: a smoke run for the CPU")
    ap.add_argument("--parts", default="attention,profile,train,eval,ref_slot")
    ap.add_argument("--backends", default="auto,cudnn,flash", help="SDPA backends of our code to measure; the first is the candidate default")
    ap.add_argument("--compile-mode", default="default", help="eval forward: default (reduce-overhead, as the stage) or a torch.compile mode")
    ap.add_argument("--compile-cache", help="PGOLF_COMPILE_CACHE of our trainer and eval runs (default OUT/compile_cache);"
                    " a later call on the same machine can pass the earlier one's to run warm")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--eval-tokens", type=int, default=245760)
    ap.add_argument("--train-variants", default="auto/model,cudnn/model,flash/model",
                    help="our trainer's runs as BACKEND/SCOPE (SDPA backend; compile_scope model or blocks)")
    ap.add_argument("--profile-variants", default="cudnn/blocks", help="BACKEND/SCOPE of the 'profile' part")
    ap.add_argument("--scope", default="model", help=argparse.SUPPRESS)
    ap.add_argument("--child-profile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-eval", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-bandwidth", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-startup", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--startup-mode", default="compile", choices=STARTUP_MODES, help=argparse.SUPPRESS)
    ap.add_argument("--aoti-package", help=argparse.SUPPRESS)
    ap.add_argument("--startup-modes", default="compile,compile,regions,regions",
                    help="the 'startup' part's runs, of " + ", ".join(STARTUP_MODES) + "; a mode listed twice runs again warm")
    ap.add_argument("--bandwidth-scope", default="blocks", choices=("model", "blocks"), help="compile scope of the 'bandwidth' part")
    args = ap.parse_args()
    bad = [m for m in args.startup_modes.split(",") if m not in STARTUP_MODES]
    if bad:
        ap.error(f"--startup-modes {args.startup_modes}: {', '.join(bad)} not one of {', '.join(STARTUP_MODES)}")
    if not args.data or not (Path(args.data) / "manifest.json").is_file():
        ap.error(f"--data {args.data}: not a pgolf data dir (no manifest.json); build one with the data stage")
    if args.child_eval:
        return eval_child(args)
    if args.child_profile:
        return profile_child(args)
    if args.child_bandwidth:
        return bandwidth_child(args)
    if args.child_startup:
        return startup_child(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tiny:
        args.steps, args.warmup, args.eval_tokens = min(args.steps, 12), 0, 2048
        parts = ["train", "eval"]
    else:
        parts = args.parts.split(",")
    backends = args.backends.split(",") if not args.tiny else ["flash"]
    results: dict = {"argv": sys.argv[1:]}

    def attempt(key, sub, fn):
        t0 = time.time()
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 - report it and run the other parts
            traceback.print_exc()
            r = {"error": f"{type(e).__name__}: {e}"}
        brief = {k: v for k, v in r.items() if k != "profile"}
        print(f"bench: {key}/{sub} done in {time.time() - t0:.0f}s: {json.dumps(brief, default=str)}", flush=True)
        if "profile" in r:
            print(r["profile"], flush=True)
        results.setdefault(key, {})[sub] = r if sub else r
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))

    if "attention" in parts:
        attempt("attention", "all", lambda: part_attention("cuda"))
        results["attention"] = results["attention"]["all"]
    if "fusions" in parts and not args.tiny:
        attempt("fusions", "all", lambda: part_fusions("cuda"))
        results["fusions"] = results["fusions"]["all"]
    if "bandwidth" in parts and not args.tiny:
        attempt("bandwidth", args.bandwidth_scope, lambda: part_bandwidth(args, args.bandwidth_scope, out))
    if "startup" in parts and not args.tiny:
        attempt("startup", "all", lambda: part_startup(args, out))
        results["startup"] = results["startup"]["all"]
    if "profile" in parts and not args.tiny:
        for v in args.profile_variants.split(","):
            b, scope = v.split("/")
            attempt("profile", f"{b}_{scope}", lambda b=b, scope=scope: part_profile(args, b, scope, out))
    if "train" in parts:
        variants = [v.split("/") for v in args.train_variants.split(",")] if not args.tiny else [["flash", "model"], ["flash", "blocks"]]
        for b, scope in variants:
            name = f"ours_{b}_{scope}"
            name += "_again" if name in results.get("train", {}) else ""  # the second run: a warm compile cache
            attempt("train", name, lambda b=b, scope=scope, name=name: part_train_ours(args, b, out, args.tiny, scope, name))
        if not args.tiny:
            attempt("train", "ref", lambda: part_train_ref(args, out))
    if "eval" in parts:
        cache = compile_cache_root(args, out)
        b0 = backends[0]
        attempt("eval", f"ours_{b0}_cold_cache", lambda: part_eval_ours(args, b0, cache, f"{b0}_cold", out))
        attempt("eval", f"ours_{b0}_warm_cache", lambda: part_eval_ours(args, b0, cache, f"{b0}_warm", out, profile=not args.tiny))
        attempt("eval", f"ours_{b0}_warm_full_last", lambda: part_eval_ours(args, b0, cache, f"{b0}_warm_full_last", out, tail=False))
        for b in backends[1:]:
            attempt("eval", f"ours_{b}_cold_cache", lambda b=b: part_eval_ours(args, b, cache, f"{b}_cold", out))
    if "ref_slot" in parts and not args.tiny:
        attempt("ref_slot", "r", lambda: part_ref_slot(args))
        results["ref_slot"] = results["ref_slot"]["r"]
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    for name, r in results.get("eval", {}).items():
        if "profile" in r:
            (out / "profile.txt").write_text(f"{name}\n{r.pop('profile')}\n")
            print((out / "profile.txt").read_text())
    text = table(results)
    (out / "table.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
