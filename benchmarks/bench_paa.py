"""Time PAA's reassignment: our batched torch GMM against the per-GT sklearn loop of the reference.

    python -m benchmarks.bench_paa [--repeats 20] [--device cpu cuda] [--threads N]

For each scale (COCO: 800x1216, one anchor per location, ~20k anchors; classroom: 320x320), number of GTs
(5, 30) and device, and for a batch of 16 such images, it prints the median milliseconds of
:func:`lad_edu.assign.paa.paa_reassign` and of :func:`paa_reassign_sklearn` (MMDetection's
``PAAHead.paa_reassign``, one ``sklearn.mixture.GaussianMixture`` per GT, written out below) on the same
costs, their ratio, and for how many GTs the two give exactly the same positive set.

The costs are eq. 2's (:func:`lad_edu.assign.paa.paa_cost`) on synthetic predictions: every anchor's box
is its own anchor jittered, its class logits are noise plus a bonus for the GT class that grows with the
anchor's IoU, so that costs spread over a low and a high mode as in a partly trained detector.

On a machine shared with other work, a torch kernel that splits even a small job across threads
(``searchsorted``, advanced indexing over a few thousand values) waits a whole scheduler time slice
(~5-10 ms) whenever another process holds a core. ``paa_reassign`` avoids those kernels for one image; the
batch's larger kernels still split, and ``--threads 1`` gives the steadier numbers there (sklearn runs in
one thread).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.mixture import GaussianMixture

from benchmarks.bench_assign import benchmark_setup, median_ms, random_gts
from lad_edu.anchors import level_ids, single
from lad_edu.assign import BatchLayout, build_assigner
from lad_edu.assign.paa import paa_cost, paa_reassign
from lad_edu.boxes import box_iou

SCALES = {"COCO 800x1216": (800, 1216), "classroom 320x320": (320, 320)}
NUM_GTS = (5, 30)
BATCH = 16
NUM_CLASSES = 80


def paa_reassign_sklearn(costs, candidate_anchor, candidate_gt, num_level_anchors, num_gts, topk=9):
    """The reference: MMDetection's PAA reassignment, one sklearn GaussianMixture per GT, in plain loops.

    Same arguments as :func:`lad_edu.assign.paa.paa_reassign`; returns a ``[K]`` numpy bool array.
    """
    costs, candidate_gt = costs.cpu().numpy(), candidate_gt.cpu().numpy()
    level = level_ids(num_level_anchors)[candidate_anchor.cpu()].numpy()
    positive = np.zeros(len(costs), dtype=bool)
    for g in range(num_gts):
        chosen = []
        for lvl in range(len(num_level_anchors)):  # the topk lowest costs of each level
            mine = np.nonzero((candidate_gt == g) & (level == lvl))[0]
            chosen += list(mine[np.argsort(costs[mine], kind="stable")[:topk]])
        if len(chosen) < 2:  # MMDetection skips the GT: its lone candidate turns negative
            continue
        chosen = np.array(chosen)[np.argsort(costs[chosen], kind="stable")]
        x = costs[chosen].reshape(-1, 1)
        gmm = GaussianMixture(
            2,
            covariance_type="diag",
            weights_init=[0.5, 0.5],
            means_init=[[x.min()], [x.max()]],
            precisions_init=[[1.0], [1.0]],
        )
        gmm.fit(x)
        component, score = gmm.predict(x), gmm.score_samples(x)
        fg = component == 0
        if fg.any():  # positives: component 0 up to its most likely sample
            positive[chosen[fg][: np.argmax(score[fg]) + 1]] = True
    return positive


def synthetic_image(anchors, image_size, num_gts, seed):
    """One image's PAA inputs: candidates from the 0.1 pre-assignment and their eq. 2 costs."""
    gt_boxes, gt_labels = random_gts(image_size, num_gts, seed)
    g = torch.Generator().manual_seed(seed)
    pre = build_assigner("paa").pre_assigner.assign(anchors, gt_boxes, gt_labels)  # fixed IoU 0.1 / 0.1
    candidate_anchor = pre.pos.nonzero().squeeze(1)
    candidate_gt = pre.gt_inds[candidate_anchor] - 1
    iou = box_iou(anchors[candidate_anchor], gt_boxes).gather(1, candidate_gt[:, None]).squeeze(1)
    logits = torch.randn(len(candidate_anchor), NUM_CLASSES, generator=g) - 4
    logits[torch.arange(len(candidate_gt)), gt_labels[candidate_gt]] += 8 * iou + torch.randn(
        len(iou), generator=g
    )
    sizes = anchors[candidate_anchor, 2:] - anchors[candidate_anchor, :2]
    jitter = torch.randn(len(candidate_anchor), 4, generator=g) * sizes.repeat(1, 2) * 0.1
    pred_boxes = anchors[candidate_anchor] + jitter
    pred_boxes = torch.cat([pred_boxes[:, :2], torch.max(pred_boxes[:, 2:], pred_boxes[:, :2] + 1)], dim=1)
    costs = paa_cost(logits, pred_boxes, gt_boxes, gt_labels, candidate_gt)
    return costs, candidate_anchor, candidate_gt


def batch_of(images, layout):
    """Concatenate images' candidates as the batch ``layout`` (:class:`BatchLayout`) lays them out."""
    costs = torch.cat([c for c, _, _ in images])
    anchors = torch.cat([layout.flat_anchors(b, a) for b, (_, a, _) in enumerate(images)])
    gts = torch.cat([layout.flat_gts(b, g) for b, (_, _, g) in enumerate(images)])
    return costs, anchors, gts


def identical_gts(ours, reference, candidate_gt, num_gts):
    """How many GTs have exactly the same positive candidates in both masks."""
    ours, reference, candidate_gt = ours.cpu().numpy(), reference, candidate_gt.cpu().numpy()
    differs = np.zeros(num_gts, dtype=bool)
    np.logical_or.at(differs, candidate_gt, ours != reference)
    return int((~differs).sum())


def bench(device, repeats):
    rows = []
    for scale, image_size in SCALES.items():
        anchors, num_level_anchors = single()(image_size)
        for num_gts in NUM_GTS:
            images = [synthetic_image(anchors, image_size, num_gts, seed) for seed in range(BATCH)]
            layout = BatchLayout.of(len(anchors), [num_gts] * BATCH)
            for label, inputs, images_in, nla in (
                ("1 image", images[0], 1, num_level_anchors),
                (f"batch of {BATCH}", batch_of(images, layout), BATCH, layout.level_sizes(num_level_anchors)),
            ):
                costs, cand_anchor, cand_gt = inputs
                total_gts = num_gts * images_in
                on_device = [t.to(device) for t in inputs]
                ours = median_ms([lambda: paa_reassign(*on_device, nla, total_gts)], device, repeats)[0]  # noqa: B023
                reference_mask = paa_reassign_sklearn(costs, cand_anchor, cand_gt, nla, total_gts)
                reference = median_ms(
                    [lambda: paa_reassign_sklearn(costs, cand_anchor, cand_gt, nla, total_gts)],  # noqa: B023
                    "cpu",
                    max(3, repeats // 4),
                )[0]
                same = identical_gts(
                    paa_reassign(*on_device, nla, total_gts), reference_mask, cand_gt, total_gts
                )
                rows.append(
                    {
                        "scale": scale,
                        "device": device,
                        "images": label,
                        "GTs": total_gts,
                        "candidates": len(costs),
                        "ours ms": ours,
                        "sklearn ms": reference,
                        "identical": f"{same}/{total_gts}",
                    }
                )
    return rows


def print_table(rows):
    # (column, width, number format)
    columns = [
        ("scale", 18, ""),
        ("device", 6, ""),
        ("images", 11, ""),
        ("GTs", 4, "d"),
        ("candidates", 10, "d"),
        ("ours ms", 8, ".2f"),
        ("sklearn ms", 10, ".1f"),
        ("speed-up", 8, ".1f"),
        ("identical", 9, ""),
    ]
    print("| " + " | ".join(f"{name:<{width}}" for name, width, _ in columns) + " |")
    print("|" + "|".join("-" * (width + 2) for _, width, _ in columns) + "|")
    for row in rows:
        row = {**row, "speed-up": row["sklearn ms"] / row["ours ms"]}
        cells = [
            f"{row[name]:<{width}}" if not fmt else f"{row[name]:>{width}{fmt}}"
            for name, width, fmt in columns
        ]
        print("| " + " | ".join(cells) + " |")


def main():
    repeats, devices, machine = benchmark_setup(__doc__, default_repeats=20)
    warnings.filterwarnings("ignore", module="sklearn")  # sklearn's ConvergenceWarning on hard GTs
    print(f"{machine}; sklearn reference on CPU\n")
    print_table([row for device in devices for row in bench(device, repeats)])


if __name__ == "__main__":
    main()
