"""One image's assignment: boxes, anchors per level, IoU matrices and histograms, PAA's cost GMM, diffs."""

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

from lad_edu.anchors import level_ids
from lad_edu.assign.paa import paa_positives
from lad_edu.assign.result import AssignResult
from lad_edu.boxes import box_centers
from lad_edu.gmm import fit_gmm2
from lad_edu.viz.common import NEGATIVE_COLOR, _figure_and_ax, _gt_names, _show_image, gt_color


def draw_boxes(
    image: Tensor | None,
    gt_boxes: Tensor,
    gt_names: list[str] | None = None,
    anchors: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    anchor_color: str = "white",
    ax: Axes | None = None,
    gt_indices: Sequence[int] | None = None,
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
        gt_indices: ``[G]``: which GTs of the image ``gt_boxes`` are, when they are a subset, so that each
            keeps its colour (GT ``k`` is colour ``k`` in every figure); default ``0 .. G-1``.
    """
    indices = list(range(len(gt_boxes))) if gt_indices is None else [int(k) for k in gt_indices]
    if len(indices) != len(gt_boxes):
        raise ValueError(
            f"gt_indices has {len(indices)} entries for {len(gt_boxes)} gt_boxes: give one per box"
        )
    fig, ax = _figure_and_ax(ax, (5, 5))
    _show_image(ax, image, image_size)
    if anchors is not None:
        for x1, y1, x2, y2 in anchors.tolist():
            ax.add_patch(
                Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.8, ec=anchor_color, alpha=0.9)
            )
    names = list(gt_names) if gt_names is not None else [f"GT {k}" for k in indices]
    for k, (x1, y1, x2, y2), name in zip(indices, gt_boxes.tolist(), names, strict=True):
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


# a positive anchor: large enough to see at a glance, ringed white then black to read on any colour
POSITIVE_STYLE = {
    "s": 34,
    "edgecolors": "white",
    "linewidths": 1.0,
    "path_effects": [patheffects.withStroke(linewidth=2.6, foreground="black")],
}


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

    A positive is a large dot in its GT's colour, ringed white and black so that it reads on any
    background (its own GT's object included); a negative a small grey dot; an ignored anchor a hollow
    black circle. With several anchors per location the dot shows the best label there (positive over
    ignored over negative).

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
        ax.scatter(xy[pos, 0], xy[pos, 1], c=colours, **POSITIVE_STYLE)
        for k, (x1, y1, x2, y2) in enumerate(gt_boxes.tolist()):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.5, ec=gt_color(k)))
        name = f"stride {strides[lvl]}" if strides else f"level {lvl}"
        ax.set_title(f"{name}: {int(pos.sum())} pos, {int(ign.sum())} ign", fontsize=9)
    axes[0].legend(
        handles=[
            plt.Line2D(
                [],
                [],
                ls="",
                marker="o",
                mfc="0.5",
                mec="white",
                ms=6.5,
                label="positive (GT colour)",
                path_effects=POSITIVE_STYLE["path_effects"],
            ),
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


def level_colors(num_levels: int) -> list:
    """A colour per FPN level, finest (P3) lightest, coarsest darkest (``viridis``: apart from GT colours)."""
    return [plt.get_cmap("viridis_r")(x) for x in np.linspace(0.15, 0.9, num_levels)]


def draw_iou_histograms(
    ious: list[Tensor],
    thresholds: dict[str, float | Tensor],
    gt_names: list[str] | None = None,
    bins: int = 20,
    axes: list[Axes] | None = None,
    *,
    levels: list[Tensor] | None = None,
    strides: Sequence[int] | None = None,
) -> Figure:
    """Per GT, a histogram of its candidates' IoU with the thresholds drawn as vertical lines.

    With ``levels``, each bar is stacked by FPN level (one colour per level, a legend below the panels):
    the argument of ATSS's ``mean + std`` is that the candidates of the level that fits the object stand
    apart from those of the other levels.

    Args:
        ious: one 1-D tensor per GT (e.g. the IoU of the anchors that overlap it, or of ATSS's candidates).
        thresholds: ``{label: value}``, a value being one number for every GT (fixed IoU's 0.5 / 0.4) or a
            ``[G]`` tensor (ATSS's per-GT mean + std).
        gt_names: a title per GT.
        axes: one ``Axes`` per GT.
        levels: one 1-D long tensor per GT, the FPN level (0 = P3) of each value of ``ious``; None: one
            colour per GT.
        strides: the levels' strides, for the legend (default ``"level i"``).
    """
    num_gts = len(ious)
    if axes is None:
        cols = min(4, num_gts)
        rows = math.ceil(num_gts / cols)
        fig, grid = plt.subplots(
            rows,
            cols,
            figsize=(3.2 * cols, 2.6 * rows + 0.4 * (levels is not None)),
            layout="constrained",
            squeeze=False,
        )
        axes = list(grid.flat)
        for ax in axes[num_gts:]:
            ax.set_visible(False)
    fig = axes[0].figure
    num_levels = 1 + max((int(lv.max()) for lv in levels or [] if len(lv)), default=0)
    colours = level_colors(num_levels)
    styles = ["--", ":", "-."]
    for k, (ax, values, name) in enumerate(zip(axes, ious, _gt_names(num_gts, gt_names), strict=False)):
        if levels is None:
            ax.hist(values.cpu().numpy(), bins=bins, range=(0, 1), color=gt_color(k), alpha=0.8)
        else:
            per_level = [values[levels[k] == lvl].cpu().numpy() for lvl in range(num_levels)]
            ax.hist(per_level, bins=bins, range=(0, 1), color=colours, stacked=True)
        for (label, value), style in zip(thresholds.items(), styles, strict=False):
            v = float(value[k]) if isinstance(value, Tensor) else float(value)
            ax.axvline(v, color="black", ls=style, lw=1.2, label=f"{label} = {v:.2f}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("IoU")
        ax.legend(fontsize=7, loc="upper right")
    if levels is not None:
        names = [f"stride {s}" for s in strides] if strides else [f"level {i}" for i in range(num_levels)]
        patches = [Rectangle((0, 0), 1, 1, color=c, label=n) for c, n in zip(colours, names, strict=False)]
        outside = fig.get_layout_engine() is not None  # constrained layout places a legend outside
        fig.legend(
            handles=patches,
            loc="outside lower center" if outside else "lower center",
            ncols=num_levels,
            fontsize=8,
            title="by FPN level",
            title_fontsize=8,
        )
    return fig


def plot_fixed_iou_sweep(
    sweeps: dict[str, tuple[Sequence[str], Tensor]],
    *,
    pos_iou_thr: float = 0.5,
    neg_iou_thr: float = 0.4,
    axes: list[Axes] | None = None,
) -> Figure:
    """Fixed IoU against an object's size and shape: a column per sweep of boxes; on top each box's best IoU
    with any anchor and the two thresholds, below its positives, split into anchors at IoU ``>=
    pos_iou_thr`` and positives that only the low-quality step gave (tied best anchors below it).

    Args:
        sweeps: ``{title: (labels [K], stats [K, 3])}``, a label per box (``"16 x 16"``) and per box the mean
            over placements of its best IoU, its anchors at IoU ``>= pos_iou_thr``, and its positives below
            ``pos_iou_thr`` (``details["low_quality"]`` of :class:`lad_edu.assign.FixedIoUAssigner`).
        pos_iou_thr, neg_iou_thr: the rule's thresholds, drawn on the IoU axis.
        axes: ``2 x len(sweeps)`` Axes, IoU row first.
    """
    if axes is None:
        widths = [len(labels) for labels, _ in sweeps.values()]
        _, grid = plt.subplots(
            2,
            len(sweeps),
            figsize=(0.75 * sum(widths) + 2.5, 5.4),
            layout="constrained",
            squeeze=False,
            sharey="row",
            width_ratios=widths,
        )
        axes = [*grid[0], *grid[1]]
    for col, (title, (labels, stats)) in enumerate(sweeps.items()):
        top, bottom = axes[col], axes[len(sweeps) + col]
        x = np.arange(len(labels))
        best, good, low = (stats[:, i].cpu().numpy() for i in range(3))
        top.plot(x, best, marker="o", color="black", label="best IoU of any anchor")
        top.axhline(pos_iou_thr, color="tab:blue", ls="--", lw=1, label=f"pos_iou_thr = {pos_iou_thr:g}")
        top.axhline(neg_iou_thr, color="tab:red", ls=":", lw=1, label=f"neg_iou_thr = {neg_iou_thr:g}")
        top.set_ylim(0, 1)
        top.set_title(title, fontsize=10)
        top.set_xticks(x, [])
        bottom.bar(x - 0.2, good, width=0.4, color="tab:blue", label=f"anchors at IoU >= {pos_iou_thr:g}")
        bottom.bar(
            x + 0.2,
            low,
            width=0.4,
            color="tab:orange",
            hatch="//",
            ec="white",
            label=f"low-quality only (IoU < {pos_iou_thr:g}, tied best anchors)",
        )
        bottom.set_xticks(x, labels, fontsize=8)
        bottom.set_xlabel("box (w x h, px)")
        for ax in (top, bottom):
            ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("IoU")
    axes[len(sweeps)].set_ylabel("positives per object")
    axes[0].legend(fontsize=7, loc="lower right")
    axes[len(sweeps)].legend(fontsize=7, loc="upper left")
    return axes[0].figure


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


# the y axis of the tol contrast reaches this times the highest bar: room for the legend
CONTRAST_HEAD_ROOM = 1.8


def _refit_one_gt(costs: Tensor, tol: float, max_iter: int) -> AssignResult:
    """One GT's sorted candidate ``costs [M]`` (NaN padding) refitted with another EM ``tol``, cut as PAA cuts
    (:func:`~lad_edu.assign.paa.paa_positives`, MMDetection's variant): a one-GT result that
    :func:`draw_cost_gmm` reads (row 0 of ``details``)."""
    valid = ~torch.isnan(costs)[None]  # [1, M]
    values = torch.where(valid, costs.double(), 0.0)
    fit = fit_gmm2(values, valid, tol=tol, max_iter=max_iter)
    component, score = fit.predict_and_score(values, valid)
    positive = paa_positives(values, valid, component, score)
    largest = torch.where(positive, values, -torch.inf).amax(dim=1)
    details = {
        "costs": costs[None],
        "component": component,
        "positive": positive,
        "cut": largest.masked_fill(largest == -torch.inf, torch.nan),
        "gmm_weights": fit.weights,
        "gmm_means": fit.means,
        "gmm_variances": fit.variances,
        "gmm_n_iter": fit.n_iter,
    }
    nothing = torch.zeros(0, dtype=torch.long)  # no anchors: only the details are drawn
    return AssignResult(nothing, nothing.float(), nothing, num_gts=1, details=details)


def draw_cost_gmm_tol_contrast(
    result: AssignResult,
    gt: int,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
    gt_name: str | None = None,
    bins: int = 15,
    axes: list[Axes] | None = None,
) -> Figure:
    """PAA's split of one GT as fitted (left: EM stopped at sklearn's ``tol = 1e-3``, as MMDetection) next
    to the same costs refitted with a smaller ``tol`` (right), on the same axes: two :func:`draw_cost_gmm`.

    From the same start (variances 1), EM on costs that span a few tenths often stops after 3 iterations
    with two nearly equal Gaussians; run longer, it separates them, and the cut can move. Both panels share
    the histogram's scale, so a component collapsed onto one candidate (a spike) is clipped.

    Args:
        result: a :class:`lad_edu.assign.PAAAssigner` result (``details``: costs, mixture, cut, n_iter).
        gt: the GT's index.
        tol, max_iter: the refit's stopping rule (:func:`lad_edu.gmm.fit_gmm2`).
        gt_name: the GT's name in the titles (default ``"GT k"``).
        axes: two ``Axes`` to draw into.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained", sharex=True)
    name = gt_name or f"GT {gt}"
    refit = _refit_one_gt(result.details["costs"][gt], tol, max_iter)
    for ax, (shown, row, label) in zip(
        axes,
        (
            (result, gt, "tol = 1e-3 (PAA's own fit)"),
            (refit, 0, f"refitted, tol = {tol:g}".replace("e-0", "e-")),
        ),
        strict=True,
    ):
        iters = int(shown.details["gmm_n_iter"][row])
        draw_cost_gmm(shown, row, gt_name=f"{name}: {label}, {iters} EM iterations", bins=bins, ax=ax)
    bars = [bar.get_height() for bar in axes[0].containers[0]] if axes[0].containers else [0.0]
    for ax in axes:  # both panels hold the same histogram: its scale, a collapsed component's spike clipped
        ax.set_ylim(0, CONTRAST_HEAD_ROOM * max(bars))
    return axes[0].figure


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
