"""GPTQ calibration on generated text (calib_gen.generated_batches) against PR #1229's own
generate_autoregressive_calib: the same model, seed and temperature give the same tokens."""

from __future__ import annotations

import os
import types
from pathlib import Path

import pytest
import torch

from build import build_model
from calib_gen import generated_batches
from record_loader import load_record_script

PR1229 = Path(os.environ.get("PGOLF_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference")) / "pr1229_train_gpt.py"
VOCAB = 64


@pytest.fixture(scope="module")
def pr1229():
    return load_record_script(PR1229, "pr1229_script")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model({"num_layers": 2, "model_dim": 32, "num_heads": 2, "num_kv_heads": 1, "vocab_size": VOCAB,
                     "ve_layers": [1], "ve_dim": 16, "bigram_vocab_size": 0, "xsa_last_n": 1})
    with torch.no_grad():  # a peaked next-token distribution, not the near-uniform one of a fresh init
        m.tok_emb.weight.normal_(0.0, 1.0)
    return m.eval()


def reference_tokens(pr1229, model, num_seqs, seq_len, temperature, batch_size, seed):
    """#1229's sampler over our model: its forward_logits is our softcapped head on our hidden states."""
    wrapped = types.SimpleNamespace(eval=lambda: None, forward_logits=lambda ids: model.logits(model.hidden(ids)))
    seqs = pr1229.generate_autoregressive_calib(wrapped, torch.device("cpu"), num_seqs=num_seqs, seq_len=seq_len, vocab_size=VOCAB,
                                                temperature=temperature, batch_size=batch_size, seed=seed)
    return torch.cat(seqs)


@pytest.mark.filterwarnings("ignore:User provided device_type of 'cuda'")
@pytest.mark.parametrize("temperature,seed", [(0.8, 42), (1.3, 7)])
def test_generated_tokens_equal_pr1229(pr1229, model, temperature, seed):
    """Mutations that fail here: sampling from softmax(logits) without the temperature; drawing the
    start tokens from the global RNG instead of the seeded generator; sampling the first position."""
    ours = torch.cat(generated_batches(model, VOCAB, batches=2, batch_seqs=3, seq_len=24, temperature=temperature, seed=seed, device=torch.device("cpu")))
    ref = reference_tokens(pr1229, model, num_seqs=6, seq_len=24, temperature=temperature, batch_size=3, seed=seed)
    assert ours.shape == (6, 24) and ours.dtype == torch.int64
    assert torch.equal(ours, ref)
    # The sampler follows the model: another temperature gives other text from the same seed.
    other = torch.cat(generated_batches(model, VOCAB, batches=2, batch_seqs=3, seq_len=24, temperature=temperature * 3, seed=seed, device=torch.device("cpu")))
    assert not torch.equal(other[:, 1:], ours[:, 1:])
    assert torch.equal(other[:, 0], ours[:, 0])  # the start tokens come from the seed alone
