"""The seed family's SLOT variants (slot.py keys) against PR #675's own eval_val_slot.

Both run on the same frozen hidden states (a fixed table lookup per token, standing in for a
trained model's last layer) and the same output weights, in published mode (the fit on the scored
targets, as #675), with #675's windows (as_published); #675's AdamW is wrapped to record the lr it
steps with, ours reports its lr through lr_trace.
"""

from __future__ import annotations

import contextlib
import os
import types
from pathlib import Path

import pytest
import torch

from evaluate import sliding_windows, window_batch
from record_loader import load_record_script
from slot import SlotConfig, slot_scorer

PR675 = Path(os.environ.get("PGOLF_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference")) / "pr675_hypergradient_slot_train_gpt.py"


@pytest.fixture(scope="module")
def pr675():
    return load_record_script(PR675, "pr675_script")


class FrozenHidden:
    """hidden(ids) = table[ids]; the tied output weight tok_emb.weight; both models' names for them."""

    def __init__(self, vocab: int, dim: int, seed: int = 0, weight_std: float = 0.3):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab, dim, generator=g)
        self.tok_emb = torch.nn.Embedding(vocab, dim)
        self.tok_emb.weight.data = torch.randn(vocab, dim, generator=g) * weight_std
        self.logit_softcap = 30.0
        self.cfg = types.SimpleNamespace(logit_softcap=30.0, vocab_size=vocab)

    def hidden(self, ids, tail: int = 0):
        h = self.table[ids]
        return h[:, -tail:] if tail else h

    forward_hidden = hidden

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


def run_pr675(pr675, model, tokens, seq_len, stride, batch_seqs, steps, lr, lr_min, monkeypatch):
    """#675's eval_val_slot on CPU (torch.compile as the identity); returns (val_loss, lrs per batch)."""
    trace = []

    class TracedAdamW(torch.optim.AdamW):
        def step(self, closure=None):
            trace.append(self.param_groups[0]["lr"])
            return super().step(closure)

    monkeypatch.setattr(torch, "compile", lambda fn=None, **kw: fn)
    monkeypatch.setattr(torch.optim, "AdamW", TracedAdamW)
    args = types.SimpleNamespace(eval_stride=stride, eval_seq_len=seq_len, train_seq_len=seq_len, tie_embeddings=True, slot_batch_seqs=batch_seqs,
                                 slot_lr=lr, slot_lr_min=lr_min, slot_steps=steps)
    V = model.cfg.vocab_size
    luts = (torch.ones(V, dtype=torch.int16), torch.zeros(V, dtype=torch.bool), torch.zeros(V, dtype=torch.bool))
    val_loss, _ = pr675.eval_val_slot(args, model, 0, 1, torch.device("cpu"), tokens, *luts)
    return val_loss, [trace[i : i + steps] for i in range(0, len(trace), steps)]


def run_ours(model, tokens, seq_len, stride, slot: SlotConfig):
    windows = sliding_windows(len(tokens) - 1, seq_len, stride, as_published=True)
    trace, total, count = [], 0.0, 0
    score = slot_scorer(model, slot, contextlib.nullcontext, (), stride, trace)
    for i in range(0, len(windows), slot.batch_seqs):
        nll = score(window_batch(tokens, windows[i : i + slot.batch_seqs], seq_len, torch.device("cpu")))
        total, count = total + nll.double().sum().item(), count + nll.numel()
    return total / count, [trace[i : i + slot.steps] for i in range(0, len(trace), slot.steps)]


def test_hypergradient_slot_equals_pr675s_function(pr675, monkeypatch):
    """Same lr at every step of every batch (to 1e-8: ours is an fp32 tensor, #675 sums in Python floats)
    and the same val_loss. At this small shape the lr does move (by about 1e-4 in 6 steps), so a constant lr
    fails. Mutation: in fit_offsets, `lr_t + rate * sum(...)` -> `lr_t + 0 * sum(...)`."""
    model = FrozenHidden(vocab=48, dim=16, weight_std=1.0)
    tokens = torch.randint(0, 48, (97,), generator=torch.Generator().manual_seed(2))
    slot = SlotConfig(enabled=True, mode="published", steps=6, lr=0.012, lr_min=0.001, batch_seqs=2, hyper_lr=1e-5)
    theirs, their_lrs = run_pr675(pr675, model, tokens, 16, 4, 2, 6, 0.012, 0.001, monkeypatch)
    ours, our_lrs = run_ours(model, tokens, 16, 4, slot)
    assert len(our_lrs) == len(their_lrs) == 12  # 24 windows (stride 4 over 96 targets), 2 a batch
    moved = max(abs(lr - 0.012) for batch in their_lrs for lr in batch)
    assert moved > 5e-5
    for a, b in zip(our_lrs, their_lrs):
        assert a == pytest.approx(b, abs=1e-8, rel=0)
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_slot_adam_constants_are_keys(pr675, monkeypatch):
    """#1313's constants by default (the existing SLOT tests pin those numbers); other constants
    change the score, and #675's function (eps 1e-5, weight decay 1e-8, torch's betas) equals ours
    only at its own. Mutation: in fit_offsets, `.add_(eps)` -> `.add_(1e-5)`."""
    model = FrozenHidden(vocab=48, dim=16, weight_std=1.0)
    tokens = torch.randint(0, 48, (97,), generator=torch.Generator().manual_seed(2))
    base = dict(enabled=True, mode="published", steps=6, lr=0.012, lr_min=0.001, batch_seqs=2, hyper_lr=1e-5)
    theirs, _ = run_pr675(pr675, model, tokens, 16, 4, 2, 6, 0.012, 0.001, monkeypatch)
    assert run_ours(model, tokens, 16, 4, SlotConfig(**base))[0] == pytest.approx(theirs, abs=1e-6)
    for key, value in (("adam_eps", 1e-2), ("adam_beta1", 0.5), ("adam_beta2", 0.9), ("adam_weight_decay", 5.0)):
        other = run_ours(model, tokens, 16, 4, SlotConfig(**base, **{key: value}))[0]
        assert abs(other - theirs) > 1e-5, key
