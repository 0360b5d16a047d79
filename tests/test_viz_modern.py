"""The figures of the newer rules (lad_edu.viz.modern) draw what the assigners computed: hand-worked cases,
headless (Agg). The artists are found by their ``gid``."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from scipy.optimize import linear_sum_assignment  # noqa: E402

from lad_edu import viz  # noqa: E402
from lad_edu.anchors import single  # noqa: E402
from lad_edu.assign import (  # noqa: E402
    HungarianAssigner,
    Predictions,
    SimOTAAssigner,
    TaskAlignedAssigner,
)
from lad_edu.assign.hungarian import hungarian_cost  # noqa: E402
from lad_edu.assign.result import AssignResult  # noqa: E402
from lad_edu.assign.simota import prior_points, simota_cost  # noqa: E402
from lad_edu.assign.tal import alignment_metric  # noqa: E402
from lad_edu.boxes import box_iou  # noqa: E402
from lad_edu.viz.common import gt_color  # noqa: E402
from lad_edu.viz.modern import CLEAR_BELOW, cheapest_columns, level_grid  # noqa: E402


def rendered(fig, tmp_path, name):
    """Render ``fig`` to a PNG (what a headless run does), close it, and check the file is not empty."""
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=50)
    plt.close(fig)
    assert path.stat().st_size > 1000


def artists(fig, gid):
    """Every artist of ``fig`` whose gid is ``gid`` (scatter collections, bars, boxes, images)."""
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


def points(fig, gid) -> set[tuple[float, float]]:
    """The positions of the markers of every scatter with ``gid``."""
    return {tuple(map(float, xy)) for c in artists(fig, gid) for xy in c.get_offsets()}


def points_in(ax, gid) -> list[tuple[float, float]]:
    return [tuple(map(float, xy)) for c in ax.collections if c.get_gid() == gid for xy in c.get_offsets()]


# The task-aligned example of TaskAlignedAssigner's docstring: a 32 x 32 image, strides 8 and 16 (16 + 4
# anchors, centres at multiples of the stride), one GT [4, 4, 20, 20] of class 1 that every anchor predicts
# exactly (u = 1), so t = s: class 1 scores sigmoid(2, 1, 3, 4) at anchors 5, 6, 7 and 19, sigmoid(-5)
# elsewhere. topk = 3: candidates 19, 7, 5; anchor 7's centre (24, 8) lies outside the GT, 5's (8, 8) and
# 19's (16, 16) inside, so the positives are 5 and 19.
@pytest.fixture(scope="module")
def aligned():
    anchors, num_level_anchors = single(strides=(8, 16))((32, 32))
    gt, labels = torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.tensor([1])
    boxes = gt.expand(20, 4).clone()
    logits = torch.full((20, 3), -5.0)
    logits[[5, 6, 7, 19], 1] = torch.tensor([2.0, 1.0, 3.0, 4.0])
    result = TaskAlignedAssigner(topk=3).assign(anchors, num_level_anchors, gt, labels, logits, boxes)
    metric = alignment_metric(logits[None], box_iou(gt, boxes)[None], labels[None], alpha=1.0, beta=6.0)[0]
    return anchors, num_level_anchors, gt, result, metric


def test_the_heat_map_is_the_metric_on_each_levels_grid(aligned, tmp_path):
    anchors, num_level_anchors, gt, result, metric = aligned
    fig = viz.draw_alignment_metric(metric, result, anchors, num_level_anchors, gt, image_size=(32, 32))
    (p3,) = artists(fig, "metric GT 0 level 0")
    (p4,) = artists(fig, "metric GT 0 level 1")
    # anchors are stored row by row (x fastest): level 0 is a 4 x 4 grid, level 1 a 2 x 2 one
    np.testing.assert_array_equal(p3.get_array().data, metric[0, :16].view(4, 4).double().numpy())
    np.testing.assert_array_equal(p4.get_array().data, metric[0, 16:].view(2, 2).double().numpy())
    # sigmoid(-5) = 0.0067 is under 2 % of the largest t, sigmoid(4) = 0.982: those cells are left clear
    assert CLEAR_BELOW * torch.sigmoid(torch.tensor(4.0)) > torch.sigmoid(torch.tensor(-5.0))
    assert p3.get_array().mask.sum() == 16 - 3 and p4.get_array().mask.sum() == 4 - 1
    assert p3.get_extent() == [-4.0, 28.0, 28.0, -4.0]  # cells of 8 px centred on x, y = 0 ... 24
    rendered(fig, tmp_path, "alignment_metric")


def test_the_marks_are_the_top_k_the_centre_test_and_the_positives(aligned, tmp_path):
    anchors, num_level_anchors, gt, result, metric = aligned
    fig = viz.draw_alignment_metric(metric, result, anchors, num_level_anchors, gt, image_size=(32, 32))
    assert points(fig, "centre outside") == {(24.0, 8.0)}  # anchor 7
    assert points(fig, "candidate") == {(8.0, 8.0), (16.0, 16.0)}  # anchors 5 and 19: centre inside
    assert points(fig, "positive") == {(8.0, 8.0), (16.0, 16.0)}
    assert [ax.get_title() for ax in fig.axes[:2]] == [
        "stride 8: 2 of the top-k",
        "stride 16: 1 of the top-k",
    ]
    rendered(fig, tmp_path, "alignment_marks")


def test_quality_bars_are_the_soft_targets_and_the_best_reaches_the_best_iou(tmp_path):
    # one GT [0, 0, 20, 20]; anchor 5 (centre (8, 8)) predicts it exactly (u = 1) with a score of 0.5,
    # anchor 6 (centre (16, 8)) predicts [0, 0, 20, 10] (u = 0.5) with 0.9: t = 0.5 and 0.9 / 64, so
    # t_hat = 0.5 / (0.5 + 1e-7) · 1 ≈ 1 and (0.9 / 64) / 0.5 · 1 = 0.028125; every other anchor predicts
    # a far box (u = 0, t = 0)
    anchors, num_level_anchors = single(strides=(8, 16))((32, 32))
    gt = torch.tensor([[0.0, 0.0, 20.0, 20.0]])
    boxes = torch.tensor([[30.0, 30.0, 31.0, 31.0]]).repeat(20, 1)
    boxes[5], boxes[6] = gt[0], torch.tensor([0.0, 0.0, 20.0, 10.0])
    logits = torch.full((20, 1), -9.0)
    logits[5, 0], logits[6, 0] = 0.0, torch.logit(torch.tensor(0.9))
    result = TaskAlignedAssigner(topk=2).assign(
        anchors, num_level_anchors, gt, torch.tensor([0]), logits, boxes
    )
    assert result.pos.nonzero().flatten().tolist() == [5, 6]  # centres (8, 8) and (16, 8), both inside
    fig = viz.plot_alignment_quality(result, ["GT 0"])
    heights = [bar.get_height() for bar in artists(fig, "quality GT 0")]
    assert heights == pytest.approx([1.0, 0.028125], rel=1e-5)
    assert heights == pytest.approx(sorted(result.quality[result.pos].tolist(), reverse=True))
    (dots,) = artists(fig, "u GT 0")
    assert dots.get_offsets()[:, 1].tolist() == pytest.approx([1.0, 0.5])
    rendered(fig, tmp_path, "alignment_quality")


# SimOTA's worked example (SimOTAAssigner's docstring): two GTs A = [0, 0, 40, 40] and B = [20, 0, 60, 40],
# five priors at x = 8, 16, 32, 48, 56 on one level of stride 8; top IoUs A: 1, 0.538, 0.5, 0.333, 0 (sum
# 2.37, k = 2) and B: 1, 0.667, 0.4, 0.333, 0 (sum 2.40, k = 2); candidates A: x = 8, 16, 32 and B: 32, 48,
# 56; positives: A x = 8, B x = 32 and 48.
@pytest.fixture(scope="module")
def yolox():
    x = torch.tensor([8.0, 16.0, 32.0, 48.0, 56.0])
    anchors = torch.stack([x - 4, torch.full_like(x, 16), x + 4, torch.full_like(x, 24)], dim=1)
    pred_x = torch.tensor([[0.0, 40.0], [0.0, 20.0], [12.0, 52.0], [20.0, 60.0], [40.0, 56.0]])
    pred_boxes = torch.stack([pred_x[:, 0], torch.zeros(5), pred_x[:, 1], torch.full((5,), 40.0)], 1)
    gts, labels = torch.tensor([[0.0, 0.0, 40.0, 40.0], [20.0, 0.0, 60.0, 40.0]]), torch.tensor([0, 0])
    logits = torch.zeros(5, 1)
    result = SimOTAAssigner().assign(anchors, [5], gts, labels, logits, pred_boxes)
    centres, strides = prior_points(anchors, [5])
    cost = simota_cost(
        centres=centres, strides=strides, gt_boxes=gts[None], gt_labels=labels[None],
        cls_logits=logits[None], pred_boxes=pred_boxes[None],
    )  # fmt: skip
    return anchors, gts, result, cost


def test_dynamic_k_stacks_the_top_ious_and_marks_their_floor(yolox, tmp_path):
    _, _, result, cost = yolox
    assert result.details["dynamic_k"].tolist() == [2, 2]
    fig = viz.plot_dynamic_k(cost, gt_names=["A", "B"])
    for k, expected in enumerate(([1.0, 28 / 52, 0.5, 1 / 3, 0.0], [1.0, 2 / 3, 0.4, 1 / 3, 0.0])):
        blocks = artists(fig, f"iou GT {k}")
        assert [b.get_height() for b in blocks] == pytest.approx(expected, abs=1e-6)
        assert blocks[-1].get_y() == pytest.approx(sum(expected[:-1]), abs=1e-6)  # stacked, not overlaid
        (tick,) = artists(fig, f"k GT {k}")
        assert tick.get_segments()[0][:, 1].tolist() == [2.0, 2.0]  # k = floor(2.37) = floor(2.40) = 2
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["Σ = 2.37\nk = 2", "Σ = 2.40\nk = 2"]
    rendered(fig, tmp_path, "dynamic_k")


def test_simota_regions_show_the_candidates_the_regions_and_the_positives(yolox, tmp_path):
    anchors, gts, result, cost = yolox
    fig = viz.draw_simota_regions(cost, result, anchors, [5], gts, image_size=(40, 64))
    (ax,) = fig.axes
    rings = [c for c in ax.collections if c.get_gid() == "candidate"]
    assert [sorted(x for x, _ in c.get_offsets().tolist()) for c in rings] == [[8, 16, 32], [32, 48, 56]]
    assert [to_rgba(c.get_edgecolor()[0]) for c in rings] == [to_rgba(gt_color(0)), to_rgba(gt_color(1))]
    (dots,) = [c for c in ax.collections if c.get_gid() == "positive"]
    assert dots.get_offsets()[:, 0].tolist() == [8.0, 32.0, 48.0]
    assert [to_rgba(c) for c in dots.get_facecolors()] == [to_rgba(gt_color(k)) for k in (0, 1, 1)]
    # the centre regions: GT centre ± 2.5 · 8 = ± 20 px, dashed: [0, 0, 40, 40] and [20, 0, 60, 40]
    dashed = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_linestyle() == "--"]
    assert [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in dashed] == [
        (0.0, 0.0, 40.0, 40.0),
        (20.0, 0.0, 40.0, 40.0),
    ]
    assert ax.get_title() == "stride 8: 5 candidates, 3 positives"  # x = 32 is a candidate of both, once
    rendered(fig, tmp_path, "simota_regions")


def test_cheapest_columns_keep_each_gts_order_and_its_match():
    cost = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.2, 0.3, 0.8, 0.05]])
    # GT 0: 0, 2 (its two cheapest) and 3 (its match); GT 1: 3 (shown already), 0 (shown), so nothing new
    assert cheapest_columns(cost, [3, 0], per_gt=2) == [0, 2, 3]
    assert cheapest_columns(cost, [None, None], per_gt=1) == [0, 3]


def test_the_boxed_cells_are_scipys_match_and_the_triangles_each_gts_cheapest(tmp_path):
    # Hungarian's docstring example, [anchor, GT]: (1, 1.5), (2, 6), (5, 4). Both GTs' cheapest is anchor 0;
    # the optimum gives it to GT 1 (1.5) and anchor 1 to GT 0 (2.0): 3.5, against greedy's 1 + 4 = 5
    cost = torch.tensor([[1.0, 1.5], [2.0, 6.0], [5.0, 4.0]]).T  # [G, N]
    anchor, gt = linear_sum_assignment(cost.T.numpy())
    gt_inds = torch.zeros(3, dtype=torch.long)
    gt_inds[torch.from_numpy(anchor)] = torch.from_numpy(gt) + 1
    assert gt_inds.tolist() == [2, 1, 0]
    result = AssignResult(gt_inds, torch.zeros(3), torch.tensor([0, 0, -1]), num_gts=2)
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [8.0, 0.0, 16.0, 8.0], [16.0, 0.0, 24.0, 8.0]])
    gts = torch.tensor([[0.0, 0.0, 10.0, 10.0], [6.0, 0.0, 16.0, 10.0]])
    fig = viz.draw_hungarian_match(cost, result, anchors, [3], gts, anchors, per_gt=3, image_size=(8, 24))
    matrix, picture = fig.axes[:2]  # then the colour bar
    columns = [int(label.get_text().split()[0]) for label in matrix.get_xticklabels()]
    assert columns == [0, 1, 2]  # GT 0's anchors by cost: 1.0, 2.0, 5.0
    boxes = [p for p in matrix.patches if p.get_gid() == "match"]
    assert sorted((round(b.get_y() + 0.5), columns[round(b.get_x() + 0.5)]) for b in boxes) == [
        (0, 1),
        (1, 0),
    ]
    greedy = np.array(points_in(matrix, "greedy"))  # row k at y = k, each GT's mark at its top
    np.testing.assert_allclose(greedy, [[0.0, -0.3], [0.0, 0.7]])  # both GTs' cheapest: anchor 0
    assert "total 3.50" in matrix.get_title()
    # on the image: the matched anchors' centres, and a cross at anchor 0 for GT 0 (its cheapest, not given)
    assert points_in(picture, "match") == [(12.0, 4.0), (4.0, 4.0)]
    assert points_in(picture, "greedy") == [(4.0, 4.0)]
    # zoomed on what is drawn (x 0 ... 16, y 0 ... 10) plus 8 px, within the 24 x 8 image
    assert picture.get_xlim() == (0.0, 24.0) and picture.get_ylim() == (8.0, 0.0)
    rendered(fig, tmp_path, "hungarian_clash")


def test_the_match_drawn_is_the_assigners_on_network_like_costs(tmp_path):
    g = torch.Generator().manual_seed(0)
    anchors, num_level_anchors = single(strides=(8, 16))((32, 32))
    gts = torch.tensor([[2.0, 2.0, 14.0, 12.0], [10.0, 8.0, 30.0, 30.0], [16.0, 0.0, 28.0, 10.0]])
    labels = torch.tensor([0, 1, 0])
    logits = torch.randn(20, 2, generator=g)
    boxes = anchors + 3 * torch.randn(20, 4, generator=g)
    result = HungarianAssigner().assign(anchors, num_level_anchors, gts, labels, logits, boxes)
    cost = hungarian_cost(logits[None], boxes[None], gts[None], labels[None], [(32, 32)]).total[0]
    fig = viz.draw_hungarian_match(cost, result, anchors, num_level_anchors, gts, boxes, per_gt=4, focus=[0])
    matrix, picture = fig.axes[:2]
    columns = [int(label.get_text().split()[0]) for label in matrix.get_xticklabels()]
    boxes_drawn = [p for p in matrix.patches if p.get_gid() == "match"]
    drawn = sorted((round(b.get_y() + 0.5), columns[round(b.get_x() + 0.5)]) for b in boxes_drawn)
    anchor, gt = linear_sum_assignment(cost.T.numpy())
    assert drawn == sorted(zip(gt.tolist(), anchor.tolist(), strict=True))
    greedy = [columns[round(x)] for x, _ in points_in(matrix, "greedy")]
    assert greedy == cost.argmin(dim=1).tolist()
    shown = np.array([t.get_text() for t in matrix.texts], dtype=float).reshape(3, len(columns))
    np.testing.assert_allclose(shown, cost[:, columns].numpy(), atol=0.05)  # the values, to one decimal
    # the picture is zoomed on GT 0, its matched prediction and (when the match is not it) its cheapest anchor
    mine = [gts[0], boxes[int(anchor[gt == 0][0])]]
    if int(anchor[gt == 0][0]) != greedy[0]:
        mine.append(((anchors[greedy[0], :2] + anchors[greedy[0], 2:]) / 2).repeat(2))
    corners = torch.stack(mine)
    assert picture.get_xlim() == pytest.approx(
        (float(corners[:, 0].min()) - 8, float(corners[:, 2].max()) + 8)
    )
    assert picture.get_ylim() == pytest.approx(
        (float(corners[:, 3].max()) + 8, float(corners[:, 1].min()) - 8)
    )
    rendered(fig, tmp_path, "hungarian_random")


def test_side_by_side_draws_each_rules_positives_and_crosses_out_a_gt_without(tmp_path):
    # two GTs; rule "a": anchors 5 and 6 (level 0, centres (8, 8), (16, 8)) and 19 (level 1, (16, 16))
    # learn GT 0, GT 1 gets nothing; rule "b": no positive at all
    anchors, num_level_anchors = single(strides=(8, 16))((32, 32))
    gts = torch.tensor([[2.0, 2.0, 22.0, 22.0], [25.0, 25.0, 29.0, 28.0]])
    gt_inds = torch.zeros(20, dtype=torch.long)
    gt_inds[[5, 6, 19]] = 1
    a = AssignResult(gt_inds, torch.zeros(20), torch.where(gt_inds > 0, 0, -1), num_gts=2)
    b = AssignResult.all_negative(anchors, num_gts=2)
    fig = viz.draw_rules_side_by_side({"a": a, "b": b}, anchors, num_level_anchors, gts, image_size=(32, 32))
    first, second = fig.axes[:2]
    assert points_in(first, "positive level 0") == [(8.0, 8.0), (16.0, 8.0)]
    assert points_in(first, "positive level 1") == [(16.0, 16.0)]
    (p4,), (p3,) = ([c for c in first.collections if c.get_gid() == f"positive level {i}"] for i in (1, 0))
    assert first.collections.index(p4) < first.collections.index(p3)  # the coarser level underneath
    assert p4.get_sizes()[0] > p3.get_sizes()[0]  # and larger
    assert first.get_title() == "a: 3 positives\nper GT: 3 · 0"
    assert not points_in(second, "positive level 0") and second.get_title() == "b: 0 positives\nper GT: 0 · 0"
    crosses = [line for line in first.lines if line.get_marker() == "X"]
    assert [tuple(line.get_xydata()[0]) for line in crosses] == [(27.0, 26.5)]  # GT 1's centre
    assert len([line for line in second.lines if line.get_marker() == "X"]) == 2
    assert not fig.axes[2].get_visible()  # three columns, two rules: the third panel stays empty
    rendered(fig, tmp_path, "rules_side_by_side")


def test_level_grid_takes_the_largest_value_where_anchors_share_a_location():
    values, extent = level_grid(
        torch.tensor([1.0, 5.0, 2.0]), torch.tensor([[0.0, 0.0]] * 2 + [[16.0, 0.0]]), 16
    )
    assert values.tolist() == [[5.0, 2.0]] and extent == [-8.0, 24.0, 8.0, -8.0]


def test_every_positive_of_a_batched_result_is_drawn_on_its_level():
    # assign_batch's result (the notebook's path): anchors 5, 10 (level 0, centres (8, 8), (16, 16)) and 19
    # (level 1, (16, 16)) predict the GT exactly, every other one a far box (t = 0): the three positives
    anchors, num_level_anchors = single(strides=(8, 16))((32, 32))
    gts, labels = torch.tensor([[4.0, 4.0, 28.0, 28.0]]), torch.tensor([0])
    boxes = torch.tensor([[40.0, 40.0, 41.0, 41.0]]).repeat(20, 1)
    boxes[[5, 10, 19]] = gts[0]
    predictions = Predictions(torch.zeros(1, 20, 1), boxes[None])
    (result,) = TaskAlignedAssigner(topk=6).assign_batch(
        anchors, num_level_anchors, [gts], [labels], predictions
    )
    metric = alignment_metric(
        predictions.cls_logits, box_iou(gts, boxes)[None], labels[None], alpha=1, beta=6
    )
    fig = viz.draw_alignment_metric(metric[0], result, anchors, num_level_anchors, gts)
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    for lvl, ax in enumerate(fig.axes[:2]):
        on_level = result.pos & (torch.arange(20) >= 16 if lvl else torch.arange(20) < 16)
        assert sorted(points_in(ax, "positive")) == sorted(map(tuple, centres[on_level].tolist()))
    assert result.pos.nonzero().flatten().tolist() == [5, 10, 19]
    plt.close(fig)
