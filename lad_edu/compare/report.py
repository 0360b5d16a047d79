"""The report of a comparison: results.md's tables and the figures (PNG)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from lad_edu.compare.measure import Picture
from lad_edu.compare.plan import WITH_TEACHER
from lad_edu.train.metrics import read_metrics

COCO_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # the table's columns


def _cell(stat: dict, scale: float = 1.0, digits: int = 1) -> str:
    """``"mean ± std"`` of a summary entry (``"—"``: nothing measured)."""
    mean, std = stat["mean"], stat["std"]
    if mean is None:
        return "—"
    return f"{scale * mean:.{digits}f}" + ("" if std is None else f" ± {scale * std:.{digits}f}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _spread(stat: dict) -> list[dict]:
    """A summary entry of lists, ``{"mean": [...], "std": [...]}``, as one ``{"mean", "std"}`` per entry."""
    return [{"mean": m, "std": d} for m, d in zip(stat["mean"], stat["std"], strict=True)]


def tables(report: dict) -> list[str]:
    """The three tables of ``results.md``: AP, the assignment during training, positives by size."""
    settings, bins = report["settings"], report["size_bins"]
    summaries = {name: entry["summary"] for name, entry in report["strategies"].items()}
    ap = [
        [name, *(_cell(s[k], 100) for k in COCO_KEYS), _cell(s["train_seconds"], 1 / 60)]
        for name, s in summaries.items()
    ]
    training = [
        [
            name,
            _cell(s["pos_per_gt"], digits=2),
            _cell(s["gts_without_pos"], 100),
            _cell(s["pos_iou"], digits=2),
        ]
        + [_cell(share, 100) for share in _spread(s["level_share"])]
        for name, s in summaries.items()
    ]
    by_size = [
        [name, *(_cell(value, digits=2) for value in _spread(s["pos_per_gt_by_size"]))]
        for name, s in summaries.items()
    ]
    levels = [f"P{round(math.log2(stride))} share (%)" for stride in settings["strides"]]
    sizes = [f"{label} ({n} GTs)" for label, n in zip(bins["labels"], bins["num_gts"], strict=True)]
    return [
        f"## COCO box AP on the validation images (x 100, mean ± std over {len(settings['seeds'])} seed(s))",
        "",
        *_table(["strategy", *COCO_KEYS, "train min"], ap),
        "",
        "—: nothing to measure (pycocotools' -1; COCO's size ranges are absolute areas). Train minutes: "
        "wall time of the run's process, which shares the cores with the other runs when jobs > 1.",
        "",
        "## What the assigners did during training (last epoch)",
        "",
        *_table(
            ["strategy", "positives / GT", "GTs without a positive (%)", "IoU of positives", *levels],
            training,
        ),
        "",
        f"## Positives per GT by object size (first {settings['size_images']} validation images, final "
        "checkpoints; sqrt(area) in input pixels, cut at each level's anchor side)",
        "",
        *_table(["strategy", *sizes], by_size),
        "",
        *_teacher_note(settings.get("teacher"), list(report["strategies"])),
    ]


def _who_teaches(teacher: str | None) -> str:
    return "the `paa` run of the same seed" if teacher is None else f"`{teacher}`"


def _teacher_note(teacher: str | None, strategies: list[str]) -> list[str]:
    """The note under the tables on who taught, when a strategy of the report learned from a teacher."""
    if not set(strategies) & set(WITH_TEACHER):
        return []
    if teacher is not None:
        return [f"soft, lad and solad learned from {_who_teaches(teacher)}, a trained network."]
    return [
        "lad and solad label with their teacher, the final `paa` checkpoint of their seed, so here (and in "
        "the side-by-side figure) their labels are the `paa` run's own; during training they differed, as "
        "the `paa` network was still learning."
    ]


def markdown(report: dict) -> str:
    """``results.md``: the settings, the tables, the figures."""
    settings = report["settings"]
    intro = (
        f"Base config `{settings['config']}`, overrides {settings['overrides'] or 'none'}; data "
        f"`{settings['data']}` ({settings['train_images']} training, {settings['val_images']} validation "
        f"images); {settings['epochs']} epoch(s), lr steps after epochs {settings['milestones']}; seeds "
        f"{settings['seeds']}. Every strategy trained on the same data, network, schedule and seeds; only "
        "the assignment differs"
        + (
            f" (soft, lad, solad: the teacher is {_who_teaches(settings.get('teacher'))}). "
            if set(report["strategies"]) & set(WITH_TEACHER)
            else ". "
        )
        + "The numbers are what the runs gave: no strategy was tuned."
    )
    figures = [f"![{name}]({path})" for name, path in report["figures"].items()]
    return "\n".join(
        ["# Label assignment compared", "", intro, "", *tables(report), "", "## Figures", "", *figures, ""]
    )


def report_figures(report: dict, *, root: str | Path = ".", picture: Picture | None = None) -> dict:
    """Every figure of a comparison's report, drawn from ``report`` (``results.json``) and its runs'
    ``metrics.jsonl``: ``{name: Figure}``, the names of ``results.json``'s ``"figures"``.

    Args:
        report: the comparison's report (see :mod:`lad_edu.compare`).
        root: the folder the report's ``run_dir`` entries are relative to (the report's own folder for the
            shipped reference, :data:`lad_edu.reference.REFERENCE`); absolute ones are read as they are.
        picture: the image every strategy labels, for ``side_by_side``; None leaves that figure out (it needs
            the trained networks, which a report does not hold).
    """
    from lad_edu import viz

    runs = {name: entry["runs"] for name, entry in report["strategies"].items()}
    run_dirs = {name: [Path(root) / r["run_dir"] for r in rs] for name, rs in runs.items()}
    figures = {
        "ap": viz.plot_ap_by_strategy(
            {
                name: [None if r["coco"]["AP"] is None else 100 * r["coco"]["AP"] for r in rs]
                for name, rs in runs.items()
            }
        ),
        "loss_curves": viz.plot_loss_curves(
            {name: [read_metrics(d, "train") for d in dirs] for name, dirs in run_dirs.items()}
        ),
        "positives_vs_size": viz.plot_positives_vs_size(
            {name: [r["assignment"]["pos_per_gt_by_size"] for r in rs] for name, rs in runs.items()},
            report["size_bins"]["labels"],
            report["size_bins"]["num_gts"],
            low_quality={
                name: [r["assignment"]["low_quality_per_gt_by_size"] for r in rs]
                for name, rs in runs.items()
                if "low_quality_per_gt_by_size" in rs[0]["assignment"]
            },
        ),
        "level_share": viz.plot_level_share(
            {name: [r["assignment"]["level_share"] for r in rs] for name, rs in runs.items()},
            report["settings"]["strides"],
        ),
    }
    if picture is not None:
        figures["side_by_side"] = viz.draw_strategies_side_by_side(
            picture.image,
            picture.anchors,
            picture.num_level_anchors,
            picture.gt_boxes,
            {name: picture.results[name] for name in runs},
            report["settings"]["strides"],
        )
    if "colad" in runs:
        seed0 = next(d for r, d in zip(runs["colad"], run_dirs["colad"], strict=True) if r["seed"] == 0)
        figures["colad_timeline"] = viz.plot_colad_timeline(read_metrics(seed0, "train"))
    return figures


def write_figures(report: dict, picture: Picture, out: Path) -> dict[str, str]:
    """Every figure of the report (:func:`report_figures`) as ``out/figures/<name>.png``; returns
    ``{name: path relative to out}``."""
    import matplotlib.pyplot as plt

    from lad_edu import viz

    paths = {}
    (out / "figures").mkdir(parents=True, exist_ok=True)
    for name, figure in report_figures(report, picture=picture).items():
        paths[name] = f"figures/{name}.png"
        viz.save_png(figure, out / paths[name])
        plt.close(figure)
    return paths
