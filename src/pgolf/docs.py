"""data.source = docs: a JSONL of documents -> SentencePiece tokenizer -> token shards -> manifest.

The input is the challenge's `docs_selected.jsonl` format: one JSON object
per line with a "text" field (plain, .xz or .gz). As in the challenge's
exporter, every line is a document, the first `num_val_docs` documents are
validation and the rest train, each document is encoded as BOS + tokens
(no EOS), documents are concatenated and cut into shards of `shard_tokens`
without regard to document boundaries, and the switch from val to train
flushes the last, partial val shard. The shards are therefore byte for byte
what the exporter writes for the same tokenizer.

The tokenizer is either trained here on the training documents only (so the
validation score cannot benefit from a vocabulary fitted to it), or an
existing model is used as is after checking its special ids.

With `transform: lossless_caps_caseops_v1` (CaseOps, pgolf.caseops) every document is
transformed before the tokenizer is trained on it or encodes it, the tokenizer reserves the
operator symbols, and the validation split also gets byte sidecars
(`fineweb_val_bytes_NNNNNN.bin`, split `val_bytes` in the manifest): one uint16 per val token,
the bytes of the ORIGINAL text it stands for (0 for BOS), in the shard format, which is what
the April records' prepare_caseops_data.py writes and what the evals count bytes from.

Encoding streams: the main process reads the file and cuts it into batches
of documents, worker processes (spawn-safe, each loading the .model file)
parse and encode them, and the main process writes their tokens into shards
in file order. At most a few batches are in flight, so memory depends on the
batch and shard sizes, never on the corpus size.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import lzma
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np
import sentencepiece as spm

from pgolf import caseops
from pgolf.data import DataError, file_entry, remove_stale_outputs, split_totals, write_manifest
from pgolf.progress import Progress
from pgolf.shards import ShardStream, StrPath, sha256_file
from pgolf.tokenizer import check_vocab_size, copy_model, load_checked_model, tokenizer_block, train_tokenizer

TOKENIZER_PREFIX = "tokenizer"
STATS_ORDER = ("docs_total", "docs_val", "docs_train", "tokens_val", "tokens_train", "chars_val", "chars_train")
BATCH_DOCS = 1024  # the exporter's SentencePiece batch size
BATCH_CHARS = 1 << 20  # ... but cut earlier for long documents, to keep batches small and balanced
IN_FLIGHT_PER_WORKER = 3  # batches queued per worker: enough to keep it busy, few enough to bound memory
# Workers are forked from a clean server process that has imported this module once (forkserver),
# instead of each re-importing Python, numpy and SentencePiece (spawn); both need the same
# spawn-safe code: picklable tasks, and each worker loads the .model file itself.
START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def default_workers() -> int:
    """All the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ---------------------------------------------------------------- reading


@contextlib.contextmanager
def open_docs(path: StrPath) -> Iterator[tuple[TextIO, BinaryIO]]:
    """Open a plain, xz- or gzip-compressed JSONL as text; also yield the raw file, whose position tracks progress."""
    docs = Path(path)
    if not docs.is_file():
        raise DataError(f"{docs}: missing")
    openers = {".jsonl.xz": lzma.open, ".jsonl.gz": gzip.open, ".jsonl": None}
    suffix = next((s for s in openers if docs.name.endswith(s)), None)
    if suffix is None:
        raise DataError(f"{docs}: unsupported docs file type (expected .jsonl, .jsonl.xz or .jsonl.gz)")
    with open(docs, "rb") as raw:
        stream = openers[suffix](raw) if openers[suffix] else raw
        with io.TextIOWrapper(stream, encoding="utf-8") as text:
            yield text, raw


def doc_text(path: StrPath, line_number: int, line: str) -> str:
    """Decode one JSONL line and insist on a string "text" field."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line {line_number}: invalid JSON ({error.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("text"), str):
        raise DataError(f'{path}: line {line_number}: no string "text" field')
    return record["text"]


def _numbered_lines(path: Path, text: TextIO) -> Iterator[tuple[int, str]]:
    """Lines with their 1-based numbers; a file that is not UTF-8 is named, not dumped as a traceback."""
    try:
        yield from enumerate(text, start=1)
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 ({error.reason} at byte {error.start} of a block)") from None
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError) as error:
        raise DataError(f"{path}: corrupt compressed file ({error})") from None


def iter_docs(path: StrPath) -> Iterator[str]:
    """Every document's text in file order; blank lines are not documents, blank texts are."""
    with open_docs(path) as (text, _):
        for number, line in _numbered_lines(Path(path), text):
            if line.strip():
                yield doc_text(path, number, line)


@dataclass
class Batch:
    """Consecutive lines of one split; `first_line` numbers them for error messages."""

    split: str
    first_line: int
    lines: list[str]


def read_batches(path: StrPath, num_val_docs: int, progress: Progress | None = None) -> Iterator[Batch]:
    """Cut the file into batches of raw lines, never mixing val and train documents in one batch."""
    docs = Path(path)
    with open_docs(docs) as (text, raw):
        split, seen, lines, chars, first = ("val" if num_val_docs else "train"), 0, [], 0, 0
        for number, line in _numbered_lines(docs, text):
            if not line.strip():
                if lines:
                    lines.append(line)  # keeps the line numbering of the batch contiguous
                continue
            if not lines:
                first = number
            lines.append(line)
            chars += len(line)
            seen += 1
            if (split == "val" and seen == num_val_docs) or len(lines) >= BATCH_DOCS or chars >= BATCH_CHARS:
                yield Batch(split, first, lines)
                if progress is not None:
                    progress.advance_to(raw.tell())
                lines, chars = [], 0
                if split == "val" and seen == num_val_docs:
                    split = "train"
        if lines:
            yield Batch(split, first, lines)
        if progress is not None:
            progress.advance_to(raw.tell())


# ---------------------------------------------------------------- encoding


@dataclass
class Encoded:
    """One batch, encoded: BOS + tokens per document, concatenated, and what the manifest counts."""

    tokens: np.ndarray
    docs: int
    nonblank: int
    chars: int
    byte_counts: np.ndarray | None = None  # CaseOps val batches: original bytes per token
    text_bytes: int = 0  # ... and the UTF-8 bytes of their original texts


class Encoder:
    """Parses a batch of JSONL lines and encodes every document as BOS + tokens (uint16)."""

    def __init__(self, model_path: StrPath, docs_path: StrPath, transform: str | None = None):
        self.sp = spm.SentencePieceProcessor(model_file=str(model_path))
        self.docs_path = str(docs_path)
        self.transform = transform

    def __call__(self, first_line: int, lines: list[str], split: str = "train") -> Encoded:
        texts = [doc_text(self.docs_path, first_line + i, line) for i, line in enumerate(lines) if line.strip()]
        encoded = Encoded(np.empty(0, np.uint16), len(texts), sum(1 for t in texts if t.strip()), sum(map(len, texts)))
        if not self.transform:
            encoded.tokens = encode_docs(self.sp, texts)
        elif split == "val":
            encoded.tokens, encoded.byte_counts = encode_with_byte_counts(self.sp, texts)
            encoded.text_bytes = sum(len(t.encode("utf-8")) for t in texts)
        else:
            encoded.tokens = encode_docs(self.sp, [caseops.encode(t) for t in texts])
        return encoded


_WORKER_ENCODER: Encoder | None = None


def _init_worker(model_path: str, docs_path: str, transform: str | None = None) -> None:
    global _WORKER_ENCODER
    _WORKER_ENCODER = Encoder(model_path, docs_path, transform)


def _encode_in_worker(first_line: int, lines: list[str], split: str = "train") -> Encoded:
    assert _WORKER_ENCODER is not None, "worker not initialised"
    return _WORKER_ENCODER(first_line, lines, split)


def encode_batches(
    batches: Iterable[Batch], model_path: StrPath, docs_path: StrPath, workers: int, start_method: str = START_METHOD,
    transform: str | None = None,
) -> Iterator[tuple[str, Encoded]]:
    """Encode batches in order, in `workers` worker processes (in this process when workers <= 1).

    Results come back in submission order, and no more than
    IN_FLIGHT_PER_WORKER batches per worker are submitted ahead of the one
    being written, so a slow writer or a fast reader cannot pile up memory.
    """
    if workers <= 1:
        encoder = Encoder(model_path, docs_path, transform)
        for batch in batches:
            yield batch.split, encoder(batch.first_line, batch.lines, batch.split)
        return
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        context.set_forkserver_preload(["pgolf.docs"])
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(str(model_path), str(docs_path), transform)
    )
    pending: deque = deque()
    try:
        for batch in batches:
            pending.append((batch.split, pool.submit(_encode_in_worker, batch.first_line, batch.lines, batch.split)))
            if len(pending) >= IN_FLIGHT_PER_WORKER * workers:
                split, future = pending.popleft()
                yield split, future.result()
        while pending:
            split, future = pending.popleft()
            yield split, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def encode_docs(sp: spm.SentencePieceProcessor, texts: list[str]) -> np.ndarray:
    """BOS + ids for every text, concatenated, as uint16 (the in-memory form of one batch).

    One SentencePiece thread: parallelism comes from the worker processes, and the
    single-process route must not quietly use several cores of its own.
    """
    ids = sp.encode(list(texts), out_type=int, add_bos=True, num_threads=1)
    return np.fromiter(chain.from_iterable(ids), dtype=np.uint16, count=sum(map(len, ids)))


def encode_with_byte_counts(sp: spm.SentencePieceProcessor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """CaseOps: BOS + ids of every transformed text, and beside each id the original bytes it stands for."""
    ids: list[int] = []
    counts: list[int] = []
    for doc_ids, doc_counts in caseops.token_byte_counts(sp, [caseops.encode(t) for t in texts]):
        ids += [sp.bos_id(), *doc_ids]
        counts += [0, *doc_counts]
    return np.asarray(ids, dtype=np.uint16), np.asarray(counts, dtype=np.uint16)


# ---------------------------------------------------------------- the stage


def _check_settings(num_val_docs: int, shard_tokens: int, vocab_size: int | None, train_docs: int, transform=None) -> None:
    if transform is not None and transform not in caseops.TRANSFORMS:
        raise DataError(f"data.docs.transform {transform!r} is not one of: {', '.join(caseops.TRANSFORMS)}")
    if num_val_docs < 1:
        raise DataError(f"num_val_docs {num_val_docs} must be at least 1")
    if shard_tokens < 1:
        raise DataError(f"shard_tokens {shard_tokens} must be at least 1")
    if vocab_size is not None:
        check_vocab_size(vocab_size)
    if train_docs < 0:
        raise DataError(f"train_docs {train_docs} must be 0 (all) or positive")


def _split_problem(path: Path, num_val_docs: int, docs_total: int, nonblank: int) -> str | None:
    """Why the documents cannot make a dataset, or None."""
    if nonblank == 0:
        return f"{path}: corpus has no text (0 non-empty documents)"
    if docs_total <= num_val_docs:
        return f"{path}: num_val_docs {num_val_docs} leaves no training documents ({docs_total} documents)"
    return None


def training_texts(path: Path, num_val_docs: int, train_docs: int, log: Callable[[str], None]) -> Iterator[str]:
    """The training documents the tokenizer may see (the first `train_docs` of them, 0 = all)."""
    docs_total = nonblank = used = 0
    with Progress(path.stat().st_size, f"data: reading {path.name} for the tokenizer", log=log) as progress:
        with open_docs(path) as (text, raw):
            for number, line in _numbered_lines(path, text):
                if not line.strip():
                    continue
                body = doc_text(path, number, line)
                docs_total += 1
                nonblank += bool(body.strip())
                if number % 1024 == 0:
                    progress.advance_to(raw.tell())
                if docs_total <= num_val_docs:
                    continue
                if train_docs and used >= train_docs:
                    if nonblank:
                        break  # enough documents, and the corpus is known to have text
                    continue
                used += 1
                yield body
    if problem := _split_problem(path, num_val_docs, docs_total, nonblank):
        raise DataError(problem)


def _check_reserved(model: bytes, source: Path) -> None:
    """A CaseOps dataset needs a tokenizer with each operator as a piece of its own."""
    processor = spm.SentencePieceProcessor(model_proto=model)
    for symbol in caseops.OPERATORS:
        if processor.encode(symbol, out_type=str) != [symbol]:
            raise DataError(f"{source}: no piece of its own for the CaseOps operator U+{ord(symbol):04X}"
                            " (data.docs.transform needs a tokenizer trained with the operators reserved)")


def _prepare_tokenizer(
    docs: Path, out: Path, tokenizer: dict[str, Any], num_val_docs: int, log: Callable[[str], None],
    transform: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train the tokenizer or check and copy the given one; return its path and provenance for the manifest."""
    prefix = out / TOKENIZER_PREFIX
    if tokenizer.get("model"):
        source = Path(tokenizer["model"])
        model = load_checked_model(source, tokenizer.get("vocab_size"), where="data.docs.tokenizer")
        if transform:
            _check_reserved(model, source)
        return copy_model(model, prefix), {"model": str(source), "sha256": sha256_file(source)}
    vocab_size, train_docs = tokenizer["vocab_size"], tokenizer.get("train_docs", 0)
    texts = training_texts(docs, num_val_docs, train_docs, log)
    if not transform:
        model_path = train_tokenizer(texts, vocab_size, prefix)
        return model_path, {"trained_on": "train docs", "vocab_size": vocab_size, "train_docs": train_docs}
    model_path = train_tokenizer(map(caseops.encode, texts), vocab_size, prefix, reserved=caseops.OPERATORS)
    provenance = {"trained_on": f"train docs after {transform}", "vocab_size": vocab_size, "train_docs": train_docs,
                  "reserved": list(caseops.OPERATORS)}
    return model_path, provenance


def write_shards(
    docs: Path, out: Path, model_path: Path, num_val_docs: int, shard_tokens: int, workers: int, log: Callable[[str], None],
    transform: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Encode every document and write both splits' shards (CaseOps: and the val byte sidecars);
    return their manifest entries and counts."""
    streams = {split: ShardStream(out, split, shard_tokens) for split in ("val", "train")}
    sidecars = ShardStream(out, "val_bytes", shard_tokens) if transform else None
    counts = {f"{what}_{split}": 0 for what in ("docs", "chars", "nonblank") for split in ("val", "train")}
    counts |= {"val_bytes": 0, "val_text_bytes": 0}
    with Progress(docs.stat().st_size, f"data: encoding {docs.name}", log=log) as progress:
        batches = read_batches(docs, num_val_docs, progress)
        for split, encoded in encode_batches(batches, model_path, docs, workers, transform=transform):
            if split == "train":
                streams["val"].close()  # the split switch flushes the val buffer first
            streams[split].add(encoded.tokens)
            if sidecars is not None and encoded.byte_counts is not None:
                sidecars.add(encoded.byte_counts)
                counts["val_bytes"] += int(encoded.byte_counts.sum(dtype=np.int64))
                counts["val_text_bytes"] += encoded.text_bytes
            counts[f"docs_{split}"] += encoded.docs
            counts[f"chars_{split}"] += encoded.chars
            counts[f"nonblank_{split}"] += encoded.nonblank
    files = streams["val"].close()
    if sidecars is not None:
        files += [{**{k: v for k, v in e.items() if k != "num_tokens"}, "num_entries": e["num_tokens"]} for e in sidecars.close()]
    return files + streams["train"].close(), counts


def build_docs_dataset(
    docs_path: StrPath,
    out_dir: StrPath,
    *,
    num_val_docs: int,
    shard_tokens: int,
    tokenizer: dict[str, Any],
    workers: int = 1,
    log: Callable[[str], None] = print,
    transform: str | None = None,
) -> dict[str, Any]:
    """Run the whole docs route and return the manifest it wrote (last) into `out_dir`.

    `tokenizer` is {"vocab_size": V, "train_docs": N} to train one (N = 0:
    every training document), or {"model": path[, "vocab_size": V]} to use
    an existing model (V, when given, must match it). `transform` (None or
    caseops.TRANSFORM) turns CaseOps on.
    """
    started = time.perf_counter()
    _check_settings(num_val_docs, shard_tokens, tokenizer.get("vocab_size"), tokenizer.get("train_docs", 0), transform)
    docs, out = Path(docs_path), Path(out_dir)
    if not docs.is_file():
        raise DataError(f"{docs}: missing")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_outputs(out)

    model_path, provenance = _prepare_tokenizer(docs, out, tokenizer, num_val_docs, log, transform)
    log(f"data: tokenizer ready ({time.perf_counter() - started:.1f}s)")
    encode_started = time.perf_counter()
    shards, counts = write_shards(docs, out, model_path, num_val_docs, shard_tokens, workers, log, transform)
    docs_total = counts["docs_val"] + counts["docs_train"]
    if problem := _split_problem(docs, num_val_docs, docs_total, counts["nonblank_val"] + counts["nonblank_train"]):
        raise DataError(problem)
    if counts["val_bytes"] != counts["val_text_bytes"]:
        raise DataError(f"{out}: the val byte sidecars sum to {counts['val_bytes']} bytes, but the val documents"
                        f" hold {counts['val_text_bytes']} UTF-8 bytes")
    seconds = time.perf_counter() - encode_started
    chars = counts["chars_val"] + counts["chars_train"]
    log(f"data: encoded {docs_total} docs ({chars / 1e6:.1f} M chars) in {seconds:.1f}s with {max(workers, 1)} process(es)")

    files = [file_entry(out, f"{TOKENIZER_PREFIX}.{ext}", "tokenizer") for ext in ("model", "vocab")] + shards
    stats = {"docs_total": docs_total, **{k: counts[k] for k in ("docs_val", "docs_train", "chars_val", "chars_train")}}
    stats |= split_totals(shards)
    if transform:
        stats["val_bytes"] = counts["val_bytes"]
    for split in ("val", "train"):
        log(f"data: {split}: {counts[f'docs_{split}']} docs, {stats[f'tokens_{split}']} tokens in "
            f"{sum(e['split'] == split for e in shards)} shards")
    manifest = {
        "format": "pgolf-data/1",
        "source": {"kind": "docs", "path": str(docs_path), "sha256": sha256_file(docs), "num_val_docs": num_val_docs,
                   **({"transform": transform} if transform else {})},
        "tokenizer": tokenizer_block(model_path, f"{TOKENIZER_PREFIX}.model", source=provenance),
        "stats": {key: stats[key] for key in STATS_ORDER + (("val_bytes",) if transform else ())},
        "shard_tokens": shard_tokens,
        "files": files,
    }
    write_manifest(out, manifest)
    log(f"data: wrote {len(files)} files and manifest.json to {out} in {time.perf_counter() - started:.1f}s")
    return manifest
