# Bring-your-own-script mode: an existing record's train_gpt.py, run unchanged once per seed
# (it trains, exports and evaluates by itself), then checked and assembled into its own record.
#   snakemake --cores all byo --configfile config/byo-pr1313.yaml
# The run is keyed by byo_id = hash(data id, the bytes of the script and its sibling code files, env,
# launcher, processes, artifact name, attention fallback, the byo code): changing any of them adds a
# new results/byo/<byo_id>/ and keeps the old runs. Limits and the record block only rerun the checks
# and the record (byo_setup.smk).

import shlex

if BYO["script"]:
    if BYO_DATA:

        rule byo_data:
            message:
                "Running {input.prepare} on {input.docs} (the record's own data preparation)"
            input:
                docs=config["data"]["docs"]["path"],
                prepare=BYO_DATA["prepare"],
                code=BYO_CODE["data"],
            output:
                manifest=BYO_MANIFEST,
            params:
                hp=canon(BYO_DATA),
                val_docs=BYO_DATA["val_docs"],
                vocab=BYO_DATA["vocab_size"],
                transform=BYO_DATA.get("transform", "lossless_caps_caseops_v1"),
                tokenizer=f"--tokenizer-model {shlex.quote(BYO_DATA['tokenizer_model'])}" if BYO_DATA.get("tokenizer_model") else "",
            log:
                f"results/logs/byo_data/{BYO_DATA_ID}.log",
            conda:
                ENV
            shell:
                "python -m pgolf.byo_data --prepare {input.prepare:q} --docs {input.docs:q} --out-dir $(dirname {output.manifest})"
                " --val-docs {params.val_docs} --vocab-size {params.vocab} --transform {params.transform} {params.tokenizer} > {log} 2>&1"

    rule byo_run:
        message:
            "Running {input.script} for seed {wildcards.seed} ({params.launcher}, {params.nproc} process(es))"
        input:
            manifest=BYO_MANIFEST,
            script=BYO["script"],
            siblings=BYO_CODE_FILES[1:],
            code=BYO_CODE["run"],
        output:
            log="results/byo/{byo_id}/seed{seed}/train.log",
            artifact=f"results/byo/{{byo_id}}/seed{{seed}}/{BYO['artifact']}",
            run="results/byo/{byo_id}/seed{seed}/run.json",
        params:
            hp=canon(BYO_RUN_BLOCK),
            launcher=BYO["launcher"],
            nproc=BYO["nproc_per_node"],
        log:
            "results/logs/byo/{byo_id}/seed{seed}.log",
        benchmark:
            "results/benchmarks/byo/{byo_id}/seed{seed}.tsv"
        threads: 1
        resources:
            gpu=BYO["gpus"],
        conda:
            ENV
        shell:
            "pgolf data-verify {input.manifest} > {log} 2>&1 &&"
            " pgolf job --label 'byo seed {wildcards.seed}' --pidfile {log}.pid --writes byo --"
            " pgolf byo-run --script {input.script:q} --manifest {input.manifest} --settings {params.hp:q}"
            " --seed {wildcards.seed} --out-dir $(dirname {output.log}) >> {log} 2>&1"

    rule byo_check:
        message:
            "Checking the byo run of seed {wildcards.seed}: final score, size, times"
        localrule: True
        input:
            log="results/byo/{byo_id}/seed{seed}/train.log",
            artifact=f"results/byo/{{byo_id}}/seed{{seed}}/{BYO['artifact']}",
            script=BYO["script"],
            code=BYO_CODE["check"],
        output:
            "results/byo/{byo_id}/seed{seed}/check.json",
        params:
            limits=canon(BYO_LIMITS),
        log:
            "results/logs/byo_check/{byo_id}/seed{seed}.log",
        conda:
            ENV
        shell:
            "pgolf byo-check --log {input.log} --artifact {input.artifact} --script {input.script:q}"
            " --limits {params.limits:q} --out {output} > {log} 2>&1"

    rule byo_record:
        message:
            f"Assembling {BYO_RECORD_DIR}"
        localrule: True
        input:
            checks=expand("results/byo/{byo_id}/seed{seed}/check.json", byo_id=BYO_ID, seed=SEEDS),
            runs=expand("results/byo/{byo_id}/seed{seed}/run.json", byo_id=BYO_ID, seed=SEEDS),
            logs=expand("results/byo/{byo_id}/seed{seed}/train.log", byo_id=BYO_ID, seed=SEEDS),
            script=BYO["script"],
            code=BYO_CODE["record"],
            schema="workflow/schemas/submission.schema.json",
        output:
            **byo_record_outputs(),
        params:
            record=canon({**config["record"], "date": BYO_RECORD["date"]}),
            byo=canon(BYO),
        log:
            "results/logs/byo_record/byo_record.log",
        conda:
            ENV
        script:
            "../scripts/assemble_byo_record.py"

    rule byo:
        input:
            list(byo_record_outputs().values()),

else:

    rule byo:
        message:
            "byo.script is not set"
        localrule: True
        log:
            "results/logs/byo_record/byo_off.log",
        conda:
            ENV
        shell:
            "echo 'config error: byo.script is null: set it to the train_gpt.py to run"
            " (e.g. --configfile config/byo-pr1313.yaml)' | tee {log} >&2; exit 2"
