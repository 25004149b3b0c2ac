"""`pgolf audit-bpb`: does a record count the bytes of bits-per-byte right?

The record's own byte-counting function (the `build_sentencepiece_luts` family: per-token byte
count, leading-space flag, boundary flag) is run on the validation tokens and its byte total is
compared with the exact UTF-8 byte count of the decoded text. Upstream closed pull requests for
exactly this bug (the leading space counted twice): a total that is too large makes bpb too small.

It RUNS CODE FROM THE FOLDER UNDER REVIEW, so it is never part of plain `pgolf validate`, and it
runs in a child process (`bpb_audit_child.py`) with a stripped environment (no tokens, keys or
credentials: only PATH, HOME set to a scratch folder, and the locale), without network where
`unshare -rn` works, and under a time limit. See docs/validate.md for what this does not protect.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pgolf.discover import find_script, script_source
from pgolf.errors import UserError

TOLERANCE = 0.001  # 0.1%: more than rounding, less than one leading space in a thousand bytes
CHILD = Path(__file__).with_name("bpb_audit_child.py")


class AuditError(UserError):
    """The audit could not run (bad arguments, the record's code failed, time limit): one line."""


@dataclass
class AuditResult:
    record: str
    function: str
    tokens: int
    lut_bytes: int
    exact_bytes: int

    @property
    def off(self) -> float:
        return (self.lut_bytes - self.exact_bytes) / max(self.exact_bytes, 1)

    @property
    def ok(self) -> bool:
        return abs(self.off) <= TOLERANCE

    def line(self) -> str:
        what = (f"{self.function} counts {self.lut_bytes} bytes on {self.tokens} validation tokens; "
                f"the decoded text has {self.exact_bytes} UTF-8 bytes ({100 * self.off:+.3f}%)")
        return f"ok: {self.record}: {what}" if self.ok else f"{self.record}: {what}: more than {100 * TOLERANCE:g}% off, bpb is wrong by as much"


def _no_network_prefix() -> list[str]:
    """`unshare -rn` (a new user and network namespace: no network) where the platform allows it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    try:
        ok = subprocess.run([unshare, "-rn", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [unshare, "-rn"] if ok else []


def audit(record, tokenizer, val, timeout: float = 300.0, max_tokens: int | None = None) -> AuditResult:
    root, tok, val_dir = Path(record), Path(tokenizer), Path(val)
    if not root.is_dir():
        raise AuditError(f"{record}: not a folder")
    if not tok.is_file():
        raise AuditError(f"{tokenizer}: no such tokenizer model")
    if not val_dir.is_dir():
        raise AuditError(f"{val}: not a folder of validation shards")
    script, _ = find_script(root)
    if script is None:
        raise AuditError(f"{record}: no train_gpt.py (or train_gpt*.py) to take the byte-counting function from")
    with tempfile.TemporaryDirectory(prefix="pgolf-audit-bpb-") as scratch:
        source = Path(scratch) / "source.py"
        source.write_text(script_source(script)[0], encoding="utf-8")
        request = Path(scratch) / "request.json"
        request.write_text(json.dumps({"script": str(script.resolve()), "source": str(source), "tokenizer": str(tok.resolve()),
                                       "val": str(val_dir.resolve()), "max_tokens": max_tokens}))
        env = {"PATH": "/usr/bin:/bin", "HOME": scratch, "LANG": "C.UTF-8", "CUDA_VISIBLE_DEVICES": ""}
        command = [*_no_network_prefix(), sys.executable, "-I", str(CHILD), str(request)]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=scratch)
        except subprocess.TimeoutExpired:
            raise AuditError(f"{record}: the byte-counting audit ran past its {timeout:g} s limit") from None
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or run.stdout.strip().splitlines() or ["no output"])[-1]
        raise AuditError(f"{record}: the record's byte-counting code failed: {last}")
    try:
        out = json.loads(run.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise AuditError(f"{record}: the audit printed no result") from None
    return AuditResult(str(record), out["function"], out["tokens"], out["lut_bytes"], out["exact_bytes"])
