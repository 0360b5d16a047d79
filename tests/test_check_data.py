"""The dataset check: the reader's errors, and hand-counted reports of what it would train on."""

import json

import pytest

from lad_edu.cli import main
from lad_edu.data import check_dataset, make_classroom_dataset
from lad_edu.data.coco import CocoDetection
from tests.test_coco_data import ann, write_dataset

CATEGORIES = [{"id": 1, "name": "digit"}, {"id": 2, "name": "shape"}]
SIZE = {"width": 60, "height": 40}  # the size of write_dataset's images: boxes outside them are dropped


def two_splits(root, categories=CATEGORIES):
    """train: image 7 with 2 objects and a crowd box, image 9 with a box outside it and a thin box; val:
    one image with one object. Images are 60 x 40 px."""
    train = [
        ann(1, 7, 1, [1, 2, 10, 20]),
        ann(2, 7, 2, [5, 5, 4, 4]),
        ann(3, 7, 2, [0, 0, 30, 30], iscrowd=1),
        ann(4, 9, 1, [70, 5, 10, 10]),  # starts right of the 60 px image: dropped
        ann(5, 9, 1, [3, 3, 0.5, 10]),  # thinner than 1 px: not trained on, kept for evaluation
    ]
    images = [{"id": 7, "file_name": "a.png", **SIZE}, {"id": 9, "file_name": "b.png", **SIZE}]
    write_dataset(root, train, categories, images, split="train2017")
    val_images = [{"id": 3, "file_name": "c.png", **SIZE}]
    return write_dataset(root, [ann(1, 3, 2, [2, 2, 8, 8])], categories, val_images)


def test_a_good_dataset_is_counted_as_the_reader_counts_it(tmp_path):
    report = check_dataset(two_splits(tmp_path))
    train, val = report.splits
    assert [s.split for s in report.splits] == ["train2017", "val2017"]  # found, in name order
    assert (train.images, train.boxes, train.objects, train.crowd) == (2, 5, 2, 1)
    with pytest.warns(
        UserWarning, match="dropped 2 boxes: 1 outside its image, 1 with width or height below"
    ):
        assert train.objects == CocoDetection(tmp_path, "train2017").num_objects  # the reader says the same
    assert train.images_without_objects == 1  # image 9: one box outside, one too thin
    assert train.dropped == {"outside its image": 1, "with width or height below 1 px": 1}
    assert (val.images, val.boxes, val.objects, val.images_without_objects, val.dropped) == (1, 1, 1, 0, {})
    assert train.category_ids == [1, 2] and train.contiguous
    assert str(report).splitlines() == [
        f"{tmp_path}: 2 splits, the same 2 categories",
        "train2017: 2 images, 5 boxes (2 trained on), 2 categories (ids 1..2), 1 images without objects",
        "  1 crowd boxes (ignored regions)",
        "  1 boxes not trained on: outside its image",
        "  1 boxes not trained on: with width or height below 1 px (kept for evaluation)",
        "val2017: 1 images, 1 boxes (1 trained on), 2 categories (ids 1..2), 0 images without objects",
    ]


def test_min_size_decides_which_boxes_are_too_small(tmp_path):
    train, _ = check_dataset(two_splits(tmp_path), min_size=5.0).splits
    assert train.dropped["with width or height below 5 px"] == 2  # the 0.5 px and the 4 px box
    assert train.objects == 1


def test_the_classroom_generator_writes_a_dataset_that_passes(tmp_path):
    root = make_classroom_dataset(tmp_path, 6, 3, seed=1, progress=False)
    report = check_dataset(root, splits=("train", "val"))
    for split in report.splits:
        assert split.objects == CocoDetection(root, split.split).num_objects == split.boxes
        assert split.category_ids == list(range(1, 13)) and not split.dropped


def test_non_contiguous_category_ids_pass_and_say_how_they_map(tmp_path):
    categories = [{"id": 90, "name": "toaster"}, {"id": 3, "name": "car"}, {"id": 1, "name": "person"}]
    root = tmp_path
    write_dataset(root, [ann(1, 7, 90, [1, 2, 10, 20]), ann(2, 9, 3, [5, 5, 4, 4])], categories)
    (split,) = check_dataset(root).splits
    assert split.category_ids == [1, 3, 90] and not split.contiguous
    assert "3 categories (ids 1..90 with gaps, mapped to labels 0..2 in id order)" in split.summary()


def test_a_missing_annotation_file_is_the_readers_error(tmp_path):
    two_splits(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"instances_train\.json: annotation file not found"):
        check_dataset(tmp_path, splits=("train", "val2017"))
    with pytest.raises(FileNotFoundError, match=r"annotations: no instances_<split>\.json found"):
        check_dataset(tmp_path / "elsewhere")


def test_a_missing_image_file_is_the_readers_error(tmp_path):
    two_splits(tmp_path)
    (tmp_path / "val2017" / "c.png").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"instances_val2017\.json: image 3 refers to .*c\.png, which is"
    ):
        check_dataset(tmp_path)


def test_splits_with_different_categories_are_refused(tmp_path):
    two_splits(tmp_path)
    path = tmp_path / "annotations" / "instances_val2017.json"
    data = json.loads(path.read_text())
    data["categories"].append({"id": 5, "name": "extra"})
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"list different categories \(\[1, 2\] vs \[1, 2, 5\]\)"):
        check_dataset(tmp_path)


def test_the_command_prints_the_report_or_one_line_error(tmp_path, capsys):
    main(["check-data", str(two_splits(tmp_path)), "--splits", "val2017"])
    assert capsys.readouterr().out.splitlines()[1].startswith("val2017: 1 images, 1 boxes")
    (tmp_path / "val2017" / "c.png").unlink()
    with pytest.raises(SystemExit) as exit_:
        main(["check-data", str(tmp_path)])
    assert str(exit_.value).startswith("lad-edu check-data: error: ") and "c.png, which is missing" in str(
        exit_.value
    )
