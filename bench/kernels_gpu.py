"""GPU check and timing of the fused training kernels (workflow/record/kernels.py) against the plain path.

Needs a CUDA GPU and Triton; NOT RUN YET (written where no GPU is available). On a machine without
CUDA or Triton it exits with one line saying so (exit status 2).

For train.fused_ce, at the record's training shape (rows = tokens of one rank's micro-batch,
default 16384 x 8192 bf16 logits, softcap 30):
  - equality: max |loss_kernel - loss_plain| and max |grad_kernel - grad_plain| (the gradient of the
    summed loss w.r.t. the bf16 logits, compared in fp32), plus each against an fp64 reference;
  - time: forward + backward of each path, median over --iters runs after --warmup, CUDA events;
    the plain path is timed eager and torch.compile'd (how the trainer runs it).
For train.fused_mlp, at the record's MLP shape (default 16384 rows, model_dim 512, hidden 2048, bf16):
  - equality: output and the three gradients (x, w_up, w_down) of LeakySquareMLP against the plain
    MLP, each as max abs diff over the largest value, and each path against an fp64 reference;
  - time: forward + backward, as above.
Both fused paths are also timed inside torch.compile (as the trainer runs the model): that they
compile at all (autograd.Function around Triton launches, not a torch.library custom op as the
record's CE) is checked only by running this.
The tables are printed last.

    python bench/kernels_gpu.py [--rows 16384] [--vocab 8192] [--dim 512] [--hidden 2048] [--iters 20] [--warmup 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "record"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--cap", type=float, default=30.0)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled plain path")
    args = ap.parse_args()

    import torch

    import kernels

    if not torch.cuda.is_available():
        print("kernels_gpu: no CUDA device here; this benchmark needs a GPU (nothing measured)")
        return 2
    if kernels.triton is None:
        print("kernels_gpu: Triton is not importable here; install it to run the fused kernels (nothing measured)")
        return 2

    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    z = (torch.randn(args.rows, args.vocab, device=dev, generator=g) * 8).bfloat16()
    t = torch.randint(0, args.vocab, (args.rows,), device=dev, generator=g)

    def run(fn, logits):
        x = logits.detach().clone().requires_grad_()
        loss = fn(x, t, args.cap)
        loss.sum().backward()  # per-row gradients of O(1), not divided by the row count
        return loss.detach(), x.grad

    fused = kernels.SoftcapCE.apply
    plain = kernels.softcap_ce_plain
    loss_k, grad_k = run(fused, z)
    loss_p, grad_p = run(plain, z)
    loss_r, grad_r = run(plain, z.double())  # fp64 reference on the same bf16 values
    rows = [
        ("max |loss kernel - plain|", (loss_k - loss_p).abs().max().item()),
        ("max |grad kernel - plain|", (grad_k.float() - grad_p.float()).abs().max().item()),
        ("max |loss kernel - fp64|", (loss_k.double() - loss_r).abs().max().item()),
        ("max |loss plain - fp64|", (loss_p.double() - loss_r).abs().max().item()),
        ("max |grad kernel - fp64|", (grad_k.double() - grad_r).abs().max().item()),
        ("max |grad plain - fp64|", (grad_p.double() - grad_r).abs().max().item()),
    ]

    def timed(fn) -> float:
        x = z.detach().clone().requires_grad_()
        for _ in range(args.warmup):
            fn(x, t, args.cap).mean().backward()
            x.grad = None
        times = []
        for _ in range(args.iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(x, t, args.cap).mean().backward()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
            x.grad = None
        return statistics.median(times)

    paths = [("fused kernel (Triton)", fused), ("plain, eager", plain)]
    if not args.no_compile:  # the trainer compiles the model around either path
        paths.append(("plain, torch.compile", torch.compile(plain, dynamic=False)))
        paths.append(("fused kernel inside torch.compile", torch.compile(lambda a, b, c: fused(a, b, c), dynamic=False)))
    timings = [(name, timed(fn)) for name, fn in paths]

    # The MLP: x [rows, dim], w_up [hidden, dim], w_down [dim, hidden].
    x = torch.randn(args.rows, args.dim, device=dev, generator=g).bfloat16()
    w_up = (torch.randn(args.hidden, args.dim, device=dev, generator=g) * args.dim ** -0.5).bfloat16()
    w_down = (torch.randn(args.dim, args.hidden, device=dev, generator=g) * args.hidden ** -0.5).bfloat16()
    gout = torch.randn(args.rows, args.dim, device=dev, generator=g).bfloat16()

    def mlp_run(fn, kind):
        a, b, c = (v.to(kind).clone().requires_grad_() for v in (x, w_up, w_down))
        y = fn(a, b, c)
        y.backward(gout.to(kind))
        return [y.detach(), a.grad, b.grad, c.grad]

    def rel(p, q):
        return max(((u.double() - v.double()).abs().max() / v.double().abs().max()).item() for u, v in zip(p, q))

    mk, mp, mr = mlp_run(kernels.LeakySquareMLP.apply, torch.bfloat16), mlp_run(kernels.leaky_square_plain, torch.bfloat16), mlp_run(kernels.leaky_square_plain, torch.float64)
    rows += [("MLP max rel |kernel - plain| (out, dx, dw_up, dw_down)", rel(mk, mp)),
             ("MLP max rel |kernel - fp64|", rel(mk, mr)), ("MLP max rel |plain - fp64|", rel(mp, mr))]

    def mlp_timed(fn) -> float:
        a, b, c = (v.clone().requires_grad_() for v in (x, w_up, w_down))
        for _ in range(args.warmup):
            fn(a, b, c).backward(gout)
        times = []
        for _ in range(args.iters):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn(a, b, c).backward(gout)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    mlp_paths = [("MLP fused (Triton)", kernels.LeakySquareMLP.apply), ("MLP plain, eager", kernels.leaky_square_plain)]
    if not args.no_compile:
        mlp_paths.append(("MLP plain, torch.compile", torch.compile(kernels.leaky_square_plain, dynamic=False)))
        mlp_paths.append(("MLP fused inside torch.compile", torch.compile(lambda a, b, c: kernels.LeakySquareMLP.apply(a, b, c), dynamic=False)))
    timings += [(name, mlp_timed(fn)) for name, fn in mlp_paths]
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30

    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  triton {kernels.triton.__version__}")
    print(f"CE: {args.rows} x {args.vocab} bf16 logits, softcap {args.cap}; MLP: {args.rows} x {args.dim} -> {args.hidden}, bf16; median of {args.iters} after {args.warmup} warm-up; peak {peak:.2f} GiB")
    print()
    print("| check | value |")
    print("|---|---|")
    for name, v in rows:
        print(f"| {name} | {v:.3e} |")
    print()
    print("| path | forward+backward ms (median) |")
    print("|---|---|")
    for name, ms in timings:
        print(f"| {name} | {ms:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
