"""Read the numbers out of a Parameter Golf training log: upstream's two log families and ours.

Families (detected from the lines a log holds; every pattern is anchored at the start of a line,
so the source code that upstream logfiles embed never matches):

- ``pgolf``: our logs. A `==== pgolf stage: ... ====` header or one of our unique final labels
  (`final_roundtrip_exact`, `final_sliding_window_exact`, `final_slot_causal_exact`,
  `final_slot_published_exact`, `final_ttt_exact`, `final_lora_ttt_exact`, `final_phased_ttt_exact`,
  `pre_quant_post_ema_exact`: pgolf.rules).
  Step lines use the legacy format.
- ``legacy``: baseline, #414, #549, #1019, #1303, #1313 (`step:N/M train_loss:...` lines and
  `<label>_exact val_loss:F val_bpb:F` lines).
- ``newer``: the SP8192 lineage from April 2026 (`N/M train_loss: F train_time: Fm tok/s: N` and
  `<label> val_loss:F val_bpb:F eval_time:Nms` with labels such as `quantized_ttt`).

Which line is the claimed final score:

- pgolf: `final_score_exact` (the record stage and the shipped script print it, after
  `final_score_method:<method>`), else `final_slot_causal_exact`, `final_slot_published_exact` or
  `final_ttt_exact` when present, else `final_sliding_window_exact` (submission.json's `eval_method` says which). A log with neither
  has no final score (a roundtrip number is never claimed).
- legacy: `final_slot_exact` when present (#1303/#1313), else `legal_ttt_exact` (#549), else the
  LAST `final_*_exact` line. The last one matters: from #414 on the scripts print
  `final_int8_zlib_roundtrip_exact` again after the sliding eval, carrying the sliding-window
  numbers (again for the stride-64 pass when the stride differs), and #1303/#1313 do the same with
  `final_int6_roundtrip_exact` (three lines, three meanings). The last one is the claimed sliding
  score of #414-#1019; in #1303/#1313 none of them is the claim, `final_slot_exact` is.
- newer: the last `quantized_ttt*` or `quantized_sliding_window` line, else the last `quantized`
  line, else the last `diagnostic quantized` line (the artifact's score when no TTT pass ran;
  never a `diagnostic pre-quantization ...` line).

Labels printed more than once with different numbers are reported in `reused_labels`.

Other fields: `steps` is the largest step of any step line or the early-stop line;
`train_time_ms` comes from the early-stop line, else the last step line (the newer family prints
minutes with one decimal there, so its time is only good to 3 s without an early stop);
`step_avg_ms` is the last printed step average (newer family: train_time_ms / steps);
`bytes_total` is the last compressor-tagged `Total submission size <tag>: N bytes` line, else the
last untagged one (the baseline's untagged line counts the uncompressed model); `bytes_model` is
the last tagged `Serialized model <tag>: N bytes` (never the raw `Serialized model: N`); a log
without those lines may print both as `artifact: N bytes (model:M code:C)` (N the total) or
`artifact: M bytes  code: C bytes  total: N bytes`;
`bytes_code` is the last `Code size: N bytes`, or the newer family's `Code size (compressed)` when
logged (the counted size), else its `(uncompressed)` one; `eval_time_ms` is `total_eval_time`
when logged, else the sum of every eval pass on the quantized artifact (lines with `eval_time:`,
less the float model's pre-quantization diagnostics; a pass reprinted under another label with the
same numbers and time counts once).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from pgolf.errors import UserError
from pgolf.rules import FINAL_SCORE_LABEL, PRE_QUANT_LABEL, ROUNDTRIP_LABEL, method_label

NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf)"

# Our final labels (pgolf.rules), in the order a claim is looked for when no final_score line says.
PGOLF_FINAL = tuple(label.removesuffix("_exact") for label in (
    FINAL_SCORE_LABEL, *(method_label(m) for m in ("slot_causal", "slot_published", "ttt", "lora_ttt", "phased_ttt", "sliding_window"))))
PGOLF_LABELS = (ROUNDTRIP_LABEL.removesuffix("_exact"), PRE_QUANT_LABEL.removesuffix("_exact")) + PGOLF_FINAL

class _Lines:
    """A pattern of whole log lines (`^` at each line) and a literal that every match holds: a text
    without the literal is not scanned (a substring test costs a fraction of a regex scan)."""

    def __init__(self, literal: str, pattern: str):
        self.literal, self.re = literal, re.compile(pattern, re.M)

    def findall(self, text: str) -> list:
        return self.re.findall(text) if self.literal in text else []

    def search(self, text: str):
        return self.re.search(text) if self.literal in text else None


RE = {
    "stage_header": _Lines('==== pgolf stage: ', r"^==== pgolf stage: .* \(seed (\d+)\) ====$"),
    # `<label>_exact [key:value ...] val_loss:F val_bpb:F` (a few logs put `stride:64` in between)
    "exact": _Lines('_exact', rf"^(\w+)_exact(?: \w+:\S+)* val_loss:({NUM}) val_bpb:({NUM})\s*$"),
    "audit": _Lines('audit:', r"^(\w+) val_loss:\S+ val_bpb:\S+ .*\baudit:(\w+)"),
    "eval": _Lines('eval_time:', rf"^([A-Za-z][\w\- ]*?) val_loss:\s*({NUM}) val_bpb:\s*({NUM})(.*?) eval_time:\s*(\d+)ms"),
    "legacy_step": _Lines('step:', rf"^step:(\d+)/(\d+) (train_loss|val_loss):({NUM})(?: val_bpb:{NUM})? train_time:(\d+)ms step_avg:({NUM})ms"),
    "newer_train": _Lines(' tok/s: ', rf"^(\d+)/(\d+) train_loss: ({NUM}) train_time: ({NUM})m tok/s: (\d+)"),
    "newer_val": _Lines(' val_bpb: ', rf"^(\d+)/(\d+) val_loss: ({NUM}) val_bpb: ({NUM})\s*$"),
    "stop": _Lines('stopping_early: wallclock_cap', r"^stopping_early: wallclock_cap train_time:\s*(\d+)ms step:\s*(\d+)/(\d+)"),
    "seed": _Lines('seed:', r"^(?:seed:(\d+)|\s+seed: (\d+))\s*$"),
    "world_size": _Lines('world_size', r"^\s*world_size[:=]\s*(\d+)\s*$"),
    "params": _Lines('model_params:', r"^model_params:\s*(\d+)\s*$"),
    "peak": _Lines('peak memory ', r"^peak memory (?:allocated|rss): (\d+) MiB"),
    "code": _Lines('Code size', r"^Code size(?: \((\w+)\))?: (\d+) bytes"),
    "model": _Lines('Serialized model ', r"^Serialized model (\S+): (\d+) bytes"),
    "total": _Lines('Total submission size', r"^Total submission size(?: (\S+))?: (\d+) bytes"),
    # `artifact: N bytes (model:M code:C)` (N the total), or `artifact: M bytes  code: C bytes  total: N bytes` (M the model)
    "artifact": _Lines('artifact: ', r"^artifact: (\d+) bytes(?: \(model:(\d+) code:(\d+)\)|\s+code: (\d+) bytes\s+total: (\d+) bytes)?"),
    "total_eval": _Lines('total_eval_time:', rf"^total_eval_time:\s*({NUM})s"),
}


class LogParseError(UserError):
    """A log that cannot be read, or that lacks what was asked of it (one line, names the file)."""


@dataclass
class LogSummary:
    family: str
    final_label: str | None = None
    final_method: str | None = None  # ours: the eval behind final_score_exact
    final_kind: str | None = None  # what the final line is: quantized, sliding, ttt, slot (KINDS)
    final_audit: str | None = None  # ours: the causality audit's verdict printed with the final eval
    claim_source: str | None = None  # why this line: a family rule, or the number submission.json claims
    claim_line: int | None = None  # its line number in the log
    final_val_loss: float | None = None
    final_val_bpb: float | None = None
    steps: int | None = None
    step_avg_ms: float | None = None
    train_time_ms: float | None = None
    eval_time_ms: float | None = None
    model_params: int | None = None
    bytes_code: int | None = None
    bytes_code_compressed: int | None = None  # `Code size (compressed)`: the record counts its code lzma'd
    bytes_model: int | None = None
    bytes_total: int | None = None
    peak_mem_mib: int | None = None
    seed: int | None = None
    pre_quant_val_bpb: float | None = None
    sliding_val_bpb: float | None = None
    reused_labels: dict[str, int] = field(default_factory=dict)
    train_loss: list[list[float]] = field(default_factory=list)
    # Half a unit in the last printed digit of each number above: how far a correctly rounded
    # copy (in submission.json) may sit from it. Not part of the JSON output.
    tol: dict[str, float] = field(default_factory=dict, repr=False)
    lines: list["ScoreLine"] = field(default_factory=list, repr=False)  # every line carrying a val_bpb
    audits: dict[str, str] = field(default_factory=dict, repr=False)  # label -> audit verdict (ours)
    mentions: set = field(default_factory=set, repr=False)  # eval-method words the log's output (not its embedded code) uses
    world_size: int | None = field(default=None, repr=False)  # the GPUs the run states (`world_size: 8`)

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("tol", "lines", "audits", "mentions", "world_size"):
            d.pop(k)
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def half_unit(text: str) -> float:
    """0.5 in the last printed decimal place of `text` ('1.2345' -> 5e-5, '600' -> 0.5)."""
    if "." not in text or "e" in text.lower():
        return 0.5
    return 0.5 * 10.0 ** -len(text.split(".", 1)[1])


def detect_family(text: str) -> str:
    if RE["stage_header"].search(text) or any(label in PGOLF_LABELS for label, *_ in RE["exact"].findall(text)):
        return "pgolf"
    if RE["newer_train"].search(text) or re.search(r"^quantized\w* val_loss:", text, re.M):
        return "newer"
    if RE["legacy_step"].search(text) or RE["exact"].search(text):
        return "legacy"
    return "unknown"


def parse_text(text: str) -> LogSummary:
    """Everything `parse-log` reports, from a log's text. Missing numbers stay None."""
    s = LogSummary(family=detect_family(text))
    s.lines = score_lines(text)
    s.audits = dict(RE["audit"].findall(text))
    _final(s, text)
    if s.final_label is None:
        _final_generic(s)
    if s.final_label is not None and s.claim_source is None:
        s.claim_source = f"family rule ({s.family}): {final_rule(s.family)}"
        s.claim_line = next((ln.lineno for ln in reversed(s.lines) if ln.label == s.final_label and ln.val_bpb is not None
                             and float(ln.val_bpb) == s.final_val_bpb), None)
    if s.final_label is not None:
        s.final_kind = line_kind(s.final_label)
        s.final_audit = s.audits.get(s.final_label.removesuffix("_exact"))
        if s.final_label == "final_score_exact" and s.final_method:  # the audit is printed by the method's own line
            s.final_audit = s.audits.get(f"final_{s.final_method}")
    _training(s, text)
    _sizes(s, text)
    _evals(s, text)
    s.model_params = _last_int(RE["params"], text)
    s.peak_mem_mib = _last_int(RE["peak"], text)
    s.world_size = _last_int(RE["world_size"], text)
    s.seed = _seed(text)
    s.mentions = mentions(text)
    return s


METHOD_WORDS = ("ttt", "slot", "adapt", "test-time", "test_time", "ngram", "n-gram", "cache", "backoff", "mix", "phrase")
_CODE_LINE = re.compile(r"^(?:\s|@|(?:def|class|import|from|if|for|while|return|with|try|elif|else|except|assert|raise|print|log0?)\b)"
                        r"|os\.environ|;\s*\w+\s*=|^[\w.\[\]]+\s*[-+*/]?=\s*\S|:\s*$|\(.*\)\s*$")
_DISABLED = re.compile(r"\b(ttt|slot|ngram|n-gram|cache|backoff|mix|phrase)\w*?_?(?:enabled?|on|use)\s*[:=]\s*(?:false|0|none|off)\b", re.I)


def mentions(text: str) -> set:
    """Eval-method words in the log's output lines (never in the source code that upstream logs
    embed), less those an `<x>_enabled: False` line turns off."""
    words = [w for w in METHOD_WORDS if w in text.lower()]
    found: set = set()
    for ln in text.splitlines() if words else ():  # only a line holding a word not yet found is tested for code
        low = ln.lower()
        hits = {w for w in words if w not in found and w in low}
        if hits and ln.strip() and not _CODE_LINE.search(ln):
            found |= hits
            if len(found) == len(words):
                break
    off = {m.lower() for m in _DISABLED.findall(text)}
    return {w for w in found if w not in off}


def parse_file(path) -> LogSummary:
    p = Path(path)
    if not p.is_file():
        raise LogParseError(f"{path}: no such file" if not p.exists() else f"{path}: not a file")
    return parse_text(p.read_text(encoding="utf-8", errors="replace"))


def final_rule(family: str) -> str:
    """The claim rule in words, for error messages."""
    return {
        "pgolf": "looked for final_score_exact, final_slot_causal_exact, final_slot_published_exact, final_ttt_exact, final_lora_ttt_exact, final_phased_ttt_exact, final_sliding_window_exact",
        "newer": "looked for legal_ttt_exact, quantized_ttt*, quantized_sliding_window, quantized, diagnostic quantized lines",
    }.get(family, "looked for final_slot_exact, legal_ttt_exact, *ttt*_exact, final_*_exact, then any final score line")


def require_final(s: LogSummary, path) -> LogSummary:
    if s.final_label is None:
        raise LogParseError(f"{path}: no final score line ({final_rule(s.family)})")
    return s


# ----------------------------------------------------------------------------- pieces


def _exact_lines(text: str) -> list[tuple[str, str, str]]:
    return RE["exact"].findall(text)


def _eval_lines(text: str) -> list[tuple[str, str, str, str, str]]:
    return RE["eval"].findall(text)


def _final(s: LogSummary, text: str) -> None:
    exact = _exact_lines(text)
    seen: dict[str, set] = {}
    for label, loss, bpb in exact:
        seen.setdefault(label, set()).add((loss, bpb))
    s.reused_labels = {label: sum(1 for lb, *_ in exact if lb == label) for label, v in seen.items() if len(v) > 1}
    if s.family == "newer":
        _final_newer(s, text)
        return
    if s.family == "pgolf":
        wanted = [[e for e in exact if e[0] == label] for label in PGOLF_FINAL]
        candidates = next((w for w in wanted if w), [])
    else:
        candidates = (
            [e for e in exact if e[0] == "final_slot"]
            or [e for e in exact if e[0] == "legal_ttt"]
            or [e for e in exact if "ttt" in e[0] and line_kind(e[0]) == "ttt"]
            or [e for e in exact if e[0].startswith("final_")]
        )
    if candidates:
        label, loss, bpb = candidates[-1]
        _set_final(s, f"{label}_exact", loss, bpb)
    methods = re.findall(r"^final_score_method:(\w+)$", text, re.M)
    if s.family == "pgolf" and methods:
        s.final_method = methods[-1]
    for label, loss, bpb in exact:
        if s.sliding_val_bpb is None and label.endswith("sliding_window"):
            s.sliding_val_bpb, s.tol["sliding_val_bpb"] = float(bpb), half_unit(bpb)
    pre = [bpb for label, loss, bpb in exact if label == "pre_quant_post_ema"]
    pre = pre or [bpb for label, _, bpb, _, _ in _eval_lines(text) if label == "DIAGNOSTIC post_ema"]
    if pre:
        s.pre_quant_val_bpb, s.tol["pre_quant_val_bpb"] = float(pre[-1]), half_unit(pre[-1])


def _final_newer(s: LogSummary, text: str) -> None:
    evals = _eval_lines(text)
    legal = [e for e in _exact_lines(text) if e[0] == "legal_ttt"]
    scored = [e for e in evals if e[0].startswith("quantized_ttt") or e[0] == "quantized_sliding_window"]
    scored = scored or [e for e in evals if e[0] == "quantized"] or [e for e in evals if e[0] == "diagnostic quantized"]
    if legal:  # a later lineage prints its score-first TTT as legal_ttt_exact after the sliding pass
        label, loss, bpb = legal[-1]
        _set_final(s, f"{label}_exact", loss, bpb)
    elif scored:
        label, loss, bpb, _, _ = scored[-1]
        _set_final(s, label, loss, bpb)
    for label, loss, bpb, _, _ in evals:
        if label in ("pre-quantization post-ema", "diagnostic pre-quantization post-ema"):
            s.pre_quant_val_bpb, s.tol["pre_quant_val_bpb"] = float(bpb), half_unit(bpb)
        if label == "quantized_sliding_window":
            s.sliding_val_bpb, s.tol["sliding_val_bpb"] = float(bpb), half_unit(bpb)


def _set_final(s: LogSummary, label: str, loss: str | None, bpb: str) -> None:
    s.final_label, s.final_val_bpb = label, float(bpb)
    s.final_val_loss = float(loss) if loss is not None else None
    s.tol.update(final_val_bpb=half_unit(bpb))
    s.tol["final_val_loss"] = half_unit(loss) if loss is not None else 0.0


def _final_generic(s: LogSummary) -> None:
    """No family rule matched: the last line of the best kind (slot, ttt, sliding, quantized), an
    `_exact` line before a rounded one."""
    for kind in ("slot", "ttt", "sliding", "quantized"):
        found = [ln for ln in s.lines if ln.kind == kind]
        found = [ln for ln in found if ln.label.endswith("_exact")] or found
        if found:
            _set_final(s, found[-1].label, found[-1].val_loss, found[-1].val_bpb)
            s.claim_source = f"family rule ({s.family}): the last {kind} line"
            s.claim_line = found[-1].lineno
            return


# ----------------------------------------------------------------------------- claims

# What a line carrying a val_bpb is. Claim kinds score the quantized artifact; the others never
# are a record's score: training/eval progress, diagnostics, and the float model (pre-quantization).
CLAIM_KINDS = ("quantized", "sliding", "ttt", "slot", "summary")
NON_CLAIM_KINDS = ("progress", "diagnostic", "float")
_PROGRESS = re.compile(r"^(?:\[[^\]]*\]:?\s*)?(?:step[:\s]*\d|\d+\s*/\s*\d+|\d+ \d+/\d+)|chunk|search|snapshot|candidate|rank:|progress|running|batch|epoch|window \d|\d+/\d+", re.I)
_FLOAT = ("pre_quant", "pre-quant", "prequant", "post_ema", "post-ema", "float", "fp32", "bf16", "unquant", "post_swa",
          "post_average", "best_averaging", "ema:", "raw_model", "before_quant")
_LINE = re.compile(rf"^(?P<label>[^\n]*?)\bval_(?:loss|bpb)\s*[:=]\s*{NUM}[^\n]*$", re.M)
NO_ARTIFACT = re.compile(r"\bskip\w*(?:packag|quantiz|export|serializ)\w*\s*[:=]\s*(?:1|true)\b", re.I)
_BPB = re.compile(rf"\bval_bpb\s*[:=]\s*({NUM})\b")
_LOSS = re.compile(rf"\bval_loss\s*[:=]\s*({NUM})\b")


@dataclass(frozen=True)
class ScoreLine:
    label: str  # what precedes the numbers, e.g. `final_int6_sliding_window_exact`, `quantized_ttt_phased`
    kind: str  # one of CLAIM_KINDS or NON_CLAIM_KINDS
    val_loss: str | None  # as printed
    val_bpb: str
    lineno: int

    @property
    def claim(self) -> bool:
        return self.kind in CLAIM_KINDS


def line_kind(label: str) -> str:
    low = label.lower()
    if re.match(r"step:0/0\b", low):
        # Step 0 of 0: a process that trained nothing and scored a loaded model (an eval-only run).
        return "quantized"
    if low.startswith("diagnostic quantized"):
        # The newer family's eval of the shipped (quantized) artifact before TTT: a score of the
        # artifact under a diagnostic name, the final one when no TTT pass follows.
        return "quantized"
    if "diagnostic" in low:
        return "diagnostic"
    if any(w in low for w in _FLOAT):
        return "float"
    if _PROGRESS.search(low):
        return "progress"
    for kind, words in (("slot", ("slot",)), ("ttt", ("ttt",)), ("sliding", ("sliding", "stride"))):
        if any(w in low for w in words):
            return kind
    return "summary" if not low.strip(" :=|-") else "quantized"


def score_lines(text: str) -> list[ScoreLine]:
    """Every line that prints a val_bpb number, with its label and kind (source code never matches:
    its format strings hold `{...}`, not numbers)."""
    out = []
    lineno, last = 1, 0
    for m in _LINE.finditer(text):
        line = m.group(0)
        bpb = _BPB.search(line)
        if bpb is None:
            continue
        lineno += text.count("\n", last, m.start())
        last = m.start()
        loss = _LOSS.search(line)
        label = m.group("label").strip().rstrip(":=").strip()
        label = re.sub(r"^\d{9,}(?:\.\d+)?\s+", "", label)  # a leading unix timestamp (logs/train<N>.txt of #1530 and others)
        label = re.sub(r"(?: \w+:\S+)+$", "", label) if label.endswith("_exact") is False and " " in label and label.split()[0].endswith("_exact") else label
        # A line whose own fields say no artifact was packed (`skipped_packaging:1`) scores the float model.
        kind = "float" if NO_ARTIFACT.search(line) else line_kind(label)
        out.append(ScoreLine(label, kind, loss.group(1) if loss else None, bpb.group(1), lineno))
    return out + free_text_lines(text)


# A free-text score line: `Quantized BPB (no XSA): 1.016586`, `final bpb = 1.2345` (never `val_bpb`,
# which _LINE reads; never code: a format string holds `{...}`, not a number).
_FREE = re.compile(r"^(?P<label>[A-Za-z][^\n:=]{0,60}?\bbpb\b[^\n:=0-9]{0,30})\s*[:=]\s*(?P<bpb>\d\.\d{3,})\s*$", re.M | re.I)


def free_text_lines(text: str) -> list[ScoreLine]:
    out = []
    for m in _FREE.finditer(text):
        label = m.group("label").strip()
        if "val_bpb" in label.lower():
            continue
        out.append(ScoreLine(label, line_kind(label), None, m.group("bpb"), text.count("\n", 0, m.start()) + 1))
    return out


def number_matches(claimed, printed: str) -> bool:
    """`claimed` (a JSON number) is `printed` (a log's text) to the precision either side gives:
    rounded, or cut off, at the JSON's last decimal; or within half a unit of the log's."""
    if not isinstance(claimed, (int, float)) or isinstance(claimed, bool):
        return False
    try:
        value = float(printed)
    except ValueError:
        return False
    if not math.isfinite(value) or not math.isfinite(claimed):
        return False
    text = repr(float(claimed))
    decimals = len(text.split(".", 1)[1]) if "." in text and "e" not in text else 8
    unit = 10.0 ** -decimals
    eps = 1e-9 * max(1.0, abs(value))
    if abs(claimed - value) <= max(unit / 2, half_unit(printed)) + eps:
        return True
    return abs(math.trunc(value / unit) * unit - claimed) <= eps  # cut off, not rounded


def find_claim(s: LogSummary, bpb, loss=None) -> ScoreLine | None:
    """The line of `s` that carries the claimed val_bpb (and val_loss, when both sides give one):
    a claim kind before a non-claim, then the closer number, then the later line."""
    found = [ln for ln in s.lines if number_matches(bpb, ln.val_bpb)]
    if loss is not None:
        found = [ln for ln in found if ln.val_loss is None or number_matches(loss, ln.val_loss)] or found
    if not found:
        return None
    return max(found, key=lambda ln: (ln.claim, ln.kind != "summary", ln.label.endswith("_exact") or len(ln.val_bpb) >= 9,
                                       -abs(float(ln.val_bpb) - bpb), ln.lineno))


def apply_claim(s: LogSummary, line: ScoreLine, source: str) -> None:
    """Make `line` the log's final score (the one submission.json claims)."""
    _set_final(s, line.label, line.val_loss, line.val_bpb)
    s.claim_source, s.claim_line = source, line.lineno
    s.final_kind = line.kind
    s.final_audit = s.audits.get(line.label.removesuffix("_exact"))
    s.final_method = s.final_method if line.label == "final_score_exact" else None


def _training(s: LogSummary, text: str) -> None:
    steps: list[int] = []
    legacy = RE["legacy_step"].findall(text)
    for step, _, kind, loss, ms, avg in legacy:
        steps.append(int(step))
        if kind == "train_loss":
            s.train_loss.append([int(step), float(loss)])
    if legacy:
        last = max(legacy, key=lambda m: int(m[0]))
        s.train_time_ms, s.step_avg_ms = float(last[4]), float(last[5])
        s.tol.update(train_time_ms=0.5, step_avg_ms=half_unit(last[5]))
    newer = RE["newer_train"].findall(text)
    for step, _, loss, minutes, _ in newer:
        steps.append(int(step))
        s.train_loss.append([int(step), float(loss)])
    if newer and not legacy:
        minutes = newer[-1][3]
        s.train_time_ms = float(minutes) * 60_000.0
        s.tol["train_time_ms"] = half_unit(minutes) * 60_000.0
    steps += [int(m[0]) for m in RE["newer_val"].findall(text)]
    stop = RE["stop"].findall(text)
    if stop:
        s.train_time_ms, s.tol["train_time_ms"] = float(stop[-1][0]), 0.5
        steps.append(int(stop[-1][1]))
    s.steps = max(steps) if steps else None
    if s.step_avg_ms is None and s.train_time_ms is not None and s.steps:
        s.step_avg_ms = round(s.train_time_ms / s.steps, 3)
        s.tol["step_avg_ms"] = s.tol["train_time_ms"] / s.steps + 0.0005


def _sizes(s: LogSummary, text: str) -> None:
    totals = RE["total"].findall(text)
    tagged = [n for tag, n in totals if tag]
    if totals:
        s.bytes_total = int(tagged[-1] if tagged else totals[-1][1])
    models = RE["model"].findall(text)
    if models:
        s.bytes_model = int(models[-1][1])
    artifacts = RE["artifact"].findall(text)
    if artifacts and not totals:  # the same sizes in one line
        n, model, _, _, total = artifacts[-1]
        s.bytes_total = int(total or n)
        if model or total:
            s.bytes_model = int(model or n)
    codes = RE["code"].findall(text)
    packed = [n for kind, n in codes if kind == "compressed"]
    if packed:
        s.bytes_code_compressed = int(packed[-1])
    counted = packed or [n for kind, n in codes if kind != "compressed"]
    if counted:
        s.bytes_code = int(counted[-1])


def _evals(s: LogSummary, text: str) -> None:
    total = RE["total_eval"].findall(text)
    if total:
        s.eval_time_ms = float(total[-1]) * 1000.0
        return
    # A pass printed twice (same numbers, same time) under another label is counted once.
    passes = {(loss, bpb, ms) for label, loss, bpb, _, ms in _eval_lines(text) if not _float_model_diagnostic(label)}
    s.eval_time_ms = float(sum(int(ms) for *_, ms in passes)) if passes else None


def _float_model_diagnostic(label: str) -> bool:
    """Evals of the float weights before quantization: not part of the scored eval."""
    low = label.lower()
    return any(w in low for w in ("post_ema", "post-ema", "pre_quant", "pre-quant", "prequant"))


def _last_int(pattern: _Lines, text: str) -> int | None:
    found = pattern.findall(text)
    return int(found[-1]) if found else None


def _seed(text: str) -> int | None:
    for a, b in RE["seed"].findall(text):
        return int(a or b)
    header = RE["stage_header"].search(text)
    return int(header.group(1)) if header else None
