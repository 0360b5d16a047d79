"""Hungarian matching: DETR's one-to-one assignment of minimum total cost.

DETR (Carion et al., ECCV 2020) labels its predictions by a bipartite matching: it searches "for a
permutation of N elements with the lowest cost", the sum over the GTs of a pairwise matching cost, and
finds it with the Hungarian algorithm. Every GT gets exactly one prediction, every other prediction is
background: no threshold, no ignore band, no second positive for a big object. Deformable DETR and DINO
keep the rule and use a focal-loss class term; MMDetection 3.3's DINO config is the default here::

    C[i, j] = 2 · [FL⁺(p_ij) − FL⁻(p_ij)]  +  5 · ‖b̂_i − b_j‖₁  +  2 · (−GIoU(b̂_i, b_j))

for prediction ``i`` and GT ``j``, with

* ``p_ij = sigmoid(logit of GT j's class at i)``, ``FL⁺ = −α (1 − p)^γ log(p + ε)`` (the focal loss if ``i``
  is a positive of that class), ``FL⁻ = −(1 − α) p^γ log(1 − p + ε)`` (the focal loss if it is background),
  ``α = 0.25``, ``γ = 2``, ``ε = 1e-12`` (MMDetection's ``FocalLossCost``);
* the L1 distance of the boxes as ``(cx, cy, w, h)`` divided by the image's ``(w, h, w, h)``
  (``BBoxL1Cost(box_format='xywh')``): a 10 px error costs twice as much in a 100 px wide image as in a
  200 px one;
* minus the generalised IoU of the predicted box with the GT, both xyxy pixels (``IoUCost('giou')``).

Here the queries are the anchors, and each anchor's query prediction is the network's prediction there.

Worked example. Three anchors and two GTs whose cost matrix is, in ``[anchor, GT]`` order::

             GT 0   GT 1
    anchor 0  1.0    1.5
    anchor 1  2.0    6.0
    anchor 2  5.0    4.0

Both GTs like anchor 0 best. Greedily, GT 0 takes it (1.0) and GT 1 must settle for anchor 2 (4.0): total
5.0. The one-to-one optimum gives anchor 0 to GT 1 (1.5) and anchor 1 to GT 0 (2.0): total 3.5, the lowest
of the six possible matchings (7.0, 5.0, 3.5, 6.0, 6.5, 11.0):

>>> from scipy.optimize import linear_sum_assignment
>>> cost = torch.tensor([[1.0, 1.5], [2.0, 6.0], [5.0, 4.0]])
>>> anchor, gt = linear_sum_assignment(cost.numpy())
>>> anchor.tolist(), gt.tolist(), float(cost[anchor, gt].sum())
([0, 1], [1, 0], 3.5)

**How it is computed.** The costs of a whole batch are one dense ``[B, G_max, N]`` computation on the
inputs' device, cut into :func:`~lad_edu.assign.dense.chunks` of at most ``max_pairs`` triples; only the
finished cost matrix of each image is copied to the CPU, where scipy's ``linear_sum_assignment`` (which has
no GPU version) solves the matching on the ``[N, G]`` matrix, as MMDetection does.

Differences from MMDetection's ``HungarianAssigner``: degenerate (zero-area) GTs are dropped before the
matching (MMDetection would spend a prediction on them), a NaN or infinite prediction is a ``ValueError``
naming the anchor (MMDetection fails inside scipy on a NaN), ``max_iou`` is each anchor's best IoU with a GT
(MMDetection leaves it None), and the GIoU has no ``1e-6`` floor on the union and the hull, which changes a
cost only when one of them is below ``1e-6`` px² (an inverted predicted box, or a GT thinner than that).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from typing import NamedTuple

import torch
import torchvision.ops
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from lad_edu.anchors import level_strides
from lad_edu.assign.dense import DEFAULT_MAX_PAIRS, check_dense_inputs, chunks, padded_gts
from lad_edu.assign.interface import Predictions, one_image_predictions
from lad_edu.assign.result import AssignResult, gt_columns_to_all
from lad_edu.boxes import box_centers, box_giou, box_iou

__all__ = ["HungarianAssigner", "HungarianCost", "grid_image_size", "hungarian_cost"]

FOCAL_EPS = 1e-12  # inside the logs of MMDetection's FocalLossCost


class HungarianCost(NamedTuple):
    """The three weighted terms of the matching cost, each ``[B, G, N]`` (image, GT, anchor)."""

    cls: Tensor  # cls_weight · (FL⁺ − FL⁻)
    l1: Tensor  # l1_weight · L1 of the normalised (cx, cy, w, h)
    giou: Tensor  # giou_weight · (−GIoU)

    @property
    def total(self) -> Tensor:
        """``[B, G, N]``: what the matching minimises (the terms in MMDetection's order)."""
        return self.cls + self.l1 + self.giou


def cost_dtype(*tensors: Tensor) -> torch.dtype:
    """The dtype the costs are computed in: the inputs' promoted dtype, float32 at least (a forward under
    autocast gives float16 boxes, whose L1 and GIoU would lose digits)."""
    return reduce(torch.promote_types, (t.dtype for t in tensors), torch.float32)


def hungarian_cost(
    cls_logits: Tensor,
    pred_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    image_sizes: Sequence[tuple[float, float]],
    *,
    cls_weight: float = 2.0,
    l1_weight: float = 5.0,
    giou_weight: float = 2.0,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> HungarianCost:
    """The matching cost of every (image, GT, anchor) triple, term by term (see the module docstring).

    Args:
        cls_logits: ``[B, N, C]`` raw logits.
        pred_boxes: ``[B, N, 4]`` predicted boxes, xyxy pixels.
        gt_boxes: ``[B, G, 4]`` xyxy pixels.
        gt_labels: ``[B, G]`` class ids in ``[0, C)``.
        image_sizes: ``B`` pairs ``(h, w)``, the images' sizes for the L1 term.
        cls_weight, l1_weight, giou_weight: the terms' weights.
        focal_alpha, focal_gamma: the focal loss's α and γ.

    Returns:
        A :class:`HungarianCost`: three ``[B, G, N]`` tensors in :func:`cost_dtype`; ``.total`` sums them.

    One anchor predicting class 0 with ``p = 0.75`` (logit ``ln 3``) and the box ``[30, 10, 70, 60]``, one GT
    ``[20, 10, 60, 50]`` of class 0, an image of ``(h, w) = (100, 200)``:

    * cls: ``FL⁺ = −0.25·0.25²·ln 0.75 = 0.004495``, ``FL⁻ = −0.75·0.75²·ln 0.25 = 0.584843``:
      ``2·(0.004495 − 0.584843) = −1.160696``;
    * L1: ``(cx, cy, w, h)`` = (50, 35, 40, 50) vs (40, 30, 40, 40), over (200, 100, 200, 100):
      ``5·(0.05 + 0.05 + 0 + 0.1) = 1.0``;
    * GIoU: intersection 30·40 = 1200, union 2000 + 1600 − 1200 = 2400, hull 50·50 = 2500:
      ``GIoU = 0.5 − 100/2500 = 0.46``, cost ``−0.92``.

    >>> cost = hungarian_cost(torch.tensor([[[1.0986123]]]), torch.tensor([[[30., 10., 70., 60.]]]),
    ...                       torch.tensor([[[20., 10., 60., 50.]]]), torch.tensor([[0]]), [(100, 200)])
    >>> [round(float(term), 4) for term in cost], round(float(cost.total), 4)
    ([-1.1607, 1.0, -0.92], -1.0807)
    """
    dtype = cost_dtype(cls_logits, pred_boxes, gt_boxes)
    cls_logits, pred_boxes, gt_boxes = cls_logits.to(dtype), pred_boxes.to(dtype), gt_boxes.to(dtype)

    # focal cost of each GT's class at every anchor (FocalLossCost): gather the logits first, [B, G, N]
    index = gt_labels[:, :, None].expand(-1, -1, cls_logits.shape[1])
    p = cls_logits.transpose(1, 2).gather(1, index).sigmoid()
    pos = -(p + FOCAL_EPS).log() * focal_alpha * (1 - p).pow(focal_gamma)  # the focal loss if a positive
    neg = -(1 - p + FOCAL_EPS).log() * (1 - focal_alpha) * p.pow(focal_gamma)  # the focal loss if background
    cls = (pos - neg) * cls_weight

    # L1 of normalised (cx, cy, w, h) (BBoxL1Cost, box_format='xywh')
    height_width = pred_boxes.new_tensor([list(size) for size in image_sizes])  # [B, 2]
    scale = height_width.flip(1).repeat(1, 2)[:, None, :]  # [B, 1, 4]: (w, h, w, h)
    gt_cxcywh = torchvision.ops.box_convert(gt_boxes, "xyxy", "cxcywh") / scale
    pred_cxcywh = torchvision.ops.box_convert(pred_boxes, "xyxy", "cxcywh") / scale
    l1 = torch.cdist(gt_cxcywh, pred_cxcywh, p=1) * l1_weight

    # -GIoU of the predicted boxes, in pixels (IoUCost, iou_mode='giou'); one image at a time
    giou = -torch.stack([box_giou(gts, preds) for gts, preds in zip(gt_boxes, pred_boxes, strict=True)])
    return HungarianCost(cls, l1, giou * giou_weight)


def grid_image_size(anchors: Tensor, num_level_anchors: list[int]) -> tuple[float, float]:
    """The ``(h, w)`` an anchor grid covers: the extent of level 0's anchor centres plus one stride.

    For the L1 normalisation when no image size is given. It is the padded input's size when the grid has
    ``ceil(size / stride)`` locations per side and MMDetection's centre offset 0.

    >>> from lad_edu.anchors import single
    >>> grid_image_size(*single(strides=(8, 16))((64, 96)))   # centres x = 0 ... 88, stride 8: 96 wide
    (64.0, 96.0)
    """
    level0 = anchors[: num_level_anchors[0]]
    try:
        stride = level_strides(level0, [len(level0)])[0]
    except ValueError as error:
        raise ValueError(
            "cannot read the image size from the anchors (level 0 has a single location): pass the image "
            "sizes (Predictions.image_sizes, or image_size=)"
        ) from error
    centres = box_centers(level0)
    width, height = (centres.amax(dim=0) - centres.amin(dim=0) + stride).tolist()
    return height, width


class HungarianAssigner:
    """DETR's one-to-one matching of minimum total cost, with DINO's costs (see the module docstring).

    Args:
        cls_weight, l1_weight, giou_weight: the weights of the focal, L1 and GIoU terms (DINO: 2, 5, 2).
        focal_alpha, focal_gamma: the focal cost's α and γ (0.25, 2); named apart from the task-aligned
            rule's ``alpha`` and ``beta``, since one training config holds the options of every assigner.
        num_classes: when given, a GT label ``>= num_classes`` is a ``ValueError`` (a negative one always is,
            and so is one ``>= C``, the classes of the predictions).
        max_pairs: at most this many (image, GT, anchor) triples of the cost are computed at once
            (:mod:`lad_edu.assign.dense`); the result does not depend on it.

    Two GTs and five anchors (the anchors matter for ``max_iou`` only). Anchor 3 predicts GT 0's box
    exactly, anchor 1 GT 1's; the classification is the same everywhere, so these perfect boxes (L1 0,
    GIoU 1) win:

    >>> gts = torch.tensor([[10., 10., 30., 30.], [40., 20., 60., 50.]])
    >>> pred_boxes = torch.tensor([[0., 0., 5., 5.], [40., 20., 60., 50.], [60., 60., 64., 64.],
    ...                            [10., 10., 30., 30.], [30., 0., 40., 8.]])
    >>> result = HungarianAssigner().assign(pred_boxes, [5], gts, torch.tensor([2, 7]),
    ...                                     torch.zeros(5, 9), pred_boxes, image_size=(64, 64))
    >>> result.gt_inds.tolist(), result.labels.tolist()
    ([0, 2, 0, 1, 0], [-1, 7, -1, 2, -1])
    """

    uses_predictions = True  # the cost reads the network's classes and boxes

    def __init__(
        self,
        cls_weight: float = 2.0,
        l1_weight: float = 5.0,
        giou_weight: float = 2.0,
        *,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        num_classes: int | None = None,
        max_pairs: int = DEFAULT_MAX_PAIRS,
    ):
        if min(cls_weight, l1_weight, giou_weight) < 0:
            raise ValueError(f"the cost weights must be >= 0, got {cls_weight}, {l1_weight}, {giou_weight}")
        if max_pairs < 1:
            raise ValueError(f"max_pairs must be >= 1, got {max_pairs}")
        self.cls_weight, self.l1_weight, self.giou_weight = cls_weight, l1_weight, giou_weight
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.num_classes = num_classes
        self.max_pairs = max_pairs

    def __repr__(self) -> str:
        return (
            f"HungarianAssigner(cls_weight={self.cls_weight}, l1_weight={self.l1_weight}, "
            f"giou_weight={self.giou_weight}, focal_alpha={self.focal_alpha}, "
            f"focal_gamma={self.focal_gamma}, "
            f"num_classes={self.num_classes}, max_pairs={self.max_pairs})"
        )

    def assign(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: Tensor,
        gt_labels: Tensor,
        cls_logits: Tensor,
        pred_boxes: Tensor,
        *,
        image_size: tuple[int, int] | None = None,
    ) -> AssignResult:
        """Label every anchor of one image: exactly what :meth:`assign_batch` gives this image.

        Args:
            anchors: ``[N, 4]`` xyxy, level-major.
            num_level_anchors: anchors per level (level 0 gives the image size when ``image_size`` is None).
            gt_boxes: ``[G, 4]`` xyxy; gt_labels: ``[G]`` class ids in ``[0, C)``.
            cls_logits: ``[N, C]`` raw logits; pred_boxes: ``[N, 4]`` decoded boxes, xyxy pixels.
            image_size: ``(h, w)`` for the L1 normalisation; None: :func:`grid_image_size`.

        Returns:
            An :class:`AssignResult` with ``gt_inds`` in {0, k >= 1}: one anchor per GT (while there are
            anchors enough), nothing ignored, ``quality`` None; ``details["matched_cost"]`` ``[G]``, the
            cost of each GT's match (NaN for a degenerate GT and for a GT left without an anchor).
        """
        predictions = one_image_predictions(anchors, cls_logits, pred_boxes, image_size)
        return self.assign_batch(anchors, num_level_anchors, [gt_boxes], [gt_labels], predictions)[0]

    def assign_batch(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
        predictions: Predictions | None = None,
    ) -> list[AssignResult]:
        """:meth:`assign` for every image of a batch, in one dense computation (the call shape of
        :mod:`lad_edu.assign.interface`). ``predictions.image_sizes``, when given, normalise the L1 term;
        otherwise :func:`grid_image_size`. A ``ValueError`` about one image starts with ``"image b: "``.
        """
        predictions, keeps = check_dense_inputs(
            self, anchors, num_level_anchors, gt_boxes, gt_labels, predictions
        )
        for image, size in enumerate(predictions.image_sizes or ()):
            if min(size) <= 0:
                raise ValueError(f"image {image}: image_size must be a positive (h, w), got {size}")
        return self._assign_dense(anchors, num_level_anchors, gt_boxes, gt_labels, keeps, predictions)

    def _assign_dense(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: Sequence[Tensor],
        gt_labels: Sequence[Tensor],
        keeps: list[Tensor],
        predictions: Predictions,
    ) -> list[AssignResult]:
        """The one core: every image's cost in one dense pass, then one scipy matching per image."""
        boxes, labels, _ = padded_gts(
            [b.index_select(0, k) for b, k in zip(gt_boxes, keeps, strict=True)],
            [lab.index_select(0, k) for lab, k in zip(gt_labels, keeps, strict=True)],
        )
        if boxes.shape[1] == 0 or len(anchors) == 0:  # no usable GT in the batch, or no anchor
            return [AssignResult.all_negative(anchors, num_gts=len(b)) for b in gt_boxes]
        sizes = predictions.image_sizes or [grid_image_size(anchors, num_level_anchors)] * len(gt_boxes)
        cost, max_iou = self._dense_cost(anchors, boxes, labels, predictions, sizes)
        return [
            self._match(cost[b, : len(keep)], max_iou[b], keep, labels_b)
            if len(keep)
            else AssignResult.all_negative(anchors, num_gts=len(labels_b))
            for b, (keep, labels_b) in enumerate(zip(keeps, gt_labels, strict=True))
        ]

    def _dense_cost(
        self,
        anchors: Tensor,
        boxes: Tensor,
        labels: Tensor,
        predictions: Predictions,
        sizes: Sequence[tuple[float, float]],
    ) -> tuple[Tensor, Tensor]:
        """The total cost ``[B, G_max, N]`` (on the CPU, for scipy) and each anchor's best IoU with a GT
        ``[B, N]`` (on the device), chunk by chunk on the device.

        Args:
            boxes: ``[B, G_max, 4]``, labels: ``[B, G_max]``: the padded non-degenerate GTs.
        """
        num_images, max_gts = labels.shape
        dtype = cost_dtype(predictions.cls_logits, predictions.boxes, boxes)
        cost = torch.empty((num_images, max_gts, len(anchors)), dtype=dtype)
        max_iou = anchors.new_zeros((num_images, len(anchors)))  # padding GTs (zeros) have IoU 0
        for images, gts in chunks(
            num_images=num_images, max_gts=max_gts, num_anchors=len(anchors), max_pairs=self.max_pairs
        ):
            piece = hungarian_cost(
                predictions.cls_logits[images],
                predictions.boxes[images],
                boxes[images, gts],
                labels[images, gts],
                sizes[images],
                cls_weight=self.cls_weight,
                l1_weight=self.l1_weight,
                giou_weight=self.giou_weight,
                focal_alpha=self.focal_alpha,
                focal_gamma=self.focal_gamma,
            )
            cost[images, gts] = piece.total.cpu()  # only the finished [b, g, N] cost leaves the device
            iou = torch.stack([box_iou(anchors, image_gts).amax(dim=1) for image_gts in boxes[images, gts]])
            max_iou[images] = torch.maximum(max_iou[images], iou)
        return cost, max_iou

    def _match(self, cost: Tensor, max_iou: Tensor, keep: Tensor, gt_labels: Tensor) -> AssignResult:
        """One image's matching (MMDetection's steps 3-4): scipy on the ``[N, G']`` cost, the matched anchors
        positive, every other anchor negative.

        Args:
            cost: ``[G', N]`` on the CPU, row ``j`` for GT ``keep[j]`` (at least one).
            max_iou: ``[N]``; keep: ``[G']`` the kept GTs; gt_labels: ``[G]`` all of them.
        """
        device = max_iou.device
        # MMDetection's orientation, [N, G']: scipy's choice among equal-cost optima depends on it
        anchor, gt = (torch.from_numpy(i) for i in linear_sum_assignment(cost.T.numpy()))
        gt_inds = torch.zeros(cost.shape[1], dtype=torch.long, device=device)
        gt_inds[anchor.to(device)] = gt.to(device) + 1
        matched_cost = torch.full((len(keep),), float("nan"), dtype=cost.dtype)
        matched_cost[gt] = cost[gt, anchor]  # NaN stays on a GT left without an anchor (G' > N)
        details = {
            "matched_cost": gt_columns_to_all(matched_cost.to(device), keep, len(gt_labels), float("nan"))
        }
        return AssignResult.from_gt_inds(gt_inds, max_iou, gt_labels, kept=keep, details=details)
