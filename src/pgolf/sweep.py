"""Sweeps: eval and SLOT variants scored on the checkpoints a run has already exported.

A variant is a partial override of the `eval` block. Its stage ids derive from the export id and
its own resolved eval settings, exactly as the main eval's do, so a variant never retrains or
re-exports, and a variant equal to the main eval finds the main eval's outputs.

The sweep block lists variants by name, or a grid (dotted eval key -> values, every combination,
named after its values), or both. The config side (variants, their eval blocks and stage blocks)
is in pgolf.config; this module builds the table from their results.
"""

from __future__ import annotations

import json
import math
import statistics

from pgolf.shards import write_atomic


# ----------------------------------------------------------------------------- the table


def _verdict(verdicts: list[str]) -> str:
    if "fail" in verdicts:
        return "fail"
    if verdicts and all(v == "pass" for v in verdicts):
        return "pass"
    return "not run"


def table_rows(variants: list[dict], seeds: list[int], scores: dict[str, dict[int, dict]]) -> list[dict]:
    """One row per variant from its per-seed score JSONs: val_bpb per seed, mean, std, time, audit."""
    rows = []
    for v in variants:
        per_seed = scores[v["name"]]
        bpbs = [per_seed[s]["val_bpb"] for s in seeds]
        verdicts = [per_seed[s].get("audit", {}).get("verdict", "not run") for s in seeds]
        rows.append(
            {
                "variant": v["name"],
                "settings": v["settings"],
                "method": v["method"],
                **{f"val_bpb_seed{s}": round(b, 8) for s, b in zip(seeds, bpbs)},
                "val_bpb_mean": round(statistics.fmean(bpbs), 8),
                "val_bpb_std": round(statistics.stdev(bpbs), 8) if len(bpbs) > 1 else None,
                "eval_time_s": round(statistics.fmean(per_seed[s]["eval_time_ms"] for s in seeds) / 1000.0, 3),
                "audit": _verdict(verdicts),
                "audit_per_seed": ",".join(verdicts),
            }
        )
    return rows


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.8f}" if abs(value) < 100 else f"{value:.3f}"
    return str(value)


def to_csv(rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()


def to_markdown(name: str, rows: list[dict], seeds: list[int]) -> str:
    head = ["variant", "settings", "method", *[f"seed {s}" for s in seeds], "mean val_bpb", "std", "eval time (s, mean)", "causality audit"]
    lines = [
        f"# Sweep `{name}`",
        "",
        f"val_bpb per seed on the same exported checkpoints; std is the sample std over {len(seeds)} seed"
        f"{'s' if len(seeds) > 1 else ''}; eval time is the scoring pass alone (the audit not included).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [
            f"`{r['variant']}`",
            f"`{r['settings']}`",
            r["method"],
            *[_cell(r[f"val_bpb_seed{s}"]) for s in seeds],
            _cell(r["val_bpb_mean"]),
            _cell(r["val_bpb_std"]) or "-",
            f"{r['eval_time_s']:.3f}",
            f"{r['audit']} ({r['audit_per_seed']})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_text(path, text: str) -> None:
    write_atomic(path, text.encode("utf-8"))


def build_table(name: str, variants: list[dict], seeds: list[int], score_files: dict[str, dict[int, str]], out: dict) -> list[dict]:
    """Reads every variant's score JSONs and writes table.csv, table.md, val_bpb.png, variants.json."""
    scores = {}
    for v in variants:
        scores[v["name"]] = {}
        for s in seeds:
            path = score_files[v["name"]][s]
            with open(path, encoding="utf-8") as f:
                scores[v["name"]][s] = json.load(f)
    rows = table_rows(variants, seeds, scores)
    write_text(out["variants"], json.dumps({"sweep": name, "seeds": seeds, "variants": variants}, indent=2) + "\n")
    write_text(out["csv"], to_csv(rows))
    write_text(out["md"], to_markdown(name, rows, seeds))
    from pgolf import plots

    plots.sweep_scores(rows, seeds, out["plot"], f"Sweep {name}: val_bpb per variant")
    return rows
