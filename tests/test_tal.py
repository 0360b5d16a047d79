"""Task-aligned assignment: hand-worked cases of both variants, the plain-loop references, invariants."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lad_edu.anchors import single
from lad_edu.assign import Predictions
from lad_edu.assign.tal import TaskAlignedAssigner, _power, alignment_metric, soft_targets
from lad_edu.boxes import box_centers, centers_inside
from tests.conftest import DEVICES, boxes_in_image
from tests.reference import tal_mmdet_loop, tal_ultralytics_loop

GT = torch.tensor([[0.0, 0.0, 10.0, 10.0]], dtype=torch.float64)
LABEL = torch.tensor([0])


def square(u, centre=(5.0, 5.0)):
    """A square centred on ``centre`` whose IoU with :data:`GT` is ``u`` (it lies inside GT: side 10·√u).

    Concentric with GT and of the same aspect ratio, so its CIoU equals its IoU (no centre distance, no
    aspect-ratio penalty): the two variants see the same ``u``.
    """
    half = 5.0 * math.sqrt(u)
    return [centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half]


def logits(*probabilities):
    """``[N, 1]`` logits of the given probabilities (one class)."""
    return torch.logit(torch.tensor(probabilities, dtype=torch.float64))[:, None]


def assign(anchors, boxes, labels, cls_logits, pred_boxes, **options):
    """One image through :meth:`TaskAlignedAssigner.assign` (a single level)."""
    anchors = torch.as_tensor(anchors, dtype=torch.float64)
    pred = torch.as_tensor(pred_boxes, dtype=torch.float64)
    return TaskAlignedAssigner(**options).assign(anchors, [len(anchors)], boxes, labels, cls_logits, pred)


# the module docstring's worked example: s = 0.9, 0.4, 0.8, 0.6 and u = 0.5, 0.8, 0.7, 0.6, topk = 3
WORKED = dict(
    anchors=[[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 8.0, 8.0], [10.0, 0.0, 20.0, 10.0], [1.0, 1.0, 9.0, 9.0]],
    boxes=GT,
    labels=LABEL,
    cls_logits=logits(0.9, 0.4, 0.8, 0.6),
    pred_boxes=[square(0.5), square(0.8), square(0.7), square(0.6)],
    topk=3,
)
# t = s · u^6
T = [0.9 * 0.5**6, 0.4 * 0.8**6, 0.8 * 0.7**6, 0.6 * 0.6**6]  # 0.0140625, 0.1048576, 0.0941192, 0.0279936


def test_worked_example_mmdet():
    result = assign(**WORKED)
    # top 3 by t: A1 (0.1049), A2 (0.0941), A3 (0.0280); A2's centre (15, 5) is outside the GT
    assert result.details["candidates"][:, 0].tolist() == [1, 2, 3]
    torch.testing.assert_close(
        result.details["candidate_metric"][:, 0], torch.tensor(T, dtype=torch.float64)[[1, 2, 3]]
    )
    assert result.gt_inds.tolist() == [0, 1, 0, 1]
    assert result.labels.tolist() == [-1, 0, -1, 0]
    # t_hat = t / (max t + 1e-7) · max u over the positives {A1, A3}: max t = T[1], max u = 0.8
    expected = [0.0, T[1] / (T[1] + 1e-7) * 0.8, 0.0, T[3] / (T[1] + 1e-7) * 0.8]  # A1 0.7999992, A3 0.2136
    torch.testing.assert_close(result.quality, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(
        result.details["metric"], torch.tensor([0.0, T[1], 0.0, T[3]], dtype=torch.float64)
    )
    torch.testing.assert_close(
        result.details["pred_iou"], torch.tensor([0.0, 0.8, 0.0, 0.6], dtype=torch.float64)
    )
    # max_iou is the anchor box's IoU with the GT: 1, 0.36, 0, 0.64
    torch.testing.assert_close(result.max_iou, torch.tensor([1.0, 0.36, 0.0, 0.64], dtype=torch.float64))


def test_worked_example_ultralytics_tests_the_centre_before_the_top_k():
    result = assign(**WORKED, variant="ultralytics")
    # A2 (outside) gets t = 0, so the top 3 are A1, A3, A0: A0 is a positive now
    assert result.details["candidates"][:, 0].tolist() == [1, 3, 0]
    assert result.gt_inds.tolist() == [1, 1, 0, 1]
    # t_hat = t · max u / (max t + 1e-9): A0 0.0140625 / 0.1048576 · 0.8 = 0.1073
    expected = [T[0] / (T[1] + 1e-9) * 0.8, T[1] / (T[1] + 1e-9) * 0.8, 0.0, T[3] / (T[1] + 1e-9) * 0.8]
    torch.testing.assert_close(result.quality, torch.tensor(expected, dtype=torch.float64))


def test_a_zero_metric_candidate_is_positive_only_for_ultralytics():
    # anchors 0-2 centred in the GT, 3-4 outside; 0 predicts u = 0.5, 1-2 predict a far box (u = 0),
    # 3-4 predict u = 0.9 but their centres are outside; every score is 0.5; topk = 4
    anchors = [[0.0, 0.0, 10.0, 10.0]] * 3 + [[10.0, 0.0, 20.0, 10.0]] * 2
    far = [50.0, 50.0, 60.0, 60.0]
    pred = [square(0.5), far, far, square(0.9), square(0.9)]
    scores = logits(*[0.5] * 5)
    mmdet = assign(anchors, GT, LABEL, scores, pred, topk=4)
    # t = 0.5·0.5^6, 0, 0, 0.5·0.9^6 (twice): the top 4 are 3, 4, 0 and 1 (of the tied zeros, the lower index)
    assert sorted(mmdet.details["candidates"][:, 0].tolist()) == [0, 1, 3, 4]
    assert mmdet.gt_inds.tolist() == [1, 0, 0, 0, 0]  # 1 is inside but t = 0; 3, 4 are outside
    ultra = assign(anchors, GT, LABEL, scores, pred, topk=4, variant="ultralytics")
    # outside anchors get t = 0 too: the top 4 are 0, then the zeros 1, 2, 3 (lower index first)
    assert ultra.details["candidates"][:, 0].tolist() == [0, 1, 2, 3]
    assert ultra.gt_inds.tolist() == [1, 1, 1, 0, 0]  # 1 and 2 are positive with t = 0 ...
    torch.testing.assert_close(ultra.quality[1:3], torch.zeros(2, dtype=torch.float64))  # ... and learn 0
    # anchor 0: t / (t + 1e-9) · max u, with max u = 0.5 (anchors 1 and 2 have u = 0)
    assert ultra.quality[0].item() == pytest.approx(0.5, rel=1e-6)


def test_centre_margin_is_a_hundredth_of_a_pixel_for_mmdet_and_1e_9_for_ultralytics():
    # anchor centres at x = 0.005 (inside by 0.005 px), x = 0 (on the edge) and x = 5
    anchors = [[-4.995, 0.0, 5.005, 10.0], [-5.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 10.0]]
    pred = [square(0.9), square(0.9), square(0.5)]
    scores = logits(0.5, 0.5, 0.5)
    assert assign(anchors, GT, LABEL, scores, pred).gt_inds.tolist() == [0, 0, 1]
    assert assign(anchors, GT, LABEL, scores, pred, variant="ultralytics").gt_inds.tolist() == [1, 0, 1]


def test_mmdet_conflict_goes_to_the_higher_predicted_iou_and_a_tie_to_the_lower_gt():
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 0.0, 12.0, 10.0]], dtype=torch.float64)
    anchors = [[1.0, 0.0, 11.0, 10.0]] * 2  # centre (6, 5): inside both GTs
    # A predicts [1, 0, 11, 10]: IoU 90/110 with both (a tie); B predicts [1.5, 0, 11.5, 10]: 85/115, 95/105
    pred = [[1.0, 0.0, 11.0, 10.0], [1.5, 0.0, 11.5, 10.0]]
    result = assign(anchors, gts, torch.tensor([0, 0]), logits(0.5, 0.5), pred)
    assert result.gt_inds.tolist() == [1, 2]
    torch.testing.assert_close(
        result.details["pred_iou"], torch.tensor([90 / 110, 95 / 105], dtype=torch.float64)
    )
    # each GT has one positive: t_hat = t / (t + 1e-7) · u, about u
    torch.testing.assert_close(result.quality, result.details["pred_iou"], rtol=1e-5, atol=0)
    swapped = assign(anchors, gts.flip(0), torch.tensor([0, 0]), logits(0.5, 0.5), pred)
    # A's tie again goes to the lower index, now [2, 0, 12, 10], which B still prefers (95/105)
    assert swapped.gt_inds.tolist() == [1, 1]


def test_ultralytics_conflict_takes_the_best_ciou_of_all_gts_even_one_that_did_not_choose_the_anchor():
    # three concentric GTs (CIoU = IoU); two anchors centred at (5, 5); topk = 1; equal scores
    gts = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 9.0, 9.0], [2.0, 2.0, 8.0, 8.0]], dtype=torch.float64
    )
    anchors = [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 9.0, 9.0]]
    # A predicts a 6.4 square: u = 0.4096, 0.64, 36/40.96 = 0.8789; B predicts GT 2: u = 0.36, 0.5625, 1
    pred = [[1.8, 1.8, 8.2, 8.2], [2.0, 2.0, 8.0, 8.0]]
    args = (anchors, gts, torch.tensor([0, 0, 0]), logits(0.5, 0.5), pred)
    # GT 0 and GT 1 pick A (0.4096 > 0.36, 0.64 > 0.5625), GT 2 picks B (1 > 0.8789)
    for variant in ("mmdet", "ultralytics"):
        result = assign(*args, topk=1, variant=variant)
        assert result.details["candidates"].tolist() == [[0, 0, 1]]
    # MMDetection: A is a positive of GT 0 and GT 1 and goes to the higher IoU of the two, GT 1
    assert assign(*args, topk=1).gt_inds.tolist() == [2, 3]
    # ultralytics: A goes to the argmax of all GTs, GT 2, whose top-1 it was not in
    ultra = assign(*args, topk=1, variant="ultralytics")
    assert ultra.gt_inds.tolist() == [3, 3]
    assert ultra.positives_per_gt().tolist() == [0, 0, 2]
    # GT 2's positives: t_A = 0.5 · 0.8789^6, t_B = 0.5, max u = 1: A learns 0.8789^6 = 0.4605
    u_a = 36 / 40.96
    torch.testing.assert_close(
        ultra.quality, torch.tensor([u_a**6, 1.0], dtype=torch.float64), rtol=1e-6, atol=0
    )


@pytest.mark.parametrize("variant", ["mmdet", "ultralytics"])
def test_duplicate_gts_give_everything_to_the_first(variant):
    anchors, nla, gt_boxes, gt_labels, predictions = scene(counts=(1,), seed=3)
    assigner = TaskAlignedAssigner(variant=variant)
    one = assigner.assign_batch(anchors, nla, gt_boxes, gt_labels, predictions)[0]
    twice = assigner.assign_batch(
        anchors, nla, [gt_boxes[0].repeat(2, 1)], [gt_labels[0].repeat(2)], predictions
    )[0]
    assert one.num_pos > 0
    assert torch.equal(twice.gt_inds, one.gt_inds) and twice.positives_per_gt().tolist() == [one.num_pos, 0]
    assert torch.equal(twice.quality, one.quality)


def test_alignment_metric_by_hand():
    # two images, two classes, three anchors; image 0's GTs are of class 1 and 0, image 1's of class 0
    probs = torch.tensor([[[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], [[0.9, 0.1], [0.3, 0.7], [0.1, 0.1]]])
    ious = torch.tensor([[[1.0, 0.5, 0.0], [0.2, 1.0, 0.5]], [[0.5, 1.0, 1.0], [0.0, 0.0, 0.0]]])
    labels = torch.tensor([[1, 0], [0, 0]])
    metric = alignment_metric(torch.logit(probs), ious, labels, alpha=0.5, beta=2.0)
    # sqrt(s) · u²: image 0 GT 0 (class 1): sqrt(.8)·1, sqrt(.4)·.25, 0;
    # GT 1 (class 0): sqrt(.2)·.04, sqrt(.6)·1, sqrt(.5)·.25; image 1: class 0 for both GTs
    expected = torch.tensor(
        [
            [[0.8**0.5, 0.4**0.5 * 0.25, 0.0], [0.2**0.5 * 0.04, 0.6**0.5, 0.5**0.5 * 0.25]],
            [[0.9**0.5 * 0.25, 0.3**0.5, 0.1**0.5], [0.0, 0.0, 0.0]],
        ]
    )
    torch.testing.assert_close(metric, expected)


@pytest.mark.parametrize("exponent", [0, 1, 2, 6, 7, 2.5])
def test_power_is_pow(exponent):
    values = torch.rand(100, dtype=torch.float64)
    torch.testing.assert_close(_power(values, exponent), values.pow(exponent), rtol=1e-14, atol=0)


def test_soft_targets_by_hand():
    # image 0: GT 0 has positives t = 0.2 (u 0.6) and 0.1 (u 0.9): max t 0.2, max u 0.9 -> 0.9, 0.45
    # GT 1 has one positive (t 0.05, u 0.5) -> 0.5;
    # image 1: anchor 0 is negative (its GT 5 and values are ignored), anchor 1 GT 0's (t 0.3, u 0.7) -> 0.7
    gt = torch.tensor([[0, 0, 1], [5, 0, 0]])
    metric = torch.tensor([[0.2, 0.1, 0.05], [0.9, 0.3, 0.0]], dtype=torch.float64)
    iou = torch.tensor([[0.6, 0.9, 0.5], [0.9, 0.7, 0.0]], dtype=torch.float64)
    positive = torch.tensor([[True, True, True], [False, True, False]])
    expected = torch.tensor([[0.9, 0.45, 0.5], [0.0, 0.7, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(soft_targets(gt, metric, iou, positive, 2, eps=0.0), expected)


# random scenes


def scene(counts=(3, 0, 5), num_classes=4, seed=0, image=(64, 96), dtype=torch.float64, jitter=6.0):
    """Anchors of 3 levels, one image per entry of ``counts`` with that many GTs, and predictions: boxes
    scattered around the anchors (centres moved by ``jitter`` px), so that many anchors overlap the GTs."""
    g = torch.Generator().manual_seed(seed)
    anchors, nla = single(strides=(8, 16, 32))(image)
    anchors = anchors.to(dtype)
    gt_boxes, gt_labels = [], []
    for count in counts:
        xy = torch.rand(count, 2, generator=g, dtype=dtype) * torch.tensor(
            [image[1] - 8, image[0] - 8], dtype=dtype
        )
        wh = 4 + torch.rand(count, 2, generator=g, dtype=dtype) * 36
        gt_boxes.append(torch.cat([xy, xy + wh], dim=1))
        gt_labels.append(torch.randint(0, num_classes, (count,), generator=g))
    num = len(counts), len(anchors)
    centre = box_centers(anchors) + jitter * torch.randn(*num, 2, generator=g, dtype=dtype)
    half = 4 + 16 * torch.rand(*num, 2, generator=g, dtype=dtype)
    cls_logits = 2 * torch.randn(*num, num_classes, generator=g, dtype=dtype)
    return (
        anchors,
        nla,
        gt_boxes,
        gt_labels,
        Predictions(cls_logits, torch.cat([centre - half, centre + half], -1)),
    )


def detail(result, key):
    """``result.details[key]`` as numpy; zeros when nothing was computed (no usable GT)."""
    return result.details.get(key, torch.zeros(len(result.gt_inds), dtype=torch.float64)).numpy()


def assert_same(a, b):
    """Two results equal in every field, bit for bit."""
    assert torch.equal(a.gt_inds, b.gt_inds) and torch.equal(a.labels, b.labels)
    assert torch.equal(a.max_iou, b.max_iou) and torch.equal(a.quality, b.quality)
    assert a.num_gts == b.num_gts and a.details.keys() == b.details.keys()
    for key, value in a.details.items():
        torch.testing.assert_close(value, b.details[key], rtol=0, atol=0, equal_nan=True, msg=key)


@pytest.mark.parametrize("variant", ["mmdet", "ultralytics"])
@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_gives_every_image_exactly_what_it_gets_alone(variant, device):
    anchors, nla, gt_boxes, gt_labels, predictions = scene(counts=(3, 0, 5, 1), dtype=torch.float32)
    anchors, predictions = (
        anchors.to(device),
        Predictions(predictions.cls_logits.to(device), predictions.boxes.to(device)),
    )
    gt_boxes, gt_labels = [b.to(device) for b in gt_boxes], [c.to(device) for c in gt_labels]
    assigner = TaskAlignedAssigner(variant=variant, num_classes=4)
    batch = assigner.assign_batch(anchors, nla, gt_boxes, gt_labels, predictions)
    assert [r.num_pos > 0 for r in batch] == [True, False, True, True]
    assert batch[0].gt_inds.device.type == device
    for b, result in enumerate(batch):
        alone = assigner.assign(
            anchors, nla, gt_boxes[b], gt_labels[b], predictions.cls_logits[b], predictions.boxes[b]
        )
        assert_same(result, alone)
    if device != "cpu":  # the same decisions as on the CPU
        cpu = assigner.assign_batch(
            anchors.cpu(),
            nla,
            [b.cpu() for b in gt_boxes],
            [c.cpu() for c in gt_labels],
            Predictions(predictions.cls_logits.cpu(), predictions.boxes.cpu()),
        )
        for on_cpu, on_device in zip(cpu, batch, strict=True):
            assert torch.equal(on_cpu.gt_inds, on_device.gt_inds.cpu())
            torch.testing.assert_close(on_cpu.quality, on_device.quality.cpu())


@pytest.mark.parametrize("variant", ["mmdet", "ultralytics"])
def test_chunks_give_exactly_the_unchunked_result(variant):
    anchors, nla, gt_boxes, gt_labels, predictions = scene(counts=(3, 0, 5, 2), dtype=torch.float32)
    whole = TaskAlignedAssigner(variant=variant).assign_batch(anchors, nla, gt_boxes, gt_labels, predictions)
    # 1: one GT at a time; N: still one GT of one image; 7N: two images' worth of 5 GT slots is too many
    for max_pairs in (1, len(anchors), 7 * len(anchors)):
        chunked = TaskAlignedAssigner(variant=variant, max_pairs=max_pairs).assign_batch(
            anchors, nla, gt_boxes, gt_labels, predictions
        )
        for a, b in zip(whole, chunked, strict=True):
            assert_same(a, b)


# ordinary scenes, and crowded ones: 21 anchors for 5-7 GTs, predictions scattered 20 px, where ultralytics'
# zero-metric positives and conflicts won by a GT that did not choose the anchor both occur
SCENES = {"ordinary": dict(counts=(0, 1, 3, 6)), "crowded": dict(counts=(5, 7), image=(32, 32), jitter=20.0)}


@pytest.mark.parametrize("kind", SCENES)
@pytest.mark.parametrize("seed", range(4))
def test_mmdet_matches_the_plain_loop_transcription(seed, kind):
    anchors, nla, gt_boxes, gt_labels, predictions = scene(**SCENES[kind], seed=seed)
    batch = TaskAlignedAssigner(topk=9).assign_batch(anchors, nla, gt_boxes, gt_labels, predictions)
    assert sum(r.num_pos for r in batch) > 5
    for b, result in enumerate(batch):
        gt_inds, metric, pred_iou, quality = tal_mmdet_loop(
            predictions.cls_logits[b].sigmoid().numpy(),
            predictions.boxes[b].numpy(),
            anchors.numpy(),
            gt_boxes[b].numpy(),
            gt_labels[b].numpy(),
            topk=9,
        )
        np.testing.assert_array_equal(result.gt_inds.numpy(), gt_inds)
        np.testing.assert_allclose(detail(result, "metric"), metric, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(detail(result, "pred_iou"), pred_iou, rtol=1e-10)
        np.testing.assert_allclose(result.quality.numpy(), quality, rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("kind", SCENES)
@pytest.mark.parametrize("seed", range(4))
def test_ultralytics_matches_the_plain_loop_transcription(seed, kind):
    anchors, nla, gt_boxes, gt_labels, predictions = scene(**SCENES[kind], seed=seed)
    assigner = TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0, variant="ultralytics")
    batch = assigner.assign_batch(anchors, nla, gt_boxes, gt_labels, predictions)
    assert sum(r.num_pos for r in batch) > 5
    for b, result in enumerate(batch):
        gt_inds, metric, pred_iou, quality = tal_ultralytics_loop(
            predictions.cls_logits[b].sigmoid().numpy(),
            predictions.boxes[b].numpy(),
            box_centers(anchors).numpy(),
            gt_boxes[b].numpy(),
            gt_labels[b].numpy(),
            topk=10,
            alpha=0.5,
            beta=6.0,
        )
        np.testing.assert_array_equal(result.gt_inds.numpy(), gt_inds)
        np.testing.assert_allclose(detail(result, "metric"), metric, rtol=1e-5, atol=1e-12)
        # torchvision's CIoU puts its 1e-7 elsewhere than ultralytics' bbox_iou: ~1e-8 relative
        np.testing.assert_allclose(detail(result, "pred_iou"), pred_iou, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(result.quality.numpy(), quality, rtol=1e-5, atol=1e-9)


def test_the_variants_differ_on_random_scenes():
    """Not a rule, a sanity check that the ultralytics switches do something on ordinary data."""
    anchors, nla, gt_boxes, gt_labels, predictions = scene(counts=(6, 6), seed=1)
    mmdet = TaskAlignedAssigner().assign_batch(anchors, nla, gt_boxes, gt_labels, predictions)
    ultra = TaskAlignedAssigner(variant="ultralytics").assign_batch(
        anchors, nla, gt_boxes, gt_labels, predictions
    )
    assert any(not torch.equal(a.gt_inds, b.gt_inds) for a, b in zip(mmdet, ultra, strict=True))


@settings(max_examples=30, deadline=None)
@given(
    gts=boxes_in_image(image_size=(64, 96), min_n=1, max_n=6),
    seed=st.integers(0, 2**16),
    topk=st.integers(1, 15),
)
def test_mmdet_invariants(gts, seed, topk):
    anchors, nla, _, _, predictions = scene(counts=(len(gts),), seed=seed)
    labels = torch.randint(0, 4, (len(gts),), generator=torch.Generator().manual_seed(seed))
    result = TaskAlignedAssigner(topk=topk).assign_batch(anchors, nla, [gts], [labels], predictions)[0]
    pos = result.pos
    own_gt = gts[result.gt_inds[pos] - 1]
    # every positive: centre inside its GT by > 0.01, t > 0; at most topk positives per GT
    assert centers_inside(box_centers(anchors[pos]), own_gt, eps=0.01).all()
    assert (result.details["metric"][pos] > 0).all() and (result.details["metric"][~pos] == 0).all()
    assert (result.positives_per_gt() <= topk).all()
    # t_hat in [0, 1], 0 off the positives; its max over a GT's positives is their max u (up to eps)
    assert (result.quality >= 0).all() and (result.quality <= 1).all() and (result.quality[~pos] == 0).all()
    for g in result.gt_inds[pos].unique():
        members = result.gt_inds == g
        max_t = result.details["metric"][members].max()
        expected = max_t / (max_t + 1e-7) * result.details["pred_iou"][members].max()
        torch.testing.assert_close(result.quality[members].max(), expected)


@settings(max_examples=30, deadline=None)
@given(gts=boxes_in_image(image_size=(64, 96), min_n=1, max_n=6), seed=st.integers(0, 2**16))
def test_ultralytics_invariants(gts, seed):
    anchors, nla, _, _, predictions = scene(counts=(len(gts),), seed=seed)
    labels = torch.randint(0, 4, (len(gts),), generator=torch.Generator().manual_seed(seed))
    result = TaskAlignedAssigner(variant="ultralytics").assign_batch(
        anchors, nla, [gts], [labels], predictions
    )[0]
    pos = result.pos
    assert (result.quality >= 0).all() and (result.quality <= 1).all() and (result.quality[~pos] == 0).all()
    # t > 0 needs the centre inside the GT (outside it, t is 0)
    aligned = pos & (result.details["metric"] > 0)
    assert centers_inside(box_centers(anchors[aligned]), gts[result.gt_inds[aligned] - 1], eps=1e-9).all()


# edge cases and errors


def test_float64_and_float32_agree():
    anchors, nla, gt_boxes, gt_labels, predictions = scene(seed=5)
    wide = TaskAlignedAssigner().assign_batch(anchors, nla, gt_boxes, gt_labels, predictions)
    narrow = TaskAlignedAssigner().assign_batch(
        anchors.float(), nla, [b.float() for b in gt_boxes], gt_labels, predictions.float()
    )
    for a, b in zip(wide, narrow, strict=True):
        assert a.quality.dtype == a.max_iou.dtype == torch.float64 and b.quality.dtype == torch.float32
        assert torch.equal(a.gt_inds, b.gt_inds)
        torch.testing.assert_close(a.quality.float(), b.quality)


@pytest.mark.parametrize("variant", ["mmdet", "ultralytics"])
def test_no_gt_and_no_anchor(variant):
    anchors, nla, _, _, predictions = scene(counts=(0,))
    assigner = TaskAlignedAssigner(variant=variant)
    none = assigner.assign_batch(
        anchors, nla, [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)], predictions
    )[0]
    assert (
        none.num_gts == 0 and (none.gt_inds == 0).all() and (none.quality == 0).all() and none.details == {}
    )
    empty = assigner.assign(torch.zeros(0, 4), [0], GT, LABEL, torch.zeros(0, 3), torch.zeros(0, 4))
    assert empty.gt_inds.shape == (0,) and empty.quality.shape == (0,) and empty.num_gts == 1


@pytest.mark.parametrize("variant", ["mmdet", "ultralytics"])
def test_degenerate_gt_is_dropped_and_never_matched(variant):
    anchors, nla, gt_boxes, gt_labels, predictions = scene(counts=(2,), seed=2)
    flat = torch.tensor([[20.0, 20.0, 40.0, 20.0]], dtype=torch.float64)  # zero height, in the middle
    boxes = torch.cat([gt_boxes[0][:1], flat, gt_boxes[0][1:]])
    labels = torch.cat([gt_labels[0][:1], torch.tensor([1]), gt_labels[0][1:]])
    assigner = TaskAlignedAssigner(variant=variant)
    clean = assigner.assign_batch(anchors, nla, gt_boxes, gt_labels, predictions)[0]
    result = assigner.assign_batch(anchors, nla, [boxes], [labels], predictions)[0]
    assert result.num_gts == 3 and result.positives_per_gt()[1] == 0
    renumbered = torch.tensor([0, 1, 3])[clean.gt_inds]  # clean GT 1 is GT 2 (1-based 3) here
    assert torch.equal(result.gt_inds, renumbered) and torch.equal(result.quality, clean.quality)
    assert (result.details["candidates"][:, 1] == -1).all() and result.details["candidate_metric"][
        :, 1
    ].isnan().all()
    assert torch.equal(result.details["candidates"][:, [0, 2]], clean.details["candidates"])


def test_all_gts_degenerate_gives_an_all_negative_result():
    anchors, nla, _, _, predictions = scene(counts=(1,))
    result = TaskAlignedAssigner().assign_batch(
        anchors, nla, [torch.tensor([[5.0, 5.0, 5.0, 9.0]])], [LABEL], predictions
    )[0]
    assert result.num_gts == 1 and result.num_pos == 0 and result.details == {}


def test_errors_name_the_image_and_the_field():
    anchors, nla, gt_boxes, gt_labels, predictions = scene(counts=(1, 2))
    assigner = TaskAlignedAssigner(num_classes=4)
    with pytest.raises(ValueError, match=r"TaskAlignedAssigner .*pass predictions=Predictions"):
        assigner.assign_batch(anchors, nla, gt_boxes, gt_labels)
    bad_logits = predictions.cls_logits.clone()
    bad_logits[1, 7, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^image 1: cls_logits must be finite, .* at anchor 7"):
        assigner.assign_batch(anchors, nla, gt_boxes, gt_labels, Predictions(bad_logits, predictions.boxes))
    bad_boxes = predictions.boxes.clone()
    bad_boxes[1, 3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^image 1: pred_boxes must be finite"):
        assigner.assign_batch(
            anchors, nla, gt_boxes, gt_labels, Predictions(predictions.cls_logits, bad_boxes)
        )
    nan_gt = [gt_boxes[0], gt_boxes[1].clone()]
    nan_gt[1][1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^image 1: gt_boxes must be finite, .* for GT 1"):
        assigner.assign_batch(anchors, nla, nan_gt, gt_labels, predictions)
    with pytest.raises(ValueError, match=r"^image 1: gt_labels must be class ids in \[0, 4\), got 4"):
        assigner.assign_batch(anchors, nla, gt_boxes, [gt_labels[0], torch.tensor([0, 4])], predictions)
    with pytest.raises(ValueError, match=r"predictions.cls_logits must be \[B=2, N=\d+, C\]"):
        assigner.assign_batch(
            anchors, nla, gt_boxes, gt_labels, Predictions(predictions.cls_logits[:1], predictions.boxes[:1])
        )
    with pytest.raises(ValueError, match=r"pred_boxes must be \[N=\d+, 4\]"):
        assigner.assign(
            anchors, nla, gt_boxes[0], gt_labels[0], predictions.cls_logits[0], predictions.boxes[0, :-1]
        )
    with pytest.raises(ValueError, match="num_level_anchors"):
        assigner.assign_batch(anchors, nla[:-1], gt_boxes, gt_labels, predictions)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"topk": 0}, "topk must be >= 1"),
        ({"alpha": -1.0}, "alpha and beta must be >= 0"),
        ({"alpha": 0.0, "beta": 0.0}, "not both 0"),
        ({"variant": "yolo"}, "variant must be one of"),
        ({"max_pairs": 0}, "max_pairs must be >= 1"),
    ],
)
def test_bad_options_raise(options, message):
    with pytest.raises(ValueError, match=message):
        TaskAlignedAssigner(**options)


def test_repr():
    assigner = TaskAlignedAssigner(topk=10, alpha=0.5, variant="ultralytics", num_classes=80, max_pairs=100)
    assert repr(assigner) == (
        "TaskAlignedAssigner(topk=10, alpha=0.5, beta=6.0, variant='ultralytics', num_classes=80, "
        "max_pairs=100)"
    )
