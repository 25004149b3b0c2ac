"""Export stage: compressors, artifact safety, GPTQ, the size accounting and `pgolf size`."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest
import torch

from model import GPT, GPTConfig
from quantize import ExportConfig, compress, decompress, export, load_artifact
from runtime import RunLog, UserError

from pgolf.record import requirements


def small_checkpoint(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=300, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2)
    model = GPT(cfg)
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    return {"config": cfg.to_dict(), "state_dict": {k: v.clone() for k, v in model.state_dict().items()}}


def write_artifact(tmp_path, compressor: str = "lzma", level: int = 6):
    ckpt = small_checkpoint()
    blob, metrics = export(ckpt, ExportConfig(passthrough_max_numel=1024, compressor=compressor, compress_level=level), RunLog(rank=1))
    path = tmp_path / "final_model.ptz"
    path.write_bytes(blob)
    return path, blob, metrics, ckpt


# ----------------------------------------------------------------------------- compressors


def test_brotli_round_trip_gives_the_same_weights_as_lzma(tmp_path):
    path, blob, metrics, _ = write_artifact(tmp_path, "brotli", 11)
    assert metrics["label"] == "int6+brotli" and metrics["model_bytes"] == len(blob)
    _, from_brotli = load_artifact(str(path))
    lzma_path, *_ = write_artifact(tmp_path / "..", "lzma", 6)
    _, from_lzma = load_artifact(str(lzma_path))
    assert set(from_brotli) == set(from_lzma)
    assert all(torch.equal(from_brotli[k], from_lzma[k]) for k in from_lzma)
    assert decompress(compress(b"abc" * 1000, "brotli", 11)) == b"abc" * 1000


def test_brotli_is_in_the_record_requirements():
    assert requirements("2.13.0+cpu", "brotli").splitlines() == ["torch==2.13.0", "numpy", "sentencepiece", "brotli"]
    assert "brotli" not in requirements("2.13.0", "lzma")


def test_brotli_level_above_11_is_a_config_error():
    import yaml

    from conftest import REPO
    from pgolf.config import ConfigError, check_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["export"].update(compressor="brotli", compress_level=12)
    with pytest.raises(ConfigError, match=r"^export.compress_level: brotli takes 0-11, got 12$"):
        check_config(config)


# ----------------------------------------------------------------------------- pgolf bundle --src


def pgolf(*args, cwd=None) -> subprocess.CompletedProcess:
    import os
    import sys

    from conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "pgolf.cli", *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


def test_bundle_reads_the_record_code_it_is_given_not_the_packages(tmp_path):
    import shutil

    from conftest import RECORD_DIR

    src = tmp_path / "workflow" / "record"
    shutil.copytree(RECORD_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "slot.py").write_text("# MARKER-edited-in-this-workflow\n" + (src / "slot.py").read_text())
    (tmp_path / "settings.json").write_text(json.dumps({"train": {}, "export": {}, "eval": {}}))
    r = pgolf("bundle", "--config", "settings.json", "--src", "workflow/record", "--out", "train_gpt.py", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "MARKER-edited-in-this-workflow" in (tmp_path / "train_gpt.py").read_text()
    (src / "slot.py").unlink()
    r = pgolf("bundle", "--config", "settings.json", "--src", "workflow/record", "--out", "other.py", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "error: workflow/record: record module(s) missing: slot.py"
    assert not (tmp_path / "other.py").exists()


def test_bundle_rule_passes_the_workflows_record_folder():
    from conftest import REPO

    rule = (REPO / "workflow/rules/record.smk").read_text()
    assert 'src="workflow/record"' in rule and "--src {params.src}" in rule
