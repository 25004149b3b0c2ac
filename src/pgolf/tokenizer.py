"""SentencePiece tokenizers with the challenge's settings: train one, or check one you have.

The challenge's sp1024 tokenizer is BPE with byte fallback, split digits,
nmt_nfkc normalisation, no dummy prefix, and ids pad/bos/eos/unk = 0/1/2/3.
The record code relies on those ids (every document starts with BOS = 1,
and the bits-per-byte accounting treats ids 0-3 as control pieces), so a
model supplied by the user is checked for them before anything is encoded.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sentencepiece as spm

from pgolf.data import DataError
from pgolf.shards import StrPath, write_atomic

SPECIAL_IDS = {"pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3}
MIN_VOCAB = 260  # 4 special pieces + 256 byte-fallback pieces
MAX_VOCAB = 65535  # ids must fit in uint16 shards
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


def check_vocab_size(vocab_size: int, where: str = "vocab_size") -> None:
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise DataError(f"{where} {vocab_size} is outside [{MIN_VOCAB}, {MAX_VOCAB}]")


def sentences(texts: Iterable[str]) -> Iterable[str]:
    """Feed the trainer one line at a time, as SentencePiece expects sentences, not whole documents."""
    for text in texts:
        for line in text.splitlines():
            if line.strip():
                yield line


def vocab_lines(model: bytes) -> str:
    """Render the .vocab file as SentencePiece itself does: piece, tab, score."""
    processor = spm.SentencePieceProcessor(model_proto=model)
    return "".join(
        f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}\n" for i in range(processor.get_piece_size())
    )


def _write_model(model: bytes, model_prefix: StrPath) -> Path:
    """Write `<prefix>.model` and `<prefix>.vocab` atomically; return the model's path."""
    prefix = Path(model_prefix)
    model_path = prefix.with_name(prefix.name + ".model")
    write_atomic(model_path, model)
    write_atomic(prefix.with_name(prefix.name + ".vocab"), vocab_lines(model).encode("utf-8"))
    return model_path


def train_tokenizer(
    train_texts: Iterable[str], vocab_size: int, model_prefix: StrPath, reserved: tuple[str, ...] = ()
) -> Path:
    """Train the BPE tokenizer on `train_texts`; write `<prefix>.model` and `<prefix>.vocab`.

    The model is returned in memory rather than written by SentencePiece,
    because SentencePiece stores its `model_prefix` (an absolute path here)
    inside the model: the same data built in two directories would otherwise
    give different model bytes. An error raised while reading the texts is
    re-raised as itself (SentencePiece would turn it into a RuntimeError).
    `reserved` symbols (CaseOps operators) become user-defined pieces of their own.
    """
    check_vocab_size(vocab_size)
    feed = _GuardedIter(sentences(train_texts))
    model_buffer = io.BytesIO()
    spm.set_random_generator_seed(TRAINER_SEED)
    options = {**TRAINER_OPTIONS, "user_defined_symbols": list(reserved)} if reserved else TRAINER_OPTIONS
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=feed, model_writer=model_buffer, vocab_size=vocab_size, **options
        )
    except RuntimeError as error:
        if feed.error is not None:
            raise feed.error from None
        if feed.count == 0:
            raise DataError(f"{model_prefix}: no training text to fit the tokenizer on") from None
        message = " ".join(str(error).split())
        raise DataError(f"{model_prefix}: SentencePiece training failed: {message}") from None
    if feed.error is not None:
        raise feed.error
    return _write_model(model_buffer.getvalue(), model_prefix)


class _GuardedIter:
    """Wraps the trainer's input so an exception in it survives the trip through C++."""

    def __init__(self, items: Iterable[str]):
        self._items = iter(items)
        self.error: BaseException | None = None
        self.count = 0

    def __iter__(self) -> _GuardedIter:
        return self

    def __next__(self) -> str:
        try:
            item = next(self._items)
        except StopIteration:
            raise
        except Exception as error:  # noqa: BLE001 - kept and re-raised after training
            self.error = error
            raise StopIteration from None
        self.count += 1
        return item


def load_checked_model(path: StrPath, vocab_size: int | None = None, where: str = "tokenizer") -> bytes:
    """Read a SentencePiece model and insist on the challenge's ids and a uint16-sized vocabulary.

    `vocab_size`, when given, is the size the configuration promises; a
    different model is refused rather than silently changing the model shape.
    """
    model_path = Path(path)
    if not model_path.is_file():
        raise DataError(f"{model_path}: missing ({where})")
    model = model_path.read_bytes()
    try:
        processor = spm.SentencePieceProcessor(model_proto=model)
    except (RuntimeError, OSError, TypeError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        raise DataError(f"{model_path}: not a SentencePiece model ({reason})") from None
    pieces = processor.get_piece_size()
    if pieces > MAX_VOCAB + 1:
        raise DataError(f"{model_path}: {pieces} pieces, too many for uint16 shards (at most {MAX_VOCAB + 1})")
    found = {key: getattr(processor, key)() for key in SPECIAL_IDS}
    for key, expected in SPECIAL_IDS.items():
        if found[key] != expected:
            wanted = "/".join(str(v) for v in SPECIAL_IDS.values())
            raise DataError(f"{model_path}: {key} is {found[key]}, expected {expected} (pad/bos/eos/unk = {wanted})")
    if vocab_size is not None and pieces != vocab_size:
        raise DataError(f"{where}.vocab_size is {vocab_size} but {model_path} has {pieces} pieces")
    return model


def copy_model(model: bytes, model_prefix: StrPath) -> Path:
    """Place a user-supplied model (and a .vocab rendered from it) in the dataset directory."""
    return _write_model(model, model_prefix)


def tokenizer_block(model_path: Path, relative: str, kind: str = "sentencepiece_bpe", **extra: Any) -> dict[str, Any]:
    """The manifest's `tokenizer` entry: what the record code needs to rebuild the byte accounting."""
    processor = spm.SentencePieceProcessor(model_file=str(model_path))
    return {
        "kind": kind,
        "vocab_size": processor.get_piece_size(),
        **{key: SPECIAL_IDS[key] for key in ("bos_id", "eos_id", "pad_id", "unk_id")},
        "model": relative,
        **extra,
    }
