"""Snakemake script for the record rule: hands the stage outputs to pgolf.record.assemble.

assemble() checks submission.json against workflow/schemas/submission.schema.json before writing
it, writes provenance.json (pgolf.provenance), and draws the two plots (train_loss.png, seed_scores.png) that `snakemake --report` shows.
"""

import json
import sys

from pgolf.provenance import collect
from pgolf.record import assemble, summary_table

sm = snakemake  # noqa: F821  (injected by Snakemake)
seeds = sm.config["seeds"]
# The record block with the run's date (targets.smk: the day its training started), as the folder is named.
config = {**sm.config, "record": json.loads(sm.params.record)}
stage_files = {s: {k.rsplit("_", 1)[0]: v for k, v in sm.input.items() if k.endswith(f"_{s}")} for s in seeds}
# Gathered now, at record time: nothing upstream depends on the git state or the packages.
provenance = collect(json.loads(sm.params.config), sm.input.manifest, sm.params.seed_logs)
try:
    submission = assemble(
        config,
        stage_files,
        sm.params.seed_logs,
        sm.input.code,
        dict(sm.output.items()),
        base=json.loads(sm.params.base),
        schema_path=sm.input.schema,
        provenance=provenance,
    )
except ValueError as e:  # a seed over a budget or limit, a schema mismatch: one line, nothing written
    sys.exit(f"error: {e}")
with open(sm.log[0], "w", encoding="utf-8") as log:
    log.write(summary_table(submission) + "\n")
