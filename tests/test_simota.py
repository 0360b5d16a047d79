"""SimOTA (lad_edu.assign.simota): hand-worked cases, MMDetection parity, batching, chunking, edge cases."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from lad_edu.anchors import single
from lad_edu.assign import Predictions
from lad_edu.assign.simota import (
    SimOTAAssigner,
    batched_box_iou,
    class_cost,
    lowest_k,
    prior_points,
    prior_regions,
    simota_cost,
    valid_prior_mask,
)
from lad_edu.boxes import box_iou
from tests.conftest import DEVICES, boxes_in_image
from tests.reference import simota_reference

IMAGE = (64, 96)
ANCHORS, NUM_LEVEL_ANCHORS = single(strides=(8, 16, 32))(IMAGE)  # 96 + 24 + 6 = 126 anchors
NUM_CLASSES = 4
LN2 = math.log(2)


def points(xs, ys):
    """Anchors ``[N, 4]``: 8×8 squares centred on ``(xs[i], ys[i])`` (one level; pass ``strides=``)."""
    centres = torch.tensor([xs, ys], dtype=torch.float32).T
    return torch.cat([centres - 4, centres + 4], dim=1)


def x_boxes(spans, y1=0.0, y2=40.0):
    """Predicted boxes ``[x1, y1, x2, y2]`` sharing one y-extent: their IoU with a GT of that y-extent is
    the ratio of the x-lengths (intersection / union)."""
    return torch.tensor([[x1, y1, x2, y2] for x1, x2 in spans])


def random_image(seed, dtype=torch.float32, anchors=ANCHORS):
    """GTs of every size (some smaller than the stride-8 cells: no candidate), logits, and predicted boxes
    scattered around the GTs, so that IoUs and dynamic k vary. Continuous values: no exact ties."""
    g = torch.Generator().manual_seed(seed)
    num_gts = int(torch.randint(1, 7, (1,), generator=g))
    xy = torch.rand(num_gts, 2, generator=g) * torch.tensor([90.0, 60.0])
    wh = 2 + torch.rand(num_gts, 2, generator=g) ** 2 * 60
    gt_boxes = torch.cat([xy, xy + wh], dim=1)
    gt_labels = torch.randint(0, NUM_CLASSES, (num_gts,), generator=g)
    num_anchors = len(anchors)
    logits = torch.randn(num_anchors, NUM_CLASSES, generator=g) * 2
    near = gt_boxes[torch.randint(0, num_gts, (num_anchors,), generator=g)]
    spread = torch.rand(num_anchors, 1, generator=g) * 0.5 * (near[:, 2:] - near[:, :2]).repeat(1, 2)
    pred = near + torch.randn(num_anchors, 4, generator=g) * spread
    pred = torch.cat([pred[:, :2], torch.maximum(pred[:, 2:], pred[:, :2] + 0.5)], dim=1)
    return gt_boxes.to(dtype), gt_labels, logits.to(dtype), pred.to(dtype)


def reference(anchors, num_level_anchors, gt_boxes, gt_labels, logits, pred_boxes, **options):
    """The MMDetection transcription on our priors: ``(cx, cy, stride, stride)``, scores = sigmoid."""
    strides = options.pop("strides", None)
    centres, prior_strides = prior_points(anchors, num_level_anchors, strides)
    priors = torch.cat([centres, prior_strides[:, None], prior_strides[:, None]], dim=1)
    return simota_reference(priors, logits.sigmoid(), pred_boxes, gt_boxes, gt_labels, **options)


def assert_same_result(a, b):
    assert torch.equal(a.gt_inds, b.gt_inds)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.max_iou, b.max_iou)
    assert torch.equal(a.quality, b.quality)
    assert a.num_gts == b.num_gts and a.details.keys() == b.details.keys()
    for key in a.details:
        assert torch.equal(a.details[key], b.details[key]), key


# hand-worked cases


def test_the_worked_example_of_the_module_docstring():
    # A = [0, 0, 40, 40], B = [20, 0, 60, 40], priors at x = 8, 16, 32, 48, 56 (y = 20), one class, logits 0:
    # the class cost is BCE(0.5, 1) = ln 2 everywhere. IoUs (x-length ratios): A 1, .5, 28/52, 1/3, 0;
    # B 1/3, 0, 32/48, 1, 16/40. Costs ln 2 + 3·-ln(IoU + 1e-7), + 1e5 outside the GT (A: x >= 40;
    # B: x <= 20).
    anchors = points([8, 16, 32, 48, 56], [20] * 5)
    pred = x_boxes([(0, 40), (0, 20), (12, 52), (20, 60), (40, 56)])
    gts = torch.tensor([[0.0, 0.0, 40.0, 40.0], [20.0, 0.0, 60.0, 40.0]])
    centres, strides = prior_points(anchors, [5], strides=(8,))
    cost = simota_cost(
        centres=centres,
        strides=strides,
        gt_boxes=gts[None],
        gt_labels=torch.tensor([[0, 0]]),
        cls_logits=torch.zeros(1, 5, 1),
        pred_boxes=pred[None],
    )

    def c(iou, outside=False):
        return LN2 + 3 * -math.log(iou + 1e-7) + (1e5 if outside else 0.0)

    expected = [
        [c(1), c(0.5), c(28 / 52), c(1 / 3, True), c(0, True)],
        [c(1 / 3, True), c(0, True), c(32 / 48), c(1), c(0.4)],
    ]
    torch.testing.assert_close(cost.cost[0], torch.tensor(expected), rtol=0, atol=0.01)  # 1e5 + x: float32
    # k_A = floor(1 + .538 + .5 + .333) = 2, k_B = floor(1 + .667 + .4 + .333) = 2
    assert cost.dynamic_k.tolist() == [[2, 2]]
    assert cost.candidate[0].int().tolist() == [[1, 1, 1, 0, 0], [0, 0, 1, 1, 1]]
    # A takes x = 8, 32; B takes x = 48, 32; x = 32 goes to B (1.91 < 2.55); A does not get x = 16 instead
    result = SimOTAAssigner(strides=(8,)).assign(
        anchors, [5], gts, torch.tensor([0, 0]), torch.zeros(5, 1), pred
    )
    assert result.gt_inds.tolist() == [1, 0, 2, 2, 0]
    torch.testing.assert_close(result.quality, torch.tensor([1.0, 0.0, 2 / 3, 1.0, 0.0]))
    assert result.details["num_candidates"].tolist() == [3, 3]
    assert torch.equal(
        result.gt_inds,
        reference(anchors, [5], gts, torch.tensor([0, 0]), torch.zeros(5, 1), pred, strides=(8,))[0],
    )


def four_priors_in_one_gt(pred_spans_y):
    """GT [0, 0, 40, 40]; priors at x = 8, 16, 24, 32 (y = 20), all inside it and its centre region
    (20 ± 2.5·8); prior i predicts [0, 0, 40, y2_i], whose IoU with the GT is y2_i / 40."""
    anchors = points([8, 16, 24, 32], [20] * 4)
    pred = torch.tensor([[0.0, 0.0, 40.0, y2] for y2 in pred_spans_y])
    return anchors, torch.tensor([[0.0, 0.0, 40.0, 40.0]]), pred


@pytest.mark.parametrize(
    ("candidate_topk", "dynamic_k", "positives"),
    [
        (10, 2, [1, 3]),  # top IoUs .9 + .8 + .7 + .2 = 2.6 -> k = 2: the two cheapest, IoU .9 and .8
        (2, 1, [1]),  # top-2 only: .9 + .8 = 1.7 -> k = 1
    ],
)
def test_dynamic_k_is_the_floor_of_the_sum_of_the_top_ious(candidate_topk, dynamic_k, positives):
    anchors, gts, pred = four_priors_in_one_gt([28, 36, 8, 32])  # IoUs .7, .9, .2, .8
    assigner = SimOTAAssigner(candidate_topk=candidate_topk, strides=(8,))
    result = assigner.assign(anchors, [4], gts, torch.tensor([0]), torch.zeros(4, 1), pred)
    assert result.details["dynamic_k"].tolist() == [dynamic_k]
    assert result.pos.nonzero().flatten().tolist() == positives
    torch.testing.assert_close(result.quality[positives], torch.tensor([0.9, 0.8][:dynamic_k]))


def test_tiny_ious_still_give_one_positive_and_equal_costs_go_to_the_lower_index():
    # every prediction [0, 0, 4, 4]: IoU 16 / 1600 = .01, sum .04 -> floor 0 -> clamped to k = 1;
    # all costs equal, so the positive is the lowest prior index
    anchors, gts, _ = four_priors_in_one_gt([])
    pred = torch.tensor([[0.0, 0.0, 4.0, 4.0]]).repeat(4, 1)
    result = SimOTAAssigner(strides=(8,)).assign(
        anchors, [4], gts, torch.tensor([0]), torch.zeros(4, 1), pred
    )
    assert result.details["dynamic_k"].tolist() == [1]
    assert result.gt_inds.tolist() == [1, 0, 0, 0]


@pytest.mark.parametrize(("candidate_topk", "dynamic_k"), [(10, 2), (12, 3)])
def test_only_the_top_candidate_topk_ious_count(candidate_topk, dynamic_k):
    # 12 priors in GT [0, 0, 40, 40], each predicting [0, 0, 40, 10] (IoU 400 / 1600 = .25):
    # the top 10 sum to 2.5 -> k = 2; with candidate_topk = 12 all of them count: 3.0 -> k = 3
    xs, ys = torch.meshgrid(torch.tensor([8.0, 16, 24, 32]), torch.tensor([12.0, 20, 28]), indexing="xy")
    anchors = points(xs.flatten().tolist(), ys.flatten().tolist())
    pred = torch.tensor([[0.0, 0.0, 40.0, 10.0]]).repeat(12, 1)
    gts = torch.tensor([[0.0, 0.0, 40.0, 40.0]])
    assigner = SimOTAAssigner(candidate_topk=candidate_topk, strides=(8,))
    result = assigner.assign(anchors, [12], gts, torch.tensor([0]), torch.zeros(12, 1), pred)
    assert result.details["dynamic_k"].tolist() == [dynamic_k]
    assert result.pos.nonzero().flatten().tolist() == list(range(dynamic_k))  # equal costs: lowest indices


def test_the_centre_region_is_center_radius_strides_around_the_gt_centre():
    # GT [0, 0, 200, 200], centre (100, 100). Priors at y = 100, x = 110, 119, 120, 130 with stride 8, and
    # x = 130 with stride 16. Radius 2.5: half-widths 20 (stride 8) and 40 (stride 16), strict inequalities.
    centres = torch.tensor([[110.0, 100.0], [119.0, 100.0], [120.0, 100.0], [130.0, 100.0], [130.0, 100.0]])
    strides = torch.tensor([8.0, 8.0, 8.0, 8.0, 16.0])
    gt = torch.tensor([[[0.0, 0.0, 200.0, 200.0]]])
    in_box, in_centre = prior_regions(centres, strides, gt, center_radius=2.5)
    assert in_box[0, 0].tolist() == [True] * 5
    assert in_centre[0, 0].tolist() == [True, True, False, False, True]  # 120 - 100 = 20 is not < 20
    _, in_centre = prior_regions(centres, strides, gt, center_radius=1.0)  # half-widths 8 and 16
    assert in_centre[0, 0].tolist() == [False] * 5
    # a GT smaller than its centre region: (110, 100) lies in the region (100 ± 20), not in the box
    small = torch.tensor([[[96.0, 96.0, 104.0, 104.0]]])
    in_box, in_centre = prior_regions(centres[:1], strides[:1], small, center_radius=2.5)
    assert (in_box.item(), in_centre.item()) == (False, True)
    assert valid_prior_mask(centres[:1], strides[:1], small, torch.tensor([[True]]), 2.5).item()
    assert not valid_prior_mask(
        centres[:1], strides[:1], small, torch.tensor([[False]]), 2.5
    ).item()  # padding


def test_a_prior_taken_twice_goes_to_the_cheapest_gt_of_all_even_one_that_did_not_take_it():
    # Three GTs on one box [0, 0, 40, 40], classes 0, 1, 2; priors s, t, u at x = 12, 20, 28 (y = 20), all
    # candidates of all three; every prediction [0, 0, 40, 20] (IoU .5, k = floor(1.5) = 1, equal IoU cost).
    # Class cost of prior i for class k: sum_c softplus(L_ic) - L_ik.
    #   s (0, 0, 1):    S = 2·0.6931 + 1.3133 = 2.6995 -> A 2.70, B 2.70, C 1.70
    #   t (-5, -5, 3):  S = 2·0.0067 + 3.0486 = 3.0620 -> A 8.06, B 8.06, C 0.06
    #   u (-3, -3, -3): S = 3·0.0486 = 0.1458          -> A 3.15, B 3.15, C 3.15
    # A and B take s, C takes t; s is shared, and C has the lowest cost at s: both go to C.
    anchors = points([12, 20, 28], [20] * 3)
    logits = torch.tensor([[0.0, 0.0, 1.0], [-5.0, -5.0, 3.0], [-3.0, -3.0, -3.0]])
    pred = torch.tensor([[0.0, 0.0, 40.0, 20.0]]).repeat(3, 1)
    gts = torch.tensor([[0.0, 0.0, 40.0, 40.0]]).repeat(3, 1)
    labels = torch.tensor([0, 1, 2])
    result = SimOTAAssigner(strides=(8,)).assign(anchors, [3], gts, labels, logits, pred)
    assert result.details["dynamic_k"].tolist() == [1, 1, 1]
    assert result.gt_inds.tolist() == [3, 3, 0]
    assert result.labels.tolist() == [2, 2, -1]
    assert torch.equal(result.gt_inds, reference(anchors, [3], gts, labels, logits, pred, strides=(8,))[0])


GRID, GRID_LEVELS = single(strides=(8,))((32, 32))  # 16 priors, centres at 0, 8, 16, 24; index 4·y + x


@pytest.mark.parametrize("with_other_gt", [False, True])
def test_a_gt_with_no_candidate_takes_its_cheapest_valid_priors_unless_another_gt_wins_them(with_other_gt):
    # C = [9, 9, 11, 11]: no prior centre strictly inside it (no candidate), its centre region 10 ± 20 holds
    # all 16 priors (valid). Priors 5 = (8, 8) and 10 = (16, 16) predict exactly C (IoU 1), the rest far away
    # (IoU 0): k_C = 2, and C's two cheapest valid priors are 5 and 10 (cost 1e5 + class cost + ~0).
    pred = torch.tensor([[100.0, 100.0, 110.0, 110.0]]).repeat(16, 1)
    pred[[5, 10]] = torch.tensor([9.0, 9.0, 11.0, 11.0])
    logits = torch.zeros(16, 1)
    logits[5] = 1.0  # prior 5 is A's cheapest below (class cost softplus(-1) = .31 against ln 2 = .69)
    gts, labels = torch.tensor([[9.0, 9.0, 11.0, 11.0]]), torch.tensor([0])
    if with_other_gt:
        # A = [4, 4, 20, 20] (GT 0), candidates 5, 6, 9, 10. Priors 5 and 10 have IoU 4/256 with A, the
        # others 0: k_A = 1, and A takes 5 (cost .31 + 3·4.16 = 12.8; 10: 13.2; 6, 9: 49.0). Prior 5 is
        # taken by A and C: A's 12.8 beats C's 1e5 + .31. Prior 10 is C's alone: C keeps it, outside its box.
        gts = torch.cat([torch.tensor([[4.0, 4.0, 20.0, 20.0]]), gts])
        labels = torch.tensor([0, 0])
    result = SimOTAAssigner().assign(GRID, GRID_LEVELS, gts, labels, logits, pred)
    positives = {int(i): int(result.gt_inds[i]) for i in result.pos.nonzero().flatten()}
    if with_other_gt:
        assert positives == {5: 1, 10: 2}
        assert result.details["dynamic_k"].tolist() == [1, 2]
        assert result.details["num_candidates"].tolist() == [4, 0]
        torch.testing.assert_close(result.quality[[5, 10]], torch.tensor([4 / 256, 1.0]))
    else:
        assert positives == {5: 1, 10: 1}
        assert result.details["dynamic_k"].tolist() == [2]
        assert result.details["num_candidates"].tolist() == [0]
    assert torch.equal(result.gt_inds, reference(GRID, GRID_LEVELS, gts, labels, logits, pred)[0])


def test_no_valid_prior_leaves_every_prior_negative():
    # GT [200, 200, 220, 220]: its box and centre region (210 ± 20) hold none of the priors (centres <= 24)
    pred = torch.tensor([[200.0, 200.0, 220.0, 220.0]]).repeat(16, 1)  # even perfect predictions
    gts = torch.tensor([[200.0, 200.0, 220.0, 220.0]])
    result = SimOTAAssigner().assign(GRID, GRID_LEVELS, gts, torch.tensor([0]), torch.zeros(16, 1), pred)
    assert result.num_pos == 0 and result.neg.all()
    assert result.details["dynamic_k"].tolist() == [0]  # MMDetection stops before computing k
    assert result.details["num_candidates"].tolist() == [0]
    assert not result.quality.any()
    assert reference(GRID, GRID_LEVELS, gts, torch.tensor([0]), torch.zeros(16, 1), pred)[0].eq(0).all()


# the building blocks


def test_lowest_k_is_the_first_k_of_a_stable_sort():
    g = torch.Generator().manual_seed(0)
    cost = torch.randint(0, 5, (6, 40, 30), generator=g).float()  # many ties
    cost[cost == 4] = float("inf")  # masked entries: never among the k lowest
    finite = torch.isfinite(cost).sum(dim=-1)
    k = torch.minimum(torch.randint(0, 11, (6, 40), generator=g), finite)
    rank = cost.argsort(dim=-1, stable=True).argsort(dim=-1)
    assert torch.equal(lowest_k(cost, k, width=10), rank < k[..., None])
    assert not lowest_k(cost, torch.zeros_like(k), width=10).any()


def test_class_cost_is_the_summed_bce_of_the_one_hot_target():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 50, 5, generator=g) * 10  # saturated sigmoids: logs clamped at -100
    labels = torch.randint(0, 5, (2, 3), generator=g)
    probs = logits.sigmoid()
    for b in range(2):
        for j in range(3):
            onehot = F.one_hot(labels[b, j], 5).float().expand(50, 5)
            direct = F.binary_cross_entropy(probs[b], onehot, reduction="none").sum(dim=-1)
            torch.testing.assert_close(class_cost(logits, labels)[b, j], direct, rtol=1e-6, atol=1e-5)
    assert class_cost(torch.full((1, 1, 2), 30.0), torch.tensor([[0]])).item() == pytest.approx(100.0)


def test_batched_box_iou_is_torchvisions_box_iou_per_image():
    g = torch.Generator().manual_seed(2)
    xy = torch.rand(3, 20, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 1 + torch.rand(3, 20, 2, generator=g) * 30], dim=-1)
    iou = batched_box_iou(boxes[:, :5], boxes)
    for b in range(3):
        torch.testing.assert_close(iou[b], box_iou(boxes[b, :5], boxes[b]), rtol=0, atol=1e-7)


# parity with MMDetection 3.3 (tests/reference.py)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parity_with_the_mmdetection_transcription(dtype):
    assigner = SimOTAAssigner()
    anchors = ANCHORS.to(dtype)
    for seed in range(40):
        gt_boxes, gt_labels, logits, pred = random_image(seed, dtype)
        result = assigner.assign(anchors, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred)
        gt_inds, matched_iou, dynamic_k = reference(
            anchors, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred
        )
        assert torch.equal(result.gt_inds, gt_inds), seed
        assert torch.equal(result.details["dynamic_k"], dynamic_k), seed
        assert torch.equal(result.quality, matched_iou), seed
        assert result.quality.dtype == dtype


@pytest.mark.parametrize(
    "options", [{"center_radius": 1.5, "candidate_topk": 4}, {"iou_weight": 1.0, "cls_weight": 2.0}]
)
def test_parity_with_other_options(options):
    assigner = SimOTAAssigner(**options)
    for seed in range(100, 115):
        gt_boxes, gt_labels, logits, pred = random_image(seed)
        result = assigner.assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred)
        expected = reference(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred, **options)
        assert torch.equal(result.gt_inds, expected[0]), seed
        assert torch.equal(result.details["dynamic_k"], expected[2]), seed


@settings(max_examples=40, deadline=None)
@given(gt_boxes=boxes_in_image(IMAGE, min_n=1, max_n=6, min_side=1.0), seed=st.integers(0, 2**16))
def test_invariants_and_parity_on_random_gts(gt_boxes, seed):
    _, gt_labels, logits, pred = random_image(seed, torch.float64)
    gt_labels = torch.arange(len(gt_boxes)) % NUM_CLASSES
    anchors = ANCHORS.double()
    result = SimOTAAssigner().assign(anchors, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred)
    gt_inds, matched_iou, dynamic_k = reference(anchors, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred)
    assert torch.equal(result.gt_inds, gt_inds) and torch.equal(result.quality, matched_iou)
    assert torch.equal(result.details["dynamic_k"], dynamic_k)
    # positives are valid priors; k is between 1 and min(candidate_topk, #valid)
    centres, strides = prior_points(anchors, NUM_LEVEL_ANCHORS)
    valid = valid_prior_mask(
        centres, strides, gt_boxes[None], torch.ones(1, len(gt_boxes), dtype=torch.bool), 2.5
    )
    assert not (result.pos & ~valid[0]).any()
    num_valid = int(valid.sum())
    assert ((dynamic_k >= min(1, num_valid)) & (dynamic_k <= min(10, num_valid))).all()
    assert result.num_pos <= int(dynamic_k.sum())
    # quality = IoU of the positive's predicted box with its GT, 0 elsewhere; max_iou = the anchor's best IoU
    pos = result.pos
    iou = box_iou(pred, gt_boxes)
    torch.testing.assert_close(result.quality[pos], iou[pos, result.gt_inds[pos] - 1], rtol=0, atol=1e-12)
    assert not result.quality[~pos].any()
    torch.testing.assert_close(result.max_iou, box_iou(anchors, gt_boxes).amax(dim=1), rtol=0, atol=1e-12)
    assert torch.equal(result.labels[pos], gt_labels[result.gt_inds[pos] - 1])


# batching, chunking, devices, dtypes


def batch_of_three(seed=0, dtype=torch.float32):
    """Three images with 3, 0 and 5 GTs (image 2's third GT degenerate), and their predictions."""
    images = [random_image(seed + 1000 * b, dtype) for b in range(3)]
    gt_boxes = [images[0][0][:3], images[1][0][:0], torch.cat([images[2][0], images[2][0]])[:5]]
    gt_boxes[2][2] = torch.tensor([30.0, 30.0, 30.0, 50.0], dtype=dtype)  # zero width
    gt_labels = [images[0][1][:3], images[1][1][:0], torch.cat([images[2][1], images[2][1]])[:5]]
    predictions = Predictions(torch.stack([im[2] for im in images]), torch.stack([im[3] for im in images]))
    return gt_boxes, gt_labels, predictions


@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_gives_every_image_exactly_what_it_gets_alone(device):
    gt_boxes, gt_labels, predictions = batch_of_three()
    gt_boxes = [b.to(device) for b in gt_boxes]
    gt_labels = [lab.to(device) for lab in gt_labels]
    predictions = Predictions(predictions.cls_logits.to(device), predictions.boxes.to(device))
    anchors = ANCHORS.to(device)
    assigner = SimOTAAssigner()
    batch = assigner.assign_batch(anchors, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, predictions)
    assert [r.num_gts for r in batch] == [3, 0, 5] and batch[1].num_pos == 0
    assert batch[0].num_pos > 0 and batch[2].num_pos > 0
    assert batch[2].details["dynamic_k"][2].item() == -1 and not (batch[2].gt_inds == 3).any()
    for b, result in enumerate(batch):
        alone = assigner.assign(
            anchors,
            NUM_LEVEL_ANCHORS,
            gt_boxes[b],
            gt_labels[b],
            predictions.cls_logits[b],
            predictions.boxes[b],
        )
        assert_same_result(result, alone)
        assert result.gt_inds.device.type == device


@pytest.mark.parametrize("max_pairs", [1, 126, 2 * 126 + 1, 5 * 126, 2 * 5 * 126])
def test_chunked_equals_unchunked(max_pairs):
    # 126 priors: one GT per piece, one image's 5 GT slots per piece, then whole images
    gt_boxes, gt_labels, predictions = batch_of_three(seed=7)
    whole = SimOTAAssigner().assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, predictions)
    pieces = SimOTAAssigner(max_pairs=max_pairs).assign_batch(
        ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, predictions
    )
    for a, b in zip(whole, pieces, strict=True):
        assert_same_result(a, b)


def test_float64_inputs_work_and_agree_with_float32_on_clear_cases():
    gt_boxes, gt_labels, predictions = batch_of_three(seed=3)
    single_precision = SimOTAAssigner().assign_batch(
        ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, predictions
    )
    double = SimOTAAssigner().assign_batch(
        ANCHORS.double(),
        NUM_LEVEL_ANCHORS,
        [b.double() for b in gt_boxes],
        gt_labels,
        Predictions(predictions.cls_logits.double(), predictions.boxes.double()),
    )
    for a, b in zip(single_precision, double, strict=True):
        assert b.quality.dtype == b.max_iou.dtype == torch.float64
        assert torch.equal(a.gt_inds, b.gt_inds)
        torch.testing.assert_close(a.quality, b.quality.float())


# edge cases and errors


def test_duplicate_gts_all_go_to_the_first():
    # two identical GTs with one class have the same costs everywhere: each takes the same priors, every
    # one of them is shared, and an exact tie goes to the lower GT index
    gt_boxes, gt_labels, logits, pred = random_image(1)
    assigner = SimOTAAssigner()
    alone = assigner.assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes[:1], gt_labels[:1], logits, pred)
    twice = assigner.assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes[[0, 0]], gt_labels[[0, 0]], logits, pred)
    assert alone.num_pos > 1
    assert torch.equal(twice.gt_inds, alone.gt_inds) and torch.equal(twice.quality, alone.quality)
    assert twice.positives_per_gt().tolist() == [alone.num_pos, 0]
    assert torch.equal(
        twice.gt_inds,
        reference(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes[[0, 0]], gt_labels[[0, 0]], logits, pred)[0],
    )


def test_degenerate_gts_are_dropped_and_never_matched():
    gt_boxes, gt_labels, logits, pred = random_image(6)
    flat = torch.tensor([[10.0, 10.0, 40.0, 10.0]])  # zero height
    with_flat = torch.cat([gt_boxes[:1], flat, gt_boxes[1:]])
    labels = torch.cat([gt_labels[:1], torch.tensor([0]), gt_labels[1:]])
    assigner = SimOTAAssigner()
    result = assigner.assign(ANCHORS, NUM_LEVEL_ANCHORS, with_flat, labels, logits, pred)
    without = assigner.assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred)
    renumbered = torch.where(
        without.gt_inds > 1, without.gt_inds + 1, without.gt_inds
    )  # GT k -> k + 1 past 0
    assert torch.equal(result.gt_inds, renumbered) and result.num_gts == len(gt_boxes) + 1
    assert result.details["dynamic_k"][1].item() == -1 and result.details["num_candidates"][1].item() == -1


def test_no_gts_and_no_anchors():
    predictions = Predictions(torch.zeros(2, len(ANCHORS), NUM_CLASSES), ANCHORS[None].repeat(2, 1, 1))
    no_gt = [torch.zeros(0, 4), torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)] * 2
    for result in SimOTAAssigner().assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, *no_gt, predictions):
        assert result.num_gts == 0 and result.neg.all() and not result.quality.any()
        assert result.details["dynamic_k"].shape == (0,)
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    empty = SimOTAAssigner().assign(
        torch.zeros(0, 4), [0, 0], gts, torch.tensor([1]), torch.zeros(0, 3), torch.zeros(0, 4)
    )
    assert empty.gt_inds.shape == empty.quality.shape == empty.max_iou.shape == (0,)
    assert empty.num_gts == 1 and empty.details["dynamic_k"].tolist() == [0]


def test_strides_are_read_from_the_anchors_or_given():
    gt_boxes, gt_labels, logits, pred = random_image(8)
    read = SimOTAAssigner().assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred)
    given_ = SimOTAAssigner(strides=(8, 16, 32)).assign(
        ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred
    )
    assert_same_result(read, given_)
    wider = SimOTAAssigner(strides=(16, 32, 64)).assign(
        ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred
    )
    assert (wider.details["num_candidates"] >= read.details["num_candidates"]).all()
    assert (wider.details["num_candidates"] > read.details["num_candidates"]).any()  # regions twice as wide
    with pytest.raises(ValueError, match=r"strides must give one stride per level \(3\), got \[8.0, 16.0\]"):
        SimOTAAssigner(strides=(8, 16)).assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits, pred)
    with pytest.raises(ValueError, match="pass the strides explicitly"):  # one location: no spacing to read
        SimOTAAssigner().assign(ANCHORS[:1], [1], gt_boxes, gt_labels, logits[:1], pred[:1])


def test_bad_inputs_are_value_errors_that_name_the_image():
    gt_boxes, gt_labels, predictions = batch_of_three()
    assigner = SimOTAAssigner()
    with pytest.raises(ValueError, match=r"SimOTAAssigner .*predictions"):
        assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels)
    logits = predictions.cls_logits.clone()
    logits[1, 17, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^image 1: cls_logits must be finite, .* anchor 17"):
        assigner.assign_batch(
            ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, Predictions(logits, predictions.boxes)
        )
    boxes = predictions.boxes.clone()
    boxes[2, 3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^image 2: pred_boxes must be finite"):
        assigner.assign_batch(
            ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, Predictions(predictions.cls_logits, boxes)
        )
    bad_gts = [gt_boxes[0].clone(), *gt_boxes[1:]]
    bad_gts[0][1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^image 0: gt_boxes must be finite, .* for GT 1"):
        assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, bad_gts, gt_labels, predictions)
    bad_labels = [gt_labels[0], gt_labels[1], torch.tensor([0, 1, 4, 0, 0])]
    with pytest.raises(ValueError, match=r"^image 2: gt_labels must be class ids in \[0, 4\), got 4"):
        assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, bad_labels, predictions)
    with pytest.raises(ValueError, match=r"^image 0: gt_labels must be class ids in \[0, 2\), got 3"):
        SimOTAAssigner(num_classes=2).assign_batch(
            ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, predictions
        )
    with pytest.raises(ValueError, match=r"cls_logits must be \[N=126, C\], got \(125, 4\)"):
        assigner.assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes[0], gt_labels[0], logits[0, :125], boxes[0])
    with pytest.raises(ValueError, match="candidate_topk must be >= 1"):
        SimOTAAssigner(candidate_topk=0)
    with pytest.raises(ValueError, match="max_pairs must be >= 1"):
        SimOTAAssigner(max_pairs=0)


def test_repr():
    assert repr(SimOTAAssigner(strides=[8, 16])) == (
        "SimOTAAssigner(center_radius=2.5, candidate_topk=10, iou_weight=3.0, cls_weight=1.0, "
        "strides=(8.0, 16.0), num_classes=None, max_pairs=16777216)"
    )
