"""The frontier's model features (workflow/record/frontier.py) against the records' own code.

Each equality test builds our model and the record script's GPT at a small shape, copies the same
random weights into both (every parameter non-zero, so zero-initialised gates and lambdas count),
and compares the hidden states, the loss and every parameter's gradient, in float64, to 1e-6.
The scripts are loaded with tests/record_standins/ (FA3 on SDPA, an import-only triton); the
records' fused Triton paths are switched off. Each test names a one-line mutation of ours that
makes it fail (checked by hand once).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import pytest
import torch

from frontier import FRONTIER_KEYS, FrontierConfig, FrontierGPT, frontier_config, uses_frontier, virtual_layers
from model import GPT, GPTConfig, count_params

from record_loader import load_record_script

REPO = Path(__file__).resolve().parents[1]
TAR = Path(os.environ.get("PGOLF_CORPUS", REPO.parent / "shared" / "corpus" / "upstream-records.tar.xz"))
RECORD_1061 = "merged/records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611/train_gpt.py"
PR1278 = Path(os.environ.get("PGOLF_REFERENCE", REPO.parent / "shared" / "reference")) / "pr1278_train_gpt_slot_recurrence.py"


@pytest.fixture(scope="module")
def rec(tmp_path_factory):
    """The 1.0611 record's train_gpt.py, extracted from the corpus tarball and loaded as a module."""
    if not TAR.is_file():
        pytest.skip(f"upstream corpus not found at {TAR} (set PGOLF_CORPUS to the .tar.xz)")
    out = tmp_path_factory.mktemp("rec1061")
    with tarfile.open(TAR) as t:
        t.extract(RECORD_1061, out, filter="data")
    module = load_record_script(out / RECORD_1061, "record_1061")
    module.BOS_ID = 1  # the record sets it when it first reads a shard
    return module


@pytest.fixture(scope="module")
def pr1278():
    return load_record_script(PR1278, "pr1278_script")


def record_hparams(rec, **over):
    """The record's Hyperparameters defaults, as its GPT reads them, with overrides."""
    h = {k: getattr(rec.Hyperparameters, k) for k in dir(rec.Hyperparameters) if not k.startswith("_")}
    h.update(fused_ce_enabled=False, **over)
    return types.SimpleNamespace(**h)


# A small shape of the 1.0611 architecture: no BigramHash, value embeddings, VRL or #1313 smear.
SMALL = dict(vocab_size=96, num_layers=6, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2.0, rope_dims=8, rope_train_seq_len=64,
             qk_gain_init=5.0, xsa_last_n=6, vrl=False, ve_layers=[], bigram_vocab_size=0, smear_gate=False)
SMALL_REC = dict(vocab_size=96, num_layers=6, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=2.0, rope_dims=8, train_seq_len=64,
                 qk_gain_init=5.0, xsa_last_n=6, num_loops=0, parallel_start_layer=0, skip_gates_enabled=False, smear_gate_enabled=False,
                 sparse_attn_gate_enabled=False, attn_out_gate_enabled=False, gated_attn_enabled=False)


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3 + 0.1)


def rec_param_of(name: str, n: int, gate: str = "attn_gate_w"):
    """Our parameter name -> (the 1.0611 GPT's parameter name, index into it or None); gate: the
    record's name of the attention gate's weight (the sparse gate's, or the output gate's linear layer)."""
    parts = name.split(".")
    if parts[0] == "blocks":
        i, rest = int(parts[1]), ".".join(parts[2:])
        banks = {"attn.q.weight": ("qo_bank", i), "attn.proj.weight": ("qo_bank", n + i), "attn.k.weight": ("kv_bank", i),
                 "attn.v.weight": ("kv_bank", n + i), "mlp.up.weight": ("mlp_up_bank", i), "mlp.down.weight": ("mlp_down_bank", i)}
        if rest in banks:
            return banks[rest]
        if rest == "attn.gate":
            return f"blocks.{i}.attn.{gate}", None
        return name, None
    return {"parallel_post": "parallel_post_lambdas", "parallel_resid": "parallel_resid_lambdas",
            "bos_smear": "smear_gate.weight", "bos_smear_lambda": "smear_lambda"}.get(name, name), None


def rec_tensor(model, name, index):
    t = dict(model.named_parameters())[name]
    return t if index is None else t[index]


def copy_into_record(ours, theirs, n, gate):
    with torch.no_grad():
        for name, p in ours.named_parameters():
            target, index = rec_param_of(name, n, gate)
            rec_tensor(theirs, target, index).copy_(p.view_as(rec_tensor(theirs, target, index)))
    return theirs


def build_pair(rec, ours_kw, rec_kw, seed=0, gate="attn_gate_w"):
    torch.manual_seed(seed)
    ours = FrontierGPT(FrontierConfig(**{**SMALL, **ours_kw})).double()
    theirs = rec.GPT(record_hparams(rec, **{**SMALL_REC, **rec_kw})).double()
    for m in theirs.modules():
        if isinstance(m, rec.MLP):
            m.use_fused = False  # the Triton kernel; the plain path computes the same function
    randomize(ours, seed)
    ours_names = {rec_param_of(k, ours.cfg.num_layers, gate)[0] for k, _ in ours.named_parameters()}
    theirs_names = {k for k, _ in theirs.named_parameters()}
    if not ours.cfg.parallel_start_layer:  # the record builds its lane weights even when they are unused
        theirs_names -= {"parallel_post_lambdas", "parallel_resid_lambdas"}
    assert ours_names == theirs_names, f"parameters only ours: {ours_names - theirs_names}, only the record's: {theirs_names - ours_names}"
    return ours, copy_into_record(ours, theirs, ours.cfg.num_layers, gate)


def batch(vocab=96, B=2, T=48, bos_at=(0, 17, 30), seed=1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (B, T + 1), generator=g)
    ids[:, list(bos_at)] = 1  # documents start with BOS = 1 (also mid-row)
    return ids[:, :-1], ids[:, 1:]


def assert_same(ours, theirs, n, x, y, looping=None, gate="attn_gate_w", cu_seqlens=None):
    """cu_seqlens: the record runs its varlen attention over these segments (one packed row)."""
    if looping is not None:
        ours.looping = looping
        theirs.looping_active = looping
    varlen = {} if cu_seqlens is None else dict(cu_seqlens=cu_seqlens, max_seqlen=x.size(1))
    h_ours, h_theirs = ours.hidden(x), theirs._forward_hidden(x, **varlen)
    torch.testing.assert_close(h_ours, h_theirs, atol=1e-6, rtol=0)
    loss_ours, loss_theirs = ours(x, y), theirs(x, y, **varlen)
    assert abs(loss_ours.item() - loss_theirs.item()) < 1e-6
    loss_ours.backward()
    loss_theirs.backward()
    checked = 0
    for name, p in ours.named_parameters():
        target, index = rec_param_of(name, n, gate)
        g = dict(theirs.named_parameters())[target].grad
        g = g if index is None else g[index]
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, g.view_as(p.grad), atol=1e-6, rtol=0, msg=lambda m: f"{name}: {m}")
        checked += 1
    return checked


def test_plain_shape_equals_the_record_with_every_frontier_feature_off(rec):
    """Our GPT and the record's at the same shape, every feature of frontier.py off: the common
    ground that the feature tests below build on."""
    ours, theirs = build_pair(rec, {}, {})
    x, y = batch()
    assert assert_same(ours, theirs, 6, x, y) == len(list(ours.parameters()))


def test_sparse_attention_gate_equals_the_record(rec):
    """Mutation: in FrontierAttention.head_gate, `torch.sigmoid(self.gate_scale * z)` -> `torch.sigmoid(z)`."""
    ours, theirs = build_pair(rec, dict(attn_gate="sparse", attn_gate_scale=0.5), dict(sparse_attn_gate_enabled=True, sparse_attn_gate_scale=0.5))
    x, y = batch()
    assert_same(ours, theirs, 6, x, y)


def test_output_attention_gate_equals_the_record(rec):
    """Mutation: in FrontierAttention.head_gate, `2.0 * torch.sigmoid(z)` -> `torch.sigmoid(z)`."""
    gate = "attn_gate_proj.weight"  # the record's output gate is a bias-free linear layer
    ours, theirs = build_pair(rec, dict(attn_gate="output"), dict(attn_out_gate_enabled=True), gate=gate)
    x, y = batch()
    assert_same(ours, theirs, 6, x, y, gate=gate)


def test_bos_smear_gate_equals_the_record(rec):
    """Mutation: in FrontierGPT.embed, `g * keep * x[:, :-1]` -> `g * x[:, :-1]` (no BOS mask)."""
    ours, theirs = build_pair(rec, dict(bos_smear_gate=True), dict(smear_gate_enabled=True))
    x, y = batch()
    assert_same(ours, theirs, 6, x, y)


def test_bos_smear_gate_never_reads_across_a_document_start():
    """A BOS position's embedding is the same whatever token precedes it."""
    torch.manual_seed(0)
    model = FrontierGPT(FrontierConfig(**SMALL, bos_smear_gate=True)).double()
    randomize(model)
    x, _ = batch()
    other = x.clone()
    other[:, 16] = (other[:, 16] + 5) % 90 + 2  # the token before the BOS at 17
    e1, e2 = model.embed(x), model.embed(other)
    torch.testing.assert_close(e1[:, 17], e2[:, 17], atol=0, rtol=0)
    assert (e1[:, 16] - e2[:, 16]).abs().max() > 0.1


def test_gated_skips_equal_the_record(rec):
    """Mutation: in FrontierGPT.join_skip, `torch.lerp(scaled, x, ...)` -> `torch.lerp(x, scaled, ...)`."""
    ours, theirs = build_pair(rec, dict(skip_gates=True), dict(skip_gates_enabled=True))
    x, y = batch()
    assert_same(ours, theirs, 6, x, y)


@pytest.mark.parametrize("lane", ["mean", "attn", "mlp"])
def test_parallel_residuals_equal_the_record(rec, lane):
    """Mutation: in FrontierGPT.parallel_block, `post[1, 0] * m` -> `post[0, 1] * m`."""
    ours, theirs = build_pair(rec, dict(parallel_start_layer=4, parallel_final_lane=lane, skip_gates=True),
                              dict(parallel_start_layer=4, parallel_final_lane=lane, skip_gates_enabled=True))
    x, y = batch()
    assert_same(ours, theirs, 6, x, y)


@pytest.mark.parametrize("looping", [False, True])
def test_layer_looping_equals_the_record_before_and_after_switch_on(rec, looping):
    """Layers 1-3 three times (the record's 3-5 at a 6-layer shape), with parallel lanes from layer 4,
    gated skips over the virtual depth of 12, before and after the switch-on.
    Mutation: in virtual_layers, `seg * cfg.loop_passes` -> `seg * (cfg.loop_passes - 1)`."""
    ours, theirs = build_pair(rec, dict(loop_start=1, loop_end=3, loop_passes=3, parallel_start_layer=4, skip_gates=True),
                              dict(num_loops=2, loop_start=1, loop_end=3, parallel_start_layer=4, skip_gates_enabled=True))
    assert theirs.encoder_indices + theirs.decoder_indices == virtual_layers(ours.cfg)
    x, y = batch()
    assert_same(ours, theirs, 6, x, y, looping=looping)


def test_all_features_together_equal_the_record(rec):
    """The 1.0611 combination at a small shape: looping, parallel lanes, gated skips, sparse gate, BOS smear.
    Mutation: in FrontierGPT.hidden, `x = self.join_skip(x, skips.pop(), pos - n_enc)` -> `x = self.join_skip(x, skips.pop(0), pos - n_enc)`."""
    ours, theirs = build_pair(
        rec,
        dict(loop_start=1, loop_end=3, loop_passes=3, parallel_start_layer=4, skip_gates=True, attn_gate="sparse", attn_gate_scale=0.5, bos_smear_gate=True),
        dict(num_loops=2, loop_start=1, loop_end=3, parallel_start_layer=4, skip_gates_enabled=True, sparse_attn_gate_enabled=True,
             sparse_attn_gate_scale=0.5, smear_gate_enabled=True),
    )
    x, y = batch()
    assert_same(ours, theirs, 6, x, y, looping=True)


def packed_row(rec, T=64, bos_at=(5, 20, 21, 45)):
    """One packed row (the record trains on one row per rank) with documents starting at bos_at
    (the first one starts mid-document, as a row cut from a shard does), and the record's cu_seqlens.
    T at most train_seq_len: beyond it our RoPE stretches its base (NTK) where the record's (rope_yarn 0) does not."""
    x, y = batch(B=1, T=T, bos_at=bos_at)
    cu, _ = rec._build_cu_seqlens(list(bos_at), T, x.device, 0, 64)
    return x, y, cu


def test_document_attention_equals_the_records_varlen_attention(rec):
    """The record's flash_attn_varlen_func (the stand-in: SDPA per segment) against our mask.
    Mutation: in document_mask, `(causal & (doc[:, :, None] == doc[:, None, :]))` -> `(causal | (doc[:, :, None] == doc[:, None, :]))`."""
    ours, theirs = build_pair(rec, dict(doc_attention=True), {})
    x, y, cu = packed_row(rec)
    assert_same(ours, theirs, 6, x, y, cu_seqlens=cu)
    plain, _ = build_pair(rec, {}, {})
    assert (plain.hidden(x) - ours.hidden(x)).abs().max() > 1e-3  # the mask matters on this row


def test_document_attention_with_every_feature_equals_the_record(rec):
    """Looping, parallel lanes, gates and BOS smear over a packed row with document boundaries.
    Mutation: in FrontierGPT.parallel_block, `block.attn(attn_in, v_embed, v_first, docs=docs)` -> `block.attn(attn_in, v_embed, v_first)`."""
    ours, theirs = build_pair(
        rec,
        dict(loop_start=1, loop_end=3, loop_passes=3, parallel_start_layer=4, skip_gates=True, attn_gate="sparse", attn_gate_scale=0.5,
             bos_smear_gate=True, doc_attention=True),
        dict(num_loops=2, loop_start=1, loop_end=3, parallel_start_layer=4, skip_gates_enabled=True, sparse_attn_gate_enabled=True,
             sparse_attn_gate_scale=0.5, smear_gate_enabled=True),
    )
    x, y, cu = packed_row(rec)
    assert_same(ours, theirs, 6, x, y, looping=True, cu_seqlens=cu)


FRONTIER_1061 = dict(vocab_size=8192, mlp_mult=4.0, qk_gain_init=5.0, rope_train_seq_len=2048, vrl=False, ve_layers=[], bigram_vocab_size=0,
                     smear_gate=False, parallel_start_layer=8, skip_gates=True, attn_gate="sparse", attn_gate_scale=0.5, bos_smear_gate=True,
                     loop_start=3, loop_end=5, loop_passes=3, loop_from=0.35)


def test_frontier_shape_has_the_record_parameter_count(rec):
    """The 1.0611 record logs model_params:35945671; its own GPT at its logged settings agrees.
    (Built on the meta device: shapes without memory or initialisation time.)"""
    h = record_hparams(rec, num_loops=2, smear_gate_enabled=True, sparse_attn_gate_enabled=True, sparse_attn_gate_scale=0.5)
    with torch.device("meta"):
        assert count_params(FrontierGPT(FrontierConfig(**FRONTIER_1061))) == 35_945_671
        assert count_params(rec.GPT(h)) == 35_945_671


def test_frontier_keys_are_off_by_default():
    """FrontierGPT with no key set is the plain GPT: same parameters, same function."""
    cfg = GPTConfig(vocab_size=96, num_layers=4, model_dim=64, num_heads=4, num_kv_heads=2, ve_layers=[3], bigram_dim=32, ve_dim=32)
    torch.manual_seed(0)
    plain = GPT(cfg).double()
    frontier = FrontierGPT(FrontierConfig(**cfg.to_dict())).double()
    assert [n for n, _ in plain.named_parameters()] == [n for n, _ in frontier.named_parameters()]
    randomize(plain)
    frontier.load_state_dict(plain.state_dict())
    x, y = batch()
    torch.testing.assert_close(frontier(x, y), plain(x, y), atol=0, rtol=0)
    assert not uses_frontier(cfg.to_dict()) and uses_frontier({**cfg.to_dict(), "skip_gates": False})
    assert set(FRONTIER_KEYS) == set(FrontierConfig.__dataclass_fields__) - set(GPTConfig.__dataclass_fields__)
    assert isinstance(frontier_config({**cfg.to_dict(), "loop_passes": 2, "device": "cpu"}), FrontierConfig)


@pytest.mark.parametrize("kw,message", [
    (dict(loop_start=4, loop_end=6, loop_passes=2), "loop_start 4 .. loop_end 6: expected 0 <= start <= end < num_layers 6"),
    (dict(loop_order="zigzag"), "loop_order: expected one of range, layer, got 'zigzag'"),
    (dict(attn_gate="dense"), "attn_gate: expected one of none, sparse, output, got 'dense'"),
    (dict(loop_start=1, loop_end=2, loop_passes=2, loop_iter_embed=True, loop_from=0.5),
     "loop_iter_embed: needs loop_from 0, got 0.5 (its vectors would be unused before the switch-on, which DistributedDataParallel rejects)"),
])
def test_bad_frontier_settings_name_the_key(kw, message):
    with pytest.raises(ValueError) as e:
        FrontierGPT(FrontierConfig(**{**SMALL, **kw}))
    assert str(e.value) == message


# ----------------------------------------------------------------------------- PR #1278 (the seed's family)

SMALL_1278 = dict(vocab_size=96, num_layers=7, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=3.0, rope_dims=8, qk_gain_init=4.0,
                  xsa_last_n=7, vrl=True, ve_layers=[5, 6], ve_dim=16, bigram_vocab_size=32, bigram_dim=16, smear_gate=True)
PR1278_NAMES = [("bigram.table.", "bigram.embed."), ("value_emb.table.", "ve_shared.embed."), ("value_emb.proj.", "ve_shared.proj."),
                ("value_emb.scale", "ve_shared.scale"), (".attn.q.", ".attn.c_q."), (".attn.k.", ".attn.c_k."), (".attn.v.", ".attn.c_v."),
                (".mlp.up.", ".mlp.fc."), (".mlp.down.", ".mlp.proj.")]


def pr1278_pairs(ours, theirs):
    """(our parameter, PR #1278's tensor) for every parameter: names translated, the per-layer
    value-embedding scales split into PR #1278's one-element parameters."""
    params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        if name == "value_emb.layer_scales":
            for j in range(p.numel()):
                yield p, j, params[f"ve_layer_scales.{j}"]
            continue
        target = "smear.gate" if name == "smear" else name
        for a, b in PR1278_NAMES:
            target = target.replace(a, b)
        yield p, None, params[target]


def test_pr1278_recurrence_equals_its_own_gpt(pr1278):
    """Layers 3 and 4 of 7 run twice in place (3,3,4,4: PR #1278's schedule), a gated learned
    vector before each repeat, U-Net skips over the 9 virtual layers, with #1278's BigramHash,
    value embeddings, VRL and smear on. Loss, hidden states and every gradient to 1e-6 (float64).
    Mutation: in FrontierGPT.hidden, `if i in seen and self.iter_embed is not None:` -> `if i in seen and False:`."""
    torch.manual_seed(0)
    ours = FrontierGPT(FrontierConfig(**SMALL_1278, loop_start=3, loop_end=4, loop_passes=2, loop_order="layer", loop_iter_embed=True)).double()
    theirs = pr1278.GPT(vocab_size=96, num_layers=7, model_dim=64, num_heads=4, num_kv_heads=2, mlp_mult=3.0, tie_embeddings=True,
                        tied_embed_init_std=0.005, logit_softcap=30.0, rope_base=10000.0, qk_gain_init=4.0, bigram_vocab_size=32, bigram_dim=16,
                        xsa_last_n=7, rope_dims=8, ln_scale=True, ve_enabled=True, ve_dim=16, ve_layers="5,6", vrl_enabled=True,
                        recur_layers="3,4").double()
    assert theirs._recur_schedule == virtual_layers(ours.cfg) == [0, 1, 2, 3, 3, 4, 4, 5, 6]
    randomize(ours)
    pairs = list(pr1278_pairs(ours, theirs))
    assert len({id(t) for _, _, t in pairs}) == len(list(theirs.parameters()))  # every one of theirs is set
    with torch.no_grad():
        for p, j, t in pairs:
            t.copy_(p.view_as(t) if j is None else p[j].view_as(t))
    x, y = batch()
    torch.testing.assert_close(ours.hidden(x), theirs.forward_hidden(x), atol=1e-6, rtol=0)
    loss_ours, loss_theirs = ours(x, y), theirs(x, y)
    assert abs(loss_ours.item() - loss_theirs.item()) < 1e-6
    loss_ours.backward()
    loss_theirs.backward()
    for p, j, t in pairs:
        g = p.grad if j is None else p.grad[j]
        torch.testing.assert_close(g, t.grad.view_as(g), atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- in the train stage and the bundle

from test_trainer import TRAIN, data, hparams, run  # noqa: E402,F401  (data: the trainer tests' small dataset fixture)

TINY_FRONTIER = {"num_layers": 4, "model_dim": 64, "num_heads": 4, "num_kv_heads": 2, "bigram_vocab_size": 0, "ve_layers": [], "vrl": False,
                 "smear_gate": False, "xsa_last_n": 4, "parallel_start_layer": 3, "skip_gates": True, "attn_gate": "sparse", "attn_gate_scale": 0.5,
                 "bos_smear_gate": True, "loop_start": 1, "loop_end": 2, "loop_passes": 3, "loop_from": 0.5,
                 "doc_attention": True}


def test_train_stage_switches_looping_on_at_its_fraction(data, tmp_path):
    """6 steps, no wallclock cap: the fraction is step / iterations, so the loop starts at step 3.
    Mutation: in FrontierGPT.update_looping, `frac >= self.cfg.loop_from` -> `frac > self.cfg.loop_from`."""
    config = yaml_model(TINY_FRONTIER)
    out = tmp_path / "out"
    r = run([sys.executable, TRAIN, "--hparams", hparams(tmp_path, model=config, max_wallclock_seconds=0, warmup_steps=2), "--data", str(data),
             "--seed", "1", "--out-dir", str(out)], out)
    assert "layer_loop:enabled step:3 " in r["log"] and r["log"].count("layer_loop:enabled") == 1
    checkpoint = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    assert checkpoint["config"]["loop_passes"] == 3 and checkpoint["config"]["attn_gate"] == "sparse"
    model = FrontierGPT(FrontierConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["state_dict"])  # every frontier parameter was saved, nothing else
    assert r["metrics"]["model_params"] == count_params(model)
    assert checkpoint["state_dict"]["skip_gates"].abs().sum() > 0  # trained (the gates start at zero)


def test_train_stage_names_a_bad_loop_range(data, tmp_path):
    config = yaml_model({**TINY_FRONTIER, "loop_end": 4})
    r = subprocess.run([sys.executable, TRAIN, "--hparams", hparams(tmp_path, model=config), "--data", str(data), "--seed", "1",
                        "--out-dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].endswith("train.model.loop_start 1 .. loop_end 4: expected 0 <= start <= end < num_layers 4")
    assert not (tmp_path / "out").exists()


def yaml_model(over: dict) -> dict:
    import yaml

    config = yaml.safe_load((REPO / "config.yaml").read_text())["train"]["model"]
    return {**config, **over}


def test_bundle_includes_frontier_only_when_a_key_needs_it():
    """Mutation: in bundle.module_paths, `not model_keys & set(keys)` -> `False`."""
    import yaml

    from pgolf.bundle import OPTIONAL_MODULES, bundle, module_paths

    def names(config):
        return [p.stem for p in module_paths(config=config)]

    assert set(OPTIONAL_MODULES["frontier"]) == set(FRONTIER_KEYS)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    plain = bundle(config)
    assert "frontier" not in names(config) and "class FrontierGPT" not in plain
    config["train"]["model"]["skip_gates"] = False  # a key at its default value still asks for the module
    with_frontier = bundle(config)
    # after everything it imports, before the first module that imports it
    assert names(config).index("frontier") < names(config).index("train")
    assert "class FrontierGPT" in with_frontier and "from frontier import" not in with_frontier
    compile(with_frontier, "train_gpt.py", "exec")


# ----------------------------------------------------------------------------- presets

def preset(*overlays) -> dict:
    import yaml

    from pgolf.config import check_config, merge_overlay

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in overlays:
        merge_overlay(config, yaml.safe_load((REPO / overlay).read_text()))
    check_config(config)
    return config


def test_frontier_preset_builds_the_record_parameter_count():
    """config/frontier-8xh100.yaml at SP8192: the 1.0611 record's 35,945,671 parameters."""
    config = preset("config/frontier-8xh100.yaml")
    assert config["data"]["hub"]["variant"] == "sp8192"
    cfg = frontier_config({**config["train"]["model"], "vocab_size": 8192})
    with torch.device("meta"):
        assert count_params(FrontierGPT(cfg)) == 35_945_671
    assert virtual_layers(cfg) == [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10]


def test_seed_1278_preset_has_pr1278s_parameter_count(pr1278):
    """The #1313 preset plus config/seed-1278.yaml against PR #1278's GPT at the same settings."""
    config = preset("config/fineweb-8xh100.yaml", "config/seed-1278.yaml")
    m = config["train"]["model"]
    with torch.device("meta"):
        ours = count_params(FrontierGPT(frontier_config({**m, "vocab_size": 1024})))
        theirs = pr1278.GPT(vocab_size=1024, num_layers=11, model_dim=512, num_heads=8, num_kv_heads=4, mlp_mult=3.0, tie_embeddings=True,
                            tied_embed_init_std=0.005, logit_softcap=30.0, rope_base=10000.0, qk_gain_init=4.0, bigram_vocab_size=1024, bigram_dim=128,
                            xsa_last_n=11, rope_dims=16, ln_scale=True, ve_enabled=True, ve_dim=128, ve_layers="9,10", vrl_enabled=True, recur_layers="4,5")
    assert ours == count_params(theirs) == 26_862_694 + 512 + 2 * 2 * 512  # #1313's, one more skip, two gated vectors
    assert config["eval"]["slot"]["steps"] == 32


# ----------------------------------------------------------------------------- optimizer pieces (frontier_optim.py)

@pytest.mark.parametrize("shape", [(64, 32), (32, 96), (3, 48, 48)])
def test_polar_express_equals_the_records_newton_schulz(rec, shape):
    """In bf16, as the record computes it: the same bits. Mutation: in polar_express,
    `x = a * x + (b * gram + c * (gram @ gram)) @ x` -> `x = a * x + (b * gram + c * gram) @ x`."""
    from frontier_optim import polar_express

    g = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    theirs = rec.zeropower_via_newtonschulz5(g, steps=5)
    ours = polar_express(g, 5, torch.bfloat16)
    assert ours.dtype == theirs.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), theirs.float(), atol=1e-6, rtol=0)
    # In fp32 it orthogonalises: nearly all singular values end near 1 (five steps leave the
    # smallest of a random square matrix's behind).
    s = torch.linalg.svdvals(polar_express(g, 5).float())
    assert ((s > 0.6) & (s < 1.3)).float().mean() > 0.9 and s.max() < 1.3


def test_row_normalize_is_the_records_muoneq_r():
    """Written from the record's Muon.step (row_normalize branch): rows of unit norm, direction kept."""
    from frontier_optim import row_normalize

    u = torch.randn(6, 40, generator=torch.Generator().manual_seed(0)) * torch.arange(1, 7.0)[:, None]
    r = row_normalize(u)
    torch.testing.assert_close(r.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(r * u.norm(dim=-1, keepdim=True), u)
    assert row_normalize(torch.zeros(2, 3)).abs().sum() == 0  # a zero row stays zero (norm floored)


@pytest.mark.parametrize("frac,expected", [(0.0, 1.0), (0.14, 1.0), (0.15, 1.0), (0.5, 0.5 / 0.85), (0.9, 0.1 / 0.85), (0.95, 0.1), (1.0, 0.1)])
def test_warmdown_multiplier_with_the_records_settings(frac, expected):
    """Expected values from the record's lr_mul (train_model) at warmdown_frac 0.85, min_lr 0.1 (its log)."""
    from frontier_optim import warmdown_multiplier

    assert warmdown_multiplier(frac, 0.85, 0.1) == pytest.approx(expected, abs=1e-12)
    assert warmdown_multiplier(0.99, 0.0, 0.1) == 1.0


def test_frontier_checkpoint_survives_the_export_format(tmp_path):
    """quantize.export (no GPTQ) of a FrontierGPT checkpoint: the artifact keeps the frontier config
    and every tensor; reloaded into FrontierGPT it scores within quantization noise of the float model.
    (GPTQ, every eval and entry.py: tests/test_frontier_wiring.py.)"""
    from quantize import ExportConfig, export, load_artifact
    from runtime import RunLog

    torch.manual_seed(0)
    cfg = FrontierConfig(**{**SMALL, "num_layers": 4, "xsa_last_n": 4}, **{k: v for k, v in TINY_FRONTIER.items() if k in FRONTIER_KEYS})
    model = FrontierGPT(cfg)
    randomize(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.3)  # trained-looking magnitudes, so int6 rows are fine-grained
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    blob, metrics = export({"config": cfg.to_dict(), "state_dict": state}, ExportConfig(passthrough_max_numel=1024), RunLog(path=str(tmp_path / "log.txt")))
    (tmp_path / "model.ptz").write_bytes(blob)
    config, restored = load_artifact(str(tmp_path / "model.ptz"))
    assert config == cfg.to_dict() and set(restored) == set(state)
    reloaded = FrontierGPT(FrontierConfig(**config))
    reloaded.load_state_dict(restored)
    x, y = batch()
    with torch.no_grad():
        assert abs(reloaded(x, y).item() - model(x, y).item()) < 0.01  # 5e-4 when written


def test_bundle_includes_the_april_optimizer_only_when_a_train_key_needs_it():
    """frontier_optim.py is left out of the default train_gpt.py (train.py reaches it only through
    these keys) and bundled when one is set. Mutation: in bundle.module_paths, drop the
    OPTIONAL_TRAIN_MODULES line (the default bundle then carries polar_express)."""
    import yaml

    from pgolf.bundle import OPTIONAL_TRAIN_MODULES, bundle
    from train import TrainConfig

    assert set(OPTIONAL_TRAIN_MODULES["frontier_optim"]) <= set(TrainConfig.__dataclass_fields__)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert "def polar_express" not in bundle(config)
    for key, value in (("muon_polar_express", True), ("wd_taper_final_mult", 0.5)):
        on = copy.deepcopy(config)
        on["train"][key] = value
        text = bundle(on)
        assert "def polar_express" in text and "from frontier_optim import" not in text, key
        compile(text, "train_gpt.py", "exec")
