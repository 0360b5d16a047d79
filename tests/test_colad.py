import pytest
import torch

from lad_edu.assign import CoLADAssigner, PAAAssigner, Predictions, build_assigner
from lad_edu.assign.result import AssignResult, ignore_crowd
from lad_edu.assign.switch import merge_costs_per_group, rho_fisher, rho_std_mean
from tests.test_lad import TinyDetector, batch


def two_networks():
    anchors, nla, images, gt_boxes, gt_labels = batch()
    torch.manual_seed(1)
    net_1, net_2 = TinyDetector(anchors).eval(), TinyDetector(anchors).eval()
    with torch.no_grad():
        return anchors, nla, gt_boxes, gt_labels, Predictions(*net_1(images)), Predictions(*net_2(images))


def same(results_a, results_b):
    return all(torch.equal(a.gt_inds, b.gt_inds) for a, b in zip(results_a, results_b, strict=True))


@pytest.mark.parametrize("criterion", ["std_mean", "fisher"])
def test_per_iteration_switch_takes_the_network_with_the_higher_rho(criterion):
    anchors, nla, gt_boxes, gt_labels, pred_1, pred_2 = two_networks()
    paa = PAAAssigner()
    candidates = paa.candidates(anchors, gt_boxes, gt_labels)
    costs_1 = paa.costs(candidates, gt_boxes, gt_labels, pred_1)
    costs_2 = paa.costs(candidates, gt_boxes, gt_labels, pred_2)
    rho = {"std_mean": rho_std_mean, "fisher": rho_fisher}[criterion]
    rho_1, rho_2 = float(rho(costs_1[None])[0]), float(rho(costs_2[None])[0])
    assert rho_1 != rho_2
    expected_teacher = 2 if rho_2 >= rho_1 else 1
    colad = CoLADAssigner(paa, criterion=criterion)
    for first, second, teacher in [
        (pred_1, pred_2, expected_teacher),
        (pred_2, pred_1, 3 - expected_teacher),
    ]:
        results, choice = colad.assign_batch(anchors, nla, gt_boxes, gt_labels, first, second)
        assert choice.teacher == teacher
        chosen = first if teacher == 1 else second
        assert same(results, paa.assign_batch(anchors, nla, gt_boxes, gt_labels, chosen))
    assert choice.share_2 == float(choice.teacher == 2)


def test_per_group_switch_splits_the_merged_costs():
    anchors, nla, gt_boxes, gt_labels, pred_1, pred_2 = two_networks()
    paa = PAAAssigner()
    results, choice = CoLADAssigner(paa, granularity="group").assign_batch(
        anchors, nla, gt_boxes, gt_labels, pred_1, pred_2
    )
    candidates = paa.candidates(anchors, gt_boxes, gt_labels)
    costs_1 = paa.costs(candidates, gt_boxes, gt_labels, pred_1)
    costs_2 = paa.costs(candidates, gt_boxes, gt_labels, pred_2)
    merged, from_2 = merge_costs_per_group(costs_1, costs_2, candidates.anchor, candidates.gt, nla * 2)
    assert same(results, paa.assign_from_costs(candidates, merged, nla, gt_labels))
    assert choice.share_2 == pytest.approx(float(from_2.double().mean()))
    assert choice.teacher == (2 if choice.share_2 >= 0.5 else 1)


def test_identical_networks_give_paa():
    anchors, nla, gt_boxes, gt_labels, pred_1, _ = two_networks()
    for granularity in ("iteration", "group"):
        results, _ = CoLADAssigner(granularity=granularity).assign_batch(
            anchors, nla, gt_boxes, gt_labels, pred_1, pred_1
        )
        assert same(results, PAAAssigner().assign_batch(anchors, nla, gt_boxes, gt_labels, pred_1))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="criterion"):
        CoLADAssigner(criterion="entropy")
    with pytest.raises(ValueError, match="granularity"):
        CoLADAssigner(granularity="epoch")
    with pytest.raises(ValueError, match="std_mean"):
        CoLADAssigner(criterion="fisher", granularity="group")
    with pytest.raises(ValueError, match="assigner must be a PAAAssigner"):
        CoLADAssigner(build_assigner("atss"))


@pytest.mark.parametrize("granularity", ["iteration", "group"])
def test_the_choice_is_what_training_logs(granularity):
    anchors, nla, gt_boxes, gt_labels, pred_1, pred_2 = two_networks()
    _, choice = CoLADAssigner(granularity=granularity).assign_batch(
        anchors, nla, gt_boxes, gt_labels, pred_1, pred_2
    )
    metrics = choice.metrics()
    assert metrics == {
        "rho_1": choice.rho_1,
        "rho_2": choice.rho_2,
        "teacher_2": float(choice.teacher == 2),
        "teacher_share_2": choice.share_2,
    }
    assert all(isinstance(value, float) for value in metrics.values())


def test_crowd_regions_ignore_negatives_only():
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [0, 20, 10, 30], [4, 4, 14, 14]])
    result = AssignResult(
        gt_inds=torch.tensor([1, 0, 0, 0]),
        max_iou=torch.zeros(4),
        labels=torch.tensor([3, -1, -1, -1]),
        num_gts=1,
    )
    crowd = torch.tensor([[0.0, 0.0, 32.0, 12.0]])  # covers anchor 0 (a positive) and 0.8 of anchor 3
    out = ignore_crowd(result, anchors, crowd, iof_thr=0.5)
    assert out.gt_inds.tolist() == [1, 0, 0, -1]
    assert ignore_crowd(result, anchors, torch.zeros(0, 4)) is result
