"""Bring-your-own-script mode, after the runs: check each seed's result, then assemble the record.

check_seed() reads one seed's log with pgolf.logparse (the claimed final score by the same rules
as `pgolf parse-log` and `pgolf validate`), measures the script and the artifact it wrote with
pgolf.size, and compares:

- size: the script's literal bytes + the artifact's bytes <= the limit (export.size_limit_bytes,
  the challenge's 16,000,000); always enforced. Where the log states sizes (`Code size`,
  `Serialized model <tag>`, `Total submission size`), they must equal the files' bytes, or the
  record's own log would contradict its submission.json;
- time: the logged training time (step lines / early-stop line) against byo.max_train_seconds,
  the logged eval passes against byo.max_eval_seconds; enforced (the job fails) or, with
  byo.enforce_time_limits false, a warning line and `false` in the check and in compliance.

assemble() builds submission.json (schema-checked, significance by pgolf.stats), README.md from
workflow/templates/byo_README.md.j2, the script as train_gpt.py and each seed's log verbatim.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
from pathlib import Path

import jinja2

from pgolf import record as pgrecord
from pgolf.byo import CheckError
from pgolf.byo_code import CodeSizeError, code_files, count_code
from pgolf.logparse import parse_file, require_final
from pgolf.size import SizeError, measure, over_limit_message
from pgolf.rules import MAX_TRAIN_SECONDS, SIZE_LIMIT_BYTES, train_grace_ms, upstream_label_score_first


def _write_json(path, obj) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


CODE_LINE = re.compile(r"^Code size(?: \((\w+)\))?: (\d+) bytes", re.M)


def _logged_sizes(log_path, summary, size: dict) -> None:
    """Sizes the log states must be the files' sizes under the record's convention (the record ships both)."""
    text = Path(log_path).read_text(encoding="utf-8", errors="replace")
    plain = [int(n) for kind, n in CODE_LINE.findall(text) if kind != "compressed"]
    main = size["main_script_bytes"]
    if plain and plain[-1] != main and summary.bytes_code_compressed is not None:
        raise CheckError(f"{log_path}: logs Code size (uncompressed) {plain[-1]} bytes but the script run is {main} bytes")
    # A script counts only itself (its __file__): with sibling code files, the log's code and total
    # lines are the main file's count; the cap is checked on all files (size["total_bytes"]).
    main_code = size["main_code_bytes"]
    for logged, what, actual in (
        (summary.bytes_code_compressed if summary.bytes_code_compressed is not None else (plain[-1] if plain else None),
         "Code size" + (" (compressed)" if summary.bytes_code_compressed is not None else ""), main_code),
        (summary.bytes_model, "Serialized model", size["model_bytes"]),
        (summary.bytes_total, "Total submission size", main_code + size["model_bytes"]),
    ):
        if logged is not None and logged != actual:
            raise CheckError(
                f"{log_path}: logs {what} {logged} bytes but the files give {actual} bytes"
                f" (code counted {size['code_size_convention']}: {size['code_size_how']})")


def _run_code_files(log_path, script) -> list[Path]:
    """The code files as the run used them: run.json's list, from the seed folder; else the script's own."""
    run = Path(log_path).parent / "run.json"
    if run.is_file():
        names = json.loads(run.read_text(encoding="utf-8")).get("code_files")
        if names and all((Path(log_path).parent / n).is_file() for n in names):
            return [Path(log_path).parent / n for n in names]
    return code_files(script)


def measure_code(files: list[Path], artifact, limit: int, convention: str, logged_compressed) -> dict:
    """pgolf.size's report with the code counted under the record's convention (pgolf.byo_code)."""
    size = measure(files, Path(artifact), limit)
    try:
        code = count_code(files, convention, logged_compressed)
        main = code if len(files) == 1 else count_code(files[:1], code["convention"], logged_compressed)
    except CodeSizeError as error:
        raise CheckError(str(error)) from None
    total = code["bytes"] + size["model_bytes"]
    size.update(
        code_size_convention=code["convention"], code_size_how=code["how"], code_bytes=code["bytes"],
        main_script_bytes=files[0].stat().st_size, main_code_bytes=main["bytes"], total_bytes=total, ok=total <= limit, headroom_bytes=limit - total,
    )
    return size


def check_seed(log_path, artifact, script, limits: dict, warn=print) -> dict:
    """One seed's check.json; raises CheckError, SizeError or LogParseError on a broken rule."""
    summary = require_final(parse_file(log_path), log_path)
    files = _run_code_files(log_path, script)
    size = measure_code(files, artifact, limits["size_limit_bytes"], limits.get("code_size", "raw"), summary.bytes_code_compressed)
    if not size["ok"]:
        raise SizeError(f"{artifact}: {over_limit_message(size)}")
    _logged_sizes(log_path, summary, size)
    times = {}
    for kind, attr in (("train", "train_time_ms"), ("eval", "eval_time_ms")):
        limit = float(limits[f"max_{kind}_seconds"])
        # The training cap is checked after each step: the last one may end past it (as pgolf validate allows).
        grace = train_grace_ms(summary.step_avg_ms) / 1000.0 if kind == "train" else 0.0
        ms = getattr(summary, attr)
        seconds = None if ms is None else round(ms / 1000.0, 3)
        ok = seconds is None or seconds <= limit + grace
        times[kind] = {"seconds": seconds, "limit_s": limit, "grace_s": round(grace, 3), "ok": ok}
        if seconds is None:
            warn(f"warning: {log_path}: no {kind} time in the log; the {kind} time limit is not checked")
        elif not ok:
            slack = f" (+{grace:.3f} s grace: the cap is checked after each step)" if grace else ""
            line = f"{log_path}: {kind} took {seconds:.3f} s > byo.max_{kind}_seconds {limit:g}{slack}"
            if limits["enforce_time_limits"]:
                raise CheckError(line)
            warn(f"warning: {line} (byo.enforce_time_limits is false)")
    return {
        "log": str(log_path),
        "metrics": summary.to_json(),
        "size": size,
        "times": times,
        "limits": limits,
        "checks": {"size": True, "train_time": times["train"]["ok"], "eval_time": times["eval"]["ok"]},
    }


def write_check(out, *args, **kwargs) -> dict:
    result = check_seed(*args, **kwargs)
    _write_json(out, result)
    return result


# ----------------------------------------------------------------------------- the record


def seed_row(check: dict, run: dict) -> dict:
    m, size = check["metrics"], check["size"]
    row = {
        "val_loss": m["final_val_loss"],
        "val_bpb": m["final_val_bpb"],
        "final_label": m["final_label"],
        "artifact_bytes": size["total_bytes"],
        "model_bytes": size["model_bytes"],
        "steps": m["steps"],
        "step_avg_ms": m["step_avg_ms"],
        "train_time_s": check["times"]["train"]["seconds"],
        "eval_time_s": check["times"]["eval"]["seconds"],
        "pre_quant_val_bpb": m["pre_quant_val_bpb"],
        "sliding_val_bpb": m["sliding_val_bpb"],
        "wallclock_s": run["wallclock_s"],
    }
    return {k: v for k, v in row.items() if v is not None}


def build_submission(record_cfg: dict, byo: dict, checks: dict[int, dict], runs: dict[int, dict]) -> dict:
    seeds = list(checks)
    rows = {str(s): seed_row(checks[s], runs[s]) for s in seeds}
    losses = [rows[str(s)]["val_loss"] for s in seeds]
    bpbs = [rows[str(s)]["val_bpb"] for s in seeds]
    labels = sorted({rows[str(s)]["final_label"] for s in seeds})
    std = (lambda v: round(statistics.stdev(v), 8) if len(v) > 1 else None)
    mean_bpb = statistics.fmean(bpbs)
    first = checks[seeds[0]]
    fallback = runs[seeds[0]].get("attention_fallback", "none")
    sub = {
        "name": byo["name"],
        "author": record_cfg["author"],
        "github_id": record_cfg["github_id"],
        "date": pgrecord.record_date(record_cfg["date"]),
        "track": record_cfg["track"].removeprefix("track_"),
        "val_bpb": round(mean_bpb, 8),
        "val_bpb_std": std(bpbs),
        "val_loss": round(statistics.fmean(losses), 8),
        "val_loss_std": std(losses),
        "bytes_total": max(r["artifact_bytes"] for r in rows.values()),
        "bytes_code": first["size"]["code_bytes"],
        "seeds": seeds,
        "seed_results": rows,
        "hardware": record_cfg["hardware"],
        "pytorch_version": runs[seeds[0]]["torch_version"] or "unknown",
        "eval_method": "script:" + "+".join(labels),
        "compliance": {
            "artifact_under_16mb": all(c["size"]["ok"] and c["size"]["total_bytes"] <= SIZE_LIMIT_BYTES for c in checks.values()),
            "train_under_600s": all(_under(c, "train") for c in checks.values()),
            "eval_under_600s": all(_under(c, "eval") for c in checks.values()),
            "score_first_eval": upstream_label_score_first(labels[0]) if len(labels) == 1 else None,
            "three_seeds": len(seeds) >= 3,
        },
        "significance": pgrecord._significance(losses, bpbs, record_cfg["baseline"]),
        "blurb": (
            f"{byo['name']}: val_bpb {mean_bpb:.4f} ({', '.join(labels)}, mean of {len(seeds)} seed"
            f"{'s' if len(seeds) > 1 else ''}), an existing train_gpt.py run unchanged by the pgolf pipeline."
            f" Code counted {first['size']['code_size_convention']}: {first['size']['code_size_how']}."
        ),
    }
    if fallback != "none":
        # The run imported pgolf's SDPA stand-in for FlashAttention 3: not the record's kernels.
        sub["attention_fallback"] = fallback
        sub["blurb"] += " Attention ran on PyTorch SDPA (byo.attention_fallback), not FlashAttention 3: the numbers are not the record's kernels."
    return sub


def _under(check: dict, kind: str) -> bool:
    """The challenge's 600 s (whatever byo.max_*_seconds says), claimed only when measured."""
    t = check["times"][kind]
    return t["seconds"] is not None and t["seconds"] <= MAX_TRAIN_SECONDS + t["grace_s"]


def render_readme(record_cfg: dict, byo: dict, sub: dict, runs: dict[int, dict], checks: dict[int, dict], record_path: str) -> str:
    from pgolf.stats import verdict

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(pgrecord.TEMPLATE_DIR), undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    seeds = list(checks)
    first = runs[seeds[0]]
    user_env = {k: v for k, v in first["env"].items() if k in byo["env"]}
    return env.get_template("byo_README.md.j2").render(
        sub=sub,
        byo=byo,
        seeds=seeds,
        checks={str(s): checks[s] for s in seeds},
        runs={str(s): runs[s] for s in seeds},
        baseline=record_cfg["baseline"],
        sig=sub["significance"],
        verdict=verdict(sub["significance"]),
        script_sha256=first["script_sha256"],
        command=first["command"],
        user_env=user_env,
        record_path=record_path,
    )


def assemble(record_cfg: dict, byo: dict, checks: dict[int, str], runs: dict[int, str], logs: dict[int, str], script: str, out_files: dict[str, str], schema_path=pgrecord.SCHEMA_PATH) -> dict:
    """Writes the record folder: README.md, submission.json, train_gpt.py, train_seed<S>.log (each atomically)."""
    checked = {s: pgrecord.read_json(p) for s, p in checks.items()}
    ran = {s: pgrecord.read_json(p) for s, p in runs.items()}
    sub = build_submission(record_cfg, byo, checked, ran)
    pgrecord.check_submission(sub, schema_path)
    record_path = str(Path(out_files["submission"]).parent)
    pgrecord._write_atomic(out_files["submission"], json.dumps(sub, indent=2) + "\n")
    pgrecord._write_atomic(out_files["readme"], render_readme(record_cfg, byo, sub, ran, checked, record_path))
    for seed, log in logs.items():
        tmp = f"{out_files[f'log{seed}']}.tmp"
        shutil.copyfile(log, tmp)
        os.replace(tmp, out_files[f"log{seed}"])
    tmp = out_files["code"] + ".tmp"
    shutil.copyfile(script, tmp)
    os.replace(tmp, out_files["code"])
    for sibling in code_files(script)[1:]:  # files the script execs or imports ship with it
        shutil.copyfile(sibling, Path(out_files["code"]).parent / sibling.name)
    pgrecord._remove_stale_logs(Path(out_files["code"]).parent, set(out_files.values()))
    return sub
