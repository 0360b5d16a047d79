"""The paper's COCO experiments as data: which shipped config reproduces which table row, the command that
trains it, the AP the paper reports, and a rough cost.

Every command trains with the paper's total batch of 16 images (section 4.1): ``gpus x data.batch_size =
16``. The configs state their own per-GPU batch (2 for PAA, 8 for LAD with fp16 as the authors ran it on
2 GPUs); on another number of GPUs the command sets ``data.batch_size`` so that the total stays 16.

Nothing is downloaded (lad_edu runs offline): each command names the local ImageNet weights
(:data:`IMAGENET_WEIGHTS`, torchvision's ``IMAGENET1K_V1`` files, which MMDetection's
``torchvision://resnet50`` also loads) and, for LAD, either the teacher run trained first or an
MMDetection model-zoo PAA file (:data:`MMDET_PAA_TEACHERS`).

**The GPU-hours are an estimate, not a measurement.** No lad_edu run on COCO has been timed yet. The
estimate takes the training times MMDetection's model zoo (v0.6, 8 V100 GPUs, 2 images per GPU) lists for
RetinaNet, the same ResNet-FPN with a dense head like PAA's: 0.496 s (R-50) and 0.643 s (R-101) per
iteration of 16 images (:data:`V100_SECONDS_PER_ITER`). It assumes that a PAA step costs what that
RetinaNet step cost (PAA's head has one anchor per location instead of nine, but adds the IoU branch and
the GMM), that a frozen teacher's forward costs a third of its training step (backward about twice the
forward), that CoLAD trains both networks, and 12 epochs of the 118,287 COCO train2017 images. Evaluation
is left out, and so is the teacher's own training for LAD. Newer GPUs, fp16 and newer PyTorch are faster:
read it as an order of magnitude, and replace it by your own with :func:`gpu_hours` and the
``images_per_s`` of your run's ``metrics.jsonl``.

>>> run = PAPER_RUNS[0]
>>> run.config, run.ap, round(run.estimated_gpu_hours(), -1)
('paa_r50_fpn_1x', (('PAA-R50', 40.4),), 100.0)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from lad_edu.train.config import load_config

__all__ = [
    "COCO_TRAIN_IMAGES",
    "IMAGENET_WEIGHTS",
    "MMDET_PAA_TEACHERS",
    "PAPER_BATCH",
    "PAPER_RUNS",
    "PaperRun",
    "gpu_hours",
    "paper_runs_table",
]

COCO_TRAIN_IMAGES = 118_287  # COCO 2017 train (lad_edu keeps the images without objects)
PAPER_BATCH = 16  # images per iteration, all GPUs together (section 4.1)
# torchvision's IMAGENET1K_V1 files (https://download.pytorch.org/models/<file>), by backbone
IMAGENET_WEIGHTS = {"resnet50": "resnet50-0676ba61.pth", "resnet101": "resnet101-63fe2227.pth"}
# MMDetection's 1x PAA models (https://download.openmmlab.com/mmdetection/v2.0/paa/<name>/<file>), by backbone
MMDET_PAA_TEACHERS = {
    "resnet50": "paa_r50_fpn_1x_coco_20200821-936edec3.pth",  # 40.4 AP
    "resnet101": "paa_r101_fpn_1x_coco_20200821-0a1825a4.pth",  # 42.6 AP
}
# the cost estimate's assumptions (module docstring)
V100_SECONDS_PER_ITER = {"resnet50": 0.496, "resnet101": 0.643}  # RetinaNet, MMDetection's model zoo
V100_GPUS = 8
FORWARD_SHARE = 1 / 3  # a frozen teacher's forward, as a share of its training step


def gpu_hours(images_per_s: float, gpus: int, *, epochs: int = 12, images: int = COCO_TRAIN_IMAGES) -> float:
    """GPU-hours of ``epochs`` over ``images`` at ``images_per_s`` (all ``gpus`` together).

    ``images_per_s`` is what a run logs (``metrics.jsonl``: every process's images per second).

    >>> gpu_hours(32.0, 8, epochs=1, images=14_400)  # 450 s on 8 GPUs
    1.0
    """
    return epochs * images / images_per_s * gpus / 3600


@dataclass(frozen=True)
class PaperRun:
    """One training of a paper table: its config and the COCO val AP (x 100) the paper reports.

    ``ap`` holds ``(network, AP)`` for network 1 (``RUN_DIR/eval/``) and, for CoLAD, network 2
    (``RUN_DIR/eval_partner/``). ``teacher`` names the config of the run that must be trained first (its
    ``checkpoint.pt`` is the config's ``distill.teacher_checkpoint``), or None.
    """

    table: str
    method: str
    config: str
    ap: tuple[tuple[str, float], ...]
    teacher: str | None = None

    @property
    def out(self) -> str:
        """The run directory, where the LAD configs look for their teacher (``runs/<config>``)."""
        return f"runs/{self.config}"

    def command(
        self, *, gpus: int = 8, data: str = "data/coco", weights: str = "weights", mmdet_teacher: bool = False
    ) -> str:
        """The ``torchrun`` command that trains this run on ``gpus`` GPUs of one machine.

        Args:
            data: the COCO folder (``annotations/instances_train2017.json``, ``train2017/``, ``val2017/``).
            weights: the folder of the ImageNet files (:data:`IMAGENET_WEIGHTS`) and zoo files.
            mmdet_teacher: take the teacher from MMDetection's model zoo (:data:`MMDET_PAA_TEACHERS`)
                instead of the ``teacher`` run.
        """
        if PAPER_BATCH % gpus:
            raise ValueError(f"gpus must divide the paper's batch of {PAPER_BATCH} images, got {gpus}")
        cfg = load_config(self.config)
        sets = [f"model.backbone_weights={weights}/{IMAGENET_WEIGHTS[cfg.model.backbone]}"]
        if cfg.data.batch_size * gpus != PAPER_BATCH:
            sets.append(f"data.batch_size={PAPER_BATCH // gpus}")
        if cfg.distill.mode == "colad":  # network 2's own ImageNet weights
            sets.append(
                f"distill.teacher_backbone_weights={weights}/{IMAGENET_WEIGHTS[cfg.distill.teacher_backbone]}"
            )
        if mmdet_teacher and self.teacher is not None:
            sets.append(
                f"distill.teacher_checkpoint={weights}/{MMDET_PAA_TEACHERS[cfg.distill.teacher_backbone]}"
            )
        args = ["--config", self.config, "--data", data, "--out", self.out]
        args += [word for item in sets for word in ("--set", item)]
        return shlex.join(["torchrun", "--nproc_per_node", str(gpus), "-m", "lad_edu.cli", "train", *args])

    def estimated_gpu_hours(self) -> float:
        """V100 GPU-hours under the module docstring's assumptions: an order of magnitude, not measured."""
        cfg = load_config(self.config)
        seconds = V100_SECONDS_PER_ITER[cfg.model.backbone]
        if cfg.distill.mode in ("soft", "lad", "solad"):
            seconds += FORWARD_SHARE * V100_SECONDS_PER_ITER[cfg.distill.teacher_backbone]
        elif cfg.distill.mode == "colad":
            seconds += V100_SECONDS_PER_ITER[cfg.distill.teacher_backbone]
        return gpu_hours(PAPER_BATCH / seconds, V100_GPUS, epochs=cfg.optim.epochs)


PAPER_RUNS = (
    PaperRun("Table 2", "Baseline PAA", "paa_r50_fpn_1x", (("PAA-R50", 40.4),)),
    PaperRun("Table 2", "LAD (ours)", "lad_r50_paa_r101_1x", (("PAA-R50", 41.6),), teacher="paa_r101_fpn_1x"),
    PaperRun(
        "Table 2",
        "SoLAD (ours) - KL loss",
        "solad_r50_paa_r101_1x",
        (("PAA-R50", 42.4),),
        teacher="paa_r101_fpn_1x",
    ),
    PaperRun("Table 3", "Baseline", "paa_r101_fpn_1x", (("PAA-R101", 42.6),)),
    PaperRun("Table 3", "LAD (ours)", "lad_r101_paa_r50_1x", (("PAA-R101", 43.3),), teacher="paa_r50_fpn_1x"),
    PaperRun(
        "Table 5",
        "CoLAD (1x), Init. No / No",
        "colad_r50_r101_1x",
        (("PAA-R50", 41.3), ("PAA-R101", 43.1)),
    ),
)


def paper_runs_table() -> str:
    """:data:`PAPER_RUNS` as a Markdown table: paper row, config, AP, estimated GPU-hours, prerequisites."""
    lines = [
        "| paper | config | AP (paper) | V100 GPU-hours (estimate) | before you start |",
        "|---|---|---|---|---|",
    ]
    for run in PAPER_RUNS:
        ap = " / ".join(f"{network} {value}" for network, value in run.ap)
        before = [f"train `{run.teacher}` (or take MMDetection's)"] if run.teacher else []
        hours = f"≈ {round(run.estimated_gpu_hours(), -1):.0f}"
        lines.append(
            f"| {run.table}, {run.method} | `{run.config}` | {ap} | {hours} | {'; '.join(before) or '–'} |"
        )
    return "\n".join(lines)
