"""Score-first test-time training: chunking, the 1- and 2-process passes, and the causality audit."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from evaluate import EvalConfig, EvalSetup, eval_sliding, fixed_scorer, sliding_windows, window_batch
from model import GPT, GPTConfig
from runtime import Dist, UserError
from ttt import TTTConfig, adapted_params, chunk_lr, eval_ttt, score_then_train, ttt_audit, windows_by_chunk

NO_AUTOCAST = contextlib.nullcontext
VOCAB = 64
SEEDS = [1337, 42]


def tiny_model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=VOCAB, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, ve_layers=[1], bigram_vocab_size=64, bigram_dim=16))
    for p in model.parameters():
        p.data.normal_(0, 0.3)
    return model.eval()


def repetitive_tokens(n: int) -> torch.Tensor:
    """A stream with a pattern to learn: TTT should beat the fixed predictor on it."""
    g = torch.Generator().manual_seed(1)
    motif = torch.randint(0, VOCAB, (23,), generator=g)
    tokens = motif.repeat(n // 23 + 1)[:n]
    noise = torch.rand(n, generator=g) < 0.1
    return torch.where(noise, torch.randint(0, VOCAB, (n,), generator=g), tokens)


LUTS = (torch.ones(VOCAB, dtype=torch.int16), torch.zeros(VOCAB, dtype=torch.bool), torch.zeros(VOCAB, dtype=torch.bool))
CFG = EvalConfig(seq_len=32, stride=16, batch_seqs=8)
TTT = TTTConfig(enabled=True, chunk_tokens=128, lr=0.05, epochs=2, batch_seqs=4, audit_chunks=3)


@pytest.fixture(autouse=True)
def deterministic():
    torch.use_deterministic_algorithms(True)
    yield


def test_every_target_is_scored_once_in_the_chunk_of_its_window():
    total, chunk = 1000, 128
    windows = sliding_windows(total, 64, 16)
    chunks = windows_by_chunk(windows, chunk, total)
    assert len(chunks) == math.ceil(total / chunk) and sum(map(len, chunks)) == len(windows)
    scored = [start + pos for c in chunks for start, length, first in c for pos in range(first, length)]
    assert scored == list(range(total))  # each once, and in stream order
    for k, c in enumerate(chunks):
        assert all(k * chunk <= start + first < (k + 1) * chunk for start, _, first in c)


def test_cosine_lr_across_chunks_and_constant():
    ttt = TTTConfig(lr=0.002)
    assert chunk_lr(ttt, 0, 5) == pytest.approx(0.002) and chunk_lr(ttt, 2, 5) == pytest.approx(0.001)
    assert chunk_lr(ttt, 4, 5) == pytest.approx(0.0, abs=1e-12)
    assert chunk_lr(TTTConfig(lr=0.002, lr_schedule="constant"), 4, 5) == 0.002


def test_adapted_parameters_by_name_pattern():
    model = tiny_model()
    chosen = adapted_params(model, TTTConfig(adapt=["blocks.*"], freeze=["blocks.0.*"]))
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("blocks.1.") for n in names)
    assert sum(p.numel() for p in chosen) == sum(p.numel() for n, p in model.named_parameters() if n.startswith("blocks.1."))
    with pytest.raises(UserError, match=r"eval.ttt.adapt \['nothing\*'\] minus eval.ttt.freeze \[\] matches no parameter"):
        adapted_params(model, TTTConfig(adapt=["nothing*"]))


def test_first_chunk_scores_equal_sliding_and_ttt_beats_it():
    tokens = repetitive_tokens(1025)
    dist = Dist("cpu")
    sliding = eval_sliding(EvalSetup(tiny_model(), tokens, CFG, dist, LUTS, NO_AUTOCAST))
    model = tiny_model()
    ttt = eval_ttt(EvalSetup(model, tokens, CFG, dist, LUTS, NO_AUTOCAST), TTT)
    assert ttt["tokens"] == sliding["tokens"] == 1024 and ttt["chunks"] == 8
    # 7 chunks trained (the last never), 4 whole sequences of 32 each, 2 epochs
    assert ttt["tokens_trained"] == 7 * 4 * 32 * 2
    assert ttt["val_bpb"] < sliding["val_bpb"] - 0.05, (ttt["val_bpb"], sliding["val_bpb"])
    # no training at all (epochs 0): TTT is the sliding score
    same = eval_ttt(EvalSetup(tiny_model(), tokens, CFG, dist, LUTS, NO_AUTOCAST), TTTConfig(chunk_tokens=128, epochs=0))
    assert same["val_loss"] == pytest.approx(sliding["val_loss"], rel=1e-12)
    # the model was trained in place: its weights moved
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny_model().state_dict().values()))


def test_audit_passes_on_the_real_code_and_restores_the_weights():
    tokens = repetitive_tokens(2049)
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    audit = ttt_audit(model, tokens, CFG, TTT, Dist("cpu"), NO_AUTOCAST, VOCAB)
    assert audit["checked"] and audit["verdict"] == "pass", audit
    assert audit["chunks"] == 3 and audit["tolerance"] == 0.0
    # flips: last target of chunk 0, middle and last of chunk 1 (the stretch: targets 832..1215)
    assert audit["flipped_targets"] == [832 + 127, 832 + 192, 832 + 255]
    assert audit["scores_compared"] == 127 + 192 + 255
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def leaky_train_then_score(model, tokens, ttt, cfg, dist, autocast, on_scored):
    """The forbidden order: train on each chunk, then score that same chunk."""
    from ttt import ChunkTrainer, chunk_lr

    seq_len, total = cfg.seq_len, len(tokens) - 1
    chunks = windows_by_chunk(sliding_windows(total, seq_len, cfg.stride), ttt.chunk_tokens, total)
    trainer, score = ChunkTrainer(model, ttt, seq_len, dist, autocast), fixed_scorer(model, autocast)
    for k, windows in enumerate(chunks):
        lo = k * ttt.chunk_tokens
        trainer.train(tokens, lo, min(lo + ttt.chunk_tokens, total), chunk_lr(ttt, k, len(chunks)))
        b = window_batch(tokens, windows, seq_len, dist.device)
        on_scored(windows, b, score(b))


def test_audit_fails_the_leaky_variant():
    tokens = repetitive_tokens(2049)
    audit = ttt_audit(tiny_model(), tokens, CFG, TTT, Dist("cpu"), NO_AUTOCAST, VOCAB, run=leaky_train_then_score)
    assert audit["verdict"] == "fail" and audit["violations"] > 0 and audit["max_abs_change"] > 1e-4, audit


def test_audit_needs_two_chunks():
    audit = ttt_audit(tiny_model(), repetitive_tokens(129), CFG, TTT, Dist("cpu"), NO_AUTOCAST, VOCAB)
    assert audit == {"checked": False, "verdict": "not run"}


TWO_RANKS = """
import json, sys, torch
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
import test_ttt as t
from runtime import Dist
torch.use_deterministic_algorithms(True)
dist = Dist("cpu")
tokens = t.repetitive_tokens(1025)
model = t.tiny_model()
r = t.eval_ttt(t.EvalSetup(model, tokens, t.CFG, dist, t.LUTS, t.NO_AUTOCAST), t.TTT)
audit = t.ttt_audit(t.tiny_model(), t.repetitive_tokens(2049), t.CFG, t.TTT, dist, t.NO_AUTOCAST, t.VOCAB)
w = [p.detach().clone() for p in model.parameters()]
gathered = [torch.zeros_like(w[0]) for _ in range(dist.world_size)]
torch.distributed.all_gather(gathered, w[0])
if dist.is_main:
    json.dump({"r": r, "audit": audit, "same_weights": all(torch.equal(gathered[0], g) for g in gathered)}, open(sys.argv[3], "w"))
dist.close()
"""


def test_two_processes_match_one(tmp_path):
    """gloo, 2 ranks: windows and training sequences split, gradients summed: the same TTT."""
    script = tmp_path / "two.py"
    script.write_text(TWO_RANKS)
    out = tmp_path / "out.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["torchrun", "--standalone", "--nproc_per_node", "2", str(script), str(REPO / "workflow/record"), str(Path(__file__).parent), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    two = json.loads(out.read_text())
    one = eval_ttt(EvalSetup(tiny_model(), repetitive_tokens(1025), CFG, Dist("cpu"), LUTS, NO_AUTOCAST), TTT)
    assert two["same_weights"] is True
    assert two["r"]["tokens"] == one["tokens"] and two["r"]["tokens_trained"] == one["tokens_trained"]
    assert two["r"]["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
    assert two["audit"]["verdict"] == "pass" and two["audit"]["scores_compared"] == 127 + 192 + 255


# ----------------------------------------------------------------------------- in the workflow


def _workflow_helpers():
    from test_workflow import dry_run, overlay, record_dir

    return dry_run, overlay, record_dir


def test_record_reports_ttt_beside_sliding_with_its_audit(tiny_run):
    workdir, _ = tiny_run
    _, _, record_dir = _workflow_helpers()
    rec = record_dir(workdir)
    sub = json.loads((rec / "submission.json").read_text())
    assert sub["eval_method"] == "slot_causal"  # the tiny run's headline; TTT beside it
    for seed, row in sub["seed_results"].items():
        log = (rec / f"train_seed{seed}.log").read_text()
        # Other tests on the shared run may have added TTT stages of other settings: the record's
        # is the one its log quotes, and exactly one stage must be.
        stages = [json.loads(p.read_text()) for p in workdir.glob(f"results/ttt/*/seed{seed}/ttt.json")]
        (ttt,) = [t for t in stages if f"final_ttt_exact val_loss:{t['val_loss']:.8f} val_bpb:{t['val_bpb']:.8f}" in log]
        assert "==== pgolf stage: eval ttt" in log
        assert row["audits"]["ttt"] == ttt["audit"]["verdict"] == "pass" and ttt["audit"]["scores_compared"] > 0
        assert row["ttt_val_bpb"] == round(ttt["val_bpb"], 8) and ttt["tokens"] == 4096 and ttt["chunks"] == 4
        assert " audit:pass eval_time:" in next(ln for ln in log.splitlines() if ln.startswith("final_ttt "))
    readme = (rec / "README.md").read_text()
    row = next(ln for ln in readme.splitlines() if ln.startswith("| `ttt`"))
    gain = statistics.fmean(r["ttt_val_bpb"] - r["sliding_val_bpb"] for r in sub["seed_results"].values())
    assert f"| {gain:+.5f} |" in row and row.endswith("| pass, pass |")


def test_ttt_setting_reruns_only_ttt_and_the_record(tiny_run):
    workdir, _ = tiny_run
    dry_run, overlay, _ = _workflow_helpers()
    jobs = dry_run(workdir, overlay(workdir, "ttt_lr", {"eval": {"ttt": {"lr": 0.01}}}))
    assert jobs.get("eval_ttt") == 2 and jobs.get("record") == 1
    assert set(jobs) <= {"stage_config", "eval_ttt", "bundle_code", "size_gate", "record", "all"}
    # Making TTT the headline evaluates nothing new.
    jobs = dry_run(workdir, overlay(workdir, "ttt_head", {"eval": {"ttt": {"headline": True}}}))
    assert set(jobs) <= {"bundle_code", "size_gate", "record", "all"}


def test_ttt_headline_record_and_its_script_reproduce_the_ttt_score(tiny_run):
    """TTT as the headline: submission says ttt and score-first by audit; the record's single
    train_gpt.py, run alone, gives the staged TTT score bit for bit (CPU)."""
    from conftest import snakemake

    workdir, _ = tiny_run
    _, overlay, record_dir = _workflow_helpers()
    extra = overlay(workdir, "ttt_headline", {"eval": {"ttt": {"headline": True}}, "record": {"name": "Tiny_TTT"}})
    before = set(workdir.glob("results/verify/*"))
    result = snakemake(workdir, "verify", "--configfile", ".test/config.yaml", extra, configs=())
    (mine,) = set(workdir.glob("results/verify/*")) - before
    try:
        _check_ttt_headline(workdir, result, mine, record_dir(workdir, "Tiny_TTT"))
    finally:
        # The shared folder as the other tests expect it: test_verify counts its verify reports,
        # and size.json (one per export) now holds this record's code bytes: rebuild it.
        shutil.rmtree(mine)
        assert snakemake(workdir).returncode == 0


def _check_ttt_headline(workdir, result, verify_dir, rec):
    assert result.returncode == 0, result.stderr[-3000:]
    sub = json.loads((rec / "submission.json").read_text())
    assert sub["eval_method"] == "ttt" and sub["compliance"]["score_first_eval"] is True
    assert "Score-first: yes, by construction and by the causality audit of this record (pass, pass)" in (rec / "README.md").read_text()
    for seed in SEEDS:
        checks = json.loads((verify_dir / f"seed{seed}/verify.json").read_text())["checks"]
        assert checks["val_bpb"]["equal"] and checks["val_bpb"]["rerun"] == sub["seed_results"][str(seed)]["ttt_val_bpb"]
        assert "final_score_method:ttt" in (rec / f"train_seed{seed}.log").read_text()


def test_ttt_reports_progress_by_chunk(capsys):
    eval_ttt(EvalSetup(tiny_model(), repetitive_tokens(1025), CFG, Dist("cpu"), LUTS, NO_AUTOCAST), TTT)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("ttt:")]
    # 8 chunks: a line at every chunk that crosses the next 10%, the last at 8 of 8
    assert [int(line.split()[1]) for line in lines] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert lines[-1].startswith("ttt: 8 of 8 chunks (100%)") and lines[-1].endswith("ETA 0s")
