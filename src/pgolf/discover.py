"""Which files of a record folder are what: its script, its submission, its logs, and every code
file the script needs. `pgolf validate`, `parse-log` and `size` all find files through here.

A self-extracting script (a short `exec(lzma.decompress(base64.b85decode("...")))` wrapper, as the
April frontier ships) is read through its decoded source: `script_source` decodes it without
running anything.
"""

from __future__ import annotations

import ast
import base64
import functools
import lzma
import re
import zlib
from pathlib import Path

NOT_LOGS = re.compile(r"^(requirements|readme|notes?|license|results?)\b", re.I)
# Files a script may read that are not code (data, docs, its own outputs).
NOT_CODE_SUFFIXES = {".log", ".txt", ".md", ".json", ".csv", ".png", ".jpg", ".pt", ".ptz", ".bin", ".model", ".npy", ".npz"}


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


def log_files(root: Path) -> list[Path]:
    """Candidate seed logs: *.log / *.txt in the folder, its logs/ folder and one level of other
    subfolders (which logs hold training or eval lines is decided when they are read)."""
    files = sorted(p for p in root.iterdir() if p.suffix in (".log", ".txt") and p.is_file())
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files += sorted(p for p in sub.iterdir() if p.suffix in (".log", ".txt") and p.is_file())
    return files


# ----------------------------------------------------------------------------- source and code files


def _packed_payload(tree: ast.AST) -> str | None:
    """The decoded source of a self-extracting script: the longest string constant that decodes
    (base85 or base64, then lzma, raw LZMA2 or zlib) to text."""
    blobs = sorted((n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, (str, bytes)) and len(n.value) > 512),
                   key=len, reverse=True)
    for blob in blobs[:2]:
        for decode in (base64.b85decode, base64.b64decode):
            try:
                raw = decode(blob)
            except ValueError:
                continue
            for unpack in (lzma.decompress, lambda b: lzma.decompress(b, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]), zlib.decompress):
                try:
                    return unpack(raw).decode("utf-8")
                except (lzma.LZMAError, zlib.error, UnicodeDecodeError, ValueError):
                    continue
    return None


def script_source(path: Path) -> tuple[str, bool]:
    """The text to read for what a script does, and whether it was decoded from a packed wrapper."""
    st = path.stat()
    return _source(str(path), st.st_size, st.st_mtime_ns)


LONG_LITERAL = re.compile(r"""[^\s"']{1024,}|(?:["'][^\s"']{60,}["']\s*){16}""")


@functools.lru_cache(maxsize=512)
def _source(path: str, size: int, mtime_ns: int) -> tuple[str, bool]:
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if "decompress" not in text or not ("b85decode" in text or "b64decode" in text) or not LONG_LITERAL.search(text):
        return text, False
    try:
        payload = _packed_payload(ast.parse(text))
    except (SyntaxError, ValueError):
        return text, False
    return (payload, True) if payload else (text, False)


def _named_files(text: str, folder: Path) -> set[Path]:
    """Files of `folder` that `text` imports (`import x`, `from x import`) or names in a string
    (`open("x.py")`, `exec(...)`, `runpy`, a shared-library path)."""
    out = set()
    for name in re.findall(r"(?:^|[:;])[ \t]*(?:from\s+([\w.]+)\s+import|import[ \t]+([\w., \t]+))", text, re.M):
        for mod in (name[0] or name[1]).split(","):
            top = mod.strip().split(" ")[0].split(".")[0]
            if not top:
                continue
            for cand in (folder / f"{top}.py", folder / top / "__init__.py"):
                if cand.is_file():
                    out.add(cand)
            pkg = folder / top
            if pkg.is_dir() and (pkg / "__init__.py").is_file():
                out.update(p for p in pkg.rglob("*.py") if p.is_file())
    for literal in set(re.findall(r"""["']([\w./-]+\.\w+)["']""", text)):
        cand = folder / literal.removeprefix("./")
        if cand.suffix not in NOT_CODE_SUFFIXES and cand.is_file() and cand.resolve().is_relative_to(folder.resolve()):
            out.add(cand)
    return out


def code_files(script: Path) -> list[Path]:
    """Every file of the script's folder that the script imports, reads or execs, transitively,
    the script first; a packed script is read through its decoded source."""
    folder = script.parent
    seen, todo = [script], [script]
    while todo:
        current = todo.pop()
        text = script_source(current)[0] if current.suffix == ".py" else ""
        for p in sorted(_named_files(text, folder)):
            if p not in seen:
                seen.append(p)
                todo.append(p)
    wrapper = folder / "train_gpt.py"
    if wrapper.is_file() and wrapper not in seen:  # a wrapper that execs the script ships too
        seen.insert(0, wrapper)
    return seen
