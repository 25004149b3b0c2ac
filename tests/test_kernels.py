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
    loss_off, loss_on = off(x, y), on(x, y)
    assert abs(loss_on.item() - loss_off.item()) < 1e-6
    loss_off.backward()
    loss_on.backward()
    for (name, a), b in zip(off.named_parameters(), on.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-6, rtol=0, msg=lambda m: f"{name}: {m}")
    assert build_model(dict(SMALL)).train_ce is None  # off unless train.py sets it


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
def test_triton_kernel_equals_the_plain_path_and_the_records_kernel_in_the_interpreter(rec):  # noqa: F811
    """Loss and gradient of SoftcapCE (block 1024) against the plain path, fp32 and bf16 logits,
    vocab 2500 / 1024 / 37: loss to 1e-5; fp32 gradient to 1e-5, bf16 gradient within one bf16 step
    of the largest (both are rounded to bf16 from fp32). Against the record's own forward and
    backward kernels on the same fp32 logits: to 1e-5. Mutation: in _ce_backward,
    `(1.0 - t * t)` -> `(1.0 - t)` (fails every gradient)."""
    args = [sys.executable, "-c", CHILD, str(REPO / "workflow" / "record")]
    record = getattr(rec, "__file__", None)
    if record:
        args += [record, str(REPO / "tests" / "record_standins")]
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    diffs = json.loads(done.stdout.strip().splitlines()[-1])
    for case, d in diffs.items():
        assert d["loss"] < 1e-5, (case, d)
        if case.startswith("bfloat16"):
            assert d["grad_dtype"] == "torch.bfloat16" and d["grad"] <= d["ulp"], (case, d)
        else:
            assert d["grad"] < 1e-5, (case, d)
    assert "record" in diffs


def test_bundle_carries_kernels_only_when_fused_ce_is_on():
    """The default train_gpt.py has no kernels.py (nor does fused_ce: false); fused_ce: true bundles
    it, without its import line, and the text compiles. Mutation: drop "kernels" from
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
