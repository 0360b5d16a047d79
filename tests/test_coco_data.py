import io
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from lad_edu.data import make_classroom_dataset
from lad_edu.data.coco import CocoDetection, _to_rgb
from lad_edu.train.evaluate import coco_evaluate


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
    with pytest.warns(UserWarning, match="dropped 1 box: 1 with width or height below 1 px$"):
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
        ([ann(7, 7, 3, "[0, 0, 5, 5]")], None, r"annotation 7 has bbox '\[0, 0, 5, 5\]'"),
        ([ann(7, 7, 3, [0, True, 5, 5])], None, r"annotation 7 has bbox \[0, True, 5, 5\]"),
        ([ann(8, [7], 3, [0, 0, 5, 5])], None, r"annotation 8 points to image \[7\]"),
        ([ann(9, 7, "3", [0, 0, 5, 5])], None, "annotation 9 has category '3'"),
        ([{"image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5]}], None, r"'annotations'\[0\] = .* 'id'"),
        (
            [ann(1, 7, 3, [0, 0, 5, 5]), ann(1, 9, 3, [0, 0, 5, 5])],
            None,
            "id 1 is used twice in 'annotations'; ids must be unique",
        ),
        ([], [{"id": "3", "name": "car"}], r"'categories'\[0\] = .* needs an integer 'id'"),
        (
            [],
            [{"id": 3, "name": "car"}, {"id": 3, "name": "bus"}],
            "id 3 is used twice in 'categories' .by 'car' and 'bus'",
        ),
        ([], [{"id": 3}], "category 3 needs a 'name'"),
        ([], [], "the 'categories' list is empty"),
        ([ann(1, 7, 3, [0, 0, 5, 5], iscrowd="0")], None, "annotation 1 has iscrowd '0'; expected 0 or 1"),
    ],
)
def test_malformed_entries_are_named(tmp_path, annotations, categories, message):
    root = write_dataset(tmp_path, annotations, categories)
    with pytest.raises(ValueError, match=message) as info:
        CocoDetection(root, "val2017")
    assert str(info.value).startswith(f"{root / 'annotations' / 'instances_val2017.json'}: ")


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
    (root / "annotations" / "instances_val2017.json").write_bytes(b'{"images": "\xe9"}')  # latin-1
    with pytest.raises(ValueError, match=r"instances_val2017.json: not UTF-8 text \(byte 12\)"):
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


@pytest.mark.parametrize(
    "images, message",
    [
        (
            [{"id": 7, "file_name": "a.png"}, {"id": 7, "file_name": "b.png"}],
            "id 7 is used twice in 'images' .by 'a.png' and 'b.png'",
        ),
        ([{"id": 7.0, "file_name": "a.png"}], r"'images'\[0\] = .* needs an integer 'id'"),
        ([{"id": 7, "file_name": "a.png", "width": "60"}], "image 7 has width '60'; expected a positive"),
        ([{"id": 7, "file_name": "a.png", "height": 0}], "image 7 has height 0"),
        ([], "the 'images' list is empty"),
    ],
)
def test_image_entries_are_checked(tmp_path, images, message):
    root = write_dataset(tmp_path, [], images=images)
    with pytest.raises(ValueError, match=message) as info:
        CocoDetection(root, "val2017")
    assert str(info.value).startswith(f"{root / 'annotations' / 'instances_val2017.json'}: ")


def encoded(image: np.ndarray, format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format)
    return buffer.getvalue()


NOISE = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)  # big files, to truncate


@pytest.mark.parametrize(
    "content, reason",
    [
        (encoded(NOISE, "PNG")[:3000], "image file is truncated"),
        (encoded(NOISE, "JPEG")[:1500], "image file is truncated"),
        (b"not an image, a text file renamed", "not an image PIL can read"),
    ],
    ids=["truncated PNG", "truncated JPEG", "text file"],
)
def test_unreadable_images_are_named_in_one_line(tmp_path, content, reason):
    root = write_dataset(tmp_path, [ann(1, 9, 3, [0, 0, 5, 5])])
    (root / "val2017" / "b.png").write_bytes(content)
    dataset = CocoDetection(root, "val2017")
    dataset[0]  # image 7 is fine
    with pytest.raises(ValueError, match=reason) as info:
        dataset[1]
    message = str(info.value)
    assert message.startswith(f"{root / 'val2017' / 'b.png'}: image 9 cannot be read (")
    assert "\n" not in message and "remove the image from instances_val2017.json" in message


def test_image_size_must_match_its_entry(tmp_path):
    images = [{"id": 7, "file_name": "a.png", "width": 40, "height": 60}]  # the file is 60 x 40
    dataset = CocoDetection(write_dataset(tmp_path, [], images=images), "val2017")
    with pytest.raises(ValueError, match=r"a.png: image 7 is 60x40 pixels, but .* says 40x60; correct"):
        dataset[0]


def test_16_bit_palette_and_transparent_images_load_as_rgb(tmp_path):
    root = write_dataset(tmp_path, [])
    gradient = np.tile(np.arange(256, dtype=np.uint8), (4, 1))  # every 8-bit value
    Image.fromarray(gradient.astype(np.uint16) * 257).save(root / "val2017" / "a.png")  # 16-bit gray
    indices = np.arange(2400).reshape(40, 60) % 3
    palette = Image.fromarray(indices.astype(np.uint8))
    palette.putpalette([255, 0, 0, 0, 128, 0, 10, 20, 30])  # L -> P
    palette.info["transparency"] = bytes([0, 255, 128])  # partial alpha: PIL keeps it as bytes
    palette.save(root / "val2017" / "b.png")
    dataset = CocoDetection(root, "val2017")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "Palette images with Transparency expressed in bytes" warning
        sixteen, _ = dataset[0]
        colours, _ = dataset[1]
    assert Image.open(root / "val2017" / "a.png").mode.startswith("I") and palette.mode == "P"
    assert torch.equal(sixteen, torch.from_numpy(gradient).expand(3, 4, 256))  # the same gradient, not white
    expected = torch.tensor([[255, 0, 0], [0, 128, 0], [10, 20, 30]], dtype=torch.uint8)
    assert torch.equal(colours, expected[indices].permute(2, 0, 1))


@pytest.mark.parametrize(
    "mode, values, gray",
    [
        ("I;16B", [0, 128, 129, 257, 65535], [0, 0, 1, 1, 255]),  # (v + 128) // 257
        ("I", [-5, 0, 32896, 65535, 70000], [0, 0, 128, 255, 255]),  # 32-bit: clipped to 0..65535
        ("F", [float("nan"), -1.0, 0.5, 1.0, 2.0], [0, 0, 128, 255, 255]),  # floats in [0, 1]
        ("L", [0, 1, 127, 200, 255], [0, 1, 127, 200, 255]),
        ("1", [0, 1, 0, 1, 1], [0, 255, 0, 255, 255]),
    ],
)
def test_to_rgb_maps_gray_modes_to_8_bits(mode, values, gray):
    dtype = {"I;16B": ">u2", "I": np.int32, "F": np.float32, "L": np.uint8, "1": bool}[mode]
    im = Image.fromarray(np.array([values], dtype=dtype))
    assert im.mode == mode
    assert _to_rgb(im).tolist() == [[gray]] * 3


def test_to_rgb_drops_alpha_and_converts_cmyk():
    rgba = np.array([[[10, 20, 30, 0], [40, 50, 60, 255]]], dtype=np.uint8)
    assert _to_rgb(Image.fromarray(rgba)).permute(1, 2, 0).tolist() == [[[10, 20, 30], [40, 50, 60]]]
    la = Image.fromarray(np.array([[[70, 0]]], dtype=np.uint8))
    assert la.mode == "LA"
    assert _to_rgb(la).flatten().tolist() == [70, 70, 70]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red in ink
    assert _to_rgb(cmyk).flatten().tolist() == [255, 0, 0]


def test_wrong_boxes_are_dropped_counted_and_left_out_of_evaluation(tmp_path):
    sized = {"width": 60, "height": 40}
    images = [{"id": 7, "file_name": "a.png", **sized}, {"id": 9, "file_name": "b.png"}]  # 9: no size
    good, partly_outside, small = [1, 2, 10, 20], [50, 30, 20, 20], [3, 3, 0.5, 10]
    annotations = [
        ann(1, 7, 3, good),
        ann(2, 7, 3, [1, float("nan"), 10, 20]),  # json writes NaN, and reads it back
        ann(3, 7, 3, [1, 2, float("inf"), 20]),
        ann(4, 7, 3, [30, 20, -5, 10]),
        ann(5, 7, 3, [60, 0, 10, 10]),  # starts at the right edge: entirely outside
        ann(6, 7, 3, [-20, 0, 20, 10], iscrowd=1),  # ends at the left edge: outside, a crowd box
        ann(7, 7, 3, partly_outside),  # stays
        ann(8, 7, 3, small),  # not trained on, but stays in the ground truth
        ann(9, 9, 3, [100, 100, 10, 10]),  # image 9 has no width/height: not checked
    ]
    for a in annotations:
        a["area"] = 1.0
    root = write_dataset(tmp_path, annotations, images=images)
    assert "NaN" in (root / "annotations" / "instances_val2017.json").read_text()
    with pytest.warns(UserWarning) as record:
        dataset = CocoDetection(root, "val2017")
    assert [str(w.message) for w in record] == [
        f"{root / 'annotations' / 'instances_val2017.json'}: dropped 6 boxes: 2 non-finite, "
        "1 with negative width or height, 2 outside its image, 1 with width or height below 1 px"
    ]
    _, target = dataset[0]
    assert target["boxes"].tolist() == [[1, 2, 11, 22], [50, 30, 70, 50]]
    assert target["crowd_boxes"].shape == (0, 4)
    assert dataset[1][1]["boxes"].tolist() == [[100, 100, 110, 110]]
    assert sorted(dataset.coco.anns) == [1, 7, 8, 9] and dataset.num_objects == 3
    detections = [  # every ground-truth box found exactly: AP 1 only if the wrong boxes left the GT
        {"image_id": image_id, "category_id": 3, "bbox": bbox, "score": 1.0}
        for image_id, bbox in [(7, good), (7, partly_outside), (7, small), (9, [100, 100, 10, 10])]
    ]
    assert coco_evaluate(dataset.coco, detections)["AP"] == pytest.approx(1.0)


def test_annotation_ids_from_0_are_renumbered_so_that_cocoeval_can_find_them(tmp_path):
    box = [1, 2, 10, 20]
    annotations = [{**ann(0, 7, 3, box), "area": 200.0}, {**ann(1, 9, 3, box), "area": 200.0}]
    dataset = CocoDetection(write_dataset(tmp_path, annotations), "val2017")
    assert sorted(dataset.coco.anns) == [1, 2] and dataset.num_objects == 2
    found = [{"image_id": i, "category_id": 3, "bbox": box, "score": 1.0} for i in (7, 9)]
    assert coco_evaluate(dataset.coco, found)["AP"] == pytest.approx(1.0)  # 0.25 with the GT id 0 kept


def test_a_split_without_objects_is_not_an_error(tmp_path):
    dataset = CocoDetection(write_dataset(tmp_path, [ann(1, 7, 3, [0, 0, 9, 9], iscrowd=1)]), "val2017")
    assert len(dataset) == 2 and dataset.num_objects == 0
