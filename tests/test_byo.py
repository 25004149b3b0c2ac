"""Bring-your-own-script mode end to end: `snakemake byo` on the tiny overlay with a small
upstream-style script (tests/data/byo/train_gpt.py), two seeds.

One run is shared (the `byo_workdir` fixture); rerun scope is asked of Snakemake in dry runs;
the failure cases use their own byo settings (so their own byo_id and record name) and one seed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow, planned_jobs
from conftest import snakemake as _snakemake

SEEDS = [1337, 42]
CONFIGS = (".test/config.yaml", ".test/byo.yaml")
SCRIPT = "tests/data/byo/train_gpt.py"


def snakemake(workdir: Path, *args: str, configs=CONFIGS) -> subprocess.CompletedProcess:
    """conftest's runner with the targets and flags before --configfile (which takes every path after it)."""
    return _snakemake(workdir, *args, "--configfile", *configs, configs=())


def overlay(workdir: Path, name: str, content: dict) -> str:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(content))
    return path.name


def byo_overlay(workdir: Path, name: str, **byo) -> tuple[str, ...]:
    """The byo overlay plus one more: one seed, its own record name, the given byo keys."""
    return (*CONFIGS, overlay(workdir, name, {"seeds": [1337], "byo": {"name": name, **byo}}))


def record_dir(workdir: Path, name: str) -> Path:
    return next((workdir / "results/records/track_non_record_16mb").glob(f"*_{name}"), None)


@pytest.fixture(scope="module")
def byo_workdir(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("byo"))
    shutil.copytree(REPO / "tests/data/byo", workdir / "tests/data/byo")
    result = snakemake(workdir, "byo", configs=CONFIGS)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def byo_seed_dirs(workdir: Path) -> dict[int, Path]:
    (run_dir,) = [p for p in (workdir / "results/byo").iterdir() if (p / "seed1337/check.json").exists()]
    return {s: run_dir / f"seed{s}" for s in SEEDS}


def _exact(log: str) -> tuple[float, float]:
    m = re.search(r"^final_int6_roundtrip_exact val_loss:(\S+) val_bpb:(\S+)$", log, re.M)
    assert m, "final_int6_roundtrip_exact missing"
    return float(m.group(1)), float(m.group(2))


def _logged(log: str, pattern: str) -> int:
    return int(re.search(pattern, log, re.M).group(1))


def test_record_folder_files(byo_workdir):
    rec = record_dir(byo_workdir, "Tiny_BYO")
    assert rec is not None and re.fullmatch(r"\d{4}-\d{2}-\d{2}_Tiny_BYO", rec.name)
    assert {p.name for p in rec.iterdir()} == {"README.md", "submission.json", "train_gpt.py"} | {f"train_seed{s}.log" for s in SEEDS}
    assert (rec / "train_gpt.py").read_bytes() == (REPO / SCRIPT).read_bytes()
    runs = byo_seed_dirs(byo_workdir)
    for seed, run in runs.items():
        # The record's log is the script's own output, verbatim; it ran with our seed and data.
        log = (rec / f"train_seed{seed}.log").read_text()
        assert log == (run / "train.log").read_text()
        assert f"seed:{seed}" in log and "train_loader:dataset:fineweb10B_sp1024 train_shards:" in log
        info = json.loads((run / "run.json").read_text())
        assert info["env"]["SEED"] == str(seed) and info["env"]["ITERATIONS"] == "20"
        assert (run / "train_gpt.py").read_bytes() == (REPO / SCRIPT).read_bytes()
    # The record is dated by the day its runs started (not the clock at planning time).
    started = [json.loads((run / "run.json").read_text())["started_utc"][:10] for run in runs.values()]
    assert rec.name.startswith(min(started) + "_")


def test_submission_numbers_are_the_logged_and_real_ones(byo_workdir):
    rec = record_dir(byo_workdir, "Tiny_BYO")
    sub = json.loads((rec / "submission.json").read_text())
    code_bytes = (REPO / SCRIPT).stat().st_size
    assert sub["seeds"] == SEEDS and sub["eval_method"] == "script:final_int6_roundtrip_exact"
    assert sub["bytes_code"] == code_bytes
    for seed, run in byo_seed_dirs(byo_workdir).items():
        log = (rec / f"train_seed{seed}.log").read_text()
        row = sub["seed_results"][str(seed)]
        loss, bpb = _exact(log)
        assert (row["val_loss"], row["val_bpb"]) == (loss, bpb)
        model_bytes = (run / "final_model.int6.ptz").stat().st_size
        assert row["model_bytes"] == model_bytes == _logged(log, r"^Serialized model int6\+lzma: (\d+) bytes")
        assert row["artifact_bytes"] == code_bytes + model_bytes == _logged(log, r"^Total submission size int6\+lzma: (\d+) bytes")
        assert row["steps"] == 20 and round(row["train_time_s"] * 1000) == _logged(log, r"^step:20/20 train_loss:\S+ train_time:(\d+)ms")
        assert round(row["eval_time_s"] * 1000) == _logged(log, r"^final_int6_roundtrip val_loss:\S+ val_bpb:\S+ eval_time:(\d+)ms")
        assert row["val_bpb"] < 3.5  # trained: a uniform guess is about 3.9 here
    assert sub["val_bpb"] == pytest.approx(sum(sub["seed_results"][str(s)]["val_bpb"] for s in SEEDS) / 2, abs=1e-8)
    assert sub["bytes_total"] == max(r["artifact_bytes"] for r in sub["seed_results"].values())
    assert sub["compliance"] == {
        "artifact_under_16mb": True, "train_under_600s": True, "eval_under_600s": True, "score_first_eval": None, "three_seeds": False,
    }
    assert sub["significance"]["n_seeds"] == 2 and sub["significance"]["test"] == "one_sample_t_one_sided"
    readme = (rec / "README.md").read_text()
    assert f"{sub['val_bpb']:.8f}" in readme and "ITERATIONS=20 MODEL_DIM=16 VAL_MAX_TOKENS=8192 DATA_PATH=<shards> TOKENIZER_PATH=<tokenizer.model> SEED=<seed> python train_gpt.py" in readme and "not audited" in readme


def test_record_passes_pgolf_validate(byo_workdir):
    rec = record_dir(byo_workdir, "Tiny_BYO")
    result = subprocess.run(["pgolf", "validate", str(rec)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"ok: {rec} (2 seed logs")


def test_second_run_does_nothing(byo_workdir):
    result = snakemake(byo_workdir, "byo", "-n", configs=CONFIGS)
    assert result.returncode == 0 and planned_jobs(result) == {}, result.stdout[-2000:]


def test_env_change_reruns_only_the_byo_jobs(byo_workdir):
    extra = overlay(byo_workdir, "env_change", {"byo": {"env": {"ITERATIONS": 21, "MODEL_DIM": 16, "VAL_MAX_TOKENS": 8192}}})
    result = snakemake(byo_workdir, "byo", "-n", configs=(*CONFIGS, extra))
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == {"byo": 1, "byo_check": 2, "byo_record": 1, "byo_run": 2}


def test_limit_change_reruns_only_the_checks(byo_workdir):
    extra = overlay(byo_workdir, "limit_change", {"byo": {"max_eval_seconds": 300}})
    result = snakemake(byo_workdir, "byo", "-n", configs=(*CONFIGS, extra))
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == {"byo": 1, "byo_check": 2, "byo_record": 1}


def _one_error_line(result) -> str:
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith(("error:", "config error:"))]
    assert len(set(lines)) == 1, out[-3000:]
    return lines[0]


def test_log_without_final_score_fails_in_one_line_and_writes_no_record(byo_workdir):
    configs = byo_overlay(byo_workdir, "No_Final", env={"ITERATIONS": 5, "SKIP_FINAL_METRIC": 1})
    line = _one_error_line(snakemake(byo_workdir, "byo", configs=configs))
    assert re.fullmatch(r"error: results/byo/[0-9a-f]{10}/seed1337/train\.log: no final score line \(looked for .*final_slot_exact.*\)", line), line
    assert record_dir(byo_workdir, "No_Final") is None


def test_over_limit_artifact_fails_the_size_check(byo_workdir):
    configs = byo_overlay(byo_workdir, "Too_Big", env={"ITERATIONS": 5, "ARTIFACT_PAD_BYTES": 16_000_000})
    line = _one_error_line(snakemake(byo_workdir, "byo", configs=configs))
    code = (REPO / SCRIPT).stat().st_size
    m = re.fullmatch(r"error: \S+final_model\.int6\.ptz: artifact over the size limit: code (\d+) \(raw\) \+ model (\d+) = (\d+) bytes > limit 16000000 \(over by (\d+)\)", line)
    assert m, line
    assert int(m.group(1)) == code and int(m.group(2)) > 16_000_000 and int(m.group(3)) == code + int(m.group(2))
    assert record_dir(byo_workdir, "Too_Big") is None


def test_time_limits_enforced_or_warned(byo_workdir):
    # Same run settings as the shared run (one seed of it): only the check and the record run.
    strict = (*CONFIGS, overlay(byo_workdir, "strict", {"seeds": [1337], "byo": {"max_eval_seconds": 0.001, "name": "Strict"}}))
    line = _one_error_line(snakemake(byo_workdir, "byo", configs=strict))
    assert re.fullmatch(r"error: results/byo/[0-9a-f]{10}/seed1337/train\.log: eval took \d+\.\d{3} s > byo\.max_eval_seconds 0\.001", line), line
    assert record_dir(byo_workdir, "Strict") is None
    # The eval limit, which has no grace (training gets the validator's grace of two steps or 1 s,
    # more than this tiny script may take on an idle machine).
    lax = {"seeds": [1337], "byo": {"max_eval_seconds": 0.001, "enforce_time_limits": False, "name": "Lax"}}
    result = snakemake(byo_workdir, "byo", configs=(*CONFIGS, overlay(byo_workdir, "lax", lax)))
    assert result.returncode == 0, result.stderr[-3000:]
    readme = (record_dir(byo_workdir, "Lax") / "README.md").read_text()
    assert "| eval time (from the log) | 0.001 s (warn only) |" in readme and "**over**" in readme
    # The challenge's own 600 s claim is unaffected by a stricter local limit.
    assert json.loads((record_dir(byo_workdir, "Lax") / "submission.json").read_text())["compliance"]["train_under_600s"] is True


def test_config_errors_are_one_line(byo_workdir):
    bad = (*CONFIGS, overlay(byo_workdir, "bad_env", {"byo": {"env": {"SEED": 7}}}))
    assert "byo.env.SEED: set by the pipeline" in _one_error_line(snakemake(byo_workdir, "byo", "-n", configs=bad))
    missing = (*CONFIGS, overlay(byo_workdir, "missing", {"byo": {"script": "no/such/train_gpt.py"}}))
    assert _one_error_line(snakemake(byo_workdir, "byo", "-n", configs=missing)) == (
        "config error: byo.script: no/such/train_gpt.py does not exist (download the record's train_gpt.py first)"
    )
    off = snakemake(byo_workdir, "byo", configs=(".test/config.yaml",))
    assert "config error: byo.script is null" in _one_error_line(off)


def test_byo_run_failures_are_one_line(byo_workdir, tmp_path):
    """`pgolf byo-run` alone: a crashing script and a missing artifact each end in one error line."""
    manifest = next((byo_workdir / "results/data").glob("*/manifest.json"))
    base = {"env": {"ITERATIONS": 2}, "launcher": "python", "nproc_per_node": 1, "artifact": "final_model.int6.ptz"}
    for settings, pattern in (
        ({**base, "env": {"ITERATIONS": "many"}}, r"error: \S+train_gpt\.py: exited with status 1 after \d+\.\d s for seed 5 \(its output: \S+train\.log\.partial\)"),
        ({**base, "artifact": "model.bin"}, r"error: \S+train_gpt\.py: seed 5 wrote no model\.bin \(byo\.artifact\) in \S+; files it wrote: final_model\.int6\.ptz"),
    ):
        out = tmp_path / settings["artifact"]
        result = subprocess.run(
            ["pgolf", "byo-run", "--script", str(REPO / SCRIPT), "--manifest", str(manifest), "--settings", json.dumps(settings),
             "--seed", "5", "--out-dir", str(out)], capture_output=True, text=True,
        )
        assert result.returncode == 2 and re.fullmatch(pattern, result.stderr.strip()), result.stderr[-2000:]
        assert not (out / "train.log").exists()


# ----------------------------------------------------------------------------- units, no Snakemake


def test_check_of_a_pr1313_shaped_log(tmp_path):
    """#1313's log lines (record-anatomy, section 2.1): the SLOT line is the claim, the 600.128 s
    training stop is inside the cap's grace, and its SLOT is never called score-first."""
    from pgolf.byo import command
    from pgolf.byo_record import build_submission, check_seed

    script, artifact = tmp_path / "train_gpt.py", tmp_path / "final_model.int6.ptz"
    script.write_bytes(b"# a script\n" * 100)
    artifact.write_bytes(b"\0" * 15_700_000)
    code, model = script.stat().st_size, artifact.stat().st_size
    log = tmp_path / "train.log"
    log.write_text(
        "seed:1337\n"
        "step:6500/20000 train_loss:1.9 train_time:594000ms step_avg:91.40ms\n"
        "stopping_early: wallclock_cap train_time:600128ms step:6565/20000\n"
        "DIAGNOSTIC post_ema val_loss:1.9155 val_bpb:1.1344 eval_time:2059ms\n"
        f"Code size: {code} bytes\nSerialized model int6+lzma: {model} bytes\n"
        f"Total submission size int6+lzma: {code + model} bytes\nTotal submission size: {code + model} bytes\n"
        "final_int6_roundtrip val_loss:1.9405 val_bpb:1.1493 eval_time:7500ms\n"
        "final_int6_roundtrip_exact val_loss:1.94050000 val_bpb:1.14929216\n"
        "final_int6_sliding_window val_loss:1.9010 val_bpb:1.1258 stride:96 eval_time:60000ms\n"
        "final_int6_sliding_window_exact val_loss:1.90100000 val_bpb:1.12580133\n"
        "final_int6_roundtrip_exact val_loss:1.90100000 val_bpb:1.12580133\n"
        "final_slot val_loss:1.4661 val_bpb:0.8683 steps:24 lr:0.012 eval_time:254546ms\n"
        "final_slot_exact val_loss:1.46609658 val_bpb:0.86830694\n"
    )
    limits = {"size_limit_bytes": 16_000_000, "max_train_seconds": 600, "max_eval_seconds": 600, "enforce_time_limits": True}
    check = check_seed(log, artifact, script, limits)
    assert check["metrics"]["final_label"] == "final_slot_exact" and check["metrics"]["final_val_bpb"] == 0.86830694
    assert check["times"]["train"] == {"seconds": 600.128, "limit_s": 600.0, "grace_s": 1.0, "ok": True}
    assert check["times"]["eval"]["seconds"] == 322.046 and check["size"]["total_bytes"] == code + model
    record = {"author": "a", "github_id": "a", "date": "2026-04-03", "track": "track_10min_16mb", "hardware": "8xH100",
              "baseline": {"name": "PR #1019", "val_loss": 1.88217853, "val_bpb": 1.11473509}}
    run = {"wallclock_s": 1000.0, "torch_version": "2.9.1+cu128"}
    sub = build_submission(record, {"name": "R"}, {1337: check}, {1337: run})
    assert sub["eval_method"] == "script:final_slot_exact" and sub["compliance"]["score_first_eval"] is False
    assert sub["compliance"]["train_under_600s"] is True and sub["seed_results"]["1337"]["sliding_val_bpb"] == 1.12580133
    assert command("torchrun", 8)[1] == "torchrun --standalone --nproc_per_node=8 train_gpt.py"


@pytest.mark.parametrize(
    "byo, message",
    [
        ({"env": {"DATA_PATH": "/data"}}, "byo.env.DATA_PATH: set by the pipeline"),
        ({"env": {"BAD-NAME": 1}}, "byo.env: 'BAD-NAME' does not match"),
        ({"launcher": "python"}, "byo.nproc_per_node: launcher python runs one process, got 8"),
        ({"script": SCRIPT, "name": "EmbeddedDefault_CPU"}, "byo.name: 'EmbeddedDefault_CPU' is record.name too"),
        ({"artifact": "../model.ptz"}, "byo.artifact: '../model.ptz' does not match"),
    ],
)
def test_byo_config_errors(byo, message):
    from pgolf.config import ConfigError, check_config, load_configs

    config = load_configs([REPO / "config.yaml"])
    config["byo"].update(byo)
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(config)
