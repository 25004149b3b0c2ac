# Verify target (`snakemake verify`): each seed's record folder, copied to an empty folder, is run
# from there with its own train_gpt.py on the embedded settings and seed, and must give the staged
# artifact bytes and scores exactly (CPU). Not part of `all`: it costs one more run per seed.


rule verify_seed:
    message:
        "Verifying the record script, seed {wildcards.seed}"
    input:
        record=record_files(),
        manifest=f"results/data/{DATA_ID}/manifest.json",
        size_json=lambda w: seed_stage_files(w.seed)["size"],
        tool=CODE["verify"],
    output:
        "results/verify/{code_id}/seed{seed}/verify.json",
    params:
        folder=lambda w, input: Path(input.record[0]).parent,
    log:
        "results/logs/verify/{code_id}/seed{seed}.log",
    threads: 1
    resources:
        gpu=train_gpus,
    conda:
        ENV
    shell:
        "pgolf verify-record --record {params.folder} --data {input.manifest} --seed {wildcards.seed}"
        " --size {input.size_json} --out {output} --keep-log-dir $(dirname {output}) 2>&1 | tee {log}"


rule verify:
    input:
        expand("results/verify/{code_id}/seed{seed}/verify.json", code_id=CODE_ID, seed=SEEDS),
