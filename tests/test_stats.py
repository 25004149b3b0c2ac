"""pgolf.stats: the one-sided tests against the baseline, checked against the textbook formulas."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats as st

from pgolf.stats import significance, verdict

BASE = {"name": "PR #1019", "val_loss": 1.88217853, "val_bpb": 1.11473509}


def test_one_sample_test_matches_the_formula():
    losses = [1.8700, 1.8712, 1.8695]
    bpbs = [1.1075, 1.1082, 1.1072]
    b = significance(losses, bpbs, BASE)
    n, mean, sd = 3, statistics.fmean(losses), statistics.stdev(losses)
    t = (mean - (BASE["val_loss"] - 0.005)) / (sd / math.sqrt(n))
    assert b["test"] == "one_sample_t_one_sided"
    assert b["t_statistic"] == pytest.approx(t, abs=1e-6)
    assert b["df"] == 2
    assert b["p_value"] == pytest.approx(st.t.cdf(t, df=2), rel=1e-9)
    assert b["delta_nats"] == pytest.approx(mean - BASE["val_loss"], abs=1e-8)
    assert b["delta_bpb"] == pytest.approx(statistics.fmean(bpbs) - BASE["val_bpb"], abs=1e-8)
    assert b["p_value"] < 0.01 and b["passed"] is True
    assert verdict(b).startswith("The significance bar is met")


def test_welch_test_when_the_baseline_seeds_are_known():
    base = {**BASE, "seed_val_losses": [1.8815, 1.8825, 1.8826]}
    losses = [1.8700, 1.8712, 1.8695]
    b = significance(losses, [1.1, 1.1, 1.1], base)
    shifted = [v - 0.005 for v in base["seed_val_losses"]]
    v1, v2 = statistics.variance(losses) / 3, statistics.variance(shifted) / 3
    t = (statistics.fmean(losses) - statistics.fmean(shifted)) / math.sqrt(v1 + v2)
    df = (v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 2)  # Welch-Satterthwaite
    assert b["test"] == "welch_t_one_sided"
    assert b["t_statistic"] == pytest.approx(t, abs=1e-6)
    assert b["df"] == pytest.approx(df, abs=1e-4)
    assert b["p_value"] == pytest.approx(st.t.cdf(t, df=df), rel=1e-6)
    assert b["baseline_seed_val_losses"] == base["seed_val_losses"]


def test_an_improvement_below_the_margin_does_not_pass():
    losses = [BASE["val_loss"] - 0.003 + d for d in (-0.0002, 0.0, 0.0002)]  # 0.003 nats better: under the 0.005 bar
    b = significance(losses, [1.1, 1.1, 1.1], BASE)
    assert b["t_statistic"] > 0 and b["p_value"] > 0.5 and b["passed"] is False
    text = verdict(b)
    assert text.startswith("**The significance bar is not met**") and "at least 0.005 nats better than PR #1019" in text


@pytest.mark.parametrize("losses,note", [([1.80], "1 seed: a t-test needs at least 2"), ([1.8, 1.8, 1.8], "no spread")])
def test_untestable_records_say_so(losses, note):
    b = significance(losses, [1.0] * len(losses), BASE)
    assert b["test"] == "none" and b["passed"] is False and b["p_value"] is None and b["t_statistic"] is None
    assert note in b["note"] and "not met" in verdict(b)
