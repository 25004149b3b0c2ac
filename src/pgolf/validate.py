"""Check a record folder as a reviewer would, for upstream folders as well as ours.

Every check reads the folder alone (submission.json, the logs, train_gpt.py) and reports one line
per problem; notes are things a reviewer would mention that do not make a folder invalid.

Checks, in order:

1. files: README.md, submission.json and train_gpt.py exist.
2. submission.json: parses, is an object, carries `name`, `author`, `github_id`, `date` (strings)
   and a numeric score: `val_bpb`, or #1303/#1313's `mean_val_bpb` (a note says so).
3. seeds: every seed in `seeds` / `seed_results` has a log (`train_seed<S>.log`, a log whose name
   or `seed:` line gives the seed, or the single `train.log` of a one-seed record); each log has a
   claimed final score (rules in pgolf.logparse).
4. numbers: per seed, `val_bpb`, `val_loss`, `steps`, `artifact_bytes` (the logged total, or the
   logged model bytes), `step_avg_ms`/`ms_per_step`, `train_time_s`, `pre_quant_val_bpb`,
   `sliding_val_bpb` equal what the log says within rounding (half a unit in the last digit of
   each side; scores in submission.json are taken to carry at least 4 decimals); ours also
   `eval_time_s`. Top level: the score and `val_loss` are the means of the logged seeds, the std
   their sample (or population) std, `bytes_total` one of the logged totals, `bytes_code` the
   logged code size, `eval_method` the method of the logged final line, and the `significance`
   block recomputes from the logged losses.
5. size: `bytes_total`, every logged total, and the shipped train_gpt.py plus the logged model
   bytes are at most 16,000,000; a logged plain `Code size` equals the shipped train_gpt.py.
6. time: on the 10-minute track (or wherever `compliance` claims it), each seed's logged training
   time is at most 600 s plus a grace of two average steps or 1 s, whichever is more (the cap is
   checked after each step, so accepted records log e.g. 600,128 ms at 86 ms a step), and its
   eval passes add up to at most 600 s.
7. compliance: every `true` claim (`artifact_under_16mb`, `train_under_600s`, `eval_under_600s`,
   `three_seeds`, `score_first_eval`) agrees with what the checks above found.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pgolf.logparse import LogSummary, final_rule, parse_file

SIZE_CAP = 16_000_000
TIME_CAP_MS = 600_000.0
TRAIN_GRACE_MS = 1000.0
CORE_TEXT = ("name", "author", "github_id", "date")
# Our log labels for each eval method (submission.json `eval_method`).
METHOD_LABEL = {
    "sliding_window": "final_sliding_window_exact",
    "slot_causal": "final_slot_causal_exact",
    "slot_published": "final_slot_published_exact",
}


@dataclass
class Report:
    path: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seeds: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"record": self.path, "ok": self.ok, "problems": self.problems, "notes": self.notes, "seeds": self.seeds}


@dataclass
class Folder:
    """What the checks share: the folder, its parsed submission.json and logs."""

    root: Path
    report: Report
    sub: dict | None = None
    declared: list[int] = field(default_factory=list)  # seeds submission.json names
    logs: dict[int, tuple[str, LogSummary]] = field(default_factory=dict)  # seed -> (file name, summary)

    def problem(self, text: str) -> None:
        self.report.problems.append(text)

    def note(self, text: str) -> None:
        self.report.notes.append(text)

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
    for check in (check_files, check_submission, check_logs, check_numbers, check_size, check_time, check_compliance):
        check(f)
    f.report.seeds = {str(s): {"log": name, **summary.to_json()} for s, (name, summary) in sorted(f.logs.items())}
    return f.report


# ----------------------------------------------------------------------------- 1-3: files, json, logs


def check_files(f: Folder) -> None:
    for name in ("README.md", "submission.json", "train_gpt.py"):
        if not (f.root / name).is_file():
            f.problem(f"{name}: missing")


def check_submission(f: Folder) -> None:
    path = f.root / "submission.json"
    if not path.is_file():
        return
    try:
        sub = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        f.problem(f"submission.json: not UTF-8 text ({e.reason} at byte {e.start})")
        return
    except json.JSONDecodeError as e:
        f.problem(f"submission.json: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})")
        return
    if not isinstance(sub, dict):
        f.problem(f"submission.json: expected a JSON object, got {type(sub).__name__}")
        return
    f.sub = sub
    for key in CORE_TEXT:
        if not isinstance(sub.get(key), str) or not sub[key].strip():
            f.problem(f"submission.json: {key} missing or not a non-empty string")
    if isinstance(sub.get("date"), str) and not re.match(r"^\d{4}-\d{2}-\d{2}", sub["date"]):
        f.problem(f"submission.json: date {sub['date']!r} is not an ISO date")
    key, score = f.get("val_bpb", "mean_val_bpb")
    if key is None:
        f.problem("submission.json: no score (val_bpb)")
    elif not _is_number(score):
        f.problem(f"submission.json: {key} is not a number ({score!r})")
    elif key != "val_bpb":
        f.note(f"submission.json: no top-level val_bpb; the score is read from {key}")
    for key in ("val_loss", "mean_val_loss", "val_bpb_std", "std_val_bpb", "val_loss_std"):
        if key in sub and sub[key] is not None and not _is_number(sub[key]):
            f.problem(f"submission.json: {key} is not a number ({sub[key]!r})")
    for key in ("bytes_total", "bytes_code"):
        if key in sub and not _is_int(sub[key]):
            f.problem(f"submission.json: {key} is not an integer ({sub[key]!r})")
    if "seed_results" in sub and not isinstance(sub["seed_results"], dict):
        f.problem("submission.json: seed_results is not an object")


def declared_seeds(f: Folder) -> list[int]:
    """Seeds submission.json names: `seeds` (a list, or a dict keyed by seed) and `seed_results` keys."""
    if f.sub is None:
        return []
    found: list[int] = []
    for key in ("seeds", "seed_results"):
        value = f.sub.get(key)
        items = list(value) if isinstance(value, (list, dict)) else []
        seeds = [int(s) for s in items if _is_int(s) or (isinstance(s, str) and s.isdigit())]
        if len(seeds) != len(items):
            f.problem(f"submission.json: {key} holds something that is not a seed: {items!r}")
        if found and seeds and sorted(seeds) != sorted(found):
            f.problem(f"submission.json: seeds {sorted(found)} but seed_results has {sorted(seeds)}")
        found = sorted(set(found) | set(seeds))
    return found


def log_files(root: Path) -> list[Path]:
    files = sorted(root.glob("*.log"))
    if (root / "logs").is_dir():
        files += sorted(p for p in (root / "logs").iterdir() if p.suffix in (".log", ".txt") and p.is_file())
    return files


def check_logs(f: Folder) -> None:
    seeds = f.declared = declared_seeds(f)
    files = log_files(f.root)
    if not files:
        f.problem("no training log (train_seed<S>.log)")
        return
    parsed = {}
    for p in files:
        try:
            parsed[p] = parse_file(p)
        except OSError as e:
            f.problem(f"{_rel(f, p)}: cannot be read ({e.strerror})")
    by_seed: dict[int, list[Path]] = {}
    for p, summary in parsed.items():
        m = re.search(r"seed[_-]?(\d+)", p.name)
        seed = int(m.group(1)) if m else summary.seed
        if seed is None and seeds and len(seeds) == 1 and len(files) == 1:
            seed = seeds[0]
        if seed is None:
            f.note(f"{_rel(f, p)}: no seed in its name or content; not checked")
            continue
        by_seed.setdefault(seed, []).append(p)
    for seed in seeds or sorted(by_seed):
        paths = by_seed.get(seed)
        if not paths:
            f.problem(f"train_seed{seed}.log: missing (submission.json lists seed {seed})")
            continue
        chosen = next((p for p in paths if p.name == f"train_seed{seed}.log"), paths[0])
        if len(paths) > 1:
            f.note(f"seed {seed}: {len(paths)} logs ({', '.join(_rel(f, p) for p in paths)}); checked {_rel(f, chosen)}")
        summary = parsed[chosen]
        name = _rel(f, chosen)
        if summary.final_label is None:
            f.problem(f"{name}: no final score line ({final_rule(summary.family)})")
        for label, n in summary.reused_labels.items():
            f.note(f"{name}: {label}_exact printed {n} times with different numbers; the claim taken is {summary.final_label}")
        f.logs[seed] = (name, summary)
    for seed in sorted(set(by_seed) - set(seeds or by_seed)):
        f.note(f"{_rel(f, by_seed[seed][0])}: seed {seed} is not in submission.json (a run left out?)")


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
    results = f.sub.get("seed_results") if isinstance(f.sub.get("seed_results"), dict) else {}
    for seed, (name, log) in f.logs.items():
        row = results.get(str(seed), results.get(seed))
        if isinstance(row, dict):
            _check_seed_row(f, seed, row, name, log)
    claimed = {s: log for s, (_, log) in f.logs.items() if log.final_label is not None}
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


def _check_seed_row(f: Folder, seed: int, row: dict, name: str, log: LogSummary) -> None:
    where = f"submission.json seed_results[{seed}]"
    for keys, attr, scale in SEED_FIELDS:
        key = next((k for k in keys if k in row), None)
        logged = getattr(log, attr)
        if key is None or logged is None or row[key] is None:
            continue
        if not _is_number(row[key]):
            f.problem(f"{where}.{key} is not a number ({row[key]!r})")
            continue
        value = float(row[key]) * scale
        tol = log.tol.get(attr, 0.0) + _json_tol(row[key], score=attr in SCORE_FIELDS) * scale
        if not _close(value, logged, tol):
            f.problem(f"{where}.{key} = {row[key]} but {name} says {logged / scale:.8g}")
    if "steps" in row and log.steps is not None and row["steps"] != log.steps:
        f.problem(f"{where}.steps = {row['steps']!r} but {name} says {log.steps}")
    if "artifact_bytes" in row and log.bytes_total is not None and row["artifact_bytes"] not in (log.bytes_total, log.bytes_model):
        f.problem(f"{where}.artifact_bytes = {row['artifact_bytes']!r} but {name} says Total submission size {log.bytes_total} bytes")
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
        tol = max(claimed[s].tol.get(attr, 0.0) for s in seeds)
        key, value = f.get(*keys)
        if _is_number(value):
            mean = statistics.fmean(values)
            if not _close(float(value), mean, tol + _json_tol(value, score=True)):
                f.problem(f"submission.json: {key} = {value} but the mean of {listed} is {mean:.8f}")
        key, value = f.get(*std_keys)
        if _is_number(value) and len(values) > 1:
            sample, population = statistics.stdev(values), statistics.pstdev(values)
            slack = 2 * tol + _json_tol(value, score=True)
            if not (_close(float(value), sample, slack) or _close(float(value), population, slack)):
                f.problem(f"submission.json: {key} = {value} but the logged seeds' std is {sample:.8f}")


def _check_bytes(f: Folder) -> None:
    totals = {s: log.bytes_total for s, (_, log) in f.logs.items() if log.bytes_total is not None}
    value = f.sub.get("bytes_total")
    if _is_int(value) and totals and value not in totals.values():
        f.problem(f"submission.json: bytes_total = {value} but the logs say {sorted(set(totals.values()))}")


def _check_code_bytes(f: Folder) -> None:
    code = f.sub.get("bytes_code")
    for seed, (name, log) in sorted(f.logs.items()):
        if _is_int(code) and log.bytes_code is not None and code != log.bytes_code:
            f.problem(f"submission.json: bytes_code = {code} but {name} says Code size {log.bytes_code} bytes")
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
    if not isinstance(block, dict) or not claimed or block.get("test") in (None, "none"):
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


def check_size(f: Folder) -> None:
    value = f.sub.get("bytes_total") if f.sub else None
    if _is_int(value) and value > SIZE_CAP:
        f.problem(f"submission.json: bytes_total {value} > cap {SIZE_CAP}")
    code_path = f.root / "train_gpt.py"
    shipped = code_path.stat().st_size if code_path.is_file() else None
    for seed, (name, log) in sorted(f.logs.items()):
        if log.bytes_total is not None and log.bytes_total > SIZE_CAP:
            f.problem(f"{name}: Total submission size {log.bytes_total} bytes > cap {SIZE_CAP}")
        if shipped is not None and log.bytes_model is not None and shipped + log.bytes_model > SIZE_CAP:
            f.problem(f"train_gpt.py ({shipped} bytes) + model ({log.bytes_model} bytes, {name}) = {shipped + log.bytes_model} > cap {SIZE_CAP}")
        if shipped is not None and log.family != "newer" and log.bytes_code is not None and log.bytes_code != shipped:
            f.problem(f"{name}: Code size {log.bytes_code} bytes but the shipped train_gpt.py is {shipped} bytes")


def timed_track(f: Folder) -> bool:
    track = f.sub.get("track") if f.sub else None
    return "10min" in f.root.parent.name or (isinstance(track, str) and "10min" in track)


def _claims(f: Folder) -> dict:
    block = f.sub.get("compliance") if f.sub else None
    return block if isinstance(block, dict) else {}


def train_grace_ms(step_avg_ms: float | None) -> float:
    """Slack on the training cap: it is checked after each step, so the last step may run past it."""
    return max(TRAIN_GRACE_MS, 2 * (step_avg_ms or 0.0))


def check_time(f: Folder) -> None:
    claims = _claims(f)
    train_claim = claims.get("train_under_600s", claims.get("training_under_600s")) is True
    eval_claim = claims.get("eval_under_600s") is True
    timed = timed_track(f)
    for seed, (name, log) in sorted(f.logs.items()):
        grace = train_grace_ms(log.step_avg_ms)
        over_train = log.train_time_ms is not None and log.train_time_ms > TIME_CAP_MS + grace
        if over_train and (timed or train_claim):
            f.problem(f"{name}: training took {log.train_time_ms / 1000:.3f} s > 600 s (+{grace / 1000:.3f} s grace){_claimed(train_claim)}")
        over_eval = log.eval_time_ms is not None and log.eval_time_ms > TIME_CAP_MS
        if over_eval and (timed or eval_claim):
            f.problem(f"{name}: eval passes took {log.eval_time_ms / 1000:.3f} s > 600 s{_claimed(eval_claim)}")


def _claimed(claim: bool) -> str:
    return " (submission.json's compliance block claims it is under)" if claim else ""


def check_compliance(f: Folder) -> None:
    claims = _claims(f)
    n = len(set(f.logs) | set(f.declared))  # a missing log is its own problem
    if claims.get("three_seeds") is True and n < 3:
        f.problem(f"submission.json: compliance.three_seeds is true but the record has {n} seed{'s' if n != 1 else ''}")
    if claims.get("artifact_under_16mb") is True:
        over = [name for name, log in f.logs.values() if log.bytes_total is not None and log.bytes_total > SIZE_CAP]
        if over:
            f.problem(f"submission.json: compliance.artifact_under_16mb is true but {over[0]} is over the cap")
    if claims.get("score_first_eval") is True and f.sub.get("eval_method") == "slot_published":
        f.problem("submission.json: compliance.score_first_eval is true but eval_method slot_published fits on the scored targets")


# ----------------------------------------------------------------------------- helpers


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


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
