# Data stage: tokens in the challenge's shard format plus manifest.json (size + sha256 of every file).


if config["data"]["source"] == "corpus":

    rule data_corpus:
        message:
            "Tokenizing {input.corpus}"
        input:
            corpus=config["data"]["corpus"]["path"],
            code=CODE["data"],
        output:
            manifest="results/data/{data_id}/manifest.json",
        params:
            hp=canon(config["data"]["corpus"]),
            vocab_size=config["data"]["corpus"]["vocab_size"],
            val_docs=config["data"]["corpus"]["val_docs"],
            shard_tokens=config["data"]["corpus"]["shard_tokens"],
        log:
            "results/logs/data/{data_id}.log",
        conda:
            ENV
        shell:
            "pgolf data-build --corpus {input.corpus} --out-dir $(dirname {output.manifest})"
            " --vocab-size {params.vocab_size} --val-docs {params.val_docs}"
            " --shard-tokens {params.shard_tokens} > {log} 2>&1"

else:

    rule data_hub:
        message:
            "Downloading {params.repo}@{params.revision} ({params.train_shards} train shards)"
        localrule: True
        retries: 3
        input:
            code=CODE["data"],
        output:
            manifest="results/data/{data_id}/manifest.json",
        params:
            hp=canon(config["data"]["hub"]),
            repo=config["data"]["hub"]["repo_id"],
            revision=config["data"]["hub"]["revision"],
            root=config["data"]["hub"]["remote_root"],
            variant=config["data"]["hub"]["variant"],
            train_shards=config["data"]["hub"]["train_shards"],
        log:
            "results/logs/data/{data_id}.log",
        conda:
            ENV
        shell:
            "pgolf data-hub --out-dir $(dirname {output.manifest}) --repo-id {params.repo}"
            " --revision {params.revision} --remote-root '{params.root}' --variant {params.variant}"
            " --train-shards {params.train_shards} > {log} 2>&1"


rule stage_config:
    message:
        "Writing the {wildcards.stage} settings"
    localrule: True
    output:
        "results/{stage}/{stage_id}/config.json",
    params:
        hp=stage_hparams,
    log:
        "results/logs/config/{stage}_{stage_id}.log",
    conda:
        ENV
    run:
        Path(output[0]).write_text(params.hp + "\n")
