"""Shared test helpers: devices to run on, and hypothesis strategies for random boxes."""

import pytest
import torch
from hypothesis import strategies as st

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


@st.composite
def boxes_in_image(draw, image_size=(96, 128), min_n=0, max_n=8, min_side=1.0):
    """``[n, 4]`` float64 xyxy boxes with continuous coordinates inside an ``(h, w)`` image."""
    height, width = image_size
    n = draw(st.integers(min_n, max_n))
    boxes = []
    for _ in range(n):
        w = draw(st.floats(min_side, width * 0.9))
        h = draw(st.floats(min_side, height * 0.9))
        x1 = draw(st.floats(0, width - w))
        y1 = draw(st.floats(0, height - h))
        boxes.append([x1, y1, x1 + w, y1 + h])
    return torch.tensor(boxes, dtype=torch.float64).reshape(-1, 4)
