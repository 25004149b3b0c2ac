"""Wall time of GPTQ at the record's shape (11x512, the real preset's model), on a GPU.

GPTQ's time is charged to the 600 s training budget, so it has to be small next to it. This builds
the real model with random trained-looking weights, collects the Hessians over random tokens of
the preset's calibration size (timing does not depend on the token values), and quantizes every
int6 matrix with the preset's export settings:

    python bench/gptq_time.py                      # GPU, real shape, preset calibration size
    python bench/gptq_time.py --tiny --device cpu  # a 2x64 model on the CPU: checks the script runs

Prints the Hessian pass, the quantization and the total in ms, and the matrices quantized.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "record"))
sys.path.insert(0, str(ROOT / "src"))

from model import GPT, GPTConfig  # noqa: E402
from quantize import ExportConfig, GPTQConfig, collect_hessians, quantize_state, tensor_kind  # noqa: E402
from runtime import settings_from, sync  # noqa: E402

from pgolf.config import load_configs  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tiny", action="store_true", help="2 layers x 64 dims and a small calibration set (a CPU smoke test)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up run")
    args = ap.parse_args()

    config = load_configs([str(ROOT / "config.yaml"), str(ROOT / "config/fineweb-8xh100.yaml")])
    export_block = dict(config["export"])
    model_block = {**config["train"]["model"], "vocab_size": 1024}
    if args.tiny:
        model_block.update(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, ve_layers=[1], ve_dim=64, bigram_dim=64)
        export_block.update(passthrough_max_numel=1024)
        export_block["gptq"] = {**export_block["gptq"], "calib_batches": 2, "calib_batch_seqs": 2, "calib_seq_len": 64}
    export_block["gptq"] = {**export_block["gptq"], "enabled": True, "device": args.device}
    cfg = settings_from(ExportConfig, export_block)
    g = settings_from(GPTQConfig, cfg.gptq)
    device = torch.device(args.device)

    torch.manual_seed(0)
    model = GPT(settings_from(GPTConfig, model_block))
    for p in model.parameters():
        p.data.normal_(0, 0.02)
    model = model.to(device).eval()
    state = {k: v.detach() for k, v in model.state_dict().items()}
    names = [n for n, t in state.items() if tensor_kind(n, t, cfg) == "matrix"]
    batches = [torch.randint(0, 1024, (g.calib_batch_seqs, g.calib_seq_len)) for _ in range(g.calib_batches)]
    cpu_state = {k: v.cpu() for k, v in state.items()}

    for run in range(args.repeats + 1):
        sync(device)
        t0 = time.perf_counter()
        hessians = collect_hessians(model, names, batches, device)
        sync(device)
        t1 = time.perf_counter()
        quantize_state(cpu_state, model.cfg.to_dict(), cfg, hessians)
        sync(device)
        t2 = time.perf_counter()
        tag = "warm-up" if run == 0 else f"run {run}"
        print(
            f"{tag}: shape {model_block['num_layers']}x{model_block['model_dim']} device:{device.type}"
            f" calib {g.calib_batches}x{g.calib_batch_seqs}x{g.calib_seq_len} matrices:{len(hessians)}"
            f" block_size:{g.block_size} hessian_ms:{1000 * (t1 - t0):.0f} quantize_ms:{1000 * (t2 - t1):.0f}"
            f" gptq_time_ms:{1000 * (t2 - t0):.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
