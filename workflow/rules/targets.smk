# Output paths: one table of a seed's stage outputs and logs, and the record folder's files.
#
# The record folder is named by the day its run trained (pgolf.record.run_date: the earliest start
# of this run's trainings, today before any has run) or record.date, never by the clock alone:
# an unchanged finished run plans nothing on a later day.

RECORD_DATE = pgrecord.run_date(config["record"], [f"results/train/{TRAIN_ID}/seed{s}/train.json" for s in SEEDS])
RECORD_DIR = pgrecord.record_dir(config["record"], RECORD_DATE)

# name: (stage output, stage log) per seed, with {seed} and the ids filled in by seed_paths.
SEED_PATHS = {
    "train": ("results/train/{TRAIN_ID}/seed{seed}/train.json", "results/logs/train/{TRAIN_ID}/seed{seed}.log"),
    "export": ("results/export/{EXPORT_ID}/seed{seed}/export.json", "results/logs/export/{EXPORT_ID}/seed{seed}.log"),
    "size": ("results/export/{EXPORT_ID}/seed{seed}/size.json", "results/logs/size/{EXPORT_ID}/seed{seed}.log"),
    "roundtrip": ("results/eval/{EVAL_ID}/seed{seed}/roundtrip.json", "results/logs/eval/{EVAL_ID}/seed{seed}.roundtrip.log"),
    "sliding": ("results/eval/{EVAL_ID}/seed{seed}/sliding.json", "results/logs/eval/{EVAL_ID}/seed{seed}.sliding.log"),
    "slot_{mode}": ("results/slot/{SLOT_ID}/seed{seed}/{mode}.json", "results/logs/slot/{SLOT_ID}/seed{seed}.{mode}.log"),
    "ttt": ("results/ttt/{TTT_ID}/seed{seed}/ttt.json", "results/logs/ttt/{TTT_ID}/seed{seed}.log"),
    "lora_ttt": ("results/lora_ttt/{LORA_TTT_ID}/seed{seed}/lora_ttt.json", "results/logs/lora_ttt/{LORA_TTT_ID}/seed{seed}.log"),
    "phased_ttt": ("results/phased_ttt/{PHASED_TTT_ID}/seed{seed}/phased_ttt.json", "results/logs/phased_ttt/{PHASED_TTT_ID}/seed{seed}.log"),
}
# The record's log sections, by the same names.
LOG_TITLES = {"train": "train", "export": "export", "size": "size", "roundtrip": "eval roundtrip",
              "sliding": "eval sliding", "slot_{mode}": "eval slot {mode}", "ttt": "eval ttt",
              "lora_ttt": "eval lora_ttt", "phased_ttt": "eval phased_ttt"}


def seed_paths(seed):
    """name -> (output, log, log title) of every stage this config runs for one seed, in stage order."""
    ids = {"TRAIN_ID": TRAIN_ID, "EXPORT_ID": EXPORT_ID, "EVAL_ID": EVAL_ID, "SLOT_ID": SLOT_ID, "TTT_ID": TTT_ID,
           "LORA_TTT_ID": LORA_TTT_ID, "PHASED_TTT_ID": PHASED_TTT_ID}
    out = {}
    for name, (output, log) in SEED_PATHS.items():
        modes = SLOT_MODES if "{mode}" in name else [None]
        if name == "ttt" and not TTT_ON or name in DOC_TTT_ON and not DOC_TTT_ON[name]:
            continue
        for mode in modes:
            fill = dict(ids, seed=seed, mode=mode)
            out[name.format(mode=mode)] = (output.format(**fill), log.format(**fill), LOG_TITLES[name].format(mode=mode))
    return out


def seed_stage_files(seed):
    return {name: output for name, (output, _, _) in seed_paths(seed).items()}


def seed_logs(seed):
    return [(title, log) for _, log, title in seed_paths(seed).values()]


# Captions of the record's report items (an absolute path: record_outputs() is called from other rule files).
REPORT_DIR = Path(workflow.basedir) / "workflow" / "report"


def record_outputs():
    """The record folder's files; the README (with its per-seed score table) and submission.json
    also go into `snakemake --report`."""
    out = {
        "readme": report(f"{RECORD_DIR}/README.md", caption=f"{REPORT_DIR}/record_readme.rst", category="Record", labels={"file": "README.md (per-seed scores)"}),
        "submission": report(f"{RECORD_DIR}/submission.json", caption=f"{REPORT_DIR}/submission.rst", category="Record", labels={"file": "submission.json"}),
        "code": f"{RECORD_DIR}/train_gpt.py",
        "requirements": f"{RECORD_DIR}/requirements.txt",
        "provenance": f"{RECORD_DIR}/provenance.json",
    }
    out.update({f"log{s}": f"{RECORD_DIR}/train_seed{s}.log" for s in SEEDS})
    return out


def record_files():
    return list(record_outputs().values())


def provenance_config():
    """The resolved config as provenance.json states it (the sweep block plays no part in a record)."""
    return {k: v for k, v in config.items() if k != "sweep"}


def print_record_summary():
    path = Path(RECORD_DIR) / "submission.json"
    if path.is_file():
        sub = json.loads(path.read_text())
        print(f"\nrecord: {RECORD_DIR}\n{pgrecord.summary_table(sub)}\n")
