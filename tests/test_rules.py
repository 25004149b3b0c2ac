"""pgolf.rules is the one place the challenge's rules are written; the record code (which cannot
import pgolf) keeps copies, and these tests hold the copies to the original."""

from __future__ import annotations

import ast
import itertools
import lzma
import re

import pytest

from conftest import REPO
from entry import claimed_method, code_size_lines
from evaluate import score_label
from pgolf import rules
from slot import SlotConfig
from ttt import TTTConfig


@pytest.mark.parametrize(
    "ttt_on,ttt_headline,slot_on,mode",
    list(itertools.product([False, True], [False, True], [False, True], rules.SLOT_MODES)),
)
def test_the_record_claims_what_the_pipeline_claims(ttt_on, ttt_headline, slot_on, mode):
    block = {"ttt": {"enabled": ttt_on, "headline": ttt_headline}, "slot": {"enabled": slot_on, "mode": mode}}
    ours = claimed_method(SlotConfig(enabled=slot_on, mode=mode), TTTConfig(enabled=ttt_on, headline=ttt_headline))
    assert ours == rules.headline_method(block)
    # What the rule says, written out: TTT only as the headline, SLOT only when on.
    expected = "ttt" if ttt_on and ttt_headline else (f"slot_{mode}" if slot_on else "sliding_window")
    assert ours == expected


@pytest.mark.parametrize("method", rules.METHODS)
def test_record_labels_are_the_rules_labels(method):
    assert score_label(method) + "_exact" == rules.METHOD_LABELS[method] == f"final_{method}_exact"


def test_method_label_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="eval method 'slot_leaky'"):
        rules.method_label("slot_leaky")


@pytest.mark.parametrize("convention", rules.CODE_SIZE_CONVENTIONS)
def test_the_shipped_script_counts_its_code_as_the_record_does(convention):
    code = (REPO / "workflow/record/entry.py").read_bytes()
    lines = code_size_lines(convention, 1000, "int6+lzma")
    counted = rules.code_bytes(code, convention)
    assert lines[-1] == f"Total submission size int6+lzma: {counted + 1000} bytes"
    if convention == "lzma":
        assert lines[:2] == [f"Code size (uncompressed): {len(code)} bytes", f"Code size (compressed): {counted} bytes"]
        assert counted == len(lzma.compress(code, preset=9 | lzma.PRESET_EXTREME)) < len(code)
    else:
        assert lines[:1] == [f"Code size: {len(code)} bytes"]


def test_score_first_by_audit_and_by_construction():
    assert rules.score_first("slot_causal", ["pass", "pass"]) is True
    assert rules.score_first("slot_causal", ["pass", "fail"]) is False
    assert rules.score_first("slot_published", ["pass", "pass"]) is False  # leaky whatever the audit says
    assert rules.score_first("sliding_window", []) is True
    assert rules.score_first("ttt", []) is None
    assert rules.upstream_label_score_first("final_slot_exact") is False
    assert rules.upstream_label_score_first("legal_ttt_exact") is None


def test_train_grace_is_a_second_or_two_steps():
    assert rules.train_grace_ms(None) == 1000.0
    assert rules.train_grace_ms(800.0) == 1600.0


def test_the_cap_and_the_limits_are_written_once():
    """Outside pgolf.rules, no library module or workflow script has the cap or the 600 s limits as a
    number (the record code, which cannot import pgolf, keeps its own defaults)."""
    limits = {rules.SIZE_LIMIT_BYTES, rules.MAX_TRAIN_SECONDS, 1000 * rules.MAX_TRAIN_SECONDS}
    found = []
    for path in sorted([*REPO.glob("src/pgolf/*.py"), *REPO.glob("workflow/scripts/*.py")]):
        if path.name == "rules.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and type(node.value) in (int, float) and node.value in limits:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    for path in sorted(REPO.glob("workflow/rules/*.smk")):
        found += [f"{path.relative_to(REPO)}: {m}" for m in re.findall(r"16_?000_?000", path.read_text())]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "ttt_headline,lora,phased,slot_on",
    list(itertools.product([False, True], [None, "on", "headline"], [None, "on", "headline"], [False, True])),
)
def test_the_record_claims_what_the_pipeline_claims_with_per_document_ttt(ttt_headline, lora, phased, slot_on):
    """eval.lora_ttt / eval.phased_ttt: optional blocks (None: absent), on, or on and the headline."""
    block = {"ttt": {"enabled": True, "headline": ttt_headline}, "slot": {"enabled": slot_on, "mode": "causal"}}
    for name, state in (("lora_ttt", lora), ("phased_ttt", phased)):
        if state:
            block[name] = {"enabled": True, "headline": state == "headline"}
    ours = claimed_method(SlotConfig(enabled=slot_on, mode="causal"), TTTConfig(enabled=True, headline=ttt_headline), block)
    assert ours == rules.headline_method(block)
    expected = ("ttt" if ttt_headline else "lora_ttt" if lora == "headline" else "phased_ttt" if phased == "headline"
                else "slot_causal" if slot_on else "sliding_window")
    assert ours == expected
