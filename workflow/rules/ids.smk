# What keys each stage: the code it runs, its settings, and the id of what it consumes.
#
# Every code file a stage runs is an input of its rules (Snakemake only tracks inputs) and part of
# its id, so a code edit reruns exactly the stages that execute that code. The files are derived
# from the code (pgolf.codegraph: the closure of each stage's entry under imports), never listed
# by hand; pgolf.codegraph.STAGE_ENTRIES names each stage's entry (what its rules run).

CODE = codegraph.stage_files(Path(workflow.basedir))
CODE["data"] = CODE[f"data_{config['data']['source']}"]


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
        if block.get("transform") is None:  # CaseOps off: null hashes like the absent key
            block.pop("transform", None)
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
    **pgconfig.stage_blocks(config["eval"]),
}
DATA_ID = short_hash(canon(data_block()), file_digest(CODE["data"]))
TRAIN_ID = short_hash(DATA_ID, canon(STAGE_BLOCKS["train"]), file_digest(CODE["train"]))
EXPORT_ID = short_hash(TRAIN_ID, canon(STAGE_BLOCKS["export"]), file_digest(CODE["export"]))
EVAL_STAGES = ("eval", "slot", "ttt", "lora_ttt", "phased_ttt")
CODE["lora_ttt"] = CODE["phased_ttt"] = CODE["doc_ttt"]  # one module runs both per-document evals


def eval_stage_ids(blocks):
    """Eval, SLOT, TTT and per-document TTT ids of one eval block's stage settings, on this run's exported checkpoints."""
    return {stage: short_hash(EXPORT_ID, canon(blocks[stage]), file_digest(CODE[stage])) for stage in EVAL_STAGES}


EVAL_ID, SLOT_ID, TTT_ID, LORA_TTT_ID, PHASED_TTT_ID = eval_stage_ids(STAGE_BLOCKS).values()
RECORD_SETTINGS = {k: config[k] for k in ("train", "export", "eval")}
CODE_ID = short_hash(canon(RECORD_SETTINGS), file_digest(CODE["bundle"]))
STAGE_IDS = {"train": TRAIN_ID, "export": EXPORT_ID, "eval": EVAL_ID, "slot": SLOT_ID, "ttt": TTT_ID,
             "lora_ttt": LORA_TTT_ID, "phased_ttt": PHASED_TTT_ID}
SLOT_MODES = (
    [config["eval"]["slot"]["mode"], *config["eval"]["slot"]["compare_modes"]] if config["eval"]["slot"]["enabled"] else []
)
TTT_ON = config["eval"]["ttt"]["enabled"]
DOC_TTT_ON = {m: config["eval"].get(m, {}).get("enabled", False) for m in ("lora_ttt", "phased_ttt")}


# Sweep variants: eval settings scored on the same exported checkpoints (workflow/rules/sweep.smk).
SWEEP = config.get("sweep") or {}
SWEEP_VARIANTS = pgconfig.resolve_variants(config)
for _variant in SWEEP_VARIANTS:
    _variant["blocks"] = pgconfig.stage_blocks(_variant["eval"])
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


def stage_setting(stage, what):
    """A rule's accessor of its stage settings, by the id in its wildcards: `what` is hparams (the
    block as canonical JSON), nproc (processes per job) or gpus (GPUs a job takes). stage None: the
    stage is the rule's {stage} wildcard (stage_config)."""

    def get(wildcards):
        name = stage or wildcards.stage
        block = stage_block(name, getattr(wildcards, "stage_id" if stage is None else f"{name}_id"))
        if what == "hparams":
            return canon(block)
        if what == "nproc":
            return block["nproc_per_node"]
        return gpus(block)

    get.__name__ = f"{stage or 'stage'}_{what}"
    return get
