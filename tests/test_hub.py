"""data.source = hub: the download logic against a fake dataset repo on disk (hf_hub_download stubbed).

The HTTP side (a local fake hub server, resume, retries) is the real-data issue's work; these
tests pin down what we do with the files: which ones, where they land, what the manifest says.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import huggingface_hub
from pgolf.data import DataError, verify_dataset
from pgolf.hub import download_dataset
from pgolf.shards import write_shard


def fake_repo(root, *, train_files=3, model_path="tokenizers/fineweb_1024_bpe.model"):
    """The export layout: paths in manifest.json are relative to the remote root (datasets/)."""
    ds = root / "datasets/datasets/fineweb10B_sp1024"
    ds.mkdir(parents=True)
    write_shard(ds / "fineweb_val_000000.bin", np.arange(100) % 1024)
    for i in range(train_files):
        write_shard(ds / f"fineweb_train_{i:06d}.bin", np.full(50 + i, i))
    tok = root / "datasets/tokenizers"
    tok.mkdir(parents=True)
    (tok / "fineweb_1024_bpe.model").write_bytes(b"sentencepiece model bytes")
    manifest = {
        "datasets": [{"name": "fineweb10B_sp1024", "tokenizer_name": "sp_bpe_1024",
                      "stats": {"files_train": train_files, "files_val": 1}}],
        "tokenizers": [{"name": "sp_bpe_1024", "kind": "sentencepiece_bpe", "vocab_size": 1024,
                        "bos_id": 1, "eos_id": 2, "model_path": model_path}],
    }
    (root / "datasets/manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def hub(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    calls = []

    def fake_download(repo_id, filename, repo_type, revision):
        calls.append((repo_id, filename, repo_type, revision))
        path = repo / filename
        if not path.is_file():
            raise FileNotFoundError(filename)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    return repo, calls


def download(out, **kw):
    args = dict(repo_id="willdepueoai/parameter-golf", revision="abc123", remote_root="datasets", variant="sp1024", train_shards=2, log=lambda m: None)
    args.update(kw)
    return download_dataset(out, **args)


def test_fetches_val_first_train_shards_and_tokenizer(hub, tmp_path):
    repo, calls = hub
    fake_repo(repo)
    manifest = download(tmp_path / "data")
    fetched = [c[1] for c in calls]
    assert fetched[0] == "datasets/manifest.json"
    assert "datasets/datasets/fineweb10B_sp1024/fineweb_train_000002.bin" not in fetched  # only the first 2
    assert {c[2] for c in calls} == {"dataset"} and {c[3] for c in calls} == {"abc123"}
    assert manifest["stats"] == {"tokens_val": 100, "tokens_train": 50 + 51}
    assert manifest["tokenizer"]["vocab_size"] == 1024 and manifest["source"]["revision"] == "abc123"
    summary = verify_dataset(tmp_path / "data/manifest.json", hashes=True)
    assert summary == {"files": 4, "tokens_train": 101, "tokens_val": 100}
    assert not list((tmp_path / "data").glob("*.part"))


def test_asking_for_more_train_shards_than_exist_is_refused(hub, tmp_path):
    repo, _ = hub
    fake_repo(repo, train_files=2)
    with pytest.raises(DataError, match=r"data.hub.train_shards: 5 requested, willdepueoai/parameter-golf@abc123 has 2"):
        download(tmp_path / "data", train_shards=5)


def test_tokenizer_path_escaping_the_repo_is_refused(hub, tmp_path):
    repo, _ = hub
    fake_repo(repo, model_path="../../etc/passwd")
    with pytest.raises(DataError, match="escapes the data directory"):
        download(tmp_path / "data")
    assert not (tmp_path / "data/manifest.json").exists()


def test_unknown_variant_is_named(hub, tmp_path):
    repo, _ = hub
    fake_repo(repo)
    with pytest.raises(DataError, match="has no dataset named fineweb10B_sp4096"):
        download(tmp_path / "data", variant="sp4096")
