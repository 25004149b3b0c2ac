"""provenance.json: what produced a record, gathered when the record is assembled.

The resolved config, the pipeline's git commit and whether the tree had uncommitted changes, the
installed packages (`pip freeze`), the Python/torch/CUDA versions and GPUs that the stage logs name
(the record code prints them at the top of each training log), the GPU driver, and the sha256 of the data
manifest. Only the record stage reads any of it, so a dirty tree or a new package never reruns a
training: it shows up in the next record's provenance.json instead.
"""

from __future__ import annotations

import hashlib
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The record code's log header (workflow/record/runtime.py, log_environment).
VERSIONS_LINE = re.compile(r"^python:(\S+) torch:(\S+) cuda:(\S+)$")
GPUS_LINE = re.compile(r"^gpus:(\d+) (?:names:(.*)|cpu_threads:\d+)$")
DRIVER_LINE = re.compile(r"^(?:gpu_)?driver:(\S+)")


def _run(cmd: list[str], cwd=None, timeout: float = 60) -> tuple[int, str]:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return 127, str(e)
    return r.returncode, (r.stdout if r.returncode == 0 else r.stderr).strip()


def git_state(repo_dir=".") -> dict:
    """Commit and dirty flag of the checkout the pipeline ran from; nulls and a note outside git."""
    if shutil.which("git") is None:
        return {"commit": None, "dirty": None, "note": "git is not installed"}
    rc, commit = _run(["git", "rev-parse", "HEAD"], cwd=repo_dir)
    if rc != 0:
        return {"commit": None, "dirty": None, "note": "not a git repository, or one without commits"}
    rc, status = _run(["git", "status", "--porcelain"], cwd=repo_dir)
    return {"commit": commit, "dirty": bool(status) if rc == 0 else None, "changed_files": len(status.splitlines()) if rc == 0 else None}


def pip_freeze() -> list[str]:
    rc, out = _run([sys.executable, "-m", "pip", "freeze", "--disable-pip-version-check"], timeout=120)
    if rc != 0:
        return [f"unavailable: pip freeze failed ({out.splitlines()[-1] if out else rc})"]
    return out.splitlines()


def log_environment(text: str) -> dict:
    """The environment a stage log states: versions and GPUs from the record code's header lines."""
    env = {"python": "unknown", "torch": "unknown", "cuda": "unknown", "gpus": "unknown", "gpu_names": "unknown"}
    for line in text.splitlines():
        if m := VERSIONS_LINE.match(line):
            env.update(python=m.group(1), torch=m.group(2), cuda=m.group(3))
        elif m := GPUS_LINE.match(line):
            n = int(m.group(1))
            env.update(gpus=n, gpu_names=(m.group(2) or "none") if n else "none")
        elif m := DRIVER_LINE.match(line):
            env["driver"] = m.group(1)
    return env


def gpu_driver() -> str:
    """The NVIDIA driver of the machine assembling the record ("none" without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return "none"
    rc, out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], timeout=30)
    return sorted(set(out.split()))[0] if rc == 0 and out else "none"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _distinct(values) -> str:
    found = sorted({str(v) for v in values})
    return ", ".join(found) if found else "unknown"


def collect(config: dict, manifest_path, seed_logs: dict, repo_dir=".") -> dict:
    """The provenance record. seed_logs: seed -> [(stage name, log path)], as the record rule gets them."""
    runs = []
    for seed, logs in seed_logs.items():
        for stage, path in logs:
            p = Path(path)
            env = log_environment(p.read_text(encoding="utf-8", errors="replace")) if p.is_file() else None
            if env and env["python"] != "unknown":  # stages whose log has the header (training)
                runs.append({"seed": int(seed), "stage": stage, "log": str(path), **env})
    driver_in_logs = {r["driver"] for r in runs if "driver" in r}
    return {
        "config": config,
        "git": git_state(repo_dir),
        "data_manifest": {"path": str(manifest_path), "sha256": file_sha256(manifest_path)},
        "environment": {
            "python": _distinct(r["python"] for r in runs),
            "torch": _distinct(r["torch"] for r in runs),
            "cuda": _distinct(r["cuda"] for r in runs),
            "gpu_names": _distinct(r["gpu_names"] for r in runs),
            "gpu_driver": _distinct(driver_in_logs) if driver_in_logs else gpu_driver(),
            "gpu_driver_source": "stage logs" if driver_in_logs else "nvidia-smi where the record was assembled",
            "record_python": platform.python_version(),
            "platform": platform.platform(),
        },
        "stage_runs": runs,
        "pip_freeze": pip_freeze(),
    }


def summary_lines(prov: dict) -> list[str]:
    """Short lines for the record README's Provenance section."""
    git, env, data = prov["git"], prov["environment"], prov["data_manifest"]
    if git["commit"]:
        commit = f"`{git['commit'][:12]}`" + (" with uncommitted changes" if git["dirty"] else " (clean tree)")
    else:
        commit = f"unknown ({git['note']})"
    return [
        f"pipeline commit: {commit}",
        f"python {env['python']}, torch {env['torch']}, CUDA {env['cuda']}",
        f"GPUs: {env['gpu_names']}; driver: {env['gpu_driver']}",
        f"data manifest sha256: `{data['sha256']}`",
        f"packages: {len(prov['pip_freeze'])} lines of `pip freeze`",
    ]
