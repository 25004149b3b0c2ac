"""Config validation and the content-derived ids that key every expensive output.

Ids are short hashes of exactly what defines a stage's result: its config block, the code it
runs and the id of what it consumes. A changed setting therefore adds a new results/ directory
instead of overwriting trained models, and switching the setting back finds the old results.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from pathlib import Path

import jsonschema
import yaml

from pgolf.rules import headline_method
from pgolf.errors import UserError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(UserError):
    """One line: where in the config the problem is and what was expected."""


def canon(obj) -> str:
    """Canonical JSON: key order in config.yaml never changes an id or a params value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def short_hash(*parts: str, n: int = 10) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:n]


def file_digest(paths) -> str:
    """sha256 over the contents of files (order matters), e.g. the code a stage runs."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def merge_overlay(base: dict, over: dict) -> None:
    """Snakemake's --configfile semantics: mappings merge key by key, lists and values replace."""
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge_overlay(base[k], v)
        else:
            base[k] = v


def _yaml_problem(path, error: yaml.YAMLError) -> str:
    """'file:line:column: what the parser expected' from a YAML error (lines and columns from 1)."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    context, start = getattr(error, "context", None), getattr(error, "context_mark", None)
    if context and start and start is not mark:
        context += f" that starts at line {start.line + 1}, column {start.column + 1}"
    return f"{where}: malformed YAML: {what}" + (f" ({context})" if context else "")


def load_config_file(path) -> dict:
    """One config file as a mapping; a missing, malformed, empty or non-mapping file is one ConfigError line."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(_yaml_problem(path, e)) from None
    if data is None:
        raise ConfigError(f"{path}: empty config file (snakemake refuses it too): give it keys, or leave it out")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level, got a YAML {type(data).__name__}")
    return data


def load_configs(paths) -> dict:
    """Config files merged in order, as `snakemake --configfile a b` would."""
    merged: dict = {}
    for path in paths:
        merge_overlay(merged, load_config_file(path))
    return merged


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    """Turns a jsonschema error into 'key.path: what was expected, got what'."""
    where = _where(error.absolute_path)
    v, kind = error.validator, error.validator_value
    if v == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        return f"{where}: unknown key {extra[0]!r} (allowed: {allowed})"
    if v == "required":
        missing = [k for k in kind if k not in error.instance]
        return f"{where}: missing key {missing[0]!r}"
    if v == "type":
        return f"{where}: expected {kind}, got {type(error.instance).__name__} {error.instance!r}"
    if v == "enum":
        return f"{where}: expected one of {', '.join(map(repr, kind))}, got {error.instance!r}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        ops = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
        return f"{where}: expected a value {ops[v]} {kind}, got {error.instance!r}"
    if v == "pattern":
        return f"{where}: {error.instance!r} does not match the pattern {kind}"
    if v in ("minItems", "uniqueItems", "minLength"):
        return f"{where}: {error.message}"
    return f"{where}: {error.message}"


def load_schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def check_config(config: dict) -> None:
    """Raises ConfigError naming the first problem (by key path) found against the schema."""
    if not isinstance(config, dict) or not config:
        raise ConfigError("(top level): the config is empty or not a mapping")
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: (list(map(str, e.absolute_path)), e.validator))
    if errors:
        raise ConfigError(_describe(errors[0]))
    semantic_checks(config)


def semantic_checks(config: dict) -> None:
    """Rules a schema cannot express: relations between keys."""
    data = config["data"]
    if data["source"] == "local":
        for key in ("path", "tokenizer"):
            if not data["local"][key]:
                raise ConfigError(f"data.local.{key}: required when data.source is local (got {data['local'][key]!r})")
    m = config["train"]["model"]
    if m["model_dim"] % m["num_heads"]:
        raise ConfigError(f"train.model: model_dim {m['model_dim']} must be a multiple of num_heads {m['num_heads']}")
    if m["num_heads"] % m["num_kv_heads"]:
        raise ConfigError(f"train.model: num_heads {m['num_heads']} must be a multiple of num_kv_heads {m['num_kv_heads']}")
    if m["bigram_vocab_size"] == 1:
        raise ConfigError("train.model.bigram_vocab_size: expected 0 (off) or at least 2 buckets, got 1")
    head_dim = m["model_dim"] // m["num_heads"]
    if m["rope_dims"] > head_dim or m["rope_dims"] % 2:
        raise ConfigError(f"train.model.rope_dims: expected an even number <= head_dim {head_dim}, got {m['rope_dims']}")
    t = config["train"]
    accum = t["grad_accum_steps"]
    if accum == "auto":
        if 8 % t["nproc_per_node"]:
            raise ConfigError(f"train.grad_accum_steps: auto needs nproc_per_node to divide 8, got {t['nproc_per_node']}")
        accum = 8 // t["nproc_per_node"]
    per_step = t["seq_len"] * t["nproc_per_node"] * accum
    if t["batch_tokens"] % per_step:
        raise ConfigError(
            f"train.batch_tokens: {t['batch_tokens']} is not a multiple of seq_len*nproc_per_node*grad_accum_steps = {per_step}"
        )
    x = config["export"]
    top = {"lzma": 9, "zstd": 22, "brotli": 11, "pergroup": 9}[x["compressor"]]  # pergroup: lrzip -L
    if x["compress_level"] > top:
        raise ConfigError(f"export.compress_level: {x['compressor']} takes 0-{top}, got {x['compress_level']}")
    if x["compressor"] == "pergroup" and x["compress_level"] < 1:
        raise ConfigError(f"export.compress_level: pergroup (lrzip -L) takes 1-9, got {x['compress_level']}")
    e = config["eval"]
    if e["stride"] > e["seq_len"]:
        raise ConfigError(f"eval.stride: {e['stride']} is larger than eval.seq_len {e['seq_len']}")
    byo = config.get("byo")
    if byo:
        for key in ("SEED", "DATA_PATH", "TOKENIZER_PATH"):
            if key in byo["env"]:
                raise ConfigError(f"byo.env.{key}: set by the pipeline (per seed / from the data stage's manifest), not in the config")
        if byo["script"] and byo["name"] == config["record"]["name"]:
            raise ConfigError(f"byo.name: {byo['name']!r} is record.name too; the two record folders need different names")
        if byo["launcher"] == "python" and byo["nproc_per_node"] != 1:
            raise ConfigError(f"byo.nproc_per_node: launcher python runs one process, got {byo['nproc_per_node']}")
    s = e["slot"]
    if s["mode"] in s["compare_modes"]:
        raise ConfigError(f"eval.slot.compare_modes: {s['mode']!r} is already eval.slot.mode")
    if s["lr_min"] > s["lr"]:
        raise ConfigError(f"eval.slot.lr_min: {s['lr_min']} is larger than eval.slot.lr {s['lr']}")
    t = e["ttt"]
    if t["headline"] and not t["enabled"]:
        raise ConfigError("eval.ttt.headline: true needs eval.ttt.enabled: true")
    ttt_seq_len, ttt_stride = t["seq_len"] or e["seq_len"], t["stride"] or e["stride"]
    if ttt_stride > ttt_seq_len:
        raise ConfigError(f"eval.ttt.stride: {ttt_stride} is larger than eval.ttt.seq_len {ttt_seq_len}")
    for key in ("chunk_tokens", "audit_chunk_tokens"):
        if t[key] is not None and t[key] < ttt_seq_len:
            raise ConfigError(f"eval.ttt.{key}: {t[key]} is shorter than one training sequence (seq_len {ttt_seq_len})")
    heads = [m for m in ("ttt", "lora_ttt", "phased_ttt") if e.get(m, {}).get("headline")]
    for m in heads:
        if not e[m]["enabled"]:
            raise ConfigError(f"eval.{m}.headline: true needs eval.{m}.enabled: true")
    # Several headlines: pgolf.rules.headline_method's order decides (a sweep variant may set ttt's over the base's).
    lo = e.get("lora_ttt")
    if lo and lo["chunk_tokens"] > (lo["seq_len"] or e["seq_len"]):
        raise ConfigError(f"eval.lora_ttt.chunk_tokens: {lo['chunk_tokens']} is longer than its window (seq_len {lo['seq_len'] or e['seq_len']})")
    if e.get("phased_ttt") and not lo:
        raise ConfigError("eval.phased_ttt: needs an eval.lora_ttt block (its documents, chunks and windows; its adapters when phased_ttt.lora is true)")
    if config.get("sweep"):
        # Each variant's eval block meets the same rules as the main one (the sweep block aside).
        check_sweep(config, lambda c: check_config({k: v for k, v in c.items() if k != "sweep"}))


# ----------------------------------------------------------------------------- sweep variants
# The config side of sweeps: which eval blocks a sweep scores, and the stage blocks that key them.
# (pgolf.sweep builds the table from their results.)

# Keys of eval.slot that choose which modes run and which is the headline: they change no single
# mode's result, so they stay out of the SLOT stage id.
SLOT_SELECTION_KEYS = ("enabled", "mode", "compare_modes")
# Likewise whether TTT runs and whether it is the headline.
TTT_SELECTION_KEYS = ("enabled", "headline")
# The per-document evals' optional blocks (absent: off, and no stage id changes).
DOC_TTT_BLOCKS = ("lora_ttt", "phased_ttt")


def stage_blocks(eval_block: dict) -> dict:
    """The settings that define the eval stage (no SLOT, no TTT), the SLOT stage and the TTT stage."""
    plain = {k: v for k, v in eval_block.items() if k not in ("slot", "ttt", *DOC_TTT_BLOCKS)}
    slot = {k: v for k, v in eval_block["slot"].items() if k not in SLOT_SELECTION_KEYS}
    ttt = {k: v for k, v in eval_block.get("ttt", {}).items() if k not in TTT_SELECTION_KEYS}
    blocks = {"eval": plain, "slot": {**plain, "slot": slot}, "ttt": {**plain, "ttt": ttt}}
    # Phased TTT scores with lora_ttt's documents, chunks and adapters: both blocks key it.
    doc = {m: {k: v for k, v in eval_block.get(m, {}).items() if k not in TTT_SELECTION_KEYS} for m in DOC_TTT_BLOCKS}
    blocks["lora_ttt"] = {**plain, "lora_ttt": doc["lora_ttt"]}
    blocks["phased_ttt"] = {**plain, "lora_ttt": doc["lora_ttt"], "phased_ttt": doc["phased_ttt"]}
    return blocks


def _value_name(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _set_dotted(block: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for p in parents:
        block = block.setdefault(p, {})
    block[last] = value


def flat_settings(override: dict, prefix: str = "") -> list[str]:
    """An override as 'dotted.key=value' items, e.g. ['slot.steps=8']."""
    items = []
    for k, v in override.items():
        if isinstance(v, dict) and v:
            items += flat_settings(v, f"{prefix}{k}.")
        else:
            items.append(f"{prefix}{k}={_value_name(v)}")
    return items


def variant_overrides(sweep: dict) -> list[tuple[str, str, dict]]:
    """(where in the config, name, override) for every variant: the list first, then the grid."""
    out = []
    for i, v in enumerate(sweep.get("variants") or []):
        out.append((f"sweep.variants[{i}]", v["name"], {k: x for k, x in v.items() if k != "name"}))
    grid = sweep.get("grid") or {}
    keys = list(grid)
    if keys:
        for values in itertools.product(*(grid[k] for k in keys)):
            override: dict = {}
            for k, x in zip(keys, values):
                _set_dotted(override, k, x)
            name = "_".join(f"{k}-{_value_name(x)}" for k, x in zip(keys, values))
            out.append(("sweep.grid", name, override))
    return out


def resolve_variants(config: dict) -> list[dict]:
    """Each variant as {name, override, settings, method, eval}: the main eval block with its override."""
    variants = []
    for where, name, override in variant_overrides(config.get("sweep") or {}):
        resolved = copy.deepcopy(config["eval"])
        merge_overlay(resolved, copy.deepcopy(override))
        resolved["slot"]["compare_modes"] = []  # a variant is scored by its one mode
        variants.append(
            {
                "where": where,
                "name": name,
                "override": override,
                "settings": " ".join(flat_settings(override)) or "(main eval)",
                "method": headline_method(resolved),
                "eval": resolved,
            }
        )
    return variants


def check_sweep(config: dict, check_eval) -> None:
    """Every variant's resolved eval block must pass the same checks as the main one; names unique.

    check_eval(config) raises ConfigError for a bad config; it is run on the config with the
    variant's eval block in place, and its message gets the variant's place and name in front.
    """
    variants = resolve_variants(config)
    if not variants:
        raise ConfigError("sweep: no variants (give sweep.variants a named variant or sweep.grid a key with values)")
    seen = {}
    for v in variants:
        if v["name"] in seen:
            raise ConfigError(f"{v['where']}: variant name {v['name']!r} is already used by {seen[v['name']]}")
        seen[v["name"]] = v["where"]
        try:
            check_eval({**config, "eval": v["eval"]})
        except ConfigError as e:
            raise ConfigError(f"{v['where']} ({v['name']}): {e}") from None
