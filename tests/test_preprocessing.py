"""Preprocessing in MMDetection's order: normalise, then pad with 0, everywhere an image enters a network.

The batch a loader builds is padded raw pixels; the network normalises and then zeroes the padding. The
tests fill the padding with random pixels, so a path that normalises the padding instead of zeroing it
(the order that used to be here) fails them.
"""

import pytest
import torch

from lad_edu.data.transforms import collate
from lad_edu.model import ModelConfig, build_detector
from lad_edu.train.config import TrainConfig
from lad_edu.train.engine import autocast_factory
from lad_edu.train.learner import Learner, Networks
from tests.test_model import TINY  # the tiny network of the model tests

SIZES = [(50, 70), (64, 81)]  # neither a multiple of 32: the batch is 64 x 96


def detector(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_detector(ModelConfig(**{**TINY, **overrides}), num_classes=3).eval()


def padded_batch(seed: int = 0) -> tuple[torch.Tensor, list[dict]]:
    """Two images of SIZES collated to ``[2, 3, 64, 96]``, the padding then filled with random pixels."""
    generator = torch.Generator().manual_seed(seed)
    samples = []
    for height, width in SIZES:
        image = torch.rand(3, height, width, generator=generator) * 255
        target = {
            "boxes": torch.tensor([[4.0, 6.0, 40.0, 44.0]]),
            "labels": torch.tensor([1]),
            "crowd_boxes": torch.zeros(0, 4),
            "size": (height, width),
        }
        samples.append((image, target))
    images, targets = collate(samples)
    noise = torch.rand(images.shape, generator=generator) * 255
    for i, (height, width) in enumerate(SIZES):
        inside = torch.zeros(images.shape[-2:], dtype=torch.bool)
        inside[:height, :width] = True
        images[i] = torch.where(inside, images[i], noise[i])
    return images, targets


def by_hand(model, images: torch.Tensor) -> torch.Tensor:
    """Each image normalised alone, then zero-padded to the batch's shape: what MMDetection feeds."""
    out = torch.zeros_like(images)
    for i, (height, width) in enumerate(SIZES):
        image = images[i, :, :height, :width]
        out[i, :, :height, :width] = (image - model.pixel_mean[0]) / model.pixel_std[0]
    return out


def capture_backbone_inputs(model) -> list[torch.Tensor]:
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    return seen


def assert_zero_padded(x: torch.Tensor) -> None:
    for i, (height, width) in enumerate(SIZES):
        assert x[i, :, height:].abs().sum() == 0 and x[i, :, :, width:].abs().sum() == 0, i


def test_normalize_zeroes_exactly_the_padding():
    model = detector()
    images, targets = padded_batch()
    x = model.normalize(images, [t["size"] for t in targets])
    assert_zero_padded(x)
    assert torch.equal(x, by_hand(model, images))
    # without sizes the whole tensor counts as image: the padding would become (noise - mean) / std
    assert not torch.equal(model.normalize(images), x)


def test_predictions_on_the_padded_batch_equal_the_normalised_then_zero_padded_image():
    model = detector()
    images, targets = padded_batch()
    out = model(images, [t["size"] for t in targets])
    expected = model.bbox_head(model.neck(model.backbone(by_hand(model, images))))
    assert torch.equal(out.cls_logits, expected.cls_logits)
    assert torch.equal(out.box_deltas, expected.box_deltas)
    assert torch.equal(out.iou_logits, expected.iou_logits)
    # the old order (normalise the padded batch) changes predictions near the right and bottom edges
    assert not torch.equal(model(images).cls_logits, out.cls_logits)


def test_predict_and_dense_predictions_zero_the_padding():
    model = detector()
    seen = capture_backbone_inputs(model)
    images, targets = padded_batch()
    sizes = [t["size"] for t in targets]
    model.predict(images, sizes)
    model.dense_predictions(images, sizes)
    assert len(seen) == 2
    for x in seen:
        assert_zero_padded(x)


def test_sizes_that_do_not_fit_the_batch_are_refused():
    model = detector()
    images, _ = padded_batch()
    with pytest.raises(ValueError, match="one image size per image"):
        model.normalize(images, [(50, 70)])
    with pytest.raises(ValueError, match=r"image 1 has size \(65, 81\)"):
        model.normalize(images, [(50, 70), (65, 81)])


@pytest.mark.parametrize("mode", ["paa", "lad", "colad"])
def test_training_feeds_every_network_zero_padded_images(mode):
    """The student, a LAD teacher and CoLAD's partner all see MMDetection's input."""
    cfg = TrainConfig(model=ModelConfig(**TINY))
    cfg.distill.mode = {"paa": "none", "lad": "lad", "colad": "colad"}[mode]
    student = detector(seed=0).train()
    partner = detector(seed=1).train() if mode == "colad" else None
    teacher = detector(seed=2) if mode == "lad" else None
    seen = {name: capture_backbone_inputs(net) for name, net in [("student", student)]}
    if partner is not None:
        seen["partner"] = capture_backbone_inputs(partner)
    if teacher is not None:
        seen["teacher"] = capture_backbone_inputs(teacher)
    networks = Networks(student, partner)
    learner = Learner(cfg, networks, networks, teacher)
    images, targets = padded_batch()
    loss, _, _ = learner.step(images, targets, autocast_factory("none", torch.device("cpu")))
    assert torch.isfinite(loss)
    for name, inputs in seen.items():
        assert len(inputs) == 1, name
        assert_zero_padded(inputs[0])


def test_predict_rescales_boxes_to_the_original_image_before_nms():
    model = detector()
    images, targets = padded_batch()
    sizes = [t["size"] for t in targets]
    factors = [(2.0, 1.6), (0.5, 0.8)]
    plain = model.predict(images, sizes)
    rescaled = model.predict(images, sizes, scale_factors=factors)
    for a, b, (fw, fh) in zip(plain, rescaled, factors, strict=True):
        assert len(a["boxes"]) > 0
        # NMS and score voting in scaled pixels keep the same detections (IoU is invariant under scaling)
        torch.testing.assert_close(b["scores"], a["scores"])
        assert torch.equal(b["labels"], a["labels"])
        torch.testing.assert_close(
            b["boxes"], a["boxes"] / torch.tensor([fw, fh, fw, fh]), rtol=1e-5, atol=1e-4
        )


def test_class_order_groups_the_voted_detections_as_mmdetection():
    images, targets = padded_batch()
    sizes = [t["size"] for t in targets]
    by_score = detector().predict(images, sizes)
    by_class = detector(voting_order="class").predict(images, sizes)
    for a, b in zip(by_score, by_class, strict=True):
        labels = b["labels"].tolist()
        assert labels == sorted(labels) and len(set(labels)) > 1  # grouped, in increasing label order
        for label in set(labels):
            inside = b["labels"] == label
            assert torch.equal(b["scores"][inside], a["scores"][a["labels"] == label])  # score order kept
            assert torch.equal(b["boxes"][inside], a["boxes"][a["labels"] == label])
    with pytest.raises(ValueError, match="voting_order"):
        ModelConfig(voting_order="label")


def test_predict_equals_mmdetections_test_time_row_by_row():
    """An image of any size -> the detections of MMDetection's PAA test time (transcribed as loops)."""
    from tests.reference import paa_predict_loop

    model = detector(voting_order="class")
    images, targets = padded_batch()
    sizes = [t["size"] for t in targets]
    factors = [(1.25, 1.3), (0.75, 0.8)]
    out = model(images, sizes)
    anchors, num_level_anchors = model.anchors(tuple(images.shape[-2:]))
    for i, result in enumerate(model.predict(images, sizes, scale_factors=factors)):
        boxes, scores, labels = paa_predict_loop(
            out.cls_logits[i].detach(),
            out.box_deltas[i].detach(),
            out.iou_logits[i].detach(),
            anchors,
            num_level_anchors,
            sizes[i],
            factors[i],
            model.coder,
        )
        assert len(scores) == len(result["scores"]) > 10
        assert torch.equal(result["labels"], labels)
        torch.testing.assert_close(result["scores"], scores.float())
        torch.testing.assert_close(result["boxes"], boxes, rtol=1e-5, atol=1e-4)
