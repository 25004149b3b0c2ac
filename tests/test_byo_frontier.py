"""byo for the April frontier (issue 25): the record's code files and code-size convention, the
SDPA stand-in for FlashAttention 3, the preflight, and the check of a frontier-shaped log.

The record scripts come from the upstream corpus, extracted here into a temporary folder (skipped
with a reason when the archive is absent). Upstream functions are loaded from the scripts and
called, never copied. The CaseOps data step's test is tests/test_caseops_data.py.
"""

from __future__ import annotations

import ast
import base64
import json
import lzma
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import REPO

TAR = Path(os.environ.get("PGOLF_CORPUS", "/work/shared/corpus/upstream-records.tar.xz"))
R0611 = "merged/records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611"
R06141 = "merged/records/track_10min_16mb/2026-04-29_SmearGateBOSFix_3Seed_1.06141"
R549 = "merged/records/track_10min_16mb/2026-03-23_LeakyReLU_LegalTTT_ParallelMuon"
RWRAP = "merged/records/track_10min_16mb/2026-04-06_SP8192_HessianSDClip_ProgressiveRecurrence"
LIMITS = {"size_limit_bytes": 16_000_000, "max_train_seconds": 600, "max_eval_seconds": 600, "enforce_time_limits": True}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not TAR.is_file():
        pytest.skip(f"upstream corpus not found at {TAR} (set PGOLF_CORPUS to the .tar.xz)")
    out = tmp_path_factory.mktemp("corpus")
    wanted = (R0611, R06141, R549, RWRAP)
    with tarfile.open(TAR) as t:
        members = [m for m in t.getmembers() if any(w in m.name for w in wanted)]
        t.extractall(out, members=members, filter="data")
    roots = {w: next(out.rglob(Path(w).name)) for w in wanted}
    return roots


def upstream_function(script: Path, name: str):
    """One top-level function of an upstream script, compiled alone (its module imports torch,
    triton and FA3, which a CPU test cannot import), with the modules it uses."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    (node,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    namespace = {"base64": base64, "lzma": lzma, "subprocess": subprocess}
    exec(compile(ast.Module(body=[node], type_ignores=[]), str(script), "exec"), namespace)
    return namespace[name]


# ---------------------------------------------------------------------------- code files and sizes


def test_code_files_follow_exec_and_imports(corpus, tmp_path):
    from pgolf.byo_code import code_files

    # The 74-byte wrapper execs its sibling; the frontier script imports none of its siblings
    # (lossless_caps.py is imported by prepare_caseops_data.py, which train_gpt.py never names).
    wrapper = corpus[RWRAP] / "train_gpt.py"
    assert [p.name for p in code_files(wrapper)] == ["train_gpt.py", "train_gpt_decode.py"]
    assert [p.name for p in code_files(corpus[R0611] / "train_gpt.py")] == ["train_gpt.py"]
    # An import of a sibling module is followed, transitively.
    (tmp_path / "train_gpt.py").write_text("import helper\n")
    (tmp_path / "helper.py").write_text("from deeper import x\n")
    (tmp_path / "deeper.py").write_text("x = 1\n")
    (tmp_path / "unused.py").write_text("y = 2\n")
    assert [p.name for p in code_files(tmp_path / "train_gpt.py")] == ["train_gpt.py", "helper.py", "deeper.py"]


def test_raw_convention_puts_the_1_0611_record_over_the_cap(corpus):
    """Issue 25, item 1: raw bytes give 158,429 + 15,865,260 = 16,023,689 > 16,000,000."""
    from pgolf.byo_code import count_code

    code = count_code([corpus[R0611] / "train_gpt.py"], "raw", None)
    assert code == {"convention": "raw", "bytes": 158_429, "how": "the files' bytes", "raw_bytes": 158_429}
    assert code["bytes"] + 15_865_260 == 16_023_689


def fake_pyminify(folder: Path) -> Path:
    """A stand-in `pyminify` that drops comment lines (python-minifier's output differs by version)."""
    fake = folder / "pyminify"
    folder.mkdir(exist_ok=True)
    fake.write_text("#!/bin/sh\ngrep -v '^ *#'\n")
    fake.chmod(0o755)
    return folder


def test_brotli_b85_matches_the_1_0611_record_own_function(corpus, monkeypatch, tmp_path):
    """Our recount of the 1.0611 code packing equals the record's _compressed_code_size on the
    same code: without pyminify on PATH (its fallback) and with a stand-in pyminify."""
    pytest.importorskip("brotli")
    from pgolf.byo_code import packed_bytes

    script = corpus[R0611] / "train_gpt.py"
    theirs = upstream_function(script, "_compressed_code_size")
    code = script.read_text(encoding="utf-8")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert packed_bytes(code.encode(), "brotli_b85") == (theirs(code)[1], False)
    assert theirs(code)[0] == script.stat().st_size == 158_429
    monkeypatch.setenv("PATH", f"{fake_pyminify(tmp_path / 'bin')}:/usr/bin:/bin")
    assert packed_bytes(code.encode(), "brotli_b85") == (theirs(code)[1], True)


def test_lzma_b85_matches_the_1_06141_record_own_function(corpus, monkeypatch, tmp_path):
    """The 1.06141 script packs with lzma and cannot run without pyminify: neither can the recount."""
    from pgolf.byo_code import CodeSizeError, count_code, packed_bytes

    script = corpus[R06141] / "train_gpt.py"
    theirs = upstream_function(script, "_compressed_code_size")
    code = script.read_text(encoding="utf-8")
    monkeypatch.setenv("PATH", f"{fake_pyminify(tmp_path / 'bin')}:/usr/bin:/bin")
    assert packed_bytes(code.encode(), "lzma_b85") == (theirs(code)[1], True)
    assert theirs(code)[0] == script.stat().st_size == 152_661
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError):
        theirs(code)
    with pytest.raises(CodeSizeError, match=r"byo.code_size lzma_b85: needs pyminify on PATH \(pip install python-minifier\), as the script does"):
        count_code([script], "lzma_b85", None)


def test_auto_takes_the_log_number_when_it_cannot_be_recomputed(corpus, monkeypatch, tmp_path):
    """The 1.0611 log states 31,999 compressed bytes for a 157,868-byte script (the shipped one is
    158,429): no recount gives it, so `auto` takes it from the log and says so."""
    pytest.importorskip("brotli")
    from pgolf.byo_code import CodeSizeError, count_code

    monkeypatch.setenv("PATH", str(tmp_path))
    code = count_code([corpus[R0611] / "train_gpt.py"], "auto", 31_999)
    assert code["convention"] == "log" and code["bytes"] == 31_999 and "taken from the log" in code["how"]
    assert code["bytes"] + 15_865_260 == 15_897_259  # the log's own Total submission size
    assert count_code([corpus[R549] / "train_gpt.py"], "auto", None)["convention"] == "raw"
    with pytest.raises(CodeSizeError, match=r"byo.code_size log: the log states no `Code size \(compressed\)` line"):
        count_code([corpus[R549] / "train_gpt.py"], "log", None)
    with pytest.raises(CodeSizeError, match="byo.code_size 'zip': expected one of auto, raw, lzma, brotli_b85, lzma_b85, log"):
        count_code([corpus[R549] / "train_gpt.py"], "zip", None)


def frontier_log(path: Path, code_raw: int, code_packed: int, model: int, total: int | None = None) -> Path:
    """A log with the 1.0611 record's size and score lines (its train_seed42.log, lines 168-922)."""
    path.write_text(
        "stopping_early: wallclock_cap train_time: 599592ms step: 4945/20000\n"
        "diagnostic pre-quantization post-ema val_loss:2.32848665 val_bpb:1.06395844 eval_time:6718ms\n"
        "Serialized model: 135417533 bytes\n"
        f"Code size (uncompressed): {code_raw} bytes\nCode size (compressed): {code_packed} bytes\n"
        f"Serialized model quantized+pergroup: {model} bytes\n"
        f"Total submission size quantized+pergroup: {total if total is not None else code_packed + model} bytes\n"
        "diagnostic quantized val_loss:2.34727563 val_bpb:1.07254371 eval_time:49995ms\n"
        "quantized_ttt_phased val_loss:2.31944212 val_bpb:1.05989454 eval_time:508785ms\n"
        "total_eval_time:508.8s\n"
    )
    return path


def test_check_counts_code_under_the_record_convention(corpus, tmp_path, monkeypatch):
    pytest.importorskip("brotli")
    from pgolf.byo import CheckError
    from pgolf.byo_code import brotli_b85_bytes
    from pgolf.byo_record import check_seed
    from pgolf.size import SizeError

    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    script = corpus[R0611] / "train_gpt.py"
    packed, _ = brotli_b85_bytes(script.read_bytes())
    artifact = tmp_path / "final_model.int6.ptz"
    artifact.write_bytes(b"\0" * 15_865_260)
    log = frontier_log(tmp_path / "train.log", 158_429, packed, 15_865_260)
    check = check_seed(log, artifact, script, {**LIMITS, "code_size": "brotli_b85"})
    size = check["size"]
    assert (size["code_bytes"], size["model_bytes"], size["total_bytes"]) == (packed, 15_865_260, packed + 15_865_260)
    assert size["code_size_convention"] == "brotli_b85" and check["metrics"]["final_label"] == "quantized_ttt_phased"
    # The same run counted raw: over the cap, one line with the numbers (issue 25, item 1).
    with pytest.raises(SizeError, match=r"code 158429 \(raw\) \+ model 15865260 = 16023689 bytes > limit 16000000"):
        check_seed(log, artifact, script, {**LIMITS, "code_size": "raw"})
    # A log whose compressed size is not the recount: the check names both numbers.
    bad = frontier_log(tmp_path / "bad.log", 158_429, packed + 1, 15_865_260)
    with pytest.raises(CheckError, match=rf"logs Code size \(compressed\) {packed + 1} bytes but the files give {packed} bytes \(code counted brotli_b85"):
        check_seed(bad, artifact, script, {**LIMITS, "code_size": "brotli_b85"})
    # The uncompressed line must be the script that ran.
    other = frontier_log(tmp_path / "other.log", 157_868, packed, 15_865_260)
    with pytest.raises(CheckError, match=r"logs Code size \(uncompressed\) 157868 bytes but the script run is 158429 bytes"):
        check_seed(other, artifact, script, {**LIMITS, "code_size": "brotli_b85"})


# ---------------------------------------------------------------------------- the SDPA fallback


@pytest.fixture(scope="module")
def sdpa():
    torch = pytest.importorskip("torch")
    import importlib.util

    path = REPO / "src/pgolf/byo_sdpa/flash_attn_interface.py"
    spec = importlib.util.spec_from_file_location("byo_sdpa_flash_attn_interface", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # torch.compile looks the module up by name
    spec.loader.exec_module(module)
    return torch, module


def reference_attention(torch, q, k, v, docs):
    """Causal attention within each document by the textbook formula, GQA by repeating k/v heads."""
    rep = q.size(-2) // k.size(-2)
    k, v = k.repeat_interleave(rep, dim=-2), v.repeat_interleave(rep, dim=-2)
    t = q.size(0)
    allowed = (docs[:, None] == docs[None, :]) & torch.ones(t, t, dtype=torch.bool).tril()
    scores = torch.einsum("qhd,khd->hqk", q, k) / q.size(-1) ** 0.5
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
    return torch.einsum("hqk,khd->qhd", weights, v)


def test_sdpa_dense_and_varlen_equal_the_formula(sdpa):
    torch, fa = sdpa
    torch.manual_seed(0)
    q, k, v = torch.randn(11, 4, 8), torch.randn(11, 2, 8), torch.randn(11, 2, 8)
    cu = torch.tensor([0, 4, 4, 11], dtype=torch.int32)  # an empty document too
    docs = torch.tensor([0] * 4 + [2] * 7)
    want = reference_attention(torch, q, k, v, docs)
    got = fa.flash_attn_varlen_func(q, k, v, cu_seqlens_q=cu, cu_seqlens_k=cu, max_seqlen_q=7, max_seqlen_k=7, causal=True)
    assert got.shape == (11, 4, 8) and torch.allclose(got, want, atol=1e-5)
    dense = fa.flash_attn_func(q[None], k[None], v[None], causal=True)
    assert dense.shape == (1, 11, 4, 8) and torch.allclose(dense[0], reference_attention(torch, q, k, v, torch.zeros(11)), atol=1e-5)


def test_sdpa_varlen_gradients_and_fullgraph_compile(sdpa):
    torch, fa = sdpa
    torch.manual_seed(1)
    leaves = [torch.randn(9, h, 8, requires_grad=True) for h in (4, 2, 2)]
    cu = torch.tensor([0, 5, 9], dtype=torch.int32)
    docs = torch.tensor([0] * 5 + [1] * 4)
    fa.flash_attn_varlen_func(*leaves, cu, cu, 5, 5, causal=True).square().sum().backward()
    ours = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    reference_attention(torch, *leaves, docs).square().sum().backward()
    for mine, want in zip(ours, [t.grad for t in leaves]):
        assert torch.allclose(mine, want, atol=1e-5)
    # The frontier compiles its model with fullgraph=True: the custom op must not break the graph.
    loss = torch.compile(lambda a, b, c: fa.flash_attn_varlen_func(a, b, c, cu, cu, 5, 5, causal=True).sum(), fullgraph=True)
    assert torch.allclose(loss(*leaves), reference_attention(torch, *leaves, docs).sum(), atol=1e-4)


def test_run_with_the_fallback_says_so_and_copies_sibling_code(tmp_path):
    """byo-run with attention_fallback sdpa: the script imports flash_attn_interface and gets the
    stand-in; the log's first line, run.json and the copied sibling file show it."""
    pytest.importorskip("torch")
    from pgolf.byo import FALLBACK_LINE, run_script
    from pgolf.data import write_manifest
    from pgolf.shards import write_shard

    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "train_gpt.py").write_text('exec(open(__file__.replace("train_gpt.py", "train_gpt_body.py")).read())\n')
    (folder / "train_gpt_body.py").write_text(
        "import flash_attn_interface, os\n"
        "print('stand-in:', getattr(flash_attn_interface, 'SDPA_FALLBACK', False))\n"
        "print('sidecars:', sorted(f for f in os.listdir(os.environ['DATA_PATH']) if '_bytes_' in f))\n"
        "open('final_model.int6.ptz', 'wb').write(b'x')\n"
    )
    data = tmp_path / "data"
    data.mkdir()
    (data / "tok.model").write_bytes(b"model")
    import numpy as np
    from pgolf.data import file_entry

    for name in ("fineweb_val_000000.bin", "fineweb_val_bytes_000000.bin", "fineweb_train_000000.bin"):
        write_shard(data / name, np.arange(10, dtype=np.uint16))
    files = [file_entry(data, "tok.model", "tokenizer"), file_entry(data, "fineweb_val_000000.bin", "val", num_tokens=10),
             file_entry(data, "fineweb_val_bytes_000000.bin", "val_bytes", num_entries=10),
             file_entry(data, "fineweb_train_000000.bin", "train", num_tokens=10)]
    manifest = write_manifest(data, {"format": "pgolf-data/1", "variant": "sp8_caseops", "files": files,
                                     "tokenizer": {"model": "tok.model", "vocab_size": 8},
                                     "stats": {"tokens_val": 10, "tokens_train": 10}})
    settings = {"env": {}, "launcher": "python", "nproc_per_node": 1, "artifact": "final_model.int6.ptz", "attention_fallback": "sdpa"}
    info = run_script(folder / "train_gpt.py", manifest, settings, 7, tmp_path / "out")
    log = (tmp_path / "out/train.log").read_text().splitlines()
    assert log[0] == FALLBACK_LINE
    assert "stand-in: True" in log and "sidecars: ['fineweb_val_bytes_000000.bin']" in log
    assert info["attention_fallback"] == "sdpa" and info["code_files"] == ["train_gpt.py", "train_gpt_body.py"]
    assert json.loads((tmp_path / "out/run.json").read_text())["attention_fallback"] == "sdpa"
    assert info["env"]["DATA_PATH"].endswith("data/datasets/fineweb10B_sp8_caseops")
    assert info["env"]["TOKENIZER_PATH"].endswith("data/tokenizers/fineweb_8_bpe_caseops.model")


# ---------------------------------------------------------------------------- preflight


def test_preflight_lines_for_fa3_lrzip_and_caseops(corpus):
    from pgolf.byo_preflight import check, required_modules

    script = corpus[R0611] / "train_gpt.py"
    assert required_modules([script]) == [
        "base64", "collections", "copy", "fcntl", "glob", "io", "lzma", "math", "os", "pathlib", "random", "re", "subprocess",
        "sys", "time", "uuid", "numpy", "sentencepiece", "torch", "flash_attn_interface", "concurrent", "triton",
    ]
    installed = lambda name: None if name == "flash_attn_interface" else object()  # noqa: E731
    byo = {"script": str(script), "env": {"CASEOPS_ENABLED": 1, "VOCAB_SIZE": 8192}, "binaries": ["lrzip"]}
    lines = check(byo, 8192, which=lambda _: None, find_spec=installed)
    failed = [line for ok, line in lines if not ok]
    assert len(failed) == 3
    assert failed[0].startswith("module flash_attn_interface (FlashAttention 3) is not installed for torch")
    assert failed[0].endswith(": install FA3 built for this torch (envs/byo-frontier.yaml), or set byo.attention_fallback: sdpa")
    assert failed[1] == "program lrzip: not on PATH, and byo.binaries needs it (e.g. apt-get install lrzip), or change the setting that calls it"
    assert failed[2] == "data: byo.env CASEOPS_ENABLED needs CaseOps shards with byte sidecars: set byo.data.prepare to the record's prepare_caseops_data.py"
    assert (True, "program pyminify: not on PATH (the script calls it; not in byo.binaries, so not required)") in lines
    # The fallback, the binary and the data step declared: all pass; a vocabulary mismatch fails.
    fixed = {**byo, "attention_fallback": "sdpa", "data": {"prepare": "prepare_caseops_data.py"}}
    lines = check(fixed, 8192, which=lambda p: f"/usr/bin/{p}", find_spec=installed)
    assert all(ok for ok, _ in lines)
    assert (False, "data: byo.env VOCAB_SIZE 8192 != the tokenizer's vocabulary 1024") in check(fixed, 1024, which=lambda p: p, find_spec=installed)


def test_preflight_stops_snakemake_in_one_line_per_need(corpus, tmp_path):
    """`snakemake byo` with the 1.0611 preset on a machine without FA3 and lrzip: the FAIL lines
    and one config error, before any job."""
    if (subprocess.run(["python", "-c", "import flash_attn_interface"], capture_output=True).returncode == 0):
        pytest.skip("FlashAttention 3 is installed here")
    from conftest import copy_workflow

    workdir = copy_workflow(tmp_path / "wf")
    dest = workdir / "records/track_10min_16mb" / corpus[R0611].name
    dest.parent.mkdir(parents=True)
    import shutil

    shutil.copytree(corpus[R0611], dest)
    env = {**os.environ, "PATH": f"{Path(os.sys.executable).parent}:/usr/bin:/bin"}
    # The preset as it is, but the docs of the embedded corpus (the challenge's are not here).
    (workdir / "docs.yaml").write_text("data:\n  docs:\n    path: data/corpus/embedded.jsonl.xz\n")
    done = subprocess.run(["snakemake", "-n", "--cores", "1", "byo", "--configfile", "config/byo-1.0611.yaml", "docs.yaml"],
                          cwd=workdir, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode != 0
    fails = [line for line in done.stderr.splitlines() if line.startswith("preflight: FAIL")]
    assert any("module flash_attn_interface (FlashAttention 3) is not installed" in line for line in fails), done.stderr[-3000:]
    if not shutil.which("lrzip"):
        assert any(line.startswith("preflight: FAIL program lrzip: not on PATH") for line in fails)
    assert "config error: byo preflight failed (the FAIL lines above)" in done.stderr
    assert not (workdir / "results/byo").exists()


# ---------------------------------------------------------------------------- end to end on the CPU


def test_snakemake_byo_with_a_wrapper_and_the_fallback_gives_a_valid_record(tmp_path):
    """`snakemake byo` on a record folder shaped like the HessianSDClip one (a two-line wrapper that
    execs its sibling) whose code imports flash_attn_interface: the sibling is run and shipped, the
    code counts both files, the SDPA fallback is stated everywhere, and `pgolf validate` accepts it."""
    pytest.importorskip("torch")
    import yaml

    from conftest import copy_workflow, snakemake
    from pgolf.byo import FALLBACK_LINE

    workdir = copy_workflow(tmp_path / "wf")
    folder = workdir / "records/wrapped"
    folder.mkdir(parents=True)
    wrapper = 'exec(open(__file__.replace("train_gpt.py", "train_gpt_body.py")).read())\n'
    (folder / "train_gpt.py").write_text(wrapper)
    body = "import flash_attn_interface  # FA3 on a real machine; byo's SDPA stand-in here\n" + (REPO / "tests/data/byo/train_gpt.py").read_text()
    (folder / "train_gpt_body.py").write_text(body)
    overlay = {"seeds": [1337], "byo": {"script": "records/wrapped/train_gpt.py", "name": "Wrapped_BYO", "attention_fallback": "sdpa"}}
    (workdir / "wrapped.yaml").write_text(yaml.safe_dump(overlay))
    done = snakemake(workdir, "byo", "--configfile", ".test/config.yaml", ".test/byo.yaml", "wrapped.yaml", configs=())
    assert done.returncode == 0, done.stderr[-4000:]
    assert "preflight: ok   module flash_attn_interface: not installed; byo.attention_fallback sdpa stands in" in done.stderr
    (rec,) = (workdir / "results/records/track_non_record_16mb").glob("*_Wrapped_BYO")
    assert sorted(p.name for p in rec.iterdir()) == ["README.md", "submission.json", "train_gpt.py", "train_gpt_body.py", "train_seed1337.log"]
    assert (rec / "train_gpt_body.py").read_text() == body
    log = (rec / "train_seed1337.log").read_text()
    assert log.splitlines()[0] == FALLBACK_LINE
    model = int(re.search(r"^Serialized model int6\+lzma: (\d+) bytes", log, re.M).group(1))
    assert f"Code size: {len(wrapper)} bytes" in log  # the script counts its own file
    (check,) = (workdir / "results/byo").glob("*/seed1337/check.json")
    size = json.loads(check.read_text())["size"]
    assert (size["code_bytes"], size["main_code_bytes"], size["total_bytes"]) == (len(wrapper) + len(body), len(wrapper), len(wrapper) + len(body) + model)
    sub = json.loads((rec / "submission.json").read_text())
    assert sub["attention_fallback"] == "sdpa" and sub["bytes_code"] == len(wrapper) + len(body) and "not FlashAttention 3" in sub["blurb"]
    assert "**Attention fallback:**" in (rec / "README.md").read_text()
    valid = subprocess.run(["pgolf", "validate", str(rec)], capture_output=True, text=True, cwd=workdir)
    assert valid.returncode == 0, valid.stdout + valid.stderr
