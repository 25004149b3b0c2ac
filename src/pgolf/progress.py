"""Progress reporting that suits both a terminal and a Snakemake log file.

On a terminal a tqdm bar redraws in place. In a log file those redraws become
a long run of carriage returns, so there the same progress is reported as a
plain line every `step` percent instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm


def interactive() -> bool:
    """Whether progress can redraw in place (stderr is a terminal)."""
    return sys.stderr.isatty()


class Progress:
    """Progress of one long step measured in bytes (or any unit with a known total)."""

    def __init__(self, total: int, desc: str, *, log: Callable[[str], None] = print, step: int = 10, unit: str = "B"):
        self.total, self.desc, self.log, self.step, self.unit = max(total, 0), desc, log, step, unit
        self.done = 0
        self._started = time.perf_counter()
        self._next_report = step
        self._bar = tqdm(total=self.total, desc=desc, unit=unit, unit_scale=True, leave=False) if interactive() else None

    def advance_to(self, done: int) -> None:
        """Report that `done` units (cumulative) are finished."""
        done = min(max(done, self.done), self.total) if self.total else max(done, self.done)
        if self._bar is not None:
            self._bar.update(done - self.done)
        self.done = done
        if self._bar is None and self.total:
            percent = 100 * done // self.total
            if percent >= self._next_report:
                self._next_report = (percent // self.step + 1) * self.step
                self.log(f"{self.desc}: {percent}% ({self._amount(done)} of {self._amount(self.total)}, {self._rate()})")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def _amount(self, value: int) -> str:
        return f"{value / 1e6:.1f} MB" if self.unit == "B" else f"{value} {self.unit}"

    def _rate(self) -> str:
        elapsed = max(time.perf_counter() - self._started, 1e-9)
        return f"{self.done / 1e6 / elapsed:.1f} MB/s" if self.unit == "B" else f"{self.done / elapsed:.1f} {self.unit}/s"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
