"""`flash_attn_interface` on PyTorch SDPA: byo's opt-in fallback (`byo.attention_fallback: sdpa`).

A record script that imports FlashAttention 3 runs with this folder first on PYTHONPATH when FA3
is missing. It gives the two calls the frontier scripts make, causal only:

- `flash_attn_func(q, k, v, causal=True)`: q [batch, seq, heads, dim], k/v [batch, seq,
  kv_heads, dim] (GQA when kv_heads < heads); returns [batch, seq, heads, dim];
- `flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
  causal=True)`: documents packed along dim 0 ([total, heads, dim]), `cu_seqlens` their int32
  boundaries; each document attends only within itself.

The varlen call is a custom op (opaque to torch.compile, so a `fullgraph=True` model still
compiles): forward loops over the documents with SDPA, backward recomputes them under autograd.
Numbers differ from FA3 by kernel rounding; speed is SDPA's. Nothing here is FA3's code.
"""

import torch
import torch.nn.functional as F

SDPA_FALLBACK = True  # what a script or a test can look for


def _sdpa(q, k, v, causal):
    # [batch, seq, heads, dim] -> SDPA's [batch, heads, seq, dim] and back.
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=k.size(1) != q.size(1))
    return out.transpose(1, 2)


def flash_attn_func(q, k, v, causal=False, **_ignored):
    return _sdpa(q, k, v, causal).contiguous()


def _varlen_eager(q, k, v, bounds, causal):
    out = torch.zeros_like(q)  # rows past the last boundary (padding) stay zero
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end > start:
            out[start:end] = _sdpa(q[None, start:end], k[None, start:end], v[None, start:end], causal)[0]
    return out


@torch.library.custom_op("pgolf_byo_sdpa::varlen_fwd", mutates_args=())
def _varlen_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, causal: bool) -> torch.Tensor:
    return _varlen_eager(q, k, v, cu_seqlens.tolist(), causal)


@_varlen_fwd.register_fake
def _(q, k, v, cu_seqlens, causal):
    return torch.empty_like(q)


@torch.library.custom_op("pgolf_byo_sdpa::varlen_bwd", mutates_args=())
def _varlen_bwd(grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, causal: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    bounds = cu_seqlens.tolist()
    # torch.func's own autodiff: plain autograd is switched off inside a custom op's kernel.
    _, pullback = torch.func.vjp(lambda a, b, c: _varlen_eager(a, b, c, bounds, causal), q, k, v)
    dq, dk, dv = pullback(grad)
    return dq.contiguous(), dk.contiguous(), dv.contiguous()


@_varlen_bwd.register_fake
def _(grad, q, k, v, cu_seqlens, causal):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup(ctx, inputs, output):
    q, k, v, cu_seqlens, causal = inputs
    ctx.save_for_backward(q, k, v, cu_seqlens)
    ctx.causal = causal


def _backward(ctx, grad):
    q, k, v, cu_seqlens = ctx.saved_tensors
    dq, dk, dv = _varlen_bwd(grad.contiguous(), q, k, v, cu_seqlens, ctx.causal)
    return dq, dk, dv, None, None


_varlen_fwd.register_autograd(_backward, setup_context=_setup)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=None, max_seqlen_k=None, causal=False, **_ignored):
    if not torch.compiler.is_compiling() and not torch.equal(cu_seqlens_q, cu_seqlens_k):
        raise ValueError("byo SDPA fallback: flash_attn_varlen_func needs cu_seqlens_q == cu_seqlens_k (self-attention)")
    return _varlen_fwd(q, k, v, cu_seqlens_q, bool(causal))
