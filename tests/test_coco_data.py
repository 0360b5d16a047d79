import json

import numpy as np
import pytest
from PIL import Image

from lad_edu.data import make_classroom_dataset
from lad_edu.data.coco import CocoDetection


def write_dataset(root, annotations, categories=None, images=None, split="val2017"):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(exist_ok=True)
    images = (
        images if images is not None else [{"id": 7, "file_name": "a.png"}, {"id": 9, "file_name": "b.png"}]
    )
    for image in images:
        Image.fromarray(np.zeros((40, 60, 3), dtype=np.uint8)).save(root / split / image["file_name"])
    categories = (
        categories if categories is not None else [{"id": 90, "name": "toaster"}, {"id": 3, "name": "car"}]
    )
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    return root


def ann(i, image_id, category_id, bbox, iscrowd=0):
    return {"id": i, "image_id": image_id, "category_id": category_id, "bbox": bbox, "iscrowd": iscrowd}


def test_non_contiguous_ids_crowd_boxes_empty_images_and_small_boxes(tmp_path):
    root = write_dataset(
        tmp_path,
        [
            ann(1, 7, 90, [1, 2, 10, 20]),
            ann(2, 7, 3, [5, 5, 4, 4]),
            ann(3, 7, 3, [0, 0, 30, 30], iscrowd=1),
            ann(4, 7, 90, [3, 3, 0.5, 10]),  # thinner than 1 px: dropped
        ],
    )
    with pytest.warns(UserWarning, match="1 boxes with width or height < 1"):
        dataset = CocoDetection(root, "val2017")
    assert (
        len(dataset) == 2 and dataset.category_ids == [3, 90] and dataset.category_names == ["car", "toaster"]
    )
    image, target = dataset[0]  # image 7
    assert image.shape == (3, 40, 60) and target["size"] == (40, 60) and target["image_id"] == 7
    assert target["boxes"].tolist() == [[1, 2, 11, 22], [5, 5, 9, 9]]
    assert target["labels"].tolist() == [1, 0]  # toaster (id 90) -> 1, car (id 3) -> 0
    assert [dataset.category_id(k) for k in target["labels"].tolist()] == [90, 3]
    assert target["crowd_boxes"].tolist() == [[0, 0, 30, 30]]
    _, empty = dataset[1]  # image 9 has no object: kept as a pure negative
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


@pytest.mark.parametrize(
    "annotations, categories, message",
    [
        ([ann(5, 8, 3, [0, 0, 5, 5])], None, "annotation 5 points to image 8"),
        ([ann(6, 7, 4, [0, 0, 5, 5])], None, "annotation 6 has category 4"),
        ([ann(7, 7, 3, [0, 0, 5])], None, r"annotation 7 has bbox \[0, 0, 5\]"),
    ],
)
def test_malformed_entries_are_named(tmp_path, annotations, categories, message):
    root = write_dataset(tmp_path, annotations, categories)
    with pytest.raises(ValueError, match=message) as info:
        CocoDetection(root, "val2017")
    assert "instances_val2017.json" in str(info.value)


def test_missing_files_and_broken_json(tmp_path):
    with pytest.raises(FileNotFoundError, match="lad-edu make-data"):
        CocoDetection(tmp_path, "val2017")
    root = write_dataset(tmp_path, [])
    (root / "val2017" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match="image 9 refers to .*b.png"):
        CocoDetection(root, "val2017")
    (root / "annotations" / "instances_val2017.json").write_text('{"images": [')
    with pytest.raises(ValueError, match="malformed JSON at line 1"):
        CocoDetection(root, "val2017")
    (root / "annotations" / "instances_val2017.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match="'annotations'"):
        CocoDetection(root, "val2017")


def test_reads_the_classroom_dataset(tmp_path):
    root = make_classroom_dataset(tmp_path, num_train=5, num_val=1, progress=False)
    dataset = CocoDetection(root, "train")
    assert len(dataset) == 5 and len(dataset.category_ids) == 12
    image, target = dataset[4]
    assert image.shape == (3, 128, 128) and (target["boxes"][:, 2:] > target["boxes"][:, :2]).all()
