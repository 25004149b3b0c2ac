"""Side-by-side train-loss curves of two training logs (step lines `step:N/M train_loss:X ...`).

    python bench/compare_curves.py bench/logs/train_curve_ours_h100.log bench/logs/train_curve_1313_h100.log

Prints the loss of each at every step both logged, their difference, and the steady step time and
peak memory of each.
"""

import re
import sys
from pathlib import Path


def read(path: str) -> tuple[dict[int, float], float, str]:
    text = Path(path).read_text()
    losses = {int(s): float(v) for s, v in re.findall(r"^step:(\d+)/\d+ train_loss:(\S+)", text, re.M)}
    times = [(int(s), float(t)) for s, t in re.findall(r"^step:(\d+)/\d+ train_loss:\S+ train_time:(\d+)ms", text, re.M)]
    (s0, t0), (s1, t1) = times[min(9, len(times) - 2)], times[-1]
    peak = re.search(r"peak memory allocated: (\d+) MiB", text)
    return losses, (t1 - t0) / (s1 - s0), peak.group(1) if peak else "?"


def main() -> None:
    (a, a_ms, a_peak), (b, b_ms, b_peak) = read(sys.argv[1]), read(sys.argv[2])
    steps = sorted(set(a) & set(b))
    print(f"{'step':>5} {'A':>8} {'B':>8} {'A-B':>8}")
    for s in steps:
        print(f"{s:5d} {a[s]:8.4f} {b[s]:8.4f} {a[s] - b[s]:+8.4f}")
    late = [abs(a[s] - b[s]) for s in steps if s >= 20]
    print(f"mean |A-B| from step 20: {sum(late) / len(late):.4f}; max {max(late):.4f}")
    print(f"A: {a_ms:.1f} ms/step, peak {a_peak} MiB   B: {b_ms:.1f} ms/step, peak {b_peak} MiB   B/A time: {b_ms / a_ms:.3f}")


if __name__ == "__main__":
    main()
