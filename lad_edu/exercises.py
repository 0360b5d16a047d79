"""Is my answer right? One ``check_*`` function per notebook exercise that has an answer to check.

Each check computes the right answer with the library, on the notebook's own scene, anchors and seeds
(never from a stored number), prints one line, ``right: ...`` or ``not yet: <a hint>``, and returns
``True`` or ``False``. The notebooks show the call under each exercise and call it again in the worked
solution, so running a notebook proves that every solution passes its own check::

    from lad_edu.exercises import check_ignored_anchors
    check_ignored_anchors(your_answer, pos_iou_thr=0.6, neg_iou_thr=0.5)

>>> check_ignored_anchors(-1, pos_iou_thr=0.5, neg_iou_thr=0.4)
not yet: count the anchors whose gt_inds is -1 (result.ignored.sum())
False

Notebook 01 (RetinaNet's anchors on the demo scene), 02 (``single()`` anchors, ATSS) and 03 (PAA on the
constructed predictions of ``lad_edu.scenes.constructed_predictions``) each have a section below.
Exercises whose answer is an opinion, a plot or a timing have no check; their worked solution is in the
notebook.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lad_edu.anchors import retinanet, single
from lad_edu.assign import ATSSAssigner, FixedIoUAssigner, PAAAssigner
from lad_edu.assign.paa import paa_positives
from lad_edu.boxes import box_centers, centers_inside
from lad_edu.scenes import DEMO_IMAGE_SIZE, constructed_predictions, demo_scene

__all__ = [
    "check_biased_std_positives",
    "check_candidate_count",
    "check_center_eps_gainers",
    "check_demo_paa_positives",
    "check_far_box_positives",
    "check_flatter_rule",
    "check_front_zero_width_positives",
    "check_ignored_anchors",
    "check_moved_dot_positives",
    "check_no_positive_without_low_quality",
    "check_original_paa_cut",
    "check_zero_positive_box",
]

ZERO_WIDTH_BOX = (100.0, 200.0, 100.0, 240.0)  # notebook 01's zero-width GT: x1 == x2
# notebook 01, exercise 5: a box that no anchor of the 320 px image touches
FAR_BOX = (2000.0, 2000.0, 2040.0, 2040.0)
# notebook 02, exercise 3: the 5 x 5 dot moved around the anchor centre (144, 32)
MOVED_DOT = (142.0, 30.0, 147.0, 35.0)
# notebook 02: a 48 x 48 GT inside nine 64 px anchors of a 64 x 64 image
TIED_SQUARE = (8.0, 8.0, 56.0, 56.0)


# helpers


def _verdict(ok: bool, right: str, hint: str) -> bool:
    """Print ``right: ...`` or ``not yet: ...`` and return ``ok``."""
    print(f"right: {right}" if ok else f"not yet: {hint}")
    return ok


def _demo_objects() -> tuple[Tensor, Tensor, list[str]]:
    """The demo scene's ``gt_boxes [7, 4]`` xyxy, ``gt_labels [7]`` and names (notebooks 01-03)."""
    _, gt_boxes, gt_labels, names = demo_scene()
    return gt_boxes, gt_labels, names


def _unknown_names(answer: set[str], names: list[str]) -> str | None:
    """A hint when ``answer`` holds a name that is not one of the demo objects, else None."""
    unknown = answer - set(names)
    return f"{sorted(unknown)} are not demo objects; they are {names}" if unknown else None


def _slope(x: Tensor, y: Tensor) -> float:
    """The least-squares slope of ``y`` against ``x`` (both ``[n]``): cov(x, y) / var(x)."""
    covariance = torch.cov(torch.stack([x, y]))
    return float(covariance[0, 1] / covariance[0, 0])


def _same_mask(given: Tensor | Sequence, right: Tensor) -> bool:
    """Whether ``given`` (0/1 or bool, any nesting) holds exactly the mask ``right``."""
    given = torch.as_tensor(given).bool()
    return given.numel() == right.numel() and torch.equal(given.reshape(right.shape), right)


# notebook 01: anchors and the fixed IoU rule (RetinaNet's nine anchors per location)


def check_ignored_anchors(answer: int, *, pos_iou_thr: float, neg_iou_thr: float) -> bool:
    """Exercise 01.1: the anchors ``FixedIoUAssigner(pos_iou_thr, neg_iou_thr)`` ignores on the demo scene."""
    gt_boxes, gt_labels, _ = _demo_objects()
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    assigner = FixedIoUAssigner(pos_iou_thr=pos_iou_thr, neg_iou_thr=neg_iou_thr)
    ignored = int(assigner.assign(anchors, gt_boxes, gt_labels).ignored.sum())
    return _verdict(
        int(answer) == ignored,
        f"{ignored} anchors ignored at {pos_iou_thr} / {neg_iou_thr}: in the band, no object's best anchor",
        "count the anchors whose gt_inds is -1 (result.ignored.sum())",
    )


def check_no_positive_without_low_quality(answer: Sequence[str]) -> bool:
    """Exercise 01.2: the demo objects that get no positive without the low-quality matches.

    The rule is ``FixedIoUAssigner(match_low_quality=False)``; ``answer``: the objects' names
    (``demo_scene``'s), in any order.
    """
    gt_boxes, gt_labels, names = _demo_objects()
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    result = FixedIoUAssigner(match_low_quality=False).assign(anchors, gt_boxes, gt_labels)
    right = {names[k] for k in (result.positives_per_gt() == 0).nonzero().flatten().tolist()}
    given = set(answer)
    return _verdict(
        given == right,
        f"{sorted(right)} reach IoU 0.5 with no anchor; only the low-quality step gives them positives",
        _unknown_names(given, names) or "list every object whose positives_per_gt() is 0 without the step",
    )


def check_zero_positive_box(boxes: Tensor | Sequence[Sequence[float]], index: int) -> bool:
    """Exercise 01.3: box ``index`` of ``boxes [G, 4]`` xyxy, inside the demo image, gets no positive.

    The boxes are labelled alone by ``FixedIoUAssigner()`` (RetinaNet's rule) on the demo image's anchors.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    height, width = DEMO_IMAGE_SIZE
    if not -len(boxes) <= index < len(boxes):
        return _verdict(False, "", f"index {index} is not a box of the {len(boxes)} given")
    x1, y1, x2, y2 = boxes[index].tolist()
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        return _verdict(
            False,
            "",
            f"box {index} must lie inside the {width} x {height} image with positive width and height "
            "(a box that no anchor touches is exercise 5)",
        )
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    labels = torch.zeros(len(boxes), dtype=torch.long)
    positives = FixedIoUAssigner().assign(anchors, boxes, labels).positives_per_gt()
    return _verdict(
        int(positives[index]) == 0,
        f"box {index} ends with no positive (positives per box: {positives.tolist()})",
        f"box {index} keeps {int(positives[index])} positive(s): a later box must tie all its best anchors",
    )


def check_front_zero_width_positives(answer: int) -> bool:
    """Exercise 01.4: the positives of the zero-width box put *first*, under the reference's rule.

    The reference is ``FixedIoUAssigner(drop_degenerate_gts=False)`` (MMDetection) on the demo scene, with
    :data:`ZERO_WIDTH_BOX` in front of the seven objects.
    """
    gt_boxes, _, _ = _demo_objects()
    boxes = torch.cat([torch.tensor([ZERO_WIDTH_BOX]), gt_boxes])
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    reference = FixedIoUAssigner(drop_degenerate_gts=False).assign(anchors, boxes, torch.arange(len(boxes)))
    taken = int(reference.positives_per_gt()[0])
    return _verdict(
        int(answer) == taken,
        f"{taken} of {len(anchors)} anchors: the later objects take back only their own tied best anchors",
        "first the box takes every anchor, then each later object takes back its best anchor(s): count them",
    )


def check_far_box_positives(*, reference: int, lad_edu: int) -> bool:
    """Exercise 01.5: positives of :data:`FAR_BOX`, alone on the demo image's anchors, in both modes.

    ``reference``: ``FixedIoUAssigner(drop_degenerate_gts=False)``; ``lad_edu``: ``FixedIoUAssigner()``.
    """
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    box, label = torch.tensor([FAR_BOX]), torch.tensor([0])
    right = {
        "reference": int(FixedIoUAssigner(drop_degenerate_gts=False).assign(anchors, box, label).num_pos),
        "lad_edu": int(FixedIoUAssigner().assign(anchors, box, label).num_pos),
    }
    given = {"reference": int(reference), "lad_edu": int(lad_edu)}
    wrong = [mode for mode in right if given[mode] != right[mode]]
    return _verdict(
        not wrong,
        f"the reference gives it all {right['reference']} anchors (every one ties at IoU 0), lad_edu "
        f"{right['lad_edu']} (no low-quality match without overlap)",
        f"recount {' and '.join(wrong)}: what is the box's best IoU, and how many anchors tie at it?",
    )


# notebook 02: ATSS (one 8·stride square per location, single())


def check_candidate_count(answer: int, *, topk: int) -> bool:
    """Exercise 02.1: ``K``, the candidates per GT of ``ATSSAssigner(topk)`` on the demo image's anchors."""
    gt_boxes, gt_labels, _ = _demo_objects()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    result = ATSSAssigner(topk=topk).assign(anchors, num_level_anchors, gt_boxes, gt_labels)
    count = len(result.details["candidates"])  # [K, G]
    return _verdict(
        int(answer) == count,
        f"K = {count} = sum over the levels of min({topk}, anchors on the level) {num_level_anchors}",
        "K sums min(topk, n_l) over the levels: how many anchors has the coarsest level?",
    )


def check_center_eps_gainers(answer: Sequence[str], *, center_eps: float = -4.0) -> bool:
    """Exercise 02.2: the demo objects that gain positives with ``ATSSAssigner(center_eps=center_eps)``."""
    gt_boxes, gt_labels, names = _demo_objects()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    before, after = (
        ATSSAssigner(center_eps=eps)
        .assign(anchors, num_level_anchors, gt_boxes, gt_labels)
        .positives_per_gt()
        for eps in (0.01, center_eps)
    )
    right = {names[k] for k in (after > before).nonzero().flatten().tolist()}
    given = set(answer)
    return _verdict(
        given == right,
        f"{sorted(right)} gain positives: candidates whose centres lie just outside them now count as inside",
        _unknown_names(given, names) or "compare positives_per_gt() with center_eps=0.01 and the new margin",
    )


def check_moved_dot_positives(*, atss: int, fixed: int) -> bool:
    """Exercise 02.3: the positives of the dot moved to :data:`MOVED_DOT`, under ATSS and the fixed rule.

    Both on the demo scene's ``single()`` anchors, the other six objects in place.
    """
    gt_boxes, gt_labels, names = _demo_objects()
    dot = names.index("dot")
    gt_boxes[dot] = torch.tensor(MOVED_DOT)
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    atss_result = ATSSAssigner().assign(anchors, num_level_anchors, gt_boxes, gt_labels)
    fixed_result = FixedIoUAssigner().assign(anchors, gt_boxes, gt_labels)
    right = {
        "atss": int(atss_result.positives_per_gt()[dot]),
        "fixed": int(fixed_result.positives_per_gt()[dot]),
    }
    given = {"atss": int(atss), "fixed": int(fixed)}
    wrong = [rule for rule in right if given[rule] != right[rule]]
    return _verdict(
        not wrong,
        f"the moved dot gets {right['atss']} ATSS positive(s), an anchor centre now lies inside it, and "
        f"{right['fixed']} from the fixed rule, all tied low-quality matches",
        f"recount {' and '.join(wrong)}: result.positives_per_gt() of the dot, moved",
    )


def check_biased_std_positives(answer: int) -> bool:
    """Exercise 02.4: positives of :data:`TIED_SQUARE` (strides 8 and 16) with ``mean + std(correction=0)``.

    What a NumPy re-implementation with ``np.std``'s default ``ddof=0`` would keep: the candidates at or
    above the biased threshold whose centre lies inside the GT (the other ATSS steps unchanged).
    """
    anchors, num_level_anchors = single(strides=(8, 16))((64, 64))
    gt = torch.tensor([TIED_SQUARE])
    result = ATSSAssigner().assign(anchors, num_level_anchors, gt, torch.tensor([0]))
    iou = result.details["candidate_iou"][:, 0]  # [K]
    biased = iou.mean() + iou.std(correction=0)  # ATSS step 2 with ddof=0
    inside = centers_inside(box_centers(anchors[result.details["candidates"][:, 0]]), gt)  # ATSS step 3
    count = int(((iou >= biased) & inside).sum())
    return _verdict(
        int(answer) == count,
        f"{count} positives where ATSS gives {result.num_pos}: biased threshold {float(biased):.7f}, "
        f"tied IoU {float(iou.max()):.7f} (float32)",
        f"compare the tied IoU with mean + std(correction=0) of the {len(iou)} candidate IoUs, and count",
    )


def check_flatter_rule(answer: str, scenes: Sequence[Tensor]) -> bool:
    """Exercise 02.5: ``"fixed"`` or ``"atss"``, the rule whose positives per object depend least on size.

    Both rules label every scene (``[G, 4]`` xyxy boxes on the demo image's ``single()`` anchors, as the
    notebook's last plot); the slope of positives against ``log(sqrt(area))``, fitted by least squares
    over all objects, closer to 0 wins.
    """
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    sizes, positives = [], {"fixed": [], "atss": []}
    for boxes in scenes:
        labels = torch.zeros(len(boxes), dtype=torch.long)
        positives["fixed"].append(FixedIoUAssigner().assign(anchors, boxes, labels).positives_per_gt())
        positives["atss"].append(
            ATSSAssigner().assign(anchors, num_level_anchors, boxes, labels).positives_per_gt()
        )
        sizes.append((boxes[:, 2:] - boxes[:, :2]).prod(dim=1).sqrt())
    log_size = torch.cat(sizes).log().double()
    slopes = {rule: _slope(log_size, torch.cat(counts).double()) for rule, counts in positives.items()}
    flatter = min(slopes, key=lambda rule: abs(slopes[rule]))
    return _verdict(
        str(answer).lower() == flatter,
        f"{flatter}: slope {slopes[flatter]:+.1f} positives per unit of log(sqrt(area)), against "
        + ", ".join(f"{slope:+.1f} for {rule}" for rule, slope in slopes.items() if rule != flatter),
        'answer "fixed" or "atss": fit both lines (e.g. torch.cov) and compare the slopes\' absolute values',
    )


# notebook 03: PAA on constructed predictions (eq. 2's cost, the two-Gaussian split)


def check_demo_paa_positives(
    answer: Sequence[int], *, quality: float = 0.5, topk: int = 9, seed: int = 0
) -> bool:
    """Exercises 03.1 and 03.2: positives per GT of ``PAAAssigner(topk=topk)`` on the demo scene.

    The predictions are notebook 03's: ``constructed_predictions(quality=quality, seed=seed)`` with 80
    classes on the ``single()`` anchors. ``answer``: 7 counts in the demo scene's order.
    """
    gt_boxes, gt_labels, names = _demo_objects()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    cls_logits, pred_boxes = constructed_predictions(anchors, gt_boxes, gt_labels, quality=quality, seed=seed)
    result = PAAAssigner(topk=topk).assign(
        anchors, num_level_anchors, gt_boxes, gt_labels, cls_logits, pred_boxes
    )
    right = result.positives_per_gt().tolist()
    given = [int(n) for n in answer]
    wrong = [names[k] for k in range(len(names)) if k >= len(given) or given[k] != right[k]]
    return _verdict(
        not wrong and len(given) == len(right),
        f"positives per GT at quality {quality}, topk {topk}: {dict(zip(names, right, strict=True))}",
        f"recount {wrong or 'the extra entries'}: positives_per_gt() lists the {len(names)} GTs in order",
    )


def check_original_paa_cut(
    costs: Tensor | Sequence,
    component: Tensor | Sequence,
    score: Tensor | Sequence,
    *,
    mmdetection: Tensor | Sequence,
    original: Tensor | Sequence,
) -> bool:
    """Exercise 03.3: which candidates MMDetection's cut and the original PAA's cut keep.

    Args:
        costs: ``[G, M]`` (or ``[M]`` for one GT) candidate costs, ascending along a row.
        component: ``[G, M]`` GMM component per candidate (0 = low cost, 1).
        score: ``[G, M]`` log-likelihood of each candidate under the mixture.
        mmdetection, original: ``[G, M]`` 0/1 or bool, the candidates each rule keeps. MMDetection's rule
            (:func:`~lad_edu.assign.paa.paa_positives`) keeps component 0 up to the cost of its most likely
            candidate; the original PAA keeps every candidate up to that cost, component 1 included.
    """
    costs = torch.atleast_2d(torch.as_tensor(costs, dtype=torch.float64))
    component = torch.atleast_2d(torch.as_tensor(component, dtype=torch.long))
    score = torch.atleast_2d(torch.as_tensor(score, dtype=torch.float64))
    if not (costs.shape == component.shape == score.shape) or not (costs.diff(dim=1) >= 0).all():
        return _verdict(
            False, "", "costs, component and score need one shape, the costs ascending along a row"
        )
    valid = torch.ones_like(costs, dtype=torch.bool)
    kept = paa_positives(costs, valid, component, score)  # [G, M], MMDetection's scheme (c)
    cut = torch.where(kept, costs, -torch.inf).amax(dim=1, keepdim=True)  # the cost of component 0's mode
    kept_original = valid & (costs <= cut)
    if torch.equal(kept, kept_original):
        return _verdict(
            False, "", "both rules keep the same here: put a component-1 candidate below the mode"
        )
    answers = {"mmdetection": (mmdetection, kept), "original": (original, kept_original)}
    wrong = [rule for rule, (given, right) in answers.items() if not _same_mask(given, right)]
    return _verdict(
        not wrong,
        f"MMDetection keeps {kept.int().tolist()}, the original PAA {kept_original.int().tolist()}",
        f"recheck {' and '.join(wrong)}: find component 0's most likely candidate (highest score) first",
    )
