"""Faults a real machine produces (issue #28), each met with one line and what to do next.

1. a killed snakemake leaves no worker running, and a second run of a live job is refused (pgolf job);
2. a full disk is a user error: the preflight counts what the run writes, ENOSPC is one line, temporary
   files go on every exit path;
3. token ids at or above the tokenizer's vocab_size fail `pgolf data-verify` naming file, offset, value;
4. a data file restored or rebuilt byte-identical reruns nothing downstream, and the shard error names
   the command that repairs it;
5. every config error is one line (malformed YAML with line and column, an empty overlay, a list);
   exit codes 1 (the thing checked is bad) and 2 (input or environment) as `pgolf --help` says;
6. recovery hints on the errors users hit most: tampered artifact, stale lock, corrupt shard.

The workflow tests share conftest's tiny_run and put back what they break.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import REPO, copy_workflow, planned_jobs, snakemake
from pgolf import cli, doctor, jobs
from pgolf.config import load_configs
from pgolf.data import DataError, verify_dataset
from pgolf.shards import HEADER_BYTES, sha256_file, write_shard

EMBEDDED = load_configs([REPO / "config.yaml"])
TINY = load_configs([REPO / "config.yaml", REPO / ".test" / "config.yaml"])
PRESET = load_configs([REPO / "config.yaml", REPO / "config" / "fineweb-8xh100.yaml"])
NO_HUB = lambda *a: None  # noqa: E731  (the hub "answers")
PGOLF = [sys.executable, "-m", "pgolf.cli"]


def pgolf(*args: str, cwd=None, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([*PGOLF, *args], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def job_processes(pidfile: Path) -> list[int]:
    record = jobs.read_pidfile(pidfile)
    return jobs.processes_with_marker(record["token"]) if record else []


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


# A job whose command starts workers the way torchrun does: one in a session of its own.
WORKERS = "import subprocess, os, time; subprocess.Popen(['sleep', '301'], start_new_session=True); os.execvp('sleep', ['sleep', '300'])"


def start_job(tmp_path: Path, *, via_shell: bool = False) -> tuple[subprocess.Popen, Path]:
    pidfile = tmp_path / "seed1.pid"
    cmd = [*PGOLF, "job", "--label", "train seed 1", "--pidfile", str(pidfile), "--", sys.executable, "-c", WORKERS]
    if via_shell:  # as snakemake runs it: a shell, whose process group is killed as a whole
        cmd = ["bash", "-c", subprocess.list2cmdline(cmd) + "; echo done"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    wait_for(lambda: len(job_processes(pidfile)) >= 2, 30, "the job's two workers")
    return proc, pidfile


# ----------------------------------------------------------------------------- 1. no orphans


def test_job_passes_output_and_exit_status_through(tmp_path):
    log = tmp_path / "job.log"
    r = pgolf("job", "--label", "eval seed 1", "--pidfile", str(tmp_path / "e.pid"), "--log", str(log), "--",
              sys.executable, "-c", "print('step:1/2'); raise SystemExit(3)")
    assert r.returncode == 3
    # the terminal's copy carries the job's label (concurrent seeds' lines apart); the log does not
    assert r.stdout == "[eval seed 1] step:1/2\n" and log.read_text() == "step:1/2\n"
    assert not (tmp_path / "e.pid").exists()  # removed when the job ends


def test_a_second_run_of_a_live_job_is_refused_naming_its_pids(tmp_path):
    proc, pidfile = start_job(tmp_path)
    try:
        guard = jobs.read_pidfile(pidfile)["guard"]
        workers = job_processes(pidfile)
        r = pgolf("job", "--label", "train seed 1", "--pidfile", str(pidfile), "--", "true")
        assert r.returncode == 2
        pids = " ".join(map(str, [guard, *workers]))
        assert r.stderr == (
            f"error: train seed 1: its previous run is still running (PID {pids}; pid file {pidfile}):"
            f" wait for it to end, or stop it with `kill {pids}`, then rerun\n"
        )
    finally:
        proc.kill()
        proc.wait()
    wait_for(lambda: not job_processes(pidfile), 10, "the workers to stop")


@pytest.mark.parametrize("via_shell", [False, True], ids=["front-killed", "whole-group-killed"])
def test_workers_die_when_the_job_is_killed_with_sigkill(tmp_path, via_shell):
    proc, pidfile = start_job(tmp_path, via_shell=via_shell)
    workers = job_processes(pidfile)
    if via_shell:
        os.killpg(proc.pid, signal.SIGKILL)  # the shell and `pgolf job` at once, as a kill of snakemake's group does
    else:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not any(jobs.alive(p) for p in workers), 8, f"workers {workers} to die")
    # Nothing is left that would refuse the next run (the guard ends too, once it has cleaned up).
    wait_for(lambda: jobs.previous_run_alive(pidfile) == [], 5, "the guard to end")


def test_sigterm_stops_the_workers_and_says_so(tmp_path):
    proc, pidfile = start_job(tmp_path)
    workers = job_processes(pidfile)
    proc.terminate()
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode != 0
    assert out.strip().splitlines()[-1] == "error: train seed 1: stopped by SIGTERM; its workers were stopped with it"
    assert not any(jobs.alive(p) for p in workers)


# ----------------------------------------------------------------------------- 2. disk full, temporary files


def test_temporary_files_go_on_every_exit_path_and_a_live_writers_stays(tmp_path):
    out = tmp_path / "seed1"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / f"model.pt.tmp{dead.pid}").write_bytes(b"x" * 999)  # left by a killed run
    (out / f".fineweb_train_000000.bin.{dead.pid}.tmp").write_bytes(b"x")
    live = out / f"sliding.json.tmp{os.getpid()}"  # a sibling job still writing
    live.write_text("{")
    (out / "model.pt").write_bytes(b"finished")
    crash = ("import os, sys; open(os.path.join(sys.argv[1], f'train.json.tmp{os.getpid()}'), 'w').write('partial');"
             " raise SystemExit(1)")
    r = pgolf("job", "--label", "train seed 1", "--pidfile", str(tmp_path / "p.pid"), "--clean-dir", str(out), "--",
              sys.executable, "-c", crash, str(out))
    assert r.returncode == 1
    assert f"job: removed {out / f'model.pt.tmp{dead.pid}'}, left by a killed run" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(["model.pt", live.name])
    assert (out / "model.pt").read_bytes() == b"finished"


def test_enospc_in_a_job_is_one_line_naming_the_filesystem_and_bytes(tmp_path):
    hp, manifest = tmp_path / "hp.json", tmp_path / "manifest.json"
    hp.write_text(json.dumps(TINY["train"]))
    manifest.write_text(json.dumps({"tokenizer": {"vocab_size": 1024}}))
    crash = "import os, sys\ndef save():\n    raise OSError(28, 'No space left on device')\nsave()"
    r = pgolf("job", "--label", "train seed 1", "--pidfile", str(tmp_path / "p.pid"), "--clean-dir", str(tmp_path),
              "--writes", "train", "--hparams", str(hp), "--manifest", str(manifest), "--", sys.executable, "-c", crash)
    assert r.returncode == 2
    assert "Traceback" not in r.stdout + r.stderr
    [line] = r.stdout.splitlines()
    fstype, mount = doctor.filesystem_type(tmp_path)
    needed = doctor.model_params(TINY["train"]["model"], 1024) * 4 + doctor.LOG_BYTES_PER_SEED
    assert line.startswith(f"error: train seed 1: disk full: no space left on {mount} ({fstype}) writing under {tmp_path}: ")
    assert f"this job writes about {jobs.human_bytes(needed)} ({needed} bytes)" in line


def test_enospc_in_a_pgolf_command_is_one_line(tmp_path, monkeypatch, capsys):
    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("pgolf.shards.write_atomic", full)
    (tmp_path / "c.json").write_text(json.dumps({k: TINY[k] for k in ("train", "export", "eval")}))
    out = tmp_path / "train_gpt.py"
    rc = cli.main(["bundle", "--config", str(tmp_path / "c.json"), "--src", str(REPO / "workflow/record"), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: disk full: no space left on ")
    assert f"writing under {tmp_path}" in err


def test_disk_preflight_counts_what_the_run_writes(monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)  # data.docs.path is relative to the workflow
    free = {"bytes": 5_000_000}
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: type("U", (), {"free": free["bytes"]})())
    check = doctor.disk_check(EMBEDDED, tmp_path / "results", data_ready=False)
    plan = dict(doctor.run_writes(EMBEDDED, data_ready=False))
    need = sum(plan.values())
    # The embedded default: 3 seeds of a 4-layer, 128-dim model and the shards of the 2.6 MB corpus.
    assert plan["data (shards of the corpus)"] == 3 * (REPO / "data/corpus/embedded.jsonl.xz").stat().st_size
    assert check.status == "fail"
    assert check.message.startswith(f"the planned jobs write about {jobs.human_bytes(need)} (data (shards of the corpus) ")
    assert check.message.endswith(f"but {tmp_path} has 5.0 MB free; free space, put results/ on a larger filesystem, or train fewer seeds")
    free["bytes"] = need
    assert doctor.disk_check(EMBEDDED, tmp_path / "results", data_ready=False).status == "ok"


@pytest.mark.parametrize("config", [TINY, EMBEDDED, PRESET], ids=["tiny", "embedded", "preset"])
def test_parameter_estimate_matches_the_record_model(config):
    import torch
    from model import GPT, GPTConfig  # workflow/record, on sys.path via conftest
    from runtime import settings_from

    vocab = doctor.vocab_size(config)
    cfg = settings_from(GPTConfig, {**config["train"]["model"], "vocab_size": vocab})
    with torch.device("meta"):
        real = sum(p.numel() for p in GPT(cfg).parameters())
    assert abs(doctor.model_params(config["train"]["model"], vocab) - real) <= 0.02 * real


def test_doctor_lists_every_failure_at_once(monkeypatch, capsys):
    monkeypatch.setenv("PGOLF_GPUS", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: type("U", (), {"free": 1_000_000})())
    monkeypatch.chdir(REPO)
    assert cli.main(["doctor", "config/fineweb-8xh100.yaml"]) == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("preflight:")][:4]
    assert [line.split(" is ")[0] for line in lines[:3]] == [
        "preflight: train.nproc_per_node", "preflight: eval.nproc_per_node", "preflight: data.hub.train_shards"]
    assert lines[3].startswith("preflight: data.source is hub but HF_HUB_OFFLINE is set")
    # The workflow's preflight prints `preflight: ` + first_failure's message: every line, then stops.
    checks = doctor.preflight(PRESET, machine_gpus=1, env={"HF_HUB_OFFLINE": "1"})
    assert f"preflight: {doctor.first_failure(checks).message}".splitlines() == lines


# ----------------------------------------------------------------------------- 3. token ids, 4. repair hints


def tiny_dataset(root: Path, source: dict) -> Path:
    rng = np.random.default_rng(1)
    files = []
    for name, split, n in (("fineweb_val_000000.bin", "val", 300), ("fineweb_train_000000.bin", "train", 500)):
        digest = write_shard(root / name, rng.integers(0, 1024, n))
        files.append({"path": name, "split": split, "bytes": (root / name).stat().st_size, "sha256": digest, "num_tokens": n})
    manifest = {"format": "pgolf-data/1", "source": source, "tokenizer": {"vocab_size": 1024},
                "stats": {"tokens_val": 300, "tokens_train": 500}, "files": files}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root / "manifest.json"


DOCS = {"kind": "docs", "path": "docs.jsonl", "sha256": "0" * 64, "num_val_docs": 1}
HUB = {"kind": "hub", "repo_id": "willdepueoai/parameter-golf", "revision": "main", "remote_root": "datasets",
       "dataset": "fineweb10B_sp1024", "train_shards": 1, "commit": "c" * 40}


def test_out_of_range_token_is_one_line_with_file_offset_value(tmp_path):
    manifest = tiny_dataset(tmp_path, DOCS)
    shard = tmp_path / "fineweb_train_000000.bin"
    size = shard.stat().st_size
    with open(shard, "r+b") as f:  # token 123 becomes 5000: same size, same header
        f.seek(HEADER_BYTES + 2 * 123)
        f.write((5000).to_bytes(2, "little"))
    assert shard.stat().st_size == size
    repair = f"repair: `snakemake --cores all --force {manifest}` rebuilds the data byte-identical (only that job); nothing downstream reruns"
    with pytest.raises(DataError) as caught:
        verify_dataset(manifest)
    assert str(caught.value) == (
        f"{shard}: token id 5000 at byte offset {HEADER_BYTES + 246} (token 123) is not below the tokenizer's vocab_size 1024; {repair}"
    )
    r = pgolf("data-verify", str(manifest))
    assert r.returncode == 2 and r.stderr == f"error: {caught.value}\n"


@pytest.mark.parametrize("source", ["docs", "hub", "local"])
def test_shard_errors_say_how_to_repair_that_file(tmp_path, source):
    manifest = tiny_dataset(tmp_path, {"docs": DOCS, "hub": HUB, "local": {"kind": "local"}}[source])
    shard = tmp_path / "fineweb_val_000000.bin"
    sha = sha256_file(shard)
    with open(shard, "r+b") as f:
        f.truncate(500)
    with pytest.raises(DataError) as caught:
        verify_dataset(manifest)
    first, hint = str(caught.value).split("; repair: ")
    assert first == f"{shard}: 500 bytes on disk, manifest says {HEADER_BYTES + 600}"
    assert hint == {
        "docs": f"`snakemake --cores all --force {manifest}` rebuilds the data byte-identical (only that job); nothing downstream reruns",
        "hub": f"`pgolf data-hub --out-dir {tmp_path} --repo-id willdepueoai/parameter-golf --revision main --remote-root datasets"
               " --variant sp1024 --train-shards 1 --hashes` refetches just the damaged files, byte-identical; nothing downstream reruns",
        "local": f"restore {shard} from your copy (its sha256 must be {sha}), or rerun the data stage",
    }[source]


def test_both_profiles_rerun_by_the_same_triggers():
    triggers = [yaml.safe_load((REPO / "profiles" / p / "config.yaml").read_text()).get("rerun-triggers") for p in ("default", "ci-cpu")]
    assert triggers[0] == triggers[1] == ["mtime", "params", "input", "software-env", "code"]


# ----------------------------------------------------------------------------- 5. config errors and exit codes


@pytest.mark.parametrize("content, line", [
    ("train:\n  iterations: [1, 2\nseeds: 3\n",
     "{f}:3:6: malformed YAML: expected ',' or ']', but got ':' (while parsing a flow sequence that starts at line 2, column 15)"),
    ("train:\n\titerations: 3\n", "{f}:2:1: malformed YAML: found character '\\t' that cannot start any token (while scanning for the next token)"),
    ("", "{f}: empty config file (snakemake refuses it too): give it keys, or leave it out"),
    ("# only a comment\n", "{f}: empty config file (snakemake refuses it too): give it keys, or leave it out"),
    ("- 1\n- 2\n", "{f}: expected a mapping of config keys at the top level, got a YAML list"),
], ids=["unclosed-list", "tab", "empty", "comment-only", "list"])
def test_every_config_error_is_one_line(tmp_path, content, line):
    bad = tmp_path / "overlay.yaml"
    bad.write_text(content)
    expected = "error: " + line.format(f=bad) + "\n"
    for command in (["check-config", str(REPO / "config.yaml"), str(bad)], ["doctor", str(bad)]):
        r = pgolf(*command, cwd=REPO)
        assert (r.returncode, r.stderr, r.stdout) == (2, expected, ""), command


def test_exit_codes_are_documented_and_a_missing_record_is_a_user_error(tmp_path):
    help_text = pgolf("--help").stdout
    assert "exit codes:\n  0  ok\n  1  the thing checked is bad" in help_text and "\n  2  your input or environment is bad" in help_text
    version = pgolf("--version")
    assert (version.returncode, version.stdout) == (0, "pgolf 0.1.0\n")
    r = pgolf("validate", str(tmp_path / "nowhere"))
    assert (r.returncode, r.stderr) == (2, f"error: {tmp_path / 'nowhere'}: no such record folder\n")


# ----------------------------------------------------------------------------- 6. recovery hints


def test_stale_lock_and_orphaned_jobs_get_what_to_run(tmp_path):
    assert doctor.lock_check(tmp_path, Path("results")).status == "ok"
    (tmp_path / ".snakemake/locks").mkdir(parents=True)
    (tmp_path / ".snakemake/locks/0.input.lock").write_text("x")
    check = doctor.lock_check(tmp_path, Path("results"))
    assert (check.status, check.message) == ("fail", "a killed snakemake left its lock in .snakemake/locks and no snakemake runs here:"
                                             " run `snakemake --unlock`, then rerun (the killed jobs rerun from the start)")
    # A job that outlived its snakemake (started before pgolf job existed, say) is named with its PIDs.
    pidfile = tmp_path / "results/logs/train/abc/seed1.log.pid"
    pidfile.parent.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"], env={**os.environ, "PGOLF_JOB": "t1"})
    try:
        pidfile.write_text(json.dumps({"token": "t1", "guard": None}))
        check = doctor.lock_check(tmp_path, Path("results"))
        assert check.status == "fail"
        assert check.message == (f"jobs of a killed run still run with no snakemake here (PID {sleeper.pid}; {pidfile}):"
                                 f" stop them with `kill {sleeper.pid}`, then rerun")
    finally:
        sleeper.kill()
        sleeper.wait()


def test_tampered_artifact_error_gets_a_hint():
    line = "error: results/export/abc/seed42/final_model.ptz: sha256 ff does not match the exported artifact's 00 (9 bytes): the file was changed after export\n"
    assert jobs.recovery_hints([line]) == [
        "remove results/export/abc/seed42/final_model.ptz and rerun snakemake: the export stage rebuilds it from the trained checkpoint (nothing retrains)"]
    assert jobs.recovery_hints(["error: results/train/x/config.json: cannot read hyperparameters\n"]) == []


# ----------------------------------------------------------------------------- the workflow


def overlay(workdir: Path, name: str, content: dict) -> str:
    (workdir / f"{name}.yaml").write_text(yaml.safe_dump(content))
    return f"{name}.yaml"


def worker_pids(workdir: Path) -> list[int]:
    """Live processes running the record code (torchrun, its workers) in this workflow copy; not `pgolf job`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if any(a.endswith(b"pgolf") for a in argv[:2]):
                continue
            if any(b"workflow/record/" in a for a in argv) and cwd == str(workdir) and jobs.alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def test_kill_9_of_snakemake_leaves_no_worker_and_the_rerun_completes(tiny_run):
    workdir, _ = tiny_run
    # Capped at 30 s, so that the rerun ends; a worker left running would go on for most of that.
    long = overlay(workdir, "faults_long", {"train": {"iterations": 100000, "max_wallclock_seconds": 30}, "seeds": [11]})
    cmd = ["snakemake", "--workflow-profile", "profiles/ci-cpu", "--configfile", ".test/config.yaml", long]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        log = wait_for(lambda: next((p for p in workdir.glob("results/logs/train/*/seed11.log") if "step:1/" in p.read_text()), None),
                       180, "training to start")
        assert worker_pids(workdir), "no training worker found"
    finally:
        proc.kill()  # SIGKILL to snakemake alone: its job shell and `pgolf job` live on
        proc.wait()
    try:
        wait_for(lambda: not worker_pids(workdir), 6, "the training workers to stop")
        wait_for(lambda: not list(log.parent.glob("seed11.log.pid")), 5, "the job to remove its pid file")
    finally:
        assert subprocess.run(cmd + ["--unlock"], cwd=workdir, env=env, capture_output=True).returncode == 0
    train_json = f"results/train/{log.parent.name}/seed11/train.json"
    rerun = snakemake(workdir, train_json, "--configfile", ".test/config.yaml", long, configs=())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (workdir / train_json).is_file() and not list((workdir / train_json).parent.glob("*.tmp*"))


def test_restored_or_rebuilt_shard_reruns_nothing(tiny_run):
    workdir, _ = tiny_run
    shard = next(workdir.glob("results/data/*/fineweb_train_000001.bin"))
    manifest = shard.parent / "manifest.json"
    models = {p: p.stat().st_mtime_ns for p in workdir.glob("results/train/*/seed*/model.pt")}
    original = shard.read_bytes()
    more = overlay(workdir, "faults_seed", {"seeds": [1337, 42, 5]})
    try:
        shard.write_bytes(original[:500000])
        failed = snakemake(workdir, configs=(".test/config.yaml", more))
        assert failed.returncode != 0
        out = failed.stdout + failed.stderr
        line = next(line for line in out.splitlines() if f"{shard.relative_to(workdir)}: 500000 bytes on disk" in line)
        command = line.split("repair: `")[1].split("`")[0]
        assert command == f"snakemake --cores all --force {manifest.relative_to(workdir)}"
        # The repair the line names: only the data job runs, and the shard comes back byte-identical.
        repaired = snakemake(workdir, *command.split()[1:], configs=(".test/config.yaml",))
        assert repaired.returncode == 0, repaired.stderr[-3000:]
        assert shard.read_bytes() == original
        assert planned_jobs(snakemake(workdir, "-n")) == {}
        # Restoring the file by hand (a new mtime, the same bytes) reruns nothing either.
        shard.write_bytes(original[:500000])
        shard.write_bytes(original)
        assert planned_jobs(snakemake(workdir, "-n")) == {}
    finally:
        shard.write_bytes(original)
    assert {p: p.stat().st_mtime_ns for p in models} == models


def test_tampered_artifact_fails_the_eval_with_a_hint_that_works(tiny_run):
    workdir, _ = tiny_run
    artifact = next(workdir.glob("results/export/*/seed42/final_model.ptz"))
    roundtrip = next(workdir.glob("results/eval/*/seed42/roundtrip.json"))
    models = {p: p.stat().st_mtime_ns for p in workdir.glob("results/train/*/seed*/model.pt")}
    original = artifact.read_bytes()
    try:
        artifact.write_bytes(original + b"\0")
        failed = snakemake(workdir, "--force", str(roundtrip.relative_to(workdir)))
        assert failed.returncode != 0
        out = failed.stdout + failed.stderr
        rel = artifact.relative_to(workdir)
        assert f"error: {rel}: sha256 " in out and "Traceback" not in out
        hint = f"hint: remove {rel} and rerun snakemake: the export stage rebuilds it from the trained checkpoint (nothing retrains)"
        assert hint in out
        artifact.unlink()  # what the hint says
        plan = planned_jobs(snakemake(workdir, "-n", str(roundtrip.relative_to(workdir))))
        assert plan == {"quantize": 1, "eval": 1}  # quantize is the export rule; nothing retrains
        rerun = snakemake(workdir, "--cores", "2", str(roundtrip.relative_to(workdir)))
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert artifact.read_bytes() == original  # export is deterministic: the same bytes come back
    finally:
        if not artifact.exists() or artifact.read_bytes() != original:
            artifact.write_bytes(original)
    assert {p: p.stat().st_mtime_ns for p in models} == models
    # The rebuilt eval output is newer than the record: bring the shared run back to finished.
    done = snakemake(workdir, "--cores", "2")
    assert done.returncode == 0 and planned_jobs(snakemake(workdir, "-n")) == {}, done.stderr[-3000:]


def test_a_really_full_filesystem_stops_the_data_stage_in_one_line(tmp_path):
    """The issue's 5 MB filesystem, for real: a tmpfs (needs mount rights; skipped where there are none)."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(small)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a 5 MB tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        out = small / "data"
        r = pgolf("data-docs", "--docs", str(REPO / "data/corpus/embedded.jsonl.xz"), "--out-dir", str(out), "--num-val-docs", "10",
                  "--shard-tokens", "1000000", "--vocab-size", "1024", "--workers", "1", timeout=600)
        assert r.returncode == 2
        assert "Traceback" not in r.stdout + r.stderr
        [line] = r.stderr.splitlines()
        assert line.startswith(f"error: disk full: no space left on {small} (tmpfs) writing under {out}: ")
        assert f"this job writes about {jobs.human_bytes(doctor.docs_data_bytes(REPO / 'data/corpus/embedded.jsonl.xz'))}" in line
        assert not (out / "manifest.json").exists()  # nothing that looks finished
        assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_a_full_filesystem_during_a_jobs_write_is_one_line_and_leaves_no_partial_file(tmp_path):
    """The record code's own atomic writer (model.pt.tmp<pid>) on a real 5 MB tmpfs, under pgolf job."""
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(small)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a 5 MB tmpfs here (needs root or CAP_SYS_ADMIN)")
    try:
        seed = small / "seed1"
        seed.mkdir()
        (small / "seed2").mkdir()
        (small / "seed2" / "model.pt").write_bytes(b"finished" * 1000)  # another seed's finished model
        save = ("import sys; sys.path.insert(0, sys.argv[2]); from runtime import write_bytes_atomic;"
                " write_bytes_atomic(sys.argv[1], b'x' * 8_000_000)")
        r = pgolf("job", "--label", "train seed 1", "--pidfile", str(tmp_path / "seed1.pid"), "--clean-dir", str(seed), "--",
                  sys.executable, "-c", save, str(seed / "model.pt"), str(REPO / "workflow/record"), timeout=120)
        assert r.returncode == 2
        assert "Traceback" not in r.stdout + r.stderr
        [line] = r.stdout.splitlines()
        assert line.startswith(f"error: train seed 1: disk full: no space left on {small} (tmpfs) writing under {seed}: ")
        assert list(seed.iterdir()) == []  # the partial model.pt.tmp<pid> is gone
        assert (small / "seed2" / "model.pt").read_bytes() == b"finished" * 1000
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_snakemake_itself_says_only_that_an_overlay_is_unreadable(tmp_path):
    """Why the README points at `pgolf check-config`: snakemake reads --configfile before any workflow code."""
    workdir = copy_workflow(tmp_path / "wf")
    (workdir / "bad.yaml").write_text("train:\n  iterations: [1, 2\nseeds: 3\n")
    result = snakemake(workdir, "-n", configs=("bad.yaml",))
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "Config file is not valid JSON or YAML" in out
    assert "line 3" not in out and "bad.yaml:3:6" not in out
    r = pgolf("check-config", "config.yaml", "bad.yaml", cwd=workdir)
    assert r.stderr.startswith("error: bad.yaml:3:6: malformed YAML: ")
