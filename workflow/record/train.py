"""Train stage: one seed, under torchrun. Writes the EMA weights (what gets exported) and train.json.

Optimisers follow the record: Muon (orthogonalised momentum) for the block matrices, AdamW for
the embedding and the small control tensors, global grad-norm clipping, linear warmdown at the end
(by wallclock when a cap is set, else by step count), and an EMA of all weights.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
from datetime import datetime, timezone
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from model import GPT, MLP, GPTConfig, attention_backend, compile_regions, count_params
from build import build_model, model_config
from kernels import fused_ce_available, fused_mlp_available, leaky_square_mlp, softcap_ce  # bundled only when a fused_* key is on
from frontier_optim import polar_express, row_normalize, warmdown_multiplier, wd_taper_multiplier  # bundled only when a train key uses it
from runtime import Dist, RunLog, TrainLoader, UserError, autocast_for, load_hparams, load_val_tokens, log_environment, manifest_paths, now, peak_memory_line, read_manifest, run_main, sync, torch_bytes, write_bytes_atomic, write_json_atomic, settings_from
from scoring import byte_counter, eval_sequences


@dataclass
class TrainConfig:
    seq_len: int = 2048
    batch_tokens: int = 786432  # tokens per optimizer step, summed over ranks and micro-steps
    grad_accum_steps: int | str = 1  # "auto": 8 // world_size, the record's 8-GPU step on fewer GPUs
    iterations: int = 20000
    max_wallclock_seconds: float = 600.0  # 0 disables the cap (and makes warmdown step-based)
    warmdown_iters: int = 3500
    embed_lr: float = 0.035
    matrix_lr: float = 0.025
    scalar_lr: float = 0.025
    weight_decay: float = 0.04
    muon_momentum: float = 0.99
    muon_momentum_warmup_start: float = 0.92
    muon_momentum_warmup_steps: int = 1500
    muon_ns_steps: int = 5
    grad_clip_norm: float = 0.3
    ema_decay: float = 0.997
    train_log_every: int = 500
    val_every: int = 4000  # 0: validate only after training
    val_batch_seqs: int = 32
    val_max_tokens: int = 0  # 0: the whole validation split
    warmup_steps: int = 0  # compile warm-up steps, undone afterwards and outside the timer
    compile: str = "auto"  # torch.compile: "auto" = on GPU only, "on", "off"
    compile_scope: str = "model"  # "model": one graph of the whole model; "blocks": each block alone (model.compile_regions)
    late_qat_threshold: float = 0.15  # fake-quantize matrices once the LR multiplier drops below this (0 = never)
    qat_bits: int = 6
    # The April optimizer (frontier_optim.py), each off by default: absent keys train as before.
    muon_polar_express: bool = False  # Newton-Schulz with Polar Express's per-iteration coefficients
    muon_row_normalize: bool = False  # MuonEq-R: each row of the momentum update to unit norm first
    warmdown_frac: float = 0.0  # > 0: linear warmdown over this last fraction of training (replaces warmdown_iters)
    min_lr: float = 0.0  # floor of the learning-rate multiplier
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    embed_wd: float | None = None  # AdamW weight decay of the embedding (None: weight_decay)
    scalar_wd: float | None = None  # AdamW weight decay of the small control tensors (None: weight_decay)
    muon_wd: float | None = None  # Muon weight decay (None: weight_decay)
    wd_taper_start_frac: float = 1.0  # from this fraction of training, Muon's weight decay tapers linearly ...
    wd_taper_final_mult: float = 1.0  # ... to this multiple of itself at the end (1.0: no taper)
    # Fused Triton kernels of training (kernels.py), off by default; evaluation keeps the plain path.
    fused_ce: bool = False  # the training loss's softcapped cross-entropy in one Triton kernel (CUDA + Triton; else plain)
    fused_mlp: bool = False  # the MLP's up projection + leaky_relu(0.5)^2 as Triton kernels in training (CUDA + Triton; else plain)


def zeropower_newton_schulz(g: torch.Tensor, steps: int) -> torch.Tensor:
    """Approximately orthogonalises each matrix of g [..., m, n] (pushes its singular values
    towards 1) with a quintic iteration; bf16 on GPU, fp32 on CPU."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = g.bfloat16() if g.is_cuda else g.float()
    x = x / (torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True) + 1e-7)
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    for _ in range(steps):
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x.mT if transposed else x).to(g.dtype)


def polar_newton_schulz(g: torch.Tensor, steps: int) -> torch.Tensor:
    """Polar Express's iteration (frontier_optim), in bf16 on GPU or for bf16 weights (as the
    records compute it), else in fp32; returned in g's dtype."""
    return polar_express(g, steps, torch.bfloat16 if g.dtype == torch.bfloat16 else None).to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Nesterov momentum whose update is orthogonalised, scaled for non-square matrices.

    Matrices of one shape are orthogonalised together as one batch (a few large kernels instead of
    a few per matrix); on GPU, unless compile is False, the iteration is compiled once per shape.
    """

    def __init__(self, params, lr: float, momentum: float, ns_steps: int, weight_decay: float, compile: bool = True,
                 polar: bool = False, row_norm: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, ns_steps=ns_steps, weight_decay=weight_decay, polar=polar, row_norm=row_norm))
        self._ns = None
        self.compile_ns = compile

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if self._ns is None:
                use = self.compile_ns and params[0].is_cuda
                fn = polar_newton_schulz if group["polar"] else zeropower_newton_schulz
                self._ns = torch.compile(fn, dynamic=False) if use else fn
            grads = [p.grad for p in params]
            bufs = [self.state[p].setdefault("momentum", torch.zeros_like(p)) for p in params]
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, grads)
            nesterov = torch._foreach_add(grads, bufs, alpha=group["momentum"])
            if group["row_norm"]:
                nesterov = [row_normalize(u) for u in nesterov]
            by_shape: dict[tuple, list[int]] = {}
            for i, p in enumerate(params):
                by_shape.setdefault(tuple(p.shape), []).append(i)
            updates = [None] * len(params)
            for shape, idx in by_shape.items():
                ortho = self._ns(torch.stack([nesterov[i] for i in idx]), group["ns_steps"])
                ortho *= max(1.0, shape[0] / shape[1]) ** 0.5
                for j, i in enumerate(idx):
                    updates[i] = ortho[j]
            torch._foreach_mul_(params, 1.0 - group["lr"] * group["weight_decay"])
            torch._foreach_add_(params, updates, alpha=-group["lr"])


def uses_compile(cfg: TrainConfig, device: torch.device) -> bool:
    return cfg.compile == "on" or (cfg.compile == "auto" and device.type == "cuda")


def build_optimizers(model: GPT, cfg: TrainConfig) -> tuple[list[torch.optim.Optimizer], Muon]:
    matrices = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    matrix_ids = {id(p) for p in matrices} | {id(model.tok_emb.weight)}
    scalars = [p for p in model.parameters() if id(p) not in matrix_ids]
    wd = lambda v: cfg.weight_decay if v is None else v  # noqa: E731  (a group's own decay, else the shared one)
    adam_kw = dict(betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    adam = torch.optim.AdamW(
        [
            dict(params=[model.tok_emb.weight], lr=cfg.embed_lr, base_lr=cfg.embed_lr, weight_decay=wd(cfg.embed_wd)),
            dict(params=scalars, lr=cfg.scalar_lr, base_lr=cfg.scalar_lr, weight_decay=wd(cfg.scalar_wd)),
        ],
        **adam_kw,
        fused=model.tok_emb.weight.is_cuda,  # one kernel for all tensors on GPU, as #1313
    )
    # compile: off means nothing compiles. In an eager smoke run on an H200 (2026-12-02) the first
    # two steps took 31 s of the 45 s timed window, the Newton-Schulz compile being the one compile.
    muon = Muon(matrices, lr=cfg.matrix_lr, momentum=cfg.muon_momentum, ns_steps=cfg.muon_ns_steps, weight_decay=wd(cfg.muon_wd),
                compile=uses_compile(cfg, model.tok_emb.weight.device), polar=cfg.muon_polar_express, row_norm=cfg.muon_row_normalize)
    for g in muon.param_groups:
        g["base_lr"], g["base_wd"] = cfg.matrix_lr, wd(cfg.muon_wd)
    return [adam, muon], muon


def accumulation_steps(cfg: TrainConfig, world_size: int) -> int:
    """Micro-steps per optimizer step; "auto" keeps the record's 8-GPU step on any world size dividing 8."""
    if cfg.grad_accum_steps != "auto":
        return int(cfg.grad_accum_steps)
    if 8 % world_size:
        raise UserError(f"train.grad_accum_steps: auto needs a world size that divides 8, got {world_size}")
    return 8 // world_size


def training_fraction(cfg: TrainConfig, step: int, elapsed_ms: float) -> float:
    """How far training is: of the wallclock cap when one is set, else of the iterations."""
    if cfg.max_wallclock_seconds > 0:
        return elapsed_ms / (1000.0 * cfg.max_wallclock_seconds)
    return step / max(cfg.iterations, 1)


def lr_multiplier(cfg: TrainConfig, step: int, elapsed_ms: float) -> float:
    """1 until the warmdown window, then linear to 0 at the end of training; never below min_lr.
    warmdown_frac > 0: the window is that last fraction of training (the April records' schedule)."""
    if cfg.warmdown_frac > 0:
        return warmdown_multiplier(training_fraction(cfg, step, elapsed_ms), cfg.warmdown_frac, cfg.min_lr)
    return max(warmdown_iters_multiplier(cfg, step, elapsed_ms), cfg.min_lr)


def warmdown_iters_multiplier(cfg: TrainConfig, step: int, elapsed_ms: float) -> float:
    if cfg.warmdown_iters <= 0:
        return 1.0
    if cfg.max_wallclock_seconds > 0:
        step_ms = elapsed_ms / max(step, 1)
        remaining_ms = max(1000.0 * cfg.max_wallclock_seconds - elapsed_ms, 0.0)
        return min(1.0, remaining_ms / (cfg.warmdown_iters * step_ms)) if step > 0 else 1.0
    return min(1.0, max(cfg.iterations - step, 0) / cfg.warmdown_iters)


class EMA:
    """fp32 exponential moving average of every floating tensor in the model's state."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
        self._tensors = list(self.shadow.values())
        # The model's own tensors, in state_dict order; training updates them in place.
        self._sources = [v.detach() for v in model.state_dict().values()]

    @torch.no_grad()
    def update(self) -> None:
        current = [v if v.dtype == torch.float32 else v.float() for v in self._sources]
        torch._foreach_lerp_(self._tensors, current, 1.0 - self.decay)


def eval_uncompiled(base: GPT, val_tokens: torch.Tensor, cfg: TrainConfig, dist: Dist, luts, autocast) -> dict:
    """Validation inside the train job, eagerly whatever the compile scope: graphs compiled for the
    training step would otherwise recompile for the eval batch (12.7 s before the first step with
    compile_scope: blocks on an H200, 2026-12-02, against 0.8 s eager)."""
    with torch.compiler.set_stance("force_eager"):
        return eval_sequences(base, val_tokens, cfg.seq_len, cfg.val_batch_seqs, dist, luts, autocast)


class Trainer:
    """One seed's training: the model, its optimizers and data, and the three phases train() runs
    (setup here, warm-up and restore, the timed loop)."""

    def __init__(self, cfg: TrainConfig, model_cfg: GPTConfig, manifest: dict, seed: int, dist: Dist, log: RunLog):
        torch.manual_seed(seed)
        t_setup = now()
        if dist.device.type == "cpu":
            torch.set_flush_denormal(True)
            torch.use_deterministic_algorithms(True)
        self.cfg, self.dist, self.log, self.seed = cfg, dist, log, seed
        self.base = base = build_model(model_cfg).to(dist.device)
        if cfg.fused_ce:
            base.train_ce = softcap_ce  # a Triton kernel on CUDA, the plain path elsewhere
        if cfg.fused_mlp:
            for m in base.modules():
                if isinstance(m, MLP):
                    m.train_mlp = leaky_square_mlp  # Triton kernels on CUDA, the plain layers elsewhere; eval mode: plain
        self.use_compile = use_compile = uses_compile(cfg, dist.device)
        if cfg.compile_scope not in ("model", "blocks"):
            raise UserError(f"train.compile_scope: expected model or blocks, got {cfg.compile_scope!r}")
        compiled = base
        if use_compile and cfg.compile_scope == "blocks":
            compile_regions(base)
        elif use_compile:
            compiled = torch.compile(base, dynamic=False)
        self.model = DistributedDataParallel(compiled) if dist.enabled else compiled
        self.optimizers, self.muon = build_optimizers(base, cfg)
        self.autocast = autocast_for(dist.device)

        self.accum = accum = accumulation_steps(cfg, dist.world_size)
        self.micro_seqs, rem = divmod(cfg.batch_tokens, cfg.seq_len * dist.world_size * accum)
        if rem or self.micro_seqs == 0:
            raise UserError(
                f"train.batch_tokens={cfg.batch_tokens} must be a positive multiple of seq_len*world_size*grad_accum_steps"
                f" = {cfg.seq_len}*{dist.world_size}*{accum}"
            )
        self.train_paths = manifest_paths(manifest, "train")
        self.loader = TrainLoader(self.train_paths, dist.rank, dist.world_size, dist.device)
        self.val_tokens = load_val_tokens(manifest_paths(manifest, "val"), cfg.seq_len, cfg.val_max_tokens)
        self.luts = byte_counter(manifest, len(self.val_tokens), model_cfg.vocab_size, dist.device)
        self.log_settings()
        self.outside = {"setup": now() - t_setup}  # seconds spent outside the timed window, by part

    def log_settings(self) -> None:
        cfg, dist, log = self.cfg, self.dist, self.log
        log(f"model_params:{count_params(self.base)}")
        log(f"attention:{attention_backend(dist.device)} compile:{self.use_compile}{' scope:' + cfg.compile_scope if self.use_compile else ''} autocast:{'bf16' if dist.device.type == 'cuda' else 'off'}")
        if cfg.fused_ce:
            log(f"fused_ce:{'triton' if fused_ce_available(dist.device) else 'plain (no CUDA or no Triton)'}")
        if cfg.fused_mlp:
            log(f"fused_mlp:{'triton' if fused_mlp_available(dist.device) else 'plain (no CUDA or no Triton)'}")
        log(f"world_size:{dist.world_size} grad_accum_steps:{self.accum}")
        log(f"embed_lr:{cfg.embed_lr} matrix_lr:{cfg.matrix_lr} scalar_lr:{cfg.scalar_lr}")
        log(
            f"train_batch_tokens:{cfg.batch_tokens} train_seq_len:{cfg.seq_len} iterations:{cfg.iterations}"
            f" warmup_steps:{cfg.warmup_steps} max_wallclock_seconds:{cfg.max_wallclock_seconds:.3f}"
        )
        log(f"seed:{self.seed}")

    def step(self, step: int, lr_mul: float, wd_mul: float = 1.0) -> torch.Tensor:
        """One optimizer step over grad_accum_steps micro-batches; returns the mean train loss.
        wd_mul scales Muon's weight decay (the late taper)."""
        cfg, dist, model = self.cfg, self.dist, self.model
        for opt in self.optimizers:
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_mul
        for g in self.muon.param_groups:
            g["weight_decay"] = g["base_wd"] * wd_mul
        frac = min(step / cfg.muon_momentum_warmup_steps, 1.0) if cfg.muon_momentum_warmup_steps > 0 else 1.0
        for g in self.muon.param_groups:
            g["momentum"] = (1 - frac) * cfg.muon_momentum_warmup_start + frac * cfg.muon_momentum
        total = torch.zeros((), device=dist.device)
        for micro in range(self.accum):
            x, y = self.loader.next_batch(self.micro_seqs * cfg.seq_len, cfg.seq_len)
            last = micro == self.accum - 1
            # Only the last micro-step all-reduces gradients.
            with model.no_sync() if dist.enabled and not last else contextlib.nullcontext():
                with self.autocast():
                    loss = model(x, y) / self.accum
                loss.backward()
            total += loss.detach()
        if cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.base.parameters(), cfg.grad_clip_norm)
        for opt in self.optimizers:
            opt.step()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        return total

    def warm_up_and_restore(self) -> None:
        """Compile and allocator warm-up on real batches, outside the timer; then every trace of it
        (weights, optimizer state, data position) is put back so the run starts from step 0."""
        cfg, base, dist = self.cfg, self.base, self.dist
        t_part = now()
        if cfg.warmup_steps > 0:
            initial_model = copy.deepcopy(base.state_dict())
            initial_opts = [copy.deepcopy(opt.state_dict()) for opt in self.optimizers]
            for i in range(cfg.warmup_steps):
                # The second half runs with late QAT on, so its graph is compiled here too and switching
                # it on mid-run costs no recompilation inside the timed window.
                base.set_qat(cfg.qat_bits if cfg.late_qat_threshold > 0 and i >= cfg.warmup_steps // 2 else 0)
                if type(base) is not GPT:  # the looped graph (frontier layer looping) compiles here too, outside the timer
                    base.looping = i % 2 == 1
                self.step(0, 1.0)
                self.log(f"warmup_step:{i + 1}/{cfg.warmup_steps}")
            base.set_qat(0)
            base.load_state_dict(initial_model)
            for opt, state in zip(self.optimizers, initial_opts):
                opt.load_state_dict(state)
            self.loader = TrainLoader(self.train_paths, dist.rank, dist.world_size, dist.device)
        self.ema = EMA(base, cfg.ema_decay)
        self.outside["warmup"] = now() - t_part

    def validate(self, step: int, elapsed_ms: float) -> dict:
        cfg = self.cfg
        r = eval_uncompiled(self.base, self.val_tokens, cfg, self.dist, self.luts, self.autocast)
        self.log(
            f"step:{step}/{cfg.iterations} val_loss:{r['val_loss']:.4f} val_bpb:{r['val_bpb']:.4f}"
            f" train_time:{elapsed_ms:.0f}ms step_avg:{elapsed_ms / max(step, 1):.2f}ms"
        )
        self.base.train()
        return r

    def timed_loop(self) -> dict:
        """Steps until the iteration count or the wall-clock cap; the timer counts training steps only."""
        cfg, dist, base, log, outside = self.cfg, self.dist, self.base, self.log, self.outside
        curve, elapsed_ms, step, stopped_early, qat_step = [], 0.0, 0, False, None
        sync(dist.device)
        t0 = now()
        while step < cfg.iterations:
            mul = lr_multiplier(cfg, step, elapsed_ms)
            if cfg.late_qat_threshold > 0 and qat_step is None and mul < cfg.late_qat_threshold:
                base.set_qat(cfg.qat_bits)
                qat_step = step
                log(f"late_qat:enabled step:{step} scale:{mul:.4f}")
            if type(base) is not GPT and base.update_looping(step, elapsed_ms, cfg):  # frontier depth recurrence on
                log(f"layer_loop:enabled step:{step} train_time:{elapsed_ms:.0f}ms")
            wd_mul = 1.0 if cfg.wd_taper_final_mult == 1.0 else wd_taper_multiplier(training_fraction(cfg, step, elapsed_ms), cfg.wd_taper_start_frac, cfg.wd_taper_final_mult)
            loss = self.step(step, mul, wd_mul)
            self.ema.update()
            step += 1

            sync(dist.device)
            elapsed_ms = 1000.0 * (now() - t0)
            cap_hit = dist.any_true(cfg.max_wallclock_seconds > 0 and elapsed_ms >= 1000.0 * cfg.max_wallclock_seconds)
            # The last step is always logged, so the log's last step_avg is the run's (train.json's).
            if step <= 10 or step % cfg.train_log_every == 0 or step == cfg.iterations or cap_hit:
                train_loss = dist.all_reduce_sum(loss).item() / dist.world_size  # mean over all ranks' batches
                curve.append([step, round(train_loss, 6)])
                log(
                    f"step:{step}/{cfg.iterations} train_loss:{train_loss:.4f} train_time:{elapsed_ms:.0f}ms"
                    f" step_avg:{elapsed_ms / step:.2f}ms"
                )
            if cap_hit:
                stopped_early = step < cfg.iterations
                if stopped_early:
                    log(f"stopping_early: wallclock_cap train_time:{elapsed_ms:.0f}ms step:{step}/{cfg.iterations}")
                break
            if cfg.val_every > 0 and step % cfg.val_every == 0 and step < cfg.iterations:
                pause = now()
                self.validate(step, elapsed_ms)
                t0 += now() - pause  # the timer counts training steps only
                outside["mid_val"] = outside.get("mid_val", 0.0) + now() - pause
        log(peak_memory_line(dist.device))
        return {"curve": curve, "elapsed_ms": elapsed_ms, "step": step, "stopped_early": stopped_early, "qat_step": qat_step}

    def finish(self, run: dict, init: dict) -> dict:
        """The EMA weights in place, their pre-quantization score, and train.json's metrics."""
        cfg, dist, base, log, outside = self.cfg, self.dist, self.base, self.log, self.outside
        curve, elapsed_ms, step = run["curve"], run["elapsed_ms"], run["step"]
        t_part = now()
        base.set_qat(0)
        base.load_state_dict({k: v.to(base.state_dict()[k].dtype) for k, v in self.ema.shadow.items()})
        log("ema:applied EMA weights")
        pre = eval_uncompiled(base, self.val_tokens, cfg, dist, self.luts, self.autocast)
        log(f"pre_quant_post_ema val_loss:{pre['val_loss']:.4f} val_bpb:{pre['val_bpb']:.4f} eval_time:{pre['eval_time_ms']}ms")
        log(f"pre_quant_post_ema_exact val_loss:{pre['val_loss']:.8f} val_bpb:{pre['val_bpb']:.8f}")
        outside["final_val"] = now() - t_part
        log("outside_timed_window " + " ".join(f"{k}:{v:.1f}s" for k, v in outside.items()))
        return {
            "seed": self.seed,
            "steps": step,
            "stopped_early": run["stopped_early"],
            "train_time_ms": round(elapsed_ms, 1),
            "step_avg_ms": round(elapsed_ms / max(step, 1), 3),
            "tokens_seen": step * cfg.batch_tokens,
            "model_params": count_params(base),
            "world_size": dist.world_size,
            "attention": attention_backend(dist.device),
            "late_qat_step": run["qat_step"],
            "final_train_loss": curve[-1][1] if curve else None,
            "init_val_bpb": init["val_bpb"],
            "pre_quant_val_loss": pre["val_loss"],
            "pre_quant_val_bpb": pre["val_bpb"],
            "loss_curve": curve,
            "device": dist.device.type,
            "torch_version": torch.__version__,
            "outside_timed_window_s": {k: round(v, 2) for k, v in outside.items()},
        }


def train(cfg: TrainConfig, model_cfg: GPTConfig, manifest: dict, seed: int, dist: Dist, log: RunLog) -> tuple[GPT, dict]:
    """Trains one seed: setup, warm-up and restore, the untrained score, the timed loop, EMA."""
    trainer = Trainer(cfg, model_cfg, manifest, seed, dist, log)
    trainer.warm_up_and_restore()
    t_part = now()
    init = trainer.validate(0, 0.0)  # the untrained model's score, the floor every record must clear
    trainer.outside["pre_val"] = now() - t_part
    run = trainer.timed_loop()
    return trainer.base, trainer.finish(run, init)


def train_main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train one seed of the reference GPT.")
    ap.add_argument("--hparams", required=True, help="JSON file: the config's train block")
    ap.add_argument("--data", required=True, help="data manifest.json")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out-dir", required=True)
    args = ap.parse_args(argv)
    # The day the run started dates its record folder (pgolf.record.run_date), not the day it is assembled.
    started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    hp = load_hparams(args.hparams)
    manifest = read_manifest(args.data)
    dist = Dist(hp.get("device", "auto"))
    log = RunLog(dist.rank)
    log_environment(log)
    model_block = {**hp["model"], "vocab_size": manifest["tokenizer"]["vocab_size"]}
    model_cfg = model_config(model_block)  # FrontierConfig when the block holds one of its keys
    model, metrics = train(settings_from(TrainConfig, hp), model_cfg, manifest, args.seed, dist, log)
    if dist.is_main:
        os.makedirs(args.out_dir, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        write_bytes_atomic(os.path.join(args.out_dir, "model.pt"), torch_bytes({"config": model_cfg.to_dict(), "state_dict": state}))
        write_json_atomic(os.path.join(args.out_dir, "train.json"), {**metrics, "started_utc": started})
    dist.barrier()
    dist.close()


if __name__ == "__main__":
    run_main(train_main)
