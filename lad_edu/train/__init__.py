"""Training and evaluation: configs, the engine, COCO evaluation, assignment statistics.

>>> from lad_edu.train import load_config, train
"""

from lad_edu.train.config import TrainConfig, load_config
from lad_edu.train.engine import NonFiniteLossError, evaluate_detector, train

__all__ = ["NonFiniteLossError", "TrainConfig", "evaluate_detector", "load_config", "train"]
