"""Execute the notebooks in place at ``SCALE = "tiny"`` and keep their figures small enough to commit.

``make notebooks`` runs this. Each notebook runs top to bottom in a fresh kernel (the slider cells draw
their static figure: ``LAD_EDU_STATIC_WIDGETS=1``), with no timing metadata, so the same code and seed give
the same numbers. Then its outputs are made committable: every PNG becomes a 256-colour palette PNG (the
figures are flat colours; the eye sees no difference at a fraction of the size); a figure still over
:data:`MAX_IMAGE` bytes, or one that is mostly a classroom scene (whose pixel noise defeats PNG compression:
a JPEG is under 0.6 of the PNG), becomes a JPEG, scaled down until it fits (the text stays readable); and
an HTML output over
:data:`MAX_HTML` bytes (a JavaScript animation, which the repository page does not play anyway) is
dropped, leaving its text and the static figure drawn next to it. The repository then shows every figure
without an install.

    python notebooks/execute.py [NOTEBOOK ...]      # default: every notebooks/0*.ipynb
"""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from PIL import Image

HERE = Path(__file__).resolve().parent
MAX_HTML = 200_000  # bytes: larger HTML outputs (animations) are not kept in the committed notebook
MAX_IMAGE = 250_000  # bytes of base64: a larger palette PNG is stored as a JPEG (1.5 MB a notebook at most)
JPEG_SCALES = (1.0, 0.8, 0.65, 0.5)  # tried in turn until the JPEG fits
JPEG_SHARE = 0.6  # a JPEG this much smaller than the palette PNG replaces it even when the PNG fits
TIMEOUT = 900  # seconds a cell may take


def encode(image: Image.Image, **save_options) -> str:
    """``image`` saved with ``save_options``, as base64."""
    buffer = io.BytesIO()
    image.save(buffer, **save_options)
    return base64.b64encode(buffer.getvalue()).decode()


def small_image(data: str) -> tuple[str, str]:
    """A base64 PNG as ``(mime type, base64)``: a 256-colour palette PNG, or a JPEG (quality 85) when that
    is under :data:`JPEG_SHARE` of the PNG (a figure that is mostly a noisy scene) or the PNG is over
    :data:`MAX_IMAGE` (then the first of :data:`JPEG_SCALES` that fits, else the smallest)."""
    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    png = encode(image.quantize(colors=256, method=Image.Quantize.MEDIANCUT), format="PNG", optimize=True)
    for scale in JPEG_SCALES:
        size = (round(image.width * scale), round(image.height * scale))
        jpeg = encode(image.resize(size, Image.Resampling.LANCZOS), format="JPEG", quality=85, optimize=True)
        if len(png) <= MAX_IMAGE and len(jpeg) >= JPEG_SHARE * len(png):
            return "image/png", png  # a flat figure: the PNG is sharp and small enough
        if len(jpeg) <= MAX_IMAGE:
            break
    return "image/jpeg", jpeg


def shrink(notebook: nbformat.NotebookNode) -> None:
    """Palette PNGs (JPEGs when too large); no HTML output over :data:`MAX_HTML` bytes."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                mime, encoded = small_image(data.pop("image/png"))
                data[mime] = encoded
                metadata = output.get("metadata", {})
                if "image/png" in metadata:  # a display width (IPython's Image(width=...)) follows its image
                    metadata[mime] = metadata.pop("image/png")
            if len(data.get("text/html", "")) > MAX_HTML:
                del data["text/html"]


def execute(path: Path) -> int:
    """Run ``path`` in place; returns its size in bytes."""
    notebook = nbformat.read(path, as_version=4)
    os.environ["LAD_EDU_STATIC_WIDGETS"] = "1"
    client = NotebookClient(
        notebook,
        timeout=TIMEOUT,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": HERE}},
    )
    client.execute()
    shrink(notebook)
    nbformat.write(notebook, path)
    return path.stat().st_size


def main(argv: list[str]) -> None:
    paths = [Path(p) for p in argv] or sorted(HERE.glob("0*.ipynb"))
    for path in paths:
        print(f"{path.name}: {execute(path) / 1e6:.2f} MB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
