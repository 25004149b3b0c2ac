"""Bring-your-own-script mode: which files are a record's code, and how many bytes they count for.

A record's `train_gpt.py` may run code from sibling files (a 74-byte wrapper that execs
`train_gpt_decode.py`, a module it imports): `code_files` follows the script's text to every
`.py` file of its folder that it names or imports, and those files are copied and counted.

How the code counts against the cap is the record's own convention (`byo.code_size`):

- `raw`: the files' bytes as shipped;
- `lzma`: each file's bytes after `lzma -9e` (pgolf.rules.lzma_code_bytes);
- `brotli_b85`: the 2026-04-27 1.0611 record's: the script is minified with `pyminify` when that
  command exists (else left as is), brotli-compressed at quality 11, base85-encoded and wrapped
  in a two-line self-extracting `exec`; the count is the wrapper's length;
- `lzma_b85`: the 2026-04-29 1.06141 record's: `pyminify` (required: that script stops without
  it) with fewer options, `lzma.compress` at its default preset, base85, an lzma `exec` wrapper.
  Both are recomputed here the same way, so they match a log written on this machine;
- `log`: the `Code size (compressed)` line of the run's own log, taken as stated and said so
  (for a packing this module cannot redo);
- `auto`: from the log: `raw` when it states no compressed code size, else the first of
  `brotli_b85`, `lzma_b85`, `lzma` whose recomputation gives the stated number, else `log`.
"""

from __future__ import annotations

import base64
import lzma
import re
import shutil
import subprocess
from pathlib import Path

from pgolf.rules import lzma_code_bytes
from pgolf.errors import UserError

CONVENTIONS = ("auto", "raw", "lzma", "brotli_b85", "lzma_b85", "log")
PACKED = ("brotli_b85", "lzma_b85")
# How each frontier script packs its code (its _compressed_code_size): pyminify's options, whether
# a missing pyminify is tolerated, and the self-extracting wrapper around the base85 text.
MINIFY_KEEP = ("--no-rename-locals", "--no-hoist-literals", "--remove-literal-statements")
PACKINGS = {
    "brotli_b85": {"minify": (*MINIFY_KEEP, "--remove-asserts", "--prefer-single-line", "-"), "minify_optional": True,
                   "head": b'import brotli as B,base64 as b\nexec(B.decompress(b.b85decode("', "tail": b'")))\n'},
    "lzma_b85": {"minify": (*MINIFY_KEEP, "-"), "minify_optional": False,
                 "head": b'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("', "tail": b'")))\n'},
}


class CodeSizeError(UserError):
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


def packed_bytes(code: bytes, convention: str) -> tuple[int, bool]:
    """The self-extracting wrapper's length for `code` under a frontier packing, and whether pyminify ran."""
    packing = PACKINGS[convention]
    minified, used = code, False
    if shutil.which("pyminify"):
        done = subprocess.run(["pyminify", *packing["minify"]], input=code, capture_output=True)
        if done.returncode == 0:
            minified, used = done.stdout, True
        elif not packing["minify_optional"]:
            raise CodeSizeError(f"byo.code_size {convention}: pyminify failed (status {done.returncode})")
    elif not packing["minify_optional"]:
        raise CodeSizeError(f"byo.code_size {convention}: needs pyminify on PATH (pip install python-minifier), as the script does")
    if convention == "brotli_b85":
        import brotli

        compressed = brotli.compress(minified, quality=11)
    else:
        compressed = lzma.compress(minified)
    return len(packing["head"]) + len(base64.b85encode(compressed)) + len(packing["tail"]), used


def brotli_b85_bytes(code: bytes) -> tuple[int, bool]:
    return packed_bytes(code, "brotli_b85")


def _recompute(files: list[Path], convention: str) -> tuple[int, str]:
    data = [p.read_bytes() for p in files]
    if convention == "raw":
        return sum(len(d) for d in data), "the files' bytes"
    if convention == "lzma":
        return sum(lzma_code_bytes(d) for d in data), "lzma -9e of each file"
    # A packing covers the main script (what its own serializer reads: __file__); siblings count raw.
    n, minified = packed_bytes(data[0], convention)
    packer = "brotli-11" if convention == "brotli_b85" else "lzma"
    how = f"pyminify + {packer} + base85 wrapper of {files[0].name}" if minified else f"{packer} + base85 wrapper of {files[0].name} (no pyminify on PATH)"
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
            for candidate in (*PACKED, "lzma"):
                try:
                    n, how = _recompute(files, candidate)
                except CodeSizeError:
                    continue
                if n == logged_compressed:
                    return {"convention": candidate, "bytes": n, "how": f"{how} (inferred: equals the log's Code size (compressed))", "raw_bytes": raw}
            convention = "log"
    if convention == "log":
        if logged_compressed is None:
            raise CodeSizeError("byo.code_size log: the log states no `Code size (compressed)` line")
        return {"convention": "log", "bytes": logged_compressed, "how": "taken from the log's Code size (compressed), not recomputed", "raw_bytes": raw}
    n, how = _recompute(files, convention)
    return {"convention": convention, "bytes": n, "how": how, "raw_bytes": raw}
