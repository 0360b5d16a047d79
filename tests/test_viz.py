"""Every figure renders headlessly (Agg) to a non-empty PNG; set LAD_EDU_FIGURES=dir to keep them."""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from lad_edu import viz  # noqa: E402
from lad_edu.anchors import level_ids, retinanet, single  # noqa: E402
from lad_edu.assign import ATSSAssigner, FixedIoUAssigner, PAAAssigner  # noqa: E402
from lad_edu.boxes import box_iou  # noqa: E402
from lad_edu.gmm import fit_gmm2  # noqa: E402
from lad_edu.scenes import DEMO_IMAGE_SIZE, demo_scene  # noqa: E402
from lad_edu.viz.assignment import draw_cost_gmm_tol_contrast  # noqa: E402


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


def _legend(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_draw_cost_gmm_tol_contrast_refits_the_gts_own_costs(scene, tmp_path):
    *_, paa = scene
    d = paa.details
    for gt in range(paa.num_gts):
        # refitted with PAA's own stopping rule (sklearn's tol, max_iter), the right panel is the left one
        same = draw_cost_gmm_tol_contrast(paa, gt, tol=1e-3, max_iter=100)
        assert _legend(same.axes[0]) == _legend(same.axes[1])
        assert f"({int(paa.positives_per_gt()[gt])} positives)" in _legend(same.axes[1])[-1]
        plt.close(same)
    # a GT whose EM stopped after 3 iterations: run to tol = 1e-6, the Gaussians part and the cut moves
    valid = ~d["costs"].isnan()
    longer = fit_gmm2(torch.where(valid, d["costs"].double(), 0.0), valid, tol=1e-6, max_iter=1000)
    gt = int((longer.means[:, 1] - longer.means[:, 0] > 0.3).logical_and(d["gmm_n_iter"] == 3).nonzero()[0])
    fig = draw_cost_gmm_tol_contrast(paa, gt, gt_name="digit")
    left, right = fig.axes
    assert "3 EM iterations" in left.get_title() and left.get_title().startswith("digit: tol = 1e-3")
    assert right.get_title().endswith(f"tol = 1e-6, {int(longer.n_iter[gt])} EM iterations")
    assert f"component 1: μ={float(longer.means[gt, 1]):.2f}" in _legend(right)
    assert _legend(left)[-1] != _legend(right)[-1]  # another cut
    assert left.get_ylim() == right.get_ylim() and left.get_xlim() == right.get_xlim()
    save(fig, tmp_path, "cost_gmm_tol_contrast")


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


def test_draw_boxes_on_a_subset_keeps_each_gts_colour(scene):
    image, gt_boxes, names, *_ = scene
    fig = viz.draw_boxes(image, gt_boxes[5:7], names[5:7], gt_indices=[5, 6])
    edges = [patch.get_edgecolor()[:3] for patch in fig.axes[0].patches]
    assert edges == [tuple(viz.gt_color(5)), tuple(viz.gt_color(6))]  # GT k is colour k, alone or not
    with pytest.raises(ValueError, match="gt_indices has 1 entries for 2 gt_boxes"):
        viz.draw_boxes(image, gt_boxes[5:7], gt_indices=[5])
    plt.close("all")


def test_positives_are_ringed_and_larger_than_negatives(scene):
    image, gt_boxes, _, anchors, nla, fixed, *_ = scene
    fig = viz.draw_assignment_levels(fixed, anchors, nla, gt_boxes, image=image)
    negatives, _, positives = fig.axes[0].collections  # drawn negatives first, positives on top
    assert len(positives.get_offsets()) == int((fixed.pos & (level_ids(nla) == 0)).sum())
    assert positives.get_sizes()[0] >= 4 * negatives.get_sizes()[0]
    assert positives.get_edgecolor()[0][:3].tolist() == [1.0, 1.0, 1.0]  # white ring ...
    assert positives.get_path_effects()  # ... inside a black stroke: readable on the GT's own object
    plt.close(fig)


def test_draw_iou_histograms_stacks_candidates_by_level(scene, tmp_path):
    _, gt_boxes, names, anchors, nla, _, atss, _ = scene
    candidates, iou = atss.details["candidates"], atss.details["candidate_iou"]
    levels = [level_ids(nla)[candidates[:, g]] for g in range(len(names))]
    fig = viz.draw_iou_histograms(
        [iou[:, g] for g in range(len(names))],
        {"mean + std": atss.details["threshold"]},
        names,
        levels=levels,
        strides=[8, 16, 32, 64, 128],
    )
    stacks = fig.axes[0].containers  # GT 0's bars: one container per level, stacked
    per_level = [round(sum(bar.get_height() for bar in stack)) for stack in stacks]
    assert per_level == torch.bincount(levels[0], minlength=5).tolist() and sum(per_level) == len(candidates)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"stride {s}" for s in (8, 16, 32, 64, 128)]
    save(fig, tmp_path, "iou_hist_levels")


def test_plot_fixed_iou_sweep_draws_each_boxs_numbers(tmp_path):
    squares = torch.tensor([[0.02, 0.0, 18.0], [0.56, 4.0, 0.0], [0.85, 42.0, 0.0]])
    stretched = torch.tensor([[0.85, 43.0, 0.0], [0.21, 0.0, 12.0]])
    fig = viz.plot_fixed_iou_sweep(
        {
            "squares": (["4 x 4", "24 x 24", "48 x 48"], squares),
            "stretched": (["48 x 48", "192 x 12"], stretched),
        }
    )
    iou_top, _, bars_bottom, _ = fig.axes
    assert iou_top.lines[0].get_ydata().tolist() == pytest.approx(squares[:, 0].tolist())
    good, low = bars_bottom.containers
    assert [b.get_height() for b in good] == squares[:, 1].tolist()
    assert [b.get_height() for b in low] == squares[:, 2].tolist()
    save(fig, tmp_path, "fixed_iou_sweep")


# the comparison's figures (lad_edu.compare), from the inputs it documents


def test_seed_mean_std_skips_missing_values():
    mean, std = viz.seed_mean_std([[1.0, None, None], [3.0, 2.0, None]])
    assert mean[:2].tolist() == [2.0, 2.0] and std[0] == pytest.approx(2**0.5)
    assert torch.isnan(torch.tensor(std[1])) and torch.isnan(torch.tensor(mean[2]))


def test_plot_ap_by_strategy(tmp_path):
    fig = viz.plot_ap_by_strategy({"fixed": [10.0, 12.0], "paa": [15.0, 14.0], "lad": [None, 16.5]})
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["11.0 ± 1.4", "14.5 ± 0.7", "16.5"]
    save(fig, tmp_path, "compare_ap")


def _train_rows(seed: int, extra: dict) -> list[dict]:
    return [
        {"global_iter": i, "loss_cls": 1.0 / i + seed, "loss_bbox": 0.5, "loss_iou": 0.3, **extra}
        for i in range(1, 11)
    ]


def test_plot_loss_curves_has_the_common_terms_and_the_total(tmp_path):
    curves = {
        "paa": [_train_rows(0, {}), _train_rows(1, {})],
        "soft": [_train_rows(0, {"loss_soft_cls": 0.2})],
    }
    fig = viz.plot_loss_curves(curves)
    assert [ax.get_title() for ax in fig.axes] == [
        "loss_cls",
        "loss_bbox",
        "loss_iou",
        "total (what the run minimised)",
    ]
    assert fig.axes[3].lines[2].get_ydata()[0] == pytest.approx(1.0 + 0.5 + 0.3 + 0.2)  # soft's own terms
    save(fig, tmp_path, "compare_losses")


def test_plot_positives_vs_size_and_level_share(tmp_path):
    by_size = {"fixed": [[1.0, 3.0, 9.0], [1.2, 3.5, 8.0]], "atss": [[None, 8.0, 9.0], [5.0, 9.0, 9.5]]}
    fig = viz.plot_positives_vs_size(by_size, ["< 16", "16-32", ">= 32"], num_gts=[3, 10, 7])
    assert "n = 3" in fig.axes[0].get_xticklabels()[0].get_text()
    save(fig, tmp_path, "compare_size")
    shares = {"fixed": [[0.5, 0.3, 0.2, 0.0, 0.0]], "paa": [[0.6, 0.3, 0.1, 0.0, 0.0]]}
    fig = viz.plot_level_share(shares, strides=[8, 16, 32, 64, 128])
    assert fig.axes[0].get_xticklabels()[0].get_text() == "P3\nstride 8"
    save(fig, tmp_path, "compare_levels")
    # a strategy whose run logged no positive (shorter than log_every) is left out, not a crash
    fig = viz.plot_level_share({**shares, "tal": [], "hungarian": [None]}, strides=[8, 16, 32, 64, 128])
    assert len(fig.axes[0].patches) == 2 * 5 and len(fig.axes[0].get_xticks()) == 5


def test_low_quality_positives_are_counted_and_drawn_apart(scene, tmp_path):
    from lad_edu.compare.measure import low_quality_by_size, positives_by_size

    image, gt_boxes, _, anchors, nla, fixed, atss, _ = scene
    batches = [(image[None], [{"boxes": gt_boxes}])]
    bins = {"edges": [[0.0, 16.0], [16.0, 32.0], [32.0, 64.0], [64.0, None]]}  # dot; small digit; ...
    labelled = [([fixed], anchors, nla)]
    positives = positives_by_size(labelled, batches, bins)
    low_quality = low_quality_by_size(labelled, batches, bins, pos_iou_thr=0.5)
    below = fixed.pos & fixed.details["low_quality"] & (fixed.max_iou < 0.5)
    assert low_quality[0] == positives[0] == int(below[fixed.gt_inds == 1].sum()) > 0  # the dot: all ties
    assert low_quality[3] == 0 < positives[3]  # objects of 64 px and more reach 0.5: no tie needed
    assert low_quality_by_size([([atss], anchors, nla)], batches, bins, 0.5) is None  # no such step

    fig = viz.plot_positives_vs_size(
        {"fixed": [positives], "atss": [positives_by_size([([atss], anchors, nla)], batches, bins)]},
        ["< 16", "16-32", "32-64", ">= 64"],
        low_quality={"fixed": [low_quality]},
    )
    lines = {line.get_label(): line for line in fig.axes[0].lines}
    assert set(lines) == {"fixed: by the IoU thresholds", "atss", "fixed: low-quality matches"}
    by_rule = [p - q for p, q in zip(positives, low_quality, strict=True)]
    assert lines["fixed: by the IoU thresholds"].get_ydata().tolist() == pytest.approx(by_rule)
    assert lines["fixed: low-quality matches"].get_linestyle() == ":"
    save(fig, tmp_path, "compare_size_low_quality")


def test_draw_strategies_side_by_side_marks_gts_without_positive(scene, tmp_path):
    image, gt_boxes, names, anchors, nla, fixed, atss, paa = scene
    from lad_edu.assign import AssignResult

    gt_inds = torch.where(atss.gt_inds == 1, 0, atss.gt_inds)  # GT 0 loses its positives
    dropped = AssignResult(gt_inds, atss.max_iou, atss.labels, atss.num_gts)
    results = {"fixed": fixed, "atss, GT 0 dropped": dropped, "paa": paa}
    fig = viz.draw_strategies_side_by_side(
        image, anchors, nla, gt_boxes, results, strides=[8, 16, 32, 64, 128]
    )
    assert len(fig.axes) == 3 * len(nla)
    rows = [fig.axes[i * len(nla)] for i in range(3)]
    assert [ax.get_ylabel().split("\n")[0] for ax in rows] == list(results)
    assert "every GT has one" in rows[0].get_ylabel() and "1 GT(s) without" in rows[1].get_ylabel()
    assert [sum(line.get_marker() == "X" for line in ax.lines) for ax in rows] == [0, 1, 0]
    save(fig, tmp_path, "compare_side_by_side")


def test_plot_colad_timeline(tmp_path):
    rows = [
        {
            "global_iter": i,
            "rho_1": 0.5 + 0.01 * i,
            "rho_2": 0.6,
            "teacher_2": float(i < 5),
            "teacher_share_2": None,
        }
        for i in range(1, 11)
    ]
    fig = viz.plot_colad_timeline(rows)
    assert len(fig.axes) == 2
    save(fig, tmp_path, "compare_colad")


def test_save_png_writes_a_small_palette_png_that_looks_the_same(scene, tmp_path):
    import numpy as np
    from PIL import Image

    image, gt_boxes, names, anchors, nla, fixed, *_ = scene
    figure = viz.draw_assignment_levels(fixed, anchors, nla, gt_boxes, image=image)
    figure.savefig(tmp_path / "true_colour.png", dpi=110)
    viz.save_png(figure, tmp_path / "palette.png", dpi=110)
    plt.close(figure)
    palette, true_colour = Image.open(tmp_path / "palette.png"), Image.open(tmp_path / "true_colour.png")
    assert palette.mode == "P" and palette.size == true_colour.size
    assert (tmp_path / "palette.png").stat().st_size < 0.5 * (tmp_path / "true_colour.png").stat().st_size
    difference = np.abs(
        np.asarray(palette.convert("RGB"), dtype=float) - np.asarray(true_colour.convert("RGB"), dtype=float)
    )
    # out of 255, on a noisy photo-like canvas (plain plots lose less): the same picture to the eye
    assert difference.mean() < 3.0 and np.percentile(difference.max(axis=-1), 99) < 32
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temporary file left
