"""tools/tile_val.py: a validation split of any size, tiled from a dataset folder's own tokens."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from pgolf.local import find_shards
from pgolf.shards import read_shard, write_shard

TOOL = REPO / "tools" / "tile_val.py"


@pytest.fixture
def source(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    write_shard(src / "fineweb_val_000000.bin", np.arange(1, 8, dtype=np.uint16))  # 7 tokens
    write_shard(src / "fineweb_val_000001.bin", np.array([9, 10], dtype=np.uint16))
    write_shard(src / "fineweb_train_000000.bin", np.arange(20, 40, dtype=np.uint16))
    (src / "tokenizer.model").write_bytes(b"model")
    return src


def load_tool():
    spec = importlib.util.spec_from_file_location("tile_val", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiles_the_val_tokens_in_order_and_links_the_rest(source, tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(TOOL), str(source), str(out), "--targets", "20"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{out}: 21 validation tokens in 1 shard(s)"
    val = read_shard(out / "fineweb_val_000000.bin")
    base = [1, 2, 3, 4, 5, 6, 7, 9, 10]
    assert val.tolist() == (base * 3)[:21]
    shards = find_shards(out)
    assert [p.name for p in shards["train"]] == ["fineweb_train_000000.bin"]
    assert (out / "fineweb_train_000000.bin").is_symlink() and (out / "tokenizer.model").read_bytes() == b"model"


def test_a_long_split_is_cut_into_shards(source, tmp_path, monkeypatch):
    tool = load_tool()
    monkeypatch.setattr(tool, "SHARD_TOKENS", 8)
    written = tool.tile_val(source, tmp_path / "out", 19)
    assert [p.name for p in written] == ["fineweb_val_000000.bin", "fineweb_val_000001.bin", "fineweb_val_000002.bin"]
    sizes = [read_shard(p).size for p in written]
    assert sizes == [8, 8, 4] and sum(sizes) == 20


def test_a_folder_without_shards_is_one_error_line(tmp_path):
    r = subprocess.run([sys.executable, str(TOOL), str(tmp_path), str(tmp_path / "out")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == f"error: {tmp_path}: no fineweb_val_NNNNNN.bin shards"
    assert not (tmp_path / "out").exists()
