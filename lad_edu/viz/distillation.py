"""Label Assignment Distillation (section 3.2): a teacher's costs next to a student's own, GT by GT.

PAA splits each GT's candidate costs (eq. 2) with a two-Gaussian mixture; LAD computes the same costs from a
trained teacher's predictions instead of the student's. Whether that helps shows in the costs themselves:
a trained network gives a few candidates a clearly lower cost than the rest, an untrained one gives them
all nearly the same, and the split of such a flat cloud is close to arbitrary.

* :func:`draw_cost_histograms_pair` — per GT, two networks' candidate costs on one shared x axis, with each
  network's cut and its σ/μ (eq. 3, the spread CoLAD compares).
* :func:`plot_assignment_over_training` — the labels each run trained on, over training: a frozen teacher's
  (LAD) stay where the teacher ended, a network's own (PAA) move as it learns.

Network ``a`` (the teacher) and network ``b`` (the student) keep CoLAD's two colours
(:data:`lad_edu.viz.colad.NETWORK_COLORS`), apart from the GT colours.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from torch import Tensor

from lad_edu.assign.switch import rho_std_mean
from lad_edu.viz.colad import NETWORK_COLORS
from lad_edu.viz.common import _gt_names
from lad_edu.viz.comparison import strategy_colors
from lad_edu.viz.metrics import TITLES, _column, _is_share

__all__ = ["draw_cost_histograms_pair", "plot_assignment_over_training"]

PAIR_COLORS = (NETWORK_COLORS[1], NETWORK_COLORS[2])  # network a (teacher), network b (student)
LINE_STYLES = ("-", "--", ":", "-.")  # one per strategy, in order, so that identical curves stay visible


def _costs_per_gt(costs, name: str) -> list[np.ndarray]:
    """``costs`` as one 1-D float64 array per GT, without NaN (the padding of PAA's ``details["costs"]``).

    Args:
        costs: ``[G, M]`` (a tensor or array, NaN-padded rows) or a sequence of ``G`` 1-D arrays / tensors.
    """
    if isinstance(costs, Tensor | np.ndarray) and costs.ndim != 2:
        raise ValueError(
            f"{name} must be [G, M] (a row of candidate costs per GT, NaN padding) or a list of G 1-D "
            f"arrays, got shape {tuple(costs.shape)}"
        )
    rows = []
    for k, row in enumerate(costs):
        values = np.asarray(row.detach().cpu() if isinstance(row, Tensor) else row, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(f"{name}[{k}] must be 1-D (GT {k}'s candidate costs), got shape {values.shape}")
        rows.append(values[~np.isnan(values)])
    return rows


def _cuts_per_gt(cuts, num_gts: int) -> list[np.ndarray]:
    """Each network's ``[G]`` cuts as float arrays (NaN: no positive, or no cut given)."""
    if cuts is None:
        cuts = (None, None)
    if len(cuts) != 2:
        raise ValueError(f"cuts must be a pair (cuts_a, cuts_b), each [G] or None, got {len(cuts)} entries")
    arrays = []
    for side, cut in zip("ab", cuts, strict=True):
        values = np.full(num_gts, np.nan)
        if cut is not None:
            values = np.asarray(cut.detach().cpu() if isinstance(cut, Tensor) else cut, dtype=np.float64)
        if values.shape != (num_gts,):
            raise ValueError(f"cuts_{side} must be [G={num_gts}] (one cut per GT), got shape {values.shape}")
        arrays.append(values)
    return arrays


def _spread(values: np.ndarray) -> str:
    """σ/μ of one GT's costs (eq. 3, the unbiased σ of :func:`rho_std_mean`), or "n/a" under 2 costs."""
    rho = float(rho_std_mean(torch.from_numpy(values)[None])[0]) if len(values) else math.nan
    return "n/a" if math.isnan(rho) else f"{rho:.2f}"


def _panels(num_gts: int, axes: Sequence[Axes] | None) -> tuple[Sequence[Axes], int]:
    """One ``Axes`` per GT (the caller's, or a grid of up to four columns) and the grid's column count
    (1 for the caller's axes: every panel gets its axis labels)."""
    if axes is not None:
        if len(axes) < num_gts:
            raise ValueError(f"axes must hold one Axes per GT ({num_gts}), got {len(axes)}")
        return axes, 1
    cols = min(4, num_gts)
    n_rows = math.ceil(num_gts / cols)
    _, grid = plt.subplots(
        n_rows, cols, figsize=(3.4 * cols, 2.5 * n_rows + 0.5), layout="constrained", squeeze=False
    )
    for ax in grid.flat[num_gts:]:
        ax.set_visible(False)
    return list(grid.flat), cols


def _draw_gt(ax: Axes, costs: tuple[np.ndarray, np.ndarray], cuts: tuple[float, float], edges: np.ndarray):
    """One GT: both networks' cost histograms on the shared ``edges``, their cuts dashed."""
    for values, cut, color in zip(costs, cuts, PAIR_COLORS, strict=True):
        ax.hist(values, bins=edges, color=color, alpha=0.35, edgecolor=color, lw=1.2)  # overlaps mix
        if not math.isnan(cut):
            ax.axvline(cut, color=color, ls="--", lw=1.5)
    if sum(len(values) for values in costs) == 0:
        ax.text(0.5, 0.5, "no candidate", ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xlim(edges[0], edges[-1])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of candidates
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def draw_cost_histograms_pair(
    costs_a,
    costs_b,
    *,
    cuts: Sequence | None = None,
    labels: tuple[str, str] = ("teacher", "student"),
    gt_names: list[str] | None = None,
    bins: int = 20,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """Per GT, the candidate costs (eq. 2) of two networks on one shared x axis, each with its cut.

    Every panel uses the same bins and the same x range, so costs compare across GTs as well as between
    the networks. A panel's title gives each network's σ/μ of that GT's costs (eq. 3): the wider the
    spread relative to the level, the clearer the split between good and bad candidates.

    Args:
        costs_a, costs_b: each network's costs, ``[G, M]`` with NaN padding (``AssignResult.details["costs"]``
            of :class:`lad_edu.assign.PAAAssigner`: the candidates that enter the GMM) or a list of ``G``
            1-D arrays (a snapshot's ``gts[k].costs``). Both describe the same ``G`` GTs.
        cuts: ``(cuts_a, cuts_b)``, each ``[G]`` (``details["cut"]``: the largest positive cost, NaN for a GT
            without positive) or None; drawn as dashed lines.
        labels: the two networks' names.
        gt_names: a title per GT (default ``"GT k"``).
        bins: histogram bins over the shared range.
        axes: at least ``G`` ``Axes``, one per GT; default a grid of up to four columns.

    Raises:
        ValueError: shapes that do not fit (costs that are not ``[G, M]`` or ``G`` 1-D arrays, two networks
            with different numbers of GTs, cuts or names not one per GT, too few axes), or no GT at all.
    """
    rows_a, rows_b = _costs_per_gt(costs_a, "costs_a"), _costs_per_gt(costs_b, "costs_b")
    num_gts = len(rows_a)
    if len(rows_b) != num_gts:
        raise ValueError(f"costs_a has {num_gts} GTs, costs_b {len(rows_b)}: give both networks the same GTs")
    if num_gts == 0:
        raise ValueError("no GT to draw: costs_a and costs_b are empty")
    cuts_a, cuts_b = _cuts_per_gt(cuts, num_gts)
    names = _gt_names(num_gts, gt_names)
    if len(names) != num_gts:
        raise ValueError(f"gt_names must name each of the {num_gts} GTs, got {len(names)} names")
    axes, cols = _panels(num_gts, axes)
    fig = axes[0].figure

    # one x range and one set of bins for every panel: everything drawn, costs and cuts, fits in it
    drawn = np.concatenate([*rows_a, *rows_b, cuts_a, cuts_b])
    drawn = drawn[np.isfinite(drawn)]
    lo, hi = (drawn.min(), drawn.max()) if len(drawn) else (0.0, 1.0)
    pad = 0.03 * (hi - lo) + 1e-3
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    for k, ax in enumerate(axes[:num_gts]):
        _draw_gt(ax, (rows_a[k], rows_b[k]), (cuts_a[k], cuts_b[k]), edges)
        ax.set_title(
            f"{names[k]}\nσ/μ {labels[0]} {_spread(rows_a[k])}, {labels[1]} {_spread(rows_b[k])}", fontsize=9
        )
        if k >= num_gts - cols:  # the bottom row
            ax.set_xlabel("assignment cost (eq. 2)", fontsize=8)
        if k % cols == 0:  # the left column
            ax.set_ylabel("candidates", fontsize=8)
    pairs = list(zip(labels, PAIR_COLORS, strict=True))
    handles = [Patch(facecolor=c, edgecolor=c, alpha=0.5, label=f"{name} costs") for name, c in pairs]
    handles += [Line2D([], [], color=c, ls="--", label=f"{name} cut") for name, c in pairs]
    fig.legend(handles=handles, loc="outside upper center", ncols=4, fontsize=8, frameon=False)
    return fig


def plot_assignment_over_training(
    curves: dict[str, Sequence[Sequence[dict]]],
    keys: Sequence[str] = ("pos_per_gt", "gts_without_pos", "pos_iou"),
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """The assignment statistics of several runs against the iteration: a panel per statistic, a line per
    strategy.

    A LAD student's labels come from a frozen teacher (section 3.2), so they start where the teacher's own
    training ended and stay there; a PAA run's come from the network itself and move as it learns. Two runs
    labelled by the same teacher on the same batches (LAD and SoLAD of one seed) log the same numbers: each
    strategy has its own dash pattern, so the second line does not hide the first.

    Args:
        curves: ``{strategy: [rows of seed 0, rows of seed 1, ...]}``, each run's ``"kind": "train"`` rows of
            ``metrics.jsonl`` (``global_iter`` and the statistics of :mod:`lad_edu.train.stats`, window
            means), as :func:`lad_edu.viz.plot_loss_curves` takes them. Seed 0 solid, other seeds fainter.
        keys: the statistics, one panel each; shares (``gts_without_pos``) are drawn in percent.
        axes: one ``Axes`` per key.
    """
    if axes is None:
        _, grid = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), layout="constrained")
        axes = list(np.atleast_1d(grid))
    if len(axes) != len(keys):
        raise ValueError(f"axes must hold one Axes per key ({len(keys)}), got {len(axes)}")
    colors = strategy_colors(list(curves))
    for i, (name, runs) in enumerate(curves.items()):
        # runs labelled by the same teacher log the same statistics: a dash per strategy keeps both visible
        dash = LINE_STYLES[i % len(LINE_STYLES)]
        for seed, rows in enumerate(runs):
            style = {"alpha": 0.9, "label": name} if seed == 0 else {"alpha": 0.4}
            for ax, key in zip(axes, keys, strict=True):
                values = _column(rows, key, 100.0 if _is_share(key) else 1.0)
                ax.plot(_column(rows, "global_iter"), values, color=colors[name], ls=dash, lw=1.2, **style)
    for ax, key in zip(axes, keys, strict=True):
        ax.set_title(
            TITLES.get(key, key) + (" (%)" if _is_share(key) and key not in TITLES else ""), fontsize=9
        )
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    return axes[0].figure
