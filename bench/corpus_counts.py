"""The issue-13 counts on the upstream corpus: merged folders that validate, parse-log's claimed
per-seed numbers over (seed, log) pairs whose submission.json states one, and tracebacks.

    python bench/corpus_counts.py [CORPUS_DIR]   (default: ../shared/corpus extracted to a temp dir,
                                                  or /work/corpus when it is there)
"""

from __future__ import annotations

import re
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path

from pgolf.logparse import number_matches
from pgolf.validate import claim_pairs, validate_record

REPO = Path(__file__).resolve().parents[1]


def corpus_root(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    tar = REPO.parent / "shared" / "corpus" / "upstream-records.tar.xz"
    if not tar.is_file():
        sys.exit(f"corpus_counts: no corpus: give an extracted corpus folder (python bench/corpus_counts.py DIR) or put the tarball at {tar}")
    out = Path(tempfile.mkdtemp(prefix="pgolf-corpus-"))
    with tarfile.open(tar) as t:
        t.extractall(out, filter="data")
    return out


def folders(root: Path) -> tuple[list[Path], list[Path]]:
    merged = sorted(p for p in (root / "merged" / "records").glob("*/*") if p.is_dir())
    prs = sorted(p for p in (root / "prs").glob("pr*/*") if p.is_dir())
    return merged, prs


def _prints(log: Path, claimed) -> bool:
    """Whether any number in the log's text is `claimed` at the JSON's precision (any line, any format)."""
    text = log.read_text(encoding="utf-8", errors="replace")
    return any(number_matches(claimed, n) for n in re.findall(r"\d+\.\d{3,}", text))


def main() -> int:
    root = corpus_root(sys.argv[1] if len(sys.argv) > 1 else None)
    merged, prs = folders(root)
    t0, c0 = time.perf_counter(), time.process_time()
    crashed, valid, reports = [], [], {}
    for folder in merged + prs:
        try:
            reports[folder] = validate_record(folder)
        except Exception:
            crashed.append(f"{folder}: {traceback.format_exc().splitlines()[-1]}")
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    pairs, hits, misses, printed = 0, 0, [], 0
    for folder in merged + prs:
        try:
            for seed, log, claimed, got in claim_pairs(folder):
                pairs += 1
                prints = got or _prints(folder / log, claimed)
                printed += prints
                if got:
                    hits += 1
                else:
                    misses.append(f"{folder.relative_to(root)} seed {seed} {log}: claims {claimed}"
                                  f"{'' if prints else ' (the log prints no such number)'}")
        except Exception:
            crashed.append(f"{folder} (parse-log): {traceback.format_exc().splitlines()[-1]}")
    valid = [f for f in merged if f in reports and reports[f].ok]
    if "-v" in sys.argv:
        print("\n".join(misses))
    print(f"merged folders valid: {len(valid)}/{len(merged)}")
    print(f"parse-log returns the claimed per-seed number: {hits}/{pairs} (seed, log) pairs ({100 * hits / max(pairs, 1):.1f}%); "
          f"{hits}/{printed} of the pairs whose log prints it anywhere ({100 * hits / max(printed, 1):.1f}%)")
    print(f"tracebacks: {len(crashed)} of {len(merged) + len(prs)} folders")
    print("\n".join(crashed))
    print(f"time: validate on {len(merged) + len(prs)} folders in one process: {elapsed:.1f} s wall, {cpu:.1f} s CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
