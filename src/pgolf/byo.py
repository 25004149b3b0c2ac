"""Bring-your-own-script mode: run an existing record's train_gpt.py once per seed.

The script does everything itself (train, export, eval) and prints upstream-style log lines; the
pipeline only gives it data, a seed and an empty folder, keeps its log, and checks and assembles
the result afterwards (pgolf.byo_record). This module is the runner: it is an input of the run
rule alone, so editing the checks or the record assembly never reruns a script.

What the script sees:

- its working directory is `results/byo/<byo_id>/seed<S>/`, emptied first, holding a copy of the
  script as `train_gpt.py` (as in a record folder, so `__file__`-based code size counts are the
  shipped bytes) and, under `data/`, symbolic links to exactly the shards and tokenizer the data
  stage's manifest lists, in upstream's layout (`data/datasets/fineweb10B_sp<V>/`,
  `data/tokenizers/fineweb_<V>_bpe.model`);
- the environment: ours, then `byo.env`, then `DATA_PATH`, `TOKENIZER_PATH` (those links,
  absolute) and `SEED`, which byo.env may not set.

The script's stdout and stderr go to `train.log` (written under a temporary name, renamed when
the script exits 0); `run.json` records the command, the environment we added, the wall-clock
time, the script's sha256 and the torch version.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from pgolf.byo_code import code_files
from pgolf.data import DataError, dataset_root, load_manifest, safe_relative, shard_paths, split_files
from pgolf.errors import UserError

RESERVED_ENV = ("SEED", "DATA_PATH", "TOKENIZER_PATH")
EXTRA_SPLITS = ("val_bytes",)  # per-split files a script reads next to the shards (CaseOps byte sidecars)
SDPA_DIR = Path(__file__).resolve().parent / "byo_sdpa"  # holds the stand-in flash_attn_interface.py
FALLBACK_LINE = (
    "byo: attention_fallback sdpa: flash_attn_interface is pgolf's stand-in on PyTorch SDPA"
    " (src/pgolf/byo_sdpa), not FlashAttention 3: the numbers are not the record's kernels"
)
LOG_NAME = "train.log"
RUN_NAME = "run.json"
SCRIPT_NAME = "train_gpt.py"


class ByoError(UserError):
    """The script or its settings are wrong, or the script failed; one line."""


class CheckError(UserError):
    """A seed's result breaks a rule (pgolf.byo_record): one line with the file and the numbers."""


def env_value(value) -> str:
    """Environment values as a shell would write them: true -> 1, false -> 0, numbers as printed."""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def extra_paths(manifest_path) -> list[Path]:
    """Absolute paths of the manifest's extra per-split files (e.g. CaseOps `val_bytes` sidecars)."""
    return split_files(manifest_path, EXTRA_SPLITS)


def link_data(manifest_path, data_dir: Path) -> dict[str, str]:
    """Links to the manifest's shards, extra files and tokenizer in upstream's layout; returns DATA_PATH, TOKENIZER_PATH.

    The dataset folder is `fineweb10B_<variant>` (the manifest's `variant`, else sp<V>), the
    tokenizer `fineweb_<V>_bpe[_<rest of the variant>].model`, as upstream names them."""
    manifest_file = Path(manifest_path).resolve()
    manifest = load_manifest(manifest_file)
    tok = manifest.get("tokenizer") or {}
    vocab, model_rel = tok.get("vocab_size"), tok.get("model")
    if not isinstance(vocab, int) or not isinstance(model_rel, str):
        raise DataError(f"{manifest_file}: no tokenizer model and vocab_size in the manifest")
    model = dataset_root(manifest_file, manifest) / safe_relative(model_rel, str(manifest_file))
    variant = manifest.get("variant") or f"sp{vocab}"
    rest = variant.removeprefix(f"sp{vocab}").lstrip("_")
    shards_dir = data_dir / "datasets" / f"fineweb10B_{variant}"
    tokenizer = data_dir / "tokenizers" / f"fineweb_{vocab}_bpe{'_' + rest if rest else ''}.model"
    shards_dir.mkdir(parents=True)
    tokenizer.parent.mkdir(parents=True)
    for split in ("val", "train"):
        for shard in shard_paths(manifest_file, split):
            (shards_dir / shard.name).symlink_to(shard.resolve())
    for extra in extra_paths(manifest_file):
        (shards_dir / extra.name).symlink_to(extra.resolve())
    tokenizer.symlink_to(model.resolve())
    return {"DATA_PATH": str(shards_dir.absolute()), "TOKENIZER_PATH": str(tokenizer.absolute())}


def command(launcher: str, nproc_per_node: int) -> tuple[list[str], str]:
    """How the script is started (torchrun: one process group on this node; or plain python),
    and the same command as a user would type it (for run.json and the record README)."""
    if launcher == "python":
        if nproc_per_node != 1:
            raise ByoError(f"byo.launcher python runs one process, but byo.nproc_per_node is {nproc_per_node}")
        return [sys.executable, SCRIPT_NAME], f"python {SCRIPT_NAME}"
    args = ["--standalone", f"--nproc_per_node={nproc_per_node}", SCRIPT_NAME]
    # torchrun's module under this interpreter: the same launcher, without relying on PATH.
    return [sys.executable, "-m", "torch.distributed.run", *args], " ".join(["torchrun", *args])


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def run_script(script, manifest, settings: dict, seed: int, out_dir) -> dict:
    """Runs the script once for `seed` in `out_dir` (emptied first); returns what run.json holds.

    `settings` is the byo block (env, nproc_per_node, launcher, artifact, and optionally
    attention_fallback: "sdpa" puts the SDPA stand-in for `flash_attn_interface` first on
    PYTHONPATH and says so in the log's first line and run.json). Raises ByoError when
    the script exits non-zero or leaves no artifact; the log stays under its temporary name then.
    """
    script, out = Path(script), Path(out_dir)
    if not script.is_file():
        raise ByoError(f"byo.script: {script} does not exist")
    for key in settings["env"]:
        if key in RESERVED_ENV:
            raise ByoError(f"byo.env.{key}: set by the pipeline, not in the config")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    files = code_files(script)
    shutil.copyfile(script, out / SCRIPT_NAME)
    for sibling in files[1:]:  # files the script execs or imports, under their own names
        shutil.copyfile(sibling, out / sibling.name)
    fallback = settings.get("attention_fallback", "none")
    added = {k: env_value(v) for k, v in sorted(settings["env"].items())}
    added.update(link_data(manifest, out / "data"))
    added["SEED"] = str(seed)
    if fallback == "sdpa":
        added["PYTHONPATH"] = os.pathsep.join(p for p in (str(SDPA_DIR), os.environ.get("PYTHONPATH", "")) if p)
    cmd, shown = command(settings["launcher"], settings["nproc_per_node"])
    log_tmp, log_final = out / f"{LOG_NAME}.partial", out / LOG_NAME
    print(f"byo: seed {seed}: {' '.join(f'{k}={v}' for k, v in added.items())} {shown}", flush=True)
    started = time.perf_counter()
    started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # dates the byo record (pgolf.record.run_date)
    with open(log_tmp, "w", encoding="utf-8") as log:
        if fallback == "sdpa":
            log.write(FALLBACK_LINE + "\n")
            print(FALLBACK_LINE, flush=True)
        proc = subprocess.Popen(cmd, cwd=out, env={**os.environ, **added}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        for line in proc.stdout:  # tee: the rule's log shows progress, train.log keeps the script's own output
            log.write(line)
            log.flush()
            sys.stdout.write(line)
        rc = proc.wait()
    wall = time.perf_counter() - started
    if rc != 0:
        raise ByoError(f"{script}: exited with status {rc} after {wall:.1f} s for seed {seed} (its output: {log_tmp})")
    artifact = out / settings["artifact"]
    if not artifact.is_file():
        written = sorted(p.name for p in out.iterdir() if p.is_file() and p.name not in (SCRIPT_NAME, log_tmp.name))
        raise ByoError(f"{script}: seed {seed} wrote no {settings['artifact']} (byo.artifact) in {out}; files it wrote: {', '.join(written) or 'none'}")
    os.replace(log_tmp, log_final)
    info = {
        "seed": seed,
        "started_utc": started_utc,
        "script": str(script),
        "script_sha256": hashlib.sha256(script.read_bytes()).hexdigest(),
        "code_files": [SCRIPT_NAME, *(p.name for p in files[1:])],
        "attention_fallback": fallback,
        "command": shown,
        "env": added,
        "wallclock_s": round(wall, 3),
        "torch_version": _version("torch"),
        "python_version": sys.version.split()[0],
    }
    tmp = out / f"{RUN_NAME}.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, out / RUN_NAME)
    print(f"byo: seed {seed}: done in {wall:.1f} s; log {log_final}, artifact {artifact} ({artifact.stat().st_size} bytes)", flush=True)
    return info
