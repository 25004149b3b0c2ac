"""Tests for the shard format (pgolf.shards) and the data stage (pgolf.data).

Everything runs on a small synthetic corpus generated here, so the suite
needs no downloads and finishes in seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import random
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from pgolf.data import (
    DataError,
    build_dataset,
    encode_docs,
    load_corpus,
    shard_paths,
    train_tokenizer,
    verify_dataset,
)
from pgolf.shards import (
    HEADER_BYTES,
    MAGIC,
    VERSION,
    ShardError,
    atomic_writer,
    read_header,
    read_shard,
    sha256_file,
    write_shard,
)

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there one all we their would when what can said time people "
    "water river city garden morning letter window market story number 1987 42 3.5"
).split()
VAL_ONLY_WORD = "zebrafish"  # appears in validation documents only
NUM_DOCS = 300
VAL_DOCS = 30
VOCAB_SIZE = 320
SHARD_TOKENS = 2000
BOS = 1


def make_docs(count: int, seed: int = 0) -> list[str]:
    """English-like documents; the first VAL_DOCS mention VAL_ONLY_WORD often, the rest never."""
    rng = random.Random(seed)
    docs = []
    for index in range(count):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 40))]
        if index < VAL_DOCS:
            words += [VAL_ONLY_WORD] * 10
            rng.shuffle(words)
        docs.append(" ".join(words))
    return docs


def write_corpus(path: Path, records: list[dict]) -> Path:
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix, open)
    with opener(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def build(corpus: Path, out_dir: Path, **overrides) -> dict:
    settings = {"vocab_size": VOCAB_SIZE, "val_docs": VAL_DOCS, "shard_tokens": SHARD_TOKENS, "log": lambda _: None}
    return build_dataset(corpus, out_dir, **{**settings, **overrides})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    records = [{"id": i, "text": text} for i, text in enumerate(make_docs(NUM_DOCS))]
    return write_corpus(tmp_path_factory.mktemp("corpus") / "docs.jsonl", records)


@pytest.fixture(scope="module")
def dataset(corpus, tmp_path_factory) -> tuple[Path, dict]:
    out_dir = tmp_path_factory.mktemp("dataset")
    return out_dir, build(corpus, out_dir)


@pytest.fixture
def dataset_copy(dataset, tmp_path) -> Path:
    """A private copy to corrupt, returned as its manifest path."""
    copy = tmp_path / "copy"
    shutil.copytree(dataset[0], copy)
    return copy / "manifest.json"


def shard_entries(manifest: dict, split: str) -> list[dict]:
    return [entry for entry in manifest["files"] if entry["split"] == split]


def split_tokens(out_dir: Path, manifest: dict, split: str) -> np.ndarray:
    return np.concatenate([read_shard(out_dir / entry["path"]) for entry in shard_entries(manifest, split)])


# ---------------------------------------------------------------- shards


@pytest.mark.parametrize("count", [0, 1, 1000])
def test_shard_round_trip_has_exact_size_and_header(tmp_path, count):
    tokens = np.random.default_rng(0).integers(0, 1 << 16, size=count)
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, tokens)

    assert path.stat().st_size == HEADER_BYTES + 2 * count
    header = np.fromfile(path, dtype="<i4", count=256)
    assert list(header[:3]) == [MAGIC, VERSION, count] and not header[3:].any()
    assert read_header(path) == count
    loaded = read_shard(path)
    assert loaded.dtype == np.uint16
    np.testing.assert_array_equal(loaded, tokens)


@pytest.mark.parametrize("bad", [65536, -1])
def test_write_shard_rejects_tokens_outside_uint16(tmp_path, bad):
    path = tmp_path / "fineweb_val_000000.bin"
    with pytest.raises(ShardError) as caught:
        write_shard(path, [5, 7, bad, 9])
    assert str(path) in str(caught.value) and str(bad) in str(caught.value) and "index 2" in str(caught.value)
    assert not path.exists()


def overwrite_int32(path: Path, slot: int, value: int) -> None:
    with open(path, "r+b") as handle:
        handle.seek(4 * slot)
        handle.write(np.int32(value).tobytes())


def test_bad_magic_is_reported_with_both_numbers(tmp_path):
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, [1, 2, 3])
    overwrite_int32(path, 0, 12345)
    with pytest.raises(ShardError, match=r"bad magic 12345 \(expected 20240520\)") as caught:
        read_shard(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_unsupported_version_is_reported(tmp_path):
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, [1, 2, 3])
    overwrite_int32(path, 1, 2)
    with pytest.raises(ShardError, match=r"unsupported version 2 \(expected 1\)"):
        read_header(path)


def test_truncated_shard_reports_sizes(tmp_path):
    path = tmp_path / "fineweb_train_000003.bin"
    write_shard(path, np.arange(1000))
    with open(path, "r+b") as handle:
        handle.truncate(3000)
    with pytest.raises(ShardError) as caught:
        read_shard(path)
    message = str(caught.value)
    assert message == f"{path}: size 3000 bytes but header says 1000 tokens (expected 3024 bytes)"


def test_file_shorter_than_header_and_missing_file(tmp_path):
    short = tmp_path / "short.bin"
    short.write_bytes(b"\0" * 40)
    with pytest.raises(ShardError, match=r"short\.bin: file shorter than the 1024-byte header \(40 bytes\)"):
        read_header(short)
    missing = tmp_path / "fineweb_val_000009.bin"
    with pytest.raises(ShardError, match=r"fineweb_val_000009\.bin: missing$"):
        read_shard(missing)


def test_interrupted_write_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, [4, 5, 6])
    before = path.read_bytes()
    with pytest.raises(RuntimeError), atomic_writer(path) as handle:
        handle.write(b"partial")
        raise RuntimeError("killed mid-write")
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(bytes(range(256)) * 41)
    assert sha256_file(path, chunk=1000) == hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- corpus


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.xz"])
def test_load_corpus_reads_all_formats_and_skips_blank_texts(tmp_path, suffix):
    records = [{"text": "first doc", "url": "x"}, {"text": "  \n\t"}, {"text": ""}, {"text": "second\ndoc", "n": 2}]
    docs = load_corpus(write_corpus(tmp_path / f"c{suffix}", records))
    assert [doc["text"] for doc in docs] == ["first doc", "second\ndoc"]


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([], "corpus has no text (0 non-empty documents)"),
        ([{"text": " "}, {"text": "\n"}], "corpus has no text (0 non-empty documents)"),
        ([{"text": "ok"}, {"body": "no text key"}], 'line 2: no string "text" field'),
        ([{"text": "ok"}, {"text": 7}], 'line 2: no string "text" field'),
    ],
)
def test_load_corpus_rejects_bad_content(tmp_path, records, expected):
    path = write_corpus(tmp_path / "c.jsonl", records)
    with pytest.raises(DataError) as caught:
        load_corpus(path)
    assert str(caught.value) == f"{path}: {expected}"


def test_load_corpus_names_the_line_with_invalid_json(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"text": "c"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.jsonl: line 3: invalid JSON"):
        load_corpus(path)


def test_load_corpus_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: missing"):
        load_corpus(tmp_path / "nope.jsonl")


# ---------------------------------------------------------------- build_dataset


def test_build_writes_every_file_and_the_manifest(dataset):
    out_dir, manifest = dataset
    assert json.loads((out_dir / "manifest.json").read_text()) == manifest
    names = [entry["path"] for entry in manifest["files"]]
    val_names = [n for n in names if n.startswith("fineweb_val_")]
    train_names = [n for n in names if n.startswith("fineweb_train_")]
    assert names == ["tokenizer.model", "tokenizer.vocab", *val_names, *train_names]
    assert val_names == [f"fineweb_val_{i:06d}.bin" for i in range(len(val_names))]
    assert train_names == [f"fineweb_train_{i:06d}.bin" for i in range(len(train_names))]
    assert len(train_names) > 2
    for entry in manifest["files"]:
        path = out_dir / entry["path"]
        assert path.stat().st_size == entry["bytes"] and sha256_file(path) == entry["sha256"]
    assert manifest["tokenizer"] == {
        "kind": "sentencepiece_bpe",
        "vocab_size": VOCAB_SIZE,
        "bos_id": 1,
        "eos_id": 2,
        "pad_id": 0,
        "unk_id": 3,
        "model": "tokenizer.model",
    }


def test_build_stats_match_the_shards(dataset):
    out_dir, manifest = dataset
    stats = manifest["stats"]
    docs = make_docs(NUM_DOCS)
    assert (stats["docs_total"], stats["docs_val"], stats["docs_train"]) == (NUM_DOCS, VAL_DOCS, NUM_DOCS - VAL_DOCS)
    assert stats["chars_val"] == sum(map(len, docs[:VAL_DOCS]))
    assert stats["chars_train"] == sum(map(len, docs[VAL_DOCS:]))
    for split in ("val", "train"):
        tokens = split_tokens(out_dir, manifest, split)
        assert stats[f"tokens_{split}"] == len(tokens) == sum(e["num_tokens"] for e in shard_entries(manifest, split))
        assert tokens[0] == BOS
        assert int((tokens == BOS).sum()) == stats[f"docs_{split}"]


def test_train_shards_are_full_except_the_last(dataset):
    _, manifest = dataset
    sizes = [entry["num_tokens"] for entry in shard_entries(manifest, "train")]
    assert all(size == SHARD_TOKENS for size in sizes[:-1])
    assert 0 < sizes[-1] <= SHARD_TOKENS


def test_val_shards_hold_each_document_in_order(dataset):
    out_dir, manifest = dataset
    sp = spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))
    tokens = split_tokens(out_dir, manifest, "val").tolist()
    starts = [i for i, token in enumerate(tokens) if token == BOS] + [len(tokens)]
    decoded = [sp.decode(tokens[a + 1 : b]) for a, b in pairwise(starts)]
    assert decoded == make_docs(NUM_DOCS)[:VAL_DOCS]


def test_encode_docs_prefixes_each_document_with_bos(dataset):
    out_dir, _ = dataset
    sp = spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))
    texts = ["the river", "a city of water", "42"]
    expected = [token for text in texts for token in [BOS, *sp.encode(text)]]
    encoded = encode_docs(sp, texts)
    assert encoded.dtype == np.uint16 and encoded.tolist() == expected


def test_tokenizer_never_sees_validation_documents(dataset, tmp_path):
    out_dir, _ = dataset
    sp = spm.SentencePieceProcessor(model_file=str(out_dir / "tokenizer.model"))
    assert sp.piece_to_id(VAL_ONLY_WORD) == sp.unk_id()
    assert len(sp.encode(VAL_ONLY_WORD)) > 1
    # Control: had the validation documents been used, the word would be one piece.
    control = spm.SentencePieceProcessor(
        model_file=str(train_tokenizer(make_docs(NUM_DOCS), VOCAB_SIZE, tmp_path / "control"))
    )
    assert control.piece_to_id(VAL_ONLY_WORD) != control.unk_id()


def test_build_is_deterministic(corpus, dataset, tmp_path):
    out_dir, manifest = dataset
    again = build(corpus, tmp_path / "again")
    assert again == manifest
    assert (tmp_path / "again" / "tokenizer.model").read_bytes() == (out_dir / "tokenizer.model").read_bytes()


def test_rebuild_removes_stale_shards(corpus, tmp_path):
    out_dir = tmp_path / "out"
    first = build(corpus, out_dir, shard_tokens=500)
    second = build(corpus, out_dir, shard_tokens=5000)
    assert len(second["files"]) < len(first["files"])
    on_disk = sorted(p.name for p in out_dir.iterdir())
    assert on_disk == sorted(["manifest.json", *(entry["path"] for entry in second["files"])])


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"val_docs": NUM_DOCS}, rf"val_docs {NUM_DOCS} leaves no training documents \({NUM_DOCS} "),
        ({"val_docs": 0}, r"val_docs 0 must be at least 1"),
        ({"vocab_size": 100}, r"vocab_size 100 is outside \[260, 65535\]"),
        ({"vocab_size": 70000}, r"vocab_size 70000 is outside \[260, 65535\]"),
    ],
)
def test_build_rejects_bad_settings(corpus, tmp_path, overrides, pattern):
    with pytest.raises(DataError, match=pattern):
        build(corpus, tmp_path / "out", **overrides)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_build_rejects_corpus_without_text(tmp_path):
    corpus = write_corpus(tmp_path / "blank.jsonl", [{"text": "   "}, {"text": ""}])
    with pytest.raises(DataError, match=r"corpus has no text \(0 non-empty documents\)"):
        build(corpus, tmp_path / "out")


# ---------------------------------------------------------------- verify_dataset / shard_paths


def test_verify_dataset_accepts_the_build(dataset):
    out_dir, manifest = dataset
    summary = verify_dataset(out_dir / "manifest.json", hashes=True)
    assert summary == {
        "files": len(manifest["files"]),
        "tokens_train": manifest["stats"]["tokens_train"],
        "tokens_val": manifest["stats"]["tokens_val"],
    }


def test_verify_dataset_catches_a_truncated_shard(dataset_copy):
    shard = dataset_copy.parent / "fineweb_train_000001.bin"
    with open(shard, "r+b") as handle:
        handle.truncate(200)
    with pytest.raises(DataError) as caught:
        verify_dataset(dataset_copy)
    expected = HEADER_BYTES + 2 * SHARD_TOKENS
    assert str(caught.value) == f"{shard}: 200 bytes on disk, manifest says {expected}"


def test_verify_dataset_catches_a_flipped_byte_only_with_hashes(dataset_copy):
    shard = dataset_copy.parent / "fineweb_val_000000.bin"
    data = bytearray(shard.read_bytes())
    data[HEADER_BYTES + 11] ^= 0x01
    shard.write_bytes(bytes(data))
    verify_dataset(dataset_copy)  # same size, valid header: only the hash can tell
    with pytest.raises(DataError, match=r"fineweb_val_000000\.bin: sha256 [0-9a-f]{64} on disk, manifest says"):
        verify_dataset(dataset_copy, hashes=True)


def test_verify_dataset_catches_a_corrupt_header(dataset_copy):
    shard = dataset_copy.parent / "fineweb_train_000000.bin"
    overwrite_int32(shard, 0, 777)
    with pytest.raises(ShardError, match=r"fineweb_train_000000\.bin: bad magic 777"):
        verify_dataset(dataset_copy)


def test_verify_dataset_catches_a_missing_file(dataset_copy):
    (dataset_copy.parent / "tokenizer.vocab").unlink()
    with pytest.raises(DataError, match=r"tokenizer\.vocab: missing"):
        verify_dataset(dataset_copy)


@pytest.mark.parametrize("bad_path", ["../outside.bin", "sub/../../x.bin", "/etc/passwd"])
def test_manifest_paths_must_stay_inside_the_dataset(dataset_copy, bad_path):
    manifest = json.loads(dataset_copy.read_text())
    manifest["files"][-1]["path"] = bad_path
    dataset_copy.write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="must be relative and stay inside the dataset"):
        verify_dataset(dataset_copy)
    with pytest.raises(DataError, match="must be relative and stay inside the dataset"):
        shard_paths(dataset_copy, "train")


def test_shard_paths_lists_each_split_in_order(dataset):
    out_dir, manifest = dataset
    for split in ("val", "train"):
        paths = shard_paths(out_dir / "manifest.json", split)
        assert all(path.is_absolute() and path.is_file() for path in paths)
        assert [path.name for path in paths] == [entry["path"] for entry in shard_entries(manifest, split)]
    with pytest.raises(DataError, match="unknown split 'test'"):
        shard_paths(out_dir / "manifest.json", "test")
