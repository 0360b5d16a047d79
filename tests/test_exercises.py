"""The notebooks' check_* helpers: each accepts the worked solution's answer and rejects a wrong one.

The right answers here are worked out by hand or by a second route through the library (the IoU matrix
instead of the assigner, numpy's polyfit instead of torch.cov), never copied from a check's output.
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from lad_edu import exercises
from lad_edu.anchors import retinanet, single
from lad_edu.assign import ATSSAssigner, FixedIoUAssigner, PAAAssigner, Predictions
from lad_edu.boxes import box_iou
from lad_edu.data import make_classroom_dataset
from lad_edu.data.classroom import CLASSES
from lad_edu.data.coco import CocoDetection
from lad_edu.data.transforms import EvalTransform, collate
from lad_edu.gmm import fit_gmm2
from lad_edu.model import build_detector
from lad_edu.reference import load_reference_detector
from lad_edu.scenes import DEMO_IMAGE_SIZE, constructed_predictions, demo_scene
from lad_edu.train.paper import IMAGENET_WEIGHTS, MMDET_PAA_TEACHERS

DOT = [146.0, 26.0, 151.0, 31.0]  # the demo scene's 5 x 5 dot


@pytest.fixture(scope="module")
def demo():
    """The demo scene's boxes and names, RetinaNet's anchors on it and their IoU matrix ``[G, N]``."""
    _, gt_boxes, gt_labels, names = demo_scene()
    anchors, _ = retinanet()(DEMO_IMAGE_SIZE)
    return gt_boxes, gt_labels, names, anchors, box_iou(gt_boxes, anchors)


def verdict(capsys, ok):
    """The check returned ``ok`` and printed one line saying so."""
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith("right: " if ok else "not yet: "), line
    return True


def tied_best(iou):
    """``[N]`` bool: the anchors tied at some GT's best IoU (the low-quality step's claims)."""
    return (iou == iou.max(dim=1, keepdim=True).values).any(dim=0)


# notebook 01


@pytest.mark.parametrize(("pos_iou_thr", "neg_iou_thr"), [(0.5, 0.4), (0.6, 0.5), (0.4, 0.3), (0.5, 0.5)])
def test_ignored_anchors_are_the_band_minus_the_low_quality_claims(capsys, demo, pos_iou_thr, neg_iou_thr):
    *_, iou = demo
    best = iou.max(dim=0).values
    ignored = int(((best >= neg_iou_thr) & (best < pos_iou_thr) & ~tied_best(iou)).sum())
    assert (ignored == 0) == (pos_iou_thr == neg_iou_thr)  # no band, nothing ignored
    kwargs = {"pos_iou_thr": pos_iou_thr, "neg_iou_thr": neg_iou_thr}
    assert exercises.check_ignored_anchors(ignored, **kwargs) and verdict(capsys, True)
    assert not exercises.check_ignored_anchors(ignored + 1, **kwargs) and verdict(capsys, False)


def test_objects_without_positive_are_those_below_0_5(capsys, demo):
    _, _, names, _, iou = demo
    below = {name for name, best in zip(names, iou.max(dim=1).values.tolist(), strict=True) if best < 0.5}
    assert below == {"dot", "small digit", "thin bar"}  # notebook 01: far below 0.4, or just below 0.5
    assert exercises.check_no_positive_without_low_quality(sorted(below)) and verdict(capsys, True)
    assert not exercises.check_no_positive_without_low_quality(["dot"]) and verdict(capsys, False)
    assert not exercises.check_no_positive_without_low_quality([*below, "cat"]) and verdict(capsys, False)


def test_a_duplicated_dot_loses_every_positive_to_its_copy(capsys):
    assert exercises.check_zero_positive_box([DOT, DOT], 0) and verdict(capsys, True)
    assert not exercises.check_zero_positive_box([DOT, DOT], 1) and verdict(
        capsys, False
    )  # the later copy wins
    assert not exercises.check_zero_positive_box([DOT], 0) and verdict(capsys, False)  # alone it has its ties


@pytest.mark.parametrize(
    "box", [[100.0, 200.0, 100.0, 240.0], list(exercises.FAR_BOX), [-10.0, 0.0, 5.0, 5.0]]
)
def test_zero_positive_box_refuses_boxes_that_win_nothing_by_construction(capsys, box):
    assert not exercises.check_zero_positive_box([box], 0) and verdict(capsys, False)
    assert not exercises.check_zero_positive_box([box], 2) and verdict(capsys, False)  # no box 2


def test_zero_width_box_in_front_keeps_what_no_object_ties_for(capsys, demo):
    *_, anchors, iou = demo
    taken = len(anchors) - int(tied_best(iou).sum())  # every anchor, less the later objects' tied best
    assert exercises.check_front_zero_width_positives(taken) and verdict(capsys, True)
    assert not exercises.check_front_zero_width_positives(len(anchors)) and verdict(capsys, False)


def test_far_box_takes_every_anchor_in_the_reference_and_none_here(capsys, demo):
    *_, anchors, _ = demo
    assert exercises.check_far_box_positives(reference=len(anchors), lad_edu=0) and verdict(capsys, True)
    assert not exercises.check_far_box_positives(reference=0, lad_edu=0) and verdict(capsys, False)
    assert not exercises.check_far_box_positives(reference=len(anchors), lad_edu=1) and verdict(capsys, False)


# notebook 02


@pytest.mark.parametrize("topk", [3, 9, 15])
def test_candidate_count_sums_topk_over_the_levels(capsys, topk):
    # 320 px with strides 8-128: 40², 20², 10², 5², 3² = 9 anchors (ceil(320 / 128) = 3)
    count = 4 * topk + min(topk, 9)
    assert exercises.check_candidate_count(count, topk=topk) and verdict(capsys, True)
    assert not exercises.check_candidate_count(5 * topk + 1, topk=topk) and verdict(capsys, False)


def test_center_eps_gainers_are_the_objects_the_centre_test_held_back(capsys):
    # the dot has no anchor centre inside, the small digit 6 (of 9 candidates), the bar 3 of 9 tied ones
    gainers = ["thin bar", "dot", "small digit"]
    assert exercises.check_center_eps_gainers(gainers) and verdict(capsys, True)
    assert not exercises.check_center_eps_gainers(["dot", "thin bar"]) and verdict(capsys, False)
    assert not exercises.check_center_eps_gainers(gainers, center_eps=0.01) and verdict(capsys, False)


def test_moved_dot_gets_one_atss_positive_and_49_fixed_ties(capsys):
    # stride 8 (64 px anchors): the centre (144, 32) alone lies inside [142, 147] x [30, 35]; the anchors
    # holding the dot whole have centres x in 120..168 and y in 8..56: 7 x 7 ties at IoU 25 / 4096
    ties = 7 * 7
    assert exercises.check_moved_dot_positives(atss=1, fixed=ties) and verdict(capsys, True)
    assert not exercises.check_moved_dot_positives(atss=0, fixed=ties) and verdict(capsys, False)


def test_biased_std_puts_the_threshold_exactly_on_the_tied_iou(capsys):
    # two groups of 9 tied IoUs, a = 48² / 128² and b = 48² / 64²: mean (a + b) / 2, biased std (b - a) / 2,
    # so mean + std = b exactly, and all 9 anchors at b pass (ATSS's unbiased std gives none)
    a, b = torch.tensor([48**2 / 128**2, 48**2 / 64**2])
    iou = torch.cat([a.repeat(9), b.repeat(9)])
    assert iou.mean() + iou.std(correction=0) == b
    assert exercises.check_biased_std_positives(9) and verdict(capsys, True)
    assert not exercises.check_biased_std_positives(0) and verdict(capsys, False)


def random_scenes(num_scenes, seed):
    """``num_scenes`` scenes of 6 boxes ``[6, 4]`` xyxy, sides log-uniform in 6-200 px, on the demo image."""
    gen = torch.Generator().manual_seed(seed)
    scenes = []
    for _ in range(num_scenes):
        side = torch.exp(torch.empty(6).uniform_(math.log(6), math.log(200), generator=gen))
        corner = torch.rand(6, 2, generator=gen) * (DEMO_IMAGE_SIZE[0] - side[:, None])
        scenes.append(torch.cat([corner, corner + side[:, None]], dim=1))
    return scenes


def test_flatter_rule_agrees_with_numpy_polyfit(capsys):
    scenes = random_scenes(12, seed=0)
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    log_size, fixed, atss = [], [], []
    for boxes in scenes:
        labels = torch.zeros(len(boxes), dtype=torch.long)
        fixed += FixedIoUAssigner().assign(anchors, boxes, labels).positives_per_gt().tolist()
        atss += ATSSAssigner().assign(anchors, num_level_anchors, boxes, labels).positives_per_gt().tolist()
        log_size += (boxes[:, 2] - boxes[:, 0]).log().tolist()  # squares: log(sqrt(area)) = log(side)
    slopes = {rule: np.polyfit(log_size, counts, 1)[0] for rule, counts in (("fixed", fixed), ("atss", atss))}
    flatter, steeper = sorted(slopes, key=lambda rule: abs(slopes[rule]))
    assert exercises.check_flatter_rule(flatter.upper(), scenes) and verdict(capsys, True)
    assert not exercises.check_flatter_rule(steeper, scenes) and verdict(capsys, False)


# notebook 03


@pytest.mark.parametrize(("quality", "topk"), [(0.2, 9), (0.9, 9), (0.5, 4), (0.5, 15)])
def test_demo_paa_positives_match_the_batched_assigner(capsys, quality, topk):
    _, gt_boxes, gt_labels, _ = demo_scene()
    anchors, num_level_anchors = single()(DEMO_IMAGE_SIZE)
    cls_logits, pred_boxes = constructed_predictions(anchors, gt_boxes, gt_labels, quality=quality, seed=0)
    predictions = Predictions(cls_logits[None], pred_boxes[None])
    result = PAAAssigner(topk=topk).assign_batch(
        anchors, num_level_anchors, [gt_boxes], [gt_labels], predictions
    )
    positives = result[0].positives_per_gt().tolist()
    kwargs = {"quality": quality, "topk": topk}
    assert exercises.check_demo_paa_positives(positives, **kwargs) and verdict(capsys, True)
    assert not exercises.check_demo_paa_positives([*positives[:-1], positives[-1] + 1], **kwargs)
    assert verdict(capsys, False)
    assert not exercises.check_demo_paa_positives(positives[:-1], **kwargs) and verdict(capsys, False)


def test_original_paa_cut_on_a_hand_worked_row(capsys):
    # component 0 = {0.2, 0.4, 0.5} with a component-1 candidate (0.3) between; its mode is 0.4 (score -0.6)
    costs, component = [0.2, 0.3, 0.4, 0.5, 1.5], [0, 1, 0, 0, 1]
    score = [-1.0, -0.5, -0.6, -1.5, -2.0]
    mmdetection, original = [1, 0, 1, 0, 0], [1, 1, 1, 0, 0]
    check = exercises.check_original_paa_cut
    assert check(costs, component, score, mmdetection=mmdetection, original=original) and verdict(
        capsys, True
    )
    assert not check(costs, component, score, mmdetection=original, original=original) and verdict(
        capsys, False
    )
    assert not check(costs, component, score, mmdetection=mmdetection, original=[1, 1]) and verdict(
        capsys, False
    )
    # component 0 a prefix: both rules agree, so the row cannot tell them apart
    prefix = [0, 0, 0, 1, 1]
    assert not check(costs, prefix, score, mmdetection=original, original=original) and verdict(capsys, False)
    unsorted = costs[::-1]
    assert not check(unsorted, component, score, mmdetection=mmdetection, original=original)
    assert verdict(capsys, False)


# notebook 04: the reference PAA network (teacher) and the untrained one (early student), 8 validation scenes


@pytest.fixture(scope="module")
def validation_scenes(tmp_path_factory):
    """The first 8 validation scenes of the reference, as its PAA run saw them: its config, the images
    ``[8, 3, H, W]`` and targets."""
    cfg, _, _ = load_reference_detector()
    data = make_classroom_dataset(tmp_path_factory.mktemp("val"), num_train=0, num_val=8, progress=False)
    val_set = CocoDetection(data, cfg.data.val_split, min_size=cfg.data.min_box_size)
    resize = EvalTransform(cfg.data.eval_short_side, cfg.data.max_size)
    return (cfg, *collate([resize(*val_set[i]) for i in range(8)]))


def test_gts_without_positive_are_those_the_pre_assignment_leaves_alone(capsys, validation_scenes):
    # PAA fits its mixture to a GT's pre-assigned candidates; with fewer than 2 there is nothing to split,
    # and MMDetection's default drops a lone candidate. The pre-assignment looks at the boxes only, so
    # these GTs are the same for every network (on these scenes, every GT with 2 candidates or more gets
    # a positive from both networks)
    cfg, images, targets = validation_scenes
    anchors = single(strides=tuple(cfg.model.strides), octave_base_scale=cfg.model.octave_base_scale)(
        tuple(images.shape[-2:])
    ).anchors
    pre_assigner = cfg.assign.build_assigner(len(CLASSES)).pre_assigner
    alone = {
        (i, k)
        for i, t in enumerate(targets)
        for k in (pre_assigner.assign(anchors, t["boxes"], t["labels"]).positives_per_gt() < 2)
        .nonzero()
        .flatten()
        .tolist()
    }
    assert alone  # one 53 px object of image 3 keeps a single candidate (notebooks 04-06)
    assert exercises.check_gts_without_positive(teacher=alone, student=alone) and verdict(capsys, True)
    assert not exercises.check_gts_without_positive(teacher=alone, student=set()) and verdict(capsys, False)


def test_fisher_count_agrees_with_a_gmm_fitted_per_gt(capsys):
    # the check fits all GTs of an image at once; here one GT at a time, eq. 3's score written out
    def fisher_one_by_one(result):
        scores = []
        for row in result.details["costs"]:
            costs = row[~row.isnan()].double()
            if len(costs) < 2:
                scores.append(float("nan"))
                continue
            fit = fit_gmm2(costs[None], torch.ones_like(costs[None], dtype=torch.bool))
            scores.append(float((fit.means[0, 0] - fit.means[0, 1]) ** 2 / fit.variances[0].sum()))
        return scores

    teacher, student = exercises._teacher_and_student(8, 0)
    pairs = [
        (t, s)
        for rt, rs in zip(teacher, student, strict=True)
        for t, s in zip(*map(fisher_one_by_one, (rt, rs)), strict=True)
    ]
    finite = [(t, s) for t, s in pairs if math.isfinite(t) and math.isfinite(s)]
    count = sum(t > s for t, s in finite)
    assert 0 < count <= len(finite)
    assert exercises.check_fisher_prefers_teacher(count) and verdict(capsys, True)
    assert not exercises.check_fisher_prefers_teacher(count - 1) and verdict(capsys, False)


# notebook 05: the reference CoLAD run's snapshots


def test_sigma_over_mu_ignores_a_scale_and_fisher_a_shift(capsys):
    # sigma/mu of 10 c is 10 sigma / 10 mu; of c + 1 it is sigma / (mu + 1). The GMM starts at the lowest and
    # highest cost with variance 1 and stops at a log-likelihood change of 1e-3: all of that moves with a
    # shift, not with a scale, so Fisher's score follows a shift exactly and a scale only on paper. On the
    # reference's costs (second route: numpy's std and sklearn's own GaussianMixture) it moves under x 10
    cfg, shots = exercises._colad_snapshots()
    shot = shots[cfg.snapshot.images[0], max(epoch for _, epoch in shots)]
    costs = np.concatenate([gt.costs_1 for gt in shot.gts])

    def sigma_over_mu(x):
        return np.std(x, ddof=1) / np.mean(x)

    def fisher(x):
        gmm = GaussianMixture(
            2,
            covariance_type="diag",
            weights_init=[0.5, 0.5],
            means_init=[[x.min()], [x.max()]],
            precisions_init=[[1.0], [1.0]],
            tol=1e-3,
        ).fit(x[:, None])
        return (gmm.means_[0, 0] - gmm.means_[1, 0]) ** 2 / gmm.covariances_.sum()

    assert math.isclose(sigma_over_mu(10 * costs), sigma_over_mu(costs), rel_tol=1e-12)
    assert sigma_over_mu(costs + 1) < 0.9 * sigma_over_mu(costs)
    assert math.isclose(fisher(costs + 1), fisher(costs), rel_tol=1e-6)
    assert not math.isclose(fisher(10 * costs), fisher(costs), rel_tol=1e-3)
    check = exercises.check_invariant_criteria
    assert check(under_scale=["std_mean"], under_shift=["fisher"]) and verdict(capsys, True)
    assert not check(under_scale=["std_mean", "fisher"], under_shift=["fisher"]) and verdict(capsys, False)
    assert not check(under_scale=["sigma/mu"], under_shift=["fisher"]) and verdict(capsys, False)


def test_the_lone_candidate_takes_the_lower_cost_and_never_becomes_positive(capsys):
    # a lone candidate has no sigma/mu: the authors' rule takes the lower cost, network 2's 0.5 < 0.9. GT 0
    # of image 3 (53 x 53 px) keeps one pre-assigned candidate: of the three anchors with IoU >= 0.1, one
    # overlaps GT 3 more and GT 3 takes another as its best anchor (low-quality step). The boxes decide
    # that, so it holds in the snapshot of every epoch, 0 to the last, and a lone candidate is dropped
    cfg, _ = exercises._colad_snapshots()
    every_epoch = [1] * (cfg.optim.epochs + 1)
    check = exercises.check_lone_candidate
    assert check(network=2, candidates=every_epoch, positives=0) and verdict(capsys, True)
    assert not check(network=1, candidates=every_epoch, positives=0) and verdict(capsys, False)
    assert not check(network=2, candidates=every_epoch[1:], positives=0) and verdict(capsys, False)


def test_groups_against_the_teacher_agree_with_a_plain_loop_over_the_snapshot_levels(capsys):
    # second route: the snapshots' own candidate levels, and sigma/mu per group written out with numpy
    cfg, shots = exercises._colad_snapshots()
    counts = {"early": [0, 0], "late": [0, 0]}
    for (_, epoch), shot in shots.items():
        groups = {}
        for k, gt in enumerate(shot.gts):
            for level, c1, c2 in zip(gt.levels, gt.costs_1, gt.costs_2, strict=True):
                groups.setdefault((k, int(level)), []).append((c1, c2))
        teacher_2 = shot.choice["teacher_2"] >= 0.5
        for members in groups.values():
            c1, c2 = np.array(members).T
            if len(members) == 1:
                second = c2[0] < c1[0]
            else:
                second = np.std(c2, ddof=1) / c2.mean() >= np.std(c1, ddof=1) / c1.mean()
            key = "early" if epoch <= 12 else "late"
            counts[key][0] += bool(second != teacher_2)
            counts[key][1] += 1
    check = exercises.check_groups_against_teacher
    assert check(early=counts["early"], late=counts["late"]) and verdict(capsys, True)
    swapped = [counts["late"][0], counts["early"][1]]
    assert not check(early=swapped, late=counts["late"]) and verdict(capsys, False)


def test_cop_halves_the_untrained_class_probability(capsys):
    # eq. 4: p = (1/9) sum_k o^k p^k with o = sigmoid(~0) = 1/2 and p^k ~ the prior everywhere at
    # initialisation, so p is about half the plain network's, a little less where neighbours are missing
    images = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 255
    sizes = [(64, 90)]
    cfg, _ = exercises._colad_snapshots()
    probability = {}
    for cop in (False, True):
        torch.manual_seed(0)
        network = build_detector(replace(cfg.model, cop=cop), len(CLASSES)).eval()
        with torch.no_grad():
            probability[cop] = float(network(images, sizes).cls_logits.sigmoid().mean())
    ratio = probability[True] / probability[False]
    assert 0.4 < ratio < 0.5
    assert exercises.check_cop_ratio(ratio, images, sizes) and verdict(capsys, True)
    assert not exercises.check_cop_ratio(1.0, images, sizes) and verdict(capsys, False)


# notebook 06: hand-made batches of 128 px images on the comparison's anchors: one square of side s per
# location, centred at (i s, j s), for the strides s = 8, 16, 32, 64, 128


def batch_of(*images_boxes):
    """A batch of 128 x 128 images, one ``[G, 4]`` xyxy box list each: ``[(images, targets)]``."""
    targets = [
        {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.zeros(len(boxes), dtype=torch.long),
        }
        for boxes in images_boxes
    ]
    return [(torch.zeros(len(targets), 3, 128, 128), targets)]


LARGE = [32.0, 32.0, 96.0, 96.0]  # exactly the 64 px anchor centred at (64, 64)


def test_an_identical_copy_takes_the_only_good_anchor_of_a_large_box(capsys):
    # LARGE has IoU 1 with its 64 px anchor; every other anchor overlaps it by 0.25 or less (a 32 px anchor
    # inside it: 32² / 64²). Both copies tie on that anchor and the later copy takes it in the low-quality
    # step, so the first ends without a positive at any pos_iou_thr above 0.25. The 20 px pair loses one
    # too, but is under 32 px; LARGE alone keeps its anchor
    small = [80.0, 80.0, 100.0, 100.0]
    batches = batch_of([LARGE, LARGE], [small, small], [LARGE])
    for pos, neg in ((0.5, 0.4), (0.3, 0.2)):
        kwargs = {"pos_iou_thr": pos, "neg_iou_thr": neg}
        assert exercises.check_large_without_positive(1, batches, **kwargs) and verdict(capsys, True)
        assert not exercises.check_large_without_positive(2, batches, **kwargs) and verdict(capsys, False)


def test_atss_failures_on_a_box_between_anchor_centres_and_a_duplicate(capsys):
    # every anchor centre has coordinates that are multiples of 8, and [9, 15] holds none: no candidate of
    # [9, 9, 15, 15] has its centre inside. Two copies of LARGE pass both tests on the same anchors (IoU 1
    # with its anchor), and each anchor goes to one copy (the highest IoU, tied): the other loses them all
    between = [9.0, 9.0, 15.0, 15.0]
    batches = batch_of([between], [LARGE, LARGE])
    check = exercises.check_atss_without_positive
    assert check(no_centre_inside=1, lost_to_another=1, batches=batches) and verdict(capsys, True)
    assert not check(no_centre_inside=2, lost_to_another=0, batches=batches) and verdict(capsys, False)


# notebook 07


def test_refused_edits_are_the_readers_errors(capsys):
    # the reader raises on an unknown category, an iscrowd other than 0 / 1 and an id used twice; it counts
    # boxes outside their image or of negative width, and maps category ids with gaps to 0 .. C-1
    refused = {"category_id 999", "iscrowd 2", "duplicate annotation id"}
    assert set(exercises.ANNOTATION_EDITS) > refused
    assert exercises.check_refused_edits(refused) and verdict(capsys, True)
    assert not exercises.check_refused_edits(refused - {"iscrowd 2"}) and verdict(capsys, False)
    assert not exercises.check_refused_edits({*refused, "missing image"}) and verdict(capsys, False)


def test_table3_needs_the_r101_start_and_the_r50_teacher(capsys):
    files = {"weights/" + IMAGENET_WEIGHTS["resnet101"], MMDET_PAA_TEACHERS["resnet50"]}
    assert exercises.check_table3_files(files) and verdict(capsys, True)
    wrong_teacher = {IMAGENET_WEIGHTS["resnet101"], MMDET_PAA_TEACHERS["resnet101"]}
    assert not exercises.check_table3_files(wrong_teacher) and verdict(capsys, False)
