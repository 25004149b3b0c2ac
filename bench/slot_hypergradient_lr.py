"""How far PR #675's hypergradient SLOT learning rate moves at the record's shape, measured with
#675's own eval_val_slot (its script in ../shared/reference/) on CPU.

    python bench/slot_hypergradient_lr.py [--weight-std 0.05] [--batches 1]

Frozen hidden states stand in for a trained model's last layer: a table of unit-variance vectors
(an RMS-normed hidden state has unit RMS) looked up per token; the tied output weight is Gaussian
with --weight-std. #675's shape: seq_len 2048, stride 96, 32 windows a batch, 24 steps, lr 0.012,
vocabulary 1024, model_dim 512. Prints the largest |lr - 0.012| over the steps of each batch.
"""

from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests"), str(REPO / "workflow" / "record")]

from record_loader import load_record_script  # noqa: E402


class FrozenHidden:
    def __init__(self, vocab: int, dim: int, weight_std: float, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(vocab, dim, generator=g)
        self.tok_emb = torch.nn.Embedding(vocab, dim)
        self.tok_emb.weight.data = torch.randn(vocab, dim, generator=g) * weight_std
        self.logit_softcap = 30.0

    def forward_hidden(self, ids):
        return self.table[ids]

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weight-std", type=float, default=0.05)
    ap.add_argument("--batches", type=int, default=2, help="full-length batches of 32 windows (a shorter tail batch follows)")
    ap.add_argument("--reference", default=str(REPO.parent / "shared" / "reference" / "pr675_hypergradient_slot_train_gpt.py"))
    a = ap.parse_args()
    pr675 = load_record_script(Path(a.reference), "pr675_script")
    seq_len, stride, batch, steps, lr, vocab, dim = 2048, 96, 32, 24, 0.012, 1024, 512
    trace = []

    class TracedAdamW(torch.optim.AdamW):
        def step(self, closure=None):
            trace.append(self.param_groups[0]["lr"])
            return super().step(closure)

    torch.compile = lambda fn=None, **kw: fn
    torch.optim.AdamW = TracedAdamW
    total = batch * a.batches * stride + seq_len  # windows start every stride targets; the last ones are shorter
    tokens = torch.randint(0, vocab, (total + 1,), generator=torch.Generator().manual_seed(1))
    args = types.SimpleNamespace(eval_stride=stride, eval_seq_len=seq_len, train_seq_len=seq_len, tie_embeddings=True, slot_batch_seqs=batch,
                                 slot_lr=lr, slot_lr_min=0.001, slot_steps=steps)
    luts = (torch.ones(vocab, dtype=torch.int16), torch.zeros(vocab, dtype=torch.bool), torch.zeros(vocab, dtype=torch.bool))
    t0 = time.time()
    val_loss, _ = pr675.eval_val_slot(args, FrozenHidden(vocab, dim, a.weight_std), 0, 1, torch.device("cpu"), tokens, *luts)
    per_batch = [max(abs(x - lr) for x in trace[i : i + steps]) for i in range(0, len(trace), steps)]
    # Batch 0 holds the stream's first window (it scores all 2048 targets); the others score 96 a window.
    print(f"weight_std:{a.weight_std} batches:{len(per_batch)} max_abs_lr_change_per_batch:{' '.join(f'{m:.3e}' for m in per_batch)} "
          f"val_loss:{val_loss:.6f} time:{time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
