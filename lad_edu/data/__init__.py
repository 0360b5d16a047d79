"""Datasets in COCO's layout: the classroom generator (and, with the training engine, the COCO reader)."""

from lad_edu.data.classroom import CLASSES, ClassroomConfig, make_classroom_dataset

__all__ = ["CLASSES", "ClassroomConfig", "make_classroom_dataset"]
