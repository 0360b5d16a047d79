"""The labels a run gives an image: what ``lad-edu assign`` draws and ``lad-edu compare`` counts.

One function builds the run's own :class:`~lad_edu.train.learner.Learner` (its assigner with the config's
options, its LAD teacher, its CoLAD partner) and returns a labeller that asks it for the labels of a batch,
exactly as a training step does: the assigner on the predictions the mode names (the network's own for
fixed / ATSS / PAA, the frozen teacher's for LAD and SoLAD, the better network's for CoLAD), then the crowd
regions. Only one thing differs from a training step: the networks run in eval mode (BatchNorm's running
statistics), so an image's labels do not depend on the other images of its batch.

>>> from lad_edu.train import load_config
>>> cfg = load_config("classroom_atss", ["model.fpn_channels=16", "model.head_channels=16",
...                                      "model.stacked_convs=1", "model.gn_groups=4"])
>>> label = labeller(cfg, category_ids=[1, 2, 3])          # untrained weights, drawn from cfg.seed
>>> target = {"boxes": torch.tensor([[20., 20., 60., 52.]]), "labels": torch.tensor([2]),
...           "crowd_boxes": torch.zeros(0, 4), "size": (64, 96)}
>>> results, anchors, num_level_anchors = label(torch.zeros(1, 3, 64, 96), [target])
>>> results[0].labels.unique().tolist()   # ATSS: a few anchors learn class 2, the rest is background
[-1, 2]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from lad_edu.assign.result import AssignResult
from lad_edu.model.checkpoint import load_strict
from lad_edu.train.config import TrainConfig
from lad_edu.train.distributed import Dist

__all__ = ["Labelled", "labeller"]

# one AssignResult per image of the batch, the anchors [N, 4] xyxy, the anchors per level
Labelled = tuple[list[AssignResult], Tensor, list[int]]


def labeller(
    cfg: TrainConfig, category_ids: Sequence[int], state: dict | None = None, *, source: str = "checkpoint"
) -> Callable[[Tensor, list[dict]], Labelled]:
    """The labels the run of ``cfg`` (with the weights of ``state``) gives a batch.

    Args:
        cfg: the run's config (``state["config"]`` of its checkpoint, possibly overridden).
        category_ids: the categories the networks predict.
        state: a run checkpoint (:func:`~lad_edu.train.checkpoint.load_run_checkpoint`); None keeps the
            untrained weights drawn from ``cfg.seed``.
        source: what error messages call ``state``.

    Returns:
        ``label(images [B, 3, H, W], targets) -> (results, anchors, num_level_anchors)``; ``targets`` as
        the loaders give them (``boxes``, ``labels``, ``crowd_boxes``, ``size``).
    """
    from lad_edu.train.engine import build_learner  # the engine builds learners; it imports this package

    learner = build_learner(cfg, category_ids, Dist(0, 1, torch.device("cpu")))
    if state is not None:
        load_strict(learner.networks.model, state["model"], source)
        if learner.networks.partner is not None:
            load_strict(learner.networks.partner, state["partner"], f"{source} (partner)")
    learner.networks.eval()

    @torch.no_grad()
    def label(images: Tensor, targets: list[dict]) -> Labelled:
        images = images.float()
        predictions, anchors = learner.predict(images, [t["size"] for t in targets], contextlib.nullcontext)
        results, _, _ = learner.label(
            images, targets, [p for p, _ in predictions], anchors, contextlib.nullcontext
        )
        return results, *anchors

    return label
