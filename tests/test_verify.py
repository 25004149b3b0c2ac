"""`snakemake verify`: the record folder's train_gpt.py, run alone, reproduces the staged run."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, snakemake


def record_dir(workdir: Path) -> Path:
    found = sorted((workdir / "results/records/track_non_record_16mb").glob("*_Tiny_CI"))
    assert found, "no record folder"
    return found[-1]


def test_verify_target_reproduces_every_seed(tiny_run):
    workdir, _ = tiny_run
    # The target before --configfile, which takes every word after it as a config file.
    result = snakemake(workdir, "verify", "--configfile", ".test/config.yaml", configs=())
    assert result.returncode == 0, result.stderr[-3000:]
    reports = sorted(workdir.glob("results/verify/*/seed*/verify.json"))
    assert [p.parent.name for p in reports] == ["seed1337", "seed42"]
    submission = json.loads((record_dir(workdir) / "submission.json").read_text())
    for path in reports:
        report = json.loads(path.read_text())
        seed = report["seed"]
        assert report["ok"] is True and all(c["equal"] for c in report["checks"].values())
        assert report["checks"]["val_bpb"]["rerun"] == submission["seed_results"][str(seed)]["val_bpb"]
        size = json.loads(next(workdir.glob(f"results/export/*/seed{seed}/size.json")).read_text())
        assert report["checks"]["artifact_sha256"]["rerun"] == size["model_file"]["sha256"]
        assert "final_score_exact" in (path.parent / "verify_run.log").read_text()
    # Done once, not repeated: a second `snakemake verify` has nothing to do.
    again = snakemake(workdir, "verify", "-n", "--configfile", ".test/config.yaml", configs=())
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr


FAKE_SCRIPT = """
import json, sys
open("final_model.ptz", "wb").write(b"artifact bytes")
score = {"val_bpb": 1.5, "val_loss": 2.5}
json.dump({"roundtrip": {"val_bpb": 1.6}, "sliding": score, "slot": {"val_bpb": %r, "val_loss": 2.5}}, open("results.json", "w"))
"""


def fake_record(tmp_path: Path, slot_bpb: float) -> tuple[Path, Path]:
    import hashlib

    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "train_gpt.py").write_text(FAKE_SCRIPT % slot_bpb)
    seed_row = {"val_bpb": 1.4, "val_loss": 2.5, "roundtrip_val_bpb": 1.6, "sliding_val_bpb": 1.5}
    (rec / "submission.json").write_text(json.dumps({"eval_method": "slot_causal", "seed_results": {"7": seed_row}}))
    size = tmp_path / "size.json"
    size.write_text(json.dumps({"model_bytes": 14, "model_file": {"sha256": hashlib.sha256(b"artifact bytes").hexdigest()}}))
    (tmp_path / "manifest.json").write_text("{}")
    return rec, size


def verify_cli(tmp_path, rec, size) -> subprocess.CompletedProcess:
    args = ["verify-record", "--record", rec, "--data", tmp_path / "manifest.json", "--seed", "7", "--size", size, "--out", tmp_path / "out/verify.json"]
    env = {"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "pgolf.cli", *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def test_verify_mismatch_is_one_line_and_writes_nothing(tmp_path):
    rec, size = fake_record(tmp_path, 1.40000001)
    r = verify_cli(tmp_path, rec, size)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {rec}/train_gpt.py does not reproduce seed 7: val_bpb staged 1.4 != rerun 1.40000001"
    assert not (tmp_path / "out/verify.json").exists() and not list((tmp_path / "out").glob("*.tmp*"))


def test_verify_match_writes_the_report(tmp_path):
    rec, size = fake_record(tmp_path, 1.4)
    r = verify_cli(tmp_path, rec, size)
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "out/verify.json").read_text())
    assert report["ok"] is True and report["checks"]["model_bytes"] == {"staged": 14, "rerun": 14, "equal": True}


def test_eval_refuses_a_tampered_artifact_and_writes_nothing(tiny_run, tmp_path):
    workdir, _ = tiny_run
    export_dir = next(workdir.glob("results/export/*/seed42"))
    artifact = tmp_path / "final_model.ptz"
    blob = bytearray((export_dir / "final_model.ptz").read_bytes())
    blob[-10] ^= 0xFF
    artifact.write_bytes(bytes(blob))
    hp = next(workdir.glob("results/eval/*/config.json"))
    manifest = next(workdir.glob("results/data/*/manifest.json"))
    out = tmp_path / "roundtrip.json"
    cmd = [sys.executable, str(workdir / "workflow/record/evaluate.py"), "roundtrip", "--hparams", str(hp), "--artifact", str(artifact),
           "--export-json", str(export_dir / "export.json"), "--data", str(manifest), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {artifact}: sha256 ") and "does not match the exported artifact's" in lines[0]
    assert not out.exists()


def test_gptq_budget_change_requantizes_and_rescores_nothing(tiny_run):
    workdir, _ = tiny_run
    (workdir / "budget.yaml").write_text("export:\n  gptq:\n    train_budget_seconds: 300\n")
    result = snakemake(workdir, "-n", configs=(".test/config.yaml", "budget.yaml"))
    assert result.returncode == 0, result.stderr[-2000:]
    from conftest import planned_jobs

    jobs = planned_jobs(result)
    # The budget is in the shipped script's settings (it logs it), so train_gpt.py and the size
    # count are redone; the artifact and every score are not.
    assert jobs == {"bundle_code": 1, "size_gate": 2, "record": 1, "all": 1}, jobs
