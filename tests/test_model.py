"""The network: MMDetection's PAA key for key, feature maps on the anchor grid, COP (eq. 4), test time."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from lad_edu.anchors import single
from lad_edu.assign.lad import LADAssigner
from lad_edu.boxes import DeltaXYWHCoder
from lad_edu.model import HeadOutput, ModelConfig, build_detector, load_mmdet_state_dict
from lad_edu.model.backbone import build_backbone, resnet, small_backbone
from lad_edu.model.head import PAAHead, cop_probability, flatten_levels
from lad_edu.model.mmdet_import import to_mmdet_state_dict
from lad_edu.model.postprocess import multiclass_nms, postprocess_image, score_voting, topk_per_level

ROOT = Path(__file__).resolve().parents[1]
KEYS_FIXTURE = ROOT / "tests" / "data" / "mmdet_paa_keys.json"  # copied from the shared reference below
SHARED_KEYS = ROOT.parent / "shared" / "reference" / "mmdet_paa_state_dict_keys.json"

# a detector small enough to run in milliseconds
TINY = dict(
    backbone="small",
    frozen_stages=-1,
    norm_eval=False,
    fpn_channels=16,
    head_channels=16,
    stacked_convs=1,
    gn_groups=4,
)


def tiny_detector(num_classes: int = 3, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build_detector(ModelConfig(**{**TINY, **overrides}), num_classes)


def images(batch: int = 2, height: int = 64, width: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 255


@pytest.fixture(scope="module")
def mmdet_keys() -> dict:
    return json.loads(KEYS_FIXTURE.read_text())


@pytest.fixture(scope="module")
def meta_r50():
    with torch.device("meta"):
        return build_detector(ModelConfig(backbone="resnet50"), 80)


# MMDetection's checkpoint layout


@pytest.mark.parametrize(
    ("backbone", "zoo_name"), [("resnet50", "paa_r50_fpn_1x_coco"), ("resnet101", "paa_r101_fpn_1x_coco")]
)
def test_state_dict_is_mmdetections_key_for_key(backbone, zoo_name, mmdet_keys):
    with torch.device("meta"):
        model = build_detector(ModelConfig(backbone=backbone), 80)
    ours = [[key, list(value.shape)] for key, value in to_mmdet_state_dict(model.state_dict()).items()]
    assert ours == mmdet_keys[zoo_name]["keys"]  # names, shapes and order
    assert sum(p.numel() for p in model.parameters()) == mmdet_keys[zoo_name]["num_parameters"]


@pytest.mark.skipif(not SHARED_KEYS.exists(), reason="the shared reference is not next to this checkout")
def test_key_fixture_is_a_copy_of_the_shared_reference(mmdet_keys):
    reference = json.loads(SHARED_KEYS.read_text())
    for name in ("paa_r50_fpn_1x_coco", "paa_r101_fpn_1x_coco"):
        assert mmdet_keys[name]["keys"] == [[key, shape] for key, shape, _ in reference[name]["keys"]]
        assert mmdet_keys[name]["num_parameters"] == reference[name]["num_parameters"]


def test_mmdet_checkpoint_round_trip(tmp_path):
    source, target = tiny_detector(seed=0).eval(), tiny_detector(seed=1).eval()
    mmdet_state = to_mmdet_state_dict(source.state_dict())
    assert "neck.fpn_convs.4.conv.weight" in mmdet_state and "neck.lateral_convs.0.conv.bias" in mmdet_state
    path = tmp_path / "paa_tiny.pth"
    torch.save({"meta": {"mmdet_version": "3.3.0"}, "state_dict": mmdet_state}, path)

    load_mmdet_state_dict(target, path)
    x = images()
    for ours, theirs in zip(source(x)[:3], target(x)[:3], strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    load_mmdet_state_dict(target, mmdet_state)  # a bare state dict works too


def test_mmdet_import_names_what_does_not_fit():
    model = tiny_detector()
    state = to_mmdet_state_dict(model.state_dict())
    state["neck.fpn_convs.9.conv.weight"] = state.pop("neck.fpn_convs.4.conv.weight")
    with pytest.raises(ValueError, match=r"neck\.extra_blocks\.p7\.weight.*neck\.fpn_convs\.9\.conv\.weight"):
        load_mmdet_state_dict(model, {"meta": {}, "state_dict": state})
    other_classes = to_mmdet_state_dict(tiny_detector(num_classes=5).state_dict())
    with pytest.raises(ValueError, match=r"bbox_head\.atss_cls\.weight \(5, 16, 3, 3\) != \(3, 16, 3, 3\)"):
        load_mmdet_state_dict(model, other_classes)


def test_pixel_statistics_are_not_in_the_state_dict():
    model = tiny_detector()
    assert not any("pixel" in key for key in model.state_dict())
    assert model.pixel_mean.shape == (1, 3, 1, 1)


def test_cop_adds_only_the_coeff_conv():
    keys = set(tiny_detector().state_dict())
    cop_keys = set(tiny_detector(cop=True).state_dict())
    assert cop_keys - keys == {"bbox_head.coeff_conv.weight", "bbox_head.coeff_conv.bias"}
    assert keys <= cop_keys


# feature maps, anchors and outputs


@pytest.mark.parametrize("size", [(800, 1216), (801, 1199), (128, 128), (256, 224), (33, 47)])
def test_r50_feature_maps_have_the_anchor_grid(size, meta_r50):
    out = meta_r50(torch.empty(1, 3, *size, device="meta"))  # shapes only, no arithmetic
    assert out.feature_sizes == single().feature_sizes(size)
    assert out.cls_logits.shape == (1, len(single()(size).anchors), 80)


@pytest.mark.parametrize("size", [(128, 128), (96, 160), (100, 75), (33, 47)])
def test_small_detector_outputs_one_finite_row_per_anchor(size):
    model = tiny_detector()
    out = model(images(2, *size))
    anchors, num_level_anchors = model.anchors(size)
    assert isinstance(out, HeadOutput)
    assert sum(h * w for h, w in out.feature_sizes) == len(anchors) == sum(num_level_anchors)
    assert out.cls_logits.shape == (2, len(anchors), 3)
    assert out.box_deltas.shape == (2, len(anchors), 4) and out.iou_logits.shape == (2, len(anchors))
    assert all(torch.isfinite(t).all() for t in out[:3])


def test_rows_are_in_the_anchor_order():
    size = (70, 100)
    generator = single()
    anchors, _ = generator(size)
    # each level's map holds (x·stride, y·stride) at cell (y, x), the centre of that cell's anchor
    maps = []
    for stride, (height, width) in zip(generator.strides, generator.feature_sizes(size), strict=True):
        yy, xx = torch.meshgrid(torch.arange(height) * stride, torch.arange(width) * stride, indexing="ij")
        maps.append(torch.stack([xx, yy]).float()[None])  # [1, 2, H, W]
    corners = flatten_levels(maps)[0]  # [N, 2], row i must be anchor i
    torch.testing.assert_close(corners, (anchors[:, :2] + anchors[:, 2:]) / 2)


def test_dense_predictions_decode_every_image_on_the_anchors():
    model = tiny_detector()
    x = images()
    cls_logits, pred_boxes = model.dense_predictions(x)
    out = model(x)
    anchors = model.anchors(tuple(x.shape[-2:])).anchors
    torch.testing.assert_close(cls_logits, out.cls_logits)
    for b in range(len(x)):
        torch.testing.assert_close(pred_boxes[b], model.coder.decode(anchors, out.box_deltas[b]))


def test_anchors_are_cached_per_size_and_follow_the_config():
    model = tiny_detector()
    assert model.anchors((64, 96)) is model.anchors((64, 96))
    torch.testing.assert_close(model.anchors((64, 96)).anchors, single()((64, 96)).anchors)
    assert model.coder == DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2))


def test_detector_is_a_lad_teacher():
    teacher = tiny_detector()
    anchors, num_level_anchors = teacher.anchors((64, 96))
    results = LADAssigner(teacher.dense_predictions).assign_batch(
        images(1), anchors, num_level_anchors, [torch.tensor([[10.0, 8.0, 50.0, 40.0]])], [torch.tensor([1])]
    )
    assert results[0].gt_inds.shape == (len(anchors),)


def test_config_accepts_lists_and_checks_strides():
    cfg = ModelConfig(strides=[8, 16, 32, 64, 128], box_stds=[0.1, 0.1, 0.2, 0.2], pixel_mean=[0, 0, 0])
    assert cfg.strides == (8, 16, 32, 64, 128) and isinstance(cfg.box_stds, tuple)
    assert isinstance(cfg.pixel_mean, tuple)
    with pytest.raises(ValueError, match="strides"):
        build_detector(ModelConfig(**{**TINY, "strides": (4, 8, 16, 32, 64)}), 3)


# backbones


def test_frozen_stages_and_norm_eval_follow_mmdetection():
    net = resnet(18, frozen_stages=1, norm_eval=True).train()
    frozen = [net.conv1, net.bn1, net.layer1]
    assert not any(p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for m in (net.layer2, net.layer3, net.layer4) for p in m.parameters())
    assert not any(m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert net.layer2[0].conv1.training  # only the norms are held in eval
    running_mean = net.layer3[0].bn1.running_mean.clone()
    net(torch.rand(2, 3, 64, 64))
    torch.testing.assert_close(net.layer3[0].bn1.running_mean, running_mean)  # statistics not updated


def test_frozen_stages_stay_in_eval_without_norm_eval():
    net = resnet(18, frozen_stages=2, norm_eval=False).train()
    assert not net.bn1.training and not net.layer2[1].bn2.training
    assert net.layer3[0].bn1.training
    assert all(p.requires_grad for p in resnet(18, frozen_stages=-1).parameters())


@pytest.mark.parametrize(("name", "channels"), [("resnet18", [128, 256, 512]), ("small", [64, 128, 256])])
def test_backbones_give_c3_c4_c5(name, channels):
    net = build_backbone(name, None, frozen_stages=-1, norm_eval=False)
    c3, c4, c5 = net(torch.zeros(1, 3, 72, 40))
    assert net.out_channels == channels
    assert [c.shape[1] for c in (c3, c4, c5)] == channels
    assert [tuple(c.shape[-2:]) for c in (c3, c4, c5)] == [(9, 5), (5, 3), (3, 2)]
    assert not any(key.startswith(("fc.", "avgpool.")) for key in net.state_dict())


def test_unknown_backbone_lists_the_valid_names():
    with pytest.raises(ValueError, match="resnet18, resnet34, resnet50, resnet101, small"):
        build_backbone("resnet152", None, 1, True)


def test_backbone_weights_load_from_a_local_torchvision_file(tmp_path):
    torch.manual_seed(0)
    state = torchvision.models.resnet18(weights=None).state_dict()  # with fc.*, like the real file
    path = tmp_path / "resnet18-random.pth"
    torch.save(state, path)
    net = resnet(18, weights=str(path))
    torch.testing.assert_close(net.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(net.bn1.running_var, state["bn1.running_var"])

    missing = tmp_path / "no-such-file.pth"
    with pytest.raises(FileNotFoundError, match="no-such-file.pth"):
        resnet(18, weights=missing)
    del state["layer2.0.downsample.1.weight"]
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"resnet18-random\.pth.*layer2\.0\.downsample\.1\.weight"):
        resnet(18, weights=path)


def test_small_backbone_is_random_and_trainable_by_default():
    net = small_backbone(width=8).train()
    assert all(p.requires_grad for p in net.parameters())
    assert all(m.training for m in net.modules())
    with pytest.warns(UserWarning, match="frozen_stages=-1, norm_eval=False"):
        build_backbone("small", None, frozen_stages=1, norm_eval=True)


# Conditional Objectness Prediction (LAD paper, appendix A, eq. 4)


def cop_by_loops(cls_logits: torch.Tensor, objectness_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4 written out: p_i = 1/9 Σ_k sigmoid(o_i^k) sigmoid(cls^k), outside neighbours counting 0."""
    batch, num_classes, height, width = cls_logits.shape
    p = torch.zeros(batch, num_classes, height, width)
    for b in range(batch):
        for c in range(num_classes):
            for y in range(height):
                for x in range(width):
                    total = 0.0
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            if 0 <= y + dy < height and 0 <= x + dx < width:
                                k = 3 * (dy + 1) + (dx + 1)
                                total += torch.sigmoid(objectness_logits[b, k, y, x]) * torch.sigmoid(
                                    cls_logits[b, c, y + dy, x + dx]
                                )
                    p[b, c, y, x] = total / 9
    return p


def test_cop_probability_is_eq4():
    gen = torch.Generator().manual_seed(0)
    cls_logits = torch.randn(2, 3, 4, 5, generator=gen) * 3
    objectness_logits = torch.randn(2, 9, 4, 5, generator=gen) * 3
    torch.testing.assert_close(
        cop_probability(cls_logits, objectness_logits), cop_by_loops(cls_logits, objectness_logits)
    )


def randomised_cop_head() -> PAAHead:
    torch.manual_seed(0)
    head = PAAHead(
        num_classes=2, in_channels=8, feat_channels=8, stacked_convs=1, gn_groups=2, num_levels=1, cop=True
    )
    for param in head.parameters():  # large weights: the 0.01-std init would make every p nearly equal
        torch.nn.init.normal_(param, std=0.5)
    return head


def test_cop_head_returns_the_logit_of_eq4():
    head = randomised_cop_head()
    feature = torch.randn(2, 8, 3, 4, generator=torch.Generator().manual_seed(1))
    out = head([feature])
    cls_logits = head.atss_cls(head.cls_convs[0](feature))
    objectness = head.coeff_conv(head.reg_convs[0](feature))
    p = cop_by_loops(cls_logits, objectness)  # [2, 2, 3, 4]
    torch.testing.assert_close(out.cls_logits.sigmoid(), p.permute(0, 2, 3, 1).reshape(2, 12, 2))


def test_cop_gradients_reach_both_towers():
    head = randomised_cop_head()
    out = head([torch.randn(2, 8, 3, 4, generator=torch.Generator().manual_seed(1))])
    target = torch.zeros_like(out.cls_logits)
    target[:, 5, 1] = 1
    torchvision.ops.sigmoid_focal_loss(out.cls_logits, target, reduction="sum").backward()
    for module in (head.atss_cls, head.cls_convs[0].conv, head.coeff_conv, head.reg_convs[0].conv):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0


def test_cop_logits_stay_finite_at_extreme_scores():
    cls_logits = torch.tensor([-100.0, 100.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)
    objectness = torch.full((1, 9, 3, 3), 100.0)
    p = cop_probability(cls_logits, objectness)
    logits = torch.logit(p, eps=1e-6)
    assert torch.isfinite(logits).all()
    assert logits.min() == pytest.approx(math.log(1e-6 / (1 - 1e-6)), rel=1e-3)


# test time


def test_nms_keeps_one_of_two_overlapping_boxes_of_a_class():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
    scores = torch.tensor([[0.6], [0.9]])
    kept, kept_scores, labels = multiclass_nms(boxes, scores, score_thr=0.05, nms_iou=0.6, max_per_img=100)
    torch.testing.assert_close(kept, boxes[1:])
    assert kept_scores.tolist() == [pytest.approx(0.9)] and labels.tolist() == [0]


def test_nms_keeps_overlapping_boxes_of_different_classes():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 0.0, 11.0, 10.0]])
    scores = torch.tensor([[0.6, 0.0], [0.0, 0.9]])
    _, kept_scores, labels = multiclass_nms(boxes, scores, score_thr=0.05, nms_iou=0.6, max_per_img=100)
    assert labels.tolist() == [1, 0] and kept_scores.tolist() == pytest.approx([0.9, 0.6])


def test_score_threshold_and_max_per_image():
    boxes = torch.tensor([[20.0 * i, 0.0, 20.0 * i + 10, 10.0] for i in range(6)])  # disjoint
    scores = torch.tensor([[0.05], [0.3], [0.9], [0.051], [0.6], [0.01]])
    _, kept_scores, _ = multiclass_nms(boxes, scores, score_thr=0.05, nms_iou=0.6, max_per_img=100)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.6, 0.3, 0.051])  # 0.05 itself is dropped
    kept, kept_scores, _ = multiclass_nms(boxes, scores, score_thr=0.05, nms_iou=0.6, max_per_img=2)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.6])
    torch.testing.assert_close(kept, boxes[[2, 4]])


def score_voting_by_loops(det_boxes, det_labels, boxes, scores, score_thr):
    """Reference §3.5 with numpy and loops, one detection at a time."""
    det_boxes, boxes, scores = det_boxes.double().numpy(), boxes.double().numpy(), scores.double().numpy()
    voted = []
    for det, label in zip(det_boxes, det_labels.tolist(), strict=True):
        num, den = np.zeros(4), 0.0
        for box, score in zip(boxes, scores[:, label], strict=True):
            iw = max(0.0, min(det[2], box[2]) - max(det[0], box[0]))
            ih = max(0.0, min(det[3], box[3]) - max(det[1], box[1]))
            union = (det[2] - det[0]) * (det[3] - det[1]) + (box[2] - box[0]) * (box[3] - box[1]) - iw * ih
            iou = iw * ih / union
            if score > score_thr and iou > 0.01:
                p = np.exp(-((1 - iou) ** 2) / 0.025) * score
                num, den = num + p * box, den + p
        voted.append(num / den)
    return torch.tensor(np.array(voted), dtype=torch.float32)


def test_score_voting_matches_the_reference_formula():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[30.0, 30.0], [70.0, 40.0]]).repeat_interleave(10, dim=0)
    centres = centres + torch.randn(20, 2, generator=gen) * 4
    sizes = 20 + torch.rand(20, 2, generator=gen) * 10
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=1)
    scores = torch.rand(20, 3, generator=gen) * 0.5
    det_boxes, _, det_labels = multiclass_nms(boxes, scores, score_thr=0.05, nms_iou=0.6, max_per_img=100)
    voted = score_voting(det_boxes, det_labels, boxes, scores, score_thr=0.05)
    torch.testing.assert_close(voted, score_voting_by_loops(det_boxes, det_labels, boxes, scores, 0.05))
    assert not torch.allclose(voted, det_boxes)  # the neighbours did move the boxes


def test_score_voting_leaves_a_zero_area_box_alone():
    det = torch.tensor([[5.0, 5.0, 5.0, 9.0]])
    voted = score_voting(det, torch.tensor([0]), det.clone(), torch.tensor([[0.9]]), score_thr=0.05)
    torch.testing.assert_close(voted, det)


def test_topk_per_level_keeps_the_best_of_each_level():
    scores = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7])
    assert topk_per_level(scores, [4, 2, 1], k=2).tolist() == [1, 2, 4, 5, 6]
    assert topk_per_level(scores, [4, 2, 1], k=0).tolist() == list(range(7))


def test_postprocess_scores_are_the_geometric_mean_and_boxes_are_clipped():
    anchors = torch.tensor([[-20.0, -20.0, 44.0, 44.0], [100.0, 100.0, 164.0, 164.0]])
    cls_logits = torch.logit(torch.tensor([[0.8, 0.1], [0.01, 0.5]]))
    iou_logits = torch.logit(torch.tensor([0.5, 0.98]))
    result = postprocess_image(
        cls_logits, torch.zeros(2, 4), iou_logits, anchors, [2], (120, 140), DeltaXYWHCoder(), score_thr=0.3
    )  # kept: 0.7 and 0.63; dropped: sqrt(0.1 · 0.5) = 0.22 and sqrt(0.01 · 0.98) = 0.099
    assert result["labels"].tolist() == [1, 0]
    assert result["scores"].tolist() == pytest.approx([math.sqrt(0.5 * 0.98), math.sqrt(0.8 * 0.5)])
    torch.testing.assert_close(
        result["boxes"], torch.tensor([[100.0, 100.0, 140.0, 120.0], [0.0, 0.0, 44.0, 44.0]])
    )


def test_predict_returns_clipped_detections_and_restores_the_mode():
    model = tiny_detector().train()
    x = images(2, 64, 96)
    results = model.predict(x, [(64, 96), (50, 70)])
    assert model.training and model.backbone.layer1[0].training
    assert len(results) == 2
    for result, (height, width) in zip(results, [(64, 96), (50, 70)], strict=True):
        assert set(result) == {"boxes", "scores", "labels"}
        assert 0 < len(result["boxes"]) <= model.cfg.max_per_img  # an untrained head scores ~sqrt(0.01 * 0.5)
        boxes = result["boxes"]
        assert (boxes[:, 0::2] <= width + 1e-3).all() and (boxes[:, 1::2] <= height + 1e-3).all()
        assert (result["scores"] > model.cfg.score_thr).all() and not result["scores"].requires_grad
