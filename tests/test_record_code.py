"""Unit tests of the record code (workflow/record/) and the pipeline pieces around it."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from evaluate import sliding_windows
from model import GPT, GPTConfig, count_params
from quantize import ExportConfig, dequantize_state, export, load_artifact, quantize_rows
from runtime import RunLog, UserError, load_shard
from train import Muon, TrainConfig, accumulation_steps, lr_multiplier, zeropower_newton_schulz

from pgolf.bundle import bundle, module_paths
from pgolf.config import ConfigError, check_config
from pgolf.size import SizeError, gate


@pytest.mark.parametrize("total,seq_len,stride", [(1000, 128, 64), (1000, 128, 96), (129, 128, 64), (50, 128, 64), (4097, 256, 1), (640, 64, 64)])
def test_sliding_windows_score_every_target_exactly_once(total, seq_len, stride):
    counts = np.zeros(total, dtype=int)
    for i, (start, length, first) in enumerate(sliding_windows(total, seq_len, stride)):
        assert 0 < length <= seq_len and 0 <= first < length
        counts[start + first : start + length] += 1
        if i > 0:  # every scored target sees at least seq_len - stride tokens of context
            assert first >= min(seq_len - stride, start + first)
    assert (counts == 1).all()


def test_upstream_tail_would_double_count():
    # Upstream keeps sliding through the tail; ours stops once the last target is scored.
    windows = sliding_windows(1000, 128, 64)
    assert windows[-1][0] + windows[-1][1] == 1000 and len(windows) == (1000 - 128) // 64 + 2


def test_int6_rows_stay_in_range_and_beat_plain_max_clipping():
    torch.manual_seed(0)
    w = torch.randn(64, 256)
    w[0, 0] = 40.0  # one outlier: clipping that row below its max must pay off
    q, scale, choice = quantize_rows(w, 6, [99.9, 99.95, 99.99, 99.999, 100.0])
    assert q.dtype == torch.int8 and int(q.abs().max()) <= 31 and scale.dtype == torch.float16
    err = ((q.float() * scale.float()[:, None] - w) ** 2).sum(1)
    q_max, s_max, _ = quantize_rows(w, 6, [100.0])
    err_max = ((q_max.float() * s_max.float()[:, None] - w) ** 2).sum(1)
    assert (err <= err_max + 1e-6).all()
    assert choice[0] < 4  # the outlier row chose a clip below its maximum


def test_artifact_round_trip_needs_no_float_weights(tmp_path):
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=300, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2)
    model = GPT(cfg)
    for p in model.parameters():  # trained-looking weights (zero-init projections would quantize trivially)
        p.data.normal_(0, 0.05)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    log = RunLog(path=str(tmp_path / "log.txt"))
    blob, metrics = export({"config": cfg.to_dict(), "state_dict": state}, ExportConfig(passthrough_max_numel=1024), log)
    path = tmp_path / "model.ptz"
    path.write_bytes(blob)
    config, restored = load_artifact(str(path))
    assert config == cfg.to_dict() and set(restored) == set(state)
    for name, t in state.items():
        err = restored[name] - t
        if name in metrics["rmse"]:  # quantized: int6 steps are ~1/31 of the row's clip
            assert err.pow(2).mean().sqrt() < 0.06 * t.std(), name
            assert metrics["rmse"][name] == pytest.approx(err.pow(2).mean().sqrt().item(), rel=1e-4)
        else:  # fp16 passthrough
            assert err.abs().max() < 1e-3, name
    # q, k, v, proj, up, down in 2 blocks (int6) + token embedding, BigramHash table and projection (int8)
    assert len(metrics["rmse"]) == 15
    assert metrics["params_by_kind"]["embed"] == 300 * 64 + 1024 * 128 + 128 * 64
    assert metrics["model_bytes"] == len(blob) and blob[:6] == b"\xfd7zXZ\x00"
    assert "Serialized model int6+lzma: %d bytes" % len(blob) in (tmp_path / "log.txt").read_text()


def test_artifact_loading_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    torch.save({"format": "pgolf-quant/1", "x": Evil()}, buf)
    import lzma

    path = tmp_path / "evil.ptz"
    path.write_bytes(lzma.compress(buf.getvalue()))
    with pytest.raises(UserError, match=r"evil.ptz: refused or unreadable artifact payload \(weights-only load: "):
        load_artifact(str(path))


def test_dequantize_restores_passthrough_tensors_exactly():
    art = {"fp": {"a": torch.tensor([1.5, -2.0], dtype=torch.float16)}, "q": {}, "scale": {}}
    assert torch.equal(dequantize_state(art)["a"], torch.tensor([1.5, -2.0]))


def test_model_counts_and_shapes():
    cfg = GPTConfig(vocab_size=1024, num_layers=4, model_dim=128, num_heads=4, num_kv_heads=2, ve_layers=[], bigram_dim=64)
    model = GPT(cfg)
    ids, targets = torch.randint(0, 1024, (2, 16)), torch.randint(0, 1024, (2, 16))
    nll = model.token_nll(ids, targets)
    assert nll.shape == (2, 16) and torch.isfinite(nll).all()
    # Near-uniform at init: tied embeddings start tiny.
    assert abs(nll.mean().item() - np.log(1024)) < 0.1
    # The plain 4x128 model is 723,216; + BigramHash (table, projection, scale), SmearGate, 3 VRL gates.
    assert count_params(model) == 723216 + (1024 * 64 + 64 * 128 + 1) + 128 + 3


def test_default_shape_has_the_record_parameter_count():
    """PR #1313 logs model_params:26862694 for 11x512 with every feature on."""
    assert count_params(GPT(GPTConfig())) == 26_862_694


@pytest.mark.parametrize("feature", [{"xsa_last_n": 0}, {"vrl": False}, {"ve_layers": []}, {"bigram_vocab_size": 0}, {"smear_gate": False}, {"unet_skips": False}])
def test_each_feature_can_be_switched_off(feature):
    shape = {"vocab_size": 300, "num_layers": 4, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2, "ve_layers": [2, 3]}
    torch.manual_seed(0)
    full = GPT(GPTConfig(**shape))
    for p in full.parameters():  # trained-looking weights: zero-init projections would hide every feature
        p.data.normal_(0, 0.1)
    off = GPT(GPTConfig(**{**shape, **feature}))
    # The same weights wherever both models have them: only the switched-off feature differs.
    full_state = full.state_dict()
    off.load_state_dict({k: v for k, v in full_state.items() if k in off.state_dict() and v.shape == off.state_dict()[k].shape}, strict=False)
    ids = torch.randint(0, 300, (2, 12))
    loss = off(ids, ids)
    assert torch.isfinite(loss)
    with torch.no_grad():
        assert (off.hidden(ids) - full.hidden(ids)).abs().max() > 1e-3, f"{feature}: the output does not change"
    # Parameters the feature owns go with it (XSA owns none).
    removed = {"xsa_last_n": 0, "vrl": 3, "ve_layers": 300 * 128 + 128 * 32 + 1 + 2, "bigram_vocab_size": 1024 * 128 + 128 * 64 + 1,
               "smear_gate": 64, "unet_skips": 2 * 64}[next(iter(feature))]
    assert count_params(full) - count_params(off) == removed
    if feature == {"ve_layers": []}:
        assert off.value_emb is None
    if feature == {"bigram_vocab_size": 0}:
        assert off.bigram is None


def test_late_qat_trains_through_quantized_weights():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2))
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    ids = torch.randint(0, 300, (2, 12))
    full = model(ids, ids)
    model.set_qat(6)
    quant = model(ids, ids)
    assert quant.item() != full.item()
    quant.backward()  # straight-through: gradients reach the float weights
    assert model.blocks[0].mlp.up.weight.grad.abs().sum() > 0
    model.set_qat(0)
    assert model(ids, ids).item() == full.item()


def test_model_is_causal():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2))
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    x = torch.randint(0, 300, (1, 32))
    y = x.clone()
    y[0, 20:] = (y[0, 20:] + 1) % 300
    assert torch.equal(model.hidden(x)[:, :20], model.hidden(torch.cat([x[:, :20], y[:, 20:]], 1))[:, :20])


def test_newton_schulz_orthogonalises():
    torch.manual_seed(0)
    g = torch.randn(32, 64)
    s = torch.linalg.svdvals(zeropower_newton_schulz(g, 5))
    assert s.min() > 0.5 and s.max() < 1.3


def test_newton_schulz_batched_equals_one_by_one():
    torch.manual_seed(0)
    tall = torch.randn(3, 96, 32)  # rows > cols: the iteration runs on the transpose
    wide = torch.randn(3, 32, 96)
    for g in (tall, wide):
        batched = zeropower_newton_schulz(g, 5)
        single = torch.stack([zeropower_newton_schulz(m, 5) for m in g])
        assert batched.shape == g.shape
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-5)


def test_muon_step_matches_the_per_matrix_rule():
    """Muon groups matrices by shape; each must get exactly the textbook per-matrix update."""
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(*shape)) for shape in [(16, 8), (16, 8), (8, 24), (4, 4)]]
    expected = [p.detach().clone() for p in params]
    bufs = [torch.zeros_like(p) for p in params]
    opt = Muon(params, lr=0.05, momentum=0.9, ns_steps=5, weight_decay=0.04)
    for _ in range(3):
        grads = [torch.randn_like(p) for p in params]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        for i, g in enumerate(grads):
            bufs[i] = bufs[i] * 0.9 + g
            update = zeropower_newton_schulz(g + 0.9 * bufs[i], 5) * max(1.0, g.size(0) / g.size(1)) ** 0.5
            expected[i] = expected[i] * (1 - 0.05 * 0.04) - 0.05 * update
    for p, e in zip(params, expected):
        torch.testing.assert_close(p.detach(), e, rtol=0, atol=1e-5)


@pytest.mark.parametrize("setting, compiles", [("off", False), ("on", True), ("auto", False)])  # auto: GPU only; this is the CPU
def test_train_compile_setting_reaches_muon(setting, compiles):
    """train.compile: off compiles nothing, Muon's Newton-Schulz iteration included."""
    from train import build_optimizers

    _, muon = build_optimizers(GPT(GPTConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, ve_layers=[1])),
                               TrainConfig(compile=setting))
    assert muon.compile_ns is compiles


def test_lr_schedule_step_and_time_based():
    cfg = TrainConfig(iterations=100, warmdown_iters=20, max_wallclock_seconds=0)
    assert lr_multiplier(cfg, 0, 0) == 1.0 and lr_multiplier(cfg, 80, 0) == 1.0
    assert lr_multiplier(cfg, 90, 0) == pytest.approx(0.5) and lr_multiplier(cfg, 100, 0) == 0.0
    timed = TrainConfig(iterations=10**6, warmdown_iters=100, max_wallclock_seconds=10)
    # 10 ms per step: 100 steps' worth of warmdown is the last second of the 10-second cap.
    assert lr_multiplier(timed, 500, 5000) == 1.0
    assert lr_multiplier(timed, 950, 9500) == pytest.approx(0.5)


def test_load_shard_names_the_file(tmp_path):
    from pgolf.shards import write_shard

    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, np.arange(10))
    assert load_shard(path).tolist() == list(range(10))
    raw = path.read_bytes()
    path.write_bytes(b"\x01\x00\x00\x00" + raw[4:])
    with pytest.raises(UserError, match=r"fineweb_train_000000.bin: bad magic 1 \(expected 20240520\)"):
        load_shard(path)
    path.write_bytes(raw[:-2])
    with pytest.raises(UserError, match=r"size 1042 bytes but header says 10 tokens \(expected 1044 bytes\)"):
        load_shard(path)


def test_bundle_is_one_self_contained_script(tmp_path):
    config = {"train": {"model": {}}, "export": {}, "eval": {"slot": {}}}
    text = bundle(config)
    compile(text, "train_gpt.py", "exec")
    for m in module_paths():
        assert f"from {m.stem} import" not in text
    assert text.count("from __future__ import annotations") == 1
    assert len(re.findall(r'^if __name__ == "__main__":$', text, re.M)) == 1
    path = tmp_path / "train_gpt.py"
    path.write_text(text)
    r = subprocess.run([sys.executable, str(path), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "--data" in r.stdout


def test_size_gate_passes_and_fails_with_the_numbers(tmp_path):
    code, model = tmp_path / "train_gpt.py", tmp_path / "model.ptz"
    code.write_bytes(b"x" * 100)
    model.write_bytes(b"y" * 900)
    out = tmp_path / "size.json"
    report = gate([code], model, out, limit=1000)
    assert report["ok"] and json.loads(out.read_text())["total_bytes"] == 1000
    out.unlink()
    with pytest.raises(SizeError, match=r"code 100 \(raw\) \+ model 900 = 1000 bytes > limit 999 \(over by 1\)"):
        gate([code], model, out, limit=999)
    assert not out.exists()


def test_check_config_accepts_the_shipped_configs():
    import yaml

    from conftest import REPO
    from pgolf.config import merge_overlay

    base = yaml.safe_load((REPO / "config.yaml").read_text())
    check_config(base)
    for overlay in ("config/fineweb-8xh100.yaml", ".test/config.yaml"):
        merged = json.loads(json.dumps(base))
        merge_overlay(merged, yaml.safe_load((REPO / overlay).read_text()))
        check_config(merged)


@pytest.mark.parametrize(
    "path,value,message",
    [
        (("train", "model", "num_heads"), 3, "train.model: model_dim 128 must be a multiple of num_heads 3"),
        (("eval", "stride"), 999, "eval.stride: 999 is larger than eval.seq_len 128"),
        (("export", "compressor"), "gzip", "export.compressor: expected one of 'lzma', 'zstd', 'brotli', 'pergroup', got 'gzip'"),
        (("train", "ema_decay"), 1.0, "train.ema_decay: expected a value < 1, got 1.0"),
        (("record", "date"), "yesterday", "record.date: 'yesterday' does not match the pattern"),
    ],
)
def test_config_errors_name_the_key(path, value, message):
    import yaml

    from conftest import REPO

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    node = config
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as e:
        check_config(config)
    assert str(e.value).startswith(message)
    assert "\n" not in str(e.value)


def test_auto_accumulation_keeps_the_eight_gpu_step():
    cfg = TrainConfig(grad_accum_steps="auto")
    assert [accumulation_steps(cfg, w) for w in (1, 2, 4, 8)] == [8, 4, 2, 1]
    assert accumulation_steps(TrainConfig(grad_accum_steps=3), 2) == 3
    with pytest.raises(UserError, match="auto needs a world size that divides 8, got 3"):
        accumulation_steps(cfg, 3)


def test_auto_accumulation_is_checked_against_nproc():
    import yaml

    from conftest import REPO

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["train"].update(grad_accum_steps="auto", nproc_per_node=3)
    with pytest.raises(ConfigError, match="train.grad_accum_steps: auto needs nproc_per_node to divide 8, got 3"):
        check_config(config)
    config["train"].update(nproc_per_node=2, batch_tokens=128 * 8)
    check_config(config)
