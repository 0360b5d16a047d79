"""What every figure shares: GT colours, the negative grey, a figure-or-axes helper, the image canvas."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from lad_edu.atomic import atomic_open

NEGATIVE_COLOR = "0.85"


# tab10 without its grey (index 7), which would read as "negative" on the grey canvas
_GT_PALETTE = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]


def gt_color(k: int):
    """The colour of GT ``k`` (0-based) in every figure."""
    return _GT_PALETTE[k % len(_GT_PALETTE)]


def _figure_and_ax(ax: Axes | None, figsize: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
        return fig, ax
    return ax.figure, ax


def _show_image(ax: Axes, image: Tensor | None, image_size: tuple[int, int] | None) -> None:
    """Draw ``image [3, H, W]`` (uint8 or float in [0, 1]), or set up an empty canvas of ``image_size``."""
    if image is not None:
        array = image.permute(1, 2, 0).cpu().numpy()
        ax.imshow(array if array.dtype == np.uint8 else np.clip(array, 0, 1))
    elif image_size is not None:
        height, width = image_size
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])


def _gt_names(num_gts: int, names: list[str] | None) -> list[str]:
    return list(names) if names is not None else [f"GT {k}" for k in range(num_gts)]


def save_png(figure: Figure, path, *, dpi: int = 110, colors: int = 256) -> None:
    """Write ``figure`` as a palette PNG of at most ``colors`` colours, atomically.

    A figure of flat colours and lines fits a 256-colour palette without visible change, at a tenth of the
    size of a true-colour PNG (the comparison's side-by-side figure: about 0.25 MB instead of 2.5 MB), so
    report figures can be committed and embedded in a README.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    with atomic_open(path, "wb") as f:
        image.save(f, format="PNG", optimize=True)
