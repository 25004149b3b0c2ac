"""The profiles under profiles/ parse, name only real flags and rules, and build the DAG they are for."""

from __future__ import annotations

import importlib.util
import re
import subprocess

import pytest
import yaml

from conftest import REPO, copy_workflow, planned_jobs, snakemake

PROFILES = ["default", "slurm", "ci-cpu"]
# Rules that must never go through sbatch: downloads need the network of the submitting node, the
# settings files and the assembly are instant.
LOCAL_RULES = {"data_hub", "data_local", "stage_config", "bundle_code", "record"}
has_slurm_plugin = importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None


def load(name: str) -> dict:
    return yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return copy_workflow(tmp_path_factory.mktemp("profiles"))


def rule_sources() -> str:
    return "".join(p.read_text() for p in [REPO / "Snakefile", *sorted((REPO / "workflow/rules").glob("*.smk"))])


@pytest.fixture(scope="module")
def rule_names(workdir):
    """Every rule of the workflow, those of each data.source included (only one is defined per run)."""
    names = set(re.findall(r"^\s*rule (\w+):", rule_sources(), re.M))
    result = snakemake(workdir, "--list-rules")
    assert result.returncode == 0, result.stderr[-2000:]
    listed = set(result.stdout.split())
    assert listed and listed <= names, sorted(listed - names)
    return names


@pytest.mark.parametrize("name", PROFILES)
def test_profile_is_commented_yaml(name):
    text = (REPO / "profiles" / name / "config.yaml").read_text()
    assert isinstance(load(name), dict)
    assert text.lstrip().startswith("#"), "each profile starts with a comment saying what it is for"


@pytest.mark.parametrize("name", PROFILES)
def test_profile_names_only_real_rules(name, rule_names):
    profile = load(name)
    for key in ("set-resources", "set-threads"):
        unknown = set(profile.get(key, {})) - rule_names
        assert not unknown, f"{name}: {key} names no rule of the workflow: {sorted(unknown)}"


def rule_block(name: str) -> str:
    match = re.search(rf"^\s*rule {name}:\n(.*?)(?=^\s*rule |\Z)", rule_sources(), re.M | re.S)
    assert match, f"no rule {name}"
    return match.group(1)


def test_downloads_settings_and_assembly_are_local_rules(rule_names):
    assert LOCAL_RULES <= rule_names
    for name in LOCAL_RULES:
        assert "localrule: True" in rule_block(name), f"rule {name} must be a local rule"
    assert not LOCAL_RULES & set(load("slurm")["set-resources"]), "a local rule gets no sbatch resources"


def test_slurm_profile_gives_training_one_node_and_no_tasks():
    profile = load("slurm")
    assert profile["executor"] == "slurm"
    for rule in ("train", "eval", "eval_slot", "eval_ttt"):
        res = profile["set-resources"][rule]
        assert res["nodes"] == 1
        assert not {"tasks", "tasks_per_gpu", "tasks_per_node", "mpi"} & set(res), rule
    # No GPU counter in the default profile: the workflow counts the machine's GPUs (common.smk).
    assert "resources" not in load("default") and "resources" not in load("ci-cpu")


@pytest.mark.parametrize(
    "name",
    ["default", "ci-cpu", pytest.param("slurm", marks=pytest.mark.skipif(not has_slurm_plugin, reason="no slurm plugin"))],
)
def test_profile_dry_runs_the_tiny_overlay(workdir, name):
    # A profile key that is no snakemake flag makes snakemake stop with "unrecognized arguments".
    result = subprocess.run(
        ["snakemake", "-n", "--workflow-profile", f"profiles/{name}", "--configfile", ".test/config.yaml"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert f"workflow specific profile profiles/{name}" in out
    # The whole tiny run, data to record: 2 seeds, their 2 evals, SLOT and TTT each, one shipped script.
    assert planned_jobs(result) == {"data_docs": 1, "stage_config": 5, "train": 2, "quantize": 2, "eval": 4, "eval_slot": 4, "eval_ttt": 2,
                                    "bundle_code": 1, "size_gate": 2, "record": 1, "all": 1}


@pytest.mark.skipif(not has_slurm_plugin, reason="no slurm plugin")
def test_slurm_profile_dry_runs_the_real_preset(workdir):
    result = subprocess.run(
        ["snakemake", "-n", "--workflow-profile", "profiles/slurm", "--configfile", "config/fineweb-8xh100.yaml"],
        cwd=workdir, capture_output=True, text=True, timeout=300,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    # Only the slurm profile is in force: the default profile's local GPU counter is not.
    assert "profiles/default" not in out
