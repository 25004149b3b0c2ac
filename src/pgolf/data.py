"""The data stage: corpus -> SentencePiece tokenizer -> token shards -> manifest.

The first `val_docs` documents of the corpus are the validation split, the
rest are training data. The tokenizer only ever sees training documents, so
the validation score cannot benefit from a vocabulary fitted to it. Every
output is recorded with its size and SHA-256 in `manifest.json`, which is
written last: its presence means the stage finished, and `verify_dataset`
can later prove that the files on disk are still the ones that were built.
"""

from __future__ import annotations

import gzip
import io
import json
import lzma
import time
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from pathlib import Path, PurePosixPath
from typing import Any, TextIO

import numpy as np
import sentencepiece as spm

from pgolf.shards import (
    StrPath,
    read_header,
    sha256_file,
    write_atomic,
    write_shard,
)

MANIFEST_FORMAT = "pgolf-data/1"
MANIFEST_NAME = "manifest.json"
TOKENIZER_PREFIX = "tokenizer"
SPLITS = ("val", "train")
STATS_ORDER = ("docs_total", "docs_val", "docs_train", "tokens_val", "tokens_train", "chars_val", "chars_train")
SPECIAL_IDS = {"pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3}
MIN_VOCAB = 260  # 4 special pieces + 256 byte-fallback pieces
MAX_VOCAB = 65535  # ids must fit in uint16 shards
ENCODE_BATCH_DOCS = 1024
MAX_SENTENCE_BYTES = 16384

# Mirrors the challenge's tokenizer settings. `input_sentence_size=0` and no
# shuffling make the trainer read every line in order, and one thread removes
# scheduling effects, so identical documents give a byte-identical model.
TRAINER_OPTIONS: dict[str, Any] = {
    "model_type": "bpe",
    "byte_fallback": True,
    "split_digits": True,
    "normalization_rule_name": "nmt_nfkc",
    "add_dummy_prefix": False,
    **SPECIAL_IDS,
    "character_coverage": 0.999,
    "hard_vocab_limit": False,
    "max_sentence_length": MAX_SENTENCE_BYTES,
    "input_sentence_size": 0,
    "shuffle_input_sentence": False,
    "num_threads": 1,
    "minloglevel": 1,
}
TRAINER_SEED = 0


class DataError(ValueError):
    """The corpus, the stage's settings or a manifest is wrong; the message is one line."""


def _open_text(path: Path) -> TextIO:
    """Open a plain, xz- or gzip-compressed JSONL file as UTF-8 text."""
    name = path.name
    if name.endswith(".jsonl.xz"):
        return lzma.open(path, "rt", encoding="utf-8")
    if name.endswith(".jsonl.gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    if name.endswith(".jsonl"):
        return open(path, encoding="utf-8")
    raise DataError(f"{path}: unsupported corpus file type (expected .jsonl, .jsonl.xz or .jsonl.gz)")


def _parse_line(path: Path, line_number: int, line: str) -> dict[str, Any]:
    """Decode one JSONL line and insist on a string "text" field."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line {line_number}: invalid JSON ({error.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError(f'{path}: line {line_number}: no string "text" field')
    return record


def load_corpus(path: StrPath) -> list[dict[str, Any]]:
    """Return the corpus documents in file order, skipping blank lines and blank texts."""
    corpus = Path(path)
    if not corpus.is_file():
        raise DataError(f"{corpus}: missing")
    documents = []
    with _open_text(corpus) as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            record = _parse_line(corpus, line_number, line)
            if record["text"].strip():
                documents.append(record)
    if not documents:
        raise DataError(f"{corpus}: corpus has no text (0 non-empty documents)")
    return documents


def _sentences(texts: Sequence[str]) -> Iterator[str]:
    """Feed the trainer one line at a time, as SentencePiece expects sentences, not whole documents."""
    for text in texts:
        for line in text.splitlines():
            if line.strip():
                yield line


def _vocab_lines(model: bytes) -> str:
    """Render the .vocab file as SentencePiece itself does: piece, tab, score."""
    processor = spm.SentencePieceProcessor(model_proto=model)
    return "".join(
        f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}\n" for i in range(processor.get_piece_size())
    )


def train_tokenizer(train_texts: Sequence[str], vocab_size: int, model_prefix: StrPath) -> Path:
    """Train the BPE tokenizer on `train_texts`; write `<prefix>.model` and `<prefix>.vocab`.

    The model is returned in memory rather than written by SentencePiece,
    because SentencePiece stores its `model_prefix` (an absolute path here)
    inside the model: the same data built in two directories would otherwise
    give different model bytes.
    """
    if not train_texts:
        raise DataError(f"{model_prefix}: no training documents to fit the tokenizer on")
    model_buffer = io.BytesIO()
    spm.set_random_generator_seed(TRAINER_SEED)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_sentences(train_texts),
            model_writer=model_buffer,
            vocab_size=vocab_size,
            **TRAINER_OPTIONS,
        )
    except RuntimeError as error:
        message = " ".join(str(error).split())
        raise DataError(f"{model_prefix}: SentencePiece training failed: {message}") from None
    model = model_buffer.getvalue()
    prefix = Path(model_prefix)
    model_path = prefix.with_name(prefix.name + ".model")
    write_atomic(model_path, model)
    write_atomic(prefix.with_name(prefix.name + ".vocab"), _vocab_lines(model).encode("utf-8"))
    return model_path


def encode_docs(sp: spm.SentencePieceProcessor, texts: Sequence[str]) -> np.ndarray:
    """Return `[BOS] + ids` for every document, concatenated, as uint16.

    Documents are encoded in batches because SentencePiece's list API is
    much faster than a Python-level loop over single documents.
    """
    if sp.get_piece_size() > 1 << 16:
        raise DataError(f"tokenizer has {sp.get_piece_size()} pieces, too many for uint16 shards")
    bos = [sp.bos_id()]
    parts = []
    for start in range(0, len(texts), ENCODE_BATCH_DOCS):
        batch = sp.encode(list(texts[start : start + ENCODE_BATCH_DOCS]), out_type=int)
        flat = chain.from_iterable(chain.from_iterable((bos, ids) for ids in batch))
        parts.append(np.fromiter(flat, dtype=np.uint16))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


def _file_entry(out_dir: Path, name: str, split: str) -> dict[str, Any]:
    path = out_dir / name
    return {"path": name, "split": split, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def _write_split(out_dir: Path, split: str, tokens: np.ndarray, shard_tokens: int) -> list[dict[str, Any]]:
    """Cut one split's token stream into numbered shards and describe them for the manifest."""
    entries = []
    for index, start in enumerate(range(0, len(tokens), shard_tokens)):
        chunk = tokens[start : start + shard_tokens]
        name = f"fineweb_{split}_{index:06d}.bin"
        write_shard(out_dir / name, chunk)
        entries.append({**_file_entry(out_dir, name, split), "num_tokens": len(chunk)})
    return entries


def _remove_stale_outputs(out_dir: Path) -> None:
    """Drop an old manifest and shards first, so a half-finished rebuild never looks complete."""
    (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
    for stale in out_dir.glob("fineweb_*_[0-9][0-9][0-9][0-9][0-9][0-9].bin"):
        stale.unlink()


def _check_settings(vocab_size: int, val_docs: int, shard_tokens: int) -> None:
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise DataError(f"vocab_size {vocab_size} is outside [{MIN_VOCAB}, {MAX_VOCAB}]")
    if val_docs < 1:
        raise DataError(f"val_docs {val_docs} must be at least 1")
    if shard_tokens < 1:
        raise DataError(f"shard_tokens {shard_tokens} must be at least 1")


def _split_documents(corpus: Path, texts: list[str], val_docs: int) -> tuple[list[str], list[str]]:
    if val_docs >= len(texts):
        raise DataError(
            f"{corpus}: val_docs {val_docs} leaves no training documents ({len(texts)} non-empty documents)"
        )
    return texts[:val_docs], texts[val_docs:]


def _manifest(
    corpus_path: StrPath, vocab_size: int, shard_tokens: int, stats: dict[str, int], files: list[dict[str, Any]]
) -> dict[str, Any]:
    """Assemble the manifest; nothing time- or machine-dependent goes in, so rebuilds compare equal."""
    return {
        "format": MANIFEST_FORMAT,
        "source": {"kind": "corpus", "path": str(corpus_path), "sha256": sha256_file(corpus_path)},
        "tokenizer": {
            "kind": "sentencepiece_bpe",
            "vocab_size": vocab_size,
            **{key: SPECIAL_IDS[key] for key in ("bos_id", "eos_id", "pad_id", "unk_id")},
            "model": f"{TOKENIZER_PREFIX}.model",
        },
        "stats": {key: stats[key] for key in STATS_ORDER},
        "shard_tokens": shard_tokens,
        "files": files,
    }


def build_dataset(
    corpus_path: StrPath,
    out_dir: StrPath,
    *,
    vocab_size: int,
    val_docs: int,
    shard_tokens: int,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole data stage and return the manifest it wrote (last) into `out_dir`."""
    started = time.perf_counter()
    _check_settings(vocab_size, val_docs, shard_tokens)
    corpus = Path(corpus_path)
    texts = [doc["text"] for doc in load_corpus(corpus)]
    split_texts = dict(zip(SPLITS, _split_documents(corpus, texts, val_docs), strict=True))
    log(f"data: {len(texts)} docs from {corpus} ({len(split_texts['val'])} val, {len(split_texts['train'])} train)")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_outputs(out)
    model_path = train_tokenizer(split_texts["train"], vocab_size, out / TOKENIZER_PREFIX)
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    log(f"data: tokenizer trained, {sp.get_piece_size()} pieces ({time.perf_counter() - started:.1f}s)")

    files = [_file_entry(out, f"{TOKENIZER_PREFIX}.{ext}", "tokenizer") for ext in ("model", "vocab")]
    stats = {"docs_total": len(texts)}
    for split, docs in split_texts.items():
        tokens = encode_docs(sp, docs)
        entries = _write_split(out, split, tokens, shard_tokens)
        files += entries
        stats |= {f"docs_{split}": len(docs), f"tokens_{split}": len(tokens), f"chars_{split}": sum(map(len, docs))}
        log(f"data: {split}: {len(tokens)} tokens in {len(entries)} shards")

    manifest = _manifest(corpus_path, sp.get_piece_size(), shard_tokens, stats, files)
    write_atomic(out / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    log(f"data: wrote {len(files)} files and {MANIFEST_NAME} to {out} in {time.perf_counter() - started:.1f}s")
    return manifest


def _load_manifest(manifest_path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{manifest_path}: missing") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{manifest_path}: invalid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise DataError(f"{manifest_path}: format {found!r} (expected {MANIFEST_FORMAT!r})")
    if not isinstance(manifest.get("files"), list):
        raise DataError(f'{manifest_path}: no "files" list')
    return manifest


def _resolve(manifest_path: Path, relative: Any) -> Path:
    """Map a manifest path onto disk, refusing anything that could point outside the dataset directory."""
    pure = PurePosixPath(relative) if isinstance(relative, str) else None
    if pure is None or not relative or pure.is_absolute() or ".." in pure.parts or "\\" in relative:
        raise DataError(f"{manifest_path}: file path {relative!r} must be relative and stay inside the dataset")
    return manifest_path.parent / pure


def _verify_entry(manifest_path: Path, entry: dict[str, Any], hashes: bool) -> int:
    """Check one listed file against its record; return its token count (0 for non-shards)."""
    if not isinstance(entry, dict):
        raise DataError(f"{manifest_path}: file entry {entry!r} is not an object")
    path = _resolve(manifest_path, entry.get("path"))
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
    if hashes and (digest := sha256_file(path)) != entry.get("sha256"):
        raise DataError(f"{path}: sha256 {digest} on disk, manifest says {entry.get('sha256')}")
    return num_tokens


def verify_dataset(manifest_path: StrPath, *, hashes: bool = False) -> dict[str, int]:
    """Re-check every file the manifest lists; with `hashes` also their SHA-256 (slow for large data)."""
    manifest_file = Path(manifest_path)
    manifest = _load_manifest(manifest_file)
    totals = {split: 0 for split in SPLITS}
    for entry in manifest["files"]:
        tokens = _verify_entry(manifest_file, entry, hashes)
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
    manifest_file = Path(manifest_path).resolve()
    manifest = _load_manifest(manifest_file)
    return [_resolve(manifest_file, entry.get("path")) for entry in manifest["files"] if entry.get("split") == split]
