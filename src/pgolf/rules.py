"""The challenge's rules, written once: every other module imports them from here.

- the artifact cap (code + compressed model, decimal bytes) and how code bytes count in it;
- the time limits on 8xH100 and the slack a step-checked training cap needs;
- the eval methods our records can claim, their log labels, and what is known about whether each
  is score-first (the challenge's Issue #1017 conditions C1/C3);
- the headline rule: which method a record claims for a given eval block.

The record code (`workflow/record/`) cannot import this package, since it ships alone in
`train_gpt.py`; it keeps its own copy of the headline rule and of the labels, and
`tests/test_rules.py` checks that the two agree.
"""

from __future__ import annotations

import lzma

# ---- size
SIZE_LIMIT_BYTES = 16_000_000  # decimal bytes, not MiB: code bytes + compressed model bytes
CODE_SIZE_CONVENTIONS = ("raw", "lzma")


def lzma_code_bytes(data: bytes) -> int:
    """Code bytes under the ``lzma`` convention: ``lzma.compress(code, preset=9 | PRESET_EXTREME)``,
    xz container included (what a self-extracting script must at least carry)."""
    return len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def code_bytes(data: bytes, convention: str) -> int:
    """The bytes one code file counts for under `convention` (``raw`` or ``lzma``)."""
    if convention not in CODE_SIZE_CONVENTIONS:
        raise ValueError(f"code size convention {convention!r}: expected one of {', '.join(CODE_SIZE_CONVENTIONS)}")
    return lzma_code_bytes(data) if convention == "lzma" else len(data)


# ---- the claim
# The last merged record whose headline is its best seed is dated 2026-03-24; from the next day on,
# every merged record on the 10-minute track claims the mean of its seeds.
MEAN_CLAIM_SINCE = "2026-03-25"


# ---- time
MAX_TRAIN_SECONDS = 600.0  # on 8xH100, the training loop's wall clock
MAX_EVAL_SECONDS = 600.0  # all eval passes together
TRAIN_GRACE_MS = 1000.0  # the cap is checked after each step: the last step may end past it


def train_grace_ms(step_avg_ms: float | None) -> float:
    """Slack on the training cap: at least a second, or two steps for slow steps."""
    return max(TRAIN_GRACE_MS, 2 * (step_avg_ms or 0.0))


# ---- eval methods and their log labels
SLOT_MODES = ("causal", "published")
METHODS = ("sliding_window", *(f"slot_{m}" for m in SLOT_MODES), "ttt")
# Per-document evals (workflow/record/ttt_doc.py): LoRA TTT reset at every document, phased TTT.
DOC_TTT_METHODS = ("lora_ttt", "phased_ttt")
METHODS = METHODS + DOC_TTT_METHODS
ROUNDTRIP_LABEL = "final_roundtrip_exact"
PRE_QUANT_LABEL = "pre_quant_post_ema_exact"
FINAL_SCORE_LABEL = "final_score_exact"  # the claimed number, after FINAL_METHOD_PREFIX<method>
FINAL_METHOD_PREFIX = "final_score_method:"


def method_label(method: str) -> str:
    """The log label of a method's final score: sliding_window -> final_sliding_window_exact."""
    if method not in METHODS:
        raise ValueError(f"eval method {method!r}: expected one of {', '.join(METHODS)}")
    return f"final_{method}_exact"


METHOD_LABELS = {m: method_label(m) for m in METHODS}

# Score-first by construction, when no audit has run: sliding-window scoring adapts nothing;
# published SLOT (PR #1313) fits its delta and bias on the very targets it scores (PR #1240's flip
# test); causal SLOT and TTT depend on their code, so only an audit can tell (None).
SCORE_FIRST_BY_CONSTRUCTION = {"sliding_window": True, "slot_causal": None, "slot_published": False, "ttt": None}
SCORE_FIRST_BY_CONSTRUCTION.update({m: None for m in DOC_TTT_METHODS})
# Upstream labels whose number is known not to be score-first: #1303/#1313's SLOT line.
NOT_SCORE_FIRST_UPSTREAM_LABELS = ("final_slot_exact",)


def score_first(method: str, verdicts: list) -> bool | None:
    """Whether a method's score is score-first, from its causality audits (one verdict per seed).

    Any audit failed: False. Every audit passed: True, except for a method known to be leaky by
    construction (it is never called score-first). No audit: what is known by construction.
    """
    if "fail" in verdicts:
        return False
    known = SCORE_FIRST_BY_CONSTRUCTION.get(method)
    if verdicts and all(v == "pass" for v in verdicts):
        return known is not False
    return known


def upstream_label_score_first(final_label: str | None) -> bool | None:
    """What a foreign log's final label says about score-first: False for the known-leaky labels,
    None (not known) for the rest: nothing audits a foreign script's eval here."""
    return False if final_label in NOT_SCORE_FIRST_UPSTREAM_LABELS else None


# ---- the headline rule
def headline_method(eval_block: dict) -> str:
    """What a record (or a sweep variant) claims: TTT when it runs and is the headline, else the
    SLOT mode when SLOT is on, else the sliding window."""
    ttt, slot = eval_block.get("ttt", {}), eval_block["slot"]
    if ttt.get("enabled") and ttt.get("headline"):
        return "ttt"
    for m in DOC_TTT_METHODS:  # optional blocks: absent means off
        if eval_block.get(m, {}).get("enabled") and eval_block.get(m, {}).get("headline"):
            return m
    return f"slot_{slot['mode']}" if slot["enabled"] else "sliding_window"
