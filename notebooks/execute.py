"""Execute the notebooks in place at ``SCALE = "tiny"`` and keep their figures small enough to commit.

``make notebooks`` runs this. Each notebook runs top to bottom in a fresh kernel (the slider cells draw
their static figure: ``LAD_EDU_STATIC_WIDGETS=1``), with no timing metadata, so the same code and seed give
the same numbers. Then its outputs are made committable: every PNG becomes a 256-colour palette PNG (the
figures are flat colours; the eye sees no difference at a fraction of the size) and an HTML output over
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
TIMEOUT = 900  # seconds a cell may take


def palette_png(data: str) -> str:
    """A base64 PNG as a base64 256-colour palette PNG."""
    image = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    buffer = io.BytesIO()
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
    return base64.b64encode(buffer.getvalue()).decode()


def shrink(notebook: nbformat.NotebookNode) -> None:
    """Palette PNGs; no HTML output over :data:`MAX_HTML` bytes."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                data["image/png"] = palette_png(data["image/png"])
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
        print(f"{path.name}: {execute(path) / 2**20:.2f} MB", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
