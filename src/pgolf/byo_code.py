"""Bring-your-own-script mode: which files are a record's code, and how many bytes they count for.

A record's `train_gpt.py` may run code from sibling files (a 74-byte wrapper that execs
`train_gpt_decode.py`, a module it imports): `code_files` follows the script's text to every
`.py` file of its folder that it names or imports, and those files are copied and counted.

How the code counts against the cap is the record's own convention (`byo.code_size`):

- `raw`: the files' bytes as shipped;
- `lzma`: each file's bytes after `lzma -9e` (pgolf.rules.lzma_code_bytes);
- `brotli_b85`: the April frontier's (2026-04-27 1.0611, 2026-04-29 1.06141): the script is
  minified with `pyminify` when that command exists (else left as is), brotli-compressed at
  quality 11, base85-encoded and wrapped in a two-line self-extracting `exec`; the count is the
  wrapper's length. Recomputed here the same way, so it matches a log written on this machine;
- `log`: the `Code size (compressed)` line of the run's own log, taken as stated and said so
  (for a packing this module cannot redo);
- `auto`: from the log: `raw` when it states no compressed code size, else the first of
  `brotli_b85`, `lzma` whose recomputation gives the stated number, else `log`.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

from pgolf.rules import lzma_code_bytes

CONVENTIONS = ("auto", "raw", "lzma", "brotli_b85", "log")
# pyminify's options as the frontier scripts pass them (their _compressed_code_size).
PYMINIFY_ARGS = ("--no-rename-locals", "--no-hoist-literals", "--remove-literal-statements", "--remove-asserts", "--prefer-single-line", "-")
B85_HEAD = b'import brotli as B,base64 as b\nexec(B.decompress(b.b85decode("'
B85_TAIL = b'")))\n'


class CodeSizeError(ValueError):
    """The code's size cannot be counted as asked; one line."""


def _mentions(text: str, sibling: Path) -> bool:
    if sibling.name in text:
        return True
    stem = re.escape(sibling.stem)
    return re.search(rf"^\s*(?:import\s+{stem}\b|from\s+{stem}\s+import\b)", text, re.M) is not None


def code_files(script) -> list[Path]:
    """The script, then every `.py` file of its folder it names or imports (followed transitively), in that order."""
    script = Path(script)
    siblings = sorted(p for p in script.parent.glob("*.py") if p.is_file() and p.name != script.name)
    found, queue = [script], [script]
    while queue:
        text = queue.pop(0).read_text(encoding="utf-8", errors="replace")
        for sib in siblings:
            if sib not in found and _mentions(text, sib):
                found.append(sib)
                queue.append(sib)
    return found


def brotli_b85_bytes(code: bytes) -> tuple[int, bool]:
    """The frontier's self-extracting wrapper length for `code`, and whether pyminify ran."""
    import brotli

    minified, used = code, False
    if shutil.which("pyminify"):
        done = subprocess.run(["pyminify", *PYMINIFY_ARGS], input=code, capture_output=True)
        if done.returncode == 0:
            minified, used = done.stdout, True
    packed = base64.b85encode(brotli.compress(minified, quality=11))
    return len(B85_HEAD) + len(packed) + len(B85_TAIL), used


def _recompute(files: list[Path], convention: str) -> tuple[int, str]:
    data = [p.read_bytes() for p in files]
    if convention == "raw":
        return sum(len(d) for d in data), "the files' bytes"
    if convention == "lzma":
        return sum(lzma_code_bytes(d) for d in data), "lzma -9e of each file"
    # brotli_b85 packs the main script (what its own serializer reads: __file__); siblings count raw.
    n, minified = brotli_b85_bytes(data[0])
    how = f"pyminify + brotli-11 + base85 wrapper of {files[0].name}" if minified else f"brotli-11 + base85 wrapper of {files[0].name} (no pyminify on PATH)"
    return n + sum(len(d) for d in data[1:]), how


def count_code(files, convention: str, logged_compressed: int | None) -> dict:
    """{"convention", "bytes", "how", "raw_bytes"}: the code's bytes under `convention` (see the module doc).

    `logged_compressed` is the run log's `Code size (compressed)` (None when it states none).
    """
    files = [Path(p) for p in files]
    if convention not in CONVENTIONS:
        raise CodeSizeError(f"byo.code_size {convention!r}: expected one of {', '.join(CONVENTIONS)}")
    raw = sum(p.stat().st_size for p in files)
    if convention == "auto":
        if logged_compressed is None:
            convention = "raw"
        else:
            for candidate in ("brotli_b85", "lzma"):
                n, how = _recompute(files, candidate)
                if n == logged_compressed:
                    return {"convention": candidate, "bytes": n, "how": f"{how} (inferred: equals the log's Code size (compressed))", "raw_bytes": raw}
            convention = "log"
    if convention == "log":
        if logged_compressed is None:
            raise CodeSizeError("byo.code_size log: the log states no `Code size (compressed)` line")
        return {"convention": "log", "bytes": logged_compressed, "how": "taken from the log's Code size (compressed), not recomputed", "raw_bytes": raw}
    n, how = _recompute(files, convention)
    return {"convention": convention, "bytes": n, "how": how, "raw_bytes": raw}
