import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lad_edu.anchors import retinanet, single
from lad_edu.assign import AssignResult, ATSSAssigner, FixedIoUAssigner
from lad_edu.assign.fixed_iou import max_iou_assign
from lad_edu.boxes import box_iou
from tests.conftest import DEVICES, boxes_in_image
from tests.reference import max_iou_loop

RETINA = {"pos_iou_thr": 0.5, "neg_iou_thr": 0.4}


def test_docstring_example_later_gt_overwrites_an_earlier_positive():
    iou = torch.tensor([[0.70, 0.45, 0.10, 0.30], [0.60, 0.20, 0.35, 0.30]])
    gt_inds, max_iou, low_quality = max_iou_assign(iou, **RETINA)
    # a0 is GT 0's positive by threshold (0.70), then GT 1's low-quality match takes it; a1 is in the band.
    assert gt_inds.tolist() == [2, -1, 0, 0]
    assert low_quality.tolist() == [True, False, False, False]
    torch.testing.assert_close(max_iou, torch.tensor([0.70, 0.45, 0.35, 0.30]))


def test_ignore_band_is_half_open():
    iou = torch.tensor([[0.55, 0.45, 0.39, 0.40, 0.50]])
    gt_inds, _, _ = max_iou_assign(iou, **RETINA)
    assert gt_inds.tolist() == [1, -1, 0, -1, 1]  # 0.4 is ignored, 0.5 is positive


def test_low_quality_match_below_the_negative_threshold():
    iou = torch.tensor([[0.30, 0.10, 0.20]])
    assert max_iou_assign(iou, **RETINA)[0].tolist() == [1, 0, 0]
    assert max_iou_assign(iou, **RETINA, match_low_quality=False)[0].tolist() == [0, 0, 0]
    assert max_iou_assign(iou, **RETINA, min_pos_iou=0.35)[0].tolist() == [0, 0, 0]


def test_exact_ties_of_a_gts_best_iou_are_all_taken():
    iou = torch.tensor([[0.30, 0.10, 0.30, 0.20]])
    assert max_iou_assign(iou, **RETINA)[0].tolist() == [1, 0, 1, 0]
    assert max_iou_assign(iou, **RETINA, gt_max_assign_all=False)[0].tolist() == [1, 0, 0, 0]


def test_exact_tie_from_geometry():
    # a GT straddling two anchors symmetrically overlaps both equally (IoU 12 / 112)
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0], [40.0, 0.0, 50.0, 10.0]])
    gt = torch.tensor([[8.0, 2.0, 12.0, 8.0]])
    result = FixedIoUAssigner().assign(anchors, gt, torch.tensor([7]))
    assert result.gt_inds.tolist() == [1, 1, 0]
    assert result.labels.tolist() == [7, 7, -1]
    assert result.details["low_quality"].tolist() == [True, True, False]


def test_two_band_negative_threshold():
    iou = torch.tensor([[0.05, 0.20, 0.45, 0.90]])
    gt_inds, _, _ = max_iou_assign(iou, pos_iou_thr=0.5, neg_iou_thr=(0.1, 0.4), match_low_quality=False)
    assert gt_inds.tolist() == [-1, 0, -1, 1]


def test_positive_goes_to_the_best_gt_and_labels_follow():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 30.0, 10.0], [100.0, 100.0, 110.0, 110.0]])
    gts = torch.tensor([[1.0, 0.0, 11.0, 10.0], [20.0, 0.0, 30.0, 10.0]])
    result = FixedIoUAssigner().assign(anchors, gts, torch.tensor([3, 5]))
    assert result.gt_inds.tolist() == [1, 2, 0]
    assert result.labels.tolist() == [3, 5, -1]
    assert result.positives_per_gt().tolist() == [1, 1]
    assert result.pos.tolist() == [True, True, False] and result.neg.tolist() == [False, False, True]


def test_no_gt_gives_all_negative():
    anchors, _ = single(strides=(8, 16))((32, 32))
    result = FixedIoUAssigner().assign(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert result.gt_inds.tolist() == [0] * len(anchors)
    assert result.labels.tolist() == [-1] * len(anchors)
    assert result.max_iou.abs().sum() == 0 and result.num_gts == 0


def test_no_anchors_gives_an_empty_result():
    result = FixedIoUAssigner().assign(
        torch.zeros(0, 4), torch.tensor([[0.0, 0.0, 5.0, 5.0]]), torch.tensor([1])
    )
    assert result.gt_inds.shape == (0,) and result.labels.shape == (0,) and result.max_iou.shape == (0,)
    assert result.num_gts == 1


def scene():
    """An image with 3 real GTs (the fourth, appended by tests, is degenerate)."""
    anchors, _ = retinanet(strides=(8, 16, 32))((96, 96))
    gts = torch.tensor([[10.0, 12.0, 50.0, 40.0], [40.0, 40.0, 90.0, 94.0], [60.0, 5.0, 70.0, 30.0]])
    return anchors, gts, torch.tensor([0, 1, 2])


def test_zero_area_gt_is_dropped_by_default_but_captures_everything_in_the_reference_mode():
    anchors, gts, labels = scene()
    without = FixedIoUAssigner().assign(anchors, gts, labels)
    degenerate = torch.tensor([[30.0, 30.0, 30.0, 50.0]])  # zero width, appended last
    gts4, labels4 = torch.cat([gts, degenerate]), torch.cat([labels, torch.tensor([3])])

    ours = FixedIoUAssigner().assign(anchors, gts4, labels4)
    assert torch.equal(ours.gt_inds, without.gt_inds)
    assert ours.num_gts == 4 and ours.positives_per_gt().tolist()[3] == 0

    reference = FixedIoUAssigner(drop_degenerate_gts=False).assign(anchors, gts4, labels4)
    assert (reference.gt_inds == 4).all()  # every anchor ties at IoU 0 with the degenerate GT
    assert reference.positives_per_gt().tolist() == [0, 0, 0, len(anchors)]


def test_degenerate_gt_in_the_middle_keeps_the_numbering():
    anchors, gts, labels = scene()
    inverted = torch.tensor([[50.0, 50.0, 40.0, 60.0]])
    gts_mid = torch.cat([gts[:1], inverted, gts[1:]])
    labels_mid = torch.tensor([0, 9, 1, 2])
    result = FixedIoUAssigner().assign(anchors, gts_mid, labels_mid)
    expected = FixedIoUAssigner().assign(anchors, gts, labels).gt_inds
    expected = torch.where(expected > 1, expected + 1, expected)  # GTs 1, 2 are now 2, 3
    assert torch.equal(result.gt_inds, expected)
    assert 9 not in result.labels.tolist()


def test_gt_overlapping_no_anchor_takes_no_low_quality_match():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [10.0, 0.0, 20.0, 10.0]])
    far = torch.tensor([[100.0, 100.0, 110.0, 110.0]])
    assert FixedIoUAssigner().assign(anchors, far, torch.tensor([0])).gt_inds.tolist() == [0, 0]
    reference = FixedIoUAssigner(drop_degenerate_gts=False).assign(anchors, far, torch.tensor([0]))
    assert reference.gt_inds.tolist() == [1, 1]


@pytest.mark.parametrize(
    "anchors, gts, labels, message",
    [
        (torch.zeros(3, 5), torch.zeros(1, 4), torch.zeros(1, dtype=torch.long), "anchors"),
        (
            torch.zeros(3, 4),
            torch.zeros(1, 4, dtype=torch.long),
            torch.zeros(1, dtype=torch.long),
            "gt_boxes",
        ),
        (torch.zeros(3, 4), torch.zeros(1, 4), torch.zeros(1), "gt_labels must be an integer"),
        (torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(1, dtype=torch.long), "2 boxes"),
        (torch.zeros(3, 4), torch.zeros(1, 4), torch.zeros(1, 1, dtype=torch.long), "1-D"),
    ],
)
def test_bad_input_raises_value_error(anchors, gts, labels, message):
    with pytest.raises(ValueError, match=message):
        FixedIoUAssigner().assign(anchors, gts, labels)


assigner_options = st.fixed_dictionaries(
    {
        "pos_iou_thr": st.sampled_from([0.5, 0.1, 0.7]),
        "min_pos_iou": st.sampled_from([0.0, 0.2]),
        "match_low_quality": st.booleans(),
        "gt_max_assign_all": st.booleans(),
    }
)


@settings(max_examples=60, deadline=None)
@given(gts=boxes_in_image(min_n=1, max_n=8), options=assigner_options)
def test_matches_the_sequential_reference_loop(gts, options):
    anchors, _ = retinanet(strides=(8, 16, 32))((96, 128), dtype=torch.float64)
    neg = min(0.4, options["pos_iou_thr"])
    result = FixedIoUAssigner(neg_iou_thr=neg, **options).assign(anchors, gts, torch.arange(len(gts)))
    expected = max_iou_loop(
        box_iou(gts, anchors).numpy(),
        neg_thr=neg,
        **{k.replace("_iou_thr", "_thr"): v for k, v in options.items()},
    )
    assert result.gt_inds.tolist() == expected.tolist()


@settings(max_examples=60, deadline=None)
@given(gts=boxes_in_image(min_n=1, max_n=8))
def test_every_positive_clears_the_threshold_or_is_a_best_match(gts):
    anchors, _ = retinanet(strides=(8, 16, 32))((96, 128), dtype=torch.float64)
    result = FixedIoUAssigner().assign(anchors, gts, torch.zeros(len(gts), dtype=torch.long))
    iou = box_iou(gts, anchors)  # [G, N]
    pos = result.pos.nonzero().squeeze(1)
    own_iou = iou[result.gt_inds[pos] - 1, pos]
    is_best = own_iou == iou.max(dim=1).values[result.gt_inds[pos] - 1]
    assert ((own_iou >= 0.5) | is_best).all()
    assert (result.max_iou[result.neg] < 0.4).all()
    band = result.max_iou[result.ignored]
    assert ((band >= 0.4) & (band < 0.5)).all()
    # low-quality matches leave a GT without a positive only when a later GT took all its best anchors
    best = iou == iou.max(dim=1, keepdim=True).values  # [G, N]
    has_own_best_anchor = (best & (best.sum(dim=0) == 1)).any(dim=1)
    assert (result.positives_per_gt()[has_own_best_anchor] > 0).all()


@settings(max_examples=60, deadline=None)
@given(gts=boxes_in_image(min_n=2, max_n=8), seed=st.integers(0, 2**16))
def test_gt_order_does_not_matter_except_for_documented_ties(gts, seed):
    anchors, _ = retinanet(strides=(8, 16, 32))((96, 128), dtype=torch.float64)
    perm = torch.randperm(len(gts), generator=torch.Generator().manual_seed(seed))
    labels = torch.arange(len(gts))
    a = FixedIoUAssigner().assign(anchors, gts, labels)
    b = FixedIoUAssigner().assign(anchors, gts[perm], labels[perm])
    # documented ties: an anchor whose best IoU is shared by two GTs (argmax takes the first), or that is the
    # best anchor of two GTs (the later GT wins the low-quality match)
    iou = box_iou(gts, anchors)
    top2 = iou.topk(2, dim=0).values
    claimed_by = (iou == iou.max(dim=1, keepdim=True).values).sum(dim=0)
    unambiguous = (top2[0] > top2[1]) & (claimed_by <= 1)
    b_labels = torch.where(b.gt_inds > 0, labels[perm][(b.gt_inds - 1).clamp(min=0)] + 1, b.gt_inds)
    assert torch.equal(a.gt_inds[unambiguous], b_labels[unambiguous])


@pytest.mark.parametrize("device", DEVICES)
def test_keeps_the_device_and_agrees_with_cpu(device):
    anchors, gts, labels = scene()
    cpu = FixedIoUAssigner().assign(anchors, gts, labels)
    other = FixedIoUAssigner().assign(anchors.to(device), gts.to(device), labels.to(device))
    assert other.gt_inds.device.type == device and other.labels.device.type == device
    assert torch.equal(other.gt_inds.cpu(), cpu.gt_inds)
    torch.testing.assert_close(other.max_iou.cpu(), cpu.max_iou)


def test_assign_result_masks_partition_the_anchors():
    r = AssignResult.from_gt_inds(torch.tensor([0, -1, 2, 1]), torch.zeros(4), torch.tensor([5, 6]))
    assert r.labels.tolist() == [-1, -1, 6, 5]
    assert (r.pos.int() + r.neg.int() + r.ignored.int()).tolist() == [1, 1, 1, 1]
    assert r.num_pos == 2


def test_duplicate_gts_threshold_positives_go_to_the_first_copy_best_anchors_to_the_last():
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0], [30.0, 0.0, 40.0, 10.0]])
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    result = FixedIoUAssigner().assign(anchors, gts, torch.tensor([0, 0]))
    # anchor 1 (IoU 0.82) is a threshold positive -> argmax -> the first copy;
    # anchor 0 (IoU 1) is both copies' best anchor -> the low-quality loop ends on the second copy
    assert result.gt_inds.tolist() == [2, 1, 0]


def test_low_quality_positives_are_the_low_quality_steps_own_below_the_threshold():
    from lad_edu.assign import low_quality_positives

    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    # GT 0 matches anchor 0 exactly (IoU 1); GT 1, a 4 x 4 box inside anchor 1, reaches IoU 0.16 at best
    gt_boxes = torch.tensor([[0.0, 0, 10, 10], [23, 3, 27, 7]])
    result = FixedIoUAssigner().assign(anchors, gt_boxes, torch.tensor([0, 1]))
    assert result.gt_inds.tolist() == [1, 2, 0]
    assert low_quality_positives(result).tolist() == [False, True, False]
    assert low_quality_positives(result, pos_iou_thr=0.1).tolist() == [False, False, False]
    atss = ATSSAssigner(topk=1).assign(anchors, [3], gt_boxes, torch.tensor([0, 1]))
    assert not low_quality_positives(atss).any()  # no low-quality step
