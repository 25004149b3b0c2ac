"""Snakemake script for the sweep_table rule: hands the variants' score files to pgolf.sweep.build_table."""

import json

from pgolf.sweep import build_table, to_markdown

sm = snakemake  # noqa: F821  (injected by Snakemake)
variants = json.loads(sm.params.variants)
seeds = list(sm.params.seeds)
score_files = {v["name"]: {s: sm.input[f"score_{i}_{s}"] for s in seeds} for i, v in enumerate(variants)}
rows = build_table(sm.wildcards.sweep, variants, seeds, score_files, dict(sm.output.items()))
with open(sm.log[0], "w", encoding="utf-8") as log:
    log.write(to_markdown(sm.wildcards.sweep, rows, seeds))
