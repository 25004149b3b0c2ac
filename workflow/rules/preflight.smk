# GPUs of this machine and the preflight (pgolf/doctor.py), checked before the first job.
# The executor is known only once the run starts (not while this file is parsed), so the GPU
# resources are functions that rules call when their jobs are created.


def cores_or(fallback):
    """--cores of this run; a run on a cluster executor has none, so `fallback` (set-threads can change it)."""
    try:
        return workflow.cores
    except WorkflowError:
        return fallback


_MACHINE = {}


def machine_gpus():
    """(GPUs visible here, how they were counted), counted once per run."""
    if "gpus" not in _MACHINE:
        try:
            _MACHINE["gpus"] = pgdoctor.visible_gpus()
        except ValueError as e:
            sys.exit(f"config error: {e}")
    return _MACHINE["gpus"]


def on_cluster():
    """Jobs go to a cluster executor (SLURM): the local GPU count plays no part there."""
    return not workflow.local_exec


def gpus(block):
    """GPUs a job takes: one per process on CUDA; none on the CPU (device cpu, or auto on a machine
    without GPUs). On a cluster, device auto asks the node for its GPUs."""
    if on_cluster():
        return 0 if block["device"] == "cpu" else block["nproc_per_node"]
    return pgdoctor.stage_gpus(block, machine_gpus()[0])


def train_gpus(wildcards):
    return gpus(config["train"])


def preflight(log):
    """Runs as the workflow's onstart, after the DAG is built and before any job (not in a dry run).

    Prints what will run where and stops with one line when this machine cannot run it. Locally,
    the `gpu` resource becomes the GPUs visible here, whatever a profile says (a smaller
    --resources gpu=N is kept), so one-GPU jobs never share a GPU.
    """
    count, source = (0, "") if on_cluster() else machine_gpus()
    checks = pgdoctor.preflight(
        config,
        machine_gpus=count,
        gpu_source=source,
        data_ready=Path(f"results/data/{DATA_ID}/manifest.json").is_file(),
        cluster=on_cluster(),
    )
    print(pgdoctor.format_table(checks), file=sys.stderr, flush=True)
    failed = pgdoctor.first_failure(checks)
    if failed:
        sys.exit(f"preflight: {failed.message}")
    if not on_cluster():
        declared = workflow.scheduler.global_resources.get("gpu", sys.maxsize)
        count = min(declared, count)
        workflow.register_resource("gpu", count)
        # The scheduler checked its resources when it was made: a job asking for more GPUs than
        # this (a sweep variant's eval, say) now fails with snakemake's own message, not a hang.
        workflow.scheduler.global_resources["gpu"] = count


onstart:
    preflight(log)
