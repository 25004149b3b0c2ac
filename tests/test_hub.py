"""data.source = hub: the real download code (huggingface_hub) against a local fake hub.

The fake hub (tests/fakehub.py) serves a tiny dataset repo the way the hub
does, including the redirect of large files to a CDN and Range requests.
Nothing here needs the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm

from fakehub import COMMIT, FakeHub
from pgolf.data import DataError, verify_dataset
from pgolf.hub import download_dataset
from pgolf.shards import read_shard, write_shard

REPO = "willdepueoai/parameter-golf"
DS = "datasets/datasets/fineweb10B_sp1024"
TOKEN = "hf_fakeTOKEN_d41d8cd98f00b204e980"
VOCAB = 300


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    """A real (tiny) SentencePiece model with the challenge's ids, as the export's tokenizer."""
    rng = random.Random(0)
    words = "the of and to in a river city garden morning letter 1987 42".split()
    lines = [" ".join(rng.choice(words) for _ in range(20)) for _ in range(300)]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buffer, vocab_size=VOCAB, model_type="bpe", byte_fallback=True,
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, hard_vocab_limit=False, minloglevel=2,
    )
    return buffer.getvalue()


def shard_bytes(tmp_path: Path, num_tokens: int, seed: int) -> bytes:
    path = tmp_path / f"shard{seed}.bin"
    write_shard(path, np.random.default_rng(seed).integers(0, VOCAB, num_tokens))
    data = path.read_bytes()
    path.unlink()
    return data


def repo_files(tmp_path, model, *, train_files=3, big_train=None, model_path="tokenizers/fineweb_1024_bpe.model",
               dataset_path="datasets/fineweb10B_sp1024") -> dict[str, bytes]:
    """The export's layout; paths in manifest.json are relative to the remote root (datasets/)."""
    files = {f"{DS}/fineweb_val_000000.bin": shard_bytes(tmp_path, 3000, 100)}
    for i in range(train_files):
        size = 8_000_000 if i == big_train else 1000 + i  # 16 MB: past huggingface_hub's 10 MB read chunk
        files[f"{DS}/fineweb_train_{i:06d}.bin"] = shard_bytes(tmp_path, size, i)
    files["datasets/tokenizers/fineweb_1024_bpe.model"] = model
    files["datasets/tokenizers/fineweb_1024_bpe.vocab"] = b"<pad>\t0\n"
    manifest = {
        "version": "10B",
        "datasets": [{"name": "fineweb10B_sp1024", "tokenizer_name": "sp_bpe_1024", "path": dataset_path,
                      "stats": {"files_val": 1, "files_train": train_files}}],
        "tokenizers": [{"name": "sp_bpe_1024", "kind": "sentencepiece_bpe", "vocab_size": VOCAB, "bos_id": 1, "eos_id": 2,
                        "model_path": model_path, "vocab_path": "tokenizers/fineweb_1024_bpe.vocab"}],
    }
    files["datasets/manifest.json"] = json.dumps(manifest, indent=2).encode()
    return files


@pytest.fixture
def make_hub(tmp_path, model_bytes):
    started = []

    def make(**kw) -> FakeHub:
        hub = FakeHub(REPO, repo_files(tmp_path, model_bytes, **kw)).start()
        started.append(hub)
        return hub

    yield make
    for hub in started:
        hub.stop()


@pytest.fixture
def fetch(tmp_path):
    """Run the download in this process against a given fake hub; returns (manifest, log lines)."""

    def run(hub: FakeHub, **kw):
        lines: list[str] = []
        args = dict(repo_id=REPO, revision="main", remote_root="datasets", variant="sp1024", train_shards=2,
                    attempts=3, backoff=0, endpoint=hub.url, cache_dir=str(tmp_path / "hf-cache"), log=lines.append)
        args.update(kw)
        return download_dataset(tmp_path / "data", **args), lines

    return run


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cdn_gets(hub: FakeHub, repo_path: str):
    return [r for r in hub.gets("cdn") if r.path == hub.cdn_path(repo_path)]


# ---------------------------------------------------------------- the happy path


def test_fresh_download_checks_every_file_and_writes_the_manifest(make_hub, fetch, tmp_path):
    hub = make_hub()
    manifest, log = fetch(hub)
    out = tmp_path / "data"
    names = [f["path"] for f in manifest["files"]]
    assert names == ["upstream_manifest.json", "tokenizer.model", "tokenizer.vocab", "fineweb_val_000000.bin",
                     "fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    remote = {"upstream_manifest.json": "datasets/manifest.json", "tokenizer.model": "datasets/tokenizers/fineweb_1024_bpe.model",
              "tokenizer.vocab": "datasets/tokenizers/fineweb_1024_bpe.vocab"}
    for entry in manifest["files"]:
        served = hub.files[remote.get(entry["path"], f"{DS}/{entry['path']}")]
        assert (out / entry["path"]).read_bytes() == served
        assert entry["bytes"] == len(served) and entry["sha256"] == sha(served)
    assert manifest["source"] == {"kind": "hub", "repo_id": REPO, "revision": "main", "remote_root": "datasets",
                                  "dataset": "fineweb10B_sp1024", "train_shards": 2, "commit": COMMIT}
    assert manifest["stats"] == {"tokens_val": 3000, "tokens_train": 1000 + 1001}
    assert manifest["tokenizer"]["vocab_size"] == VOCAB and manifest["tokenizer"]["model"] == "tokenizer.model"
    assert verify_dataset(out / "manifest.json", hashes=True) == {"files": 6, "tokens_train": 2001, "tokens_val": 3000}
    # Only the first train_shards shards; everything after the first look-up pinned to the commit.
    assert not cdn_gets(hub, f"{DS}/fineweb_train_000002.bin")
    hub_paths = [r.path for r in hub.requests if r.server == "hub"]
    assert "/resolve/main/" in hub_paths[0] and all(f"/resolve/{COMMIT}/" in p for p in hub_paths[1:])
    assert any("pin data.hub.revision: " + COMMIT in line for line in log)
    # No temporary or partial file is left, and the shards are links to the cache, not second copies.
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "manifest.json"])
    assert (out / "fineweb_train_000000.bin").stat().st_nlink == 2


def test_a_pinned_commit_is_used_as_is(make_hub, fetch):
    hub = make_hub()
    manifest, log = fetch(hub, revision=COMMIT)
    assert manifest["source"]["commit"] == COMMIT == manifest["source"]["revision"]
    assert all(f"/resolve/{COMMIT}/" in r.path for r in hub.requests if r.server == "hub")
    assert not any("pin data.hub.revision" in line for line in log)


def test_rerun_over_a_complete_download_is_a_noop(make_hub, fetch, tmp_path):
    hub = make_hub()
    fetch(hub)
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "data").iterdir()}
    hub.requests.clear()
    _, log = fetch(hub)
    assert hub.requests == []
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (tmp_path / "data").iterdir()} == before
    assert log == ["data:hub up to date: 6 files checked (size and header)"]


# ---------------------------------------------------------------- damage on disk


def test_a_truncated_file_is_repaired(make_hub, fetch, tmp_path):
    hub = make_hub()
    fetch(hub)
    shard = tmp_path / "data/fineweb_train_000001.bin"
    with open(shard, "r+b") as handle:  # a hard link: the cached copy is truncated too
        handle.truncate(1500)
    hub.requests.clear()
    _, log = fetch(hub)
    assert shard.read_bytes() == hub.files[f"{DS}/fineweb_train_000001.bin"]
    assert any("need repair" in line and "fineweb_train_000001.bin: 1500 bytes on disk" in line for line in log)
    # Only the damaged file travels again.
    assert [r.path for r in hub.gets()] == [hub.cdn_path(f"{DS}/fineweb_train_000001.bin")]
    verify_dataset(tmp_path / "data/manifest.json", hashes=True)


def test_a_corrupted_file_is_caught_by_the_hash_check_and_repaired_when_asked(make_hub, fetch, tmp_path):
    hub = make_hub()
    fetch(hub)
    shard = tmp_path / "data/fineweb_val_000000.bin"
    data = bytearray(shard.read_bytes())
    data[2000] ^= 0x01
    with open(shard, "r+b") as handle:  # same size, valid header: only a hash can tell
        handle.seek(2000)
        handle.write(data[2000:2001])
    verify_dataset(tmp_path / "data/manifest.json")  # the cheap check passes...
    with pytest.raises(DataError, match=rf"{shard}: sha256 [0-9a-f]{{64}} on disk, manifest says {sha(hub.files[f'{DS}/fineweb_val_000000.bin'])}"):
        verify_dataset(tmp_path / "data/manifest.json", hashes=True)  # ...the full one names the file
    hub.requests.clear()
    fetch(hub)  # without hashes a rerun trusts size and header
    assert hub.requests == []
    _, log = fetch(hub, hashes=True)
    assert any("need repair" in line and "fineweb_val_000000.bin: sha256" in line for line in log)
    assert shard.read_bytes() == hub.files[f"{DS}/fineweb_val_000000.bin"]
    verify_dataset(tmp_path / "data/manifest.json", hashes=True)


# ---------------------------------------------------------------- trouble on the wire


def test_an_interrupted_transfer_resumes_with_a_range_request(make_hub, fetch, tmp_path):
    hub = make_hub(big_train=1)
    big = f"{DS}/fineweb_train_000001.bin"
    hub.faults[big] = ["drop"]  # the connection dies 12 MB into the 16 MB file
    manifest, _ = fetch(hub)
    gets = cdn_gets(hub, big)
    assert [g.range for g in gets] == [None, "bytes=10485760-"]  # resumed after the first complete 10 MB chunk
    assert (tmp_path / "data/fineweb_train_000001.bin").read_bytes() == hub.files[big]
    assert manifest["stats"]["tokens_train"] == 1000 + 8_000_000


def test_a_corrupt_transfer_is_retried(make_hub, fetch, tmp_path):
    hub = make_hub()
    path = f"{DS}/fineweb_train_000000.bin"
    hub.faults[path] = ["corrupt"]
    _, log = fetch(hub)
    assert len(cdn_gets(hub, path)) == 2
    assert any("attempt 1 of 3 failed" in line and "fineweb_train_000000.bin: sha256" in line for line in log)
    verify_dataset(tmp_path / "data/manifest.json", hashes=True)


def test_a_file_that_stays_corrupt_stops_the_run_naming_it(make_hub, fetch, tmp_path):
    hub = make_hub()
    path = f"{DS}/fineweb_train_000001.bin"
    hub.sticky[path] = "corrupt"
    with pytest.raises(DataError) as caught:
        fetch(hub)
    message = str(caught.value)
    assert message.startswith(f"{REPO}@main: {path}: failed after 3 attempts: fineweb_train_000001.bin: sha256 ")
    assert f"the hub says {sha(hub.files[path])}" in message and "\n" not in message
    assert len(cdn_gets(hub, path)) == 3
    assert not (tmp_path / "data/manifest.json").exists()
    assert not (tmp_path / "data/fineweb_train_000001.bin").exists()  # never a bad file under the final name


def test_a_failed_run_resumes_where_it_stopped(make_hub, fetch, tmp_path):
    hub = make_hub()
    path = f"{DS}/fineweb_train_000001.bin"
    hub.sticky[path] = "503"
    with pytest.raises(DataError, match=rf"{path}: failed after 3 attempts: .*503"):
        fetch(hub)
    out = tmp_path / "data"
    assert (out / "fineweb_train_000000.bin").is_file() and not (out / "manifest.json").exists()
    del hub.sticky[path]
    hub.requests.clear()
    fetch(hub)
    assert [r.path for r in hub.gets()] == [hub.cdn_path(path)]  # nothing fetched twice
    verify_dataset(out / "manifest.json", hashes=True)


# ---------------------------------------------------------------- what we refuse


@pytest.mark.parametrize(
    "layout",
    [{"model_path": "../../etc/passwd"}, {"model_path": "/etc/passwd"}, {"dataset_path": "datasets/../../../x"}],
)
def test_upstream_paths_escaping_the_data_directory_are_refused(make_hub, fetch, tmp_path, layout):
    hub = make_hub(**layout)
    with pytest.raises(DataError, match=r"manifest.json: .*path .* escapes the data directory"):
        fetch(hub)
    assert not (tmp_path / "data/manifest.json").exists()
    assert hub.gets("cdn") == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"train_shards": 5}, rf"data.hub.train_shards: 5 requested, {REPO}@main has 3 for fineweb10B_sp1024"),
        ({"variant": "sp4096"}, r"has no dataset named fineweb10B_sp4096 \(it has: fineweb10B_sp1024\)"),
        ({"revision": "v9"}, rf"data.hub.revision: {REPO}@v9: datasets/manifest.json: revision not found"),
        ({"repo_id": "someone/else"}, r"data.hub.repo_id: someone/else@main: .*repository not found"),
    ],
)
def test_bad_settings_stop_at_once_with_one_line(make_hub, fetch, settings, message):
    hub = make_hub()
    with pytest.raises(DataError, match=message) as caught:
        fetch(hub, **settings)
    assert "\n" not in str(caught.value)
    assert hub.gets("cdn") == []
    if "revision" in settings or "repo_id" in settings:
        assert len(hub.requests) == 1  # refusals are final: no retries


# ---------------------------------------------------------------- the CLI, configured by environment


def test_cli_uses_hf_environment_and_never_prints_the_token(make_hub, tmp_path):
    """HF_ENDPOINT / HF_HOME / HF_TOKEN as a user sets them; the token reaches the hub, not the CDN, not the log."""
    hub = make_hub()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf-home"), "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1"}

    def cli(out: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "pgolf.cli", "data-hub", "--out-dir", str(tmp_path / out), "--repo-id", REPO,
               "--revision", "main", "--train-shards", "2", "--attempts", "2", "--backoff", "0", *extra]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    ok = cli("good")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "hf-home/hub").is_dir()  # the cache went where HF_HOME says
    hub.sticky[f"{DS}/fineweb_train_000002.bin"] = "503"  # a shard the first run did not cache
    failed = cli("bad", "--train-shards", "3")
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith(f"error: {REPO}@main: {DS}/fineweb_train_000002.bin: failed after 2 attempts")
    assert "Traceback" not in failed.stderr
    for run in (ok, failed):
        assert TOKEN not in run.stdout + run.stderr
    assert "using HF_TOKEN" in ok.stdout
    # (huggingface_hub also asks the endpoint for its own /api/ registries; only file requests matter here)
    assert {r.auth for r in hub.requests if r.server == "hub" and "/resolve/" in r.path} == {f"Bearer {TOKEN}"}
    assert {r.auth for r in hub.requests if r.server == "cdn"} == {None}
    assert read_shard(tmp_path / "good/fineweb_val_000000.bin").size == 3000
