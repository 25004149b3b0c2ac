"""The April records' export options (issue #26 item 5) against the records' own functions.

SD clipping, act-order GPTQ, GPTQ on the embedding and LQER are compared with the 1.0611 record's
gptq_quantize_weight / gptq_mixed_quantize / dequantize_mixed on the same weights and Hessians;
the byte shuffle with the 2026-04-14 record's _byte_shuffle / _byte_unshuffle. The records are
extracted from the corpus tarball (skipped, saying so, when it is absent). Selective +-1 pruning
(PR #1229) lives inside that script's main(), so it cannot be called: its test checks a case
worked out by hand. Each test names the one-line mutation of ours that makes it fail.
"""

from __future__ import annotations

import os
import tarfile
import types
from pathlib import Path

import pytest
import torch

from frontier_export import prune_candidates, quantize_rows_sd, sd_scales
from quantize import (
    ARTIFACT_FORMAT,
    ARTIFACT_FORMAT_LQER,
    ExportConfig,
    byte_shuffle,
    byte_unshuffle,
    decompress,
    dequantize_state,
    export,
    gptq_quantize_rows,
    load_artifact,
    pack_artifact,
    prune_ones_to_fit,
    quantize_state,
)
from runtime import RunLog

from record_loader import load_record_script

REPO = Path(__file__).resolve().parents[1]
TAR = Path(os.environ.get("PGOLF_CORPUS", REPO.parent / "shared" / "corpus" / "upstream-records.tar.xz"))
RECORD_1061 = "merged/records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_gpt.py"
RECORD_SHUFFLE = "merged/records/track_10min_16mb/2026-04-14_MultiPhaseGlobalSGD_PhasedTTT/train_gpt.py"

# The 1.0611 record's logged Hyperparameters (train_seed42.log).
SIGMAS = {"matrix": 12.85, "attn": 13.0, "mlp": 11.5, "embed": 14.0}


def extracted(tmp_path_factory, member: str, name: str):
    if not TAR.is_file():
        pytest.skip(f"upstream corpus not found at {TAR} (set PGOLF_CORPUS to the .tar.xz)")
    out = tmp_path_factory.mktemp(name)
    with tarfile.open(TAR) as t:
        t.extract(member, out, filter="data")
    return load_record_script(out / member, name)


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    return extracted(tmp_path_factory, RECORD_1061, "record_1061_export")


@pytest.fixture(scope="module")
def rec_shuffle(tmp_path_factory):
    return extracted(tmp_path_factory, RECORD_SHUFFLE, "record_0414_shuffle")


def hessian(cols: int, seed: int, dead: int | None = None) -> torch.Tensor:
    """X^T X / n of inputs whose columns have very different scales (so act order matters)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(4 * cols, cols, generator=g) * torch.rand(cols, generator=g).mul(3).add(0.1)
    if dead is not None:
        X[:, dead] = 0
    return X.T @ X / X.size(0)


def weights(rows: int, cols: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, cols, generator=g) * 0.05


# ----------------------------------------------------------------------------- SD clipping, GPTQ


def test_sd_gptq_with_act_order_equals_the_records_gptq_quantize_weight(rec):
    """Mutation: drop `W, H = W[:, order], H[order][:, order]` in gptq_quantize_rows -> q differs."""
    w, H = weights(48, 160, 1), hessian(160, 2, dead=7)
    want_q, want_s = rec.gptq_quantize_weight(w, H, clip_sigmas=12.85, clip_range=31)
    q, s, _ = gptq_quantize_rows(w, H, 6, [100.0], block_size=128, damp=0.01, scale=sd_scales(w, 6, 12.85), act_order=True)
    assert torch.equal(s, want_s)
    assert torch.equal(q, want_q)


def test_sd_rounding_equals_the_records_quantizer_without_error_feedback(rec):
    """With H = I the record's GPTQ pushes no error anywhere: plain SD rounding.
    Mutation: `w.float().std(dim=1)` -> `w.float().abs().amax(dim=1)` in sd_scales."""
    w = weights(40, 96, 3)
    want_q, want_s = rec.gptq_quantize_weight(w, torch.eye(96), clip_sigmas=3.0, clip_range=31)
    q, s = quantize_rows_sd(w, 6, 3.0)
    assert torch.equal(s, want_s) and torch.equal(q, want_q)
    assert int((q.abs() == 31).sum()) > 0  # 3 sigmas clips some entries: the clip is exercised


# ----------------------------------------------------------------------------- the record's whole export


def frontier_state() -> tuple[dict, dict]:
    """A state dict with the record's names (every quantized tensor above its 65,536 passthrough)
    and a Hessian per quantized tensor (the embedding's too)."""
    # Above 65,536 elements each (the record's passthrough bound); rank-4 B factors of 4 * D values
    # split in groups of 64 (asymmetric LQER), those of mlp.proj (4 * F) do not (symmetric fallback).
    D, F, V = 272, 260, 300
    shapes = {
        "tok_emb.weight": (V, D),
        "blocks.0.attn.c_q.weight": (D, D),
        "blocks.0.mlp.fc.weight": (F, D),
        "blocks.0.mlp.proj.weight": (D, F),
        "blocks.0.attn_scale": (D,),
        "skip_weights": (3, D),
    }
    state = {n: weights(torch.Size(shape).numel() // shape[-1], shape[-1], i + 10).reshape(shape) for i, (n, shape) in enumerate(shapes.items())}
    state["blocks.0.mlp.proj.weight"] *= 3  # the largest errors: LQER's top 3 are not a tie
    hessians = {n: hessian(t.size(1), i + 20) for i, (n, t) in enumerate(state.items()) if t.numel() > 65536}
    return state, hessians


def frontier_export(asym: bool) -> ExportConfig:
    return ExportConfig(
        matrix_bits=6, embed_bits=7, passthrough_max_numel=65536, clip_sigmas=dict(SIGMAS),
        gptq={"enabled": True, "act_order": True, "embed": True, "block_size": 128, "damp": 0.01},
        lqer={"enabled": True, "rank": 4, "top_k": 3, "factor_bits": 4, "asym": asym, "group": 64},
    )


def record_h(asym: bool):
    return types.SimpleNamespace(
        matrix_bits=6, embed_bits=7, matrix_clip_sigmas=SIGMAS["matrix"], attn_clip_sigmas=SIGMAS["attn"],
        mlp_clip_sigmas=SIGMAS["mlp"], embed_clip_sigmas=SIGMAS["embed"], gated_attn_quant_gate=False,
        lqer_enabled=True, lqer_rank=4, lqer_top_k=3, lqer_factor_bits=4, lqer_asym_enabled=asym, lqer_asym_group=64,
    )


def test_quantize_state_equals_the_records_gptq_mixed_quantize_and_dequantize(rec):
    """GPTQ (act order, SD clips per group, the embedding at int7) + LQER (asymmetric, and the
    symmetric fallback for mlp.proj), dequantized.
    Mutations: `return "mlp" if ...` -> `return "attn" if ".mlp." in name ...` in clip_group (the
    MLP sigmas) fails q; `-kv[1][1]` -> `kv[1][1]` in lqer_terms (the smallest errors) fails the
    corrected set; `/ 1.5` -> `/ 2.0` in lqer_factors_asym and `top = 2 ** (bits - 1) - 1` ->
    `top = 2 ** bits - 1` in lqer_factors_sym fail the dequantized weights."""
    asym = True
    state, hessians = frontier_state()
    result, meta = rec.gptq_mixed_quantize(state, hessians, record_h(asym))
    want = rec.dequantize_mixed(result, meta, state)
    artifact, _ = quantize_state(state, {}, frontier_export(asym), hessians)
    for name in artifact["q"]:
        assert torch.equal(artifact["q"][name], result[name + ".q"]), name
        assert torch.equal(artifact["scale"][name], result[name + ".scale"]), name
    assert artifact["bits"] == {"tok_emb.weight": 7, "blocks.0.attn.c_q.weight": 6, "blocks.0.mlp.fc.weight": 6, "blocks.0.mlp.proj.weight": 6}
    assert sorted(artifact["lqer"]) == sorted(n for n, m in meta.items() if "lqer" in m)
    assert len(artifact["lqer"]) == 3 and artifact["format"] == ARTIFACT_FORMAT_LQER
    assert {n: f["asym"] for n, f in artifact["lqer"].items()} == {n: int("lqer_asym" in meta[n]) for n in artifact["lqer"]}
    assert sorted(f["asym"] for f in artifact["lqer"].values()) == [0, 1, 1]  # both packings exercised
    ours = dequantize_state(artifact)
    assert sorted(ours) == sorted(want)
    for name, t in want.items():
        assert torch.allclose(ours[name], t.float(), rtol=0, atol=1e-6), name


def test_lqer_artifact_loads_back_through_load_artifact(tmp_path):
    """The eval stages' loader applies the low-rank terms; they shrink the corrected errors.
    Mutation: drop `state[name] = state[name] + lqer_delta(f)` in dequantize_state."""
    state, _ = frontier_state()
    ckpt = {"config": {"vocab_size": 300}, "state_dict": state}
    plain = ExportConfig(passthrough_max_numel=65536, clip_sigmas=dict(SIGMAS))
    lqer = ExportConfig(passthrough_max_numel=65536, clip_sigmas=dict(SIGMAS), lqer={"enabled": True, "rank": 4, "top_k": 2, "asym": True})
    (tmp_path / "plain.ptz").write_bytes(export(ckpt, plain, RunLog(rank=1))[0])
    blob, metrics = export(ckpt, lqer, RunLog(rank=1))
    (tmp_path / "lqer.ptz").write_bytes(blob)
    _, without = load_artifact(str(tmp_path / "plain.ptz"), None)
    _, with_lqer = load_artifact(str(tmp_path / "lqer.ptz"), metrics["sha256"])
    corrected = [n for n in state if not torch.equal(without[n], with_lqer[n])]
    assert len(corrected) == 2
    for n in corrected:
        assert (with_lqer[n] - state[n]).norm() < (without[n] - state[n]).norm(), n


def test_no_new_key_leaves_the_artifact_as_before():
    """Absent keys: format /1, no lqer entry, the payload not shuffled (a torch zip starts with PK).
    Mutation: `byte_shuffle: int = 0` -> `byte_shuffle: int = 2` in ExportConfig fails the PK check."""
    state, _ = frontier_state()
    blob, _ = export({"config": {}, "state_dict": state}, ExportConfig(passthrough_max_numel=65536), RunLog(rank=1))
    payload = decompress(blob)
    assert payload[:2] == b"PK"
    artifact = torch.load(__import__("io").BytesIO(payload), weights_only=True)
    assert artifact["format"] == ARTIFACT_FORMAT and "lqer" not in artifact


# ----------------------------------------------------------------------------- byte shuffle


@pytest.mark.parametrize("n,stride", [(0, 2), (1, 2), (7, 2), (1000, 2), (1001, 3), (64, 4)])
def test_byte_shuffle_equals_the_records(rec_shuffle, n, stride):
    """Mutation: `arr[k::stride]` -> `arr[k::stride][::-1]` in byte_shuffle."""
    data = bytes((i * 37 + 11) % 256 for i in range(n))
    shuffled = byte_shuffle(data, stride)
    assert shuffled == rec_shuffle._byte_shuffle(data, stride)
    assert byte_unshuffle(shuffled) == data == rec_shuffle._byte_unshuffle(shuffled)


def test_byte_shuffled_export_loads_the_same_weights(tmp_path):
    """Mutation: drop byte_unshuffle(...) in load_artifact -> the payload is refused."""
    state, _ = frontier_state()
    ckpt = {"config": {}, "state_dict": state}
    cfgs = [ExportConfig(passthrough_max_numel=65536, byte_shuffle=s) for s in (0, 2)]
    loaded = []
    for cfg in cfgs:
        blob, _ = export(ckpt, cfg, RunLog(rank=1))
        path = tmp_path / f"s{cfg.byte_shuffle}.ptz"
        path.write_bytes(blob)
        loaded.append(load_artifact(str(path))[1])
    assert decompress(path.read_bytes())[:5] == b"BSHF\x02"
    assert all(torch.equal(loaded[0][n], loaded[1][n]) for n in state)


# ----------------------------------------------------------------------------- selective +-1 pruning


def prune_case() -> dict:
    """Two int6 matrices by hand: +-1 entries in rows of scale 0.5, 0.1 and 0.3 (costs 0.25, 0.01,
    0.09), so the cheapest order is: c_q row 1 (its 2 per 4 columns), proj row 0, c_q row 0."""
    g = torch.Generator().manual_seed(5)
    noise = torch.randint(2, 20, (3, 256), generator=g, dtype=torch.int8)  # never +-1
    q_cq = torch.tensor([[1, -1, 0, 0], [-1, 0, 1, 0]], dtype=torch.int8).repeat(1, 64)
    q_pj = torch.tensor([[0, 1, 0, 0]], dtype=torch.int8).repeat(1, 64)
    q_cq = torch.where(q_cq == 0, noise[:2], q_cq)
    q_pj = torch.where(q_pj == 0, noise[2:], q_pj)
    return {
        "format": ARTIFACT_FORMAT, "config": {}, "fp": {},
        "q": {"blocks.0.attn.c_q.weight": q_cq, "blocks.0.mlp.proj.weight": q_pj, "tok_emb.weight": torch.ones(2, 8, dtype=torch.int8)},
        "scale": {"blocks.0.attn.c_q.weight": torch.tensor([0.5, 0.1], dtype=torch.float16), "blocks.0.mlp.proj.weight": torch.tensor([0.3], dtype=torch.float16), "tok_emb.weight": torch.ones(2, dtype=torch.float16)},
        "bits": {"blocks.0.attn.c_q.weight": 6, "blocks.0.mlp.proj.weight": 6, "tok_emb.weight": 8},
    }


def test_prune_candidates_are_ordered_by_their_rows_scale():
    """Mutation: `torch.sort(torch.cat(cost), stable=True)` -> `..., descending=True, ...` in prune_candidates."""
    names, which, where = prune_candidates(prune_case())
    assert names == ["blocks.0.attn.c_q.weight", "blocks.0.mlp.proj.weight"]  # never the embedding
    cq_row1 = [256 + c for c in range(256) if c % 4 in (0, 2)]
    pj_row0 = [c for c in range(256) if c % 4 == 1]
    cq_row0 = [c for c in range(256) if c % 4 in (0, 1)]
    assert which.tolist() == [0] * 128 + [1] * 64 + [0] * 128
    assert where.tolist() == cq_row1 + pj_row0 + cq_row0


def test_selective_prune_zeroes_the_fewest_cheapest_ones_that_fit():
    """Mutation: `lo = mid + 1` -> `lo = mid + 2` in frontier_export.prune_ones' bisection (the count is no
    longer the smallest that fits)."""
    art = prune_case()
    names, which, where = prune_candidates(art)
    _, info = prune_ones_to_fit(art, ExportConfig(prune_to_bytes=10**9))
    assert info["pruned"] == 0 and info["candidates"] == 320  # already fits: nothing zeroed
    everything, info = prune_ones_to_fit(art, ExportConfig(prune_to_bytes=1))  # unreachable: all go
    assert info["pruned"] == 320
    assert all(int((everything["q"][n].abs() == 1).sum()) == 0 for n in names)
    assert torch.equal(everything["q"]["tok_emb.weight"], art["q"]["tok_emb.weight"])
    cfg = ExportConfig()
    size = lambda a: len(pack_artifact(a, cfg))  # noqa: E731
    target = (info["bytes_before"] + info["bytes_after"]) // 2
    out, info = prune_ones_to_fit(art, ExportConfig(prune_to_bytes=target))
    n = info["pruned"]
    assert 0 < n < 320 and info["bytes_after"] == size(out) <= target < info["bytes_before"]
    for i, name in enumerate(names):  # exactly the first n candidates are zero
        flat_old, flat_new = art["q"][name].reshape(-1), out["q"][name].reshape(-1)
        gone = set(where[:n][which[:n] == i].tolist())
        changed = set(torch.nonzero(flat_old != flat_new).squeeze(1).tolist())
        assert changed == gone and all(flat_new[p] == 0 for p in gone)
    one_fewer, _ = prune_ones_to_fit(art, ExportConfig(prune_to_bytes=size(out)))
    fewer = {k: v.clone() for k, v in art["q"].items()}
    for i, name in enumerate(names):
        fewer[name].reshape(-1)[where[: n - 1][which[: n - 1] == i]] = 0
    assert size({**art, "q": fewer}) > target  # n - 1 would not have fitted


# ----------------------------------------------------------------------------- the embedding's Hessian


def test_embedding_hessian_is_that_of_the_final_hidden_states():
    """The tied head's input is model.hidden(ids): with gptq.embed its X^T X / rows is collected.
    Mutation: `if EMBED_WEIGHT in names:` -> `if False:` in collect_hessians."""
    from model import GPT, GPTConfig
    from quantize import collect_hessians, gptq_names

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=300, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2)).eval()
    state = model.state_dict()
    cfg = ExportConfig(passthrough_max_numel=1024)
    assert "tok_emb.weight" not in gptq_names(state, cfg)
    names = gptq_names(state, ExportConfig(passthrough_max_numel=1024, gptq={"embed": True}))
    assert "tok_emb.weight" in names and "blocks.0.mlp.up.weight" in names
    batches = [torch.randint(0, 300, (2, 16), generator=torch.Generator().manual_seed(i)) for i in range(2)]
    H = collect_hessians(model, names, batches, torch.device("cpu"))
    with torch.no_grad():
        h = torch.cat([model.hidden(ids).reshape(-1, 64).float() for ids in batches])
    assert torch.allclose(H["tok_emb.weight"], h.T @ h / h.size(0), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- config


def merged_preset(*overlays) -> dict:
    import yaml

    from pgolf.config import check_config, merge_overlay

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in overlays:
        merge_overlay(config, yaml.safe_load((REPO / overlay).read_text()))
    check_config(config)
    return config


def test_frontier_preset_export_is_the_records_logged_hyperparameters(tmp_path):
    """The preset's export keys against the 1.0611 log's `Hyperparameters:` block (seed 42).
    Mutation: `mlp: 11.5` -> `mlp: 11.0` in config/frontier-8xh100.yaml."""
    if not TAR.is_file():
        pytest.skip(f"upstream corpus not found at {TAR}")
    log = RECORD_1061.replace("train_gpt.py", "train_seed42.log")
    with tarfile.open(TAR) as t:
        text = t.extractfile(log).read().decode()
    block = text.split("Hyperparameters:", 1)[1].splitlines()[1:]
    hp = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in block[: next(i for i, l in enumerate(block) if not l.startswith("  "))])}
    x = merged_preset("config/frontier-8xh100.yaml")["export"]
    assert x["clip_sigmas"] == {k: float(hp[f"{k}_clip_sigmas"]) for k in ("matrix", "attn", "mlp", "embed")}
    assert (x["matrix_bits"], x["embed_bits"]) == (int(hp["matrix_bits"]), int(hp["embed_bits"]))
    lq = x["lqer"]
    assert (lq["enabled"], lq["asym"]) == (hp["lqer_enabled"] == "True", hp["lqer_asym_enabled"] == "True")
    assert (lq["rank"], lq["top_k"], lq["factor_bits"], lq["group"]) == tuple(int(hp[f"lqer_{k}"]) for k in ("rank", "top_k", "factor_bits", "asym_group"))
    assert x["gptq"]["calib_batches"] == int(hp["gptq_calibration_batches"]) and x["gptq"]["embed"] and x["gptq"]["act_order"]
    assert x["compressor"] == hp["compressor"] == "pergroup"


def test_bad_export_keys_are_one_line_errors():
    """Mutation: `rank: {$ref: "#/$defs/posint"}` -> `rank: {type: integer}` under lqer in the schema."""
    from pgolf.config import ConfigError, check_config

    config = merged_preset()
    config["export"]["lqer"] = {"enabled": True, "rank": 0}
    with pytest.raises(ConfigError) as e:
        check_config(config)
    assert "export.lqer.rank" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(Exception) as e:
        export({"config": {}, "state_dict": {}}, ExportConfig(gptq={"embed": True}), RunLog(rank=1))
    assert str(e.value) == "export.gptq.embed: true needs export.gptq.enabled: true (it changes GPTQ only)"


# ----------------------------------------------------------------------------- per-group compression


def test_similarity_order_and_stream_packing_equal_the_records(rec):
    """Mutations: `np.abs(rows[idx] - rows[cur])` -> `(rows[idx] - rows[cur]) ** 2` in
    similarity_order; `dtype="<u4"` -> `dtype=">u4"` in pack_streams."""
    import numpy as np

    from frontier_export import pack_streams, similarity_order, unpack_streams
    from quantize import PERGROUP_MAGIC

    g = np.random.default_rng(0)
    m = g.integers(-31, 32, size=(40, 24)).astype(np.int8)
    m[g.random((40, 24)) < 0.5] = 0  # sparse rows: L1 and L2 nearest neighbours differ
    assert similarity_order(m).tolist() == rec._similarity_sort_l1(m).tolist()
    streams = [b"abc", b"", bytes(range(200))]
    assert PERGROUP_MAGIC + pack_streams(streams) == rec._pack_streams(streams)  # quantize.pack_artifact's framing
    assert unpack_streams(rec._pack_streams(streams)[len(PERGROUP_MAGIC):]) == streams


def test_pergroup_artifact_round_trips_through_lrzip(tmp_path):
    """Two layers share a group; three groups are row-sorted. Mutation: drop `m = m[back]` in pergroup_unpack."""
    import shutil

    if shutil.which("lrzip") is None:
        pytest.skip("the lrzip program is not installed (export.compressor: pergroup needs it)")
    shapes = {"tok_emb.weight": (64, 32), "blocks.0.attn.q.weight": (32, 32), "blocks.1.attn.q.weight": (32, 32),
              "blocks.0.mlp.up.weight": (48, 32), "blocks.0.mlp.down.weight": (32, 48), "blocks.0.attn_scale": (32,)}
    state = {n: weights(torch.Size(s).numel() // s[-1], s[-1], i).reshape(s) for i, (n, s) in enumerate(shapes.items())}
    ckpt = {"config": {}, "state_dict": state}
    cfg = ExportConfig(passthrough_max_numel=512, compressor="pergroup", compress_level=9, lqer={"enabled": True, "top_k": 1})
    blob, metrics = export(ckpt, cfg, RunLog(rank=1))
    assert blob[:4] == b"PGRP" and metrics["model_bytes"] == len(blob)
    path = tmp_path / "pg.ptz"
    path.write_bytes(blob)
    _, got = load_artifact(str(path), metrics["sha256"])
    artifact, _ = quantize_state(state, {}, cfg)
    want = dequantize_state(artifact)
    assert sorted(got) == sorted(want) and all(torch.equal(got[n], want[n]) for n in want)


def test_pergroup_without_lrzip_is_one_preflight_line():
    """Mutation: `if found:` -> `if True:` in doctor.lrzip_check."""
    from pgolf.doctor import lrzip_check

    config = {"export": {"compressor": "pergroup"}}
    check = lrzip_check(config, which=lambda _name: None)
    assert check.status == "fail" and "\n" not in check.message
    assert check.message == "export.compressor: pergroup needs the lrzip program, which is not on PATH: install it (apt-get install lrzip) or set export.compressor: brotli"
    assert lrzip_check(config, which=lambda _name: "/usr/bin/lrzip").status == "ok"
    assert lrzip_check({"export": {"compressor": "brotli"}}, which=lambda _name: None) is None


def test_loading_a_pergroup_artifact_without_lrzip_says_so(tmp_path, monkeypatch):
    """Mutation: drop the `shutil.which("lrzip") is None` check in load_artifact (a 'corrupt' line instead)."""
    import quantize
    from frontier_export import pack_streams
    from runtime import UserError

    path = tmp_path / "pg.ptz"
    path.write_bytes(quantize.PERGROUP_MAGIC + pack_streams([b"x", b"y"]))
    monkeypatch.setattr(quantize.shutil, "which", lambda _name: None)
    with pytest.raises(UserError) as e:
        load_artifact(str(path))
    assert str(e.value) == f"{path}: a pergroup artifact: loading it needs the lrzip program on PATH (apt-get install lrzip)"
