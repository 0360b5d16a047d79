"""What each run of a comparison gave: its COCO numbers, its assignment during training, and positives per GT
by object size on validation images labelled with its final checkpoint."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from lad_edu.assign import low_quality_positives
from lad_edu.assign.result import AssignResult
from lad_edu.compare.plan import HOW, RunSpec
from lad_edu.model import ModelConfig
from lad_edu.train.checkpoint import load_run_checkpoint
from lad_edu.train.config import TrainConfig, config_from_dict
from lad_edu.train.distributed import Dist
from lad_edu.train.labels import Labelled, labeller
from lad_edu.train.metrics import read_metrics

# what each run gave


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def training_assignment(rows: Sequence[dict]) -> dict:
    """What the assigner did during the last epoch: the mean of its ``"train"`` rows' ``pos_per_gt``,
    ``gts_without_pos``, ``pos_iou`` and ``pos_share_l{i}`` (as ``level_share [L]``); null when unmeasured."""
    last = [row for row in rows if row["epoch"] == max((r["epoch"] for r in rows), default=None)]
    levels = sorted(
        {int(k.removeprefix("pos_share_l")) for row in last for k in row if k.startswith("pos_share_l")}
    )
    out = {key: _mean([row.get(key) for row in last]) for key in ("pos_per_gt", "gts_without_pos", "pos_iou")}
    out["level_share"] = [_mean([row.get(f"pos_share_l{i}") for row in last]) for i in levels]
    return out


def checkpoint_assigner(checkpoint: Path) -> Callable[[torch.Tensor, list[dict]], Labelled]:
    """The labels training would give a batch with the network(s) of a run's checkpoint
    (:func:`lad_edu.train.labels.labeller`: the run's own assigner on the predictions its mode names, crowd
    regions ignored, the networks in eval mode)."""
    state = load_run_checkpoint(checkpoint)
    return labeller(config_from_dict(state["config"]), state["category_ids"], state, source=str(checkpoint))


def validation_batches(cfg: TrainConfig, val_set, count: int) -> list[tuple[torch.Tensor, list[dict]]]:
    """The first ``count`` validation images as the evaluation sees them (resized, padded), in batches."""
    from lad_edu.train.data import eval_loader

    batches, seen = [], 0
    for images, targets in eval_loader(val_set, cfg.data, Dist(0, 1, torch.device("cpu"))):
        keep = min(len(targets), count - seen)
        if keep <= 0:
            break
        batches.append((images[:keep], targets[:keep]))
        seen += keep
    return batches


def _gt_sizes(targets: Sequence[dict]) -> list[torch.Tensor]:
    """Each image's GT sizes: ``sqrt(width * height)`` in input pixels."""
    return [((t["boxes"][:, 2:] - t["boxes"][:, :2]).clamp(min=0).prod(dim=1)).sqrt() for t in targets]


def _all_gt_sizes(batches: Sequence[tuple[torch.Tensor, list[dict]]]) -> torch.Tensor:
    """``[G]``: the sizes of every GT of ``batches``, image after image."""
    return torch.cat([s for _, targets in batches for s in _gt_sizes(targets)] or [torch.zeros(0)])


def _in_bin(sizes: torch.Tensor, low: float, high: float | None) -> torch.Tensor:
    return (sizes >= low) & (sizes < (float("inf") if high is None else high))


def _bin_label(low: float, high: float | None) -> str:
    if high is None:
        return f">= {low:g}"
    return f"< {high:g}" if low == 0 else f"{low:g}-{high:g}"


def size_bins(model: ModelConfig, batches: Sequence[tuple[torch.Tensor, list[dict]]]) -> dict:
    """The object-size bins (see the module docstring) that hold at least one GT of ``batches``:
    ``{"edges": [[low, high]], "labels", "num_gts"}`` (high is null for the last bin)."""
    cuts = [model.octave_base_scale * stride for stride in model.strides]
    sizes = _all_gt_sizes(batches)
    bins = {"edges": [], "labels": [], "num_gts": []}
    for low, high in zip([0.0, *cuts], [*cuts, None], strict=True):
        count = int(_in_bin(sizes, low, high).sum())
        if count:
            bins["edges"].append([low, high])
            bins["labels"].append(_bin_label(low, high))
            bins["num_gts"].append(count)
    return bins


def _mean_by_size(
    per_gt: torch.Tensor, batches: Sequence[tuple[torch.Tensor, list[dict]]], bins: dict
) -> list[float | None]:
    """The mean of ``per_gt [G]`` (the GTs of ``batches``, image after image) in each size bin of ``bins``."""
    sizes = _all_gt_sizes(batches)
    means = [per_gt[_in_bin(sizes, low, high)].float().mean() for low, high in bins["edges"]]
    return [None if mean.isnan() else float(mean) for mean in means]


def positives_by_size(
    labelled: Sequence[Labelled], batches: Sequence[tuple[torch.Tensor, list[dict]]], bins: dict
) -> list[float | None]:
    """Positives per GT in each size bin of ``bins``, over every image of ``batches``."""
    results = [result for results, _, _ in labelled for result in results]
    positives = torch.cat([r.positives_per_gt() for r in results] or [torch.zeros(0)])
    return _mean_by_size(positives, batches, bins)


def low_quality_by_size(
    labelled: Sequence[Labelled],
    batches: Sequence[tuple[torch.Tensor, list[dict]]],
    bins: dict,
    pos_iou_thr: float,
) -> list[float | None] | None:
    """Of those positives, the ones only fixed IoU's low-quality step gave (``details["low_quality"]`` of
    :class:`~lad_edu.assign.FixedIoUAssigner`, below ``pos_iou_thr``: a small object's tied best anchors),
    per GT in each size bin; None for a rule without that step."""
    results = [result for results, _, _ in labelled for result in results]
    if not any("low_quality" in r.details for r in results):
        return None
    counts = [
        torch.bincount(r.gt_inds[low_quality_positives(r, pos_iou_thr)] - 1, minlength=r.num_gts)
        for r in results
    ]
    return _mean_by_size(torch.cat(counts), batches, bins)


def pick_image(batches: Sequence[tuple[torch.Tensor, list[dict]]]) -> tuple[int, int]:
    """``(batch, image)`` of the image to draw: of those with 1-6 GTs (each keeps its own colour), the one
    whose objects span the widest range of sizes; the first image if none has GTs."""
    best, where = -1.0, (0, 0)
    for b, (_, targets) in enumerate(batches):
        for i, sizes in enumerate(_gt_sizes(targets)):
            if 1 <= len(sizes) <= 6:
                spread = float(sizes.max() / sizes.min().clamp(min=1.0)) + 0.01 * len(sizes)
                if spread > best:
                    best, where = spread, (b, i)
    return where


def collect_run(spec: RunSpec, marker: dict, state: str, by_size: dict) -> dict:
    """One run's entry of ``results.json`` (see the module docstring); ``by_size``: its entry of
    :func:`label_runs`."""
    stats = json.loads((spec.run_dir / "eval" / "coco_stats.json").read_text())
    assignment = training_assignment(read_metrics(spec.run_dir, "train")) | by_size
    return {
        "seed": spec.seed,
        "run_dir": str(spec.run_dir),
        "state": HOW[state],
        "teacher": spec.teacher,
        "train_seconds": marker["train_seconds"],
        "coco": {name: None if value == -1 else value for name, value in stats.items()},
        "detections": str(spec.run_dir / "eval" / "detections.json"),
        "assignment": assignment,
    }


def _nulls(values) -> list[float | None]:
    return [None if v != v else float(v) for v in values]  # v != v: NaN


def summarize(runs: Sequence[dict]) -> dict:
    """``{key: {"mean", "std"}}`` over the seeds' runs, for every number of their ``coco``,
    ``train_seconds`` and ``assignment`` (lists entry by entry); null where there is nothing to average."""
    from lad_edu.viz import seed_mean_std

    numbers = [{**run["coco"], "train_seconds": run["train_seconds"], **run["assignment"]} for run in runs]
    summary = {}
    for key, first in numbers[0].items():
        is_list = isinstance(first, list)
        mean, std = (_nulls(v) for v in seed_mean_std([n[key] if is_list else [n[key]] for n in numbers]))
        summary[key] = {"mean": mean, "std": std} if is_list else {"mean": mean[0], "std": std[0]}
    return summary


@dataclass
class Picture:
    """The validation image every strategy labels in the side-by-side figure (seed 0's runs)."""

    image: torch.Tensor  # [3, H, W] as the network saw it, without padding
    gt_boxes: torch.Tensor  # [G, 4] xyxy
    anchors: torch.Tensor | None = None  # [N, 4]
    num_level_anchors: list[int] | None = None
    results: dict[str, AssignResult] | None = None  # {strategy: its labels of the image}


def label_runs(
    specs: Sequence[RunSpec], batches: Sequence[tuple[torch.Tensor, list[dict]]], bins: dict, progress: bool
) -> tuple[dict[str, dict], Picture]:
    """Every run's positives per GT by size bin on ``batches`` (``{"pos_per_gt_by_size": [bins]}``, and
    ``"low_quality_per_gt_by_size"`` for fixed IoU); the picked image labelled by seed 0's runs."""
    b, i = pick_image(batches)
    picked_images, picked_targets = batches[b]
    height, width = picked_targets[i]["size"]
    picture = Picture(picked_images[i, :, :height, :width], picked_targets[i]["boxes"], results={})
    by_size = {}
    for spec in tqdm(specs, desc="labelling validation images", disable=not progress, leave=False):
        assign = checkpoint_assigner(spec.run_dir / "checkpoint.pt")
        labelled = [assign(images, targets) for images, targets in batches]
        by_size[spec.key] = {"pos_per_gt_by_size": positives_by_size(labelled, batches, bins)}
        low_quality = low_quality_by_size(labelled, batches, bins, spec.cfg.assign.pos_iou_thr)
        if low_quality is not None:
            by_size[spec.key]["low_quality_per_gt_by_size"] = low_quality
        if spec.seed == 0:
            results, picture.anchors, picture.num_level_anchors = labelled[b]
            picture.results[spec.strategy] = results[i]
    return by_size, picture
