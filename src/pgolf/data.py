"""The data stage's contract: manifest.json (format pgolf-data/1) and its verification.

Every data source (docs, hub, local; see docs.py, hub.py, local.py) ends by
writing the same manifest: the tokenizer, token statistics and, for every
file, its path, size and SHA-256. The manifest is written last, so its
presence means the stage finished, and `verify_dataset` can later prove that
the files on disk are still the ones that were recorded: cheaply (size and
shard header) before each training job, fully (SHA-256) when asked.

File paths are relative to the dataset root: the manifest's directory, or
the absolute `root` the manifest names (the local source points there at the
user's own files instead of copying them). A path may never leave its root.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from pgolf.errors import UserError
from pgolf.shards import HEADER_BYTES, ShardError, StrPath, read_header, sha256_file, write_atomic

MANIFEST_FORMAT = "pgolf-data/1"
MANIFEST_NAME = "manifest.json"
SPLITS = ("val", "train")
SHARD_NAME_GLOB = "fineweb_*_[0-9][0-9][0-9][0-9][0-9][0-9].bin"


class DataError(UserError):
    """The data, the stage's settings or a manifest is wrong; the message is one line."""


def file_entry(root: Path, relative: str, split: str, **extra: Any) -> dict[str, Any]:
    """Describe one file for the manifest: where it is, what it is for, its size and SHA-256."""
    path = root / relative
    return {"path": relative, "split": split, "bytes": path.stat().st_size, "sha256": sha256_file(path), **extra}


def write_manifest(out_dir: StrPath, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically; nothing time- or machine-dependent goes in, so rebuilds compare equal."""
    path = Path(out_dir) / MANIFEST_NAME
    write_atomic(path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return path


def split_totals(files: list[dict[str, Any]]) -> dict[str, int]:
    """`tokens_val` and `tokens_train` summed over the shard entries."""
    return {f"tokens_{split}": sum(e["num_tokens"] for e in files if e["split"] == split) for split in SPLITS}


def load_manifest(manifest_path: StrPath) -> dict[str, Any]:
    """Read a pgolf-data/1 manifest, refusing anything else with one line."""
    path = Path(manifest_path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: missing") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: invalid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise DataError(f"{path}: format {found!r} (expected {MANIFEST_FORMAT!r})")
    if not isinstance(manifest.get("files"), list):
        raise DataError(f'{path}: no "files" list')
    return manifest


def dataset_root(manifest_path: Path, manifest: dict[str, Any]) -> Path:
    """The directory file paths are relative to: the manifest's own, or its absolute `root`."""
    root = manifest.get("root")
    if root is None:
        return manifest_path.parent
    if not isinstance(root, str) or not Path(root).is_absolute():
        raise DataError(f"{manifest_path}: root {root!r} must be an absolute path")
    return Path(root)


def safe_relative(relative: Any, where: str) -> PurePosixPath:
    """Accept only a relative POSIX path that cannot climb out of the directory it is joined to."""
    pure = PurePosixPath(relative) if isinstance(relative, str) else None
    if pure is None or not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative:
        raise DataError(f"{where}: file path {relative!r} must be relative and stay inside the dataset")
    return pure


def check_token_ids(path: Path, num_tokens: int, vocab_size: int) -> None:
    """Every token id of the shard below vocab_size (one vectorized max; the first bad id named by byte offset)."""
    tokens = np.memmap(path, dtype="<u2", mode="r", offset=HEADER_BYTES, shape=(num_tokens,)) if num_tokens else np.empty(0, "<u2")
    if tokens.size and int(tokens.max()) >= vocab_size:
        index = int(np.flatnonzero(tokens >= vocab_size)[0])
        raise DataError(
            f"{path}: token id {int(tokens[index])} at byte offset {HEADER_BYTES + 2 * index} (token {index})"
            f" is not below the tokenizer's vocab_size {vocab_size}"
        )


def repair_hint(manifest_path: Path, manifest: dict[str, Any], path: Path, entry: Any) -> str:
    """What rebuilds or refetches a damaged file, byte-identical to what the manifest records."""
    source = manifest.get("source") if isinstance(manifest.get("source"), dict) else {}
    kind = source.get("kind")
    sha = entry.get("sha256") if isinstance(entry, dict) else None
    if kind == "hub":
        variant = str(source.get("dataset", "")).removeprefix("fineweb10B_") or "sp1024"
        command = shlex.join([
            "pgolf", "data-hub", "--out-dir", str(manifest_path.parent), "--repo-id", str(source.get("repo_id")),
            "--revision", str(source.get("revision")), "--remote-root", str(source.get("remote_root")),
            "--variant", variant, "--train-shards", str(source.get("train_shards")), "--hashes",
        ])
        return f"repair: `{command}` refetches just the damaged files, byte-identical; nothing downstream reruns"
    if kind == "docs":
        command = shlex.join(["snakemake", "--cores", "all", "--force", str(manifest_path)])
        return f"repair: `{command}` rebuilds the data byte-identical (only that job); nothing downstream reruns"
    return f"repair: restore {path} from your copy (its sha256 must be {sha}), or rerun the data stage"


def _verify_entry(manifest_path: Path, root: Path, entry: Any, hashes: bool, vocab_size: Any = None) -> int:
    """Check one listed file against its record; return its token count (0 for non-shards)."""
    if not isinstance(entry, dict):
        raise DataError(f"{manifest_path}: file entry {entry!r} is not an object")
    path = root / safe_relative(entry.get("path"), str(manifest_path))
    if not path.is_file():
        raise DataError(f"{path}: missing (listed in {manifest_path})")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        raise DataError(f"{path}: {size} bytes on disk, manifest says {entry.get('bytes')}")
    num_tokens = 0
    if entry.get("split") in SPLITS:
        num_tokens = read_header(path)
        if num_tokens != entry.get("num_tokens"):
            raise DataError(f"{path}: header says {num_tokens} tokens, manifest says {entry.get('num_tokens')}")
        if isinstance(vocab_size, int):
            check_token_ids(path, num_tokens, vocab_size)
    if hashes and (digest := sha256_file(path)) != entry.get("sha256"):
        raise DataError(f"{path}: sha256 {digest} on disk, manifest says {entry.get('sha256')}")
    return num_tokens


def verify_dataset(manifest_path: StrPath, *, hashes: bool = False) -> dict[str, int]:
    """Re-check every file the manifest lists; with `hashes` also their SHA-256 (slow for large data)."""
    manifest_file = Path(manifest_path)
    manifest = load_manifest(manifest_file)
    root = dataset_root(manifest_file, manifest)
    totals = {split: 0 for split in SPLITS}
    vocab_size = (manifest.get("tokenizer") or {}).get("vocab_size")
    for entry in manifest["files"]:
        try:
            tokens = _verify_entry(manifest_file, root, entry, hashes, vocab_size)
        except (DataError, ShardError) as error:
            path = root / str(entry.get("path")) if isinstance(entry, dict) else manifest_file
            raise type(error)(f"{error}; {repair_hint(manifest_file, manifest, path, entry)}") from None
        if entry.get("split") in totals:
            totals[entry["split"]] += tokens
    stats = manifest.get("stats", {})
    for split, total in totals.items():
        if stats.get(f"tokens_{split}") != total:
            raise DataError(
                f"{manifest_file}: {split} shards hold {total} tokens, stats say {stats.get(f'tokens_{split}')}"
            )
    return {"files": len(manifest["files"]), "tokens_train": totals["train"], "tokens_val": totals["val"]}


def shard_paths(manifest_path: StrPath, split: str) -> list[Path]:
    """Absolute paths of one split's shards, in manifest (= shard index) order."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} (expected one of {', '.join(SPLITS)})")
    return split_files(manifest_path, (split,))


def split_files(manifest_path: StrPath, splits) -> list[Path]:
    """Absolute paths of the manifest's files whose split is one of `splits`, in manifest order."""
    manifest_file = Path(manifest_path).resolve()
    manifest = load_manifest(manifest_file)
    root = dataset_root(manifest_file, manifest)
    return [
        root / safe_relative(entry.get("path"), str(manifest_file))
        for entry in manifest["files"]
        if entry.get("split") in splits
    ]


def remove_stale_outputs(out_dir: Path) -> None:
    """Drop an old manifest and shards first, so a half-finished rebuild never looks complete."""
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for stale in out_dir.glob(SHARD_NAME_GLOB):
        stale.unlink()
