# Shared setup, read before every rule file: the config is checked before any job, and the names
# every rule uses. The rest of the shared code is split by concern (the Snakefile includes them in order):
#   ids.smk        what keys each stage: its code (derived by pgolf.codegraph), settings and ids
#   targets.smk    the output paths of a seed and of the record
#   preflight.smk  GPUs, disk and the other checks before the first job
#   sweep_setup.smk, byo_setup.smk  what the sweep and byo rules need
import json
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from pgolf import codegraph
from pgolf import config as pgconfig
from pgolf import doctor as pgdoctor
from pgolf import record as pgrecord
from pgolf.config import ConfigError, canon, check_config, file_digest, short_hash


try:
    check_config(config)
except ConfigError as e:
    sys.exit(f"config error: {e}")


wildcard_constraints:
    seed=r"\d+",
    stage=r"train|export|eval|slot|ttt|lora_ttt|phased_ttt",
    stage_id=r"[0-9a-f]{10}",
    train_id=r"[0-9a-f]{10}",
    export_id=r"[0-9a-f]{10}",
    eval_id=r"[0-9a-f]{10}",
    slot_id=r"[0-9a-f]{10}",
    ttt_id=r"[0-9a-f]{10}",
    data_id=r"[0-9a-f]{10}",
    code_id=r"[0-9a-f]{10}",
    byo_id=r"[0-9a-f]{10}",


ENV = "../../envs/pgolf.yaml"
# GPU stages share torch.compile's caches: runtime.use_compile_cache keys a folder under here by
# the record code, torch version and GPU, so each record compiles once, not once per stage and seed.
COMPILE_CACHE = "PGOLF_COMPILE_CACHE=results/compile_cache "

SEEDS = config["seeds"]
