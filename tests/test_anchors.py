import math

import pytest
import torch

from lad_edu.anchors import AnchorGenerator, level_ids, retinanet, single


def test_retinanet_base_anchor_sizes_ratio_major_scale_minor():
    base = retinanet().base_anchors(stride=8)  # centre (0, 0)
    assert base.shape == (9, 4)
    widths, heights = base[:, 2] - base[:, 0], base[:, 3] - base[:, 1]
    scales = [4 * 2 ** (i / 3) for i in range(3)]  # 4, 5.04, 6.35
    expected_w = [8 * s / math.sqrt(r) for r in (0.5, 1.0, 2.0) for s in scales]
    expected_h = [8 * s * math.sqrt(r) for r in (0.5, 1.0, 2.0) for s in scales]
    torch.testing.assert_close(widths, torch.tensor(expected_w))
    torch.testing.assert_close(heights, torch.tensor(expected_h))
    # the square anchors at stride 8 span 32 to 50.8 px
    torch.testing.assert_close(widths[3:6], torch.tensor([32.0, 40.3175, 50.7968]), atol=1e-3, rtol=0)
    torch.testing.assert_close(box_center(base), torch.zeros(9, 2))


def box_center(boxes):
    return (boxes[:, :2] + boxes[:, 2:]) / 2


def test_single_is_one_8_stride_square_per_location():
    gen = single()
    assert gen.num_anchors_per_location == 1
    for stride in gen.strides:
        base = gen.base_anchors(stride)
        torch.testing.assert_close(base, torch.tensor([[-4.0, -4.0, 4.0, 4.0]]) * stride)


def test_coco_scale_counts():
    anchors, num_level_anchors = single()((800, 1216))
    assert num_level_anchors == [15200, 3800, 950, 247, 70]  # 100x152, 50x76, 25x38, 13x19, 7x10
    assert anchors.shape == (20267, 4)
    anchors, num_level_anchors = retinanet()((800, 1216))
    assert num_level_anchors == [9 * n for n in [15200, 3800, 950, 247, 70]]
    assert anchors.shape == (182403, 4)


@pytest.mark.parametrize("center_offset", [0.0, 0.5])
def test_layout_level_then_row_major_then_per_location(center_offset):
    gen = AnchorGenerator(
        strides=(8, 16), ratios=(0.5, 1.0), scales_per_octave=2, center_offset=center_offset
    )
    image_size = (20, 36)  # feature maps 3x5 and 2x3
    anchors, num_level_anchors = gen(image_size)
    expected = []
    for stride, (feat_h, feat_w) in zip(gen.strides, gen.feature_sizes(image_size), strict=True):
        base = gen.base_anchors(stride)  # centred on (offset * stride, offset * stride)
        for y in range(feat_h):  # rows outer
            for x in range(feat_w):  # columns inner
                for a in range(len(base)):  # ratio-major, scale-minor
                    expected.append((base[a] + torch.tensor([x, y, x, y]) * stride).tolist())
    torch.testing.assert_close(anchors, torch.tensor(expected))
    assert num_level_anchors == [3 * 5 * 4, 2 * 3 * 4]
    first_centre = box_center(anchors[:1])
    torch.testing.assert_close(first_centre, torch.full((1, 2), center_offset * 8))


def test_feature_sizes_round_up():
    assert single().feature_sizes((100, 130)) == [(13, 17), (7, 9), (4, 5), (2, 3), (1, 2)]


def test_device_and_dtype():
    anchors, _ = single(strides=(8,))((16, 16), device="cpu", dtype=torch.float64)
    assert anchors.dtype == torch.float64 and anchors.device.type == "cpu"


def test_level_ids():
    assert level_ids([3, 0, 2]).tolist() == [0, 0, 0, 2, 2]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"strides": ()}, "strides"),
        ({"strides": (8, 0)}, "strides"),
        ({"ratios": (1.0, -2.0)}, "ratios"),
        ({"scales_per_octave": 0}, "scales_per_octave"),
    ],
)
def test_bad_configuration_raises(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AnchorGenerator(**kwargs)


def test_bad_image_size_and_feature_sizes_raise():
    with pytest.raises(ValueError, match="image_size"):
        single()((0, 10))
    with pytest.raises(ValueError, match="one feature size per stride"):
        single().grid_anchors([(2, 2)])
