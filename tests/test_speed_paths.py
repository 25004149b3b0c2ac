"""The speed paths of the record code compute the same function as the plain ones, and the
compile cache is keyed so that no stage can load a graph built for other code, torch or GPU.
(The kernels themselves, cuDNN against flash attention, are compared on the GPU by
bench/speed_vs_1313.py; here, on the CPU, the code around them.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import runtime
from conftest import REPO
from evaluate import fixed_scorer, sliding_windows, window_batch
from model import GPT, GPTConfig, expand_kv
from runtime import compile_cache_key, use_compile_cache


@pytest.mark.parametrize("heads,kv_heads", [(8, 4), (8, 2), (4, 4), (6, 1)])
def test_expanded_kv_attention_equals_grouped_query_attention(heads, kv_heads):
    """cuDNN's path repeats each k/v head for its query heads: the same attention as enable_gqa."""
    g = torch.Generator().manual_seed(heads * 10 + kv_heads)
    q = torch.randn(2, heads, 33, 16, generator=g, dtype=torch.float64)
    k = torch.randn(2, kv_heads, 33, 16, generator=g, dtype=torch.float64)
    v = torch.randn(2, kv_heads, 33, 16, generator=g, dtype=torch.float64)
    grouped = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=heads != kv_heads)
    expanded = F.scaled_dot_product_attention(q, expand_kv(k, heads), expand_kv(v, heads), is_causal=True)
    assert expand_kv(k, heads).shape == (2, heads, 33, 16)
    torch.testing.assert_close(expanded, grouped, rtol=1e-12, atol=1e-12)
    # and against the definition: query head h attends with k/v head h // (heads // kv_heads)
    h = heads - 1
    kk, vv = k[:, h // (heads // kv_heads)], v[:, h // (heads // kv_heads)]
    att = (q[:, h] @ kk.mT) / 4.0
    att = att.masked_fill(torch.ones(33, 33, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    torch.testing.assert_close(expanded[:, h], att @ vv, rtol=1e-10, atol=1e-10)


def test_sliding_scorer_equals_token_nll_at_the_scored_positions():
    """The sliding scorer sends only the scored positions through the head: same NLLs."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=97, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, ve_layers=[1], bigram_vocab_size=64, bigram_dim=16, ve_dim=16)
    model = GPT(cfg).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.05)
    tokens = torch.randint(0, 97, (400,))
    windows = sliding_windows(len(tokens) - 1, 64, 24, as_published=True)[:6]
    b = window_batch(tokens, windows, 64, torch.device("cpu"))
    got = fixed_scorer(model, lambda: torch.autocast("cpu", enabled=False))(b)
    with torch.no_grad():
        want = model.token_nll(b.x, b.y)[b.rows, b.cols]
    assert got.shape == want.shape == (len(b.rows),) and len(b.rows) > 64
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def tail_model(seed: int = 0) -> GPT:
    """Every feature on, the value embedding and XSA in the last layer, and windows longer than
    rope_train_seq_len, so the tail path meets the rescaled rotary base too."""
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=97, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, ve_layers=[1, 2], ve_dim=16,
                    bigram_vocab_size=64, bigram_dim=16, rope_dims=8, rope_train_seq_len=16, xsa_last_n=3)
    model = GPT(cfg).eval()
    for p in model.parameters():
        p.data.normal_(0, 0.1)
    return model


def test_hidden_tail_equals_the_last_positions_of_the_full_hidden_and_costs_a_layer_less():
    from torch.utils.flop_counter import FlopCounterMode

    model = tail_model()
    ids = torch.randint(0, 97, (3, 64))
    with torch.no_grad():
        full = model.hidden(ids)
        for tail in (1, 8, 63):
            got = model.hidden(ids, tail)
            assert got.shape == (3, tail, 32)
            torch.testing.assert_close(got, full[:, -tail:], rtol=1e-5, atol=1e-5)
        assert torch.equal(model.hidden(ids, 64), full) and torch.equal(model.hidden(ids, 0), full)
        flops = {}
        for tail in (0, 8):
            with FlopCounterMode(display=False) as count:
                model.hidden(ids, tail)
            flops[tail] = count.get_total_flops()
    # The last of 3 layers runs its k/v projections (1/9 of its matmul work) on all 64 positions and
    # the rest on 8: about 0.78 of a layer saved (measured: 0.255 of the whole; 0 without the tail).
    assert flops[8] < flops[0] * (1 - 0.7 / 3), flops


def test_sliding_and_published_slot_score_the_same_with_the_last_layer_on_the_tail_only(monkeypatch):
    """Every middle batch takes the tail path (counted), the stream's first batch the full one,
    and the scores equal those of the full path, for the sliding and the published SLOT scorer."""
    from slot import SlotConfig, slot_scorer

    model = tail_model(1)
    tokens = torch.randint(0, 97, (700,))
    stride, seq_len = 24, 64
    windows = sliding_windows(len(tokens) - 1, seq_len, stride, as_published=True)
    calls = []
    real = GPT.hidden

    def counted(self, ids, tail=0):
        calls.append(tail)
        return real(self, ids, tail)

    monkeypatch.setattr(GPT, "hidden", counted)
    no_autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731
    slot = SlotConfig(enabled=True, mode="published", steps=4, lr=0.05, lr_min=0.001, batch_seqs=4)
    for name, make in (("sliding", lambda tail: fixed_scorer(model, no_autocast, tail)), ("slot", lambda tail: slot_scorer(model, slot, no_autocast, (), tail))):
        full, tailed = make(0), make(stride)
        middles = 0
        for i in range(0, len(windows), 4):
            b = window_batch(tokens, windows[i : i + 4], seq_len, torch.device("cpu"))
            calls.clear()
            want = full(b)
            assert calls == [0]
            calls.clear()
            got = tailed(b)
            middle = 0 < i and all(length == seq_len for _, length, _ in windows[i : i + 4])
            assert calls == ([stride] if middle else [0]), (name, i, calls)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            middles += middle
        assert middles >= 5 and i > 0, (name, middles)  # 8 batches: the first, 5 middle ones, 2 at the end


def test_compile_cache_key_changes_with_code_torch_and_gpu(tmp_path):
    a, b = tmp_path / "model.py", tmp_path / "train.py"
    a.write_text("x = 1\n")
    b.write_text("y = 2\n")
    key = compile_cache_key([a, b], "2.11.0", "NVIDIA H200")
    assert key == compile_cache_key([a, b], "2.11.0", "NVIDIA H200") and len(key) == 16
    assert compile_cache_key([a, b], "2.11.1", "NVIDIA H200") != key
    assert compile_cache_key([a, b], "2.11.0", "NVIDIA H100 80GB HBM3") != key
    assert compile_cache_key([a], "2.11.0", "NVIDIA H200") != key
    b.write_text("y = 3\n")  # one byte of record code changed
    assert compile_cache_key([a, b], "2.11.0", "NVIDIA H200") != key


def test_compile_cache_points_inductor_at_the_keyed_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("PGOLF_COMPILE_CACHE", str(tmp_path / "cc"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    assert use_compile_cache(torch.device("cpu")) is None  # the CPU compiles nothing by default
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    folder = use_compile_cache(torch.device("cuda", 0))
    key = compile_cache_key(runtime.record_code_set(), torch.__version__, "NVIDIA H200")
    assert folder == str((tmp_path / "cc" / key).resolve()) and os.path.isdir(folder)
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == os.path.join(folder, "inductor")
    assert os.environ["TRITON_CACHE_DIR"] == os.path.join(folder, "triton")
    monkeypatch.delenv("PGOLF_COMPILE_CACHE")
    assert use_compile_cache(torch.device("cuda", 0)) is None


CACHE_FOLDER_OF_STAGE = """
import sys, torch
sys.path.insert(0, sys.argv[1])
import importlib
importlib.import_module(sys.argv[2])  # the stage's entry module and whatever it imports
import runtime
torch.cuda.get_device_name = lambda device=None: "NVIDIA H200"
print(runtime.use_compile_cache(torch.device("cuda", 0)))
"""


def cache_folder_of_stage(record: Path, module: str, env: dict) -> str:
    out = subprocess.run([sys.executable, "-c", CACHE_FOLDER_OF_STAGE, str(record), module], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_every_stage_gets_the_same_compile_cache_folder(tmp_path):
    """The train, eval, SLOT and TTT stages import different parts of the record code; the cache
    folder must not depend on that, or no stage would find what another compiled."""
    env = {**os.environ, "PGOLF_COMPILE_CACHE": str(tmp_path / "cc")}
    record = REPO / "workflow" / "record"
    folders = {m: cache_folder_of_stage(record, m, env) for m in ("train", "evaluate", "slot", "ttt", "runtime")}
    assert len(set(folders.values())) == 1, folders
    assert Path(folders["train"]).parent == (tmp_path / "cc").resolve()
    # A bundled record is one file: its own bytes name its folder.
    bundled = tmp_path / "record"
    bundled.mkdir()
    shutil.copy(record / "runtime.py", bundled / "runtime.py")
    assert cache_folder_of_stage(bundled, "runtime", env) not in folders.values()


def test_rules_share_one_compile_cache_across_gpu_stages():
    for rule in ("train.smk", "eval.smk"):
        text = (REPO / "workflow" / "rules" / rule).read_text()
        launches = text.count("torchrun --standalone")
        # each launch runs under the job supervisor, whose environment carries the cache
        assert launches and text.count("{params.cache}pgolf job") == launches == text.count("cache=COMPILE_CACHE,"), rule
    common = (REPO / "workflow" / "rules" / "common.smk").read_text()
    assert 'COMPILE_CACHE = "PGOLF_COMPILE_CACHE=results/compile_cache "' in common


def graph_counter():
    """A torch.compile backend that runs each graph as traced and keeps it: (the graphs, the backend)."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    return graphs, backend


def test_regional_compile_shares_one_graph_among_like_blocks_and_computes_the_same():
    """compile_scope: blocks. Five blocks, value embeddings in the last two: three block graphs
    (layer 0 without the value residual, the plain ones, the value-embedding ones), plus the
    embedding and the head+loss, whatever the depth; and the same loss and gradients as eager."""
    import torch._dynamo

    from model import compile_regions

    torch._dynamo.reset()
    cfg = GPTConfig(vocab_size=64, num_layers=5, model_dim=32, num_heads=2, num_kv_heads=1, ve_layers=[3, 4], bigram_dim=16, ve_dim=16)
    torch.manual_seed(0)
    eager = GPT(cfg)
    regional = GPT(cfg)
    regional.load_state_dict(eager.state_dict())
    graphs, counting_backend = graph_counter()
    compile_regions(regional, backend=counting_backend)
    x = torch.randint(0, 64, (2, 24))
    y = torch.randint(0, 64, (2, 24))
    want, got = eager(x, y), regional(x, y)
    want.backward()
    got.backward()
    assert len(graphs) == 5, [g.code[:200] for g in graphs]
    assert torch.equal(got, want)
    for (name, a), b in zip(eager.named_parameters(), regional.parameters()):
        assert torch.equal(a.grad, b.grad), name
    regional(x, y)  # a second batch of the same shape compiles nothing new
    assert len(graphs) == 5


FA4_CHECK = """
import sys, torch
import torch.nn.functional as F
sys.path.insert(0, sys.argv[1])
import model
assert model.FLASH_NAME == "flash_attn_4", model.FLASH_NAME
torch.manual_seed(0)
q, k, v = (torch.randn(2, 24, h, 16, requires_grad=True) for h in (4, 2, 2))
ref = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), is_causal=True, enable_gqa=True).transpose(1, 2)
want = torch.autograd.grad(ref.square().sum(), (q, k, v))
for name, fn in (("eager", model.FLASH_FUNC), ("compiled", torch.compile(model.FLASH_FUNC, backend="aot_eager", fullgraph=True))):
    y = fn(q, k, v, causal=True)
    got = torch.autograd.grad(y.square().sum(), (q, k, v))
    assert (y - ref).abs().max() < 1e-5, name
    assert all((a - b).abs().max() < 1e-4 for a, b in zip(got, want)), [(a - b).abs().max() for a, b in zip(got, want)]
print("ok")
"""


def test_flash_attention_4_wrapper_is_one_op_with_the_same_values_and_gradients(tmp_path):
    """model.py's flash-attn-4 path (PGOLF_FA4=1) over a CPU stand-in of the two FA4 functions it
    calls: the custom op gives SDPA's output and gradients, eagerly and traced whole (fullgraph) by
    torch.compile through its fake. The real kernels ran on an H200 in bench/speed_vs_1313.py only."""
    env = {**os.environ, "PGOLF_FA4": "1", "PYTHONPATH": str(REPO / "tests" / "data" / "fa4_standin")}
    r = subprocess.run([sys.executable, "-c", FA4_CHECK, str(REPO / "workflow" / "record")], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]
    env["PGOLF_FA4"] = "0"  # switched off: SDPA
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import model; print(model.FLASH_NAME)",
                        str(REPO / "workflow" / "record")], env=env, capture_output=True, text=True)
    assert r.stdout.strip() == "sdpa", r.stderr[-2000:]


def test_validation_in_the_train_job_runs_eagerly_and_compiles_nothing():
    """With compile_scope: blocks the model's own blocks are compiled; the train job's validation
    batch has another shape, and must not recompile them (train.eval_uncompiled)."""
    import contextlib

    import torch._dynamo

    from model import compile_regions
    from runtime import Dist
    from scoring import eval_sequences
    from train import TrainConfig, eval_uncompiled

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, num_layers=3, model_dim=32, num_heads=2, num_kv_heads=1, ve_layers=[2], bigram_dim=16, ve_dim=16))
    graphs, counting_backend = graph_counter()
    compile_regions(model, backend=counting_backend)
    model(torch.randint(0, 64, (2, 24)), torch.randint(0, 64, (2, 24)))  # a training-shape step
    compiled = len(graphs)
    luts = (torch.ones(64, dtype=torch.int16), torch.zeros(64, dtype=torch.bool), torch.zeros(64, dtype=torch.bool))
    val = torch.randint(0, 64, (24 * 5 + 1,))
    cfg = TrainConfig(seq_len=24, val_batch_seqs=3)
    got = eval_uncompiled(model, val, cfg, Dist("cpu"), luts, contextlib.nullcontext)
    assert len(graphs) == compiled
    want = eval_sequences(model, val, 24, 3, Dist("cpu"), luts, contextlib.nullcontext)  # compiled: new graphs
    assert len(graphs) > compiled and got["val_loss"] == pytest.approx(want["val_loss"], rel=1e-6)


def test_speed_bench_cpu_smoke_mode_times_both_sides_of_the_tail_switch(tiny_run, tmp_path):
    """bench/speed_vs_1313.py --tiny on the CPU: our trainer twice (whole-model and per-block
    compile scope) and the eval child three times (cold, warm, last layer on every position), with
    the same val_bpb whether the last layer ran on the tail or not."""
    workdir, _ = tiny_run
    data = next((workdir / "results" / "data").glob("*/manifest.json")).parent
    out = tmp_path / "bench"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "speed_vs_1313.py"), "--tiny", "--device", "cpu", "--data", str(data), "--out", str(out)],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    assert set(res["train"]) == {"ours_flash_model", "ours_flash_blocks"}
    assert all(t["ms_per_step"] > 0 and t["attention"] == "sdpa" for t in res["train"].values()), res["train"]
    ev = res["eval"]
    assert [ev[k]["last_layer_tail"] for k in ("ours_flash_cold_cache", "ours_flash_warm_cache", "ours_flash_warm_full_last")] == [True, True, False]
    tail, full = ev["ours_flash_warm_cache"], ev["ours_flash_warm_full_last"]
    assert tail["windows"] == full["windows"] > 10
    assert tail["sliding_bpb"] == pytest.approx(full["sliding_bpb"], abs=1e-6)
    assert tail["slot_bpb"] == pytest.approx(full["slot_bpb"], abs=1e-5) and tail["slot_bpb"] < tail["sliding_bpb"]
    phases = tail["phases"]
    assert list(phases) == ["imports", "device_ready", "model_built", "data_loaded"]
    assert all(a <= b for a, b in zip(phases.values(), list(phases.values())[1:])) and phases["data_loaded"] <= tail["first_batch_s"]
    assert "last layer on the tail: False" in (out / "table.txt").read_text()


def load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("speed_vs_1313", REPO / "bench" / "speed_vs_1313.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_speed_bench_table_reports_library_kernels_bandwidth_startup_and_kernel_launches():
    """The GPU-only parts (fusions, bandwidth, startup, profile's kernel list) print what they
    measured, failures included; a startup mode run three times gets three labels."""
    bench = load_bench()
    assert [bench.run_label("regions", d) for d in ({}, {"regions_cold": 1}, {"regions_cold": 1, "regions_warm": 1}, {"regions_graphs_cold": 1})] == [
        "regions_cold", "regions_warm", "regions_warm2", "regions_cold"]
    res = {
        "profile": {"fa4_model": {"step_ms": 611.4, "fwd_bwd_ms": 609.5, "update_ms": 3.1, "warmup_s": 76, "peak_alloc_mib": 23767,
                                  "fwd_bwd_kinds_ms": {"attention": 182.3}, "update_kinds_ms": {"gemm": 0.7},
                                  "fwd_bwd_top_ms": {"flash_bwd_sm90": [107.8, 88]}}},
        "bandwidth": {"blocks": {"launches": 500, "kernels": 73, "triton_ms": 34.2, "triton_gb": 91.6, "triton_tb_per_s": 2.68,
                                 "copy": {"copy_tb_per_s": 4.25}, "top": {"triton_poi_fused_leaky_relu": [3.88, 9.97, 11, 2.57]}}},
        "fusions": {"bandwidth": {"copy_tb_per_s": 4.25}, "rope_q_k": {"error": "RuntimeError: no kernel"},
                    "head_ce": {"ours_fwd_ms": 0.304, "ours_fwd_bwd_ms": 0.811, "liger_fwd_ms": 1.991, "liger_fwd_bwd_ms": 2.41,
                                "out_rel_err": 0.0, "grad_rel_err": 2.4e-3, "speedup_fwd_bwd": 0.34}},
        "startup": {"compile_warm": {"first_output_s": 15.3, "ms_per_window": 0.471, "rel_err_vs_eager": 4.8e-3, "phases": {"imports": 4.4}},
                    "aoti_cold": {"error": "RuntimeError: startup child wrote no result"}},
    }
    text = bench.table(res)
    assert "107.8    88  flash_bwd_sm90" in text
    assert "500 launches of 73 kernels: 34.2 ms, 91.6 GB, 2.68 TB/s; a plain 1 GiB copy: 4.25 TB/s" in text
    assert "3.88 ms   9.97 GB x11   2.57 TB/s  triton_poi_fused_leaky_relu" in text
    assert "head_ce    ours fwd 0.304 fwd+bwd 0.811 ms | liger fwd 1.991 fwd+bwd 2.410 ms | ours/liger 0.34x" in text
    assert "rope_q_k   error: RuntimeError: no kernel" in text
    assert "compile_warm  first output  15.3s  0.471 ms/win" in text and "aoti_cold     error: RuntimeError: startup child wrote no result" in text
