# Record stage: the single train_gpt.py, then the record folder from the stage outputs.
# provenance.json (git state, pip freeze, versions) is gathered by the record job alone, so a dirty
# tree or a changed package reruns no training.


rule bundle_code:
    message:
        "Generating train_gpt.py"
    localrule: True
    input:
        code=CODE["bundle"],
    output:
        code="results/code/{code_id}/train_gpt.py",
        settings="results/code/{code_id}/settings.json",
    params:
        hp=canon(RECORD_SETTINGS),
        # The record modules of this workflow (the ones CODE["bundle"] holds), not the installed package's.
        src=lambda w, input: Path(next(f for f in input.code if f.startswith("workflow/record/"))).parent,
    log:
        "results/logs/bundle/{code_id}.log",
    conda:
        ENV
    shell:
        "printf '%s\\n' {params.hp:q} > {output.settings} &&"
        " pgolf bundle --config {output.settings} --src {params.src} --out {output.code} > {log} 2>&1"


# The README compares this run's settings with the base's (PR #1313 as the real preset runs it).
# Passed as a parameter, not as input files: a comment or key order in config.yaml reruns nothing.
BASE_SETTINGS = pgrecord.base_settings()


rule record:
    message:
        f"Assembling {RECORD_DIR}"
    localrule: True
    input:
        unpack(lambda w: {f"{k}_{s}": v for s in SEEDS for k, v in seed_stage_files(s).items()}),
        logs=[p for s in SEEDS for _, p in seed_logs(s)],
        code=f"results/code/{CODE_ID}/train_gpt.py",
        tool=CODE["record"],
        schema="workflow/schemas/submission.schema.json",
        manifest=f"results/data/{DATA_ID}/manifest.json",
    output:
        **record_outputs(),
        loss_plot=report(
            f"{RECORD_DIR}/train_loss.png",
            caption="../report/train_loss.rst",
            category="Record",
            labels={"plot": "training loss per seed"},
        ),
        score_plot=report(
            f"{RECORD_DIR}/seed_scores.png",
            caption="../report/seed_scores.rst",
            category="Record",
            labels={"plot": "scores per seed"},
        ),
    params:
        record=canon({**config["record"], "date": RECORD_DATE}),
        eval=canon(config["eval"]),
        train_budget=config["export"]["gptq"]["train_budget_seconds"],
        base=canon(BASE_SETTINGS),
        config=canon(provenance_config()),
        seed_logs={s: seed_logs(s) for s in SEEDS},
    log:
        "results/logs/record/record.log",
    conda:
        ENV
    script:
        "../scripts/assemble_record.py"
