"""Pictures of label assignment, for the notebooks and the command line.

Every function draws one idea, returns the matplotlib ``Figure`` and takes an optional ``ax`` (or
``axes``) to draw into, so figures can be composed. Colours: GT ``k`` is ``tab10`` colour ``k``
everywhere; negatives are light grey; ignored anchors are hollow black circles.

* :func:`draw_boxes` — GT boxes (and optionally anchors) over the image.
* :func:`draw_assignment_levels` — positive / negative / ignored anchors, one panel per FPN level.
* :func:`draw_iou_matrix` — the GT x anchor IoU matrix as a heat map.
* :func:`draw_iou_histograms` — per GT, the IoU of its candidate anchors with the threshold(s) drawn
  (stacked by FPN level with ``levels=``).
* :func:`draw_cost_gmm` — PAA: one GT's candidate costs, the two fitted Gaussians and the cut.
* :func:`draw_cost_gmm_tol_contrast` — the same GT's GMM fitted with PAA's tol 1e-3 and a stricter one.
* :func:`draw_assignment_diff` — two strategies on one image: anchors that flip, positives per GT.
* :func:`plot_fixed_iou_sweep` — fixed IoU against object size and shape: best IoU, positives at IoU ≥ 0.5
  and low-quality ones.

Live sliders (:mod:`lad_edu.viz.interactive`: ipywidgets in a Jupyter kernel, the default figure elsewhere):

* :func:`interactive_fixed_iou` — ``pos_iou_thr``, ``neg_iou_thr``, ``match_low_quality`` on the demo scene.
* :func:`interactive_atss` — ``topk``: each GT's candidates and ``mean + std``.
* :func:`interactive_paa` — ``bbox_weight``, ``loc_loss`` and the network's quality: each GT's costs and cut.
* :func:`interactive_box` — one box moved and resized: its fixed IoU, ATSS and PAA positives per level.

For the comparison of strategies (:mod:`lad_edu.compare`; one colour per strategy, :func:`strategy_colors`,
means and error bars over seeds, :func:`seed_mean_std`):

* :func:`plot_ap_by_strategy` — AP per strategy, with the seeds' spread.
* :func:`plot_loss_curves` — training losses against the iteration.
* :func:`plot_positives_vs_size` — positives per GT against object size.
* :func:`plot_level_share` — the share of positives on each pyramid level.
* :func:`draw_strategies_side_by_side` — one image labelled by every strategy, GTs without a positive marked.

CoLAD's teacher switch (section 3.4, eq. 3; one colour per network, :data:`lad_edu.viz.colad.NETWORK_COLORS`):

* :func:`plot_colad_timeline` — ρ of both networks over training, the teaching network shaded behind.
* :func:`draw_criteria_on_costs` — σ/μ and the Fisher score on the same two networks' costs.
* :func:`draw_switching_map` — the per-(GT, level) switch on one image: whose costs each group takes.
* :func:`draw_class_probability_maps` — one level's class probabilities side by side (with / without COP).

For one run (the rows of its ``metrics.jsonl``, :func:`lad_edu.train.metrics.read_metrics`):

* :func:`plot_run_metrics` — losses, learning rate, assignment statistics and validation AP.

LAD's teacher against a student (section 3.2):

* :func:`draw_cost_histograms_pair` — per GT, two networks' candidate costs on a shared axis, each one's cut.
* :func:`plot_assignment_over_training` — the runs' assignment statistics against the iteration.

Over training, from a run's snapshots (``lad_edu.train.snapshots.load``):

* :func:`animate_cost_gmm` — one GT's costs, the two Gaussians and the cut moving over the epochs.
* :func:`draw_cost_gmm_over_epochs` — the same, a few epochs side by side.

The rules of newer detectors (:mod:`lad_edu.viz.modern`, notebook 08), each drawing what the rule computed:

* :func:`draw_alignment_metric` — TAL: each GT's t = s^α·u^β per level, its top-k, the centre test.
* :func:`plot_alignment_quality` — TAL: the positives' normalised t (TOOD's soft target) against their IoU.
* :func:`plot_dynamic_k` — SimOTA: each GT's top-10 predicted IoUs stacked, and its dynamic k.
* :func:`draw_simota_regions` — SimOTA: the centre regions, the candidates and the positives per level.
* :func:`draw_hungarian_match` — Hungarian: the cost matrix, the one-to-one match, each GT's cheapest anchor.
* :func:`draw_rules_side_by_side` — one image labelled by several rules, positives sized by level.
"""

from lad_edu.viz.assignment import (
    draw_assignment_diff,
    draw_assignment_levels,
    draw_boxes,
    draw_cost_gmm,
    draw_cost_gmm_tol_contrast,
    draw_iou_histograms,
    draw_iou_matrix,
    plot_fixed_iou_sweep,
)
from lad_edu.viz.colad import (
    draw_class_probability_maps,
    draw_criteria_on_costs,
    draw_switching_map,
    plot_colad_timeline,
)
from lad_edu.viz.common import gt_color, save_png
from lad_edu.viz.comparison import (
    draw_strategies_side_by_side,
    plot_ap_by_strategy,
    plot_level_share,
    plot_loss_curves,
    plot_positives_vs_size,
    seed_mean_std,
    strategy_colors,
)
from lad_edu.viz.distillation import draw_cost_histograms_pair, plot_assignment_over_training
from lad_edu.viz.interactive import interactive_atss, interactive_box, interactive_fixed_iou, interactive_paa
from lad_edu.viz.metrics import plot_run_metrics
from lad_edu.viz.modern import (
    draw_alignment_metric,
    draw_hungarian_match,
    draw_rules_side_by_side,
    draw_simota_regions,
    plot_alignment_quality,
    plot_dynamic_k,
)
from lad_edu.viz.training import animate_cost_gmm, draw_cost_gmm_over_epochs

__all__ = [
    "gt_color",
    "save_png",
    "draw_boxes",
    "draw_assignment_levels",
    "draw_iou_matrix",
    "draw_iou_histograms",
    "draw_cost_gmm",
    "draw_cost_gmm_tol_contrast",
    "draw_assignment_diff",
    "plot_fixed_iou_sweep",
    "interactive_fixed_iou",
    "interactive_atss",
    "interactive_paa",
    "interactive_box",
    "strategy_colors",
    "seed_mean_std",
    "plot_ap_by_strategy",
    "plot_loss_curves",
    "plot_positives_vs_size",
    "plot_level_share",
    "draw_strategies_side_by_side",
    "plot_colad_timeline",
    "draw_criteria_on_costs",
    "draw_switching_map",
    "draw_class_probability_maps",
    "draw_cost_histograms_pair",
    "plot_assignment_over_training",
    "plot_run_metrics",
    "animate_cost_gmm",
    "draw_cost_gmm_over_epochs",
    "draw_alignment_metric",
    "plot_alignment_quality",
    "plot_dynamic_k",
    "draw_simota_regions",
    "draw_hungarian_match",
    "draw_rules_side_by_side",
]
