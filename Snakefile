# pgolf: Parameter Golf records, reproducibly. `snakemake --cores all` runs the embedded default;
# `snakemake --cores all --configfile config/fineweb-8xh100.yaml` the real preset (see README).
from snakemake.utils import min_version

min_version("9.11")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/ids.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/preflight.smk"
include: "workflow/rules/sweep_setup.smk"
include: "workflow/rules/byo_setup.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/record.smk"
include: "workflow/rules/verify.smk"
include: "workflow/rules/byo.smk"
include: "workflow/rules/sweep.smk"


rule all:
    default_target: True
    input:
        record_files(),


onsuccess:
    print_record_summary()
