"""Which track a folder is on, and the checks that depend on it: time limits and the compliance
block's claims."""

from __future__ import annotations

import re
from dataclasses import dataclass

from pgolf.folder import Folder
from pgolf.rules import MAX_EVAL_SECONDS, MAX_TRAIN_SECONDS, SIZE_LIMIT_BYTES, train_grace_ms


NON_RECORD = re.compile(r"non[-_ ]?record|unlimited[-_ ]compute|not (?:claimed as |submitted as |intended as )?an? (?:official )?(?:leaderboard )?record", re.I)
RECORD = re.compile(r"10[-_ ]?min|track_10min|record", re.I)
README_NON_RECORD = re.compile(r"\bnon[-_ ]?record\b|\bunlimited[- ]compute\b|not (?:a|an official) (?:leaderboard )?record\b|no (?:new )?score is claimed|claims? no (?:leaderboard )?score"
                               r"|(?:prevents?|keeps?) (?:this|it) from being an? (?:leaderboard )?record\b", re.I)
# Past a README's opening lines, "non-record" is often said of other submissions (a table of
# earlier runs, "A non-record baseline submission trained ... for 4 hours"): there it counts only
# in a sentence about the folder itself ("This is a non-record submission", "Track: non-record").
README_OPENING = 15
SELF = re.compile(r"\b(?:this|our|my|we|here|it|track|category|status)\b", re.I)


def _about_itself(before: str) -> bool:
    """Whether the sentence that ends in `before` (a line's text up to the end of the statement)
    speaks of the folder."""
    sentence = re.split(r"[.!?]\s", before)[-1]
    return bool(SELF.search(sentence) or re.search(r"\bI\b", sentence))


SUB_KEYS = ("track", "category", "submission_type", "type", "record_type", "status", "submission_track")


@dataclass(frozen=True)
class Track:
    """The folder's track: ``record`` (the 10-minute limits apply) or ``non_record``, and why."""

    name: str
    why: str
    stated: bool  # said by the folder's path or submission.json's track key, not inferred

    @property
    def record(self) -> bool:
        return self.name == "record"


def infer_track(f: Folder) -> Track:
    """The track from, in order: the folder's parent (`track_10min_16mb`, `track_non_record_16mb`);
    a non-record statement anywhere (submission.json's track and keys like it, a `non_record` flag,
    its name or blurb, the README: a folder that says it is non-record is judged as one even when
    its track key says 10min); submission.json's track; else the 10-minute record track."""
    parent = f.root.parent.name
    if parent.startswith("track_"):
        return Track("non_record" if NON_RECORD.search(parent) else "record", f"the folder is in {parent}/", True)
    sub = f.sub or {}
    track = sub.get("track")
    for key in SUB_KEYS + ("name", "title", "blurb", "description"):
        value = sub.get(key)
        if isinstance(value, str) and NON_RECORD.search(value):
            return Track("non_record", f"{f.sub_name} {key} {_quote(value, NON_RECORD)}", key == "track")
    for key in ("non_record", "is_non_record"):
        if sub.get(key) is True:
            return Track("non_record", f"{f.sub_name} {key}: true", False)
    if sub.get("record") is False or sub.get("is_record") is False:
        return Track("non_record", f"{f.sub_name} says it is not a record", False)
    readme = f.root / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8", errors="replace")[:30_000]
        for m in README_NON_RECORD.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            if line <= README_OPENING or _about_itself(text[text.rfind("\n", 0, m.start()) + 1:m.end()]):
                return Track("non_record", f"README.md:{line} says {m.group(0)!r}", False)
    if isinstance(track, str) and track.strip():
        return Track("record", f"{f.sub_name} track {track!r}", True)
    return Track("record", "nothing says non-record", False)


def _quote(value: str, pattern: re.Pattern) -> str:
    m = pattern.search(value)
    start = max(0, m.start() - 30)
    return repr(value[start:m.end() + 30])


def check_track(f: Folder) -> None:
    """Infers the track (before the logs are read: a record needs its evidence) and states an
    inference that no path or track key made."""
    f.track = infer_track(f)
    if not f.track.stated:
        rule = "the 10-minute limits apply" if f.track.record else "no time limits"
        f.note(f"track: {f.track.name.replace('_', '-')} (inferred: {f.track.why}; {rule})")


HARDWARE = re.compile(r"\b(\d+)\s*[x×]\s*(?:NVIDIA\s+)?(?:H100|H200|A100|A10G?|A40|A6000|L40S?|L4|V100|T4|RTX|GPU)", re.I)


def check_track_hardware(f: Folder) -> None:
    """Once the logs are read: a README's non-record statement that names other hardware than every
    claimed log states (`Unlimited Compute (1xH100 ...)` beside 8-GPU logs) describes another run;
    submission.json's record track stands for the claimed one."""
    track = (f.sub or {}).get("track")
    if f.track is None or f.track.record or f.track.stated or not f.track.why.startswith("README.md:") or not f.logs:
        return
    if not (isinstance(track, str) and RECORD.search(track) and not NON_RECORD.search(track)):
        return
    lineno = int(f.track.why.split(":")[1].split()[0])
    line = (f.root / "README.md").read_text(encoding="utf-8", errors="replace").splitlines()[lineno - 1]
    hw = HARDWARE.search(line)  # the first named is the run's ("1xH100 ..., not eligible for the 8xH100 track")
    gpus = {log.world_size for _, log in f.logs.values()}
    if hw and None not in gpus and len(gpus) == 1 and int(hw.group(1)) not in gpus:
        f.track = Track("record", f"{f.sub_name} track {track!r}; README.md:{lineno} says non-record of a {hw.group(0)} run, "
                                  f"the claimed logs state world_size {gpus.pop()}", True)
        f.note(f"track: record ({f.track.why}: the README describes another run; the 10-minute limits apply)")


def timed_track(f: Folder) -> bool:
    return f.track is None or f.track.record


def non_record(f: Folder) -> bool:
    return f.track is not None and not f.track.record


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
            (f.problem if timed else f.flag)(f"{name}: training took {log.train_time_ms / 1000:.3f} s > {MAX_TRAIN_SECONDS:g} s (+{grace / 1000:.3f} s grace){_claimed(train_claim)}")
        over_eval = log.eval_time_ms is not None and log.eval_time_ms > 1000 * MAX_EVAL_SECONDS
        if over_eval and (timed or eval_claim):
            (f.problem if timed else f.flag)(f"{name}: eval passes took {log.eval_time_ms / 1000:.3f} s > {MAX_EVAL_SECONDS:g} s{_claimed(eval_claim)}")


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
            f.problem(f"{f.sub_name}: compliance.score_first_eval is true but {name}'s {log.final_label.removesuffix('_exact')} line says audit:fail")

