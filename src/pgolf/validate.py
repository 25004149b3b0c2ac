"""Check a record folder as a reviewer would, for upstream folders as well as ours.

Every check reads the folder alone (submission.json, the logs, train_gpt.py) and reports one line
per problem; notes are things a reviewer would mention that do not make a folder invalid.

How it decides (claim matching, files as people name them, size conventions, severities, our
records held stricter) is described in docs/validate.md; the checks run in the order of
`validate_record`: files, submission.json, logs (each seed's claimed line), README, numbers,
size, time, compliance.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pgolf.size import CONVENTIONS, lzma_bytes
from pgolf.logparse import LogSummary, apply_claim, final_rule, find_claim, half_unit, number_matches, parse_file

from pgolf.rules import MAX_EVAL_SECONDS, MAX_TRAIN_SECONDS, METHOD_LABELS, SIZE_LIMIT_BYTES, train_grace_ms

CORE_TEXT = ("name", "author", "github_id", "date")
SCORE_KEYS = ("val_bpb", "mean_val_bpb", "val_bpb_mean", "mean_bpb")
# Our log labels for each eval method (submission.json `eval_method`).
METHOD_LABEL = METHOD_LABELS


@dataclass
class Report:
    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seeds: dict[str, dict] = field(default_factory=dict)
    size_convention: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"record": self.path, "ok": self.ok, "problems": self.problems, "notes": self.notes,
                "size_convention": self.size_convention, "seeds": self.seeds}


@dataclass
class Folder:
    """What the checks share: the folder, its parsed submission.json and logs."""

    root: Path
    report: Report
    sub: dict | None = None
    declared: list[int] = field(default_factory=list)  # seeds submission.json names
    script: Path | None = None  # the record's script (train_gpt.py, or what stands for it)
    sub_path: Path | None = None  # submission.json, or what stands for it
    claims: dict[int, tuple[str, dict]] = field(default_factory=dict)  # seed -> (where, its submission.json row)
    top_claim: bool = False  # a one-seed folder whose claim is the top-level score
    top_seed: int | None = None  # the top-level score is this seed's, not a mean
    unmatched: set = field(default_factory=set)  # seeds whose claim no log line carries (one problem each)
    logs: dict[int, tuple[str, LogSummary]] = field(default_factory=dict)  # seed -> (file name, summary)

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    def note(self, text: str) -> None:
        self.report.notes.append(text)

    @property
    def ours(self) -> bool:
        """A record pgolf wrote: submission.json names one of our eval methods and the logs (if any
        were read) are pgolf's."""
        if not (isinstance(self.sub, dict) and self.sub.get("eval_method") in METHOD_LABEL):
            return False
        return not self.logs or any(log.family == "pgolf" for _, log in self.logs.values())

    def flag(self, text: str) -> None:
        """A problem in our own records (pgolf writes every number from the logs), a note upstream."""
        (self.problem if self.ours else self.note)(text)

    def get(self, *keys):
        """The first of `keys` present in submission.json (upstream spells some fields two ways)."""
        for k in keys:
            if self.sub is not None and k in self.sub:
                return k, self.sub[k]
        return None, None


def validate_record(path) -> Report:
    root = Path(path)
    f = Folder(root, Report(str(path)))
    if not root.is_dir():
        f.problem("not a directory")
        return f.report
    for check in (check_files, check_submission, check_logs, check_readme, check_numbers, check_size, check_time, check_compliance):
        check(f)
    f.report.seeds = {str(s): {"log": name, **summary.to_json()} for s, (name, summary) in sorted(f.logs.items())}
    return f.report


# ----------------------------------------------------------------------------- 1-3: files, json, logs


def find_script(root: Path) -> tuple[Path | None, list[str]]:
    """The record's script and notes on how it was found: train_gpt.py, else the one train_gpt*.py
    (else the one train*.py); a small train_gpt.py that execs another file stands for that file."""
    notes = []
    script = root / "train_gpt.py"
    if not script.is_file():
        found = sorted(p for p in root.glob("train_gpt*.py") if p.is_file()) or sorted(p for p in root.glob("train*.py") if p.is_file())
        if not found:
            return None, notes
        script = max(found, key=lambda p: p.stat().st_size)
        more = f" (of {', '.join(p.name for p in found)}: the largest)" if len(found) > 1 else ""
        notes.append(f"{script.name}: the script, under a non-standard name{more}")
        return script, notes
    if script.stat().st_size < 2048:
        m = re.search(r"""exec\(\s*open\(\s*(?:[\w.]+\s*/\s*)?["']([\w./-]+\.py)["']""", script.read_text(encoding="utf-8", errors="replace"))
        target = root / m.group(1) if m else None
        if target is not None and target.is_file():
            notes.append(f"train_gpt.py ({script.stat().st_size} bytes) runs {m.group(1)}; its bytes are counted too")
            return target, notes
    return script, notes


def find_submission(root: Path) -> tuple[Path | None, list[str]]:
    path = root / "submission.json"
    if path.is_file():
        return path, []
    found = sorted(p for p in root.glob("submission*.json") if p.is_file())
    if not found:
        return None, []
    return found[0], [f"{found[0].name}: the submission, under a non-standard name" + (f" (of {len(found)})" if len(found) > 1 else "")]


def check_files(f: Folder) -> None:
    f.script, notes = find_script(f.root)
    for n in notes:
        f.note(n)
    if f.script is None:
        f.problem("train_gpt.py: missing (no train_gpt*.py either)")
    f.sub_path, notes = find_submission(f.root)
    for n in notes:
        f.note(n)


def check_submission(f: Folder) -> None:
    path = f.sub_path
    if path is None:
        if log_files(f.root):
            f.note("submission.json: missing; the logs are checked for what they say")
        else:
            f.problem("submission.json: missing (and no training log)")
        return
    name = path.name
    try:
        sub = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        f.problem(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})")
        return
    except json.JSONDecodeError as e:
        f.problem(f"{name}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})")
        return
    if not isinstance(sub, dict):
        f.problem(f"{name}: expected a JSON object, got {type(sub).__name__}")
        return
    f.sub = sub
    for key in CORE_TEXT:
        if not isinstance(sub.get(key), str) or not sub[key].strip():
            f.note(f"{name}: {key} missing or not a non-empty string")
    if isinstance(sub.get("date"), str) and sub["date"].strip() and not re.match(r"^\d{4}-\d{2}-\d{2}", sub["date"]):
        f.note(f"{name}: date {sub['date']!r} is not an ISO date")
    key, score = f.get(*SCORE_KEYS)
    if key is None:
        f.note(f"{name}: no score (val_bpb)")
    elif not _is_number(score):
        f.problem(f"{name}: {key} is not a number ({score!r})")
    elif key != "val_bpb":
        f.note(f"{name}: no top-level val_bpb; the score is read from {key}")
    for key in ("val_loss", "mean_val_loss", "val_bpb_std", "std_val_bpb", "val_loss_std"):
        if key in sub and sub[key] is not None and not _is_number(sub[key]):
            f.problem(f"{name}: {key} is not a number ({sub[key]!r})")
    for key in ("bytes_total", "bytes_code"):
        if key in sub and sub[key] is not None and not _is_int(sub[key]):
            f.problem(f"{name}: {key} is not an integer ({sub[key]!r})")
    if "seed_results" in sub and not isinstance(sub["seed_results"], (dict, list)):
        f.problem(f"{name}: seed_results is not an object")


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
        seeds = [int(s) for s in items if _is_int(s) or (isinstance(s, str) and s.isdigit())]
        if len(seeds) != len(items):
            f.problem(f"submission.json: {key} holds something that is not a seed: {items!r}")
        if found and seeds and sorted(seeds) != sorted(found):
            f.problem(f"submission.json: seeds {sorted(found)} but seed_results has {sorted(seeds)}")
        found = sorted(set(found) | set(seeds))
    return sorted(set(found) | set(seed_claims(f.sub)))


def seed_claims(sub: dict | None) -> dict[int, tuple[str, dict]]:
    """Per-seed rows of submission.json, as (where, row): `seed_results` / `seeds` / `results` /
    `per_seed` keyed by seed (rows, or bare val_bpb numbers), a list of rows with a `seed`, `seed_<N>`
    objects, or `val_bpb_seeds` / `seed_scores` beside a `seeds` list."""
    if not isinstance(sub, dict):
        return {}
    out: dict[int, tuple[str, dict]] = {}

    def add(seed, row, where):
        if isinstance(seed, str) and seed.removeprefix("seed_").removeprefix("seed").isdigit():
            seed = int(seed.removeprefix("seed_").removeprefix("seed"))
        if not _is_int(seed):
            return
        if _is_number(row):
            row = {"val_bpb": row}
        if isinstance(row, dict) and seed not in out:
            out[seed] = (where, row)

    for key in ("seed_results", "seeds", "results", "per_seed"):
        value = sub.get(key)
        if isinstance(value, dict):
            for seed, row in value.items():
                add(seed, row, f"{key}[{seed}].")
        elif isinstance(value, list) and key != "seeds":
            for i, row in enumerate(value):
                if isinstance(row, dict):
                    add(row.get("seed"), row, f"{key}[{i}].")
    for key, row in sub.items():
        if re.fullmatch(r"seed_?\d+", key):
            add(key, row, f"{key}.")
    seeds = sub.get("seeds")
    for key in ("val_bpb_seeds", "seed_scores", "seed_val_bpbs"):
        value = sub.get(key)
        if isinstance(value, dict):
            for seed, bpb in value.items():
                add(seed, bpb, f"{key}[{seed}]=")
        elif isinstance(value, list) and isinstance(seeds, list) and len(seeds) == len(value):
            for i, (seed, bpb) in enumerate(zip(seeds, value)):
                add(seed, bpb, f"{key}[{i}]=")
    return out


def log_files(root: Path) -> list[Path]:
    """Candidate seed logs: *.log / *.txt in the folder, its logs/ folder and one level of other
    subfolders (which logs hold training or eval lines is decided when they are read)."""
    files = sorted(p for p in root.iterdir() if p.suffix in (".log", ".txt") and p.is_file())
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files += sorted(p for p in sub.iterdir() if p.suffix in (".log", ".txt") and p.is_file())
    return files


NOT_LOGS = re.compile(r"^(requirements|readme|notes?|license|results?)\b", re.I)


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
    f.claims = {s: c for s, c in seed_claims(f.sub).items() if _is_number(c[1].get("val_bpb"))}
    parsed = {}
    for p in log_files(f.root):
        if NOT_LOGS.match(p.name):
            continue
        try:
            summary = parse_file(p)
        except OSError as e:
            f.problem(f"{_rel(f, p)}: cannot be read ({e.strerror})")
            continue
        if summary.lines or summary.steps is not None:  # a training or eval log, not notes
            parsed[p] = summary
    if not parsed:
        key, score = f.get(*SCORE_KEYS)
        what = (f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds
                else f"{_sub_name(f)}'s {key} = {score}" if _is_number(score) else None)
        if what and non_record(f) and not f.ours:
            f.note(f"no training log for {what}: a non-record folder whose numbers cannot be checked (its README has to carry the claim)")
        elif what:
            f.problem(f"no training log for {what} (*.log / *.txt with training lines)")
        else:
            f.note("no training log (*.log / *.txt with training lines): nothing to check the numbers against")
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
    for p in unseeded:
        owner = [s for s, (_, row) in f.claims.items() if _carries(parsed[p], row)]
        if len(owner) == 1:
            by_seed.setdefault(owner[0], []).append(p)
        elif not seeds and len(parsed) == 1:
            by_seed[-1] = [p]  # a lone log of a folder without seeds: checked for what it says
        else:
            f.note(f"{_rel(f, p)}: no seed in its name or content; not checked")
    key, top = f.get(*SCORE_KEYS)
    if not f.claims and _is_number(top) and len(seeds or by_seed) == 1 and by_seed:
        _, loss = f.get("val_loss", "mean_val_loss")
        f.claims[(seeds or sorted(by_seed))[0]] = ("", {"val_bpb": top, "val_loss": loss})
        f.top_claim = True
    # Logs of seeds submission.json does not name: a claim missing from its own seed's log may be here.
    spare = {p: s for s, ps in by_seed.items() if s not in (seeds or by_seed) for p in ps}
    for seed in seeds or sorted(by_seed):
        paths = by_seed.get(seed)
        if not paths:
            f.problem(f"train_seed{seed}.log: missing (submission.json lists seed {seed})")
            continue
        name, summary = _pick_log(f, seed, paths, parsed, spare)
        f.logs[seed] = (name, summary)
    for p, seed in spare.items():
        if p == by_seed[seed][0]:
            f.note(f"{_rel(f, p)}: seed {seed} is not in submission.json (a run left out?)")


def check_readme(f: Folder) -> None:
    """A README is what a reviewer reads first; pgolf always writes one, so ours must have it."""
    if not (f.root / "README.md").is_file():
        f.flag("README.md: missing")


def _carries(log: LogSummary, row: dict) -> bool:
    loss = row.get("val_loss") if _is_number(row.get("val_loss")) else None
    line = find_claim(log, row["val_bpb"], loss)
    return line is not None and line.claim and (loss is None or line.val_loss is None or number_matches(loss, line.val_loss))


def _pick_log(f: Folder, seed: int, paths: list[Path], parsed: dict, spare: dict) -> tuple[str, LogSummary]:
    """The log checked for `seed`, its final score being the line that carries the claimed number;
    when no log of the seed carries it but the final line of a log of an unclaimed seed does, that
    log is taken (a seed mix-up between file and submission.json: a note) and leaves `spare`."""
    standard = f"train_seed{seed}.log"
    paths = sorted(paths, key=lambda p: (p.name != standard, p.parent != f.root, p.name))
    main = paths[0]
    if len(paths) > 1:
        f.note(f"seed {seed}: {len(paths)} logs ({', '.join(_rel(f, p) for p in paths)}); checked {_rel(f, main)}")
    summary = parsed[main]
    name = _rel(f, main)
    claim = f.claims.get(seed)
    if claim is None:
        if summary.final_label is None:
            f.problem(f"{name}: no final score line ({final_rule(summary.family)})")
        for label, n in summary.reused_labels.items():
            f.note(f"{name}: {label}_exact printed {n} times with different numbers; the claim taken is {summary.final_label}")
        return name, summary
    where, row = claim
    where = where[:-1] if where.endswith("=") else f"{where}{key_of_score(f) if f.top_claim else 'val_bpb'}"
    bpb, loss = row["val_bpb"], row.get("val_loss") if _is_number(row.get("val_loss")) else None
    hits = [(p, find_claim(parsed[p], bpb, loss)) for p in paths]
    hits = [(p, ln) for p, ln in hits if ln is not None]
    near = lambda ln: (ln.claim, loss is None or ln.val_loss is None or number_matches(loss, ln.val_loss), -abs(float(ln.val_bpb) - bpb))
    best = max(hits, key=lambda h: near(h[1]), default=None)
    aside = ""
    if best is not None and not best[1].claim and not near(best[1])[1]:
        # Only a non-claim line with the same val_bpb but another val_loss: a coincidence, not the claim.
        p, line = best
        aside = f"; {_rel(f, p)} line {line.lineno} `{line.label}` has val_bpb:{line.val_bpb} but val_loss:{line.val_loss}, not {loss}"
        best = None
    if best is None:
        other = [(p, find_claim(parsed[p], bpb, loss)) for p in spare]
        other = [(p, ln) for p, ln in other if ln is not None and ln.claim and (loss is None or ln.val_loss is None or number_matches(loss, ln.val_loss))]
        if len(other) == 1:
            p, line = other[0]
            f.note(f"seed {seed}: the claimed {bpb} is not in {name} but on {_rel(f, p)} line {line.lineno} `{line.label}`, "
                   f"a log of seed {spare.pop(p)}: that log is checked as seed {seed}'s (a seed mix-up)")
            apply_claim(parsed[p], line, f"{_sub_name(f)} {where}, in {_rel(f, p)}")
            return _rel(f, p), parsed[p]
    if best is None:
        got = f"{summary.final_label} val_bpb:{summary.final_val_bpb}" if summary.final_label else f"no final score line, {final_rule(summary.family)}"
        f.unmatched.add(seed)
        f.problem(f"{_sub_name(f)} {where} = {bpb}: no line of {', '.join(_rel(f, p) for p in paths)} carries it (its final score: {got}{aside})")
        return name, summary
    p, line = best
    if not line.claim:
        f.problem(f"{_sub_name(f)} {where} = {bpb} is found only on {_rel(f, p)} line {line.lineno} `{line.label}`, a {line.kind} number, not a final score")
    if p != main:  # the claim comes from another log of the seed (e.g. an eval-only rerun)
        f.note(f"seed {seed}: the claimed {bpb} is in {_rel(f, p)} line {line.lineno}, not {name}")
        other = parsed[p]
        apply_claim(other, line, where)
        for attr in ("final_label", "final_val_loss", "final_val_bpb", "final_kind", "final_audit", "claim_source", "claim_line"):
            setattr(summary, attr, getattr(other, attr))
        summary.tol.update(final_val_bpb=other.tol["final_val_bpb"], final_val_loss=other.tol["final_val_loss"])
        summary.claim_source = f"{_sub_name(f)} {where}, in {_rel(f, p)}"
    else:
        apply_claim(summary, line, f"{_sub_name(f)} {where}")
    return name, summary


def key_of_score(f: Folder) -> str:
    return f.get(*SCORE_KEYS)[0] or "val_bpb"


def _sub_name(f: Folder) -> str:
    return f.sub_path.name if f.sub_path else "submission.json"


# ----------------------------------------------------------------------------- 4: numbers


# submission.json seed_results key(s) -> LogSummary field, and whether the json side is in seconds.
SEED_FIELDS = [
    (("val_bpb",), "final_val_bpb", 1.0),
    (("val_loss",), "final_val_loss", 1.0),
    (("step_avg_ms", "ms_per_step"), "step_avg_ms", 1.0),
    (("train_time_s",), "train_time_ms", 1000.0),
    (("pre_quant_val_bpb",), "pre_quant_val_bpb", 1.0),
    (("sliding_val_bpb",), "sliding_val_bpb", 1.0),
]
SCORE_FIELDS = {"final_val_bpb", "final_val_loss", "pre_quant_val_bpb", "sliding_val_bpb"}


def check_numbers(f: Folder) -> None:
    if f.sub is None:
        return
    for seed, (name, log) in f.logs.items():
        where, row = f.claims.get(seed, ("", None))
        if where and not where.endswith("=") and isinstance(row, dict):
            _check_seed_row(f, seed, row, name, log, where.rstrip("."))
    claimed = {s: log for s, (_, log) in f.logs.items() if log.final_label is not None}
    if claimed and not any(w and not w.endswith("=") for w, _ in f.claims.values()):
        _match_mean(f, claimed)
    unscored = sorted(set(f.declared) - set(claimed))
    if unscored:
        # The means over the other seeds would differ for that reason alone: one problem, not three.
        f.note(f"seed{'s' if len(unscored) > 1 else ''} {', '.join(map(str, unscored))} without a claimed score: means, std, bytes_total and significance not checked")
    elif claimed:
        _check_means(f, claimed)
        _check_bytes(f)
        _check_significance(f, claimed)
    _check_code_bytes(f)
    _check_method(f)


def _match_mean(f: Folder, claimed: dict[int, LogSummary]) -> None:
    """Without per-seed claims: when the family rule's lines do not average to the claimed score,
    the label that does (printed once in every seed's log, a claim kind) is taken as the final one."""
    key, value = f.get(*SCORE_KEYS)
    if not _is_number(value) or len(claimed) < 2:
        return
    tol = lambda logs: max(l.tol.get("final_val_bpb", 0.0) for l in logs) + _json_tol(value)
    if _close(float(value), statistics.fmean(l.final_val_bpb for l in claimed.values()), tol(claimed.values())):
        return
    per_label: dict[str, dict[int, object]] = {}
    for seed, log in claimed.items():
        for ln in log.lines:
            if ln.claim:
                per_label.setdefault(ln.label, {})[seed] = ln  # the last line of each label
    for label, lines in per_label.items():
        if len(lines) == len(claimed) and _close(float(value), statistics.fmean(float(ln.val_bpb) for ln in lines.values()), max(half_unit(ln.val_bpb) for ln in lines.values()) + _json_tol(value)):
            for seed, ln in lines.items():
                apply_claim(claimed[seed], ln, f"{_sub_name(f)} {key}: the mean of the seeds' {label} lines")
            return
    # Early records state one run's score (the best seed's), not the mean.
    for seed, log in sorted(claimed.items()):
        ln = find_claim(log, value)
        if ln is not None and ln.claim:
            apply_claim(log, ln, f"{_sub_name(f)} {key}")
            f.top_seed = seed
            f.note(f"{_sub_name(f)}: {key} = {value} is seed {seed}'s score ({f.logs[seed][0]} line {ln.lineno}, {ln.label}), not the mean of the {len(claimed)} seeds")
            return


def _check_seed_row(f: Folder, seed: int, row: dict, name: str, log: LogSummary, where: str) -> None:
    where = f"{_sub_name(f)} {where}"
    for keys, attr, scale in SEED_FIELDS:
        key = next((k for k in keys if k in row), None)
        logged = getattr(log, attr)
        if key is None or logged is None or row[key] is None or (seed in f.unmatched and attr in ("final_val_bpb", "final_val_loss")):
            continue
        if not _is_number(row[key]):
            f.problem(f"{where}.{key} is not a number ({row[key]!r})")
            continue
        value = float(row[key]) * scale
        claimed = attr in ("final_val_bpb", "final_val_loss")  # matched to the JSON's own precision
        tol = log.tol.get(attr, 0.0) + _json_tol(row[key], score=attr in SCORE_FIELDS and not claimed) * scale
        if claimed and _json_decimals(row[key]) < 4 and _close(value, logged, tol):
            f.note(f"{where}.{key} = {row[key]} is {name}'s {logged:.8g} rounded to {_json_decimals(row[key])} decimals")
        if not _close(value, logged, tol):
            (f.problem if claimed else f.flag)(f"{where}.{key} = {row[key]} but {name} says {logged / scale:.8g}")
    if "steps" in row and log.steps is not None and row["steps"] != log.steps:
        f.flag(f"{where}.steps = {row['steps']!r} but {name} says {log.steps}")
    if "artifact_bytes" in row and log.bytes_total is not None and row["artifact_bytes"] not in (log.bytes_total, log.bytes_model):
        f.flag(f"{where}.artifact_bytes = {row['artifact_bytes']!r} but {name} says Total submission size {log.bytes_total} bytes")
    if log.family == "pgolf" and "eval_time_s" in row and log.eval_time_ms is not None and _is_number(row["eval_time_s"]):
        if not _close(float(row["eval_time_s"]) * 1000.0, log.eval_time_ms, 0.5 + _json_tol(row["eval_time_s"]) * 1000.0):
            f.problem(f"{where}.eval_time_s = {row['eval_time_s']} but {name}'s eval passes add up to {log.eval_time_ms / 1000:.3f} s")


def _check_means(f: Folder, claimed: dict[int, LogSummary]) -> None:
    seeds = sorted(claimed)
    listed = ", ".join(f.logs[s][0] for s in seeds)
    for keys, attr, std_keys in (
        (("val_bpb", "mean_val_bpb"), "final_val_bpb", ("val_bpb_std", "std_val_bpb")),
        (("val_loss", "mean_val_loss"), "final_val_loss", ("val_loss_std", "std_val_loss")),
    ):
        values = [getattr(claimed[s], attr) for s in seeds]
        if any(v is None for v in values):  # a log printing val_bpb alone
            continue
        tol = max(claimed[s].tol.get(attr, 0.0) for s in seeds)
        key, value = f.get(*keys)
        if _is_number(value) and f.top_seed is None:
            mean = statistics.fmean(values)
            # The mean of the rounded per-seed claims is as good as the mean of the logged numbers.
            rows = [f.claims[s][1].get(attr.removeprefix("final_")) for s in seeds if s in f.claims]
            of_rows = statistics.fmean(rows) if rows and len(rows) == len(seeds) and all(_is_number(r) for r in rows) else mean
            unit = 2 * _json_tol(value, score=True)
            if not (_close(float(value), mean, tol + unit) or _close(float(value), of_rows, unit)):
                (f.problem if attr == "final_val_bpb" else f.flag)(f"{_sub_name(f)}: {key} = {value} but the mean of {listed} is {mean:.8f}")
        key, value = f.get(*std_keys)
        if _is_number(value) and len(values) > 1:
            sample, population = statistics.stdev(values), statistics.pstdev(values)
            slack = 2 * tol + _json_tol(value, score=True)
            if not (_close(float(value), sample, slack) or _close(float(value), population, slack)):
                f.flag(f"{_sub_name(f)}: {key} = {value} but the logged seeds' std is {sample:.8f}")


def _check_bytes(f: Folder) -> None:
    totals = {s: log.bytes_total for s, (_, log) in f.logs.items() if log.bytes_total is not None}
    value = f.sub.get("bytes_total")
    if _is_int(value) and totals and value not in totals.values():
        f.flag(f"submission.json: bytes_total = {value} but the logs say {sorted(set(totals.values()))}")


def _check_code_bytes(f: Folder) -> None:
    code = f.sub.get("bytes_code")
    for seed, (name, log) in sorted(f.logs.items()):
        if _is_int(code) and log.bytes_code is not None and code != log.bytes_code:
            f.flag(f"submission.json: bytes_code = {code} but {name} says Code size {log.bytes_code} bytes")
            break


def _check_method(f: Folder) -> None:
    method = f.sub.get("eval_method")
    want = METHOD_LABEL.get(method) if isinstance(method, str) else None
    for seed, (name, log) in sorted(f.logs.items()):
        if not want or log.family != "pgolf" or not log.final_label:
            continue
        if log.final_label == "final_score_exact" and log.final_method != method:
            f.problem(f"submission.json: eval_method {method} but {name}'s final score comes from {log.final_method}")
            break
        if log.final_label not in ("final_score_exact", want):
            f.problem(f"submission.json: eval_method {method} but {name}'s final score is {log.final_label}")
            break


def _check_significance(f: Folder, claimed: dict[int, LogSummary]) -> None:
    """Our `significance` block, recomputed from the logged per-seed losses."""
    block = f.sub.get("significance")
    if not isinstance(block, dict) or not claimed or block.get("test") in (None, "none") or any(c.final_val_loss is None for c in claimed.values()):
        return
    from pgolf.stats import significance

    try:
        baseline = {
            "name": block["baseline"],
            "val_loss": float(block["baseline_val_loss"]),
            "val_bpb": float(block["baseline_val_bpb"]),
            "seed_val_losses": block.get("baseline_seed_val_losses"),
        }
        redo = significance(
            [claimed[s].final_val_loss for s in sorted(claimed)],
            [claimed[s].final_val_bpb for s in sorted(claimed)],
            baseline,
            margin=float(block["margin_nats"]),
            alpha=float(block["alpha"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        f.problem(f"submission.json: significance block incomplete ({e})")
        return
    if redo["passed"] != block.get("passed"):
        f.problem(f"submission.json: significance.passed = {block.get('passed')} but the logged losses give {redo['passed']} (p = {redo['p_value']})")
    t, t_logged = block.get("t_statistic"), redo["t_statistic"]
    if _is_number(t) and t_logged is not None and not math.isclose(float(t), t_logged, rel_tol=1e-3, abs_tol=1e-6):
        f.problem(f"submission.json: significance.t_statistic = {t} but the logged losses give {t_logged}")


# ----------------------------------------------------------------------------- 5-7: size, time, claims


def size_convention(f: Folder) -> str:
    """The record's own: `code_size_convention` in submission.json (ours), else `lzma` when its logs
    state a compressed code size (the frontier's), else `raw`."""
    stated = f.sub.get("code_size_convention") if f.sub else None
    if stated in CONVENTIONS:
        return stated
    return "lzma" if any(log.bytes_code_compressed is not None for _, log in f.logs.values()) else "raw"


def check_size(f: Folder) -> None:
    convention = f.report.size_convention = size_convention(f)
    value = f.sub.get("bytes_total") if f.sub else None
    if _is_int(value) and value > SIZE_LIMIT_BYTES:
        f.problem(f"{_sub_name(f)}: bytes_total {value} > cap {SIZE_LIMIT_BYTES}")
    shipped = packed = None
    if f.script is not None:
        code = f.script.read_bytes()
        wrapper = f.root / "train_gpt.py"
        extra = wrapper.stat().st_size if f.script != wrapper and wrapper.is_file() else 0
        shipped = len(code) + extra
        packed = lzma_bytes(code) + extra if convention == "lzma" else None  # costs ~0.1 s: only when counted
    script = f.script.name if f.script else "train_gpt.py"
    for seed, (name, log) in sorted(f.logs.items()):
        model = log.bytes_model
        if convention == "lzma" and log.bytes_code_compressed is not None:
            counted, how = log.bytes_code_compressed, f"{name}'s Code size (compressed)"
            if packed is not None and abs(packed - counted) > 0 and seed == min(f.logs):
                f.note(f"{script}: lzma -9e of the shipped code is {packed} bytes; {name} states {counted} compressed (its own packing)")
        elif convention == "lzma":
            counted, how = packed, f"{script} lzma -9e"
        else:
            counted, how = shipped, f"{script} as shipped"
        if counted is not None and model is not None:
            total = counted + model
            if total > SIZE_LIMIT_BYTES:
                f.problem(f"{how} ({counted} bytes) + model ({model} bytes, {name}) = {total} > cap {SIZE_LIMIT_BYTES} ({convention} convention)")
            elif log.bytes_total is not None and log.bytes_total != total:
                f.flag(
                    f"{name}: Total submission size {log.bytes_total} bytes, but {how} + model = {total} ({convention} convention)")
        elif log.bytes_total is not None and log.bytes_total > SIZE_LIMIT_BYTES:
            f.problem(f"{name}: Total submission size {log.bytes_total} bytes > cap {SIZE_LIMIT_BYTES}")
        if shipped is not None and log.bytes_code_compressed is None and log.bytes_code is not None and log.bytes_code != shipped and seed == min(f.logs):
            f.flag(f"{name}: Code size {log.bytes_code} bytes but the shipped {script} is {shipped} bytes")


def timed_track(f: Folder) -> bool:
    track = f.sub.get("track") if f.sub else None
    return "10min" in f.root.parent.name or (isinstance(track, str) and "10min" in track)


def non_record(f: Folder) -> bool:
    track = f.sub.get("track") if f.sub else None
    return "non_record" in f.root.parent.name or (isinstance(track, str) and "non_record" in track)


def _claims(f: Folder) -> dict:
    block = f.sub.get("compliance") if f.sub else None
    return block if isinstance(block, dict) else {}


def check_time(f: Folder) -> None:
    claims = _claims(f)
    train_claim = claims.get("train_under_600s", claims.get("training_under_600s")) is True
    eval_claim = claims.get("eval_under_600s") is True
    timed = timed_track(f)
    for seed, (name, log) in sorted(f.logs.items()):
        grace = train_grace_ms(log.step_avg_ms)
        over_train = log.train_time_ms is not None and log.train_time_ms > 1000 * MAX_TRAIN_SECONDS + grace
        if over_train and (timed or train_claim):
            f.problem(f"{name}: training took {log.train_time_ms / 1000:.3f} s > {MAX_TRAIN_SECONDS:g} s (+{grace / 1000:.3f} s grace){_claimed(train_claim)}")
        over_eval = log.eval_time_ms is not None and log.eval_time_ms > 1000 * MAX_EVAL_SECONDS
        if over_eval and (timed or eval_claim):
            f.problem(f"{name}: eval passes took {log.eval_time_ms / 1000:.3f} s > {MAX_EVAL_SECONDS:g} s{_claimed(eval_claim)}")


def _claimed(claim: bool) -> str:
    return " (submission.json's compliance block claims it is under)" if claim else ""


def check_compliance(f: Folder) -> None:
    claims = _claims(f)
    n = len(set(f.logs) | set(f.declared))  # a missing log is its own problem
    if claims.get("three_seeds") is True and n < 3:
        f.problem(f"submission.json: compliance.three_seeds is true but the record has {n} seed{'s' if n != 1 else ''}")
    if claims.get("artifact_under_16mb") is True:
        over = [name for name, log in f.logs.values() if log.bytes_total is not None and log.bytes_total > SIZE_LIMIT_BYTES]
        if over:
            f.problem(f"submission.json: compliance.artifact_under_16mb is true but {over[0]} is over the cap")
    if claims.get("score_first_eval") is True and f.sub.get("eval_method") == "slot_published":
        f.problem("submission.json: compliance.score_first_eval is true but eval_method slot_published fits on the scored targets")
    elif claims.get("score_first_eval") is True:
        failed = [(name, log) for name, log in f.logs.values() if log.final_audit == "fail"]
        if failed:
            name, log = failed[0]
            f.problem(f"{_sub_name(f)}: compliance.score_first_eval is true but {name}'s {log.final_label.removesuffix('_exact')} line says audit:fail")


# ----------------------------------------------------------------------------- helpers


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _json_decimals(x) -> int:
    return max(0, -Decimal(repr(x)).as_tuple().exponent) if _is_number(x) else 0


def _json_tol(x, score: bool = False) -> float:
    """Half a unit in the last decimal of a JSON number; a score is taken to carry >= 4 decimals."""
    decimals = max(0, -Decimal(repr(x)).as_tuple().exponent) if _is_number(x) else 0
    if score:
        decimals = max(decimals, 4)
    return 0.5 * 10.0 ** -decimals


def _close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-9 * max(1.0, abs(a), abs(b))


def _rel(f: Folder, p: Path) -> str:
    return str(p.relative_to(f.root))


def format_report(r: Report) -> list[str]:
    """Text output: one line per problem (and per note), or one `ok` line."""
    lines = [f"{r.path}: {p}" for p in r.problems] + [f"{r.path}: note: {n}" for n in r.notes]
    if r.ok:
        scores = [s["final_val_bpb"] for s in r.seeds.values() if s.get("final_val_bpb") is not None]
        mean = f", mean val_bpb {statistics.fmean(scores):.8f}" if scores else ""
        lines.append(f"ok: {r.path} ({len(r.seeds)} seed log{'s' if len(r.seeds) != 1 else ''}{mean})")
    return lines


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
        claims = {s: c for s, c in seed_claims(sub).items() if _is_number(c[1].get("val_bpb"))}
        seed = _seed_of(p, summary, sorted(claims))
        if seed not in claims:
            return summary
        where, row = claims[seed]
        where = where[:-1] if where.endswith("=") else f"{where}val_bpb"
        loss = row.get("val_loss") if _is_number(row.get("val_loss")) else None
        line = find_claim(summary, row["val_bpb"], loss)
        if line is not None:
            apply_claim(summary, line, f"{sub_path.name} {where}")
        return summary
    return summary


def claim_pairs(folder) -> list[tuple[int, str, float, bool]]:
    """(seed, log, claimed val_bpb, whether parse-log returns it) for every seed of `folder` whose
    submission states a per-seed val_bpb and has a log: the corpus measure of parse-log."""
    root = Path(folder)
    f = Folder(root, Report(str(folder)))
    if not root.is_dir():
        return []
    check_files(f)
    check_submission(f)
    check_logs(f)
    out = []
    for seed, (name, _) in sorted(f.logs.items()):
        where, row = f.claims.get(seed, ("", None))
        if not where or row is None:
            continue
        got = parse_claimed(root / name)
        out.append((seed, name, row["val_bpb"], got.final_val_bpb is not None and number_matches(row["val_bpb"], repr(got.final_val_bpb))))
    return out
