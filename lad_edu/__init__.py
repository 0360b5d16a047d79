"""lad_edu: label assignment in dense object detection, from fixed IoU mapping to LAD and CoLAD."""

__version__ = "0.1.0"
