"""Check a record folder as a reviewer would, for upstream folders as well as ours.

Every check reads the folder alone (submission.json, the logs, the script) and reports one line
per problem; notes are things a reviewer would mention that do not make a folder invalid.

How it decides (claim matching, files as people name them, size conventions, severities, the
track, score-first from the script, our records held stricter) is described in docs/validate.md.
The checks run in the order of `validate_record`; they live in:

- `pgolf.discover`: which file is the script, the submission, a log, a code file;
- `pgolf.claims`: what submission.json claims per seed, and the log line that carries it;
- `pgolf.checks`: files, submission.json, the numbers against the logs, the size;
- `pgolf.track`: the track (stated or inferred), time limits, the compliance block;
- `pgolf.scorefirst`: the eval method behind the claimed line, and whether it is score-first;
- `pgolf.bytecount`: the script's byte table does not count the leading space twice.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from pgolf.bytecount import check_byte_count
from pgolf.checks import check_files, check_numbers, check_readme, check_size, check_submission
from pgolf.claims import check_claim_present, check_logs, declared_seeds, parse_claimed, seed_claims  # noqa: F401  (public API)
from pgolf.discover import code_files, find_script, find_submission, log_files  # noqa: F401  (public API)
from pgolf.folder import Claim, Folder, Report  # noqa: F401  (public API)
from pgolf.logparse import number_matches
from pgolf.scorefirst import check_score_first
from pgolf.track import check_compliance, check_time, check_track, check_track_hardware

CHECKS = (check_files, check_submission, check_track, check_logs, check_track_hardware, check_claim_present, check_readme, check_numbers, check_size, check_time,
          check_compliance, check_score_first, check_byte_count)


def validate_record(path) -> Report:
    root = Path(path)
    f = Folder(root, Report(str(path)))
    if not root.is_dir():
        f.problem("not a directory")
        return f.report
    for check in CHECKS:
        check(f)
    f.report.seeds = {str(s): {"log": name, **summary.to_json()} for s, (name, summary) in sorted(f.logs.items())}
    return f.report


def format_report(r: Report) -> list[str]:
    """Text output: one line per problem (and per note), or one `ok` line."""
    lines = [f"{r.path}: {p}" for p in r.problems] + [f"{r.path}: note: {n}" for n in r.notes]
    if r.ok:
        scores = [s["final_val_bpb"] for s in r.seeds.values() if s.get("final_val_bpb") is not None]
        mean = f", mean val_bpb {statistics.fmean(scores):.8f}" if scores else ""
        lines.append(f"ok: {r.path} ({len(r.seeds)} seed log{'s' if len(r.seeds) != 1 else ''}{mean})")
    return lines


def claim_pairs(folder) -> list[tuple[int, str, float, bool]]:
    """(seed, log, claimed val_bpb, whether parse-log returns it) for every seed of `folder` whose
    submission states a per-seed val_bpb and has a log: the corpus measure of parse-log."""
    root = Path(folder)
    f = Folder(root, Report(str(folder)))
    if not root.is_dir():
        return []
    for check in (check_files, check_submission, check_track, check_logs):
        check(f)
    out = []
    for seed, (name, _) in sorted(f.logs.items()):
        claim = f.claims.get(seed)
        if claim is None or claim.kind == "top":
            continue
        got = parse_claimed(root / name)
        out.append((seed, name, claim.val_bpb, got.final_val_bpb is not None and number_matches(claim.val_bpb, repr(got.final_val_bpb))))
    return out
