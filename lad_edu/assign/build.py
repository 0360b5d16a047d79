"""The one place where an assigner's name becomes a configured assigner.

Training (``assign.assigner`` in a config), ``lad-edu assign`` and the benchmarks all build their assigner
here, so they cannot disagree on what ``"paa"`` means. Adding an assigner is one entry in
:data:`ASSIGNERS` (and, for training, a field of ``AssignConfig`` per option that it should read).

>>> build_assigner("atss", topk=4)
ATSSAssigner(topk=4, center_eps=0.01, num_classes=None)
>>> build_assigner("atss", top_k=9)
Traceback (most recent call last):
...
ValueError: assigner 'atss' has no option 'top_k'; its options: topk, center_eps, num_classes
"""

from __future__ import annotations

import inspect

from lad_edu.assign.atss import ATSSAssigner
from lad_edu.assign.fixed_iou import FixedIoUAssigner
from lad_edu.assign.hungarian import HungarianAssigner
from lad_edu.assign.interface import Assigner
from lad_edu.assign.paa import PAAAssigner
from lad_edu.assign.simota import SimOTAAssigner
from lad_edu.assign.tal import TaskAlignedAssigner

__all__ = ["ASSIGNERS", "assigner_class", "assigner_options", "build_assigner"]

ASSIGNERS: dict[str, type] = {
    "fixed": FixedIoUAssigner,  # RetinaNet's MaxIoU (LAD paper section 2.1)
    "atss": ATSSAssigner,  # adaptive IoU threshold per GT (Table 1)
    "paa": PAAAssigner,  # the network's own costs, split by a GMM (section 3.2, Fig. 2a)
    "tal": TaskAlignedAssigner,  # TOOD / YOLOv8: top-k of score^alpha x IoU^beta, centre inside the GT
    "simota": SimOTAAssigner,  # YOLOX: each GT's dynamic k cheapest anchors of its centre region
    "hungarian": HungarianAssigner,  # DETR / DINO: one anchor per GT, the one-to-one match of least cost
}


def assigner_class(name: str) -> type:
    """The class of the assigner called ``name``; a ``ValueError`` listing the names otherwise."""
    if name not in ASSIGNERS:
        raise ValueError(f"unknown assigner {name!r}; valid assigners: {', '.join(ASSIGNERS)}")
    return ASSIGNERS[name]


def assigner_options(name: str) -> tuple[str, ...]:
    """The options of the assigner called ``name``: the keyword arguments of its constructor."""
    parameters = inspect.signature(assigner_class(name)).parameters.values()
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(p.name for p in parameters if p.kind in keyword)


def build_assigner(name: str, **options) -> Assigner:
    """The assigner called ``name`` (a key of :data:`ASSIGNERS`), configured with ``options``.

    Raises:
        ValueError: for an unknown name (listing the valid ones) or an option the assigner does not have
            (listing its options).
    """
    valid = assigner_options(name)
    unknown = [key for key in options if key not in valid]
    if unknown:
        unknown_text = ", ".join(map(repr, unknown))
        raise ValueError(f"assigner {name!r} has no option {unknown_text}; its options: {', '.join(valid)}")
    return ASSIGNERS[name](**options)
