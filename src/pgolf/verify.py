"""Re-runs a record folder's train_gpt.py alone, in an empty folder, and compares it with the staged run.

The record's claim is that its single script reproduces the numbers in submission.json. On the CPU
(one thread, deterministic algorithms) that holds bit for bit: the same artifact bytes and the same
scores to the 8 decimals the record states. `snakemake verify` runs this for every seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import tempfile
from pathlib import Path
from pgolf.errors import UserError
from pgolf.shards import write_atomic


class VerifyError(UserError):
    """The re-run failed or disagrees with the staged run (one line naming the number)."""


def run_record_script(record_dir, manifest, seed: int, workdir, timeout: int = 3600) -> dict:
    """Copies the record folder's files into `workdir` (must be empty) and runs its train_gpt.py there.

    Returns results.json of the run plus the sha256 of the artifact it wrote. One CPU thread, as
    the staged jobs use (threads: 1), so CPU reductions add up in the same order.
    """
    record_dir, workdir = Path(record_dir), Path(workdir)
    if any(workdir.iterdir()):
        raise VerifyError(f"{workdir}: not an empty folder")
    for f in record_dir.iterdir():
        if f.is_file():
            shutil.copy2(f, workdir / f.name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "train_gpt.py", "--data", str(Path(manifest).resolve()), "--seed", str(seed), "--out-dir", "."]
    returncode, output = _run_reporting(cmd, workdir, env, timeout, f"verify seed {seed}: ")
    (workdir / "verify_run.log").write_text(output, encoding="utf-8")
    if returncode != 0:
        last = (output.strip().splitlines() or ["(no output)"])[-1]
        raise VerifyError(f"{record_dir}/train_gpt.py --seed {seed} failed (exit {returncode}): {last}")
    results = json.loads((workdir / "results.json").read_text(encoding="utf-8"))
    results["artifact_sha256"] = hashlib.sha256((workdir / "final_model.ptz").read_bytes()).hexdigest()
    results["artifact_bytes"] = (workdir / "final_model.ptz").stat().st_size
    return results


# The re-run's lines worth showing while it runs: training steps, eval progress, final scores.
PROGRESS = re.compile(r"^(step:\d+/\d+ |\S.*: \d+ of \d+ \w+ \(\d+%\)|final_\w+ val_loss|warmup_step:)")


def _run_reporting(cmd, cwd, env, timeout: int, prefix: str) -> tuple[int, str]:
    """Runs `cmd`, echoing its progress lines with `prefix` as they come; (exit status, all output).
    Killed after `timeout` seconds (exit status -9 then)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if PROGRESS.match(line):
                print(prefix + line, end="", flush=True)
        return proc.wait(), "".join(lines)
    finally:
        timer.cancel()


def compare(results: dict, submission: dict, seed: int, size: dict) -> dict:
    """{name: {staged, rerun, equal}} for the artifact and every score the record states for `seed`."""
    staged = submission["seed_results"][str(seed)]
    method = submission["eval_method"]
    headline = method if method in ("ttt", "lora_ttt", "phased_ttt") else "slot" if method.startswith("slot_") else "sliding"
    pairs = {
        "artifact_sha256": (size["model_file"]["sha256"], results["artifact_sha256"]),
        "model_bytes": (size["model_bytes"], results["artifact_bytes"]),
        "val_bpb": (staged["val_bpb"], round(results[headline]["val_bpb"], 8)),
        "val_loss": (staged["val_loss"], round(results[headline]["val_loss"], 8)),
        "roundtrip_val_bpb": (staged["roundtrip_val_bpb"], round(results["roundtrip"]["val_bpb"], 8)),
        "sliding_val_bpb": (staged["sliding_val_bpb"], round(results["sliding"]["val_bpb"], 8)),
    }
    return {k: {"staged": a, "rerun": b, "equal": a == b} for k, (a, b) in pairs.items()}


def verify_seed(record_dir, manifest, seed: int, size_json, out_json, keep_dir=None) -> dict:
    """Runs and compares one seed; writes out_json (atomically) and raises VerifyError on any difference."""
    submission = json.loads((Path(record_dir) / "submission.json").read_text(encoding="utf-8"))
    size = json.loads(Path(size_json).read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix="pgolf-verify-") as tmp:
        results = run_record_script(record_dir, manifest, seed, tmp)
        if keep_dir:
            Path(keep_dir).mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(tmp) / "verify_run.log", Path(keep_dir) / "verify_run.log")
    checks = compare(results, submission, seed, size)
    report = {"record": str(record_dir), "seed": seed, "ok": all(c["equal"] for c in checks.values()), "checks": checks}
    if not report["ok"]:
        bad = [f"{k} staged {c['staged']} != rerun {c['rerun']}" for k, c in checks.items() if not c["equal"]]
        raise VerifyError(f"{record_dir}/train_gpt.py does not reproduce seed {seed}: {'; '.join(bad)}")
    write_atomic(out_json, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return report
