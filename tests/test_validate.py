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
    # The claimed 4-decimal numbers are found on final_slot_exact, not on the reused roundtrip label.
    assert r.seeds["1337"]["final_label"] == "final_slot_exact" and r.seeds["1337"]["final_kind"] == "slot"
    assert r.seeds["1337"]["claim_source"] == "submission.json seed_results[1337].val_bpb"
    assert r.seeds["1337"]["final_val_bpb"] == 0.86830694


def test_newer_family_folder_is_valid(tmp_path):
    r = validate_record(newer_folder(tmp_path))
    assert r.problems == [] and r.size_convention == "lzma"
    assert r.notes == ["train_gpt.py: lzma -9e of the shipped code is 132 bytes; train_seed42.log states 31930 compressed (its own packing)"]
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
    (_drop("github_id"), None),  # a metadata gap: a note (test_metadata_gaps_are_notes)
    (_drop("val_bpb"), None),  # a note: the per-seed claims are still checked
    (_set(["val_bpb"], "2.2"), "submission.json: val_bpb is not a number ('2.2')"),
    (_set(["date"], "24/11/2026"), None),  # a note
    (_set(["seeds"], [1337, 42]), "submission.json: seeds [42, 1337] but seed_results has [42, 1337, 2024]"),
    (_set(["seed_results", "42", "val_bpb"], 2.2283), "submission.json seed_results[42].val_bpb = 2.2283: no line of train_seed42.log carries it (its final score: final_slot_causal_exact val_bpb:2.22823271)"),
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


def test_metadata_gaps_are_notes(tmp_path):
    folder = ours_folder(tmp_path)
    edit(folder, lambda s: (s.pop("github_id"), s.update(date="24/11/2026")))
    r = validate_record(folder)
    assert r.problems == []
    assert r.notes == ["submission.json: github_id missing or not a non-empty string", "submission.json: date '24/11/2026' is not an ISO date"]


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
    # Ours (eval_method and a pgolf log): pgolf always writes a README, so its absence is a problem.
    assert validate_record(folder).problems == ["train_seed2024.log: missing (submission.json lists seed 2024)", "README.md: missing"]
    for log in folder.glob("*.log"):
        log.unlink()
    NON_RECORD = "(*.log / *.txt with training or score lines): a non-record folder still needs evidence for its numbers"
    assert validate_record(folder).problems == [f"no training log for seeds 42, 1337, 2024 {NON_RECORD}", "README.md: missing"]
    # Upstream, a non-record folder without any log is a note only when its README states results in bpb (#29).
    edit(folder, _drop("eval_method"))
    assert validate_record(folder).problems == [f"no training log for seeds 42, 1337, 2024 {NON_RECORD}"]
    write(folder, "README.md", "# Ours\n\nFinal: 2.2158 bpb (3-seed mean).\n")
    r = validate_record(folder)
    assert r.problems == [] and r.notes[:1] == [
        "no training log for seeds 42, 1337, 2024: a non-record folder whose numbers only its README states"]
    folder = ours_folder(tmp_path / "timed", track="track_10min_16mb")  # on the record track it is a problem
    edit(folder, _drop("eval_method"))
    for log in folder.glob("*.log"):
        log.unlink()
    RECORD = "(*.log / *.txt with training or score lines): a record that cannot be checked is not valid"
    assert validate_record(folder).problems == [f"no training log for seeds 42, 1337, 2024 {RECORD}"]
    edit(folder, lambda s: [s.pop(k) for k in ("seeds", "seed_results", "compliance")])
    assert validate_record(folder).problems == [f"no training log for submission.json's val_bpb = 2.21576813 {RECORD}"]
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
    assert r.problems == ["submission.json seed_results[42].val_bpb = 2.22823271: no line of train_seed42.log carries it (its final score: "
                          "no final score line, looked for final_score_exact, final_slot_causal_exact, final_slot_published_exact, final_ttt_exact, final_lora_ttt_exact, final_phased_ttt_exact, final_sliding_window_exact)"]
    # One cause, one problem: the means over the other two seeds are not compared.
    assert r.notes == ["seed 42 without a claimed score: means, std, bytes_total and significance not checked"]


def test_folder_over_the_cap(tmp_path):
    folder = ours_folder(tmp_path)
    edit(folder, lambda s: (s.update(bytes_total=16_000_001), s["seed_results"]["42"].update(artifact_bytes=16_000_001)))
    log = folder / "train_seed42.log"
    log.write_text(log.read_text().replace("Serialized model int6+lzma: 523608 bytes", "Serialized model int6+lzma: 15995001 bytes")
                   .replace("Total submission size int6+lzma: 528608 bytes", "Total submission size int6+lzma: 16000001 bytes"))
    assert validate_record(folder).problems == [
        "submission.json: bytes_total 16000001 > cap 16000000",
        "train_gpt.py as shipped (5000 bytes) + model (15995001 bytes, train_seed42.log) = 16000001 > cap 16000000 (raw convention)",
        "submission.json: compliance.artifact_under_16mb is true but train_seed42.log is over the cap",
    ]
    # A log's stated total that the recomputation does not give: a problem in ours (pgolf writes both).
    folder = ours_folder(tmp_path / "b")
    log = folder / "train_seed42.log"
    log.write_text(log.read_text().replace("Total submission size int6+lzma: 528608 bytes", "Total submission size int6+lzma: 528609 bytes"))
    edit(folder, lambda s: (s.update(bytes_total=528609), s["seed_results"]["42"].update(artifact_bytes=528609)))
    assert validate_record(folder).problems == [
        "train_seed42.log: Total submission size 528609 bytes, but train_gpt.py as shipped + model = 528608 (raw convention)"]


def test_shipped_code_counts_against_the_cap_and_must_match_the_log(tmp_path):
    folder = legacy_folder(tmp_path)
    (folder / "train_gpt.py").write_text("#" * 1998 + "\n")  # #1313: the committed file is 1 byte short of the logged one
    # Upstream, a few bytes between the logged and the shipped code are a note (#1313 was merged so).
    r = validate_record(folder)
    assert r.problems == [] and r.size_convention == "raw"
    assert "train_seed42.log: Code size 2000 bytes but the shipped train_gpt.py is 1999 bytes" in r.notes
    assert "train_seed42.log: Total submission size 15767721 bytes, but train_gpt.py as shipped + model = 15767720 (raw convention)" in r.notes
    # Over the cap by the shipped bytes under the raw convention.
    log = folder / "train_seed42.log"
    log.write_text(log.read_text().replace("15765721", "15998002"))
    assert validate_record(folder).problems == [
        "train_gpt.py as shipped (1999 bytes) + model (15998002 bytes, train_seed42.log) = 16000001 > cap 16000000 (raw convention)"]
    # A log stating `Code size (compressed)` counts by the lzma convention: the plain script may ship.
    folder = newer_folder(tmp_path)
    (folder / "train_gpt.py").write_text("#" * 157999 + "\n")
    r = validate_record(folder)
    assert r.problems == [] and r.size_convention == "lzma"
    assert r.notes == ["train_gpt.py: lzma -9e of the shipped code is 160 bytes; train_seed42.log states 31930 compressed (its own packing)"]
    log = folder / "train_seed42.log"
    log.write_text(log.read_text().replace("quantized+brotli: 15960000 bytes", "quantized+brotli: 15968071 bytes"))
    assert validate_record(folder).problems == [
        "train_seed42.log's Code size (compressed) (31930 bytes) + model (15968071 bytes, train_seed42.log) = 16000001 > cap 16000000 (lzma convention)"]


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


# ----------------------------------------------------------------------------- size conventions


def test_size_prints_both_totals_and_counts_by_the_chosen_one(tmp_path, capsys):
    from pgolf.size import lzma_bytes

    folder = ours_folder(tmp_path, code_bytes=5000)
    packed = lzma_bytes((folder / "train_gpt.py").read_bytes())
    assert main(["size", str(folder)]) == 0
    out = capsys.readouterr().out
    rows = dict(line.split(None, 1) for line in out.splitlines())
    assert (rows["convention"], rows["code_bytes"], rows["total_bytes"]) == ("raw", "5000", "528608")
    assert rows["total_raw"] == "528608 (code 5000 bytes as shipped)"
    assert rows["total_lzma"] == f"{packed + 523608} (code {packed} bytes lzma-compressed)"
    # A limit between the two totals: over by the shipped bytes, under by the compressed ones.
    limit = str(packed + 523608 + 10)
    assert main(["size", str(folder), "--limit", limit]) == 1
    capsys.readouterr()
    assert main(["size", str(folder), "--limit", limit, "--code-size-convention", "lzma", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["code_size_convention"], r["code_bytes"], r["total_bytes"], r["total_bytes_raw"]) == ("lzma", packed, packed + 523608, 528608)


def test_size_gate_counts_by_the_convention(tmp_path, capsys):
    from pgolf.size import lzma_bytes

    code = tmp_path / "train_gpt.py"
    code.write_text("".join(f"x{i} = {i * i}\n" for i in range(3000)))
    model = tmp_path / "model.ptz"
    model.write_bytes(b"\0" * 100_000)
    raw, packed = code.stat().st_size, lzma_bytes(code.read_bytes())
    limit = str(packed + 100_000)  # fits exactly under lzma, not as shipped
    args = ["size-gate", "--code", str(code), "--model", str(model), "--limit", limit, "--label", "int6+lzma"]
    assert main([*args, "--out", str(tmp_path / "raw.json")]) == 2
    assert not (tmp_path / "raw.json").exists()  # nothing half-written
    assert f"code {raw} (raw) + model 100000 = {raw + 100_000} bytes > limit {limit}" in capsys.readouterr().err
    assert main([*args, "--code-size-convention", "lzma", "--out", str(tmp_path / "lzma.json")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"Code size (uncompressed): {raw} bytes",
        f"Code size (compressed): {packed} bytes",
        f"Total submission size int6+lzma: {packed + 100_000} bytes (model 100000, limit {limit}, headroom 0)",
    ]
    written = json.loads((tmp_path / "lzma.json").read_text())
    assert (written["code_size_convention"], written["code_bytes"], written["total_bytes"]) == ("lzma", packed, packed + 100_000)


@pytest.mark.parametrize("convention", ["raw", "lzma"])
def test_our_record_validates_under_both_conventions(tmp_path, capsys, convention):
    """A record assembled as the workflow does (test_record_assembly), its size stage run by
    `pgolf size-gate` under the convention: it validates, and says which convention it uses."""
    from pgolf import record
    from pgolf.size import lzma_bytes
    from test_record_assembly import SEEDS, config, out_files, stage_outputs

    cfg = config()
    cfg["export"]["code_size_convention"] = convention
    files, logs, code = stage_outputs(tmp_path)
    for seed, (_, _, model_bytes) in SEEDS.items():
        model = tmp_path / f"model{seed}.ptz"
        model.write_bytes(b"\0" * model_bytes)
        assert main(["size-gate", "--code", code, "--model", str(model), "--limit", "16000000", "--compressor", "lzma",
                     "--label", "int6+lzma", "--code-size-convention", convention, "--out", files[seed]["size"]]) == 0
        size_log = dict(logs[seed])["size"]
        Path(size_log).write_text(capsys.readouterr().out)
    folder = tmp_path / "records/track_non_record_16mb/2026-11-24_Handmade"
    record.assemble(cfg, files, logs, code, out_files(folder))
    sub = json.loads((folder / "submission.json").read_text())
    code_bytes = lzma_bytes(Path(code).read_bytes()) if convention == "lzma" else 5000
    assert (sub["code_size_convention"], sub["bytes_code"], sub["bytes_total"]) == (convention, code_bytes, code_bytes + 523608)
    r = validate_record(folder)
    assert (r.problems, r.notes, r.size_convention) == ([], [], convention)
    if convention == "lzma":
        assert "lzma-compressed" in (folder / "README.md").read_text()
        # The same record claiming the raw convention is over-counted against its own logs: a problem.
        edit(folder, _set(["code_size_convention"], "raw"))
        assert validate_record(folder).problems[0].startswith("train_seed42.log: Total submission size")


# ----------------------------------------------------------------------------- TTT, audits, parse-log's claim


def _retag(folder: Path, old: str, new: str) -> None:
    for log in folder.glob("train_seed*.log"):
        log.write_text(log.read_text().replace(old, new))


def test_score_first_claim_contradicted_by_the_audit_line(tmp_path):
    folder = ours_folder(tmp_path)
    edit(folder, _set(["compliance", "score_first_eval"], True))
    _retag(folder, "steps:4 lr:0.012 stride:64", "steps:4 lr:0.012 stride:64 audit:pass")
    assert validate_record(folder).problems == []
    _retag(folder, "audit:pass", "audit:fail")
    assert validate_record(folder).problems == [
        "submission.json: compliance.score_first_eval is true but train_seed42.log's final_slot_causal line says audit:fail"]
    edit(folder, _set(["compliance", "score_first_eval"], None))  # not claimed: nothing to contradict
    assert validate_record(folder).problems == []


def test_final_ttt_exact_is_our_ttt_claim(tmp_path):
    folder = ours_folder(tmp_path)
    _retag(folder, "final_slot_causal", "final_ttt")
    _retag(folder, "steps:4 lr:0.012 stride:64", "stride:64 audit:pass")
    edit(folder, lambda s: (s.update(eval_method="ttt"), s["compliance"].update(score_first_eval=True)))
    r = validate_record(folder)
    assert r.problems == [] and r.notes == []
    assert {(s["final_label"], s["final_kind"], s["final_audit"]) for s in r.seeds.values()} == {("final_ttt_exact", "ttt", "pass")}
    # Without a submission.json the family rule takes it too.
    from pgolf.logparse import parse_file
    s = parse_file(folder / "train_seed42.log")
    assert (s.final_label, s.final_val_bpb, s.final_kind) == ("final_ttt_exact", 2.22823271, "ttt")
    _retag(folder, "audit:pass", "audit:fail")
    assert validate_record(folder).problems == [
        "submission.json: compliance.score_first_eval is true but train_seed42.log's final_ttt line says audit:fail"]
    edit(folder, _set(["eval_method"], "sliding_window"))
    assert "submission.json: eval_method sliding_window but train_seed42.log's final score is final_ttt_exact" in validate_record(folder).problems


def test_parse_log_json_says_which_line_is_claimed_and_why(tmp_path, capsys):
    folder = ours_folder(tmp_path)
    log = folder / "train_seed42.log"
    lineno = next(i for i, ln in enumerate(log.read_text().splitlines(), 1) if ln.startswith("final_slot_causal_exact"))
    assert main(["parse-log", str(log), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert (s["final_label"], s["final_val_bpb"], s["claim_line"]) == ("final_slot_causal_exact", 2.22823271, lineno)
    assert s["claim_source"] == "submission.json seed_results[42].val_bpb"
    # The submission claims the sliding-window number: that line is the claim, not the family's pick.
    edit(folder, _set(["seed_results", "42", "val_bpb"], 2.23566264))
    main(["parse-log", str(log), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert (s["final_label"], s["final_val_bpb"], s["final_kind"]) == ("final_sliding_window_exact", 2.23566264, "sliding")
    # A bare log: the family rule, and it says so.
    bare = tmp_path / "bare" / "train_seed42.log"
    bare.parent.mkdir()
    bare.write_text(log.read_text())
    main(["parse-log", str(bare), "--json"])
    s = json.loads(capsys.readouterr().out)
    assert s["final_label"] == "final_slot_causal_exact" and s["claim_source"].startswith("family rule (pgolf): ")
