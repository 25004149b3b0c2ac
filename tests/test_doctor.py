"""Preflight (pgolf/doctor.py): GPUs counted on the machine, disk, hub, shared results/, and the
workflow stopping before its first job when the machine cannot run the config."""

from __future__ import annotations

import copy
import os
import socket
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_workflow
from pgolf import cli, doctor
from pgolf.config import check_config, load_configs

PRESET = load_configs([REPO / "config.yaml", REPO / "config" / "fineweb-8xh100.yaml"])
EMBEDDED = load_configs([REPO / "config.yaml"])
NO_HUB = lambda *a: pytest.fail("the hub must not be contacted here")  # noqa: E731


def fake_nvidia_smi(tmp_path: Path, gpus: int) -> dict:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    lines = "\n".join(f"GPU {i}: NVIDIA H200 (UUID: GPU-{i:08d})" for i in range(gpus))
    script.write_text(f"#!/bin/sh\ncat <<'END'\n{lines}\nEND\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def test_gpu_count_from_override_nvidia_smi_and_cuda_visible_devices(tmp_path, monkeypatch):
    assert doctor.visible_gpus({"PGOLF_GPUS": "3"}) == (3, "PGOLF_GPUS")
    with pytest.raises(ValueError, match="PGOLF_GPUS: expected a GPU count"):
        doctor.visible_gpus({"PGOLF_GPUS": "two"})
    env = fake_nvidia_smi(tmp_path, 4)
    monkeypatch.setenv("PATH", env["PATH"])
    assert doctor.visible_gpus({}) == (4, "nvidia-smi -L")
    assert doctor.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,2"})[0] == 2
    assert doctor.visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5"})[0] == 4  # no more than exist
    assert doctor.visible_gpus({"CUDA_VISIBLE_DEVICES": ""})[0] == 0
    assert doctor.visible_gpus({"CUDA_VISIBLE_DEVICES": "1,-1,2"})[0] == 1  # CUDA stops at -1


def test_no_nvidia_smi_means_no_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert doctor.visible_gpus({})[0] == 0


def test_real_preset_on_one_gpu_fails_with_one_line_naming_the_fix():
    checks = doctor.preflight(PRESET, machine_gpus=1, gpu_source="PGOLF_GPUS", data_ready=True, probe=NO_HUB)
    failed = doctor.failures(checks)[0]
    assert failed.name == "train"
    assert failed.message.startswith("train.nproc_per_node is 8 but this machine has 1 GPU: ")
    assert "config/gpu-smoke.yaml" in failed.message and "\n" not in failed.message
    assert [c.status for c in checks if c.name in ("train", "eval")] == ["fail", "fail"]


@pytest.mark.parametrize("gpus, fix", [(0, "set train.device: cpu"), (4, "set train.nproc_per_node: 4 and eval.nproc_per_node: 4")])
def test_too_few_gpus_names_the_key_that_fixes_it(gpus, fix):
    failed = doctor.failures(doctor.preflight(PRESET, machine_gpus=gpus, data_ready=True, probe=NO_HUB))[0]
    assert failed.message.startswith(f"train.nproc_per_node is 8 but this machine has {gpus} GPU")
    assert fix in failed.message


def test_preset_fits_an_8_gpu_node_and_cpu_configs_need_no_gpu():
    checks = doctor.preflight(PRESET, machine_gpus=8, data_ready=True, probe=NO_HUB)
    assert doctor.first_failure(checks) is None
    assert "8 processes on 8 of 8 GPUs" in checks[0].detail
    cpu = doctor.preflight(EMBEDDED, machine_gpus=0, probe=NO_HUB)
    assert doctor.first_failure(cpu) is None
    assert [c.name for c in cpu] == ["train", "eval", "disk"]
    assert "on the CPU (device: auto, no GPU here)" in cpu[0].detail
    # On a cluster the local count plays no part.
    assert doctor.first_failure(doctor.preflight(PRESET, machine_gpus=0, data_ready=True, cluster=True, probe=NO_HUB)) is None


def test_low_disk_stops_before_the_download(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: type("U", (), {"free": 3_000_000_000})())
    env = {"HF_HUB_CACHE": str(tmp_path / "cache")}
    check = doctor.disk_check(PRESET, tmp_path / "results", data_ready=False, env=env)
    assert check.status == "fail"
    need = 80 * 200_001_024 + doctor.HUB_VAL_BYTES
    assert check.message.startswith(f"data.hub.train_shards is 80: the data stage downloads about {need / 1e9:.1f} GB")
    assert "3.0 GB free" in check.message
    # Once the data is there nothing is downloaded, and a docs corpus downloads nothing.
    assert doctor.disk_check(PRESET, tmp_path / "results", data_ready=True, env=env).status == "ok"
    assert doctor.disk_check(EMBEDDED, tmp_path / "results", data_ready=False, env=env).status == "ok"
    fewer = copy.deepcopy(PRESET)
    # Beyond the download the run writes 3 seeds' checkpoints (26.9 M float32 parameters), artifacts
    # and logs: 0.39 GB. 13 shards (2.7 GB) and that do not fit in 3 GB; 12 shards (2.5 GB) do.
    fewer["data"]["hub"]["train_shards"] = 13
    assert doctor.disk_check(fewer, tmp_path / "results", data_ready=False, env=env).status == "fail"
    fewer["data"]["hub"]["train_shards"] = 12
    assert doctor.disk_check(fewer, tmp_path / "results", data_ready=False, env=env).status == "ok"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the socket is: connections are refused


class _NotFound(BaseHTTPRequestHandler):
    def do_HEAD(self):
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_hub_offline_unreachable_and_reachable():
    offline = doctor.hub_check(PRESET, data_ready=False, env={"HF_HUB_OFFLINE": "1"}, probe=NO_HUB)
    assert offline.status == "fail" and "HF_HUB_OFFLINE is set" in offline.message
    endpoint = f"http://127.0.0.1:{closed_port()}"
    down = doctor.hub_check(PRESET, data_ready=False, env={"HF_ENDPOINT": endpoint})
    assert down.status == "fail"
    assert down.message.startswith(f"data.source is hub but {endpoint} cannot be reached (")
    assert "data.source: local" in down.message
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        up = doctor.hub_check(PRESET, data_ready=False, env={"HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}"})
    finally:
        server.shutdown()
    assert up.status == "ok"  # any answer counts; the data stage reports a missing repo precisely
    assert doctor.hub_check(PRESET, data_ready=True, env={}, probe=NO_HUB).status == "ok"
    assert doctor.hub_check(EMBEDDED, data_ready=False, env={}, probe=NO_HUB) is None


def test_hub_checked_after_a_failed_check_so_every_failure_shows_at_once():
    asked = []
    checks = doctor.preflight(PRESET, machine_gpus=1, data_ready=False, env={"HF_HUB_CACHE": "/tmp"},
                              probe=lambda *a: asked.append(a) or "URLError: offline")
    assert len(asked) == 1
    assert [c.name for c in doctor.failures(checks)][-1] == "hub"


def test_cluster_results_on_a_local_filesystem_is_a_warning(tmp_path):
    check = doctor.shared_fs_check(tmp_path, cluster=True)
    fstype, _ = doctor.filesystem_type(tmp_path)
    assert fstype in check.detail
    assert check.status == ("ok" if fstype in doctor.SHARED_FILESYSTEMS else "warn")
    assert doctor.shared_fs_check(tmp_path, cluster=False) is None


def test_pgolf_doctor_prints_the_table_and_exits_1(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PGOLF_GPUS", "1")
    assert cli.main(["doctor", "config/fineweb-8xh100.yaml"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("pgolf doctor (config.yaml, config/fineweb-8xh100.yaml):\n")
    assert "\n  train      fail  8 processes on cuda need 8 GPUs, 1 GPU here\n" in out
    stops = [line for line in out.splitlines() if line.startswith("preflight: ")]
    assert stops[0].startswith("preflight: train.nproc_per_node is 8 but this machine has 1 GPU: ")
    assert stops[1].startswith("preflight: eval.nproc_per_node is 8 but this machine has 1 GPU: ")
    monkeypatch.setenv("PGOLF_GPUS", "0")
    assert cli.main(["doctor", ".test/config.yaml"]) == 0
    assert "preflight:" not in capsys.readouterr().out


def test_workflow_stops_before_any_job_on_too_few_gpus(tmp_path):
    """Plain `snakemake --cores all` with the real preset on a (fake) one-GPU machine: one line, no job run."""
    workdir = copy_workflow(tmp_path / "wf")
    # The corpus instead of the hub, so that a missing check would start the data stage here.
    (workdir / "docs.yaml").write_text(yaml.safe_dump({"data": {"source": "docs"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNAKEMAKE")}
    env.update(PGOLF_GPUS="1", HF_HUB_OFFLINE="1")
    result = subprocess.run(
        ["snakemake", "--cores", "all", "--configfile", "config/fineweb-8xh100.yaml", "docs.yaml"],
        cwd=workdir, capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    # Every failed check, one line each (here train and eval), then the run stops.
    stops = [line for line in result.stderr.strip().splitlines() if line.startswith("preflight: ")]
    assert [line.split(" is ")[0] for line in stops] == ["preflight: train.nproc_per_node", "preflight: eval.nproc_per_node"], result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == stops[-1]
    assert "config/gpu-smoke.yaml" in stops[0]
    assert "  train      fail" in result.stderr
    assert not (workdir / "results").exists(), "no job may run, not even the data stage"


@pytest.mark.parametrize(
    "files, want",
    [
        ([], ("warn", "FlashAttention not installed")),
        (["flash_attn/cute/__init__.py"], ("warn", "flash-attn-4 (flash_attn.cute) importable but off: PGOLF_FA4=1")),
        (["flash_attn/__init__.py", "flash_attn/flash_attn_interface.py"], ("ok", "FlashAttention 2 (flash_attn.flash_attn_interface) importable")),
        (["flash_attn_interface.py", "flash_attn/cute/__init__.py"], ("ok", "FlashAttention 3 (flash_attn_interface) importable")),
    ],
)
def test_attention_check_names_the_flash_attention_that_model_py_will_use(tmp_path, monkeypatch, files, want):
    """flash-attn-4 installs a `flash_attn` package of its CuTe kernels alone: that is not FA2."""
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m.startswith("flash_attn")]:
        monkeypatch.delitem(sys.modules, name)
    check = doctor.attention_check(PRESET, machine_gpus=8, cluster=False)
    assert (check.status, check.detail[: len(want[1])]) == want


def test_byo_without_a_gpu_names_the_byo_key_the_schema_accepts():
    byo = load_configs([REPO / "config.yaml", REPO / "config" / "byo-549.yaml", REPO / "config" / "byo-gpu-smoke-549.yaml"])
    failed = doctor.failures(doctor.preflight(byo, machine_gpus=0, data_ready=True, probe=NO_HUB))[0]
    assert failed.name == "byo"
    assert failed.message.startswith("byo.gpus is 1 but this machine has 0 GPUs: ")
    assert "set byo.gpus: 0" in failed.message and "byo.device" not in failed.message
    # and that fix is a config the schema takes, which then runs on the CPU
    on_cpu = copy.deepcopy(byo)
    on_cpu["byo"]["gpus"] = 0
    checks = doctor.preflight(on_cpu, machine_gpus=0, data_ready=True, probe=NO_HUB)
    assert doctor.first_failure(checks) is None
    check_config(on_cpu)
