"""data.source = local: a dataset directory you already have, used where it is.

Typically the upstream download, `data/datasets/fineweb10B_sp1024` with
`data/tokenizers/fineweb_1024_bpe.model`. Nothing there is copied or written:
our manifest goes to results/data/<data_id>/ and names the user's directory
as its absolute `root`, with every file path relative to it. Indexing checks
every shard (header, size, token ids below the vocabulary size) and records
its sha256, so `pgolf data-verify` can later tell if the files changed.

The data id comes from `fingerprint`: the size and header of every shard and
the tokenizer's sha256, which costs a stat and 12 bytes per shard; with
`sha256` it also hashes every shard (reads all of the data at each workflow
start, so only when asked).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pgolf.data import DataError, file_entry, split_totals, write_manifest
from pgolf.progress import Progress
from pgolf.shards import HEADER_BYTES, StrPath, read_header, sha256_file
from pgolf.tokenizer import load_checked_model, tokenizer_block

SHARD_RE = re.compile(r"fineweb_(val_bytes|val|train)_(\d{6})\.bin")
OPTIONAL_SPLITS = ("val_bytes",)  # CaseOps byte sidecars (docs/caseops.md): indexed when present


def find_shards(dataset_dir: StrPath, train_shards: int = 0) -> dict[str, list[Path]]:
    """Both splits' shards in index order; refuses gaps, an empty split, or fewer train shards than asked."""
    directory = Path(dataset_dir)
    if not directory.is_dir():
        raise DataError(f"data.local.path: {directory} is not a directory")
    found: dict[str, dict[int, Path]] = {"val": {}, "train": {}, "val_bytes": {}}
    for path in directory.iterdir():
        if match := SHARD_RE.fullmatch(path.name):
            found[match.group(1)][int(match.group(2))] = path
    shards = {}
    for split, by_index in found.items():
        if not by_index and split in OPTIONAL_SPLITS:
            continue
        if not by_index:
            raise DataError(f"{directory}: no fineweb_{split}_NNNNNN.bin shards")
        missing = next(i for i in range(len(by_index) + 1) if i not in by_index)
        if missing < len(by_index):
            found_note = f"found {len(by_index)} {split} shards up to index {max(by_index)}"
            raise DataError(f"{directory}: fineweb_{split}_{missing:06d}.bin missing ({found_note})")
        shards[split] = [by_index[i] for i in range(len(by_index))]
    if train_shards > len(shards["train"]):
        raise DataError(f"data.local.train_shards: {train_shards} requested, {directory} has {len(shards['train'])}")
    if train_shards:
        shards["train"] = shards["train"][:train_shards]
    return shards


def fingerprint(dataset_dir: StrPath, tokenizer: StrPath, train_shards: int = 0, sha256: bool = False) -> str:
    """What identifies the dataset in the data id (see the module docstring)."""
    shards = find_shards(dataset_dir, train_shards)
    model = Path(tokenizer)
    if not model.is_file():
        raise DataError(f"data.local.tokenizer: {model} does not exist")
    parts: list[Any] = [["tokenizer", model.stat().st_size, sha256_file(model)]]
    for path in shards["val"] + shards["train"] + shards.get("val_bytes", []):
        header = np.fromfile(path, dtype="<i4", count=3).tolist()
        parts.append([path.name, path.stat().st_size, header, sha256_file(path) if sha256 else None])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _check_and_hash(path: Path, vocab_size: int, progress: Progress) -> tuple[int, str]:
    """Validate one shard (header, size, every token id) and hash it, in one read; return (tokens, sha256)."""
    num_tokens = read_header(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(HEADER_BYTES))
        while block := handle.read(1 << 22):
            digest.update(block)
            tokens = np.frombuffer(block, dtype="<u2")
            if tokens.size and int(tokens.max()) >= vocab_size:
                raise DataError(f"{path}: token id {int(tokens.max())} is not below the tokenizer's {vocab_size} pieces")
            progress.advance_to(progress.done + len(block))
    return num_tokens, digest.hexdigest()


def index_local_dataset(
    dataset_dir: StrPath,
    tokenizer: StrPath,
    out_dir: StrPath,
    *,
    train_shards: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Check the user's dataset in place and write a manifest pointing at it into `out_dir`."""
    directory, model = Path(dataset_dir).resolve(), Path(tokenizer).resolve()
    shards = find_shards(directory, train_shards)
    load_checked_model(model, where="data.local.tokenizer")
    root = Path(os.path.commonpath([directory, model.parent]))
    block = tokenizer_block(model, model.relative_to(root).as_posix(), kind="sentencepiece")
    files = [file_entry(root, model.relative_to(root).as_posix(), "tokenizer")]
    total = sum(p.stat().st_size - HEADER_BYTES for split in shards.values() for p in split)
    with Progress(total, f"data: checking {directory.name}", log=log) as progress:
        for split, paths in shards.items():
            for path in paths:
                # A sidecar holds byte counts, not token ids: no vocabulary bound, and its length is num_entries.
                num_tokens, digest = _check_and_hash(path, block["vocab_size"] if split != "val_bytes" else 1 << 16, progress)
                count = "num_entries" if split == "val_bytes" else "num_tokens"
                files.append({"path": path.relative_to(root).as_posix(), "split": split, "bytes": path.stat().st_size,
                              "sha256": digest, count: num_tokens})
    manifest = {
        "format": "pgolf-data/1",
        "root": str(root),
        "source": {"kind": "local", "path": str(directory), "tokenizer": str(model), "train_shards": train_shards},
        "tokenizer": block,
        "stats": split_totals(files),
        "files": files,
    }
    write_manifest(out_dir, manifest)
    log(f"data:local {len(shards['val'])} val and {len(shards['train'])} train shards in {directory}, "
        f"{manifest['stats']['tokens_val']} val and {manifest['stats']['tokens_train']} train tokens; manifest in {out_dir}")
    return manifest
