#!/usr/bin/env python3
"""Make a dataset folder whose validation split has the challenge's full size, for timing evals.

The sp1024 validation split holds 62,021,632 target tokens (646,059 windows of 2048 at stride 96).
A machine that cannot reach the hub can still time a full-size eval: an eval's cost depends on
the number of windows, not on the text. This tool repeats the validation tokens of a dataset
folder you have (for example `results/data/<data_id>/` of the embedded corpus) until the split
holds the requested number of targets, and links the train shards and the tokenizer beside it:

    python tools/tile_val.py results/data/<data_id> /scratch/fullval
    # then, in an overlay:  data: {source: local, local: {path: /scratch/fullval,
    #                               tokenizer: /scratch/fullval/tokenizer.model}}

The scores of such a split mean nothing (the text repeats); its window count and timings do.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from pgolf.data import DataError
from pgolf.local import find_shards
from pgolf.shards import ShardError, read_shard, write_shard

FULL_VAL_TARGETS = 62_021_632  # sp1024 validation split: tokens - 1 targets
SHARD_TOKENS = 100_000_000  # the challenge's shard size


def tile_val(source: Path, out: Path, targets: int) -> list[Path]:
    """Writes out/fineweb_val_NNNNNN.bin holding targets + 1 tokens; links train shards and tokenizer."""
    shards = find_shards(source)
    val = np.concatenate([read_shard(p) for p in shards["val"]])
    if val.size < 2:
        raise DataError(f"{source}: validation split has {val.size} tokens, need at least 2 to tile")
    out.mkdir(parents=True, exist_ok=True)
    tiled = np.resize(val, targets + 1)  # np.resize repeats the array to the new length
    written = []
    for i, start in enumerate(range(0, tiled.size, SHARD_TOKENS)):
        path = out / f"fineweb_val_{i:06d}.bin"
        write_shard(path, tiled[start : start + SHARD_TOKENS])
        written.append(path)
    for path in shards["train"]:
        link = out / path.name
        if not link.exists():
            os.symlink(path.resolve(), link)
    for name in ("tokenizer.model", "tokenizer.vocab"):
        if (source / name).is_file() and not (out / name).exists():
            os.symlink((source / name).resolve(), out / name)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="dataset folder with fineweb_{val,train}_NNNNNN.bin (+ tokenizer.model)")
    ap.add_argument("out", type=Path, help="folder to create (train shards and tokenizer are linked, not copied)")
    ap.add_argument("--targets", type=int, default=FULL_VAL_TARGETS, help=f"validation targets (default {FULL_VAL_TARGETS:,})")
    args = ap.parse_args(argv)
    if args.targets < 1:
        print(f"error: --targets must be at least 1, got {args.targets}", file=sys.stderr)
        return 2
    try:
        written = tile_val(args.source, args.out, args.targets)
    except (DataError, ShardError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {args.targets + 1:,} validation tokens in {len(written)} shard(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
