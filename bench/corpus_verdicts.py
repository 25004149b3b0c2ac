"""Every corpus folder's verdict, in one process, with the CPU time of the loop: the check that a
speed change moves no verdict (write the file before and after, then `cmp` or `diff` them).

    PYTHONPATH=src python bench/corpus_verdicts.py CORPUS_DIR OUT.json

OUT.json maps each folder (relative to CORPUS_DIR) to its `ok`, problems, notes, size convention
and per-seed summaries; the CPU and wall time of the `validate_record` loop go to stderr.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pgolf.validate import validate_record


def main() -> int:
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/corpus_verdicts.py CORPUS_DIR OUT.json")
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    folders = sorted(p for p in (root / "merged" / "records").glob("*/*") if p.is_dir())
    folders += sorted(p for p in (root / "prs").glob("pr*/*") if p.is_dir())
    if not folders:
        sys.exit(f"corpus_verdicts: no record folders under {root}/merged/records or {root}/prs")
    verdicts = {}
    cpu, wall = time.process_time(), time.perf_counter()
    for folder in folders:
        r = validate_record(folder)
        verdicts[str(folder.relative_to(root))] = {"ok": r.ok, "problems": r.problems, "notes": r.notes,
                                                   "size_convention": r.size_convention, "seeds": r.seeds}
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    out.write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n")
    print(f"validate on {len(folders)} folders in one process: {cpu:.1f} s CPU, {wall:.1f} s wall "
          f"({sum(v['ok'] for v in verdicts.values())} ok); verdicts in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
