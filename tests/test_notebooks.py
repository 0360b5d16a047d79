"""The notebooks as the repository page shows them: committed executed (``make notebooks``), figures
included, and small enough to open. ``make test`` also runs each one again (nbval)."""

import base64
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("0*.ipynb"))
MAX_BYTES, MAX_TOTAL = 1_500_000, 8_000_000  # the 1.5 MB and 8 MB, in decimal megabytes
IMAGES = ("image/png", "image/jpeg")


def load_execute():
    spec = importlib.util.spec_from_file_location("execute", NOTEBOOK_DIR / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_notebooks_are_numbered_without_gaps():
    assert len(NOTEBOOKS) >= 7
    assert [int(p.name[:2]) for p in NOTEBOOKS] == list(range(1, len(NOTEBOOKS) + 1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_a_notebook_is_committed_executed_with_its_figures(path):
    assert path.stat().st_size <= MAX_BYTES, f"{path.name}: run `make notebooks`, which shrinks the figures"
    code = [cell for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
    counts = [cell["execution_count"] for cell in code]
    assert counts == list(range(1, len(code) + 1)), (
        f"{path.name}: not run top to bottom; run `make notebooks`"
    )
    assert any(mime in out.get("data", {}) for cell in code for out in cell["outputs"] for mime in IMAGES)
    errors = [out for cell in code for out in cell["outputs"] if out["output_type"] == "error"]
    assert not errors, f"{path.name} was committed with an error output"


def test_all_notebooks_together_stay_small():
    assert sum(p.stat().st_size for p in NOTEBOOKS) <= MAX_TOTAL


def png(array: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_flat_figure_stays_a_png_and_a_noisy_one_becomes_a_jpeg_that_fits():
    execute = load_execute()
    flat = np.full((600, 800, 3), 255, dtype=np.uint8)
    flat[100:300, 200:500] = (31, 119, 180)  # one coloured rectangle: a figure's flat colours
    mime, data = execute.small_image(png(flat))
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
    assert mime == "image/png" and np.abs(decoded.astype(int) - flat).max() <= 2

    noise = np.random.default_rng(0).integers(0, 256, (900, 1400, 3), dtype=np.uint8)  # a scene's pixel noise
    assert len(png(noise)) > execute.MAX_IMAGE
    mime, data = execute.small_image(png(noise))
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    assert mime == "image/jpeg" and image.format == "JPEG" and len(data) <= execute.MAX_IMAGE
    assert image.width / image.height == pytest.approx(1400 / 900, rel=0.01)
