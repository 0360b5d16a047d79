"""Time the assigners per image, and fixed IoU against torchvision's RetinaNet matcher.

    python -m benchmarks.bench_assign [--repeats 30] [--device cpu cuda] [--threads N]

For each scale (COCO: an 800x1216 image, strides 8-128; classroom: 320x320), number of GTs (5, 30) and
device, it prints the median milliseconds of one ``.assign`` call (one image) of the assigners
:func:`lad_edu.assign.build_assigner` makes:

* fixed IoU (0.5 / 0.4) on RetinaNet's 9 anchors per location (~180k at COCO scale), and next to it
  torchvision's ``Matcher(0.5, 0.4, allow_low_quality_matches=True)`` on the same boxes, IoU included
  (``box_iou`` + matcher: the same work), with the ratio ours / torchvision (target: <= 1);
* fixed IoU (0.1 / 0.1, PAA's pre-assignment) on one anchor per location (~20k);
* ATSS (topk 9) on one anchor per location.

The GTs are random boxes (log-uniform sides) from a fixed seed, so every run times the same inputs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torchvision.models.detection._utils import Matcher

from lad_edu.anchors import retinanet, single
from lad_edu.assign import build_assigner
from lad_edu.boxes import box_iou

SCALES = {"COCO 800x1216": (800, 1216), "classroom 320x320": (320, 320)}
NUM_GTS = (5, 30)


def random_gts(image_size: tuple[int, int], num_gts: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_gts`` boxes with log-uniform sides between 1/40 and 1/2 of the short side (bench_paa's too)."""
    g = torch.Generator().manual_seed(seed)
    height, width = image_size
    short = min(height, width)
    sides = torch.exp(
        torch.empty(num_gts, 2).uniform_(*torch.log(torch.tensor([short / 40, short / 2])), generator=g)
    )
    x1 = torch.rand(num_gts, generator=g) * (width - sides[:, 0])
    y1 = torch.rand(num_gts, generator=g) * (height - sides[:, 1])
    boxes = torch.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], dim=1)
    labels = torch.randint(0, 80, (num_gts,), generator=g)
    return boxes, labels


def median_ms(fns: list, device: str, repeats: int) -> list[float]:
    """Median wall time in milliseconds of each function in ``fns``.

    The functions are called round-robin (one call of each per repeat) so that a slow spell of the
    machine hits all of them alike; CUDA is synchronised around every call; 3 rounds of warm-up first.
    """
    for _ in range(3):
        for fn in fns:
            fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times, strict=True):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            fn_times.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def bench_one(device: str, image_size: tuple[int, int], num_gts: int, repeats: int) -> list[dict]:
    """The rows of one (scale, number of GTs, device) cell."""
    retina_anchors, _ = retinanet()(image_size, device=device)
    single_anchors, num_level_anchors = single()(image_size, device=device)
    gts, labels = (t.to(device) for t in random_gts(image_size, num_gts))
    retina_fixed = build_assigner("fixed", pos_iou_thr=0.5, neg_iou_thr=0.4)
    paa_pre = build_assigner("paa").pre_assigner  # fixed IoU at 0.1 / 0.1
    atss = build_assigner("atss", topk=9)
    matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)

    ours, theirs, pre, atss_ms = median_ms(
        [
            lambda: retina_fixed.assign(retina_anchors, gts, labels),
            lambda: matcher(box_iou(gts, retina_anchors)),  # the same work: IoU + matching
            lambda: paa_pre.assign(single_anchors, gts, labels),
            lambda: atss.assign(single_anchors, num_level_anchors, gts, labels),
        ],
        device,
        repeats,
    )
    return [
        {
            "assigner": "fixed IoU 0.5/0.4",
            "anchors": len(retina_anchors),
            "ms": ours,
            "torchvision ms": theirs,
        },
        {"assigner": "fixed IoU 0.1/0.1 (PAA pre)", "anchors": len(single_anchors), "ms": pre},
        {"assigner": "ATSS topk 9", "anchors": len(single_anchors), "ms": atss_ms},
    ]


def bench(device: str, repeats: int) -> list[dict]:
    rows = []
    for scale, image_size in SCALES.items():
        for num_gts in NUM_GTS:
            cell = {"scale": scale, "GTs": num_gts, "device": device}
            rows += [{**cell, **row} for row in bench_one(device, image_size, num_gts, repeats)]
    return rows


def print_table(rows: list[dict]) -> None:
    header = (
        f"| {'scale':<18} | {'device':<6} | {'GTs':>3} | {'assigner':<27} | {'anchors':>7} "
        f"| {'median ms':>9} | {'torchvision Matcher ms':>22} | {'ratio':>5} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for r in rows:
        tv = r.get("torchvision ms")
        tv_cell = f"{tv:>22.2f}" if tv is not None else " " * 22
        ratio_cell = f"{r['ms'] / tv:>5.2f}" if tv is not None else " " * 5
        print(
            f"| {r['scale']:<18} | {r['device']:<6} | {r['GTs']:>3} | {r['assigner']:<27} "
            f"| {r['anchors']:>7} | {r['ms']:>9.2f} | {tv_cell} | {ratio_cell} |"
        )


def benchmark_setup(doc: str, default_repeats: int) -> tuple[int, list[str], str]:
    """The benchmarks' shared command line: ``--repeats``, ``--device``, ``--threads``.

    Returns the repeats, the devices to time (cpu, and cuda when present) and a one-line description of
    the machine for the table's header.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=default_repeats, help="timed calls per cell (median)")
    parser.add_argument(
        "--device", nargs="+", default=None, help="devices (default: cpu, and cuda if present)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch.cuda.is_available() is False")
    gpu = f", {torch.cuda.get_device_name()}" if "cuda" in devices else ""
    return args.repeats, devices, f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads{gpu}"


def main() -> None:
    repeats, devices, machine = benchmark_setup(__doc__, default_repeats=30)
    print(f"{machine}; median of {repeats} calls\n")
    print_table([row for device in devices for row in bench(device, repeats)])


if __name__ == "__main__":
    main()
