import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from lad_edu.cli import main
from lad_edu.data import CLASSES, ClassroomConfig, make_classroom_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_classroom_dataset(
        tmp_path_factory.mktemp("classroom"), num_train=60, num_val=10, seed=3, progress=False
    )


def digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_the_same_seed_writes_the_same_files(dataset, tmp_path):
    again = make_classroom_dataset(tmp_path / "again", num_train=60, num_val=10, seed=3, progress=False)
    assert digest(again) == digest(dataset)
    other = make_classroom_dataset(tmp_path / "other", num_train=60, num_val=10, seed=4, progress=False)
    assert digest(other) != digest(dataset)


def test_coco_layout_loads_with_pycocotools(dataset):
    for split, count in (("train", 60), ("val", 10)):
        coco = COCO(str(dataset / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == count
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == CLASSES
        for image in coco.loadImgs(coco.getImgIds()):
            with Image.open(dataset / split / image["file_name"]) as im:
                assert im.size == (image["width"], image["height"]) and im.mode == "RGB"


def test_scenes_span_a_tenfold_scale_range_with_empty_and_crowded_images(dataset):
    coco = json.loads((dataset / "annotations" / "instances_train.json").read_text())
    sides = np.array(
        [min(a["bbox"][2:]) for a in coco["annotations"]] + [max(a["bbox"][2:]) for a in coco["annotations"]]
    )
    assert sides.max() / sides.min() >= 10
    per_image = np.bincount([a["image_id"] for a in coco["annotations"]], minlength=len(coco["images"]))
    assert (per_image == 0).any() and (per_image >= 8).any()
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 128 and y + h <= 128
        assert a["iscrowd"] == 0 and 1 <= a["category_id"] <= len(CLASSES)


def test_objects_are_painted_where_their_boxes_say(dataset):
    # a rectangle overlapping no other object is one solid colour; the canvas around objects is noise
    coco = json.loads((dataset / "annotations" / "instances_train.json").read_text())
    names = {image["id"]: image["file_name"] for image in coco["images"]}
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a["bbox"])

    def overlaps(b, c):
        return b[0] < c[0] + c[2] and c[0] < b[0] + b[2] and b[1] < c[1] + c[3] and c[1] < b[1] + b[3]

    rectangle = CLASSES.index("rectangle") + 1
    alone = [
        a
        for a in coco["annotations"]
        if a["category_id"] == rectangle
        and min(a["bbox"][2:]) > 8
        and not any(overlaps(a["bbox"], c) for c in by_image[a["image_id"]] if c != a["bbox"])
    ]
    assert alone
    for a in alone[:5]:
        pixels = np.asarray(Image.open(dataset / "train" / names[a["image_id"]])).astype(float)
        x, y, w, h = a["bbox"]
        inside = pixels[int(y) + 2 : int(y + h) - 2, int(x) + 2 : int(x + w) - 2]
        assert inside.std(axis=(0, 1)).max() < 1.0  # solid
    empty = next(i for i in names if i not in by_image)
    canvas = np.asarray(Image.open(dataset / "train" / names[empty])).astype(float)
    assert 10 < canvas.std() < 20  # the noisy grey canvas (0.06 * 255)


def test_bad_arguments_and_the_command_line(tmp_path, capsys):
    with pytest.raises(ValueError, match="10x"):
        make_classroom_dataset(tmp_path, config=ClassroomConfig(min_side=10, max_side=50), progress=False)
    with pytest.raises(ValueError, match=">= 0"):
        make_classroom_dataset(tmp_path, num_train=-1, progress=False)
    main(["make-data", "--out", str(tmp_path / "cli"), "--train", "2", "--val", "1"])
    assert (tmp_path / "cli" / "val" / "000000.png").exists()
    assert "written to" in capsys.readouterr().out
