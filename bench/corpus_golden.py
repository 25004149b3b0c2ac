"""(Re)write tests/data/corpus_golden.json from what `pgolf validate` says on the corpus, keeping the
hand-written `review` of every entry that has one (the reviewer's verdict and why). Each entry's
`evidence` quotes, per seed, the log line that carries the claim (or the problems of an invalid
folder); a changed verdict shows up in `git diff` of the golden file, to be reviewed again.

    python bench/corpus_golden.py CORPUS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pgolf.validate import validate_record

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "corpus_golden.json"
PR_SAMPLE = 20  # PR folders in the golden file, spread evenly over the sorted list


def entry(root: Path, key: str, old: dict) -> dict:
    folder = root / key
    r = validate_record(folder)
    evidence = []
    for seed, s in r.seeds.items():
        if s.get("claim_line"):
            lines = (folder / s["log"]).read_text(encoding="utf-8", errors="replace").splitlines()
            evidence.append(f"seed {seed}: {s['log']}:{s['claim_line']}: {lines[s['claim_line'] - 1].strip()[:160]}")
    out = {"ok": r.ok, "size_convention": r.size_convention,
           "labels": {seed: s["final_label"] for seed, s in r.seeds.items()},
           "evidence": r.problems or evidence}
    if "review" in old:
        out["review"] = old["review"]
    return out


def main() -> int:
    root = Path(sys.argv[1])
    old = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    merged = sorted(str(p.relative_to(root)) for p in (root / "merged" / "records").glob("*/*") if p.is_dir())
    prs = sorted(str(p.relative_to(root)) for p in (root / "prs").glob("pr*/*") if p.is_dir())
    sample = [prs[i * len(prs) // PR_SAMPLE] for i in range(PR_SAMPLE)]
    golden = {
        "_about": old.get("_about", ""),
        "merged": {k: entry(root, k, old.get("merged", {}).get(k.removeprefix("merged/records/"), {})) for k in merged},
        "prs": {k: entry(root, k, old.get("prs", {}).get(k, {})) for k in sample},
    }
    golden["merged"] = {k.removeprefix("merged/records/"): v for k, v in golden["merged"].items()}
    GOLDEN.write_text(json.dumps(golden, indent=1, ensure_ascii=False) + "\n")
    print(f"{GOLDEN}: {sum(v['ok'] for v in golden['merged'].values())}/{len(merged)} merged valid, "
          f"{sum(v['ok'] for v in golden['prs'].values())}/{len(sample)} sampled PR folders valid")
    return 0


if __name__ == "__main__":
    sys.exit(main())
