"""GPTQ calibration on the model's own text (export.gptq.calibration: generated).

The seed family's PR #1229 calibrates GPTQ on sequences the trained model samples itself, so the
export reads no data at all after training. Each sequence starts from one uniformly random token
and grows by sampling from softmax(logits / temperature) at the last position, one token at a time,
with one seeded generator for the start tokens and the samples; sequences are made
`calib_batch_seqs` at a time. The Hessians are then collected from these batches exactly as from
training tokens (quantize.collect_hessians)."""

from __future__ import annotations

import torch

from model import GPT
from runtime import autocast_for


def generated_batches(model: GPT, vocab_size: int, batches: int, batch_seqs: int, seq_len: int, temperature: float, seed: int, device: torch.device) -> list[torch.Tensor]:
    """`batches` tensors of shape [batch_seqs, seq_len] (int64, on the CPU) sampled from `model`."""
    rng = torch.Generator(device=device)
    rng.manual_seed(seed)
    out = []
    autocast = autocast_for(device)
    with torch.inference_mode(), autocast():
        for _ in range(batches):
            ids = torch.randint(0, vocab_size, (batch_seqs, 1), device=device, generator=rng)
            for _ in range(seq_len - 1):
                last = model.logits(model.hidden(ids)[:, -1:, :])[:, -1, :]
                probs = torch.softmax(last / temperature, dim=-1)
                ids = torch.cat([ids, torch.multinomial(probs, 1, generator=rng)], dim=1)
            out.append(ids.cpu())
    return out
