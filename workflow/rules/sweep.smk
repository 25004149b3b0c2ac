# Sweep stage: eval/SLOT variants on the exported checkpoints of every seed, and their table.
# `snakemake sweep` builds it; `rule all` does not (the record needs none of it).
# Each variant's evals are the eval/eval_slot rules' jobs under the variant's own ids (common.smk).


rule sweep_table:
    message:
        "Sweep {wildcards.sweep}: table of {params.n} variant(s) x {params.n_seeds} seed(s)"
    localrule: True
    wildcard_constraints:
        sweep=re.escape(SWEEP_NAME),
    input:
        unpack(sweep_inputs),
        tool=CODE["sweep"],
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
