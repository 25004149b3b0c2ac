"""byo's CaseOps data step on CPU: the 1.0611 record's own prepare_caseops_data.py (and its
lossless_caps.py), run unchanged on a few documents, indexed in our manifest.

The check that matters: the validation byte sidecars sum to the UTF-8 byte count of the original
validation text (the record's BPB denominator), counted here straight from the documents.
"""

from __future__ import annotations

import json
import lzma
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import RECORD_1_0611 as RECORD, REPO, extract_record

VAL_DOCS = 30
# Capitals, all-caps words, accents and multi-byte characters, spacing the normaliser may touch.
EXTRA = ["ÉCOLE Straße: NASA and the CamelCase iPhone, Ünïcödé — “quotes” 𝔘nicode", "Title Case Line\n\nALL CAPS LINE  with  double  spaces\tand a tab"]


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    from pgolf.byo_data import PREPARE_PATH_ENV, prepare_env

    probe = "import sentencepiece as s; print(s.__version__, hasattr(s.SentencePieceProcessor, 'encode_as_immutable_proto'))"
    version, has = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=prepare_env()).stdout.split()
    if has != "True":  # .ci/run provides one in PGOLF_PREPARE_PYTHONPATH
        pytest.skip(f"sentencepiece {version} has no encode_as_immutable_proto, which the record's prepare_caseops_data.py "
                    f"calls (0.2.0 to 0.2.2 have it; set {PREPARE_PATH_ENV} to a folder holding one)")
    return extract_record(tmp_path_factory, RECORD, "prepare_caseops_data.py")


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """160 documents of the embedded corpus (val: the first 30, two of them the EXTRA texts)."""
    with lzma.open(REPO / "data/corpus/embedded.jsonl.xz", "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(158), f)]
    texts = EXTRA + texts
    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path, texts


@pytest.fixture(scope="module")
def built(record, docs, tmp_path_factory):
    from pgolf.byo_data import build

    out = tmp_path_factory.mktemp("caseops")
    manifest = build(record / "prepare_caseops_data.py", docs[0], out, val_docs=VAL_DOCS, vocab_size=512,
                     transform="lossless_caps_caseops_v1", tokenizer_model=None, log=lambda _: None)
    return out, manifest


def _body(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<u2", offset=256 * 4)


def test_sidecars_sum_to_the_original_val_bytes(built, docs):
    out, manifest = built
    want = sum(len(t.encode("utf-8")) for t in docs[1][:VAL_DOCS])
    sidecars = [e for e in manifest["files"] if e["split"] == "val_bytes"]
    assert len(sidecars) == 1 and sidecars[0]["path"].endswith("fineweb_val_bytes_000000.bin")
    counts = _body(out / sidecars[0]["path"])
    assert int(counts.sum()) == want == manifest["stats"]["val_bytes"]
    # One count per val token, and every document's BOS (token 1) counts no bytes.
    (val,) = [e for e in manifest["files"] if e["split"] == "val"]
    tokens = _body(out / val["path"])
    assert len(counts) == len(tokens) == val["num_tokens"] == sidecars[0]["num_entries"] == manifest["stats"]["tokens_val"]
    assert (tokens == 1).sum() == VAL_DOCS and set(counts[tokens == 1].tolist()) == {0}


def test_tokenizer_reserves_the_caseops_symbols(built):
    import sentencepiece as spm

    out, manifest = built
    sp = spm.SentencePieceProcessor(model_file=str(out / manifest["tokenizer"]["model"]))
    assert sp.vocab_size() == 512 and [sp.id_to_piece(i) for i in range(4)] == ["<pad>", "<s>", "</s>", "<unk>"]
    for symbol in "\ue001\ue002\ue003\ue004":  # TITLE, ALLCAPS, CAPNEXT, ESC
        assert sp.piece_to_id(symbol) >= 4 and sp.encode(symbol, out_type=str)[-1] == symbol


def test_manifest_lists_sizes_and_hashes_and_verifies(built):
    from pgolf.data import DataError, verify_dataset

    out, manifest = built
    assert manifest["variant"] == "sp8192_lossless_caps_caseops_v1_reserved"  # the script's folder name
    assert [e["split"] for e in manifest["files"]] == ["tokenizer", "tokenizer", "val", "val_bytes", "train"]
    stats = verify_dataset(out / "manifest.json", hashes=True)
    assert stats == {"files": 5, "tokens_train": manifest["stats"]["tokens_train"], "tokens_val": manifest["stats"]["tokens_val"]}
    sidecar = out / next(e["path"] for e in manifest["files"] if e["split"] == "val_bytes")
    data = bytearray(sidecar.read_bytes())
    data[-1] ^= 1
    sidecar.write_bytes(bytes(data))
    try:
        with pytest.raises(DataError, match=r"fineweb_val_bytes_000000.bin: sha256 \w+ on disk, manifest says"):
            verify_dataset(out / "manifest.json", hashes=True)
    finally:
        data[-1] ^= 1
        sidecar.write_bytes(bytes(data))


def test_bad_settings_are_one_line(record, docs, tmp_path):
    from pgolf.byo_data import main

    base = ["--prepare", str(record / "prepare_caseops_data.py"), "--docs", str(docs[0]), "--out-dir", str(tmp_path / "o")]
    assert main([*base, "--val-docs", "500", "--vocab-size", "512"]) == 1
    assert main([*base, "--val-docs", "5", "--vocab-size", "512", "--tokenizer-model", str(REPO / "missing.model")]) == 1
    assert not (tmp_path / "o/manifest.json").exists()


def test_bad_settings_messages(record, docs, tmp_path, capsys):
    from pgolf.byo_data import main

    base = ["--prepare", str(record / "prepare_caseops_data.py"), "--docs", str(docs[0]), "--out-dir", str(tmp_path / "o")]
    main([*base, "--val-docs", "500", "--vocab-size", "512"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {docs[0]}: 160 documents, but byo.data.val_docs is 500: nothing left to train on"]


# ---------------------------------------------------------------------------- the hub route


def test_hub_fetches_caseops_sidecars_and_names_the_variant(tmp_path):
    """data.source hub with a CaseOps variant: the val byte sidecars are planned next to the val
    shards, fetched, listed as `val_bytes` with size and sha256, and the manifest names the
    variant (so byo links them as fineweb10B_<variant>/). A fake hub serves the export's layout."""
    import hashlib
    import io

    import sentencepiece as spm

    from fakehub import FakeHub
    from pgolf.byo import link_data
    from pgolf.data import verify_dataset
    from pgolf.hub import download_dataset
    from pgolf.shards import write_shard

    variant = "sp8192_lossless_caps_caseops_v1_reserved"
    ds = f"datasets/datasets/fineweb10B_{variant}"
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["the river city garden"] * 50), model_writer=buffer, vocab_size=280,
                                   model_type="bpe", byte_fallback=True, pad_id=0, bos_id=1, eos_id=2, unk_id=3,
                                   hard_vocab_limit=False, minloglevel=2)

    def shard(values) -> bytes:
        path = tmp_path / "s.bin"
        write_shard(path, np.asarray(values, dtype=np.uint16))
        return path.read_bytes()

    files = {
        f"{ds}/fineweb_val_000000.bin": shard([1, 5, 6, 7]),
        f"{ds}/fineweb_val_bytes_000000.bin": shard([0, 3, 1, 4]),
        f"{ds}/fineweb_train_000000.bin": shard([1, 8, 9]),
        "datasets/tokenizers/caseops.model": buffer.getvalue(),
        "datasets/manifest.json": json.dumps({
            "datasets": [{"name": f"fineweb10B_{variant}", "tokenizer_name": "caseops", "path": f"datasets/fineweb10B_{variant}",
                          "stats": {"files_val": 1, "files_train": 1}}],
            "tokenizers": [{"name": "caseops", "kind": "sentencepiece_bpe", "vocab_size": 280, "model_path": "tokenizers/caseops.model"}],
        }).encode(),
    }
    hub = FakeHub("romeerp/parameter-golf-caseops-v1", files).start()
    try:
        manifest = download_dataset(tmp_path / "data", repo_id="romeerp/parameter-golf-caseops-v1", revision="main",
                                    remote_root="datasets", variant=variant, train_shards=1, attempts=1, backoff=0,
                                    endpoint=hub.url, cache_dir=str(tmp_path / "cache"), log=lambda _: None)
    finally:
        hub.stop()
    (sidecar,) = [e for e in manifest["files"] if e["split"] == "val_bytes"]
    body = files[f"{ds}/fineweb_val_bytes_000000.bin"]
    assert sidecar == {"path": "fineweb_val_bytes_000000.bin", "split": "val_bytes", "bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert manifest["variant"] == variant and manifest["stats"] == {"tokens_val": 4, "tokens_train": 3}
    assert verify_dataset(tmp_path / "data/manifest.json", hashes=True)["files"] == 5
    env = link_data(tmp_path / "data/manifest.json", tmp_path / "seed/data")
    assert sorted(p.name for p in Path(env["DATA_PATH"]).iterdir()) == [
        "fineweb_train_000000.bin", "fineweb_val_000000.bin", "fineweb_val_bytes_000000.bin"]
    assert Path(env["DATA_PATH"]).name == f"fineweb10B_{variant}"
    assert Path(env["TOKENIZER_PATH"]).name == "fineweb_280_bpe_sp8192_lossless_caps_caseops_v1_reserved.model"
