# Record stage: the single train_gpt.py, then the record folder from the stage outputs.


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
    log:
        "results/logs/bundle/{code_id}.log",
    conda:
        ENV
    shell:
        "printf '%s\\n' {params.hp:q} > {output.settings} &&"
        " pgolf bundle --config {output.settings} --out {output.code} > {log} 2>&1"


rule record:
    message:
        f"Assembling {RECORD_DIR}"
    localrule: True
    input:
        unpack(lambda w: {f"{k}_{s}": v for s in SEEDS for k, v in seed_stage_files(s).items()}),
        logs=[p for s in SEEDS for _, p in seed_logs(s)],
        code=f"results/code/{CODE_ID}/train_gpt.py",
        tool=CODE["record"],
    output:
        **record_outputs(),
    params:
        record=canon(config["record"]),
        eval=canon(config["eval"]),
        seed_logs={s: seed_logs(s) for s in SEEDS},
    log:
        "results/logs/record/record.log",
    conda:
        ENV
    script:
        "../scripts/assemble_record.py"
