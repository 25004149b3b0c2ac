"""Seconds from `kill -9` of snakemake mid-training until no training process is left (docs/faults.md).

Run in a workflow folder whose tiny run is done (data and models there), e.g. a copy made by
tests/conftest.py's copy_workflow after `snakemake --workflow-profile profiles/ci-cpu --configfile .test/config.yaml`:

    python bench/kill_latency.py WORKDIR [--runs 3]

Each run trains a new seed (13) with a 60 s cap, kills snakemake (SIGKILL, snakemake alone) once the
first step is logged, and times until no process running workflow/record/ code in WORKDIR remains
(`pgolf job` itself not counted); then `snakemake --unlock`. Gives up waiting after 60 s.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

SNAKEMAKE = ["snakemake", "--workflow-profile", "profiles/ci-cpu", "--configfile", ".test/config.yaml", "kill_latency.yaml"]


def record_code_processes(workdir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if any(a.endswith(b"pgolf") for a in argv[:2]):
            continue
        if cwd == str(workdir) and any(b"workflow/record/" in a for a in argv):
            found.append(int(entry.name))
    return found


def one_run(workdir: Path) -> float:
    for log in workdir.glob("results/logs/train/*/seed13.log"):
        log.unlink()
    proc = subprocess.Popen(SNAKEMAKE, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not any("step:1/" in p.read_text() for p in workdir.glob("results/logs/train/*/seed13.log")):
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    start = time.monotonic()
    while record_code_processes(workdir) and time.monotonic() - start < 60:
        time.sleep(0.05)
    seconds = time.monotonic() - start
    subprocess.run(SNAKEMAKE + ["--unlock"], cwd=workdir, capture_output=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    workdir = args.workdir.resolve()
    (workdir / "kill_latency.yaml").write_text("train:\n  iterations: 100000\n  max_wallclock_seconds: 60\nseeds: [13]\n")
    for n in range(args.runs):
        seconds = one_run(workdir)
        left = record_code_processes(workdir)
        print(f"run {n + 1}: {seconds:.2f} s until no training process was left" + (f" (still running: {left})" if left else ""))


if __name__ == "__main__":
    main()
