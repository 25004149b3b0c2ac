"""FA3's two entry points as the records call them, on PyTorch SDPA (tests only).

Layouts as FA3's: flash_attn_func takes [batch, seq, heads, dim]; flash_attn_varlen_func takes the
sequences packed along dim 0, [total, heads, dim], with cu_seqlens the segment boundaries.
Fewer key/value heads than query heads (GQA) are repeated to match.
"""

import torch
import torch.nn.functional as F


def _sdpa(q, k, v, causal):
    """[B, T, H, D] in and out."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if k.size(1) != q.size(1):
        k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
        v = v.repeat_interleave(q.size(1) // v.size(1), dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2)


def flash_attn_func(q, k, v, causal=True, **_ignored):
    return _sdpa(q, k, v, causal).contiguous()


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q=0, max_seqlen_k=0, causal=True, **_ignored):
    bounds = cu_seqlens_q.tolist()
    assert bounds == cu_seqlens_k.tolist(), "stand-in: query and key segments must match"
    parts = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            parts.append(_sdpa(q[None, a:b], k[None, a:b], v[None, a:b], causal)[0])
    out = torch.cat(parts, dim=0) if parts else q.new_empty((0, *q.shape[1:]))
    if out.size(0) < q.size(0):  # positions past the last boundary: FA3 leaves them unwritten
        out = torch.cat((out, q.new_zeros((q.size(0) - out.size(0), *q.shape[1:]))), dim=0)
    return out
