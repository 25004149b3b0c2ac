"""`pgolf audit-bpb` on our tokenizer: a record's byte-counting function run in a child process
against the exact UTF-8 byte count of the decoded validation text, with the correct function and
with the leading-space byte counted twice (the bug upstream closed pull requests for)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sentencepiece as spm

from pgolf.bpbaudit import AuditError, audit
from pgolf.cli import main
from pgolf.shards import write_shard
from pgolf.tokenizer import train_tokenizer

WORDS = "the of and to in river city garden morning letter window market story café naïve 1987 3.5 zebrafish".split()

# Written in the shape of the records' function (per-token bytes, leading-space flag, boundary flag).
LUTS = '''
import numpy as np
import torch
from flash_attn_interface import flash_attn_func  # not installed: the audit stands it in


def build_sentencepiece_luts(sp, vocab_size, device):
    n = max(int(sp.vocab_size()), vocab_size)
    base = np.zeros(n, dtype=np.int16)
    space = np.zeros(n, dtype=np.bool_)
    boundary = np.ones(n, dtype=np.bool_)
    for t in range(int(sp.vocab_size())):
        if sp.is_control(t) or sp.is_unknown(t) or sp.is_unused(t):
            continue
        boundary[t] = False
        if sp.is_byte(t):
            base[t] = 1
            continue
        piece = sp.id_to_piece(t)
        if piece.startswith("\\u2581"):
            space[t] = True
            piece = piece[1:] if {drop} else piece
        base[t] = len(piece.encode("utf-8"))
    return torch.tensor(base, device=device), torch.tensor(space, device=device), torch.tensor(boundary, device=device)


def main():
    raise SystemExit("main() must not run")


if __name__ == "__main__":
    main()
'''


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    """Our tokenizer (pgolf.tokenizer) and a validation shard of BOS-separated documents."""
    root = tmp_path_factory.mktemp("audit")
    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 30))) for _ in range(200)]
    model = train_tokenizer(docs, 300, root / "tok")
    sp = spm.SentencePieceProcessor(model_file=str(model))
    tokens = []
    for doc in docs[:40]:
        tokens += [sp.bos_id()] + sp.encode(doc)
    val = root / "val"
    val.mkdir()
    write_shard(val / "fineweb_val_000000.bin", tokens)
    exact = sum(len(d.encode("utf-8")) for d in docs[:40])
    return model, val, exact


def record(tmp_path: Path, drop: bool) -> Path:
    folder = tmp_path / ("correct" if drop else "double_space")
    folder.mkdir()
    (folder / "train_gpt.py").write_text(LUTS.replace("{drop}", str(drop)))
    return folder


def test_the_correct_function_matches_the_decoded_text(tokenized, tmp_path):
    model, val, exact = tokenized
    r = audit(record(tmp_path, drop=True), model, val, timeout=120)
    assert r.ok and r.exact_bytes == exact and r.lut_bytes == exact and r.function == "build_sentencepiece_luts"


def test_a_double_counted_leading_space_is_a_problem_naming_both_numbers(tokenized, tmp_path, capsys):
    model, val, exact = tokenized
    folder = record(tmp_path, drop=False)  # the "\u2581" stays in the piece: the space is counted twice
    r = audit(folder, model, val, timeout=120)
    assert not r.ok and r.exact_bytes == exact and r.lut_bytes > exact * 1.05
    assert main(["audit-bpb", str(folder), "--tokenizer", str(model), "--val", str(val)]) == 1
    line = capsys.readouterr().out.strip()
    assert f"counts {r.lut_bytes} bytes" in line and f"has {exact} UTF-8 bytes" in line and "0.1% off" in line


def test_the_child_sees_no_credentials_and_the_time_limit_holds(tokenized, tmp_path, monkeypatch):
    model, val, _ = tokenized
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    folder = record(tmp_path, drop=True)
    spy = folder / "train_gpt.py"
    spy.write_text(spy.read_text() + "\nimport os\nif os.environ.get('HF_TOKEN'):\n    raise SystemExit('leaked ' + os.environ['HF_TOKEN'])\n")
    assert audit(folder, model, val, timeout=120).ok
    spy.write_text("import time\ntime.sleep(30)\n")
    with pytest.raises(AuditError, match="ran past its 2 s limit"):
        audit(folder, model, val, timeout=2)


def test_bad_arguments_are_one_line(tokenized, tmp_path, capsys):
    model, val, _ = tokenized
    assert main(["audit-bpb", str(tmp_path / "nowhere"), "--tokenizer", str(model), "--val", str(val)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'nowhere'}: not a folder"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train_gpt.py").write_text("x = 1\n")
    with pytest.raises(AuditError, match="no byte-counting function"):
        audit(empty, model, val, timeout=60)
