"""Loading MMDetection PAA and LAD checkpoints (``paa_r50_fpn_1x_coco``, ``paa_r101_fpn_1x_coco``, ...).

Backbone and head keep MMDetection's names (``backbone.layer1.0.conv1.weight``,
``bbox_head.atss_cls.weight``, ...), so only the neck needs renaming, from MMDetection's ``FPN`` to
torchvision's ``FeaturePyramidNetwork`` and our :class:`~lad_edu.model.fpn.P6P7OnOutput`:

=============================  ============================
MMDetection                    lad_edu
=============================  ============================
``neck.lateral_convs.i.conv``  ``neck.inner_blocks.i.0``
``neck.fpn_convs.i.conv``      ``neck.layer_blocks.i.0``    (i = 0, 1, 2: P3-P5)
``neck.fpn_convs.3.conv``      ``neck.extra_blocks.p6``
``neck.fpn_convs.4.conv``      ``neck.extra_blocks.p7``
=============================  ============================

Loading is strict: a checkpoint of another architecture or class count fails with the offending keys
named, instead of loading silently as MMDetection's LAD teacher (``strict=False``) would.

>>> rename_keys({"neck.fpn_convs.3.conv.weight": 0, "bbox_head.atss_cls.bias": 1}, mmdet_key_map())
{'neck.extra_blocks.p6.weight': 0, 'bbox_head.atss_cls.bias': 1}
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from torch import Tensor, nn

from lad_edu.model.checkpoint import load_strict, read_state_dict, unwrap_state_dict

__all__ = ["mmdet_key_map", "rename_keys", "to_mmdet_state_dict", "load_mmdet_state_dict"]

NUM_FPN_INPUTS = 3  # C3, C4, C5 (MMDetection's start_level=1 skips C2)


def mmdet_key_map() -> dict[str, str]:
    """MMDetection key prefix -> lad_edu key prefix, for the neck, the only part named differently."""
    key_map = {}
    for i in range(NUM_FPN_INPUTS):
        key_map[f"neck.lateral_convs.{i}.conv."] = f"neck.inner_blocks.{i}.0."
        key_map[f"neck.fpn_convs.{i}.conv."] = f"neck.layer_blocks.{i}.0."
    key_map[f"neck.fpn_convs.{NUM_FPN_INPUTS}.conv."] = "neck.extra_blocks.p6."
    key_map[f"neck.fpn_convs.{NUM_FPN_INPUTS + 1}.conv."] = "neck.extra_blocks.p7."
    return key_map


def rename_keys(state_dict: Mapping[str, Tensor], prefix_map: Mapping[str, str]) -> dict[str, Tensor]:
    """Replace the prefix of each key starting with a key of ``prefix_map``; other keys stay as they are."""

    def rename(key: str) -> str:
        for old, new in prefix_map.items():
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    return {rename(key): value for key, value in state_dict.items()}


def to_mmdet_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A lad_edu state dict with MMDetection's key names (the inverse of what loading does)."""
    return rename_keys(state_dict, {ours: theirs for theirs, ours in mmdet_key_map().items()})


def load_mmdet_state_dict(model: nn.Module, checkpoint: Mapping | str | Path) -> None:
    """Load an MMDetection PAA checkpoint into a :class:`~lad_edu.model.Detector`, strictly.

    Args:
        model: the detector, built with the checkpoint's backbone and number of classes.
        checkpoint: a zoo dict ``{"meta": ..., "state_dict": {...}}``, a bare state dict, or the path of a
            ``.pth`` file holding either (read with ``torch.load(weights_only=True)``).

    Raises:
        ValueError: listing the missing and unexpected keys (after renaming) or the differing shapes.
    """
    if isinstance(checkpoint, str | Path):
        source, state_dict = str(checkpoint), read_state_dict(checkpoint)
    else:
        source, state_dict = "the MMDetection checkpoint", unwrap_state_dict(checkpoint)
    load_strict(model, rename_keys(state_dict, mmdet_key_map()), source=source)
