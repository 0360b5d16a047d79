"""A two-component 1-D Gaussian mixture fitted by EM, batched over groups, in torch.

PAA (Kim & Lee, ECCV 2020) models the assignment costs of each GT's candidate anchors as a mixture of
two Gaussians, a low-cost ("positive") component and a high-cost ("negative") one. MMDetection fits one
``sklearn.mixture.GaussianMixture`` per GT in a Python loop; :func:`fit_gmm2` fits every GT of an image
(or of a batch) in one call, on the input's device, and reproduces, group by group, sklearn's::

    GaussianMixture(n_components=2, covariance_type="diag", weights_init=[0.5, 0.5],
                    means_init=[[min], [max]], precisions_init=[[1.0], [1.0]],
                    reg_covar=1e-6, tol=1e-3, max_iter=100)

(in float64: parameters to ~1e-13 and identical ``predict``; log-likelihoods to ~1e-9 where a component
has collapsed to ``var ~ reg_covar``, as the expanded squared distance below cancels there). For the valid
values ``x_1 .. x_n`` of a group, starting from ``w = (1/2, 1/2)``, ``mu = (min x, max x)``, ``var = (1, 1)``
(``precisions_init = 1``; no ``reg_covar`` at initialisation), iteration ``t = 1, 2, ...`` is::

    E-step  log p(x_i) = logsumexp_k [log w_k + log N(x_i | mu_k, var_k)]
            r_ik       = exp(log w_k + log N(x_i | mu_k, var_k) - log p(x_i))      (responsibilities)
            L_t        = (1/n) sum_i log p(x_i)                                    (the "lower bound")
    M-step  n_k = sum_i r_ik + 10 eps          w_k = n_k / (n_0 + n_1)
            mu_k = sum_i r_ik x_i / n_k         var_k = sum_i r_ik x_i^2 / n_k - mu_k^2 + reg_covar
    stop    if |L_t - L_{t-1}| < tol (L_0 = -inf), or after max_iter iterations.

As in sklearn, the test looks at the bound of the E-step *before* the M-step just done, so the result
carries one M-step more than the converged bound; ``n_iter`` counts the (E, M) pairs done. Every group stops
on its own test: a converged group's parameters freeze while the others go on, and the loop ends when all
groups have stopped. ``predict`` and ``score_samples`` use the final parameters.

Degenerate groups never raise (sklearn raises for the first two and the last; MMDetection's PAA crashes,
mmdetection issue #4152):

* ``n == 0``: no EM at all; ``w = (1/2, 1/2)``, ``mu = (0, 0)``, ``var = (1, 1)``, ``n_iter = 0``,
  ``converged = True``, ``lower_bound = 0`` (an empty sum); nothing to predict.
* ``n == 1``: the same EM, which is well defined: both components start on the value and stay identical,
  ``w = (1/2, 1/2)``, ``mu_k = x`` (to the ``10 eps`` in ``n_k``), ``var_k ~= reg_covar``; converged
  after 3 iterations.
* all values equal, ``n >= 2``: sklearn fits these, and this matches it: the same collapsed result.
  Its variance is ``reg_covar`` plus the rounding noise of ``E[x^2] - mu^2``, of order ``x^2 eps``, which
  depends on the order of summation (sklearn's BLAS differs): ~1e-9 of ``reg_covar`` at ``|x| ~ 1``,
  ~1e-4 at ``|x| ~ 1e3``.
* a variance that rounds to ``<= 0`` in the M-step (sklearn: "ill-defined empirical covariance"; that
  noise can outweigh ``reg_covar`` for equal values of ``|x| >~ 7e4``) is replaced by ``reg_covar``.

When the two components are identical, every sample ties and ``predict`` gives component 0 (the one
started at the minimum: for PAA, all candidates are equally good and all are positive), as sklearn's
``argmax`` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GMMFit", "fit_gmm2"]

_LOG_2PI = math.log(2 * math.pi)
# exp() arguments are clamped here: exp(-700) ~ 1e-304 is still a normal float64, and anything smaller
# only adds < 1e-300 to sums that carry sklearn's 10 eps ~ 2e-15 (subnormal results are slow on CPU).
_LOG_RESP_MIN = -700.0


@dataclass
class GMMFit:
    """The mixtures of ``G`` groups; component 0 is the one initialised at the group's minimum.

    Attributes:
        weights: ``[G, 2]`` mixture weights (each row sums to 1).
        means: ``[G, 2]`` component means.
        variances: ``[G, 2]`` component variances, ``reg_covar`` included (sklearn's ``covariances_``).
        n_iter: ``[G]`` long, EM iterations done (sklearn's ``n_iter_``; 0 for an empty group).
        converged: ``[G]`` bool, whether the group met the ``tol`` test before ``max_iter``.
        lower_bound: ``[G]`` mean log-likelihood at the last E-step (sklearn's ``lower_bound_``).
    """

    weights: Tensor
    means: Tensor
    variances: Tensor
    n_iter: Tensor
    converged: Tensor
    lower_bound: Tensor

    def log_prob(self, values: Tensor) -> Tensor:
        """``[G, M, 2]`` weighted log-density ``log w_k + log N(x | mu_k, var_k)`` of every value.

        Args:
            values: ``[G, M]`` float values (any ``M``, every entry is evaluated; padding is not masked).
        """
        _check_values(values, self.means.shape[0], self.means.device)
        x = values.to(self.means.dtype).unsqueeze(2)
        return _weighted_log_prob(x, x * x, self.weights, self.means, self.variances)

    def predict(self, values: Tensor, mask: Tensor) -> Tensor:
        """``[G, M]`` long: the most probable component of each valid value, -1 on padding.

        Args:
            values: ``[G, M]`` float values.
            mask: ``[G, M]`` bool, True where ``values`` holds a value; padding may hold anything.
        """
        log_prob = self._valid_log_prob(values, mask)
        # argmax takes the first maximum, as numpy's: ties (identical components) go to component 0.
        return torch.where(mask, log_prob.argmax(dim=2), -1)

    def score_samples(self, values: Tensor, mask: Tensor) -> Tensor:
        """``[G, M]`` log-density ``log p(x)`` of each valid value under its group's mixture, -inf on padding.

        Args:
            values: ``[G, M]`` float values.
            mask: ``[G, M]`` bool, True where ``values`` holds a value; padding may hold anything.
        """
        log_prob = self._valid_log_prob(values, mask)
        return torch.where(mask, torch.logaddexp(log_prob[..., 0], log_prob[..., 1]), -torch.inf)

    def _valid_log_prob(self, values: Tensor, mask: Tensor) -> Tensor:
        """:meth:`log_prob` with padding replaced by 0 first, so that whatever it holds stays harmless."""
        _check_values(values, self.means.shape[0], self.means.device)
        _check_mask(values, mask)
        return self.log_prob(torch.where(mask, values, 0.0))


def fit_gmm2(
    values: Tensor,
    mask: Tensor,
    *,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    max_iter: int = 100,
    dtype: torch.dtype = torch.float64,
) -> GMMFit:
    """Fit a two-component 1-D Gaussian mixture to each group of values, all groups at once.

    Args:
        values: ``[G, N]`` float, the values of group ``g`` in row ``g``; valid values must be finite.
        mask: ``[G, N]`` bool, True where ``values`` holds a value (any positions, not only a prefix);
            padding may hold anything, NaN included.
        tol: stop a group when its mean log-likelihood changes by less than this.
        reg_covar: added to every variance in the M-step; must be positive.
        max_iter: at most this many EM iterations per group (0 returns the initial parameters).
        dtype: floating dtype of the computation and of the result (float64 to match sklearn).

    Returns:
        A :class:`GMMFit` on ``values.device``, tensors of ``dtype``.
    """
    _check_values(values, None, None)
    _check_mask(values, mask)
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if not reg_covar > 0:
        raise ValueError(f"reg_covar must be > 0 (it keeps collapsed components finite), got {reg_covar}")
    if not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}")
    x = torch.where(mask, values.to(dtype), 0.0)  # padding -> 0: finite, and masked out of every sum
    if not bool(torch.isfinite(x).all()):
        raise ValueError("values must be finite where mask is True")

    groups, max_n = x.shape
    valid = mask.to(dtype)
    n = valid.sum(dim=1)
    empty = n == 0
    if max_n:  # amin/amax refuse an empty dimension
        low = torch.where(mask, x, torch.inf).amin(dim=1)
        high = torch.where(mask, x, -torch.inf).amax(dim=1)
        means = torch.where(empty.unsqueeze(1), 0.0, torch.stack((low, high), dim=1))
    else:
        means = x.new_zeros(groups, 2)
    weights = torch.full_like(means, 0.5)
    variances = torch.ones_like(means)  # precisions_init = 1 -> precisions_cholesky = sqrt(1), no reg_covar
    params = torch.stack((weights, means, variances), dim=1)  # [G, 3, 2]: one tensor, one freeze per step
    lower_bound = torch.full_like(n, -torch.inf).masked_fill(empty, 0.0)

    with torch.inference_mode():  # no autograd bookkeeping in the loop: ~20% faster on small groups
        params, n_iter, converged, lower_bound = _em(
            x, valid, params, lower_bound, empty, tol, reg_covar, max_iter
        )
    # cloned outside inference mode, so that callers get ordinary tensors (in-place ops, autograd)
    weights, means, variances = params.clone().unbind(dim=1)
    return GMMFit(weights, means, variances, n_iter.clone(), converged.clone(), lower_bound.clone())


def _em(
    x: Tensor,
    valid: Tensor,
    params: Tensor,
    lower_bound: Tensor,
    converged: Tensor,
    tol: float,
    reg_covar: float,
    max_iter: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The EM iterations of :func:`fit_gmm2` (see the module docstring).

    Args:
        x: ``[G, N]`` values, 0 on padding; valid: ``[G, N]`` 1.0 / 0.0.
        params: ``[G, 3, 2]`` initial (weights, means, variances); lower_bound: ``[G]``; converged: ``[G]``
            bool, the groups that take no step (the empty ones).

    Returns:
        The final ``params``, ``n_iter [G]``, ``converged [G]`` and ``lower_bound [G]``.
    """
    n = valid.sum(dim=1).clamp(min=1)
    x = x.unsqueeze(2)  # [G, N, 1]
    x_sq = x * x
    # [G, N, 3] per-value (1, x, x^2), zero on padding: one batched matmul gives the M-step sums.
    moments = torch.cat((valid.unsqueeze(2), x * valid.unsqueeze(2), x_sq * valid.unsqueeze(2)), dim=2)
    nk_eps = 10 * torch.finfo(x.dtype).eps  # sklearn adds 10 eps to n_k: an empty component stays finite
    was_active = []  # per iteration, which groups took it: n_iter is their sum (no per-step dtype casts)
    for _ in range(max_iter):
        if bool(converged.all()):
            break
        # E-step (sklearn's _estimate_log_prob_resp).
        weighted = _weighted_log_prob(x, x_sq, params[:, 0], params[:, 1], params[:, 2])  # [G, N, 2]
        log_norm = torch.logaddexp(weighted[..., 0], weighted[..., 1])  # [G, N]
        resp = torch.exp((weighted - log_norm.unsqueeze(2)).clamp(min=_LOG_RESP_MIN))
        new_bound = torch.linalg.vecdot(log_norm, valid) / n  # mean log-likelihood over the valid values
        # M-step (_estimate_gaussian_parameters, diag): E[x^2] - mean^2, not E[(x - mean)^2].
        sums = torch.bmm(resp.transpose(1, 2), moments)  # [G, 2, 3]: sum_i r_ik (1, x_i, x_i^2)
        nk = sums[..., 0] + nk_eps  # [G, 2]
        averages = sums[..., 1:] / nk.unsqueeze(2)  # [G, 2, 2]: (mean, E[x^2]) per component
        new_means = averages[..., 0]
        new_vars = averages[..., 1] - new_means**2 + reg_covar
        new_vars = torch.where(new_vars > 0, new_vars, reg_covar)  # where sklearn raises "ill-defined"
        new_params = torch.stack((nk / nk.sum(dim=1, keepdim=True), new_means, new_vars), dim=1)

        active = ~converged
        was_active.append(active)
        params = torch.where(active[:, None, None], new_params, params)
        # Tested after the M-step on this E-step's bound: sklearn's order, one M-step past convergence.
        converged = converged | ((new_bound - lower_bound).abs() < tol)  # a converged group stays so
        lower_bound = torch.where(active, new_bound, lower_bound)
    n_iter = (
        torch.stack(was_active).sum(dim=0) if was_active else torch.zeros_like(converged, dtype=torch.long)
    )
    return params, n_iter, converged, lower_bound


def _weighted_log_prob(x: Tensor, x_sq: Tensor, weights: Tensor, means: Tensor, variances: Tensor) -> Tensor:
    """``log w_k + log N(x | mu_k, var_k)``: ``[G, M, 2]`` for ``x``, ``x_sq = x^2`` ``[G, M, 1]``.

    sklearn's ``_estimate_log_gaussian_prob`` for "diag", in its order of operations: the precision ``p``
    comes from its Cholesky factor ``1 / sqrt(var)``, and the squared distance is expanded as
    ``mu^2 p - 2 x mu p + x^2 p`` with every product rounded on its own (no fused multiply-add). The terms
    cancel where a component has collapsed (``p ~ 1e6``), and only sklearn's rounding gives sklearn's result.
    """
    precision_chol = 1.0 / torch.sqrt(variances)
    precision = precision_chol**2
    cross = x * (-2.0 * means * precision).unsqueeze(1)  # == -(2 (x mu p)) exactly: scaling by 2 is exact
    sq_dist = (means**2 * precision).unsqueeze(1) + cross + x_sq * precision.unsqueeze(1)
    log_terms = torch.log(precision_chol) + torch.log(weights) - 0.5 * _LOG_2PI  # [G, 2]
    return torch.add(log_terms.unsqueeze(1), sq_dist, alpha=-0.5)


def _check_values(values: Tensor, groups: int | None, device: torch.device | None) -> None:
    if not isinstance(values, Tensor):
        raise ValueError(f"values must be a torch.Tensor, got {type(values).__name__}")
    if values.dim() != 2:
        raise ValueError(f"values must be 2-D [groups, max_n], got shape {tuple(values.shape)}")
    if not values.is_floating_point():
        raise ValueError(f"values must be a floating-point tensor, got {values.dtype}")
    if groups is not None and values.shape[0] != groups:
        raise ValueError(f"values has {values.shape[0]} groups (rows), the fit has {groups}")
    if device is not None and values.device != device:
        raise ValueError(f"values are on {values.device}, the fit is on {device}")


def _check_mask(values: Tensor, mask: Tensor) -> None:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise ValueError(f"mask must be a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from values shape {tuple(values.shape)}")
    if mask.device != values.device:
        raise ValueError(f"mask is on {mask.device}, values on {values.device}")
