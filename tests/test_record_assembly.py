"""pgolf.record.assemble on handmade stage outputs: submission.json against the schema, the
significance block, the README's statements, the plots, and `pgolf validate` on the result."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from pgolf import record
from pgolf.cli import main
from pgolf.validate import validate_record
from test_logparse import pgolf_stage_logs

REPO = Path(__file__).resolve().parents[1]
CODE_BYTES = 5000
# seed -> (slot loss, slot bpb), (sliding loss, sliding bpb), model bytes
SEEDS = {
    1337: ((3.91804097, 2.20305935), (3.93224561, 2.21096561), 523092),
    42: ((3.96281064, 2.22823271), (3.97602443, 2.23566264), 523608),
    2024: ((3.94112233, 2.21601234), (3.95511122, 2.22388877), 523300),
}
EVAL_MS = (3239, 6609, 16688)


def config(**record_over) -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["seeds"] = list(SEEDS)
    cfg["eval"]["slot"]["compare_modes"] = []
    cfg["record"].update(date="2026-11-24", name="Handmade", **record_over)
    return cfg


def stage_outputs(tmp: Path, slot_mode="causal", audits=None):
    """Stage JSONs and stage logs of three seeds, numbers consistent between the two."""
    files, logs = {}, {}
    for seed, (slot, sliding, model_bytes) in SEEDS.items():
        d = tmp / f"stages/seed{seed}"
        d.mkdir(parents=True)
        outputs = {
            "train": {"steps": 300, "step_avg_ms": 276.75, "train_time_ms": 83025.0, "init_val_bpb": 3.8975, "pre_quant_val_bpb": 2.24422808,
                      "model_params": 723216, "torch_version": "2.13.0+cpu",
                      "loss_curve": [[1, 6.93], [2, 7.0], [150, 4.5], [300, 4.0 + (seed % 7) / 100]]},
            "export": {"label": "int6+lzma", "model_bytes": model_bytes},
            "size": {"code_bytes": CODE_BYTES, "model_bytes": model_bytes, "total_bytes": CODE_BYTES + model_bytes, "limit": 16_000_000, "ok": True},
            "roundtrip": {"val_loss": 3.99192264, "val_bpb": 2.24460198, "eval_time_ms": EVAL_MS[0]},
            "sliding": {"val_loss": sliding[0], "val_bpb": sliding[1], "eval_time_ms": EVAL_MS[1]},
            f"slot_{slot_mode}": {"val_loss": slot[0], "val_bpb": slot[1], "eval_time_ms": EVAL_MS[2]},
        }
        for key, verdict in (audits or {}).items():
            outputs[key]["audit"] = {"checked": True, "verdict": verdict}
        files[seed] = {}
        for name, content in outputs.items():
            (d / f"{name}.json").write_text(json.dumps(content))
            files[seed][name] = str(d / f"{name}.json")
        logs[seed] = []
        for stage, text in pgolf_stage_logs(seed, slot=slot, sliding=sliding, code_bytes=CODE_BYTES, model_bytes=model_bytes, eval_ms=EVAL_MS, slot_mode=slot_mode):
            path = d / f"{stage.replace(' ', '_')}.log"
            path.write_text(text)
            logs[seed].append((stage, str(path)))
    code = tmp / "code/train_gpt.py"
    code.parent.mkdir()
    code.write_text("#" * (CODE_BYTES - 1) + "\n")
    return files, logs, str(code)


def out_files(folder: Path) -> dict[str, str]:
    names = {"readme": "README.md", "submission": "submission.json", "code": "train_gpt.py", "requirements": "requirements.txt",
             "loss_plot": "train_loss.png", "score_plot": "seed_scores.png"}
    return {**{k: str(folder / v) for k, v in names.items()}, **{f"log{s}": str(folder / f"train_seed{s}.log") for s in SEEDS}}


def build(tmp: Path, cfg: dict, slot_mode="causal", base=None, audits=None) -> tuple[Path, dict]:
    files, logs, code = stage_outputs(tmp, slot_mode, audits)
    if not cfg["eval"]["slot"]["enabled"]:
        files = {s: {k: v for k, v in f.items() if not k.startswith("slot_")} for s, f in files.items()}
        logs = {s: [(stage, p) for stage, p in lg if not stage.startswith("eval slot")] for s, lg in logs.items()}
    folder = tmp / "records/track_non_record_16mb/2026-11-24_Handmade"
    sub = record.assemble(cfg, files, logs, code, out_files(folder), base=base)
    return folder, sub


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("assembly")
    base = copy.deepcopy({k: config()[k] for k in record.SETTINGS_BLOCKS})
    base["eval"]["stride"] = 96
    return build(tmp, config(), base=base)


def test_record_folder_validates_and_matches_the_schema(built, capsys):
    folder, sub = built
    assert {p.name for p in folder.iterdir()} == {"README.md", "submission.json", "train_gpt.py", "requirements.txt",
                                                  "train_loss.png", "seed_scores.png", "train_seed1337.log", "train_seed42.log", "train_seed2024.log"}
    written = json.loads((folder / "submission.json").read_text())
    assert written == sub
    jsonschema.validate(written, json.loads(record.SCHEMA_PATH.read_text()))
    assert written["val_bpb"] == pytest.approx((2.20305935 + 2.22823271 + 2.21601234) / 3, abs=1e-8)
    assert written["bytes_total"] == CODE_BYTES + 523608 and written["bytes_code"] == CODE_BYTES
    assert written["seed_results"]["42"]["eval_time_s"] == 26.536
    assert written["compliance"] == {"artifact_under_16mb": True, "train_under_600s": True, "eval_under_600s": True,
                                     "score_first_eval": None, "three_seeds": True}
    report = validate_record(folder)
    assert report.problems == [] and report.notes == []
    assert main(["validate", str(folder)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: {folder} (3 seed logs")


def test_plots_are_pngs(built):
    folder, _ = built
    for name in ("train_loss.png", "seed_scores.png"):
        data = (folder / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_readme_states_the_results_and_the_verdicts(built):
    folder, sub = built
    readme = (folder / "README.md").read_text()
    assert readme.startswith(f"# Handmade: val_bpb {sub['val_bpb']:.4f}\n")
    for heading in ("## Results", "## What changed against the base", "## Architecture and hyperparameters as run", "## Reproduce",
                    "## Compliance", "## Included files"):
        assert f"\n{heading}\n" in readme, heading
    assert "| 42 | 300 | 276.75 | 83.0 | 26.5 | 2.2442 | 2.2446 | 2.2357 | 2.22823271 | 3.96281064 | 528608 |" in readme
    assert "The significance bar is met" in readme and "one-sample t-test" in readme
    assert "| `eval.stride` | 96 | 64 |" in readme  # the only setting that differs from the given base
    assert "Score-first: **not audited**" in readme
    assert "![Training loss per seed](train_loss.png)" in readme and "![Scores per seed](seed_scores.png)" in readme
    for seed in SEEDS:
        assert f"torchrun --standalone --nproc_per_node=1 train_gpt.py --data <manifest.json> --seed {seed}\n" in readme
    assert "pgolf validate results/records/track_non_record_16mb/2026-11-24_Handmade" in readme
    assert "  date: '2026-11-24'" in readme  # the embedded config pins the record's date


def test_significance_block_and_a_bar_not_met(tmp_path):
    mean_loss = sum(v[0][0] for v in SEEDS.values()) / 3
    cfg = config(baseline={"name": "close rival", "val_loss": round(mean_loss + 0.003, 8), "val_bpb": 2.2})
    folder, sub = build(tmp_path, cfg)
    sig = sub["significance"]
    assert sig["test"] == "one_sample_t_one_sided" and sig["n_seeds"] == 3 and sig["df"] == 2
    assert sig["delta_nats"] == pytest.approx(-0.003, abs=1e-8) and sig["passed"] is False and sig["p_value"] > 0.5
    readme = (folder / "README.md").read_text()
    assert "| significance bar not met" in readme.splitlines()[2]
    assert "**The significance bar is not met**: the challenge asks for at least 0.005 nats better than close rival at p < 0.01" in readme
    assert "The base preset was not found" in readme
    assert validate_record(folder).problems == []


def test_welch_when_the_baseline_seeds_are_configured(tmp_path):
    cfg = config(baseline={"name": "rival", "val_loss": 4.1, "val_bpb": 2.3, "seed_val_losses": [4.09, 4.1, 4.11]})
    folder, sub = build(tmp_path, cfg)
    sig = sub["significance"]
    assert sig["test"] == "welch_t_one_sided" and sig["baseline_seed_val_losses"] == [4.09, 4.1, 4.11] and sig["passed"] is True
    assert "Welch's t-test" in (folder / "README.md").read_text()
    assert validate_record(folder).problems == []


def test_published_slot_is_never_called_score_first(tmp_path):
    cfg = config()
    cfg["eval"]["slot"]["mode"] = "published"
    folder, sub = build(tmp_path, cfg, slot_mode="published")
    assert sub["eval_method"] == "slot_published" and sub["compliance"]["score_first_eval"] is False
    assert "Score-first: **no**" in (folder / "README.md").read_text()
    assert validate_record(folder).problems == []


def test_without_slot_the_sliding_score_is_the_claim(tmp_path):
    cfg = config()
    cfg["eval"]["slot"]["enabled"] = False
    folder, sub = build(tmp_path, cfg)
    assert sub["eval_method"] == "sliding_window" and sub["compliance"]["score_first_eval"] is True
    assert sub["seed_results"]["42"]["val_bpb"] == 2.23566264 and sub["seed_results"]["42"]["eval_time_s"] == 9.848
    assert "Score-first: yes." in (folder / "README.md").read_text()
    assert validate_record(folder).problems == []


def test_a_submission_off_the_schema_is_refused(built):
    _, sub = built
    bad = copy.deepcopy(sub)
    bad["seed_results"]["42"]["val_bpb"] = "2.2"
    with pytest.raises(ValueError, match=r"does not match .*submission\.schema\.json: seed_results\.42\.val_bpb: '2\.2' is not of type 'number'"):
        record.check_submission(bad)
    del bad["significance"]
    with pytest.raises(ValueError, match=r"\(top level\): 'significance' is a required property"):
        record.check_submission(bad)


@pytest.mark.parametrize(
    "mode,audits,expected",
    [
        ("causal", {"sliding": "pass", "slot_causal": "pass"}, True),
        ("causal", {"sliding": "pass", "slot_causal": "fail"}, False),
        ("published", {"sliding": "pass", "slot_published": "fail"}, False),
    ],
)
def test_score_first_comes_from_the_causality_audit(tmp_path, mode, audits, expected):
    cfg = config()
    cfg["eval"]["slot"]["mode"] = mode
    folder, sub = build(tmp_path, cfg, slot_mode=mode, audits=audits)
    assert sub["compliance"]["score_first_eval"] is expected
    assert sub["seed_results"]["42"]["audits"] == {"sliding_window": audits["sliding"], f"slot_{mode}": audits[f"slot_{mode}"]}
    readme = (folder / "README.md").read_text()
    assert f"| `slot_{mode}` (headline) |" in readme and audits[f"slot_{mode}"] in readme
    log = (folder / "train_seed42.log").read_text()
    assert log.endswith(f"final_score_method:slot_{mode}\nfinal_score_exact val_loss:3.96281064 val_bpb:2.22823271\n")
    assert validate_record(folder).ok
