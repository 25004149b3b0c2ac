"""The byte count behind val_bpb, read from the record's script (never run): the leading space
counted twice.

Records count a token's bytes with three tables built from the tokenizer (`build_sentencepiece_luts`
and alike): the piece's own bytes without its `▁` marker, a has-leading-space flag, and a boundary
flag; the eval adds one byte for the space where the flag is set and the previous token is not a
boundary. A table that gives a `▁` piece `len(piece[1:]) + 1` bytes AND sets the flag counts that
space twice: about a byte per word more, so a val_bpb lower than the model earns (the bug upstream
closed pull requests for). `pgolf audit-bpb` measures it on real data; this check reads the code.
"""

from __future__ import annotations

import ast
import functools
import re
import textwrap

from pgolf.discover import script_source
from pgolf.folder import Folder
from pgolf.scorefirst import function_defs, parse_source

MARKER = "\u2581"
LUT_FUNCTION = re.compile(r"lut|byte", re.I)
PLUS_ONE_LENGTH = re.compile(r"\)\s*\+\s*1\b|\b1\s*\+\s*len\(")
STARTS_WITH_MARKER = re.compile(r"startswith\(\s*[\"'](?:\u2581|\\u2581)")


def _marker_test(test: ast.AST) -> bool:
    """`piece.startswith("▁")` (or `"\\u2581"`)."""
    return any(isinstance(n, ast.Call) and getattr(n.func, "attr", None) == "startswith" and n.args
               and isinstance(n.args[0], ast.Constant) and n.args[0].value == MARKER for n in ast.walk(test))


def _plus_one_length(value: ast.AST) -> bool:
    """`len(...) + 1`: the piece's bytes and one more for the space."""
    return (isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add)
            and any(isinstance(side, ast.Constant) and side.value == 1 for side in (value.left, value.right))
            and any(isinstance(side, ast.Call) and getattr(side.func, "id", None) == "len" for side in (value.left, value.right)))


@functools.lru_cache(maxsize=256)
def double_counted_space(source: str, name: str) -> str | None:
    """`name:LINE: code` of a byte table that adds the leading space and also flags it, or None."""
    if not (PLUS_ONE_LENGTH.search(source) and STARTS_WITH_MARKER.search(source)):
        return None  # the cheap test first: most scripts never add 1 to a length (no tree is built)
    lines = source.splitlines()
    for first, fn in _table_functions(source):
        for branch in ast.walk(fn):
            if not (isinstance(branch, ast.If) and _marker_test(branch.test)):
                continue
            body = [n for stmt in branch.body for n in ast.walk(stmt)]
            flags = any(isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and n.value.value is True for n in body)
            plus_one = [n for n in body if isinstance(n, ast.Assign) and _plus_one_length(n.value)]
            if flags and plus_one:
                ln = first + plus_one[0].lineno - 1
                return f"{name}:{ln}: {lines[ln - 1].strip()[:160]}"
    return None


DEF = re.compile(r"^([ \t]*)(?:async[ \t]+)?def[ \t]+(\w+)", re.M)


def _table_functions(source: str):
    """(line offset, function node) of each function whose name speaks of a table or bytes. Each
    is parsed alone (its lines up to the next one indented no deeper than its `def`): a whole
    script's tree costs ten times more. Where a piece does not parse (a string or bracket running
    out of the cut), the whole script is parsed instead."""
    lines = source.split("\n")
    found = []
    for m in DEF.finditer(source):
        if not LUT_FUNCTION.search(m.group(2)):
            continue
        start = source.count("\n", 0, m.start())
        depth = len(m.group(1).expandtabs())
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or lines[end].lstrip().startswith("#")
                                    or len(lines[end].expandtabs()) - len(lines[end].expandtabs().lstrip()) > depth):
            end += 1
        try:
            tree = ast.parse(textwrap.dedent("\n".join(lines[start:end])))
        except (SyntaxError, ValueError):
            tree = parse_source(source)
            return [] if tree is None else [(1, fn) for fn in function_defs(tree) if LUT_FUNCTION.search(fn.name)]
        found += [(start + 1, fn) for fn in function_defs(tree)[:1]]
    return found


def check_byte_count(f: Folder) -> None:
    if f.script is None:
        return
    # The cheap test on the folder's files as they lie (a packed script may hide the table).
    texts = [p.read_text(encoding="utf-8", errors="replace") for p in f.root.glob("*.py")]
    if not any(PLUS_ONE_LENGTH.search(t) or "exec(" in t for t in texts):
        return
    for path in f.code():
        if path.suffix != ".py":
            continue
        source, packed = script_source(path)
        where = double_counted_space(source, path.name + (" (decoded)" if packed else ""))
        if where:
            f.problem(f"val_bpb byte count: a '{MARKER}' piece gets its space byte in the table and the leading-space flag too, "
                      f"so the eval counts that space twice and val_bpb comes out too low (high confidence; {where})")
            return
