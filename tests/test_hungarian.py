import math
from itertools import permutations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lad_edu.anchors import single
from lad_edu.assign.hungarian import HungarianAssigner, grid_image_size, hungarian_cost
from lad_edu.assign.interface import Predictions
from tests.conftest import DEVICES, boxes_in_image
from tests.reference import hungarian_loop

IMAGE = (96, 128)  # (h, w)
ANCHORS, NUM_LEVEL_ANCHORS = single(strides=(8, 16))(IMAGE)  # 12·16 + 6·8 = 240 anchors
NUM_CLASSES = 5


def random_predictions(num_images, num_anchors, seed, dtype=torch.float64, image=IMAGE):
    """Continuous random logits ``[B, N, C]`` and boxes ``[B, N, 4]`` (no two costs equal)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(num_images, num_anchors, NUM_CLASSES, generator=gen, dtype=dtype) * 2
    height, width = image
    corner = torch.rand(num_images, num_anchors, 2, generator=gen, dtype=dtype) * torch.tensor(
        [width, height], dtype=dtype
    )
    size = 2 + torch.rand(num_images, num_anchors, 2, generator=gen, dtype=dtype) * 50
    return logits, torch.cat([corner, corner + size], dim=-1)


def random_gts(num_gts, seed, dtype=torch.float64, image=IMAGE):
    gen = torch.Generator().manual_seed(seed)
    height, width = image
    corner = (
        torch.rand(num_gts, 2, generator=gen, dtype=dtype) * torch.tensor([width, height], dtype=dtype) * 0.8
    )
    size = 1 + torch.rand(num_gts, 2, generator=gen, dtype=dtype) * 40
    return torch.cat([corner, corner + size], dim=1), torch.randint(0, NUM_CLASSES, (num_gts,), generator=gen)


def f(logit):
    """DINO's focal cost with weight 1 for one logit: ``FL⁺ − FL⁻`` at ``p = sigmoid(logit)``."""
    p = 1 / (1 + math.exp(-logit))
    return -0.25 * (1 - p) ** 2 * math.log(p + 1e-12) + 0.75 * p**2 * math.log(1 - p + 1e-12)


def assert_same_result(a, b):
    assert torch.equal(a.gt_inds, b.gt_inds)
    assert torch.equal(a.labels, b.labels)
    assert torch.equal(a.max_iou, b.max_iou)
    assert a.num_gts == b.num_gts and a.quality is None and b.quality is None
    assert a.details.keys() == b.details.keys()
    for key in a.details:
        assert torch.equal(a.details[key].nan_to_num(-7.0), b.details[key].nan_to_num(-7.0)), key


# hand-worked costs


def test_cost_entries_by_hand():
    # image (h, w) = (100, 200); GT 0 = [20, 10, 60, 50] class 0, GT 1 = [20, 10, 60, 50] class 1
    # anchor 0: logits (ln 3, 0), box [30, 10, 70, 60]; anchor 1: logits (0, ln 3), box [0, 0, 10, 10]
    logits = torch.tensor([[[math.log(3), 0.0], [0.0, math.log(3)]]], dtype=torch.float64)
    preds = torch.tensor([[[30.0, 10, 70, 60], [0, 0, 10, 10]]], dtype=torch.float64)
    gts = torch.tensor([[[20.0, 10, 60, 50], [20, 10, 60, 50]]], dtype=torch.float64)
    cost = hungarian_cost(logits, preds, gts, torch.tensor([[0, 1]]), [(100, 200)])
    # focal, weight 2: p = 0.75 (logit ln 3): 2·(−0.25·0.25²·ln 0.75 + 0.75·0.75²·ln 0.25) = −1.160696
    #   p = 0.5 (logit 0): 2·(−0.25·0.5²·ln 0.5 + 0.75·0.5²·ln 0.5) = −0.25·ln 2 = −0.173287
    lo, hi = -1.160696, -0.25 * math.log(2)
    torch.testing.assert_close(
        cost.cls[0], torch.tensor([[lo, hi], [hi, lo]], dtype=torch.float64), atol=1e-6, rtol=0
    )
    # L1, weight 5, over (w, h, w, h) = (200, 100, 200, 100); GT cxcywh (40, 30, 40, 40) -> (.2, .3, .2, .4)
    #   anchor 0: (50, 35, 40, 50) -> (.25, .35, .2, .5): 5·(.05 + .05 + 0 + .1) = 1.0
    #   anchor 1: (5, 5, 10, 10) -> (.025, .05, .05, .1): 5·(.175 + .25 + .15 + .3) = 4.375
    torch.testing.assert_close(cost.l1[0], torch.tensor([[1.0, 4.375]] * 2, dtype=torch.float64))
    # −GIoU, weight 2: anchor 0: inter 30·40 = 1200, union 2000 + 1600 − 1200 = 2400, hull 50·50 = 2500:
    #   GIoU 0.5 − 100/2500 = 0.46 -> −0.92; anchor 1: inter 0, union 1700, hull 60·50 = 3000:
    #   GIoU −1300/3000 -> +0.866667
    torch.testing.assert_close(
        cost.giou[0], torch.tensor([[-0.92, 2 * 1300 / 3000]] * 2, dtype=torch.float64)
    )
    torch.testing.assert_close(cost.total, cost.cls + cost.l1 + cost.giou)


def test_focal_cost_uses_alpha_and_gamma():
    # gamma = 0, alpha = 0.5: FL⁺ − FL⁻ = 0.5·(−ln p + ln(1 − p)) = −0.5·logit (up to the 1e-12)
    logits = torch.tensor([[[-3.0, 0.5, 2.0]]], dtype=torch.float64)
    box = torch.tensor([[[0.0, 0.0, 4.0, 4.0]]], dtype=torch.float64)
    cost = hungarian_cost(
        logits,
        box,
        box.expand(1, 3, 4),
        torch.tensor([[0, 1, 2]]),
        [(8, 8)],
        cls_weight=3.0,
        focal_alpha=0.5,
        focal_gamma=0.0,
    )
    torch.testing.assert_close(cost.cls[0, :, 0], torch.tensor([4.5, -0.75, -3.0], dtype=torch.float64))


def test_optimal_matching_is_not_greedy():
    # two identical GT boxes of classes 0 and 1, every anchor predicting exactly that box: L1 and GIoU are
    # the same everywhere and the classes decide. With f(x) the focal cost at logit x (f decreases):
    #   f(3) = −2.0747, f(2.5) = −1.6517, f(2) = −1.2371, f(1) = −0.5207, f(−3) = +0.6915
    # logits: anchor 0 (3, 2.5), anchor 1 (2, −3), anchor 2 (−3, 1); both GTs like anchor 0 best.
    # Greedy, GT 0 first: anchor 0 (f(3)) + anchor 2 for GT 1 (f(1)) = −2.595;
    # optimal: anchor 1 for GT 0 (f(2)) + anchor 0 for GT 1 (f(2.5)) = −2.889; the other four matchings:
    # f(2) + f(1) = −1.758, f(3) + f(−3) = −1.383, f(−3) + f(2.5) = −0.960, f(−3) + f(−3) = +1.383.
    assert f(2) + f(2.5) < f(3) + f(1) < f(2) + f(1) < f(3) + f(-3)
    box = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    logits = torch.tensor([[3.0, 2.5], [2.0, -3.0], [-3.0, 1.0]])
    result = HungarianAssigner().assign(
        box.expand(3, 4),
        [3],
        box.repeat(2, 1),
        torch.tensor([0, 1]),
        logits,
        box.expand(3, 4),
        image_size=(40, 40),
    )
    assert result.gt_inds.tolist() == [2, 1, 0]
    assert result.labels.tolist() == [1, 0, -1]
    constant = 2 * -1.0  # L1 0 and −GIoU·2 = −2 for a perfect box
    expected = torch.tensor([2 * f(2) + constant, 2 * f(2.5) + constant])
    torch.testing.assert_close(result.details["matched_cost"], expected, atol=1e-5, rtol=0)


# optimality and one-to-one


@settings(max_examples=50, deadline=None)
@given(
    num_anchors=st.integers(1, 5),
    gt_boxes=boxes_in_image(image_size=(40, 60), min_n=1, max_n=4),
    seed=st.integers(0, 2**31 - 1),
)
def test_matching_is_optimal_and_one_to_one(num_anchors, gt_boxes, seed):
    num_gts = len(gt_boxes)
    logits, preds = random_predictions(1, num_anchors, seed, image=(40, 60))
    labels = torch.randint(0, NUM_CLASSES, (num_gts,), generator=torch.Generator().manual_seed(seed))
    anchors = preds[0]
    result = HungarianAssigner().assign(
        anchors, [num_anchors], gt_boxes, labels, logits[0], preds[0], image_size=(40, 60)
    )

    cost = hungarian_cost(logits, preds, gt_boxes[None], labels[None], [(40, 60)]).total[0]  # [G, N]
    if num_anchors >= num_gts:  # brute force: every GT its own anchor
        best = min(
            sum(cost[j, a] for j, a in enumerate(chosen))
            for chosen in permutations(range(num_anchors), num_gts)
        )
    else:  # every anchor its own GT
        best = min(
            sum(cost[g, i] for i, g in enumerate(chosen))
            for chosen in permutations(range(num_gts), num_anchors)
        )
    matched = result.details["matched_cost"]
    torch.testing.assert_close(matched.nansum(), best)

    assert result.num_pos == min(num_anchors, num_gts)
    assert result.positives_per_gt().max() == 1  # no GT has two anchors, no anchor two GTs (gt_inds is [N])
    assert int(matched.isnan().sum()) == num_gts - result.num_pos  # NaN: exactly the unmatched GTs
    pos = result.pos.nonzero().squeeze(1)
    torch.testing.assert_close(matched[result.gt_inds[pos] - 1], cost[result.gt_inds[pos] - 1, pos])
    assert result.quality is None and not result.ignored.any()


def test_more_gts_than_anchors():
    gt_boxes, gt_labels = random_gts(6, seed=3)
    logits, preds = random_predictions(1, 2, seed=4)
    result = HungarianAssigner().assign(
        preds[0], [2], gt_boxes, gt_labels, logits[0], preds[0], image_size=IMAGE
    )
    assert result.num_pos == 2 and len(set(result.gt_inds.tolist())) == 2  # both anchors, two different GTs
    assert result.positives_per_gt().sum() == 2
    assert result.details["matched_cost"].isnan().sum() == 4  # four GTs get no anchor
    expected, _ = hungarian_loop(logits[0], preds[0], gt_boxes, gt_labels, IMAGE)
    assert result.gt_inds.tolist() == expected.tolist()


def test_duplicate_gts_take_the_two_cheapest_anchors():
    box, label = random_gts(1, seed=5)
    logits, preds = random_predictions(1, len(ANCHORS), seed=6)
    result = HungarianAssigner().assign(
        ANCHORS.double(), NUM_LEVEL_ANCHORS, box.repeat(2, 1), label.repeat(2), logits[0], preds[0]
    )
    # two equal columns: the optimum takes the two cheapest anchors of that column, one per GT
    column = hungarian_cost(logits, preds, box[None], label[None], [IMAGE]).total[0, 0]
    assert set(result.pos.nonzero().flatten().tolist()) == set(column.argsort()[:2].tolist())
    assert sorted(result.gt_inds[result.pos].tolist()) == [1, 2]
    torch.testing.assert_close(result.details["matched_cost"].sort().values, column.sort().values[:2])


# the image size of the L1 term


def test_image_size_from_predictions_or_the_anchor_grid():
    anchors, num_level_anchors = single(strides=(8, 16))((64, 96))  # 8·12 + 4·6 = 120 anchors, 96 wide
    assert grid_image_size(anchors, num_level_anchors) == (64.0, 96.0)
    # one square GT; anchor 3 predicts it shifted 5 px right, anchor 7 shifted 5 px down; everything else is
    # far away. Same logits, same GIoU (by symmetry): only the L1 term differs, 5/w for anchor 3 and 5/h
    # for anchor 7. Image 64 high, 96 wide: anchor 3 wins; an image 96 high, 64 wide: anchor 7 wins.
    gt = torch.tensor([[20.0, 20.0, 40.0, 40.0]])
    preds = torch.tensor([[200.0, 200.0, 210.0, 210.0]]).repeat(len(anchors), 1)
    preds[3] = torch.tensor([25.0, 20.0, 45.0, 40.0])
    preds[7] = torch.tensor([20.0, 25.0, 40.0, 45.0])
    logits = torch.zeros(1, len(anchors), 3)
    assigner = HungarianAssigner()

    def matched_anchor(image_sizes):
        predictions = Predictions(logits, preds[None], image_sizes)
        result = assigner.assign_batch(anchors, num_level_anchors, [gt], [torch.tensor([1])], predictions)[0]
        return result.pos.nonzero().flatten().tolist()

    assert matched_anchor(None) == matched_anchor([(64, 96)]) == [3]
    assert matched_anchor([(96, 64)]) == [7]
    single_image = assigner.assign(
        anchors, num_level_anchors, gt, torch.tensor([1]), logits[0], preds, image_size=(96, 64)
    )
    assert single_image.pos.nonzero().flatten().tolist() == [7]


def test_grid_size_needs_two_locations_on_level_zero():
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    with pytest.raises(ValueError, match="cannot read the image size from the anchors"):
        HungarianAssigner().assign(anchors, [1], anchors, torch.tensor([0]), torch.zeros(1, 1), anchors)
    result = HungarianAssigner().assign(
        anchors, [1], anchors, torch.tensor([0]), torch.zeros(1, 1), anchors, image_size=(8, 8)
    )
    assert result.gt_inds.tolist() == [1]


# parity with MMDetection's per-image code


@settings(max_examples=40, deadline=None)
@given(
    gt_boxes=boxes_in_image(image_size=IMAGE, min_n=0, max_n=8),
    seed=st.integers(0, 2**31 - 1),
    image_size=st.sampled_from([None, (96, 128), (80, 100), (120, 200)]),
)
def test_parity_with_mmdetection(gt_boxes, seed, image_size):
    labels = torch.randint(0, NUM_CLASSES, (len(gt_boxes),), generator=torch.Generator().manual_seed(seed))
    logits, preds = random_predictions(1, len(ANCHORS), seed)
    sizes = None if image_size is None else [image_size]
    result = HungarianAssigner().assign_batch(
        ANCHORS.double(), NUM_LEVEL_ANCHORS, [gt_boxes], [labels], Predictions(logits, preds, sizes)
    )[0]
    expected, cost = hungarian_loop(logits[0], preds[0], gt_boxes, labels, image_size or IMAGE)
    assert result.gt_inds.tolist() == expected.tolist()
    assert result.labels.tolist() == [int(labels[k - 1]) if k > 0 else -1 for k in expected]
    pos = np.nonzero(expected)[0]
    torch.testing.assert_close(
        result.details.get("matched_cost", torch.zeros(0, dtype=torch.float64)),
        torch.from_numpy(cost[pos, expected[pos] - 1][np.argsort(expected[pos])]),
    )


@pytest.mark.parametrize("seed", range(4))
def test_parity_with_mmdetection_in_float32(seed):
    # float32 costs differ from the float64 loop in the last digits only: the same matching
    gt_boxes, gt_labels = random_gts(2 + 2 * seed, seed, dtype=torch.float32)
    logits, preds = random_predictions(1, len(ANCHORS), seed + 100, dtype=torch.float32)
    result = HungarianAssigner().assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits[0], preds[0])
    expected, _ = hungarian_loop(logits[0].double(), preds[0].double(), gt_boxes.double(), gt_labels, IMAGE)
    assert result.gt_inds.tolist() == expected.tolist()
    assert result.details["matched_cost"].dtype == torch.float32


def test_float16_predictions_are_costed_in_float32():
    gt_boxes, gt_labels = random_gts(4, seed=9, dtype=torch.float32)
    logits, preds = random_predictions(1, len(ANCHORS), seed=10, dtype=torch.float16)
    assigner = HungarianAssigner()
    half = assigner.assign(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits[0], preds[0])
    full = assigner.assign(
        ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits[0].float(), preds[0].float()
    )
    assert_same_result(half, full)


# batches, chunks, devices


def batch_inputs(device, dtype=torch.float32):
    """Three images with 3, 0 and 5 GTs (image 2's GT 1 degenerate), sizes given per image."""
    boxes, labels = [], []
    for image, count in enumerate((3, 0, 5)):
        image_boxes, image_labels = random_gts(count, seed=20 + image, dtype=dtype)
        boxes.append(image_boxes.to(device))
        labels.append(image_labels.to(device))
    boxes[2][1] = torch.tensor([30.0, 30.0, 30.0, 50.0])  # zero width
    logits, preds = random_predictions(3, len(ANCHORS), seed=30, dtype=dtype)
    sizes = [(96, 128), (90, 120), (64, 100)]
    return ANCHORS.to(device, dtype), boxes, labels, Predictions(logits.to(device), preds.to(device), sizes)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("with_sizes", [True, False])
def test_batch_equals_per_image(device, with_sizes):
    anchors, boxes, labels, predictions = batch_inputs(device)
    if not with_sizes:
        predictions = Predictions(predictions.cls_logits, predictions.boxes)
    assigner = HungarianAssigner(num_classes=NUM_CLASSES)
    results = assigner.assign_batch(anchors, NUM_LEVEL_ANCHORS, boxes, labels, predictions)
    for b, result in enumerate(results):
        size = predictions.image_sizes[b] if with_sizes else None
        alone = assigner.assign(
            anchors,
            NUM_LEVEL_ANCHORS,
            boxes[b],
            labels[b],
            predictions.cls_logits[b],
            predictions.boxes[b],
            image_size=size,
        )
        assert_same_result(result, alone)
        assert result.gt_inds.device.type == device
    assert [r.num_pos for r in results] == [3, 0, 4]  # image 2: the degenerate GT gets no anchor
    assert results[1].num_gts == 0 and results[1].neg.all()
    assert results[2].positives_per_gt().tolist() == [1, 0, 1, 1, 1]
    assert results[2].details["matched_cost"][1].isnan()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("max_pairs", [1, 7, 2 * 5 * len(ANCHORS)])  # GT by GT; a few GTs; two images
def test_chunked_equals_unchunked(device, max_pairs):
    anchors, boxes, labels, predictions = batch_inputs(device, dtype=torch.float64)
    whole = HungarianAssigner().assign_batch(anchors, NUM_LEVEL_ANCHORS, boxes, labels, predictions)
    chunked = HungarianAssigner(max_pairs=max_pairs).assign_batch(
        anchors, NUM_LEVEL_ANCHORS, boxes, labels, predictions
    )
    for a, b in zip(whole, chunked, strict=True):
        assert_same_result(a, b)
    assert whole[0].details["matched_cost"].dtype == torch.float64


def test_degenerate_gt_is_never_matched_and_the_rest_renumbered():
    gt_boxes, gt_labels = random_gts(4, seed=40)
    logits, preds = random_predictions(1, len(ANCHORS), seed=41)
    with_degenerate = torch.cat(
        [gt_boxes[:2], torch.tensor([[50.0, 50.0, 70.0, 50.0]], dtype=torch.float64), gt_boxes[2:]]
    )
    labels = torch.cat([gt_labels[:2], torch.tensor([0]), gt_labels[2:]])
    assigner = HungarianAssigner()
    result = assigner.assign(
        ANCHORS.double(), NUM_LEVEL_ANCHORS, with_degenerate, labels, logits[0], preds[0]
    )
    clean = assigner.assign(ANCHORS.double(), NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, logits[0], preds[0])
    renumber = torch.tensor([0, 1, 2, 4, 5])  # clean GT k (1-based) is GT renumber[k] here
    assert torch.equal(result.gt_inds, renumber[clean.gt_inds])
    assert result.num_gts == 5 and result.positives_per_gt().tolist() == [1, 1, 0, 1, 1]
    assert result.details["matched_cost"][2].isnan()
    torch.testing.assert_close(result.details["matched_cost"][[0, 1, 3, 4]], clean.details["matched_cost"])


# edge cases and errors


def test_zero_gts_and_zero_anchors():
    logits, preds = random_predictions(2, len(ANCHORS), seed=50)
    no_gt = torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    results = HungarianAssigner().assign_batch(
        ANCHORS.double(), NUM_LEVEL_ANCHORS, [no_gt[0]] * 2, [no_gt[1]] * 2, Predictions(logits, preds)
    )
    for result in results:
        assert result.num_gts == 0 and result.neg.all() and len(result.gt_inds) == len(ANCHORS)
        assert (result.labels == -1).all() and (result.max_iou == 0).all()

    gt_boxes, gt_labels = random_gts(3, seed=51)
    empty = HungarianAssigner().assign(
        torch.zeros(0, 4, dtype=torch.float64),
        [0],
        gt_boxes,
        gt_labels,
        torch.zeros(0, NUM_CLASSES),
        torch.zeros(0, 4),
    )
    assert len(empty.gt_inds) == 0 and empty.num_gts == 3


def test_non_finite_predictions_and_gts_are_errors():
    anchors, boxes, labels, predictions = batch_inputs("cpu")
    assigner = HungarianAssigner()
    logits = predictions.cls_logits.clone()
    logits[2, 17, 1] = float("nan")
    with pytest.raises(ValueError, match=r"^image 2: cls_logits must be finite, got .* at anchor 17"):
        assigner.assign_batch(
            anchors, NUM_LEVEL_ANCHORS, boxes, labels, Predictions(logits, predictions.boxes)
        )
    with pytest.raises(ValueError, match=r"^image 0: cls_logits must be finite"):  # alone: a batch of one
        assigner.assign(anchors, NUM_LEVEL_ANCHORS, boxes[2], labels[2], logits[2], predictions.boxes[2])
    pred_boxes = predictions.boxes.clone()
    pred_boxes[0, 3, 2] = float("inf")
    with pytest.raises(ValueError, match=r"^image 0: pred_boxes must be finite, got .* at anchor 3"):
        assigner.assign_batch(
            anchors, NUM_LEVEL_ANCHORS, boxes, labels, Predictions(predictions.cls_logits, pred_boxes)
        )
    # image 1 has no GT, but a NaN in its predictions still says the network diverged: an error
    logits = predictions.cls_logits.clone()
    logits[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^image 1: cls_logits must be finite"):
        assigner.assign_batch(
            anchors, NUM_LEVEL_ANCHORS, boxes, labels, Predictions(logits, predictions.boxes)
        )

    bad_gts = [b.clone() for b in boxes]
    bad_gts[2][3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"^image 2: gt_boxes must be finite, got .* for GT 3"):
        assigner.assign_batch(anchors, NUM_LEVEL_ANCHORS, bad_gts, labels, predictions)


def test_argument_errors():
    anchors, boxes, labels, predictions = batch_inputs("cpu")
    with pytest.raises(ValueError, match="HungarianAssigner scores anchors with a network's predictions"):
        HungarianAssigner().assign_batch(anchors, NUM_LEVEL_ANCHORS, boxes, labels)
    fours = [torch.full_like(lab, 4) for lab in labels]
    with pytest.raises(ValueError, match=r"^image 0: gt_labels must be class ids in \[0, 3\), got 4"):
        HungarianAssigner(num_classes=3).assign_batch(anchors, NUM_LEVEL_ANCHORS, boxes, fours, predictions)
    narrow = Predictions(predictions.cls_logits[..., :2], predictions.boxes)  # C = 2: no class 4
    with pytest.raises(ValueError, match=r"^image 0: gt_labels must be class ids in \[0, 2\), got 4"):
        HungarianAssigner(num_classes=5).assign_batch(anchors, NUM_LEVEL_ANCHORS, boxes, fours, narrow)
    with pytest.raises(ValueError, match=r"^image 0: image_size must be a positive \(h, w\)"):
        sizes = [(0, 10)] * 3
        HungarianAssigner().assign_batch(
            anchors,
            NUM_LEVEL_ANCHORS,
            boxes,
            labels,
            Predictions(predictions.cls_logits, predictions.boxes, sizes),
        )
    with pytest.raises(ValueError, match=r"pred_boxes must be \[N=240, 4\]"):
        HungarianAssigner().assign(
            anchors, NUM_LEVEL_ANCHORS, boxes[0], labels[0], predictions.cls_logits[0], predictions.boxes
        )
    with pytest.raises(ValueError, match="max_pairs must be >= 1"):
        HungarianAssigner(max_pairs=0)
    with pytest.raises(ValueError, match="weights must be >= 0"):
        HungarianAssigner(l1_weight=-1.0)


def test_repr_and_interface():
    assert HungarianAssigner.uses_predictions is True
    assert repr(HungarianAssigner(num_classes=80, max_pairs=1024)) == (
        "HungarianAssigner(cls_weight=2.0, l1_weight=5.0, giou_weight=2.0, focal_alpha=0.25, "
        "focal_gamma=2.0, "
        "num_classes=80, max_pairs=1024)"
    )
