# Bring-your-own-script mode (byo.smk): the run id, data, limits and record folder of byo.script,
# and the preflight of what the script needs (modules, programs, data), before any job.
from pgolf.byo_code import code_files as byo_code_files
from pgolf.byo_preflight import check as byo_preflight_check, report as byo_preflight_report

BYO = config.get("byo") or {"script": None}


# The code of each byo stage, derived like every stage's (ids.smk, pgolf.codegraph.STAGE_ENTRIES).
BYO_CODE = {"data": CODE["byo_data"], "run": CODE["byo_run"], "check": CODE["byo_check"], "record": CODE["byo_record"]}


def byo_script(path):
    """The script must exist before the workflow starts: its bytes are part of the run id."""
    if not Path(path).is_file():
        sys.exit(f"config error: byo.script: {path} does not exist (download the record's train_gpt.py first)")
    return path


if BYO["script"]:
    # The script and every file of its folder it imports, reads or execs (they ship with it).
    BYO_CODE_FILES = [str(p) for p in byo_code_files(byo_script(BYO["script"]))]
    BYO_DATA = BYO.get("data") or None
    _byo_text, _byo_ok = byo_preflight_report(byo_preflight_check(BYO, BYO_DATA["vocab_size"] if BYO_DATA else None))
    if _byo_text:
        print(_byo_text, file=sys.stderr)
    if not _byo_ok:
        sys.exit("config error: byo preflight failed (the FAIL lines above)")

    if BYO_DATA:  # the record's own data preparation (e.g. CaseOps) on the data stage's docs
        BYO_DATA_ID = short_hash(
            canon(BYO_DATA),
            file_digest([config["data"]["docs"]["path"], BYO_DATA["prepare"], *([BYO_DATA["tokenizer_model"]] if BYO_DATA.get("tokenizer_model") else [])]),
            file_digest(BYO_CODE["data"]),
        )
        BYO_MANIFEST = f"results/byo_data/{BYO_DATA_ID}/manifest.json"
    else:
        BYO_DATA_ID = DATA_ID
        BYO_MANIFEST = f"results/data/{DATA_ID}/manifest.json"

    BYO_RUN_BLOCK = {k: BYO.get(k, "none") for k in ("env", "launcher", "nproc_per_node", "artifact", "attention_fallback")}
    BYO_ID = short_hash(
        BYO_DATA_ID,
        file_digest(BYO_CODE_FILES),
        canon(BYO_RUN_BLOCK),
        file_digest(BYO_CODE["run"]),
    )
    BYO_LIMITS = {
        "size_limit_bytes": config["export"]["size_limit_bytes"],
        "code_size": BYO.get("code_size", "raw"),
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
