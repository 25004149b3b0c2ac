# Eval stage: every eval runs on the dequantized artifact, never on the float weights.
# Each job's settings come from its id (the main eval's or a sweep variant's, see ids.smk).
# Evals do not wait for the size check: their result does not depend on the code's bytes, and the
# record stage refuses any seed whose size.json is not ok.


rule eval:
    message:
        "Eval {wildcards.method}, seed {wildcards.seed}"
    input:
        artifact=f"results/export/{EXPORT_ID}/seed{{seed}}/final_model.ptz",
        export=f"results/export/{EXPORT_ID}/seed{{seed}}/export.json",
        manifest=f"results/data/{DATA_ID}/manifest.json",
        hp="results/eval/{eval_id}/config.json",
        code=CODE["eval"],
    output:
        "results/eval/{eval_id}/seed{seed}/{method}.json",
    wildcard_constraints:
        method="roundtrip|sliding",
    params:
        cache=COMPILE_CACHE,
        hp=stage_setting("eval", "hparams"),
        nproc=stage_setting("eval", "nproc"),
    log:
        "results/logs/eval/{eval_id}/seed{seed}.{method}.log",
    benchmark:
        "results/benchmarks/eval/{eval_id}/seed{seed}.{method}.tsv"
    threads: 1
    resources:
        gpu=stage_setting("eval", "gpus"),
    conda:
        ENV
    shell:
        "{params.cache}pgolf job --label 'eval {wildcards.method} seed {wildcards.seed}' --pidfile {log}.pid --log {log}"
        " --clean-dir $(dirname {output}) --writes eval --"
        " torchrun --standalone --nproc_per_node {params.nproc} workflow/record/evaluate.py {wildcards.method}"
        " --hparams {input.hp} --artifact {input.artifact} --export-json {input.export} --data {input.manifest} --out {output}"


rule eval_slot:
    message:
        "Eval SLOT ({wildcards.mode}), seed {wildcards.seed}"
    input:
        artifact=f"results/export/{EXPORT_ID}/seed{{seed}}/final_model.ptz",
        export=f"results/export/{EXPORT_ID}/seed{{seed}}/export.json",
        manifest=f"results/data/{DATA_ID}/manifest.json",
        hp="results/slot/{slot_id}/config.json",
        code=CODE["slot"],
    output:
        "results/slot/{slot_id}/seed{seed}/{mode}.json",
    wildcard_constraints:
        mode="causal|published",
    params:
        cache=COMPILE_CACHE,
        hp=stage_setting("slot", "hparams"),
        nproc=stage_setting("slot", "nproc"),
    log:
        "results/logs/slot/{slot_id}/seed{seed}.{mode}.log",
    benchmark:
        "results/benchmarks/slot/{slot_id}/seed{seed}.{mode}.tsv"
    threads: 1
    resources:
        gpu=stage_setting("slot", "gpus"),
    conda:
        ENV
    shell:
        "{params.cache}pgolf job --label 'eval slot {wildcards.mode} seed {wildcards.seed}' --pidfile {log}.pid --log {log}"
        " --clean-dir $(dirname {output}) --writes eval --"
        " torchrun --standalone --nproc_per_node {params.nproc} workflow/record/slot.py --mode {wildcards.mode}"
        " --hparams {input.hp} --artifact {input.artifact} --export-json {input.export} --data {input.manifest} --out {output}"


# Score-first TTT (workflow/record/ttt.py): its own id, so a TTT setting reruns only this and the record.
rule eval_ttt:
    message:
        "Eval TTT, seed {wildcards.seed}"
    input:
        artifact=f"results/export/{EXPORT_ID}/seed{{seed}}/final_model.ptz",
        export=f"results/export/{EXPORT_ID}/seed{{seed}}/export.json",
        manifest=f"results/data/{DATA_ID}/manifest.json",
        hp="results/ttt/{ttt_id}/config.json",
        code=CODE["ttt"],
    output:
        "results/ttt/{ttt_id}/seed{seed}/ttt.json",
    params:
        cache=COMPILE_CACHE,
        hp=stage_setting("ttt", "hparams"),
        nproc=stage_setting("ttt", "nproc"),
    log:
        "results/logs/ttt/{ttt_id}/seed{seed}.log",
    benchmark:
        "results/benchmarks/ttt/{ttt_id}/seed{seed}.tsv"
    threads: 1
    resources:
        gpu=stage_setting("ttt", "gpus"),
    conda:
        ENV
    shell:
        "{params.cache}pgolf job --label 'eval ttt seed {wildcards.seed}' --pidfile {log}.pid --log {log}"
        " --clean-dir $(dirname {output}) --writes eval --"
        " torchrun --standalone --nproc_per_node {params.nproc} workflow/record/ttt.py"
        " --hparams {input.hp} --artifact {input.artifact} --export-json {input.export} --data {input.manifest} --out {output}"


# Per-document LoRA TTT and phased TTT (workflow/record/ttt_doc.py): each its own stage and id, so
# a LoRA key reruns lora_ttt and phased_ttt (which scores with those adapters), a phase key only phased_ttt.
rule eval_doc_ttt:
    message:
        "Eval {wildcards.stage}, seed {wildcards.seed}"
    input:
        artifact=f"results/export/{EXPORT_ID}/seed{{seed}}/final_model.ptz",
        export=f"results/export/{EXPORT_ID}/seed{{seed}}/export.json",
        manifest=f"results/data/{DATA_ID}/manifest.json",
        hp="results/{stage}/{stage_id}/config.json",
        code=CODE["doc_ttt"],
    output:
        "results/{stage}/{stage_id}/seed{seed}/{stage}.json",
    wildcard_constraints:
        stage="lora_ttt|phased_ttt",
    params:
        cache=COMPILE_CACHE,
        hp=stage_setting(None, "hparams"),
        nproc=stage_setting(None, "nproc"),
    log:
        "results/logs/{stage}/{stage_id}/seed{seed}.log",
    benchmark:
        "results/benchmarks/{stage}/{stage_id}/seed{seed}.tsv"
    threads: 1
    resources:
        gpu=stage_setting(None, "gpus"),
    conda:
        ENV
    shell:
        "{params.cache}pgolf job --label 'eval {wildcards.stage} seed {wildcards.seed}' --pidfile {log}.pid --log {log}"
        " --clean-dir $(dirname {output}) --writes eval --"
        " torchrun --standalone --nproc_per_node {params.nproc} workflow/record/ttt_doc.py {wildcards.stage}"
        " --hparams {input.hp} --artifact {input.artifact} --export-json {input.export} --data {input.manifest} --out {output}"
