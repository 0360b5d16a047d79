import math

import numpy as np
import pytest
import torch

from benchmarks.bench_paa import paa_reassign_sklearn, synthetic_image
from lad_edu.anchors import level_ids, single
from lad_edu.assign import PAAAssigner, Predictions
from lad_edu.assign.paa import (
    _first_k_of_groups,
    _level_of,
    _sort_by,
    paa_cost,
    paa_positives,
    paa_reassign,
    paa_split,
)
from tests.conftest import DEVICES


def one_gt(costs, levels=None):
    """Candidates of a single GT: anchor i on level ``levels[i]`` (one level by default)."""
    k = len(costs)
    num_level_anchors = [k] if levels is None else [levels.count(lvl) for lvl in range(max(levels) + 1)]
    anchors = torch.arange(k) if levels is None else torch.tensor(np.argsort(levels, kind="stable")).argsort()
    return torch.tensor(costs), anchors, torch.zeros(k, dtype=torch.long), num_level_anchors


# cost (eq. 2)


def focal_by_hand(logit, target, gamma=2.0, alpha=0.25):
    p = 1 / (1 + math.exp(-logit))
    ce = -(target * math.log(p) + (1 - target) * math.log(1 - p))
    p_t = p * target + (1 - p) * (1 - target)
    return (alpha * target + (1 - alpha) * (1 - target)) * (1 - p_t) ** gamma * ce


def test_cost_is_focal_summed_over_classes_plus_weighted_box_term():
    logits = torch.tensor([[2.0, -1.0, 0.5], [-3.0, 1.5, 0.0]])
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0]])
    labels = torch.tensor([0, 1])
    candidate_gt = torch.tensor([0, 1])
    cls = [
        sum(focal_by_hand(z, float(c == labels[g])) for c, z in enumerate(row))
        for g, row in enumerate(logits.tolist())
    ]
    iou = torch.tensor([1.0, 50 / 150])
    giou = torch.tensor([1.0, 50 / 150 - (150 - 150) / 150])  # the hull 15x10 equals the union: GIoU = IoU
    cost = paa_cost(logits, pred, gts, labels, candidate_gt)
    torch.testing.assert_close(cost, torch.tensor(cls) + 1.3 * (1 - giou))
    original = paa_cost(logits, pred, gts, labels, candidate_gt, bbox_weight=1.0, loc_loss="iou")
    torch.testing.assert_close(original, torch.tensor(cls) + (1 - iou))
    disjoint = paa_cost(logits[:1], torch.tensor([[20.0, 0.0, 30.0, 10.0]]), gts, labels, candidate_gt[:1])
    torch.testing.assert_close(disjoint, torch.tensor(cls[:1]) + 1.3 * (1 - (-1 / 3)))  # GIoU: 0 - 100/300


def test_cost_rejects_unknown_localisation_loss_and_bad_shapes():
    with pytest.raises(ValueError, match="loc_loss"):
        paa_cost(
            torch.zeros(1, 2),
            torch.zeros(1, 4),
            torch.zeros(1, 4),
            torch.zeros(1),
            torch.zeros(1),
            loc_loss="l1",
        )
    with pytest.raises(ValueError, match=r"\[K, C\]"):
        paa_cost(
            torch.zeros(2, 2),
            torch.zeros(1, 4),
            torch.zeros(1, 4),
            torch.zeros(1),
            torch.zeros(1, dtype=torch.long),
        )


# reassignment


def test_known_split_cuts_at_the_mode_of_the_low_cost_component():
    costs, anchors, gts, nla = one_gt([0.2, 0.3, 0.25, 2.0, 2.2, 1.9])
    split = paa_split(costs, anchors, gts, nla, num_gts=1)
    assert split.pos_mask.tolist() == [True, False, True, False, False, False]
    assert split.component[0].tolist() == [0, 0, 0, 1, 1, 1]  # sorted: 0.2 0.25 0.3 | 1.9 2.0 2.2
    assert split.cut.tolist() == pytest.approx([0.25])
    torch.testing.assert_close(split.gmm.means[0], torch.tensor([0.25, 2.0333333333], dtype=torch.float64))


def test_two_gts_are_split_independently_and_keep_their_candidates():
    costs = torch.tensor([0.1, 3.0, 0.2, 3.1, 0.15, 0.3, 2.9, 0.12])
    candidate_gt = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    pos = paa_reassign(costs, torch.arange(8), candidate_gt, [8], num_gts=2)
    for g in (0, 1):
        mine = candidate_gt == g
        alone = paa_reassign(costs[mine], torch.arange(4), torch.zeros(4, dtype=torch.long), [4], num_gts=1)
        assert pos[mine].tolist() == alone.tolist()


@pytest.mark.parametrize("num_level_anchors", [[5], [3, 0, 2], [2, 3, 0], [0, 4], [1, 1, 1]])
def test_level_of_anchors(num_level_anchors):
    anchors = torch.randperm(sum(num_level_anchors))
    assert torch.equal(_level_of(anchors, num_level_anchors), level_ids(num_level_anchors)[anchors])


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_sort_by_group_then_cost_then_position(dtype):
    """float32 and narrower costs sort as one int64 key (group, cost bits); it must order like a stable
    lexicographic sort: ties, negative costs, -0.0 == 0.0, infinities."""
    rng = np.random.default_rng(0)
    values = [-np.inf, -2.5, -1.0, -1e-30, -0.0, 0.0, 1e-30, 0.5, 0.5, 3.0, 7e4, np.inf]
    costs = torch.tensor(rng.choice(values, 500), dtype=dtype)
    groups = torch.tensor(rng.integers(0, 7, 500))
    expected = np.lexsort((costs.double().numpy(), groups.numpy()))  # stable: ties keep their positions
    assert _sort_by(groups, costs).tolist() == expected.tolist()


def test_first_k_of_groups():
    groups = torch.tensor([0, 0, 0, 2, 5, 5, 5, 5, 7])
    assert _first_k_of_groups(groups, 2).tolist() == [1, 1, 0, 1, 1, 1, 0, 0, 1]
    assert _first_k_of_groups(groups, 1).tolist() == [1, 0, 0, 1, 1, 0, 0, 0, 1]
    assert _first_k_of_groups(groups, 20).all() and len(_first_k_of_groups(groups[:0], 3)) == 0


def test_float64_costs_split_as_float32_costs_do():
    """float64 costs take the two-sort path of _sort_by; exactly representable ones split the same."""
    anchors, num_level_anchors = single()((320, 320))
    costs, cand_anchor, cand_gt = synthetic_image(anchors, (320, 320), 30, 0)
    single_precision = paa_split(costs, cand_anchor, cand_gt, num_level_anchors, 30)
    double_precision = paa_split(costs.double(), cand_anchor, cand_gt, num_level_anchors, 30)
    assert torch.equal(single_precision.candidates, double_precision.candidates)
    assert torch.equal(single_precision.pos_mask, double_precision.pos_mask)


def test_only_the_topk_lowest_costs_per_level_enter():
    # level 0 holds 4 candidates, level 1 holds 3; with topk=2 the costs 0.5 and 9 on level 0 are cut first
    costs, anchors, gts, nla = one_gt([0.1, 0.5, 0.12, 9.0, 0.11, 4.0, 4.2], levels=[0, 0, 0, 0, 1, 1, 1])
    split = paa_split(costs, anchors, gts, nla, num_gts=1, topk=2)
    entered = sorted(split.candidates[0][split.valid[0]].tolist())
    assert entered == [0, 2, 4, 5]  # level 0: 0.1, 0.12; level 1: 0.11, 4.0
    assert not split.pos_mask[[1, 3, 6]].any()  # never entered: negative


def test_single_candidate_is_dropped_by_default_and_kept_in_the_original_variant():
    costs, anchors, gts, nla = one_gt([0.4])
    assert paa_reassign(costs, anchors, gts, nla, num_gts=1).tolist() == [False]
    assert paa_reassign(costs, anchors, gts, nla, num_gts=1, keep_single_candidate=True).tolist() == [True]


def test_all_equal_costs_never_crash_and_make_every_candidate_positive():
    costs, anchors, gts, nla = one_gt([0.7] * 8)
    split = paa_split(costs, anchors, gts, nla, num_gts=1)
    assert split.pos_mask.all()  # every candidate is component 0 and ties at the mode
    assert torch.isfinite(split.gmm.means).all()


def test_no_low_cost_component_gives_nothing_or_everything():
    costs = torch.tensor([[0.1, 0.2, 0.3]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    component = torch.ones(1, 3, dtype=torch.long)  # every candidate in component 1
    score = torch.tensor([[-1.0, -0.5, -2.0]])
    assert paa_positives(costs, valid, component, score).tolist() == [[False] * 3]
    assert paa_positives(costs, valid, component, score, all_if_no_fg=True).tolist() == [[True] * 3]


def test_positives_rule_on_a_constructed_mixture():
    costs = torch.tensor([[0.1, 0.2, 0.3, 0.4, 5.0], [0.5, 0.0, 0.0, 0.0, 0.0]])
    valid = torch.tensor([[True] * 5, [True, False, False, False, False]])
    component = torch.tensor([[0, 0, 1, 0, 1], [0, -1, -1, -1, -1]])
    score = torch.tensor([[-3.0, -1.0, -0.1, -2.0, -9.0], [-1.0, 0.0, 0.0, 0.0, 0.0]])
    # row 0: component 0 = {0.1, 0.2, 0.4}, its best score is 0.2 -> {0.1, 0.2}; 0.3 is component 1
    # row 1: a lone candidate
    assert paa_positives(costs, valid, component, score).tolist() == [
        [True, True, False, False, False],
        [False] * 5,
    ]
    assert paa_positives(costs, valid, component, score, keep_single_candidate=True)[1, 0]


def test_no_candidates_and_gts_without_candidates():
    empty = paa_split(
        torch.zeros(0), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), [4], 3
    )
    assert empty.pos_mask.shape == (0,) and empty.cut.isnan().all() and empty.candidates.shape[0] == 3
    costs, anchors, gts, nla = one_gt([0.1, 0.2, 3.0, 3.1])
    split = paa_split(costs, anchors, gts, nla, num_gts=3)  # GTs 1 and 2 have no candidate
    assert not split.valid[1:].any() and split.cut[1:].isnan().all() and split.pos_mask.any()


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_the_per_gt_sklearn_loop(seed):
    anchors, num_level_anchors = single()((320, 320))
    costs, cand_anchor, cand_gt = synthetic_image(anchors, (320, 320), 30, seed)
    ours = paa_reassign(costs, cand_anchor, cand_gt, num_level_anchors, 30).numpy()
    reference = paa_reassign_sklearn(costs, cand_anchor, cand_gt, num_level_anchors, 30)
    differing_gts = set(cand_gt[torch.from_numpy(ours != reference)].tolist())
    assert len(differing_gts) <= 1  # >= 29 of 30 GTs identical (in practice all; see bench_paa.py)


# the assigner


def scene(num_images=3, num_classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    anchors, num_level_anchors = single(strides=(8, 16, 32))((128, 128))
    gt_boxes, gt_labels = [], []
    for n in range(num_images):
        xy = torch.rand(n + 1, 2, generator=g) * 80
        wh = 8 + torch.rand(n + 1, 2, generator=g) * 40
        gt_boxes.append(torch.cat([xy, xy + wh], dim=1))
        gt_labels.append(torch.randint(0, num_classes, (n + 1,), generator=g))
    cls_logits = torch.randn(num_images, len(anchors), num_classes, generator=g)
    pred_boxes = anchors + torch.randn(num_images, len(anchors), 4, generator=g) * 4
    pred_boxes = torch.cat([pred_boxes[..., :2], torch.max(pred_boxes[..., 2:], pred_boxes[..., :2] + 1)], -1)
    return anchors, num_level_anchors, gt_boxes, gt_labels, cls_logits, pred_boxes


def test_a_batch_gives_each_image_what_it_gets_alone():
    anchors, nla, gt_boxes, gt_labels, cls_logits, pred_boxes = scene()
    batch = PAAAssigner().assign_batch(anchors, nla, gt_boxes, gt_labels, Predictions(cls_logits, pred_boxes))
    for b in range(len(gt_boxes)):
        alone = PAAAssigner().assign(anchors, nla, gt_boxes[b], gt_labels[b], cls_logits[b], pred_boxes[b])
        assert torch.equal(batch[b].gt_inds, alone.gt_inds)
        assert torch.equal(batch[b].details["candidates"], alone.details["candidates"])
        torch.testing.assert_close(batch[b].details["gmm_means"], alone.details["gmm_means"])


def test_positives_keep_their_pre_assigned_gt_and_the_rest_is_negative():
    anchors, nla, gt_boxes, gt_labels, cls_logits, pred_boxes = scene()
    result = PAAAssigner().assign(anchors, nla, gt_boxes[2], gt_labels[2], cls_logits[2], pred_boxes[2])
    pre = result.details["pre_gt_inds"]
    assert torch.equal(result.gt_inds[result.pos], pre[result.pos])
    assert set(result.gt_inds.unique().tolist()) <= {0, 1, 2, 3}  # no ignore
    assert result.num_pos < int((pre > 0).sum())
    assert result.details["costs"].shape == result.details["candidates"].shape
    assert result.details["gmm_means"].shape == (3, 2)
    assert result.details["gmm_n_iter"].shape == (3,) and (result.details["gmm_n_iter"] >= 2).all()
    chosen = result.details["candidates"][result.details["positive"]]
    assert sorted(chosen.tolist()) == sorted(result.pos.nonzero().squeeze(1).tolist())


def test_image_without_gt_and_with_a_degenerate_gt():
    anchors, nla, _, _, cls_logits, pred_boxes = scene(num_images=1)
    none = PAAAssigner().assign(
        anchors, nla, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), cls_logits[0], pred_boxes[0]
    )
    assert (none.gt_inds == 0).all()
    boxes = torch.tensor([[10.0, 10.0, 60.0, 50.0], [30.0, 30.0, 30.0, 70.0]])  # the second has zero width
    result = PAAAssigner().assign(anchors, nla, boxes, torch.tensor([1, 2]), cls_logits[0], pred_boxes[0])
    assert result.positives_per_gt()[1] == 0 and result.positives_per_gt()[0] > 0


def test_assigner_rejects_mismatched_predictions():
    anchors, nla, gt_boxes, gt_labels, cls_logits, pred_boxes = scene(num_images=1)
    with pytest.raises(ValueError, match="cls_logits"):
        PAAAssigner().assign(anchors, nla, gt_boxes[0], gt_labels[0], cls_logits[0, :-1], pred_boxes[0])
    with pytest.raises(ValueError, match="loc_loss"):
        PAAAssigner(loc_loss="l2")
    with pytest.raises(ValueError, match="num_level_anchors"):
        PAAAssigner().assign(anchors, nla[:-1], gt_boxes[0], gt_labels[0], cls_logits[0], pred_boxes[0])
    with pytest.raises(ValueError, match=r"class ids in \[0, 5\)"):
        PAAAssigner().assign(anchors, nla, gt_boxes[0], gt_labels[0] + 5, cls_logits[0], pred_boxes[0])


@pytest.mark.parametrize("device", DEVICES)
def test_device_is_kept_and_agrees_with_cpu(device):
    anchors, nla, gt_boxes, gt_labels, cls_logits, pred_boxes = scene()
    cpu = PAAAssigner().assign_batch(anchors, nla, gt_boxes, gt_labels, Predictions(cls_logits, pred_boxes))
    moved = PAAAssigner().assign_batch(
        anchors.to(device),
        nla,
        [b.to(device) for b in gt_boxes],
        [c.to(device) for c in gt_labels],
        Predictions(cls_logits.to(device), pred_boxes.to(device)),
    )
    for a, b in zip(cpu, moved, strict=True):
        assert b.gt_inds.device.type == device and torch.equal(a.gt_inds, b.gt_inds.cpu())
