# Export stage: quantize + compress the EMA weights, then count code + model bytes against the limit.


rule quantize:
    message:
        "Quantizing seed {wildcards.seed}"
    input:
        model=f"results/train/{TRAIN_ID}/seed{{seed}}/model.pt",
        hp="results/export/{export_id}/config.json",
        # GPTQ calibrates on the train shards (when export.gptq.enabled; the model id covers the data already).
        manifest=f"results/data/{DATA_ID}/manifest.json",
        code=CODE["export"],
    output:
        artifact="results/export/{export_id}/seed{seed}/final_model.ptz",
        metrics="results/export/{export_id}/seed{seed}/export.json",
    params:
        hp=canon(STAGE_BLOCKS["export"]),
    log:
        "results/logs/export/{export_id}/seed{seed}.log",
    benchmark:
        "results/benchmarks/export/{export_id}/seed{seed}.tsv"
    threads: 1
    conda:
        ENV
    shell:
        "python workflow/record/quantize.py --hparams {input.hp} --model {input.model}"
        " --data {input.manifest} --out {output.artifact} --metrics {output.metrics} > {log} 2>&1"


rule size_gate:
    message:
        "Size check, seed {wildcards.seed}"
    input:
        artifact="results/export/{export_id}/seed{seed}/final_model.ptz",
        code=f"results/code/{CODE_ID}/train_gpt.py",
        tool=CODE["size"],
    output:
        "results/export/{export_id}/seed{seed}/size.json",
    params:
        limit=config["export"]["size_limit_bytes"],
        compressor=config["export"]["compressor"],
        label=f"int{config['export']['matrix_bits']}+{config['export']['compressor']}",
        convention=config["export"].get("code_size_convention", "raw"),
    log:
        "results/logs/size/{export_id}/seed{seed}.log",
    threads: 1
    conda:
        ENV
    shell:
        "pgolf size-gate --code {input.code} --model {input.artifact} --limit {params.limit}"
        " --compressor {params.compressor} --label {params.label} --code-size-convention {params.convention}"
        " --out {output} > {log} 2>&1"
