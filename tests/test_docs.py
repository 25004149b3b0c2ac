"""The docs that restate the code are held to it: module lists, the stage code table, the sweep
variants, the labels, and the references config comments make to the docs."""

from __future__ import annotations

import re

import yaml

from conftest import REPO
from pgolf import codegraph, rules


def test_readme_lists_the_record_modules_in_bundle_order():
    text = " ".join((REPO / "README.md").read_text().split())
    m = re.search(r"generated from the modules in `workflow/record/` \(([a-z_, ]+):", text)
    assert m, "README: the sentence listing the record modules is gone"
    assert [s.strip() for s in m.group(1).split(",")] == codegraph.record_modules()


def test_reruns_doc_has_the_current_stage_code_table():
    text = (REPO / "docs/reruns.md").read_text()
    table = text.split("<!-- codegraph:start -->\n", 1)[1].split("<!-- codegraph:end -->", 1)[0]
    assert table == codegraph.markdown_table(), "docs/reruns.md is stale: paste `python -m pgolf.codegraph` between its markers"


def test_sweeps_doc_shows_every_variant_of_the_default_config():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    doc = (REPO / "docs/sweeps.md").read_text()
    for v in config["sweep"]["variants"]:
        assert f"name: {v['name']}" in doc, f"docs/sweeps.md does not show the variant {v['name']!r} of config.yaml"


def test_logparse_names_every_final_label_of_ours():
    doc = (REPO / "src/pgolf/logparse.py").read_text().split('"""')[1]
    missing = [label for label in rules.METHOD_LABELS.values() if label not in doc]
    assert not missing, f"pgolf.logparse's docstring does not name {missing}"


def test_config_comments_point_at_docs_that_exist():
    """`see FILE, "Heading"` in a config comment: the file exists and has that heading."""
    refs = 0
    for path in [REPO / "config.yaml", *sorted((REPO / "config").glob("*.yaml"))]:
        comments = " ".join(line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line)
        for target, heading in re.findall(r"[Ss]ee ((?:README\.md|README|docs/[\w.-]+\.md)),\s+\"([^\"]+)\"", comments):
            refs += 1
            doc = REPO / ("README.md" if target.startswith("README") else target)
            assert doc.is_file(), f"{path.name}: comment points at {target}, which does not exist"
            headings = [h.strip() for h in re.findall(r"^#+ (.+)$", doc.read_text(), re.M)]
            assert heading in headings, f"{path.name}: comment points at {target}, \"{heading}\": no such heading"
        for target in re.findall(r"\b(docs/[\w.-]+\.md)\b", comments):
            assert (REPO / target).is_file(), f"{path.name}: comment points at {target}, which does not exist"
    assert refs >= 2
