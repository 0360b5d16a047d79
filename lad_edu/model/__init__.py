"""The network: backbone (torchvision ResNet or a small CPU one) -> FPN P3-P7 -> PAA head.

``build_detector(ModelConfig(), num_classes=80)`` is MMDetection's ``paa_r50_fpn_1x_coco``, key for key
(``load_mmdet_state_dict`` loads its checkpoints); ``ModelConfig(cop=True)`` adds LAD's Conditional
Objectness Prediction.
"""

from lad_edu.model.detector import Detector, ModelConfig, build_detector
from lad_edu.model.head import HeadOutput
from lad_edu.model.mmdet_import import load_mmdet_state_dict

__all__ = ["ModelConfig", "Detector", "build_detector", "HeadOutput", "load_mmdet_state_dict"]
