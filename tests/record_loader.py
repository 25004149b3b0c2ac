"""Loads an upstream record's train_gpt.py as a module for CPU equality tests.

The stand-ins in tests/record_standins/ (FA3 on SDPA, an import-only triton) are importable only
while the script itself is imported; afterwards they leave sys.modules again, so that no other
test, nor torch's own probing for triton, sees them; torch.compile is the identity meanwhile
(the records decorate a function with it at import).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

STANDINS = Path(__file__).resolve().parent / "record_standins"
STANDIN_MODULES = ("flash_attn_interface", "triton")


def load_record_script(path: Path, name: str):
    """The script at path as a module named name, or a pytest skip naming the missing file."""
    path = Path(path)
    if not path.is_file():
        pytest.skip(f"{path} is absent (the upstream corpus / shared reference is not here)")
    import torch

    saved = {m: mod for m, mod in sys.modules.items() if m.split(".")[0] in STANDIN_MODULES}
    for m in saved:
        del sys.modules[m]
    sys.path.insert(0, str(STANDINS))
    compile_fn = torch.compile
    # Module-level @torch.compile would make torch probe the stand-in triton: left uncompiled.
    torch.compile = lambda fn=None, **_kw: fn if fn is not None else (lambda f: f)
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        torch.compile = compile_fn
        sys.path.remove(str(STANDINS))
        for m in [m for m in sys.modules if m.split(".")[0] in STANDIN_MODULES]:
            del sys.modules[m]
        sys.modules.update(saved)
    return module
