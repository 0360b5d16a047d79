"""PAA: positives chosen by the network's own loss, split by a two-component Gaussian mixture.

Probabilistic Anchor Assignment (Kim & Lee, ECCV 2020), as the LAD paper restates it (section 3.2,
Table 1, Fig. 2a):

1. **Pre-assignment**: the anchors with IoU >= 0.1 to a GT are its candidates (``FixedIoUAssigner(0.1, 0.1)``,
   low-quality matches on, so every GT has at least one).
2. **Cost** of each candidate as if it were a positive (eq. 2)::

       c_i = FL(p_i, C) + (1 - IoU(b_i, B))

   the focal loss of its class prediction against the GT class plus a localisation loss of its predicted box.
   MMDetection uses ``1 - GIoU`` weighted by 1.3 (:func:`paa_cost` default), the original PAA ``1 - GIoU``
   weighted by 1.0, the paper's equation ``1 - IoU``.
3. **Reassignment** (:func:`paa_reassign`): per GT, the ``topk = 9`` lowest-cost candidates of every
   FPN level; a two-component GMM on their sorted costs, component 0 started at the lowest cost; the
   positives are the candidates of component 0 whose cost is at most that of component 0's most likely
   sample (its mode: scheme (c) of PAA's Fig. 3). Every other candidate becomes a negative. A positive
   keeps the GT it was pre-assigned to.

The predictions are any network's (:class:`~lad_edu.assign.Predictions`): the network's own make PAA,
a frozen teacher's make LAD (:mod:`lad_edu.assign.lad`), the better of two networks' make CoLAD
(:mod:`lad_edu.assign.colad`).

**How it is computed.** The plain algorithm is the three steps above, one GT after the other, as
MMDetection runs them (one ``sklearn`` mixture per GT in a Python loop). Here every GT of an image, or of a
whole batch, goes through each step at once: the batch is laid out flat (:mod:`lad_edu.assign.batch`:
candidates ``b·N + i``, GTs offset by the GTs of the images before, levels ``b·L + l``), so that a
(GT, level) group never mixes images, and one call of :func:`lad_edu.gmm.fit_gmm2` fits every GT. Four
speed tricks remain, each named and explained where it sits:

* *one integer-key sort* (:func:`_sort_by`): the lowest costs per (GT, level) come from one sort of an
  int64 key, the group id above the cost's float bits, instead of two stable sorts;
* *first k by a shifted comparison* (:func:`_first_k_of_groups`): no ranks to count;
* *a level table* (:func:`_level_of`): a cumulative sum instead of ``torch.searchsorted``;
* *a padding slot* (in :func:`paa_split`): non-positives are scattered into one extra slot instead of being
  selected out first.

Variants (MMDetection's behaviour is the default; docs/reference_behaviour.md, "PAA", says what each
implementation does):

* ``keep_single_candidate``: a GT with a single candidate has no distribution to fit. MMDetection drops it
  (the GT gets no positive); the original PAA and the LAD authors' standardised head keep it positive.
* ``all_if_no_fg``: a GT none of whose candidates falls in component 0 gets no positive in MMDetection;
  the original PAA makes all its candidates positive "for high recall".

Degenerate inputs: a GT without candidates (zero area, or overlapping no anchor) gets no positive, even in
a batch without a single candidate. A NaN or infinite GT coordinate, a label outside ``[0, C)``, or a NaN or
infinite prediction at a candidate anchor is a ``ValueError`` naming the argument (and the image).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch
import torch.nn.functional as F
import torchvision.ops
from torch import Tensor

from lad_edu.assign.batch import BatchLayout
from lad_edu.assign.fixed_iou import FixedIoUAssigner
from lad_edu.assign.interface import (
    Predictions,
    assign_each_image,
    check_batch,
    check_predictions,
    one_image_predictions,
    require_predictions,
)
from lad_edu.assign.result import AssignResult, check_labels, first_non_finite
from lad_edu.boxes import aligned_box_giou, aligned_box_iou, check_boxes
from lad_edu.gmm import GMMFit, fit_gmm2

__all__ = [
    "PAAAssigner",
    "PAACandidates",
    "PAASplit",
    "paa_cost",
    "paa_positives",
    "paa_reassign",
    "paa_split",
]

LOC_LOSSES = ("giou", "iou")


# cost (eq. 2)


def paa_cost(
    cls_logits: Tensor,
    pred_boxes: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    candidate_gt: Tensor,
    bbox_weight: float = 1.3,
    loc_loss: str = "giou",
    gamma: float = 2.0,
    alpha: float = 0.25,
) -> Tensor:
    """The assignment cost of each candidate anchor (eq. 2): ``FL(p, C) + bbox_weight · (1 - (G)IoU(b, B))``.

    Args:
        cls_logits: ``[K, C]`` classification logits of the candidates.
        pred_boxes: ``[K, 4]`` their predicted (decoded) boxes, xyxy.
        gt_boxes: ``[G, 4]`` xyxy.
        gt_labels: ``[G]`` class ids in ``[0, C)``.
        candidate_gt: ``[K]`` long, the 0-based GT each candidate is pre-assigned to.
        bbox_weight: 1.3 (MMDetection), 1.0 (original PAA, the paper).
        loc_loss: ``"giou"`` (``1 - GIoU``, MMDetection and PAA's code) or ``"iou"`` (``1 - IoU``, eq. 2
            as printed).
        gamma, alpha: the focal loss's, summed over classes against a one-hot target.

    Returns:
        ``[K]`` costs, in float32 or wider, computed without gradient tracking concerns (the caller decides).
    """
    if loc_loss not in LOC_LOSSES:
        raise ValueError(f"loc_loss must be one of {LOC_LOSSES}, got {loc_loss!r}")
    if cls_logits.dim() != 2 or len(cls_logits) != len(candidate_gt):
        raise ValueError(f"cls_logits must be [K, C] with K = len(candidate_gt) = {len(candidate_gt)}")
    check_boxes(pred_boxes, "pred_boxes")
    check_labels(gt_labels, num_classes=cls_logits.shape[1])
    cls_logits, pred_boxes = cls_logits.float(), pred_boxes.float()
    target_boxes = gt_boxes[candidate_gt].to(pred_boxes.dtype)
    target = F.one_hot(gt_labels[candidate_gt].long(), cls_logits.shape[1]).to(cls_logits.dtype)
    cls_cost = torchvision.ops.sigmoid_focal_loss(cls_logits, target, alpha=alpha, gamma=gamma).sum(dim=1)
    overlap = aligned_box_giou if loc_loss == "giou" else aligned_box_iou
    return cls_cost + bbox_weight * (1 - overlap(pred_boxes, target_boxes))


# reassignment


@dataclass
class PAASplit:
    """The reassignment of every GT, with what it took to decide (for statistics and plots).

    GT-indexed tensors have one row per GT and one column per selected candidate, sorted by cost and
    padded to the largest count ``M``.

    Attributes:
        pos_mask: ``[K]`` bool over the candidates given: the positives.
        candidates: ``[G, M]`` long, the candidate (index into ``K``) in each slot, -1 on padding.
        costs: ``[G, M]`` their costs, ascending; NaN on padding.
        valid: ``[G, M]`` bool, the slots that hold a candidate.
        component: ``[G, M]`` long, the GMM component of each (0 = low cost), -1 on padding.
        positive: ``[G, M]`` bool, the slots that became positives.
        cut: ``[G]`` the largest positive cost (the mode of component 0); NaN for a GT without positive.
        gmm: the fitted mixtures, one per GT (:class:`lad_edu.gmm.GMMFit`).
    """

    pos_mask: Tensor
    candidates: Tensor
    costs: Tensor
    valid: Tensor
    component: Tensor
    positive: Tensor
    cut: Tensor
    gmm: GMMFit


def _level_of(anchor: Tensor, num_level_anchors: list[int]) -> Tensor:
    """The FPN level of each anchor index in ``anchor`` (level-major anchors, as :func:`level_ids`).

    The trick, *a level table*: over all anchors, the number of level starts at or before each, a
    cumulative sum, read at ``anchor``. Not ``torch.searchsorted`` (nor advanced indexing), whose CPU
    kernels split even a few thousand values across threads, and so wait a whole scheduler time slice
    whenever another process holds a core.
    """
    num_anchors = sum(num_level_anchors)
    # where the levels after the first start (twice the same place after an empty level)
    starts = [start for start in accumulate(num_level_anchors[:-1]) if start < num_anchors]
    starts = torch.tensor(starts, dtype=torch.long, device=anchor.device)
    return torch.bincount(starts, minlength=num_anchors).cumsum(0).index_select(0, anchor)


def _sort_by(groups: Tensor, costs: Tensor) -> Tensor:
    """Indices sorting by ``groups`` (int ids ``>= 0``), then by ``costs``, then by position (stable).

    The plain way is two stable sorts, by cost and then by group (what float64 costs get). The trick, *one
    integer-key sort*: a float32 cost's bits, read as an integer, keep the order of the costs
    (:func:`_ordered_bits`), so ``group · 2^32 + bits`` is one int64 key that sorts by group, then cost.
    """
    if costs.dtype == torch.float64:  # no room for a group id next to 64 bits: two stable sorts
        by_cost = costs.argsort(stable=True)
        return by_cost.index_select(0, groups.index_select(0, by_cost).argsort(stable=True))
    # One sort of an int64 key (group, float32 bits as an ordered int): 2-3x faster than the two above.
    return ((groups << 32) + _ordered_bits(costs)).argsort(stable=True)


def _ordered_bits(costs: Tensor) -> Tensor:
    """``[K]`` int64 in ``[-2^31, 2^31)``, in the order of ``costs`` (float32, or exactly convertible).

    A float's bits read as an int order the non-negative floats; flipping all but the sign bit of the
    negative ones orders those too. ``+ 0.0`` turns -0.0 into 0.0 (they tie, as in a float sort).
    """
    bits = (costs.float() + 0.0).view(torch.int32).long()
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _rank_within_groups(sorted_groups: Tensor) -> tuple[Tensor, Tensor]:
    """The rank of each element of ``sorted_groups`` (int ids ``>= 0``, ascending) within its run, and the
    size of each group (``bincount``)."""
    counts = torch.bincount(sorted_groups)
    starts = counts.cumsum(0) - counts
    positions = torch.arange(len(sorted_groups), device=sorted_groups.device)
    return positions - starts.index_select(0, sorted_groups), counts


def _first_k_of_groups(sorted_groups: Tensor, k: int) -> Tensor:
    """``[K]`` bool: the first ``k`` elements of each run of ``sorted_groups`` (sorted ascending).

    The trick, *first k by a shifted comparison*: an element is among the first ``k`` of its group when the
    element ``k`` places before it is in another group (or does not exist): one comparison, no ranks.
    """
    first_k = torch.ones_like(sorted_groups, dtype=torch.bool)
    first_k[k:] = sorted_groups[k:] != sorted_groups[:-k]
    return first_k


def paa_positives(
    costs: Tensor,
    valid: Tensor,
    component: Tensor,
    score: Tensor,
    keep_single_candidate: bool = False,
    all_if_no_fg: bool = False,
) -> Tensor:
    """The cut: which of each GT's candidates are positive, given its fitted mixture.

    Scheme (c) of PAA's Fig. 3: the candidates of component 0 (low cost) whose cost is at most that of
    component 0's most likely candidate (the highest ``score``). Ties at that cost are all taken.

    Args:
        costs: ``[G, M]`` each GT's candidate costs, sorted ascending along a row.
        valid: ``[G, M]`` bool, the slots holding a candidate.
        component: ``[G, M]`` long, GMM component per slot (0 = low cost).
        score: ``[G, M]`` log-likelihood of each candidate under the GT's mixture.
        keep_single_candidate, all_if_no_fg: see :func:`paa_reassign`.

    Returns:
        ``[G, M]`` bool.
    """
    fg = (component == 0) & valid
    mode = torch.where(fg, score, -torch.inf).argmax(dim=1, keepdim=True)  # [G, 1]
    positive = fg & (costs <= costs.gather(1, mode))
    count = valid.sum(dim=1, keepdim=True)  # [G, 1]
    if all_if_no_fg:  # the original PAA: no low-cost component -> every candidate ("for high recall")
        positive |= valid & ~fg.any(dim=1, keepdim=True) & (count >= 2)
    # a lone candidate has nothing to fit: MMDetection drops it, the original PAA keeps it
    return positive if keep_single_candidate else positive & (count >= 2)


def paa_split(
    costs: Tensor,
    candidate_anchor: Tensor,
    candidate_gt: Tensor,
    num_level_anchors: list[int],
    num_gts: int,
    topk: int = 9,
    keep_single_candidate: bool = False,
    all_if_no_fg: bool = False,
) -> PAASplit:
    """:func:`paa_reassign` with everything it computed on the way (see :class:`PAASplit`)."""
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    device = costs.device
    num_levels = len(num_level_anchors)
    level = _level_of(candidate_anchor, num_level_anchors)  # [K]

    # top-k lowest-cost candidates per (GT, level)
    group = candidate_gt * num_levels + level
    order = _sort_by(group, costs)
    selected = order[_first_k_of_groups(group.index_select(0, order), topk)]  # [S], sorted by GT

    # per GT, its selected candidates in a row   [G, M]
    row = candidate_gt.index_select(0, selected)
    col, counts = _rank_within_groups(row)
    num_cols = int(counts.max()) if len(counts) else 1  # at least one (padding) column: no special case below
    candidates = torch.full((num_gts, num_cols), -1, dtype=torch.long, device=device)
    candidates[row, col] = selected
    values = torch.full((num_gts, num_cols), torch.inf, dtype=torch.float64, device=device)
    values[row, col] = costs.index_select(0, selected).double()
    # sorted by cost (stably: equal costs keep their level order); the padding (inf) stays last
    values, by_cost = values.sort(dim=1, stable=True)
    candidates = candidates.gather(1, by_cost)
    valid = candidates >= 0

    # a two-component GMM per GT, all at once; component 0 starts at the lowest cost
    gmm = fit_gmm2(values, valid)
    component, score = gmm.predict_and_score(values, valid)
    positive = paa_positives(values, valid, component, score, keep_single_candidate, all_if_no_fg)

    # the trick, *a padding slot*: scattered into [K + 1], the last slot takes every non-positive, no need to
    # select the positives first
    pos_mask = torch.zeros(len(costs) + 1, dtype=torch.bool, device=device)
    pos_mask[torch.where(positive, candidates, len(costs))] = True
    largest_positive = torch.where(positive, values, -torch.inf).amax(dim=1)
    cut = largest_positive.masked_fill(largest_positive == -torch.inf, torch.nan).to(costs.dtype)
    return PAASplit(
        pos_mask=pos_mask[:-1],
        candidates=candidates,
        costs=torch.where(valid, values, torch.nan).to(costs.dtype),
        valid=valid,
        component=component,
        positive=positive,
        cut=cut,
        gmm=gmm,
    )


def paa_reassign(
    costs: Tensor,
    candidate_anchor: Tensor,
    candidate_gt: Tensor,
    num_level_anchors: list[int],
    num_gts: int,
    topk: int = 9,
    keep_single_candidate: bool = False,
    all_if_no_fg: bool = False,
) -> Tensor:
    """PAA's reassignment: which pre-assigned candidates stay positive.

    Args:
        costs: ``[K]`` the cost of each candidate (:func:`paa_cost`).
        candidate_anchor: ``[K]`` long, each candidate's anchor index (level-major anchors).
        candidate_gt: ``[K]`` long, the 0-based GT each candidate is pre-assigned to.
        num_level_anchors: anchors per FPN level. For a batch, concatenate the images' lists and offset
            ``candidate_anchor`` and ``candidate_gt`` by image: one call then fits every GT of the batch.
        num_gts: the number of GTs (rows of the fit).
        topk: lowest-cost candidates kept per GT and level.
        keep_single_candidate: keep a GT's lone candidate positive (original PAA) instead of dropping it.
        all_if_no_fg: make all candidates positive when none falls in the low-cost component (original PAA).

    Returns:
        ``[K]`` bool: the positives; every other candidate becomes a negative.

    >>> costs = torch.tensor([0.2, 0.3, 0.25, 2.0, 2.2, 1.9])     # one GT, six candidates on one level
    >>> paa_reassign(costs, torch.arange(6), torch.zeros(6, dtype=torch.long), [6], num_gts=1).tolist()
    [True, False, True, False, False, False]

    The low-cost component is {0.2, 0.25, 0.3}; its mode is 0.25, so 0.3, above the mode, is cut.
    """
    return paa_split(
        costs,
        candidate_anchor,
        candidate_gt,
        num_level_anchors,
        num_gts,
        topk,
        keep_single_candidate,
        all_if_no_fg,
    ).pos_mask


# the assigner


def _check_finite_at_candidates(
    values: Tensor, name: str, candidate_anchor: Tensor, layout: BatchLayout
) -> None:
    """Raise a ``ValueError`` naming ``name`` and the anchor if ``values [K, ...]``, the predictions at the
    candidates ``candidate_anchor [K]`` (flat anchors), hold a NaN or an infinity."""
    bad = first_non_finite(values)
    if bad is not None:
        image, anchor = (int(t) for t in layout.image_and_anchor(candidate_anchor[bad]))
        raise ValueError(
            f"{name} must be finite, got NaN or inf at image {image}, anchor {anchor} (a candidate)"
        )


@dataclass
class PAACandidates:
    """The pre-assigned candidates of a batch, in one flat list (step 1 of :class:`PAAAssigner`).

    Attributes:
        pres: each image's pre-assignment (:class:`AssignResult` of the 0.1 / 0.1 MaxIoU rule).
        anchor: ``[K]`` long, each candidate's flat anchor (``image · N + anchor``, see ``layout``).
        gt: ``[K]`` long, the flat GT it is pre-assigned to.
        layout: where each image's anchors and GTs sit in the flat lists.
    """

    pres: list[AssignResult]
    anchor: Tensor
    gt: Tensor
    layout: BatchLayout


class PAAAssigner:
    """Probabilistic Anchor Assignment of one image or a batch (see the module docstring).

    Args:
        topk: lowest-cost candidates per GT and level that enter the GMM.
        pre_iou_thr: IoU that makes an anchor a candidate (pre-assignment, 0.1).
        bbox_weight, loc_loss, gamma, alpha: the cost, see :func:`paa_cost`.
        keep_single_candidate, all_if_no_fg: the original-PAA variants, see :func:`paa_reassign`.
        drop_degenerate_gts: see :class:`FixedIoUAssigner` (the pre-assigner).
    """

    uses_predictions = True  # eq. 2 scores every candidate with the class scores and boxes of a network

    def __init__(
        self,
        topk: int = 9,
        pre_iou_thr: float = 0.1,
        bbox_weight: float = 1.3,
        loc_loss: str = "giou",
        gamma: float = 2.0,
        alpha: float = 0.25,
        keep_single_candidate: bool = False,
        all_if_no_fg: bool = False,
        drop_degenerate_gts: bool = True,
    ):
        if loc_loss not in LOC_LOSSES:
            raise ValueError(f"loc_loss must be one of {LOC_LOSSES}, got {loc_loss!r}")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.topk = topk
        self.bbox_weight, self.loc_loss, self.gamma, self.alpha = bbox_weight, loc_loss, gamma, alpha
        self.keep_single_candidate = keep_single_candidate
        self.all_if_no_fg = all_if_no_fg
        # PAA's pre-assignment: MaxIoU at 0.1 / 0.1 (no ignore band), low-quality matches on
        self.pre_assigner = FixedIoUAssigner(
            pos_iou_thr=pre_iou_thr,
            neg_iou_thr=pre_iou_thr,
            min_pos_iou=0.0,
            match_low_quality=True,
            gt_max_assign_all=True,
            drop_degenerate_gts=drop_degenerate_gts,
        )

    def __repr__(self) -> str:
        return (
            f"PAAAssigner(topk={self.topk}, pre_iou_thr={self.pre_assigner.pos_iou_thr}, "
            f"bbox_weight={self.bbox_weight}, loc_loss={self.loc_loss!r}, "
            f"keep_single_candidate={self.keep_single_candidate}, all_if_no_fg={self.all_if_no_fg})"
        )

    def assign(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: Tensor,
        gt_labels: Tensor,
        cls_logits: Tensor,
        pred_boxes: Tensor,
    ) -> AssignResult:
        """Label every anchor of one image from the network's own predictions.

        Args:
            anchors: ``[N, 4]`` xyxy, level-major.
            num_level_anchors: anchors per level.
            gt_boxes: ``[G, 4]`` xyxy.
            gt_labels: ``[G]`` class ids in ``[0, C)``.
            cls_logits: ``[N, C]`` classification logits at every anchor.
            pred_boxes: ``[N, 4]`` decoded predicted boxes, xyxy.

        Returns:
            An :class:`AssignResult`: positives keep their pre-assigned GT, everything else is negative
            (PAA ignores nothing). ``details`` holds, per GT (rows) and selected candidate (columns, sorted by
            cost): ``candidates`` (anchor indices, -1 padding), ``costs``, ``component`` (0 = low cost),
            ``positive``; per GT ``cut`` and the mixture ``gmm_weights``, ``gmm_means``, ``gmm_variances``
            (``[G, 2]``), ``gmm_n_iter`` and ``gmm_converged`` (``[G]``); and ``pre_gt_inds`` (``[N]``, the
            pre-assignment).
        """
        predictions = one_image_predictions(anchors, cls_logits, pred_boxes)
        return self.assign_batch(anchors, num_level_anchors, [gt_boxes], [gt_labels], predictions)[0]

    def assign_batch(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        predictions: Predictions | None = None,
    ) -> list[AssignResult]:
        """:meth:`assign` for ``B`` images sharing one anchor set, with a single GMM fit for all their GTs.

        Args:
            anchors: ``[N, 4]``; num_level_anchors: as in :meth:`assign`.
            gt_boxes, gt_labels: one ``[G_b, 4]`` and one ``[G_b]`` tensor per image.
            predictions: the network's ``cls_logits [B, N, C]`` and ``boxes [B, N, 4]`` whose eq. 2 costs
                decide (the student's own for PAA, a teacher's for LAD).

        Raises:
            ValueError: when ``predictions`` is None (PAA cannot decide without them), or naming the
                argument (and the image) for inputs that do not fit.
        """
        predictions = require_predictions(self, predictions)
        check_batch(anchors, num_level_anchors, gt_boxes, gt_labels)
        candidates = self.candidates(anchors, gt_boxes, gt_labels)
        costs = self.costs(candidates, gt_boxes, gt_labels, predictions)
        return self.assign_from_costs(candidates, costs, num_level_anchors, gt_labels)

    def candidates(self, anchors: Tensor, gt_boxes: list[Tensor], gt_labels: list[Tensor]) -> PAACandidates:
        """Step 1, the pre-assignment of every image, gathered into one list of candidates for the batch.

        Raises:
            ValueError: for an image's bad GTs (as :class:`FixedIoUAssigner` raises them), saying which image.
        """
        pres = assign_each_image(
            lambda boxes, labels: self.pre_assigner.assign(anchors, boxes, labels), gt_boxes, gt_labels
        )
        layout = BatchLayout.of(len(anchors), [len(boxes) for boxes in gt_boxes])
        # the candidates are the pre-assignment's positives, of every image in one list
        anchor, gt = layout.positives(torch.stack([pre.gt_inds for pre in pres]))
        return PAACandidates(pres, anchor, gt, layout)

    @torch.no_grad()
    def costs(
        self,
        candidates: PAACandidates,
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        predictions: Predictions,
        name: str = "predictions",
    ) -> Tensor:
        """Step 2, eq. 2 for every candidate of the batch: ``[K]``, no gradient.

        Args:
            predictions: any network's, ``[B, N, ...]`` on the batch's anchors: the student's for PAA, a
                teacher's for LAD, either of two for CoLAD.
            name: what error messages call ``predictions``.

        Raises:
            ValueError: naming the predictions, for a wrong shape, or a NaN or infinity at a candidate
                anchor. Only the candidates' predictions enter eq. 2, and only they are checked: a pass
                over all ``B·N·C`` logits would cost more than the whole assignment.
        """
        layout, anchor = candidates.layout, candidates.anchor
        check_predictions(predictions, layout.num_images, layout.num_anchors, name)
        candidate_logits = predictions.cls_logits.flatten(0, 1).index_select(0, anchor)  # [K, C]
        candidate_boxes = predictions.boxes.flatten(0, 1).index_select(0, anchor)  # [K, 4]
        for values, field in ((candidate_logits, "cls_logits"), (candidate_boxes, "boxes")):
            _check_finite_at_candidates(values, f"{name}.{field}", anchor, layout)
        return paa_cost(
            candidate_logits,
            candidate_boxes,
            torch.cat(gt_boxes),
            torch.cat(gt_labels),
            candidates.gt,
            self.bbox_weight,
            self.loc_loss,
            self.gamma,
            self.alpha,
        )

    def assign_from_costs(
        self,
        candidates: PAACandidates,
        costs: Tensor,
        num_level_anchors: list[int],
        gt_labels: list[Tensor],
    ) -> list[AssignResult]:
        """Step 3, the GMM split of the candidates' ``costs [K]``, turned into one result per image."""
        layout, flat_anchor = candidates.layout, candidates.anchor
        split = paa_split(
            costs,
            flat_anchor,
            candidates.gt,
            layout.level_sizes(num_level_anchors),  # level ids then differ by image, as the GT ids do
            layout.num_gts,
            self.topk,
            self.keep_single_candidate,
            self.all_if_no_fg,
        )
        # a positive keeps its pre-assigned GT, every other anchor is negative   [B, N]
        pre_gt_inds = torch.stack([pre.gt_inds for pre in candidates.pres])
        positives = flat_anchor[split.pos_mask]
        gt_inds = torch.zeros_like(pre_gt_inds).view(-1)
        gt_inds[positives] = pre_gt_inds.view(-1)[positives]
        gt_inds = gt_inds.view_as(pre_gt_inds)
        # each slot's anchor in its image, -1 on padding: padding reads the -1 appended after the K candidates
        # (no index out of range when the batch has no candidate at all)
        _, anchor_in_image = layout.image_and_anchor(flat_anchor)
        anchor_or_padding = torch.cat([anchor_in_image, flat_anchor.new_full((1,), -1)])
        slot_anchor = anchor_or_padding[torch.where(split.valid, split.candidates, len(flat_anchor))]

        results = []
        for b, pre in enumerate(candidates.pres):
            rows = layout.gt_rows(b)
            details = {
                "pre_gt_inds": pre.gt_inds,
                "candidates": slot_anchor[rows],
                "costs": split.costs[rows],
                "component": split.component[rows],
                "positive": split.positive[rows],
                "cut": split.cut[rows],
                "gmm_weights": split.gmm.weights[rows],
                "gmm_means": split.gmm.means[rows],
                "gmm_variances": split.gmm.variances[rows],
                "gmm_n_iter": split.gmm.n_iter[rows],
                "gmm_converged": split.gmm.converged[rows],
            }
            results.append(AssignResult.from_gt_inds(gt_inds[b], pre.max_iou, gt_labels[b], details=details))
        return results
