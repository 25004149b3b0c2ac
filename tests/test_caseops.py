"""CaseOps in our own stages: pgolf.caseops against the 1.0611 record's lossless_caps.py, the
docs route's CaseOps option (tokenizer, shards, val byte sidecars) against the record's own
prepare_caseops_data.py, and bits per byte counted from the sidecar."""

from __future__ import annotations

import json
import lzma
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import RECORD_1_0611 as RECORD, REPO, extract_record

VAL_DOCS = 30
# Capitals in every position, one-letter words, operator characters in the text, non-ASCII letters.
EXTRA = [
    "ÉCOLE Straße: NASA and the CamelCase iPhone, A I McDonald ABc aBC x\ue001y \ue004\ue004 Z\ue003",
    "Title Case Line\n\nALL CAPS LINE  with  double  spaces\tand a tab, ＡＢＣ fullwidth, 𝔘nicode ﬁ",
]


def embedded_texts() -> list[str]:
    with lzma.open(REPO / "data/corpus/embedded.jsonl.xz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


@pytest.fixture(scope="module")
def record(tmp_path_factory) -> Path:
    """The 1.0611 record's folder, extracted from the upstream corpus."""
    return extract_record(tmp_path_factory, RECORD, "lossless_caps.py")


@pytest.fixture(scope="module")
def caps(record):
    from pgolf.byo_data import load_record_module

    return load_record_module(record, "lossless_caps")


# ---------------------------------------------------------------------------- the transform


def test_encode_equals_the_records_on_every_embedded_document(caps):
    from pgolf import caseops

    texts = embedded_texts() + EXTRA
    encode = caps.get_text_transform("lossless_caps_caseops_v1")
    mismatched = [i for i, text in enumerate(texts) if caseops.encode(text) != encode(text)]
    assert mismatched == [] and len(texts) == 2056
    assert list(caseops.OPERATORS) == caps.get_text_transform_control_symbols("lossless_caps_caseops_v1")


def test_decode_inverts_encode_on_every_embedded_document():
    from pgolf import caseops

    texts = embedded_texts() + EXTRA
    assert [i for i, text in enumerate(texts) if caseops.decode(caseops.encode(text)) != text] == []
    # The transform did something: capitals became operators (so the check above is not vacuous).
    assert caseops.encode(EXTRA[0]).startswith("É\ue002cole \ue001straße: \ue002nasa")


def test_known_encodings():
    from pgolf import caseops

    assert caseops.encode("The NASA iPhone A McDonald") == "\ue001the \ue002nasa i\ue003phone \ue001a \ue001mc\ue003donald"
    assert caseops.encode("a\ue001b") == "a\ue004\ue001b"


@pytest.mark.parametrize("bad", ["\ue001", "\ue001 a", "a\ue001b", "\ue003\ue003a", "\ue004", "\ue002\ue004\ue001"])
def test_decode_refuses_text_no_original_encodes_to(bad):
    from pgolf import caseops

    with pytest.raises(caseops.CaseOpsError):
        caseops.decode(bad)


# ---------------------------------------------------------------------------- the docs route


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    """EXTRA + the first 158 embedded documents (val: the first VAL_DOCS)."""
    texts = EXTRA + embedded_texts()[:158]
    path = tmp_path_factory.mktemp("docs") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
    return path, texts


@pytest.fixture(scope="module")
def built(docs, tmp_path_factory):
    from pgolf.docs import build_docs_dataset

    out = tmp_path_factory.mktemp("caseops")
    manifest = build_docs_dataset(docs[0], out, num_val_docs=VAL_DOCS, shard_tokens=4096, log=lambda _: None,
                                  tokenizer={"vocab_size": 512, "train_docs": 0}, transform="lossless_caps_caseops_v1")
    return out, manifest


def _body(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype="<u2", offset=256 * 4)


def _split(out: Path, manifest: dict, split: str) -> np.ndarray:
    return np.concatenate([_body(out / e["path"]) for e in manifest["files"] if e["split"] == split])


def test_docs_route_writes_sidecars_of_the_original_bytes(built, docs):
    out, manifest = built
    want = sum(len(t.encode("utf-8")) for t in docs[1][:VAL_DOCS])
    tokens, counts = _split(out, manifest, "val"), _split(out, manifest, "val_bytes")
    assert int(counts.sum()) == want == manifest["stats"]["val_bytes"]
    assert len(counts) == len(tokens) == manifest["stats"]["tokens_val"] > 4096  # several shards of each
    assert (tokens == 1).sum() == VAL_DOCS and set(counts[tokens == 1].tolist()) == {0}
    sidecars = [e for e in manifest["files"] if e["split"] == "val_bytes"]
    assert [e["path"] for e in sidecars][:2] == ["fineweb_val_bytes_000000.bin", "fineweb_val_bytes_000001.bin"]
    assert [e["num_entries"] for e in sidecars] == [e["num_tokens"] for e in manifest["files"] if e["split"] == "val"]
    assert manifest["source"]["transform"] == "lossless_caps_caseops_v1"


def test_docs_route_tokenizer_reserves_the_operators(built):
    import sentencepiece as spm

    out, manifest = built
    sp = spm.SentencePieceProcessor(model_file=str(out / manifest["tokenizer"]["model"]))
    assert sp.vocab_size() == 512
    for symbol in "\ue001\ue002\ue003\ue004":
        assert sp.encode(symbol, out_type=str) == [symbol] and sp.is_control(sp.piece_to_id(symbol)) is False


def test_docs_route_tokens_decode_to_the_original_text(built, docs):
    """Val and train tokens, through the SentencePiece model and the inverse transform, give each
    document back: exactly where the tokenizer's nmt_nfkc normaliser leaves the text alone, else
    its normalised form (the same as without CaseOps)."""
    import sentencepiece as spm

    from pgolf import caseops

    out, manifest = built
    sp = spm.SentencePieceProcessor(model_file=str(out / manifest["tokenizer"]["model"]))
    tokens = np.concatenate([_split(out, manifest, "val"), _split(out, manifest, "train")])
    starts = np.flatnonzero(tokens == 1).tolist() + [len(tokens)]
    decoded = [caseops.decode(sp.decode(tokens[a + 1 : b].tolist())) for a, b in zip(starts, starts[1:])]
    assert len(decoded) == len(docs[1])

    def normalized(text: str) -> str:  # what the tokenizer keeps of a text (its spaces are shown as U+2581)
        return sp.normalize(text).replace("\u2581", " ")

    assert decoded[0] == docs[1][0] == normalized(docs[1][0])  # untouched by the normaliser: exact
    assert decoded == [normalized(t) for t in docs[1]]


def test_docs_route_manifest_verifies_and_names_a_damaged_sidecar(built):
    from pgolf.data import DataError, verify_dataset

    out, manifest = built
    assert verify_dataset(out / "manifest.json", hashes=True)["tokens_val"] == manifest["stats"]["tokens_val"]
    sidecar = out / "fineweb_val_bytes_000000.bin"
    data = bytearray(sidecar.read_bytes())
    data[-1] ^= 1
    sidecar.write_bytes(bytes(data))
    try:
        with pytest.raises(DataError, match=r"fineweb_val_bytes_000000.bin: sha256 \w+ on disk, manifest says"):
            verify_dataset(out / "manifest.json", hashes=True)
    finally:
        data[-1] ^= 1
        sidecar.write_bytes(bytes(data))


def test_docs_route_equals_the_records_prepare_script(built, docs, record, tmp_path):
    """Same documents, same tokenizer: our val shards and byte sidecars are byte for byte those the
    record's prepare_caseops_data.py writes (run unchanged, as byo does)."""
    from pgolf.byo_data import PREPARE_PATH_ENV, build, prepare_env

    probe = "import sentencepiece as s; print(hasattr(s.SentencePieceProcessor, 'encode_as_immutable_proto'))"
    if subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=prepare_env()).stdout.strip() != "True":
        pytest.skip(f"the record's script needs sentencepiece 0.2.0-0.2.2 (set {PREPARE_PATH_ENV})")
    out, manifest = built
    theirs = build(record / "prepare_caseops_data.py", docs[0], tmp_path, val_docs=VAL_DOCS, vocab_size=512,
                   transform="lossless_caps_caseops_v1", tokenizer_model=out / "tokenizer.model", log=lambda _: None)
    for split in ("val", "val_bytes"):
        assert np.array_equal(_split(out, manifest, split), _split(tmp_path, theirs, split)), split
    assert theirs["stats"]["val_bytes"] == manifest["stats"]["val_bytes"]


def test_bad_transform_and_unreserved_tokenizer_are_one_line(docs, built, tmp_path):
    from pgolf.data import DataError
    from pgolf.docs import build_docs_dataset
    from pgolf.tokenizer import train_tokenizer

    with pytest.raises(DataError, match=r"^data.docs.transform 'caps' is not one of: lossless_caps_caseops_v1$"):
        build_docs_dataset(docs[0], tmp_path / "a", num_val_docs=VAL_DOCS, shard_tokens=4096, log=lambda _: None,
                           tokenizer={"vocab_size": 512, "train_docs": 0}, transform="caps")
    plain = train_tokenizer(docs[1][VAL_DOCS:], 512, tmp_path / "plain")
    with pytest.raises(DataError, match=r"plain.model: no piece of its own for the CaseOps operator U\+E001"):
        build_docs_dataset(docs[0], tmp_path / "b", num_val_docs=VAL_DOCS, shard_tokens=4096, log=lambda _: None,
                           tokenizer={"model": str(plain), "vocab_size": 512}, transform="lossless_caps_caseops_v1")
    assert not (tmp_path / "b/manifest.json").exists()


# ---------------------------------------------------------------------------- scoring from the sidecar


def _eval_setup(built, n_docs: int, cfg, seed: int = 0):
    """A tiny model over the first n_docs val documents of the CaseOps dataset (their tokens end
    where document n_docs's BOS would start) and the dataset's ByteCounter; also the texts' bytes."""
    import contextlib

    import torch

    from evaluate import EvalSetup
    from model import GPT, GPTConfig
    from runtime import Dist, read_manifest
    from scoring import byte_counter

    out, manifest = built
    tokens = torch.from_numpy(_split(out, manifest, "val").astype(np.int64))
    end = int(np.flatnonzero(tokens.numpy() == 1)[n_docs])
    val_tokens = tokens[:end]
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=512, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1, ve_layers=[1],
                          bigram_vocab_size=64, bigram_dim=16)).eval()
    counter = byte_counter(read_manifest(str(out / "manifest.json")), len(val_tokens), 512, torch.device("cpu"))
    return EvalSetup(model, val_tokens, cfg, Dist("cpu"), counter, contextlib.nullcontext)


def test_sliding_and_roundtrip_bpb_count_the_original_bytes(built, docs):
    """One window holding three whole documents: the sliding and roundtrip scores equal the NLL of
    every target (model.token_nll on the whole stretch) over ln 2 times the three ORIGINAL texts'
    UTF-8 bytes, counted here from the documents, not from any sidecar."""
    import torch

    from evaluate import EvalConfig, eval_sliding
    from scoring import byte_luts, eval_sequences, target_bytes

    n_docs = 3
    probe = _eval_setup(built, n_docs, EvalConfig(seq_len=8, stride=4, batch_seqs=4))
    span = len(probe.val_tokens) - 1
    s = _eval_setup(built, n_docs, EvalConfig(seq_len=span, stride=span // 4, batch_seqs=4))
    with torch.no_grad():
        nll = s.model.token_nll(s.val_tokens[None, :-1], s.val_tokens[None, 1:]).double().sum().item()
    original = sum(len(t.encode("utf-8")) for t in docs[1][:n_docs])
    want = nll / (math.log(2) * original)
    sliding = eval_sliding(s)
    roundtrip = eval_sequences(s.model, s.val_tokens, span, 1, s.dist, s.luts, s.autocast)
    for result in (sliding, roundtrip):
        assert result["bytes"] == original and result["tokens"] == span
        assert result["val_bpb"] == pytest.approx(want, rel=1e-9)
    # The pieces' bytes would count the operators (3 bytes each): the sidecar is what made the difference.
    out, manifest = built
    luts = byte_luts(out / manifest["tokenizer"]["model"], 512, torch.device("cpu"))
    assert target_bytes(s.val_tokens[:-1], s.val_tokens[1:], luts).sum().item() > original


def test_sliding_slot_and_ttt_count_each_targets_sidecar_bytes(built, docs):
    """Overlapping windows (sliding, SLOT) and chunked TTT score every target once; the bytes they
    count are the original bytes of the documents."""
    from evaluate import EvalConfig, eval_sliding
    from slot import SlotConfig, eval_slot
    from ttt import TTTConfig, eval_ttt

    cfg = EvalConfig(seq_len=32, stride=16, batch_seqs=8)
    original = sum(len(t.encode("utf-8")) for t in docs[1][:2])
    assert eval_sliding(_eval_setup(built, 2, cfg))["bytes"] == original
    slot = SlotConfig(enabled=True, mode="causal", steps=2, lr=0.05, lr_min=0.005, batch_seqs=8)
    assert eval_slot(_eval_setup(built, 2, cfg), slot)["bytes"] == original
    ttt = TTTConfig(enabled=True, chunk_tokens=128, lr=0.05, epochs=1, batch_seqs=4)
    assert eval_ttt(_eval_setup(built, 2, cfg), ttt)["bytes"] == original
    # the per-document variants (one batch of two documents, phases between them)
    from ttt_doc import LoraTTTConfig, PhasedTTTConfig, eval_doc_ttt

    lora = LoraTTTConfig(enabled=True, chunk_tokens=16, batch_docs=2, rank=2, alpha=4.0, lr=0.01, seq_len=32)
    phased = PhasedTTTConfig(enabled=True, lora=False, prefix_docs=2, phases=1, lr=0.01, chunk_tokens=64, batch_seqs=2)
    for name in ("lora_ttt", "phased_ttt"):
        assert eval_doc_ttt(_eval_setup(built, 2, cfg), name, lora, phased)["bytes"] == original, name


def test_a_sidecar_that_does_not_match_the_val_shards_is_one_line(built, tmp_path):
    import torch

    from runtime import UserError, read_manifest
    from scoring import byte_counter

    out, built_manifest = built
    tokens_val = built_manifest["stats"]["tokens_val"]
    manifest = read_manifest(str(out / "manifest.json"))
    manifest["files"] = [f for f in manifest["files"] if f["path"] != "fineweb_val_bytes_000001.bin"]  # 4096 entries
    with pytest.raises(UserError, match=rf"manifest.json: the val byte sidecars hold {tokens_val - 4096} entries, the val shards {tokens_val} tokens$"):
        byte_counter(manifest, 100, 512, torch.device("cpu"))


# ---------------------------------------------------------------------------- the config key


def test_config_key_is_checked_and_reaches_the_data_rule(tmp_path):
    import yaml

    from conftest import copy_workflow, snakemake
    from pgolf.config import ConfigError, check_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert "transform" not in config["data"]["docs"]  # off by default
    check_config({**config, "data": {**config["data"], "docs": {**config["data"]["docs"], "transform": "lossless_caps_caseops_v1"}}})
    with pytest.raises(ConfigError, match=r"^data.docs.transform") as e:
        check_config({**config, "data": {**config["data"], "docs": {**config["data"]["docs"], "transform": "caps"}}})
    assert "\n" not in str(e.value)
    # A dry run prints the data rule's command: the option is passed only when the key is set, and
    # an explicit null keeps the data id of the absent key.
    work = copy_workflow(tmp_path / "w")

    def data_job(overlay: dict) -> tuple[str, str]:
        (work / "overlay.yaml").write_text(yaml.safe_dump({"data": {"docs": overlay}}))
        out = snakemake(work, "-n", "-p", configs=(".test/config.yaml", "overlay.yaml"))
        text = out.stdout + out.stderr
        assert out.returncode == 0, text[-2000:]
        command = next(line for line in text.splitlines() if "pgolf data-docs" in line)
        data_id = text.split("results/data/", 1)[1].split("/", 1)[0]
        return command, data_id

    plain, plain_id = data_job({})
    null, null_id = data_job({"transform": None})
    caseops_cmd, caseops_id = data_job({"transform": "lossless_caps_caseops_v1"})
    assert "--transform" not in plain and null == plain and null_id == plain_id
    assert "--transform lossless_caps_caseops_v1" in caseops_cmd and caseops_id != plain_id


# ---------------------------------------------------------------------------- the bundled script


def test_bundled_train_gpt_scores_a_caseops_dataset_from_its_sidecar(built, tmp_path, monkeypatch):
    """train_gpt.py as shipped (training stubbed out) exports, reloads and scores the CaseOps val
    tokens: roundtrip and sliding count the sidecar's bytes of the scored targets, read here
    straight from the sidecar files, not the pieces' bytes."""
    import importlib.util

    import torch

    from pgolf.bundle import bundle
    from scoring import byte_luts, target_bytes

    seq_len, max_tokens = 128, 1024
    config = {"train": {"model": {"num_layers": 2, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2}, "device": "cpu"},
              "export": {"passthrough_max_numel": 1024}, "eval": {"slot": {}, "seq_len": seq_len, "stride": 64, "batch_seqs": 4,
                                                                  "max_tokens": max_tokens, "audit_windows": 0}}
    path = tmp_path / "train_gpt.py"
    path.write_text(bundle(config))
    spec = importlib.util.spec_from_file_location("caseops_train_gpt", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)
    spec.loader.exec_module(script)

    def trained(tcfg, model_cfg, manifest, seed, dist, log):
        torch.manual_seed(seed)
        return script.GPT(model_cfg), {"train_time_ms": 1.0}

    script.train = trained
    out, manifest = built
    script.record_main(["--data", str(out / "manifest.json"), "--seed", "1", "--out-dir", str(tmp_path)], config)
    results = json.loads((tmp_path / "results.json").read_text())
    sidecar, tokens = _split(out, manifest, "val_bytes"), _split(out, manifest, "val")
    want = int(sidecar[1 : max_tokens + 1].sum())
    assert results["roundtrip"]["bytes"] == results["sliding"]["bytes"] == want
    assert results["sliding"]["tokens"] == max_tokens
    luts = byte_luts(out / manifest["tokenizer"]["model"], 512, torch.device("cpu"))
    span = torch.from_numpy(tokens[: max_tokens + 1].astype(np.int64))
    assert target_bytes(span[:-1], span[1:], luts).sum().item() != want


def test_local_source_indexes_byte_sidecars_and_scoring_uses_them(built, tmp_path):
    """data.source local on a CaseOps folder: the sidecars are listed as val_bytes like the docs
    route's (before, they were left out and the evals silently counted the pieces' bytes)."""
    import shutil

    import torch

    from pgolf.data import verify_dataset
    from pgolf.local import index_local_dataset
    from runtime import read_manifest
    from scoring import byte_counter

    out, manifest = built
    folder = tmp_path / "ds"
    folder.mkdir()
    for entry in manifest["files"]:
        shutil.copy(out / entry["path"], folder / entry["path"])
    local = index_local_dataset(folder, folder / "tokenizer.model", tmp_path / "m", log=lambda _: None)
    sidecars = [e for e in local["files"] if e["split"] == "val_bytes"]
    assert [(e["path"], e["num_entries"]) for e in sidecars] == [
        (e["path"], e["num_entries"]) for e in manifest["files"] if e["split"] == "val_bytes"]
    assert verify_dataset(tmp_path / "m/manifest.json", hashes=True)["tokens_val"] == manifest["stats"]["tokens_val"]
    counter = byte_counter(read_manifest(str(tmp_path / "m/manifest.json")), 5000, 512, torch.device("cpu"))
    assert counter.sidecar.tolist() == _split(out, manifest, "val_bytes")[:5000].tolist()


def test_piece_spans_of_a_long_text_tile_it_and_count_its_bytes(built, docs):
    """Beyond 16 KiB the spans' offsets take three-byte varints: the reader still gives
    SentencePiece's own ids, spans that tile the transformed text, and the original byte total."""
    import sentencepiece as spm

    from pgolf import caseops

    out, manifest = built
    sp = spm.SentencePieceProcessor(model_file=str(out / manifest["tokenizer"]["model"]))
    original = "\n\n".join(docs[1][:20])
    text = caseops.encode(original)
    raw = text.encode("utf-8")
    assert len(raw) > 1 << 16
    spans = caseops.piece_spans(sp.encode(text, out_type="serialized_proto"))
    assert [i for i, _, _ in spans] == sp.encode(text)
    assert b"".join(raw[b:e] for _, b, e in spans) == raw
    ((ids, counts),) = caseops.token_byte_counts(sp, [text])
    assert sum(counts) == len(original.encode("utf-8")) and len(ids) == len(counts) == len(spans)
