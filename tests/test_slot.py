"""Windowed evals: bpb accounting, upstream windows, SLOT equivalence and the causality audit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from evaluate import EvalConfig, EvalSetup, causality_audit, eval_sliding, fixed_scorer, sliding_windows, target_scores, window_batch
from model import GPT, GPTConfig
from runtime import Dist
from scoring import ScoreSums
from slot import SlotConfig, eval_slot, fit_sizes, slot_lr, slot_scorer

import contextlib

NO_AUTOCAST = contextlib.nullcontext


def test_bpb_accounting_on_a_hand_computed_case():
    # ids: 0 pad, 1 bos (boundary), 2 "▁the" (3 bytes + a space), 3 "cat" (3 bytes), 4 byte piece (1 byte)
    base_bytes = torch.tensor([0, 0, 3, 3, 1], dtype=torch.int16)
    has_space = torch.tensor([False, False, True, False, False])
    is_boundary = torch.tensor([True, True, False, False, False])
    luts = (base_bytes, has_space, is_boundary)
    x = torch.tensor([1, 2, 3, 2])  # contexts
    y = torch.tensor([2, 3, 2, 4])  # targets
    nll = torch.tensor([1.0, 2.0, 0.5, 1.5])
    sums = ScoreSums(torch.device("cpu"))
    sums.add(nll, x, y, luts)
    r = sums.result(Dist("cpu"))
    # "▁the" after BOS: its space is not counted (3); "cat": 3; "▁the" after "cat": 3 + 1; byte: 1
    assert r["bytes"] == 3 + 3 + 4 + 1 and r["tokens"] == 4
    assert r["val_loss"] == pytest.approx(5.0 / 4)
    assert r["val_bpb"] == pytest.approx((5.0 / 4) / math.log(2) * 4 / 11)


def test_published_windows_reproduce_the_upstream_count():
    total = 62_021_632  # sp1024 validation targets
    for stride, counted, n in [(64, 62_023_616, 969_088), (96, 62_023_584, 646_059)]:
        windows = sliding_windows(total, 2048, stride, as_published=True)
        assert len(windows) == n and sum(length - first for _, length, first in windows) == counted
        ours = sliding_windows(total, 2048, stride)
        assert sum(length - first for _, length, first in ours) == total


def test_slot_schedule_quirk_and_correction():
    slot = SlotConfig(steps=24, lr=0.012, lr_min=0.001)
    assert slot_lr(slot, 0) == pytest.approx(0.012) and slot_lr(slot, 23) == pytest.approx(0.0010471, abs=1e-7)
    fixed = SlotConfig(steps=24, lr=0.012, lr_min=0.001, schedule="corrected")
    assert slot_lr(fixed, 23) == pytest.approx(0.001)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    model = GPT(GPTConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, ve_layers=[1], bigram_vocab_size=64, bigram_dim=16))
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    model.eval()
    tokens = torch.randint(0, 64, (401,))
    luts = (torch.ones(64, dtype=torch.int16), torch.zeros(64, dtype=torch.bool), torch.zeros(64, dtype=torch.bool))
    cfg = EvalConfig(seq_len=32, stride=8, batch_seqs=8, audit_windows=6)
    return model, tokens, luts, cfg


def reference_slot(model, tokens, cfg, slot):
    """#1313's SLOT as written upstream: logits for every position, the loss masked to the scored ones."""
    windows = sliding_windows(len(tokens) - 1, cfg.seq_len, cfg.stride)
    weight, cap, total, count = model.tok_emb.weight.detach().float(), model.cfg.logit_softcap, 0.0, 0
    for b in range(0, len(windows), slot.batch_seqs):
        batch = windows[b : b + slot.batch_seqs]
        x = torch.zeros(len(batch), cfg.seq_len, dtype=torch.long)
        y = torch.zeros_like(x)
        mask = torch.zeros(len(batch), cfg.seq_len)
        for i, (s, n, first) in enumerate(batch):
            x[i, :n], y[i, :n], mask[i, first:n] = tokens[s : s + n], tokens[s + 1 : s + n + 1], 1
        with torch.no_grad():
            h = model.hidden(x).float()
        delta = torch.zeros(len(batch), 1, h.size(-1), requires_grad=True)
        bias = torch.zeros(len(batch), 1, weight.size(0), requires_grad=True)
        opt = torch.optim.AdamW([delta, bias], lr=slot.lr, weight_decay=1e-8, eps=1e-5)
        for i in range(slot.steps):
            for g in opt.param_groups:
                g["lr"] = slot.lr_min + 0.5 * (slot.lr - slot.lr_min) * (1 + math.cos(math.pi * i / slot.steps))
            logits = cap * torch.tanh((F.linear(h + delta, weight) + bias) / cap)
            nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
            loss = (nll * mask).sum() / mask.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            logits = cap * torch.tanh((F.linear(h + delta, weight) + bias) / cap)
            nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(y)
            total += (nll * mask).sum().item()
            count += int(mask.sum())
    return total / count


def test_scored_positions_only_slot_equals_the_all_positions_reference(setup):
    model, tokens, luts, cfg = setup
    slot = SlotConfig(enabled=True, mode="published", steps=5, lr=0.05, lr_min=0.005, batch_seqs=8)
    ours = eval_slot(EvalSetup(model, tokens, cfg, Dist("cpu"), luts, NO_AUTOCAST), slot)
    assert ours["tokens"] == len(tokens) - 1
    assert ours["val_loss"] == pytest.approx(reference_slot(model, tokens, cfg, slot), abs=1e-6)
    plain = eval_sliding(EvalSetup(model, tokens, cfg, Dist("cpu"), luts, NO_AUTOCAST))
    assert ours["val_loss"] < plain["val_loss"] - 0.05  # fitting on the answers "helps" a lot


def test_audit_passes_sliding_and_causal_slot_and_fails_published_slot(setup):
    model, tokens, luts, cfg = setup
    windows = sliding_windows(len(tokens) - 1, cfg.seq_len, cfg.stride)
    device = torch.device("cpu")
    sliding = causality_audit(fixed_scorer(model, NO_AUTOCAST), tokens, windows, cfg, 64, device)
    assert sliding["verdict"] == "pass" and sliding["scores_compared"] > 50 and sliding["max_abs_change"] == 0.0
    slot = SlotConfig(enabled=True, steps=4, lr=0.05, lr_min=0.005, batch_seqs=8)
    causal_scorer = slot_scorer(model, SlotConfig(**{**slot.__dict__, "mode": "causal"}), NO_AUTOCAST)
    causal = causality_audit(causal_scorer, tokens, windows, cfg, 64, device)
    assert causal["verdict"] == "pass" and causal["max_abs_change"] == 0.0
    assert causal["scores_compared"] == sliding["scores_compared"] > 50
    # The pass is no fit-nothing pass: on the audited windows causal SLOT moves the plain scores.
    subset = windows[len(windows) // 2 :][: cfg.audit_windows]
    plain = target_scores(fixed_scorer(model, NO_AUTOCAST), tokens, subset, cfg.seq_len, device)
    fitted = target_scores(causal_scorer, tokens, subset, cfg.seq_len, device)
    assert fitted.keys() == plain.keys() and max(abs(fitted[k] - plain[k]) for k in plain) > 1e-3
    published = causality_audit(slot_scorer(model, SlotConfig(**{**slot.__dict__, "mode": "published"}), NO_AUTOCAST), tokens, windows, cfg, 64, device)
    assert published["verdict"] == "fail" and published["violations"] > 0 and published["max_abs_change"] > 1e-3


@pytest.mark.parametrize("mode", ["published", "causal"])
def test_fixed_shape_padding_scores_the_same(setup, mode):
    # On GPU every batch is padded to batch_seqs windows and the fit to one of a few sizes, so the
    # compiled forward and fit never see a new shape; the padding must not change a single score.
    model, tokens, luts, cfg = setup
    windows = sliding_windows(len(tokens) - 1, cfg.seq_len, cfg.stride)
    slot = SlotConfig(enabled=True, mode=mode, steps=4, lr=0.05, lr_min=0.005, batch_seqs=8)
    sizes = fit_sizes(cfg.seq_len, cfg.stride, slot.batch_seqs)
    assert sizes == (64, 88, 192, 256)
    plain, padded = slot_scorer(model, slot, NO_AUTOCAST), slot_scorer(model, slot, NO_AUTOCAST, sizes)
    device = torch.device("cpu")
    # the stream's first batch (a window scoring everything, one with no context), a full one, a short tail
    for batch in (windows[:8], windows[8:16], windows[-3:]):
        want = plain(window_batch(tokens, batch, cfg.seq_len, device))
        b = window_batch(tokens, batch, cfg.seq_len, device, pad_to=slot.batch_seqs)
        assert b.x.shape == (8, cfg.seq_len) and len(b.rows) == len(want)
        got = padded(b)
        assert torch.allclose(got, want, rtol=0, atol=1e-6), (got - want).abs().max()
