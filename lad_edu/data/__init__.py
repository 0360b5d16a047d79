"""Datasets in COCO's layout: the reader (:class:`CocoDetection`), its layout check (:func:`check_dataset`)
and the classroom generator."""

from lad_edu.data.check import check_dataset
from lad_edu.data.classroom import CLASSES, ClassroomConfig, make_classroom_dataset
from lad_edu.data.coco import CocoDetection

__all__ = ["CLASSES", "ClassroomConfig", "CocoDetection", "check_dataset", "make_classroom_dataset"]
