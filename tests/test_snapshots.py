"""Training snapshots: what the assigner decided for a few validation images at each epoch, and why."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lad_edu import viz
from lad_edu.assign.paa import paa_positives
from lad_edu.boxes import box_iou
from lad_edu.data.classroom import make_classroom_dataset
from lad_edu.data.coco import CocoDetection
from lad_edu.data.transforms import EvalTransform, collate
from lad_edu.gmm import fit_gmm2
from lad_edu.model import build_detector
from lad_edu.train import load_config, train
from lad_edu.train.config import ConfigError
from lad_edu.train.labels import labeller
from lad_edu.train.snapshots import SNAPSHOTS_FILE, load
from tests.test_train import tiny

IMAGES = [0, 1, 3]  # of the 4 validation images; image 3 has no object


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_classroom_dataset(tmp_path_factory.mktemp("data") / "tiny", 8, 4, seed=3, progress=False)


def snapshot_config(data, *overrides, images=IMAGES):
    """classroom_paa shrunk to 2 epochs of 2 iterations, snapshots of ``images``."""
    chosen = ",".join(map(str, images))
    return load_config(
        "classroom_paa", tiny(data, "optim.epochs=2", f"snapshot.images=[{chosen}]", *overrides)
    )


@pytest.fixture(scope="module")
def paa_run(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("paa")
    train(snapshot_config(data), run)
    return run


def rows_without_timing(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "images_per_s"} for row in rows]


def positive_slots(gt):
    """Which of a GT's candidates are among its positives."""
    return np.isin(gt.candidates, gt.positives)


def test_a_run_writes_one_small_strict_json_line_per_epoch_and_image_from_epoch_0(paa_run, data):
    def refuse(constant):
        raise AssertionError(f"not strict JSON: {constant}")

    lines = (paa_run / SNAPSHOTS_FILE).read_text().splitlines()
    rows = [json.loads(line, parse_constant=refuse) for line in lines]
    assert [(r["epoch"], r["image"]) for r in rows] == [(e, i) for e in (0, 1, 2) for i in IMAGES]
    assert max(len(line) for line in lines) < 5000  # a few kilobytes per image and epoch

    val = CocoDetection(data, "val")
    snapshots = load(paa_run)
    for snapshot in snapshots:
        target = val[snapshot.image][1]
        assert snapshot.image_id == target["image_id"] and snapshot.size == (128, 128)
        assert (snapshot.assigner, snapshot.mode, snapshot.choice) == ("paa", "none", None)
        assert [gt.label for gt in snapshot.gts] == target["labels"].tolist()
        boxes = np.array([gt.box for gt in snapshot.gts]).reshape(-1, 4)
        np.testing.assert_allclose(boxes, target["boxes"].numpy(), rtol=1e-4)  # 128 px: no resize
    assert [len(s.gts) for s in snapshots[:3]] == [len(val[i][1]["boxes"]) for i in IMAGES]
    assert len(snapshots[2].gts) == 0 and sum(len(s.gts) for s in snapshots) > 0


def test_the_gmm_cut_and_positives_are_paas_on_the_stored_costs(paa_run):
    checked = 0
    for snapshot in load(paa_run):
        for gt in snapshot.gts:
            assert (np.diff(gt.costs) >= 0).all()  # sorted by cost
            assert (np.bincount(gt.levels) <= 9).all()  # PAA's top 9 per level
            assert set(gt.positives) <= set(gt.candidates)
            if len(gt.costs) < 2:
                continue
            # refit the GMM on the stored (rounded) costs: the same mixture, components and positives
            costs = torch.tensor(gt.costs, dtype=torch.float64)[None]
            valid = torch.ones_like(costs, dtype=torch.bool)
            fit = fit_gmm2(costs, valid)
            for key in ("weights", "means", "variances"):
                stored = getattr(gt, f"gmm_{key}")
                np.testing.assert_allclose(getattr(fit, key)[0].numpy(), stored, rtol=2e-3, atol=1e-5)
            component, score = fit.predict_and_score(costs, valid)
            assert component[0].tolist() == gt.component.tolist()
            positive = paa_positives(costs, valid, component, score)[0].numpy()
            assert positive.tolist() == positive_slots(gt).tolist()
            # the cut is the largest positive cost: every positive is at or below it
            if positive.any():
                assert gt.cut == gt.costs[positive].max()
                assert (gt.costs[positive] <= gt.cut).all()
            else:
                assert np.isnan(gt.cut)
            checked += 1
    assert checked >= 4


def test_epoch_0_is_the_untrained_network_labelled_as_lad_edu_assign_labels_it(paa_run, data):
    cfg = snapshot_config(data)
    val = CocoDetection(data, "val")
    label = labeller(cfg, val.category_ids)  # the weights drawn from cfg.seed, in eval mode
    for snapshot in load(paa_run)[:2]:
        images, targets = collate([EvalTransform(128, 128)(*val[snapshot.image])])
        (result,), _, _ = label(images, targets)
        for j, gt in enumerate(snapshot.gts):
            assert gt.positives.tolist() == (result.gt_inds == j + 1).nonzero().flatten().tolist()
            row = result.details["candidates"][j] >= 0
            assert gt.candidates.tolist() == result.details["candidates"][j][row].tolist()
            np.testing.assert_allclose(gt.costs, result.details["costs"][j][row].numpy(), rtol=1e-4)


def test_snapshots_change_no_training_number(paa_run, data, tmp_path):
    train(snapshot_config(data, images=[]), tmp_path)
    assert not (tmp_path / SNAPSHOTS_FILE).exists()
    assert rows_without_timing(tmp_path / "metrics.jsonl") == rows_without_timing(paa_run / "metrics.jsonl")


def test_resume_drops_the_snapshots_after_the_checkpoint(paa_run, data, tmp_path):
    train(snapshot_config(data, "max_iters=3"), tmp_path)  # stopped at epoch 2, iteration 1: checkpoint
    path = tmp_path / SNAPSHOTS_FILE
    assert [s.epoch for s in load(tmp_path)] == [0] * 3 + [1] * 3
    # a run killed after it wrote epoch 2's snapshots, the last line cut short, before its checkpoint
    later = path.read_text().splitlines()[-1].replace('"epoch": 1', '"epoch": 2')
    path.write_text(path.read_text() + later + "\n" + later[:40])
    with pytest.warns(UserWarning, match="changed config"):
        train(snapshot_config(data), tmp_path, resume=True)
    assert path.read_text() == (paa_run / SNAPSHOTS_FILE).read_text()  # no duplicate, the same numbers


def test_atss_and_fixed_iou_store_their_own_view(data, tmp_path):
    train(snapshot_config(data, "assign.assigner=atss", "optim.epochs=1"), tmp_path / "atss")
    snapshots = load(tmp_path / "atss")
    anchors = build_detector(snapshot_config(data).model, 12).anchors((128, 128))
    per_level = [min(9, n) for n in anchors.num_level_anchors]
    for gt in (gt for s in snapshots for gt in s.gts):
        assert gt.costs is None and gt.gmm_means is None and gt.cut is None
        assert np.bincount(gt.levels, minlength=len(per_level)).tolist() == per_level  # top 9 per level
        # the threshold is mean + unbiased std of the candidates' IoU, and every positive passes it
        np.testing.assert_allclose(gt.threshold, gt.ious.mean() + gt.ious.std(ddof=1), rtol=1e-3)
        assert (gt.ious[positive_slots(gt)] >= gt.threshold - 1e-4).all()
        assert set(gt.positives) <= set(gt.candidates)

    train(snapshot_config(data, "assign.assigner=fixed", "optim.epochs=1"), tmp_path / "fixed")
    gts = [gt for s in load(tmp_path / "fixed") for gt in s.gts]
    assert gts and all(gt.candidates is None and gt.threshold is None for gt in gts)
    best_iou = box_iou(torch.tensor(np.array([gt.box for gt in gts])), anchors.anchors).amax(dim=1)
    np.testing.assert_allclose([gt.max_iou for gt in gts], best_iou.numpy(), rtol=1e-3)


def test_colad_stores_both_networks_costs_and_which_one_taught(data, tmp_path):
    cfg = snapshot_config(data, "distill.mode=colad", "distill.teacher_backbone=small", "optim.epochs=1")
    train(cfg, tmp_path)
    snapshots = [s for s in load(tmp_path) if s.gts]
    assert snapshots
    for snapshot in snapshots:
        assert set(snapshot.choice) == {"rho_1", "rho_2", "teacher_2", "teacher_share_2"}
        decided = "costs_2" if snapshot.choice["teacher_2"] == 1.0 else "costs_1"
        for gt in snapshot.gts:
            assert len(gt.costs_1) == len(gt.costs_2) == len(gt.candidates)
            np.testing.assert_allclose(gt.costs, getattr(gt, decided), rtol=1e-6)


def test_lad_costs_are_the_frozen_teachers_so_they_never_move(data, tmp_path):
    train(snapshot_config(data, "max_iters=2"), tmp_path / "teacher")
    teacher = tmp_path / "teacher" / "checkpoint.pt"
    train(
        snapshot_config(data, "distill.mode=lad", f"distill.teacher_checkpoint={teacher}"), tmp_path / "lad"
    )
    snapshots = load(tmp_path / "lad")
    assert {s.mode for s in snapshots} == {"lad"}
    first, last = snapshots[0], snapshots[-3]  # image 0 at epochs 0 and 2
    assert (first.image, last.image, last.epoch) == (0, 0, 2)
    for a, b in zip(first.gts, last.gts, strict=True):
        assert a.costs.tolist() == b.costs.tolist() and a.positives.tolist() == b.positives.tolist()


def test_bad_snapshot_settings_are_clear_errors(data, tmp_path):
    with pytest.raises(ConfigError, match="snapshot.every must be at least 1, got 0"):
        snapshot_config(data, "snapshot.every=0")
    with pytest.raises(ConfigError, match="snapshot.images must be at least 0, got -1"):
        snapshot_config(data, images=[-1])
    with pytest.raises(ConfigError, match=r"snapshot.images: \[4\] out of range: .*instances_val.json has 4"):
        train(snapshot_config(data, images=[0, 4]), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # refused before training
    with pytest.raises(
        FileNotFoundError, match=r"took no snapshots; turn them on with --set snapshot.images"
    ):
        load(tmp_path / "run")


def test_snapshots_are_taken_every_few_epochs_and_after_the_last(data, tmp_path):
    train(snapshot_config(data, "optim.epochs=3", "snapshot.every=2", images=[0]), tmp_path)
    assert [s.epoch for s in load(tmp_path)] == [0, 2, 3]


def test_the_cost_gmm_animation_renders_headless_to_html_and_gif(paa_run, tmp_path):
    snapshots = load(paa_run)
    animation = viz.animate_cost_gmm(snapshots, gt=0, image=0)
    assert "<script" in animation.to_jshtml()
    animation.save(tmp_path / "gmm.gif", writer="pillow", dpi=50)
    with Image.open(tmp_path / "gmm.gif") as gif:
        assert gif.n_frames == 3  # epochs 0, 1, 2

    figure = viz.draw_cost_gmm_over_epochs(snapshots, gt=0, image=0)
    axes = figure.axes
    assert [ax.get_title().split("\n")[1].split(":")[0] for ax in axes] == ["epoch 0", "epoch 1", "epoch 2"]
    assert len({ax.get_xlim() for ax in axes}) == 1 and len({ax.get_ylim() for ax in axes}) == 1


def test_the_animation_says_what_it_cannot_draw(paa_run, data, tmp_path):
    snapshots = load(paa_run)
    with pytest.raises(ValueError, match=r"no snapshot of image 2; the snapshots hold images \[0, 1, 3\]"):
        viz.animate_cost_gmm(snapshots, gt=0, image=2)
    with pytest.raises(ValueError, match="gt=99, but image 0 has"):
        viz.animate_cost_gmm(snapshots, gt=99, image=0)
    train(snapshot_config(data, "assign.assigner=atss", "optim.epochs=1", images=[0]), tmp_path)
    with pytest.raises(ValueError, match="hold no costs .assigner 'atss'."):
        viz.animate_cost_gmm(load(tmp_path), gt=0)
