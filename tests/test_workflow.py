"""End-to-end behaviour of the Snakemake workflow on the tiny overlay (.test/config.yaml).

One full run is shared (the `tiny_run` fixture); the rerun-scope tests then ask Snakemake, in a
dry run, which jobs a change would cause. Tests that break things use their own copies or run last.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from conftest import copy_workflow, planned_jobs, snakemake

SEEDS = [1337, 42]


def record_dir(workdir: Path, name: str = "Tiny_CI") -> Path:
    found = sorted((workdir / "results/records/track_non_record_16mb").glob(f"*_{name}"))
    assert found, f"no record folder for {name}"
    return found[-1]


def overlay(workdir: Path, name: str, content: dict) -> str:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(content))
    return path.name


def dry_run(workdir: Path, *extra: str) -> dict[str, int]:
    result = snakemake(workdir, "-n", configs=(".test/config.yaml", *extra))
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


# ----------------------------------------------------------------------------- the record


def test_record_folder_has_every_file(tiny_run):
    workdir, _ = tiny_run
    rec = record_dir(workdir)
    expected = {"README.md", "submission.json", "train_gpt.py", "requirements.txt", "train_loss.png", "seed_scores.png", "provenance.json"}
    expected |= {f"train_seed{s}.log" for s in SEEDS}
    assert expected == {p.name for p in rec.iterdir()}
    for png in ("train_loss.png", "seed_scores.png"):
        assert (rec / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rec.parent.name == "track_non_record_16mb"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}_Tiny_CI", rec.name)


def test_run_prints_per_seed_numbers(tiny_run):
    _, result = tiny_run
    out = result.stdout + result.stderr
    assert "record: results/records/track_non_record_16mb/" in out
    for seed in SEEDS:
        assert re.search(rf"^\s+{seed}\s+\d+\.\d{{6}}", out, re.M), f"seed {seed} row missing"


def _exact(log: str, label: str) -> tuple[float, float]:
    m = re.search(rf"^{label}_exact val_loss:(\S+) val_bpb:(\S+)$", log, re.M)
    assert m, f"{label}_exact missing"
    return float(m.group(1)), float(m.group(2))


def test_submission_numbers_match_the_logs(tiny_run):
    workdir, _ = tiny_run
    rec = record_dir(workdir)
    sub = json.loads((rec / "submission.json").read_text())
    assert sub["seeds"] == SEEDS
    assert sub["eval_method"] == "slot_causal"
    for seed in SEEDS:
        log = (rec / f"train_seed{seed}.log").read_text()
        row = sub["seed_results"][str(seed)]
        loss, bpb = _exact(log, "final_slot_causal")
        assert _exact(log, "final_score") == (loss, bpb) and "final_score_method:slot_causal" in log
        assert row["slot_published_val_bpb"] == pytest.approx(_exact(log, "final_slot_published")[1], abs=1e-8)
        # The causality audit ran on every eval: the fixed predictor and causal SLOT pass, #1313's SLOT fails.
        assert row["audits"] == {"sliding_window": "pass", "slot_causal": "pass", "slot_published": "fail", "ttt": "pass"}
        assert "audit:fail" in log and "audit:pass" in log
        assert row["val_bpb"] == pytest.approx(bpb, abs=1e-8) and row["val_loss"] == pytest.approx(loss, abs=1e-8)
        assert row["sliding_val_bpb"] == pytest.approx(_exact(log, "final_sliding_window")[1], abs=1e-8)
        assert row["roundtrip_val_bpb"] == pytest.approx(_exact(log, "final_roundtrip")[1], abs=1e-8)
        assert row["pre_quant_val_bpb"] == pytest.approx(_exact(log, "pre_quant_post_ema")[1], abs=1e-8)
        total = re.search(r"^Total submission size int6\+lzma: (\d+) bytes", log, re.M)
        assert int(total.group(1)) == row["artifact_bytes"]
        assert "step:25/25 train_loss:" in log
        # Training works: the trained model scores well below the untrained one.
        assert row["val_bpb"] < row["init_val_bpb"] - 0.3
    mean = sum(sub["seed_results"][str(s)]["val_bpb"] for s in SEEDS) / len(SEEDS)
    assert sub["val_bpb"] == pytest.approx(mean, abs=1e-8)
    assert sub["bytes_code"] == (rec / "train_gpt.py").stat().st_size
    assert sub["bytes_total"] == max(sub["seed_results"][str(s)]["artifact_bytes"] for s in SEEDS)
    assert sub["compliance"]["artifact_under_16mb"] is True
    assert sub["compliance"]["score_first_eval"] is True  # by the audit of the headline (causal SLOT)
    readme = (rec / "README.md").read_text()
    assert f"{sub['val_bpb']:.8f}" in readme and "by the causality audit of this record (pass, pass)" in readme
    assert "| `slot_published` | " in readme and "fail, fail" in readme


def test_record_passes_pgolf_validate(tiny_run):
    workdir, _ = tiny_run
    rec = record_dir(workdir)
    result = subprocess.run(["pgolf", "validate", str(rec)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == f"ok: {rec} ({len(SEEDS)} seed logs, mean val_bpb {json.loads((rec / 'submission.json').read_text())['val_bpb']:.8f})\n"
    sub = json.loads((rec / "submission.json").read_text())
    assert sub["significance"]["n_seeds"] == len(SEEDS) and sub["significance"]["test"] == "one_sample_t_one_sided"


def test_report_shows_the_record_plots(tiny_run):
    workdir, _ = tiny_run
    result = snakemake(workdir, "--report", "report.zip")
    assert result.returncode == 0, result.stderr[-3000:]
    with zipfile.ZipFile(workdir / "report.zip") as z:
        names = z.namelist()
    assert any(n.endswith("train_loss.png") for n in names) and any(n.endswith("seed_scores.png") for n in names), names
    # the per-seed score table (the README's) and submission.json, not the plots alone
    assert any(n.endswith("submission.json") for n in names) and any(n.endswith("README.md") for n in names), names


def test_size_json_counts_the_shipped_bytes(tiny_run):
    workdir, _ = tiny_run
    rec = record_dir(workdir)
    sub = json.loads((rec / "submission.json").read_text())
    # One export directory so far (tests further down add others), with one size report per seed.
    found = sorted(workdir.glob("results/export/*/seed*/size.json"))
    assert len({p.parent.parent for p in found}) == 1 and {p.parent.name for p in found} == {f"seed{s}" for s in SEEDS}, found
    assert len(found) == len(SEEDS)
    for size_path in found:
        assert json.loads(size_path.read_text())["total_bytes"] == sub["seed_results"][size_path.parent.name.removeprefix("seed")]["artifact_bytes"]
        size = json.loads(size_path.read_text())
        artifact = size_path.parent / "final_model.ptz"
        assert size["model_bytes"] == artifact.stat().st_size
        assert size["code_bytes"] == (rec / "train_gpt.py").stat().st_size
        assert size["total_bytes"] == size["code_bytes"] + size["model_bytes"]
        assert size["ok"] is True and size["limit"] == 16_000_000
        assert size["model_file"]["sha256"] == hashlib.sha256(artifact.read_bytes()).hexdigest()


def test_shipped_script_reproduces_the_staged_run(tiny_run, tmp_path):
    """train_gpt.py alone, in an empty folder, gives the staged artifact and scores bit for bit (CPU)."""
    from pgolf.verify import compare, run_record_script

    workdir, _ = tiny_run
    rec = record_dir(workdir)
    manifest = next(workdir.glob("results/data/*/manifest.json"))
    results = run_record_script(rec, manifest, 42, tmp_path, timeout=300)  # the code `snakemake verify` runs
    staged = json.loads((rec / "submission.json").read_text())
    size = json.loads(next(workdir.glob("results/export/*/seed42/size.json")).read_text())
    checks = compare(results, staged, 42, size)
    assert all(c["equal"] for c in checks.values()), checks
    assert results["slot"]["val_bpb"] == pytest.approx(staged["seed_results"]["42"]["val_bpb"], abs=1e-8)
    staged_artifact = next(workdir.glob("results/export/*/seed42/final_model.ptz"))
    assert (tmp_path / "final_model.ptz").read_bytes() == staged_artifact.read_bytes()


# ----------------------------------------------------------------------------- what reruns


def test_noop_rerun_does_nothing(tiny_run):
    workdir, _ = tiny_run
    assert dry_run(workdir) == {}


def test_eval_setting_reruns_eval_and_record_only(tiny_run):
    workdir, _ = tiny_run
    jobs = dry_run(workdir, overlay(workdir, "stride", {"eval": {"stride": 16}}))
    # Every eval, 2 seeds each (stage_config: their settings files; TTT scores with the eval
    # block's windows). The shipped script embeds its settings, so its bytes (and the size check)
    # are redone too.
    assert jobs == {"stage_config": 3, "eval": 4, "eval_slot": 4, "eval_ttt": 2, "bundle_code": 1, "size_gate": 2, "record": 1, "all": 1}


def test_slot_setting_reruns_slot_eval_only(tiny_run):
    workdir, _ = tiny_run
    # steps 5: a value no sweep test evaluates in this shared folder (tests/test_sweep.py uses 3).
    jobs = dry_run(workdir, overlay(workdir, "slot", {"eval": {"slot": {"steps": 5}}}))
    assert jobs == {"stage_config": 1, "eval_slot": 4, "bundle_code": 1, "size_gate": 2, "record": 1, "all": 1}


def test_headline_switch_or_an_extra_slot_mode_costs_only_what_is_new(tiny_run):
    workdir, _ = tiny_run
    # Making published SLOT the headline reuses every eval: only the record changes.
    jobs = dry_run(workdir, overlay(workdir, "headline", {"eval": {"slot": {"mode": "published", "compare_modes": ["causal"]}}}))
    # (The shipped script embeds the eval block, so it and the size check are redone.)
    assert jobs == {"bundle_code": 1, "size_gate": 2, "record": 1, "all": 1}
    # Dropping the comparison mode: nothing to evaluate either.
    jobs = dry_run(workdir, overlay(workdir, "nocompare", {"eval": {"slot": {"compare_modes": []}}}))
    assert jobs == {"bundle_code": 1, "size_gate": 2, "record": 1, "all": 1}


def test_export_setting_never_retrains(tiny_run):
    workdir, _ = tiny_run
    jobs = dry_run(workdir, overlay(workdir, "export", {"export": {"compress_level": 9}}))
    assert jobs == {"stage_config": 4, "quantize": 2, "size_gate": 2, "eval": 4, "eval_slot": 4, "eval_ttt": 2, "bundle_code": 1, "record": 1, "all": 1}


def test_adding_a_seed_trains_exactly_one(tiny_run):
    workdir, _ = tiny_run
    jobs = dry_run(workdir, overlay(workdir, "seeds", {"seeds": [1337, 42, 2024]}))
    assert jobs == {"train": 1, "quantize": 1, "size_gate": 1, "eval": 2, "eval_slot": 2, "eval_ttt": 1, "record": 1, "all": 1}


def _reversed(obj):
    if isinstance(obj, dict):
        return {k: _reversed(obj[k]) for k in reversed(list(obj))}
    return obj


def test_reordering_config_keys_reruns_nothing(tiny_run):
    workdir, _ = tiny_run
    original = (workdir / "config.yaml").read_text()
    tiny = (workdir / ".test/config.yaml").read_text()
    try:
        (workdir / "config.yaml").write_text(yaml.safe_dump(_reversed(yaml.safe_load(original)), sort_keys=False))
        (workdir / ".test/config.yaml").write_text(yaml.safe_dump(_reversed(yaml.safe_load(tiny)), sort_keys=False))
        assert dry_run(workdir) == {}
    finally:
        (workdir / "config.yaml").write_text(original)
        (workdir / ".test/config.yaml").write_text(tiny)


# What an edit of each module reruns (stage_config: the settings files of the stages it feeds).
DOWNSTREAM = {"bundle_code": 1, "size_gate": 2, "record": 1, "all": 1}
EVALS = {"eval": 4, "eval_slot": 4, "eval_ttt": 2}  # ttt imports evaluate.py and quantize.py


@pytest.mark.parametrize("module,expect", [
    ("evaluate.py", {"stage_config": 3, **EVALS, **DOWNSTREAM}),
    ("slot.py", {"stage_config": 1, "eval_slot": 4, **DOWNSTREAM}),
    ("quantize.py", {"stage_config": 4, "quantize": 2, **EVALS, **DOWNSTREAM}),
])
def test_editing_downstream_code_retrains_nothing(tiny_run, module, expect):
    workdir, _ = tiny_run
    path = workdir / "workflow/record" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# an edit\n")
        assert dry_run(workdir) == expect
    finally:
        path.write_text(original)


def test_train_change_keeps_old_models_and_switching_back_reuses_them(tiny_run):
    workdir, _ = tiny_run
    models = sorted(workdir.glob("results/train/*/seed*/model.pt"))
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in models}
    changed = overlay(workdir, "iters", {"train": {"iterations": 12}, "seeds": [42]})
    result = snakemake(workdir, configs=(".test/config.yaml", changed))
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(workdir.glob("results/train/*/seed42/model.pt"))) == 2
    assert {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in models} == before
    # Back to the original settings: everything is still there. Only the record folder (which
    # the other run rewrote for seed 42 alone) is assembled again.
    assert dry_run(workdir) == {"record": 1, "all": 1}


def test_local_source_points_at_the_users_files_without_copying(tiny_run, tmp_path):
    """data.source local over an existing dataset directory: only a manifest is written, naming it as root."""
    workdir, _ = tiny_run
    user = tmp_path / "user"
    shutil.copytree(next(workdir.glob("results/data/*/manifest.json")).parent, user)
    before = {p.name: p.stat().st_mtime_ns for p in user.iterdir()}
    local = overlay(workdir, "local", {"data": {"source": "local", "local": {"path": str(user), "tokenizer": str(user / "tokenizer.model")}}})
    existing = set(workdir.glob("results/data/*"))
    try:
        result = snakemake(workdir, "--until", "data_local", configs=(".test/config.yaml", local))
        assert result.returncode == 0, result.stderr[-3000:]
        [data_dir] = set(workdir.glob("results/data/*")) - existing
        manifest = json.loads((data_dir / "manifest.json").read_text())
        assert manifest["source"]["kind"] == "local" and manifest["root"] == str(user)
        assert [p.name for p in data_dir.iterdir()] == ["manifest.json"]  # nothing copied
        assert {p.name: p.stat().st_mtime_ns for p in user.iterdir()} == before  # nothing touched
        jobs = dry_run(workdir, local)  # the fingerprint is stable: nothing to redo in the data stage
        assert "data_local" not in jobs and jobs.get("train") == len(SEEDS)
    finally:
        for new in set(workdir.glob("results/data/*")) - existing:
            shutil.rmtree(new)


# ----------------------------------------------------------------------------- bad input


def test_unknown_config_key_stops_before_any_job(tiny_run):
    workdir, _ = tiny_run
    bad = overlay(workdir, "bad", {"train": {"lrr": 0.1}})
    result = snakemake(workdir, "-n", configs=(".test/config.yaml", bad))
    assert result.returncode != 0
    errors = [ln for ln in result.stderr.splitlines() if "config error" in ln]
    assert errors == ["config error: train: unknown key 'lrr' (allowed: " + errors[0].split("(allowed: ")[1]]
    assert "Traceback" not in result.stderr and "Job stats" not in result.stdout


@pytest.mark.parametrize(
    "content,message",
    [
        ({"train": {"seq_len": "long"}}, "config error: train.seq_len: expected integer, got str 'long'"),
        ({"eval": {"slot": {"mode": "leaky"}}}, "config error: eval.slot.mode: expected one of 'published', 'causal', got 'leaky'"),
        ({"seeds": []}, "config error: seeds: [] should be non-empty"),
        ({"train": {"batch_tokens": 1000}}, "config error: train.batch_tokens: 1000 is not a multiple of seq_len*nproc_per_node*grad_accum_steps = 64"),
    ],
)
def test_bad_config_values_get_one_line(tiny_run, content, message):
    workdir, _ = tiny_run
    result = snakemake(workdir, "-n", configs=(".test/config.yaml", overlay(workdir, "bad", content)))
    assert result.returncode != 0
    assert message in result.stderr.splitlines()
    assert "Traceback" not in result.stderr


def test_missing_config_key_is_named(tiny_run, tmp_path):
    workdir, _ = tiny_run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    del config["export"]["compressor"]
    path = tmp_path / "full.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(["pgolf", "check-config", str(path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: export: missing key 'compressor'"


def test_oversize_artifact_fails_export_and_writes_no_record(tiny_run):
    workdir, _ = tiny_run
    small = overlay(workdir, "small", {"export": {"size_limit_bytes": 1000}, "record": {"name": "Oversize"}})
    result = snakemake(workdir, configs=(".test/config.yaml", small))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    m = re.search(r"error: artifact over the size limit: code (\d+) \(raw\) \+ model (\d+) = (\d+) bytes > limit 1000", out)
    assert m and int(m.group(1)) + int(m.group(2)) == int(m.group(3))
    assert not list((workdir / "results/records").rglob("*_Oversize"))


def test_corpus_without_text_stops_in_data_stage(tmp_path):
    workdir = copy_workflow(tmp_path)
    (workdir / "empty.jsonl").write_text('{"text": ""}\n{"text": "   "}\n')
    cfg = overlay(workdir, "empty", {"data": {"docs": {"path": "empty.jsonl"}}})
    result = snakemake(workdir, configs=(".test/config.yaml", cfg))
    assert result.returncode != 0
    assert "empty.jsonl: corpus has no text (0 non-empty documents)" in result.stdout + result.stderr
    assert not list(workdir.glob("results/data/*/manifest.json"))
    assert not list(workdir.glob("results/train/*/seed*/model.pt"))


def test_corrupt_shard_is_named(tiny_run):
    workdir, _ = tiny_run
    shard = next(workdir.glob("results/data/*/fineweb_train_000000.bin"))
    original = shard.read_bytes()
    try:
        shard.write_bytes(b"\x00" * 4 + original[4:])  # bad magic
        cfg = overlay(workdir, "retrain", {"train": {"iterations": 13}, "seeds": [42]})
        result = snakemake(workdir, configs=(".test/config.yaml", cfg))
        assert result.returncode != 0
        assert f"{shard.relative_to(workdir)}: bad magic 0 (expected 20240520)" in result.stdout + result.stderr
        shard.write_bytes(original[:-2])  # one token short of what the header says
        result = snakemake(workdir, configs=(".test/config.yaml", cfg))
        assert result.returncode != 0
        size = len(original) - 2
        assert f"{shard.relative_to(workdir)}: {size} bytes on disk, manifest says {len(original)}" in result.stdout + result.stderr
    finally:
        shard.write_bytes(original)


def test_killed_training_leaves_nothing_that_looks_finished(tiny_run):
    workdir, _ = tiny_run
    long = overlay(workdir, "long", {"train": {"iterations": 100000}, "seeds": [7]})
    cmd = ["snakemake", "--cores", "2", "--configfile", ".test/config.yaml", long]
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        log = None
        while time.time() < deadline:
            logs = [p for p in workdir.glob("results/logs/train/*/seed7.log") if "step:1/100000" in p.read_text()]
            if logs:
                log = logs[0]
                break
            time.sleep(0.5)
        assert log is not None, "training never started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    model_dir = workdir / "results/train" / log.parent.name / "seed7"
    assert not (model_dir / "model.pt").exists() and not (model_dir / "train.json").exists()
    assert not list(model_dir.glob("*.tmp*"))
    # The next run schedules the training again rather than taking anything as done.
    assert dry_run(workdir, long).get("train") == 1


def test_real_preset_builds_its_dag_without_data(tiny_run):
    workdir, _ = tiny_run
    result = snakemake(workdir, "-n", configs=("config/fineweb-8xh100.yaml",))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result)
    assert jobs["data_hub"] == 1 and jobs["train"] == 3 and jobs["eval_slot"] == 3


def test_lint_is_clean(tiny_run):
    workdir, _ = tiny_run
    result = snakemake(workdir, "--lint", configs=())
    assert result.returncode == 0, result.stdout[-3000:]


def test_planned_jobs_refuses_a_table_it_cannot_read():
    """A dry run's plan parsed wrong must fail the test, not read as 'nothing to do'."""

    def done(out: str) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess([], 0, stdout="", stderr=out)

    table = "Job stats:\njob       count\n------  -------\nrecord        1\nall           1\ntotal         2\n"
    assert planned_jobs(done("Building DAG of jobs...\n" + table + "\nReasons:\n")) == {"record": 1, "all": 1}
    assert planned_jobs(done("Nothing to be done (all requested files are present and up to date).\n")) == {}
    for unreadable in ("Building DAG of jobs...\n", table.replace("Job stats", "Jobs"), table.replace("record        1", "record   one"),
                       table.replace("total         2", "total         3")):
        with pytest.raises(AssertionError):
            planned_jobs(done(unreadable))
