# Bring-your-own-script mode (byo.smk): the run id, limits and record folder of byo.script.
BYO = config.get("byo") or {"script": None}


# The code of each byo stage, derived like every stage's (ids.smk, pgolf.codegraph.STAGE_ENTRIES).
BYO_CODE = {"run": CODE["byo_run"], "check": CODE["byo_check"], "record": CODE["byo_record"]}


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
    # Dated by the day its runs started (run.json), like the record folder (targets.smk).
    BYO_RECORD = {
        **config["record"],
        "name": BYO["name"],
        "date": pgrecord.run_date(config["record"], [f"results/byo/{BYO_ID}/seed{s}/run.json" for s in SEEDS]),
    }
    BYO_RECORD_DIR = pgrecord.record_dir(BYO_RECORD)


def byo_record_outputs():
    out = {
        "readme": f"{BYO_RECORD_DIR}/README.md",
        "submission": f"{BYO_RECORD_DIR}/submission.json",
        "code": f"{BYO_RECORD_DIR}/train_gpt.py",
    }
    out.update({f"log{s}": f"{BYO_RECORD_DIR}/train_seed{s}.log" for s in SEEDS})
    return out
