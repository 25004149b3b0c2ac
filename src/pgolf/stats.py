"""Significance of a record against the score it claims to beat (challenge rule: README, section 7.4
of the record-anatomy notes).

The challenge asks a new record to beat the current best by at least 0.005 nats per token at
p < 0.01. We test the one-sided hypothesis

    mean(new val_loss) < baseline val_loss - margin

with scipy: Welch's two-sample t-test (unequal variances) when the baseline's per-seed val_loss
values are known, else a one-sample t-test against the baseline's mean minus the margin (what the
early records did, and the only choice when a baseline publishes a mean alone). The margin is in
nats, the unit of val_loss: some early records applied 0.005 to bpb, which is a smaller bar.
"""

from __future__ import annotations

import math
import statistics
import warnings

from scipy import stats as _st

MARGIN_NATS = 0.005
ALPHA = 0.01


def _finite(x) -> float | None:
    """JSON has no inf or NaN: a number that is not finite is reported as null."""
    x = float(x)
    return x if math.isfinite(x) else None


def _why_untestable(losses: list[float], base_losses: list[float] | None) -> str | None:
    """A t statistic needs a spread: one seed, or seeds that agree to the last bit, give none."""
    if len(losses) < 2:
        return f"{len(losses)} seed: a t-test needs at least 2"
    spread = statistics.pstdev(losses) + (statistics.pstdev(base_losses) if base_losses else 0.0)
    if spread == 0.0:
        return "every seed has the same val_loss: no spread to test"
    return None


def significance(
    val_losses: list[float],
    val_bpbs: list[float],
    baseline: dict,
    margin: float = MARGIN_NATS,
    alpha: float = ALPHA,
) -> dict:
    """The `significance` block of submission.json.

    `baseline` is the config's `record.baseline` block: `name`, `val_loss`, `val_bpb` and, when
    known, `seed_val_losses` (the baseline's per-seed val_loss, which selects Welch's test).
    """
    mean_loss = statistics.fmean(val_losses)
    mean_bpb = statistics.fmean(val_bpbs)
    base_seeds = [float(v) for v in baseline.get("seed_val_losses") or []]
    welch = len(base_seeds) >= 2
    block = {
        "baseline": baseline["name"],
        "baseline_val_loss": baseline["val_loss"],
        "baseline_val_bpb": baseline["val_bpb"],
        "baseline_seed_val_losses": base_seeds if welch else None,
        "delta_nats": round(mean_loss - baseline["val_loss"], 8),
        "delta_bpb": round(mean_bpb - baseline["val_bpb"], 8),
        "margin_nats": margin,
        "alpha": alpha,
        "n_seeds": len(val_losses),
        "test": "welch_t_one_sided" if welch else "one_sample_t_one_sided",
        "t_statistic": None,
        "df": None,
        "p_value": None,
        "passed": False,
        "note": None,
    }
    why = _why_untestable(val_losses, base_seeds if welch else None)
    if why:
        block.update(test="none", note=why)
        return block
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-identical seeds: scipy warns, we report
        if welch:
            shifted = [v - margin for v in base_seeds]
            r = _st.ttest_ind(val_losses, shifted, equal_var=False, alternative="less")
        else:
            r = _st.ttest_1samp(val_losses, baseline["val_loss"] - margin, alternative="less")
    p = _finite(r.pvalue)
    block.update(
        t_statistic=None if _finite(r.statistic) is None else round(float(r.statistic), 6),
        df=None if _finite(r.df) is None else round(float(r.df), 4),
        p_value=p,
        passed=p is not None and p < alpha,
    )
    return block


def verdict(block: dict) -> str:
    """One plain sentence for the README: is the challenge's bar met, and if not, why not."""
    bar = f"at least {block['margin_nats']} nats better than {block['baseline']} at p < {block['alpha']}"
    if block["test"] == "none":
        return f"**The significance bar is not met**: {block['note']} (the challenge asks for {bar})."
    test = "Welch's t-test" if block["test"].startswith("welch") else "one-sample t-test"
    stats_text = f"t = {_num(block['t_statistic'])}, df = {_num(block['df'])}, one-sided p = {_p(block['p_value'])}, {test}"
    if block["passed"]:
        return f"The significance bar is met: mean val_loss is {bar} ({stats_text})."
    return f"**The significance bar is not met**: the challenge asks for {bar}; here {stats_text}."


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.3g}"
