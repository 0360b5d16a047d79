"""Multi-level anchor boxes, laid out exactly as MMDetection's ``AnchorGenerator`` lays them out.

A dense detector predicts one set of outputs per *anchor*: a box of fixed size placed at every
location of every FPN level. Label assignment decides which anchors learn which object, so the
anchors are where every assigner starts.

Layout, identical to MMDetection's (so that anchor ``i`` here is anchor ``i`` there):

* level-major: all anchors of stride 8, then stride 16, ... (``num_level_anchors`` gives the slices);
* inside a level, locations in row-major order (``y`` outer, ``x`` inner);
* at one location, ratio-major then scale-minor (``scale_major=True``).

A base anchor at ``stride`` ``s`` with scale ``k`` and aspect ratio ``r = h / w`` has
``w = s·k/√r`` and ``h = s·k·√r``. Location ``(x, y)`` puts the anchor's centre at
``((x + offset)·s, (y + offset)·s)``: ``center_offset = 0`` (MMDetection's default, the top-left corner
of the cell) or ``0.5`` (the cell centre).

Two presets:

* :func:`retinanet` — octave base scale 4, 3 scales per octave, ratios 0.5/1/2: 9 anchors per
  location, 32 to 50.8 px squares-and-rectangles at stride 8.
* :func:`single` — ATSS, PAA and LAD: one square of ``8·stride`` per location (64 px at stride 8).

>>> anchors, num_level_anchors = single()((800, 1216))
>>> anchors.shape, num_level_anchors
(torch.Size([20267, 4]), [15200, 3800, 950, 247, 70])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["AnchorGenerator", "Anchors", "retinanet", "single", "level_ids", "level_strides"]


class Anchors(NamedTuple):
    """The anchors of one image: unpack as ``anchors, num_level_anchors = generator(image_size)``."""

    anchors: Tensor  # [N, 4] xyxy, level-major
    num_level_anchors: list[int]  # anchors per FPN level; sums to N


@dataclass(frozen=True)
class AnchorGenerator:
    """Anchors for every level of a feature pyramid.

    Args:
        strides: the stride of each level in pixels (FPN P3-P7: 8 to 128).
        ratios: aspect ratios ``h / w``.
        octave_base_scale: anchor side in units of the stride, for the first scale.
        scales_per_octave: scales per level, ``octave_base_scale · 2^(i / scales_per_octave)``.
        center_offset: 0 puts anchor centres at ``(x·stride, y·stride)`` (MMDetection), 0.5 at cell centres.
    """

    strides: tuple[int, ...] = (8, 16, 32, 64, 128)
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    octave_base_scale: float = 4.0
    scales_per_octave: int = 3
    center_offset: float = 0.0

    def __post_init__(self) -> None:
        if not self.strides or any(s <= 0 for s in self.strides):
            raise ValueError(f"strides must be positive integers, got {self.strides}")
        if not self.ratios or any(r <= 0 for r in self.ratios):
            raise ValueError(f"ratios must be positive, got {self.ratios}")
        if self.octave_base_scale <= 0 or self.scales_per_octave < 1:
            raise ValueError("octave_base_scale must be > 0 and scales_per_octave >= 1")

    @property
    def scales(self) -> list[float]:
        """Anchor side in units of the stride, one per scale."""
        return [
            self.octave_base_scale * 2 ** (i / self.scales_per_octave) for i in range(self.scales_per_octave)
        ]

    @property
    def num_anchors_per_location(self) -> int:
        return len(self.ratios) * self.scales_per_octave

    def base_anchors(self, stride: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """The anchors of the location ``(0, 0)`` of one level: ``[A, 4]`` xyxy, ratio-major, scale-minor."""
        h_ratios = torch.tensor([math.sqrt(r) for r in self.ratios], dtype=dtype)
        w_ratios = 1 / h_ratios
        scales = torch.tensor(self.scales, dtype=dtype)
        widths = (stride * w_ratios[:, None] * scales[None, :]).reshape(-1)
        heights = (stride * h_ratios[:, None] * scales[None, :]).reshape(-1)
        ctr = self.center_offset * stride
        return torch.stack([ctr - widths / 2, ctr - heights / 2, ctr + widths / 2, ctr + heights / 2], dim=1)

    def feature_sizes(self, image_size: tuple[int, int]) -> list[tuple[int, int]]:
        """``(height, width)`` of each level's feature map for an image of ``(height, width)`` pixels.

        ``ceil(size / stride)``, which is what a ResNet + FPN with stride-2 padded convolutions produces.
        """
        height, width = image_size
        if height <= 0 or width <= 0:
            raise ValueError(f"image_size must be a positive (height, width), got {image_size}")
        return [(math.ceil(height / s), math.ceil(width / s)) for s in self.strides]

    def grid_anchors(
        self,
        feature_sizes: list[tuple[int, int]],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Anchors:
        """Anchors for given per-level feature-map sizes ``[(h, w), ...]`` (one per stride)."""
        if len(feature_sizes) != len(self.strides):
            raise ValueError(
                f"need one feature size per stride ({len(self.strides)}), got {len(feature_sizes)}"
            )
        per_level = []
        for stride, (feat_h, feat_w) in zip(self.strides, feature_sizes, strict=True):
            base = self.base_anchors(stride, dtype).to(device)  # [A, 4]
            shift_x = torch.arange(feat_w, device=device, dtype=dtype) * stride
            shift_y = torch.arange(feat_h, device=device, dtype=dtype) * stride
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")  # row-major: y outer, x inner
            shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # [H*W, 1, 4]
            per_level.append((shifts + base[None]).reshape(-1, 4))  # [H*W*A, 4]
        return Anchors(torch.cat(per_level), [len(a) for a in per_level])

    def __call__(
        self,
        image_size: tuple[int, int],
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Anchors:
        """Anchors for an image of ``(height, width)`` pixels (after padding)."""
        return self.grid_anchors(self.feature_sizes(image_size), device=device, dtype=dtype)


def retinanet(**overrides) -> AnchorGenerator:
    """RetinaNet's anchors: 9 per location (3 ratios × 3 octave scales), base scale 4."""
    return AnchorGenerator(
        **{"ratios": (0.5, 1.0, 2.0), "octave_base_scale": 4.0, "scales_per_octave": 3, **overrides}
    )


def single(**overrides) -> AnchorGenerator:
    """ATSS / PAA / LAD anchors: one ``8·stride`` square per location."""
    return AnchorGenerator(
        **{"ratios": (1.0,), "octave_base_scale": 8.0, "scales_per_octave": 1, **overrides}
    )


def level_ids(num_level_anchors: list[int], device: torch.device | str | None = None) -> Tensor:
    """The FPN level of every anchor: ``[N]`` long, 0 for the first (finest) level."""
    counts = torch.tensor(num_level_anchors, dtype=torch.long, device=device)
    return torch.repeat_interleave(torch.arange(len(num_level_anchors), device=device), counts)


def level_strides(anchors: Tensor, num_level_anchors: list[int]) -> list[float]:
    """The stride of every level, read back from the anchors: the smallest gap between anchor centres.

    For rules that need a prior's stride (SimOTA's centre region) but get only ``anchors [N, 4]`` and
    ``num_level_anchors``. A level with a single location has no gap: it gets twice the previous level's
    stride (FPN levels double); a first level with a single location is a ``ValueError``.

    >>> anchors, num_level_anchors = single(strides=(8, 16, 32))((64, 96))
    >>> level_strides(anchors, num_level_anchors)
    [8.0, 16.0, 32.0]
    """
    strides: list[float] = []
    for level, centres in enumerate(((anchors[:, :2] + anchors[:, 2:]) / 2).split(list(num_level_anchors))):
        gaps = (centres - centres[:1]).abs().amax(dim=1) if len(centres) else centres.new_zeros(0)
        gaps = gaps[gaps > 1e-6]
        if len(gaps):
            strides.append(float(gaps.min()))
        elif level > 0:
            strides.append(2 * strides[-1])
        else:
            raise ValueError(
                "the first anchor level has a single location, so its stride cannot be read from the "
                "anchors: pass the strides explicitly"
            )
    return strides
