"""Shared runtime of the record code: logging, process group, data shards, byte accounting.

Everything under workflow/record/ ships in a record: `pgolf bundle` concatenates these modules
into one self-contained train_gpt.py. Rules of the house for these files:
  * import sibling modules only as `from <module> import a, b` on a single line (the bundler
    drops those lines, since all names then live in one namespace), and keep names unique;
  * put stage entry points under `if __name__ == "__main__":` (the bundler cuts from there on).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
SHARD_HEADER_INTS = 256


class UserError(Exception):
    """A problem with the inputs (data, config, files): reported as one line, never a traceback."""


# ----------------------------------------------------------------------------- logging


class RunLog:
    """Prints on rank 0 and, when given a path, appends the same lines to a file."""

    def __init__(self, rank: int = 0, path: str | None = None):
        self.rank = rank
        self.path = path

    def __call__(self, msg: str) -> None:
        if self.rank != 0:
            return
        print(msg, flush=True)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(msg + "\n")


def record_code_files() -> list[Path]:
    """The record code this process runs: the main script and the modules loaded from this folder
    (in a record, train_gpt.py alone)."""
    here = Path(__file__).resolve().parent
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    files = {Path(main).resolve()} if main else set()
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if isinstance(f, str) and os.path.isabs(f) and Path(f).parent == here and f.endswith(".py"):
            files.add(Path(f))
    return sorted(p for p in files if p.is_file())


def record_code_set() -> list[Path]:
    """All of the record code, whichever stage imported which part of it: the modules of this folder
    (workflow/record/, when entry.py is beside this file), or this one file in a bundled train_gpt.py."""
    here = Path(__file__).resolve()
    return sorted(here.parent.glob("*.py")) if (here.parent / "entry.py").is_file() else [here]


def log_environment(log: RunLog) -> None:
    """Header lines that let a reader tie a log to the exact code and machine that wrote it."""
    digest = hashlib.sha256()
    for p in record_code_files():
        digest.update(p.read_bytes())
    log(f"code_sha256:{digest.hexdigest()}")
    log(f"python:{platform.python_version()} torch:{torch.__version__} cuda:{torch.version.cuda or 'none'}")
    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        log(f"gpus:{torch.cuda.device_count()} names:{','.join(names)}")
    else:
        log(f"gpus:0 cpu_threads:{torch.get_num_threads()}")


def peak_memory_line(device: torch.device) -> str:
    if device.type == "cuda":
        alloc = torch.cuda.max_memory_allocated() // 2**20
        reserved = torch.cuda.max_memory_reserved() // 2**20
        return f"peak memory allocated: {alloc} MiB reserved: {reserved} MiB"
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    return f"peak memory rss: {rss_mib} MiB"


# ----------------------------------------------------------------------------- compile cache


def compile_cache_key(files: list[Path], torch_version: str, gpu_name: str) -> str:
    """Names a torch.compile cache folder: the record code's bytes, the torch version and the GPU.
    A change to any of them gives a new folder, so no stage can load a graph built for other code."""
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    digest.update(f"torch={torch_version}\0gpu={gpu_name}".encode())
    return digest.hexdigest()[:16]


def use_compile_cache(device: torch.device) -> str | None:
    """With PGOLF_COMPILE_CACHE=<root> set (the pipeline's rules set it), every stage and seed on
    this code, torch and GPU shares one inductor/FX/Triton cache under <root>/<key>, so only the
    first stage pays for compilation. Must run before anything is compiled. Returns the folder."""
    root = os.environ.get("PGOLF_COMPILE_CACHE")
    if not root or device.type != "cuda":
        return None
    # Keyed by all of the record code, not by what this stage imported: the train, eval, SLOT and
    # TTT stages then share one folder, and the graphs one stage compiled (the eval forward, the
    # same for every eval at one batch shape) load from disk in the next.
    key = compile_cache_key(record_code_set(), torch.__version__, torch.cuda.get_device_name(device))
    folder = Path(root).resolve() / key
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
    return str(folder)


# ----------------------------------------------------------------------------- processes


class Dist:
    """Rank, world size and device of this process; a process group exists only under torchrun."""

    def __init__(self, device_pref: str = "auto"):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device_pref == "cuda" or (device_pref == "auto" and torch.cuda.is_available())
        if use_cuda and not torch.cuda.is_available():
            raise UserError("device is 'cuda' but torch sees no GPU")
        if use_cuda:
            torch.cuda.set_device(self.local_rank)
            # fp32 matmuls (the SLOT fit, anything outside autocast) on TF32 tensor cores, as #1313.
            torch.set_float32_matmul_precision("high")
            self.device = torch.device("cuda", self.local_rank)
            self.compile_cache = use_compile_cache(self.device)
        else:
            self.device = torch.device("cpu")
            self.compile_cache = None
        self.enabled = self.world_size > 1
        if self.enabled:
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def any_true(self, flag: bool) -> bool:
        """True when any rank says so: keeps every rank's step count identical."""
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=self.device)
        return bool(self.all_reduce_sum(t).item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled:
            dist.destroy_process_group()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class StageProgress:
    """Progress of a long loop on rank 0: `done of total`, rate and ETA every `step` percent.

    Plain lines (a log file stays readable); on a terminal the same line is redrawn in place.
    On GPU a report waits for the queued work first (about 10 syncs per stage), so rates are real.
    """

    def __init__(self, total: int, desc: str, unit: str = "windows", rank: int = 0, device: torch.device | None = None, step: int = 10):
        self.total, self.desc, self.unit, self.device, self.step = total, desc, unit, device, step
        self.active = rank == 0 and total > 0
        self.tty = sys.stderr.isatty()
        self.next_percent = step
        self.t0 = time.perf_counter()

    def update(self, done: int) -> None:
        if not self.active or 100 * done < self.next_percent * self.total:
            return
        if self.device is not None:
            sync(self.device)
        percent = 100 * done // self.total
        self.next_percent = (percent // self.step + 1) * self.step
        elapsed = time.perf_counter() - self.t0
        rate = done / max(elapsed, 1e-9)
        line = (f"{self.desc}: {done} of {self.total} {self.unit} ({percent}%), {rate:.1f} {self.unit}/s,"
                f" {elapsed:.0f}s elapsed, ETA {(self.total - done) / max(rate, 1e-9):.0f}s")
        if self.tty:
            print("\r" + line, end="\n" if done >= self.total else "", file=sys.stderr, flush=True)
        else:
            print(line, flush=True)


def autocast_for(device: torch.device):
    """bf16 autocast on GPU; plain fp32 on CPU, where bf16 is slow and breaks bitwise repeatability."""
    if device.type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


# ----------------------------------------------------------------------------- data


def load_shard(path: Path) -> np.ndarray:
    """Reads one token shard of the challenge's format, refusing anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: missing")
    size = path.stat().st_size
    header_bytes = SHARD_HEADER_INTS * 4
    if size < header_bytes:
        raise UserError(f"{path}: file shorter than the {header_bytes}-byte header ({size} bytes)")
    header = np.fromfile(path, dtype="<i4", count=SHARD_HEADER_INTS)
    if header[0] != SHARD_MAGIC:
        raise UserError(f"{path}: bad magic {header[0]} (expected {SHARD_MAGIC})")
    if header[1] != SHARD_VERSION:
        raise UserError(f"{path}: unsupported version {header[1]} (expected {SHARD_VERSION})")
    n = int(header[2])
    if size != header_bytes + 2 * n:
        raise UserError(f"{path}: size {size} bytes but header says {n} tokens (expected {header_bytes + 2 * n} bytes)")
    return np.fromfile(path, dtype="<u2", count=n, offset=header_bytes)


def read_manifest(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise UserError(f"{path}: data manifest missing") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: data manifest is not valid JSON ({e.msg} at line {e.lineno})") from None
    manifest["_root"] = str(Path(path).parent)
    return manifest


def manifest_paths(manifest: dict, split: str) -> list[Path]:
    root = Path(manifest.get("root") or manifest["_root"])  # "root": the data lives elsewhere (data.source local)
    paths = [root / f["path"] for f in manifest["files"] if f["split"] == split]
    if not paths:
        raise UserError(f"{manifest['_root']}/manifest.json: lists no {split} shards")
    return paths


def tokenizer_path(manifest: dict) -> Path:
    return Path(manifest.get("root") or manifest["_root"]) / manifest["tokenizer"]["model"]


class TokenStream:
    """Walks the train shards in order, forever, handing out contiguous token runs.

    Sequential and shuffle-free like the challenge's loaders: the seed changes only the init.
    """

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self.file_idx = 0
        self.tokens = load_shard(paths[0])
        self.pos = 0

    def take(self, n: int) -> np.ndarray:
        chunks, remaining = [], n
        while remaining > 0:
            avail = len(self.tokens) - self.pos
            if avail <= 0:
                self.file_idx = (self.file_idx + 1) % len(self.paths)
                self.tokens = load_shard(self.paths[self.file_idx])
                self.pos = 0
                continue
            k = min(remaining, avail)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            remaining -= k
        return np.concatenate(chunks)


class TrainLoader:
    """Each call takes world_size * (local_tokens + 1) tokens; rank r keeps slice r as (x, y)."""

    def __init__(self, paths: list[Path], rank: int, world_size: int, device: torch.device):
        self.stream = TokenStream(paths)
        self.rank, self.world_size, self.device = rank, world_size, device

    def next_batch(self, local_tokens: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        span = local_tokens + 1
        chunk = self.stream.take(span * self.world_size)
        local = torch.from_numpy(chunk[self.rank * span : (self.rank + 1) * span].astype(np.int64))
        x = local[:-1].reshape(-1, seq_len)
        y = local[1:].reshape(-1, seq_len)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def load_val_tokens(paths: list[Path], seq_len: int, max_tokens: int = 0) -> torch.Tensor:
    """All val shards concatenated, trimmed to a whole number of seq_len targets (+1 for the shift)."""
    tokens = np.concatenate([load_shard(p) for p in paths])
    if max_tokens > 0:
        tokens = tokens[: max_tokens + 1]
    usable = ((len(tokens) - 1) // seq_len) * seq_len
    if usable <= 0:
        raise UserError(f"validation split has {len(tokens)} tokens, fewer than one sequence of {seq_len}")
    return torch.from_numpy(tokens[: usable + 1].astype(np.int64))


# ----------------------------------------------------------------------------- files


def write_json_atomic(path: str, obj: dict) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def write_bytes_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def settings_from(cls, block: dict):
    """A settings dataclass from a config block; keys meant for other code (device, model...) are skipped."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in block.items() if k in names})


def load_hparams(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read hyperparameters ({e})") from None


def run_main(main, argv=None) -> None:
    """Runs a stage's main(); a UserError becomes one line on stderr and exit status 2."""
    try:
        main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


def now() -> float:
    return time.perf_counter()
