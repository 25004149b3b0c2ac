"""`pgolf`: the pipeline's command line. Snakemake rules call these; users can too.

User errors (bad data, config, sizes) print one line starting with "error:" and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

from pgolf.config import ConfigError, check_config
from pgolf.data import DataError
from pgolf.shards import ShardError
from pgolf.size import SizeError

USER_ERRORS = (ConfigError, DataError, ShardError, SizeError, FileNotFoundError)


def cmd_data_build(args) -> None:
    from pgolf.data import build_dataset

    build_dataset(args.corpus, args.out_dir, vocab_size=args.vocab_size, val_docs=args.val_docs, shard_tokens=args.shard_tokens)


def cmd_data_hub(args) -> None:
    from pgolf.hub import download_dataset

    download_dataset(
        args.out_dir,
        repo_id=args.repo_id,
        revision=args.revision,
        remote_root=args.remote_root,
        variant=args.variant,
        train_shards=args.train_shards,
    )


def cmd_data_verify(args) -> None:
    from pgolf.data import verify_dataset

    summary = verify_dataset(args.manifest, hashes=args.hashes)
    print(f"data ok: {args.manifest}: {summary['files']} files, {summary['tokens_train']} train tokens, {summary['tokens_val']} val tokens")


def cmd_check_config(args) -> None:
    merged: dict = {}
    for path in args.configs:
        with open(path, encoding="utf-8") as f:
            _merge(merged, yaml.safe_load(f) or {})
    check_config(merged)
    print(f"config ok: {', '.join(args.configs)}")


def _merge(base: dict, over: dict) -> None:
    """Snakemake's --configfile semantics: mappings merge key by key, everything else replaces."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _merge(base[k], v)
        else:
            base[k] = v


def cmd_bundle(args) -> None:
    from pgolf.bundle import bundle
    from pgolf.shards import write_atomic

    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    write_atomic(args.out, bundle(config).encode("utf-8"))


def cmd_size_gate(args) -> None:
    from pgolf.size import gate

    r = gate(args.code, args.model, args.out, args.limit, args.compressor)
    print(f"Code size: {r['code_bytes']} bytes")
    print(f"Total submission size {args.label}: {r['total_bytes']} bytes (model {r['model_bytes']}, limit {r['limit']}, headroom {r['headroom_bytes']})")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pgolf", description="Parameter Golf record pipeline tools.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data-build", help="corpus -> tokenizer -> shards -> manifest.json")
    p.add_argument("--corpus", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--vocab-size", type=int, required=True)
    p.add_argument("--val-docs", type=int, required=True)
    p.add_argument("--shard-tokens", type=int, required=True)
    p.set_defaults(func=cmd_data_build)

    p = sub.add_parser("data-hub", help="download the challenge's FineWeb export from the Hugging Face hub")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--repo-id", required=True)
    p.add_argument("--revision", required=True)
    p.add_argument("--remote-root", default="datasets")
    p.add_argument("--variant", default="sp1024")
    p.add_argument("--train-shards", type=int, required=True)
    p.set_defaults(func=cmd_data_hub)

    p = sub.add_parser("data-verify", help="check every file a data manifest lists (size, shard header; --hashes: sha256)")
    p.add_argument("manifest")
    p.add_argument("--hashes", action="store_true")
    p.set_defaults(func=cmd_data_verify)

    p = sub.add_parser("check-config", help="validate config files (later ones overlay earlier ones)")
    p.add_argument("configs", nargs="+")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("bundle", help="generate the record's single train_gpt.py")
    p.add_argument("--config", required=True, help="JSON with the train, export and eval blocks")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bundle)

    p = sub.add_parser("size-gate", help="count code + model bytes; write size.json, or fail when over the limit")
    p.add_argument("--code", nargs="+", required=True, help="every code file the record needs")
    p.add_argument("--model", required=True, help="the compressed artifact")
    p.add_argument("--limit", type=int, default=16_000_000)
    p.add_argument("--compressor", default="")
    p.add_argument("--label", default="", help="artifact label for the log line, e.g. int6+lzma")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_size_gate)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
