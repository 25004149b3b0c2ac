"""What a submission claims, and which log line carries it: the per-seed claims of submission.json
(`Claim`), each seed's log, and the line of it that carries the claimed number (the check `check_logs`,
`parse-log`'s `parse_claimed`, and the corpus measure `claim_pairs`)."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

from pgolf.discover import NOT_LOGS, find_submission, log_files
from pgolf.folder import SCORE_KEYS, Claim, Folder, close, is_int, is_number, json_tol
from pgolf.track import non_record
from pgolf.logparse import LogSummary, apply_claim, final_rule, find_claim, half_unit, number_matches, parse_file
from pgolf.rules import MEAN_CLAIM_SINCE


def declared_seeds(f: Folder) -> list[int]:
    """Seeds submission.json names: `seeds` (a list, or a dict keyed by seed) and `seed_results` keys."""
    if f.sub is None:
        return []
    found: list[int] = []
    for key in ("seeds", "seed_results"):
        value = f.sub.get(key)
        items = list(value) if isinstance(value, (list, dict)) else []
        if items and all(isinstance(i, dict) for i in items):
            items = [i.get("seed") for i in items]
        seeds = [int(s) for s in items if is_int(s) or (isinstance(s, str) and s.isdigit())]
        if len(seeds) != len(items):
            f.problem(f"submission.json: {key} holds something that is not a seed: {items!r}")
        if found and seeds and sorted(seeds) != sorted(found):
            f.problem(f"submission.json: seeds {sorted(found)} but seed_results has {sorted(seeds)}")
        found = sorted(set(found) | set(seeds))
    return sorted(set(found) | set(seed_claims(f.sub)))


def seed_claims(sub: dict | None) -> dict[int, Claim]:
    """Per-seed claims of submission.json: `seed_results` / `seeds` / `results` /
    `per_seed` keyed by seed (rows, or bare val_bpb numbers), a list of rows with a `seed`, `seed_<N>`
    objects, or `val_bpb_seeds` / `seed_scores` beside a `seeds` list."""
    if not isinstance(sub, dict):
        return {}
    out: dict[int, Claim] = {}

    def add(seed, row, where, kind="row"):
        if isinstance(seed, str) and seed.removeprefix("seed_").removeprefix("seed").isdigit():
            seed = int(seed.removeprefix("seed_").removeprefix("seed"))
        if not is_int(seed):
            return
        if is_number(row):
            row = {"val_bpb": row}
        if isinstance(row, dict) and seed not in out:
            out[seed] = Claim(where, row, kind)

    for key in ("seed_results", "seeds", "results", "per_seed"):
        value = sub.get(key)
        if isinstance(value, dict):
            for seed, row in value.items():
                add(seed, row, f"{key}[{seed}]")
        elif isinstance(value, list) and key != "seeds":
            for i, row in enumerate(value):
                if isinstance(row, dict):
                    add(row.get("seed"), row, f"{key}[{i}]")
    for key, row in sub.items():
        if re.fullmatch(r"seed_?\d+", key):
            add(key, row, key)
    seeds = sub.get("seeds")
    for key in ("val_bpb_seeds", "seed_scores", "seed_val_bpbs"):
        value = sub.get(key)
        if isinstance(value, dict):
            for seed, bpb in value.items():
                add(seed, bpb, f"{key}[{seed}]", "number")
        elif isinstance(value, list) and isinstance(seeds, list) and len(seeds) == len(value):
            for i, (seed, bpb) in enumerate(zip(seeds, value)):
                add(seed, bpb, f"{key}[{i}]", "number")
    return out


def _seed_of(p: Path, summary: LogSummary, seeds: list[int]) -> int | None:
    m = re.search(r"seed[_-]?(\d+)", p.name, re.I) or re.search(r"(?:^|[_-])s(\d+)(?:[_.-]|$)", p.stem)
    if m:
        return int(m.group(1))
    if summary.seed is not None:
        return summary.seed
    m = re.search(r"[_-](\d+)$", p.stem)  # ternary_log_1337.txt
    if m and not seeds:
        return int(m.group(1))
    numbers = [int(n) for n in re.findall(r"\d+", p.stem)]
    hits = [n for n in numbers if n in seeds]
    return hits[-1] if hits else None


def check_logs(f: Folder) -> None:
    seeds = f.declared = declared_seeds(f)
    f.claims = {s: c for s, c in seed_claims(f.sub).items() if is_number(c.val_bpb)}
    parsed = {}
    for p in log_files(f.root):
        if NOT_LOGS.match(p.name):
            continue
        try:
            summary = parse_file(p)
        except OSError as e:
            f.problem(f"{f.rel(p)}: cannot be read ({e.strerror})")
            continue
        if summary.lines or summary.steps is not None:  # a training or eval log, not notes
            parsed[p] = summary
    f.parsed = parsed
    if not parsed:
        key, score = f.get(*SCORE_KEYS)
        what = (f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds
                else f"{f.sub_name}'s {key} = {score}" if is_number(score) else None)
        if what and non_record(f) and f.root.parent.name.startswith("track_non_record") and _readme_states(f):
            # Already in upstream's records/track_non_record_16mb/: merged on its README's word.
            f.note(f"no training log for {what}: a non-record folder whose numbers only its README states")
        elif what:
            kind = "a non-record folder still needs evidence for its numbers" if non_record(f) else "a record that cannot be checked is not valid"
            f.problem(f"no training log for {what} (*.log / *.txt with training or score lines): {kind}")
        elif non_record(f) and (outputs := _output_logs(f)):
            # An analysis (a script and what it printed), not a model: its output is the evidence.
            f.note(f"no training log and no score: a non-record folder whose evidence is its output {', '.join(outputs)}")
        elif non_record(f) and (stated := _unlogged_results(f)):
            f.problem(f"no log: {stated} states measured results that nothing in the folder backs (a non-record folder still needs evidence for its numbers)")
        elif non_record(f) and says_it_claims_nothing(f):
            f.note("no training log and no score: a non-record folder that says it claims none")
        elif non_record(f):
            f.problem("no training log and no claimed score: a non-record folder still needs evidence for a result")
        else:
            f.problem(f"no training log and no claimed score: nothing to check on the record track ({f.track.why})")
        return
    by_seed: dict[int, list[Path]] = {}
    unseeded = []
    for p, summary in parsed.items():
        seed = _seed_of(p, summary, seeds)
        if seed is None and len(seeds) == 1 and len(parsed) == 1:
            seed = seeds[0]
        if seed is None:
            unseeded.append(p)
        else:
            by_seed.setdefault(seed, []).append(p)
    # A log whose seed is unknown may still carry a seed's claim (train.log of a one-seed run, ...).
    key, top = f.get(*SCORE_KEYS)
    wanted = dict(f.claims)
    if not wanted and is_number(top) and len(seeds) == 1:
        wanted[seeds[0]] = Claim(key, {"val_bpb": top}, "top")  # a one-seed folder's top-level score
    for p in unseeded:
        owner = [s for s, c in wanted.items() if _carries(parsed[p], c)]
        if len(owner) == 1:
            by_seed.setdefault(owner[0], []).append(p)
        elif not seeds and len(parsed) == 1:
            by_seed[-1] = [p]  # a lone log of a folder without seeds: checked for what it says
        else:
            f.note(f"{f.rel(p)}: no seed in its name or content; not checked")
    key, top = f.get(*SCORE_KEYS)
    if not seeds and not f.claims and len(by_seed) > 1:
        # submission.json names no seeds: a log with no score line at all (a tail, an aborted or
        # excluded run: only step lines) is not a claimed run while other logs carry final scores.
        scoreless = [s for s, ps in by_seed.items() if all(parsed[p].final_label is None and not any(ln.claim for ln in parsed[p].lines) for p in ps)]
        if len(scoreless) < len(by_seed):
            for seed in scoreless:
                f.note(f"{', '.join(f.rel(p) for p in by_seed.pop(seed))}: no final score line; not a claimed run, not checked")
    if not seeds and not f.claims:
        # submission.json names no seeds: a log the README disclaims (superseded, a comparator, a
        # baseline) is not the submission's run while another log is.
        disclaimed = _disclaimed(f, [p for ps in by_seed.values() for p in ps])
        if disclaimed and len(disclaimed) < sum(map(len, by_seed.values())):
            for seed in list(by_seed):
                for p in [p for p in by_seed[seed] if p in disclaimed]:
                    f.note(f"{f.rel(p)}: {disclaimed[p]}: not the submission's run, not checked")
                    by_seed[seed].remove(p)
                if not by_seed[seed]:
                    del by_seed[seed]
    if not f.claims and is_number(top) and len(seeds or by_seed) == 1 and by_seed:
        _, loss = f.get("val_loss", "mean_val_loss")
        f.claims[(seeds or sorted(by_seed))[0]] = Claim(key, {"val_bpb": top, "val_loss": loss}, "top")
    # Logs of seeds submission.json does not name: a claim missing from its own seed's log may be here.
    spare = {p: s for s, ps in by_seed.items() if s not in (seeds or by_seed) for p in ps}
    for seed in seeds or sorted(by_seed):
        paths = by_seed.get(seed)
        if not paths:
            f.problem(f"train_seed{seed}.log: missing (submission.json lists seed {seed})")
            continue
        name, summary = _pick_log(f, seed, paths, parsed, spare)
        f.logs[seed] = (name, summary)
        if (said := _says_it_is_not_the_output(f.root / name)) is not None:
            f.problem(f"{name}: {said}: a log that is not the run's output is not a training log and cannot back the claim")
    for p, seed in spare.items():
        if p == by_seed[seed][0]:
            f.note(f"{f.rel(p)}: seed {seed} is not in submission.json (a run left out?)")


DISCLAIMS = re.compile(r"supersed|\binvalid\b|obsolete|retained only|kept only|for comparison|comparator|\bbaseline\b|"
                       r"not (?:the|a|our) (?:submitted|submission|claimed)", re.I)


def _disclaimed(f: Folder, logs: list[Path]) -> dict[Path, str]:
    """Logs a README line names together with a word that sets them apart from the submission's run
    (`mpk_seed_1339.txt ... were generated before the bug was corrected, so their BPB values are
    also invalid`; `train_baseline_seed1337.log: full baseline training log`)."""
    readme = f.root / "README.md"
    if not readme.is_file():
        return {}
    out = {}
    for i, line in enumerate(readme.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        m = DISCLAIMS.search(line)
        if m is None:
            continue
        for p in logs:
            if p not in out and re.search(rf"(?<![\w.-]){re.escape(p.name)}(?![\w.-])", line):
                out[p] = f"README.md:{i} says {m.group(0)!r} of it"
    return out


NOT_THE_OUTPUT = re.compile(r"logs? (?:were|was) not saved|not (?:been )?saved before|(?:metrics|numbers|lines) (?:were )?(?:extracted|copied|re-?typed|transcribed)|reconstructed from", re.I)


def _says_it_is_not_the_output(path: Path) -> str | None:
    """`line N: '# ...'` where a comment in a log's first lines says the log is not the run's output
    (re-typed or extracted numbers, the real log not saved)."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            head = [fh.readline() for _ in range(10)]
    except OSError:
        return None
    for i, line in enumerate(head, 1):
        if line.lstrip().startswith("#") and NOT_THE_OUTPUT.search(line):
            return f"line {i} says {line.strip()[:100]!r}"
    return None


FINAL_OTHER_METRIC = re.compile(r"^final_\w+_exact\b.*\bval_\w+:\s*\d", re.M)


def _output_logs(f: Folder) -> list[str]:
    """`*.log` files of a folder without training logs that hold a program's output (a dozen
    lines or more) beside the analysis script that printed it (a `.py` that is not a trainer); a
    `train*.log` is a training log's name, never an analysis's output."""
    if not any(p.suffix == ".py" and not p.name.startswith("train") for p in f.root.iterdir()):
        return []
    out = []
    for p in log_files(f.root):
        if p.suffix == ".log" and not p.name.startswith("train") and not NOT_LOGS.match(p.name):
            text = p.read_text(encoding="utf-8", errors="replace")
            if text.count("\n") >= 12:
                out.append(f.rel(p))
    return out


# A measured result: a percentage change, or a loss/bpb with 3+ decimals (not a version, a date).
MEASURED = re.compile(r"[-+]\d+(?:\.\d+)?%|\b\d\.\d{3,}\b")


def _unlogged_results(f: Folder) -> str | None:
    """Where submission.json (its text fields, not its keys' numbers) states measured results."""
    if not isinstance(f.sub, dict):
        return None
    for key, value in f.sub.items():
        m = MEASURED.search(value) if isinstance(value, str) and key not in ("date", "name") else None
        if m:
            return f"{f.sub_name} {key} ('...{value[max(0, m.start() - 40):m.end() + 20]}...')"
    return None


def _carries(log: LogSummary, claim: Claim) -> bool:
    loss = claim.val_loss
    line = find_claim(log, claim.val_bpb, loss)
    return line is not None and line.claim and (loss is None or line.val_loss is None or number_matches(loss, line.val_loss))


def _pick_log(f: Folder, seed: int, paths: list[Path], parsed: dict, spare: dict) -> tuple[str, LogSummary]:
    """The log checked for `seed`, its final score being the line that carries the claimed number;
    when no log of the seed carries it but the final line of a log of an unclaimed seed does, that
    log is taken (a seed mix-up between file and submission.json: a note) and leaves `spare`."""
    standard = f"train_seed{seed}.log"
    paths = sorted(paths, key=lambda p: (p.name != standard, p.parent != f.root, p.name))
    main = paths[0]
    if len(paths) > 1:
        f.note(f"seed {seed}: {len(paths)} logs ({', '.join(f.rel(p) for p in paths)}); checked {f.rel(main)}")
    summary = parsed[main]
    name = f.rel(main)
    claim = f.claims.get(seed)
    if claim is None:
        if summary.final_label is None:
            # A non-record folder that claims no val_bpb, whose log ends on a final line in another
            # metric (`final_..._exact val_var_bpb:`, a bound), finished its run: a note.
            other_metric = non_record(f) and f.no_score and FINAL_OTHER_METRIC.search(main.read_text(encoding="utf-8", errors="replace"))
            (f.note if other_metric else f.problem)(f"{name}: no final score line ({final_rule(summary.family)})")
        for label, n in summary.reused_labels.items():
            f.note(f"{name}: {label}_exact printed {n} times with different numbers; the claim taken is {summary.final_label}")
        return name, summary
    where, bpb, loss = claim.bpb_key, claim.val_bpb, claim.val_loss
    hits = [(p, find_claim(parsed[p], bpb, loss)) for p in paths]
    hits = [(p, ln) for p, ln in hits if ln is not None]
    near = lambda ln: (ln.claim, loss is None or ln.val_loss is None or number_matches(loss, ln.val_loss), -abs(float(ln.val_bpb) - bpb))
    best = max(hits, key=lambda h: near(h[1]), default=None)
    aside = ""
    if best is not None and not best[1].claim and near(best[1])[1] and summary is parsed[best[0]] and summary.final_val_bpb is not None \
            and summary.final_val_bpb <= bpb + summary.tol.get("final_val_bpb", 0.0):
        # A claim copied from a step line while the log's final score is as good or better: the
        # claim overstates nothing (a metadata slip); the final line stands.
        p, line = best
        f.note(f"{f.sub_name} {where} = {bpb} is {f.rel(p)} line {line.lineno} `{line.label}`, a {line.kind} number; the log's final "
               f"{summary.final_label} val_bpb:{summary.final_val_bpb} is at least as good: the claim overstates nothing")
        return name, summary
    if best is not None and not best[1].claim and not near(best[1])[1]:
        # Only a non-claim line with the same val_bpb but another val_loss: a coincidence, not the claim.
        p, line = best
        aside = f"; {f.rel(p)} line {line.lineno} `{line.label}` has val_bpb:{line.val_bpb} but val_loss:{line.val_loss}, not {loss}"
        best = None
    if best is None:
        other = [(p, find_claim(parsed[p], bpb, loss)) for p in spare]
        other = [(p, ln) for p, ln in other if ln is not None and ln.claim and (loss is None or ln.val_loss is None or number_matches(loss, ln.val_loss))]
        if len(other) == 1:
            p, line = other[0]
            f.note(f"seed {seed}: the claimed {bpb} is not in {name} but on {f.rel(p)} line {line.lineno} `{line.label}`, "
                   f"a log of seed {spare.pop(p)}: that log is checked as seed {seed}'s (a seed mix-up)")
            apply_claim(parsed[p], line, f"{f.sub_name} {where}, in {f.rel(p)}")
            return f.rel(p), parsed[p]
    if best is None:
        got = f"{summary.final_label} val_bpb:{summary.final_val_bpb}" if summary.final_label else f"no final score line, {final_rule(summary.family)}"
        f.unmatched.add(seed)
        f.problem(f"{f.sub_name} {where} = {bpb}: no line of {', '.join(f.rel(p) for p in paths)} carries it (its final score: {got}{aside})")
        return name, summary
    p, line = best
    if not line.claim:
        f.problem(f"{f.sub_name} {where} = {bpb} is found only on {f.rel(p)} line {line.lineno} `{line.label}`, a {line.kind} number, not a final score")
    if p != main and parsed[p].train_time_ms is not None:
        # The claim is another full run's of the seed (a corrected rerun): that run is the evidence,
        # its time and size are checked; the log picked first is an extra one.
        f.note(f"seed {seed}: the claimed {bpb} is in {f.rel(p)} line {line.lineno}, a training run of its own: checked instead of {name}")
        apply_claim(parsed[p], line, f"{f.sub_name} {where}")
        return f.rel(p), parsed[p]
    if p != main:  # the claim comes from another log of the seed (e.g. an eval-only rerun)
        f.note(f"seed {seed}: the claimed {bpb} is in {f.rel(p)} line {line.lineno}, not {name}")
        f.reruns.add(seed)
        other = parsed[p]
        apply_claim(other, line, where)
        for attr in ("final_label", "final_val_loss", "final_val_bpb", "final_kind", "final_audit", "claim_source", "claim_line"):
            setattr(summary, attr, getattr(other, attr))
        summary.tol.update(final_val_bpb=other.tol["final_val_bpb"], final_val_loss=other.tol["final_val_loss"])
        summary.claim_source = f"{f.sub_name} {where}, in {f.rel(p)}"
    else:
        apply_claim(summary, line, f"{f.sub_name} {where}")
    return name, summary


def check_claim_present(f: Folder) -> None:
    """A record must claim a score and ship its script. Without a val_bpb key, a number in the blurb
    or name that a log carries on a final-score line stands for the claim (a note). A non-record
    folder that claims no score (a write-up, a negative result) needs neither: notes."""
    claims_nothing = f.no_score or f.sub is None and not f.logs
    if f.script is None:
        missing = "train_gpt.py: missing (no train_gpt*.py either)"
        (f.note if non_record(f) and claims_nothing else f.problem)(missing)
    if not f.no_score:
        return
    if f.sub_path is None:
        if not non_record(f):
            f.problem(f"submission.json: missing: a record must claim its score ({f.track.why})")
        elif f.logs or says_it_claims_nothing(f) or _output_logs(f):
            f.note("submission.json: missing; the logs are checked for what they say" if f.logs else "submission.json: missing (and no training log)")
        else:
            f.problem("submission.json: missing (and no training log)")
        return
    what = f"{f.sub_name}: no score (val_bpb, or a per-seed val_bpb)"
    if f.null_score_key:
        what = f"{f.sub_name}: {f.null_score_key} is not a number (None)"
    prose = " ".join(str(f.sub.get(k, "")) for k in ("blurb", "name", "description", "summary"))
    finals = [log.final_val_bpb for _, log in f.logs.values() if log.final_val_bpb is not None]
    # ... or a number under another key (a bpb filed under `val_loss`): a final line must carry it.
    filed = [repr(v) for k, v in f.sub.items() if is_number(v) and re.search(r"val|bpb|score", k) and 0 < v < 5]
    unfinished_line = None
    for n in re.findall(r"\b\d\.\d{3,}\b", prose) + filed:
        if len(finals) > 1 and number_matches(float(n), repr(statistics.fmean(finals))):
            f.note(f"{what}; its text states {n}, the mean of the {len(finals)} logged final scores")
            return
        for seed, (name, log) in sorted(f.logs.items()):
            line = find_claim(log, float(n))
            if line is not None and line.claim:
                f.note(f"{what}; its text states {n}, which {name} line {line.lineno} `{line.label}` carries")
                return
        for p, log in f.parsed.items():
            line = find_claim(log, float(n))
            if unfinished_line is None and line is not None and not line.claim and log.final_label is None:
                unfinished_line = f"its text states {n}, only on {f.rel(p)} line {line.lineno} `{line.label}`, a {line.kind} number of a log with no final score line"
    if f.track is not None and f.track.record:
        f.problem(f"{what}: a record must claim one ({f.track.why})")
    elif unfinished_line is not None:
        # A result stated from a run that never reached a final score (a step line, no artifact scored).
        f.problem(f"{what}; {unfinished_line}: not a final score")
    elif (unfinished := _says_unfinished(f)) is not None:
        f.problem(f"{what}: {unfinished}: an unfinished run has no score to review")
    else:
        f.note(what)


UNFINISHED = re.compile(r"\bincomplete\b|(?:could|did) not (?:complete|finish)|\bwip\b|work[-_ ]in[-_ ]progress|\bdraft\b|\bawaiting\b|\bpending\b", re.I)


def _says_unfinished(f: Folder) -> str | None:
    """`status: "incomplete"`, `val_bpb_note: "... could not complete ..."`: where submission.json's
    status or a note says the run did not finish."""
    for key, value in f.sub.items():
        low = key.lower()
        if isinstance(value, str) and (low in ("status", "state") or low.endswith(("note", "notes"))) and (m := UNFINISHED.search(value)):
            return f"{f.sub_name} {key} says {value[max(0, m.start() - 30):m.end() + 30]!r}"
    return None


NO_CLAIM = re.compile(r"no (?:new )?score (?:is )?claimed|claims? no (?:\w+ )?score|not claim\w* (?:a|any) (?:\w+ )?score|"
                      r"leaderboard_claim\W+false|-only package|methodology|synthesis|lessons learned", re.I)


def says_it_claims_nothing(f: Folder) -> bool:
    """A write-up, package or analysis that says it claims no score (README or submission.json)."""
    texts = [p.read_text(encoding="utf-8", errors="replace")[:30_000] for p in (f.root / "README.md", f.sub_path) if p is not None and p.is_file()]
    return any(NO_CLAIM.search(t) for t in texts)




def folder_date(f: Folder) -> str | None:
    """submission.json's date, else the folder name's YYYY-MM-DD prefix."""
    date = f.sub.get("date") if f.sub else None
    m = re.match(r"\d{4}-\d{2}-\d{2}", date) if isinstance(date, str) else None
    m = m or re.match(r"\d{4}-\d{2}-\d{2}", f.root.name)
    return m.group(0) if m else None


def mean_is_the_claim(f: Folder) -> bool:
    """A record-track folder dated from MEAN_CLAIM_SINCE on (or undated) claims the mean of its seeds."""
    date = folder_date(f)
    return not non_record(f) and (date is None or date >= MEAN_CLAIM_SINCE)


def _readme_states(f: Folder) -> bool:
    """Whether the README states results in bpb (a non-record write-up without logs)."""
    readme = f.root / "README.md"
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8", errors="replace")
    return bool(re.search(r"\b[0-4]\.\d{3,}", text)) and "bpb" in text.lower()


def match_mean(f: Folder, claimed: dict[int, LogSummary]) -> None:
    """Without per-seed claims: when the family rule's lines do not average to the claimed score,
    the label that does (printed once in every seed's log, a claim kind) is taken as the final one."""
    key, value = f.get(*SCORE_KEYS)
    if not is_number(value) or len(claimed) < 2:
        return
    tol = lambda logs: max(l.tol.get("final_val_bpb", 0.0) for l in logs) + json_tol(value)
    if close(float(value), statistics.fmean(l.final_val_bpb for l in claimed.values()), tol(claimed.values())):
        return
    per_label: dict[str, dict[int, object]] = {}
    for seed, log in claimed.items():
        for ln in log.lines:
            if ln.claim:
                per_label.setdefault(ln.label, {})[seed] = ln  # the last line of each label
    for label, lines in per_label.items():
        if len(lines) == len(claimed) and close(float(value), statistics.fmean(float(ln.val_bpb) for ln in lines.values()), max(half_unit(ln.val_bpb) for ln in lines.values()) + json_tol(value)):
            for seed, ln in lines.items():
                apply_claim(claimed[seed], ln, f"{f.sub_name} {key}: the mean of the seeds' {label} lines")
            return
    # Early records state one run's score (the best seed's), not the mean.
    for seed, log in sorted(claimed.items()):
        ln = find_claim(log, value)
        if ln is not None and ln.claim:
            apply_claim(log, ln, f"{f.sub_name} {key}")
            f.top_seed = seed
            (f.problem if mean_is_the_claim(f) else f.note)(f"{f.sub_name}: {key} = {value} is seed {seed}'s score ({f.logs[seed][0]} line {ln.lineno}, {ln.label}), "
                      f"not the mean of the {len(claimed)} seeds (the mean is the claim)")
            return


# ----------------------------------------------------------------------------- parse-log's claim


def parse_claimed(path) -> LogSummary:
    """`pgolf parse-log`: a log's numbers, its final score being the line that carries what the
    submission*.json beside it (or one folder up, for logs/) claims for the log's seed; the family
    rule when there is no such claim (claim_source says which)."""
    p = Path(path)
    summary = parse_file(p)
    for root in (p.parent, p.parent.parent):
        sub_path, _ = find_submission(root)
        if sub_path is None:
            continue
        try:
            sub = json.loads(sub_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return summary
        claims = {s: c for s, c in seed_claims(sub).items() if is_number(c.val_bpb)}
        seed = _seed_of(p, summary, sorted(claims))
        if seed not in claims:
            return summary
        claim = claims[seed]
        line = find_claim(summary, claim.val_bpb, claim.val_loss)
        if line is not None:
            apply_claim(summary, line, f"{sub_path.name} {claim.bpb_key}")
        return summary
    return summary

