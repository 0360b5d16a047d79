"""Batch ↔ per-image bookkeeping: where image ``b``'s anchors and GTs sit in a batch's flat lists.

PAA fits every GT of a batch in one call, and the losses and statistics gather every positive of a batch at
once. All of them lay the batch out flat, the same way::

    anchors   image b's anchor i   is flat anchor  b·N + i                    (B·N in all)
    GTs       image b's GT j       is flat GT      gt_offsets[b] + j          (G_0 + ... + G_{B-1} in all)
    levels    image b's level l    is flat level   b·L + l                    (B·L in all)

with ``gt_offsets = [0, G_0, G_0 + G_1, ...]`` the running GT counts. :class:`BatchLayout` owns this
arithmetic, so that it is written once.

>>> layout = BatchLayout.of(num_anchors=4, gt_counts=[2, 0, 1])
>>> layout.flat_anchors(2, torch.tensor([0, 3])).tolist(), layout.flat_gts(2, torch.tensor([0])).tolist()
([8, 11], [2])
>>> gt_inds = torch.tensor([[0, 2, 0, 1], [0, 0, 0, 0], [1, 0, -1, 0]])  # 1-based per image, 0 negative
>>> [t.tolist() for t in layout.positives(gt_inds)]                      # flat anchors, their flat GTs
[[1, 3, 8], [1, 0, 2]]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import Tensor

__all__ = ["BatchLayout"]


@dataclass(frozen=True)
class BatchLayout:
    """The flat layout of a batch (see the module docstring).

    Attributes:
        num_anchors: ``N``, anchors per image (every image of a batch shares one anchor set).
        gt_offsets: ``B + 1`` running GT counts: image ``b``'s GTs are flat GTs
            ``gt_offsets[b] .. gt_offsets[b + 1] - 1``.
    """

    num_anchors: int
    gt_offsets: tuple[int, ...]

    @classmethod
    def of(cls, num_anchors: int, gt_counts: Iterable[int]) -> BatchLayout:
        """The layout of images with ``num_anchors`` anchors each and ``gt_counts[b]`` GTs in image ``b``."""
        return cls(num_anchors, tuple(accumulate(gt_counts, initial=0)))

    @property
    def num_images(self) -> int:
        return len(self.gt_offsets) - 1

    @property
    def num_gts(self) -> int:
        """The GTs of the whole batch."""
        return self.gt_offsets[-1]

    def flat_anchors(self, image: int, anchors: Tensor) -> Tensor:
        """Image ``image``'s anchor indices ``anchors`` as flat anchors."""
        return anchors + image * self.num_anchors

    def flat_gts(self, image: int, gts: Tensor) -> Tensor:
        """Image ``image``'s 0-based GT indices ``gts`` as flat GTs."""
        return gts + self.gt_offsets[image]

    def image_and_anchor(self, flat_anchors: Tensor) -> tuple[Tensor, Tensor]:
        """Flat anchors back to ``(image, anchor within the image)``."""
        return flat_anchors.div(self.num_anchors, rounding_mode="floor"), flat_anchors % self.num_anchors

    def gt_rows(self, image: int) -> slice:
        """Image ``image``'s GTs in anything indexed by flat GT (rows of a batch's per-GT table)."""
        return slice(self.gt_offsets[image], self.gt_offsets[image + 1])

    def level_sizes(self, num_level_anchors: list[int]) -> list[int]:
        """The batch's flat anchors as ``B·L`` levels, so that level ids, like GT ids, differ by image."""
        return list(num_level_anchors) * self.num_images

    def positives(self, gt_inds: Tensor) -> tuple[Tensor, Tensor]:
        """The positive anchors of a batch's assignments, and the GT each of them learns, flat.

        Args:
            gt_inds: ``[B, N]`` long, the images' ``AssignResult.gt_inds`` stacked (``k >= 1``: GT ``k - 1``
                of the image).

        Returns:
            ``flat_anchor [P]``, ascending (image by image, anchor by anchor: the order of
            ``gt_inds[gt_inds > 0]``), and ``flat_gt [P]``, each positive's flat GT.
        """
        if gt_inds.shape != (self.num_images, self.num_anchors):
            raise ValueError(
                f"gt_inds must be [B={self.num_images}, N={self.num_anchors}], got {tuple(gt_inds.shape)}"
            )
        flat = gt_inds.reshape(-1)
        flat_anchor = (flat > 0).nonzero().squeeze(1)
        image, _ = self.image_and_anchor(flat_anchor)
        offsets = torch.tensor(self.gt_offsets[:-1], device=gt_inds.device)
        return flat_anchor, flat.index_select(0, flat_anchor) - 1 + offsets.index_select(0, image)
