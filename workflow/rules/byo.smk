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


# Bring-your-own-script mode: an existing record's train_gpt.py, run unchanged once per seed
# (it trains, exports and evaluates by itself), then checked and assembled into its own record.
#   snakemake --cores all byo --configfile config/byo-pr1313.yaml
# The run is keyed by byo_id = hash(data id, the script's bytes, env, launcher, processes, artifact
# name): changing any of them adds a new results/byo/<byo_id>/ and keeps the old runs. Limits and
# the record block only rerun the checks and the record.

if BYO["script"]:

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
