"""Tests for the shard format (pgolf.shards), the manifest (pgolf.data), tokenizers
(pgolf.tokenizer), the docs route (pgolf.docs) and the local route (pgolf.local).

Everything runs on small synthetic data generated here, so the suite needs no
downloads and finishes in seconds.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import random
import shutil
import struct
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

import pgolf.docs as docs_module
from pgolf.data import DataError, shard_paths, verify_dataset
from pgolf.docs import Batch, build_docs_dataset, encode_batches, encode_docs, iter_docs, read_batches
from pgolf.local import fingerprint, index_local_dataset
from pgolf.shards import (
    HEADER_BYTES,
    MAGIC,
    VERSION,
    ShardError,
    ShardStream,
    atomic_writer,
    read_header,
    read_shard,
    sha256_file,
    write_shard,
)
from pgolf.tokenizer import load_checked_model, train_tokenizer

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


def build(corpus: Path, out_dir: Path, *, vocab_size=VOCAB_SIZE, train_docs=0, model=None, workers=1, **overrides) -> dict:
    tokenizer = {"model": model, "vocab_size": vocab_size} if model else {"vocab_size": vocab_size, "train_docs": train_docs}
    settings = {"num_val_docs": VAL_DOCS, "shard_tokens": SHARD_TOKENS, "tokenizer": tokenizer, "workers": workers,
                "log": lambda _: None}
    return build_docs_dataset(corpus, out_dir, **{**settings, **overrides})


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


def upstream_shard_bytes(tokens: list[int]) -> bytes:
    """The challenge's shard bytes, built independently: 256 int32 LE (magic, version, count, zeros) + uint16 LE."""
    header = struct.pack("<256i", MAGIC, VERSION, len(tokens), *([0] * 253))
    return header + struct.pack(f"<{len(tokens)}H", *tokens)


def test_shard_bytes_match_the_challenge_format_exactly(tmp_path):
    tokens = [1, 0, 65535, 300, 2, 7]
    path = tmp_path / "fineweb_val_000000.bin"
    digest = write_shard(path, np.array(tokens, dtype=np.int64))
    assert path.read_bytes() == upstream_shard_bytes(tokens)
    assert digest == hashlib.sha256(upstream_shard_bytes(tokens)).hexdigest()


def test_shard_stream_cuts_at_exact_boundaries_across_appends(tmp_path):
    stream = ShardStream(tmp_path, "train", 5)
    for piece in ([1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11], [12]):  # pieces straddle shard boundaries
        stream.add(np.array(piece, dtype=np.uint16))
    entries = stream.close()
    assert [e["path"] for e in entries] == ["fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_train_000002.bin"]
    assert [read_shard(tmp_path / e["path"]).tolist() for e in entries] == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12]]
    assert all(e["sha256"] == sha256_file(tmp_path / e["path"]) and e["num_tokens"] == len(read_shard(tmp_path / e["path"]))
               for e in entries)
    assert stream.close() == entries  # closing again writes nothing more


# ---------------------------------------------------------------- reading docs


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.xz"])
def test_iter_docs_reads_all_formats_and_keeps_blank_texts_as_documents(tmp_path, suffix):
    records = [{"text": "first doc", "url": "x"}, {"text": "  \n\t"}, {"text": ""}, {"text": "second\ndoc", "n": 2}]
    path = write_corpus(tmp_path / f"c{suffix}", records)
    # Every line is a document, as in the challenge's exporter; blank texts become a lone BOS.
    assert list(iter_docs(path)) == ["first doc", "  \n\t", "", "second\ndoc"]


def test_blank_lines_are_not_documents(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "a"}\n\n   \n{"text": "b"}\n', encoding="utf-8")
    assert list(iter_docs(path)) == ["a", "b"]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (['{"text": "ok"}', '{"body": "no text key"}'], 'line 2: no string "text" field'),
        (['{"text": "ok"}', '{"text": 7}'], 'line 2: no string "text" field'),
        (['{"text": "a"}', "", '{"text": "c"'], "line 3: invalid JSON"),
    ],
)
def test_bad_lines_are_named_with_their_number(tmp_path, lines, expected):
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        list(iter_docs(path))
    assert str(caught.value).startswith(f"{path}: {expected}")


def test_missing_and_unsupported_docs_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: missing"):
        list(iter_docs(tmp_path / "nope.jsonl"))
    (tmp_path / "docs.txt").write_text("x")
    with pytest.raises(DataError, match=r"docs\.txt: unsupported docs file type"):
        list(iter_docs(tmp_path / "docs.txt"))


def test_batches_never_mix_splits_and_number_their_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(docs_module, "BATCH_DOCS", 4)
    path = tmp_path / "c.jsonl"
    path.write_text("".join(f'{{"text": "d{i}"}}\n' + ("\n" if i == 5 else "") for i in range(11)), encoding="utf-8")
    batches = list(read_batches(path, num_val_docs=6))
    assert [(b.split, b.first_line, len([ln for ln in b.lines if ln.strip()])) for b in batches] == [
        ("val", 1, 4), ("val", 5, 2), ("train", 8, 4), ("train", 12, 1)]
    texts = [json.loads(line)["text"] for b in batches for line in b.lines if line.strip()]
    assert texts == [f"d{i}" for i in range(11)]


# ---------------------------------------------------------------- the docs route


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
        "source": {"trained_on": "train docs", "vocab_size": VOCAB_SIZE, "train_docs": 0},
    }
    assert manifest["source"]["kind"] == "docs" and manifest["source"]["num_val_docs"] == VAL_DOCS


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
    texts = ["the river", "a city of water", "", "42"]
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


def test_same_corpus_gives_byte_identical_shards_on_two_runs(corpus, dataset, tmp_path):
    """A second run, in another directory and with two worker processes, writes the very same bytes."""
    out_dir, manifest = dataset
    again = build(corpus, tmp_path / "again", workers=2)
    assert again == manifest
    for entry in manifest["files"]:
        assert (tmp_path / "again" / entry["path"]).read_bytes() == (out_dir / entry["path"]).read_bytes()


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
        ({"num_val_docs": NUM_DOCS}, rf"num_val_docs {NUM_DOCS} leaves no training documents \({NUM_DOCS} documents\)"),
        ({"num_val_docs": 0}, r"num_val_docs 0 must be at least 1"),
        ({"shard_tokens": 0}, r"shard_tokens 0 must be at least 1"),
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
    repair = f"`snakemake --cores all --force {dataset_copy}` rebuilds the data byte-identical (only that job); nothing downstream reruns"
    assert str(caught.value) == f"{shard}: 200 bytes on disk, manifest says {expected}; repair: {repair}"


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


# ---------------------------------------------------------------- tokenizer: spec and given models


def spm_model(tmp_path: Path, name: str, **options) -> Path:
    """A tiny SentencePiece model with the given trainer options (to build wrong ones on purpose)."""
    buffer = io.BytesIO()
    settings = {"vocab_size": 300, "model_type": "bpe", "byte_fallback": True, "hard_vocab_limit": False, "minloglevel": 2,
                "pad_id": 0, "bos_id": 1, "eos_id": 2, "unk_id": 3, **options}
    spm.SentencePieceTrainer.train(sentence_iterator=iter(make_docs(200, seed=3)), model_writer=buffer, **settings)
    path = tmp_path / f"{name}.model"
    path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.parametrize(("vocab_size", "pattern"), [(100, r"vocab_size 100 is outside \[260, 65535\]"),
                                                     (70000, r"vocab_size 70000 is outside \[260, 65535\]")])
def test_tokenizer_spec_with_a_bad_vocab_size_is_refused(corpus, tmp_path, vocab_size, pattern):
    with pytest.raises(DataError, match=pattern):
        build(corpus, tmp_path / "out", vocab_size=vocab_size)


def test_given_model_with_other_special_ids_is_refused(tmp_path):
    model = spm_model(tmp_path, "shifted", unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    with pytest.raises(DataError) as caught:
        load_checked_model(model)
    assert str(caught.value) == f"{model}: pad_id is -1, expected 0 (pad/bos/eos/unk = 0/1/2/3)"


def test_given_model_must_match_the_configured_vocab_size(corpus, tmp_path):
    model = spm_model(tmp_path, "small")
    with pytest.raises(DataError, match=rf"data.docs.tokenizer.vocab_size is 512 but {model} has 300 pieces"):
        build(corpus, tmp_path / "out", model=str(model), vocab_size=512)


def test_given_model_that_is_missing_or_not_a_model_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nothing\.model: missing"):
        load_checked_model(tmp_path / "nothing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(DataError, match=r"junk\.model: not a SentencePiece model"):
        load_checked_model(junk)


def test_tokenizer_training_can_be_capped_to_the_first_train_docs(corpus, dataset, tmp_path):
    capped = build(corpus, tmp_path / "capped", train_docs=20)
    assert capped["tokenizer"]["source"]["train_docs"] == 20
    full = (dataset[0] / "tokenizer.model").read_bytes()
    assert (tmp_path / "capped/tokenizer.model").read_bytes() != full
    # the capped model equals one trained directly on those 20 documents
    direct = train_tokenizer(make_docs(NUM_DOCS)[VAL_DOCS : VAL_DOCS + 20], VOCAB_SIZE, tmp_path / "direct")
    assert direct.read_bytes() == (tmp_path / "capped/tokenizer.model").read_bytes()


# ---------------------------------------------------------------- the exporter's format, byte for byte


def upstream_export(docs: list[str], model: Path, num_val_docs: int, shard_size: int) -> dict[str, bytes]:
    """What the challenge's exporter writes, rebuilt from its description (record-anatomy §3.3/§3.5).

    Every document becomes [BOS] + sp.encode(text); documents are concatenated and cut
    every `shard_size` tokens; the val -> train switch flushes the partial val shard.
    """
    sp = spm.SentencePieceProcessor(model_file=str(model))
    out: dict[str, bytes] = {}
    for split, split_docs in (("val", docs[:num_val_docs]), ("train", docs[num_val_docs:])):
        stream = [t for text in split_docs for t in [1, *sp.encode(text)]]
        for index, start in enumerate(range(0, len(stream), shard_size)):
            out[f"fineweb_{split}_{index:06d}.bin"] = upstream_shard_bytes(stream[start : start + shard_size])
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_docs_route_writes_exactly_what_the_challenge_exporter_writes(tmp_path, monkeypatch, workers):
    monkeypatch.setattr(docs_module, "BATCH_DOCS", 7)  # many batches, straddling shards and the split
    texts = make_docs(120, seed=5)
    texts[3] = ""  # a blank document is a lone BOS, and still counts towards num_val_docs
    texts[50] = "Unicode: ﬁ café ½ – 😀 and digits 20240520"
    path = write_corpus(tmp_path / "docs.jsonl.gz", [{"text": t} for t in texts])
    model = spm_model(tmp_path, "given")
    manifest = build(path, tmp_path / "out", model=str(model), vocab_size=300, num_val_docs=11, shard_tokens=333,
                     workers=workers)
    expected = upstream_export(texts, model, num_val_docs=11, shard_size=333)
    written = {e["path"]: (tmp_path / "out" / e["path"]).read_bytes() for e in manifest["files"] if e["split"] != "tokenizer"}
    assert list(written) == list(expected)
    assert written == expected
    assert len(expected) > 4 and manifest["stats"]["docs_val"] == 11 and manifest["stats"]["docs_train"] == 109
    assert (tmp_path / "out/tokenizer.model").read_bytes() == model.read_bytes()


@pytest.mark.parametrize("start_method", ["spawn", docs_module.START_METHOD])
def test_encoding_holds_a_bounded_number_of_batches(tmp_path, corpus, start_method):
    """Streaming: with 2 workers, at most 3 batches per worker are read ahead of the one being written."""
    sp_model = spm_model(tmp_path, "m")
    pulled = []

    def batches():
        for index in range(40):
            pulled.append(index)
            yield Batch("train", 1, ['{"text": "the river and the city"}\n'] * 50)

    stream = encode_batches(batches(), sp_model, corpus, workers=2, start_method=start_method)
    first = next(stream)
    assert first[0] == "train" and first[1].docs == 50
    assert len(pulled) == 6
    consumed = 1 + sum(1 for _ in stream)
    assert consumed == 40


def test_a_bad_line_stops_the_parallel_encoder_naming_it(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join('{"text": "ok"}\n' for _ in range(50)) + '{"txt": "bad"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{path}: line 51: no string \"text\" field"):
        build(path, tmp_path / "out", model=str(spm_model(tmp_path, "m")), vocab_size=300, num_val_docs=5, workers=2)
    assert not (tmp_path / "out/manifest.json").exists()


# ---------------------------------------------------------------- the local route


@pytest.fixture
def user_dataset(tmp_path) -> tuple[Path, Path]:
    """The upstream layout: data/datasets/fineweb10B_sp1024/*.bin and data/tokenizers/*.model."""
    data = tmp_path / "user/data"
    shards = data / "datasets/fineweb10B_sp1024"
    shards.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_shard(shards / "fineweb_val_000000.bin", rng.integers(0, 300, 700))
    for i in range(3):
        write_shard(shards / f"fineweb_train_{i:06d}.bin", rng.integers(0, 300, 400 + i))
    (data / "tokenizers").mkdir()
    model = spm_model(data / "tokenizers", "fineweb_1024_bpe")
    return shards, model


def snapshot(directory: Path) -> dict[str, tuple]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns, p.stat().st_mode, sha256_file(p))
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_local_dataset_is_indexed_in_place_and_never_modified(user_dataset, tmp_path):
    shards, model = user_dataset
    before = snapshot(tmp_path / "user")
    manifest = index_local_dataset(shards, model, tmp_path / "results/data/x", train_shards=2, log=lambda _: None)
    assert snapshot(tmp_path / "user") == before
    assert sorted(p.name for p in (tmp_path / "results/data/x").iterdir()) == ["manifest.json"]  # nothing copied
    assert manifest["root"] == str((tmp_path / "user/data").resolve())
    assert [f["path"] for f in manifest["files"]] == [
        "tokenizers/fineweb_1024_bpe.model", "datasets/fineweb10B_sp1024/fineweb_val_000000.bin",
        "datasets/fineweb10B_sp1024/fineweb_train_000000.bin", "datasets/fineweb10B_sp1024/fineweb_train_000001.bin"]
    assert manifest["stats"] == {"tokens_val": 700, "tokens_train": 801}
    manifest_path = tmp_path / "results/data/x/manifest.json"
    assert verify_dataset(manifest_path, hashes=True) == {"files": 4, "tokens_train": 801, "tokens_val": 700}
    assert shard_paths(manifest_path, "train") == [shards.resolve() / "fineweb_train_000000.bin", shards.resolve() / "fineweb_train_000001.bin"]


def test_record_code_reads_a_manifest_with_a_root(user_dataset, tmp_path):
    from runtime import manifest_paths, read_manifest, tokenizer_path  # the shipped record code

    shards, model = user_dataset
    index_local_dataset(shards, model, tmp_path / "m", log=lambda _: None)
    manifest = read_manifest(str(tmp_path / "m/manifest.json"))
    assert manifest_paths(manifest, "val") == [shards.resolve() / "fineweb_val_000000.bin"]
    assert tokenizer_path(manifest) == model.resolve()


@pytest.mark.parametrize(
    ("damage", "pattern"),
    [
        (lambda s: (s / "fineweb_train_000001.bin").unlink(), r"fineweb_train_000001\.bin missing \(found 2 train shards up to index 2\)"),
        (lambda s: overwrite_int32(s / "fineweb_train_000002.bin", 0, 99), r"fineweb_train_000002\.bin: bad magic 99"),
        (lambda s: write_shard(s / "fineweb_val_000000.bin", [1, 2, 300]), r"fineweb_val_000000\.bin: token id 300 is not below the tokenizer's 300 pieces"),
        (lambda s: [p.unlink() for p in s.glob("fineweb_val_*")], r"no fineweb_val_NNNNNN\.bin shards"),
    ],
)
def test_local_dataset_format_problems_are_named(user_dataset, tmp_path, damage, pattern):
    shards, model = user_dataset
    damage(shards)
    with pytest.raises((DataError, ShardError), match=pattern):
        index_local_dataset(shards, model, tmp_path / "out", log=lambda _: None)
    assert not (tmp_path / "out/manifest.json").exists()


def test_local_fingerprint_follows_headers_and_hashes_only_when_asked(user_dataset):
    shards, model = user_dataset
    cheap, full = fingerprint(shards, model), fingerprint(shards, model, sha256=True)
    assert fingerprint(shards, model) == cheap and cheap != full
    assert fingerprint(shards, model, train_shards=2) != cheap
    shard = shards / "fineweb_train_000000.bin"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 1  # same size and header: only the sha256 fingerprint sees it
    shard.write_bytes(bytes(data))
    assert fingerprint(shards, model) == cheap and fingerprint(shards, model, sha256=True) != full
    write_shard(shard, np.arange(401) % 300)  # a different token count changes the header
    assert fingerprint(shards, model) != cheap
    with pytest.raises(DataError, match=r"data.local.train_shards: 5 requested, .* has 3"):
        fingerprint(shards, model, train_shards=5)
