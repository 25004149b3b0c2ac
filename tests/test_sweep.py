"""Sweeps: eval/SLOT variants scored on the exported checkpoints of one run (no retraining).

One run of `snakemake sweep` with a four-variant SLOT sweep on the tiny overlay's finished run is
shared (the `sweep_run` fixture in conftest.py, on top of `tiny_run`); the rerun-scope tests ask
Snakemake in dry runs what a change to the sweep would cost.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest
import yaml

from conftest import planned_jobs, snakemake
from pgolf.config import ConfigError, check_config, load_configs
from pgolf.config import resolve_variants, stage_blocks
from pgolf.sweep import table_rows

NAMES = ["causal", "published", "steps3", "corrected"]
SEEDS = [1337, 42]


def sweep_dir(workdir: Path) -> Path:
    return workdir / "results/sweeps/tiny"


def sweep_dry_run(workdir: Path, configs, *extra_overlays) -> dict[str, int]:
    result = snakemake(workdir, "sweep", "-n", "--configfile", *configs, *extra_overlays, configs=())
    assert result.returncode == 0, result.stderr[-3000:]
    return planned_jobs(result)


def add_overlay(workdir: Path, name: str, content: dict) -> str:
    (workdir / f"{name}.yaml").write_text(yaml.safe_dump(content))
    return f"{name}.yaml"


# ----------------------------------------------------------------------------- without Snakemake


def test_grid_is_every_combination_named_after_its_values():
    config = load_configs(["config.yaml"])
    config["sweep"] = {"name": "g", "variants": [{"name": "base"}], "grid": {"slot.steps": [2, 8], "slot.schedule": ["published", "corrected"]}}
    check_config(config)
    variants = resolve_variants(config)
    assert [v["name"] for v in variants] == [
        "base",
        "slot.steps-2_slot.schedule-published",
        "slot.steps-2_slot.schedule-corrected",
        "slot.steps-8_slot.schedule-published",
        "slot.steps-8_slot.schedule-corrected",
    ]
    last = variants[-1]
    assert last["eval"]["slot"]["steps"] == 8 and last["eval"]["slot"]["schedule"] == "corrected"
    assert last["eval"]["slot"]["lr"] == config["eval"]["slot"]["lr"]  # the rest comes from the main eval
    assert last["settings"] == "slot.steps=8 slot.schedule=corrected"
    assert variants[0]["settings"] == "(main eval)"


def test_a_variant_equal_to_the_main_eval_has_its_stage_blocks():
    config = load_configs(["config.yaml"])
    main = stage_blocks(config["eval"])
    by_name = {v["name"]: v for v in resolve_variants(config)}
    # Mode is not part of the SLOT stage settings: causal and published share the main SLOT stage.
    assert stage_blocks(by_name["causal"]["eval"]) == main
    assert stage_blocks(by_name["published"]["eval"]) == main
    assert stage_blocks(by_name["causal_steps8"]["eval"])["slot"] != main["slot"]
    assert stage_blocks(by_name["causal_steps8"]["eval"])["eval"] == main["eval"]
    assert by_name["published"]["method"] == "slot_published"


@pytest.mark.parametrize(
    "sweep,message",
    [
        ({"name": "s", "variants": [{"name": "a", "slot": {"stpes": 3}}]}, "sweep.variants[0] (a): eval.slot: unknown key 'stpes'"),
        ({"name": "s", "variants": [{"name": "a"}, {"name": "a", "stride": 8}]}, "sweep.variants[1]: variant name 'a' is already used by sweep.variants[0]"),
        ({"name": "s", "variants": [], "grid": {"slot.lr_min": [0.5]}}, "sweep.grid (slot.lr_min-0.5): eval.slot.lr_min: 0.5 is larger than eval.slot.lr 0.012"),
        ({"name": "s", "variants": []}, "sweep: no variants"),
        ({"name": "a b", "variants": [{"name": "x"}]}, "sweep.name: 'a b' does not match"),
    ],
)
def test_bad_sweeps_are_named_in_one_line(sweep, message):
    config = load_configs(["config.yaml"])
    config["sweep"] = sweep
    with pytest.raises(ConfigError) as e:
        check_config(config)
    assert str(e.value).startswith(message), str(e.value)


def test_table_rows_mean_std_and_audit():
    variants = [{"name": "a", "settings": "x=1", "method": "slot_causal"}]
    scores = {"a": {1: {"val_bpb": 1.0, "eval_time_ms": 1000, "audit": {"verdict": "pass"}}, 2: {"val_bpb": 1.2, "eval_time_ms": 3000, "audit": {"verdict": "fail"}}}}
    (row,) = table_rows(variants, [1, 2], scores)
    assert row["val_bpb_mean"] == pytest.approx(1.1) and row["val_bpb_std"] == pytest.approx(statistics.stdev([1.0, 1.2]))
    assert row["eval_time_s"] == 2.0 and row["audit"] == "fail" and row["audit_per_seed"] == "pass,fail"


# ----------------------------------------------------------------------------- the sweep run


def test_sweep_trains_once_per_seed_and_evaluates_each_variant(sweep_run):
    workdir, _, scratch, ran, first = sweep_run
    # From scratch, `snakemake sweep` alone: one training and one export per seed, 4 variants x 2
    # seeds SLOT evals, no record and no plain eval.
    assert scratch["train"] == len(SEEDS) and scratch["quantize"] == len(SEEDS)
    assert scratch["eval_slot"] == len(NAMES) * len(SEEDS) and scratch["sweep_table"] == 1
    assert "record" not in scratch and "eval" not in scratch
    # After the record's run (one training per seed): the sweep trains and exports nothing, and
    # evaluates only its two new SLOT stages (causal and published are the record's own evals).
    assert first["train"] == len(SEEDS)
    assert ran == {"stage_config": 2, "eval_slot": 2 * len(SEEDS), "sweep_table": 1, "sweep": 1}
    # (other tests of the shared run train other seeds: count this config's)
    assert sum(len(list(workdir.glob(f"results/train/*/seed{s}/model.pt"))) for s in SEEDS) == len(SEEDS)


def test_sweep_table_holds_the_score_files_numbers(sweep_run):
    workdir = sweep_run[0]
    out = sweep_dir(workdir)
    assert {p.name for p in out.iterdir()} == {"table.csv", "table.md", "val_bpb.png", "variants.json"}
    variants = json.loads((out / "variants.json").read_text())
    assert variants["sweep"] == "tiny" and variants["seeds"] == SEEDS
    assert [v["name"] for v in variants["variants"]] == NAMES
    rows = list(csv.DictReader(io.StringIO((out / "table.csv").read_text())))
    assert [r["variant"] for r in rows] == NAMES
    for v, row in zip(variants["variants"], rows):
        scores = {s: json.loads((workdir / v["score_files"][str(s)]).read_text()) for s in SEEDS}
        bpbs = [scores[s]["val_bpb"] for s in SEEDS]
        for s in SEEDS:
            assert float(row[f"val_bpb_seed{s}"]) == pytest.approx(scores[s]["val_bpb"], abs=1e-8)
        assert float(row["val_bpb_mean"]) == pytest.approx(statistics.fmean(bpbs), abs=1e-8)
        assert float(row["val_bpb_std"]) == pytest.approx(statistics.stdev(bpbs), abs=1e-8)
        assert float(row["eval_time_s"]) == pytest.approx(statistics.fmean(scores[s]["eval_time_ms"] for s in SEEDS) / 1000, abs=1e-3)
        assert row["method"] == v["method"] == f"slot_{v['eval']['slot']['mode']}"
    by_name = {r["variant"]: r for r in rows}
    # The audit: published SLOT fits on the scored targets and fails; causal passes.
    assert by_name["published"]["audit"] == "fail" and by_name["published"]["audit_per_seed"] == "fail,fail"
    assert all(by_name[n]["audit"] == "pass" for n in ("causal", "steps3", "corrected"))
    assert by_name["steps3"]["settings"] == "slot.steps=3" and by_name["causal"]["settings"] == "(main eval)"
    # More SLOT steps on the same checkpoints give a different score.
    assert by_name["steps3"]["val_bpb_mean"] != by_name["causal"]["val_bpb_mean"]
    md = (out / "table.md").read_text()
    assert md.count("\n| `") == len(NAMES) and "| `published` | `slot.mode=published` | slot_published |" in md
    assert "fail (fail,fail)" in md
    assert (out / "val_bpb.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_variant_equal_to_the_main_eval_is_the_records_score(sweep_run):
    workdir = sweep_run[0]
    rows = {r["variant"]: r for r in csv.DictReader(io.StringIO((sweep_dir(workdir) / "table.csv").read_text()))}
    rec = next(workdir.glob("results/records/*/*_Tiny_CI"))
    sub = json.loads((rec / "submission.json").read_text())
    for s in SEEDS:
        seed = sub["seed_results"][str(s)]
        assert float(rows["causal"][f"val_bpb_seed{s}"]) == pytest.approx(seed["slot_causal_val_bpb"], abs=1e-8)
        assert float(rows["published"][f"val_bpb_seed{s}"]) == pytest.approx(seed["slot_published_val_bpb"], abs=1e-8)
    assert float(rows["causal"]["val_bpb_mean"]) == pytest.approx(sub["val_bpb"], abs=1e-7)


def test_sweep_noop_rerun_does_nothing(sweep_run):
    workdir, configs = sweep_run[:2]
    assert sweep_dry_run(workdir, configs) == {}


def test_adding_a_variant_adds_only_its_evals_and_the_table(sweep_run):
    workdir, configs = sweep_run[:2]
    more = {"sweep": {"variants": [*yaml.safe_load((workdir / "sweep.yaml").read_text())["sweep"]["variants"], {"name": "lr02", "slot": {"lr": 0.02}}]}}
    jobs = sweep_dry_run(workdir, configs, add_overlay(workdir, "more", more))
    assert jobs == {"stage_config": 1, "eval_slot": len(SEEDS), "sweep_table": 1, "sweep": 1}


def test_a_variant_already_evaluated_costs_only_the_table(sweep_run):
    workdir, configs = sweep_run[:2]
    # Same settings as steps3 under another name, plus published SLOT with steps 3 (same SLOT stage,
    # other mode: that one is new).
    same = {"sweep": {"variants": [{"name": "three_steps", "slot": {"steps": 3}}, {"name": "causal"}]}}
    assert sweep_dry_run(workdir, configs, add_overlay(workdir, "same", same)) == {"sweep_table": 1, "sweep": 1}
    other_mode = {"sweep": {"variants": [{"name": "pub3", "slot": {"steps": 3, "mode": "published"}}]}}
    assert sweep_dry_run(workdir, configs, add_overlay(workdir, "pub3", other_mode)) == {"eval_slot": len(SEEDS), "sweep_table": 1, "sweep": 1}


def test_sweep_changes_never_touch_the_record(sweep_run):
    workdir, configs = sweep_run[:2]
    more = add_overlay(workdir, "more2", {"sweep": {"variants": [{"name": "lr02", "slot": {"lr": 0.02}}]}})
    result = snakemake(workdir, "-n", "--configfile", *configs, more, configs=())
    assert result.returncode == 0 and planned_jobs(result) == {}


def test_sliding_variant_uses_the_plain_eval(sweep_run):
    workdir, configs = sweep_run[:2]
    # SLOT off: scored by the sliding window, which the record already evaluated.
    off = add_overlay(workdir, "off", {"sweep": {"variants": [{"name": "noslot", "slot": {"enabled": False}}]}})
    assert sweep_dry_run(workdir, configs, off) == {"sweep_table": 1, "sweep": 1}


def test_bad_sweep_stops_before_any_job(sweep_run):
    workdir, configs = sweep_run[:2]
    bad = add_overlay(workdir, "bad", {"sweep": {"variants": [{"name": "x", "slot": {"steps": 0}}]}})
    result = snakemake(workdir, "sweep", "-n", "--configfile", *configs, bad, configs=())
    out = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in out
    assert "config error: sweep.variants[0] (x): eval.slot.steps: expected a value >= 1, got 0" in out


def test_sweep_plot_in_the_report(sweep_run):
    workdir, configs = sweep_run[:2]
    result = snakemake(workdir, "sweep", "--report", "sweep_report.zip", "--configfile", *configs, configs=())
    assert result.returncode == 0, result.stderr[-3000:]
    import zipfile

    with zipfile.ZipFile(workdir / "sweep_report.zip") as z:
        names = z.namelist()
    assert any(n.endswith("val_bpb.png") for n in names) and any(n.endswith("table.csv") for n in names), names
