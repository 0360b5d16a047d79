import math

import pytest
import torch
import torchvision.ops

from lad_edu.assign import AssignResult
from lad_edu.boxes import aligned_box_iou
from lad_edu.losses import LossWeights, detection_losses, soft_label_kl


def focal_by_hand(logit, target, gamma=2.0, alpha=0.25):
    p = 1 / (1 + math.exp(-logit))
    ce = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    return (alpha * target + (1 - alpha) * (1 - target)) * (1 - p_t) ** gamma * ce


def sum_by_hand(loss, cls_logits, targets):
    """``loss(logit, target)`` summed over image 0's anchors and classes; a None target skips the anchor."""
    rows = zip(cls_logits[0].tolist(), targets, strict=True)
    return sum(loss(z, t) for row, target in rows if target for z, t in zip(row, target, strict=True))


def result(gt_inds, gt_labels):
    return AssignResult.from_gt_inds(
        torch.tensor(gt_inds), torch.zeros(len(gt_inds)), torch.tensor(gt_labels)
    )


def one_image():
    # anchors: 0 positive of GT 0 (class 1), 1 negative, 2 ignored, 3 positive of GT 1 (class 0)
    cls_logits = torch.tensor([[[0.5, 1.0], [-1.0, 2.0], [3.0, 3.0], [0.2, -0.4]]])
    pred = torch.tensor(
        [[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0], [20.0, 0.0, 30.0, 10.0]]]
    )
    iou_logits = torch.tensor([[0.3, 0.0, 0.0, -0.2]])
    gts = [torch.tensor([[0.0, 0.0, 10.0, 20.0], [25.0, 0.0, 35.0, 10.0]])]
    return cls_logits, pred, iou_logits, [result([1, 0, -1, 2], [1, 0])], gts


def test_losses_by_hand():
    cls_logits, pred, iou_logits, assignments, gts = one_image()
    losses = detection_losses(cls_logits, pred, iou_logits, assignments, gts)
    focal = sum_by_hand(focal_by_hand, cls_logits, [[0, 1], [0, 0], None, [1, 0]])  # anchor 2 is ignored
    assert losses["loss_cls"].item() == pytest.approx(focal / 2)  # max(num_pos = 2, 1 image)
    iou = torch.tensor([0.5, 5 / 15])  # 100/200 and 50/150
    giou = torch.tensor([0.5, 5 / 15 - (150 - 150) / 150])  # hulls equal the unions
    expected_iou = 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor([0.3, -0.2]), iou)
    assert losses["loss_iou"].item() == pytest.approx(expected_iou.item())
    paa_box = 1.3 * ((1 - giou) * iou).sum() / iou.sum()
    assert losses["loss_bbox"].item() == pytest.approx(paa_box.item())
    lad = detection_losses(cls_logits, pred, iou_logits, assignments, gts, iou_weighted_bbox=False)
    assert lad["loss_bbox"].item() == pytest.approx(1.3 * (1 - giou).mean().item())
    halved = detection_losses(cls_logits, pred, iou_logits, assignments, gts, LossWeights(cls=0.5))
    assert halved["loss_cls"].item() == pytest.approx(losses["loss_cls"].item() / 2)


def test_images_without_objects_give_finite_losses_and_zero_gradients_for_boxes():
    cls_logits = torch.randn(2, 5, 3, requires_grad=True)
    pred = (torch.rand(2, 5, 4) * 10).cumsum(-1).requires_grad_()
    iou_logits = torch.randn(2, 5, requires_grad=True)
    empty = [AssignResult.all_negative(torch.zeros(5, 4), 0)] * 2
    losses = detection_losses(cls_logits, pred, iou_logits, empty, [torch.zeros(0, 4)] * 2)
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["loss_bbox"].item() == 0 and losses["loss_iou"].item() == 0
    sum(losses.values()).backward()
    assert pred.grad is not None and (pred.grad == 0).all() and iou_logits.grad is not None
    assert cls_logits.grad.abs().sum() > 0  # all-negative images still teach "background"


def test_gradient_descent_on_the_predictions_learns_every_term():
    cls_logits, pred, iou_logits, assignments, gts = one_image()
    params = [
        cls_logits.clone().requires_grad_(),
        pred.clone().requires_grad_(),
        iou_logits.clone().requires_grad_(),
    ]
    optimizer = torch.optim.SGD(params, lr=0.5)
    pos = assignments[0].pos
    target_boxes = torch.cat(gts)[assignments[0].gt_inds[pos] - 1]

    def iou_error():  # how far the IoU branch is from the IoU the boxes reach
        reached = aligned_box_iou(params[1][0, pos].detach(), target_boxes)
        return (params[2][0, pos].detach().sigmoid() - reached).abs().sum().item()

    first, first_error = (
        {k: v.item() for k, v in detection_losses(*params, assignments, gts).items()},
        iou_error(),
    )
    for _ in range(100):
        optimizer.zero_grad()
        sum(detection_losses(*params, assignments, gts).values()).backward()
        optimizer.step()
    last = detection_losses(*params, assignments, gts)
    assert last["loss_cls"].item() < first["loss_cls"] and last["loss_bbox"].item() < first["loss_bbox"]
    # the IoU term's target moves as the boxes improve (so its BCE floor moves too); its prediction follows
    assert iou_error() < first_error / 2


def test_mismatched_inputs_raise():
    cls_logits, pred, iou_logits, assignments, gts = one_image()
    with pytest.raises(ValueError, match="one assignment"):
        detection_losses(cls_logits, pred, iou_logits, assignments * 2, gts)
    with pytest.raises(ValueError, match="anchors"):
        detection_losses(cls_logits[:, :3], pred[:, :3], iou_logits[:, :3], assignments, gts)


def test_soft_label_kl_is_zero_on_agreement_and_focal_without_alpha_on_one_hot_targets():
    student = torch.randn(6, 4, requires_grad=True)
    assert soft_label_kl(student, student.detach()).item() == pytest.approx(0.0, abs=1e-7)
    one_hot = torch.zeros(6, 4)
    one_hot[torch.arange(6), torch.tensor([0, 1, 2, 3, 0, 1])] = 1
    teacher = (one_hot * 2 - 1) * 40  # sigmoid = 0 or 1 to float precision
    focal = torchvision.ops.sigmoid_focal_loss(student, one_hot, alpha=-1, gamma=2.0, reduction="sum")
    torch.testing.assert_close(soft_label_kl(student, teacher, gamma=2.0), focal, rtol=1e-4, atol=1e-5)


def test_soft_label_kl_trains_only_the_student():
    student = torch.randn(3, 2, requires_grad=True)
    teacher = torch.randn(3, 2, requires_grad=True)
    loss = soft_label_kl(student, teacher, avg_factor=3.0)
    loss.backward()
    assert loss.item() > 0 and teacher.grad is None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ"):
        soft_label_kl(student, teacher[:2])


def test_distillation_losses_follow_the_teacher_boxes_near_a_gt_only():
    from lad_edu.assign.result import AssignResult
    from lad_edu.losses import distillation_losses

    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0]])]
    teacher_boxes = torch.tensor([[[0.0, 0.0, 10.0, 9.0], [20.0, 20.0, 30.0, 30.0], [0.0, 0.0, 10.0, 4.0]]])
    student_boxes = torch.tensor([[[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]])
    logits = torch.zeros(1, 3, 2)
    assignment = AssignResult(torch.tensor([1, 0, -1]), torch.zeros(3), torch.tensor([0, -1, -1]), 1)
    out = distillation_losses(
        logits, student_boxes, logits.clone(), teacher_boxes, [assignment], gt, weight=2.0
    )
    # only anchor 0's teacher box (IoU 0.9 with the GT) is imitated; anchor 2's (IoU 0.4) is not
    expected = torchvision.ops.generalized_box_iou_loss(student_boxes[0, :1], teacher_boxes[0, :1]).mean()
    torch.testing.assert_close(out["loss_soft_bbox"], 2.0 * expected)
    assert out["loss_soft_cls"].item() == pytest.approx(0.0, abs=1e-7)  # same scores: nothing to learn
    # a different teacher score on the ignored anchor changes nothing; on a kept one it does
    teacher = logits.clone()
    teacher[0, 2] = 3.0
    same = distillation_losses(logits, student_boxes, teacher, teacher_boxes, [assignment], gt)
    assert same["loss_soft_cls"].item() == pytest.approx(0.0, abs=1e-7)
    teacher[0, 1] = 3.0
    moved = distillation_losses(logits, student_boxes, teacher, teacher_boxes, [assignment], gt)
    assert moved["loss_soft_cls"].item() > 0


def test_distillation_losses_on_an_image_without_objects_are_finite_and_on_the_graph():
    from lad_edu.assign.result import AssignResult
    from lad_edu.losses import distillation_losses

    boxes = torch.tensor([[[0.0, 0.0, 8.0, 8.0]]], requires_grad=True)
    logits = torch.zeros(1, 1, 2, requires_grad=True)
    assignment = AssignResult(torch.tensor([0]), torch.zeros(1), torch.tensor([-1]), 0)
    out = distillation_losses(
        logits, boxes, torch.ones(1, 1, 2), boxes.detach(), [assignment], [torch.zeros(0, 4)]
    )
    total = out["loss_soft_cls"] + out["loss_soft_bbox"]
    total.backward()
    assert torch.isfinite(total) and boxes.grad is not None


def qfl_by_hand(logit, target, beta=2.0):
    p = 1 / (1 + math.exp(-logit))
    bce = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    return bce * abs(target - p) ** beta


def test_quality_focal_loss_worked_example_and_its_one_hot_limit():
    from lad_edu.losses import quality_focal_loss

    # the docstring example: sigma 0.5, y 0.8: BCE = -(0.8 ln 0.5 + 0.2 ln 0.5) = ln 2, (y - sigma)^2 = 0.09
    assert quality_focal_loss(torch.tensor([0.0]), torch.tensor([0.8])).item() == pytest.approx(
        math.log(2) * 0.09
    )
    logits, one_hot = torch.randn(50, 3), torch.eye(3)[torch.randint(0, 3, (50,))]
    no_alpha_focal = torchvision.ops.sigmoid_focal_loss(
        logits, one_hot, alpha=-1, gamma=2.0, reduction="none"
    )
    torch.testing.assert_close(quality_focal_loss(logits, one_hot), no_alpha_focal)
    assert quality_focal_loss(torch.tensor([2.0]), torch.tensor([2.0]).sigmoid()).item() == 0.0


def test_a_quality_target_replaces_the_one_hot_one_by_hand():
    cls_logits, pred, iou_logits, assignments, gts = one_image()
    with_quality = AssignResult.from_gt_inds(
        assignments[0].gt_inds,
        assignments[0].max_iou,
        torch.tensor([1, 0]),
        quality=torch.tensor([0.6, 0, 0, 0.3]),
    )
    losses = detection_losses(cls_logits, pred, iou_logits, [with_quality], gts)
    qfl = sum_by_hand(qfl_by_hand, cls_logits, [[0, 0.6], [0, 0], None, [0.3, 0]])  # quality at the class
    assert losses["loss_cls"].item() == pytest.approx(qfl / 2)
    plain = detection_losses(cls_logits, pred, iou_logits, assignments, gts)
    off = detection_losses(cls_logits, pred, iou_logits, [with_quality], gts, soft_target=False)
    assert off["loss_cls"].item() == pytest.approx(plain["loss_cls"].item())  # the focal loss again
    for name in ("loss_bbox", "loss_iou"):  # only the classification term reads the quality
        assert losses[name].item() == pytest.approx(plain[name].item())


def test_an_image_without_quality_in_a_soft_batch_keeps_its_one_hot_target():
    cls_logits, pred, iou_logits, assignments, gts = one_image()
    quality = AssignResult.from_gt_inds(
        assignments[0].gt_inds,
        assignments[0].max_iou,
        torch.tensor([1, 0]),
        quality=torch.tensor([1.0, 0, 0, 1.0]),
    )
    batch = detection_losses(
        cls_logits.repeat(2, 1, 1),
        pred.repeat(2, 1, 1),
        iou_logits.repeat(2, 1),
        [quality, assignments[0]],
        gts * 2,
    )
    alone = detection_losses(cls_logits, pred, iou_logits, [quality], gts)
    assert batch["loss_cls"].item() == pytest.approx(
        alone["loss_cls"].item()
    )  # quality 1 == one-hot under QFL
