"""Bring-your-own-script mode's data step: a record's own data preparation, run unchanged.

The April frontier records (2026-04-27 1.0611, 2026-04-29 1.06141) train on CaseOps data: text
put through a reversible lowercase transform (the record's `lossless_caps.py`), tokenized with a
SentencePiece model that reserves the transform's operator symbols, written as shards plus, for
the validation split, per-token byte sidecars (`fineweb_val_bytes_*.bin`: each token's byte
count in the ORIGINAL text) that their bits-per-byte is computed from. The record ships the
script that builds this (`prepare_caseops_data.py`); this step runs it:

1. the docs the data stage reads (`data.docs.path`, the `docs_selected.jsonl` format, maybe
   compressed) are written out as plain JSONL, which the script reads;
2. the tokenizer: a given SentencePiece model, or one trained here (the challenge's trainer
   settings, pgolf.tokenizer) on the train documents after the record's own transform, with
   the transform's control symbols reserved as user-defined pieces;
3. `python <prepare script> --docs ... --out ... --sp ... --val-docs N`, in `<out>/prepared/`;
4. everything it wrote is indexed in a pgolf-data/1 manifest: shards as `val`/`train`, the byte
   sidecars as split `val_bytes` (listed, sized, hashed; verified like every file), and the
   sidecars' sum is checked against the UTF-8 bytes of the validation documents.

Run as `python -m pgolf.byo_data ...` (byo.smk's `byo_data` rule).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import sentencepiece as spm

from pgolf.data import MANIFEST_NAME, DataError, file_entry, split_totals, write_manifest
from pgolf.docs import iter_docs
from pgolf.shards import read_header, sha256_file
from pgolf.tokenizer import TRAINER_OPTIONS, TRAINER_SEED, _write_model, sentences, tokenizer_block

SHARD_RE = re.compile(r"^fineweb_(val_bytes|val|train)_(\d{6})\.bin$")
HEADER_BYTES = 256 * 4
EXTRA_SPLITS = ("val_bytes",)


def load_record_module(folder: Path, name: str):
    """Import a module the record ships (e.g. lossless_caps.py) from its folder, as it is."""
    path = folder / f"{name}.py"
    if not path.is_file():
        raise DataError(f"{path}: missing (the record's {name}.py must sit next to its preparation script)")
    spec = importlib.util.spec_from_file_location(f"byo_record_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_plain_docs(docs: Path, out: Path) -> int:
    """The docs as plain JSONL ({"text": ...} per line); returns how many."""
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for text in iter_docs(docs):
            f.write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            n += 1
    return n


def train_reserved_tokenizer(docs_jsonl: Path, val_docs: int, vocab_size: int, transform: str, caps, prefix: Path) -> Path:
    """SentencePiece BPE on the transformed train docs, the transform's symbols reserved."""
    encode = caps.get_text_transform(transform)
    symbols = caps.get_text_transform_control_symbols(transform)

    def texts():
        with open(docs_jsonl, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= val_docs:
                    yield encode(json.loads(line)["text"])

    buffer = io.BytesIO()
    spm.set_random_generator_seed(TRAINER_SEED)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences(texts())), model_writer=buffer, vocab_size=vocab_size,
        **{**TRAINER_OPTIONS, "user_defined_symbols": symbols},
    )
    return _write_model(buffer.getvalue(), prefix)


def index_prepared(out: Path, prepared: Path) -> tuple[list[dict], str]:
    """Manifest entries for every shard the script wrote (paths relative to `out`), and the variant
    its dataset folder names (`fineweb10B_<variant>`)."""
    folders = sorted({p.parent for p in prepared.rglob("fineweb_*.bin")})
    if len(folders) != 1:
        raise DataError(f"{prepared}: expected the preparation script's shards in one folder, found {len(folders)}")
    folder = folders[0]
    entries = []
    for path in sorted(folder.iterdir()):
        m = SHARD_RE.match(path.name)
        if not m:
            continue
        rel = str(path.relative_to(out))
        if m.group(1) in EXTRA_SPLITS:
            entries.append(file_entry(out, rel, m.group(1), num_entries=read_header(path)))
        else:
            entries.append(file_entry(out, rel, m.group(1), num_tokens=read_header(path)))
    order = {"val": 0, "val_bytes": 1, "train": 2}
    entries.sort(key=lambda e: (order[e["split"]], e["path"]))
    for split in ("val", "train", "val_bytes"):
        if not any(e["split"] == split for e in entries):
            raise DataError(f"{folder}: the preparation script wrote no fineweb_{split}_*.bin")
    return entries, folder.name.removeprefix("fineweb10B_")


def sidecar_total(out: Path, entries: list[dict]) -> int:
    return sum(int(np.fromfile(out / e["path"], dtype="<u2", offset=HEADER_BYTES).sum(dtype=np.int64)) for e in entries if e["split"] == "val_bytes")


def val_text_bytes(docs_jsonl: Path, val_docs: int) -> int:
    total = 0
    with open(docs_jsonl, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if i >= val_docs:
                break
            total += len(json.loads(line)["text"].encode("utf-8"))
    return total


# A folder of the record's own package versions where they differ from ours (the CaseOps scripts
# need sentencepiece <= 0.2.2), put first on the PYTHONPATH of the record's script alone:
#   pip install --target DIR 'sentencepiece==0.2.1' && export PGOLF_PREPARE_PYTHONPATH=DIR
PREPARE_PATH_ENV = "PGOLF_PREPARE_PYTHONPATH"


def prepare_env() -> dict:
    """The environment the record's preparation script runs in (see PREPARE_PATH_ENV)."""
    extra = os.environ.get(PREPARE_PATH_ENV)
    if not extra:
        return dict(os.environ)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [extra, os.environ.get("PYTHONPATH")]))}


def check_sentencepiece(prepare: Path, python: str = sys.executable) -> None:
    """The CaseOps scripts call `encode_as_immutable_proto`, which sentencepiece 0.2.3 no longer has."""
    text = prepare.read_text(encoding="utf-8", errors="replace") + " ".join(
        p.read_text(encoding="utf-8", errors="replace") for p in prepare.parent.glob("lossless_caps.py"))
    if "encode_as_immutable_proto" not in text:
        return
    probe = "import sentencepiece as s; print(s.__version__, hasattr(s.SentencePieceProcessor, 'encode_as_immutable_proto'))"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=prepare_env())
    version, has = (done.stdout.split() + ["?", "False"])[:2]
    if has != "True":
        raise DataError(f"{prepare}: calls SentencePieceProcessor.encode_as_immutable_proto, which sentencepiece {version} lacks (0.2.0 to 0.2.2 have it: pip install 'sentencepiece==0.2.1', or into a folder named by {PREPARE_PATH_ENV})")


def build(prepare: Path, docs: Path, out: Path, *, val_docs: int, vocab_size: int, transform: str, tokenizer_model: Path | None, log=print) -> dict:
    started = time.perf_counter()
    prepare, docs, out = Path(prepare), Path(docs), Path(out)
    for path, what in ((prepare, "byo.data.prepare"), (docs, "data.docs.path")):
        if not path.is_file():
            raise DataError(f"{what}: {path} does not exist")
    check_sentencepiece(prepare)
    (out / MANIFEST_NAME).unlink(missing_ok=True)  # a half-finished rebuild never looks complete
    for stale in ("prepared", "work"):
        shutil.rmtree(out / stale, ignore_errors=True)
    (out / "work").mkdir(parents=True)
    docs_jsonl = out / "work" / "docs_selected.jsonl"
    n_docs = write_plain_docs(docs, docs_jsonl)
    if n_docs <= val_docs:
        raise DataError(f"{docs}: {n_docs} documents, but byo.data.val_docs is {val_docs}: nothing left to train on")
    log(f"byo-data: {n_docs} docs from {docs} ({time.perf_counter() - started:.1f}s)")
    if tokenizer_model:
        model = out / "tokenizer.model"
        shutil.copyfile(tokenizer_model, model)
        tok_source = {"model": str(tokenizer_model), "sha256": sha256_file(tokenizer_model)}
    else:
        caps = load_record_module(prepare.parent, "lossless_caps")
        model = train_reserved_tokenizer(docs_jsonl, val_docs, vocab_size, transform, caps, out / "tokenizer")
        tok_source = {"trained_on": "train docs after the record's text transform", "transform": transform,
                      "reserved": caps.get_text_transform_control_symbols(transform), "vocab_size": vocab_size}
    got = spm.SentencePieceProcessor(model_file=str(model)).vocab_size()
    if got != vocab_size:
        raise DataError(f"{model}: {got} pieces, but byo.data.vocab_size is {vocab_size} (the script checks VOCAB_SIZE against it)")
    log(f"byo-data: tokenizer ready, {got} pieces ({time.perf_counter() - started:.1f}s)")
    cmd = [sys.executable, str(prepare.resolve()), "--docs", str(docs_jsonl.resolve()), "--out", str((out / "prepared").resolve()),
           "--sp", str(model.resolve()), "--val-docs", str(val_docs)]
    done = subprocess.run(cmd, cwd=out, capture_output=True, text=True, env=prepare_env())
    log(done.stdout.rstrip())
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"{prepare}: exited with status {done.returncode}: {tail}")
    entries, variant = index_prepared(out, out / "prepared")
    sidecar, text = sidecar_total(out, entries), val_text_bytes(docs_jsonl, val_docs)
    if sidecar != text:
        raise DataError(f"{out}: the val byte sidecars sum to {sidecar} bytes, but the {val_docs} val docs hold {text} UTF-8 bytes")
    shards = [e for e in entries if e["split"] in ("val", "train")]
    files = [file_entry(out, name, "tokenizer") for name in (model.name, model.with_suffix(".vocab").name) if (out / name).is_file()] + entries
    manifest = {
        "format": "pgolf-data/1",
        "source": {"kind": "byo_prepare", "script": str(prepare), "script_sha256": sha256_file(prepare),
                   "docs": str(docs), "docs_sha256": sha256_file(docs), "val_docs": val_docs},
        "variant": variant,
        "tokenizer": tokenizer_block(model, model.name, source=tok_source),
        "stats": {**split_totals(shards), "val_bytes": sidecar},
        "files": files,
    }
    shutil.rmtree(out / "work")
    write_manifest(out, manifest)
    log(f"byo-data: {variant}: {manifest['stats']['tokens_val']} val tokens ({sidecar} original bytes), "
        f"{manifest['stats']['tokens_train']} train tokens in {len(shards)} shards ({time.perf_counter() - started:.1f}s)")
    return manifest


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pgolf.byo_data", description="run a record's own data preparation script and index its output")
    p.add_argument("--prepare", required=True, type=Path, help="the record's prepare_caseops_data.py")
    p.add_argument("--docs", required=True, type=Path, help="documents, docs_selected.jsonl format (.jsonl, .xz, .gz)")
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--val-docs", required=True, type=int)
    p.add_argument("--vocab-size", required=True, type=int)
    p.add_argument("--transform", default="lossless_caps_caseops_v1")
    p.add_argument("--tokenizer-model", type=Path, default=None, help="an existing CaseOps SentencePiece model (else one is trained)")
    args = p.parse_args(argv)
    try:
        build(args.prepare, args.docs, args.out_dir, val_docs=args.val_docs, vocab_size=args.vocab_size,
              transform=args.transform, tokenizer_model=args.tokenizer_model)
    except (DataError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
