"""CoLAD: two networks train together, and a criterion ρ decides whose costs assign the labels.

Co-learning LAD (paper section 3.4, Fig. 3) needs no pre-trained teacher: two networks learn at once and
switch the roles of teacher and student. The *performance indicator* ρ of a network is computed on the
assignment costs ``{c_i}`` it gives the pre-assigned candidates (eq. 3)::

    rho_std_mean = sigma / mu                                  (unbiased sigma)
    rho_fisher   = (mu+ - mu-)^2 / (sigma+^2 + sigma-^2)       (the two components of a 2-GMM on {c_i})

A higher ρ means costs that separate good from bad anchors more clearly, so that network teaches.

Two granularities exist, and they are not the same algorithm:

* :func:`choose_teacher` — **per iteration (the paper)**: ρ of each network over all the costs of the
  batch; the network with the higher ρ is the teacher for the whole step, and its costs alone assign.
* :func:`merge_costs_per_group` — **per (GT, pyramid level) group (the authors' released code,
  ``PAA_CoLAD_StdMean_Head``)**: for each GT and level, the candidates take the costs of the network with
  the higher σ/μ of that group (network 2 on a tie; a lone candidate takes the lower cost), and one GMM per
  GT is then fitted on the merged costs, which may mix both networks' costs. Only σ/μ exists there.
  :func:`group_choice` gives each group's decision with both networks' σ/μ.

Either way, the one resulting assignment trains both networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lad_edu.anchors import level_ids
from lad_edu.gmm import GMMFit, fit_gmm2

__all__ = [
    "rho_std_mean",
    "rho_fisher",
    "fisher_gmm",
    "choose_teacher",
    "GroupChoice",
    "group_choice",
    "merge_costs_per_group",
    "CRITERIA",
]


def _valid_or_all(costs: Tensor, valid: Tensor | None) -> Tensor:
    return torch.ones_like(costs, dtype=torch.bool) if valid is None else valid


def rho_std_mean(costs: Tensor, valid: Tensor | None = None) -> Tensor:
    """σ/μ of each group's costs (eq. 3, left), with the unbiased σ (``N - 1``, as ``torch.std``).

    Args:
        costs: ``[G, M]`` costs, one group per row (padded).
        valid: ``[G, M]`` bool, the entries that hold a cost (all by default).

    Returns:
        ``[G]``; NaN for a group of fewer than 2 costs.
    """
    valid = _valid_or_all(costs, valid)
    x = costs.double().where(valid, 0.0)
    n = valid.sum(dim=1)
    mean = x.sum(dim=1) / n
    var = ((x - mean[:, None]) ** 2).where(valid, 0.0).sum(dim=1) / (n - 1)
    rho = var.sqrt() / mean
    return torch.where(n >= 2, rho, float("nan")).to(costs.dtype)


def rho_fisher(costs: Tensor, valid: Tensor | None = None) -> Tensor:
    """Fisher score of each group's costs (eq. 3, right): ``(mu0 - mu1)^2 / (var0 + var1)`` of a 2-GMM.

    The mixture is PAA's (:func:`lad_edu.gmm.fit_gmm2`, sklearn's settings), fitted to all groups at once.

    Args:
        costs: ``[G, M]``; valid: ``[G, M]`` bool (all by default).

    Returns:
        ``[G]``; NaN for a group of fewer than 2 costs.
    """
    valid = _valid_or_all(costs, valid)
    fit = fisher_gmm(costs, valid)
    rho = (fit.means[:, 0] - fit.means[:, 1]) ** 2 / fit.variances.sum(dim=1)
    return torch.where(valid.sum(dim=1) >= 2, rho, float("nan")).to(costs.dtype)


def fisher_gmm(costs: Tensor, valid: Tensor | None = None) -> GMMFit:
    """The two-Gaussian mixture whose components :func:`rho_fisher` compares (eq. 3: ``G(mu+, sigma+) +
    G(mu-, sigma-)``), in float64; component 0 starts at the lowest cost.

    Args:
        costs: ``[G, M]``; valid: ``[G, M]`` bool (all by default).
    """
    valid = _valid_or_all(costs, valid)
    return fit_gmm2(costs.double().where(valid, 0.0), valid)


CRITERIA = {"std_mean": rho_std_mean, "fisher": rho_fisher}


def choose_teacher(
    costs_1: Tensor, costs_2: Tensor, criterion: str = "std_mean"
) -> tuple[int, Tensor, Tensor]:
    """The paper's per-iteration switch: which of two networks teaches this step.

    Args:
        costs_1: ``[K]`` network 1's costs on the batch's pre-assigned candidates.
        costs_2: ``[K']`` network 2's (usually the same candidates).
        criterion: ``"std_mean"`` or ``"fisher"``.

    Returns:
        ``(teacher, rho_1, rho_2)``: ``teacher`` is 1 or 2, the network with the higher ρ (2 on a tie).
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {sorted(CRITERIA)}, got {criterion!r}")
    rho = CRITERIA[criterion]
    rho_1, rho_2 = rho(costs_1[None])[0], rho(costs_2[None])[0]
    return (2 if bool(rho_2 >= rho_1) else 1), rho_1, rho_2


@dataclass(frozen=True)
class GroupChoice:
    """The per-(GT, level) switch group by group: what :func:`merge_costs_per_group` decides, and why.

    Group ``g = gt · L + level`` (``L`` levels); ids run up to the last group that has a candidate, so a
    group may be empty (``count`` 0, NaN means and ρ).

    Attributes:
        group: ``[K]`` long, each candidate's group.
        count: ``[S]`` long, candidates per group.
        rho_1, rho_2: ``[S]`` float64, σ/μ (unbiased σ) of each network's costs in the group; NaN for a
            group of fewer than 2.
        mean_1, mean_2: ``[S]`` float64, each network's mean cost in the group (a lone candidate's cost).
        second_wins: ``[S]`` bool, the groups that take network 2's costs.
        num_levels: ``L``.
    """

    group: Tensor
    count: Tensor
    rho_1: Tensor
    rho_2: Tensor
    mean_1: Tensor
    mean_2: Tensor
    second_wins: Tensor
    num_levels: int

    @property
    def gt(self) -> Tensor:
        """``[S]`` the 0-based GT of each group."""
        return torch.arange(len(self.count), device=self.count.device) // self.num_levels

    @property
    def level(self) -> Tensor:
        """``[S]`` the pyramid level of each group."""
        return torch.arange(len(self.count), device=self.count.device) % self.num_levels


def group_choice(
    costs_1: Tensor,
    costs_2: Tensor,
    candidate_anchor: Tensor,
    candidate_gt: Tensor,
    num_level_anchors: list[int],
) -> GroupChoice:
    """Which network lends its costs to each (GT, level) group of candidates (the authors' code).

    A group with >= 2 candidates takes network 2's costs when its σ/μ is at least network 1's; a lone
    candidate takes the network with the lower cost.

    Args:
        costs_1, costs_2: ``[K]`` each network's costs on the same candidates.
        candidate_anchor: ``[K]`` anchor index of each candidate; candidate_gt: ``[K]`` its 0-based GT.
        num_level_anchors: anchors per level.
    """
    num_levels = len(num_level_anchors)
    level = level_ids(num_level_anchors, device=costs_1.device)[candidate_anchor]
    group = candidate_gt * num_levels + level  # [K]
    num_groups = int(group.max()) + 1 if len(group) else 0
    count = torch.bincount(group, minlength=num_groups)

    def group_rho(costs: Tensor) -> tuple[Tensor, Tensor]:  # per group: σ/μ (unbiased) and mean
        x = costs.double()
        mean = torch.bincount(group, weights=x, minlength=num_groups) / count
        var = torch.bincount(group, weights=(x - mean[group]) ** 2, minlength=num_groups) / (count - 1)
        return var.sqrt() / mean, mean

    (rho_1, mean_1), (rho_2, mean_2) = group_rho(costs_1), group_rho(costs_2)
    second_wins = torch.where(count >= 2, rho_2 >= rho_1, mean_2 < mean_1)  # [num_groups]
    return GroupChoice(group, count, rho_1, rho_2, mean_1, mean_2, second_wins, num_levels)


def merge_costs_per_group(
    costs_1: Tensor,
    costs_2: Tensor,
    candidate_anchor: Tensor,
    candidate_gt: Tensor,
    num_level_anchors: list[int],
) -> tuple[Tensor, Tensor]:
    """The authors' per-(GT, level) switch: each group of candidates takes one network's costs.

    Each group's choice is :func:`group_choice`'s. Feed the merged costs to
    :func:`lad_edu.assign.paa.paa_reassign` (one GMM per GT over the merged candidates).

    Args:
        costs_1, costs_2: ``[K]`` each network's costs on the same candidates.
        candidate_anchor: ``[K]`` anchor index of each candidate; candidate_gt: ``[K]`` its 0-based GT.
        num_level_anchors: anchors per level.

    Returns:
        ``(costs [K], from_2 [K] bool)``: the merged costs, and which candidates took network 2's.
    """
    choice = group_choice(costs_1, costs_2, candidate_anchor, candidate_gt, num_level_anchors)
    from_2 = choice.second_wins[choice.group]
    return torch.where(from_2, costs_2, costs_1), from_2
