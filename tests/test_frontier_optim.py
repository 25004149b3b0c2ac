"""The April optimizer as train keys (train.py + frontier_optim.py), against the records' own code.

Muon with Polar Express and MuonEq-R is stepped side by side with the 1.0611 record's Muon class on
the same bf16 weights and gradients; the schedules are checked at values read off the records'
lr_mul / wd_mul (nested in their train_model, so not callable); the Trainer test checks that each key
reaches the optimizer it sets, and that no key set builds the optimizers of before.
"""

from __future__ import annotations

import pytest
import torch

from runtime import Dist, RunLog, read_manifest
from test_frontier_model import rec  # noqa: F401  (the 1.0611 record's script, loaded)
from test_trainer import data  # noqa: F401  (the trainer tests' small dataset)
from train import Muon, TrainConfig, Trainer, lr_multiplier


def bf16_params(shapes, seed: int):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter((torch.randn(s, generator=g) * 0.1).bfloat16()) for s in shapes]


@pytest.mark.parametrize("row_norm", [True, False])
def test_muon_with_polar_express_steps_like_the_records_muon(rec, row_norm):  # noqa: F811
    """Momentum 0.95, weight decay 0.095, bf16 weights: bit for bit the same after the first step;
    after later ones within one bf16 step of 0.1-sized weights (our momentum arithmetic is torch's
    _foreach ops, the record's in-place ops, which round bf16 differently; in training our momentum
    is fp32, the weights' dtype, where the record keeps it in bf16).
    Mutation: in Muon.step, `if group["row_norm"]:` -> `if False:` (fails the row_norm case)."""
    shapes = [(32, 48), (32, 48), (16, 64)]  # rows <= cols: the aspect scale is 1 in both
    ours, theirs = bf16_params(shapes, 0), bf16_params(shapes, 0)
    opt_ours = Muon(ours, lr=0.02, momentum=0.95, ns_steps=5, weight_decay=0.095, compile=False, polar=True, row_norm=row_norm)
    opt_theirs = rec.Muon(theirs, lr=0.02, momentum=0.95, backend_steps=5, weight_decay=0.095, row_normalize=row_norm)
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        for a, b in zip(ours, theirs):
            a.grad = torch.randn(a.shape, generator=gen).bfloat16()
            b.grad = a.grad.clone()
        opt_ours.step()
        opt_theirs.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a.float(), b.float(), atol=0 if step == 0 else 2e-3, rtol=0)


@pytest.mark.parametrize("frac,expected", [(0.0, 1.0), (0.7, 1.0), (0.85, 0.75), (0.94, 0.6), (1.0, 0.5), (1.2, 0.5)])
def test_wd_taper_with_pr1626s_settings(frac, expected):
    """Values of PR #1626's wd_mul (2026-04-18_PR1626_CaseOps_Taper) at WD_TAPER_START_FRAC 0.70,
    WD_TAPER_FINAL_MULT 0.50, worked out by hand from its code; start 1.0 never tapers."""
    from frontier_optim import wd_taper_multiplier

    assert wd_taper_multiplier(frac, 0.7, 0.5) == pytest.approx(expected, abs=1e-12)
    assert wd_taper_multiplier(0.99, 1.0, 0.5) == 1.0


def test_lr_multiplier_warmdown_fraction_and_floor():
    """warmdown_frac replaces warmdown_iters (the 1.0611 record: 0.85 with min_lr 0.1); min_lr also
    floors the warmdown_iters schedule. Mutation: in lr_multiplier, drop `max(..., cfg.min_lr)`."""
    frac = TrainConfig(iterations=100, max_wallclock_seconds=0, warmdown_frac=0.85, min_lr=0.1)
    assert lr_multiplier(frac, 10, 0) == 1.0
    assert lr_multiplier(frac, 50, 0) == pytest.approx(0.5 / 0.85)
    assert lr_multiplier(frac, 99, 0) == pytest.approx(0.1)
    timed = TrainConfig(iterations=10**6, max_wallclock_seconds=600, warmdown_frac=0.85, min_lr=0.1)
    assert lr_multiplier(timed, 7, 300_000.0) == pytest.approx(0.5 / 0.85)  # of the wallclock cap
    iters = TrainConfig(iterations=100, max_wallclock_seconds=0, warmdown_iters=10, min_lr=0.2)
    assert lr_multiplier(iters, 95, 0) == pytest.approx(0.5) and lr_multiplier(iters, 99, 0) == pytest.approx(0.2)
    assert lr_multiplier(TrainConfig(iterations=100, max_wallclock_seconds=0, warmdown_iters=10), 99, 0) == pytest.approx(0.1)


def trainer(data, **keys) -> Trainer:  # noqa: F811
    from model import GPTConfig

    cfg = TrainConfig(seq_len=64, batch_tokens=128, iterations=10, max_wallclock_seconds=0, val_max_tokens=256, compile="off", **keys)
    return Trainer(cfg, GPTConfig(vocab_size=512, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1), read_manifest(str(data)), 0, Dist("cpu"), RunLog(rank=1))


def test_trainer_builds_the_keyed_optimizers(data):  # noqa: F811
    """Every key reaches its optimizer group; one step with lr x0.5 and the taper's wd x0.25.
    Mutation: in Trainer.step, drop `g["weight_decay"] = g["base_wd"] * wd_mul`."""
    t = trainer(data, muon_polar_express=True, muon_row_normalize=True, adam_beta1=0.8, adam_beta2=0.99, adam_eps=1e-10,
                weight_decay=0.04, embed_wd=0.085, scalar_wd=0.02, muon_wd=0.095)
    adam, muon = t.optimizers
    embed, scalars = adam.param_groups
    assert embed["betas"] == scalars["betas"] == (0.8, 0.99) and embed["eps"] == 1e-10
    assert (embed["weight_decay"], scalars["weight_decay"]) == (0.085, 0.02)
    assert muon.param_groups[0]["polar"] and muon.param_groups[0]["row_norm"]
    before = [p.detach().clone() for p in muon.param_groups[0]["params"]]
    t.step(0, 0.5, 0.25)
    g = muon.param_groups[0]
    assert g["weight_decay"] == pytest.approx(0.095 * 0.25) and g["lr"] == pytest.approx(0.025 * 0.5)
    assert any(not torch.equal(a, p) for a, p in zip(before, g["params"]))


def test_no_key_builds_the_optimizers_of_before(data):  # noqa: F811
    t = trainer(data, weight_decay=0.04)
    adam, muon = t.optimizers
    for group in adam.param_groups:
        assert group["betas"] == (0.9, 0.95) and group["eps"] == 1e-8 and group["weight_decay"] == 0.04
    g = muon.param_groups[0]
    assert not g["polar"] and not g["row_norm"] and g["weight_decay"] == 0.04
    t.step(0, 1.0)
    assert g["weight_decay"] == 0.04
