"""Label assignment: which anchor learns which ground-truth box?

>>> from lad_edu.assign import AssignResult, FixedIoUAssigner, ATSSAssigner, PAAAssigner

Every assigner is a plain object with an ``.assign(...)`` method returning an :class:`AssignResult`.
"""

from lad_edu.assign.atss import ATSSAssigner
from lad_edu.assign.colad import CoLADAssigner
from lad_edu.assign.fixed_iou import FixedIoUAssigner
from lad_edu.assign.lad import LADAssigner
from lad_edu.assign.paa import PAAAssigner
from lad_edu.assign.result import AssignResult

__all__ = ["AssignResult", "FixedIoUAssigner", "ATSSAssigner", "PAAAssigner", "LADAssigner", "CoLADAssigner"]
