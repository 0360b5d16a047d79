import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lad_edu.anchors import retinanet, single
from lad_edu.assign import ATSSAssigner
from lad_edu.assign.atss import nearest_k
from lad_edu.boxes import box_centers, box_iou, centers_inside
from tests.conftest import DEVICES, boxes_in_image
from tests.reference import atss_loop

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
LABEL = torch.tensor([4])


def strip(height):
    """An anchor ``[0, 0, 10, height]`` inside GT ``[0, 0, 10, 10]``: IoU ``height / 10``, centre inside."""
    return [0.0, 0.0, 10.0, height]


def test_threshold_uses_the_unbiased_std():
    # one level of 5 anchors (topk 9 > 5: all are candidates) with IoU 0.1, 0.2, 0.3, 0.56, 0.6
    anchors = torch.tensor([strip(h) for h in (1.0, 2.0, 3.0, 5.6, 6.0)], dtype=torch.float64)
    result = ATSSAssigner().assign(anchors, [5], GT.double(), LABEL)
    ious = np.array([0.1, 0.2, 0.3, 0.56, 0.6])
    assert ious.mean() + ious.std(ddof=0) < 0.56 < ious.mean() + ious.std(ddof=1)  # ddof=0 would take 0.56
    assert result.gt_inds.tolist() == [0, 0, 0, 0, 1]
    assert result.labels.tolist() == [-1, -1, -1, -1, 4]
    torch.testing.assert_close(
        result.details["threshold"], torch.tensor([0.352 + 0.22027], dtype=torch.float64), atol=1e-5, rtol=0
    )


def test_centre_must_lie_strictly_inside_the_gt():
    # two candidates with high IoU; the one whose centre sits on the GT's right edge is rejected
    on_edge = [2.0, 0.0, 18.0, 10.0]  # centre x = 10 = GT's x2, IoU 8/18
    inside = [0.0, 0.0, 10.0, 4.5]  # centre inside, IoU 0.45
    far = [[100.0 + 20 * i, 0.0, 110.0 + 20 * i, 10.0] for i in range(7)]  # IoU 0
    anchors = torch.tensor([on_edge, inside, *far])
    result = ATSSAssigner().assign(anchors, [9], GT, LABEL)
    threshold = result.details["threshold"].item()
    assert threshold < 8 / 18 < 0.45  # both clear the threshold ...
    assert result.gt_inds.tolist() == [0, 1] + [0] * 7  # ... but only one centre is inside


def test_topk_larger_than_a_level_takes_the_whole_level():
    anchors, num_level_anchors = single(strides=(8, 16, 32))((48, 48))  # 36, 9 and 4 anchors
    result = ATSSAssigner(topk=9).assign(
        anchors, num_level_anchors, torch.tensor([[4.0, 4.0, 40.0, 44.0]]), LABEL
    )
    candidates = result.details["candidates"][:, 0]
    assert len(candidates) == 9 + 9 + 4
    assert set(candidates[18:].tolist()) == set(range(45, 49))  # the whole last level
    assert torch.equal(
        result.gt_inds, atss_reference(anchors, num_level_anchors, torch.tensor([[4.0, 4.0, 40.0, 44.0]]))
    )


def test_a_single_candidate_has_no_std_and_gives_no_positive():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    result = ATSSAssigner().assign(anchors, [1], GT, LABEL)
    assert result.gt_inds.tolist() == [0]
    assert result.details["threshold"].isinf().all()


def test_conflict_goes_to_the_gt_with_the_higher_iou_and_exact_ties_to_the_lower_index():
    anchors = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], *[[100.0 + 20 * i, 0.0, 110.0 + 20 * i, 10.0] for i in range(4)]]
    )
    gts = torch.tensor([[1.0, 1.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])  # anchor 0: IoU 0.81 and 1.0
    result = ATSSAssigner().assign(anchors, [5], gts, torch.tensor([0, 1]))
    assert result.gt_inds.tolist() == [2, 0, 0, 0, 0]
    twins = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])  # a duplicate GT
    result = ATSSAssigner().assign(anchors, [5], twins, torch.tensor([0, 1]))
    assert result.gt_inds.tolist() == [1, 0, 0, 0, 0]


def test_tiny_gt_between_anchor_centres_gets_no_positive():
    anchors, num_level_anchors = single()((64, 64))
    tiny = torch.tensor([[2.0, 2.0, 6.0, 6.0]])  # stride-8 centres lie on multiples of 8
    result = ATSSAssigner().assign(anchors, num_level_anchors, tiny, LABEL)
    assert result.num_pos == 0


def test_tied_candidates_just_below_mean_plus_std():
    # a 48x48 GT on the grid of 64 px anchors: all 9 stride-8 candidates contain it (IoU 0.5625 each)
    anchors, num_level_anchors = single(strides=(8, 16))((64, 64))
    result = ATSSAssigner().assign(anchors, num_level_anchors, torch.tensor([[8.0, 8.0, 56.0, 56.0]]), LABEL)
    assert result.num_pos == 0
    assert result.details["threshold"].item() > result.details["candidate_iou"][:9, 0].max().item()


def test_no_gt_and_no_anchor():
    anchors, num_level_anchors = single(strides=(8,))((16, 16))
    result = ATSSAssigner().assign(
        anchors, num_level_anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    )
    assert result.gt_inds.tolist() == [0] * 4 and result.num_gts == 0
    empty = ATSSAssigner().assign(torch.zeros(0, 4), [0, 0], GT, LABEL)
    assert empty.gt_inds.shape == (0,) and empty.num_gts == 1


def test_zero_area_gt_gets_nothing_and_changes_nothing():
    anchors, num_level_anchors = single(strides=(8, 16, 32))((96, 96))
    gts = torch.tensor([[10.0, 12.0, 50.0, 40.0], [40.0, 40.0, 90.0, 94.0]])
    alone = ATSSAssigner().assign(anchors, num_level_anchors, gts, torch.tensor([0, 1]))
    with_zero = torch.cat([gts[:1], torch.tensor([[30.0, 30.0, 30.0, 60.0]]), gts[1:]])
    result = ATSSAssigner().assign(anchors, num_level_anchors, with_zero, torch.tensor([0, 7, 1]))
    expected = torch.where(alone.gt_inds == 2, 3, alone.gt_inds)
    assert torch.equal(result.gt_inds, expected)
    assert result.details["threshold"][1].isnan() and (result.details["candidates"][:, 1] == -1).all()


@pytest.mark.parametrize(
    "num_level_anchors, message",
    [([3, 4], "sum to the number of anchors"), ([5, -1, 2], "non-negative")],
)
def test_bad_num_level_anchors_raises(num_level_anchors, message):
    anchors, _ = single(strides=(8,))((16, 24))  # 6 anchors
    with pytest.raises(ValueError, match=message):
        ATSSAssigner().assign(anchors, num_level_anchors, GT, LABEL)


def test_bad_topk_raises():
    with pytest.raises(ValueError, match="topk"):
        ATSSAssigner(topk=0)


def atss_reference(anchors, num_level_anchors, gts, topk=9):
    iou = box_iou(anchors, gts).numpy()
    return torch.from_numpy(
        atss_loop(iou, box_centers(anchors).numpy(), gts.numpy(), num_level_anchors, topk)
    )


@settings(max_examples=60, deadline=None)
@given(gts=boxes_in_image(min_n=1, max_n=8), topk=st.sampled_from([1, 3, 9]), nine=st.booleans())
def test_matches_the_per_gt_reference_loop(gts, topk, nine):
    generator = retinanet(strides=(8, 16, 32)) if nine else single(strides=(8, 16, 32))
    anchors, num_level_anchors = generator((96, 128), dtype=torch.float64)
    result = ATSSAssigner(topk=topk).assign(anchors, num_level_anchors, gts, torch.arange(len(gts)))
    assert torch.equal(result.gt_inds, atss_reference(anchors, num_level_anchors, gts, topk))


@settings(max_examples=60, deadline=None)
@given(gts=boxes_in_image(min_n=1, max_n=8))
def test_every_positive_centre_lies_inside_its_gt(gts):
    anchors, num_level_anchors = single(strides=(8, 16, 32))((96, 128), dtype=torch.float64)
    result = ATSSAssigner().assign(anchors, num_level_anchors, gts, torch.zeros(len(gts), dtype=torch.long))
    pos = result.pos
    own_gt = gts[result.gt_inds[pos] - 1]
    assert centers_inside(box_centers(anchors[pos]), own_gt).all()
    assert (result.gt_inds >= 0).all()  # ATSS never ignores


@settings(max_examples=60, deadline=None)
@given(gts=boxes_in_image(min_n=2, max_n=8), seed=st.integers(0, 2**16))
def test_gt_order_does_not_matter_except_for_exact_iou_ties(gts, seed):
    anchors, num_level_anchors = single(strides=(8, 16, 32))((96, 128), dtype=torch.float64)
    perm = torch.randperm(len(gts), generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(len(gts))
    a = ATSSAssigner().assign(anchors, num_level_anchors, gts, labels)
    b = ATSSAssigner().assign(anchors, num_level_anchors, gts[perm], labels[perm])
    top2 = box_iou(anchors, gts).topk(2, dim=1).values
    unambiguous = top2[:, 0] > top2[:, 1]
    assert torch.equal(a.labels[unambiguous], b.labels[unambiguous])


@pytest.mark.parametrize("device", DEVICES)
def test_keeps_the_device_and_agrees_with_cpu(device):
    anchors, num_level_anchors = single(strides=(8, 16, 32))((96, 96))
    gts = torch.tensor([[10.0, 12.0, 50.0, 40.0], [40.0, 40.0, 90.0, 94.0], [60.0, 5.0, 70.0, 30.0]])
    labels = torch.tensor([0, 1, 2])
    cpu = ATSSAssigner().assign(anchors, num_level_anchors, gts, labels)
    other = ATSSAssigner().assign(anchors.to(device), num_level_anchors, gts.to(device), labels.to(device))
    assert other.gt_inds.device.type == device
    assert torch.equal(other.gt_inds.cpu(), cpu.gt_inds)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 40), g=st.integers(1, 5), data=st.data())
def test_nearest_k_equals_a_stable_sort_even_with_many_ties(n, g, data):
    k = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 2**16))
    distances = torch.randint(0, 4, (n, g), generator=torch.Generator().manual_seed(seed)).float()
    expected = distances.sort(dim=0, stable=True).indices[:k].sort(dim=0).values
    assert torch.equal(nearest_k(distances, k), expected)
