"""provenance.json in every record: config, git state, packages, versions, GPUs, data manifest hash."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import planned_jobs, snakemake
from pgolf.config import load_configs
from pgolf.provenance import git_state, log_environment

CPU_HEADER = "code_sha256:ab12\npython:3.11.7 torch:2.13.0+cpu cuda:none\ngpus:0 cpu_threads:1\nstep 1\n"
GPU_HEADER = "python:3.12.3 torch:2.13.0+cu130 cuda:13.0\ngpus:8 names:NVIDIA H100 80GB HBM3\n"


def test_log_header_gives_versions_and_gpus():
    assert log_environment(CPU_HEADER) == {"python": "3.11.7", "torch": "2.13.0+cpu", "cuda": "none", "gpus": 0, "gpu_names": "none"}
    gpu = log_environment(GPU_HEADER)
    assert gpu["cuda"] == "13.0" and gpu["gpus"] == 8 and gpu["gpu_names"] == "NVIDIA H100 80GB HBM3"
    assert log_environment("no header here\n")["python"] == "unknown"


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_state_outside_a_repo_clean_and_dirty(tmp_path):
    assert git_state(tmp_path) == {"commit": None, "dirty": None, "note": "not a git repository, or one without commits"}
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "a.txt").write_text("1\n")
    subprocess.run([*git, "add", "a.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert git_state(tmp_path) == {"commit": head, "dirty": False, "changed_files": 0}
    (tmp_path / "a.txt").write_text("2\n")
    assert git_state(tmp_path) == {"commit": head, "dirty": True, "changed_files": 1}


def _record(workdir: Path) -> Path:
    return next(workdir.glob("results/records/*/*_Tiny_CI"))


def test_record_has_provenance(sweep_run):
    workdir, configs = sweep_run[:2]
    rec = _record(workdir)
    prov = json.loads((rec / "provenance.json").read_text())
    merged = load_configs([workdir / "config.yaml", *(workdir / c for c in configs)])
    merged.pop("sweep")
    assert prov["config"] == merged
    manifest = next(workdir.glob("results/data/*/manifest.json"))
    assert prov["data_manifest"] == {"path": str(manifest.relative_to(workdir)), "sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}
    # The scratch copy is not a git checkout: said so, not guessed.
    assert prov["git"]["commit"] is None and prov["git"]["dirty"] is None and "not a git repository" in prov["git"]["note"]
    env = prov["environment"]
    assert env["python"] == platform.python_version() and env["cuda"] == "none" and env["gpu_names"] == "none"
    assert env["torch"].startswith("2.") and "," not in env["torch"]
    if shutil.which("nvidia-smi") is None:
        assert env["gpu_driver"] == "none"
    # One entry per stage log with the record code's environment header: the training, per seed.
    assert [(r["stage"], r["seed"]) for r in prov["stage_runs"]] == [("train", 1337), ("train", 42)]
    assert any(line.lower().startswith("snakemake==") for line in prov["pip_freeze"])
    readme = (rec / "README.md").read_text()
    assert "## Provenance" in readme and prov["data_manifest"]["sha256"] in readme
    assert "pipeline commit: unknown (not a git repository" in readme and "`provenance.json`" in readme


def test_record_with_provenance_passes_pgolf_validate(sweep_run):
    workdir = sweep_run[0]
    rec = _record(workdir)
    result = subprocess.run(["pgolf", "validate", str(rec)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith(f"ok: {rec}"), result.stdout + result.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_git_state_and_packages_rerun_nothing(sweep_run, tmp_path):
    """A commit, a dirty tree or a new package is read by the record job only: no job reruns."""
    workdir, configs = sweep_run[:2]
    # A new package: an installed distribution's metadata on PYTHONPATH, which pip freeze lists.
    site = tmp_path / "site"
    (site / "pgolf_new_package-1.0.dist-info").mkdir(parents=True)
    (site / "pgolf_new_package-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: pgolf-new-package\nVersion: 1.0\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, env={**os.environ, **env})
    assert "pgolf-new-package==1.0" in freeze.stdout.splitlines()
    git = ["git", "-C", str(workdir), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    try:
        subprocess.run([*git, "init", "-q"], check=True)
        subprocess.run([*git, "add", "Snakefile", "config.yaml"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", "x"], check=True)
        (workdir / "untracked_note.txt").write_text("dirty\n")
        assert git_state(workdir)["dirty"] is True
        result = snakemake(workdir, "all", "sweep", "-n", "--configfile", *configs, configs=(), env_extra=env)
        assert result.returncode == 0 and planned_jobs(result) == {}, result.stdout[-2000:]
    finally:
        shutil.rmtree(workdir / ".git", ignore_errors=True)
        (workdir / "untracked_note.txt").unlink(missing_ok=True)
