"""What keys each stage is derived from the code (pgolf.codegraph): the rules run what their
closures cover, the library has no import cycle, and editing any file of a stage's closure reruns
that stage and its dependents, and nothing else."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO, planned_jobs, snakemake
from pgolf import codegraph

RULES = REPO / "workflow" / "rules"
BYO_STAGES = {"data": "byo_data", "run": "byo_run", "check": "byo_check", "record": "byo_record"}


def rule_blocks() -> dict[str, str]:
    """rule name -> its text, from every rule file."""
    blocks = {}
    for path in sorted(RULES.glob("*.smk")):
        parts = re.split(r"^\s*rule (\w+):\s*$", path.read_text(), flags=re.M)
        for name, body in zip(parts[1::2], parts[2::2]):
            blocks[name] = body
    return blocks


def run_section(body: str) -> str:
    """The rule's `shell:` or `script:` lines (those indented under the directive)."""
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if line.strip() in ("shell:", "script:"):
            indent = len(line) - len(line.lstrip())
            rest = [ln for ln in lines[i + 1:]]
            out = []
            for ln in rest:
                if ln.strip() and len(ln) - len(ln.lstrip()) <= indent:
                    break
                out.append(ln)
            return "\n".join(out)
    return ""


def run_entries(body: str) -> list[str]:
    """What a rule runs, read from its shell/script: `pgolf CMD`, record modules run as scripts, Snakemake scripts."""
    body = run_section(body)
    entries = [f"pgolf {c}" for c in re.findall(r"\bpgolf ([a-z][a-z-]+)", body)]
    entries += [f"workflow/record/{m}.py" for m in re.findall(r"workflow/record/(\w+)\.py", body)]
    entries += [f"workflow/scripts/{s}" for s in re.findall(r'"\.\./scripts/(\w+\.py)"', body)]
    entries += [f"src/pgolf/{m}.py" for m in re.findall(r"python -m pgolf\.(\w+)", body)]
    return entries


def rule_stage(body: str) -> str | None:
    m = re.search(r'(?:code|tool)=CODE\["(\w+)"\]', body)
    if m:
        return m.group(1)
    m = re.search(r'code=BYO_CODE\["(\w+)"\]', body)
    return BYO_STAGES[m.group(1)] if m else None


def test_every_rule_runs_only_what_its_code_input_covers():
    files = codegraph.stage_files()
    used = {stage: set() for stage in codegraph.STAGE_ENTRIES}
    checked = 0
    for name, body in rule_blocks().items():
        entries = run_entries(body)
        stage = rule_stage(body)
        if not entries:
            continue
        assert stage, f"rule {name} runs {entries} but has no code=CODE[...] input keying it"
        outside = sorted(set(codegraph.stage_code(*entries)) - set(files[stage]))
        assert not outside, f"rule {name} runs {entries}; outside CODE[{stage!r}]: {outside}"
        used[stage].update(entries)
        checked += 1
    assert checked >= 14
    for stage, entries in codegraph.STAGE_ENTRIES.items():
        stale = [e for e in entries if e.startswith(("pgolf ", "workflow/record/", "workflow/scripts/"))]
        missing = [e for e in stale if e not in used[stage]]
        assert not missing, f"STAGE_ENTRIES[{stage!r}] names {missing}, which no rule of that stage runs"


def test_closures_follow_imports():
    # record code: the sibling imports, dependencies first
    slot = codegraph.record_closure(["slot"])
    assert set(slot) == {"runtime", "scoring", "model", "frontier", "build", "calib_gen", "frontier_export", "quantize", "evaluate", "slot"} and slot[-1] == "slot"
    order = codegraph.record_modules()
    assert order[-1] == "entry"
    for i, name in enumerate(order):
        deps = codegraph.sibling_imports(REPO / "workflow/record" / f"{name}.py")
        assert set(deps) <= set(order[:i]), f"{name} is bundled before {set(deps) - set(order[:i])}"
    # library: the record stage's closure has the headline rule, the size check has the CLI
    assert "src/pgolf/rules.py" in codegraph.stage_code("workflow/scripts/assemble_record.py")
    size = codegraph.stage_code("pgolf size-gate")
    assert {"src/pgolf/cli.py", "src/pgolf/size.py", "src/pgolf/rules.py"} <= set(size)
    # a command's closure is its handler's, not every command's
    assert "src/pgolf/hub.py" not in size and "src/pgolf/size.py" not in codegraph.stage_code("pgolf data-docs")


def test_an_unknown_command_or_module_is_named():
    with pytest.raises(codegraph.CodeGraphError, match="pgolf no-such: src/pgolf/cli.py defines no such command"):
        codegraph.stage_code("pgolf no-such")
    with pytest.raises(codegraph.CodeGraphError, match="no_such.py: no such record module"):
        codegraph.record_closure(["no_such"])


def test_the_library_has_no_import_cycle():
    graph = codegraph.import_graph()
    assert len(graph) >= 20
    cycle = codegraph.find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
    # the check itself finds one
    assert codegraph.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]


# ----------------------------------------------------------------------------- what an edit reruns

# Rules of each stage in the tiny run, and the rules that consume each rule's outputs.
STAGE_RULES = {"data_docs": "data_docs", "train": "train", "export": "quantize", "size": "size_gate", "eval": "eval",
               "slot": "eval_slot", "ttt": "eval_ttt", "bundle": "bundle_code", "record": "record"}
CONSUMERS = {
    "data_docs": {"train"},
    "train": {"quantize"},
    "quantize": {"size_gate", "eval", "eval_slot", "eval_ttt"},
    "bundle_code": {"size_gate", "record"},
    "size_gate": {"record"},
    "eval": {"record"},
    "eval_slot": {"record"},
    "eval_ttt": {"record"},
    "record": set(),
}


def dependents(rules: set[str]) -> set[str]:
    out, todo = set(), list(rules)
    while todo:
        r = todo.pop()
        if r not in out:
            out.add(r)
            todo += CONSUMERS[r]
    return out


@pytest.mark.slow
def test_editing_any_file_of_a_closure_reruns_its_stages_and_their_dependents_only(tiny_run):
    """For every file of every stage's computed closure in the tiny run: a changed byte plans exactly
    the stages whose closure holds it, their dependents, and nothing else (stage_config and `all`,
    the bookkeeping rules, aside). Dropping a file from a stage's code input by hand fails here."""
    workdir, _ = tiny_run
    files = codegraph.stage_files(workdir)
    by_file: dict[str, set[str]] = {}
    for stage, rule in STAGE_RULES.items():
        for f in files[stage]:
            by_file.setdefault(f, set()).add(rule)
    assert len(by_file) >= 25
    wrong = []
    for f, rules in sorted(by_file.items()):
        path = workdir / f
        original, stat = path.read_bytes(), path.stat()
        try:
            path.write_bytes(original + b"\n")
            result = snakemake(workdir, "-n")
            assert result.returncode == 0, result.stderr[-2000:]
            planned = set(planned_jobs(result)) - {"stage_config", "all"}
        finally:
            path.write_bytes(original)
            os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the tests after this one share the run
        expected = dependents(rules)
        if planned != expected:
            wrong.append(f"{f}: planned {sorted(planned)}, expected {sorted(expected)}")
    assert not wrong, "\n".join(wrong)


# ----------------------------------------------------------------------------- no clock in the DAG

FAKE_TODAY = """
import datetime
import pgolf.record


class _LaterDay(datetime.date):
    @classmethod
    def today(cls):
        return cls(2031, 1, 1)


pgolf.record._date = _LaterDay
"""


def test_a_finished_run_plans_nothing_on_a_later_day(tiny_run, tmp_path):
    """The record folder is named by the day the run trained (train.json's started_utc), so a later
    day (faked by a sitecustomize that moves pgolf.record's today to 2031) plans nothing."""
    workdir, _ = tiny_run
    (tmp_path / "sitecustomize.py").write_text(FAKE_TODAY)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    probe = subprocess.run([sys.executable, "-c", "import pgolf.record as r; print(r.record_date('auto'))"],
                           capture_output=True, text=True, env={**os.environ, **env})
    assert probe.stdout.strip() == "2031-01-01", probe.stderr  # the fake works
    result = snakemake(workdir, "-n", env_extra=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == {}, result.stdout[-2000:]
    started = {json.loads(p.read_text())["started_utc"][:10] for p in workdir.glob("results/train/*/seed*/train.json")}
    assert [p.name.split("_")[0] for p in (workdir / "results/records/track_non_record_16mb").glob("*_Tiny_CI")] == [min(started)]
