# Data stage: tokens in the challenge's shard format plus manifest.json (size + sha256 of every file).
# One rule per data.source; each writes results/data/<data_id>/manifest.json (pgolf-data/1),
# the only thing the later stages read.

import shlex

DATA = config["data"]


if DATA["source"] == "docs":

    rule data_docs:
        message:
            "Tokenizing {input.docs} ({threads} processes)"
        input:
            docs=DATA["docs"]["path"],
            model=[DATA["docs"]["tokenizer"]["model"]] if DATA["docs"]["tokenizer"]["model"] else [],
            code=CODE["data_docs"],
        output:
            manifest="results/data/{data_id}/manifest.json",
        params:
            hp=canon(DATA["docs"]),
            num_val_docs=DATA["docs"]["num_val_docs"],
            shard_tokens=DATA["docs"]["shard_tokens"],
            tokenizer=(
                f"--tokenizer-model {shlex.quote(DATA['docs']['tokenizer']['model'])} --vocab-size {DATA['docs']['tokenizer']['vocab_size']}"
                if DATA["docs"]["tokenizer"]["model"]
                else f"--vocab-size {DATA['docs']['tokenizer']['vocab_size']} --train-docs {DATA['docs']['tokenizer']['train_docs']}"
            ),
            # CaseOps (docs/caseops.md): absent or null = off
            transform=f" --transform {DATA['docs']['transform']}" if DATA["docs"].get("transform") else "",
        threads: cores_or(8)
        log:
            "results/logs/data/{data_id}.log",
        conda:
            ENV
        shell:
            "pgolf data-docs --docs {input.docs:q} --out-dir $(dirname {output.manifest})"
            " --num-val-docs {params.num_val_docs} --shard-tokens {params.shard_tokens}"
            " {params.tokenizer} --workers {threads}{params.transform} > {log} 2>&1"

elif DATA["source"] == "hub":

    # Retries live inside `pgolf data-hub` (bounded, per file, resuming), so none here.
    rule data_hub:
        message:
            "Downloading {params.repo}@{params.revision} ({params.train_shards} train shards)"
        localrule: True
        input:
            code=CODE["data_hub"],
        output:
            manifest="results/data/{data_id}/manifest.json",
        params:
            hp=canon(DATA["hub"]),
            repo=DATA["hub"]["repo_id"],
            revision=DATA["hub"]["revision"],
            root=DATA["hub"]["remote_root"],
            variant=DATA["hub"]["variant"],
            train_shards=DATA["hub"]["train_shards"],
        log:
            "results/logs/data/{data_id}.log",
        conda:
            ENV
        shell:
            "pgolf data-hub --out-dir $(dirname {output.manifest}) --repo-id {params.repo}"
            " --revision {params.revision} --remote-root '{params.root}' --variant {params.variant}"
            " --train-shards {params.train_shards} > {log} 2>&1"

else:

    # The user's directory is read in place: the manifest names it as its root.
    rule data_local:
        message:
            "Checking the dataset in {params.path}"
        localrule: True
        input:
            code=CODE["data_local"],
        output:
            manifest="results/data/{data_id}/manifest.json",
        params:
            hp=canon(DATA["local"]),
            path=DATA["local"]["path"],
            tokenizer=DATA["local"]["tokenizer"],
            train_shards=DATA["local"]["train_shards"],
        log:
            "results/logs/data/{data_id}.log",
        conda:
            ENV
        shell:
            "pgolf data-local --path {params.path:q} --tokenizer {params.tokenizer:q}"
            " --train-shards {params.train_shards} --out-dir $(dirname {output.manifest}) > {log} 2>&1"


rule stage_config:
    message:
        "Writing the {wildcards.stage} settings"
    localrule: True
    output:
        "results/{stage}/{stage_id}/config.json",
    params:
        hp=stage_setting(None, "hparams"),
    log:
        "results/logs/config/{stage}_{stage_id}.log",
    conda:
        ENV
    run:
        Path(output[0]).write_text(params.hp + "\n")
