"""Progress lines of the long record-code loops (workflow/record/runtime.py: StageProgress)."""

from __future__ import annotations

import re

from runtime import StageProgress


def test_reports_every_ten_percent_with_rate_and_eta(capsys):
    p = StageProgress(683, "slot causal")
    for done in range(32, 683, 32):
        p.update(done)
    p.update(683)
    lines = capsys.readouterr().out.splitlines()
    percents = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in lines]
    assert len(lines) == 10 and percents[-1] == 100
    assert all(b - a >= 9 for a, b in zip(percents[:-2], percents[1:-1]))  # about every 10%, then the end
    assert re.fullmatch(r"slot causal: 683 of 683 windows \(100%\), [\d.]+ windows/s, \d+s elapsed, ETA 0s", lines[-1])
    assert lines[0].startswith("slot causal: 96 of 683 windows (14%)")


def test_silent_off_rank_0_and_for_empty_loops(capsys):
    StageProgress(100, "sliding", rank=1).update(100)
    StageProgress(0, "sliding").update(0)
    assert capsys.readouterr().out == ""
