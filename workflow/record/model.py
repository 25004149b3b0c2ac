"""The reference GPT: the PR #1303/#1313 model, every feature switchable for small CPU shapes.

Input: token embedding + BigramHash embedding -> RMSNorm -> SmearGate = x0.
Blocks: x_in = m0*x + m1*x0; x += attn_scale * Attn(norm(x_in) * s_l); x += mlp_scale * MLP(norm(x) * s_l),
with s_l = 1/sqrt(layer+1). Attention: GQA with RMS-normed q/k, a learned per-head query gain,
partial RoPE, value residual (VRL: each layer's values mix in layer 0's), value embeddings added in
chosen layers, and XSA (each head's output loses its component along its own value vector).
The first half of the layers stores skips that the second half adds back (U-Net). Head: RMSNorm,
tied embedding, logits = cap * tanh(z / cap).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


@dataclass
class GPTConfig:
    vocab_size: int = 1024
    num_layers: int = 11
    model_dim: int = 512
    num_heads: int = 8
    num_kv_heads: int = 4
    mlp_mult: float = 3.0
    rope_dims: int = 16  # rotary on the first rope_dims of each head; the rest carry no position
    rope_base: float = 10000.0
    rope_train_seq_len: int = 1024  # longer sequences rescale the base (NTK-style), as #1313 does
    qk_gain_init: float = 4.0
    logit_softcap: float = 30.0
    tied_embed_init_std: float = 0.005
    ln_scale: bool = True
    unet_skips: bool = True
    xsa_last_n: int = 11  # XSA in the last n layers (0 = off)
    vrl: bool = True  # value residual in layers 1..L-1
    ve_layers: list = field(default_factory=lambda: [9, 10])  # value embeddings added in these layers
    ve_dim: int = 128
    bigram_vocab_size: int = 1024  # BigramHash buckets (0 = off)
    bigram_dim: int = 128
    smear_gate: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


# ----------------------------------------------------------------------------- attention backends


def _flash_attention_4():
    """flash-attn-4's CuTe kernels (SM90 forward and backward) as one torch custom op with its
    backward, so torch.compile treats it as a single opaque kernel. Causal, [B, T, H, D] in and
    out, k/v with fewer heads (GQA) taken as they are."""
    from flash_attn.cute.interface import _flash_attn_bwd, _flash_attn_fwd

    @torch.library.custom_op("pgolf::fa4_causal", mutates_args=())
    def fa4_causal(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, lse = _flash_attn_fwd(q, k, v, causal=True, return_lse=True)[:2]
        return out, lse

    @fa4_causal.register_fake
    def _(q, k, v):
        B, T, H, _ = q.shape
        return torch.empty_like(q), q.new_empty((B, H, T), dtype=torch.float32)

    @torch.library.custom_op("pgolf::fa4_causal_bwd", mutates_args=())
    def fa4_causal_bwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, dout: torch.Tensor, lse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dq, dk, dv = _flash_attn_bwd(q, k, v, out, dout, lse, causal=True)[:3]
        return dq, dk, dv

    @fa4_causal_bwd.register_fake
    def _(q, k, v, out, dout, lse):
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs, *output)

    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        return fa4_causal_bwd(q, k, v, out, dout.contiguous(), lse)

    fa4_causal.register_autograd(backward, setup_context=setup_context)
    return lambda q, k, v, causal=True: fa4_causal(q, k, v)[0]


def _load_flash_attention():
    """FlashAttention 3, else 2, else (opt-in, PGOLF_FA4=1) flash-attn-4's CuTe kernels, else None
    (PyTorch SDPA); which one ran is logged by the trainer. FA3 and FA2 have no wheel for the lent
    H200's torch 2.11 / CUDA 13, so those branches have never run there. flash-attn-4 4.0.0b36 did
    (carried with bench/carry_fa4.sh; bench/speed_vs_1313.py, one H200, 2026-12-02): training 605.8
    ms/step against 618.9 with cuDNN, 1.6 GB less peak memory; eval forward about 5% faster. But its
    import adds about 6 s to every process, and it is a pre-release, so it stays opt-in."""
    try:
        from flash_attn_interface import flash_attn_func

        return "flash_attn_3", flash_attn_func
    except ImportError:
        pass
    try:
        from flash_attn import flash_attn_func

        return "flash_attn_2", flash_attn_func
    except ImportError:
        pass
    if os.environ.get("PGOLF_FA4", "0") == "1":
        try:
            return "flash_attn_4", _flash_attention_4()
        except ImportError:
            pass
    return "sdpa", None


FLASH_NAME, FLASH_FUNC = _load_flash_attention()

# PyTorch SDPA kernel on GPU. "auto" (default) lets SDPA choose, with native GQA; "cudnn" forces
# cuDNN's fused attention (k/v heads expanded first), "flash" PyTorch's FlashAttention 2. All three
# compute the same function. Measured on one H200 (bench/speed_vs_1313.py, 2026-12-01): training
# 616 ms/step cudnn (+1.6 GB peak for the expanded k/v), 708 flash, 623 auto (perf-notes), so auto
# stays. PGOLF_SDPA_BACKEND picks one for benchmarks.
SDPA_BACKENDS = ("auto", "cudnn", "flash")
SDPA_BACKEND = os.environ.get("PGOLF_SDPA_BACKEND", "auto")
if SDPA_BACKEND not in SDPA_BACKENDS:
    raise ValueError(f"PGOLF_SDPA_BACKEND={SDPA_BACKEND!r}: expected one of {', '.join(SDPA_BACKENDS)}")


def attention_backend(device: torch.device) -> str:
    if device.type != "cuda":
        return "sdpa"
    if FLASH_FUNC is not None:
        return FLASH_NAME
    return "sdpa" if SDPA_BACKEND == "auto" else f"sdpa_{SDPA_BACKEND}"


def expand_kv(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """[B, Hkv, T, D] -> [B, num_heads, T, D]: each k/v head repeated for the query heads it serves
    (query head h reads k/v head h // (num_heads / Hkv), as SDPA's enable_gqa does)."""
    return t.repeat_interleave(num_heads // t.size(1), dim=1)


def tail_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention of the last Tq positions' queries over all Tk keys: q [B, Tq, H, D], k and v
    [B, Tk, Hkv, D] -> [B, Tq, H, D], query i sitting at position Tk - Tq + i. An explicit mask,
    since SDPA's is_causal aligns a short query block with the first keys, not the last."""
    Tq, Tk = q.size(1), k.size(1)
    mask = torch.arange(Tk, device=q.device)[None, :] <= torch.arange(Tk - Tq, Tk, device=q.device)[:, None]
    q, k, v = q.transpose(1, 2), expand_kv(k.transpose(1, 2), q.size(2)), expand_kv(v.transpose(1, 2), q.size(2))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """q [B, T, H, D], k and v [B, T, Hkv, D] -> [B, T, H, D]; a q of fewer positions than k holds
    the last ones (tail_attention)."""
    if q.size(1) != k.size(1):
        return tail_attention(q, k, v)
    if FLASH_FUNC is not None and q.is_cuda:
        out = FLASH_FUNC(q, k, v, causal=True)
        return out[0] if isinstance(out, tuple) else out
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    if not q.is_cuda or SDPA_BACKEND == "auto":
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.size(1) != q.size(1))
        return y.transpose(1, 2)
    if SDPA_BACKEND == "cudnn":  # cuDNN's kernel wants as many k/v heads as query heads
        k, v = expand_kv(k, q.size(1)), expand_kv(v, q.size(1))
    backend = SDPBackend.CUDNN_ATTENTION if SDPA_BACKEND == "cudnn" else SDPBackend.FLASH_ATTENTION
    with sdpa_kernel(backend):
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=k.size(1) != q.size(1))
    return y.transpose(1, 2)


# ----------------------------------------------------------------------------- layers


class QATLinear(nn.Linear):
    """A bias-free linear layer that can train through int-k fake quantization (late QAT).

    With qat_bits set, the forward pass uses per-row symmetric quantized weights (scale = row max /
    qmax) and the straight-through estimator passes gradients to the float weights unchanged.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__(in_features, out_features, bias=False)
        self.qat_bits = 0

    def weight_for(self, x: torch.Tensor) -> torch.Tensor:
        """The weight this layer multiplies x by: fake-quantized under QAT, in x's dtype."""
        w = self.weight
        if self.qat_bits:
            qmax = 2 ** (self.qat_bits - 1) - 1
            scale = (w.detach().abs().amax(dim=1, keepdim=True) / qmax).clamp_min(1e-12)
            wq = torch.clamp(torch.round(w / scale), -qmax - 1, qmax) * scale
            w = w + (wq - w).detach()
        return w.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight_for(x))


class Rotary(nn.Module):
    """Rotary position embedding on the first `dims` features of each head ([B, T, H, D] inputs)."""

    def __init__(self, dims: int, base: float, train_seq_len: int):
        super().__init__()
        self.dims, self.base, self.train_seq_len = dims, base, train_seq_len

    def forward(self, x: torch.Tensor, seq_len: int = 0) -> torch.Tensor:
        """x holds the last x.size(1) positions of a sequence of seq_len (default: all of it)."""
        if self.dims == 0:
            return x
        T, d = seq_len or x.size(1), self.dims
        base = self.base
        if T > self.train_seq_len:  # stretch the wavelengths to cover the longer context
            base = base * (T / self.train_seq_len) ** (d / (d - 2))
        inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d))
        freqs = torch.outer(torch.arange(T - x.size(1), T, device=x.device, dtype=torch.float32), inv_freq)
        cos, sin = freqs.cos()[None, :, None, :].to(x.dtype), freqs.sin()[None, :, None, :].to(x.dtype)
        rot, rest = x[..., :d], x[..., d:]
        a, b = rot[..., : d // 2], rot[..., d // 2 :]
        return torch.cat((a * cos + b * sin, b * cos - a * sin, rest), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim = cfg.model_dim // cfg.num_heads
        kv_dim = self.num_kv_heads * self.head_dim
        self.q = QATLinear(cfg.model_dim, cfg.model_dim)
        self.k = QATLinear(cfg.model_dim, kv_dim)
        self.v = QATLinear(cfg.model_dim, kv_dim)
        self.proj = QATLinear(cfg.model_dim, cfg.model_dim)
        self.proj.zero_init = True
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init))
        self.rotary = Rotary(min(cfg.rope_dims, self.head_dim), cfg.rope_base, cfg.rope_train_seq_len)
        self.xsa = layer >= cfg.num_layers - cfg.xsa_last_n
        # Value residual: sigmoid(gate) of layer 0's values is mixed into this layer's.
        self.vrl_gate = nn.Parameter(torch.tensor(-1.5)) if cfg.vrl and layer > 0 else None

    def forward(self, x: torch.Tensor, v_embed: torch.Tensor | None, v_first: torch.Tensor | None, tail: int = 0):
        """Returns (output, this layer's raw values before any mixing). tail > 0: the output at the
        last `tail` positions only (their queries attend to every position's keys and values)."""
        y, v_raw = self.heads(x, v_embed, v_first, tail, causal_attention)
        return self.proj(y.reshape(*y.shape[:2], -1)), v_raw

    def heads(self, x: torch.Tensor, v_embed, v_first, tail: int, attend):
        """Each head's output (B, Tq, H, D) and the raw values; attend(q, k, v) is the attention
        kernel (causal here; frontier.py passes its document-masked one)."""
        B, T, _ = x.shape
        xq = x[:, -tail:] if tail else x
        Tq = xq.size(1)
        q = self.q(xq).view(B, Tq, self.num_heads, self.head_dim)
        k = self.k(x).view(B, T, self.num_kv_heads, self.head_dim)
        v_raw = self.v(x)
        v = v_raw if v_embed is None else v_raw + v_embed
        if self.vrl_gate is not None and v_first is not None:
            g = torch.sigmoid(self.vrl_gate.to(v.dtype))
            v = (1 - g) * v + g * v_first
        v = v.view(B, T, self.num_kv_heads, self.head_dim)
        # Normalising q and k bounds the logits; the learned gain sets their temperature per head.
        q = self.rotary(rms_norm(q), T) * self.q_gain.to(q.dtype)[None, None, :, None]
        k = self.rotary(rms_norm(k))
        y = attend(q, k, v)
        if self.xsa:
            y = self._remove_self_value(y, v[:, T - Tq :])
        return y, v_raw

    def _remove_self_value(self, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """XSA: drop from each head's output its projection on its own position's (unit) value."""
        B, T, H, D = y.shape
        y = y.reshape(B, T, self.num_kv_heads, H // self.num_kv_heads, D)
        v_hat = F.normalize(v, dim=-1).unsqueeze(-2)
        y = y - (y * v_hat).sum(-1, keepdim=True) * v_hat
        return y.reshape(B, T, H, D)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = int(cfg.mlp_mult * cfg.model_dim)
        self.up = QATLinear(cfg.model_dim, hidden)
        self.down = QATLinear(hidden, cfg.model_dim)
        self.down.zero_init = True

    # In training with train.fused_mlp on, train.py sets this to kernels.leaky_square_mlp (the up
    # projection and activation as Triton kernels); None, or in eval mode: the plain layers.
    train_mlp = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.train_mlp is not None and self.training:
            return self.train_mlp(x, self.up.weight_for(x), self.down.weight_for(x))
        return self.down(F.leaky_relu(self.up(x), 0.5).square())


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg)
        dim = cfg.model_dim
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        # resid_mix[0] weighs the running stream, resid_mix[1] the embedding stream x0.
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))
        # A tensor, not a float: compiled one block at a time, every layer then shares one graph
        # (a float differing per layer would be a constant of each layer's own compile). Not
        # saved: it follows from the layer index.
        self.register_buffer("norm_scale", torch.tensor(1.0 / math.sqrt(layer + 1) if cfg.ln_scale else 1.0), persistent=False)

    def scaled_norm(self, x: torch.Tensor) -> torch.Tensor:
        # In fp32 and rounded once, as a bf16 tensor times a Python float is.
        return (rms_norm(x).float() * self.norm_scale).to(x.dtype)

    def forward(self, x, x0, v_embed=None, v_first=None, tail: int = 0):
        """tail > 0: the block's output at the last `tail` positions only."""
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        a, v_raw = self.attn(self.scaled_norm(x), v_embed, v_first, tail)
        if tail:
            x = x[:, -tail:]
        x = x + self.attn_scale.to(x.dtype) * a
        return x + self.mlp_scale.to(x.dtype) * self.mlp(self.scaled_norm(x)), v_raw


class BigramHash(nn.Module):
    """An embedding of the (previous, current) token pair, hashed into a small table."""

    def __init__(self, buckets: int, dim: int, model_dim: int):
        super().__init__()
        self.buckets = buckets
        self.table = nn.Embedding(buckets, dim)
        self.proj = QATLinear(dim, model_dim) if dim != model_dim else None
        self.scale = nn.Parameter(torch.tensor(0.05))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.to(torch.int32)
        mod = self.buckets - 1
        h = torch.full_like(t, mod)  # position 0 has no previous token: its own bucket
        h[..., 1:] = torch.bitwise_xor(36313 * t[..., 1:], 27191 * t[..., :-1]) % mod
        e = self.table(h.long())
        return (self.proj(e) if self.proj is not None else e) * self.scale.to(e.dtype)


class ValueEmbedding(nn.Module):
    """A second token embedding, projected to the value width and added to V in a few layers."""

    def __init__(self, vocab_size: int, dim: int, kv_dim: int, layers: list[int]):
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim)
        self.proj = QATLinear(dim, kv_dim) if dim != kv_dim else None
        self.scale = nn.Parameter(torch.tensor(0.1))
        self.layer_scales = nn.Parameter(torch.ones(len(layers)))
        self.slot = {layer: i for i, layer in enumerate(layers)}

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        e = self.table(ids)
        return (self.proj(e) if self.proj is not None else e) * self.scale.to(e.dtype)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.model_dim % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
            raise ValueError("model_dim must divide by num_heads, and num_heads by num_kv_heads")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.bigram = BigramHash(cfg.bigram_vocab_size, cfg.bigram_dim, cfg.model_dim) if cfg.bigram_vocab_size else None
        self.smear = nn.Parameter(torch.zeros(cfg.model_dim)) if cfg.smear_gate else None
        kv_dim = cfg.num_kv_heads * (cfg.model_dim // cfg.num_heads)
        ve_layers = [i for i in cfg.ve_layers if i < cfg.num_layers]
        self.value_emb = ValueEmbedding(cfg.vocab_size, cfg.ve_dim, kv_dim, ve_layers) if ve_layers else None
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.num_encoder = cfg.num_layers // 2 if cfg.unet_skips else 0
        self.num_decoder = cfg.num_layers - self.num_encoder
        self.skip_weights = nn.Parameter(torch.ones(min(self.num_encoder, self.num_decoder), cfg.model_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        """Tiny tied embedding; orthogonal matrices (the small side projections scaled by 1/sqrt(2L));
        zero output projections so every block starts as the identity; zero BigramHash table."""
        nn.init.normal_(self.tok_emb.weight, std=self.cfg.tied_embed_init_std)
        side_scale = 1.0 / math.sqrt(2 * self.cfg.num_layers)
        for name, m in self.named_modules():
            if not isinstance(m, nn.Linear):
                continue
            if getattr(m, "zero_init", False):
                nn.init.zeros_(m.weight)
            elif min(m.weight.shape) >= 64:
                nn.init.orthogonal_(m.weight)
                if name.endswith(".proj"):  # BigramHash / value-embedding projections
                    with torch.no_grad():
                        m.weight.mul_(side_scale)
        if self.bigram is not None:
            nn.init.zeros_(self.bigram.table.weight)
        if self.value_emb is not None:
            nn.init.normal_(self.value_emb.table.weight, std=0.01)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tok_emb(ids)
        if self.bigram is not None:
            x = x + self.bigram(ids)
        x = rms_norm(x)
        if self.smear is not None:  # blend each position with the previous one, per channel
            g = torch.sigmoid(self.smear.to(x.dtype))
            x = (1 - g) * x + g * F.pad(x[:, :-1], (0, 0, 1, 0))
        if torch.is_autocast_enabled(x.device.type):
            # The residual stream runs in the autocast dtype (bf16 on GPU), as in #1313, whose
            # embeddings are bf16 tensors; the weights here stay fp32 for the optimizers.
            x = x.to(torch.get_autocast_dtype(x.device.type))
        return x

    def hidden(self, ids: torch.Tensor, tail: int = 0) -> torch.Tensor:
        """Final normalised hidden states [B, T, D]: everything but the output head.

        tail > 0: those of the last `tail` positions only, [B, tail, D], the same values as
        hidden(ids)[:, -tail:]. Every layer but the last still runs on all positions (the next
        layer's keys and values need them); the last computes its queries, attention output and MLP
        for the tail alone, which saves nearly one layer in num_layers when a sliding window scores
        only its last `stride` targets.
        """
        tail = tail if 0 < tail < ids.size(1) else 0
        x0 = self.embed(ids)
        ve = self.value_emb(ids) if self.value_emb is not None else None
        x, skips, v_first = x0, [], None
        for i, block in enumerate(self.blocks):
            if i >= self.num_encoder and skips:
                x = x + self.skip_weights[i - self.num_encoder].to(x.dtype) * skips.pop()
            v_embed = None
            if ve is not None and i in self.value_emb.slot:
                v_embed = ve * self.value_emb.layer_scales[self.value_emb.slot[i]].to(ve.dtype)
            x, v_raw = block(x, x0, v_embed, v_first, tail if i == len(self.blocks) - 1 else 0)
            if i == 0 and self.cfg.vrl:
                v_first = v_raw
            if i < self.num_encoder:
                skips.append(x)
        return rms_norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        z = F.linear(h, self.tok_emb.weight.to(h.dtype)).float()
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(z / cap)

    def nll_from_hidden(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(h).flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)

    def token_nll(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (nats) of each target, shape [B, T], computed in fp32."""
        return self.nll_from_hidden(self.hidden(ids), targets)

    # The training loss's softcapped cross-entropy when train.fused_ce is on (train.py sets it to
    # kernels.softcap_ce); None: the plain logits + F.cross_entropy, which evaluation always uses.
    train_ce = None

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.train_ce is None:
            return self.token_nll(ids, targets).mean()
        h = self.hidden(ids)
        z = F.linear(h, self.tok_emb.weight.to(h.dtype))
        return self.train_ce(z.flatten(0, 1), targets.flatten(), self.cfg.logit_softcap).mean()

    def set_qat(self, bits: int) -> None:
        """Late QAT: every matrix trains through int-`bits` fake quantization from now on (0 = off)."""
        for m in self.modules():
            if isinstance(m, QATLinear):
                m.qat_bits = bits


def compile_regions(model: GPT, **compile_kw) -> None:
    """torch.compile one region at a time: each block, the embedding and the head+loss. Blocks that
    differ only in their weights share one compiled graph (three graphs for the preset's eleven
    blocks: layer 0, the plain ones, the value-embedding ones), so compiling costs a fraction of
    one whole-model graph; the U-Net skip additions between blocks run uncompiled."""
    compile_kw.setdefault("dynamic", False)
    for block in model.blocks:
        block.compile(**compile_kw)
    model.embed = torch.compile(model.embed, **compile_kw)
    model.nll_from_hidden = torch.compile(model.nll_from_hidden, **compile_kw)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
