"""Per-document LoRA TTT and phased TTT (workflow/record/ttt_doc.py): scoring, audits, budget."""

from __future__ import annotations

import contextlib
from unittest.mock import ANY
import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from conftest import REPO
from evaluate import EvalConfig, EvalSetup, eval_sliding
from model import GPT, GPTConfig
from runtime import Dist, UserError
from ttt_doc import (LoraTTTConfig, PhasedTTTConfig, chunk_batch, chunk_window, doc_audit, doc_budget, doc_groups, doc_sequences,
                     doc_ttt_pass, documents, eval_doc_ttt, phase_ends, token_losses)

NO_AUTOCAST = contextlib.nullcontext
VOCAB = 64
BOS = 1
LUTS = (torch.ones(VOCAB, dtype=torch.int16), torch.zeros(VOCAB, dtype=torch.bool), torch.zeros(VOCAB, dtype=torch.bool))
CFG = EvalConfig(seq_len=32, stride=16, batch_seqs=8)
LORA = LoraTTTConfig(enabled=True, chunk_tokens=8, batch_docs=3, rank=4, alpha=8.0, lr=0.05, beta1=0.9, weight_decay=0.0,
                     targets=["blocks.*.attn.v", "blocks.*.mlp.down"], audit_docs=4)
PHASED = PhasedTTTConfig(enabled=True, lora=False, prefix_docs=6, phases=2, lr=0.05, chunk_tokens=128, batch_seqs=4, audit_docs=4)


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, ve_layers=[1], bigram_vocab_size=64, bigram_dim=16))
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    return model.eval()


def doc_stream(lengths: list[int], seed: int = 1) -> torch.Tensor:
    """BOS + tokens per document, each document repeating its own motif with 10% noise (so what a
    document teaches its adapters helps its own later chunks), plus one token for the last target."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for n in lengths:
        motif = torch.randint(2, VOCAB, (7,), generator=g)
        body = motif.repeat(n // 7 + 1)[: n - 1]
        noise = torch.rand(n - 1, generator=g) < 0.1
        parts += [torch.tensor([BOS]), torch.where(noise, torch.randint(2, VOCAB, (n - 1,), generator=g), body)]
    return torch.cat(parts + [torch.tensor([BOS])])


LENGTHS = [40, 75, 23, 60, 90, 31, 55, 48, 70, 36]


@pytest.fixture(autouse=True)
def deterministic():
    # One thread: these tiny batches only lose to thread start-up on a shared machine.
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def scores_of(model, tokens, lora, ph, **kw) -> dict[int, float]:
    out = {}

    def keep(nll, x, y, scored, at):
        for k, v in zip(at[scored].tolist(), nll[scored].double().tolist()):
            assert k not in out, f"target {k} scored twice"
            out[k] = v

    doc_ttt_pass(model, tokens, lora, ph, CFG.seq_len, Dist("cpu"), NO_AUTOCAST, keep, **kw)
    return out


def test_documents_split_at_bos_and_cover_every_target_once():
    tokens = doc_stream(LENGTHS)
    docs = documents(tokens, BOS)
    assert docs == [(sum(LENGTHS[:i]), n) for i, n in enumerate(LENGTHS)]
    assert sum(n for _, n in docs) == len(tokens) - 1
    # a stream that does not start with BOS: its head is a document of its own
    assert documents(torch.tensor([5, 6, 1, 7, 8, 1]), BOS) == [(0, 2), (2, 3)]


def test_every_target_scored_once_from_its_own_document():
    tokens = doc_stream(LENGTHS)
    got = scores_of(tiny_model(), tokens, LORA, replace(PHASED, lora=False, phases=0))
    assert sorted(got) == list(range(len(tokens) - 1))
    # no adapters: a document shorter than seq_len scores as the model does on that document alone
    model = tiny_model()
    a, n = documents(tokens, BOS)[2]  # 23 targets
    alone = model.token_nll(tokens[a : a + n][None], tokens[a + 1 : a + n + 1][None])[0].double().tolist()
    assert [got[a + i] for i in range(n)] == pytest.approx(alone, abs=1e-5)


def test_a_window_never_reaches_into_the_previous_document():
    tokens = doc_stream(LENGTHS)
    docs = documents(tokens, BOS)
    for ci in range(12):
        x, y, scored, at = chunk_batch(tokens, docs, ci, 8, 32)
        for r, (a, n) in enumerate(docs):
            if ci * 8 >= n:
                assert not scored[r].any()
                continue
            start, length, first = chunk_window((a, n), ci, 8, 32)
            assert a <= start and start + length <= a + n and length <= 32
            assert at[r, :length].tolist() == list(range(start, start + length))
            assert at[r][scored[r]].tolist() == list(range(a + ci * 8, a + min(ci * 8 + 8, n)))
            assert torch.equal(x[r, :length], tokens[start : start + length]) and not x[r, length:].any()


def test_lora_ttt_beats_the_fixed_model_and_resets_per_document():
    tokens = doc_stream(LENGTHS)
    dist = Dist("cpu")
    plain = eval_doc_ttt(EvalSetup(tiny_model(), tokens, CFG, dist, LUTS, NO_AUTOCAST), "lora_ttt", replace(LORA, lr=0.0), PHASED)
    lora = eval_doc_ttt(EvalSetup(tiny_model(), tokens, CFG, dist, LUTS, NO_AUTOCAST), "lora_ttt", LORA, PHASED)
    assert plain["tokens"] == lora["tokens"] == len(tokens) - 1 and lora["docs"] == len(LENGTHS)
    # the stage's settings leave `enabled` out (it selects, it does not change a result): still adapters
    assert eval_doc_ttt(EvalSetup(tiny_model(), tokens, CFG, dist, LUTS, NO_AUTOCAST), "lora_ttt", replace(LORA, enabled=False), PHASED) == {**lora, "eval_time_ms": ANY, "score_time_ms": ANY}
    assert lora["val_bpb"] < plain["val_bpb"] - 0.05, (lora["val_bpb"], plain["val_bpb"])
    # the adapters: rank 4 on 2 layers x (v: 32 -> 16, down: 96 -> 32) for 3 documents side by side
    assert lora["adapter_params"] == 3 * 4 * ((32 + 16) * 2 + (96 + 32) * 2)
    # the first chunk of every document is scored before any training: equal to the plain score
    a_plain = scores_of(tiny_model(), tokens, replace(LORA, lr=0.0), None)
    a_lora = scores_of(tiny_model(), tokens, LORA, None)
    for a, n in documents(tokens, BOS):
        assert [a_lora[a + i] for i in range(8)] == pytest.approx([a_plain[a + i] for i in range(8)], abs=1e-6)


def test_phase_ends_and_groups_cut_at_them():
    assert phase_ends(10, replace(PHASED, prefix_docs=6, phases=2)) == [3, 6]
    assert phase_ends(4, replace(PHASED, prefix_docs=2000, phases=1)) == []  # nothing left to score after it
    assert phase_ends(5, replace(PHASED, prefix_docs=4, phases=3)) == [1, 2, 4]
    assert doc_groups(10, 4, [3, 6]) == [(0, 3), (3, 6), (6, 10)]
    assert doc_groups(10, 2, [3]) == [(0, 2), (2, 3), (3, 5), (5, 7), (7, 9), (9, 10)]
    docs = [(0, 40), (40, 75)]
    assert doc_sequences(docs, 32, True) == [(0, 32), (32, 8), (40, 32), (72, 32), (104, 11)]
    assert doc_sequences(docs, 32, False) == [(0, 32), (32, 32), (64, 32), (96, 19)]


def test_phased_ttt_trains_between_phases_and_beats_the_fixed_model():
    tokens = doc_stream(LENGTHS)
    dist = Dist("cpu")
    plain = eval_doc_ttt(EvalSetup(tiny_model(), tokens, CFG, dist, LUTS, NO_AUTOCAST), "phased_ttt", LORA, replace(PHASED, phases=0))
    model = tiny_model()
    ph = eval_doc_ttt(EvalSetup(model, tokens, CFG, dist, LUTS, NO_AUTOCAST), "phased_ttt", LORA, PHASED)
    assert ph["phase_ends"] == [3, 6]
    # phase 1 trains on documents 0-2, phase 2 on 0-5, each target once per epoch
    assert ph["phase_targets_trained"] == sum(LENGTHS[:3]) + sum(LENGTHS[:6])
    assert ph["val_bpb"] < plain["val_bpb"] - 0.01, (ph["val_bpb"], plain["val_bpb"])
    # the first three documents are scored before any phase: their scores are the fixed model's
    before = scores_of(tiny_model(), tokens, LORA, replace(PHASED, phases=0))
    after = scores_of(tiny_model(), tokens, LORA, PHASED)
    head = sum(LENGTHS[:3])
    assert [after[t] for t in range(head)] == [before[t] for t in range(head)]
    assert any(after[t] != before[t] for t in range(head, len(tokens) - 1))


@pytest.mark.parametrize("name", ["lora_ttt", "phased_ttt"])
def test_audit_passes_on_the_real_code_and_restores_the_weights(name):
    tokens = doc_stream(LENGTHS)
    model = tiny_model()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    audit = doc_audit(model, tokens, CFG, name, LORA, replace(PHASED, lora=True), Dist("cpu"), NO_AUTOCAST, VOCAB)
    assert audit["checked"] and audit["verdict"] == "pass", audit
    assert audit["docs"] == 4 and audit["tolerance"] == 0.0 and audit["scores_compared"] > 100
    # the stretch: documents 3-6 (from target 198); flipped: doc 3's last text target, doc 4's middle
    first = sum(LENGTHS[:3])
    assert audit["first_target"] == first
    assert audit["flipped_targets"][:2] == [first + 60 - 2, first + 60 + 45]
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def train_then_score(model, adapters, x, y, scored, at, train_rows, autocast, on_scored):
    """The forbidden order: train the adapters on a chunk, then score that same chunk."""
    loss = token_losses(model, x, y, autocast)
    per_doc = (loss * scored).sum(1) / scored.sum(1).clamp_min(1)
    adapters.opt.zero_grad(set_to_none=False)
    per_doc.sum().backward()
    adapters.opt.step()
    on_scored(token_losses(model, x, y, autocast).detach(), x, y, scored, at)


def with_unscored_docs(docs, scored):
    """The forbidden phase: the documents scored so far and the next one, not scored yet."""
    return docs[: scored + 1]


def test_audit_fails_the_leaky_variants():
    tokens = doc_stream(LENGTHS)
    lora = doc_audit(tiny_model(), tokens, CFG, "lora_ttt", LORA, PHASED, Dist("cpu"), NO_AUTOCAST, VOCAB, step=train_then_score)
    assert lora["verdict"] == "fail" and lora["violations"] > 0 and lora["max_abs_change"] > 1e-4, lora
    phased = doc_audit(tiny_model(), tokens, CFG, "phased_ttt", LORA, PHASED, Dist("cpu"), NO_AUTOCAST, VOCAB, phase_docs=with_unscored_docs)
    assert phased["verdict"] == "fail" and phased["violations"] > 0 and phased["max_abs_change"] > 1e-4, phased


def test_budget_estimate_and_its_one_line_stop():
    tokens = doc_stream(LENGTHS * 3)
    s = EvalSetup(tiny_model(), tokens, CFG, Dist("cpu"), LUTS, NO_AUTOCAST)
    saved = {k: v.clone() for k, v in s.model.state_dict().items()}
    b = doc_budget(s, "phased_ttt", LORA, replace(PHASED, estimate_docs=4, max_seconds=600))
    assert b["timed_docs"] == 4 and b["timed_targets"] == sum(LENGTHS[:4]) and b["targets"] == len(tokens) - 1
    assert b["timed_phase_targets"] == sum(LENGTHS[:3])  # the phase's cost is timed too
    assert 0 < b["estimate_s"] < 600
    assert all(torch.equal(saved[k], v) for k, v in s.model.state_dict().items())
    with pytest.raises(UserError) as e:
        doc_budget(s, "lora_ttt", replace(LORA, max_seconds=1e-6), PHASED)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("eval.lora_ttt: estimated") and "exceeds eval.lora_ttt.max_seconds 1e-06" in msg
    assert f"for {len(tokens) - 1} targets in 30 documents (timed on the first 3 documents" in msg


def overlay_config() -> dict:
    from pgolf.config import load_configs

    return load_configs([REPO / "config.yaml", REPO / "config" / "ttt-doc.yaml"])


def test_absent_blocks_change_no_stage_block_and_each_key_keys_its_own_stage():
    from pgolf.config import load_configs, stage_blocks

    default = stage_blocks(load_configs([REPO / "config.yaml"])["eval"])
    config = overlay_config()
    with_doc = stage_blocks(config["eval"])
    for stage in ("eval", "slot", "ttt"):  # the default's stages hash as before
        assert with_doc[stage] == default[stage]
    assert "lora_ttt" not in default["eval"] and default["lora_ttt"]["lora_ttt"] == {}
    # a LoRA key changes both per-document stages (phased scores with those adapters) ...
    config["eval"]["lora_ttt"]["rank"] = 4
    lora_changed = stage_blocks(config["eval"])
    assert lora_changed["lora_ttt"] != with_doc["lora_ttt"] and lora_changed["phased_ttt"] != with_doc["phased_ttt"]
    # ... a phase key only phased_ttt; enabled and headline none
    config = overlay_config()
    config["eval"]["phased_ttt"]["phases"] = 1
    config["eval"]["lora_ttt"]["headline"] = True
    changed = stage_blocks(config["eval"])
    assert changed["lora_ttt"] == with_doc["lora_ttt"] and changed["phased_ttt"] != with_doc["phased_ttt"]


def test_config_checks_of_the_per_document_blocks():
    from pgolf import rules
    from pgolf.config import ConfigError, check_config

    config = overlay_config()
    check_config(config)
    config["eval"]["phased_ttt"]["headline"] = True
    assert rules.headline_method(config["eval"]) == "phased_ttt"
    config["eval"]["ttt"]["headline"] = True  # the order of pgolf.rules.headline_method: ttt first
    check_config(config)
    assert rules.headline_method(config["eval"]) == "ttt"
    config["eval"]["ttt"]["enabled"] = config["eval"]["phased_ttt"]["enabled"] = False
    with pytest.raises(ConfigError, match=r"^eval.ttt.headline: true needs eval.ttt.enabled: true$"):
        check_config(config)
    config["eval"]["ttt"]["headline"] = False
    with pytest.raises(ConfigError, match=r"^eval.phased_ttt.headline: true needs eval.phased_ttt.enabled: true$"):
        check_config(config)
    config = overlay_config()
    config["eval"]["lora_ttt"]["chunk_tokens"] = 200
    with pytest.raises(ConfigError, match=r"^eval.lora_ttt.chunk_tokens: 200 is longer than its window \(seq_len 128\)$"):
        check_config(config)
    config = overlay_config()
    del config["eval"]["lora_ttt"]
    with pytest.raises(ConfigError, match=r"^eval.phased_ttt: needs an eval.lora_ttt block"):
        check_config(config)


def test_parse_log_reads_the_per_document_lines():
    from pgolf.logparse import parse_text

    log = "\n".join([
        "final_sliding_window val_loss:3.6465 val_bpb:2.0504 stride:64 windows:1051 audit:pass eval_time:26573ms",
        "final_sliding_window_exact val_loss:3.64649030 val_bpb:2.05037023",
        "final_lora_ttt val_loss:3.5300 val_bpb:1.9849 docs:40 chunk:32 rank:8 lr:0.003 audit:pass eval_time:300000ms",
        "final_lora_ttt_exact val_loss:3.53000000 val_bpb:1.98490200",
        "final_phased_ttt val_loss:3.6400 val_bpb:2.0470 docs:40 chunk:32 phases:3 prefix_docs:30 lora:0 audit:fail eval_time:300000ms",
        "final_phased_ttt_exact val_loss:3.64000000 val_bpb:2.04700000",
    ]) + "\n"
    s = parse_text(log)
    # no final_score line: ours in pgolf.logparse.PGOLF_FINAL's order, lora_ttt before sliding
    assert (s.family, s.final_label, s.final_val_bpb, s.final_kind, s.final_audit) == ("pgolf", "final_lora_ttt_exact", 1.984902, "ttt", "pass")
    assert s.sliding_val_bpb == 2.05037023
    s = parse_text(log + "final_score_method:phased_ttt\nfinal_score_exact val_loss:3.64000000 val_bpb:2.04700000\n")
    assert (s.final_method, s.final_val_bpb, s.final_audit) == ("phased_ttt", 2.047, "fail")


def test_bundle_holds_ttt_doc_only_when_a_per_document_eval_is_on():
    import yaml

    from pgolf.bundle import bundle

    plain = bundle(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert "class DocAdapters" not in plain and "from ttt_doc import" not in plain
    config = overlay_config()
    config["eval"]["phased_ttt"]["enabled"] = False
    with_doc = bundle(config)
    assert "class DocAdapters" in with_doc and "from ttt_doc import" not in with_doc
    assert with_doc.index("class DocAdapters") < with_doc.index("def claimed_method")
    compile(with_doc, "train_gpt.py", "exec")


def test_per_document_ttt_scores_the_frontier_model_by_its_own_forward():
    """token_losses runs the model's class forward, so a FrontierGPT (here with gated skips and two
    parallel lanes) is scored as itself, not as the plain GPT it extends. Mutation: `type(model).hidden`
    -> `GPT.hidden` in ttt_doc.token_losses."""
    from frontier import FrontierConfig, FrontierGPT

    torch.manual_seed(0)
    model = FrontierGPT(FrontierConfig(vocab_size=VOCAB, num_layers=4, model_dim=32, num_heads=2, num_kv_heads=1,
                                       skip_gates=True, parallel_start_layer=2)).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    x = torch.randint(0, VOCAB, (2, 16))
    y = torch.randint(0, VOCAB, (2, 16))
    with torch.no_grad():
        got = token_losses(model, x, y, NO_AUTOCAST)
        want = model.token_nll(x, y).view_as(y)
        plain = torch.nn.functional.cross_entropy(model.logits(GPT.hidden(model, x)).flatten(0, 1), y.flatten(), reduction="none").view_as(y)
    torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)
    assert (plain - got).abs().max() > 1e-3  # the plain GPT's forward would score another model
