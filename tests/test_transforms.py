import torch

from lad_edu.data.transforms import EvalTransform, TrainTransform, collate, hflip, resize


def sample(height=40, width=60):
    image = torch.arange(3 * height * width, dtype=torch.float32).reshape(3, height, width) % 251
    target = {
        "boxes": torch.tensor([[10.0, 5.0, 30.0, 25.0]]),
        "crowd_boxes": torch.tensor([[0.0, 0.0, 6.0, 4.0]]),
        "size": (height, width),
    }
    return image.to(torch.uint8), target


def test_resize_keeps_the_ratio_and_caps_the_long_side():
    image, target = sample()  # 40 x 60
    out, t = resize(image, target, short_side=80, max_size=1333)
    assert out.shape == (3, 80, 120) and t["size"] == (80, 120) and t["scale_factor"] == (2.0, 2.0)
    assert t["boxes"].tolist() == [[20.0, 10.0, 60.0, 50.0]] and t["crowd_boxes"].tolist() == [
        [0.0, 0.0, 12.0, 8.0]
    ]
    out, t = resize(image, target, short_side=80, max_size=90)  # the long side would be 120 > 90
    assert out.shape == (3, 60, 90) and t["scale_factor"] == (1.5, 1.5)


def test_resize_rounds_half_up_and_keeps_a_factor_per_axis_as_mmdetection():
    image, target = sample(height=10, width=25)
    out, t = resize(image, target, short_side=5, max_size=1000)  # scale 0.5: 25 columns -> 12.5
    assert out.shape == (3, 5, 13)  # int(12.5 + 0.5) = 13, where Python's round(12.5) gives 12
    assert t["scale_factor"] == (13 / 25, 0.5)
    torch.testing.assert_close(t["boxes"], torch.tensor([[10 * 13 / 25, 2.5, 13.0, 5.0]]))  # x2 clipped
    _, twice = resize(out, t, short_side=10, max_size=1000)  # composed resizes multiply their factors
    assert twice["scale_factor"] == (13 / 25 * 26 / 13, 0.5 * 2.0)


def test_resize_clips_boxes_to_the_image():
    image, target = sample()  # 40 x 60
    target["boxes"] = torch.tensor([[-5.0, 30.0, 70.0, 45.0]])  # sticks out left, right and at the bottom
    _, t = resize(image, target, short_side=80, max_size=1333)
    assert t["boxes"].tolist() == [[0.0, 60.0, 120.0, 80.0]]


def test_hflip_mirrors_pixels_and_boxes_and_twice_is_identity():
    image, target = sample()
    flipped, t = hflip(image, target)
    assert torch.equal(flipped[:, :, 0], image[:, :, -1])
    assert t["boxes"].tolist() == [[30.0, 5.0, 50.0, 25.0]]
    back, t2 = hflip(flipped, t)
    assert torch.equal(back, image) and torch.equal(t2["boxes"], target["boxes"])


def test_train_transform_is_reproducible_from_the_generator():
    image, target = sample()
    transform = TrainTransform(short_sides=(40, 60, 80), max_size=200, flip_prob=0.5)
    runs = [
        [transform(image, target, torch.Generator().manual_seed(s))[1]["boxes"] for s in range(8)]
        for _ in range(2)
    ]
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
    sizes = {transform(image, target, torch.Generator().manual_seed(s))[0].shape[1] for s in range(20)}
    assert sizes == {40, 60, 80}  # multi-scale: every short side is used
    assert EvalTransform(short_side=80)(image, target)[0].shape == (3, 80, 120)


def test_collate_pads_to_a_multiple_of_32_at_the_bottom_right():
    a, b = sample(40, 60), sample(50, 30)
    images, targets = collate([a, b])
    assert images.shape == (2, 3, 64, 64)
    assert torch.equal(images[0, :, :40, :60], a[0]) and images[0, :, 40:].abs().sum() == 0
    assert torch.equal(images[1, :, :50, :30], b[0]) and targets[1]["size"] == (50, 30)
