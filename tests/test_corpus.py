"""`pgolf validate` on the upstream corpus against tests/data/corpus_golden.json."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from pgolf.validate import validate_record

REPO = Path(__file__).resolve().parents[1]
TAR = Path(os.environ.get("PGOLF_CORPUS", REPO.parent / "shared" / "corpus" / "upstream-records.tar.xz"))
GOLDEN = json.loads((REPO / "tests" / "data" / "corpus_golden.json").read_text())["merged"]


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    if not TAR.is_file():
        pytest.skip(f"upstream corpus not found at {TAR} (set PGOLF_CORPUS)")
    out = tmp_path_factory.mktemp("corpus")
    with tarfile.open(TAR) as t:
        t.extractall(out, filter="data")
    return out / "merged" / "records"


def test_merged_folders_match_the_golden_verdicts(corpus):
    wrong = []
    for key, want in GOLDEN.items():
        r = validate_record(corpus / key)
        labels = {s: v["final_label"] for s, v in r.seeds.items()}
        if r.ok != want["ok"] or labels != want["labels"] or r.size_convention != want["size_convention"]:
            wrong.append(f"{key}: ok={r.ok} {labels} {r.size_convention}; problems {r.problems}")
    assert wrong == []
    assert sum(w["ok"] for w in GOLDEN.values()) >= 54
    assert all("evidence" in w for w in GOLDEN.values() if not w["ok"])
