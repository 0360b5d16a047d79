"""The comparison of strategies (:mod:`lad_edu.compare`): one figure per question, one colour per strategy."""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from lad_edu.assign.result import AssignResult
from lad_edu.viz.assignment import draw_assignment_levels
from lad_edu.viz.common import _figure_and_ax


def strategy_colors(names: Sequence[str]) -> dict[str, tuple]:
    """A colour per strategy, in the order given (``Dark2``, distinct from the GT colours)."""
    palette = plt.get_cmap("Dark2").colors
    return {name: palette[i % len(palette)] for i, name in enumerate(names)}


def seed_mean_std(per_seed: Sequence[Sequence[float | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over seeds, entry by entry: what the comparison reports and draws.

    Args:
        per_seed: ``S`` rows (one per seed) of ``K`` values; None (nothing to measure) is left out.

    Returns:
        ``mean [K]`` and ``std [K]`` (ddof 1: the spread between seeds), NaN where there are too few
        values (none for the mean, fewer than two for the std).

    >>> mean, std = seed_mean_std([[1.0, None], [3.0, 2.0]])
    >>> mean.tolist(), std.round(3).tolist()
    ([2.0, 2.0], [1.414, nan])
    """
    values = np.array([[np.nan if v is None else v for v in row] for row in per_seed], dtype=float)
    counts = np.sum(~np.isnan(values), axis=0)
    mean = np.divide(np.nansum(values, axis=0), counts, out=np.full(counts.shape, np.nan), where=counts > 0)
    squares = np.nansum((values - mean) ** 2, axis=0)
    variance = np.divide(squares, counts - 1, out=np.full(counts.shape, np.nan), where=counts > 1)
    return mean, np.sqrt(variance)


def _mean_label(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def plot_ap_by_strategy(
    ap: dict[str, Sequence[float | None]], metric: str = "AP", ax: Axes | None = None
) -> Figure:
    """One bar per strategy: the mean over seeds, ± one std as an error bar, a black dot per seed.

    Args:
        ap: ``{strategy: [value of seed 0, of seed 1, ...]}`` in percent (COCO's number x 100); None: not
            measured (pycocotools' -1).
        metric: its name, for the axis (``"AP"``, ``"AP50"``, ...).
    """
    fig, ax = _figure_and_ax(ax, (1.3 * len(ap) + 2.0, 3.6))
    colors = strategy_colors(list(ap))
    for x, (name, values) in enumerate(ap.items()):
        (mean,), (std,) = seed_mean_std([[v] for v in values])
        top = 0.0 if math.isnan(mean) else mean + (0.0 if math.isnan(std) else std)
        ax.bar(x, 0.0 if math.isnan(mean) else mean, width=0.6, color=colors[name], alpha=0.85)
        _error_bars(ax, np.array([x]), np.array([mean]), np.array([std]), color="black", capsize=6, lw=1.2)
        measured = [v for v in values if v is not None]
        ax.scatter([x] * len(measured), measured, s=16, color="black", zorder=3)
        ax.annotate(
            _mean_label(mean, std),
            (x, top),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(range(len(ap)), list(ap))
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, max(ax.get_ylim()[1] * 1.15, 1.0))  # head room for the labels
    seeds = max((len(v) for v in ap.values()), default=0)
    ax.set_title(f"{metric} on the validation images, {seeds} seed{'s' if seeds != 1 else ''}", fontsize=10)
    return fig


def _loss_keys(rows: Sequence[dict]) -> list[str]:
    """The ``loss*`` keys of metrics rows, in the order they first appear."""
    return list(dict.fromkeys(key for row in rows for key in row if key.startswith("loss")))


def plot_loss_curves(curves: dict[str, Sequence[Sequence[dict]]], axes: list[Axes] | None = None) -> Figure:
    """Training losses against the iteration: a panel per loss term every strategy has, then the total each
    run minimised (the total differs in kind: soft labels add terms, CoLAD adds its second network's).

    Args:
        curves: ``{strategy: [rows of seed 0, rows of seed 1, ...]}``: the ``"kind": "train"`` rows of each
            run's ``metrics.jsonl`` (``global_iter`` and the ``loss*`` keys, window means). Seed 0 is drawn
            solid, the other seeds fainter in the same colour.
        axes: one ``Axes`` per panel.
    """
    keys = {name: _loss_keys([row for rows in runs for row in rows]) for name, runs in curves.items()}
    common = [k for k in next(iter(keys.values()), []) if all(k in mine for mine in keys.values())]
    panels = [*common, "total"]
    if axes is None:
        fig, grid = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 3.2), layout="constrained")
        axes = list(np.atleast_1d(grid))
    fig = axes[0].figure
    colors = strategy_colors(list(curves))
    for name, runs in curves.items():
        for seed, rows in enumerate(runs):
            x = [row["global_iter"] for row in rows]
            for ax, key in zip(axes, panels, strict=True):
                terms = keys[name] if key == "total" else [key]
                y = [sum(row[k] for k in terms if row.get(k) is not None) for row in rows]
                style = {"alpha": 0.9, "label": name} if seed == 0 else {"alpha": 0.4}
                marker = "o" if len(rows) < 3 else None  # a short run: its few points stay visible
                ax.plot(x, y, color=colors[name], lw=1.3, marker=marker, ms=4, **style)
    for ax, key in zip(axes, panels, strict=True):
        ax.set_title("total (what the run minimised)" if key == "total" else key, fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("loss (mean over the logging window)")
    axes[-1].legend(fontsize=8)
    return fig


def _error_bars(ax: Axes, x: np.ndarray, mean: np.ndarray, std: np.ndarray, **style) -> None:
    """± ``std`` around ``mean`` at ``x``, where there is a spread (two seeds or more)."""
    spread = ~np.isnan(std)
    if spread.any():
        ax.errorbar(x[spread], mean[spread], yerr=std[spread], fmt="none", **style)


def _lines_with_error_bars(
    ax: Axes,
    per_strategy: dict[str, Sequence[Sequence[float | None]]],
    colors: dict[str, tuple] | None = None,
    label: str = "{name}",
    **style,
) -> None:
    """Per strategy, its mean over seeds against the position (0, 1, ...), ± one std as error bars; the
    line labelled ``label.format(name=...)`` and styled ``{"marker": "o", "ls": "-"} | style``."""
    colors = colors or strategy_colors(list(per_strategy))
    offsets = np.linspace(-0.12, 0.12, len(per_strategy)) if len(per_strategy) > 1 else [0.0]
    for (name, per_seed), offset in zip(per_strategy.items(), offsets, strict=True):
        mean, std = seed_mean_std(per_seed)
        x = np.arange(len(mean)) + offset  # shifted a little, so that error bars do not hide each other
        line = {"marker": "o", "ls": "-"} | style
        ax.plot(x, mean, color=colors[name], ms=5, lw=1.6, label=label.format(name=name), **line)
        _error_bars(ax, x, mean, std, color=colors[name], capsize=3, lw=1.2)


def _minus(
    per_seed: Sequence[Sequence[float | None]], part: Sequence[Sequence[float | None]]
) -> list[list[float | None]]:
    """Entry by entry ``per_seed - part`` (None where either is None)."""
    return [
        [None if a is None or b is None else a - b for a, b in zip(row, part_row, strict=True)]
        for row, part_row in zip(per_seed, part, strict=True)
    ]


def plot_positives_vs_size(
    by_size: dict[str, Sequence[Sequence[float | None]]],
    bin_labels: Sequence[str],
    num_gts: Sequence[int] | None = None,
    ax: Axes | None = None,
    *,
    low_quality: dict[str, Sequence[Sequence[float | None]]] | None = None,
) -> Figure:
    """Positives per GT against object size, one line per strategy (mean over seeds ± std).

    Fixed IoU's low-quality matches (a small object's tied best anchors, mostly background) are not
    positives of the same kind as anchors that pass the IoU threshold: with ``low_quality`` a strategy's
    solid line counts the positives the thresholds gave, and a dotted line of its colour those the
    low-quality step decided.

    Args:
        by_size: ``{strategy: [[positives per GT of each size bin] of seed 0, of seed 1, ...]}``; None for a
            bin without GTs.
        bin_labels: the size bins, smallest first (e.g. ``"16-32"``: sqrt(area) in input pixels).
        num_gts: GTs per bin, shown under the labels as ``n`` (how many GTs each point averages over).
        low_quality: ``{strategy: [[of those positives, the low-quality ones, per bin] per seed]}`` for the
            strategies that have them (``details["low_quality"]`` of
            :class:`lad_edu.assign.FixedIoUAssigner`).
    """
    fig, ax = _figure_and_ax(ax, (8.4, 3.8))
    low_quality = {name: v for name, v in (low_quality or {}).items() if name in by_size}
    colors = strategy_colors(list(by_size))
    solid = {}  # per line: its label, and per seed its values
    for name, per_seed in by_size.items():
        label = f"{name}: by the IoU thresholds" if name in low_quality else name
        solid[label] = _minus(per_seed, low_quality[name]) if name in low_quality else per_seed
        colors[label] = colors[name]
    _lines_with_error_bars(ax, solid, colors)
    if low_quality:
        _lines_with_error_bars(ax, low_quality, colors, "{name}: low-quality matches", ls=":", marker="v")
    labels = list(bin_labels)
    if num_gts is not None:
        labels = [f"{label}\nn = {n}" for label, n in zip(labels, num_gts, strict=True)]
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("object size: sqrt(area) in input pixels")
    ax.set_ylabel("positive anchors per GT")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the lines, never on them
    ax.set_title("Who gets how many positives: small objects against large", fontsize=10)
    return fig


def plot_level_share(
    shares: dict[str, Sequence[Sequence[float | None]]],
    strides: Sequence[int] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """The share of positive anchors on each FPN level, grouped bars (one per strategy, mean over seeds,
    ± std).

    Args:
        shares: ``{strategy: [[share on level 0, level 1, ...] of seed 0, of seed 1, ...]}``, each row
            summing to 1 (None: no positive at all).
        strides: the levels' strides, for the axis labels (default ``"level i"``).
    """
    fig, ax = _figure_and_ax(ax, (6.4, 3.6))
    colors = strategy_colors(list(shares))
    width = 0.8 / max(len(shares), 1)
    for i, (name, per_seed) in enumerate(shares.items()):
        if not any(row is not None for row in per_seed):  # no logged positive (a run shorter than log_every)
            continue
        mean, std = seed_mean_std(per_seed)
        x = np.arange(len(mean)) - 0.4 + width * (i + 0.5)
        ax.bar(x, 100 * np.nan_to_num(mean), width=width, color=colors[name], label=name)
        _error_bars(ax, x, 100 * mean, 100 * std, color="black", capsize=2, lw=0.8)
    rows = [row for per_seed in shares.values() for row in per_seed if row is not None]
    levels = len(strides) if strides else max((len(row) for row in rows), default=0)
    names = [f"P{round(math.log2(s))}\nstride {s}" for s in strides] if strides else range(levels)
    ax.set_xticks(range(levels), [str(n) for n in names], fontsize=8)
    ax.set_ylabel("share of the positives (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("On which pyramid level the positives are", fontsize=10)
    return fig


def _mark_gts_without_positive(ax: Axes, gt_boxes: Tensor, missed: Sequence[int]) -> None:
    """A dashed black-and-white box and a cross over each GT of ``missed``: no anchor learns it."""
    for k in missed:
        x1, y1, x2, y2 = gt_boxes[k].tolist()
        for colour, dashes in (("white", (0, (3, 3))), ("black", (3, (3, 3)))):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, ec=colour, ls=dashes))
        ax.plot((x1 + x2) / 2, (y1 + y2) / 2, marker="X", ms=9, mfc="white", mec="black", mew=1.2)


def draw_strategies_side_by_side(
    image: Tensor | None,
    anchors: Tensor,
    num_level_anchors: list[int],
    gt_boxes: Tensor,
    results_by_strategy: dict[str, AssignResult],
    strides: Sequence[int] | None = None,
    image_size: tuple[int, int] | None = None,
) -> Figure:
    """The same image labelled by every strategy: a row per strategy, a column per FPN level (the panels
    of :func:`draw_assignment_levels`); a GT that no anchor learns is crossed out in its row.

    Args:
        image: ``[3, H, W]`` (or None with ``image_size``), as the network saw it.
        anchors: ``[N, 4]`` xyxy, level-major, shared by all results; num_level_anchors: per level.
        gt_boxes: ``[G, 4]`` xyxy in the image's pixels.
        results_by_strategy: ``{strategy: AssignResult}`` of this image.
        strides: per-level strides, for the panel titles.
    """
    num_levels = len(num_level_anchors)
    fig, grid = plt.subplots(
        len(results_by_strategy),
        num_levels,
        figsize=(2.6 * num_levels, 2.7 * len(results_by_strategy) + 0.4),
        layout="constrained",
        squeeze=False,
    )
    for row, (name, result) in zip(grid, results_by_strategy.items(), strict=True):
        draw_assignment_levels(
            result,
            anchors,
            num_level_anchors,
            gt_boxes,
            image=image,
            image_size=image_size,
            strides=list(strides) if strides else None,
            axes=list(row),
        )
        handles = row[0].get_legend().legend_handles
        row[0].get_legend().remove()  # one legend for the figure, below the panels
        missed = (result.positives_per_gt() == 0).nonzero().flatten().tolist()
        for ax in row:
            _mark_gts_without_positive(ax, gt_boxes, missed)
        without = "every GT has one" if not missed else f"{len(missed)} GT(s) without"
        row[0].set_ylabel(f"{name}\n{result.num_pos} positives, {without}", fontsize=9)
    cross = plt.Line2D(
        [], [], ls="", marker="X", ms=9, mfc="white", mec="black", label="GT without a positive"
    )
    fig.legend(handles=[*handles, cross], loc="outside lower center", ncols=4, fontsize=8)
    fig.suptitle(f"One validation image, {len(gt_boxes)} objects, labelled by each strategy", fontsize=11)
    return fig
