"""pgolf.logparse and `pgolf parse-log` on small handmade logs of the three families.

The builders below are shared with test_validate.py and test_record_assembly.py.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from pgolf.cli import main
from pgolf.logparse import LogParseError, parse_file, parse_text, require_final

# ----------------------------------------------------------------------------- log builders


def legacy_slot_log(seed=1337, slot=(1.46609658, 0.86830694), steps=6563, code_bytes=2000, model_bytes=15765721, train_ms=600110, embed_code=False):
    """A #1313-style log: `final_int6_roundtrip_exact` printed 3 times (roundtrip, sliding-96,
    sliding-64), the claim in `final_slot_exact`."""
    avg = train_ms / steps
    code = ""
    if embed_code:  # upstream logfiles start with the script's source: none of it may match
        code = (
            "import torch\n"
            "def main():\n"
            '    log0(f"step:{step}/{args.iterations} train_loss:{loss:.4f} train_time:{t:.0f}ms step_avg:{a:.2f}ms")\n'
            '    log0(f"final_slot_exact val_loss:{l:.8f} val_bpb:{b:.8f}")\n'
            '    log0(f"Total submission size int6+lzma: {n} bytes")\n'
            "=" * 100 + "\n"
        )
    return code + f"""W1103 12:00:00.000000 140 torch/distributed/run.py:793] Setting OMP_NUM_THREADS
logs/8f1c.txt
val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path=./data/tokenizers/fineweb_1024_bpe.model
train_loader:dataset:fineweb10B_sp1024 train_shards:80
model_params:26862694
world_size:8 grad_accum_steps:1
train_batch_tokens:786432 train_seq_len:2048 iterations:20000 warmup_steps:20 max_wallclock_seconds:600.000
seed:{seed}
warmup_step:20/20
step:0/20000 val_loss:6.9357 val_bpb:4.1077 train_time:0ms step_avg:0.01ms
step:1/20000 train_loss:6.9370 train_time:152ms step_avg:152.01ms
step:500/20000 train_loss:2.3787 train_time:45701ms step_avg:91.40ms
step:4000/20000 val_loss:2.0348 val_bpb:1.2051 train_time:365600ms step_avg:91.40ms
late_qat:enabled step:6335 scale:0.1498
step:{steps}/20000 val_loss:1.9226 val_bpb:1.1387 train_time:{train_ms}ms step_avg:{avg:.2f}ms
stopping_early: wallclock_cap train_time:{train_ms}ms step:{steps}/20000
peak memory allocated: 22858 MiB reserved: 22924 MiB
ema:applying EMA weights
DIAGNOSTIC post_ema val_loss:1.9155 val_bpb:1.1344 eval_time:2059ms
Serialized model: 106289590 bytes
Code size: {code_bytes} bytes
Serialized model int6+lzma: {model_bytes} bytes
Total submission size int6+lzma: {code_bytes + model_bytes} bytes
Total submission size: {code_bytes + model_bytes} bytes
final_int6_roundtrip val_loss:1.9406 val_bpb:1.1493 eval_time:7512ms
final_int6_roundtrip_exact val_loss:1.94056432 val_bpb:1.14929216
final_int6_sliding_window val_loss:1.9009 val_bpb:1.1258 stride:96 eval_time:58000ms
final_int6_sliding_window_exact val_loss:1.90089300 val_bpb:1.12580133
final_int6_roundtrip_exact val_loss:1.90089300 val_bpb:1.12580133
final_int6_sliding_window_s64 val_loss:1.9008 val_bpb:1.1258 stride:64 eval_time:78000ms
final_int6_sliding_window_s64_exact val_loss:1.90085182 val_bpb:1.12577694
final_int6_roundtrip_exact val_loss:1.90085182 val_bpb:1.12577694
final_slot val_loss:{slot[0]:.4f} val_bpb:{slot[1]:.4f} steps:24 lr:0.012 eval_time:254546ms
final_slot_exact val_loss:{slot[0]:.8f} val_bpb:{slot[1]:.8f}
"""


def newer_log(seed=42, ttt=(2.79180191, 1.08079352), steps=4550, train_ms=588047, total_eval="485.5"):
    """An SP8192-lineage log: hparams dump, `N/M train_loss: ... tok/s:` lines, quantized_* evals."""
    return f"""Hyperparameters:
  seed: {seed}
  train_batch_tokens: 786432
train_shards: 80
val_tokens: 40540160
model_params:35988657
gptq:reserving 12s, effective=588000ms
0/20000 val_loss: 9.0100 val_bpb: 3.4881
1/20000 train_loss: 9.0112 train_time: 0.0m tok/s: 6123456
500/20000 train_loss: 3.3346 train_time: 0.9m tok/s: 7691255
{steps}/20000 train_loss: 2.8000 train_time: 9.8m tok/s: 7600000
{steps}/20000 val_loss: 2.8119 val_bpb: 1.0886
stopping_early: wallclock_cap train_time: {train_ms}ms step: {steps}/20000
peak memory allocated: 40000 MiB reserved: 41000 MiB
pre-quantization post-ema val_loss:2.80000000 val_bpb:1.08400000 eval_time:6000ms
Serialized model quantized+brotli: 15960000 bytes
Code size (uncompressed): 158000 bytes
Code size (compressed): 31930 bytes
Total submission size quantized+brotli: 15991930 bytes
quantized val_loss:2.83000000 val_bpb:1.09560000 eval_time:25000ms
quantized_sliding_window val_loss:2.79900000 val_bpb:1.08360000 eval_time:94000ms
quantized_ttt val_loss:{ttt[0]:.8f} val_bpb:{ttt[1]:.8f} eval_time:366525ms
total_eval_time:{total_eval}s
"""


def pgolf_stage_logs(seed=42, slot=(3.96281064, 2.22823271), sliding=(3.97602443, 2.23566264), steps=300, code_bytes=5000,
                     model_bytes=523608, eval_ms=(3239, 6609, 16688), slot_mode="causal", train_ms=None):
    """Our stage logs of one seed, as (stage, text) pairs; slot=None leaves the SLOT stage out."""
    train_ms = train_ms if train_ms is not None else steps * 276.75
    steps_text = "".join(
        f"step:{s}/{steps} train_loss:{7.0 - 3.0 * s / steps:.4f} train_time:{train_ms * s / steps:.0f}ms step_avg:{train_ms / steps:.2f}ms\n"
        for s in sorted({1, 2, steps // 2, steps})
    )
    logs = [
        ("train", f"""data ok: results/data/x/manifest.json: 7 files, 3500739 train tokens, 67387 val tokens
python:3.11.7 torch:2.13.0+cpu cuda:none
model_params:723216
world_size:1 grad_accum_steps:1
train_batch_tokens:2048 train_seq_len:128 iterations:{steps} warmup_steps:0 max_wallclock_seconds:0.000
seed:{seed}
step:0/{steps} val_loss:6.9315 val_bpb:3.8975 train_time:0ms step_avg:0.00ms
{steps_text}peak memory rss: 574 MiB
ema:applied EMA weights
pre_quant_post_ema val_loss:3.9913 val_bpb:2.2442 eval_time:2792ms
pre_quant_post_ema_exact val_loss:3.99125768 val_bpb:2.24422808
"""),
        ("export", f"Serialized model: 2905253 bytes\nSerialized model int6+lzma: {model_bytes} bytes (payload:754266 raw_torch:2905253)\n"),
        ("size", f"Code size: {code_bytes} bytes\nTotal submission size int6+lzma: {code_bytes + model_bytes} bytes (model {model_bytes}, limit 16000000)\n"),
        ("eval roundtrip", f"final_roundtrip val_loss:3.9919 val_bpb:2.2446 eval_time:{eval_ms[0]}ms\nfinal_roundtrip_exact val_loss:3.99192264 val_bpb:2.24460198\n"),
        ("eval sliding", f"final_sliding_window val_loss:{sliding[0]:.4f} val_bpb:{sliding[1]:.4f} stride:64 windows:1051 eval_time:{eval_ms[1]}ms\n"
                         f"final_sliding_window_exact val_loss:{sliding[0]:.8f} val_bpb:{sliding[1]:.8f}\n"),
    ]
    if slot is not None:
        label = f"final_slot_{slot_mode}"
        logs.append(("eval slot", f"{label} val_loss:{slot[0]:.4f} val_bpb:{slot[1]:.4f} steps:4 lr:0.012 stride:64 eval_time:{eval_ms[2]}ms\n"
                                  f"{label}_exact val_loss:{slot[0]:.8f} val_bpb:{slot[1]:.8f}\n"))
    return logs


def pgolf_log(seed=42, **kw):
    """One seed's record log: the stage logs under `==== pgolf stage` headers."""
    return "".join(f"==== pgolf stage: {stage} (seed {seed}) ====\n{text}" for stage, text in pgolf_stage_logs(seed, **kw))


# ----------------------------------------------------------------------------- the legacy family


def test_legacy_slot_claim_is_final_slot_not_the_reused_roundtrip_label():
    s = parse_text(legacy_slot_log(embed_code=True))
    assert s.family == "legacy"
    assert s.final_label == "final_slot_exact"
    assert (s.final_val_loss, s.final_val_bpb) == (1.46609658, 0.86830694)
    assert s.reused_labels == {"final_int6_roundtrip": 3}
    assert s.sliding_val_bpb == 1.12580133  # the stride-96 pass, not the s64 one
    assert s.pre_quant_val_bpb == 1.1344 and s.tol["pre_quant_val_bpb"] == pytest.approx(5e-5)
    assert (s.steps, s.train_time_ms, s.step_avg_ms) == (6563, 600110.0, 91.44)
    assert (s.model_params, s.seed, s.peak_mem_mib) == (26862694, 1337, 22858)
    assert (s.bytes_code, s.bytes_model, s.bytes_total) == (2000, 15765721, 15767721)
    # Every eval pass on the artifact (not the float-model DIAGNOSTIC): 7512 + 58000 + 78000 + 254546 ms.
    assert s.eval_time_ms == 398058.0
    assert s.train_loss == [[1, 6.937], [500, 2.3787]]


def test_legacy_reprinted_roundtrip_label_carries_the_sliding_claim():
    """#414-#1019: after the sliding eval `final_int8_zlib_roundtrip_exact` is printed again with
    the sliding numbers; the last one is the claim."""
    log = """step:7100/20000 val_loss:1.9900 val_bpb:1.1800 train_time:600050ms step_avg:84.51ms
final_int8_zlib_roundtrip val_loss:1.9520 val_bpb:1.1561 eval_time:5800ms
final_int8_zlib_roundtrip_exact val_loss:1.95200000 val_bpb:1.15610000
final_int6_sliding_window val_loss:1.9000 val_bpb:1.1253 stride:64 eval_time:73000ms
final_int6_sliding_window_exact val_loss:1.90001234 val_bpb:1.12531234
final_int8_zlib_roundtrip_exact val_loss:1.90001234 val_bpb:1.12531234
"""
    s = parse_text(log)
    assert s.final_label == "final_int8_zlib_roundtrip_exact"
    assert s.final_val_bpb == 1.12531234 and s.final_val_loss == 1.90001234
    assert s.reused_labels == {"final_int8_zlib_roundtrip": 2}
    assert s.eval_time_ms == 78800.0


def test_legal_ttt_outranks_a_later_final_line():
    log = """legal_ttt val_loss:1.8898 val_bpb:1.1192 eval_time:410000ms
legal_ttt_exact val_loss:1.88976776 val_bpb:1.11922988
final_int6_sliding_window_exact val_loss:1.89500000 val_bpb:1.12200000
"""
    s = parse_text(log)
    assert (s.final_label, s.final_val_bpb) == ("legal_ttt_exact", 1.11922988)


def test_baseline_total_prefers_the_compressor_tagged_line():
    """The baseline prints an untagged total for the uncompressed model before the int8+zlib one."""
    log = """Code size: 47642 bytes
Total submission size: 67272625 bytes
Serialized model int8+zlib: 15815847 bytes (payload:17178912 raw_torch:17224025 payload_ratio:3.91x)
Total submission size int8+zlib: 15863489 bytes
final_int8_zlib_roundtrip_exact val_loss:2.07269931 val_bpb:1.22436570
"""
    s = parse_text(log)
    assert (s.bytes_total, s.bytes_model, s.bytes_code) == (15863489, 15815847, 47642)
    assert s.final_label == "final_int8_zlib_roundtrip_exact"


# ----------------------------------------------------------------------------- the newer family and ours


def test_newer_family_claims_the_last_ttt_or_sliding_line():
    s = parse_text(newer_log())
    assert s.family == "newer"
    assert (s.final_label, s.final_val_loss, s.final_val_bpb) == ("quantized_ttt", 2.79180191, 1.08079352)
    assert (s.steps, s.train_time_ms, s.seed) == (4550, 588047.0, 42)
    assert s.step_avg_ms == pytest.approx(588047 / 4550, abs=1e-3)
    assert (s.bytes_code, s.bytes_model, s.bytes_total) == (31930, 15960000, 15991930)  # the counted (compressed) code size
    assert s.eval_time_ms == 485500.0  # total_eval_time wins over the sum of the lines
    assert (s.pre_quant_val_bpb, s.sliding_val_bpb, s.peak_mem_mib, s.model_params) == (1.084, 1.0836, 40000, 35988657)
    assert s.train_loss == [[1, 9.0112], [500, 3.3346], [4550, 2.8]]
    # Without TTT the sliding line is the claim; `diagnostic quantized` never is.
    no_ttt = newer_log().replace("quantized_ttt val_loss", "diagnostic quantized val_loss")
    assert parse_text(no_ttt).final_label == "quantized_sliding_window"


def test_ours_claims_slot_else_sliding():
    s = parse_text(pgolf_log(seed=42))
    assert s.family == "pgolf"
    assert (s.final_label, s.final_val_loss, s.final_val_bpb) == ("final_slot_causal_exact", 3.96281064, 2.22823271)
    assert (s.steps, s.seed, s.model_params, s.peak_mem_mib) == (300, 42, 723216, 574)
    assert (s.bytes_code, s.bytes_model, s.bytes_total) == (5000, 523608, 528608)
    assert s.eval_time_ms == 3239 + 6609 + 16688  # the pre-quant eval is training's, not counted
    assert (s.pre_quant_val_bpb, s.sliding_val_bpb) == (2.24422808, 2.23566264)
    assert s.reused_labels == {}
    s = parse_text(pgolf_log(seed=42, slot=None))
    assert (s.final_label, s.final_val_bpb) == ("final_sliding_window_exact", 2.23566264)
    s = parse_text(pgolf_log(seed=42, slot_mode="published"))
    assert s.final_label == "final_slot_published_exact"


def test_a_log_without_final_score_is_an_error(tmp_path):
    train_only = "".join(text for stage, text in pgolf_stage_logs(seed=7)[:1])
    path = tmp_path / "train.log"
    path.write_text(train_only)
    s = parse_file(path)
    assert s.final_label is None and s.steps == 300
    with pytest.raises(LogParseError, match=r"train\.log: no final score line \(looked for final_score_exact, final_slot_causal_exact"):
        require_final(s, path)
    with pytest.raises(LogParseError, match="no such file"):
        parse_file(tmp_path / "absent.log")


# ----------------------------------------------------------------------------- the CLI


def test_parse_log_json_has_the_promised_keys(tmp_path, capsys):
    path = tmp_path / "train_seed1337.log"
    path.write_text(legacy_slot_log())
    assert main(["parse-log", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("final_label", "final_val_loss", "final_val_bpb", "steps", "step_avg_ms", "train_time_ms", "model_params",
                "bytes_code", "bytes_model", "bytes_total", "peak_mem_mib"):
        assert key in out, key
    assert out["final_label"] == "final_slot_exact" and out["final_val_bpb"] == 0.86830694
    assert out["reused_labels"] == {"final_int6_roundtrip": 3}
    assert main(["parse-log", str(path)]) == 0
    text = capsys.readouterr().out
    assert "final_label        final_slot_exact" in text and "final_int6_roundtrip_exact x3" in text


@pytest.mark.parametrize("content,message", [
    ("step:1/10 train_loss:6.9 train_time:10ms step_avg:10.00ms\n", "no final score line (looked for final_slot_exact, legal_ttt_exact, *ttt*_exact, final_*_exact, then any final score line)"),
    ("", "no final score line"),
    (None, "no such file"),
])
def test_parse_log_bad_input_is_one_line(tmp_path, capsys, content, message):
    path = tmp_path / "run.log"
    if content is not None:
        path.write_text(content)
    assert main(["parse-log", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {path}: ") and message in err


def test_parse_log_entry_point_on_a_directory(tmp_path):
    r = subprocess.run(["pgolf", "parse-log", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr == f"error: {tmp_path}: not a file\n"
