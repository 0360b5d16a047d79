"""Datasets in COCO's layout: the reader (:class:`CocoDetection`) and the classroom generator."""

from lad_edu.data.classroom import CLASSES, ClassroomConfig, make_classroom_dataset
from lad_edu.data.coco import CocoDetection

__all__ = ["CLASSES", "ClassroomConfig", "CocoDetection", "make_classroom_dataset"]
