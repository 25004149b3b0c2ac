"""`pgolf validate` on small handmade record folders: ours, a #1313-style legacy one, a newer-family
one, and one broken copy per check."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from pgolf.cli import main
from pgolf.stats import significance
from pgolf.validate import validate_record
from test_logparse import legacy_slot_log, newer_log, pgolf_log

# (slot loss, slot bpb), (sliding loss, sliding bpb) per seed
OURS = {
    1337: ((3.91804097, 2.20305935), (3.93224561, 2.21096561)),
    42: ((3.96281064, 2.22823271), (3.97602443, 2.23566264)),
    2024: ((3.94112233, 2.21601234), (3.95511122, 2.22388877)),
}
LEGACY = {1337: (1.46609658, 0.86830694), 42: (1.45320000, 0.86067000), 2024: (1.45560000, 0.86215000)}
NEWER = {42: (2.79180191, 1.08079352), 314: (2.79401000, 1.08165000), 999: (2.79011000, 1.08014000)}
MODEL_BYTES = {1337: 523092, 42: 523608, 2024: 523300}


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)


def dump(folder: Path, sub: dict) -> None:
    write(folder, "submission.json", json.dumps(sub, indent=2))


def ours_folder(root: Path, seeds=(1337, 42, 2024), code_bytes=5000, track="track_non_record_16mb") -> Path:
    """A record folder as pgolf writes it, numbers consistent with its logs."""
    folder = root / track / "2026-11-24_Ours"
    write(folder, "README.md", "# Ours\n")
    write(folder, "train_gpt.py", "#" * (code_bytes - 1) + "\n")
    rows = {}
    for s in seeds:
        slot, sliding = OURS[s]
        write(folder, f"train_seed{s}.log", pgolf_log(seed=s, slot=slot, sliding=sliding, code_bytes=code_bytes, model_bytes=MODEL_BYTES[s]))
        rows[str(s)] = {
            "val_loss": slot[0], "val_bpb": slot[1], "artifact_bytes": code_bytes + MODEL_BYTES[s], "steps": 300,
            "step_avg_ms": 276.75, "train_time_s": 83.025, "eval_time_s": 26.536,
            "pre_quant_val_bpb": 2.24422808, "sliding_val_bpb": sliding[1],
        }
    losses = [rows[str(s)]["val_loss"] for s in seeds]
    bpbs = [rows[str(s)]["val_bpb"] for s in seeds]
    dump(folder, {
        "name": "Ours", "author": "pgolf", "github_id": "pgolf", "date": "2026-11-24", "track": track.removeprefix("track_"),
        "val_bpb": round(statistics.fmean(bpbs), 8), "val_bpb_std": round(statistics.stdev(bpbs), 8) if len(seeds) > 1 else None,
        "val_loss": round(statistics.fmean(losses), 8), "val_loss_std": round(statistics.stdev(losses), 8) if len(seeds) > 1 else None,
        "bytes_total": max(r["artifact_bytes"] for r in rows.values()), "bytes_code": code_bytes,
        "seeds": list(seeds), "seed_results": rows, "hardware": "CPU", "pytorch_version": "2.13.0+cpu",
        "eval_method": "slot_causal",
        "compliance": {"artifact_under_16mb": True, "train_under_600s": True, "eval_under_600s": True,
                       "score_first_eval": None, "three_seeds": len(seeds) >= 3},
        "significance": significance(losses, bpbs, {"name": "uniform", "val_loss": 6.93147181, "val_bpb": 3.898}),
    })
    return folder


def legacy_folder(root: Path, seeds=(1337, 42, 2024), code_bytes=2000) -> Path:
    """Modelled on #1313: no top-level val_bpb (mean_val_bpb instead), 4-decimal numbers, logs that
    print final_int6_roundtrip_exact three times."""
    folder = root / "track_10min_16mb" / "2026-04-03_SLOT24"
    write(folder, "README.md", "# SLOT-24\n")
    write(folder, "train_gpt.py", "#" * (code_bytes - 1) + "\n")
    rows = {}
    for s in seeds:
        write(folder, f"train_seed{s}.log", legacy_slot_log(seed=s, slot=LEGACY[s], code_bytes=code_bytes, embed_code=True))
        rows[str(s)] = {"val_loss": round(LEGACY[s][0], 4), "val_bpb": round(LEGACY[s][1], 4), "steps": 6563,
                        "ms_per_step": 91.44, "artifact_bytes": code_bytes + 15765721}
    bpbs = [LEGACY[s][1] for s in seeds]
    dump(folder, {
        "name": "SLOT-24", "author": "someone", "github_id": "someone", "date": "2026-04-03", "track": "10min_16mb",
        "num_gpus": 8, "gpu_type": "H100 SXM", "training_time_seconds": 600, "seed_results": rows,
        "mean_val_loss": round(statistics.fmean(LEGACY[s][0] for s in seeds), 4),
        "mean_val_bpb": round(statistics.fmean(bpbs), 4), "std_val_bpb": round(statistics.stdev(bpbs), 4),
        "blurb": "SLOT-24.",
    })
    return folder


def newer_folder(root: Path) -> Path:
    folder = root / "track_10min_16mb" / "2026-04-09_SP8192"
    write(folder, "README.md", "# SP8192\n")
    write(folder, "train_gpt.py", "#" * 31929 + "\n")  # the self-extracting wrapper whose size is counted
    rows = {}
    for s, (loss, bpb) in NEWER.items():
        write(folder, f"train_seed{s}.log", newer_log(seed=s, ttt=(loss, bpb)))
        rows[str(s)] = {"val_loss": loss, "val_bpb": bpb, "artifact_bytes": 15991930, "steps": 4550, "train_time_s": 588.047}
    dump(folder, {
        "name": "SP8192", "author": "a", "github_id": "a", "date": "2026-04-09T10:00:00Z", "track": "10min_16mb",
        "val_bpb": round(statistics.fmean(b for _, b in NEWER.values()), 8),
        "val_loss": round(statistics.fmean(v for v, _ in NEWER.values()), 8),
        "bytes_total": 15991930, "bytes_code": 31930, "seeds": list(NEWER), "seed_results": rows,
    })
    return folder


def edit(folder: Path, change) -> None:
    sub = json.loads((folder / "submission.json").read_text())
    change(sub)
    dump(folder, sub)


# ----------------------------------------------------------------------------- valid folders


def test_our_folder_is_valid(tmp_path):
    r = validate_record(ours_folder(tmp_path))
    assert r.problems == [] and r.notes == []
    assert set(r.seeds) == {"1337", "42", "2024"}
    assert r.seeds["42"]["final_label"] == "final_slot_causal_exact"


def test_legacy_1313_style_folder_is_valid_and_reads_mean_val_bpb(tmp_path):
    r = validate_record(legacy_folder(tmp_path))
    assert r.problems == []
    assert "submission.json: no top-level val_bpb; the score is read from mean_val_bpb" in r.notes
    assert any("final_int6_roundtrip_exact printed 3 times" in n and "final_slot_exact" in n for n in r.notes)
    assert r.seeds["1337"]["final_val_bpb"] == 0.86830694


def test_newer_family_folder_is_valid(tmp_path):
    r = validate_record(newer_folder(tmp_path))
    assert r.problems == [] and r.notes == []
    assert r.seeds["314"]["final_label"] == "quantized_ttt"


def test_single_train_log_of_a_one_seed_record(tmp_path):
    folder = ours_folder(tmp_path, seeds=(42,))
    (folder / "train_seed42.log").rename(folder / "train.log")
    edit(folder, lambda s: s.update(val_bpb_std=None, val_loss_std=None))
    r = validate_record(folder)
    assert r.problems == [] and r.seeds["42"]["log"] == "train.log"


# ----------------------------------------------------------------------------- one broken thing each


def _drop(key):
    return lambda s: s.pop(key)


def _set(path, value):
    def change(sub):
        node = sub
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    return change


@pytest.mark.parametrize("change,problem", [
    (_drop("github_id"), "submission.json: github_id missing or not a non-empty string"),
    (_drop("val_bpb"), "submission.json: no score (val_bpb)"),
    (_set(["val_bpb"], "2.2"), "submission.json: val_bpb is not a number ('2.2')"),
    (_set(["date"], "24/11/2026"), "submission.json: date '24/11/2026' is not an ISO date"),
    (_set(["seeds"], [1337, 42]), "submission.json: seeds [42, 1337] but seed_results has [42, 1337, 2024]"),
    (_set(["seed_results", "42", "val_bpb"], 2.2283), "submission.json seed_results[42].val_bpb = 2.2283 but train_seed42.log says 2.2282327"),
    (_set(["seed_results", "42", "steps"], 299), "submission.json seed_results[42].steps = 299 but train_seed42.log says 300"),
    (_set(["seed_results", "42", "artifact_bytes"], 528000), "submission.json seed_results[42].artifact_bytes = 528000 but train_seed42.log says Total submission size 528608 bytes"),
    (_set(["seed_results", "42", "train_time_s"], 84.0), "submission.json seed_results[42].train_time_s = 84.0 but train_seed42.log says 83.025"),
    (_set(["seed_results", "42", "eval_time_s"], 20.0), "submission.json seed_results[42].eval_time_s = 20.0 but train_seed42.log's eval passes add up to 26.536 s"),
    (_set(["seed_results", "42", "sliding_val_bpb"], 2.2), "submission.json seed_results[42].sliding_val_bpb = 2.2 but train_seed42.log says 2.2356626"),
    (_set(["val_bpb"], 2.2166), "submission.json: val_bpb = 2.2166 but the mean of train_seed42.log, train_seed1337.log, train_seed2024.log is 2.21576813"),
    (_set(["val_loss_std"], 0.5), "submission.json: val_loss_std = 0.5 but the logged seeds' std is 0.02238845"),
    (_set(["bytes_total"], 530000), "submission.json: bytes_total = 530000 but the logs say [528092, 528300, 528608]"),
    (_set(["bytes_code"], 4999), "submission.json: bytes_code = 4999 but train_seed42.log says Code size 5000 bytes"),
    (_set(["eval_method"], "sliding_window"), "submission.json: eval_method sliding_window but train_seed42.log's final score is final_slot_causal_exact"),
    (_set(["compliance", "three_seeds"], False), None),  # false with three seeds: understated, no false claim
    (_set(["significance", "passed"], False), "submission.json: significance.passed = False but the logged losses give True"),
    (_set(["significance", "t_statistic"], -12.0), "submission.json: significance.t_statistic = -12.0 but the logged losses give"),
])
def test_each_inconsistency_is_one_problem(tmp_path, change, problem):
    folder = ours_folder(tmp_path)
    edit(folder, change)
    problems = validate_record(folder).problems
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(problem), problems


def test_rounded_numbers_are_consistent_but_wrong_digits_are_not(tmp_path):
    folder = ours_folder(tmp_path)
    edit(folder, _set(["seed_results", "42", "val_bpb"], 2.2282))  # 2.22823271 rounded to 4 decimals
    assert validate_record(folder).problems == []
    edit(folder, _set(["seed_results", "42", "val_bpb"], 2.2281))
    assert len(validate_record(folder).problems) == 1


def test_missing_files_and_seed_logs(tmp_path):
    folder = ours_folder(tmp_path)
    (folder / "README.md").unlink()
    (folder / "train_seed2024.log").unlink()
    assert validate_record(folder).problems == ["README.md: missing", "train_seed2024.log: missing (submission.json lists seed 2024)"]
    for log in folder.glob("*.log"):
        log.unlink()
    assert "no training log (train_seed<S>.log)" in validate_record(folder).problems
    assert validate_record(tmp_path / "nowhere").problems == ["not a directory"]


def test_extra_log_is_a_note(tmp_path):
    folder = ours_folder(tmp_path, seeds=(1337, 42))
    edit(folder, _set(["compliance", "three_seeds"], False))
    (folder / "train_seed7.log").write_text(pgolf_log(seed=7))
    r = validate_record(folder)
    assert r.problems == [] and r.notes == ["train_seed7.log: seed 7 is not in submission.json (a run left out?)"]


@pytest.mark.parametrize("text,problem", [
    ('{"name": "x",\n "author": }', "submission.json: not valid JSON: Expecting value (line 2, column 12)"),
    ("[1, 2]", "submission.json: expected a JSON object, got list"),
    ("", "submission.json: not valid JSON: Expecting value (line 1, column 1)"),
])
def test_malformed_submission_json(tmp_path, text, problem):
    folder = ours_folder(tmp_path)
    (folder / "submission.json").write_text(text)
    assert validate_record(folder).problems == [problem]


def test_log_without_final_score(tmp_path):
    folder = ours_folder(tmp_path)
    log = folder / "train_seed42.log"
    log.write_text(log.read_text().split("==== pgolf stage: eval roundtrip")[0])
    r = validate_record(folder)
    assert r.problems == ["train_seed42.log: no final score line (looked for final_slot_causal_exact, final_slot_published_exact, final_sliding_window_exact)"]
    # One cause, one problem: the means over the other two seeds are not compared.
    assert r.notes == ["seed 42 without a claimed score: means, std, bytes_total and significance not checked"]


def test_folder_over_the_cap(tmp_path):
    folder = ours_folder(tmp_path)
    edit(folder, _set(["bytes_total"], 16_000_001))
    log = folder / "train_seed42.log"
    log.write_text(log.read_text().replace("Total submission size int6+lzma: 528608 bytes", "Total submission size int6+lzma: 16000001 bytes"))
    problems = validate_record(folder).problems
    assert "submission.json: bytes_total 16000001 > cap 16000000" in problems
    assert "train_seed42.log: Total submission size 16000001 bytes > cap 16000000" in problems
    assert "submission.json: compliance.artifact_under_16mb is true but train_seed42.log is over the cap" in problems


def test_shipped_code_counts_against_the_cap_and_must_match_the_log(tmp_path):
    folder = legacy_folder(tmp_path)
    (folder / "train_gpt.py").write_text("#" * 1998 + "\n")  # #1313: the committed file is 1 byte short of the logged one
    problems = validate_record(folder).problems
    assert problems == [f"train_seed{s}.log: Code size 2000 bytes but the shipped train_gpt.py is 1999 bytes" for s in (42, 1337, 2024)]
    folder = newer_folder(tmp_path)
    (folder / "train_gpt.py").write_text("#" * 157999 + "\n")  # shipping the plain script instead of the counted wrapper
    problems = validate_record(folder).problems
    assert problems[0] == "train_gpt.py (158000 bytes) + model (15960000 bytes, train_seed42.log) = 16118000 > cap 16000000"


def test_time_caps_apply_on_the_10min_track_or_when_claimed(tmp_path):
    folder = legacy_folder(tmp_path)
    log = folder / "train_seed42.log"
    text = log.read_text()
    log.write_text(text.replace("train_time:600110ms", "train_time:600200ms"))  # within one step of the cap: accepted
    assert validate_record(folder).problems == []
    log.write_text(text.replace("train_time:600110ms", "train_time:612000ms").replace("eval_time:254546ms", "eval_time:500000ms"))
    assert validate_record(folder).problems == [
        "train_seed42.log: training took 612.000 s > 600 s (+1.000 s grace)",
        "train_seed42.log: eval passes took 643.512 s > 600 s",
    ]
    # The non-record track has no time cap, unless the record claims to be under it.
    folder = ours_folder(tmp_path / "b")
    slow = folder / "train_seed42.log"
    slow.write_text(slow.read_text().replace("step:300/300 train_loss:4.0000 train_time:83025ms", "step:300/300 train_loss:4.0000 train_time:700000ms"))
    edit(folder, _set(["seed_results", "42", "train_time_s"], 700.0))
    assert validate_record(folder).problems == [
        "train_seed42.log: training took 700.000 s > 600 s (+1.000 s grace) (submission.json's compliance block claims it is under)"]
    edit(folder, _set(["compliance", "train_under_600s"], False))
    assert validate_record(folder).problems == []


def test_compliance_claims(tmp_path):
    folder = ours_folder(tmp_path, seeds=(1337, 42))
    edit(folder, _set(["compliance", "three_seeds"], True))
    assert validate_record(folder).problems == ["submission.json: compliance.three_seeds is true but the record has 2 seeds"]
    folder = ours_folder(tmp_path / "p")
    for s in OURS:
        log = folder / f"train_seed{s}.log"
        log.write_text(log.read_text().replace("final_slot_causal", "final_slot_published"))
    edit(folder, lambda sub: (sub.update(eval_method="slot_published"), sub["compliance"].update(score_first_eval=True)))
    assert validate_record(folder).problems == [
        "submission.json: compliance.score_first_eval is true but eval_method slot_published fits on the scored targets"]


# ----------------------------------------------------------------------------- the CLI


def test_cli_exit_codes_and_one_line_per_problem(tmp_path, capsys):
    good = ours_folder(tmp_path / "a")
    legacy = legacy_folder(tmp_path / "b")
    assert main(["validate", str(good), str(legacy)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"ok: {good} (3 seed logs, mean val_bpb 2.21576813)"
    assert out[-1].startswith(f"ok: {legacy} (3 seed logs")
    bad = ours_folder(tmp_path / "c")
    (bad / "submission.json").write_text("{")
    (bad / "train_seed42.log").unlink()
    assert main(["validate", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.err == ""
    assert [ln for ln in captured.out.splitlines() if ln.startswith(str(bad))] == [
        f"{bad}: submission.json: not valid JSON: Expecting property name enclosed in double quotes (line 1, column 2)"]
    assert main(["validate", str(bad), "--json"]) == 1
    reports = json.loads(capsys.readouterr().out)
    assert reports[0]["ok"] is False and reports[0]["record"] == str(bad) and set(reports[0]["seeds"]) == {"1337", "2024"}
