"""Disk space: where a path's filesystem is, what a run writes, bytes for people. Shared by the
preflight (pgolf.doctor) and the job supervisor (pgolf.jobs), which import it, not each other."""

from __future__ import annotations

from pathlib import Path

# What the other stages write, per seed, estimated from the config (see run_writes). Measured on the
# tiny overlay (.test/config.yaml, 279,178 parameters; 2026-12-07, CPU): model.pt 1,125,202 bytes
# (float32), the int6+lzma artifact 0.92 bytes per parameter, all logs and JSON of a seed ~60 kB.
CHECKPOINT_BYTES_PER_PARAM = 4
LOG_BYTES_PER_SEED = 5_000_000


def model_params(model: dict, vocab: int) -> int:
    """Parameters of the record model (workflow/record/model.py) for a train.model block, to ~1%."""
    d, layers = model["model_dim"], model["num_layers"]
    kv_dim = d * model["num_kv_heads"] // model["num_heads"]
    per_layer = 2 * d * d + 2 * d * kv_dim + 2 * d * int(model["mlp_mult"] * d) + 8 * d
    total = vocab * d + layers * per_layer
    if model.get("bigram_vocab_size"):
        total += model["bigram_vocab_size"] * model["bigram_dim"] + model["bigram_dim"] * d
    if any(layer < layers for layer in model.get("ve_layers", [])):
        total += vocab * model["ve_dim"] + model["ve_dim"] * kv_dim
    return total


def existing_parent(path: Path) -> Path:
    path = path.resolve()
    while not path.exists():
        path = path.parent
    return path


def filesystem_type(path: Path) -> tuple[str, str]:
    """(filesystem type, mount point) of path, from /proc/mounts ('unknown' elsewhere)."""
    path = existing_parent(path)
    best = ("unknown", "/")
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    longest = -1
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        if (str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")) and len(mount) > longest:
            best, longest = (fields[2], mount), len(mount)
    return best


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"
