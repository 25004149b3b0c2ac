"""Generates a record's single train_gpt.py from the record modules in workflow/record/.

The challenge counts every byte of code in the record and wants one self-contained script; we
keep the code as small modules so that each pipeline stage depends only on what it runs. The
bundle is the modules in dependency order with their sibling imports removed and their
stage-CLI tails cut, followed by the settings the record was produced with.
"""

from __future__ import annotations

import json
from pathlib import Path

from pgolf.codegraph import SIBLING_IMPORT, CodeGraphError, record_modules
from pgolf.errors import UserError

# Only a default for interactive use: the bundle_code rule passes --src workflow/record of the
# workflow it runs in, the files its code id covers (the package may be installed from elsewhere).
RECORD_DIR = Path(__file__).resolve().parents[2] / "workflow" / "record"
_FUTURE = "from __future__ import annotations"
# Record modules bundled only when the config uses them: name -> the train.model keys that need it
# (tests/test_frontier_model.py checks these against FrontierConfig). Without them the module's
# names are never reached, so the bundle leaves it out and its bytes count for nothing.
OPTIONAL_MODULES = {
    "frontier": ("parallel_start_layer", "parallel_final_lane", "skip_gates", "attn_gate", "attn_gate_scale", "gate_window",
                 "bos_smear_gate", "bos_id", "loop_start", "loop_end", "loop_passes", "loop_order", "loop_from", "loop_iter_embed",
                 "doc_attention"),
}
# Likewise record modules that an eval block needs: name -> the optional eval blocks that use it
# when enabled (workflow/record/ttt_doc.py: eval.lora_ttt, eval.phased_ttt).
OPTIONAL_EVAL_MODULES = {"ttt_doc": ("lora_ttt", "phased_ttt")}
# And those that train keys need (workflow/record/frontier_optim.py: the April optimizer; train.py
# calls it only when one of these is set away from its default).
# kernels.py (the fused Triton kernels) is needed only when its switch is true, not merely present.
OPTIONAL_TRAIN_MODULES = {"frontier_optim": ("muon_polar_express", "muon_row_normalize", "warmdown_frac", "wd_taper_start_frac", "wd_taper_final_mult"),
                          "kernels": ("fused_ce", "fused_mlp")}
TRAIN_SWITCHES = {"fused_ce", "fused_mlp"}  # train keys that ask for their module only when true


def train_key_on(train: dict, key: str) -> bool:
    """Whether a train key asks for its optional module: switches when true, the others when present."""
    return bool(train.get(key)) if key in TRAIN_SWITCHES else key in train


# And those that export keys need when on (workflow/record/frontier_export.py: the April export;
# quantize.py calls it only then): see export_key_on.
OPTIONAL_EXPORT_MODULES = {"frontier_export": ("clip_sigmas", "lqer", "byte_shuffle", "prune_to_bytes", "compressor"), "calib_gen": ("gptq",)}


def export_key_on(export: dict, key: str) -> bool:
    """Whether an export key asks for optional export code: compressor when it is pergroup, lqer when
    enabled, gptq when it calibrates on generated text, the others when set (non-empty, non-zero)."""
    value = export.get(key)
    if key == "compressor":
        return value == "pergroup"
    if key == "lqer":
        return bool((value or {}).get("enabled"))
    if key == "gptq":  # only its generated-text calibration is optional code
        return (value or {}).get("calibration") == "generated"
    return bool(value)


def module_paths(record_dir: Path = RECORD_DIR, config: dict | None = None) -> list[Path]:
    """The record modules in bundle order: entry.py's closure under sibling imports, each module after
    everything it uses (pgolf.codegraph.record_modules; no list is kept by hand), less the optional
    modules `config` does not use (all of them with no config)."""
    train = (config or {}).get("train") or {}
    model_keys = set(train.get("model") or {})
    skip = {name for name, keys in OPTIONAL_MODULES.items() if not model_keys & set(keys)}
    skip |= {name for name, keys in OPTIONAL_TRAIN_MODULES.items() if not any(train_key_on(train, k) for k in keys)}
    export = (config or {}).get("export") or {}
    skip |= {name for name, keys in OPTIONAL_EXPORT_MODULES.items() if not any(export_key_on(export, k) for k in keys)}
    evals = (config or {}).get("eval") or {}
    skip |= {name for name, blocks in OPTIONAL_EVAL_MODULES.items() if not any((evals.get(b) or {}).get("enabled") for b in blocks)}
    return [record_dir / f"{m}.py" for m in record_modules(record_dir) if m not in skip]


def _body(name: str, text: str, siblings: set[str]) -> str:
    cut = text.find('\nif __name__ == "__main__":')
    if cut >= 0:
        text = text[: cut + 1]
    kept = [ln for ln in text.splitlines() if ln.strip() != _FUTURE and not _is_sibling_import(ln, siblings)]
    return f"# {'=' * 20} {name}.py {'=' * 20}\n" + "\n".join(kept).strip("\n") + "\n"


def _is_sibling_import(line: str, siblings: set[str]) -> bool:
    m = SIBLING_IMPORT.match(line)
    return bool(m) and m.group(1) in siblings


class BundleError(UserError):
    """A record module is missing from the source folder."""


def bundle(config: dict, record_dir: Path = RECORD_DIR) -> str:
    """The text of train_gpt.py: all record modules plus RECORD_CONFIG (train, export, eval blocks)."""
    record_dir = Path(record_dir)
    try:
        paths = module_paths(record_dir, config)
    except CodeGraphError as e:
        raise BundleError(f"{record_dir}: {e}") from None
    siblings = {p.stem for p in paths} | set(OPTIONAL_MODULES) | set(OPTIONAL_EVAL_MODULES) | set(OPTIONAL_TRAIN_MODULES) | set(OPTIONAL_EXPORT_MODULES)
    parts = [
        '"""Parameter Golf record script, generated by pgolf from workflow/record/*.py: edit those, not this."""\n',
        _FUTURE + "\n",
    ]
    for path in paths:
        parts.append(_body(path.stem, path.read_text(encoding="utf-8"), siblings))
    settings = {k: config[k] for k in ("train", "export", "eval")}
    parts.append("# The settings this record was produced with.\nRECORD_CONFIG = json.loads(" + repr(json.dumps(settings, sort_keys=True)) + ")\n")
    parts.append('if __name__ == "__main__":\n    run_main(lambda argv: record_main(argv, RECORD_CONFIG))\n')
    return "\n\n".join(parts)
