"""The live sliders of notebooks 01-03 (``lad_edu.viz.interactive``), driven headlessly: a widget's value is
set as a reader's drag would set it, and its callback must redraw what the rule gives for that value."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lad_edu.anchors import level_ids, retinanet, single  # noqa: E402
from lad_edu.assign import FixedIoUAssigner  # noqa: E402
from lad_edu.boxes import box_centers, box_iou  # noqa: E402
from lad_edu.scenes import DEMO_IMAGE_SIZE, constructed_predictions, demo_scene  # noqa: E402
from lad_edu.viz import interactive  # noqa: E402

WIDGETS = [
    interactive.interactive_fixed_iou,
    interactive.interactive_atss,
    interactive.interactive_paa,
    interactive.interactive_box,
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("make", WIDGETS, ids=lambda f: f.__name__)
def test_static_fallback_draws_the_default_figure(make, monkeypatch):
    assert isinstance(make(static=True), Figure)
    monkeypatch.setenv(interactive.STATIC_ENV, "1")  # what a headless run sets
    assert isinstance(make(), Figure)
    monkeypatch.delenv(interactive.STATIC_ENV)
    assert isinstance(make(), Figure)  # no Jupyter kernel here: no comms for widgets


def test_use_static_outside_a_kernel_unless_told_otherwise(monkeypatch):
    monkeypatch.delenv(interactive.STATIC_ENV, raising=False)
    assert interactive.use_static() and not interactive.use_static(False)
    monkeypatch.setenv(interactive.STATIC_ENV, "0")
    assert interactive.use_static(False) is False


def test_fixed_iou_slider_raising_pos_iou_thr_never_adds_positives():
    live = interactive.interactive_fixed_iou(static=False)
    _, gt_boxes, gt_labels, _ = demo_scene()
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    previous = None
    for thr in (0.3, 0.5, 0.7, 0.9):
        live.widgets["pos_iou_thr"].value = thr  # the callback reassigns and redraws
        expected = FixedIoUAssigner(thr, 0.4).assign(anchors, gt_boxes, gt_labels)
        assert torch.equal(live.result.gt_inds, expected.gt_inds)
        assert f"IoU >= {thr:.2f}" in live.figure.get_suptitle()
        if previous is not None:
            assert not (live.result.pos & ~previous).any()  # every positive was one at the lower threshold
        previous = live.result.pos
    assert live.result.positives_per_gt()[0] > 0  # the dot keeps its low-quality positives ...
    live.widgets["match_low_quality"].value = False
    assert live.result.positives_per_gt()[0] == 0  # ... and loses them with the checkbox


def test_atss_slider_topk_sets_the_candidates_per_gt():
    live = interactive.interactive_atss(static=False)
    num_level_anchors = single()(DEMO_IMAGE_SIZE)[1]
    for topk in (1, 9):
        live.widgets["topk"].value = topk
        # topk nearest anchors on each of the 5 levels (every level holds at least 9)
        assert live.result.details["candidates"].shape[0] == len(num_level_anchors) * topk
        assert f"K = {len(num_level_anchors) * topk} candidates" in live.figure.get_suptitle()


def test_paa_sliders_move_the_costs_as_eq_2_says():
    live = interactive.interactive_paa(static=False)
    mean_cost = []
    for quality in (0.0, 0.5, 1.0):
        live.widgets["quality"].value = quality
        mean_cost.append(float(torch.nanmean(live.result.details["costs"])))
    assert mean_cost[0] > mean_cost[1] > mean_cost[2]  # a better network: cheaper candidates

    live.widgets["quality"].value = 0.5
    giou = live.result.details["costs"]
    live.widgets["loc_loss"].value = "iou"  # 1 - IoU <= 1 - GIoU, candidate by candidate
    iou = live.result.details["costs"]
    assert torch.equal(iou.isnan(), giou.isnan()) and (iou[~iou.isnan()] <= giou[~giou.isnan()] + 1e-6).all()
    live.widgets["bbox_weight"].value = 0.0  # no box term: the overlap measure no longer matters
    without_box = live.result.details["costs"]
    live.widgets["loc_loss"].value = "giou"
    assert torch.allclose(live.result.details["costs"], without_box, equal_nan=True)
    assert "0.00 · (1 − GIoU)" in live.figure.get_suptitle()


def test_box_resized_bigger_moves_its_positives_up_the_pyramid():
    live = interactive.interactive_box(static=False)
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    level = level_ids(num_level_anchors)
    mean_level = {}
    for side in (24, 256):
        live.widgets["w"].value = live.widgets["h"].value = side
        mean_level[side] = {rule: float(level[r.pos].float().mean()) for rule, r in live.result.items()}
    for rule in ("fixed IoU", "ATSS", "PAA"):
        assert mean_level[256][rule] > mean_level[24][rule], rule

    live.widgets["w"].value = live.widgets["h"].value = 48
    for x in (80, 240):  # dragged sideways: the positives follow
        live.widgets["x"].value = x
        for rule, result in live.result.items():
            assert abs(float(box_centers(anchors[result.pos])[:, 0].mean()) - x) < 16, rule


def test_redraws_close_the_figures_they_replace():
    live = interactive.interactive_atss(static=False)
    before = len(plt.get_fignums())
    for topk in (3, 5, 7):
        live.widgets["topk"].value = topk
    assert len(plt.get_fignums()) == before
    assert isinstance(live.figure, Figure) and live.result.details["candidates"].shape[0] == 5 * 7


def test_update_names_an_unknown_control():
    live = interactive.LiveFigure(lambda a: a, lambda result, a: plt.figure(), {"a": interactive.Control(1)})
    with pytest.raises(ValueError, match=r"unknown control\(s\) \['b'\]; the controls are \['a'\]"):
        live.update(b=2)


# the "network quality" of the PAA slider: constructed predictions (lad_edu.scenes)


def test_constructed_predictions_are_seeded_and_sharpen_with_quality():
    _, gt_boxes, gt_labels, _ = demo_scene()
    anchors, _ = single()(DEMO_IMAGE_SIZE)
    first = constructed_predictions(anchors, gt_boxes, gt_labels, quality=0.3, seed=1)
    again = constructed_predictions(anchors, gt_boxes, gt_labels, quality=0.3, seed=1)
    other = constructed_predictions(anchors, gt_boxes, gt_labels, quality=0.3, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[1], other[1])

    cls_logits, boxes = constructed_predictions(anchors, gt_boxes, gt_labels, quality=1.0)
    best_iou, best_gt = box_iou(anchors, gt_boxes).max(dim=1)
    sharp = best_iou >= 0.4  # quality 1: these anchors predict their GT's box exactly, without noise
    assert sharp.any() and torch.allclose(boxes[sharp], gt_boxes[best_gt[sharp]], atol=1e-3)
    assert torch.equal(cls_logits[sharp].argmax(dim=1), gt_labels[best_gt[sharp]])

    _, untrained = constructed_predictions(anchors, gt_boxes, gt_labels, quality=0.0)
    far = box_iou(untrained, gt_boxes).max(dim=1).values
    assert far[sharp].mean() < box_iou(boxes, gt_boxes).max(dim=1).values[sharp].mean()


def test_constructed_predictions_reject_a_quality_outside_0_1():
    anchors, _ = single()(DEMO_IMAGE_SIZE)
    with pytest.raises(ValueError, match=r"quality must lie in \[0, 1\]"):
        constructed_predictions(anchors, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), quality=1.5)
