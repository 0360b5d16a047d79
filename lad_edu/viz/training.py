"""Training seen through the assignment: PAA's cost GMM of one GT moving over the epochs.

The pictures read training snapshots (``lad_edu.train.snapshots.load(run_dir)`` of a run trained with
``snapshot.images``): per epoch, each GT's candidate costs (eq. 2), the two-component GMM fitted to them
and the cut (paper Fig. 2a). Early on the costs of an untrained network barely separate; as it learns, a
few candidates' costs drop and the low-cost component splits off. Only the snapshots' attributes are read
(``epoch``, ``image``, ``gts[k].costs``, ``component``, ``candidates``, ``positives``, ``gmm_*``, ``cut``,
``box``), so this module needs nothing from training.

* :func:`animate_cost_gmm` — one frame per epoch (HTML with ``to_jshtml()``, a GIF with Pillow).
* :func:`draw_cost_gmm_over_epochs` — a few epochs side by side, for a static page.

Each frame is :func:`lad_edu.viz.draw_cost_gmm`, with axes fixed across the epochs so the motion reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lad_edu.assign.result import AssignResult
from lad_edu.viz.assignment import draw_cost_gmm

__all__ = ["animate_cost_gmm", "draw_cost_gmm_over_epochs"]

HEAD_ROOM = 1.1  # the y axis reaches this times the highest bar of any epoch


def _frames(snapshots: Sequence, gt: int, image: int | None) -> list:
    """The snapshots of ``image`` (default: the first snapshot's) by epoch, checked to hold ``gt``'s costs."""
    if not snapshots:
        raise ValueError("no snapshots given: load them with lad_edu.train.snapshots.load(run_dir)")
    image = snapshots[0].image if image is None else image
    frames = sorted((s for s in snapshots if s.image == image), key=lambda s: s.epoch)
    if not frames:
        held = sorted({s.image for s in snapshots})
        raise ValueError(f"no snapshot of image {image}; the snapshots hold images {held}")
    num_gts = len(frames[0].gts)
    if not 0 <= gt < num_gts:
        raise ValueError(f"gt={gt}, but image {image} has {num_gts} GTs (0 to {num_gts - 1})")
    if frames[0].gts[gt].costs is None:
        raise ValueError(
            f"the snapshots of image {image} hold no costs (assigner {frames[0].assigner!r}): the cost GMM "
            "is PAA's, drawn for runs with assign.assigner=paa (PAA, LAD, CoLAD)"
        )
    return frames


def _as_paa_result(gt) -> AssignResult:
    """A snapshot's GT as a one-GT PAA result: the ``details`` :func:`draw_cost_gmm` reads (row 0)."""
    positive = np.isin(gt.candidates, gt.positives)
    details = {
        "costs": torch.as_tensor(gt.costs)[None],
        "component": torch.as_tensor(gt.component)[None],
        "positive": torch.as_tensor(positive)[None],
        "cut": torch.tensor([gt.cut]),
    }
    for key in ("gmm_weights", "gmm_means", "gmm_variances"):
        details[key] = torch.as_tensor(getattr(gt, key))[None]
    nothing = torch.zeros(0, dtype=torch.long)  # no anchors: only the details are drawn
    return AssignResult(nothing, nothing.float(), nothing, num_gts=1, details=details)


def _draw_frame(ax: Axes, snapshot, gt: int, bins: int) -> float:
    """Draw one epoch of GT ``gt`` into ``ax`` (cleared first); returns its histogram's highest bar."""
    ax.clear()
    state = snapshot.gts[gt]
    x1, y1, x2, y2 = state.box
    title = (
        f"image {snapshot.image}, GT {gt} ({x2 - x1:.0f}×{y2 - y1:.0f} px)\n"
        f"epoch {snapshot.epoch}: {len(state.positives)} positives"
    )
    draw_cost_gmm(_as_paa_result(state), 0, gt_name=title, bins=bins, ax=ax)
    if len(state.costs) == 0:
        return 0.0
    # below the axes, in one place in every frame, where no bar can hide it
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncols=2, frameon=False)
    return max(bar.get_height() for bar in ax.containers[0])  # the histogram's bars


def _fix_axes(ax: Axes, frames: list, gt: int, top: float) -> None:
    """The same x range (every epoch's costs) and y range in every frame."""
    costs = np.concatenate([s.gts[gt].costs for s in frames])
    if len(costs) == 0:
        return
    lo, hi = costs.min(), costs.max()
    pad = 0.05 * (hi - lo) + 1e-3
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(0, HEAD_ROOM * top)


def animate_cost_gmm(
    snapshots: Sequence,
    gt: int,
    image: int | None = None,
    *,
    interval: int = 700,
    bins: int = 15,
    figsize: tuple[float, float] = (6.0, 4.2),
) -> FuncAnimation:
    """PAA's view of one GT over training: its candidate costs, the two Gaussians and the cut, per epoch.

    Args:
        snapshots: a run's snapshots (``lad_edu.train.snapshots.load(run_dir)``) of a PAA, LAD or CoLAD run.
        gt: the GT's index in the image.
        image: the validation image (its index in ``snapshot.images``' split); default: the first one.
        interval: milliseconds per frame.
        bins: histogram bins.

    Returns:
        A ``FuncAnimation``: ``HTML(animation.to_jshtml())`` in a notebook, ``animation.save("gmm.gif",
        writer="pillow")`` for a file. In a notebook, ``plt.close()`` right after the call keeps the
        animation's figure from also showing as a still.

    Raises:
        ValueError: no snapshot of ``image``, a ``gt`` it does not have, or snapshots without costs (ATSS,
            fixed IoU).
    """
    frames = _frames(snapshots, gt, image)
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    top = max(_draw_frame(ax, s, gt, bins) for s in frames)  # every frame once: the y range that holds all

    def update(index: int) -> list:
        _draw_frame(ax, frames[index], gt, bins)
        _fix_axes(ax, frames, gt, top)
        return []

    update(0)
    return FuncAnimation(fig, update, frames=len(frames), interval=interval, repeat=True)


def draw_cost_gmm_over_epochs(
    snapshots: Sequence,
    gt: int,
    image: int | None = None,
    epochs: Sequence[int] | None = None,
    bins: int = 15,
    axes: Sequence[Axes] | None = None,
) -> Figure:
    """A few epochs of :func:`animate_cost_gmm` side by side, on the same axes ranges.

    Args:
        snapshots, gt, image, bins: as in :func:`animate_cost_gmm`.
        epochs: the epochs to show; default: four spread from the first to the last snapshot.
        axes: one ``Axes`` per epoch to draw into.

    Raises:
        ValueError: as :func:`animate_cost_gmm`, or an epoch without a snapshot of the image.
    """
    frames = _frames(snapshots, gt, image)
    by_epoch = {s.epoch: s for s in frames}
    if epochs is None:
        picks = np.linspace(0, len(frames) - 1, min(4, len(frames))).round().astype(int)
        epochs = [frames[i].epoch for i in dict.fromkeys(picks)]
    missing = [e for e in epochs if e not in by_epoch]
    if missing:
        raise ValueError(
            f"no snapshot of image {frames[0].image} at epochs {missing}; it has {sorted(by_epoch)}"
        )
    if axes is None:
        _, grid = plt.subplots(1, len(epochs), figsize=(4.6 * len(epochs), 3.8), layout="constrained")
        axes = np.atleast_1d(grid)
    shown = [by_epoch[e] for e in epochs]
    top = max(_draw_frame(ax, s, gt, bins) for ax, s in zip(axes, shown, strict=True))
    for ax in axes:
        _fix_axes(ax, frames, gt, top)
    return axes[0].figure
