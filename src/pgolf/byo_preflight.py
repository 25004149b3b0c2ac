"""Bring-your-own-script mode's preflight: what a record's script needs, checked before any job.

A frontier record run takes 40 minutes to reach the step that shells out to `lrzip` or the line
that imports FlashAttention 3; these checks read the script and the config instead, in the
workflow's first second, one line each:

- modules: every module the script's code files import unconditionally at their top level
  (imports inside `try:` are optional by construction) must be importable here, except the
  standard library and the record's own sibling files; `flash_attn_interface` may come from the SDPA fallback
  (`byo.attention_fallback: sdpa`);
- binaries: each program of `byo.binaries` must be on PATH (programs the script calls but the
  config does not list are reported as information, not required);
- data: `CASEOPS_ENABLED` in `byo.env` needs CaseOps data with byte sidecars (`byo.data`), and a
  `VOCAB_SIZE` in `byo.env` must equal the tokenizer's vocabulary the data step builds.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import sys
from pathlib import Path

from pgolf.byo_code import code_files

FA3_MODULE = "flash_attn_interface"
CALLED = re.compile(r"subprocess\.(?:run|Popen|call|check_call|check_output)\(\s*\[\s*[\"']([A-Za-z0-9_.+-]+)[\"']")


def required_modules(files: list[Path]) -> list[str]:
    """Top-level module names the files import outside any `try:` (in first-seen order)."""
    names: list[str] = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in tree.body:  # module level only: a try-wrapped import is optional
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [node.module]
            else:
                continue
            for name in found:
                top = name.split(".")[0]
                if top not in names and top != "__future__":
                    names.append(top)
    return names


def called_programs(files: list[Path]) -> list[str]:
    seen: list[str] = []
    for path in files:
        for name in CALLED.findall(path.read_text(encoding="utf-8", errors="replace")):
            if name not in seen:
                seen.append(name)
    return seen


def _truthy(value) -> bool:
    return str(value).strip().lower() not in ("", "0", "false", "no", "none")


def _torch_version() -> str:
    spec = importlib.util.find_spec("torch")
    if spec is None:
        return "no torch"
    from importlib import metadata

    try:
        return f"torch {metadata.version('torch')}"
    except metadata.PackageNotFoundError:
        return "torch (version unknown)"


def check(byo: dict, data_vocab: int | None, which=shutil.which, find_spec=importlib.util.find_spec) -> list[tuple[bool, str]]:
    """(ok, line) for each need; `data_vocab` is the vocabulary the data stage gives (None: unknown)."""
    script = Path(byo["script"])
    files = code_files(script)
    local = {p.stem for p in files} | {p.stem for p in script.parent.glob("*.py")}
    fallback = byo.get("attention_fallback", "none")
    lines: list[tuple[bool, str]] = []
    for module in required_modules(files):
        if module in local or module in sys.stdlib_module_names:
            continue
        if find_spec(module) is not None:
            lines.append((True, f"module {module}: found"))
        elif module == FA3_MODULE and fallback == "sdpa":
            lines.append((True, f"module {module}: not installed; byo.attention_fallback sdpa stands in (PyTorch SDPA, not FA3's kernels: the run says so)"))
        elif module == FA3_MODULE:
            lines.append((False, f"module {module} (FlashAttention 3) is not installed for {_torch_version()}: install FA3 built for this torch (envs/byo-frontier.yaml), or set byo.attention_fallback: sdpa"))
        else:
            lines.append((False, f"module {module}: not installed, and {script.name} imports it (pip install it, or see the record's requirements.txt)"))
    required = list(byo.get("binaries", []))
    for program in required:
        if which(program):
            lines.append((True, f"program {program}: {which(program)}"))
        else:
            lines.append((False, f"program {program}: not on PATH, and byo.binaries needs it (e.g. apt-get install {program}), or change the setting that calls it"))
    for program in called_programs(files):
        if program not in required:
            state = which(program) or "not on PATH"
            lines.append((True, f"program {program}: {state} (the script calls it; not in byo.binaries, so not required)"))
    env = byo.get("env", {})
    data = byo.get("data") or {}
    if _truthy(env.get("CASEOPS_ENABLED", 0)):
        if data.get("prepare"):
            lines.append((True, f"data: CASEOPS_ENABLED with byte sidecars from {data['prepare']}"))
        else:
            lines.append((False, "data: byo.env CASEOPS_ENABLED needs CaseOps shards with byte sidecars: set byo.data.prepare to the record's prepare_caseops_data.py"))
    if "VOCAB_SIZE" in env and data_vocab is not None:
        ok = int(env["VOCAB_SIZE"]) == data_vocab
        lines.append((ok, f"data: byo.env VOCAB_SIZE {env['VOCAB_SIZE']} {'=' if ok else '!='} the tokenizer's vocabulary {data_vocab}"))
    return lines


def report(lines: list[tuple[bool, str]]) -> tuple[str, bool]:
    text = "\n".join(f"preflight: {'ok  ' if ok else 'FAIL'} {line}" for ok, line in lines)
    return text, all(ok for ok, _ in lines)
