"""LAD's teacher-vs-student cost figure (lad_edu.viz.distillation): hand-made costs, headless (Agg)."""

import math
import statistics

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from lad_edu import viz  # noqa: E402
from lad_edu.anchors import single  # noqa: E402
from lad_edu.assign import PAAAssigner  # noqa: E402
from lad_edu.viz.distillation import PAIR_COLORS  # noqa: E402

NAN = math.nan
# two GTs, NaN padding as in PAAAssigner's details["costs"]: the teacher separates GT 0's candidates
# (two cheap, one expensive), the student gives them all about the same cost
TEACHER = torch.tensor([[0.2, 0.3, 1.5, NAN], [0.5, 0.6, 0.7, 2.0]])
STUDENT = torch.tensor([[1.0, 1.1, 1.2, NAN], [0.9, 1.0, 1.05, 1.1]])
CUTS = (torch.tensor([0.3, 0.6]), torch.tensor([1.1, NAN]))  # the student's GT 1: no positive


def rendered(fig, tmp_path, name):
    """Render ``fig`` to a PNG (what a headless run does), close it, and check the file is not empty."""
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    plt.close(fig)
    assert path.stat().st_size > 1000


def visible_panels(fig):
    return [ax for ax in fig.axes if ax.get_visible()]


def test_one_panel_per_gt_with_both_networks_counts_on_one_shared_x_axis(tmp_path):
    fig = viz.draw_cost_histograms_pair(TEACHER, STUDENT, cuts=CUTS, gt_names=["digit", "shape"])
    panels = visible_panels(fig)
    assert len(panels) == 2
    xlims = {ax.get_xlim() for ax in panels}
    assert len(xlims) == 1  # the same x range in every panel
    (lo, hi), drawn = xlims.pop(), np.concatenate([TEACHER[~TEACHER.isnan()], STUDENT[~STUDENT.isnan()]])
    assert lo < drawn.min() and drawn.max() < hi
    for k, ax in enumerate(panels):
        teacher_bars, student_bars = ax.containers  # one histogram per network, in PAIR_COLORS
        for bars, costs, color in (
            (teacher_bars, TEACHER[k], PAIR_COLORS[0]),
            (student_bars, STUDENT[k], PAIR_COLORS[1]),
        ):
            assert bars.datavalues.sum() == int((~costs.isnan()).sum())  # every candidate, no padding
            assert bars.patches[0].get_facecolor()[:3] == pytest.approx(to_rgb(color))
        # the same bins for both networks and in both panels
        assert [p.get_x() for p in teacher_bars] == [p.get_x() for p in student_bars]
        assert [p.get_x() for p in teacher_bars] == [p.get_x() for p in panels[0].containers[0]]
    rendered(fig, tmp_path, "pair")


def test_cuts_are_drawn_where_given_and_a_gt_without_positive_has_none():
    fig = viz.draw_cost_histograms_pair(TEACHER, STUDENT, cuts=CUTS)
    first, second = visible_panels(fig)
    assert [line.get_xdata()[0] for line in first.get_lines()] == pytest.approx([0.3, 1.1])
    assert [line.get_xdata()[0] for line in second.get_lines()] == pytest.approx([0.6])  # student: NaN cut
    assert [to_rgb(line.get_color()) for line in first.get_lines()] == [to_rgb(c) for c in PAIR_COLORS]
    plt.close(fig)


def test_titles_give_each_networks_spread_sigma_over_mu():
    fig = viz.draw_cost_histograms_pair(TEACHER, STUDENT, labels=("T", "S"), gt_names=["digit", "shape"])
    first = visible_panels(fig)[0]
    teacher = statistics.stdev([0.2, 0.3, 1.5]) / statistics.mean([0.2, 0.3, 1.5])  # eq. 3, unbiased σ
    student = statistics.stdev([1.0, 1.1, 1.2]) / statistics.mean([1.0, 1.1, 1.2])
    assert first.get_title() == f"digit\nσ/μ T {teacher:.2f}, S {student:.2f}"
    plt.close(fig)


def test_a_list_of_1d_costs_draws_what_the_padded_rows_draw():
    as_rows = [row[~row.isnan()].numpy() for row in TEACHER]  # a snapshot's gts[k].costs
    padded = viz.draw_cost_histograms_pair(TEACHER, STUDENT)
    listed = viz.draw_cost_histograms_pair(as_rows, [row for row in STUDENT])
    for a, b in zip(visible_panels(padded), visible_panels(listed), strict=True):
        assert [list(c.datavalues) for c in a.containers] == [list(c.datavalues) for c in b.containers]
        assert a.get_xlim() == b.get_xlim()
    plt.close("all")


def test_draws_into_given_axes_and_marks_a_gt_without_candidates(tmp_path):
    fig, axes = plt.subplots(1, 3)
    costs = [np.array([0.4, 0.9]), np.array([]), np.array([1.2])]
    out = viz.draw_cost_histograms_pair(costs, costs, axes=list(axes))
    assert out is fig
    assert [t.get_text() for t in axes[1].texts] == ["no candidate"]
    assert "n/a" in axes[2].get_title()  # one cost: no σ
    rendered(fig, tmp_path, "given_axes")


def test_real_paa_results_of_two_networks(tmp_path):
    # PAAAssigner.details of two networks on the same GTs: the figure's intended input
    anchors, num_level_anchors = single(strides=(8, 16))((64, 64))
    gt_boxes, gt_labels = (
        torch.tensor([[8.0, 8.0, 40.0, 36.0], [30.0, 30.0, 60.0, 62.0]]),
        torch.tensor([0, 2]),
    )
    g = torch.Generator().manual_seed(0)
    results = [
        PAAAssigner().assign(
            anchors,
            num_level_anchors,
            gt_boxes,
            gt_labels,
            torch.randn(len(anchors), 3, generator=g),
            anchors + 4 * torch.randn(len(anchors), 4, generator=g),
        )
        for _ in range(2)
    ]
    a, b = (r.details for r in results)
    fig = viz.draw_cost_histograms_pair(a["costs"], b["costs"], cuts=(a["cut"], b["cut"]))
    for k, ax in enumerate(visible_panels(fig)):
        assert ax.containers[0].datavalues.sum() == int((~a["costs"][k].isnan()).sum())
    rendered(fig, tmp_path, "paa")


@pytest.mark.parametrize(
    ("costs_a", "costs_b", "options", "message"),
    [
        (torch.zeros(2, 3, 4), STUDENT, {}, r"costs_a must be \[G, M\]"),
        (TEACHER, [np.zeros((2, 2)), np.zeros(3)], {}, r"costs_b\[0\] must be 1-D"),
        (TEACHER, STUDENT[:1], {}, "costs_a has 2 GTs, costs_b 1"),
        (torch.zeros(0, 3), torch.zeros(0, 3), {}, "no GT to draw"),
        (TEACHER, STUDENT, {"cuts": (torch.zeros(3), None)}, r"cuts_a must be \[G=2\]"),
        (TEACHER, STUDENT, {"cuts": (torch.zeros(2),)}, "cuts must be a pair"),
        (TEACHER, STUDENT, {"gt_names": ["only one"]}, "gt_names must name each of the 2 GTs"),
    ],
)
def test_shapes_that_do_not_fit_are_a_value_error(costs_a, costs_b, options, message):
    with pytest.raises(ValueError, match=message):
        viz.draw_cost_histograms_pair(costs_a, costs_b, **options)
    plt.close("all")


def test_too_few_axes_is_a_value_error():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"one Axes per GT \(2\), got 1"):
        viz.draw_cost_histograms_pair(TEACHER, STUDENT, axes=[ax])
    plt.close(fig)


def test_assignment_statistics_one_line_per_strategy_shares_in_percent(tmp_path):
    def rows(pos_per_gt, share):
        return [
            {
                "kind": "train",
                "global_iter": 10 * (i + 1),
                "pos_per_gt": p,
                "gts_without_pos": s,
                "pos_iou": 0.3,
            }
            for i, (p, s) in enumerate(zip(pos_per_gt, share, strict=True))
        ]

    curves = {
        "paa": [rows([1.8, 2.0, 2.2], [0.1, 0.05, None])],
        "lad": [rows([2.2, 2.2, 2.3], [0.02, 0.02, 0.0])],
    }
    fig = viz.plot_assignment_over_training(curves, keys=("pos_per_gt", "gts_without_pos"))
    positives, without = fig.axes
    assert [line.get_label() for line in positives.get_lines()] == ["paa", "lad"]
    assert list(positives.get_lines()[1].get_ydata()) == pytest.approx([2.2, 2.2, 2.3])
    assert list(without.get_lines()[0].get_xdata()) == [10, 20, 30]
    paa_share = without.get_lines()[0].get_ydata()
    assert list(paa_share[:2]) == pytest.approx([10.0, 5.0]) and np.isnan(paa_share[2])  # %, null is a gap
    colors = viz.strategy_colors(["paa", "lad"])
    assert [to_rgb(line.get_color()) for line in positives.get_lines()] == [to_rgb(colors[n]) for n in curves]
    assert len({line.get_linestyle() for line in positives.get_lines()}) == 2  # overlapping runs stay visible
    rendered(fig, tmp_path, "statistics")


def test_assignment_statistics_need_one_axes_per_key():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"one Axes per key \(3\), got 1"):
        viz.plot_assignment_over_training({"paa": [[]]}, axes=[ax])
    plt.close(fig)
