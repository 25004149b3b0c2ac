"""Shared fixtures: the record modules on sys.path, and a scratch copy of the workflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RECORD_DIR = REPO / "workflow" / "record"
sys.path.insert(0, str(RECORD_DIR))

# What a workflow copy needs: the code a rule lists as input, the corpus, the configs.
WORKFLOW_PARTS = ["Snakefile", "config.yaml", "workflow", "profiles", "envs", "src", "data/corpus", ".test", "config"]


def copy_workflow(dest: Path) -> Path:
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (dest / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / part)
    return dest


def snakemake(workdir: Path, *args: str, configs=(".test/config.yaml",), timeout: int = 600, env_extra=None) -> subprocess.CompletedProcess:
    cmd = ["snakemake", "--workflow-profile", "profiles/ci-cpu"]
    if configs:
        cmd += ["--configfile", *configs]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")} | (env_extra or {})
    return subprocess.run(cmd + list(args), cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table ({} when nothing is to be done).

    Fails, naming what it saw, when the output has neither the table nor "Nothing to be done", or
    when the rows do not add up to the table's total: a plan that cannot be read is no empty plan.
    """
    out = result.stdout + result.stderr
    if "Nothing to be done" in out:
        return {}
    assert "Job stats:" in out, f"no 'Job stats' table in snakemake's output:\n{out[-3000:]}"
    jobs, total = {}, None
    for line in out.split("Job stats:", 1)[1].splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        assert m, f"unreadable row {line!r} in snakemake's 'Job stats' table:\n{out[-3000:]}"
        if m.group(1) == "total":
            total = int(m.group(2))
            break
        jobs[m.group(1)] = int(m.group(2))
    assert jobs and total == sum(jobs.values()), f"'Job stats' rows {jobs} do not add up to total {total}:\n{out[-3000:]}"
    return jobs


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One full run of the tiny overlay in a scratch copy; shared by the workflow tests."""
    workdir = copy_workflow(tmp_path_factory.mktemp("wf"))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, result


# A sweep of four SLOT variants on the tiny overlay: causal is the main eval and published its
# compare mode (both reused from the record's run); steps3 and corrected are new SLOT stages.
SWEEP_OVERLAY = {
    "sweep": {
        "name": "tiny",
        "variants": [
            {"name": "causal"},
            {"name": "published", "slot": {"mode": "published"}},
            {"name": "steps3", "slot": {"steps": 3}},
            {"name": "corrected", "slot": {"schedule": "corrected"}},
        ],
    },
}


@pytest.fixture(scope="session")
def sweep_run(tiny_run, tmp_path_factory):
    """`snakemake sweep` run on tiny_run's results (its record already built, its models trained).

    Returns (workdir, configs, jobs a sweep would plan from scratch, jobs the run executed,
    jobs tiny_run executed).
    """
    import yaml

    workdir, first = tiny_run
    (workdir / "sweep.yaml").write_text(yaml.safe_dump(SWEEP_OVERLAY))
    configs = (".test/config.yaml", "sweep.yaml")
    fresh = copy_workflow(tmp_path_factory.mktemp("sweep_fresh"))
    (fresh / "sweep.yaml").write_text(yaml.safe_dump(SWEEP_OVERLAY))
    scratch = snakemake(fresh, "sweep", "-n", "--configfile", *configs, configs=())
    assert scratch.returncode == 0, scratch.stderr[-3000:]
    result = snakemake(workdir, "sweep", "--configfile", *configs, configs=())
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, configs, planned_jobs(scratch), planned_jobs(result), planned_jobs(first)


# The upstream corpus tarball and the 1.0611 record in it (tests of the April records' own code).
CORPUS_TAR = Path(os.environ.get("PGOLF_CORPUS", "/work/shared/corpus/upstream-records.tar.xz"))
RECORD_1_0611 = "merged/records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"


def extract_record(tmp_path_factory, record: str, marker: str) -> Path:
    """The folder holding `marker` of `record`, extracted from the corpus (skips without it)."""
    if not CORPUS_TAR.is_file():
        pytest.skip(f"upstream corpus not found at {CORPUS_TAR} (set PGOLF_CORPUS to the .tar.xz)")
    out = tmp_path_factory.mktemp("corpus")
    with tarfile.open(CORPUS_TAR) as t:
        t.extractall(out, members=[m for m in t.getmembers() if record in m.name], filter="data")
    return next(out.rglob(marker)).parent
