"""The SLURM route for real: the tiny overlay through `--executor slurm` with profiles/slurm on a one-node
cluster (tools/slurm-local.sh start), and the record it gives equals the local run's.

Skipped when SLURM or the Snakemake plugin is missing, or the cluster is not up; with PGOLF_REQUIRE_SLURM=1
(set by .ci/run once it has started the cluster) those are failures instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow

SLURM_RULES = {"data_docs", "train", "quantize", "size_gate", "eval", "eval_slot", "eval_ttt"}
LOCAL_RULES = {"stage_config", "bundle_code", "record"}


def slurm_missing() -> str | None:
    """Why the SLURM test cannot run here, or None."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    if shutil.which("sbatch") is None:
        return "SLURM is not installed (tools/slurm-local.sh start installs it as root)"
    status = subprocess.run(["bash", str(REPO / "tools/slurm-local.sh"), "status"], capture_output=True, text=True)
    if status.returncode != 0:
        return "the local SLURM cluster is not running (tools/slurm-local.sh start)"
    return None


# Session scope, as tiny_run: pytest sets up wider-scoped fixtures first, so a narrower one would only
# skip after the (minutes long) local run.
@pytest.fixture(scope="session")
def slurm_ready():
    reason = slurm_missing()
    if reason and os.environ.get("PGOLF_REQUIRE_SLURM") == "1":
        pytest.fail(f"PGOLF_REQUIRE_SLURM=1 but {reason}")
    if reason:
        pytest.skip(reason)


def two_core_profile(workdir: Path) -> str:
    """profiles/slurm with what a 2-core node without accounting needs; every other key as shipped."""
    profile = yaml.safe_load((workdir / "profiles/slurm/config.yaml").read_text())
    # No slurmdbd here, so no sacct: poll with squeue. Short first poll and file wait for a local disk.
    profile["slurm-status-command"] = "squeue"
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["latency-wait"] = 5
    # 2 CPUs and 22 GB: one CPU per GPU job, 1 GB per job, two tokenizer workers (as the local run).
    profile["default-resources"]["mem_mb"] = 1000
    for res in profile["set-resources"].values():
        for key in ("mem_mb", "mem_mb_per_cpu"):
            if key in res:
                res[key] = 1000
        if "cpus_per_gpu" in res:
            res["cpus_per_gpu"] = 1
    profile["set-threads"]["data_docs"] = 2
    dest = workdir / "profiles/slurm-2core"
    dest.mkdir()
    (dest / "config.yaml").write_text(yaml.safe_dump(profile))
    return "profiles/slurm-2core"


def comparable(submission: dict) -> dict:
    """submission.json without wall-clock numbers (they differ between any two runs)."""
    if isinstance(submission, dict):
        return {
            k: comparable(v) for k, v in submission.items() if not (k.endswith("_ms") or k.endswith("_time_s"))
        }
    return submission


def record_dir(workdir: Path) -> Path:
    (folder,) = [p.parent for p in workdir.glob("results/records/*/*/submission.json")]
    return folder


def artifact_hashes(workdir: Path) -> dict[str, str]:
    return {
        p.parent.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in workdir.glob("results/export/*/seed*/final_model.ptz")
    }


def test_slurm_run_gives_the_local_record(slurm_ready, tiny_run, tmp_path):
    local_dir, _ = tiny_run
    workdir = copy_workflow(tmp_path / "wf")
    profile = two_core_profile(workdir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    # SIGINT, not SIGTERM: a snakemake waiting on SLURM ignores SIGTERM until its jobs end.
    cmd = ["timeout", "-s", "INT", "-k", "20", "900", "snakemake", "--workflow-profile", profile,
           "--configfile", ".test/config.yaml"]
    start = time.time()
    result = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env)
    print(f"SLURM run of the tiny overlay: {time.time() - start:.0f} s")
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]

    # Every compute rule went through sbatch; downloads, settings and assembly stayed local.
    submitted = set(re.findall(r"submitted with SLURM jobid \d+ \(log: \S*/slurm_logs/rule_([^/]+)/", log))
    assert submitted == SLURM_RULES, log[-4000:]

    # The same models, bit for bit, and the same record.
    assert artifact_hashes(workdir) == artifact_hashes(local_dir) != {}
    ours, theirs = record_dir(workdir), record_dir(local_dir)
    assert ours.relative_to(workdir) == theirs.relative_to(local_dir)
    for name in ("train_gpt.py", "requirements.txt"):
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    assert comparable(json.loads((ours / "submission.json").read_text())) == comparable(
        json.loads((theirs / "submission.json").read_text())
    )
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in theirs.iterdir())
