"""Snakemake script for the byo_record rule: hands the checked seeds to pgolf.byo_record.assemble.

submission.json is checked against workflow/schemas/submission.schema.json before it is written.
"""

import json

from pgolf.byo_record import assemble

sm = snakemake  # noqa: F821  (injected by Snakemake)
seeds = sm.config["seeds"]
submission = assemble(
    json.loads(sm.params.record),
    json.loads(sm.params.byo),
    dict(zip(seeds, sm.input.checks)),
    dict(zip(seeds, sm.input.runs)),
    dict(zip(seeds, sm.input.logs)),
    sm.input.script,
    dict(sm.output.items()),
    schema_path=sm.input.schema,
)
with open(sm.log[0], "w", encoding="utf-8") as log:
    for seed, row in submission["seed_results"].items():
        log.write(f"seed {seed}: val_bpb {row['val_bpb']:.8f} val_loss {row['val_loss']:.8f} bytes {row['artifact_bytes']}\n")
    log.write(f"mean val_bpb {submission['val_bpb']:.8f} ({submission['eval_method']})\n")
