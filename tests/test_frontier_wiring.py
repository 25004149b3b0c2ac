"""The frontier model through every stage: train, export (GPTQ Hessians included), every eval, entry.py.

One record run of the bundled train_gpt.py (entry.py: train, export, roundtrip, sliding, SLOT, TTT in
one process) on CPU with a tiny FrontierGPT that has every feature on and loops from mid-training,
exported with the April options that need no lrzip (SD clipping, act-order GPTQ, LQER, byte
shuffle: frontier_export.py in the script); then the artifact it wrote is loaded into FrontierGPT
directly and scored by hand, and the eval's numbers must be that model's own.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from build import build_model, model_config
from conftest import REPO
from frontier import FrontierConfig, FrontierGPT
from model import GPT, GPTConfig
from quantize import ARTIFACT_FORMAT_LQER, byte_unshuffle, decompress, load_artifact
from runtime import load_val_tokens, manifest_paths, read_manifest
from test_frontier_model import TINY_FRONTIER
from test_trainer import data  # noqa: F401  (the trainer tests' small dataset fixture, vocab 512)

from pgolf.bundle import bundle
from pgolf.config import check_config, merge_overlay

EVERY_FEATURE = {**TINY_FRONTIER, "loop_from": 0.5}  # parallel lanes, gated skips, sparse gate, BOS smear, doc attention, loop 3 passes


def record_config() -> dict:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    merge_overlay(config, yaml.safe_load((REPO / ".test/config.yaml").read_text()))
    merge_overlay(config, {
        "train": {"device": "cpu", "model": EVERY_FEATURE, "iterations": 8, "warmdown_iters": 4, "val_max_tokens": 1024},
        "export": {"gptq": {"enabled": True, "act_order": True, "device": "cpu", "calib_batches": 1, "calib_batch_seqs": 2, "calib_seq_len": 64},
                   "clip_sigmas": {"matrix": 12.85, "embed": 14.0}, "lqer": {"enabled": True, "asym": True, "top_k": 2}, "byte_shuffle": 2},
        "eval": {"device": "cpu", "max_tokens": 768, "slot": {"enabled": True}, "ttt": {"enabled": True, "chunk_tokens": 256, "audit_chunk_tokens": 256}},
    })
    check_config(config)
    return config


@pytest.fixture(scope="module")
def record_run(data, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("frontier_record")
    config = record_config()
    (root / "train_gpt.py").write_text(bundle(config))
    r = subprocess.run([sys.executable, str(root / "train_gpt.py"), "--data", str(data), "--seed", "3", "--out-dir", str(root)],
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return {"root": root, "config": config, "log": r.stdout, "results": json.loads((root / "results.json").read_text()), "manifest": read_manifest(str(data)), "data": str(data)}


def artifact_model(root) -> FrontierGPT:
    """The dequantized artifact in FrontierGPT, built here without build_model."""
    config, state = load_artifact(str(root / "final_model.ptz"))
    model = FrontierGPT(FrontierConfig(**config))
    model.load_state_dict(state)
    return model.eval()


def test_record_run_trains_exports_and_evaluates_the_frontier_model(record_run):
    """Mutation: build.build_model returning GPT(cfg) for every config (the stages' old line) fails
    the export and every eval (the frontier tensors do not load into GPT)."""
    log, results = record_run["log"], record_run["results"]
    assert "layer_loop:enabled step:4 " in log  # 8 steps, loop_from 0.5
    # GPTQ ran its Hessian pass through FrontierGPT: 4 blocks x (q, k, v, proj, up, down).
    assert "gptq: calibration 1x2x64 train tokens, 24 matrices, device:cpu" in log
    # The April export ran inside the script: frontier_export.py is bundled, the artifact is LQER's format.
    assert "# ==================== frontier_export.py" in (record_run["root"] / "train_gpt.py").read_text()
    blob = (record_run["root"] / "final_model.ptz").read_bytes()
    assert torch.load(io.BytesIO(byte_unshuffle(decompress(blob))), weights_only=True)["format"] == ARTIFACT_FORMAT_LQER
    assert results["train"]["model_params"] == sum(p.numel() for p in artifact_model(record_run["root"]).parameters())
    for method in ("roundtrip", "sliding", "slot", "ttt"):
        assert 0 < results[method]["val_loss"] < 7, method


@pytest.mark.parametrize("stage", ["sliding", "slot", "ttt"])
def test_eval_stages_score_the_frontier_artifact_with_their_audits(record_run, stage, tmp_path):
    """The Snakemake stages' own entry points (evaluate.py, slot.py, ttt.py) on the record's artifact:
    the same score as entry.py's, and the stage's causality audit passes."""
    from evaluate import eval_main
    from slot import slot_main
    from ttt import ttt_main

    root, ecfg = record_run["root"], record_run["config"]["eval"]
    hp = tmp_path / "eval.json"
    hp.write_text(json.dumps(ecfg))
    common = ["--hparams", str(hp), "--artifact", str(root / "final_model.ptz"), "--data", record_run["data"], "--out", str(tmp_path / "out.json")]
    {"sliding": lambda: eval_main(["sliding", *common]), "slot": lambda: slot_main(["--mode", "causal", *common]), "ttt": lambda: ttt_main(common)}[stage]()
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["audit"]["verdict"] == "pass" and out["audit"]["scores_compared"] > 0
    assert out["val_loss"] == pytest.approx(record_run["results"][stage]["val_loss"], abs=1e-6)


def test_eval_scores_are_frontier_gpts_own_forward_on_the_artifact(record_run):
    """Roundtrip and sliding val_loss equal the sums of FrontierGPT's own token NLLs over the same
    sequences / windows of the dequantized weights (looping on, as after training)."""
    from evaluate import sliding_windows

    model = artifact_model(record_run["root"])
    assert model.looping
    ecfg = record_run["config"]["eval"]
    seq_len, stride = ecfg["seq_len"], ecfg["stride"]
    tokens = load_val_tokens(manifest_paths(record_run["manifest"], "val"), seq_len, ecfg["max_tokens"])
    with torch.no_grad():
        n = (len(tokens) - 1) // seq_len
        x, y = tokens[: n * seq_len].view(n, seq_len), tokens[1 : n * seq_len + 1].view(n, seq_len)
        roundtrip = model(x, y).item()
        total, count = 0.0, 0
        windows = sliding_windows(len(tokens) - 1, seq_len, stride)
        for length in {w[1] for w in windows}:  # windows of one length as one batch
            same = [(start, first) for start, n, first in windows if n == length]
            idx = torch.tensor([start for start, _ in same])[:, None] + torch.arange(length)[None]
            nll = model.token_nll(tokens[idx], tokens[idx + 1])
            for row, (_, first) in enumerate(same):
                total, count = total + nll[row, first:].double().sum().item(), count + length - first
    results = record_run["results"]
    assert results["roundtrip"]["val_loss"] == pytest.approx(roundtrip, abs=2e-6)
    assert results["sliding"]["val_loss"] == pytest.approx(total / count, abs=2e-6)


def test_build_model_picks_the_class_from_the_config_keys():
    """Plain keys build GPT (the embedded default); any FrontierConfig key, or a FrontierConfig's
    saved dict, builds FrontierGPT. Mutation: `<=` -> `<` in model_config."""
    plain = {"num_layers": 2, "model_dim": 32, "num_heads": 2, "num_kv_heads": 1, "vocab_size": 64}
    assert type(model_config(plain)) is GPTConfig and type(build_model(plain)) is GPT
    assert type(build_model(GPTConfig(**plain).to_dict())) is GPT
    frontier = FrontierConfig(**plain, skip_gates=True)
    assert type(model_config({**plain, "skip_gates": False})) is FrontierConfig
    rebuilt = build_model(frontier.to_dict())
    assert type(rebuilt) is FrontierGPT and rebuilt.cfg == frontier
