"""One call shape for every assigner: build_assigner, assign_batch, Predictions, the batch layout."""

import pytest
import torch

from lad_edu.anchors import single
from lad_edu.assign import ASSIGNERS, BatchLayout, Predictions, assigner_options, build_assigner
from lad_edu.train.config import AssignConfig, ConfigError, DistillConfig, TrainConfig

IMAGE = (96, 128)
ANCHORS, NUM_LEVEL_ANCHORS = single(strides=(8, 16, 32))(IMAGE)
NUM_CLASSES = 5


def batch_of_three(seed=0):
    """Three images' GTs (the second without objects) and a network's predictions for them."""
    g = torch.Generator().manual_seed(seed)
    gt_boxes, gt_labels = [], []
    for count in (3, 0, 2):
        xy = torch.rand(count, 2, generator=g) * 60
        wh = 10 + torch.rand(count, 2, generator=g) * 40
        gt_boxes.append(torch.cat([xy, xy + wh], dim=1))
        gt_labels.append(torch.randint(0, NUM_CLASSES, (count,), generator=g))
    cls_logits = torch.randn(3, len(ANCHORS), NUM_CLASSES, generator=g)
    boxes = ANCHORS + 4 * torch.randn(3, len(ANCHORS), 4, generator=g)
    boxes = torch.cat([boxes[..., :2], torch.maximum(boxes[..., 2:], boxes[..., :2] + 1)], dim=-1)
    return gt_boxes, gt_labels, Predictions(cls_logits, boxes)


def alone(name, assigner, boxes, labels, predictions, b):
    """Image ``b`` through the assigner's per-image method."""
    if name == "fixed":
        return assigner.assign(ANCHORS, boxes, labels)
    if name == "atss":
        return assigner.assign(ANCHORS, NUM_LEVEL_ANCHORS, boxes, labels)
    return assigner.assign(
        ANCHORS, NUM_LEVEL_ANCHORS, boxes, labels, predictions.cls_logits[b], predictions.boxes[b]
    )


@pytest.mark.parametrize("name", list(ASSIGNERS))
def test_a_batch_gives_every_image_exactly_what_it_gets_alone(name):
    gt_boxes, gt_labels, predictions = batch_of_three()
    assigner = build_assigner(name)
    batch = assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, predictions)
    assert len(batch) == 3 and batch[0].num_pos > 0 and batch[1].num_pos == 0
    for b, result in enumerate(batch):
        single_image = alone(name, assigner, gt_boxes[b], gt_labels[b], predictions, b)
        assert torch.equal(result.gt_inds, single_image.gt_inds)
        assert torch.equal(result.labels, single_image.labels)
        assert torch.equal(result.max_iou, single_image.max_iou)
        assert (result.quality is None) == (single_image.quality is None)
        if result.quality is not None:  # the soft target of the task-aligned rule and SimOTA
            assert torch.equal(result.quality, single_image.quality)
        assert result.details.keys() == single_image.details.keys()
        for key, value in result.details.items():
            assert_same_detail(key, value, single_image.details[key])


def assert_same_detail(key, batch_value, alone_value):
    """Equal, but for PAA's ``[G, M]`` slot tables: a batch pads every image's rows to the batch's widest."""
    if key in ("candidates", "costs", "component", "positive"):
        width = alone_value.shape[1]
        padding = {"candidates": -1, "component": -1, "positive": False, "costs": float("nan")}[key]
        extra = batch_value[:, width:]
        assert bool((extra.isnan() if key == "costs" else extra == padding).all()), key
        batch_value = batch_value[:, :width]
    torch.testing.assert_close(batch_value, alone_value, equal_nan=True, rtol=0, atol=0, msg=key)


def test_which_assigners_read_predictions():
    assert {name: cls.uses_predictions for name, cls in ASSIGNERS.items()} == {
        "fixed": False,
        "atss": False,
        "paa": True,
        "tal": True,
        "simota": True,
        "hungarian": True,
    }
    gt_boxes, gt_labels, _ = batch_of_three()
    for name in ("fixed", "atss"):  # no predictions needed
        assert len(build_assigner(name).assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels)) == 3
    for name in ("paa", "tal", "simota", "hungarian"):
        assigner = build_assigner(name)
        with pytest.raises(ValueError, match=rf"{type(assigner).__name__} .*pass predictions=Predictions"):
            assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels)
        with pytest.raises(ValueError, match="predictions must be a lad_edu.assign.Predictions, got tuple"):
            assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels, (1, 2))


def test_unknown_names_and_options_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown assigner 'ota'; valid assigners: fixed, atss, paa, tal, "):
        build_assigner("ota")
    with pytest.raises(ValueError, match="assigner 'paa' has no option 'pos_iou_thr'; its options: topk, "):
        build_assigner("paa", pos_iou_thr=0.5)
    assert assigner_options("atss") == ("topk", "center_eps", "num_classes")
    paa = build_assigner("paa", topk=4, keep_single_candidate=True)
    assert (paa.topk, paa.keep_single_candidate, paa.all_if_no_fg) == (4, True, False)


@pytest.mark.parametrize("name", list(ASSIGNERS))
def test_batch_errors_name_the_argument_and_the_image(name):
    gt_boxes, gt_labels, predictions = batch_of_three()
    assigner = build_assigner(name, **({} if name == "paa" else {"num_classes": NUM_CLASSES}))
    with pytest.raises(ValueError, match="one tensor per image"):
        assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, gt_labels[:2], predictions)
    with pytest.raises(ValueError, match="num_level_anchors"):
        assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS[:-1], gt_boxes, gt_labels, predictions)
    bad_labels = [gt_labels[0], gt_labels[1], torch.tensor([0, -1])]
    with pytest.raises(ValueError, match=r"^image 2: gt_labels must be class ids .*, got -1"):
        assigner.assign_batch(ANCHORS, NUM_LEVEL_ANCHORS, gt_boxes, bad_labels, predictions)


def test_predictions_check_their_shapes():
    cls_logits, boxes = torch.zeros(2, 7, 3), torch.zeros(2, 7, 4)
    assert Predictions(cls_logits, boxes, [[4, 5], (6, 7)]).image_sizes == ((4, 5), (6, 7))
    with pytest.raises(ValueError, match=r"cls_logits must be a \[B, N, C\] tensor, got \(7, 3\)"):
        Predictions(cls_logits[0], boxes)
    with pytest.raises(ValueError, match=r"boxes must be \[B, N, 4\] with cls_logits' B=2 and N=7"):
        Predictions(cls_logits, boxes[:, :, :2])
    with pytest.raises(ValueError, match="image_sizes must hold one"):
        Predictions(cls_logits, boxes, [(4, 5)])
    predictions = Predictions(cls_logits.bfloat16().requires_grad_(), boxes)
    assert predictions.float().cls_logits.dtype == torch.float32
    assert not predictions.detach().cls_logits.requires_grad


def test_the_batch_layout_round_trips():
    layout = BatchLayout.of(num_anchors=5, gt_counts=[2, 0, 3])
    assert (layout.num_images, layout.num_gts, layout.gt_offsets) == (3, 5, (0, 2, 2, 5))
    flat = layout.flat_anchors(2, torch.tensor([0, 4]))
    image, anchor = layout.image_and_anchor(flat)
    assert flat.tolist() == [10, 14] and image.tolist() == [2, 2] and anchor.tolist() == [0, 4]
    assert layout.flat_gts(2, torch.tensor([0, 2])).tolist() == [2, 4] and layout.gt_rows(2) == slice(2, 5)
    assert layout.level_sizes([3, 2]) == [3, 2, 3, 2, 3, 2]
    gt_inds = torch.tensor([[2, 0, -1, 1, 0], [0, 0, 0, 0, 0], [0, 3, 0, 0, 1]])
    pos_anchor, pos_gt = layout.positives(gt_inds)
    assert pos_anchor.tolist() == [0, 3, 11, 14] and pos_gt.tolist() == [1, 0, 4, 2]
    with pytest.raises(ValueError, match=r"gt_inds must be \[B=3, N=5\]"):
        layout.positives(gt_inds[:2])


def test_the_training_config_builds_its_assigner_with_its_options():
    cfg = AssignConfig(assigner="paa", topk=4, keep_single_candidate=True, bbox_weight=1.0, loc_loss="iou")
    paa = cfg.build_assigner(num_classes=NUM_CLASSES)
    assert (paa.topk, paa.keep_single_candidate, paa.bbox_weight, paa.loc_loss) == (4, True, 1.0, "iou")
    fixed = AssignConfig(assigner="fixed", pos_iou_thr=0.6, neg_iou_thr=0.3).build_assigner(NUM_CLASSES)
    assert (fixed.pos_iou_thr, fixed.neg_iou_thr, fixed.num_classes) == (0.6, 0.3, NUM_CLASSES)
    assert AssignConfig(assigner="atss", topk=5).build_assigner(NUM_CLASSES).num_classes == NUM_CLASSES
    # an option left at None keeps the assigner's own default: topk is 9 for ATSS and PAA, 13 for TAL
    assert AssignConfig(assigner="atss").build_assigner(NUM_CLASSES).topk == 9
    assert AssignConfig(assigner="tal").build_assigner(NUM_CLASSES).topk == 13
    tal = AssignConfig(assigner="tal", topk=10, alpha=0.5, variant="ultralytics").build_assigner(NUM_CLASSES)
    assert (tal.topk, tal.alpha, tal.beta, tal.variant) == (10, 0.5, 6.0, "ultralytics")
    simota = AssignConfig(assigner="simota", cls_weight=2.0, center_radius=1.5).build_assigner(NUM_CLASSES)
    assert (simota.cls_weight, simota.center_radius, simota.iou_weight) == (2.0, 1.5, 3.0)
    hungarian = AssignConfig(assigner="hungarian", max_pairs=1000).build_assigner(NUM_CLASSES)
    assert (hungarian.cls_weight, hungarian.max_pairs) == (2.0, 1000)  # SimOTA's cls_weight default is 1.0


def test_teacher_modes_need_an_assigner_that_reads_predictions():
    for mode in ("lad", "solad"):
        with pytest.raises(ConfigError, match=f"distill.mode='{mode}' feeds the teacher's predictions"):
            TrainConfig(assign=AssignConfig(assigner="atss"), distill=DistillConfig(mode=mode))
    with pytest.raises(ConfigError, match="colad.*set assign.assigner=paa"):
        TrainConfig(assign=AssignConfig(assigner="fixed"), distill=DistillConfig(mode="colad"))
