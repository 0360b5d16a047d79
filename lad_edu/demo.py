"""Fixed IoU vs ATSS on one classroom-sized image, as a table: ``python -m lad_edu.demo``.

Both rules label the same anchors, ATSS's: one square of side ``8 · stride`` per location on five levels
(:func:`lad_edu.anchors.single`), so what differs is the rule alone (the ATSS paper's comparison). Each row
is one object of :data:`lad_edu.scenes.DEMO_SCENE`: its best IoU with any anchor, the positives RetinaNet's
fixed 0.5 / 0.4 rule gives it and how many of them only its low-quality step gave (tied best anchors below
0.5), and ATSS's own ``mean + std`` threshold with the positives it gives. RetinaNet's own 9 anchors per
location are notebook 01's subject; the trained comparison of the rules is ``make demo`` (``lad-edu
compare``).
"""

from __future__ import annotations

import torch

from lad_edu.anchors import single
from lad_edu.assign import ATSSAssigner, FixedIoUAssigner, low_quality_positives
from lad_edu.boxes import box_iou
from lad_edu.scenes import DEMO_IMAGE_SIZE as IMAGE_SIZE
from lad_edu.scenes import DEMO_SCENE as SCENE

POS_IOU_THR, NEG_IOU_THR = 0.5, 0.4  # RetinaNet's


def assignment_table() -> tuple[list[dict], dict]:
    """One row per object of :data:`SCENE` with both rules' positives and thresholds, and a summary."""
    gt_boxes = torch.tensor([box for _, box in SCENE])
    gt_labels = torch.arange(len(SCENE))
    anchors, num_level_anchors = single()(IMAGE_SIZE)  # one set of anchors for both rules
    fixed = FixedIoUAssigner(POS_IOU_THR, NEG_IOU_THR).assign(anchors, gt_boxes, gt_labels)
    atss = ATSSAssigner().assign(anchors, num_level_anchors, gt_boxes, gt_labels)
    best_iou = box_iou(gt_boxes, anchors).max(dim=1).values  # [G]

    # positives only the low-quality step gave: tied best anchors below the positive threshold
    low_quality = low_quality_positives(fixed, POS_IOU_THR)
    rows = []
    for g, (name, (x1, y1, x2, y2)) in enumerate(SCENE):
        mine = fixed.gt_inds == g + 1
        rows.append(
            {
                "object": name,
                "size": f"{x2 - x1:.0f}x{y2 - y1:.0f}",
                "best IoU": float(best_iou[g]),
                "fixed pos": int(mine.sum()),
                "low-quality": int((mine & low_quality).sum()),
                "ATSS thr": float(atss.details["threshold"][g]),
                "ATSS pos": int((atss.gt_inds == g + 1).sum()),
            }
        )
    summary = {
        "anchors (both rules)": f"{len(anchors)}, one {8 * 8}-{8 * 128} px square per location",
        f"ignored by fixed IoU ({NEG_IOU_THR} <= IoU < {POS_IOU_THR})": int(fixed.ignored.sum()),
    }
    return rows, summary


# (column, width, format) of the printed table
COLUMNS = [
    ("object", 17, "<17"),
    ("size", 8, ">8"),
    ("best IoU", 9, ">9.3f"),
    ("fixed pos", 10, ">10d"),
    ("low-quality", 12, ">12d"),
    ("ATSS thr", 9, ">9.3f"),
    ("ATSS pos", 9, ">9d"),
]

EXPLANATION = """
Fixed IoU needs an anchor of the right shape: the dot, the small digit and the thin bar reach 0.5 with
no anchor and keep positives only through their low-quality best matches (ties: a tiny or elongated
object overlaps many identical anchors equally). ATSS sets each object's own threshold from the IoU
statistics of its nearest anchors, so the small and elongated objects get positives by the same rule
as the large ones; the dot, whose box holds no anchor centre, gets none.
"""


def main() -> None:
    rows, summary = assignment_table()
    height, width = IMAGE_SIZE
    print(f"Label assignment on a {width}x{height} image, the same anchors for both rules:")
    print(f"fixed IoU ({POS_IOU_THR} / {NEG_IOU_THR}) vs ATSS (mean + std)\n")
    header = " ".join(f"{name:{fmt[0]}{w}}" for name, w, fmt in COLUMNS)
    print(header + "\n" + "-" * len(header))
    for row in rows:
        print(" ".join(f"{row[name]:{fmt}}" for name, _, fmt in COLUMNS))
    print()
    for key, value in summary.items():
        print(f"{key}: {value}")
    print(EXPLANATION)


if __name__ == "__main__":
    main()
