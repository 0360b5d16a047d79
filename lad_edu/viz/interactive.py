"""Live sliders: the figures of notebooks 01-03 redrawn as you move a threshold, a weight or a box.

Each widget is a :class:`LiveFigure`: a few controls (ipywidgets sliders, a checkbox, a menu) around one
pure step, ``update(**values) -> Figure``, which assigns with the library's assigner
(:mod:`lad_edu.assign`) and draws with the library's figure functions. Moving a control calls ``update``
with every control's value and shows the new figure.

* :func:`interactive_fixed_iou` — RetinaNet's rule (notebook 01): ``pos_iou_thr``, ``neg_iou_thr``,
  ``match_low_quality``, the positives per FPN level.
* :func:`interactive_atss` — ATSS (notebook 02): ``topk``, each GT's candidate IoUs and ``mean + std``.
* :func:`interactive_paa` — PAA (notebook 03): eq. 2's ``bbox_weight`` and ``loc_loss`` and the quality of
  the network whose predictions are scored (:func:`lad_edu.scenes.constructed_predictions`), each GT's
  costs, the two Gaussians and the cut.
* :func:`interactive_box` — one box you move and resize (``x``, ``y``, ``w``, ``h``): its fixed-IoU, ATSS
  and PAA positives on every level of the same anchors.

Static fallback: with ``static=True``, with ``LAD_EDU_STATIC_WIDGETS=1`` in the environment, without
ipywidgets, or outside a Jupyter kernel (a script, a test), an ``interactive_*`` function returns the
figure for the default values instead (what nbval and headless runs get). ipywidgets is in the ``dev``
extra; a reader without it still sees every figure.

>>> from lad_edu.viz.interactive import interactive_atss
>>> interactive_atss(static=True).axes[0].get_xlabel()
'IoU'
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import Tensor

from lad_edu.anchors import AnchorGenerator, level_ids, retinanet, single
from lad_edu.assign import ATSSAssigner, FixedIoUAssigner, PAAAssigner
from lad_edu.scenes import DEMO_IMAGE_SIZE, constructed_predictions, demo_scene, render
from lad_edu.viz.assignment import draw_assignment_levels, draw_cost_gmm, draw_iou_histograms
from lad_edu.viz.comparison import draw_strategies_side_by_side

__all__ = [
    "STATIC_ENV",
    "Control",
    "LiveFigure",
    "interactive_atss",
    "interactive_box",
    "interactive_fixed_iou",
    "interactive_paa",
    "use_static",
]

STATIC_ENV = "LAD_EDU_STATIC_WIDGETS"  # "1": every interactive_* function returns its static figure
NUM_CLASSES = 80  # the constructed predictions' classifier: COCO-sized, as in notebook 03


# helpers


@dataclass(frozen=True)
class Control:
    """One control: a slider from ``low`` to ``high`` in ``step`` (int or float, as ``default``), a checkbox
    (a bool ``default``) or a menu (``options``)."""

    default: Any
    low: float | None = None
    high: float | None = None
    step: float | None = None
    options: tuple[str, ...] = ()

    def widget(self, name: str):
        """The ipywidgets control, redrawing when released (a drag redraws once, not per pixel)."""
        import ipywidgets as widgets

        style = {"description": name, "style": {"description_width": "initial"}}
        if self.options:
            return widgets.Dropdown(options=list(self.options), value=self.default, **style)
        if isinstance(self.default, bool):
            return widgets.Checkbox(value=self.default, **style)
        slider = widgets.IntSlider if isinstance(self.default, int) else widgets.FloatSlider
        bounds = {"min": self.low, "max": self.high, "step": self.step}
        return slider(value=self.default, continuous_update=False, **bounds, **style)


def use_static(static: bool | None = None) -> bool:
    """Whether to draw a static figure: ``static`` when given, else when :data:`STATIC_ENV` is set (not
    ``"0"``), ipywidgets is missing, or no Jupyter kernel runs this code (widgets need its comms)."""
    if static is not None:
        return static
    if os.environ.get(STATIC_ENV, "0") not in ("", "0"):
        return True
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return True
    return getattr(get_ipython(), "kernel", None) is None


class LiveFigure:
    """Controls and the figure they redraw.

    Args:
        assign: ``assign(**values)`` -> what the figure shows (an assignment, or several).
        draw: ``draw(assigned, **values)`` -> Figure, with :mod:`lad_edu.viz`'s figure functions.
        controls: ``{name: Control}``: the keyword arguments of both.

    ``update(**values)`` is the pure step (missing values take the defaults); :meth:`connect` builds the
    widgets (``widgets``, ``output``), each change redrawing into ``output``. After each draw, ``result``
    holds what ``assign`` returned and ``figure`` the figure.
    """

    def __init__(self, assign: Callable[..., Any], draw: Callable[..., Figure], controls: dict[str, Control]):
        self.assign, self.draw, self.controls = assign, draw, controls
        self.defaults = {name: control.default for name, control in controls.items()}
        self.result: Any = None
        self.figure: Figure | None = None
        self.widgets: dict = {}
        self.output = None

    def update(self, **values) -> Figure:
        """The figure for ``values`` (the defaults where not given)."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(
                f"unknown control(s) {sorted(unknown)}; the controls are {sorted(self.controls)}"
            )
        values = self.defaults | values
        self.result = self.assign(**values)
        return self.draw(self.result, **values)

    def connect(self) -> LiveFigure:
        """Build the widgets, draw the defaults, and redraw on every change."""
        import ipywidgets as widgets

        self.widgets = {name: control.widget(name) for name, control in self.controls.items()}
        self.output = widgets.Output()
        for widget in self.widgets.values():
            widget.observe(self.redraw, names="value")
        self.redraw()
        return self

    def redraw(self, change: dict | None = None) -> None:
        """``update`` with the widgets' values, shown in ``output`` (the callback of every control)."""
        from IPython.display import clear_output, display

        if self.figure is not None:
            plt.close(self.figure)
        self.figure = self.update(**{name: widget.value for name, widget in self.widgets.items()})
        with self.output:
            clear_output(wait=True)
            display(self.figure)
        plt.close(self.figure)  # shown once, in the output area, not again by the notebook's backend

    def _ipython_display_(self) -> None:
        import ipywidgets as widgets
        from IPython.display import display

        display(widgets.VBox([widgets.HBox(list(self.widgets.values())), self.output]))


def _show(live: LiveFigure, static: bool | None) -> LiveFigure | Figure:
    """The widget, or its figure for the default values (see the module docstring), closed to pyplot: a
    notebook shows the returned figure once, and ``plt.show()`` does not show it again."""
    if not use_static(static):
        return live.connect()
    figure = live.update()
    plt.close(figure)
    return figure


def _scene(image, gt_boxes, gt_names, seed) -> tuple[Tensor | None, Tensor, Tensor, list[str]]:
    """The given objects (labels ``0 .. G-1``), or the demo scene (:func:`lad_edu.scenes.demo_scene`)."""
    if gt_boxes is None:
        return demo_scene(seed=seed)
    names = list(gt_names) if gt_names is not None else [f"GT {k}" for k in range(len(gt_boxes))]
    return image, gt_boxes, torch.arange(len(gt_boxes)), names


# the widgets


def interactive_fixed_iou(
    image: Tensor | None = None,
    gt_boxes: Tensor | None = None,
    gt_names: list[str] | None = None,
    *,
    anchor_generator: AnchorGenerator | None = None,
    seed: int = 0,
    static: bool | None = None,
) -> LiveFigure | Figure:
    """RetinaNet's fixed IoU rule with its thresholds on sliders: positives, ignored anchors per FPN level.

    Args:
        image: ``[3, H, W]`` with ``gt_boxes [G, 4]`` xyxy and ``gt_names``; default the demo scene
            (painted with ``seed``).
        anchor_generator: default RetinaNet's 9 anchors per location (:func:`lad_edu.anchors.retinanet`).
        static: True draws the default figure; None decides (see the module docstring).
    """
    image, gt_boxes, gt_labels, names = _scene(image, gt_boxes, gt_names, seed)
    generator = anchor_generator or retinanet()
    image_size = tuple(image.shape[1:]) if image is not None else DEMO_IMAGE_SIZE
    anchors, num_level_anchors = generator(image_size)

    def assign(pos_iou_thr, neg_iou_thr, match_low_quality):
        rule = FixedIoUAssigner(pos_iou_thr, neg_iou_thr, match_low_quality=match_low_quality)
        return rule.assign(anchors, gt_boxes, gt_labels)

    def draw(result, pos_iou_thr, neg_iou_thr, match_low_quality):
        per_gt = ", ".join(f"{n} {p}" for n, p in zip(names, result.positives_per_gt().tolist(), strict=True))
        title = (
            f"fixed IoU: positive at IoU >= {pos_iou_thr:.2f}, negative below {neg_iou_thr:.2f}, "
            f"low-quality matches {'on' if match_low_quality else 'off'}: {result.num_pos} positives, "
            f"{int(result.ignored.sum())} ignored\npositives per GT: {per_gt}"
        )
        return draw_assignment_levels(
            result,
            anchors,
            num_level_anchors,
            gt_boxes,
            image=image,
            image_size=image_size,
            strides=list(generator.strides),
            title=title,
        )

    controls = {
        "pos_iou_thr": Control(0.5, 0.05, 0.95, 0.05),
        "neg_iou_thr": Control(0.4, 0.0, 0.95, 0.05),
        "match_low_quality": Control(True),
    }
    return _show(LiveFigure(assign, draw, controls), static)


def interactive_atss(
    image: Tensor | None = None,
    gt_boxes: Tensor | None = None,
    gt_names: list[str] | None = None,
    *,
    anchor_generator: AnchorGenerator | None = None,
    seed: int = 0,
    static: bool | None = None,
) -> LiveFigure | Figure:
    """ATSS with ``topk`` on a slider: per GT its candidates' IoU by FPN level, and ``mean + std``.

    Args: as :func:`interactive_fixed_iou`; the default anchors are ATSS's one per location
    (:func:`lad_edu.anchors.single`).
    """
    image, gt_boxes, gt_labels, names = _scene(image, gt_boxes, gt_names, seed)
    generator = anchor_generator or single()
    anchors, num_level_anchors = generator(tuple(image.shape[1:]) if image is not None else DEMO_IMAGE_SIZE)
    level = level_ids(num_level_anchors)  # [N]

    def assign(topk):
        return ATSSAssigner(topk=topk).assign(anchors, num_level_anchors, gt_boxes, gt_labels)

    def draw(result, topk):
        candidates, iou = result.details["candidates"], result.details["candidate_iou"]  # [K, G] each
        positives = result.positives_per_gt().tolist()
        fig = draw_iou_histograms(
            [iou[:, g] for g in range(len(names))],
            {"mean + std": result.details["threshold"]},
            gt_names=[f"{n}: {p} positive{'s' * (p != 1)}" for n, p in zip(names, positives, strict=True)],
            bins=40,
            levels=[level[candidates[:, g]] for g in range(len(names))],
            strides=list(generator.strides),
        )
        fig.suptitle(f"ATSS, topk = {topk}: K = {len(candidates)} candidates per GT", fontsize=11)
        return fig

    return _show(LiveFigure(assign, draw, {"topk": Control(9, 1, 20, 1)}), static)


def interactive_paa(
    image: Tensor | None = None,
    gt_boxes: Tensor | None = None,
    gt_names: list[str] | None = None,
    *,
    anchor_generator: AnchorGenerator | None = None,
    seed: int = 0,
    static: bool | None = None,
) -> LiveFigure | Figure:
    """PAA with eq. 2's weights and the network's quality on sliders: per GT its candidates' costs, the two
    Gaussians and the cut.

    The predictions are constructed (:func:`lad_edu.scenes.constructed_predictions`, seeded with ``seed``):
    ``quality`` 0 is an untrained network, 0.5 notebook 03's partly trained one, 1 a sharp one.

    Args: as :func:`interactive_atss`.
    """
    image, gt_boxes, gt_labels, names = _scene(image, gt_boxes, gt_names, seed)
    generator = anchor_generator or single()
    anchors, num_level_anchors = generator(tuple(image.shape[1:]) if image is not None else DEMO_IMAGE_SIZE)

    def assign(bbox_weight, loc_loss, quality):
        cls_logits, pred_boxes = constructed_predictions(
            anchors, gt_boxes, gt_labels, quality=quality, seed=seed, num_classes=NUM_CLASSES
        )
        rule = PAAAssigner(bbox_weight=bbox_weight, loc_loss=loc_loss)
        return rule.assign(anchors, num_level_anchors, gt_boxes, gt_labels, cls_logits, pred_boxes)

    def draw(result, bbox_weight, loc_loss, quality):
        cols = min(4, len(names))
        fig, grid = plt.subplots(
            -(-len(names) // cols),
            cols,
            figsize=(4 * cols, 3.2 * -(-len(names) // cols) + 0.4),
            layout="constrained",
            squeeze=False,
        )
        for k, ax in enumerate(grid.flat):
            if k < len(names):
                draw_cost_gmm(result, k, gt_name=names[k], ax=ax)
            else:
                ax.set_visible(False)
        overlap = {"giou": "GIoU", "iou": "IoU"}[loc_loss]
        fig.suptitle(
            f"PAA, cost = FL + {bbox_weight:.2f} · (1 − {overlap}) (eq. 2) on a network of quality "
            f"{quality:.2f}: {result.num_pos} positives",
            fontsize=11,
        )
        return fig

    controls = {
        "bbox_weight": Control(1.3, 0.0, 3.0, 0.1),
        "loc_loss": Control("giou", options=("giou", "iou")),
        "quality": Control(0.5, 0.0, 1.0, 0.05),
    }
    return _show(LiveFigure(assign, draw, controls), static)


def interactive_box(
    *,
    image_size: tuple[int, int] = DEMO_IMAGE_SIZE,
    anchor_generator: AnchorGenerator | None = None,
    quality: float = 0.5,
    seed: int = 0,
    static: bool | None = None,
) -> LiveFigure | Figure:
    """One box you move and resize (centre ``x``, ``y``, size ``w``, ``h`` on sliders): its positives under
    fixed IoU, ATSS and PAA, a row per rule and a panel per FPN level of the same anchors.

    Args:
        image_size: ``(height, width)`` of the canvas the box is painted on (a digit, seeded).
        anchor_generator: the anchors of all three rules; default one per location
            (:func:`lad_edu.anchors.single`), as the classroom comparison trains them.
        quality: of the network whose constructed predictions PAA scores.
        static: True draws the default figure; None decides (see the module docstring).
    """
    generator = anchor_generator or single()
    anchors, num_level_anchors = generator(image_size)
    height, width = image_size
    labels = torch.zeros(1, dtype=torch.long)

    def box(x, y, w, h) -> Tensor:  # [1, 4] xyxy
        return torch.tensor([[x - w / 2, y - h / 2, x + w / 2, y + h / 2]], dtype=torch.float32)

    def assign(x, y, w, h):
        gt = box(x, y, w, h)
        predictions = constructed_predictions(anchors, gt, labels, quality=quality, seed=seed)
        return {
            "fixed IoU": FixedIoUAssigner().assign(anchors, gt, labels),
            "ATSS": ATSSAssigner().assign(anchors, num_level_anchors, gt, labels),
            "PAA": PAAAssigner().assign(anchors, num_level_anchors, gt, labels, *predictions),
        }

    def draw(results, x, y, w, h):
        gt = box(x, y, w, h)
        image = render(gt, image_size, seed=seed, shapes=["digit"])
        fig = draw_strategies_side_by_side(
            image, anchors, num_level_anchors, gt, results, strides=list(generator.strides)
        )
        fig.suptitle(f"a {w} x {h} px box centred at ({x}, {y}): its positives under each rule", fontsize=11)
        return fig

    controls = {
        "x": Control(width // 2, 0, width, 2),
        "y": Control(height // 2, 0, height, 2),
        "w": Control(48, 2, width, 2),
        "h": Control(48, 2, height, 2),
    }
    return _show(LiveFigure(assign, draw, controls), static)
