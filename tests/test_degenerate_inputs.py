"""Degenerate GTs never crash an assigner, and bad values are a ValueError that names the argument.

A *degenerate* GT here is one that can get no positive: zero or negative width or height, or a box that
overlaps no anchor at all (IoU 0 with every one, e.g. far outside the image). It gets no positive, the rest
of its image and batch is labelled as if it were not there, and an image left without a usable GT trains
as negatives. A NaN or infinite coordinate, a negative label or one ``>= C`` is not degenerate but wrong.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lad_edu.anchors import single
from lad_edu.assign import ATSSAssigner, CoLADAssigner, FixedIoUAssigner, PAAAssigner, Predictions
from lad_edu.assign.result import first_non_finite
from lad_edu.boxes import box_iou, valid_box_mask
from tests.conftest import DEVICES, boxes_in_image

IMAGE = (64, 96)  # (height, width)
ANCHORS, NUM_LEVEL_ANCHORS = single(strides=(8, 16, 32))(IMAGE)  # 126 anchors, the largest 256 px wide
NUM_CLASSES = 4

NORMAL = torch.tensor([[10.0, 10.0, 40.0, 50.0], [50.0, 8.0, 90.0, 40.0]])
ZERO_WIDTH = torch.tensor([[30.0, 20.0, 30.0, 50.0]])
ZERO_HEIGHT = torch.tensor([[20.0, 30.0, 60.0, 30.0]])
OUTSIDE = torch.tensor([[300.0, 300.0, 320.0, 330.0]])  # beyond every anchor, even the 256-px ones
TINY = torch.tensor([[3.2, 3.2, 4.2, 4.2]])  # 1x1 px: IoU <= 1/4096 with every anchor
NO_GT = torch.zeros(0, 4)

ASSIGNERS = ["fixed", "atss", "paa", "paa-per-image", "paa-original", "colad-iteration", "colad-group"]


def labels_for(boxes):
    """``[G]`` classes 0, 1, 2, ... (mod C)."""
    return torch.arange(len(boxes)) % NUM_CLASSES


def predictions(num_images, seed=0):
    """Two networks' :class:`Predictions` (``[B, N, C]``, ``[B, N, 4]``): noise, boxes near their anchors."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(2):
        cls_logits = torch.randn(num_images, len(ANCHORS), NUM_CLASSES, generator=g)
        boxes = ANCHORS + 4 * torch.randn(num_images, len(ANCHORS), 4, generator=g)
        boxes = torch.cat([boxes[..., :2], torch.maximum(boxes[..., 2:], boxes[..., :2] + 1)], dim=-1)
        pairs.append(Predictions(cls_logits, boxes))
    return pairs


def assign(name, gt_boxes, gt_labels, preds=None):
    """One result per image from the assigner called ``name``; PAA and CoLAD on ``preds``."""
    first, second = preds if preds is not None else predictions(len(gt_boxes))
    args = (ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels)
    if name == "fixed":
        fixed = FixedIoUAssigner(num_classes=NUM_CLASSES)
        return [fixed.assign(ANCHORS, g, c) for g, c in zip(gt_boxes, gt_labels, strict=True)]
    if name == "atss":
        atss = ATSSAssigner(num_classes=NUM_CLASSES)
        return [
            atss.assign(ANCHORS, NUM_LEVEL_ANCHORS, g, c) for g, c in zip(gt_boxes, gt_labels, strict=True)
        ]
    if name == "paa":
        return PAAAssigner().assign_batch(*args, first)
    if name == "paa-per-image":
        return [
            PAAAssigner().assign(ANCHORS, NUM_LEVEL_ANCHORS, g, c, first.cls_logits[b], first.boxes[b])
            for b, (g, c) in enumerate(zip(gt_boxes, gt_labels, strict=True))
        ]
    if name == "paa-original":
        return PAAAssigner(keep_single_candidate=True, all_if_no_fg=True).assign_batch(*args, first)
    granularity = name.removeprefix("colad-")
    return CoLADAssigner(granularity=granularity).assign_batch(*args, first, second)[0]


def degenerate(boxes):
    """``[G]`` bool: the GTs that can get no positive (no area, or IoU 0 with every anchor)."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.bool)
    return ~valid_box_mask(boxes) | (box_iou(boxes, ANCHORS).amax(dim=1) == 0)


def detail_shapes(name, result, num_anchors, num_gts):
    """The shape of each ``details`` entry (PAA's ``[G, M]``: ``M`` slots per GT, as the result has)."""
    if name == "fixed":
        return {"low_quality": (num_anchors,)}
    if name == "atss":
        num_candidates = sum(min(9, n) for n in NUM_LEVEL_ANCHORS)
        grid = (num_candidates, num_gts)
        return {"candidates": grid, "candidate_iou": grid, "threshold": (num_gts,)}
    slots = (num_gts, result.details["candidates"].shape[1])
    return {
        "pre_gt_inds": (num_anchors,),
        **dict.fromkeys(["candidates", "costs", "component", "positive"], slots),
        **dict.fromkeys(["cut", "gmm_n_iter", "gmm_converged"], (num_gts,)),
        **dict.fromkeys(["gmm_weights", "gmm_means", "gmm_variances"], (num_gts, 2)),
    }


def assert_well_formed(name, result, gt_labels):
    """What downstream code (losses, statistics, plots) relies on, whatever the GTs were."""
    n, g = len(ANCHORS), len(gt_labels)
    assert result.gt_inds.shape == result.max_iou.shape == result.labels.shape == (n,)
    assert result.gt_inds.dtype == result.labels.dtype == torch.long and result.max_iou.is_floating_point()
    assert result.num_gts == g
    assert bool(((result.gt_inds >= -1) & (result.gt_inds <= g)).all())
    assert bool(((result.max_iou >= 0) & (result.max_iou <= 1)).all())
    # labels: the positive's GT class, -1 everywhere else
    own_class = torch.cat([torch.tensor([-1]), gt_labels])[result.gt_inds.clamp(min=0)]
    assert torch.equal(result.labels, torch.where(result.pos, own_class, -1))
    assert result.positives_per_gt().shape == (g,)
    if result.details:  # empty only where an assigner had nothing to compute (no usable GT)
        shapes = detail_shapes(name.split("-")[0], result, n, g)
        assert {key: tuple(value.shape) for key, value in result.details.items()} == shapes
    if "positive" in result.details:  # PAA: the positive slots are exactly the positive anchors
        chosen = result.details["candidates"][result.details["positive"]]
        assert sorted(chosen.tolist()) == result.pos.nonzero().squeeze(1).tolist()


def check_batch(name, gt_boxes, gt_labels, preds=None):
    """Assign, check every result, and that degenerate GTs got no positive; returns the results."""
    results = assign(name, gt_boxes, gt_labels, preds)
    assert len(results) == len(gt_boxes)
    for result, boxes, labels in zip(results, gt_boxes, gt_labels, strict=True):
        assert_well_formed(name, result, labels)
        assert not bool(result.positives_per_gt()[degenerate(boxes)].any())
    return results


# the cases of issue 9

SCENES = {
    "every GT zero-area": [torch.cat([ZERO_WIDTH, ZERO_HEIGHT])],
    "a zero-area GT beside a normal one": [torch.cat([NORMAL[:1], ZERO_WIDTH])],
    "a GT outside every anchor, alone": [OUTSIDE],
    "a GT outside every anchor, next to an image without objects": [OUTSIDE, NO_GT],
    "a GT outside every anchor, next to a normal image": [OUTSIDE, NORMAL],
    "a zero-area GT next to an image without objects": [ZERO_HEIGHT, NO_GT],
    "a 1x1 px GT alone": [TINY],
    "a 1x1 px GT next to an image without objects": [TINY, NO_GT],
    "no GT in any image": [NO_GT, NO_GT],
}


def test_the_fixtures_are_what_their_names_say():
    assert box_iou(OUTSIDE, ANCHORS).max() == 0
    assert 0 < box_iou(TINY, ANCHORS).max() < 0.1
    boxes = torch.cat([ZERO_WIDTH, ZERO_HEIGHT, OUTSIDE, TINY, NORMAL])
    assert degenerate(boxes).tolist() == [True] * 3 + [False] * 3


@pytest.mark.parametrize("name", ASSIGNERS)
@pytest.mark.parametrize("scene", SCENES)
def test_degenerate_scenes_never_raise_and_give_degenerate_gts_nothing(name, scene):
    gt_boxes = SCENES[scene]
    results = check_batch(name, gt_boxes, [labels_for(b) for b in gt_boxes])
    for result, boxes in zip(results, gt_boxes, strict=True):
        if bool(degenerate(boxes).all()):  # nothing usable: the image trains as negatives
            assert torch.equal(result.gt_inds, torch.zeros(len(ANCHORS), dtype=torch.long))


@pytest.mark.parametrize("name", ASSIGNERS)
def test_degenerate_gts_change_nothing_else(name):
    """GTs 1 and 3 of image 0 are degenerate: every other label is what the batch without them gets."""
    with_them = [torch.cat([NORMAL[:1], ZERO_WIDTH, NORMAL[1:], OUTSIDE]), NORMAL[1:]]
    labels = [torch.tensor([0, 1, 2, 3]), torch.tensor([1])]
    kept = torch.tensor([0, 2])  # image 0's usable GTs
    preds = predictions(2)
    results = check_batch(name, with_them, labels, preds)
    without = assign(name, [with_them[0][kept], with_them[1]], [labels[0][kept], labels[1]], preds)
    renumber = [torch.cat([torch.tensor([-1, 0]), kept + 1]), torch.tensor([-1, 0, 1])]  # by gt_inds + 1
    for result, alone, table in zip(results, without, renumber, strict=True):
        assert torch.equal(result.gt_inds, table[alone.gt_inds + 1])
        assert torch.equal(result.labels, alone.labels)
        torch.testing.assert_close(result.max_iou, alone.max_iou)
    if "cut" in results[0].details:  # PAA: the same mixture for each usable GT
        torch.testing.assert_close(results[0].details["cut"][kept], without[0].details["cut"])
        assert results[0].details["cut"][[1, 3]].isnan().all()


@pytest.mark.parametrize("name", ASSIGNERS)
def test_images_without_candidates_change_nothing_for_the_others(name):
    """A batch's GMM fit, and CoLAD's choice of teacher, see only candidates: images without any add none."""
    preds = predictions(3, seed=1)
    batch = [OUTSIDE, NORMAL, torch.cat([ZERO_WIDTH, ZERO_HEIGHT])]
    results = check_batch(name, batch, [labels_for(b) for b in batch], preds)
    only_normal = [Predictions(p.cls_logits[1:2], p.boxes[1:2]) for p in preds]
    alone = assign(name, [NORMAL], [labels_for(NORMAL)], only_normal)[0]
    assert torch.equal(results[1].gt_inds, alone.gt_inds) and alone.num_pos > 0
    for result in (results[0], results[2]):
        assert result.num_pos == 0 and not bool(result.ignored.any())


@pytest.mark.parametrize("device", DEVICES)
def test_a_batch_without_candidates_on_any_device(device):
    """The crash of issue 9 (no candidate in the whole batch) on the training device, CoLAD's batch too."""
    batch = [torch.cat([ZERO_WIDTH, OUTSIDE]).to(device), NO_GT.to(device)]
    labels = [torch.tensor([1, 2], device=device), torch.zeros(0, dtype=torch.long, device=device)]
    preds = [Predictions(p.cls_logits.to(device), p.boxes.to(device)) for p in predictions(2)]
    anchors = ANCHORS.to(device)
    paa = PAAAssigner().assign_batch(anchors, NUM_LEVEL_ANCHORS, batch, labels, preds[0])
    colad, _ = CoLADAssigner(granularity="group").assign_batch(
        anchors, NUM_LEVEL_ANCHORS, batch, labels, *preds
    )
    for result in paa + colad:
        assert result.gt_inds.device == anchors.device and not bool(result.gt_inds.any())
    assert paa[0].details["candidates"].tolist() == [[-1], [-1]] and paa[0].details["cut"].isnan().all()


# wrong values: a ValueError naming the argument


def bad_batch(value, image=1, gt=1, coordinate=2):
    """A batch of two normal images where one coordinate of ``gt_boxes[image][gt]`` is ``value``."""
    gt_boxes = [NORMAL.clone(), NORMAL.clone()]
    gt_boxes[image][gt, coordinate] = value
    return gt_boxes, [labels_for(NORMAL), labels_for(NORMAL)]


@pytest.mark.parametrize("name", ASSIGNERS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gt_coordinates_are_named(name, value):
    gt_boxes, gt_labels = bad_batch(value)
    with pytest.raises(ValueError, match=r"gt_boxes must be finite.* for GT 1") as error:
        assign(name, gt_boxes, gt_labels)
    if name in ("paa", "paa-original") or name.startswith("colad"):  # batch assigners say which image
        assert str(error.value).startswith("image 1: ")


def test_the_mmdetection_reference_mode_rejects_non_finite_gts_too():
    gt_boxes, gt_labels = bad_batch(float("nan"), image=0, gt=0)
    with pytest.raises(ValueError, match="gt_boxes must be finite"):
        FixedIoUAssigner(drop_degenerate_gts=False).assign(ANCHORS, gt_boxes[0], gt_labels[0])
    reference_paa = PAAAssigner(drop_degenerate_gts=False)
    with pytest.raises(ValueError, match="gt_boxes must be finite"):
        reference_paa.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, predictions(2)[0])


@pytest.mark.parametrize("name", ASSIGNERS)
@pytest.mark.parametrize(
    "label, message", [(-1, r"class ids .*, got -1"), (4, r"class ids in \[0, 4\), got 4")]
)
def test_labels_outside_the_classes_are_named(name, label, message):
    gt_labels = [labels_for(NORMAL), torch.tensor([0, label])]
    with pytest.raises(ValueError, match="gt_labels must be " + message):
        assign(name, [NORMAL, NORMAL], gt_labels)


def test_fixed_and_atss_check_the_upper_bound_only_when_told_the_number_of_classes():
    labels = torch.tensor([0, 7])
    assert FixedIoUAssigner().assign(ANCHORS, NORMAL, labels).labels.max() == 7
    assert ATSSAssigner().assign(ANCHORS, NUM_LEVEL_ANCHORS, NORMAL, labels).labels.max() == 7
    with pytest.raises(ValueError, match=r"gt_labels must be class ids in \[0, 7\), got 7"):
        FixedIoUAssigner(num_classes=7).assign(ANCHORS, NORMAL, labels)
    with pytest.raises(ValueError, match=r"gt_labels must be class ids >= 0, got -1"):
        ATSSAssigner().assign(ANCHORS, NUM_LEVEL_ANCHORS, NORMAL, torch.tensor([0, -1]))


def a_candidate_of(image, gt_boxes, gt_labels):
    """An anchor that PAA's pre-assignment makes a candidate in image ``image``."""
    pre = PAAAssigner().candidates(ANCHORS, gt_boxes, gt_labels).pres[image]
    return int(pre.pos.nonzero()[0])


@pytest.mark.parametrize("which", ["cls_logits", "boxes"])
def test_non_finite_predictions_at_a_candidate_are_named(which):
    gt_boxes, gt_labels = [NORMAL, NORMAL[:1]], [labels_for(NORMAL), labels_for(NORMAL[:1])]
    anchor = a_candidate_of(1, gt_boxes, gt_labels)
    first, second = predictions(2)
    broken = {"cls_logits": first.cls_logits.clone(), "boxes": first.boxes.clone()}
    broken[which][1, anchor, -1] = float("nan")
    broken = Predictions(**broken)
    args = (ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels)
    with pytest.raises(
        ValueError,
        match=rf"^predictions\.{which} must be finite, got NaN or inf at image 1, anchor {anchor} ",
    ):
        PAAAssigner().assign_batch(*args, broken)
    for granularity in ("iteration", "group"):
        with pytest.raises(ValueError, match=rf"^predictions_2\.{which} must be finite"):
            CoLADAssigner(granularity=granularity).assign_batch(*args, first, broken)


def test_non_finite_predictions_away_from_the_candidates_do_not_enter_the_assignment():
    gt_boxes, gt_labels = [NORMAL], [labels_for(NORMAL)]
    first = predictions(1)[0]
    cls_logits, pred_boxes = first.cls_logits, first.boxes
    expected = PAAAssigner().assign_batch(
        ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, Predictions(cls_logits, pred_boxes)
    )
    pre = PAAAssigner().candidates(ANCHORS, gt_boxes, gt_labels).pres[0]
    cls_logits = cls_logits.masked_fill(~pre.pos[None, :, None], float("nan"))  # NaN off the candidates
    result = PAAAssigner().assign_batch(
        ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, Predictions(cls_logits, pred_boxes)
    )
    assert torch.equal(result[0].gt_inds, expected[0].gt_inds)


def test_colad_names_the_network_whose_predictions_have_the_wrong_shape():
    first, second = predictions(1)
    too_few = Predictions(second.cls_logits[:, :-1], second.boxes[:, :-1])  # one anchor short
    with pytest.raises(ValueError, match=r"predictions_2\.cls_logits must be \[B=1, N=126, C\]"):
        CoLADAssigner().assign_batch(
            ANCHORS, NUM_LEVEL_ANCHORS, [NORMAL], [labels_for(NORMAL)], first, too_few
        )
    with pytest.raises(ValueError, match=r"boxes must be \[B, N, 4\] with cls_logits' B=1 and N=126"):
        Predictions(second.cls_logits, second.boxes[:, :-1])


# properties over random GT sets

KINDS = ["normal", "zero width", "zero height", "inverted", "outside", "tiny"]


@st.composite
def mixed_gts(draw, max_n=4):
    """``[n, 4]`` float32 boxes of the image, each turned into one of ``KINDS``."""
    height, width = IMAGE
    boxes = draw(boxes_in_image(IMAGE, max_n=max_n)).float()
    for box in boxes:
        kind = draw(st.sampled_from(KINDS))
        if kind == "zero width":
            box[2] = box[0]
        elif kind == "zero height":
            box[3] = box[1]
        elif kind == "inverted":
            box[[0, 2]] = box[[2, 0]]
        elif kind == "tiny":
            box[2:] = box[:2] + draw(st.floats(0.01, 2.0))
        elif kind == "outside":  # wholly outside the image, on a random side, near it or far
            axis = draw(st.sampled_from([0, 1]))
            side = (width, height)[axis] + float(box[axis + 2] - box[axis]) + draw(st.floats(0.0, 300.0))
            box[[axis, axis + 2]] += draw(st.sampled_from([-1.0, 1.0])) * side
    return boxes


@st.composite
def mixed_batches(draw):
    """One to three images of :func:`mixed_gts`, with random labels."""
    gt_boxes = draw(st.lists(mixed_gts(), min_size=1, max_size=3))
    labels = st.integers(0, NUM_CLASSES - 1)
    gt_labels = [
        torch.tensor(draw(st.lists(labels, min_size=len(b), max_size=len(b))), dtype=torch.long)
        for b in gt_boxes
    ]
    return gt_boxes, gt_labels


@pytest.mark.parametrize("name", ASSIGNERS)
@settings(max_examples=30, deadline=None)
@given(batch=mixed_batches(), seed=st.integers(0, 2**16))
def test_random_degenerate_gts_never_raise_and_get_no_positive(name, batch, seed):
    gt_boxes, gt_labels = batch
    check_batch(name, gt_boxes, gt_labels, predictions(len(gt_boxes), seed))


@pytest.mark.parametrize("name", ASSIGNERS)
@settings(max_examples=30, deadline=None)
@given(batch=mixed_batches(), where=st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 3)))
def test_a_nan_anywhere_in_the_gts_is_a_value_error_naming_them(name, batch, where):
    gt_boxes, gt_labels = batch
    image, gt, coordinate = where
    image = image % len(gt_boxes)
    if len(gt_boxes[image]) == 0:
        gt_boxes[image], gt_labels[image] = NORMAL[:1].clone(), torch.tensor([0])
    gt_boxes[image][gt % len(gt_boxes[image]), coordinate] = float("nan")
    with pytest.raises(ValueError, match="gt_boxes"):
        assign(name, gt_boxes, gt_labels)


def test_first_non_finite_names_the_row_and_is_not_fooled_by_an_overflowing_sum():
    big = 3e38  # two of them overflow a float32 sum: the fast check fails, the exact one finds nothing
    assert first_non_finite(torch.tensor([[big, big], [1.0, 2.0]])) is None
    assert first_non_finite(torch.tensor([[big, big], [1.0, float("nan")], [float("inf"), 0.0]])) == 1
    assert first_non_finite(torch.tensor([[float("inf"), -float("inf")]])) == 0  # their sum is NaN
    assert first_non_finite(torch.zeros(0, 4)) is None
