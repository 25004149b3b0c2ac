# Train stage: one torchrun job per seed; writes the EMA weights and train.json.


rule train:
    message:
        "Training seed {wildcards.seed} ({params.nproc} process(es))"
    input:
        manifest=f"results/data/{DATA_ID}/manifest.json",
        hp="results/train/{train_id}/config.json",
        code=CODE["train"],
    output:
        model="results/train/{train_id}/seed{seed}/model.pt",
        metrics="results/train/{train_id}/seed{seed}/train.json",
    params:
        cache=COMPILE_CACHE,
        hp=canon(config["train"]),
        nproc=config["train"]["nproc_per_node"],
    log:
        "results/logs/train/{train_id}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train/{train_id}/seed{seed}.tsv"
    threads: 1
    resources:
        gpu=train_gpus,
    conda:
        ENV
    shell:
        "pgolf data-verify {input.manifest} > {log} 2>&1 &&"
        " {params.cache}pgolf job --label 'train seed {wildcards.seed}' --pidfile {log}.pid --log-append {log}"
        " --clean-dir $(dirname {output.model}) --writes train --hparams {input.hp} --manifest {input.manifest} --"
        " torchrun --standalone --nproc_per_node {params.nproc} workflow/record/train.py"
        " --hparams {input.hp} --data {input.manifest} --seed {wildcards.seed}"
        " --out-dir $(dirname {output.model})"
