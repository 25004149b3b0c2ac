"""The rules added to drive `pgolf validate`'s disagreements with the hand reviews down (issue #29):
each fires on a small handmade folder or script breaking it and stays quiet on one keeping it."""

from __future__ import annotations

import json
import lzma
import random
import string

from pgolf.folder import Claim
from pgolf.logparse import line_kind, parse_text
from pgolf.scorefirst import analyse
from pgolf.validate import validate_record
from test_logparse import newer_log
from test_scorefirst import TTT_ADAPT
from test_validate import NEWER, dump, edit, newer_folder, write

# ----------------------------------------------------------------------------- score-first shapes

LAST_EPOCH_SCORED = '''
def eval_val_ttt_lora(model, opt, all_tokens, docs, epochs):
    loss_sum = 0.0
    for ds, dl in docs:
        for epoch in range(epochs):
            for ci in range(dl // 64):
                ptl = model(all_tokens[ds + ci * 64:ds + (ci + 1) * 64])
                if epoch == epochs - 1:
                    loss_sum += ptl.sum()
                ptl.mean().backward()
                opt.step()
    return loss_sum
'''

SCORED_EVERY_EPOCH = LAST_EPOCH_SCORED.replace("                if epoch == epochs - 1:\n                    loss_sum", "                loss_sum")

INLINE_PRE_EVAL_TTT = '''
def main():
    val_loss_sum = 0.0
    for i in range(0, 1024, 64):
        val_loss_sum += model(val_tokens[i:i + 64]).sum()
    log0(f"roundtrip val_loss:{val_loss_sum}")
    for ep in range(ttt_epochs):
        for i in range(0, len(val_tokens), 64):
            tl = model(val_tokens[i:i + 64])
            tl.backward()
            opt.step()
    log0(f"sliding val_bpb:{eval_val_sliding(model, val_tokens)}")


def eval_val_sliding(model, val_tokens):
    loss_sum = 0.0
    for i in range(0, len(val_tokens), 64):
        loss_sum += model(val_tokens[i:i + 64]).sum()
    return loss_sum
'''


def test_scoring_only_on_the_last_epoch_trains_on_chunks_before_scoring_them():
    found = analyse(LAST_EPOCH_SCORED, "train_gpt.py")
    assert [(f.shape, f.function, f.where) for f in found] == [
        ("ttt_on_val_before_scoring", "eval_val_ttt_lora()", "train_gpt.py:10: ptl.mean().backward()")]
    assert analyse(SCORED_EVERY_EPOCH, "train_gpt.py") == []  # scored each pass before its fit: score-first


def test_inline_ttt_on_validation_then_scoring_in_the_same_function_is_found():
    found = analyse(INLINE_PRE_EVAL_TTT, "train_gpt.py")
    assert [(f.shape, f.function, f.where) for f in found] == [("ttt_on_val_before_scoring", "main()", "train_gpt.py:10: tl.backward()")]
    # Scored only before the fit (nothing scores the adapted model afterwards): not this shape.
    assert analyse(INLINE_PRE_EVAL_TTT.replace('    log0(f"sliding val_bpb:{eval_val_sliding(model, val_tokens)}")\n', ""), "train_gpt.py") == []


PRE_EVAL_TTT_LOGGED = TTT_ADAPT + '''    log0(f"ttt_adapt:done epochs={epochs}")


def main():
    if two_pass:
        log0(f"ttt_adapt:start epochs={epochs}")
        ttt_adapt(model, opt, val_tokens, 25)
    print(eval_val(model, val_tokens))
'''


def test_a_flagged_path_whose_log_lines_never_print_did_not_run(tmp_path):
    folder = newer_folder(tmp_path)
    write(folder, "README.md", "# SP8192 + legal score-first TTT\n\nTTT adapts on each chunk after scoring it.\n")
    write(folder, "train_gpt.py", PRE_EVAL_TTT_LOGGED + "#" * (31930 - len(PRE_EVAL_TTT_LOGGED) - 1) + "\n")
    r = validate_record(folder)
    assert r.problems == []
    assert any("ttt_adapt(): train_gpt.py:6: loss.backward()" in n and "no log prints its lines ('ttt_adapt:done epochs=', 'ttt_adapt:start epochs='): "
               "that path did not run" in n for n in r.notes)
    # The logs print its start line (not the code that embeds it): it ran, the finding is a problem.
    for s in NEWER:
        log = folder / f"train_seed{s}.log"
        log.write_text(log.read_text().replace("Serialized model", "ttt_adapt:start epochs=25\nSerialized model"))
    assert validate_record(folder).problems == [
        "not score-first: test-time training on validation tokens before they are scored (medium confidence; ttt_adapt(): train_gpt.py:6: loss.backward())"]


# ----------------------------------------------------------------------------- claim lines and logs


def test_diagnostic_quantized_and_eval_only_step_zero_lines_score_the_artifact():
    assert line_kind("diagnostic quantized") == "quantized"
    assert line_kind("diagnostic pre-quantization post-ema") == "diagnostic"
    assert line_kind("step:0/0") == "quantized"  # an eval-only process: nothing trained, the loaded model scored
    assert line_kind("step:4000/20000") == "progress"
    text = newer_log().split("quantized val_loss:")[0] + "diagnostic quantized val_loss:2.83000000 val_bpb:1.09560000 eval_time:25000ms\n"
    s = parse_text(text)
    assert (s.final_label, s.final_val_bpb) == ("diagnostic quantized", 1.0956)


def test_a_per_seed_row_naming_each_pass_claims_its_last_pass():
    row = {"prequant_val_bpb": 1.059, "quantized_val_bpb": 1.067, "ttt_val_loss": 2.31, "ttt_val_bpb": 1.0559}
    claim = Claim("seed_results[42]", row)
    assert (claim.bpb_key, claim.val_bpb, claim.val_loss) == ("seed_results[42].ttt_val_bpb", 1.0559, 2.31)
    del row["ttt_val_bpb"]
    assert claim.val_bpb == 1.067
    assert Claim("x", {"prequant_val_bpb": 1.0}).val_bpb is None  # the float model's number is never the claim


def test_a_rerun_that_carries_the_claim_is_the_seeds_log(tmp_path):
    folder = newer_folder(tmp_path)
    log = folder / "train_seed42.log"
    write(folder, "train_seed42_corrected.log", log.read_text())
    # The first run of seed 42 broke the cap; its corrected rerun carries the claim and fits.
    log.write_text(newer_log(seed=42, ttt=(2.9, 1.2)).replace("15960000 bytes", "15990000 bytes"))
    r = validate_record(folder)
    assert r.problems == [] and r.seeds["42"]["log"] == "train_seed42_corrected.log"
    assert any("a training run of its own: checked instead of train_seed42.log" in n for n in r.notes)


def test_a_step_line_claim_is_a_note_only_when_the_final_line_is_at_least_as_good(tmp_path):
    folder = newer_folder(tmp_path)
    edit(folder, lambda s: [s.pop("seed_results"), s.pop("val_loss"), s.update(val_bpb=1.0886, seeds=[42])])
    for s in (314, 999):
        (folder / f"train_seed{s}.log").unlink()
    r = validate_record(folder)  # 1.0886 is the step line; the final quantized_ttt line is 1.0808
    assert r.problems == [] and any("a progress number; the log's final quantized_ttt val_bpb:1.08079352 is at least as good" in n for n in r.notes)
    log = folder / "train_seed42.log"
    log.write_text(log.read_text().replace("val_bpb:1.08079352", "val_bpb:1.10079352"))
    assert validate_record(folder).problems == [
        "submission.json val_bpb = 1.0886 is found only on train_seed42.log line 12 `4550/20000`, a progress number, not a final score"]


# ----------------------------------------------------------------------------- numbers


def test_rounding_slips_are_notes_and_real_differences_problems(tmp_path):
    folder = newer_folder(tmp_path)
    # Cut off instead of rounded (1.08079352 -> 1.0807): the claim matching accepts it, so does the row check.
    edit(folder, lambda s: s["seed_results"]["42"].update(val_bpb=1.0807))
    assert validate_record(folder).problems == []
    # A val_loss one unit off in its last decimal is a note; two units, a problem.
    edit(folder, lambda s: s["seed_results"]["42"].update(val_bpb=1.08079352, val_loss=2.79181))
    r = validate_record(folder)
    assert r.problems == [] and any("val_loss = 2.79181 but train_seed42.log says 2.7918019: one unit off" in n for n in r.notes)
    edit(folder, lambda s: s["seed_results"]["42"].update(val_loss=2.79183))
    assert validate_record(folder).problems == ["submission.json seed_results[42].val_loss = 2.79183 but train_seed42.log says 2.7918019"]


def test_a_mean_off_by_under_1e_5_is_a_note(tmp_path):
    folder = newer_folder(tmp_path)
    mean = json.loads((folder / "submission.json").read_text())["val_bpb"]
    edit(folder, lambda s: s.update(val_bpb=round(mean + 4e-6, 8)))
    r = validate_record(folder)
    assert r.problems == [] and any("apart by less than 1e-05 (a rounding slip)" in n for n in r.notes)
    edit(folder, lambda s: s.update(val_bpb=round(mean + 4e-5, 8)))
    assert [p.split(" but ")[0] for p in validate_record(folder).problems] == [f"submission.json: val_bpb = {round(mean + 4e-5, 8)}"]


def test_a_headline_that_is_a_worse_pass_mean_overstates_nothing(tmp_path):
    folder = newer_folder(tmp_path)
    edit(folder, lambda s: s.update(val_bpb=1.0836))  # every seed's quantized_sliding_window line is 1.0836
    r = validate_record(folder)
    assert r.problems == [] and any("is the mean of the seeds' quantized_sliding_window lines" in n for n in r.notes)
    edit(folder, lambda s: s.update(val_bpb=1.0736))  # better than any pass: a problem
    assert [p.split(" but ")[0] for p in validate_record(folder).problems] == ["submission.json: val_bpb = 1.0736"]


def test_a_plain_code_size_that_is_the_compressed_script_means_the_lzma_convention(tmp_path):
    folder = newer_folder(tmp_path)
    rng = random.Random(1)
    source = "\n".join("x_%d = '%s'" % (i, "".join(rng.choice(string.ascii_lowercase) for _ in range(8)) * 4) for i in range(2500)) + "\n"
    write(folder, "train_gpt.py", source)  # readable source, ~90 KB; lzma makes it much smaller
    packed = len(lzma.compress(source.encode(), preset=9 | lzma.PRESET_EXTREME))
    assert 2 * packed < len(source)
    model = 16_000_000 - packed - 100  # fits compressed, not raw
    for s in NEWER:
        log = folder / f"train_seed{s}.log"
        text = log.read_text().replace("Code size (uncompressed): 158000 bytes\nCode size (compressed): 31930 bytes", f"Code size: {packed + 50} bytes")
        log.write_text(text.replace("Serialized model quantized+brotli: 15960000", f"Serialized model quantized+brotli: {model}")
                       .replace("Total submission size quantized+brotli: 15991930", f"Total submission size quantized+brotli: {model + packed + 50}"))
    edit(folder, lambda s: s.pop("bytes_total"))
    r = validate_record(folder)
    assert r.size_convention == "lzma" and r.problems == []
    # A plain Code size that is the raw script (not what lzma makes of it) keeps the raw convention: over the cap.
    for s in NEWER:
        log = folder / f"train_seed{s}.log"
        log.write_text(log.read_text().replace(f"Code size: {packed + 50} bytes", f"Code size: {len(source)} bytes"))
    r = validate_record(folder)
    assert r.size_convention == "raw" and len(r.problems) == 3 and all("> cap 16000000 (raw convention)" in p for p in r.problems)


def test_a_score_filed_under_another_key_that_a_final_line_carries_is_a_note(tmp_path):
    folder = newer_folder(tmp_path)
    edit(folder, lambda s: [s.pop("seed_results"), s.pop("val_bpb"), s.update(seeds=[42], val_loss=1.08079352)])
    for s in (314, 999):
        (folder / f"train_seed{s}.log").unlink()
    r = validate_record(folder)
    assert r.problems == [] and any("states 1.08079352, which train_seed42.log line 22 `quantized_ttt` carries" in n for n in r.notes)
    edit(folder, lambda s: s.update(val_loss=1.5))  # carried by no line: a record without a score
    assert validate_record(folder).problems == [
        "submission.json: no score (val_bpb, or a per-seed val_bpb): a record must claim one (the folder is in track_10min_16mb/)"]


# ----------------------------------------------------------------------------- non-record evidence


def test_a_non_record_folder_needs_evidence_for_the_results_it_states(tmp_path):
    folder = tmp_path / "prs" / "pr3" / "negative"
    write(folder, "README.md", "# Non-record: JEPA on text\n\nA negative result.\n")
    write(folder, "submission.json", json.dumps({"track": "non_record_16mb", "val_bpb": None,
                                                 "note": "JEPA showed -19.5% CE on synthetic data but only -0.24% on text."}))
    assert validate_record(folder).problems == [
        "no log: submission.json note ('...JEPA showed -19.5% CE on synthetic dat...') states measured results "
        "that nothing in the folder backs (a non-record folder still needs evidence for its numbers)"]
    # An analysis script with the output it printed is that evidence.
    write(folder, "prove.py", "print('analysis')\n")
    write(folder, "proof_output.log", "".join(f"line {i}: delta -0.0{i}\n" for i in range(20)))
    r = validate_record(folder)
    assert r.problems == [] and "no training log and no score: a non-record folder whose evidence is its output proof_output.log" in r.notes


def test_a_log_with_only_step_lines_is_not_a_claimed_run_when_others_carry_scores(tmp_path):
    folder = newer_folder(tmp_path)
    edit(folder, lambda s: [s.pop("seed_results"), s.pop("seeds"), s.update(val_bpb=1.08079352, val_loss=2.79180191)])
    for s in (314, 999):
        (folder / f"train_seed{s}.log").unlink()
    # An aborted bigger run: step lines, an over-cap size, no final score.
    write(folder, "train_seed7.log", "seed: 7\n4000/20000 val_loss: 2.9 val_bpb: 1.2\nTotal submission size quantized+brotli: 16180242 bytes\n"
                                     "Serialized model quantized+brotli: 16150000 bytes\n")
    r = validate_record(folder)
    assert r.problems == [] and "train_seed7.log: no final score line; not a claimed run, not checked" in r.notes
    log = folder / "train_seed7.log"
    log.write_text(log.read_text() + "quantized_ttt val_loss:2.90000000 val_bpb:1.19000000 eval_time:300000ms\n")
    assert any("16150000" in p for p in validate_record(folder).problems)  # a scored run is checked


def test_a_non_record_folder_claiming_no_val_bpb_needs_no_final_line(tmp_path):
    folder = tmp_path / "prs" / "pr4" / "diffusion"
    write(folder, "README.md", "# Non-record: masked diffusion\n\nIt reports a variational bound, not an exact bpb.\n")
    write(folder, "train_gpt.py", "print(1)\n")
    write(folder, "submission.json", json.dumps({"track": "non_record_16mb", "val_var_bpb": 1.6252}))
    write(folder, "train.log", "step:100/200 val_loss:2.9 val_bpb:1.7 train_time:1000ms step_avg:10.00ms\n"
                               "final_quant_roundtrip_exact val_loss:2.65530960 val_var_bpb:1.62519980\n")
    r = validate_record(folder)
    assert r.problems == [] and any(n.startswith("train.log: no final score line") for n in r.notes)
    log = folder / "train.log"
    text = log.read_text()
    log.write_text(text.splitlines()[0] + "\n")  # a partial run: step lines only, no final line in any metric
    assert [p.split(" (")[0] for p in validate_record(folder).problems] == ["train.log: no final score line"]
    log.write_text(text)
    edit(folder, lambda s: s.update(track="10min_16mb", val_bpb=1.7))  # a record claiming a score needs the line
    assert any("train.log" in p for p in validate_record(folder).problems)


# ----------------------------------------------------------------------------- the byte count

LUT = '''
def build_sentencepiece_luts(sp, vocab_size, device):
    base_bytes = torch.zeros(vocab_size)
    has_space = torch.zeros(vocab_size, dtype=torch.bool)
    for i in range(vocab_size):
        piece = sp.id_to_piece(i)
        base_bytes[i] = len(piece.encode("utf-8"))
        if piece.startswith("\\u2581"):
            has_space[i] = True
            base_bytes[i] = len(piece[1:].encode("utf-8")) + 1
    return base_bytes, has_space
'''


def test_a_byte_table_that_counts_the_leading_space_twice_is_a_problem(tmp_path):
    folder = newer_folder(tmp_path)
    write(folder, "train_gpt.py", LUT + "#" * (31930 - len(LUT) - 1) + "\n")
    assert validate_record(folder).problems == [
        "val_bpb byte count: a '\u2581' piece gets its space byte in the table and the leading-space flag too, so the eval counts "
        "that space twice and val_bpb comes out too low (high confidence; train_gpt.py:10: base_bytes[i] = len(piece[1:].encode(\"utf-8\")) + 1)"]
    fixed = LUT.replace(".encode(\"utf-8\")) + 1", ".encode(\"utf-8\"))")  # the space comes from the flag alone
    write(folder, "train_gpt.py", fixed + "#" * (31930 - len(fixed) - 1) + "\n")
    assert validate_record(folder).problems == []


def test_a_log_that_says_it_is_not_the_runs_output_cannot_back_a_claim(tmp_path):
    folder = newer_folder(tmp_path)
    log = folder / "train_seed42.log"
    text = log.read_text()
    log.write_text("# SEED=42\n# Full training logs were not saved before pod termination.\n# Key metrics extracted during the run:\n" + text)
    assert validate_record(folder).problems == [
        "train_seed42.log: line 2 says '# Full training logs were not saved before pod termination.': "
        "a log that is not the run's output is not a training log and cannot back the claim"]
    log.write_text("# SEED=42\n# run on 8xH100\n" + text)  # a comment that says nothing of the kind
    assert validate_record(folder).problems == []


# ----------------------------------------------------------------------------- follow-up rules (#29)


def _one_log_folder(root, track="non_record_16mb", sub=None, log="", readme="# Non-record: a study\n"):
    folder = root / "prs" / "pr9" / "study"
    write(folder, "README.md", readme)
    write(folder, "train_gpt.py", "print('train')\n")
    write(folder, "submission.json", json.dumps({"track": track, **(sub or {})}))
    if log:
        write(folder, "train_seed42.log", log)
    return folder


FINAL = "final_int6_roundtrip_exact val_loss:2.00861567 val_bpb:1.18961534\n"


def test_an_artifact_line_states_the_total_and_the_model(tmp_path):
    s = parse_text("artifact: 16324677 bytes (model:16279396 code:45281)\n" + FINAL)
    assert (s.bytes_total, s.bytes_model) == (16324677, 16279396)
    s = parse_text("artifact: 15470583 bytes  code: 58274 bytes  total: 15528857 bytes\n" + FINAL)
    assert (s.bytes_total, s.bytes_model) == (15528857, 15470583)
    folder = _one_log_folder(tmp_path, sub={"val_bpb": 1.1896}, log="artifact: 16324677 bytes (model:16279396 code:45281)\n" + FINAL)
    assert validate_record(folder).problems == [
        "train_gpt.py as shipped (15 bytes) + model (16279396 bytes, train_seed42.log) = 16279411 > cap 16000000 (raw convention)"]
    (folder / "train_seed42.log").write_text("artifact: 15324677 bytes (model:15279396 code:45281)\n" + FINAL)
    assert validate_record(folder).problems == []


def test_a_line_that_says_packaging_was_skipped_scores_the_float_model(tmp_path):
    log = ("pre-quantization post-ema val_loss:1.83671792 val_bpb:0.96976490 eval_time:184477ms\n"
           "final_int6_roundtrip_exact val_loss:1.83671792 val_bpb:0.96976490 skipped_packaging:1\n")
    assert [ln.kind for ln in parse_text(log).lines] == ["float", "float"]
    folder = _one_log_folder(tmp_path, sub={"val_bpb": 0.9697649}, log=log)
    assert validate_record(folder).problems == [
        "submission.json val_bpb = 0.9697649 is found only on train_seed42.log line 2 `final_int6_roundtrip_exact`, a float number, not a final score"]
    (folder / "train_seed42.log").write_text(log.replace(" skipped_packaging:1", ""))  # a roundtrip of a built artifact
    assert validate_record(folder).problems == []


def test_a_result_stated_only_on_a_step_line_of_an_unfinished_run_is_a_problem(tmp_path):
    step = "step:5000/5000 val_loss:3.0670 val_bpb:1.5096 train_time:3852579ms step_avg:770.52ms\n"
    folder = _one_log_folder(tmp_path, sub={"local_val_bpb": 1.5096})
    write(folder, "exp048_train.log", step)
    write(folder, "exp042_train.log", step.replace("1.5096", "1.5596"))  # the comparison run
    assert validate_record(folder).problems == [
        "submission.json: no score (val_bpb, or a per-seed val_bpb); its text states 1.5096, only on exp048_train.log line 1 `step:5000/5000`, "
        "a progress number of a log with no final score line: not a final score"]
    write(folder, "exp048_train.log", step + "final_int8_zlib_roundtrip_exact val_loss:3.06700000 val_bpb:1.50960000\n")
    assert validate_record(folder).problems == []  # the run finished and its final line carries the number


def test_a_null_score_of_a_run_its_status_calls_unfinished_is_a_problem(tmp_path):
    folder = _one_log_folder(tmp_path, sub={"val_bpb": None, "status": "incomplete"}, log=FINAL)
    assert validate_record(folder).problems == [
        "submission.json: val_bpb is not a number (None): submission.json status says 'incomplete': an unfinished run has no score to review"]
    edit(folder, lambda s: s.update(status="negative result"))
    assert validate_record(folder).problems == []


def test_a_readme_non_record_line_about_another_submission_does_not_make_the_track(tmp_path):
    filler = "".join(f"Line {i} of the write-up.\n" for i in range(30))
    readme = "# Vocabulary\n\n**Result: 1.1896 BPB**\n" + filler + "A non-record baseline submission trained for 4 hours on 8xH100s.\n"
    folder = _one_log_folder(tmp_path, readme=readme, log=FINAL)
    (folder / "submission.json").unlink()
    assert validate_record(folder).problems == ["submission.json: missing: a record must claim its score (nothing says non-record)"]
    write(folder, "README.md", readme.replace("A non-record baseline submission trained", "This is a non-record submission, trained"))
    r = validate_record(folder)
    assert r.problems == [] and "track: non-record (inferred: README.md:34 says 'non-record'; no time limits)" in r.notes


def test_a_readme_non_record_line_naming_other_hardware_than_the_logs_is_another_run(tmp_path):
    folder = tmp_path / "prs" / "pr10" / "flower"
    write(folder, "README.md", "# Flower\n\n**Category:** Unlimited Compute (1xH100 SXM, ~60 min training)\n")
    write(folder, "train_gpt.py", "#" * 31929 + "\n")
    for s, (loss, bpb) in NEWER.items():  # 8-GPU runs whose eval passes take 700 s
        write(folder, f"train_seed{s}.log", newer_log(seed=s, ttt=(loss, bpb), total_eval="700.0").replace("Hyperparameters:\n", "Hyperparameters:\n  world_size: 8\n"))
    dump(folder, {"track": "10min_16mb", "val_bpb": round(sum(b for _, b in NEWER.values()) / 3, 8), "seeds": list(NEWER),
                  "seed_results": {str(s): {"val_loss": v, "val_bpb": b} for s, (v, b) in NEWER.items()}})
    r = validate_record(folder)
    assert r.problems == [f"train_seed{s}.log: eval passes took 700.000 s > 600 s" for s in sorted(NEWER)]
    assert any("README.md:3 says non-record of a 1xH100 run, the claimed logs state world_size 8" in n for n in r.notes)
    write(folder, "README.md", "# Flower\n\n**Category:** Unlimited Compute (8xH100 SXM, 60 min training)\n")  # the logs' run
    assert validate_record(folder).problems == []


def test_an_ngram_probability_that_is_a_count_ratio_is_not_normalized():
    ratio = "def score(full_counts, ctx_counts):\n    p = np.minimum(full_counts, ctx_counts) / np.maximum(ctx_counts, 1.0)\n    return p\n"
    assert [(f.shape, f.where) for f in analyse(ratio, "train_gpt.py")] == [
        ("target_keyed_cache", "train_gpt.py:2: p = np.minimum(full_counts, ctx_counts) / np.maximum(ctx_counts, 1.0)")]
    pair = "p_local = (raw_correct + beta * prior) / (ctx_c[has_ctx] + beta)\n"
    assert [f.shape for f in analyse(pair, "train_gpt.py")] == ["target_keyed_cache"]
    normalized = "def score(pair_counts):\n    p = pair_counts / pair_counts.sum(-1, keepdim=True)\n    return p\n"
    assert analyse(normalized, "train_gpt.py") == []


def test_a_log_the_readme_calls_a_baseline_or_superseded_is_not_the_submissions_run(tmp_path):
    def log(model):
        return f"Serialized model int8+zlib: {model} bytes\nTotal submission size int8+zlib: {model + 15} bytes\n" + FINAL
    readme = "# Non-record: a negative result\n\n- `train_baseline_seed1337.log`: full baseline training log\n- `train_sigma2_seed1337.log`: sigma=2\n"
    folder = _one_log_folder(tmp_path, sub={"val_bpb_sigma2": 1.18961534}, readme=readme)
    write(folder, "train_baseline_seed1337.log", log(16_050_000))  # the comparator, over the cap
    write(folder, "train_sigma2_seed1337.log", log(15_970_000))
    r = validate_record(folder)
    assert r.problems == [] and "train_baseline_seed1337.log: README.md:3 says 'baseline' of it: not the submission's run, not checked" in r.notes
    write(folder, "README.md", "# Non-record: a negative result\n")
    assert validate_record(folder).problems == [
        "train_gpt.py as shipped (15 bytes) + model (16050000 bytes, train_baseline_seed1337.log) = 16050015 > cap 16000000 (raw convention)"]


def test_an_eval_only_rerun_that_prints_the_claim_counts_the_shipped_code(tmp_path):
    folder = newer_folder(tmp_path)
    # Seed 42's training run states an older, bigger code (over the cap with its model) and another score;
    # an eval-only rerun of its model with the shipped code prints the claim.
    write(folder, "train_seed42.log", newer_log(seed=42, ttt=(2.9, 1.2)).replace("Code size (compressed): 31930", "Code size (compressed): 49930"))
    write(folder, "train_eval_seed42_rerun.log", "EVAL_ONLY=1: loading the saved artifact\n"
                                                 "quantized_ttt val_loss:2.79180191 val_bpb:1.08079352 eval_time:366525ms\n")
    r = validate_record(folder)
    assert r.problems == [] and "seed 42: the claimed 1.08079352 is in train_eval_seed42_rerun.log line 2, not train_seed42.log" in r.notes


PRE_EVAL_TTT_FIELD_LOGGED = TTT_ADAPT + '''

def main():
    print(eval_val(model, val_tokens))
    if sgd_ttt:
        for label, param_set in (("sgd_ttt", "control"),):
            ttt_adapt(model, opt, val_tokens, 2)
            log0(f"{label} param_set:{param_set} val_bpb:{eval_val(model, val_tokens)}")
'''


def test_a_flagged_path_whose_log_line_starts_with_a_format_field_ran_after_the_claim(tmp_path):
    folder = newer_folder(tmp_path)
    write(folder, "train_gpt.py", PRE_EVAL_TTT_FIELD_LOGGED + "#" * (31930 - len(PRE_EVAL_TTT_FIELD_LOGGED) - 1) + "\n")
    for s in NEWER:  # printed after the claimed quantized_ttt line: a side result
        log = folder / f"train_seed{s}.log"
        log.write_text(log.read_text() + "sgd_ttt param_set:control val_bpb:1.29\n")
    r = validate_record(folder)
    assert r.problems == [] and any("ttt_adapt(): train_gpt.py:6: loss.backward()" in n and "it ran after the claim was scored" in n for n in r.notes)
    for s in NEWER:  # printed before the claimed line: the claim may rest on it
        log = folder / f"train_seed{s}.log"
        log.write_text(log.read_text().replace("Serialized model", "sgd_ttt param_set:control val_bpb:1.29\nSerialized model"))
    assert validate_record(folder).problems == [
        "not score-first: test-time training on validation tokens before they are scored (medium confidence; ttt_adapt(): train_gpt.py:6: loss.backward())"]
