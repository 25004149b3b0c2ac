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


# ----------------------------------------------------------------------------- size accounting


def record_pair(folder, code_bytes: int, model_bytes: int, model_name: str = "final_model.ptz"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_gpt.py").write_bytes(b"#" * code_bytes)
    (folder / model_name).write_bytes(b"\xfd7zXZ\x00" + b"\0" * (model_bytes - 6))
    return folder / "train_gpt.py", folder / model_name


@pytest.mark.parametrize("model_bytes,ok", [(15_990_000, True), (15_990_001, False)])
def test_size_limit_is_decimal_and_inclusive(tmp_path, model_bytes, ok):
    from pgolf.size import SizeError, gate

    code, model = record_pair(tmp_path / "rec", 10_000, model_bytes)
    out = tmp_path / "size.json"
    if ok:
        report = gate([code], model, out, 16_000_000, "lzma")
        assert report["total_bytes"] == 16_000_000 and report["headroom_bytes"] == 0
        assert json.loads(out.read_text())["ok"] is True
    else:
        with pytest.raises(SizeError, match=r"code 10000 \+ model 15990001 = 16000001 bytes > limit 16000000 \(over by 1\)"):
            gate([code], model, out, 16_000_000, "lzma")
        assert not out.exists()
    r = pgolf("size", tmp_path / "rec")
    assert r.returncode == (0 if ok else 1), r.stderr
    lines = dict(line.split(None, 1) for line in r.stdout.splitlines() if not line.startswith("sha256"))
    assert lines["total_bytes"] == str(10_000 + model_bytes) and lines["limit"] == "16000000"
    assert lines["ok"] == ("yes" if ok else "NO") and lines["compressor"] == "lzma"
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert f"sha256 {model} {sha}".split() in [line.split() for line in r.stdout.splitlines()]


def test_pgolf_size_takes_a_code_and_artifact_pair(tmp_path):
    path, blob, _, _ = write_artifact(tmp_path, "brotli", 11)
    code = tmp_path / "train_gpt.py"
    code.write_text("print('hi')\n")
    r = pgolf("size", code, path, "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["model_bytes"] == len(blob) and report["code_bytes"] == 12 and report["compressor"] == "brotli"
    assert report["total_bytes"] == len(blob) + 12


def test_pgolf_size_finds_the_model_a_log_names(tmp_path):
    rec = tmp_path / "rec"
    record_pair(rec, 100, 1000, "final_model.int6.ptz")
    (rec / "final_model.old.ptz").write_bytes(b"x" * 50)
    (rec / "train_seed1.log").write_text("saved final_model.int6.ptz\n")
    r = pgolf("size", rec, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["model_file"]["name"] == "final_model.int6.ptz"


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing_dir"], "error: missing_dir: no such file or folder"),
        (["empty"], "error: empty: no train_gpt.py in this folder"),
        (["code_only"], "error: no compressed model found in code_only: give the artifact too (e.g. final_model.ptz)"),
    ],
)
def test_pgolf_size_user_errors_exit_2_with_one_line(tmp_path, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "code_only").mkdir()
    (tmp_path / "code_only" / "train_gpt.py").write_text("x = 1\n")
    r = pgolf("size", *args, cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == message and r.stdout == ""


# ----------------------------------------------------------------------------- artifact safety


def test_export_json_records_the_artifact_sha256(tmp_path):
    path, blob, metrics, _ = write_artifact(tmp_path)
    assert metrics["sha256"] == hashlib.sha256(blob).hexdigest()
    config, state = load_artifact(str(path), metrics["sha256"])
    assert config["model_dim"] == 64 and state


def test_tampered_artifact_is_refused_by_sha256(tmp_path):
    path, blob, metrics, _ = write_artifact(tmp_path)
    tampered = bytearray(blob)
    tampered[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(tampered))
    with pytest.raises(UserError) as e:
        load_artifact(str(path), metrics["sha256"])
    msg = str(e.value)
    assert msg.startswith(f"{path}: sha256 {hashlib.sha256(bytes(tampered)).hexdigest()} does not match the exported artifact's {metrics['sha256']}")
    assert "\n" not in msg


@pytest.mark.parametrize("compressor", ["lzma", "zstd", "brotli"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_artifact_is_one_clear_line(tmp_path, compressor, damage):
    path, blob, _, _ = write_artifact(tmp_path, compressor, 6)
    data = {"truncated": blob[: len(blob) // 2], "garbage": blob[:6] + b"\x13\x37" * 500, "empty": b""}[damage]
    path.write_bytes(data)
    with pytest.raises(UserError) as e:
        load_artifact(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: corrupt artifact") or msg.startswith(f"{path}: refused or unreadable artifact payload"), msg
    assert "\n" not in msg


def test_artifact_of_another_format_is_refused(tmp_path):
    import io

    buf = io.BytesIO()
    torch.save({"format": "something-else", "q": {}}, buf)
    path = tmp_path / "other.ptz"
    path.write_bytes(compress(buf.getvalue(), "zstd", 3))
    with pytest.raises(UserError, match=r"other.ptz: unknown artifact format 'something-else' \(expected pgolf-quant/1\)$"):
        load_artifact(str(path))
