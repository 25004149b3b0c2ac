"""The April frontier's model features on top of the reference GPT, each off by default.

Bundled into train_gpt.py only when train.model sets one of FrontierConfig's own keys (see
pgolf.bundle.OPTIONAL_MODULES); the plain GPT of model.py is what runs otherwise.

- Depth recurrence: blocks loop_start..loop_end run loop_passes times, either the range repeated
  (3,4,5,3,4,5: the 1.0611 record) or each block repeated in place (4,4,5,5: PR #1278), on from
  the fraction loop_from of training. The U-Net skips pair over this virtual depth. With
  loop_iter_embed (PR #1278) every repeated visit first adds a learned vector scaled by a
  per-channel sigmoid gate.
- Parallel residuals: from decoder block parallel_start_layer on, attention and MLP write two
  lanes; attention reads lane 0 (mixed with x0), the MLP reads lane 1, each lane keeps a learned
  multiple of itself plus learned multiples of both outputs; the final hidden state is the mean of
  the lanes (or one of them).
- Sigmoid-gated U-Net skips: x = lerp(w * skip, x, sigmoid(g)) instead of x + w * skip.
- Attention output gates on each head's output before the projection, fed by the first
  gate_window channels of the attention input: "sparse" sigmoid(scale * W x), "output" 2 sigmoid(W x).
- BOS SmearGate: each position's embedding adds lambda * sigmoid(W e_t[:gate_window]) times the
  previous position's, except at a BOS token (a document never reads the one before it).
- Document-isolated attention: a position attends only to earlier positions of its own document
  (documents start at BOS tokens), as the records' varlen FlashAttention does, here with SDPA and a
  block-diagonal causal mask (training and eval alike).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from model import GPT, Attention, GPTConfig, causal_attention, expand_kv, rms_norm
from runtime import UserError


@dataclass
class FrontierConfig(GPTConfig):
    parallel_start_layer: int = 0  # decoder blocks from this index run on two lanes (0 = off)
    parallel_final_lane: str = "mean"  # mean, attn or mlp: the hidden state the lanes end in
    skip_gates: bool = False  # sigmoid-gated U-Net skips
    attn_gate: str = "none"  # none, sparse or output
    attn_gate_scale: float = 1.0  # sparse gate: sigmoid(scale * W x)
    gate_window: int = 12  # input channels of the attention gates and the BOS SmearGate
    bos_smear_gate: bool = False
    bos_id: int = 1
    loop_start: int = 0
    loop_end: int = 0  # the looped blocks are loop_start..loop_end, both included
    loop_passes: int = 1  # times the looped blocks run (1 = no recurrence)
    loop_order: str = "range"  # range: 3,4,5,3,4,5; layer: 3,3,4,4,5,5
    loop_from: float = 0.0  # fraction of training from which the blocks loop (0 = from the start)
    loop_iter_embed: bool = False  # a gated learned vector added before every repeated visit
    doc_attention: bool = False  # attention stays inside each document (BOS to BOS)


FRONTIER_KEYS = tuple(f.name for f in fields(FrontierConfig) if f.name not in GPTConfig.__dataclass_fields__)


def uses_frontier(model_block: dict) -> bool:
    """True when a train.model block sets any key of this module (at whatever value)."""
    return any(k in model_block for k in FRONTIER_KEYS)


def virtual_layers(cfg: FrontierConfig, looping: bool = True) -> list[int]:
    """The block index run at each virtual depth."""
    n = cfg.num_layers
    if not looping or cfg.loop_passes <= 1:
        return list(range(n))
    seg = list(range(cfg.loop_start, cfg.loop_end + 1))
    mid = seg * cfg.loop_passes if cfg.loop_order == "range" else [i for i in seg for _ in range(cfg.loop_passes)]
    return list(range(cfg.loop_start)) + mid + list(range(cfg.loop_end + 1, n))


def check_frontier(cfg: FrontierConfig) -> None:
    """ValueError naming the key for settings the model cannot build."""
    if cfg.loop_passes > 1 and not 0 <= cfg.loop_start <= cfg.loop_end < cfg.num_layers:
        raise ValueError(f"loop_start {cfg.loop_start} .. loop_end {cfg.loop_end}: expected 0 <= start <= end < num_layers {cfg.num_layers}")
    for key, value, allowed in (
        ("loop_order", cfg.loop_order, ("range", "layer")),
        ("attn_gate", cfg.attn_gate, ("none", "sparse", "output")),
        ("parallel_final_lane", cfg.parallel_final_lane, ("mean", "attn", "mlp")),
    ):
        if value not in allowed:
            raise ValueError(f"{key}: expected one of {', '.join(allowed)}, got {value!r}")
    if cfg.loop_iter_embed and cfg.loop_from > 0:
        raise ValueError(f"loop_iter_embed: needs loop_from 0, got {cfg.loop_from} (its vectors would be unused before the switch-on, which DistributedDataParallel rejects)")
    if cfg.gate_window > cfg.model_dim:
        raise ValueError(f"gate_window {cfg.gate_window}: more than model_dim {cfg.model_dim}")


def document_mask(ids: torch.Tensor, bos_id: int) -> torch.Tensor:
    """[B, T] token ids -> [B, 1, T, T] bool: query i may read key j when j <= i and no BOS lies
    in (j, i] (a row's first tokens, before any BOS, form a document of their own)."""
    doc = torch.cumsum((ids == bos_id).int(), dim=1)
    T = ids.size(1)
    causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
    return (causal & (doc[:, :, None] == doc[:, None, :]))[:, None]


def masked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """q [B, T, H, D], k and v [B, T, Hkv, D], mask [B, 1, T, T] -> [B, T, H, D]."""
    q, k, v = q.transpose(1, 2), expand_kv(k.transpose(1, 2), q.size(2)), expand_kv(v.transpose(1, 2), q.size(2))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)


class FrontierAttention(Attention):
    """Attention with an optional gate on each head's output before the projection, computed from
    the first gate_window channels of the attention input (zero weights: 0.5 or 1 at the start),
    and an optional document mask."""

    def __init__(self, cfg: FrontierConfig, layer: int):
        super().__init__(cfg, layer)
        self.gate_kind, self.gate_window, self.gate_scale = cfg.attn_gate, cfg.gate_window, cfg.attn_gate_scale
        self.gate = nn.Parameter(torch.zeros(cfg.num_heads, cfg.gate_window)) if cfg.attn_gate != "none" else None

    def head_gate(self, x: torch.Tensor) -> torch.Tensor:
        z = F.linear(x[..., : self.gate_window], self.gate.to(x.dtype))
        if self.gate_kind == "sparse":
            return torch.sigmoid(self.gate_scale * z)
        return 2.0 * torch.sigmoid(z)

    def forward(self, x, v_embed, v_first, tail: int = 0, docs: torch.Tensor | None = None):
        """docs: document_mask of the batch (None: plain causal attention)."""
        T = x.size(1)
        attend = causal_attention if docs is None else (lambda q, k, v: masked_attention(q, k, v, docs[..., T - q.size(1) :, :]))
        y, v_raw = self.heads(x, v_embed, v_first, tail, attend)
        if self.gate is not None:
            y = y * self.head_gate(x[:, -tail:] if tail else x)[..., None]
        return self.proj(y.reshape(*y.shape[:2], -1)), v_raw


class FrontierGPT(GPT):
    def __init__(self, cfg: FrontierConfig):
        check_frontier(cfg)
        super().__init__(cfg)
        dim, n = cfg.model_dim, cfg.num_layers
        replace_attention = cfg.attn_gate != "none" or cfg.doc_attention
        if replace_attention:
            for i, block in enumerate(self.blocks):
                block.attn = FrontierAttention(cfg, i)
        self.looping = True  # as trained and evaluated; train() keeps it off before loop_from
        order = virtual_layers(cfg)
        self.num_encoder = len(order) // 2 if cfg.unet_skips else 0
        # Sized for the looped depth, also while the blocks do not loop yet (as the 1.0611 record).
        n_skips = min(self.num_encoder, len(order) - self.num_encoder)
        self.skip_weights = nn.Parameter(torch.ones(n_skips, dim))
        self.skip_gates = nn.Parameter(torch.zeros(n_skips, dim)) if cfg.skip_gates else None
        repeats = len(order) - n if cfg.loop_iter_embed else 0
        self.iter_embed = nn.Parameter(torch.randn(repeats, dim) * 0.02) if repeats else None
        self.iter_gate = nn.Parameter(torch.full((repeats, dim), -2.0)) if repeats else None
        if cfg.parallel_start_layer > 0:
            # [layer, source (attn, mlp), lane]: how much of each output each lane adds.
            self.parallel_post = nn.Parameter(torch.ones(n, 2, 2))
            self.parallel_resid = nn.Parameter(torch.full((n, 2), 1.1))  # [layer, lane]: each lane's carry
        if cfg.bos_smear_gate:
            self.bos_smear = nn.Parameter(torch.zeros(1, cfg.gate_window))
            self.bos_smear_lambda = nn.Parameter(torch.zeros(1))
        if replace_attention:
            self._init_weights()  # the replaced attention layers' matrices

    def update_looping(self, step: int, elapsed_ms: float, train_cfg) -> bool:
        """Sets whether the blocks loop at this point of training; True when it has just switched on.
        The fraction is of the wallclock cap when one is set, else of the iterations."""
        if train_cfg.max_wallclock_seconds > 0:
            frac = elapsed_ms / (1000.0 * train_cfg.max_wallclock_seconds)
        else:
            frac = step / max(train_cfg.iterations, 1)
        was, self.looping = self.looping, frac >= self.cfg.loop_from
        return self.looping and not was and self.cfg.loop_passes > 1

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.cfg.bos_smear_gate:
            return super().embed(ids)
        x = self.tok_emb(ids)
        if self.bigram is not None:
            x = x + self.bigram(ids)
        w = self.cfg.gate_window
        g = self.bos_smear_lambda.to(x.dtype) * torch.sigmoid(F.linear(x[:, 1:, :w], self.bos_smear.to(x.dtype)))
        keep = (ids[:, 1:] != self.cfg.bos_id).to(x.dtype).unsqueeze(-1)
        x = torch.cat((x[:, :1], x[:, 1:] + g * keep * x[:, :-1]), dim=1)
        x = rms_norm(x)
        if self.smear is not None:  # #1313's input-independent smear, if also on
            s = torch.sigmoid(self.smear.to(x.dtype))
            x = (1 - s) * x + s * F.pad(x[:, :-1], (0, 0, 1, 0))
        if torch.is_autocast_enabled(x.device.type):
            x = x.to(torch.get_autocast_dtype(x.device.type))
        return x

    def join_skip(self, x: torch.Tensor, skip: torch.Tensor, j: int) -> torch.Tensor:
        scaled = self.skip_weights[j].to(x.dtype) * skip
        if self.skip_gates is None:
            return x + scaled
        return torch.lerp(scaled, x, torch.sigmoid(self.skip_gates[j].to(x.dtype)))

    def serial_block(self, i: int, x, x0, v_embed, v_first, docs):
        """Block i's forward (model.Block's), with the document mask passed to its attention."""
        block = self.blocks[i]
        if docs is None:
            return block(x, x0, v_embed, v_first)
        mix = block.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        a, v_raw = block.attn(block.scaled_norm(x), v_embed, v_first, docs=docs)
        x = x + block.attn_scale.to(x.dtype) * a
        return x + block.mlp_scale.to(x.dtype) * block.mlp(block.scaled_norm(x)), v_raw

    def parallel_block(self, i: int, lane0, lane1, x0, v_embed, v_first, docs):
        block = self.blocks[i]
        mix = block.resid_mix.to(lane0.dtype)
        attn_in = block.scaled_norm(mix[0] * lane0 + mix[1] * x0)
        a, v_raw = block.attn(attn_in, v_embed, v_first) if docs is None else block.attn(attn_in, v_embed, v_first, docs=docs)
        a = block.attn_scale.to(a.dtype) * a
        m = block.mlp_scale.to(a.dtype) * block.mlp(block.scaled_norm(lane1))
        post, resid = self.parallel_post[i].to(a.dtype), self.parallel_resid[i].to(a.dtype)
        lane0 = resid[0] * lane0 + post[0, 0] * a + post[1, 0] * m
        lane1 = resid[1] * lane1 + post[0, 1] * a + post[1, 1] * m
        return lane0, lane1, v_raw

    def hidden(self, ids: torch.Tensor, tail: int = 0) -> torch.Tensor:
        """As GPT.hidden over the virtual depth; tail > 0 slices the result (no compute saved)."""
        cfg = self.cfg
        order = virtual_layers(cfg, self.looping)
        n_enc = len(order) // 2 if cfg.unet_skips else 0
        x0 = self.embed(ids)
        docs = document_mask(ids, cfg.bos_id) if cfg.doc_attention else None
        ve = self.value_emb(ids) if self.value_emb is not None else None
        x, lane1, skips, v_first, seen, repeat = x0, None, [], None, set(), 0
        for pos, i in enumerate(order):
            parallel = pos >= n_enc and 0 < cfg.parallel_start_layer <= i
            if parallel and lane1 is None:  # the MLP lane starts from the stream before its skip
                lane1 = x
            if pos >= n_enc and skips:
                x = self.join_skip(x, skips.pop(), pos - n_enc)
            if i in seen and self.iter_embed is not None:
                x = x + torch.sigmoid(self.iter_gate[repeat].to(x.dtype)) * self.iter_embed[repeat].to(x.dtype)
                repeat += 1
            seen.add(i)
            v_embed = None
            if ve is not None and i in self.value_emb.slot:
                v_embed = ve * self.value_emb.layer_scales[self.value_emb.slot[i]].to(ve.dtype)
            if parallel:
                x, lane1, v_raw = self.parallel_block(i, x, lane1, x0, v_embed, v_first, docs)
            else:
                x, v_raw = self.serial_block(i, x, x0, v_embed, v_first, docs)
            if i == 0 and cfg.vrl and v_first is None:
                v_first = v_raw
            if pos < n_enc:
                skips.append(x)
        if lane1 is not None:
            x = {"mean": 0.5 * (x + lane1), "attn": x, "mlp": lane1}[cfg.parallel_final_lane]
        h = rms_norm(x)
        return h[:, -tail:] if 0 < tail < ids.size(1) else h


def frontier_config(model_block: dict) -> FrontierConfig:
    """FrontierConfig from a train.model block (other keys skipped); one line naming the key if unbuildable."""
    names = {f.name for f in fields(FrontierConfig)}
    cfg = FrontierConfig(**{k: v for k, v in model_block.items() if k in names})
    try:
        check_frontier(cfg)
    except ValueError as e:
        raise UserError(f"train.model.{e}") from None
    return cfg
