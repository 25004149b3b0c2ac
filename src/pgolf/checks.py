"""The checks of `pgolf validate` that judge numbers: files and submission.json, the README, each
seed's numbers against its log, means and std, bytes, and the size under the record's convention."""

from __future__ import annotations

import functools
import json
import math
import re
import statistics

from pgolf.claims import match_mean, seed_claims
from pgolf.discover import find_script, find_submission, script_source
from pgolf.folder import METHOD_LABEL, SCORE_KEYS, Folder, close, is_int, is_number, json_decimals, json_tol
from pgolf.logparse import LogSummary, number_matches
from pgolf.rules import SIZE_LIMIT_BYTES
from pgolf.size import CONVENTIONS
from pgolf.size import lzma_bytes as _lzma_bytes

CORE_TEXT = ("name", "author", "github_id", "date")


def check_files(f: Folder) -> None:
    f.script, notes = find_script(f.root)
    for n in notes:
        f.note(n)
    f.sub_path, notes = find_submission(f.root)
    for n in notes:
        f.note(n)


def check_submission(f: Folder) -> None:
    path = f.sub_path
    if path is None:
        f.no_score = True  # judged by check_claim_present, once the track and the logs are known
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
        f.no_score = not any(is_number(c.val_bpb) for c in seed_claims(sub).values())  # judged by check_claim_present
    elif score is None and not any(is_number(c.val_bpb) for c in seed_claims(sub).values()):
        f.no_score, f.null_score_key = True, key  # null: no claim; judged by check_claim_present
    elif not is_number(score):
        f.problem(f"{name}: {key} is not a number ({score!r})")
    elif key != "val_bpb":
        f.note(f"{name}: no top-level val_bpb; the score is read from {key}")
    for key in ("val_loss", "mean_val_loss", "val_bpb_std", "std_val_bpb", "val_loss_std"):
        if key in sub and sub[key] is not None and not is_number(sub[key]):
            f.problem(f"{name}: {key} is not a number ({sub[key]!r})")
    for key in ("bytes_total", "bytes_code"):
        if key in sub and sub[key] is not None and not is_int(sub[key]):
            f.problem(f"{name}: {key} is not an integer ({sub[key]!r})")
    if "seed_results" in sub and not isinstance(sub["seed_results"], (dict, list)):
        f.problem(f"{name}: seed_results is not an object")



def check_readme(f: Folder) -> None:
    """A README is what a reviewer reads first; pgolf always writes one, so ours must have it."""
    if not (f.root / "README.md").is_file():
        f.flag("README.md: missing")



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
        claim = f.claims.get(seed)
        if claim is not None and claim.kind == "row":
            _check_seed_row(f, seed, claim.row, name, log, claim.where)
    claimed = {s: log for s, (_, log) in f.logs.items() if log.final_label is not None}
    if claimed and not any(c.kind == "row" for c in f.claims.values()):
        match_mean(f, claimed)
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



def _check_seed_row(f: Folder, seed: int, row: dict, name: str, log: LogSummary, where: str) -> None:
    where = f"{f.sub_name} {where}"
    for keys, attr, scale in SEED_FIELDS:
        key = next((k for k in keys if k in row), None)
        logged = getattr(log, attr)
        if key is None or logged is None or row[key] is None or (seed in f.unmatched and attr in ("final_val_bpb", "final_val_loss")):
            continue
        if not is_number(row[key]):
            f.problem(f"{where}.{key} is not a number ({row[key]!r})")
            continue
        value = float(row[key]) * scale
        claimed = attr in ("final_val_bpb", "final_val_loss")  # matched to the JSON's own precision
        tol = log.tol.get(attr, 0.0) + json_tol(row[key], score=attr in SCORE_FIELDS and not claimed) * scale
        if claimed and json_decimals(row[key]) < 4 and close(value, logged, tol):
            f.note(f"{where}.{key} = {row[key]} is {name}'s {logged:.8g} rounded to {json_decimals(row[key])} decimals")
        if claimed and not close(value, logged, tol) and number_matches(row[key], repr(logged)):
            continue  # cut off at the JSON's last decimal rather than rounded: the claim matching accepts it
        if attr == "final_val_loss" and not close(value, logged, tol) and close(value, logged, tol + 2 * json_tol(row[key])):
            # val_bpb is the claim; a val_loss one unit off in its last decimal is a rounding slip.
            f.note(f"{where}.{key} = {row[key]} but {name} says {logged:.8g}: one unit off in the last decimal")
            continue
        if not close(value, logged, tol):
            (f.problem if claimed else f.flag)(f"{where}.{key} = {row[key]} but {name} says {logged / scale:.8g}")
    if "steps" in row and log.steps is not None and row["steps"] != log.steps:
        f.flag(f"{where}.steps = {row['steps']!r} but {name} says {log.steps}")
    if "artifact_bytes" in row and log.bytes_total is not None and row["artifact_bytes"] not in (log.bytes_total, log.bytes_model):
        f.flag(f"{where}.artifact_bytes = {row['artifact_bytes']!r} but {name} says Total submission size {log.bytes_total} bytes")
    if log.family == "pgolf" and "eval_time_s" in row and log.eval_time_ms is not None and is_number(row["eval_time_s"]):
        if not close(float(row["eval_time_s"]) * 1000.0, log.eval_time_ms, 0.5 + json_tol(row["eval_time_s"]) * 1000.0):
            f.problem(f"{where}.eval_time_s = {row['eval_time_s']} but {name}'s eval passes add up to {log.eval_time_ms / 1000:.3f} s")


# A stated mean this close to the mean of the logged seeds differs by how it was rounded or summed
# (e.g. from unrounded per-seed numbers), not by what it claims: a note.
MEAN_SLIP = 1e-5


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
        if is_number(value) and f.top_seed is None:
            mean = statistics.fmean(values)
            # The mean of the rounded per-seed claims is as good as the mean of the logged numbers.
            rows = [f.claims[s].row.get(attr.removeprefix("final_")) for s in seeds if s in f.claims]
            of_rows = statistics.fmean(rows) if rows and len(rows) == len(seeds) and all(is_number(r) for r in rows) else mean
            unit = 2 * json_tol(value, score=True)
            if not (close(float(value), mean, tol + unit) or close(float(value), of_rows, unit)) and close(float(value), mean, MEAN_SLIP):
                f.note(f"{f.sub_name}: {key} = {value} but the mean of {listed} is {mean:.8f}: apart by less than {MEAN_SLIP} (a rounding slip)")
            elif not (close(float(value), mean, tol + unit) or close(float(value), of_rows, unit)) and attr == "final_val_bpb" and value > mean and (
                    label := _worse_pass_mean(claimed, float(value), unit)):
                f.note(f"{f.sub_name}: {key} = {value} is the mean of the seeds' {label} lines, not of the per-seed claims ({mean:.8f}): "
                       f"a worse pass's mean, it overstates nothing")
            elif not (close(float(value), mean, tol + unit) or close(float(value), of_rows, unit)):
                (f.problem if attr == "final_val_bpb" else f.flag)(f"{f.sub_name}: {key} = {value} but the mean of {listed} is {mean:.8f}")
        key, value = f.get(*std_keys)
        if is_number(value) and len(values) > 1:
            sample, population = statistics.stdev(values), statistics.pstdev(values)
            slack = 2 * tol + json_tol(value, score=True)
            if not (close(float(value), sample, slack) or close(float(value), population, slack)):
                f.flag(f"{f.sub_name}: {key} = {value} but the logged seeds' std is {sample:.8f}")


def _worse_pass_mean(claimed: dict[int, LogSummary], value: float, unit: float) -> str | None:
    """The label of an artifact-scoring pass (a claim kind) printed once in every seed's log whose
    mean is `value`: a headline taken from another pass than the per-seed claims."""
    per_label: dict[str, list[float]] = {}
    for log in claimed.values():
        seen = {}
        for ln in log.lines:
            if ln.claim:
                seen[ln.label] = float(ln.val_bpb)
        for label, bpb in seen.items():
            per_label.setdefault(label, []).append(bpb)
    for label, values in per_label.items():
        if len(values) == len(claimed) and close(value, statistics.fmean(values), unit + 5e-9):
            return label
    return None


def _check_bytes(f: Folder) -> None:
    totals = {s: log.bytes_total for s, (_, log) in f.logs.items() if log.bytes_total is not None}
    value = f.sub.get("bytes_total")
    if is_int(value) and totals and value not in totals.values():
        f.flag(f"submission.json: bytes_total = {value} but the logs say {sorted(set(totals.values()))}")


def _check_code_bytes(f: Folder) -> None:
    code = f.sub.get("bytes_code")
    for seed, (name, log) in sorted(f.logs.items()):
        if is_int(code) and log.bytes_code is not None and code != log.bytes_code:
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
    if is_number(t) and t_logged is not None and not math.isclose(float(t), t_logged, rel_tol=1e-3, abs_tol=1e-6):
        f.problem(f"submission.json: significance.t_statistic = {t} but the logged losses give {t_logged}")



# ----------------------------------------------------------------------------- 5-7: size, time, claims


def size_convention(f: Folder) -> str:
    """The record's own: `code_size_convention` in submission.json (ours), else `lzma` when its logs
    state a compressed code size (the frontier's) or its script is a self-extracting wrapper, else `raw`."""
    stated = f.sub.get("code_size_convention") if f.sub else None
    if stated in CONVENTIONS:
        return stated
    if any(log.bytes_code_compressed is not None for _, log in f.logs.values()):
        return "lzma"
    if _logs_count_packed_code(f):
        return "lzma"
    return "lzma" if f.script is not None and script_source(f.script)[1] else "raw"


@functools.lru_cache(maxsize=32)
def lzma_bytes(code: bytes) -> int:
    """lzma -9e size of `code`, kept for the convention test and the size check (~0.1 s a script)."""
    return _lzma_bytes(code)


def _logs_count_packed_code(f: Folder) -> bool:
    """A log whose plain `Code size: N` is at most half the shipped script and about what lzma
    makes of it (0.8x to 1.5x) counted the code compressed: the run shipped a packed script and
    the folder its source. That N is the log's compressed code size (the lzma convention)."""
    if f.script is None:
        return False
    shipped = f.script.stat().st_size
    logs = [log for _, log in f.logs.values() if log.bytes_code_compressed is None and log.bytes_code is not None and 2 * log.bytes_code <= shipped]
    if not logs:
        return False
    packed = lzma_bytes(f.script.read_bytes())
    found = False
    for log in logs:
        if 0.8 * packed <= log.bytes_code <= 1.5 * packed:
            log.bytes_code_compressed = log.bytes_code
            found = True
    return found


def check_size(f: Folder) -> None:
    convention = f.report.size_convention = size_convention(f)
    value = f.sub.get("bytes_total") if f.sub else None
    if is_int(value) and value > SIZE_LIMIT_BYTES:
        f.problem(f"{f.sub_name}: bytes_total {value} > cap {SIZE_LIMIT_BYTES}")
    shipped = packed = None
    extra_raw = extra_packed = 0
    if f.script is not None:
        code = f.script.read_bytes()
        wrapper = f.root / "train_gpt.py"
        extra = wrapper.stat().st_size if f.script != wrapper and wrapper.is_file() else 0
        shipped = len(code) + extra
        packed = lzma_bytes(code) + extra if convention == "lzma" else None  # costs ~0.1 s: only when counted
        # Every other file the script imports, reads or execs ships too (#29 item 5).
        others = [p for p in f.code() if p not in (f.script, wrapper)]
        if others:
            extra_raw = sum(p.stat().st_size for p in others)
            extra_packed = sum(lzma_bytes(p.read_bytes()) for p in others) if convention == "lzma" else 0
            f.note(f"{f.script.name} imports, reads or execs {', '.join(f.rel(p) for p in others)}: "
                   f"{extra_packed if convention == 'lzma' else extra_raw} more code bytes counted ({convention} convention)")
    script = f.script.name if f.script else "train_gpt.py"
    for seed, (name, log) in sorted(f.logs.items()):
        model = log.bytes_model
        if convention == "lzma" and log.bytes_code_compressed is not None and seed not in f.reruns:
            # (an eval-only rerun of the seed's model printed the claim: it ran the shipped code,
            # not the code whose size the training log states)
            counted, how = log.bytes_code_compressed + extra_packed, f"{name}'s Code size (compressed)"
            if packed is not None and abs(packed - counted) > 0 and seed == min(f.logs):
                f.note(f"{script}: lzma -9e of the shipped code is {packed} bytes; {name} states {log.bytes_code_compressed} compressed (its own packing)")
        elif convention == "lzma":
            counted, how = None if packed is None else packed + extra_packed, f"{script} lzma -9e"
        else:
            counted, how = None if shipped is None else shipped + extra_raw, f"{script} as shipped"
        if extra_raw:
            how += " and the files it imports"
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

