# Shared helpers: config validation, stage ids, code lists, targets. Rule files stay declarative.
import json
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from pgolf.config import ConfigError, canon, check_config, file_digest, short_hash
from pgolf import doctor as pgdoctor
from pgolf import record as pgrecord
from pgolf import sweep as pgsweep


try:
    check_config(config)
except ConfigError as e:
    sys.exit(f"config error: {e}")


wildcard_constraints:
    seed=r"\d+",
    stage=r"train|export|eval|slot|ttt",
    stage_id=r"[0-9a-f]{10}",
    train_id=r"[0-9a-f]{10}",
    export_id=r"[0-9a-f]{10}",
    eval_id=r"[0-9a-f]{10}",
    slot_id=r"[0-9a-f]{10}",
    ttt_id=r"[0-9a-f]{10}",
    data_id=r"[0-9a-f]{10}",
    code_id=r"[0-9a-f]{10}",


ENV = "../../envs/pgolf.yaml"
# GPU stages share torch.compile's caches: runtime.use_compile_cache keys a folder under here by
# the record code, torch version and GPU, so each record compiles once, not once per stage and seed.
COMPILE_CACHE = "PGOLF_COMPILE_CACHE=results/compile_cache "


def record_code(*modules):
    return [f"workflow/record/{m}.py" for m in modules]


# Every code file a stage runs is an input of its rules (Snakemake only tracks inputs) and
# part of its id, so a code edit reruns exactly the stages that execute that code.
DATA_CODE = ["src/pgolf/data.py", "src/pgolf/shards.py", "src/pgolf/progress.py"]
CODE = {
    "data": DATA_CODE
    + {
        "docs": ["src/pgolf/tokenizer.py", "src/pgolf/docs.py"],
        "hub": ["src/pgolf/tokenizer.py", "src/pgolf/hub.py"],
        "local": ["src/pgolf/tokenizer.py", "src/pgolf/local.py"],
    }[config["data"]["source"]],
    "train": record_code("runtime", "scoring", "model", "train"),
    # quantize.py imports the model (GPTQ runs it on training tokens).
    "export": record_code("runtime", "model", "quantize"),
    "eval": record_code("runtime", "scoring", "model", "quantize", "evaluate"),
    "slot": record_code("runtime", "scoring", "model", "quantize", "evaluate", "slot"),
    "ttt": record_code("runtime", "scoring", "model", "quantize", "evaluate", "ttt"),
    "bundle": record_code("runtime", "scoring", "model", "quantize", "train", "evaluate", "slot", "ttt", "entry")
    + ["src/pgolf/bundle.py"],
    "size": ["src/pgolf/size.py"],
    "verify": ["src/pgolf/verify.py"],
    "record": ["src/pgolf/record.py", "src/pgolf/provenance.py", "workflow/templates/record_README.md.j2"],
}


def _existing(key, path):
    if not Path(path).is_file():
        sys.exit(f"config error: {key}: {path} does not exist")
    return path


def data_block():
    """What defines the dataset: the active source's settings plus a fingerprint of its input files.

    docs: the JSONL's sha256 (and the tokenizer model's, when one is given; the spec keys
    then play no part). local: sizes and headers of the shards and the tokenizer's sha256
    (plus every shard's sha256 with fingerprint: sha256). hub: the settings alone; pin
    data.hub.revision to a commit to pin the data.
    """
    d = config["data"]
    source = d["source"]
    block = {"source": source, **d[source]}
    if source == "docs":
        block["docs_sha256"] = file_digest([_existing("data.docs.path", block["path"])])
        tok = dict(block["tokenizer"])
        if tok["model"]:
            tok = {"model_sha256": file_digest([_existing("data.docs.tokenizer.model", tok["model"])]), "vocab_size": tok["vocab_size"]}
        else:
            tok.pop("model")
        block["tokenizer"] = tok
    elif source == "local":
        from pgolf.data import DataError
        from pgolf.local import fingerprint

        try:
            block["fingerprint_digest"] = fingerprint(block["path"], block["tokenizer"], block["train_shards"], block["fingerprint"] == "sha256")
        except (DataError, OSError) as e:
            sys.exit(f"config error: {e}")
    return block


STAGE_BLOCKS = {
    "train": config["train"],
    # The size limit (and how code counts in it) and GPTQ's time budget are checked later (size_gate, record); the artifact does not depend on them.
    "export": {
        **{k: v for k, v in config["export"].items() if k not in ("size_limit_bytes", "code_size_convention")},
        "gptq": {k: v for k, v in config["export"]["gptq"].items() if k != "train_budget_seconds"},
    },
    # Which SLOT modes run, and which is the headline, does not change any one mode's result.
    **pgsweep.stage_blocks(config["eval"]),
}
DATA_ID = short_hash(canon(data_block()), file_digest(CODE["data"]))
TRAIN_ID = short_hash(DATA_ID, canon(STAGE_BLOCKS["train"]), file_digest(CODE["train"]))
EXPORT_ID = short_hash(TRAIN_ID, canon(STAGE_BLOCKS["export"]), file_digest(CODE["export"]))


def eval_stage_ids(blocks):
    """Eval, SLOT and TTT ids of one eval block's stage settings, on this run's exported checkpoints."""
    return {stage: short_hash(EXPORT_ID, canon(blocks[stage]), file_digest(CODE[stage])) for stage in EVAL_STAGES}


EVAL_STAGES = ("eval", "slot", "ttt")
EVAL_ID, SLOT_ID, TTT_ID = eval_stage_ids(STAGE_BLOCKS).values()
RECORD_SETTINGS = {k: config[k] for k in ("train", "export", "eval")}
CODE_ID = short_hash(canon(RECORD_SETTINGS), file_digest(CODE["bundle"]))
STAGE_IDS = {"train": TRAIN_ID, "export": EXPORT_ID, "eval": EVAL_ID, "slot": SLOT_ID, "ttt": TTT_ID}
SEEDS = config["seeds"]
SLOT_MODES = (
    [config["eval"]["slot"]["mode"], *config["eval"]["slot"]["compare_modes"]] if config["eval"]["slot"]["enabled"] else []
)
TTT_ON = config["eval"]["ttt"]["enabled"]
RECORD_DIR = pgrecord.record_dir(config["record"])


# Sweep variants: eval settings scored on the same exported checkpoints (workflow/rules/sweep.smk).
SWEEP = config.get("sweep") or {}
SWEEP_VARIANTS = pgsweep.resolve_variants(config)
for _variant in SWEEP_VARIANTS:
    _variant["blocks"] = pgsweep.stage_blocks(_variant["eval"])
    _variant["ids"] = eval_stage_ids(_variant["blocks"])

# Every stage directory's settings by id: the main stages' and each sweep variant's.
STAGE_BLOCKS_BY_ID = {(stage, STAGE_IDS[stage]): block for stage, block in STAGE_BLOCKS.items()}
for _variant in SWEEP_VARIANTS:
    for _stage in EVAL_STAGES:
        STAGE_BLOCKS_BY_ID[(_stage, _variant["ids"][_stage])] = _variant["blocks"][_stage]


def stage_block(stage, stage_id):
    try:
        return STAGE_BLOCKS_BY_ID[(stage, stage_id)]
    except KeyError:
        raise ValueError(f"results/{stage}/{stage_id}: no {stage} settings of this config have that id") from None


def stage_hparams(wildcards):
    return canon(stage_block(wildcards.stage, wildcards.stage_id))


def eval_hparams(wildcards):
    return canon(stage_block("eval", wildcards.eval_id))


def slot_hparams(wildcards):
    return canon(stage_block("slot", wildcards.slot_id))


def ttt_hparams(wildcards):
    return canon(stage_block("ttt", wildcards.ttt_id))


def ttt_nproc(wildcards):
    return stage_block("ttt", wildcards.ttt_id)["nproc_per_node"]


def ttt_gpus(wildcards):
    return gpus(stage_block("ttt", wildcards.ttt_id))


def eval_nproc(wildcards):
    return stage_block("eval", wildcards.eval_id)["nproc_per_node"]


def slot_nproc(wildcards):
    return stage_block("slot", wildcards.slot_id)["nproc_per_node"]


def eval_gpus(wildcards):
    return gpus(stage_block("eval", wildcards.eval_id))


def slot_gpus(wildcards):
    return gpus(stage_block("slot", wildcards.slot_id))


def cores_or(fallback):
    """--cores of this run; a run on a cluster executor has none, so `fallback` (set-threads can change it)."""
    try:
        return workflow.cores
    except WorkflowError:
        return fallback


# ---- GPUs of this machine and the preflight (pgolf/doctor.py), checked before the first job.
# The executor is known only once the run starts (not while this file is parsed), so the GPU
# resources below are functions that rules call when their jobs are created.

_MACHINE = {}


def machine_gpus():
    """(GPUs visible here, how they were counted), counted once per run."""
    if "gpus" not in _MACHINE:
        try:
            _MACHINE["gpus"] = pgdoctor.visible_gpus()
        except ValueError as e:
            sys.exit(f"config error: {e}")
    return _MACHINE["gpus"]


def on_cluster():
    """Jobs go to a cluster executor (SLURM): the local GPU count plays no part there."""
    return not workflow.local_exec


def gpus(block):
    """GPUs a job takes: one per process on CUDA; none on the CPU (device cpu, or auto on a machine
    without GPUs). On a cluster, device auto asks the node for its GPUs."""
    if on_cluster():
        return 0 if block["device"] == "cpu" else block["nproc_per_node"]
    return pgdoctor.stage_gpus(block, machine_gpus()[0])


def train_gpus(wildcards):
    return gpus(config["train"])


def preflight(log):
    """Runs as the workflow's onstart, after the DAG is built and before any job (not in a dry run).

    Prints what will run where and stops with one line when this machine cannot run it. Locally,
    the `gpu` resource becomes the GPUs visible here, whatever a profile says (a smaller
    --resources gpu=N is kept), so one-GPU jobs never share a GPU.
    """
    count, source = (0, "") if on_cluster() else machine_gpus()
    checks = pgdoctor.preflight(
        config,
        machine_gpus=count,
        gpu_source=source,
        data_ready=Path(f"results/data/{DATA_ID}/manifest.json").is_file(),
        cluster=on_cluster(),
    )
    print(pgdoctor.format_table(checks), file=sys.stderr, flush=True)
    failed = pgdoctor.first_failure(checks)
    if failed:
        sys.exit(f"preflight: {failed.message}")
    if not on_cluster():
        declared = workflow.scheduler.global_resources.get("gpu", sys.maxsize)
        count = min(declared, count)
        workflow.register_resource("gpu", count)
        # The scheduler checked its resources when it was made: a job asking for more GPUs than
        # this (a sweep variant's eval, say) now fails with snakemake's own message, not a hang.
        workflow.scheduler.global_resources["gpu"] = count


onstart:
    preflight(log)


def seed_stage_files(seed):
    files = {
        "train": f"results/train/{TRAIN_ID}/seed{seed}/train.json",
        "export": f"results/export/{EXPORT_ID}/seed{seed}/export.json",
        "size": f"results/export/{EXPORT_ID}/seed{seed}/size.json",
        "roundtrip": f"results/eval/{EVAL_ID}/seed{seed}/roundtrip.json",
        "sliding": f"results/eval/{EVAL_ID}/seed{seed}/sliding.json",
    }
    for mode in SLOT_MODES:
        files[f"slot_{mode}"] = f"results/slot/{SLOT_ID}/seed{seed}/{mode}.json"
    if TTT_ON:
        files["ttt"] = f"results/ttt/{TTT_ID}/seed{seed}/ttt.json"
    return files


def seed_logs(seed):
    logs = [
        ("train", f"results/logs/train/{TRAIN_ID}/seed{seed}.log"),
        ("export", f"results/logs/export/{EXPORT_ID}/seed{seed}.log"),
        ("size", f"results/logs/size/{EXPORT_ID}/seed{seed}.log"),
        ("eval roundtrip", f"results/logs/eval/{EVAL_ID}/seed{seed}.roundtrip.log"),
        ("eval sliding", f"results/logs/eval/{EVAL_ID}/seed{seed}.sliding.log"),
    ]
    for mode in SLOT_MODES:
        logs.append((f"eval slot {mode}", f"results/logs/slot/{SLOT_ID}/seed{seed}.{mode}.log"))
    if TTT_ON:
        logs.append(("eval ttt", f"results/logs/ttt/{TTT_ID}/seed{seed}.log"))
    return logs


def record_outputs():
    out = {
        "readme": f"{RECORD_DIR}/README.md",
        "submission": f"{RECORD_DIR}/submission.json",
        "code": f"{RECORD_DIR}/train_gpt.py",
        "requirements": f"{RECORD_DIR}/requirements.txt",
        "provenance": f"{RECORD_DIR}/provenance.json",
    }
    out.update({f"log{s}": f"{RECORD_DIR}/train_seed{s}.log" for s in SEEDS})
    return out


def provenance_config():
    """The resolved config as provenance.json states it (the sweep block plays no part in a record)."""
    return {k: v for k, v in config.items() if k != "sweep"}


def record_files():
    return list(record_outputs().values())


def print_record_summary():
    path = Path(RECORD_DIR) / "submission.json"
    if path.is_file():
        sub = json.loads(path.read_text())
        print(f"\nrecord: {RECORD_DIR}\n{pgrecord.summary_table(sub)}\n")


# ---- sweep (workflow/rules/sweep.smk)


def sweep_score_file(variant, seed):
    """The stage output holding a variant's score for one seed (shared with the main eval when equal)."""
    ids = variant["ids"]
    if variant["method"] == "sliding_window":
        return f"results/eval/{ids['eval']}/seed{seed}/sliding.json"
    if variant["method"] == "ttt":
        return f"results/ttt/{ids['ttt']}/seed{seed}/ttt.json"
    return f"results/slot/{ids['slot']}/seed{seed}/{variant['eval']['slot']['mode']}.json"


def sweep_inputs(wildcards):
    return {f"score_{i}_{s}": sweep_score_file(v, s) for i, v in enumerate(SWEEP_VARIANTS) for s in SEEDS}


def sweep_description():
    """What the table is made of: every variant's settings, ids and score files (variants.json)."""
    return [
        {
            "name": v["name"],
            "override": v["override"],
            "settings": v["settings"],
            "method": v["method"],
            "eval": v["eval"],
            "eval_id": v["ids"]["eval"],
            "slot_id": v["ids"]["slot"],
            "ttt_id": v["ids"]["ttt"],
            "score_files": {str(s): sweep_score_file(v, s) for s in SEEDS},
        }
        for v in SWEEP_VARIANTS
    ]


SWEEP_NAME = SWEEP.get("name", "sweep")


def sweep_files(wildcards):
    if not SWEEP_VARIANTS:
        raise WorkflowError("config error: sweep: no variants (add a sweep block with variants or a grid to the config)")
    return [f"results/sweeps/{SWEEP_NAME}/{f}" for f in ("table.csv", "table.md", "val_bpb.png", "variants.json")]


# Bring-your-own-script mode (byo.smk): the run id, limits and record folder of byo.script.
BYO = config.get("byo") or {"script": None}


wildcard_constraints:
    byo_id=r"[0-9a-f]{10}",


BYO_CODE = {
    "run": ["src/pgolf/byo.py", "src/pgolf/data.py"],
    "check": ["src/pgolf/byo_record.py", "src/pgolf/logparse.py", "src/pgolf/size.py", "src/pgolf/validate.py"],
    "record": [
        "src/pgolf/byo_record.py",
        "src/pgolf/record.py",
        "src/pgolf/stats.py",
        "workflow/templates/byo_README.md.j2",
    ],
}


def byo_script(path):
    """The script must exist before the workflow starts: its bytes are part of the run id."""
    if not Path(path).is_file():
        sys.exit(f"config error: byo.script: {path} does not exist (download the record's train_gpt.py first)")
    return path


if BYO["script"]:
    BYO_RUN_BLOCK = {k: BYO[k] for k in ("env", "launcher", "nproc_per_node", "artifact")}
    BYO_ID = short_hash(
        DATA_ID,
        file_digest([byo_script(BYO["script"])]),
        canon(BYO_RUN_BLOCK),
        file_digest(BYO_CODE["run"]),
    )
    BYO_LIMITS = {
        "size_limit_bytes": config["export"]["size_limit_bytes"],
        **{k: BYO[k] for k in ("max_train_seconds", "max_eval_seconds", "enforce_time_limits")},
    }
    BYO_RECORD_DIR = pgrecord.record_dir({**config["record"], "name": BYO["name"]})


def byo_record_outputs():
    out = {
        "readme": f"{BYO_RECORD_DIR}/README.md",
        "submission": f"{BYO_RECORD_DIR}/submission.json",
        "code": f"{BYO_RECORD_DIR}/train_gpt.py",
    }
    out.update({f"log{s}": f"{BYO_RECORD_DIR}/train_seed{s}.log" for s in SEEDS})
    return out

