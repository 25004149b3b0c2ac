"""Stand-in for FlashAttention 3's `flash_attn_interface` where it is not installed (bench only).

PR #549's train_gpt.py imports `flash_attn_func` from it unconditionally. This one computes the
same causal attention with PyTorch's scaled_dot_product_attention: inputs and output are laid
out [batch, seq, heads, head_dim] as FA3's are; fewer key/value heads than query heads (GQA) are
repeated to match. Numbers differ from FA3 only by kernel rounding; speed is SDPA's, not FA3's.
"""

import torch.nn.functional as F

STANDIN = True


def flash_attn_func(q, k, v, causal=True, **_ignored):
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # -> [batch, heads, seq, head_dim]
    if k.size(1) != q.size(1):
        repeat = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(repeat, dim=1), v.repeat_interleave(repeat, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2).contiguous()
