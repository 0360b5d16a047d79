"""One run's ``metrics.jsonl`` at a glance: losses, learning rate, assignment statistics, validation AP.

The rows come from :func:`lad_edu.train.metrics.read_metrics` (this layer draws; it does not read run
directories). Training rows are drawn against the iteration (``global_iter``), evaluation rows against
the epoch. The panels stay the same while a run fills them, so that a notebook can redraw the figure
every few seconds (notebook 07): a panel with nothing logged yet says so.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lad_edu.viz.comparison import _loss_keys

__all__ = ["DEFAULT_PANELS", "plot_run_metrics"]

# one panel each: a key of the rows, a tuple of keys drawn together, or "loss" (every loss term + total)
DEFAULT_PANELS = ("loss", "lr", "pos_per_gt", "gts_without_pos", "pos_iou", ("AP", "AP50"))
TITLES = {
    "loss": "training losses (means over each logging window)",
    "lr": "learning rate",
    "pos_per_gt": "positives per GT",
    "gts_without_pos": "GTs without a positive (%)",
    "pos_iou": "mean IoU of a positive with its GT",
    "images_per_s": "images / s (all processes)",
}


def _column(rows: Sequence[dict], key: str, scale: float = 1.0) -> np.ndarray:
    """``row[key] * scale`` per row; NaN (a gap in the line) where it is null or missing."""
    return np.array([np.nan if row.get(key) is None else row[key] * scale for row in rows], dtype=float)


def _is_share(key: str) -> bool:
    """A share in [0, 1] of the assignment statistics, drawn in percent."""
    return key == "gts_without_pos" or key.startswith("pos_share_l")


def _coco_percent(rows: Sequence[dict], key: str) -> np.ndarray:
    """A COCO number in percent; COCOeval's -1 ("nothing to measure") becomes a gap."""
    values = _column(rows, key, 100.0)
    return np.where(values < 0, np.nan, values)


def _draw_eval(ax: Axes, rows: Sequence[dict], keys: Sequence[str]) -> None:
    """Validation numbers against the epoch; CoLAD's second network (``"network": 2``) dashed."""
    for network in sorted({row.get("network", 1) for row in rows}):
        mine = [row for row in rows if row.get("network", 1) == network]
        epochs = _column(mine, "epoch")
        for i, key in enumerate(keys):
            label = key if network == 1 else f"{key} (network {network})"
            style = "-" if network == 1 else "--"
            ax.plot(epochs, _coco_percent(mine, key), style, color=f"C{i}", marker="o", ms=4, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("validation (%)")


def _draw_train(ax: Axes, rows: Sequence[dict], keys: Sequence[str], *, with_total: bool) -> None:
    """Training rows against the iteration; ``with_total`` adds the sum of ``keys`` (the total loss)."""
    x = _column(rows, "global_iter")
    marker = "o" if len(rows) < 12 else None  # a short run: its few points stay visible
    for i, key in enumerate(keys):
        values = _column(rows, key, 100.0 if _is_share(key) else 1.0)
        ax.plot(x, values, color=f"C{i}", lw=1.3, marker=marker, ms=3, label=key)
    if with_total:
        total = np.sum([np.nan_to_num(_column(rows, key)) for key in keys], axis=0)
        ax.plot(x, total, color="black", lw=1.6, marker=marker, ms=3, label="total")
    ax.set_xlabel("iteration")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _legend_on_top(ax: Axes) -> None:
    """The legend in head room above the lines, so that it hides none of them."""
    labels = [line.get_label() for line in ax.get_lines()]
    columns = min(len(labels), 2 if max(len(label) for label in labels) > 10 else 4)
    rows = -(-len(labels) // columns)
    bottom, top = ax.get_ylim()
    ax.set_ylim(bottom, top + (0.12 + 0.12 * rows) * (top - bottom))
    ax.legend(fontsize=7, loc="upper center", ncols=columns, frameon=False)


def plot_run_metrics(
    rows: Sequence[dict], *, keys: Sequence[str | Sequence[str]] | None = None, axes: list[Axes] | None = None
) -> Figure:
    """A panel per metric of one run: what it minimised, how fast, how it assigned, how well it detects.

    Args:
        rows: the run's ``metrics.jsonl`` rows, both kinds (:func:`lad_edu.train.metrics.read_metrics`);
            null or missing values are gaps.
        keys: the panels, each a row key (``"lr"``, ``"pos_share_l0"``, ``"AP"``), a tuple of keys drawn
            together, or ``"loss"`` (every ``loss*`` term and their total). Keys of ``"eval"`` rows (the
            COCO numbers, in percent) are drawn against the epoch, the others against the iteration.
            Default: :data:`DEFAULT_PANELS` (losses, learning rate, the three assignment statistics of
            :mod:`lad_edu.train.stats`, AP and AP50).
        axes: one ``Axes`` per panel; default a grid of three columns.
    """
    panels = [[p] if isinstance(p, str) else list(p) for p in (keys or DEFAULT_PANELS)]
    if axes is None:
        n_rows = -(-len(panels) // 3)
        fig, grid = plt.subplots(n_rows, 3, figsize=(12.5, 3.4 * n_rows), layout="constrained", squeeze=False)
        for ax in grid.flat[len(panels) :]:
            ax.set_visible(False)
        axes = list(grid.flat)
    train_rows = [row for row in rows if row.get("kind") == "train"]
    eval_rows = [row for row in rows if row.get("kind") == "eval"]
    for ax, panel in zip(axes[: len(panels)], panels, strict=True):
        keys = _loss_keys(train_rows) if panel == ["loss"] else panel
        if any(key in row for row in eval_rows for key in keys):
            _draw_eval(ax, eval_rows, keys)
        elif any(key in row for row in train_rows for key in keys):
            _draw_train(ax, train_rows, keys, with_total=panel == ["loss"])
        else:
            ax.text(0.5, 0.5, "nothing logged yet", ha="center", va="center", color="0.4")
            ax.set_xticks([])
            ax.set_yticks([])
        if not ax.get_title():
            percent = " (%)" if all(_is_share(key) for key in panel) and panel[0] not in TITLES else ""
            ax.set_title(TITLES.get(panel[0], ", ".join(panel)) + percent, fontsize=9)
        ax.grid(alpha=0.3)
        if len(ax.get_lines()) > 1:
            _legend_on_top(ax)
    return axes[0].figure
