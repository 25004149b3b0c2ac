# Sweep helpers (sweep.smk): each variant's score files and the table's description.
# The variants and their stage ids are resolved in ids.smk.


def sweep_score_file(variant, seed):
    """The stage output holding a variant's score for one seed (shared with the main eval when equal)."""
    ids = variant["ids"]
    if variant["method"] == "sliding_window":
        return f"results/eval/{ids['eval']}/seed{seed}/sliding.json"
    if variant["method"] == "ttt":
        return f"results/ttt/{ids['ttt']}/seed{seed}/ttt.json"
    if variant["method"] in ("lora_ttt", "phased_ttt"):
        return f"results/{variant['method']}/{ids[variant['method']]}/seed{seed}/{variant['method']}.json"
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
            "lora_ttt_id": v["ids"]["lora_ttt"],
            "phased_ttt_id": v["ids"]["phased_ttt"],
            "score_files": {str(s): sweep_score_file(v, s) for s in SEEDS},
        }
        for v in SWEEP_VARIANTS
    ]


SWEEP_NAME = SWEEP.get("name", "sweep")


def sweep_files(wildcards):
    if not SWEEP_VARIANTS:
        raise WorkflowError("config error: sweep: no variants (add a sweep block with variants or a grid to the config)")
    return [f"results/sweeps/{SWEEP_NAME}/{f}" for f in ("table.csv", "table.md", "val_bpb.png", "variants.json")]
