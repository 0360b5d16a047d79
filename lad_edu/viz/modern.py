"""The rules of newer detectors on one image: what TOOD's, YOLOX's and DETR's assigners computed.

Every figure draws quantities that a helper of :mod:`lad_edu.assign` computed, and never computes a rule
again: TOOD's task alignment metric (:func:`lad_edu.assign.tal.alignment_metric`), SimOTA's costs, candidate
regions and dynamic k (:func:`lad_edu.assign.simota.simota_cost`), the Hungarian cost
(:func:`lad_edu.assign.hungarian.hungarian_cost`), and the assigners' results.

* :func:`draw_alignment_metric` — per GT and FPN level, ``t = s^α · u^β`` as a heat map over the anchor grid,
  with the top-k candidates, those whose centre lies outside the GT, and the positives.
* :func:`plot_alignment_quality` — TOOD's soft targets ``t̂`` of each GT's positives next to their ``u``.
* :func:`plot_dynamic_k` — SimOTA: per GT, its top IoUs stacked into the sum whose floor is ``k``.
* :func:`draw_simota_regions` — SimOTA per level: each GT's centre region, its candidates (in the box and
  in the region) and the positives it took.
* :func:`draw_hungarian_match` — the Hungarian cost of each GT's cheapest anchors, the one-to-one match
  against each GT's cheapest anchor (greedy), and the matched predictions on the image.
* :func:`draw_rules_side_by_side` — several rules' positives on one image, one panel per rule, every level
  in the same panel (coarser levels as larger rings).

The drawn elements carry a ``gid`` (``"positive"``, ``"candidate"``, ``"match"`` ...), so that tests and
readers can find what a figure shows. Colours as everywhere in :mod:`lad_edu.viz`: GT ``k`` is
:func:`~lad_edu.viz.common.gt_color` ``(k)``, positives are ringed white and black.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from lad_edu.anchors import level_ids, level_strides
from lad_edu.assign.result import AssignResult
from lad_edu.assign.simota import SimOTACost
from lad_edu.assign.tal import CENTER_EPS
from lad_edu.boxes import box_centers, centers_inside
from lad_edu.viz.assignment import POSITIVE_STYLE, draw_boxes
from lad_edu.viz.common import _figure_and_ax, _gt_names, _show_image, gt_color
from lad_edu.viz.comparison import _mark_gts_without_positive

__all__ = [
    "draw_alignment_metric",
    "draw_hungarian_match",
    "draw_rules_side_by_side",
    "draw_simota_regions",
    "plot_alignment_quality",
    "plot_dynamic_k",
]

HEAT_CMAP = "magma"  # the metric's heat map: dark where t is 0, apart from the GT colours
CANDIDATE_STYLE = {  # a square around the anchor centre: in the top-k (a positive's dot sits inside it)
    "s": 90,
    "marker": "s",
    "facecolors": "none",
    "edgecolors": "white",
    "linewidths": 1.2,
    "path_effects": [patheffects.withStroke(linewidth=2.4, foreground="black")],
}
CLEAR_BELOW = 0.02  # heat-map cells under this share of the GT's largest metric are left clear
OUTSIDE_STYLE = {"s": 40, "marker": "x", "color": "red", "linewidths": 1.8}


def _levels_to_draw(level: Tensor, levels: Sequence[int] | None, used: Tensor) -> list[int]:
    """``levels``, or by default the levels of the anchors of ``used [N]`` (each anchor's ``level [N]``)."""
    if levels is not None:
        return [int(lvl) for lvl in levels]
    return sorted(set(level[used].tolist())) or [0]


def _panel_grid(rows: int, cols: int, size: float, extra_width: float = 0.0) -> np.ndarray:
    _, grid = plt.subplots(
        rows,
        cols,
        figsize=(size * cols + extra_width, size * rows + 0.5),
        layout="constrained",
        squeeze=False,
    )
    return grid


def _canvas(ax: Axes, image: Tensor | None, image_size: tuple[int, int] | None):
    """Draw the image (or the empty canvas of ``image_size``) on ``ax``; returns a function that puts the axes
    back on it after shapes that reach beyond it (a level's grid, a centre region) were drawn."""
    _show_image(ax, image, image_size if image is None else None)
    if image is None and image_size is None:
        return lambda: None
    xlim, ylim = ax.get_xlim(), ax.get_ylim()
    return lambda: (ax.set_xlim(*xlim), ax.set_ylim(*ylim))


def _count(number: int, noun: str) -> str:
    """``"1 positive"``, ``"3 positives"``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _outline(ax: Axes, box: Sequence[float], color, **style) -> None:
    x1, y1, x2, y2 = box
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec=color, **({"lw": 1.5} | style)))


def level_grid(values: Tensor, centres: Tensor, stride: float) -> tuple[np.ndarray, list[float]]:
    """One level's per-anchor ``values [n]`` as an image over its grid of anchor centres ``[n, 2]``.

    Returns:
        ``grid [rows, cols]`` (the largest value where several anchors share a location) and the
        ``imshow`` extent ``[left, right, bottom, top]`` that puts each cell, ``stride`` wide, on its centre.

    >>> grid, extent = level_grid(torch.tensor([1.0, 2.0, 3.0, 4.0]),
    ...                           torch.tensor([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0], [8.0, 8.0]]), 8.0)
    >>> grid.tolist(), extent
    ([[1.0, 2.0], [3.0, 4.0]], [-4.0, 12.0, 12.0, -4.0])
    """
    low = centres.amin(dim=0)
    cell = ((centres - low) / stride).round().long()  # [n, 2] column, row
    cols, rows = (int(c) + 1 for c in cell.amax(dim=0))
    grid = values.new_full((rows * cols,), float("-inf"))
    grid = grid.scatter_reduce(0, cell[:, 1] * cols + cell[:, 0], values, "amax").view(rows, cols)
    (x0, y0), half = low.tolist(), stride / 2
    extent = [x0 - half, x0 + (cols - 1) * stride + half, y0 + (rows - 1) * stride + half, y0 - half]
    return grid.double().cpu().numpy(), extent


# TOOD's task-aligned assignment


def draw_alignment_metric(
    metric: Tensor,
    result: AssignResult,
    anchors: Tensor,
    num_level_anchors: Sequence[int],
    gt_boxes: Tensor,
    *,
    image: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    levels: Sequence[int] | None = None,
    gt_names: Sequence[str] | None = None,
    center_eps: float = CENTER_EPS["mmdet"],
) -> Figure:
    """TOOD's task alignment metric of every GT over the anchors, before the top-k, a row per GT.

    Each panel is one FPN level: ``t`` of the level's anchors as a heat map (one colour scale per GT, from 0
    to its largest ``t``), the GT outlined; the GT's top-k candidates (over *all* levels) as white squares,
    those whose centre lies outside the GT as red crosses; the anchors that ended up positive for the GT
    as dots in its colour.

    Args:
        metric: ``[G, N]`` ``t`` of every (GT, anchor) (:func:`lad_edu.assign.tal.alignment_metric`).
        result: the :class:`~lad_edu.assign.TaskAlignedAssigner` result of this image (``details
            ["candidates"] [k, G]``, ``gt_inds``).
        anchors: ``[N, 4]`` xyxy, level-major; num_level_anchors: anchors per level.
        gt_boxes: ``[G, 4]`` xyxy.
        image, image_size: the background (see :func:`~lad_edu.viz.draw_boxes`).
        levels: the levels to draw (default: those that hold a top-k candidate).
        gt_names: a row label per GT.
        center_eps: the margin of the centre test (MMDetection's 0.01 px).
    """
    level = level_ids(list(num_level_anchors))
    candidates = result.details["candidates"].cpu()  # [k, G]
    chosen = torch.zeros((len(gt_boxes), len(anchors)), dtype=torch.bool)  # [G, N] the top-k of each GT
    for k, column in enumerate(candidates.T):
        chosen[k, column[column >= 0]] = True
    columns = _levels_to_draw(level, levels, used=chosen.any(dim=0))
    grid = _panel_grid(len(gt_boxes), len(columns), 2.1, extra_width=0.8)
    strides = level_strides(anchors, list(num_level_anchors))
    centres, gt_inds = box_centers(anchors).cpu(), result.gt_inds.cpu()
    names = _gt_names(len(gt_boxes), gt_names)
    for k, row in enumerate(grid):
        box = gt_boxes[k].cpu()
        inside = centers_inside(centres, box, eps=center_eps)  # [N]
        vmax = max(float(metric[k].max()), 1e-12)
        for ax, lvl in zip(row, columns, strict=True):
            mine = level == lvl
            heat = _heat_map(ax, metric[k].cpu()[mine], centres[mine], strides[lvl], vmax, image, image_size)
            heat.set_gid(f"metric GT {k} level {lvl}")
            _outline(ax, box.tolist(), gt_color(k))
            xy = centres[mine & chosen[k] & inside]
            ax.scatter(xy[:, 0], xy[:, 1], gid="candidate", **CANDIDATE_STYLE)
            xy = centres[mine & chosen[k] & ~inside]
            ax.scatter(xy[:, 0], xy[:, 1], gid="centre outside", **OUTSIDE_STYLE)
            xy = centres[mine & (gt_inds == k + 1)]
            ax.scatter(xy[:, 0], xy[:, 1], color=gt_color(k), gid="positive", **POSITIVE_STYLE)
            ax.set_title(f"stride {strides[lvl]:g}: {int((mine & chosen[k]).sum())} of the top-k", fontsize=8)
        row[0].set_ylabel(names[k], fontsize=9)
        colorbar = row[-1].figure.colorbar(heat, ax=list(row), shrink=0.9, pad=0.01)
        colorbar.set_label(r"$t = s^{\alpha} u^{\beta}$", fontsize=9)
    _alignment_legend(grid[-1][0].figure)
    return grid[0][0].figure


def _heat_map(ax: Axes, values: Tensor, centres: Tensor, stride: float, vmax: float, image, image_size):
    """One level's ``values [n]`` over its anchor grid on ``ax``, over the image (cells under
    :data:`CLEAR_BELOW` of ``vmax`` left clear), the axes kept on the image."""
    restore = _canvas(ax, image, image_size)
    grid, extent = level_grid(values, centres, stride)
    shown = np.ma.masked_less(grid, CLEAR_BELOW * vmax)
    heat = ax.imshow(shown, extent=extent, cmap=HEAT_CMAP, vmin=0, vmax=vmax, alpha=0.8)
    restore()
    return heat


def _alignment_legend(fig: Figure) -> None:
    square = plt.Line2D(
        [], [], ls="", marker="s", mfc="none", mec="0.3", ms=8, label="top-k candidate, centre inside"
    )
    cross = plt.Line2D(
        [], [], ls="", marker="x", color="red", mew=1.8, label="top-k candidate, centre outside"
    )
    _legend_below(fig, [square, cross, _positive_handle("positive (GT colour)")])


def _positive_handle(label: str, size: float = 6.5, color="0.5") -> plt.Line2D:
    """A legend entry that looks like a positive: a dot ringed white and black."""
    return plt.Line2D(
        [], [], ls="", marker="o", mfc=color, mec="white", ms=size, label=label,
        path_effects=POSITIVE_STYLE["path_effects"],
    )  # fmt: skip


def _legend_below(fig: Figure, handles: list, **options) -> None:
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8, **options)


def plot_alignment_quality(
    result: AssignResult, gt_names: Sequence[str] | None = None, ax: Axes | None = None
) -> Figure:
    """TOOD's soft classification targets: per GT, its positives' ``t̂ = t / max t · max u`` as bars in the
    GT's colour, each positive's predicted IoU ``u`` as a black dot, the GT's largest ``u`` as a dashed line.

    The best-aligned positive of a GT reaches the dashed line: it is asked for the best IoU any of the GT's
    positives reached, and the others for proportionally less (their ``t``, not their ``u``).

    Args:
        result: a :class:`~lad_edu.assign.TaskAlignedAssigner` result (``quality [N]``, ``details
            ["pred_iou"] [N]``, ``gt_inds``).
        gt_names: a label per GT.
    """
    fig, ax = _figure_and_ax(ax, (8.0, 3.4))
    gt_inds, quality = result.gt_inds.cpu(), result.quality.cpu()
    pred_iou = result.details["pred_iou"].cpu()
    names, x, ticks = _gt_names(result.num_gts, gt_names), 0, []
    for k in range(result.num_gts):
        mine = (gt_inds == k + 1).nonzero().flatten()
        mine = mine[quality[mine].argsort(descending=True, stable=True)]
        if len(mine) == 0:
            ticks.append((x, f"{names[k]}\n(no positive)"))
            x += 2
            continue
        xs = np.arange(x, x + len(mine))
        ax.bar(xs, quality[mine].numpy(), color=gt_color(k), width=0.8, gid=f"quality GT {k}")
        ax.scatter(xs, pred_iou[mine].numpy(), color="black", s=14, zorder=3, gid=f"u GT {k}")
        ax.hlines(float(pred_iou[mine].max()), xs[0] - 0.45, xs[-1] + 0.45, colors="black", linestyles="--")
        ticks.append((xs.mean(), f"{names[k]}\n{_count(len(mine), 'positive')}"))
        x += len(mine) + 1
    ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("classification target")
    ax.legend(
        handles=[
            Rectangle((0, 0), 1, 1, color="0.6", label=r"$\hat{t}$: the target (bars)"),
            plt.Line2D([], [], ls="", marker="o", color="black", ms=4, label="u: predicted box IoU"),
            plt.Line2D([], [], ls="--", color="black", label="max u of the GT's positives"),
        ],
        fontsize=7,
        loc="upper right",
    )
    ax.set_title(
        r"TOOD's soft targets $\hat{t} = t \,/ \max t \cdot \max u$ of each GT's positives", fontsize=10
    )
    return fig


# YOLOX's SimOTA


def plot_dynamic_k(
    simota: SimOTACost,
    *,
    candidate_topk: int = 10,
    image_index: int = 0,
    gt_names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """SimOTA's dynamic k: per GT, its ``candidate_topk`` best predicted IoUs over the valid priors stacked
    into one bar (largest at the bottom), the sum written on top, ``k`` (the sum rounded down, at least 1)
    as a black tick.

    Args:
        simota: :func:`lad_edu.assign.simota.simota_cost`'s output; ``iou``, and ``cost`` (finite on the
            valid priors) and ``dynamic_k`` of image ``image_index``.
        candidate_topk: how many IoUs the rule sums (10).
        gt_names: a label per GT.
    """
    iou = simota.iou[image_index].cpu()  # [G, N]
    valid = simota.cost[image_index].isfinite().cpu()  # [G, N]: the valid priors, on each real GT's row
    dynamic_k = simota.dynamic_k[image_index].cpu()
    width = min(candidate_topk, iou.shape[1])
    top = iou.masked_fill(~valid, 0.0).topk(width, dim=1).values.double()  # [G, width], descending
    fig, ax = _figure_and_ax(ax, (1.2 * len(iou) + 2.4, 3.6))
    for k, values in enumerate(top):
        bottoms = torch.cat([values.new_zeros(1), values.cumsum(0)[:-1]])
        shades = [0.95 if i % 2 == 0 else 0.6 for i in range(width)]  # alternate: each IoU its own block
        for value, bottom, alpha in zip(values.tolist(), bottoms.tolist(), shades, strict=True):
            ax.bar(
                k,
                value,
                bottom=bottom,
                width=0.6,
                color=gt_color(k),
                alpha=alpha,
                ec="white",
                lw=0.6,
                gid=f"iou GT {k}",
            )
        total = float(values.sum())
        ax.hlines(int(dynamic_k[k]), k - 0.42, k + 0.42, colors="black", lw=2.5, gid=f"k GT {k}")
        ax.annotate(
            f"Σ = {total:.2f}\nk = {int(dynamic_k[k])}",
            (k, max(total, float(dynamic_k[k]))),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            fontsize=8,
        )
    ax.set_xticks(range(len(top)), _gt_names(len(top), gt_names), fontsize=8)
    ax.set_ylabel(f"sum of the top {width} predicted IoUs")
    ax.set_ylim(0, max(2.0, float(top.sum(dim=1).max()) * 1.3))
    ax.yaxis.set_major_locator(plt.MultipleLocator(1))
    ax.grid(axis="y", alpha=0.4)
    ax.set_title(
        f"SimOTA's dynamic k = max(1, ⌊Σ top-{width} IoU⌋): one block per IoU, k the black tick", fontsize=10
    )
    return fig


def draw_simota_regions(
    simota: SimOTACost,
    result: AssignResult,
    anchors: Tensor,
    num_level_anchors: Sequence[int],
    gt_boxes: Tensor,
    *,
    center_radius: float = 2.5,
    image: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    levels: Sequence[int] | None = None,
    image_index: int = 0,
) -> Figure:
    """SimOTA's candidates against its positives, one panel per FPN level.

    In each panel every GT's box is outlined and its centre region (GT centre ± ``center_radius`` · stride)
    dashed in its colour; a ring in the GT's colour marks a candidate (centre in the box *and* the region;
    several GTs' rings on one prior are nested), a ringed dot in the GT's colour a positive.

    Args:
        simota: :func:`lad_edu.assign.simota.simota_cost`'s output (``candidate [B, G, N]``).
        result: the :class:`~lad_edu.assign.SimOTAAssigner` result of image ``image_index``.
        anchors: ``[N, 4]`` xyxy, level-major (their centres are the priors); num_level_anchors: per level.
        gt_boxes: ``[G, 4]`` xyxy.
        center_radius: the rule's (2.5), to draw the regions.
        image, image_size: the background; levels: which levels (default: those with a candidate or a
            positive).
    """
    level = level_ids(list(num_level_anchors))
    candidate, gt_inds = simota.candidate[image_index].cpu(), result.gt_inds.cpu()
    columns = _levels_to_draw(level, levels, used=candidate.any(dim=0) | (gt_inds > 0))
    (row,) = _panel_grid(1, len(columns), 3.0)
    strides = level_strides(anchors, list(num_level_anchors))
    centres = box_centers(anchors).cpu()
    gt_centres = box_centers(gt_boxes.cpu())
    for ax, lvl in zip(row, columns, strict=True):
        restore = _canvas(ax, image, image_size)
        mine, half = level == lvl, center_radius * strides[lvl]
        for k, box in enumerate(gt_boxes.cpu().tolist()):
            _outline(ax, box, gt_color(k))
            cx, cy = gt_centres[k].tolist()
            _outline(ax, (cx - half, cy - half, cx + half, cy + half), gt_color(k), ls="--", lw=1.0)
            xy = centres[mine & candidate[k]]
            ax.scatter(
                xy[:, 0],
                xy[:, 1],
                s=30 + 22 * k,
                facecolors="none",
                edgecolors=[gt_color(k)],
                linewidths=1.3,
                gid="candidate",
            )
        positive = mine & (gt_inds > 0)
        colours = [gt_color(int(g) - 1) for g in gt_inds[positive]]
        ax.scatter(centres[positive, 0], centres[positive, 1], c=colours, gid="positive", **POSITIVE_STYLE)
        restore()
        counts = (
            _count(int((mine & candidate.any(dim=0)).sum()), "candidate"),
            _count(int(positive.sum()), "positive"),
        )
        ax.set_title(f"stride {strides[lvl]:g}: {counts[0]}, {counts[1]}", fontsize=8)
    region = plt.Line2D([], [], ls="--", color="0.3", label=f"centre region (± {center_radius:g} strides)")
    ring = plt.Line2D([], [], ls="", marker="o", mfc="none", mec="0.3", label="candidate (box and region)")
    _legend_below(row[0].figure, [region, ring, _positive_handle("positive")])
    return row[0].figure


# DETR's Hungarian matching


def _matched_anchor(result: AssignResult) -> list[int | None]:
    """Per GT, the anchor the one-to-one match gave it (None for a GT left without one)."""
    gt_inds = result.gt_inds.cpu()
    return [next(iter((gt_inds == k + 1).nonzero().flatten().tolist()), None) for k in range(result.num_gts)]


def cheapest_columns(cost: Tensor, matched: Sequence[int | None], per_gt: int) -> list[int]:
    """The anchors a readable cost matrix shows: GT by GT, its matched anchor and its ``per_gt`` cheapest
    ones by increasing cost, each anchor once (where a GT's first shows it).

    >>> cheapest_columns(torch.tensor([[3.0, 1.0, 2.0, 9.0], [1.0, 5.0, 0.5, 9.0]]), [1, 0], per_gt=2)
    [1, 2, 0]
    """
    columns: list[int] = []
    for k, row in enumerate(cost.cpu()):
        mine = row.argsort(stable=True)[: min(per_gt, len(row))].tolist()
        for anchor in sorted(
            {*mine, *([matched[k]] if matched[k] is not None else [])}, key=lambda a: row[a]
        ):
            if anchor not in columns:
                columns.append(anchor)
    return columns


def _draw_cost_matrix(
    ax: Axes, cost: Tensor, columns: list[int], matched: list, greedy: list[int], labels: list[str], names
) -> None:
    """The heat map of ``cost [G, N]`` over ``columns``, values written, matched cells boxed, each GT's
    cheapest anchor marked with a triangle."""
    shown = cost[:, columns].double().cpu().numpy()
    heat = ax.imshow(shown, cmap="viridis", aspect="auto", interpolation="nearest")
    middle = (shown.min() + shown.max()) / 2
    for (k, j), value in np.ndenumerate(shown):
        ax.text(
            j,
            k,
            f"{value:.1f}",
            ha="center",
            va="center",
            fontsize=6,
            color="white" if value < middle else "black",
        )
    for k, anchor in enumerate(matched):
        if anchor is not None:
            j = columns.index(anchor)
            ax.add_patch(Rectangle((j - 0.5, k - 0.5), 1, 1, fill=False, ec="red", lw=2.5, gid="match"))
    ax.scatter(  # at the top of the cell, clear of its value
        [columns.index(a) for a in greedy],
        np.arange(len(greedy)) - 0.3,
        marker="v",
        s=36,
        color="white",
        edgecolors="black",
        linewidths=0.8,
        gid="greedy",
        zorder=3,
    )
    ax.set_xticks(range(len(columns)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(cost)), list(names), fontsize=8)
    ax.set_xlabel("anchor (index, stride)")
    ax.figure.colorbar(heat, ax=ax, pad=0.01, label="matching cost (lower: better)")


def draw_hungarian_match(
    cost: Tensor,
    result: AssignResult,
    anchors: Tensor,
    num_level_anchors: Sequence[int],
    gt_boxes: Tensor,
    pred_boxes: Tensor,
    *,
    per_gt: int = 6,
    image: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    gt_names: Sequence[str] | None = None,
    focus: Sequence[int] | None = None,
) -> Figure:
    """DETR's one-to-one match against each GT's cheapest anchor.

    Left: the cost matrix over each GT's ``per_gt`` cheapest anchors (:func:`cheapest_columns`), the values
    written; a red box marks the matched (GT, anchor) cells of ``result``, a white triangle each GT's
    cheapest anchor, what a greedy choice would take (two GTs may want the same one). Right: the image
    (zoomed on the GTs of ``focus``), each GT's matched anchor (a ringed dot at its centre) and that anchor's
    predicted box (dashed), and a cross at a cheapest anchor that the match did not give the GT.

    Args:
        cost: ``[G, N]`` (:func:`lad_edu.assign.hungarian.hungarian_cost`'s ``.total`` of this image).
        result: the :class:`~lad_edu.assign.HungarianAssigner` result of the image.
        anchors: ``[N, 4]`` xyxy, level-major; num_level_anchors: per level.
        gt_boxes: ``[G, 4]`` xyxy; pred_boxes: ``[N, 4]`` the network's decoded boxes.
        per_gt: cheapest anchors shown per GT.
        image, image_size: the background; gt_names: a label per GT.
        focus: the GTs the image is zoomed on (default all).
    """
    matched, greedy = _matched_anchor(result), cost.argmin(dim=1).tolist()
    columns = cheapest_columns(cost, matched, per_gt)
    strides = level_strides(anchors, list(num_level_anchors))
    level = level_ids(list(num_level_anchors)).tolist()
    labels = [f"{a} (s{strides[level[a]]:g})" for a in columns]
    names = _gt_names(len(gt_boxes), gt_names)
    fig, (left, right) = plt.subplots(
        1,
        2,
        figsize=(0.32 * len(columns) + 7.0, 4.2),
        layout="constrained",
        width_ratios=(0.32 * len(columns) + 1.5, 4.0),
    )
    _draw_cost_matrix(left, cost, columns, matched, greedy, labels, names)
    total = sum(float(cost[k, a]) for k, a in enumerate(matched) if a is not None)
    left.set_title(
        f"cost of each GT's {per_gt} cheapest anchors; red: the match (total {total:.2f}), "
        "▼: the GT's cheapest",
        fontsize=9,
    )
    _canvas(right, image, image_size)
    bounds = (right.get_xlim(), right.get_ylim()) if image is not None or image_size is not None else None
    focus = list(range(len(gt_boxes))) if focus is None else [int(k) for k in focus]
    shown = _draw_matches_on_image(right, matched, greedy, anchors, gt_boxes, pred_boxes, names, focus)
    _zoom(right, shown, bounds)
    right.set_title(
        "matched anchors (dots) and their predicted boxes (dashed);\n"
        "×: a cheapest anchor the match did not give",
        fontsize=9,
    )
    return fig


def _draw_matches_on_image(
    ax: Axes, matched: list, greedy: list[int], anchors, gt_boxes, pred_boxes, names, focus: list[int]
) -> Tensor:
    """The GTs, each one's matched anchor (a ringed dot) and its predicted box (dashed), a cross at a cheapest
    anchor the match did not give. Returns ``[M, 4]`` xyxy: the boxes and points drawn for the GTs of
    ``focus``."""
    draw_boxes(None, gt_boxes, list(names), ax=ax)
    centres, shown = box_centers(anchors).cpu(), [gt_boxes[focus].cpu()]
    for k, anchor in enumerate(matched):
        if anchor is not None:
            _outline(ax, pred_boxes[anchor].cpu().tolist(), gt_color(k), ls="--", lw=1.2)
            ax.scatter(*centres[anchor].tolist(), color=gt_color(k), gid="match", **POSITIVE_STYLE)
            shown += [pred_boxes[anchor].cpu()[None]] if k in focus else []
        if greedy[k] != anchor:
            ax.scatter(
                *centres[greedy[k]].tolist(),
                marker="x",
                s=110,
                color=gt_color(k),
                linewidths=2.5,
                gid="greedy",
                zorder=4,
            )
            shown += [centres[greedy[k]].repeat(2)[None]] if k in focus else []
    return torch.cat(shown)


def _zoom(ax: Axes, boxes: Tensor, bounds: tuple | None, margin: float = 8.0) -> None:
    """Limit ``ax`` to the extent of ``boxes [M, 4]`` (xyxy, y down) plus ``margin``, within ``bounds``
    (``(xlim, ylim)`` of the image; None: unbounded)."""
    (x1, y1), (x2, y2) = (
        (boxes[:, :2].amin(dim=0) - margin).tolist(),
        (boxes[:, 2:].amax(dim=0) + margin).tolist(),
    )
    if bounds is not None:
        (left, right), (bottom, top) = bounds  # y points down: bottom > top
        x1, x2, y1, y2 = max(x1, left), min(x2, right), max(y1, top), min(y2, bottom)
    ax.set_xlim(x1, x2)
    ax.set_ylim(y2, y1)


# every rule on one image


def level_marker_sizes(num_levels: int, finest: float = 14.0, growth: float = 1.8) -> list[float]:
    """Marker areas (points²) per level: coarser levels larger, so that positives of several levels at one
    location show as nested rings."""
    return [finest * growth**lvl for lvl in range(num_levels)]


def _draw_positives_all_levels(ax: Axes, result: AssignResult, centres: Tensor, level: Tensor, sizes) -> None:
    """``result``'s positives at their anchor centres, coarsest level first (largest, underneath)."""
    gt_inds = result.gt_inds.cpu()
    for lvl in reversed(range(len(sizes))):
        positive = (level == lvl) & (gt_inds > 0)
        colours = [gt_color(int(g) - 1) for g in gt_inds[positive]]
        ax.scatter(
            centres[positive, 0],
            centres[positive, 1],
            c=colours,
            gid=f"positive level {lvl}",
            **(POSITIVE_STYLE | {"s": sizes[lvl]}),
        )


def draw_rules_side_by_side(
    results: dict[str, AssignResult],
    anchors: Tensor,
    num_level_anchors: Sequence[int],
    gt_boxes: Tensor,
    *,
    image: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    ncols: int = 3,
) -> Figure:
    """Several rules' positives on one image: a panel per rule, every FPN level in it (a positive's ring
    grows with its level's stride), a GT without any positive crossed out, and each panel's title giving
    the positives per GT.

    Args:
        results: ``{rule: AssignResult}`` of this image, on the same ``anchors``.
        anchors: ``[N, 4]`` xyxy, level-major; num_level_anchors: per level.
        gt_boxes: ``[G, 4]`` xyxy.
        image, image_size: the background; ncols: panels per row.
    """
    rows = math.ceil(len(results) / ncols)
    grid = _panel_grid(rows, ncols, 3.2)
    strides = level_strides(anchors, list(num_level_anchors))
    centres, level = box_centers(anchors).cpu(), level_ids(list(num_level_anchors))
    sizes = level_marker_sizes(len(num_level_anchors))
    for ax, (name, result) in zip(grid.flat, results.items(), strict=False):
        _show_image(ax, image, image_size if image is None else None)
        for k, box in enumerate(gt_boxes.cpu().tolist()):
            _outline(ax, box, gt_color(k))
        _draw_positives_all_levels(ax, result, centres, level, sizes)
        per_gt = result.positives_per_gt().tolist()
        _mark_gts_without_positive(ax, gt_boxes.cpu(), [k for k, n in enumerate(per_gt) if n == 0])
        ax.set_title(
            f"{name}: {result.num_pos} positives\nper GT: {' · '.join(map(str, per_gt))}", fontsize=9
        )
    for ax in grid.flat[len(results) :]:
        ax.set_visible(False)
    rings = [
        _positive_handle(f"stride {stride:g}", size=math.sqrt(size), color="0.6")
        for size, stride in zip(sizes, strides, strict=True)
    ]
    cross = plt.Line2D(
        [], [], ls="", marker="X", ms=9, mfc="white", mec="black", label="GT without a positive"
    )
    fig = grid[0][0].figure
    _legend_below(fig, [*rings, cross], title="positives in their GT's colour, by level", title_fontsize=8)
    return fig
