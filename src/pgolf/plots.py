"""The record's two pictures: training loss per seed, and each seed's scores.

Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch), so assembling a
record never needs a display and never changes the plotting state of whoever imports this. The
PNGs carry no software-version metadata, so the same numbers give the same bytes on one install.
"""

from __future__ import annotations

import io

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pgolf.shards import write_atomic

PNG_METADATA = {"Software": None}


def _save(fig: Figure, path) -> None:
    """Written to a temporary name and renamed, like every record file."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata=PNG_METADATA)
    write_atomic(path, buf.getvalue())


def loss_curves(curves: dict[int, list], path, title: str = "Training loss") -> None:
    """One line per seed: train loss (nats/token) against step, from train.json's loss_curve."""
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for seed, points in curves.items():
        if points:
            steps, losses = zip(*points)
            ax.plot(steps, losses, marker=".", markersize=3, linewidth=1.2, label=f"seed {seed}")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend()
    _save(fig, path)


def seed_scores(seed_results: dict[str, dict], final_name: str, path) -> None:
    """Per seed: pre-quant, roundtrip, sliding and final val_bpb side by side; the mean as a line."""
    series = [
        ("pre_quant_val_bpb", "pre-quant (float)"),
        ("roundtrip_val_bpb", "quantized roundtrip"),
        ("sliding_val_bpb", "sliding window"),
        ("val_bpb", f"final ({final_name})"),
    ]
    series = [(k, name) for k, name in series if all(k in r for r in seed_results.values())]
    seeds = list(seed_results)
    fig = Figure(figsize=(8.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(series), 1)
    values = []
    for i, (key, name) in enumerate(series):
        ys = [seed_results[s][key] for s in seeds]
        values += ys
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(seeds))]
        ax.bar(xs, ys, width=width, label=name)
    finals = [seed_results[s]["val_bpb"] for s in seeds]
    mean = sum(finals) / len(finals)
    ax.axhline(mean, color="black", linewidth=1, linestyle="--", label=f"mean final {mean:.4f}")
    lo, hi = min(values + [mean]), max(values + [mean])
    pad = max((hi - lo) * 0.25, 1e-3)
    ax.set_ylim(lo - pad, hi + pad)  # the differences, not the distance from zero, are the point
    ax.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
    ax.set_ylabel("val_bpb (lower is better)")
    ax.set_title("Scores per seed")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    _save(fig, path)


def sweep_scores(rows: list[dict], seeds: list, path, title: str = "Sweep") -> None:
    """Per sweep variant: the mean val_bpb with the sample std as an error bar, and each seed's point."""
    fig = Figure(figsize=(max(6.4, 1.1 * len(rows) + 2.5), 4.2), layout="constrained")
    ax = fig.add_subplot()
    xs = list(range(len(rows)))
    means = [r["val_bpb_mean"] for r in rows]
    stds = [r["val_bpb_std"] or 0.0 for r in rows]
    ax.errorbar(xs, means, yerr=stds, fmt="o", color="black", markersize=7, capsize=6, label="mean ± std over seeds")
    for j, seed in enumerate(seeds):
        offset = (j - (len(seeds) - 1) / 2) * 0.08
        ax.scatter([x + offset for x in xs], [r[f"val_bpb_seed{seed}"] for r in rows], s=18, alpha=0.8, label=f"seed {seed}")
    ax.set_xticks(xs, [r["variant"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("val_bpb (lower is better)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, path)
