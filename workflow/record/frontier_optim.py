"""Optimizer pieces of the April records (the 1.0611 record's Muon and schedule), as functions.

train.py's Muon and schedule call them when their train keys are on (muon_polar_express,
muon_row_normalize, warmdown_frac / min_lr, wd_taper_*); each piece is checked against the
records' own code in tests/test_frontier_model.py and tests/test_frontier_optim.py.

- Polar Express: Newton-Schulz with a different (a, b, c) for each iteration (PR #1344's minimax
  coefficients) instead of one fixed triple; at most five iterations, as the record.
- MuonEq-R: each row of the momentum update scaled to unit norm before the orthogonalisation.
- The record's learning-rate multiplier: 1, then a linear warmdown over the last warmdown_frac of
  training, never below min_lr.
- PR #1626's late weight-decay taper (the 2026-04-18 CaseOps_Taper record): Muon's weight decay
  times 1 until start_frac of training, then linearly to final_mult at the end.
"""

from __future__ import annotations

import torch

# (a, b, c) of iteration k: X <- a X + (b A + c A^2) X with A = X X^T.
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)


def polar_express(g: torch.Tensor, steps: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Orthogonalises each matrix of g [..., m, n] with min(steps, 5) Polar Express iterations,
    computed in dtype (default: bf16 on GPU, fp32 on CPU) and returned in it."""
    x = g.to(dtype or (torch.bfloat16 if g.is_cuda else torch.float32))
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (torch.linalg.vector_norm(x, dim=(-2, -1), keepdim=True) + 1e-7)
    for a, b, c in POLAR_EXPRESS[: max(steps, 0)]:
        gram = x @ x.mT
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.mT if transposed else x


def row_normalize(update: torch.Tensor) -> torch.Tensor:
    """MuonEq-R: every row of the update divided by its norm (computed in fp32, floored at 1e-7)."""
    norms = torch.linalg.vector_norm(update.float(), dim=-1, keepdim=True).clamp_min(1e-7)
    return update / norms.to(update.dtype)


def warmdown_multiplier(frac: float, warmdown_frac: float, min_lr: float) -> float:
    """The learning-rate multiplier at fraction frac of training: 1 until 1 - warmdown_frac, then
    (1 - frac) / warmdown_frac, floored at min_lr (warmdown_frac 0: always 1)."""
    if warmdown_frac <= 0 or frac < 1.0 - warmdown_frac:
        return 1.0
    return max((1.0 - frac) / warmdown_frac, min_lr)


def wd_taper_multiplier(frac: float, start_frac: float, final_mult: float) -> float:
    """Muon's weight-decay multiplier at fraction frac of training: 1 until start_frac (clamped to
    [0, 1]), then linear to final_mult (floored at 0) at frac 1, and final_mult after."""
    start, final = min(max(start_frac, 0.0), 1.0), max(final_mult, 0.0)
    if frac <= start or start >= 1.0:
        return 1.0
    return 1.0 + (final - 1.0) * min((frac - start) / (1.0 - start), 1.0)
