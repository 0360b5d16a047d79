"""CoLAD: two networks trained together, each step's labels decided by whichever is the better teacher.

Co-learning LAD (paper section 3.4, Fig. 2c) drops the pre-trained teacher. Two networks train side by
side; both score the same pre-assigned candidates with eq. 2, and the costs of the network that looks
more *decisive* decide the labels that train **both**. "Decisive" is a criterion ρ on the costs
(:mod:`lad_edu.assign.switch`): σ/μ, or the Fisher score of the two-component GMM.

Two granularities of the switch (see :mod:`lad_edu.assign.switch` for the functions):

* ``"iteration"`` — the paper's text: one ρ per network over the whole batch's candidates; the network
  with the higher ρ is the teacher of this step (:func:`choose_teacher`).
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

from lad_edu.assign.paa import PAAAssigner
from lad_edu.assign.result import AssignResult
from lad_edu.assign.switch import CRITERIA, choose_teacher, merge_costs_per_group

__all__ = ["CoLADAssigner", "CoLADChoice", "GRANULARITIES"]

GRANULARITIES = ("iteration", "group")


@dataclass
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


class CoLADAssigner:
    """PAA's assignment from the costs of the better of two networks (see the module docstring).

    Args:
        paa: the PAA rule (pre-assignment, cost, GMM split); default ``PAAAssigner()``.
        criterion: ``"std_mean"`` or ``"fisher"`` (ρ of :mod:`lad_edu.assign.switch`).
        granularity: ``"iteration"`` (the paper) or ``"group"`` (the authors' code; σ/μ only).
    """

    def __init__(
        self, paa: PAAAssigner | None = None, criterion: str = "std_mean", granularity: str = "iteration"
    ):
        if criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if granularity == "group" and criterion != "std_mean":
            raise ValueError("the per-(GT, level) switch is defined for criterion 'std_mean' only")
        self.paa = paa if paa is not None else PAAAssigner()
        self.criterion, self.granularity = criterion, granularity

    def __repr__(self) -> str:
        return (
            f"CoLADAssigner(criterion={self.criterion!r}, granularity={self.granularity!r}, paa={self.paa!r})"
        )

    def assign_batch(
        self,
        anchors: Tensor,
        num_level_anchors: list[int],
        gt_boxes: list[Tensor],
        gt_labels: list[Tensor],
        predictions_1: tuple[Tensor, Tensor],
        predictions_2: tuple[Tensor, Tensor],
    ) -> tuple[list[AssignResult], CoLADChoice]:
        """Label a batch for both networks.

        Args:
            anchors: ``[N, 4]`` xyxy; num_level_anchors: anchors per level.
            gt_boxes, gt_labels: one ``[G_b, 4]`` and one ``[G_b]`` tensor per image.
            predictions_1, predictions_2: each network's ``(cls_logits [B, N, C], pred_boxes [B, N, 4])``
                on the same anchors (costs are computed without gradients).

        Returns:
            One :class:`AssignResult` per image (the same labels train both networks) and the
            :class:`CoLADChoice` of this step.
        """
        candidates = self.paa.candidates(anchors, gt_boxes, gt_labels)
        costs_1, costs_2 = (
            self.paa.costs(
                candidates,
                gt_boxes,
                gt_labels,
                *predictions,
                names=(f"{name}[0] (cls_logits)", f"{name}[1] (pred_boxes)"),
            )
            for predictions, name in ((predictions_1, "predictions_1"), (predictions_2, "predictions_2"))
        )
        if self.granularity == "iteration":
            teacher, rho_1, rho_2 = choose_teacher(costs_1, costs_2, self.criterion)
            costs, share_2 = (costs_2, 1.0) if teacher == 2 else (costs_1, 0.0)
        else:
            level_sizes = num_level_anchors * len(gt_boxes)  # level ids differ by image, as in PAA's batch
            costs, from_2 = merge_costs_per_group(
                costs_1, costs_2, candidates.anchor, candidates.gt, level_sizes
            )
            rho = CRITERIA[self.criterion]
            rho_1, rho_2 = rho(costs_1[None])[0], rho(costs_2[None])[0]
            share_2 = float(from_2.double().mean()) if len(from_2) else 0.0
            teacher = 2 if share_2 >= 0.5 else 1
        results = self.paa.assign_from_costs(candidates, costs, num_level_anchors, gt_labels)
        return results, CoLADChoice(teacher, float(rho_1), float(rho_2), share_2)
