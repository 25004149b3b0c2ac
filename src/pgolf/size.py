"""The challenge's size rule, counted to the byte: code bytes + compressed model bytes <= limit."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

CHALLENGE_LIMIT = 16_000_000  # decimal bytes, not MiB


class SizeError(ValueError):
    """One line with the three numbers: code, model, total against the limit."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def measure(code_paths: list[Path], model_path: Path, limit: int = CHALLENGE_LIMIT, compressor: str = "") -> dict:
    """Size accounting of a record: every code file that must ship, plus the compressed model."""
    code_paths = [Path(p) for p in code_paths]
    for p in [*code_paths, Path(model_path)]:
        if not p.is_file():
            raise SizeError(f"{p}: missing")
    code_bytes = sum(p.stat().st_size for p in code_paths)
    model_bytes = Path(model_path).stat().st_size
    total = code_bytes + model_bytes
    return {
        "code_bytes": code_bytes,
        "model_bytes": model_bytes,
        "total_bytes": total,
        "limit": limit,
        "ok": total <= limit,
        "headroom_bytes": limit - total,
        "compressor": compressor,
        "code_files": {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in code_paths},
        "model_file": {"name": Path(model_path).name, "bytes": model_bytes, "sha256": _sha256(Path(model_path))},
    }


def over_limit_message(report: dict) -> str:
    return (
        f"artifact over the size limit: code {report['code_bytes']} + model {report['model_bytes']}"
        f" = {report['total_bytes']} bytes > limit {report['limit']} (over by {-report['headroom_bytes']})"
    )


def gate(code_paths, model_path, out_json, limit: int, compressor: str = "") -> dict:
    """Writes size.json when the record fits; raises SizeError (and writes nothing) when it does not."""
    report = measure(code_paths, model_path, limit, compressor)
    if not report["ok"]:
        raise SizeError(over_limit_message(report))
    tmp = f"{out_json}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, out_json)
    return report
