"""`pgolf validate` against the hand reviews of PR folders (tests/data/pr_reviews_*.json: each folder's
verdict, reasons and quoted evidence, written by reviewers who read the folder before running the
tool). Verdicts are asserted both ways; false passes (the reviewer rejects, the tool accepts) and
false rejections are reported separately, each with the reviewer's reasons."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pgolf.validate import validate_record
from test_corpus import corpus  # noqa: F401  (the extracted-corpus fixture)

DATA = Path(__file__).resolve().parent / "data"
REVIEW_FILES = sorted(DATA.glob("pr_reviews_*.json"))
# 392 of 405 reviewed folders agree (2026-12-07, after the second round of #29's follow-up; 381
# after the first, 353 before it):
# these are the disagreements left, each listed with its reason in docs/validate.md. A change that
# moves either number fails here: fewer is progress (lower the number), more is a regression.
FALSE_PASSES = 13
FALSE_REJECTIONS = 0


def reviews() -> dict:
    out = {}
    for path in REVIEW_FILES:
        out.update(json.loads(path.read_text(encoding="utf-8"))["folders"])
    return out


@pytest.mark.skipif(not REVIEW_FILES, reason="no tests/data/pr_reviews_*.json (the hand reviews) in this checkout")
def test_verdicts_agree_with_the_reviewers_both_ways(corpus):  # noqa: F811
    false_passes, false_rejections, missing = [], [], []
    for key, review in sorted(reviews().items()):
        folder = corpus / key
        if not folder.is_dir():
            missing.append(key)
            continue
        r = validate_record(folder)
        if review["verdict"] == "invalid" and r.ok:
            false_passes.append(f"{key}: reviewer: {'; '.join(review['reasons'])} -- {(review.get('comment') or '')[:200]}")
        elif review["verdict"] == "valid" and not r.ok:
            false_rejections.append(f"{key}: tool: {' | '.join(r.problems)[:300]} -- reviewer: {(review.get('comment') or '')[:200]}")
    report = (f"{len(false_passes)} false passes:\n  " + "\n  ".join(false_passes)
              + f"\n{len(false_rejections)} false rejections:\n  " + "\n  ".join(false_rejections))
    assert missing == [], f"reviewed folders not in the corpus: {missing}"
    # The goal is 0 and 0 (PGOLF_REVIEW_STRICT=1 asserts it); until then, the counts stay exactly
    # where they are (see docs/validate.md).
    if os.environ.get("PGOLF_REVIEW_STRICT") == "1":
        assert false_passes == [] and false_rejections == [], report
    assert (len(false_passes), len(false_rejections)) == (FALSE_PASSES, FALSE_REJECTIONS), report
