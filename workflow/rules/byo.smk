# Bring-your-own-script mode: an existing record's train_gpt.py, run unchanged once per seed
# (it trains, exports and evaluates by itself), then checked and assembled into its own record.
#   snakemake --cores all byo --configfile config/byo-pr1313.yaml
# The run is keyed by byo_id = hash(data id, the script's bytes, env, launcher, processes, artifact
# name): changing any of them adds a new results/byo/<byo_id>/ and keeps the old runs. Limits and
# the record block only rerun the checks and the record.

BYO = config.get("byo") or {"script": None}


wildcard_constraints:
    byo_id=r"[0-9a-f]{10}",


BYO_CODE = {
    "run": ["src/pgolf/byo.py", "src/pgolf/data.py"],
    "check": ["src/pgolf/byo_record.py", "src/pgolf/logparse.py", "src/pgolf/size.py", "src/pgolf/validate.py"],
    "record": [
        "src/pgolf/byo_record.py",
        "src/pgolf/record.py",
        "src/pgolf/stats.py",
        "workflow/templates/byo_README.md.j2",
    ],
}


if BYO["script"]:
    BYO_RUN_BLOCK = {k: BYO[k] for k in ("env", "launcher", "nproc_per_node", "artifact")}
    BYO_ID = short_hash(
        DATA_ID,
        file_digest([_existing("byo.script", BYO["script"])]),
        canon(BYO_RUN_BLOCK),
        file_digest(BYO_CODE["run"]),
    )
    BYO_LIMITS = {
        "size_limit_bytes": config["export"]["size_limit_bytes"],
        **{k: BYO[k] for k in ("max_train_seconds", "max_eval_seconds", "enforce_time_limits")},
    }
    BYO_RECORD_DIR = pgrecord.record_dir({**config["record"], "name": BYO["name"]})

    def byo_seed_file(name, seed="{seed}"):
        return f"results/byo/{BYO_ID}/seed{seed}/{name}"

    def byo_record_outputs():
        out = {
            "readme": f"{BYO_RECORD_DIR}/README.md",
            "submission": f"{BYO_RECORD_DIR}/submission.json",
            "code": f"{BYO_RECORD_DIR}/train_gpt.py",
        }
        out.update({f"log{s}": f"{BYO_RECORD_DIR}/train_seed{s}.log" for s in SEEDS})
        return out

    rule byo_run:
        message:
            "Running {input.script} for seed {wildcards.seed} ({params.launcher}, {params.nproc} process(es))"
        input:
            manifest=f"results/data/{DATA_ID}/manifest.json",
            script=BYO["script"],
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
            checks=[byo_seed_file("check.json", s) for s in SEEDS],
            runs=[byo_seed_file("run.json", s) for s in SEEDS],
            logs=[byo_seed_file("train.log", s) for s in SEEDS],
            script=BYO["script"],
            code=BYO_CODE["record"],
            schema="workflow/schemas/submission.schema.json",
        output:
            **byo_record_outputs(),
        params:
            record=canon(config["record"]),
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
