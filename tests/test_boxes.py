import math

import pytest
import torch
from hypothesis import given, settings

from lad_edu.boxes import (
    DeltaXYWHCoder,
    aligned_box_giou,
    aligned_box_iou,
    box_centers,
    box_giou,
    box_iou,
    centers_inside,
    check_boxes,
    valid_box_mask,
)
from tests.conftest import boxes_in_image


def iou_brute(a, b):
    """IoU of two xyxy boxes with plain Python floats, MMDetection's ``overlap / max(union, eps)``."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-6)


def giou_brute(a, b):
    hull = (max(a[2], b[2]) - min(a[0], b[0])) * (max(a[3], b[3]) - min(a[1], b[1]))
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - iw * ih
    return iw * ih / union - (hull - union) / hull


@settings(max_examples=50, deadline=None)
@given(boxes_in_image(min_n=1), boxes_in_image(min_n=1))
def test_iou_and_giou_match_brute_force(a, b):
    expected_iou = torch.tensor(
        [[iou_brute(x, y) for y in b.tolist()] for x in a.tolist()], dtype=torch.float64
    )
    expected_giou = torch.tensor(
        [[giou_brute(x, y) for y in b.tolist()] for x in a.tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(box_iou(a, b), expected_iou)
    torch.testing.assert_close(box_giou(a, b), expected_giou)


@settings(max_examples=30, deadline=None)
@given(boxes_in_image(min_n=1, max_n=6), boxes_in_image(min_n=6, max_n=6))
def test_aligned_iou_and_giou_are_the_diagonal_of_the_pairwise_ones(a, b):
    b = b[: len(a)]
    torch.testing.assert_close(aligned_box_iou(a, b), box_iou(a, b).diagonal())
    torch.testing.assert_close(aligned_box_giou(a, b), box_giou(a, b).diagonal())


def test_iou_hand_worked():
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    b = torch.tensor([[5.0, 0.0, 15.0, 10.0], [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[50 / 150, 1.0, 0.0]]))
    # GIoU of disjoint boxes is negative: hull 30x30 = 900, union 200 -> 0 - 700/900
    torch.testing.assert_close(box_giou(a, b)[0, 2], torch.tensor(-700 / 900))


def test_zero_area_boxes_give_zero_not_nan():
    zero_w = torch.tensor([[3.0, 3.0, 3.0, 8.0]])
    point = torch.tensor([[3.0, 3.0, 3.0, 3.0]])
    normal = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    for a, b in [(zero_w, normal), (zero_w, zero_w), (point, point), (point, zero_w)]:
        assert box_iou(a, b).item() == 0.0
        assert not torch.isnan(box_giou(a, b)).any()
    assert box_giou(point, point).item() == 0.0


def test_box_centers():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 20.0], [2.0, 4.0, 4.0, 4.0]])
    torch.testing.assert_close(box_centers(boxes), torch.tensor([[5.0, 10.0], [3.0, 4.0]]))


def test_centers_inside_is_strict_by_eps():
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    points = torch.tensor([[5.0, 5.0], [10.0, 5.0], [9.995, 5.0], [9.98, 5.0], [0.0, 0.0], [-1.0, 5.0]])
    inside = centers_inside(points[:, None], box[None])  # [6, 1]
    assert inside.squeeze(1).tolist() == [True, False, False, True, False, False]
    assert centers_inside(points[:, None], box[None], eps=0.0)[2, 0]  # 9.995 is inside without the margin


def test_centers_inside_broadcasts_pairwise_and_aligned():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    points = torch.tensor([[5.0, 5.0], [25.0, 25.0], [15.0, 15.0]])
    pairwise = centers_inside(points[:, None], boxes[None])
    assert pairwise.tolist() == [[True, False], [False, True], [False, False]]
    aligned = centers_inside(points[:2], boxes)  # point i against box i
    assert aligned.tolist() == [True, True]
    zero_width = torch.tensor([[5.0, 0.0, 5.0, 10.0]])
    assert not centers_inside(torch.tensor([[5.0, 5.0]]), zero_width).any()


def test_valid_box_mask():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # fine
            [0.0, 0.0, 0.0, 10.0],  # zero width
            [0.0, 0.0, 10.0, 0.0],  # zero height
            [10.0, 0.0, 0.0, 10.0],  # inverted
            [0.0, 0.0, float("nan"), 10.0],
            [0.0, 0.0, float("inf"), 10.0],
            [0.0, 0.0, 0.5, 10.0],  # thin
        ]
    )
    assert valid_box_mask(boxes).tolist() == [True, False, False, False, False, False, True]
    assert valid_box_mask(boxes, min_size=1.0).tolist() == [True] + [False] * 6


@pytest.mark.parametrize(
    "bad, message",
    [
        ([[0, 0, 1, 1]], "floating-point"),
        (torch.zeros(3, 5), r"shape \[n, 4\]"),
        (torch.zeros(4), r"shape \[n, 4\]"),
        ("boxes", "torch.Tensor"),
    ],
)
def test_check_boxes_errors_name_the_argument(bad, message):
    bad = torch.tensor(bad) if isinstance(bad, list) else bad
    with pytest.raises(ValueError, match=message) as info:
        check_boxes(bad, "gt_boxes")
    assert "gt_boxes" in str(info.value)


def test_delta_encode_hand_worked():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    gt = torch.tensor([[5.0, 5.0, 15.0, 25.0]])  # centre (10, 15), 10 x 20
    deltas = DeltaXYWHCoder().encode(anchors, gt)
    torch.testing.assert_close(deltas, torch.tensor([[0.5, 1.0, 0.0, math.log(2.0)]]))
    coder = DeltaXYWHCoder(means=(0.1, 0.0, 0.0, 0.0), stds=(0.1, 0.1, 0.2, 0.2))
    torch.testing.assert_close(
        coder.encode(anchors, gt), torch.tensor([[4.0, 10.0, 0.0, math.log(2.0) / 0.2]])
    )


@settings(max_examples=50, deadline=None)
@given(boxes_in_image(min_n=1, max_n=6), boxes_in_image(min_n=6, max_n=6))
def test_delta_roundtrip(gts, anchors):
    gts = gts.repeat(6, 1)[:6]
    coder = DeltaXYWHCoder(means=(0.0, 0.1, -0.1, 0.0), stds=(0.1, 0.1, 0.2, 0.2), wh_ratio_clip=1e-6)
    torch.testing.assert_close(coder.decode(anchors, coder.encode(anchors, gts)), gts)


def test_decode_clamps_dw_dh_and_clips_to_image():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    huge = torch.tensor([[0.0, 0.0, 100.0, -100.0]])
    boxes = DeltaXYWHCoder().decode(anchors, huge)
    max_ratio = abs(math.log(16 / 1000))
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    torch.testing.assert_close(widths, torch.tensor([10 * math.exp(max_ratio)]))
    torch.testing.assert_close(heights, torch.tensor([10 * math.exp(-max_ratio)]))
    clipped = DeltaXYWHCoder().decode(anchors, huge, max_shape=(40, 60))
    assert clipped[:, 0::2].min() >= 0 and clipped[:, 0::2].max() <= 60
    assert clipped[:, 1::2].min() >= 0 and clipped[:, 1::2].max() <= 40
