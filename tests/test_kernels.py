"""train.fused_ce (workflow/record/kernels.py): the softcapped cross-entropy of the training loss.

Always run: the plain path (what CPU and Triton-less machines train with) against the 1.0611
record's own non-fused loss (its GPT.forward with FUSED_CE_ENABLED=0) on the same logits, and the
model's training loss with the key on against the key off. Run where Triton is importable: our
Triton kernel, in Triton's CPU interpreter, against the plain path and against the record's own
kernels, in a child process (TRITON_INTERPRET must be set before triton is first imported). On a
GPU: bench/kernels_gpu.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from build import build_model
from kernels import softcap_ce, softcap_ce_plain
from test_frontier_model import SMALL, batch, randomize, rec  # noqa: F401  (rec: the 1.0611 record's script)

REPO = Path(__file__).resolve().parents[1]
HAVE_TRITON = importlib.util.find_spec("triton") is not None and "record_standins" not in str(importlib.util.find_spec("triton").origin)
HOW_TO_RUN = ("triton not importable: run with PYTHONPATH=src:/tmp/tritonsite TRITON_INTERPRET=1 "
              "python -m pytest tests/test_kernels.py (any Triton install on PYTHONPATH; the child sets TRITON_INTERPRET=1 itself)")


def logits_and_targets(n=12, vocab=2500, scale=20.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, vocab, generator=g) * scale).to(dtype)
    return z, torch.randint(0, vocab, (n,), generator=g)


def assert_same_loss_and_grads(off, on, x, y):
    """The two models' training losses on (x, y) agree to 1e-6, and so does every parameter's gradient."""
    loss_off, loss_on = off(x, y), on(x, y)
    assert abs(loss_on.item() - loss_off.item()) < 1e-6
    loss_off.backward()
    loss_on.backward()
    for (name, a), b in zip(off.named_parameters(), on.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-6, rtol=0, msg=lambda m: f"{name}: {m}")


def test_plain_path_equals_the_records_non_fused_loss(rec):  # noqa: F811
    """The record's GPT.forward on its non-fused branch (softcap, then F.cross_entropy in fp32, mean),
    called with its hidden state and projection stood in so that it sees our logits z: loss and
    d loss / d z to 1e-6. Mutation: in softcap_ce_plain, `torch.tanh(z / cap)` -> `torch.tanh(z) / cap`."""
    z, t = logits_and_targets()
    z_rec = z.clone().requires_grad_()
    stand_in = types.SimpleNamespace(_forward_hidden=lambda ids, **_kw: z_rec.view(1, *z.shape),
                                     _project_logits=lambda h: h, logit_softcap=30.0, fused_ce_enabled=False)
    loss_rec = rec.GPT.forward(stand_in, None, t.view(1, -1))
    loss_rec.backward()
    z_ours = z.clone().requires_grad_()
    loss_ours = softcap_ce_plain(z_ours, t, 30.0).mean()
    loss_ours.backward()
    assert abs(loss_ours.item() - loss_rec.item()) < 1e-6
    torch.testing.assert_close(z_ours.grad, z_rec.grad, atol=1e-6, rtol=0)


def test_training_loss_with_fused_ce_on_equals_off_on_cpu():
    """With train_ce = kernels.softcap_ce (what train.fused_ce sets) the model's loss and every
    parameter's gradient equal the default path's on CPU (the plain path runs there).
    Mutation: in GPT.forward, `self.cfg.logit_softcap` -> `2 * self.cfg.logit_softcap`."""
    x, y = batch()
    off = build_model(dict(SMALL))
    randomize(off)
    on = copy.deepcopy(off)
    on.train_ce = softcap_ce
    assert_same_loss_and_grads(off, on, x, y)
    assert build_model(dict(SMALL)).train_ce is None  # off unless train.py sets it


def test_plain_mlp_equals_the_records_non_fused_mlp(rec):  # noqa: F811
    """Our MLP module (what the plain path and eval run) against the 1.0611 record's MLP.forward on its
    non-fused branch, same weights and input: output and gradients to 1e-6. Mutation: in
    kernels.leaky_square_plain or MLP.forward, `0.5` -> `0.25`."""
    from model import MLP

    from kernels import leaky_square_plain

    ours = MLP(build_model(dict(SMALL)).cfg)
    randomize(ours)
    theirs = rec.MLP(64, 2.0)
    theirs.use_fused = False
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 64, generator=g)
    gout = torch.randn(2, 9, 64, generator=g)
    w_up = ours.up.weight.detach().clone().requires_grad_()
    w_down = ours.down.weight.detach().clone().requires_grad_()
    y_rec = theirs(x, w_up, w_down)
    y_rec.backward(gout)
    y_ours = ours(x)
    y_ours.backward(gout)
    torch.testing.assert_close(y_ours, y_rec, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.up.weight.grad, w_up.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.down.weight.grad, w_down.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(leaky_square_plain(x, w_up, w_down), y_rec, atol=1e-6, rtol=0)


@pytest.mark.parametrize("qat", [0, 6])
def test_training_loss_with_fused_mlp_on_equals_off_on_cpu(qat):
    """With every MLP's train_mlp = kernels.leaky_square_mlp (what train.fused_mlp sets) the loss and
    gradients equal the plain layers' on CPU, also under late QAT (the fake-quantized weights reach
    it). Mutation: in MLP.forward, `self.down.weight_for(x)` -> `self.down.weight`."""
    from model import MLP

    from kernels import leaky_square_mlp

    x, y = batch()
    off = build_model(dict(SMALL))
    randomize(off)
    on = copy.deepcopy(off)
    for m in on.modules():
        if isinstance(m, MLP):
            m.train_mlp = leaky_square_mlp
    off.set_qat(qat)
    on.set_qat(qat)
    assert_same_loss_and_grads(off, on, x, y)


CHILD = r"""
import importlib.util, json, sys, torch
sys.path.insert(0, sys.argv[1])
import triton  # the real one, in the interpreter (TRITON_INTERPRET=1 is set before this import)
import kernels as K
out = {}
for dtype in ("float32", "bfloat16"):
    for vocab in (2500, 1024, 37):  # not a multiple of the block, exactly one block, less than one
        g = torch.Generator().manual_seed(vocab)
        z = (torch.randn(9, vocab, generator=g) * 20).to(getattr(torch, dtype))
        t = torch.randint(0, vocab, (9,), generator=g)
        t[0] = vocab - 1  # the last column, in the last (partial) block
        w = torch.randn(9, generator=g)
        a = z.clone().requires_grad_()
        la = K.SoftcapCE.apply(a, t, 30.0, 1024)
        (la * w).sum().backward()
        b = z.clone().requires_grad_()
        lb = K.softcap_ce_plain(b, t, 30.0)
        (lb * w).sum().backward()
        out[f"{dtype}/{vocab}"] = dict(loss=(la - lb).abs().max().item(), grad=(a.grad.float() - b.grad.float()).abs().max().item(),
                                       grad_dtype=str(a.grad.dtype), ulp=float(b.grad.float().abs().max()) * 2.0 ** -7)
for dtype in ("float32", "bfloat16"):  # the MLP kernels: rows, D, H none a multiple of the 16-blocks
    g = torch.Generator().manual_seed(7)
    x = torch.randn(3, 29, 40, generator=g).to(getattr(torch, dtype))
    w_up, w_down = (torch.randn(72, 40, generator=g) * 0.2).to(x.dtype), (torch.randn(40, 72, generator=g) * 0.2).to(x.dtype)
    gout = torch.randn(3, 29, 40, generator=g).to(x.dtype)
    res = []
    for fn, kind in ((lambda a, b, c: K.LeakySquareMLP.apply(a, b, c, (16, 16, 16)), x.dtype), (K.leaky_square_plain, x.dtype), (K.leaky_square_plain, torch.float64)):
        a, b, c = (v.to(kind).clone().requires_grad_() for v in (x, w_up, w_down))
        y = fn(a, b, c)
        y.backward(gout.to(kind))
        res.append([y.detach(), a.grad, b.grad, c.grad])
    rel = lambda p, q: ((p.double() - q.double()).abs().max() / q.double().abs().max()).item()
    out[f"mlp/{dtype}"] = dict(kernel_vs_plain=max(rel(p, q) for p, q in zip(res[0], res[1])),
                               kernel_vs_fp64=max(rel(p, q) for p, q in zip(res[0], res[2])),
                               plain_vs_fp64=max(rel(p, q) for p, q in zip(res[1], res[2])))
if len(sys.argv) > 2:  # the record's own kernels, launched directly (its custom ops insist on CUDA)
    sys.path.append(sys.argv[3])  # its FA3 import: the SDPA stand-in (its triton import stays the real one)
    compile_fn, torch.compile = torch.compile, lambda fn=None, **kw: fn if fn is not None else (lambda f: f)
    spec = importlib.util.spec_from_file_location("record_1061_interp", sys.argv[2])
    rec = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rec)
    torch.compile = compile_fn
    g = torch.Generator().manual_seed(5)
    n, vocab = 9, 2500
    z = torch.randn(n, vocab, generator=g) * 20
    t = torch.randint(0, vocab, (n,), generator=g)
    w = torch.randn(n, generator=g)
    loss, lse, dz = torch.empty(n), torch.empty(n), torch.empty_like(z)
    rec._softcapped_ce_fwd_kernel[(n,)](z, loss, lse, t, z.stride(0), z.stride(1), n, vocab, 30.0, block_size=1024)
    rec._softcapped_ce_bwd_kernel[(n,)](dz, w, lse, z, t, z.stride(0), z.stride(1), dz.stride(0), dz.stride(1), n, vocab, 30.0, block_size=1024)
    a = z.clone().requires_grad_()
    la = K.SoftcapCE.apply(a, t, 30.0, 1024)
    (la * w).sum().backward()
    out["record"] = dict(loss=(la - loss).abs().max().item(), grad=(a.grad - dz).abs().max().item())
print(json.dumps(out))
"""


@pytest.mark.skipif(not HAVE_TRITON, reason=HOW_TO_RUN)
def test_triton_kernels_equal_the_plain_path_and_the_records_kernel_in_the_interpreter(rec):  # noqa: F811
    """Loss and gradient of SoftcapCE (block 1024) against the plain path, fp32 and bf16 logits,
    vocab 2500 / 1024 / 37: loss to 1e-5; fp32 gradient to 1e-5, bf16 gradient within one bf16 step
    of the largest (both are rounded to bf16 from fp32). Against the record's own forward and
    backward kernels on the same fp32 logits: to 1e-5. LeakySquareMLP (16-blocks; rows 87, D 40,
    H 72) against the plain MLP: output and the three gradients to 1e-5 of their largest in fp32; in
    bf16 within 2e-2 of an fp64 reference (the plain path: 5e-3). Mutations: in _ce_backward,
    `(1.0 - t * t)` -> `(1.0 - t)` (fails every CE gradient); in _mm_leaky_square,
    `2.0 * h, 0.5 * h` -> `2.0 * h, 0.5` (fails the MLP's)."""
    args = [sys.executable, "-c", CHILD, str(REPO / "workflow" / "record")]
    record = getattr(rec, "__file__", None)
    if record:
        args += [record, str(REPO / "tests" / "record_standins")]
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    diffs = json.loads(done.stdout.strip().splitlines()[-1])
    mlp = {case: diffs.pop(case) for case in list(diffs) if case.startswith("mlp/")}
    assert mlp["mlp/float32"]["kernel_vs_plain"] < 1e-5, mlp
    assert mlp["mlp/bfloat16"]["kernel_vs_fp64"] < 2e-2, mlp  # bf16 rounding of h, the activation, the gradients
    for case, d in diffs.items():
        assert d["loss"] < 1e-5, (case, d)
        if case.startswith("bfloat16"):
            assert d["grad_dtype"] == "torch.bfloat16" and d["grad"] <= d["ulp"], (case, d)
        else:
            assert d["grad"] < 1e-5, (case, d)
    assert "record" in diffs


def test_bundle_carries_kernels_only_when_a_fused_key_is_on():
    """The default train_gpt.py has no kernels.py (nor does fused_ce: false); fused_ce: true or
    fused_mlp: true bundles it, without its import line, and the text compiles. Mutation: drop "kernels" from
    bundle.OPTIONAL_TRAIN_MODULES (the default bundle then carries SoftcapCE)."""
    import yaml

    from pgolf.bundle import OPTIONAL_TRAIN_MODULES, bundle
    from train import TrainConfig

    assert set(OPTIONAL_TRAIN_MODULES["kernels"]) <= set(TrainConfig.__dataclass_fields__)
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    assert "class SoftcapCE" not in bundle(config)
    off = copy.deepcopy(config)
    off["train"]["fused_ce"] = False
    assert "class SoftcapCE" not in bundle(off)
    on = copy.deepcopy(config)
    on["train"]["fused_ce"] = True
    text = bundle(on)
    assert "class SoftcapCE" in text and "from kernels import" not in text
    assert text.index("class SoftcapCE") < text.index("class TrainConfig")  # defined before train.py uses it
    compile(text, "train_gpt.py", "exec")
    mlp = copy.deepcopy(config)
    mlp["train"]["fused_mlp"] = True
    text = bundle(mlp)
    assert "class LeakySquareMLP" in text and "from kernels import" not in text
    compile(text, "train_gpt.py", "exec")
