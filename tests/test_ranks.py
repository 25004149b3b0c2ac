"""Rank-sharded evals: the same artifact scored by 1 process and by 2 (torchrun, gloo) gives the same numbers.

On the record's 8-GPU node every eval splits its windows across ranks and sums the scores with an
all-reduce; this is the CPU stand-in for "8 ranks give the same score as 1".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

EVAL = str(REPO / "workflow" / "record" / "evaluate.py")
SLOT = str(REPO / "workflow" / "record" / "slot.py")


def first_path(workdir, pattern):
    """The first match: other tests add stage folders to the shared run; any one will do, since
    both process counts score the same files."""
    found = sorted(workdir.glob(pattern))
    assert found, f"{pattern}: no match in {workdir}"
    return found[0]


def run_eval(workdir, out, nproc, script, *args):
    export = first_path(workdir, "results/export/*/seed1337/export.json").parent
    common = [
        "--hparams", str(first_path(workdir, args[0])),
        "--artifact", str(export / "final_model.ptz"),
        "--export-json", str(export / "export.json"),
        "--data", str(first_path(workdir, "results/data/*/manifest.json")),
        "--out", str(out),
    ]
    launch = [sys.executable] if nproc == 1 else ["torchrun", "--standalone", "--nproc_per_node", str(nproc)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(launch + [script, *args[1:], *common], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(out.read_text()), r.stdout


@pytest.mark.parametrize(
    "name,script,args",
    [
        ("roundtrip", EVAL, ("results/eval/*/config.json", "roundtrip")),
        ("sliding", EVAL, ("results/eval/*/config.json", "sliding")),
        ("published", SLOT, ("results/slot/*/config.json", "--mode", "published")),
    ],
)
def test_two_ranks_score_like_one(tiny_run, tmp_path, name, script, args):
    workdir, _ = tiny_run
    one, log1 = run_eval(workdir, tmp_path / "one.json", 1, script, *args)
    two, log2 = run_eval(workdir, tmp_path / "two.json", 2, script, *args)
    assert one["tokens"] == two["tokens"] > 0 and one["bytes"] == two["bytes"] > 0
    # Fixed-model scores are float sums in another order: equal to 1e-9. SLOT's per-window fit
    # sees other batch neighbours on 2 ranks (a window's batch depends on its rank's share), and
    # AdamW's normalised steps amplify the float noise of a differently shaped matmul: measured
    # 2.4e-7 bpb on this artifact, inside the 1e-6 bpb that the 8-GPU check asks for.
    tol = 1e-6 if name == "published" else 1e-9
    assert two["val_bpb"] == pytest.approx(one["val_bpb"], abs=tol)
    assert two["val_loss"] == pytest.approx(one["val_loss"], abs=tol)
    if name != "roundtrip":
        assert one["windows"] == two["windows"] > 0
        # The audit runs on every rank's share too: the verdict cannot depend on the process count.
        assert one["audit"]["verdict"] == two["audit"]["verdict"] == ("fail" if name == "published" else "pass")
        assert one["audit"]["scores_compared"] == two["audit"]["scores_compared"] > 0
