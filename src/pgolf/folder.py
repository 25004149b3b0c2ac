"""What the checks of `pgolf validate` share: the report, the folder under review (its parsed
submission.json, claims and logs), a submission's per-seed claim, and small number helpers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pgolf.discover import code_files
from pgolf.logparse import LogSummary
from pgolf.rules import METHOD_LABELS

SCORE_KEYS = ("val_bpb", "mean_val_bpb", "val_bpb_mean", "mean_bpb")
# Per-seed score keys that are never the claim: the float model's, before quantization.
PASS_NOT_CLAIMED = ("pre", "float", "ema", "fp32", "bf16", "unquant")
# Our log labels for each eval method (submission.json `eval_method`).
METHOD_LABEL = METHOD_LABELS


@dataclass(frozen=True)
class Claim:
    """What submission.json claims for one seed, and where it says so.

    kind: ``row`` (a per-seed object, e.g. `seed_results[42]`), ``number`` (a bare per-seed number,
    e.g. `val_bpb_seeds[0]`) or ``top`` (a one-seed folder's top-level score)."""

    where: str  # `seed_results[42]`, `val_bpb_seeds[0]`, or the top-level key
    row: dict
    kind: str = "row"

    @property
    def bpb_name(self) -> str:
        """The row's key of the claimed score: `val_bpb`, else (a row that names each eval pass's
        score, e.g. `ttt_val_bpb` beside `quantized_val_bpb`) the last pass's: TTT or SLOT, then
        sliding, then the quantized artifact's; never the float model's (`prequant_val_bpb`)."""
        if "val_bpb" in self.row:
            return "val_bpb"
        for words in (("ttt", "slot"), ("sliding",), ("quant", "roundtrip", "final")):
            for key in self.row:
                low = key.lower()
                if low.endswith("val_bpb") and any(w in low for w in words) and not any(w in low for w in PASS_NOT_CLAIMED):
                    return key
        return "val_bpb"

    @property
    def bpb_key(self) -> str:
        """The JSON path of the claimed val_bpb, as messages name it."""
        return f"{self.where}.{self.bpb_name}" if self.kind == "row" else self.where

    @property
    def val_bpb(self):
        return self.row.get(self.bpb_name)

    @property
    def val_loss(self):
        loss = self.row.get(self.bpb_name.removesuffix("val_bpb") + "val_loss")
        return loss if is_number(loss) else None


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
    claims: dict[int, Claim] = field(default_factory=dict)  # seed -> what submission.json claims for it
    top_seed: int | None = None  # the top-level score is this seed's, not a mean
    unmatched: set = field(default_factory=set)  # seeds whose claim no log line carries (one problem each)
    logs: dict[int, tuple[str, LogSummary]] = field(default_factory=dict)  # seed -> (file name, summary)
    reruns: set = field(default_factory=set)  # seeds whose claim an eval-only rerun with the shipped code printed
    _code: list | None = field(default=None, repr=False)
    parsed: dict = field(default_factory=dict)  # every training or eval log of the folder (Path -> LogSummary), seeded or not
    track: object = None  # pgolf.track.Track, once inferred
    no_score: bool = False  # submission.json claims no val_bpb at all
    null_score_key: str | None = None  # the score key is there, but null

    def code(self) -> list[Path]:
        """`pgolf.discover.code_files` of the script (none without one), found once per folder: the
        size, score-first and byte-count checks all read it."""
        if self._code is None:
            self._code = code_files(self.script) if self.script is not None else []
        return self._code

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


    @property
    def sub_name(self) -> str:
        return self.sub_path.name if self.sub_path else "submission.json"

    def rel(self, p: Path) -> str:
        return str(p.relative_to(self.root))


# ----------------------------------------------------------------------------- number helpers


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def json_decimals(x) -> int:
    return max(0, -Decimal(repr(x)).as_tuple().exponent) if is_number(x) else 0


def json_tol(x, score: bool = False) -> float:
    """Half a unit in the last decimal of a JSON number; a score is taken to carry >= 4 decimals."""
    decimals = json_decimals(x)
    if score:
        decimals = max(decimals, 4)
    return 0.5 * 10.0 ** -decimals


def close(a: float, b: float, tol: float) -> bool:
    return abs(a - b) <= tol + 1e-9 * max(1.0, abs(a), abs(b))
