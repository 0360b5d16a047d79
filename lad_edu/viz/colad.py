"""CoLAD's teacher switch (paper section 3.4, eq. 3): who taught when, by which criterion, and where.

* :func:`plot_colad_timeline` — each network's ρ over training, the network that taught shaded behind.
* :func:`draw_criteria_on_costs` — two networks' costs of one batch, with σ/μ and the Fisher score (and
  its two Gaussians) on the same costs: do the criteria pick the same teacher?
* :func:`draw_switching_map` — the authors' per-(GT, level) switch on one image: whose costs each group
  of candidates takes, with both networks' σ/μ.
* :func:`draw_class_probability_maps` — one pyramid level's class probabilities of several networks side
  by side (CoLAD with and without COP, appendix A).

Network 1 and network 2 keep one colour each in every figure (:data:`NETWORK_COLORS`), a dark indigo and
an amber, apart from the GT colours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from torch import Tensor

from lad_edu.anchors import level_ids
from lad_edu.assign.switch import choose_teacher, fisher_gmm, group_choice, merge_costs_per_group
from lad_edu.boxes import box_centers
from lad_edu.viz.assignment import draw_boxes
from lad_edu.viz.common import _gt_names, gt_color

NETWORK_COLORS = {1: "#2d2f7a", 2: "#e3a21a"}  # network 1: indigo, network 2: amber
COMPONENT_COLORS = ("tab:green", "tab:red")  # the low-cost (+) and high-cost (-) Gaussian, as draw_cost_gmm
CRITERION_NAMES = {"std_mean": "σ/μ", "fisher": "Fisher score"}


# ρ over training


def _taught_windows(rows: Sequence[dict]) -> list[tuple[float, float, int, float]]:
    """``(start, end, teacher, share)`` per logged window: the iterations after the previous row up to the
    row's ``global_iter`` (iteration ``i`` spans ``[i - 0.5, i + 0.5]``), the network that taught most of
    them (2 on a tie, as :func:`choose_teacher`) and the share of them it taught. Rows without
    ``teacher_2`` get no window."""
    windows, start = [], 0
    for row in rows:
        end, share_2 = row["global_iter"], row.get("teacher_2")
        if share_2 is not None:
            teacher = 2 if share_2 >= 0.5 else 1
            windows.append((start + 0.5, end + 0.5, teacher, share_2 if teacher == 2 else 1 - share_2))
        start = end
    return windows


def plot_colad_timeline(
    rows: Sequence[dict], axes: list[Axes] | None = None, *, criterion: str | None = None
) -> Figure:
    """CoLAD during training: each network's ρ with the teaching network shaded behind, and how often
    network 2 taught.

    Each ``"train"`` row sums up a logging window; its band takes the colour of the network that taught
    most of the window's steps, fainter when both taught some (a window of one step is one network's).

    Args:
        rows: a CoLAD run's ``"kind": "train"`` rows (``global_iter``, ``rho_1``, ``rho_2``, ``teacher_2``:
            the share of the window's steps network 2 taught, ``teacher_share_2``: the share of
            candidates whose costs came from network 2); null values are gaps.
        axes: two ``Axes``.
        criterion: ``"std_mean"`` or ``"fisher"``, to name ρ on the axis.
    """
    if axes is None:
        fig, grid = plt.subplots(2, 1, figsize=(8.8, 4.8), sharex=True, layout="constrained")
        axes = list(grid)
    fig = axes[0].figure
    x = [row["global_iter"] for row in rows]

    def column(key: str) -> np.ndarray:
        return np.array([np.nan if row.get(key) is None else row[key] for row in rows], dtype=float)

    for start, end, teacher, share in _taught_windows(rows):
        for ax in axes:  # faint where both taught in the window: alpha 0.15 (half) to 0.3 (all of it)
            ax.axvspan(start, end, color=NETWORK_COLORS[teacher], alpha=0.3 * share, lw=0, zorder=0)
    for n in (1, 2):
        axes[0].plot(x, column(f"rho_{n}"), color=NETWORK_COLORS[n], lw=1.4, label=f"ρ network {n}")
    name = CRITERION_NAMES.get(criterion, "")
    axes[0].set_ylabel(f"ρ {name} (higher: teaches)".replace("  ", " "))
    axes[1].plot(x, column("teacher_2") * 100, color=NETWORK_COLORS[2], lw=1.4, label="steps it taught")
    axes[1].plot(
        x,
        column("teacher_share_2") * 100,
        color="black",
        lw=1,
        ls="--",
        label="candidates whose costs it lent",
    )
    axes[1].set_ylabel("network 2 (%)")
    axes[1].set_ylim(-5, 105)
    axes[1].set_xlabel("iteration")
    bands = [Patch(color=NETWORK_COLORS[n], alpha=0.3, label=f"network {n} taught") for n in (1, 2)]
    outside = {"fontsize": 8, "loc": "upper left", "bbox_to_anchor": (1.01, 1.0)}
    axes[0].legend(handles=[*axes[0].get_lines(), *bands], **outside)
    axes[1].legend(**outside)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].set_title(
        "CoLAD: which network teaches (background: the teacher of each logged window)", fontsize=10
    )
    return fig


# the two criteria on the same costs


def _gaussian(grid: np.ndarray, weight: float, mean: float, variance: float) -> np.ndarray:
    return weight * np.exp(-((grid - mean) ** 2) / (2 * variance)) / math.sqrt(2 * math.pi * variance)


def _draw_costs_and_criteria(ax: Axes, costs: Tensor, color, value_range: tuple[float, float], bins: int):
    """One network's costs: histogram, μ ± σ, the Fisher mixture's two Gaussians, both ρ written out."""
    values = costs.double().cpu().numpy()
    ax.hist(values, bins=bins, range=value_range, density=True, color=color, alpha=0.45, label="costs")
    mean, std = values.mean(), values.std(ddof=1)  # eq. 3, left: the unbiased σ, as rho_std_mean
    fit = fisher_gmm(costs[None])
    (w_pos, w_neg), (m_pos, m_neg), (v_pos, v_neg) = (fit.weights[0], fit.means[0], fit.variances[0])
    grid = np.linspace(*value_range, 400)
    for (w, m, v), colour, sign in zip(
        ((w_pos, m_pos, v_pos), (w_neg, m_neg, v_neg)), COMPONENT_COLORS, "+-", strict=True
    ):
        density = _gaussian(grid, float(w), float(m), float(v))
        ax.plot(
            grid, density, color=colour, lw=1.6, ls="--", label=f"Gaussian {sign}: μ{sign} = {float(m):.2f}"
        )
    top = ax.get_ylim()[1]
    ax.axvline(mean, color=color, lw=2, label=f"μ = {mean:.2f}")
    ax.annotate(
        "", xy=(mean + std, 0.9 * top), xytext=(mean - std, 0.9 * top), arrowprops={"arrowstyle": "<->"}
    )
    ax.text(mean, 0.92 * top, f"±σ ({std:.2f})", ha="center", va="bottom", fontsize=8)
    fisher = float((m_pos - m_neg) ** 2 / (v_pos + v_neg))
    text = (
        f"σ/μ = {std:.3f} / {mean:.3f} = {std / mean:.3f}\n"
        f"Fisher = (μ+ − μ−)² / (σ+² + σ−²)\n = {float(m_pos - m_neg) ** 2:.3g} / "
        f"({float(v_pos):.3g} + {float(v_neg):.3g}) = {fisher:.4g}"
    )
    ax.text(
        0.98,
        0.97,
        text,
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        bbox={"fc": "white", "alpha": 0.85},
        zorder=6,  # above the mean line and the legend
    )
    ax.set_ylim(0, 1.6 * top)  # head room: the legend and the criteria above the bars


def draw_criteria_on_costs(
    costs_1: Tensor,
    costs_2: Tensor,
    *,
    names: tuple[str, str] = ("network 1", "network 2"),
    bins: int = 30,
    axes: list[Axes] | None = None,
) -> Figure:
    """Eq. 3's two criteria on the same costs: which network teaches by σ/μ, which by the Fisher score.

    One panel per network: the histogram of its costs, its mean μ and ± σ (ρ = σ/μ), and the weighted
    Gaussians ``G(μ+, σ+)`` (low cost) and ``G(μ-, σ-)`` of the mixture the Fisher score compares
    (:func:`~lad_edu.assign.switch.fisher_gmm`). The titles say whom each criterion picks
    (:func:`~lad_edu.assign.switch.choose_teacher`: the higher ρ, network 2 on a tie).

    Args:
        costs_1, costs_2: ``[K]`` each network's eq. 2 costs on a batch's pre-assigned candidates (at
            least two each; usually the same candidates).
        names: what to call the two.
        bins: histogram bins, over the range of both.
        axes: two ``Axes``.
    """
    if len(costs_1) < 2 or len(costs_2) < 2:
        raise ValueError(
            "each network needs at least 2 costs for σ/μ and the Fisher score, "
            f"got {len(costs_1)} and {len(costs_2)}"
        )
    if axes is None:
        fig, grid = plt.subplots(1, 2, figsize=(11, 3.8), sharex=True, layout="constrained")
        axes = list(grid)
    fig = axes[0].figure
    both = torch.cat([costs_1, costs_2]).double()
    pad = 0.05 * float(both.max() - both.min()) + 1e-3
    value_range = (float(both.min()) - pad, float(both.max()) + pad)
    picks = {key: choose_teacher(costs_1, costs_2, key)[0] for key in CRITERION_NAMES}
    for n, (ax, costs, name) in enumerate(zip(axes, (costs_1, costs_2), names, strict=True), start=1):
        _draw_costs_and_criteria(ax, costs, NETWORK_COLORS[n], value_range, bins)
        won = [CRITERION_NAMES[key] for key, pick in picks.items() if pick == n]
        ax.set_title(f"{name}: picked by {' and '.join(won) if won else 'neither'}", fontsize=10)
        ax.set_xlabel("assignment cost (eq. 2)")
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("density")
    by_std_mean, by_fisher = names[picks["std_mean"] - 1], names[picks["fisher"] - 1]
    verdict = (
        f"the criteria agree: {by_std_mean}"
        if by_std_mean == by_fisher
        else f"the criteria disagree: σ/μ picks {by_std_mean}, Fisher {by_fisher}"
    )
    fig.suptitle(f"Eq. 3 on the same candidates, {len(costs_1)} costs each; {verdict}", fontsize=11)
    return fig


# the per-(GT, level) switch on one image


def _draw_group_cells(
    ax: Axes, choice, num_gts: int, strides: Sequence[int] | None, names: list[str]
) -> None:
    """The switching map: a cell per (GT, level) group, coloured by the network whose costs it takes."""
    num_levels = choice.num_levels
    fontsize = 8 if num_levels <= 5 else 6
    for g in range(num_gts * num_levels):  # group g = gt · L + level, as in GroupChoice
        k, lvl = divmod(g, num_levels)
        n = int(choice.count[g]) if g < len(choice.count) else 0  # ids stop at the last used group
        if n == 0:  # a level without candidates
            ax.add_patch(Rectangle((lvl, k), 1, 1, fc="0.95", ec="white", lw=2))
            continue
        winner = 2 if bool(choice.second_wins[g]) else 1
        ax.add_patch(
            Rectangle((lvl, k), 1, 1, fc=NETWORK_COLORS[winner], ec="white", lw=2, gid=f"GT {k} level {lvl}")
        )
        if n >= 2:
            text = f"{float(choice.rho_1[g]):.3f} | {float(choice.rho_2[g]):.3f}\n{n} candidates"
        else:
            text = f"{float(choice.mean_1[g]):.3f} | {float(choice.mean_2[g]):.3f}\n1: lower cost"
        ax.text(
            lvl + 0.5,
            k + 0.5,
            text,
            ha="center",
            va="center",
            fontsize=fontsize,
            color="white" if winner == 1 else "black",
        )
    ax.set_xlim(0, num_levels)
    ax.set_ylim(num_gts, 0)
    columns = [f"stride {s}" for s in strides] if strides else [f"level {lvl}" for lvl in range(num_levels)]
    ax.set_xticks(np.arange(num_levels) + 0.5, columns, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(np.arange(num_gts) + 0.5, names, fontsize=8)
    for k, label in enumerate(ax.get_yticklabels()):
        label.set_color(gt_color(k))
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)


def draw_switching_map(
    costs_1: Tensor,
    costs_2: Tensor,
    candidate_anchor: Tensor,
    candidate_gt: Tensor,
    *,
    anchors: Tensor,
    num_level_anchors: list[int],
    gt_boxes: Tensor,
    image: Tensor | None = None,
    image_size: tuple[int, int] | None = None,
    strides: Sequence[int] | None = None,
    gt_names: list[str] | None = None,
    axes: list[Axes] | None = None,
) -> Figure:
    """The authors' per-(GT, level) switch on one image: whose costs each group of candidates takes.

    Left: the image, its GTs, and each candidate anchor's centre in the colour of the network whose costs
    it takes (larger dots on coarser levels). Right: the switching map, a row per GT and a column per
    level; a cell is that GT's candidates on that level, coloured by the winner of
    :func:`~lad_edu.assign.switch.group_choice` (the higher σ/μ, network 2 on a tie; a lone candidate:
    the lower cost) and annotated with network 1's | network 2's σ/μ (a lone candidate: its two costs). An
    empty cell is a level without candidates.

    Args:
        costs_1, costs_2: ``[K]`` each network's eq. 2 costs on the image's pre-assigned candidates.
        candidate_anchor: ``[K]`` long, each candidate's anchor index in the image; candidate_gt: ``[K]``
            long, its 0-based GT.
        anchors: ``[N, 4]`` xyxy, level-major; num_level_anchors: anchors per level.
        gt_boxes: ``[G, 4]`` xyxy.
        image, image_size: the background (see :func:`~lad_edu.viz.draw_boxes`).
        strides: per-level strides, for the column labels.
        gt_names: a label per GT (default ``"GT k"``).
        axes: two ``Axes``.
    """
    choice = group_choice(costs_1, costs_2, candidate_anchor, candidate_gt, num_level_anchors)
    _, from_2 = merge_costs_per_group(costs_1, costs_2, candidate_anchor, candidate_gt, num_level_anchors)
    names = _gt_names(len(gt_boxes), gt_names)
    if axes is None:
        width = 1.2 + 1.05 * len(num_level_anchors)  # the map: a column per level after the GT names
        fig, grid = plt.subplots(
            1,
            2,
            figsize=(5.0 + width, max(4.6, 0.5 * len(gt_boxes) + 1.6)),
            layout="constrained",
            width_ratios=(5.0, width),
        )
        axes = list(grid)
    fig = axes[0].figure
    draw_boxes(image, gt_boxes, names, image_size=image_size, ax=axes[0])
    centres = box_centers(anchors[candidate_anchor]).cpu().numpy()
    level = level_ids(num_level_anchors, device=candidate_anchor.device)[candidate_anchor].cpu().numpy()
    colours = np.array([NETWORK_COLORS[2] if f else NETWORK_COLORS[1] for f in from_2.tolist()], dtype=object)
    for lvl in sorted(set(level.tolist()), reverse=True):  # coarse levels first: their larger dots below
        mine = level == lvl
        axes[0].scatter(
            centres[mine, 0],
            centres[mine, 1],
            s=6 * 1.8**lvl,
            c=list(colours[mine]),
            edgecolors="white",
            linewidths=0.6,
            zorder=3,
            gid=f"candidates level {lvl}",
        )
    _draw_group_cells(axes[1], choice, len(gt_boxes), strides, names)
    used = choice.count > 0
    won_2 = int((choice.second_wins & used).sum())
    axes[0].set_title(f"{len(costs_1)} candidates, {int(from_2.sum())} with network 2's costs", fontsize=10)
    axes[1].set_title(
        f"network 2 wins {won_2} of {int(used.sum())} (GT, level) groups\ncell: σ/μ network 1 | network 2",
        fontsize=10,
    )
    handles = [Patch(color=NETWORK_COLORS[n], label=f"network {n}'s costs") for n in (1, 2)]
    axes[0].legend(handles=handles, fontsize=8, loc="lower left")
    return fig


# COP: class probabilities


def draw_class_probability_maps(
    probabilities: dict[str, Tensor],
    anchors: Tensor,
    num_level_anchors: list[int],
    level: int,
    *,
    gt_boxes: Tensor,
    stride: int | None = None,
    gt_names: list[str] | None = None,
    axes: list[Axes] | None = None,
) -> Figure:
    """One pyramid level's class probability at every anchor, a panel per network, one colour scale.

    For CoLAD with and without COP (appendix A, eq. 4: ``p = 1/9 Σ_k sigmoid(o^k) · sigmoid(cls^k)``, an
    objectness-weighted mean over the 3x3 neighbours), or any networks on the same anchors.

    Args:
        probabilities: ``{name: [N] probability in [0, 1] at every anchor}`` (e.g. of the most likely class).
        anchors: ``[N, 4]`` xyxy, level-major, one anchor per location (PAA's); num_level_anchors: per level.
        level: the level to draw.
        gt_boxes: ``[G, 4]`` xyxy, outlined.
        stride: the level's stride, for the titles.
        gt_names: a label per GT.
        axes: one ``Axes`` per network.
    """
    mine = level_ids(num_level_anchors) == level
    centres = box_centers(anchors.cpu()[mine])
    xs, ys = centres[:, 0].unique(), centres[:, 1].unique()
    if len(xs) * len(ys) != int(mine.sum()):
        raise ValueError(
            f"level {level} must have one anchor per location (PAA's anchors), got {int(mine.sum())} "
            f"anchors on {len(ys)}x{len(xs)} locations"
        )
    step_x = float(xs[1] - xs[0]) if len(xs) > 1 else float(anchors[mine][0, 2] - anchors[mine][0, 0])
    step_y = float(ys[1] - ys[0]) if len(ys) > 1 else step_x
    extent = (
        float(xs[0]) - step_x / 2,
        float(xs[-1]) + step_x / 2,
        float(ys[-1]) + step_y / 2,
        float(ys[0]) - step_y / 2,
    )
    maps = {name: p.detach().cpu()[mine].view(len(ys), len(xs)).numpy() for name, p in probabilities.items()}
    vmax = max(float(m.max()) for m in maps.values())
    if axes is None:
        fig, grid = plt.subplots(
            1, len(maps), figsize=(3.6 * len(maps) + 0.8, 3.6), layout="constrained", squeeze=False
        )
        axes = list(grid[0])
    fig = axes[0].figure
    for ax, (name, prob) in zip(axes, maps.items(), strict=True):
        shown = ax.imshow(prob, extent=extent, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        draw_boxes(None, gt_boxes, gt_names, ax=ax)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        where = f"stride {stride}" if stride else f"level {level}"
        ax.set_title(f"{name}\n{where}: max {prob.max():.3f}, mean {prob.mean():.4f}", fontsize=9)
    fig.colorbar(shown, ax=axes, label="class probability", shrink=0.85)
    return fig
