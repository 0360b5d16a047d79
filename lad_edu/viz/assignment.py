"""One image's assignment: boxes, anchors per level, IoU matrices and histograms, PAA's cost GMM, diffs."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from lad_edu.anchors import level_ids
from lad_edu.assign.result import AssignResult
from lad_edu.boxes import box_centers
from lad_edu.viz.common import NEGATIVE_COLOR, _figure_and_ax, _gt_names, _show_image, gt_color


def draw_boxes(
    image: Tensor | None,
    gt_boxes: Tensor,
    gt_names: list[str] | None = None,
    anchors: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    anchor_color: str = "white",
    ax: Axes | None = None,
) -> Figure:
    """GT boxes over an image, labelled; optionally anchors as thin outlines.

    Args:
        image: ``[3, H, W]`` or None (then ``image_size`` sets the canvas).
        gt_boxes: ``[G, 4]`` xyxy.
        gt_names: a label per GT (default ``"GT k"``).
        anchors: ``[A, 4]`` xyxy to outline (pass a few: all of them hide the image).
        image_size: ``(height, width)`` when there is no image.
        anchor_color: the anchors' outline colour.
        ax: draw here instead of a new figure.
    """
    fig, ax = _figure_and_ax(ax, (5, 5))
    _show_image(ax, image, image_size)
    if anchors is not None:
        for x1, y1, x2, y2 in anchors.tolist():
            ax.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8, ec=anchor_color, alpha=0.9)
            )
    for k, ((x1, y1, x2, y2), name) in enumerate(
        zip(gt_boxes.tolist(), _gt_names(len(gt_boxes), gt_names), strict=True)
    ):
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=2, ec=gt_color(k)))
        ax.text(
            x1,
            y1 - 2,
            name,
            color="white",
            fontsize=8,
            va="bottom",
            clip_on=True,  # a label whose box is zoomed out of view stays out of view
            bbox={"facecolor": gt_color(k), "edgecolor": "none", "pad": 1, "alpha": 0.9},
        )
    return fig


def draw_assignment_levels(
    result: AssignResult,
    anchors: Tensor,
    num_level_anchors: list[int],
    gt_boxes: Tensor,
    image: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    strides: list[int] | None = None,
    title: str | None = None,
    axes: list[Axes] | None = None,
) -> Figure:
    """Positive, negative and ignored anchors per FPN level (one panel each), anchor centres as dots.

    A positive is a filled dot in its GT's colour; a negative a small grey dot; an ignored anchor a
    hollow black circle. With several anchors per location the dot shows the best label there
    (positive over ignored over negative).

    Args:
        result: the assignment (``gt_inds [N]``).
        anchors: ``[N, 4]`` xyxy, level-major; num_level_anchors: anchors per level.
        gt_boxes: ``[G, 4]`` xyxy, outlined in every panel.
        image, image_size: the background (see :func:`draw_boxes`).
        strides: per-level strides for the panel titles.
        title: the figure's title.
        axes: one ``Axes`` per level to draw into.
    """
    num_levels = len(num_level_anchors)
    if axes is None:
        fig, axes = plt.subplots(
            1, num_levels, figsize=(3.2 * num_levels, 3.6), layout="constrained", squeeze=False
        )
        axes = list(axes[0])
    fig = axes[0].figure
    centres = box_centers(anchors).cpu()
    gt_inds = result.gt_inds.cpu()
    level = level_ids(num_level_anchors)
    for lvl, ax in enumerate(axes):
        _show_image(ax, image, image_size if image is None else None)
        mine = level == lvl
        # best label per location: positive > ignored > negative, so sort negatives first, positives last
        order = torch.argsort((gt_inds[mine] > 0).int() * 2 + (gt_inds[mine] < 0).int(), stable=True)
        xy, inds = centres[mine][order].numpy(), gt_inds[mine][order]
        neg, ign, pos = (inds == 0).numpy(), (inds < 0).numpy(), (inds > 0).numpy()
        dot = max(2.0, 30.0 / math.sqrt(max(1, int(mine.sum()))))
        ax.scatter(xy[neg, 0], xy[neg, 1], s=dot, c=NEGATIVE_COLOR, linewidths=0)
        ax.scatter(xy[ign, 0], xy[ign, 1], s=dot * 4, facecolors="none", edgecolors="black", linewidths=0.8)
        colours = [gt_color(int(k) - 1) for k in inds[pos]]
        ax.scatter(xy[pos, 0], xy[pos, 1], s=dot * 6, c=colours, edgecolors="black", linewidths=0.4)
        for k, (x1, y1, x2, y2) in enumerate(gt_boxes.tolist()):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, ec=gt_color(k)))
        name = f"stride {strides[lvl]}" if strides else f"level {lvl}"
        ax.set_title(f"{name}: {int(pos.sum())} pos, {int(ign.sum())} ign", fontsize=9)
    axes[0].legend(
        handles=[
            plt.Line2D([], [], ls="", marker="o", mfc="0.5", mec="black", label="positive (GT colour)"),
            plt.Line2D([], [], ls="", marker="o", mfc="none", mec="black", label="ignored"),
            plt.Line2D([], [], ls="", marker="o", mfc=NEGATIVE_COLOR, mec="none", ms=4, label="negative"),
        ],
        fontsize=7,
        loc="lower left",
    )
    if title:
        fig.suptitle(title)
    return fig


def draw_iou_matrix(iou: Tensor, gt_names: list[str] | None = None, ax: Axes | None = None) -> Figure:
    """The IoU matrix ``[G, N]`` (GTs x anchors) as a heat map, with a colour bar."""
    fig, ax = _figure_and_ax(ax, (8, 0.4 * len(iou) + 1.5))
    shown = ax.imshow(
        iou.cpu().numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest"
    )
    ax.set_yticks(range(len(iou)), _gt_names(len(iou), gt_names))
    ax.set_xlabel("anchor index")
    fig.colorbar(shown, ax=ax, label="IoU")
    return fig


def draw_iou_histograms(
    ious: list[Tensor],
    thresholds: dict[str, float | Tensor],
    gt_names: list[str] | None = None,
    bins: int = 20,
    axes: list[Axes] | None = None,
) -> Figure:
    """Per GT, a histogram of its candidates' IoU with the thresholds drawn as vertical lines.

    Args:
        ious: one 1-D tensor per GT (e.g. the IoU of the anchors that overlap it, or of ATSS's candidates).
        thresholds: ``{label: value}``, a value being one number for every GT (fixed IoU's 0.5 / 0.4) or a
            ``[G]`` tensor (ATSS's per-GT mean + std).
        gt_names: a title per GT.
        axes: one ``Axes`` per GT.
    """
    num_gts = len(ious)
    if axes is None:
        cols = min(4, num_gts)
        rows = math.ceil(num_gts / cols)
        fig, grid = plt.subplots(
            rows, cols, figsize=(3.2 * cols, 2.6 * rows), layout="constrained", squeeze=False
        )
        axes = list(grid.flat)
        for ax in axes[num_gts:]:
            ax.set_visible(False)
    fig = axes[0].figure
    styles = ["--", ":", "-."]
    for k, (ax, values, name) in enumerate(zip(axes, ious, _gt_names(num_gts, gt_names), strict=False)):
        ax.hist(values.cpu().numpy(), bins=bins, range=(0, 1), color=gt_color(k), alpha=0.8)
        for (label, value), style in zip(thresholds.items(), styles, strict=False):
            v = float(value[k]) if isinstance(value, Tensor) else float(value)
            ax.axvline(v, color="black", ls=style, lw=1.2, label=f"{label} = {v:.2f}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("IoU")
        ax.legend(fontsize=7, loc="upper right")
    return fig


def draw_cost_gmm(
    result: AssignResult, gt: int, gt_name: str | None = None, bins: int = 15, ax: Axes | None = None
) -> Figure:
    """PAA: one GT's candidate costs, the two fitted Gaussians (weighted) and the cut.

    Args:
        result: a :class:`lad_edu.assign.PAAAssigner` result (its ``details`` carry costs and the mixture).
        gt: the GT's index.
        gt_name: the title (default ``"GT k"``).
    """
    fig, ax = _figure_and_ax(ax, (5, 3.2))
    d = result.details
    valid = ~torch.isnan(d["costs"][gt])
    costs = d["costs"][gt][valid].double().cpu().numpy()
    component = d["component"][gt][valid].cpu().numpy()
    positive = d["positive"][gt][valid].cpu().numpy()
    if len(costs) == 0:
        ax.text(0.5, 0.5, "no candidate", ha="center", va="center", transform=ax.transAxes)
        return fig
    lo, hi = costs.min(), costs.max()
    pad = 0.1 * (hi - lo) + 1e-3
    grid = np.linspace(lo - pad, hi + pad, 400)
    ax.hist(costs, bins=bins, range=(lo - pad, hi + pad), density=True, color="0.8", label="candidate costs")
    names = ("component 0 (low cost)", "component 1")
    for c, colour in zip((0, 1), ("tab:green", "tab:red"), strict=True):
        w, m, var = (float(d[key][gt, c]) for key in ("gmm_weights", "gmm_means", "gmm_variances"))
        density = w * np.exp(-((grid - m) ** 2) / (2 * var)) / math.sqrt(2 * math.pi * var)
        ax.plot(grid, density, color=colour, lw=2, label=f"{names[c]}: μ={m:.2f}")
        ax.plot(costs[component == c], np.zeros((component == c).sum()), "|", color=colour, ms=14, mew=2)
    cut = float(d["cut"][gt])
    if not math.isnan(cut):
        ax.axvline(cut, color="black", ls="--", label=f"cut = {cut:.2f} ({int(positive.sum())} positives)")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.45)  # head room: the legend sits above the bars
    ax.set_xlabel("assignment cost (eq. 2)")
    ax.set_ylabel("density")
    ax.set_title(gt_name or f"GT {gt}", fontsize=10)
    ax.legend(fontsize=7)
    return fig


def draw_assignment_diff(
    result_a: AssignResult,
    result_b: AssignResult,
    anchors: Tensor,
    gt_boxes: Tensor,
    names: tuple[str, str] = ("A", "B"),
    gt_names: list[str] | None = None,
    image: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    axes: list[Axes] | None = None,
) -> Figure:
    """Two strategies on one image (same anchors): which anchors flip, and positives per GT side by side.

    Left: anchor centres that are positive in only one of the two (a filled dot: only in ``A``; a cross:
    only in ``B``), coloured by GT. Right: positives per GT, ``A`` and ``B`` bars side by side.
    """
    if len(result_a.gt_inds) != len(result_b.gt_inds) or len(anchors) != len(result_a.gt_inds):
        raise ValueError("both results must label the same anchors (one anchor set for both strategies)")
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained", width_ratios=(1, 1.2))
    fig = axes[0].figure
    _show_image(axes[0], image, image_size if image is None else None)
    centres = box_centers(anchors).cpu().numpy()
    a, b = result_a.gt_inds.cpu(), result_b.gt_inds.cpu()
    only_a = ((a > 0) & (a != b)).numpy()
    only_b = ((b > 0) & (a != b)).numpy()
    axes[0].scatter(
        centres[only_a, 0],
        centres[only_a, 1],
        s=28,
        c=[gt_color(int(k) - 1) for k in a[only_a]],
        edgecolors="black",
        linewidths=0.5,
        label=f"positive only in {names[0]}",
    )
    axes[0].scatter(
        centres[only_b, 0],
        centres[only_b, 1],
        s=40,
        marker="x",
        c=[gt_color(int(k) - 1) for k in b[only_b]],
        label=f"positive only in {names[1]}",
    )
    for k, (x1, y1, x2, y2) in enumerate(gt_boxes.tolist()):
        axes[0].add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, ec=gt_color(k)))
    axes[0].legend(fontsize=7, loc="best")
    axes[0].set_title(f"{int(only_a.sum())} + {int(only_b.sum())} anchors flip", fontsize=10)

    labels = _gt_names(len(gt_boxes), gt_names)
    x = np.arange(len(labels))
    pa, pb = result_a.positives_per_gt().cpu().numpy(), result_b.positives_per_gt().cpu().numpy()
    axes[1].bar(x - 0.2, pa, width=0.4, label=names[0], color="tab:blue")
    axes[1].bar(x + 0.2, pb, width=0.4, label=names[1], color="tab:orange")
    axes[1].set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    axes[1].set_ylabel("positive anchors")
    axes[1].legend(fontsize=8)
    return fig
