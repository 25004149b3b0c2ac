"""Preflight: can this machine run the configured workflow? Checked before the first job, and by `pgolf doctor`.

Each check is one row of a table (what will run where, and whether it can); every failed row
becomes one line of what the run stops with (all of them at once, each with its fix). The checks are cheap on purpose (no torch import,
one short HTTP request at most), because the workflow runs them every time it starts:

  gpus      every stage's processes against the GPUs visible here (CUDA_VISIBLE_DEVICES respected)
  disk      free space under results/ (and the hub cache) against what the planned jobs write: the
            data, every seed's checkpoint, artifact and logs (an estimate from the config)
  hub       the Hugging Face hub answers, when data.source is hub and the data is not there yet
  attention FlashAttention importable when training runs on GPUs (SDPA is the fallback: a warning)
  results   results/ on a filesystem the compute nodes share, when a cluster executor runs the jobs
  lock      (pgolf doctor only) a lock or running jobs left by a killed snakemake, and what to run
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pgolf.diskspace import CHECKPOINT_BYTES_PER_PARAM, LOG_BYTES_PER_SEED, existing_parent, filesystem_type, model_params

# Sizes of the challenge's FineWeb sp1024 export on the hub: a train shard is 100 M uint16 tokens
# plus its 1,024-byte header; the one val shard (50,000 documents) about 124 MB.
HUB_TRAIN_SHARD_BYTES = 200_001_024
HUB_VAL_BYTES = 124_100_000
# The int6+lzma artifact: 0.92 bytes per parameter on the tiny overlay (see pgolf.diskspace).
ARTIFACT_BYTES_PER_PARAM = 1
# A compressed docs corpus (.xz, .gz) becomes about 2.7x its size in shards (the embedded corpus:
# 2,615,792 bytes of .jsonl.xz, 7.1 MB of shards and tokenizer); plain JSONL about its own size.
COMPRESSED_DOCS_TO_SHARDS = 3
HUB_TIMEOUT_S = 5.0
SHARED_FILESYSTEMS = {
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "ceph", "cephfs", "glusterfs",
    "9p", "panfs", "wekafs", "fuse.glusterfs", "fuse.sshfs", "fuse.ceph", "fuse.beegfs", "fuse.juicefs", "afs",
}
SMOKE_HINT = (
    "for a one-GPU smoke record add config/gpu-smoke.yaml after your config files"
    " (--configfile config/fineweb-8xh100.yaml config/gpu-smoke.yaml)"
)


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail | info
    detail: str
    message: str = ""  # the one line a failed check stops the run with


def visible_gpus(env=None) -> tuple[int, str]:
    """(number of GPUs a job here can use, how it was found), without importing torch.

    PGOLF_GPUS overrides (tests, or a machine whose GPUs nvidia-smi cannot list); otherwise the
    GPUs `nvidia-smi -L` lists, limited to CUDA_VISIBLE_DEVICES when that is set.
    """
    env = os.environ if env is None else env
    if env.get("PGOLF_GPUS", "").strip():
        value = env["PGOLF_GPUS"].strip()
        if not value.isdigit():
            raise ValueError(f"PGOLF_GPUS: expected a GPU count (0, 1, 2, ...), got {value!r}")
        return int(value), "PGOLF_GPUS"
    listed = 0
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
            listed = sum(1 for line in out.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            listed = 0
    source = "nvidia-smi -L" if listed else "no nvidia-smi GPU"
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        entries = [e for e in visible.split(",") if e.strip()]
        # CUDA stops at the first invalid entry: "-1" (a common way to hide every GPU) hides all.
        usable = 0
        for entry in entries:
            if entry.strip().startswith("-"):
                break
            usable += 1
        return min(usable, listed), f"{source}, CUDA_VISIBLE_DEVICES={visible}"
    return listed, source


def stage_gpus(block: dict, machine_gpus: int) -> int:
    """GPUs a stage's job takes here: its processes on CUDA (device auto uses CUDA when a GPU is visible)."""
    if block["device"] == "cpu" or (block["device"] == "auto" and machine_gpus == 0):
        return 0
    return block["nproc_per_node"]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("s") else "s")


def gpu_stages(config: dict) -> list[tuple[str, str, dict]]:
    """(row name, config key of its process count, block with device and nproc_per_node)."""
    stages = [("train", "train.nproc_per_node", config["train"]), ("eval", "eval.nproc_per_node", config["eval"])]
    byo = config.get("byo") or {}
    if byo.get("script"):
        device = "cuda" if byo.get("gpus", 0) else "cpu"
        stages.append(("byo", "byo.gpus", {"device": device, "nproc_per_node": byo.get("gpus", 0)}))
    return stages


def gpu_checks(config: dict, machine_gpus: int, source: str, cluster: bool) -> list[Check]:
    checks = []
    also = lambda key, n: f"{key}: {n}" + (" and eval.nproc_per_node: " + str(n) if key == "train.nproc_per_node" else "")  # noqa: E731
    for name, key, block in gpu_stages(config):
        n, device = block["nproc_per_node"], block["device"]
        if cluster:
            need = 0 if device == "cpu" else n
            where = f"{_plural(n, 'process')} on {'the CPU' if need == 0 else f'{need} GPU(s) of a cluster node'}"
            checks.append(Check(name, "ok", where))
            continue
        need = stage_gpus(block, machine_gpus)
        if need == 0:
            reason = "device: cpu" if device == "cpu" else "device: auto, no GPU here"
            checks.append(Check(name, "ok", f"{_plural(n, 'process')} on the CPU ({reason})"))
            continue
        have = _plural(machine_gpus, "GPU")
        if need <= machine_gpus:
            checks.append(Check(name, "ok", f"{_plural(n, 'process')} on {need} of {have} ({source})"))
            continue
        if machine_gpus == 0:
            to_cpu = f"{key}: 0" if key == "byo.gpus" else f"{name}.device: cpu"  # byo has no device key
            fix = f"no GPU is visible ({source}); set {to_cpu}, or run on a machine with {need} GPUs"
        elif machine_gpus == 1:
            fix = f"{SMOKE_HINT}, or set {also(key, 1)} in an overlay"
        else:
            fix = f"set {also(key, machine_gpus)} in an overlay (grad_accum_steps auto keeps the 8-GPU step)"
        message = f"{key} is {n} but this machine has {have}: {fix}"
        checks.append(Check(name, "fail", f"{_plural(n, 'process')} on {device} need {need} GPUs, {have} here", message))
    return checks


def hub_download_bytes(train_shards: int) -> int:
    return train_shards * HUB_TRAIN_SHARD_BYTES + HUB_VAL_BYTES


def download_bytes(config: dict) -> int:
    """Bytes the data stage downloads (hub only; docs writes shards about the corpus's size, local copies nothing)."""
    if config["data"]["source"] != "hub":
        return 0
    return hub_download_bytes(config["data"]["hub"]["train_shards"])


def docs_data_bytes(docs_path) -> int:
    """Shards and tokenizer the docs source writes for this corpus (0 when the corpus is not there)."""
    try:
        size = Path(docs_path).stat().st_size
    except OSError:
        return 0
    return size * COMPRESSED_DOCS_TO_SHARDS if str(docs_path).endswith((".xz", ".gz")) else size


def vocab_size(config: dict) -> int:
    data = config["data"]
    if data["source"] == "docs":
        return data["docs"]["tokenizer"]["vocab_size"]
    m = re.search(r"(\d+)$", str(data["hub"].get("variant", "")))
    return int(m.group(1)) if m else 1024


def run_writes(config: dict, data_ready: bool) -> list[tuple[str, int]]:
    """(what, bytes) the planned jobs write under results/: data, checkpoints, artifacts, logs. An estimate."""
    seeds = len(config["seeds"])
    data = config["data"]
    plan = []
    if not data_ready:
        if data["source"] == "hub":
            plan.append((f"data ({data['hub']['train_shards']} train shards)", download_bytes(config)))
        elif data["source"] == "docs":
            plan.append(("data (shards of the corpus)", docs_data_bytes(data["docs"]["path"])))
    params = model_params(config["train"]["model"], vocab_size(config))
    plan.append((f"checkpoints ({seeds} x {params:,} parameters)", seeds * params * CHECKPOINT_BYTES_PER_PARAM))
    artifact = min(params * ARTIFACT_BYTES_PER_PARAM, config["export"]["size_limit_bytes"])
    plan.append((f"artifacts ({seeds} seeds)", seeds * artifact))
    if (config.get("byo") or {}).get("script"):
        plan.append((f"byo artifacts ({seeds} seeds)", seeds * config["export"]["size_limit_bytes"]))
    plan.append((f"logs ({seeds} seeds)", seeds * LOG_BYTES_PER_SEED))
    return plan


def hub_cache_dir(env=None) -> Path:
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"])
    home = Path(env["HF_HOME"]) if env.get("HF_HOME") else Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface"
    return home / "hub"


def disk_check(config: dict, results: Path, data_ready: bool, env=None) -> Check:
    """Free space under results/ (and a separate hub cache) against what the planned jobs write."""
    from pgolf.diskspace import human_bytes

    where = existing_parent(results)
    plan = run_writes(config, data_ready)
    need = sum(n for _, n in plan)
    places = [(where, need)]
    download = 0 if data_ready else download_bytes(config)
    # The hub's files land in its cache first and are hard-linked into results/ when both share a
    # filesystem; otherwise each holds a copy.
    if download:
        cache = existing_parent(hub_cache_dir(env))
        if os.stat(cache).st_dev != os.stat(where).st_dev:
            places.append((cache, download))
    parts = ", ".join(f"{what} {human_bytes(n)}" for what, n in plan)
    for place, wanted in places:
        free = shutil.disk_usage(place).free
        if free < wanted:
            if download:
                fix = "free space, put results/ or HF_HUB_CACHE elsewhere, or lower data.hub.train_shards"
                lead = f"data.hub.train_shards is {config['data']['hub']['train_shards']}: the data stage downloads about {download / 1e9:.1f} GB, and "
            else:
                fix = "free space, put results/ on a larger filesystem, or train fewer seeds"
                lead = ""
            message = (
                f"{lead}the planned jobs write about {human_bytes(wanted)} ({parts}), but {place} has"
                f" {human_bytes(free)} free; {fix}"
            )
            return Check("disk", "fail", f"{human_bytes(free)} free under {place}, the run writes about {human_bytes(wanted)}", message)
    why = " (data already there)" if data_ready else ""
    return Check("disk", "ok", f"{human_bytes(shutil.disk_usage(where).free)} free under {where}, the run writes about {human_bytes(need)}{why}")


def probe_hub(endpoint: str, repo_id: str, revision: str, remote_root: str, timeout: float = HUB_TIMEOUT_S) -> str | None:
    """None when the hub answers (any HTTP status), else why not, in a few words."""
    path = f"{remote_root.strip('/')}/manifest.json" if remote_root.strip("/") else "manifest.json"
    url = f"{endpoint.rstrip('/')}/datasets/{repo_id}/resolve/{revision}/{path}"
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # it answered; the data stage reports a missing repo or token precisely
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return f"{type(reason).__name__}: {reason}" if not isinstance(reason, str) else reason
    return None


def hub_check(config: dict, data_ready: bool, env=None, probe=probe_hub) -> Check | None:
    if config["data"]["source"] != "hub":
        return None
    if data_ready:
        return Check("hub", "ok", "data already downloaded: not contacted")
    env = os.environ if env is None else env
    hub = config["data"]["hub"]
    endpoint = env.get("HF_ENDPOINT") or "https://huggingface.co"
    fix = "connect this machine, set HF_ENDPOINT to a mirror, or download the data elsewhere and use data.source: local"
    if env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        message = f"data.source is hub but HF_HUB_OFFLINE is set: unset it, or use data.source: local ({fix})"
        return Check("hub", "fail", "HF_HUB_OFFLINE is set", message)
    problem = probe(endpoint, hub["repo_id"], hub["revision"], hub["remote_root"])
    if problem:
        message = f"data.source is hub but {endpoint} cannot be reached ({problem}): offline? {fix}"
        return Check("hub", "fail", f"{endpoint} unreachable ({problem})", message)
    return Check("hub", "ok", f"{endpoint} answers ({hub['repo_id']}@{hub['revision']})")


def module_importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a dotted name whose parent package is missing
        return False


def attention_check(config: dict, machine_gpus: int, cluster: bool) -> Check | None:
    train = config["train"]
    if train["device"] == "cpu" or (not cluster and stage_gpus(train, machine_gpus) == 0):
        return None
    # The order model.py tries them in; flash-attn-4 also installs a `flash_attn` package (its
    # CuTe kernels only), so FlashAttention 2 is its flash_attn_interface module.
    kinds = (("flash_attn_interface", "FlashAttention 3"), ("flash_attn.flash_attn_interface", "FlashAttention 2"),
             ("flash_attn.cute", "flash-attn-4"))
    for module, name in kinds:
        if not module_importable(module):
            continue
        if name == "flash-attn-4" and os.environ.get("PGOLF_FA4") != "1":
            return Check("attention", "warn", f"{name} ({module}) importable but off: PGOLF_FA4=1 turns it on; SDPA runs")
        return Check("attention", "ok", f"{name} ({module}) importable")
    detail = "FlashAttention not installed: attention runs on PyTorch SDPA (#1313 used FlashAttention 3)"
    return Check("attention", "warn", detail)


def lrzip_check(config: dict, which=shutil.which) -> Check | None:
    """export.compressor pergroup runs the lrzip program at export and at every artifact load."""
    if config["export"]["compressor"] != "pergroup":
        return None
    found = which("lrzip")
    if found:
        return Check("lrzip", "ok", f"{found} (export.compressor: pergroup)")
    detail = "export.compressor: pergroup needs the lrzip program, which is not on PATH: install it (apt-get install lrzip) or set export.compressor: brotli"
    return Check("lrzip", "fail", "lrzip not on PATH (export.compressor: pergroup)", detail)


def shared_fs_check(results: Path, cluster: bool) -> Check | None:
    if not cluster:
        return None
    fstype, mount = filesystem_type(results)
    if fstype in SHARED_FILESYSTEMS:
        return Check("results", "ok", f"{results} on {fstype} ({mount}): shared with the compute nodes")
    detail = f"{results} on {fstype} ({mount}): the compute nodes must see it (fine on a one-node cluster)"
    return Check("results", "warn", detail)


def preflight(
    config: dict,
    *,
    machine_gpus: int,
    gpu_source: str = "",
    results: Path | str = "results",
    data_ready: bool = False,
    cluster: bool = False,
    env=None,
    probe=probe_hub,
) -> list[Check]:
    """Every check, in order, all of them run: a user sees every failure with its fix at once."""
    results = Path(results)
    checks = gpu_checks(config, machine_gpus, gpu_source, cluster)
    checks.append(disk_check(config, results, data_ready, env))
    checks.append(hub_check(config, data_ready, env, probe))
    checks.append(attention_check(config, machine_gpus, cluster))
    checks.append(shared_fs_check(results, cluster))
    checks.append(lrzip_check(config))
    return [c for c in checks if c is not None]


def failures(checks: list[Check]) -> list[Check]:
    """Every failed check, in table order: the run stops with all of their lines at once."""
    return [c for c in checks if c.status == "fail"]


def first_failure(checks: list[Check]) -> Check | None:
    """The failed checks as one: the first's name, every message on its own line (the workflow's
    preflight prints `preflight: <message>`, so each further line repeats that prefix)."""
    failed = failures(checks)
    if not failed:
        return None
    if len(failed) == 1:
        return failed[0]
    message = "\npreflight: ".join(c.message for c in failed)
    return Check(failed[0].name, "fail", failed[0].detail, message)


def format_table(checks: list[Check], title: str = "preflight") -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{title}:"] + [f"  {c.name:{width}}  {c.status:4}  {c.detail}" for c in checks]
    return "\n".join(lines)


def snakemake_processes(workdir: Path) -> list[int]:
    """PIDs of snakemake processes whose working directory is workdir (read from /proc)."""
    here, found = workdir.resolve(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == here and any(Path(a.decode(errors="replace")).name.startswith("snakemake") for a in argv[:2]):
            found.append(int(entry.name))
    return sorted(found)


def lock_check(workdir: Path, results: Path) -> Check:
    """A killed snakemake leaves a lock, and (before pgolf job) its training: say what to run next."""
    from pgolf.jobs import previous_run_alive

    running = snakemake_processes(workdir)
    jobs = {}
    for pidfile in sorted((workdir / results / "logs").glob("**/*.pid")):
        if live := previous_run_alive(pidfile):
            jobs[pidfile] = live
    if running:
        return Check("lock", "info", f"snakemake runs here (PID {' '.join(map(str, running))}): wait for it, or stop it")
    if jobs:
        pids = " ".join(str(p) for live in jobs.values() for p in live)
        where = ", ".join(str(p) for p in jobs)
        message = f"jobs of a killed run still run with no snakemake here (PID {pids}; {where}): stop them with `kill {pids}`, then rerun"
        return Check("lock", "fail", f"orphaned jobs: PID {pids}", message)
    locks = sorted((workdir / ".snakemake" / "locks").glob("*"))
    if locks:
        message = ("a killed snakemake left its lock in .snakemake/locks and no snakemake runs here:"
                   " run `snakemake --unlock`, then rerun (the killed jobs rerun from the start)")
        return Check("lock", "fail", f"stale lock ({len(locks)} file(s) in .snakemake/locks), no snakemake running", message)
    return Check("lock", "ok", "no lock, no job left running")
