"""The challenge's size rule, counted to the byte: code bytes + compressed model bytes <= limit.

Two conventions for the code bytes, both applied by the challenge's reviewers:

- ``raw``: the shipped files' bytes (the FAQ's "code bytes + compressed model bytes").
- ``lzma``: the code compressed, as the merged frontier records count it (their logs state
  `Code size (compressed)` and a `Total submission size` that adds it; they ship or could ship a
  self-extracting script). Here: the bytes of ``lzma.compress(code, preset=9 | PRESET_EXTREME)``
  of each code file (xz container included), which is what such a script must at least carry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pgolf.discover import code_files, find_script, log_files
from pgolf.logparse import parse_file
from pgolf.rules import CODE_SIZE_CONVENTIONS as CONVENTIONS
from pgolf.rules import SIZE_LIMIT_BYTES as CHALLENGE_LIMIT
from pgolf.rules import lzma_code_bytes as lzma_bytes
from pgolf.errors import UserError


class SizeError(UserError):
    """One line with the three numbers: code, model, total against the limit."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _report(code_paths: list[Path], model_file: dict, limit: int, compressor: str, convention: str = "raw") -> dict:
    """The accounting both measures share: code files' bytes (by `convention`) plus the model's,
    against the limit; both conventions' totals are reported."""
    if convention not in CONVENTIONS:
        raise SizeError(f"code size convention {convention!r}: expected one of {', '.join(CONVENTIONS)}")
    raw = sum(p.stat().st_size for p in code_paths)
    packed = sum(lzma_bytes(p.read_bytes()) for p in code_paths)
    code_bytes = packed if convention == "lzma" else raw
    total = code_bytes + model_file["bytes"]
    return {
        "code_size_convention": convention,
        "code_bytes": code_bytes,
        "code_bytes_raw": raw,
        "code_bytes_lzma": packed,
        "total_bytes_raw": raw + model_file["bytes"],
        "total_bytes_lzma": packed + model_file["bytes"],
        "model_bytes": model_file["bytes"],
        "total_bytes": total,
        "limit": limit,
        "ok": total <= limit,
        "headroom_bytes": limit - total,
        "compressor": compressor,
        "code_files": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in code_paths},
        "model_file": model_file,
    }


def measure(code_paths: list[Path], model_path: Path, limit: int = CHALLENGE_LIMIT, compressor: str = "", convention: str = "raw") -> dict:
    """Size accounting of a record: every code file that must ship, plus the compressed model."""
    code_paths, model_path = [Path(p) for p in code_paths], Path(model_path)
    for p in [*code_paths, model_path]:
        if not p.is_file():
            raise SizeError(f"{p}: missing")
    model_file = {"name": model_path.name, "bytes": model_path.stat().st_size, "sha256": _sha256(model_path)}
    return _report(code_paths, model_file, limit, compressor, convention)


# How each compressor's output starts (brotli has no magic: our artifacts tag it with one byte).
MAGIC = {b"\xfd7zXZ\x00": "lzma", b"\x28\xb5\x2f\xfd": "zstd", b"\xb7": "brotli", b"PGRP": "pergroup"}
MODEL_PATTERNS = ("*.ptz", "final_model*")


def detect_compressor(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    return next((name for magic, name in MAGIC.items() if head.startswith(magic)), "unknown")


def _model_in_folder(folder: Path) -> Path | None:
    """The compressed model a record folder holds: one its logs name, else the only candidate file."""
    found = sorted({p for pat in MODEL_PATTERNS for p in folder.glob(pat) if p.is_file()})
    if len(found) > 1:
        logs = " ".join(p.read_text(encoding="utf-8", errors="replace") for p in folder.glob("*.log"))
        named = [p for p in found if p.name in logs]
        found = named or found
    if len(found) > 1:
        raise SizeError(f"{folder}: several model files ({', '.join(p.name for p in found)}); name the one to count")
    return found[0] if found else None


def resolve_targets(paths: list[str]) -> tuple[list[Path], Path | None]:
    """Code files and the model from `pgolf size` arguments.

    A folder stands for its train_gpt.py (and its model, when it holds one); a .py file is code;
    any other file is the compressed model. Exactly one model must come out, except for a lone
    record folder without one (records ship no weights): then None, and measure_logged counts it.
    """
    code, models = [], []
    for arg in paths:
        p = Path(arg)
        if p.is_dir():
            script, _ = find_script(p)
            if script is None:
                raise SizeError(f"{p}: no train_gpt.py (or train_gpt*.py) in this folder")
            code.extend(code_files(script))  # the script, its wrapper and every file it imports, reads or execs
            model = _model_in_folder(p)
            if model is not None:
                models.append(model)
        elif p.is_file():
            (code if p.suffix == ".py" else models).append(p)
        else:
            raise SizeError(f"{p}: no such file or folder")
    explicit = [m for m in models if str(m) in paths]
    models = explicit or models
    if not code:
        raise SizeError("no code given: name a record folder or its train_gpt.py")
    if not models:
        if len(code) == 1 and Path(paths[0]).is_dir():
            return code, None  # a record folder as published: the model is known only from its logs
        raise SizeError(f"no compressed model found in {', '.join(paths)}: give the artifact too (e.g. final_model.ptz)")
    if len(models) > 1:
        raise SizeError(f"several models given ({', '.join(map(str, models))}); count one at a time")
    return code, models[0]


def measure_logged(code_paths: list[Path], folder: Path, limit: int = CHALLENGE_LIMIT, convention: str = "raw") -> dict:
    """Size accounting of a record folder that holds no model: the largest compressed-model size its
    seed logs state (what each seed's run wrote), plus the shipped code."""
    logged = {}
    for log in log_files(Path(folder)):
        n = parse_file(log).bytes_model
        if n is not None:
            logged[str(log.relative_to(folder))] = n
    if not logged:
        raise SizeError(f"{folder}: no compressed model in the folder and no log states its size: give the artifact too")
    model_file = {"name": None, "bytes": max(logged.values()), "sha256": None, "from_logs": logged}
    return _report(code_paths, model_file, limit, "unknown", convention)


def over_limit_message(report: dict) -> str:
    return (
        f"artifact over the size limit: code {report['code_bytes']} ({report['code_size_convention']}) + model {report['model_bytes']}"
        f" = {report['total_bytes']} bytes > limit {report['limit']} (over by {-report['headroom_bytes']})"
    )


def gate(code_paths, model_path, out_json, limit: int, compressor: str = "", convention: str = "raw") -> dict:
    """Writes size.json when the record fits (code counted by `convention`); raises SizeError (and
    writes nothing) when it does not."""
    report = measure(code_paths, model_path, limit, compressor, convention)
    if not report["ok"]:
        raise SizeError(over_limit_message(report))
    tmp = f"{out_json}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, out_json)
    return report
