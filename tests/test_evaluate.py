import contextlib
import copy
import io
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import lad_edu.train.evaluate as evaluate_module
from lad_edu.data.transforms import EvalTransform
from lad_edu.train.evaluate import COCO_STAT_NAMES, coco_evaluate, format_stats, to_coco_results

CATEGORY_IDS = [3, 5, 7]  # non-contiguous; category 5 has no ground truth at all


def ann(i, image_id, category_id, bbox, iscrowd=0):
    return {
        "id": i,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": bbox,
        "area": bbox[2] * bbox[3],
        "iscrowd": iscrowd,
    }


ANNOTATIONS = [
    ann(1, 1, 3, [10, 10, 20, 20]),  # small (area < 32^2)
    ann(2, 1, 7, [50, 40, 60, 80]),  # medium
    ann(3, 1, 7, [150, 20, 120, 150]),  # large (area > 96^2)
    ann(4, 2, 3, [5, 5, 40, 40]),  # medium
    ann(5, 2, 3, [50, 100, 45, 90], iscrowd=1),  # a crowd: detections on it are neither TP nor FP
]
IMAGES = [
    {"id": 1, "file_name": "1.png", "width": 300, "height": 200},
    {"id": 2, "file_name": "2.png", "width": 100, "height": 200},
    {"id": 3, "file_name": "3.png", "width": 64, "height": 64},  # no objects
]


def load_gt(tmp_path, annotations=ANNOTATIONS):
    data = {
        "images": IMAGES,
        "annotations": annotations,
        "categories": [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS],
    }
    path = tmp_path / "instances_val.json"
    path.write_text(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def pycocotools_run(coco_gt, results, image_ids=None):
    """The reference: COCOeval run directly, as its README shows. Returns (stats, printed summary)."""
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), "bbox")
        if image_ids is not None:
            coco_eval.params.imgIds = image_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    summary = "\n".join(printed.getvalue().rstrip("\n").splitlines()[-12:])
    return dict(zip(COCO_STAT_NAMES, coco_eval.stats.tolist(), strict=True)), summary


def perfect_results(annotations=ANNOTATIONS):
    return [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in annotations
        if not a["iscrowd"]
    ]


def noisy_results(seed):
    """Jittered true boxes, wrong classes and false positives on every image, via to_coco_results."""
    generator = torch.Generator().manual_seed(seed)
    results = []
    for image in IMAGES:
        gts = [a for a in ANNOTATIONS if a["image_id"] == image["id"]]
        xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in gts)]).reshape(-1, 4)
        labels = torch.tensor([CATEGORY_IDS.index(a["category_id"]) for a in gts], dtype=torch.long)
        extra = int(torch.randint(0, 4, (1,), generator=generator))
        corner = torch.rand(extra, 2, generator=generator) * 40
        xyxy = torch.cat(
            [xyxy, torch.cat([corner, corner + 5 + torch.rand(extra, 2, generator=generator) * 30], 1)]
        )
        labels = torch.cat([labels, torch.randint(0, 3, (extra,), generator=generator)])
        boxes = xyxy + torch.randn(xyxy.shape, generator=generator) * 4
        scores = torch.rand(len(boxes), generator=generator)
        results += to_coco_results(image["id"], boxes, scores, labels, CATEGORY_IDS)
    return results


# to_coco_results


def test_results_are_back_in_original_pixels_in_xywh_with_original_category_ids():
    boxes = torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 3.0, 3.0]])
    results = to_coco_results(
        9, boxes, torch.tensor([0.123456789, 1.0]), torch.tensor([2, 0]), CATEGORY_IDS, scale=2.0
    )
    assert results == [
        {"image_id": 9, "category_id": 7, "bbox": [5.0, 10.0, 20.0, 30.0], "score": 0.12346},
        {"image_id": 9, "category_id": 3, "bbox": [0.0, 0.0, 1.5, 1.5], "score": 1.0},
    ]
    assert json.loads(json.dumps(results)) == results  # plain python numbers
    empty = torch.zeros(0, 4)
    assert to_coco_results(9, empty, torch.zeros(0), torch.zeros(0, dtype=torch.long), CATEGORY_IDS) == []
    with pytest.raises(ValueError, match="expected boxes"):
        to_coco_results(9, boxes, torch.ones(3), torch.zeros(2, dtype=torch.long), CATEGORY_IDS)


def test_detections_of_resized_images_map_back_to_a_perfect_score(tmp_path):
    """GT boxes through EvalTransform's resize, then back with the recorded scale: AP 1.0."""
    coco_gt = load_gt(tmp_path)
    transform, results = EvalTransform(short_side=150, max_size=400), []
    for image in IMAGES:
        gts = [a for a in ANNOTATIONS if a["image_id"] == image["id"] and not a["iscrowd"]]
        xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in gts)]).reshape(-1, 4)
        target = {"boxes": xyxy, "crowd_boxes": torch.zeros(0, 4), "size": None}
        _, target = transform(torch.zeros(3, image["height"], image["width"]), target)
        assert target["scale_factor"] != (1.0, 1.0)
        labels = torch.tensor([CATEGORY_IDS.index(a["category_id"]) for a in gts], dtype=torch.long)
        results += to_coco_results(
            image["id"], target["boxes"], torch.ones(len(gts)), labels, CATEGORY_IDS, target["scale_factor"]
        )
    stats = coco_evaluate(coco_gt, results)
    assert stats["AP"] == stats["AP50"] == stats["AP75"] == 1.0


# coco_evaluate


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), subset=st.sampled_from([None, [1], [2, 3], [1, 2, 3]]))
def test_stats_equal_a_direct_pycocotools_run(tmp_path_factory, seed, subset):
    coco_gt = load_gt(tmp_path_factory.mktemp("gt"))
    results = noisy_results(seed)
    expected, summary = pycocotools_run(coco_gt, results, subset)
    stats = coco_evaluate(coco_gt, results, image_ids=subset)
    assert stats == expected
    assert format_stats(stats) == summary


def test_perfect_detections_score_one_and_detections_on_a_crowd_cost_nothing(tmp_path):
    coco_gt = load_gt(tmp_path)
    stats = coco_evaluate(coco_gt, perfect_results())
    assert stats["AP"] == stats["AP50"] == stats["AP75"] == stats["AR100"] == 1.0
    # per area range the mean runs over fewer entries and lands a rounding error below 1
    assert [stats[name] for name in ("APs", "APm", "APl")] == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)
    on_crowd = {"image_id": 2, "category_id": 3, "bbox": [50, 100, 45, 90], "score": 0.9}
    assert coco_evaluate(coco_gt, perfect_results() + [on_crowd]) == stats


def test_empty_results_score_what_pycocotools_gives_a_detector_that_finds_nothing(tmp_path):
    coco_gt = load_gt(tmp_path)
    # pycocotools refuses [], but accepts one detection that matches nothing: the same numbers
    miss = [{"image_id": 3, "category_id": 3, "bbox": [1, 1, 5, 5], "score": 0.5}]
    expected, _ = pycocotools_run(coco_gt, miss)
    assert coco_evaluate(coco_gt, []) == expected == dict.fromkeys(COCO_STAT_NAMES, 0.0)
    # image 2 has only a medium box: nothing small or large to find is -1, as pycocotools reports it
    on_image_2 = coco_evaluate(coco_gt, [], image_ids=[2])
    assert on_image_2 == pycocotools_run(coco_gt, miss, [2])[0]
    assert on_image_2["APm"] == on_image_2["ARm"] == 0.0
    assert on_image_2["APs"] == on_image_2["APl"] == on_image_2["ARs"] == on_image_2["ARl"] == -1.0


def test_ground_truth_without_annotations_has_nothing_to_measure(tmp_path):
    coco_gt = load_gt(tmp_path, annotations=[])
    minus_ones = dict.fromkeys(COCO_STAT_NAMES, -1.0)
    assert coco_evaluate(coco_gt, []) == minus_ones
    assert (
        coco_evaluate(coco_gt, perfect_results())
        == minus_ones
        == pycocotools_run(coco_gt, perfect_results())[0]
    )


def test_mistakes_pycocotools_would_swallow_are_refused(tmp_path):
    coco_gt = load_gt(tmp_path)
    contiguous = [dict(r, category_id=0) for r in perfect_results()]  # training labels, not category ids
    with pytest.raises(ValueError, match=r"category ids \[0\]"):
        coco_evaluate(coco_gt, contiguous)
    with pytest.raises(ValueError, match=r"images not in the ground truth: \[99\]"):
        coco_evaluate(coco_gt, [dict(perfect_results()[0], image_id=99)])
    with pytest.raises(ValueError, match="image_ids is empty"):
        coco_evaluate(coco_gt, [], image_ids=[])
    no_area = [{k: v for k, v in a.items() if k != "area"} for a in ANNOTATIONS]
    with pytest.raises(ValueError, match="annotation 1 needs 'area' and 'iscrowd'"):
        coco_evaluate(load_gt(tmp_path, no_area), [])


def test_writes_results_and_stats_atomically(tmp_path, monkeypatch):
    coco_gt = load_gt(tmp_path)
    results = noisy_results(0)
    before = copy.deepcopy(results)
    out_dir = tmp_path / "runs" / "epoch_1"  # created
    stats = coco_evaluate(coco_gt, results, out_dir=out_dir)
    assert results == before  # pycocotools' loadRes adds keys to what it is given: not to ours
    assert sorted(p.name for p in out_dir.iterdir()) == ["coco_stats.json", "detections.json"]
    assert json.loads((out_dir / "detections.json").read_text()) == results
    assert json.loads((out_dir / "coco_stats.json").read_text()) == stats

    def dump_half_then_fail(data, f):
        f.write('{"half": ')
        raise OSError("disk full")

    monkeypatch.setattr(evaluate_module.json, "dump", dump_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        coco_evaluate(coco_gt, [], out_dir=out_dir)
    # the earlier files are intact and no temporary file is left behind
    assert sorted(p.name for p in out_dir.iterdir()) == ["coco_stats.json", "detections.json"]
    assert json.loads((out_dir / "detections.json").read_text()) == results
