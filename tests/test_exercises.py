"""The notebooks' check_* helpers: each accepts the worked solution's answer and rejects a wrong one.

The right answers here are worked out by hand or by a second route through the library (the IoU matrix
instead of the assigner, numpy's polyfit instead of torch.cov), never copied from a check's output.
"""

import math

import numpy as np
import pytest
import torch

from lad_edu import exercises
from lad_edu.anchors import retinanet, single
from lad_edu.assign import ATSSAssigner, FixedIoUAssigner, PAAAssigner, Predictions
from lad_edu.boxes import box_iou
from lad_edu.scenes import DEMO_IMAGE_SIZE, constructed_predictions, demo_scene

DOT = [146.0, 26.0, 151.0, 31.0]  # the demo scene's 5 x 5 dot


@pytest.fixture(scope="module")
def demo():
    """The demo scene's boxes and names, RetinaNet's anchors on it and their IoU matrix ``[G, N]``."""
    _, gt_boxes, gt_labels, names = demo_scene()
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    return gt_boxes, gt_labels, names, anchors, box_iou(gt_boxes, anchors)


def verdict(capsys, ok):
    """The check returned ``ok`` and printed one line saying so."""
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith("right: " if ok else "not yet: "), line
    return True


def tied_best(iou):
    """``[N]`` bool: the anchors tied at some GT's best IoU (the low-quality step's claims)."""
    return (iou == iou.max(dim=1, keepdim=True).values).any(dim=0)


# notebook 01


@pytest.mark.parametrize(("pos_iou_thr", "neg_iou_thr"), [(0.5, 0.4), (0.6, 0.5), (0.4, 0.3), (0.5, 0.5)])
def test_ignored_anchors_are_the_band_minus_the_low_quality_claims(capsys, demo, pos_iou_thr, neg_iou_thr):
    *_, iou = demo
    best = iou.max(dim=0).values
    ignored = int(((best >= neg_iou_thr) & (best < pos_iou_thr) & ~tied_best(iou)).sum())
    assert (ignored == 0) == (pos_iou_thr == neg_iou_thr)  # no band, nothing ignored
    kwargs = {"pos_iou_thr": pos_iou_thr, "neg_iou_thr": neg_iou_thr}
    assert exercises.check_ignored_anchors(ignored, **kwargs) and verdict(capsys, True)
    assert not exercises.check_ignored_anchors(ignored + 1, **kwargs) and verdict(capsys, False)


def test_objects_without_positive_are_those_below_0_5(capsys, demo):
    _, _, names, _, iou = demo
    below = {name for name, best in zip(names, iou.max(dim=1).values.tolist(), strict=True) if best < 0.5}
    assert below == {"dot", "small digit", "thin bar"}  # notebook 01: far below 0.4, or just below 0.5
    assert exercises.check_no_positive_without_low_quality(sorted(below)) and verdict(capsys, True)
    assert not exercises.check_no_positive_without_low_quality(["dot"]) and verdict(capsys, False)
    assert not exercises.check_no_positive_without_low_quality([*below, "cat"]) and verdict(capsys, False)


def test_a_duplicated_dot_loses_every_positive_to_its_copy(capsys):
    assert exercises.check_zero_positive_box([DOT, DOT], 0) and verdict(capsys, True)
    assert not exercises.check_zero_positive_box([DOT, DOT], 1) and verdict(
        capsys, False
    )  # the later copy wins
    assert not exercises.check_zero_positive_box([DOT], 0) and verdict(capsys, False)  # alone it has its ties


@pytest.mark.parametrize(
    "box", [[100.0, 200.0, 100.0, 240.0], list(exercises.FAR_BOX), [-10.0, 0.0, 5.0, 5.0]]
)
def test_zero_positive_box_refuses_boxes_that_win_nothing_by_construction(capsys, box):
    assert not exercises.check_zero_positive_box([box], 0) and verdict(capsys, False)
    assert not exercises.check_zero_positive_box([box], 2) and verdict(capsys, False)  # no box 2


def test_zero_width_box_in_front_keeps_what_no_object_ties_for(capsys, demo):
    *_, anchors, iou = demo
    taken = len(anchors) - int(tied_best(iou).sum())  # every anchor, less the later objects' tied best
    assert exercises.check_front_zero_width_positives(taken) and verdict(capsys, True)
    assert not exercises.check_front_zero_width_positives(len(anchors)) and verdict(capsys, False)


def test_far_box_takes_every_anchor_in_the_reference_and_none_here(capsys, demo):
    *_, anchors, _ = demo
    assert exercises.check_far_box_positives(reference=len(anchors), lad_edu=0) and verdict(capsys, True)
    assert not exercises.check_far_box_positives(reference=0, lad_edu=0) and verdict(capsys, False)
    assert not exercises.check_far_box_positives(reference=len(anchors), lad_edu=1) and verdict(capsys, False)


# notebook 02


@pytest.mark.parametrize("topk", [3, 9, 15])
def test_candidate_count_sums_topk_over_the_levels(capsys, topk):
    # 320 px with strides 8-128: 40², 20², 10², 5², 3² = 9 anchors (ceil(320 / 128) = 3)
    count = 4 * topk + min(topk, 9)
    assert exercises.check_candidate_count(count, topk=topk) and verdict(capsys, True)
    assert not exercises.check_candidate_count(5 * topk + 1, topk=topk) and verdict(capsys, False)


def test_center_eps_gainers_are_the_objects_the_centre_test_held_back(capsys):
    # the dot has no anchor centre inside, the small digit 6 (of 9 candidates), the bar 3 of 9 tied ones
    gainers = ["thin bar", "dot", "small digit"]
    assert exercises.check_center_eps_gainers(gainers) and verdict(capsys, True)
    assert not exercises.check_center_eps_gainers(["dot", "thin bar"]) and verdict(capsys, False)
    assert not exercises.check_center_eps_gainers(gainers, center_eps=0.01) and verdict(capsys, False)


def test_moved_dot_gets_one_atss_positive_and_49_fixed_ties(capsys):
    # stride 8 (64 px anchors): the centre (144, 32) alone lies inside [142, 147] x [30, 35]; the anchors
    # holding the dot whole have centres x in 120..168 and y in 8..56: 7 x 7 ties at IoU 25 / 4096
    ties = 7 * 7
    assert exercises.check_moved_dot_positives(atss=1, fixed=ties) and verdict(capsys, True)
    assert not exercises.check_moved_dot_positives(atss=0, fixed=ties) and verdict(capsys, False)


def test_biased_std_puts_the_threshold_exactly_on_the_tied_iou(capsys):
    # two groups of 9 tied IoUs, a = 48² / 128² and b = 48² / 64²: mean (a + b) / 2, biased std (b - a) / 2,
    # so mean + std = b exactly, and all 9 anchors at b pass (ATSS's unbiased std gives none)
    a, b = torch.tensor([48**2 / 128**2, 48**2 / 64**2])
    iou = torch.cat([a.repeat(9), b.repeat(9)])
    assert iou.mean() + iou.std(correction=0) == b
    assert exercises.check_biased_std_positives(9) and verdict(capsys, True)
    assert not exercises.check_biased_std_positives(0) and verdict(capsys, False)


def random_scenes(num_scenes, seed):
    """``num_scenes`` scenes of 6 boxes ``[6, 4]`` xyxy, sides log-uniform in 6-200 px, on the demo image."""
    gen = torch.Generator().manual_seed(seed)
    scenes = []
    for _ in range(num_scenes):
        side = torch.exp(torch.empty(6).uniform_(math.log(6), math.log(200), generator=gen))
        corner = torch.rand(6, 2, generator=gen) * (DEMO_IMAGE_SIZE[0] - side[:, None])
        scenes.append(torch.cat([corner, corner + side[:, None]], dim=1))
    return scenes


def test_flatter_rule_agrees_with_numpy_polyfit(capsys):
    scenes = random_scenes(12, seed=0)
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    log_size, fixed, atss = [], [], []
    for boxes in scenes:
        labels = torch.zeros(len(boxes), dtype=torch.long)
        fixed += FixedIoUAssigner().assign(anchors, boxes, labels).positives_per_gt().tolist()
        atss += ATSSAssigner().assign(anchors, num_level_anchors, boxes, labels).positives_per_gt().tolist()
        log_size += (boxes[:, 2] - boxes[:, 0]).log().tolist()  # squares: log(sqrt(area)) = log(side)
    slopes = {rule: np.polyfit(log_size, counts, 1)[0] for rule, counts in (("fixed", fixed), ("atss", atss))}
    flatter, steeper = sorted(slopes, key=lambda rule: abs(slopes[rule]))
    assert exercises.check_flatter_rule(flatter.upper(), scenes) and verdict(capsys, True)
    assert not exercises.check_flatter_rule(steeper, scenes) and verdict(capsys, False)


# notebook 03


@pytest.mark.parametrize(("quality", "topk"), [(0.2, 9), (0.9, 9), (0.5, 4), (0.5, 15)])
def test_demo_paa_positives_match_the_batched_assigner(capsys, quality, topk):
    _, gt_boxes, gt_labels, _ = demo_scene()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    cls_logits, pred_boxes = constructed_predictions(anchors, gt_boxes, gt_labels, quality=quality, seed=0)
    predictions = Predictions(cls_logits[None], pred_boxes[None])
    result = PAAAssigner(topk=topk).assign_batch(
        anchors, num_level_anchors, [gt_boxes], [gt_labels], predictions
    )
    positives = result[0].positives_per_gt().tolist()
    kwargs = {"quality": quality, "topk": topk}
    assert exercises.check_demo_paa_positives(positives, **kwargs) and verdict(capsys, True)
    assert not exercises.check_demo_paa_positives([*positives[:-1], positives[-1] + 1], **kwargs)
    assert verdict(capsys, False)
    assert not exercises.check_demo_paa_positives(positives[:-1], **kwargs) and verdict(capsys, False)


def test_original_paa_cut_on_a_hand_worked_row(capsys):
    # component 0 = {0.2, 0.4, 0.5} with a component-1 candidate (0.3) between; its mode is 0.4 (score -0.6)
    costs, component = [0.2, 0.3, 0.4, 0.5, 1.5], [0, 1, 0, 0, 1]
    score = [-1.0, -0.5, -0.6, -1.5, -2.0]
    mmdetection, original = [1, 0, 1, 0, 0], [1, 1, 1, 0, 0]
    check = exercises.check_original_paa_cut
    assert check(costs, component, score, mmdetection=mmdetection, original=original) and verdict(
        capsys, True
    )
    assert not check(costs, component, score, mmdetection=original, original=original) and verdict(
        capsys, False
    )
    assert not check(costs, component, score, mmdetection=mmdetection, original=[1, 1]) and verdict(
        capsys, False
    )
    # component 0 a prefix: both rules agree, so the row cannot tell them apart
    prefix = [0, 0, 0, 1, 1]
    assert not check(costs, prefix, score, mmdetection=original, original=original) and verdict(capsys, False)
    unsorted = costs[::-1]
    assert not check(unsorted, component, score, mmdetection=mmdetection, original=original)
    assert verdict(capsys, False)
