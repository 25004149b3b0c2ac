"""data.source = hub: the challenge's pre-tokenized FineWeb export from the Hugging Face hub.

The export's manifest.json lists, per dataset variant, how many train and val shards exist and
which tokenizer files belong to it. We fetch the val shards, the first N train shards and the
tokenizer with huggingface_hub at a pinned revision, then write our own manifest (pgolf-data/1)
with the size and sha256 of every file, the same format the corpus route produces.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path, PurePosixPath

from pgolf.data import DataError
from pgolf.shards import read_header, sha256_file, write_atomic


def _safe_relative(path: str, what: str) -> str:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts:
        raise DataError(f"upstream manifest: {what} path {path!r} escapes the data directory")
    return str(p)


def _fetch(repo_id: str, revision: str, filename: str, dest: Path) -> Path:
    """Downloads one file (huggingface_hub resumes partial downloads) and places it atomically."""
    from huggingface_hub import hf_hub_download

    cached = hf_hub_download(repo_id=repo_id, filename=filename, repo_type="dataset", revision=revision)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    shutil.copyfile(cached, tmp)
    os.replace(tmp, dest)
    return dest


def download_dataset(out_dir, *, repo_id: str, revision: str, remote_root: str, variant: str, train_shards: int, log=print) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"{remote_root.strip('/')}/" if remote_root.strip("/") else ""
    upstream = json.loads(_fetch(repo_id, revision, f"{prefix}manifest.json", out / "upstream_manifest.json").read_text())
    name = f"fineweb10B_{variant}"
    entry = next((d for d in upstream.get("datasets", []) if d.get("name") == name), None)
    if entry is None:
        raise DataError(f"{repo_id}@{revision}: manifest.json has no dataset named {name}")
    available = entry["stats"]["files_train"]
    if train_shards > available:
        raise DataError(f"data.hub.train_shards: {train_shards} requested, {repo_id}@{revision} has {available} for {name}")
    tok = next((t for t in upstream.get("tokenizers", []) if t.get("name") == entry.get("tokenizer_name")), None)
    if tok is None:
        raise DataError(f"{repo_id}@{revision}: manifest.json has no tokenizer {entry.get('tokenizer_name')!r}")

    files = []
    remote_dataset = f"{prefix}datasets/{name}"
    wanted = [("val", f"fineweb_val_{i:06d}.bin") for i in range(entry["stats"]["files_val"])]
    wanted += [("train", f"fineweb_train_{i:06d}.bin") for i in range(train_shards)]
    for split, fname in wanted:
        dest = _fetch(repo_id, revision, f"{remote_dataset}/{fname}", out / fname)
        n = read_header(dest)
        files.append({"path": fname, "split": split, "bytes": dest.stat().st_size, "sha256": sha256_file(dest), "num_tokens": n})
        log(f"data:hub {fname} tokens:{n}")
    model_rel = _safe_relative(tok["model_path"], "tokenizer")
    model_dest = _fetch(repo_id, revision, f"{prefix}{model_rel}", out / "tokenizer.model")
    files.append({"path": "tokenizer.model", "split": "tokenizer", "bytes": model_dest.stat().st_size, "sha256": sha256_file(model_dest)})

    manifest = {
        "format": "pgolf-data/1",
        "source": {"kind": "hub", "repo_id": repo_id, "revision": revision, "dataset": name},
        "tokenizer": {
            "kind": tok.get("kind", "sentencepiece_bpe"),
            "vocab_size": tok["vocab_size"],
            "bos_id": tok.get("bos_id", 1),
            "eos_id": tok.get("eos_id", 2),
            "model": "tokenizer.model",
        },
        "stats": {
            "tokens_val": sum(f["num_tokens"] for f in files if f["split"] == "val"),
            "tokens_train": sum(f["num_tokens"] for f in files if f["split"] == "train"),
        },
        "files": files,
    }
    write_atomic(out / "manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest
