"""`pgolf validate` on the upstream corpus against tests/data/corpus_golden.json (every merged
folder and a sample of PR folders; bench/corpus_golden.py rewrites it, keeping the reviews)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from pgolf.validate import validate_record

REPO = Path(__file__).resolve().parents[1]
TAR = Path(os.environ.get("PGOLF_CORPUS", REPO.parent / "shared" / "corpus" / "upstream-records.tar.xz"))
GOLDEN = json.loads((REPO / "tests" / "data" / "corpus_golden.json").read_text())


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    if not TAR.is_file():
        pytest.skip(f"upstream corpus not found at {TAR} (set PGOLF_CORPUS to the .tar.xz)")
    out = tmp_path_factory.mktemp("corpus")
    with tarfile.open(TAR) as t:
        t.extractall(out, filter="data")
    return out


@pytest.mark.parametrize("section,prefix", [("merged", "merged/records"), ("prs", "")])
def test_verdicts_and_claimed_labels_match_the_golden_file(corpus, section, prefix):
    wrong = []
    for key, want in GOLDEN[section].items():
        r = validate_record(corpus / prefix / key)
        labels = {s: v["final_label"] for s, v in r.seeds.items()}
        got = (r.ok, labels, r.size_convention, r.problems if not r.ok else None)
        expected = (want["ok"], want["labels"], want["size_convention"], want["evidence"] if not want["ok"] else None)
        if got != expected:
            wrong.append(f"{key}: got {got}, golden {expected}")
    assert wrong == []


def test_the_golden_file_is_reviewed():
    merged = GOLDEN["merged"]
    assert len(merged) == 60 and sum(w["ok"] for w in merged.values()) >= 55
    assert len(GOLDEN["prs"]) == 20
    # Every folder that does not validate carries a reviewer's reason, and every review agrees with its verdict.
    for section in ("merged", "prs"):
        for key, w in GOLDEN[section].items():
            assert w["ok"] or w.get("review", "").startswith("INVALID, real:"), key
            if "review" in w:
                assert w["review"].startswith("VALID") == w["ok"], key
    # Every valid folder with logs quotes the line carrying each seed's claim.
    for key, w in merged.items():
        if w["ok"] and w["labels"]:
            assert len(w["evidence"]) == len(w["labels"]) and all(": " in e for e in w["evidence"]), key
