"""CoLAD: two networks trained together, each step's labels decided by whichever is the better teacher.

Co-learning LAD (paper section 3.4, Fig. 3) drops the pre-trained teacher. Two networks train side by
side; both score the same pre-assigned candidates with eq. 2, and the costs of the network that looks
more *decisive* decide the labels that train **both**. "Decisive" is a criterion ρ on the costs
(:mod:`lad_edu.assign.switch`): σ/μ, or the Fisher score of the two-component GMM.

**The design.** As LAD (:mod:`lad_edu.assign.lad`) is an assigner fed a teacher's predictions, CoLAD is an
assigner fed the predictions of whichever network teaches; :class:`CoLADAssigner` takes both networks'
:class:`~lad_edu.assign.Predictions` and returns the labels with the :class:`CoLADChoice` it made. It
needs a :class:`~lad_edu.assign.PAAAssigner`: ρ is defined on the costs of the pre-assigned candidates
(eq. 3), which are PAA's, and the per-group switch merges PAA's costs before its GMM. Two granularities
(see :mod:`lad_edu.assign.switch` for the functions):

* ``"iteration"`` — the paper's text: one ρ per network over the whole batch's candidates; the network
  with the higher ρ is the teacher of this step (:func:`choose_teacher`), and the labels are exactly
  ``assigner.assign_batch(..., predictions of the teacher)`` (its costs, already computed for ρ, are reused).
* ``"group"`` — the authors' released code: per (GT, pyramid level) group of candidates, the network with
  the higher σ/μ lends its costs (:func:`merge_costs_per_group`); one GMM per GT then splits the merged
  costs. Only σ/μ exists at this granularity, as in their code.

Degenerate inputs are handled as in PAA (:mod:`lad_edu.assign.paa`): a GT without candidates gets no
positive; a NaN or infinite GT coordinate, or prediction at a candidate anchor, is a ``ValueError`` naming
it (``predictions_1`` or ``predictions_2``).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from lad_edu.assign.interface import Predictions, check_batch
from lad_edu.assign.paa import PAAAssigner
from lad_edu.assign.result import AssignResult
from lad_edu.assign.switch import CRITERIA, choose_teacher, merge_costs_per_group

__all__ = ["CoLADAssigner", "CoLADChoice", "GRANULARITIES"]

GRANULARITIES = ("iteration", "group")


@dataclass(frozen=True)
class CoLADChoice:
    """Who taught this step.

    Attributes:
        teacher: 1 or 2 with ``"iteration"``; for ``"group"`` the network that lent most candidates.
        rho_1, rho_2: each network's ρ over the batch's candidates (NaN when there are fewer than two).
        share_2: the share of candidates whose costs came from network 2 (0 or 1 with ``"iteration"``).
    """

    teacher: int
    rho_1: float
    rho_2: float
    share_2: float

    def metrics(self) -> dict[str, float]:
        """The choice as training logs it: ``rho_1``, ``rho_2``, ``teacher_2`` (1.0 when network 2 taught),
        ``teacher_share_2``."""
        return {
            "rho_1": self.rho_1,
            "rho_2": self.rho_2,
            "teacher_2": float(self.teacher == 2),
            "teacher_share_2": self.share_2,
        }


class CoLADAssigner:
    """PAA's assignment from the costs of the better of two networks (see the module docstring).

    Args:
        assigner: the PAA rule (pre-assignment, cost, GMM split); default ``PAAAssigner()``.
        criterion: ``"std_mean"`` or ``"fisher"`` (ρ of :mod:`lad_edu.assign.switch`).
        granularity: ``"iteration"`` (the paper) or ``"group"`` (the authors' code; σ/μ only).
    """

    def __init__(
        self,
        assigner: PAAAssigner | None = None,
        criterion: str = "std_mean",
        granularity: str = "iteration",
    ):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if granularity == "group" and criterion != "std_mean":
            raise ValueError("the per-(GT, level) switch is defined for criterion 'std_mean' only")
        assigner = assigner if assigner is not None else PAAAssigner()
        if not isinstance(assigner, PAAAssigner):
            raise ValueError(
                f"assigner must be a PAAAssigner (CoLAD's ρ compares PAA's candidate costs, eq. 3), "
                f"got {type(assigner).__name__}"
            )
        self.assigner, self.criterion, self.granularity = assigner, criterion, granularity

    def __repr__(self) -> str:
        return (
            f"CoLADAssigner(criterion={self.criterion!r}, granularity={self.granularity!r}, "
            f"assigner={self.assigner!r})"
        )

    def assign_batch(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        predictions_1: Predictions,
        predictions_2: Predictions,
    ) -> tuple[list[AssignResult], CoLADChoice]:
        """Label a batch for both networks.

        Args:
            anchors: ``[N, 4]`` xyxy; num_level_anchors: anchors per level.
            gt_boxes, gt_labels: one ``[G_b, 4]`` and one ``[G_b]`` tensor per image.
            predictions_1, predictions_2: each network's predictions on the same anchors (costs are
                computed without gradients).

        Returns:
            One :class:`AssignResult` per image (the same labels train both networks) and the
            :class:`CoLADChoice` of this step.
        """
        check_batch(anchors, num_level_anchors, gt_boxes, gt_labels)
        paa = self.assigner
        candidates = paa.candidates(anchors, gt_boxes, gt_labels)
        costs_1 = paa.costs(candidates, gt_boxes, gt_labels, predictions_1, name="predictions_1")
        costs_2 = paa.costs(candidates, gt_boxes, gt_labels, predictions_2, name="predictions_2")
        if self.granularity == "iteration":
            teacher, rho_1, rho_2 = choose_teacher(costs_1, costs_2, self.criterion)
            costs, share_2 = (costs_2, 1.0) if teacher == 2 else (costs_1, 0.0)
        else:
            level_sizes = candidates.layout.level_sizes(num_level_anchors)
            costs, from_2 = merge_costs_per_group(
                costs_1, costs_2, candidates.anchor, candidates.gt, level_sizes
            )
            rho = CRITERIA[self.criterion]
            rho_1, rho_2 = rho(costs_1[None])[0], rho(costs_2[None])[0]
            share_2 = float(from_2.double().mean()) if len(from_2) else 0.0
            teacher = 2 if share_2 >= 0.5 else 1
        results = paa.assign_from_costs(candidates, costs, num_level_anchors, gt_labels)
        return results, CoLADChoice(teacher, float(rho_1), float(rho_2), share_2)
