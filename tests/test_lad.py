import pytest
import torch
from torch import nn

from lad_edu.anchors import single
from lad_edu.assign import PAAAssigner, Predictions
from lad_edu.assign.lad import LADAssigner, Teacher
from lad_edu.boxes import DeltaXYWHCoder


class TinyDetector(nn.Module):
    """A one-conv dense head on a fixed anchor set: images -> (cls_logits [B, N, C], boxes [B, N, 4])."""

    def __init__(self, anchors, num_classes=3):
        super().__init__()
        self.anchors = anchors
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, num_classes + 4)
        self.num_classes = num_classes

    def forward(self, images, image_sizes=None):
        pooled = self.features(images).mean(dim=(2, 3))  # [B, 8]
        out = self.head(pooled)[:, None, :] + 0.1 * torch.arange(len(self.anchors))[None, :, None].sin()
        cls_logits, deltas = out[..., : self.num_classes], out[..., self.num_classes :]
        boxes = DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2)).decode(
            self.anchors.repeat(len(images), 1), deltas.reshape(-1, 4)
        )
        return cls_logits, boxes.view(len(images), -1, 4)


def batch():
    torch.manual_seed(0)
    anchors, num_level_anchors = single(strides=(8, 16, 32))((64, 64))
    images = torch.randn(2, 3, 64, 64)
    gt_boxes = [
        torch.tensor([[4.0, 6.0, 40.0, 50.0]]),
        torch.tensor([[10.0, 10.0, 30.0, 24.0], [30.0, 20.0, 60.0, 60.0]]),
    ]
    gt_labels = [torch.tensor([1]), torch.tensor([0, 2])]
    return anchors, num_level_anchors, images, gt_boxes, gt_labels


def test_with_the_students_own_predictions_as_teacher_lad_equals_paa():
    anchors, nla, images, gt_boxes, gt_labels = batch()
    network = TinyDetector(anchors).eval()
    lad = LADAssigner(network).assign_batch(images, anchors, nla, gt_boxes, gt_labels)
    with torch.no_grad():
        cls_logits, boxes = network(images)
    paa = PAAAssigner().assign_batch(anchors, nla, gt_boxes, gt_labels, Predictions(cls_logits, boxes))
    for a, b in zip(lad, paa, strict=True):
        assert torch.equal(a.gt_inds, b.gt_inds) and torch.equal(a.labels, b.labels)
        assert a.num_pos > 0


def test_teacher_runs_in_eval_mode_and_gets_no_gradient():
    anchors, nla, images, gt_boxes, gt_labels = batch()
    teacher, student = TinyDetector(anchors).train(), TinyDetector(anchors).train()
    running_mean = teacher.features[1].running_mean.clone()
    results = LADAssigner(teacher).assign_batch(images, anchors, nla, gt_boxes, gt_labels)
    assert not teacher.training
    assert torch.equal(teacher.features[1].running_mean, running_mean)  # eval: BN statistics untouched

    cls_logits, _ = student(images)  # a student loss on the teacher's labels
    targets = torch.stack([r.labels.clamp(min=0) for r in results])
    weight = torch.stack([r.pos for r in results]).float()
    loss = (nn.functional.cross_entropy(cls_logits.transpose(1, 2), targets, reduction="none") * weight).sum()
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_any_callable_can_teach():
    anchors, nla, images, gt_boxes, gt_labels = batch()
    fixed = (torch.zeros(2, len(anchors), 3), anchors.expand(2, -1, -1))
    results = LADAssigner(lambda images, sizes: fixed).assign_batch(images, anchors, nla, gt_boxes, gt_labels)
    expected = PAAAssigner().assign_batch(anchors, nla, gt_boxes, gt_labels, Predictions(*fixed))
    assert all(torch.equal(a.gt_inds, b.gt_inds) for a, b in zip(results, expected, strict=True))


def test_the_teacher_is_frozen_whoever_calls_it():
    """A Teacher of a network's method finds the network: eval mode on every call, no gradient, and the
    image sizes carried along."""
    anchors, nla, images, gt_boxes, gt_labels = batch()
    network = TinyDetector(anchors)
    teacher = Teacher(network.forward)
    network.train()  # e.g. a parent module's .train() between two steps
    predictions = teacher(images, [(64, 64), (60, 50)])
    assert teacher.network is network and not network.training
    assert not predictions.cls_logits.requires_grad and not predictions.boxes.requires_grad
    assert predictions.image_sizes == ((64, 64), (60, 50))


def test_lad_feeds_any_prediction_based_assigner_and_refuses_the_others():
    from lad_edu.assign import build_assigner

    anchors, nla, images, gt_boxes, gt_labels = batch()
    network = TinyDetector(anchors).eval()
    original = build_assigner("paa", keep_single_candidate=True, all_if_no_fg=True, topk=4)
    results = LADAssigner(network, original).assign_batch(images, anchors, nla, gt_boxes, gt_labels)
    expected = original.assign_batch(anchors, nla, gt_boxes, gt_labels, Teacher(network)(images))
    assert all(torch.equal(a.gt_inds, b.gt_inds) for a, b in zip(results, expected, strict=True))
    with pytest.raises(ValueError, match="assigner must use predictions.*ATSSAssigner ignores them"):
        LADAssigner(network, build_assigner("atss"))
