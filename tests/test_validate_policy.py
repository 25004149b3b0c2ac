"""The review policy of #29 on small handmade folders: each rule fires on a folder breaking it and
stays quiet on one keeping it (the track, a claimed score, best-seed headlines, every code file)."""

from __future__ import annotations

import json
import random
import string

from pgolf.discover import code_files
from pgolf.rules import lzma_code_bytes
from pgolf.validate import validate_record
from test_validate import edit, newer_folder, write


def move(folder, dest):
    """The same folder outside records/track_*/ (as a PR folder is once checked out alone)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder.rename(dest)
    return dest


def test_without_a_stated_track_the_ten_minute_limits_apply_and_the_inference_is_stated(tmp_path):
    folder = move(newer_folder(tmp_path), tmp_path / "prs" / "pr1" / "f")
    edit(folder, lambda s: s.pop("track"))
    log = folder / "train_seed42.log"
    log.write_text(log.read_text().replace("total_eval_time:485.5s", "total_eval_time:655.0s"))
    r = validate_record(folder)
    assert r.problems == ["train_seed42.log: eval passes took 655.000 s > 600 s"]
    assert "track: record (inferred: nothing says non-record; the 10-minute limits apply)" in r.notes
    # A README that says non-record takes the limits away (and says why).
    write(folder, "README.md", "# SP8192 on 1xH100\n\nNon-record submission: one GPU, 40 minutes.\n")
    r = validate_record(folder)
    assert r.problems == [] and "track: non-record (inferred: README.md:3 says 'Non-record'; no time limits)" in r.notes


def test_a_record_must_claim_a_score(tmp_path):
    folder = newer_folder(tmp_path)
    edit(folder, lambda s: [s.pop(k) for k in ("val_bpb", "seed_results")])
    assert validate_record(folder).problems == [
        "submission.json: no score (val_bpb, or a per-seed val_bpb): a record must claim one (the folder is in track_10min_16mb/)"]
    edit(folder, lambda s: s.update(val_bpb=None))
    assert validate_record(folder).problems == [
        "submission.json: val_bpb is not a number (None): a record must claim one (the folder is in track_10min_16mb/)"]
    # A blurb whose number is the mean of the logged finals stands for the claim (a metadata slip).
    edit(folder, lambda s: s.update(blurb="Mean of 3 seeds: 1.08086"))
    edit(folder, lambda s: s.pop("val_bpb"))
    r = validate_record(folder)
    assert r.problems == [] and any("its text states 1.08086, the mean of the 3 logged final scores" in n for n in r.notes)


def test_a_non_record_write_up_that_claims_nothing_is_a_note(tmp_path):
    folder = tmp_path / "prs" / "pr2" / "notes"
    write(folder, "README.md", "# Lessons from an H200 attempt\n\nNo new score is claimed here.\n")
    r = validate_record(folder)
    assert r.problems == [] and "train_gpt.py: missing (no train_gpt*.py either)" in r.notes
    write(folder, "README.md", "# Non-record: my run\n\nIt reached 1.2345 bpb.\n")
    write(folder, "submission.json", json.dumps({"name": "x", "track": "non_record_16mb", "val_bpb": 1.2345}))
    assert validate_record(folder).problems == [
        "no training log for submission.json's val_bpb = 1.2345 (*.log / *.txt with training or score lines): "
        "a non-record folder still needs evidence for its numbers",
        "train_gpt.py: missing (no train_gpt*.py either)"]


def test_a_best_seed_headline_is_a_problem_from_late_march_on(tmp_path):
    folder = newer_folder(tmp_path)  # dated 2026-04-09, three seeds
    edit(folder, lambda s: [s.pop("seed_results"), s.update(val_bpb=1.08014)])  # seed 999's score, not the mean
    assert validate_record(folder).problems == [
        "submission.json: val_bpb = 1.08014 is seed 999's score (train_seed999.log line 22, quantized_ttt), "
        "not the mean of the 3 seeds (the mean is the claim)"]
    edit(folder, lambda s: s.update(date="2026-03-19"))  # early records stated their best seed: a note
    r = validate_record(folder)
    assert r.problems == [] and any("is seed 999's score" in n for n in r.notes)


def test_every_file_the_script_imports_reads_or_execs_is_counted(tmp_path):
    folder = newer_folder(tmp_path)  # its logs state a compressed code size: the lzma convention
    rng = random.Random(0)
    noise = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(20000))  # ~15 KB even compressed
    write(folder, "helpers.py", f"import kernels\nX = '{noise}'\n")
    write(folder, "kernels.py", "Y = 2\n")
    write(folder, "notes_tool.py", "unused = 1\n")  # imported by nothing: not counted
    write(folder, "train_gpt.py", "import helpers\nsrc = open('blob.bin').read()\n")
    assert [p.name for p in code_files(folder / "train_gpt.py")] == ["train_gpt.py", "helpers.py", "kernels.py"]
    extra = sum(lzma_code_bytes((folder / n).read_bytes()) for n in ("helpers.py", "kernels.py"))
    r = validate_record(folder)
    assert f"train_gpt.py imports, reads or execs helpers.py, kernels.py: {extra} more code bytes counted (lzma convention)" in r.notes
    counted = 31930 + extra  # the logs' Code size (compressed) + the imported files, compressed
    assert counted + 15960000 > 16_000_000
    assert r.problems == [
        f"train_seed{s}.log's Code size (compressed) and the files it imports ({counted} bytes) + model (15960000 bytes, "
        f"train_seed{s}.log) = {counted + 15960000} > cap 16000000 (lzma convention)" for s in (42, 314, 999)]
    (folder / "train_gpt.py").write_text("src = 1\n")  # imports nothing: fits
    assert validate_record(folder).problems == []


def test_a_free_text_claim_line_is_found_and_classified(tmp_path):
    """#29 item 6: a seed log whose final score line is free text is a log, and the claim is found on it."""
    folder = newer_folder(tmp_path)
    for s in (42, 314, 999):
        log = folder / f"train_seed{s}.log"
        text = log.read_text()
        line = next(ln for ln in text.splitlines() if ln.startswith("quantized_ttt "))
        bpb = line.split("val_bpb:")[1].split()[0]
        log.write_text(text.replace(line, f"Quantized BPB (TTT): {bpb}"))
    r = validate_record(folder)
    assert r.problems == []
    assert {s["final_label"] for s in r.seeds.values()} == {"Quantized BPB (TTT)"}
    assert r.seeds["42"]["final_kind"] == "ttt" and r.seeds["42"]["final_val_bpb"] == 1.08079352


def test_pgolf_size_counts_every_code_file_of_a_folder(tmp_path, capsys):
    from pgolf.cli import main

    folder = tmp_path / "rec"
    write(folder, "train_gpt.py", "import helpers\n" + "#" * 985 + "\n")  # 1,001 bytes
    write(folder, "helpers.py", "#" * 499 + "\n")  # 500 bytes
    (folder / "final_model.ptz").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 996)  # 1,000 bytes
    assert main(["size", str(folder), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["code_bytes_raw"] == 1501 and report["total_bytes_raw"] == 2501
    assert sorted(report["code_files"]) == ["helpers.py", "train_gpt.py"]
