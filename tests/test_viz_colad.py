"""CoLAD's figures (lad_edu.viz.colad) draw what the switch decided: hand-made cases, headless (Agg)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from lad_edu import viz  # noqa: E402
from lad_edu.anchors import AnchorGenerator  # noqa: E402
from lad_edu.assign.switch import merge_costs_per_group  # noqa: E402
from lad_edu.viz.colad import NETWORK_COLORS  # noqa: E402


def rendered(fig, tmp_path, name):
    """Render ``fig`` to a PNG (what a headless run does), close it, and check the file is not empty."""
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=60)
    plt.close(fig)
    assert path.stat().st_size > 1000


def x_extent(patch) -> tuple[float, float]:
    """A band's x range in data coordinates (a Rectangle or, with matplotlib < 3.9, a Polygon)."""
    xs = patch.get_patch_transform().transform(patch.get_path().vertices)[:, 0]
    return float(xs.min()), float(xs.max())


def test_timeline_shades_each_logged_window_by_the_network_that_taught_it(tmp_path):
    # windows of 2 iterations: network 2 taught both steps, then network 1 both, then one each (a tie:
    # network 2, as choose_teacher), then network 1 three quarters; the last row has no teacher logged
    shares = [1.0, 0.0, 0.5, 0.25, None]
    rows = [
        {
            "global_iter": 2 * (i + 1),
            "rho_1": 0.3 + 0.01 * i,
            "rho_2": 0.35,
            "teacher_2": s,
            "teacher_share_2": s,
        }
        for i, s in enumerate(shares)
    ]
    fig = viz.plot_colad_timeline(rows, criterion="fisher")
    top, bottom = fig.axes
    expected = [((0.5, 2.5), 2, 1.0), ((2.5, 4.5), 1, 1.0), ((4.5, 6.5), 2, 0.5), ((6.5, 8.5), 1, 0.75)]
    for ax in (top, bottom):
        bands = [p for p in ax.patches if p.get_alpha() is not None]
        assert len(bands) == len(expected)
        for band, ((start, end), teacher, share) in zip(bands, expected, strict=True):
            assert x_extent(band) == pytest.approx((start, end))
            assert band.get_facecolor()[:3] == pytest.approx(to_rgb(NETWORK_COLORS[teacher]))
            assert band.get_alpha() == pytest.approx(0.3 * share)  # faint where both networks taught
    rho_1, rho_2 = top.get_lines()[:2]
    assert list(rho_1.get_ydata()) == pytest.approx([row["rho_1"] for row in rows])
    assert list(rho_2.get_xdata()) == [2, 4, 6, 8, 10]
    assert "Fisher" in top.get_ylabel()
    rendered(fig, tmp_path, "timeline")


def test_criteria_figure_shows_where_std_mean_and_fisher_disagree(tmp_path):
    # network 1: two tight modes (4.0-4.1 and 8.0-8.1), far apart: a huge Fisher score, a small σ/μ;
    # network 2: costs spread evenly over [0.05, 1]: nothing to separate, but σ/μ near 0.6
    costs_1 = torch.tensor([4.0, 4.1, 4.0, 4.1, 8.0, 8.1, 8.0, 8.1])
    costs_2 = torch.linspace(0.05, 1.0, 8)
    fig = viz.draw_criteria_on_costs(costs_1, costs_2)
    left, right = fig.axes
    assert "disagree: σ/μ picks network 2, Fisher network 1" in fig._suptitle.get_text()
    assert left.get_title() == "network 1: picked by Fisher score"
    assert right.get_title() == "network 2: picked by σ/μ"
    for ax, costs in ((left, costs_1), (right, costs_2)):
        values = costs.double().numpy()
        rho = values.std(ddof=1) / values.mean()
        assert f"= {rho:.3f}\n" in ax.texts[-1].get_text()  # eq. 3, left, by numpy
    # each mode of network 1 is one Gaussian: μ+ = 4.05, μ- = 8.05, variances 0.0025 (+ sklearn's 1e-6)
    labels = [line.get_label() for line in left.get_lines()]
    assert "Gaussian +: μ+ = 4.05" in labels and "Gaussian -: μ- = 8.05" in labels
    fisher = float(left.texts[-1].get_text().rsplit("= ", 1)[1])
    assert fisher == pytest.approx(16 / (2 * (0.0025 + 1e-6)), rel=1e-3)  # 4² / (σ+² + σ-²)
    rendered(fig, tmp_path, "criteria")
    with pytest.raises(ValueError, match="at least 2 costs"):
        viz.draw_criteria_on_costs(costs_1[:1], costs_2)


@pytest.fixture
def two_level_case():
    """The hand-made switch of tests/test_switch.py on real anchors of a 32 x 64 image: 8 anchors of 16 px
    on level 0, 2 of 32 px on level 1. GT 0 has 3 candidates on level 0 and 2 on level 1, GT 1 one on
    level 0."""
    generator = AnchorGenerator(strides=(16, 32), ratios=(1.0,), octave_base_scale=1.0, scales_per_octave=1)
    anchors, num_level_anchors = generator((32, 64))
    assert num_level_anchors == [8, 2]
    candidate_anchor = torch.tensor([0, 1, 2, 8, 9, 5])
    candidate_gt = torch.tensor([0, 0, 0, 0, 0, 1])
    costs_1 = torch.tensor([0.1, 1.0, 2.0, 1.0, 1.1, 0.9])  # GT 0 level 0: spread (network 1 wins)
    costs_2 = torch.tensor([1.0, 1.1, 1.2, 0.1, 2.0, 0.5])  # level 1: spread (2 wins); GT 1 alone: lower
    gt_boxes = torch.tensor([[0.0, 0.0, 60.0, 30.0], [16.0, 16.0, 32.0, 32.0]])
    return costs_1, costs_2, candidate_anchor, candidate_gt, anchors, num_level_anchors, gt_boxes


def test_switching_map_colours_each_group_by_the_network_merge_costs_per_group_chose(
    two_level_case, tmp_path
):
    costs_1, costs_2, candidate_anchor, candidate_gt, anchors, nla, gt_boxes = two_level_case
    fig = viz.draw_switching_map(
        costs_1,
        costs_2,
        candidate_anchor,
        candidate_gt,
        anchors=anchors,
        num_level_anchors=nla,
        gt_boxes=gt_boxes,
        image_size=(32, 64),
        strides=[16, 32],
    )
    image_ax, map_ax = fig.axes
    _, from_2 = merge_costs_per_group(costs_1, costs_2, candidate_anchor, candidate_gt, nla)
    assert from_2.tolist() == [False, False, False, True, True, True]  # the hand-worked answer
    cells = {p.get_gid(): p for p in map_ax.patches if p.get_gid()}
    assert sorted(cells) == ["GT 0 level 0", "GT 0 level 1", "GT 1 level 0"]  # GT 1 has no level-1 candidate
    # ... so its cell is grey, though no group id of group_choice reaches it (the last GT's last level)
    assert [p.get_xy() for p in map_ax.patches if not p.get_gid()] == [(1, 1)]
    level = (candidate_anchor >= nla[0]).long()
    for k, lvl, took_2 in zip(candidate_gt.tolist(), level.tolist(), from_2.tolist(), strict=True):
        winner = 2 if took_2 else 1
        assert cells[f"GT {k} level {lvl}"].get_facecolor()[:3] == pytest.approx(
            to_rgb(NETWORK_COLORS[winner])
        )
    # each candidate's dot on the image has its network's colour, level by level
    for lvl in (0, 1):
        dots = next(c for c in image_ax.collections if c.get_gid() == f"candidates level {lvl}")
        expected = [to_rgb(NETWORK_COLORS[2 if f else 1]) for f in from_2[level == lvl].tolist()]
        assert np.allclose(dots.get_facecolors()[:, :3], expected)
    # the cells are annotated with both networks' σ/μ (unbiased σ), a lone candidate with its two costs
    texts = [t.get_text() for t in map_ax.texts]
    rho_1 = costs_1[:3].double().std() / costs_1[:3].double().mean()
    rho_2 = costs_2[:3].double().std() / costs_2[:3].double().mean()
    assert f"{rho_1:.3f} | {rho_2:.3f}\n3 candidates" in texts
    assert "0.900 | 0.500\n1: lower cost" in texts
    assert "network 2 wins 2 of 3" in map_ax.get_title()
    rendered(fig, tmp_path, "switching_map")


def test_class_probability_maps_put_each_anchor_at_its_location(tmp_path):
    generator = AnchorGenerator(strides=(8, 16), ratios=(1.0,), octave_base_scale=1.0, scales_per_octave=1)
    anchors, nla = generator((32, 48))  # level 1: 2 rows x 3 columns of 16 px cells
    probabilities = torch.arange(sum(nla), dtype=torch.float32) / sum(nla)
    gt_boxes = torch.tensor([[4.0, 4.0, 20.0, 28.0]])
    fig = viz.draw_class_probability_maps(
        {"no COP": probabilities, "COP": probabilities / 2}, anchors, nla, 1, gt_boxes=gt_boxes, stride=16
    )
    no_cop, cop = fig.axes[:2]
    level_1 = probabilities[nla[0] :].view(2, 3).numpy()  # row-major, as the head flattens a level
    assert np.allclose(no_cop.images[0].get_array(), level_1)
    assert np.allclose(cop.images[0].get_array(), level_1 / 2)
    # a 16 px cell centred on each anchor's centre (MMDetection's anchors: centres at multiples of the stride)
    assert no_cop.images[0].get_extent() == pytest.approx([-8, 40, 24, -8])
    assert no_cop.images[0].get_clim() == cop.images[0].get_clim()  # one colour scale for both
    rendered(fig, tmp_path, "cop_maps")
    three_ratios = AnchorGenerator(
        strides=(8,), ratios=(0.5, 1.0, 2.0), octave_base_scale=1.0, scales_per_octave=1
    )
    many, many_nla = three_ratios((16, 16))
    with pytest.raises(ValueError, match="one anchor per location"):
        viz.draw_class_probability_maps({"a": torch.zeros(len(many))}, many, many_nla, 0, gt_boxes=gt_boxes)
