"""The reference GPT: a small U-Net-skipped transformer in the PR #1303/#1313 family.

Present: RMSNorm without weights, grouped-query attention with RMS-normed q/k and a learned
per-head query gain, partial rotary embeddings, LeakyReLU(0.5)^2 MLP, residual mixing with the
embedding stream x0, layer-norm scale 1/sqrt(layer+1), U-Net skips (first half stores, second
half adds), tied embeddings and a tanh logit softcap. Not yet: XSA, VRL, value embeddings,
BigramHash, SmearGate (tracked in the model-fidelity issue).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


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
    qk_gain_init: float = 4.0
    logit_softcap: float = 30.0
    tied_embed_init_std: float = 0.005
    ln_scale: bool = True
    unet_skips: bool = True


    def to_dict(self) -> dict:
        return asdict(self)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.size(-1),))


class Rotary(nn.Module):
    """Rotary position embedding applied to the first `dims` features of each head."""

    def __init__(self, dims: int, base: float):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dims, 2, dtype=torch.float32) / dims))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, H, T, hd]
        if self.dims == 0:
            return x
        t = torch.arange(x.size(-2), device=x.device, dtype=torch.float32)
        freqs = torch.outer(t, self.inv_freq)
        cos, sin = freqs.cos().to(x.dtype), freqs.sin().to(x.dtype)
        rot, rest = x[..., : self.dims], x[..., self.dims :]
        a, b = rot[..., : self.dims // 2], rot[..., self.dims // 2 :]
        rotated = torch.cat((a * cos - b * sin, a * sin + b * cos), dim=-1)
        return torch.cat((rotated, rest), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads = cfg.num_heads, cfg.num_kv_heads
        self.head_dim = cfg.model_dim // cfg.num_heads
        kv_dim = self.num_kv_heads * self.head_dim
        self.q = nn.Linear(cfg.model_dim, cfg.model_dim, bias=False)
        self.k = nn.Linear(cfg.model_dim, kv_dim, bias=False)
        self.v = nn.Linear(cfg.model_dim, kv_dim, bias=False)
        self.proj = nn.Linear(cfg.model_dim, cfg.model_dim, bias=False)
        self.proj.zero_init = True
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), cfg.qk_gain_init))
        self.rotary = Rotary(min(cfg.rope_dims, self.head_dim), cfg.rope_base)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q = self.q(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        # Normalising q and k bounds the logits; the learned gain sets their temperature per head.
        q = self.rotary(rms_norm(q)) * self.q_gain.to(q.dtype)[None, :, None, None]
        k = self.rotary(rms_norm(k))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.num_kv_heads != self.num_heads
        )
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        hidden = int(cfg.mlp_mult * cfg.model_dim)
        self.up = nn.Linear(cfg.model_dim, hidden, bias=False)
        self.down = nn.Linear(hidden, cfg.model_dim, bias=False)
        self.down.zero_init = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.leaky_relu(self.up(x), 0.5).square())


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig, layer: int):
        super().__init__()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)
        dim = cfg.model_dim
        self.attn_scale = nn.Parameter(torch.ones(dim))
        self.mlp_scale = nn.Parameter(torch.ones(dim))
        # resid_mix[0] weighs the running stream, resid_mix[1] the embedding stream x0.
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))))
        self.norm_scale = 1.0 / math.sqrt(layer + 1) if cfg.ln_scale else 1.0

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(rms_norm(x) * self.norm_scale)
        return x + self.mlp_scale.to(x.dtype) * self.mlp(rms_norm(x) * self.norm_scale)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.model_dim % cfg.num_heads or cfg.num_heads % cfg.num_kv_heads:
            raise ValueError("model_dim must divide by num_heads, and num_heads by num_kv_heads")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.num_layers))
        self.num_encoder = cfg.num_layers // 2 if cfg.unet_skips else 0
        self.num_decoder = cfg.num_layers - self.num_encoder
        self.skip_weights = nn.Parameter(torch.ones(min(self.num_encoder, self.num_decoder), cfg.model_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.tok_emb.weight, std=self.cfg.tied_embed_init_std)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                if getattr(m, "zero_init", False):
                    nn.init.zeros_(m.weight)
                else:
                    nn.init.orthogonal_(m.weight)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """Final normalised hidden states [B, T, D]: everything but the output head."""
        x0 = rms_norm(self.tok_emb(ids))
        x, skips = x0, []
        for i, block in enumerate(self.blocks):
            if i >= self.num_encoder and skips:
                x = x + self.skip_weights[i - self.num_encoder].to(x.dtype) * skips.pop()
            x = block(x, x0)
            if i < self.num_encoder:
                skips.append(x)
        return rms_norm(x)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        z = F.linear(h, self.tok_emb.weight.to(h.dtype)).float()
        cap = self.cfg.logit_softcap
        return cap * torch.tanh(z / cap)

    def token_nll(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood (nats) of each target, shape [B, T], computed in fp32."""
        logits = self.logits(self.hidden(ids))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)

    def forward(self, ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.token_nll(ids, targets).mean()


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
