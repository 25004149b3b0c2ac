"""A CPU stand-in for the two functions of flash-attn-4's interface that model.py wraps, in plain
math (causal only, GQA by repeating k/v heads; fp32 for low-precision inputs, fp64 kept): enough to
test the wrapper (the custom op, its fake for torch.compile, its backward) where the real CuTe
kernels cannot run."""

import torch


def _wide(t):
    return t.double() if t.dtype == torch.float64 else t.float()


def _heads(t, rep):  # [B, T, H, D] -> [B, H * rep, T, D]
    return _wide(t).transpose(1, 2).repeat_interleave(rep, 1)


def _scores(q, k):
    s = _heads(q, 1) @ _heads(k, q.size(2) // k.size(2)).mT / q.size(-1) ** 0.5
    T = q.size(1)
    return s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))


def _flash_attn_fwd(q, k, v, causal=False, return_lse=False, **_):
    assert causal
    s = _scores(q, k)
    out = torch.softmax(s, -1) @ _heads(v, q.size(2) // v.size(2))
    return out.transpose(1, 2).to(q.dtype).contiguous(), torch.logsumexp(s, -1).float(), None, None, None


def _flash_attn_bwd(q, k, v, out, dout, lse, causal=False, **_):
    rep = q.size(2) // k.size(2)
    p = torch.exp(_scores(q, k) - _wide(lse)[..., None])  # [B, H, T, T]
    do, o = _heads(dout, 1), _heads(out, 1)
    dv = p.mT @ do
    ds = p * (do @ _heads(v, rep).mT - (do * o).sum(-1, keepdim=True)) / q.size(-1) ** 0.5
    dq, dk = ds @ _heads(k, rep), ds.mT @ _heads(q, 1)

    def fold(t):  # the query heads' gradients summed onto the k/v head they read
        B, H, T, D = t.shape
        return t.view(B, H // rep, rep, T, D).sum(2).transpose(1, 2).to(k.dtype).contiguous()

    return dq.transpose(1, 2).to(q.dtype).contiguous(), fold(dk), fold(dv)
