"""Every figure renders headlessly (Agg) to a non-empty PNG; set LAD_EDU_FIGURES=dir to keep them."""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lad_edu import viz  # noqa: E402
from lad_edu.anchors import retinanet, single  # noqa: E402
from lad_edu.assign import ATSSAssigner, FixedIoUAssigner, PAAAssigner  # noqa: E402
from lad_edu.boxes import box_iou  # noqa: E402
from lad_edu.scenes import DEMO_IMAGE_SIZE, demo_scene  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    image, gt_boxes, gt_labels, names = demo_scene()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    fixed = FixedIoUAssigner().assign(anchors, gt_boxes, gt_labels)
    atss = ATSSAssigner().assign(anchors, num_level_anchors, gt_boxes, gt_labels)
    g = torch.Generator().manual_seed(0)
    paa = PAAAssigner().assign(
        anchors,
        num_level_anchors,
        gt_boxes,
        gt_labels,
        torch.randn(len(anchors), len(names), generator=g),
        anchors + torch.randn(len(anchors), 4, generator=g),
    )
    return image, gt_boxes, names, anchors, num_level_anchors, fixed, atss, paa


def save(fig, tmp_path, name):
    out = os.environ.get("LAD_EDU_FIGURES") or tmp_path
    path = os.path.join(out, f"{name}.png")
    fig.savefig(path, dpi=80)
    plt.close(fig)
    assert os.path.getsize(path) > 2000  # a real picture, not an empty canvas
    return path


def test_draw_boxes(scene, tmp_path):
    image, gt_boxes, names, anchors, *_ = scene
    save(viz.draw_boxes(image, gt_boxes, names, anchors=anchors[:3]), tmp_path, "boxes")


def test_draw_assignment_levels(scene, tmp_path):
    image, gt_boxes, names, anchors, nla, fixed, atss, _ = scene
    fig = viz.draw_assignment_levels(atss, anchors, nla, gt_boxes, image=image, strides=[8, 16, 32, 64, 128])
    assert len(fig.axes) == 5 and "pos" in fig.axes[0].get_title()
    save(fig, tmp_path, "levels")


def test_draw_assignment_levels_with_ignored_anchors(scene, tmp_path):
    _, gt_boxes, *_ = scene
    anchors, nla = retinanet(strides=(8, 16))((64, 64))
    result = FixedIoUAssigner().assign(anchors, torch.tensor([[10.0, 10.0, 50.0, 40.0]]), torch.tensor([0]))
    assert result.ignored.any()
    save(
        viz.draw_assignment_levels(result, anchors, nla, gt_boxes[:0], image_size=(64, 64)),
        tmp_path,
        "ignored",
    )


def test_draw_iou_matrix(scene, tmp_path):
    _, gt_boxes, names, anchors, *_ = scene
    save(viz.draw_iou_matrix(box_iou(gt_boxes, anchors[:500]), names), tmp_path, "iou_matrix")


def test_draw_iou_histograms_with_fixed_and_per_gt_thresholds(scene, tmp_path):
    _, gt_boxes, names, anchors, _, _, atss, _ = scene
    iou = box_iou(gt_boxes, anchors)
    ious = [row[row > 0] for row in iou]
    fig = viz.draw_iou_histograms(ious, {"pos": 0.5, "neg": 0.4, "ATSS": atss.details["threshold"]}, names)
    assert len(fig.axes[0].get_legend().get_texts()) == 3
    save(fig, tmp_path, "iou_hist")


def test_draw_cost_gmm(scene, tmp_path):
    *_, paa = scene
    gt = int(paa.positives_per_gt().argmax())
    fig = viz.draw_cost_gmm(paa, gt)
    assert "cut" in " ".join(t.get_text() for t in fig.axes[0].get_legend().get_texts())
    save(fig, tmp_path, "cost_gmm")


def test_draw_assignment_diff(scene, tmp_path):
    image, gt_boxes, names, anchors, _, fixed, atss, _ = scene
    save(
        viz.draw_assignment_diff(fixed, atss, anchors, gt_boxes, ("fixed", "ATSS"), names, image),
        tmp_path,
        "diff",
    )
    with pytest.raises(ValueError, match="same anchors"):
        viz.draw_assignment_diff(fixed, atss, anchors[:-1], gt_boxes)


def test_functions_draw_into_a_given_ax(scene):
    _, gt_boxes, names, anchors, *_ = scene
    fig, ax = plt.subplots()
    assert viz.draw_boxes(None, gt_boxes, names, image_size=DEMO_IMAGE_SIZE, ax=ax) is fig
    plt.close(fig)
