"""Export stage: compressors, artifact safety, GPTQ, the size accounting and `pgolf size`."""

from __future__ import annotations

import functools
import hashlib
import json
import re
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


@functools.lru_cache(maxsize=None)
def exported(compressor: str, level: int) -> tuple[bytes, dict]:
    """One export per compressor setting, shared by the tests (they only read it)."""
    return export(small_checkpoint(), ExportConfig(passthrough_max_numel=1024, compressor=compressor, compress_level=level), RunLog(rank=1))


def write_artifact(tmp_path, compressor: str = "lzma", level: int = 6):
    ckpt = small_checkpoint()
    blob, metrics = exported(compressor, level)
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
    assert r.returncode == 2 and r.stderr.strip() == "error: workflow/record: record module(s) missing: slot.py (imported by entry.py)"
    assert not (tmp_path / "other.py").exists()


def test_bundle_rule_passes_the_workflows_record_folder(tmp_path):
    """The workflow's bundle_code job ships the record modules of its own folder (an edit there shows)."""
    from conftest import copy_workflow, snakemake

    workdir = copy_workflow(tmp_path)
    slot = workdir / "workflow/record/slot.py"
    slot.write_text("# MARKER-edited-in-this-workflow\n" + slot.read_text())
    result = snakemake(workdir, "--until", "bundle_code")
    assert result.returncode == 0, result.stderr[-3000:]
    [script] = workdir.glob("results/code/*/train_gpt.py")
    assert "MARKER-edited-in-this-workflow" in script.read_text()


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
        with pytest.raises(SizeError, match=r"code 10000 \(raw\) \+ model 15990001 = 16000001 bytes > limit 16000000 \(over by 1\)"):
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


def test_pgolf_size_of_a_record_without_weights_counts_the_logged_model(tmp_path):
    # Record folders ship no model: the largest compressed size a seed log states is counted.
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "train_gpt.py").write_text("x = 1\n")  # 6 bytes
    (rec / "train_seed1.log").write_text("Serialized model int6+lzma: 15999990 bytes\n")
    (rec / "train_seed2.log").write_text("Serialized model int6+lzma: 15999994 bytes\n")
    r = pgolf("size", rec, "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["total_bytes"] == 16_000_000 and report["model_bytes"] == 15_999_994
    assert report["model_file"]["from_logs"] == {"train_seed1.log": 15_999_990, "train_seed2.log": 15_999_994}
    (rec / "train_seed2.log").write_text("Serialized model int6+lzma: 15999995 bytes\n")
    r = pgolf("size", rec)
    assert r.returncode == 1 and "total_bytes     16000001" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["missing_dir"], "error: missing_dir: no such file or folder"),
        (["empty"], "error: empty: no train_gpt.py (or train_gpt*.py) in this folder"),
        (["code_only"], "error: code_only: no compressed model in the folder and no log states its size: give the artifact too"),
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
    path, blob, _, _ = write_artifact(tmp_path, compressor, 6 if compressor != "brotli" else 11)
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
    with pytest.raises(UserError, match=r"other.ptz: unknown artifact format 'something-else' \(expected pgolf-quant/1 or pgolf-quant/2\)$"):
        load_artifact(str(path))


# ----------------------------------------------------------------------------- GPTQ


def correlated_layer(seed: int = 0, rows: int = 48, cols: int = 64, n: int = 2048):
    """A linear layer whose inputs are strongly correlated (low-rank plus noise), as activations are."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(8, cols, generator=g)
    x = torch.randn(n, 8, generator=g) @ mix + 0.1 * torch.randn(n, cols, generator=g)
    w = torch.randn(rows, cols, generator=g) * 0.05
    return w, x


@pytest.mark.parametrize("bits", [6, 4])
def test_gptq_beats_percentile_clip_on_the_layer_output(bits):
    from quantize import gptq_quantize_rows, quantize_rows

    w, x = correlated_layer()
    H = x.T @ x / x.size(0)
    pcts = [99.9, 99.99, 100.0]
    q_p, s_p, _ = quantize_rows(w, bits, pcts)
    q_g, s_g, _ = gptq_quantize_rows(w, H, bits, pcts, block_size=16, damp=0.01)
    qmax = 2 ** (bits - 1) - 1
    assert q_g.dtype == torch.int8 and int(q_g.abs().max()) <= qmax
    assert torch.equal(s_g, s_p)  # same scales, same artifact format
    out = x @ w.T
    err_p = ((x @ (q_p.float() * s_p.float()[:, None]).T - out) ** 2).mean().item()
    err_g = ((x @ (q_g.float() * s_g.float()[:, None]).T - out) ** 2).mean().item()
    assert err_g < 0.7 * err_p, (err_g, err_p)


def test_gptq_with_an_identity_hessian_is_plain_rounding():
    from quantize import gptq_quantize_rows, quantize_rows

    w, _ = correlated_layer(1)
    q_p, _, _ = quantize_rows(w, 6, [100.0])
    q_g, _, _ = gptq_quantize_rows(w, torch.eye(w.size(1)), 6, [100.0], block_size=16, damp=0.0)
    assert torch.equal(q_g, q_p)


def tiny_dataset(folder) -> str:
    """A manifest with one train shard and one val shard; the val shard is unreadable on purpose."""
    import numpy as np

    from pgolf.shards import write_shard

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    write_shard(folder / "fineweb_train_000000.bin", rng.integers(0, 300, 5000))
    (folder / "fineweb_val_000000.bin").write_bytes(b"not a shard: GPTQ must never read validation data")
    files = [{"path": "fineweb_train_000000.bin", "split": "train"}, {"path": "fineweb_val_000000.bin", "split": "val"}]
    (folder / "manifest.json").write_text(json.dumps({"files": files, "tokenizer": {"vocab_size": 300}}))
    return str(folder / "manifest.json")


class StopAfterExport(Exception):
    pass


def run_until_export(script, trained, tmp_path, config):
    """Runs a bundled script's record_main with `trained` standing in for training, up to the
    point where the eval stage would load the artifact it just exported."""

    class Stop:
        @classmethod
        def load(cls, *args):
            raise StopAfterExport

    script.train, script.EvalSetup = trained, Stop
    manifest = tiny_dataset(tmp_path / "data")
    with pytest.raises(StopAfterExport):
        script.record_main(["--data", manifest, "--seed", "1", "--out-dir", str(tmp_path)], config)


def test_gptq_export_calibrates_on_train_shards_only(tmp_path, monkeypatch):
    import runtime
    from runtime import read_manifest

    manifest = read_manifest(tiny_dataset(tmp_path / "data"))
    read = []
    real = runtime.load_shard
    monkeypatch.setattr(runtime, "load_shard", lambda p: read.append(p.name) or real(p))
    ckpt = small_checkpoint()
    gptq = {"enabled": True, "block_size": 32, "damp": 0.01, "calib_batches": 2, "calib_batch_seqs": 4, "calib_seq_len": 64, "device": "cpu"}
    log_path = tmp_path / "log.txt"
    blob, metrics = export(ckpt, ExportConfig(passthrough_max_numel=1024, gptq=gptq), RunLog(path=str(log_path)), manifest)
    assert read and set(read) == {"fineweb_train_000000.bin"}
    assert metrics["gptq"] is True and metrics["gptq_time_ms"] > 0 and metrics["label"] == "int6+lzma"
    log = log_path.read_text()
    assert f"gptq_time_ms:{metrics['gptq_time_ms']:.0f}" in log and "gptq: calibration 2x4x64 train tokens, 12 matrices, device:cpu" in log
    path = tmp_path / "m.ptz"
    path.write_bytes(blob)
    _, state = load_artifact(str(path), metrics["sha256"])  # the same format as the percentile path
    assert set(state) == set(ckpt["state_dict"])
    plain, plain_metrics = export(ckpt, ExportConfig(passthrough_max_numel=1024), RunLog(rank=1))
    assert plain_metrics["gptq"] is False and plain_metrics["gptq_time_ms"] == 0
    assert blob != plain
    with pytest.raises(UserError, match="export.gptq.enabled: GPTQ calibrated on training tokens needs the training data"):
        export(ckpt, ExportConfig(passthrough_max_numel=1024, gptq=gptq), RunLog(rank=1))


def test_gptq_on_generated_text_reads_no_data(tmp_path, monkeypatch):
    """export.gptq.calibration: generated (PR #1229) calibrates on sequences the model samples
    itself: no manifest, no shard read, the same bytes for the same seed, other bytes for another.
    Mutation: ignore `calibration` in gptq_hessians (it then asks for the training data)."""
    import runtime

    monkeypatch.setattr(runtime, "load_shard", lambda p: pytest.fail(f"read {p}"))
    ckpt = small_checkpoint()
    gptq = {"enabled": True, "block_size": 32, "damp": 0.01, "calib_batches": 1, "calib_batch_seqs": 2, "calib_seq_len": 16, "device": "cpu",
            "calibration": "generated"}
    log_path = tmp_path / "log.txt"
    blob, metrics = export(ckpt, ExportConfig(passthrough_max_numel=1024, gptq=gptq), RunLog(path=str(log_path)))
    assert metrics["gptq"] is True
    assert "gptq: calibration 1x2x16 generated tokens (temperature 0.8, seed 42), 12 matrices, device:cpu" in log_path.read_text()
    again, _ = export(ckpt, ExportConfig(passthrough_max_numel=1024, gptq=gptq), RunLog(rank=1))
    other, _ = export(ckpt, ExportConfig(passthrough_max_numel=1024, gptq={**gptq, "gen_seed": 7}), RunLog(rank=1))
    plain, _ = export(ckpt, ExportConfig(passthrough_max_numel=1024), RunLog(rank=1))
    assert again == blob and other != blob and plain != blob


def test_generated_calibration_code_is_bundled_only_when_asked():
    """calib_gen.py is in train_gpt.py only with export.gptq.calibration: generated. Mutation:
    `== "generated"` -> `is not None` in bundle.export_key_on."""
    import copy

    import yaml

    from conftest import REPO
    from pgolf.bundle import bundle

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    header = "# ==================== calib_gen.py"
    assert header not in bundle(config)
    train = copy.deepcopy(config)
    train["export"]["gptq"]["calibration"] = "train"
    assert header not in bundle(train)
    on = copy.deepcopy(config)
    on["export"]["gptq"].update(enabled=True, calibration="generated")
    text = bundle(on)
    assert header in text and "def generated_batches" in text and "from calib_gen import" not in text
    assert text.index("calib_gen.py ====") < text.index("quantize.py ====")
    compile(text, "train_gpt.py", "exec")


def test_record_refuses_train_plus_gptq_over_the_budget():
    from pgolf.record import BudgetError, check_train_budget

    train = {"train_time_ms": 590_000.0}
    fits = {"gptq": True, "gptq_time_ms": 10_000.0}
    check_train_budget(1337, train, fits, 600)  # 600.000 s: exactly the budget
    over = {**fits, "gptq_time_ms": 10_001.0}
    with pytest.raises(BudgetError) as e:
        check_train_budget(1337, train, over, 600, "results/export/x/seed1337/export.json")
    assert str(e.value) == (
        "results/export/x/seed1337/export.json: seed 1337: train 590.000s + GPTQ 10.001s = 600.001s"
        " exceeds the training budget of 600s (export.gptq.train_budget_seconds)"
    )
    check_train_budget(1337, {"train_time_ms": 700_000.0}, {"gptq": False, "gptq_time_ms": 0.0}, 600)  # off: not GPTQ's check


def test_gptq_time_is_charged_to_the_seeds_train_time():
    from pgolf.record import seed_result

    stage = {
        "train": {"steps": 10, "step_avg_ms": 1.0, "train_time_ms": 1000.0, "init_val_bpb": 4.0, "pre_quant_val_bpb": 2.0},
        "export": {"gptq": True, "gptq_time_ms": 250.0},
        "size": {"total_bytes": 10, "model_bytes": 5},
        "final": {"val_loss": 1.0, "val_bpb": 1.5},
        "roundtrip": {"val_bpb": 1.6, "eval_time_ms": 1.0},
        "sliding": {"val_bpb": 1.5, "eval_time_ms": 1.0},
    }
    assert seed_result(1, stage)["train_time_s"] == 1.25


def test_gptq_time_bench_runs_on_cpu_at_a_tiny_shape():
    import re
    import sys

    from conftest import REPO

    r = subprocess.run([sys.executable, str(REPO / "bench/gptq_time.py"), "--tiny", "--device", "cpu", "--repeats", "0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert re.search(r"warm-up: shape 2x64 device:cpu calib 2x2x64 matrices:12 block_size:128 hessian_ms:\d+ quantize_ms:\d+ gptq_time_ms:\d+", r.stdout), r.stdout


def test_shipped_script_carries_gptq_and_charges_its_time(tmp_path, capsys, monkeypatch):
    """train_gpt.py itself runs GPTQ in its export and logs train + GPTQ time (training stubbed out)."""
    import importlib.util
    import sys

    from pgolf.bundle import bundle

    gptq = {"enabled": True, "block_size": 32, "calib_batches": 2, "calib_batch_seqs": 4, "calib_seq_len": 64, "device": "cpu", "train_budget_seconds": 600}
    config = {"train": {"model": {"num_layers": 2, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2}, "device": "cpu"},
              "export": {"passthrough_max_numel": 1024, "gptq": gptq}, "eval": {"slot": {}}}
    path = tmp_path / "train_gpt.py"
    path.write_text(bundle(config))
    spec = importlib.util.spec_from_file_location("shipped_train_gpt", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclasses look their module up there
    spec.loader.exec_module(script)  # its own classes and functions, none of the record modules'

    def trained(tcfg, model_cfg, manifest, seed, dist, log):
        torch.manual_seed(seed)
        model = script.GPT(model_cfg)
        for p in model.parameters():
            p.data.normal_(0, 0.05)
        return model, {"train_time_ms": 1234.0}

    run_until_export(script, trained, tmp_path, config)
    out = capsys.readouterr().out
    gptq_ms = re.search(r"^gptq_time_ms:(\d+) ", out, re.M)
    assert gptq_ms and "gptq: calibration 2x4x64 train tokens, 12 matrices, device:cpu" in out, out
    charged = re.search(r"^train_time_with_gptq:(\d+)ms \(train 1234ms \+ gptq (\d+)ms, budget 600000ms\)$", out, re.M)
    assert charged, out
    assert charged.group(2) == gptq_ms.group(1) and abs(int(charged.group(1)) - 1234 - int(gptq_ms.group(1))) <= 1
    assert (tmp_path / "final_model.ptz").is_file()


# ----------------------------------------------------------------------------- the April export, bundled only when on

APRIL_EXPORT = {"clip_sigmas": {"matrix": 12.85, "embed": 14.0}, "lqer": {"enabled": True, "rank": 2, "top_k": 2}, "byte_shuffle": 2, "prune_to_bytes": 1}


def test_april_export_code_is_bundled_only_when_an_export_key_is_on():
    """frontier_export.py is left out of the default train_gpt.py (quantize.py reaches it only
    through these keys) and bundled when one of them is on. Mutations: drop the
    OPTIONAL_EXPORT_MODULES line in bundle.module_paths (the default bundle carries lqer_terms);
    `return value == "pergroup"` -> `return bool(value)` in bundle.export_key_on (compressor lzma
    would bundle it); `(value or {}).get("enabled")` -> `value` (a disabled lqer block would)."""
    import copy

    import yaml

    from conftest import REPO
    from pgolf.bundle import OPTIONAL_EXPORT_MODULES, bundle

    assert set(OPTIONAL_EXPORT_MODULES["frontier_export"]) <= set(ExportConfig.__dataclass_fields__)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    plain = bundle(config)
    header = "# ==================== frontier_export.py"
    assert "def dequantize_state" in plain and header not in plain
    assert not any(f"def {f}" in plain for f in ("lqer_terms", "sd_scales", "pergroup_pack", "transpose_bytes", "prune_ones("))
    off = copy.deepcopy(config)
    off["export"].update(clip_sigmas={}, lqer={"enabled": False, "rank": 4}, byte_shuffle=0, prune_to_bytes=0)
    assert header not in bundle(off)
    for key, value in [*APRIL_EXPORT.items(), ("compressor", "pergroup")]:
        on = copy.deepcopy(config)
        on["export"][key] = value
        text = bundle(on)
        assert header in text and "def lqer_terms" in text, key
        assert "from frontier_export import" not in text, key
        assert text.index("frontier_export.py ====") < text.index("quantize.py ====")
        compile(text, "train_gpt.py", "exec")


@pytest.mark.parametrize("april", [False, True], ids=["default", "april_export"])
def test_shipped_script_exports_the_same_artifact_as_the_export_stage(tmp_path, capsys, monkeypatch, april):
    """train_gpt.py's own export (training stubbed out) writes, byte for byte, the artifact that
    quantize.export writes for the same weights, and loads it back: without frontier_export.py in
    the script (default) and with it (SD clipping, LQER, byte shuffle and pruning on: format
    pgolf-quant/2)."""
    import importlib.util
    import sys

    from pgolf.bundle import bundle

    export_block = {"passthrough_max_numel": 1024, "compressor": "lzma", **(APRIL_EXPORT if april else {})}
    config = {"train": {"model": {"num_layers": 2, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2}, "device": "cpu"},
              "export": export_block, "eval": {"slot": {}}}
    path = tmp_path / "train_gpt.py"
    text = bundle(config)
    assert ("def lqer_terms" in text) == april
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"shipped_export_{april}", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclasses look their module up there
    spec.loader.exec_module(script)
    trained_state = {}

    def trained(tcfg, model_cfg, manifest, seed, dist, log):
        torch.manual_seed(seed)
        model = script.GPT(model_cfg)
        for p in model.parameters():
            p.data.normal_(0, 0.05)
        trained_state.update(config=model_cfg.to_dict(), state_dict={k: v.detach().clone() for k, v in model.state_dict().items()})
        return model, {"train_time_ms": 1.0}

    run_until_export(script, trained, tmp_path, config)
    shipped = (tmp_path / "final_model.ptz").read_bytes()
    staged, metrics = export(trained_state, ExportConfig(**export_block), RunLog(rank=1))
    assert shipped == staged
    assert ("selective_prune" in metrics) == april and ("selective_prune:" in capsys.readouterr().out) == april
    fmt = script.torch.load(__import__("io").BytesIO(script.byte_unshuffle(script.decompress(shipped))), weights_only=True)["format"]
    assert fmt == ("pgolf-quant/2" if april else "pgolf-quant/1")
    _, got = script.load_artifact(str(tmp_path / "final_model.ptz"), metrics["sha256"])
    _, want = load_artifact(str(tmp_path / "final_model.ptz"))
    assert sorted(got) == sorted(want) and all(torch.equal(got[n], want[n]) for n in want)
