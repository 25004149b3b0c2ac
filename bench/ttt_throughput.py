"""Score-first TTT throughput at the record shape on one GPU: ours (workflow/record/ttt.py) against
PR #549's own `eval_val_sliding_ttt`, on the same val tokens and the same chunking, in one process.

    python bench/ttt_throughput.py DATA_DIR --pr549 PATH/TO/pr549/train_gpt.py [--max-chunks 24]
    python bench/ttt_throughput.py DATA_DIR --tiny --device cpu      # smoke test: our side only
    python bench/ttt_throughput.py DATA_DIR --tiny --device cpu --pr549 PATH   # both sides, tiny (slow)

DATA_DIR holds a data stage's manifest.json (results/data/<id>/). Both sides get the first
max_chunks * chunk_tokens targets of the val split, #549's settings (seq_len 2048, stride 64,
32,768-token chunks, SGD momentum 0.9, lr 0.002 cosine across chunks, 3 epochs, batch 32
sequences, clip 1.0, all parameters) and random weights of the 11x512 model (each side its own
model code and init; --artifact gives ours a trained artifact). Where FlashAttention 3 is not
installed, #549's import of `flash_attn_interface` is served by bench/fa3_standin/ (SDPA), and the
output says so. Each side first runs two chunks untimed (compilation, allocator), from the same
weights it then starts the timed run with.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "workflow" / "record"))

from evaluate import EvalConfig, EvalSetup, compile_hidden, load_eval_model  # noqa: E402
from model import GPT, GPTConfig  # noqa: E402
from runtime import Dist, autocast_for, load_val_tokens, manifest_paths, read_manifest, tokenizer_path  # noqa: E402
from scoring import byte_luts  # noqa: E402
from ttt import TTTConfig, eval_ttt  # noqa: E402


def trained_tokens(total: int, chunk: int, seq_len: int, epochs: int) -> int:
    """Training tokens of one pass: every chunk but the last, in whole seq_len sequences (both sides)."""
    chunks = -(-total // chunk)
    return sum(epochs * ((min(chunk, total - k * chunk)) // seq_len) * seq_len for k in range(chunks - 1))


def measure(name: str, run, device: torch.device) -> dict:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    val_loss, val_bpb = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return {"name": name, "seconds": time.perf_counter() - t0, "val_loss": val_loss, "val_bpb": val_bpb, "peak_gib": peak}


def ours(args, tokens, warm, cfg, ttt, dist, manifest) -> dict:
    if args.artifact:
        model = load_eval_model(args.artifact, dist.device)
    else:
        torch.manual_seed(0)
        model = GPT(args.model_cfg).to(dist.device).eval()
    compile_hidden(model)  # as the eval stage does on GPU
    luts = byte_luts(tokenizer_path(manifest), model.cfg.vocab_size, dist.device)
    autocast = autocast_for(dist.device)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    eval_ttt(EvalSetup(model, warm, cfg, dist, luts, autocast), ttt)
    model.load_state_dict(start)

    def run():
        r = eval_ttt(EvalSetup(model, tokens, cfg, dist, luts, autocast), ttt)
        return r["val_loss"], r["val_bpb"]

    return measure("ours (workflow/record/ttt.py)", run, dist.device)


def pr549(args, tokens, warm, ttt, device, manifest) -> dict:
    try:
        import flash_attn_interface  # noqa: F401

        standin = getattr(flash_attn_interface, "STANDIN", False)
    except ImportError:
        sys.path.insert(0, str(BENCH / "fa3_standin"))
        standin = True
    if args.tiny:  # #549 reads its hyperparameters from the environment when it is imported
        import os

        os.environ.update(NUM_LAYERS="2", MODEL_DIM="64", NUM_HEADS="4", NUM_KV_HEADS="2", ROPE_DIMS="8", VE_LAYERS="1", XSA_LAST_N="1", BIGRAM_DIM="32", VE_DIM="32")
    spec = importlib.util.spec_from_file_location("pr549", args.pr549)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    a = m.Hyperparameters()
    a.ttt_chunk_tokens, a.ttt_lr, a.ttt_epochs, a.ttt_momentum = ttt.chunk_tokens, ttt.lr, ttt.epochs, ttt.momentum
    a.ttt_batch_seqs, a.ttt_grad_clip, a.ttt_freeze_blocks, a.train_seq_len = ttt.batch_seqs, ttt.grad_clip, 0, args.seq_len
    torch.manual_seed(0)
    # Built as #549's main() builds it: bf16 model, fp32 banks, linears and low-dim parameters.
    model = m.GPT(
        vocab_size=a.vocab_size, num_layers=a.num_layers, model_dim=a.model_dim, num_heads=a.num_heads, num_kv_heads=a.num_kv_heads,
        mlp_mult=a.mlp_mult, tie_embeddings=a.tie_embeddings, tied_embed_init_std=a.tied_embed_init_std, logit_softcap=a.logit_softcap,
        rope_base=a.rope_base, qk_gain_init=a.qk_gain_init, mtp_num_heads=a.mtp_num_heads, mtp_loss_weight=a.mtp_loss_weight,
        bigram_vocab_size=a.bigram_vocab_size, bigram_dim=a.bigram_dim, xsa_last_n=a.xsa_last_n, rope_dims=a.rope_dims,
        ln_scale=a.ln_scale, dtg=a.dtg_enabled, ve_enabled=a.ve_enabled, ve_dim=a.ve_dim, ve_layers=a.ve_layers,
        gated_attention=a.gated_attention, value_residual=a.value_residual,
    ).to(device).bfloat16()
    for bank in (model.qo_bank, model.kv_bank, model.mlp_up_bank, model.mlp_down_bank):
        bank.data = bank.data.float()
    for module in model.modules():
        if isinstance(module, m.CastedLinear):
            module.float()
    m.restore_low_dim_params_to_fp32(model)
    import sentencepiece as spm

    luts = m.build_sentencepiece_luts(spm.SentencePieceProcessor(model_file=str(tokenizer_path(manifest))), a.vocab_size, device)
    quiet = lambda *_a, **_k: None  # noqa: E731
    # #549 caches its rotary tables on first use; its real run builds them in training. Built first
    # under its scoring's inference_mode, they could not be used by its TTT training step.
    with torch.no_grad(), torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        model.forward_logits(tokens[: args.seq_len][None].to(device))
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    m.eval_val_sliding_ttt(a, model, 0, 1, device, warm, *luts, stride=args.stride, batch_seqs=32, log0=quiet)
    model.load_state_dict(start)
    r = measure("PR #549 eval_val_sliding_ttt", lambda: m.eval_val_sliding_ttt(a, model, 0, 1, device, tokens, *luts, stride=args.stride, batch_seqs=32, log0=quiet), device)
    r["standin"] = standin
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", help="a data stage's folder (results/data/<id>/, holding manifest.json)")
    ap.add_argument("--pr549", help="path to PR #549's train_gpt.py (its eval_val_sliding_ttt is run beside ours)")
    ap.add_argument("--artifact", help="our final_model.ptz to start from (default: random weights)")
    ap.add_argument("--max-chunks", type=int, default=24, help="chunks of the val split to run (both sides)")
    ap.add_argument("--chunk-tokens", type=int, default=32768)
    ap.add_argument("--seq-len", type=int, default=2048)
    ap.add_argument("--stride", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="a 2x64 model, seq_len 64, 1024-token chunks: a smoke test of our side")
    args = ap.parse_args()
    if args.tiny:
        args.seq_len, args.stride, args.chunk_tokens = 64, 32, 1024
        args.max_chunks = min(args.max_chunks, 4)
    manifest = read_manifest(str(Path(args.data_dir) / "manifest.json"))
    vocab = manifest["tokenizer"]["vocab_size"]
    args.model_cfg = GPTConfig(vocab_size=vocab, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2) if args.tiny else GPTConfig(vocab_size=vocab)
    dist = Dist(args.device)
    if dist.device.type == "cpu":
        torch.use_deterministic_algorithms(True)
    all_val = load_val_tokens(manifest_paths(manifest, "val"), args.seq_len)
    total = min(args.max_chunks * args.chunk_tokens, len(all_val) - 1)
    tokens = all_val[: total + 1]
    warm = all_val[: min(2 * args.chunk_tokens, len(all_val) - 1) + 1]
    cfg = EvalConfig(seq_len=args.seq_len, stride=args.stride, batch_seqs=32)
    ttt = TTTConfig(enabled=True, chunk_tokens=args.chunk_tokens, lr=0.002, epochs=args.epochs, momentum=0.9, batch_seqs=32, grad_clip=1.0)
    name = torch.cuda.get_device_name() if dist.device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}; {total} val targets in {-(-total // args.chunk_tokens)} chunks of {args.chunk_tokens};"
          f" seq_len {args.seq_len}, stride {args.stride}, {args.epochs} epochs; model {'tiny 2x64' if args.tiny else '11x512'}")
    rows = [ours(args, tokens, warm, cfg, ttt, dist, manifest)]
    if args.pr549:
        rows.append(pr549(args, tokens, warm, ttt, dist.device, manifest))
        if rows[-1]["standin"]:
            print("note: flash_attn_interface is the SDPA stand-in of bench/fa3_standin/ (FlashAttention 3 not installed): #549's attention runs on SDPA")
    elif not args.tiny:
        print("note: no --pr549 given: our side only")
    trained = trained_tokens(total, args.chunk_tokens, args.seq_len, args.epochs)
    print(f"\n{'eval':32s} {'time s':>8s} {'scored tok/s':>13s} {'trained tok/s':>14s} {'(scored+trained)/s':>19s} {'peak GiB':>9s} {'val_bpb':>11s}")
    for r in rows:
        s = r["seconds"]
        print(f"{r['name']:32s} {s:8.2f} {total / s:13.0f} {trained / s:14.0f} {(total + trained) / s:19.0f} {r['peak_gib']:9.2f} {r['val_bpb']:11.6f}")
    if len(rows) == 2:
        print(f"speed-up of ours over #549: {rows[1]['seconds'] / rows[0]['seconds']:.2f}x (weights differ: each side's own random init)")


if __name__ == "__main__":
    main()
