"""Fused training kernels (Triton), each behind a train key that is off by default.

train.fused_ce: the training loss's softcapped cross-entropy in one Triton pass per row, as the
1.0611 record trains (its FUSED_CE_ENABLED). Per row r of the pre-cap logits z [N, V]:
    loss[r] = logsumexp(y[r]) - y[r, target[r]],   y = cap * tanh(z / cap),
with y never written to memory: the forward keeps only each row's log-sum-exp, and the backward
recomputes y from z. All arithmetic is fp32 whatever the logits' dtype (bf16, fp16 or fp32); the
gradient is stored in the logits' dtype. The plain path (softcap_ce_plain: the model's own softcap
then F.cross_entropy) is what runs on CPU, without Triton, and for every evaluation number.

train.fused_mlp: in training, the MLP's up projection and leaky_relu(h, 0.5)^2 as one Triton matmul
kernel (keeping h for the backward), and in the backward the down projection's input gradient times
the activation's derivative as another; the down projection and the weight gradients stay torch
matmuls. The plain path (leaky_square_plain) is the model's own layers.

This module is bundled into train_gpt.py only when a key of its own is on
(pgolf.bundle.OPTIONAL_TRAIN_MODULES); tests/test_kernels.py checks the plain path against the
record's non-fused code and the kernels against the plain path (CPU, Triton's interpreter), and
bench/kernels_gpu.py compares and times them on a GPU.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the plain path only
    triton = None

CE_BLOCK = 1024  # vocab columns per inner step of the kernels (a power of two)
# Triton's CPU interpreter (tests only) gets bf16 tl.dot wrong (seen with 3.x): the MLP kernel feeds it fp32 there.
_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"


def softcap_ce_plain(z: torch.Tensor, targets: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-row loss [N] of logits z [N, V]: the model's softcap (fp32) then F.cross_entropy."""
    z = z.float()
    return F.cross_entropy(cap * torch.tanh(z / cap), targets, reduction="none")


if triton is not None:

    @triton.jit
    def _capped(x, cap):
        # cap * tanh(x / cap) through the sigmoid (tanh(u) = 2 * sigmoid(2u) - 1); also returns
        # t = tanh(x / cap), whose 1 - t^2 is the cap's derivative.
        t = 2.0 * tl.sigmoid(x * (2.0 / cap)) - 1.0
        return cap * t, t

    @triton.jit
    def _ce_forward(z_ptr, tgt_ptr, loss_ptr, lse_ptr, n_vocab, row_stride, cap, BLOCK: tl.constexpr):
        row = tl.program_id(0).to(tl.int64)
        base = z_ptr + row * row_stride
        offs = tl.arange(0, BLOCK)
        # Running max m and sum s of exp(y - m) over the row, one block of columns at a time.
        m = tl.full((), -float("inf"), tl.float32)
        s = tl.zeros((), tl.float32)
        for start in range(0, n_vocab, BLOCK):
            cols = start + offs
            inside = cols < n_vocab
            x = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
            y, _t = _capped(x, cap)
            y = tl.where(inside, y, -float("inf"))
            m_new = tl.maximum(m, tl.max(y, 0))
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(y - m_new), 0)
            m = m_new
        lse = m + tl.log(s)
        tgt = tl.load(tgt_ptr + row)
        y_t, _t = _capped(tl.load(base + tgt).to(tl.float32), cap)
        tl.store(lse_ptr + row, lse)
        tl.store(loss_ptr + row, lse - y_t)

    @triton.jit
    def _ce_backward(z_ptr, tgt_ptr, lse_ptr, dloss_ptr, dz_ptr, n_vocab, row_stride, dz_row_stride, cap,
                     BLOCK: tl.constexpr):
        # d loss / d z[c] = dloss * (softmax(y)[c] - [c == target]) * (1 - tanh(z[c] / cap)^2)
        row = tl.program_id(0).to(tl.int64)
        base = z_ptr + row * row_stride
        out = dz_ptr + row * dz_row_stride
        offs = tl.arange(0, BLOCK)
        lse = tl.load(lse_ptr + row)
        g = tl.load(dloss_ptr + row).to(tl.float32)
        tgt = tl.load(tgt_ptr + row)
        for start in range(0, n_vocab, BLOCK):
            cols = start + offs
            inside = cols < n_vocab
            x = tl.load(base + cols, mask=inside, other=0.0).to(tl.float32)
            y, t = _capped(x, cap)
            p = tl.exp(y - lse) - tl.where(cols == tgt, 1.0, 0.0)
            dz = g * p * (1.0 - t * t)
            tl.store(out + cols, dz.to(dz_ptr.dtype.element_ty), mask=inside)


class SoftcapCE(torch.autograd.Function):
    """The Triton path: per-row loss [N] of z [N, V] (any float dtype) and integer targets [N]."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, targets: torch.Tensor, cap: float, block: int = CE_BLOCK):
        z = z.contiguous()
        targets = targets.contiguous().long()
        n, v = z.shape
        loss = torch.empty(n, device=z.device, dtype=torch.float32)
        lse = torch.empty_like(loss)
        _ce_forward[(n,)](z, targets, loss, lse, v, z.stride(0), float(cap), BLOCK=block)
        ctx.save_for_backward(z, targets, lse)
        ctx.cap, ctx.block = float(cap), block
        return loss

    @staticmethod
    def backward(ctx, dloss: torch.Tensor):
        z, targets, lse = ctx.saved_tensors
        dloss = dloss.contiguous().float()
        dz = torch.empty_like(z)
        n, v = z.shape
        _ce_backward[(n,)](z, targets, lse, dloss, dz, v, z.stride(0), dz.stride(0), ctx.cap, BLOCK=ctx.block)
        return dz, None, None, None


MLP_BLOCKS = (128, 128, 64)  # (rows, columns, reduction) per program of the MLP kernel on a GPU


def leaky_square_plain(x: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """The MLP as the model computes it: down(leaky_relu(up(x), 0.5)^2), weights already in x's dtype."""
    return F.linear(F.leaky_relu(F.linear(x, w_up), 0.5).square(), w_down)


if triton is not None:

    @triton.jit
    def _mm_leaky_square(a_ptr, b_ptr, out_ptr, aux_ptr, M, N, K, s_am, s_ak, s_bk, s_bn,
                         BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, BACKWARD: tl.constexpr, UPCAST: tl.constexpr):
        # acc = A [M, K] @ B [K, N] (B addressed through strides, so a transpose costs nothing), in fp32.
        # Forward: out = acc (the pre-activation h, in out's dtype) and aux = leaky_relu(h, 0.5)^2
        # computed from h as stored. Backward: aux holds h; out = acc * d/dh leaky_relu(h, 0.5)^2,
        # which is 2h where h > 0 and h / 2 elsewhere.
        rows = tl.program_id(0) * BM + tl.arange(0, BM)
        cols = tl.program_id(1) * BN + tl.arange(0, BN)
        ks = tl.arange(0, BK)
        acc = tl.zeros((BM, BN), tl.float32)
        for k0 in range(0, K, BK):
            kk = k0 + ks
            a = tl.load(a_ptr + rows[:, None] * s_am + kk[None, :] * s_ak, mask=(rows[:, None] < M) & (kk[None, :] < K), other=0.0)
            b = tl.load(b_ptr + kk[:, None] * s_bk + cols[None, :] * s_bn, mask=(kk[:, None] < K) & (cols[None, :] < N), other=0.0)
            if UPCAST:  # only in the interpreter: see _INTERPRETED
                a = a.to(tl.float32)
                b = b.to(tl.float32)
            acc = tl.dot(a, b, acc)
        where = rows[:, None] * N + cols[None, :]
        inside = (rows[:, None] < M) & (cols[None, :] < N)
        kind = out_ptr.dtype.element_ty
        if BACKWARD:
            h = tl.load(aux_ptr + where, mask=inside, other=0.0).to(tl.float32)
            g = acc.to(kind).to(tl.float32)  # the incoming gradient as the plain path rounds it
            tl.store(out_ptr + where, (g * tl.where(h > 0, 2.0 * h, 0.5 * h)).to(kind), mask=inside)
        else:
            h = acc.to(kind)
            tl.store(out_ptr + where, h, mask=inside)
            hf = h.to(tl.float32)
            leaky = tl.where(hf > 0, hf, 0.5 * hf).to(kind).to(tl.float32)
            tl.store(aux_ptr + where, (leaky * leaky).to(kind), mask=inside)

    def _launch_mm(a, b_kn_strides, n, out, aux, backward, blocks):
        m, k = a.shape
        bm, bn, bk = blocks
        b, s_bk, s_bn = b_kn_strides
        _mm_leaky_square[(triton.cdiv(m, bm), triton.cdiv(n, bn))](
            a, b, out, aux, m, n, k, a.stride(0), a.stride(1), s_bk, s_bn, BM=bm, BN=bn, BK=bk, BACKWARD=backward,
            UPCAST=_INTERPRETED)


class LeakySquareMLP(torch.autograd.Function):
    """The Triton path of the MLP: x [..., D], w_up [H, D], w_down [D, H], all one dtype. The up
    projection and the activation are one kernel (keeping the pre-activation h for the backward);
    in the backward the down projection's input gradient and the activation's derivative are one."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, blocks: tuple = MLP_BLOCKS):
        x2 = x.reshape(-1, x.shape[-1]).contiguous()
        hidden = w_up.shape[0]
        h = torch.empty(x2.shape[0], hidden, device=x.device, dtype=x.dtype)
        act = torch.empty_like(h)
        _launch_mm(x2, (w_up, w_up.stride(1), w_up.stride(0)), hidden, h, act, False, blocks)
        ctx.save_for_backward(x2, w_up, w_down, h, act)
        ctx.blocks = blocks
        return F.linear(act, w_down).view(*x.shape[:-1], w_down.shape[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x2, w_up, w_down, h, act = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1]).contiguous()
        dh = torch.empty_like(h)
        _launch_mm(g, (w_down, w_down.stride(0), w_down.stride(1)), h.shape[1], dh, h, True, ctx.blocks)
        dx = (dh @ w_up).view(*grad.shape[:-1], w_up.shape[1])
        return dx, dh.T @ x2, g.T @ act, None


def fused_mlp_available(device: torch.device) -> bool:
    return triton is not None and torch.device(device).type == "cuda"


def leaky_square_mlp(x: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """The MLP in training: the Triton kernels on CUDA with Triton, else the plain path."""
    if fused_mlp_available(x.device):
        return LeakySquareMLP.apply(x, w_up, w_down)
    return leaky_square_plain(x, w_up, w_down)


def fused_ce_available(device: torch.device) -> bool:
    return triton is not None and torch.device(device).type == "cuda"


def softcap_ce(z: torch.Tensor, targets: torch.Tensor, cap: float) -> torch.Tensor:
    """Per-row training loss: the Triton kernel on CUDA with Triton, else the plain path."""
    if fused_ce_available(z.device):
        return SoftcapCE.apply(z, targets, cap)
    return softcap_ce_plain(z, targets, cap)
