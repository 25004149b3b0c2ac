# Sweep stage: eval/SLOT variants on the exported checkpoints of every seed, and their table.
# `snakemake sweep` builds it; `rule all` does not (the record needs none of it).
# Each variant's evals are the eval/eval_slot rules' jobs under the variant's own ids (common.smk).


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



rule sweep_table:
    message:
        "Sweep {wildcards.sweep}: table of {params.n} variant(s) x {params.n_seeds} seed(s)"
    localrule: True
    wildcard_constraints:
        sweep=re.escape(SWEEP_NAME),
    input:
        unpack(sweep_inputs),
        tool=["src/pgolf/sweep.py", "src/pgolf/plots.py"],
    output:
        csv=report(
            "results/sweeps/{sweep}/table.csv",
            caption="../report/sweep_table.rst",
            category="Sweep",
            labels={"item": "table per variant"},
        ),
        md="results/sweeps/{sweep}/table.md",
        plot=report(
            "results/sweeps/{sweep}/val_bpb.png",
            caption="../report/sweep_val_bpb.rst",
            category="Sweep",
            labels={"item": "val_bpb per variant (plot)"},
        ),
        variants="results/sweeps/{sweep}/variants.json",
    params:
        variants=canon(sweep_description()),
        seeds=SEEDS,
        n=len(SWEEP_VARIANTS),
        n_seeds=len(SEEDS),
    log:
        "results/logs/sweep/{sweep}.log",
    conda:
        ENV
    script:
        "../scripts/sweep_table.py"


# The named target: `snakemake sweep --cores all`.
rule sweep:
    input:
        sweep_files,
