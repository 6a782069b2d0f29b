"""The report's figures (matplotlib, Agg back-end; no display needed).

Each function writes one PNG and returns its path, or ``None`` (nothing written) when
there is nothing to plot.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Lay out ``fig``, write it to ``path`` as a PNG and free it."""
    plt = _pyplot()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_systems(systems: Mapping[str, dict[str, Any]], path: Path) -> Path | None:
    """Bars of dev/test frame accuracy and WER per system (``results.json``'s systems)."""
    names = list(systems)
    panels = [("frame_acc", "frame accuracy (%)"), ("wer", "WER (%)")]
    if not any(
        systems[n][s][m] is not None for n in names for s in ("dev", "test") for m, _ in panels
    ):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 1.2 * len(names) + 4), 4))
    x = range(len(names))
    for ax, (metric, label) in zip(axes, panels, strict=True):
        for offset, split in ((-0.2, "dev"), (0.2, "test")):
            values = [systems[n][split][metric] for n in names]
            ax.bar([i + offset for i in x], [v or 0.0 for v in values], width=0.4, label=split)
        ax.set_xticks(list(x), names, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path)


def plot_learning_curves(curves: Mapping[str, list[dict[str, Any]]], path: Path) -> Path | None:
    """Per epoch (``train.json``): dev and train frame accuracy, and the training loss."""
    curves = {n: c for n, c in curves.items() if c}
    if not curves:
        return None
    plt = _pyplot()
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for name, epochs in curves.items():
        x = [e["epoch"] for e in epochs]
        line = acc_ax.plot(x, [100 * e["dev_frame_acc"] for e in epochs], marker="o", label=name)
        color = line[0].get_color()
        acc_ax.plot(x, [100 * e["train_frame_acc"] for e in epochs], ls="--", color=color)
        loss_ax.plot(x, [e["train_loss"] for e in epochs], marker="o", color=color, label=name)
    acc_ax.set(xlabel="epoch", ylabel="frame accuracy (%)", title="dev (solid), train (dashed)")
    loss_ax.set(xlabel="epoch", ylabel="training loss per frame",
                title="CE; distilled: soft + hard")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    for ax in (acc_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_ensemble_size(points: Mapping[int, Any], path: Path) -> Path | None:
    """WER and frame accuracy against the number of teachers combined (``SystemResult``s)."""
    if len(points) < 2:
        return None
    sizes = sorted(points)
    series = [
        (metric, split)
        for metric in ("wer", "frame_acc")
        for split in ("dev", "test")
        if any(getattr(points[n], metric)[split] is not None for n in sizes)
    ]
    if not series:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for metric, split in series:
        ax = axes[0] if metric == "wer" else axes[1]
        scale = 100.0 if metric == "frame_acc" else 1.0
        xs = [n for n in sizes if getattr(points[n], metric)[split] is not None]
        ax.plot(
            xs, [scale * getattr(points[n], metric)[split] for n in xs], marker="o", label=split
        )
    for ax, label in zip(axes, ("WER (%)", "frame accuracy (%)"), strict=True):
        ax.set(xlabel="teachers in the ensemble", ylabel=label)
        ax.set_xticks(sizes)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    return save_figure(fig, path)


def plot_data_fraction(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Test (else dev) frame accuracy against the share of training data, hard vs soft."""
    if len(rows) < 2:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [100 * r["fraction"] for r in rows]
    for kind, label in (("hard", "hard targets"), ("soft", "soft targets (ensemble)")):
        y = [r[kind]["test"]["frame_acc"] or r[kind]["dev"]["frame_acc"] for r in rows]
        ax.plot(x, [float("nan") if v is None else v for v in y], marker="o", label=label)
    ax.set_xscale("log")
    ax.set(xlabel="training data (%)", ylabel="test frame accuracy (%)",
           title="soft targets as a regulariser")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)
