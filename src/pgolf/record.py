"""Record assembly: every number in submission.json and README.md comes from a stage's output file."""

from __future__ import annotations

import json
import statistics
from datetime import date as _date
from pathlib import Path

import jinja2
import jsonschema
import yaml

from pgolf.config import load_configs
from pgolf.shards import write_atomic
from pgolf.rules import MAX_EVAL_SECONDS, MAX_TRAIN_SECONDS, SIZE_LIMIT_BYTES, headline_method, score_first
from pgolf.rules import DOC_TTT_METHODS

# scipy (pgolf.stats) and matplotlib (pgolf.plots) are imported where they are used: every
# Snakemake run imports this module while it builds the DAG, and should not pay for them.

WORKFLOW_DIR = Path(__file__).resolve().parents[2] / "workflow"
TEMPLATE_DIR = WORKFLOW_DIR / "templates"
SCHEMA_PATH = WORKFLOW_DIR / "schemas" / "submission.schema.json"
# What "the base" is: PR #1313 as the real preset runs it (config.yaml overlaid with the preset).
BASE_NAME = "PR #1313 (SLOT-24)"
BASE_FILES = ("config.yaml", "config/fineweb-8xh100.yaml")
SETTINGS_BLOCKS = ("train", "export", "eval")


def read_json(path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def record_date(setting: str) -> str:
    return _date.today().isoformat() if setting == "auto" else setting


def run_date(record_cfg: dict, run_files) -> str:
    """The record's date: record.date when set, else the day this run started (the earliest
    `started_utc` among the given JSON files that exist: train.json, byo's run.json), else today,
    for a run that has not started yet. An unchanged finished run keeps its date on any later day."""
    if record_cfg["date"] != "auto":
        return record_cfg["date"]
    started = []
    for path in run_files:
        try:
            value = read_json(path).get("started_utc")
        except (OSError, ValueError):
            continue
        if isinstance(value, str) and len(value) >= 10:
            started.append(value[:10])
    return min(started) if started else record_date("auto")


def record_dir(record_cfg: dict, date: str | None = None) -> str:
    """results/records/<track>/<date>_<name>: `date` as run_date gives it (record.date by default)."""
    return f"results/records/{record_cfg['track']}/{date or record_date(record_cfg['date'])}_{record_cfg['name']}"


def eval_method(eval_cfg: dict) -> str:
    """The headline: ttt when it runs and is the headline, else the SLOT mode when on, else sliding."""
    return headline_method(eval_cfg)


def stage_key(method: str) -> str:
    """The stage output holding a method's result: sliding_window -> sliding, slot_<mode> and ttt -> themselves."""
    return "sliding" if method == "sliding_window" else method


def audit_verdict(stage_result: dict) -> str:
    return stage_result.get("audit", {}).get("verdict", "not run")


def _std(values: list[float]):
    return statistics.stdev(values) if len(values) > 1 else None


def adaptive_evals(stage: dict) -> list[str]:
    """The stage results of the evals beyond sliding: slot_<mode>, ttt, lora_ttt and phased_ttt."""
    return [k for k in stage if k.startswith("slot_") or k == "ttt" or k in DOC_TTT_METHODS]


def seed_result(seed: int, stage: dict) -> dict:
    """One seed's row, from the stage JSONs: train, export, size, roundtrip, sliding, final."""
    t, size, final = stage["train"], stage["size"], stage["final"]
    slot_keys = adaptive_evals(stage)
    # Every eval pass this seed's log shows, comparison SLOT modes included (a conservative count).
    eval_ms = sum(stage[k]["eval_time_ms"] for k in ("roundtrip", "sliding", *slot_keys))
    return {
        "val_loss": round(final["val_loss"], 8),
        "val_bpb": round(final["val_bpb"], 8),
        "artifact_bytes": size["total_bytes"],
        "model_bytes": size["model_bytes"],
        "steps": t["steps"],
        "step_avg_ms": t["step_avg_ms"],
        # GPTQ reads training data after training: its time is charged to training (0 when off).
        "train_time_s": round((t["train_time_ms"] + stage["export"].get("gptq_time_ms", 0.0)) / 1000.0, 3),
        "eval_time_s": round(eval_ms / 1000.0, 3),
        "init_val_bpb": round(t["init_val_bpb"], 8),
        "pre_quant_val_bpb": round(t["pre_quant_val_bpb"], 8),
        "roundtrip_val_bpb": round(stage["roundtrip"]["val_bpb"], 8),
        "sliding_val_bpb": round(stage["sliding"]["val_bpb"], 8),
        **{f"{k}_val_bpb": round(stage[k]["val_bpb"], 8) for k in slot_keys},
        "audits": {("sliding_window" if k == "sliding" else k): audit_verdict(stage[k]) for k in ("sliding", *slot_keys)},
    }


class BudgetError(ValueError):
    """Training plus GPTQ ran over the training budget."""


def check_train_budget(seed: int, train: dict, export: dict, budget: float, export_path: str = "export.json") -> None:
    """GPTQ's calibration reads training data, so train time + GPTQ time must fit the training budget."""
    if not export.get("gptq"):
        return
    train_s, gptq_s = train["train_time_ms"] / 1000.0, export["gptq_time_ms"] / 1000.0
    if train_s + gptq_s > budget:
        raise BudgetError(
            f"{export_path}: seed {seed}: train {train_s:.3f}s + GPTQ {gptq_s:.3f}s = {train_s + gptq_s:.3f}s"
            f" exceeds the training budget of {budget:g}s (export.gptq.train_budget_seconds)"
        )


def build_submission(config: dict, stages: dict[int, dict]) -> dict:
    rec, seeds = config["record"], list(stages)
    method = eval_method(config["eval"])
    rows = {str(s): seed_result(s, stages[s]) for s in seeds}
    bpbs = [rows[str(s)]["val_bpb"] for s in seeds]
    losses = [rows[str(s)]["val_loss"] for s in seeds]
    first = stages[seeds[0]]
    mean_bpb = statistics.fmean(bpbs)
    return {
        "name": rec["name"],
        "author": rec["author"],
        "github_id": rec["github_id"],
        "date": record_date(rec["date"]),
        "track": rec["track"].removeprefix("track_"),
        "val_bpb": round(mean_bpb, 8),
        "val_bpb_std": None if _std(bpbs) is None else round(_std(bpbs), 8),
        "val_loss": round(statistics.fmean(losses), 8),
        "val_loss_std": None if _std(losses) is None else round(_std(losses), 8),
        "bytes_total": max(r["artifact_bytes"] for r in rows.values()),
        "bytes_code": first["size"]["code_bytes"],
        "code_size_convention": first["size"].get("code_size_convention", "raw"),
        "seeds": seeds,
        "seed_results": rows,
        "hardware": rec["hardware"],
        "pytorch_version": first["train"]["torch_version"],
        "eval_method": method,
        "compliance": {
            "artifact_under_16mb": all(stages[s]["size"]["ok"] and stages[s]["size"]["total_bytes"] <= SIZE_LIMIT_BYTES for s in seeds),
            "train_under_600s": all(r["train_time_s"] <= MAX_TRAIN_SECONDS for r in rows.values()),
            "eval_under_600s": all(r["eval_time_s"] <= MAX_EVAL_SECONDS for r in rows.values()),
            "score_first_eval": score_first(method, [audit_verdict(stages[s]["final"]) for s in seeds]),
            "three_seeds": len(seeds) >= 3,
        },
        "significance": _significance(losses, bpbs, rec["baseline"]),
        "blurb": (
            f"{rec['name']}: val_bpb {mean_bpb:.4f} ({method}, mean of {len(seeds)} seed"
            f"{'s' if len(seeds) > 1 else ''}), produced by the pgolf pipeline."
        ),
    }


def _significance(losses: list[float], bpbs: list[float], baseline: dict) -> dict:
    from pgolf.stats import significance

    return significance(losses, bpbs, baseline)


def render_readme(
    config: dict, submission: dict, stages: dict[int, dict], code_name: str, base: dict | None = None, provenance: dict | None = None
) -> str:
    from pgolf.stats import verdict

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    first = stages[next(iter(stages))]
    rows = submission["seed_results"].values()
    return env.get_template("record_README.md.j2").render(
        sub=submission,
        cfg=config,
        model_params=first["train"]["model_params"],
        label=first["export"]["label"],
        code_name=code_name,
        seeds=list(stages),
        baseline=config["record"]["baseline"],
        sig=submission["significance"],
        verdict=verdict(submission["significance"]),
        sliding_mean=statistics.fmean(r["sliding_val_bpb"] for r in rows),
        eval_rows=eval_rows(submission, stages),
        headline_verdicts=[r["audits"][submission["eval_method"]] for r in rows],
        max_train_s=max(r["train_time_s"] for r in rows),
        max_eval_s=max(r["eval_time_s"] for r in rows),
        model_rows=flatten(config["train"]["model"]),
        settings_rows=flatten({k: v for k, v in config.items() if k in SETTINGS_BLOCKS}, skip=("train.model",)),
        base_name=BASE_NAME,
        base_rows=None if base is None else settings_diff(base, config),
        config_yaml=yaml.safe_dump({**config, "record": {**config["record"], "date": submission["date"]}}, sort_keys=False),
        record_path=record_dir({**config["record"], "date": submission["date"]}),
        provenance_lines=None if provenance is None else _provenance_lines(provenance),
    )


def _provenance_lines(provenance: dict) -> list[str]:
    from pgolf.provenance import summary_lines

    return summary_lines(provenance)


def eval_rows(submission: dict, stages: dict[int, dict]) -> list[dict]:
    """One row per eval method the record ran: its mean score, its gain over the sliding score
    (negative: better), its mean eval time and each seed's audit verdict."""
    rows = list(submission["seed_results"].values())
    methods = list(rows[0]["audits"])
    bpb = lambda m: statistics.fmean(r["sliding_val_bpb" if m == "sliding_window" else f"{m}_val_bpb"] for r in rows)  # noqa: E731
    return [
        {
            "method": m,
            "headline": m == submission["eval_method"],
            "mean_bpb": bpb(m),
            "gain_bpb": bpb(m) - bpb("sliding_window"),
            "eval_time_s": statistics.fmean(st[stage_key(m)]["eval_time_ms"] for st in stages.values()) / 1000.0,
            "verdicts": [r["audits"][m] for r in rows],
        }
        for m in methods
    ]


def flatten(block: dict, prefix: str = "", skip: tuple = ()) -> list[tuple[str, object]]:
    """Nested settings as (dotted key, value) rows, in the config's order."""
    rows = []
    for k, v in block.items():
        key = f"{prefix}{k}"
        if key in skip:
            continue
        rows += flatten(v, f"{key}.", skip) if isinstance(v, dict) else [(key, v)]
    return rows


def base_settings(paths=BASE_FILES) -> dict | None:
    """The base's train/export/eval settings: the given config files merged as --configfile does.

    None when a file is missing (a workflow copy without the preset): the README then says so.
    """
    if not all(Path(p).is_file() for p in paths):
        return None
    merged = load_configs(paths)
    return {k: merged[k] for k in SETTINGS_BLOCKS if k in merged}


def settings_diff(base: dict, config: dict) -> list[tuple[str, object, object]]:
    """(key, base value, value as run) for every setting that differs; '-' where one side lacks it."""
    ours = dict(flatten({k: config[k] for k in SETTINGS_BLOCKS if k in config}))
    theirs = dict(flatten(base))
    keys = list(ours) + [k for k in theirs if k not in ours]
    return [(k, theirs.get(k, "-"), ours.get(k, "-")) for k in keys if theirs.get(k, "-") != ours.get(k, "-")]


def requirements(torch_version: str, compressor: str) -> str:
    lines = [f"torch=={torch_version.split('+')[0]}", "numpy", "sentencepiece"]
    extra = {"zstd": "zstandard", "brotli": "brotli", "pergroup": "brotli"}.get(compressor)  # pergroup: and the lrzip program
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


def final_score_lines(seed: int, method: str, final: dict) -> str:
    """The claimed score under one label that means only that, whichever eval produced it."""
    return (
        f"==== pgolf stage: score (seed {seed}) ====\n"
        f"final_score_method:{method}\n"
        f"final_score_exact val_loss:{final['val_loss']:.8f} val_bpb:{final['val_bpb']:.8f}\n"
    )


def combined_log(seed: int, logs: list[tuple[str, str]]) -> str:
    """One seed's log: the logs of its stages in order, each under a header naming the stage."""
    parts = []
    for stage, path in logs:
        parts.append(f"==== pgolf stage: {stage} (seed {seed}) ====\n")
        parts.append(Path(path).read_text(encoding="utf-8"))
    return "".join(parts)


def check_submission(submission: dict, schema_path=SCHEMA_PATH) -> None:
    """submission.json must match the schema the project publishes before it is written."""
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(submission), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ValueError(f"submission.json does not match {schema_path}: {where}: {e.message}")


def assemble(
    config: dict,
    stage_files: dict[int, dict[str, str]],
    seed_logs: dict[int, list[tuple[str, str]]],
    code_path: str,
    out_files: dict[str, str],
    base: dict | None = None,
    schema_path=SCHEMA_PATH,
    provenance: dict | None = None,
) -> dict:
    """Writes the record folder's files; each is written to a temp name first, then renamed.

    `out_files` maps readme, submission, code, requirements, log<seed>, and optionally
    loss_plot / score_plot (PNGs) to paths; `base` holds the base's settings for the README.
    With `provenance` (pgolf.provenance.collect) the README gets a Provenance section, and
    out_files["provenance"], when given, gets it as JSON.
    """
    stages = {}
    for seed, files in stage_files.items():
        stages[seed] = {k: read_json(p) for k, p in files.items()}
        method = eval_method(config["eval"])
        stages[seed]["final"] = stages[seed][stage_key(method)]
        if not stages[seed]["size"].get("ok"):
            raise ValueError(f"{files['size']}: seed {seed} has no passing size check")
        budget = config["export"].get("gptq", {}).get("train_budget_seconds", MAX_TRAIN_SECONDS)
        check_train_budget(seed, stages[seed]["train"], stages[seed]["export"], budget, files["export"])
    submission = build_submission(config, stages)
    check_submission(submission, schema_path)
    contents = {
        "submission": json.dumps(submission, indent=2) + "\n",
        "readme": render_readme(config, submission, stages, Path(out_files["code"]).name, base, provenance),
        "requirements": requirements(submission["pytorch_version"], config["export"]["compressor"]),
    }
    if provenance is not None and "provenance" in out_files:
        contents["provenance"] = json.dumps(provenance, indent=2) + "\n"
    for seed in stage_files:
        contents[f"log{seed}"] = combined_log(seed, seed_logs[seed]) + final_score_lines(seed, method, stages[seed]["final"])
    for key, text in contents.items():
        _write_atomic(out_files[key], text)
    from pgolf import plots

    if "loss_plot" in out_files:
        plots.loss_curves({s: stages[s]["train"]["loss_curve"] for s in stages}, out_files["loss_plot"], f"{config['record']['name']}: training loss")
    if "score_plot" in out_files:
        plots.seed_scores(submission["seed_results"], submission["eval_method"], out_files["score_plot"])
    write_atomic(out_files["code"], Path(code_path).read_bytes())
    _remove_stale_logs(Path(out_files["code"]).parent, set(out_files.values()))
    return submission


def _remove_stale_logs(folder: Path, keep: set[str]) -> None:
    """A record folder rebuilt with fewer seeds must not keep the dropped seeds' logs."""
    for log in folder.glob("train_seed*.log"):
        if str(log) not in keep and not any(Path(k).resolve() == log.resolve() for k in keep):
            log.unlink()


def _write_atomic(path: str, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def summary_table(submission: dict) -> str:
    """Per-seed numbers for the terminal."""
    lines = [f"{'seed':>6} {'val_bpb':>11} {'val_loss':>11} {'pre_quant':>10} {'sliding':>10} {'bytes':>10} {'steps':>6}"]
    for seed, r in submission["seed_results"].items():
        lines.append(
            f"{seed:>6} {r['val_bpb']:>11.6f} {r['val_loss']:>11.6f} {r['pre_quant_val_bpb']:>10.4f}"
            f" {r['sliding_val_bpb']:>10.4f} {r['artifact_bytes']:>10} {r['steps']:>6}"
        )
    lines.append(f"{'mean':>6} {submission['val_bpb']:>11.6f} {submission['val_loss']:>11.6f}   ({submission['eval_method']})")
    return "\n".join(lines)
