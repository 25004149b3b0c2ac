"""Score-first from evidence (#29 item 3): #1313's folder built from its real script is rejected with
one line naming the SLOT fit and the code line; its family is detected; the shapes that are
score-first (score a chunk, then train on it) pass; the merged TTT frontier passes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pgolf.cli import main
from pgolf.scorefirst import analyse, script_findings
from pgolf.validate import validate_record
from test_corpus import corpus  # noqa: F401  (the extracted-corpus fixture)
from test_validate import legacy_folder, newer_folder, write

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
FAMILY = {
    "pr1313_train_gpt.py": ("eval_val_slot", 892),
    "pr1229_train_gpt.py": ("eval_val_sliding", 1113),
    "pr1278_train_gpt_slot_recurrence.py": ("eval_val_slot", 933),
    "pr675_hypergradient_slot_train_gpt.py": ("eval_val_slot", 893),
}


def need(name: str) -> Path:
    path = REFERENCE / name
    if not path.is_file():
        pytest.skip(f"reference script {path} not found")
    return path


def pr1313_folder(root: Path) -> Path:
    """#1313's folder: its train_gpt.py (61,983 bytes), logs and submission.json in its style
    (record-anatomy.md: mean_val_bpb, 4-decimal seed_results, `final_slot_exact` lines)."""
    script = need("pr1313_train_gpt.py")
    folder = legacy_folder(root, code_bytes=script.stat().st_size)
    shutil.copy(script, folder / "train_gpt.py")
    write(folder, "README.md", "# Record: SLOT-24 Aggressive (val_bpb 0.8637)\n\nSLOT-24: per-window delta and logit bias, 24 AdamW steps.\n")
    return folder


@pytest.mark.parametrize("name", sorted(FAMILY))
def test_the_seed_and_its_family_fit_slot_on_the_scored_targets(name):
    function, line = FAMILY[name]
    found = analyse(need(name).read_text(), name)
    assert [(f.shape, f.confidence, f.function) for f in found] == [("slot_fit_on_scored", "high", f"{function}()")]
    assert found[0].where.startswith(f"{name}:{line}: ") and "backward()" in found[0].where


def test_pr1313_folder_is_rejected_with_one_line_naming_the_slot_fit_and_code_line(tmp_path, capsys):
    folder = pr1313_folder(tmp_path)
    r = validate_record(folder)
    assert r.problems == ["not score-first: SLOT fits on the scored targets before scoring them "
                          "(high confidence; eval_val_slot(): train_gpt.py:892: slot_loss.backward())"]
    assert main(["validate", str(folder)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [ln for ln in out if ": note: " not in ln] == [f"{folder}: {r.problems[0]}"]
    # Without the SLOT code (the same folder with a plain script) it passes: the verdict comes from the script.
    write(folder, "train_gpt.py", "#" * (folder.joinpath("train_gpt.py").stat().st_size - 1) + "\n")
    assert validate_record(folder).problems == []


SCORE_FIRST_TTT = '''
def eval_val_ttt(model, opt, val_tokens, chunks):
    loss_sum = 0.0
    for c in range(chunks):
        chunk = val_tokens[c * 64:(c + 1) * 64]
        with torch.no_grad():
            loss_sum += model(chunk).sum()
        for epoch in range(3):
            loss = model(chunk).mean()
            loss.backward()
            opt.step()
    return loss_sum
'''

# A TTT pass over the validation tokens (other tests add how it is called and logged).
TTT_ADAPT = '''
def ttt_adapt(model, opt, val_tokens, epochs):
    for epoch in range(epochs):
        for i in range(0, len(val_tokens), 64):
            loss = model(val_tokens[i:i + 64]).mean()
            loss.backward()
            opt.step()
'''

PRE_EVAL_TTT = TTT_ADAPT + '''

def main():
    ttt_adapt(model, opt, val_tokens, 25)
    print(eval_val(model, val_tokens))
'''

TARGET_KEYED = '''
def ngram_eval(tokens, ctx_hash, tgt_np, primes, mask):
    full_key = ((ctx_hash ^ (tgt_np * primes[3])) & mask).astype(np.int64)
    return full_key
'''


def test_score_first_ttt_passes_and_training_on_validation_before_scoring_does_not():
    assert analyse(SCORE_FIRST_TTT, "train_gpt.py") == []
    found = analyse(PRE_EVAL_TTT, "train_gpt.py")
    assert [(f.shape, f.function, f.where) for f in found] == [
        ("ttt_on_val_before_scoring", "ttt_adapt()", "train_gpt.py:6: loss.backward()")]
    found = analyse(TARGET_KEYED, "train_gpt.py")
    assert [(f.shape, f.where) for f in found] == [
        ("target_keyed_cache", "train_gpt.py:3: full_key = ((ctx_hash ^ (tgt_np * primes[3])) & mask).astype(np.int64)")]


def test_a_finding_is_a_problem_only_when_the_logs_or_readme_show_that_eval_ran(tmp_path):
    folder = newer_folder(tmp_path)
    write(folder, "train_gpt.py", TARGET_KEYED + "#" * (31930 - len(TARGET_KEYED) - 1) + "\n")
    r = validate_record(folder)
    assert r.problems == [] and any("keyed by the target token" in n and "do not show that eval running" in n for n in r.notes)
    write(folder, "README.md", "# SP8192 + order-9 n-gram backoff cache\n")
    assert validate_record(folder).problems == [
        "not score-first: the eval cache is keyed by the target token (high confidence; n-gram cache: "
        "train_gpt.py:3: full_key = ((ctx_hash ^ (tgt_np * primes[3])) & mask).astype(np.int64))"]


def test_a_module_the_script_imports_is_read_too(tmp_path):
    folder = tmp_path / "f"
    write(folder, "train_gpt.py", "from ngram_eval import ngram_eval\n")
    write(folder, "ngram_eval.py", TARGET_KEYED)
    assert [(f.shape, f.where.split(":")[0]) for f in script_findings(folder / "train_gpt.py")] == [("target_keyed_cache", "ngram_eval.py")]


def test_the_merged_ttt_frontier_is_score_first(corpus):  # noqa: F811
    merged = sorted(p for p in (corpus / "merged" / "records" / "track_10min_16mb").iterdir()
                    if p.name >= "2026-03-23" and "ttt" in p.name.lower())
    assert len(merged) >= 10
    flagged = {p.name: [x for x in validate_record(p).problems if "score-first" in x] for p in merged}
    assert {k: v for k, v in flagged.items() if v} == {}
