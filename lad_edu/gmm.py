"""A two-component 1-D Gaussian mixture fitted by EM, batched over groups, on torch tensors.

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

**Speed tricks.** The plain algorithm is the loop above, one group at a time. It runs for all groups at
once, and four tricks make that fast; each is named again where it sits:

* *numpy on CPU* (:func:`_arrays`, :func:`_namespace`): the arithmetic is written once, against the array
  operations numpy and torch share (operators, ``exp``, ``log``, ``where``, ``@``, ``sum(axis=...)``), and
  runs in numpy on the memory of CPU tensors (no copy), in torch elsewhere (CUDA, or a dtype numpy lacks).
  EM on PAA's groups is ~20 iterations of ~40 operations on arrays of a few hundred values: the time goes
  into the per-call overhead of each operation, ~1 µs in numpy against ~4 µs in torch on CPU.
* *stopped groups leave* (:func:`_em`): a group that stops is written out and dropped from the arrays,
  which shrinks the work of the few groups that run long (most of PAA's stop after 3 iterations).
* *the M-step as one matmul* (:func:`_fit`, :func:`_em`): each value's ``(1, x, x^2)`` is stacked once,
  and responsibilities ``@`` that stack gives every sum the M-step needs.
* *a two-term logsumexp, written out* (:func:`_log_sum_exp`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["GMMFit", "fit_gmm2"]

_LOG_2PI = math.log(2 * math.pi)
_NUMPY_DTYPES = (torch.float32, torch.float64, torch.bool, torch.int64)


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
        (x,) = _arrays(values.to(self.means.dtype))
        return _tensor(self._log_prob(x)).transpose(1, 2)

    def predict(self, values: Tensor, mask: Tensor) -> Tensor:
        """``[G, M]`` long: the most probable component of each valid value, -1 on padding.

        Args:
            values: ``[G, M]`` float values.
            mask: ``[G, M]`` bool, True where ``values`` holds a value; padding may hold anything.
        """
        return _tensor(_most_probable(*self._valid_log_prob(values, mask)))

    def score_samples(self, values: Tensor, mask: Tensor) -> Tensor:
        """``[G, M]`` log-density ``log p(x)`` of each valid value under its group's mixture, -inf on padding.

        Args:
            values: ``[G, M]`` float values.
            mask: ``[G, M]`` bool, True where ``values`` holds a value; padding may hold anything.
        """
        return _tensor(_log_density(*self._valid_log_prob(values, mask)))

    def predict_and_score(self, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`predict` and :meth:`score_samples` together, from one evaluation of the log-densities (what
        PAA needs of its mixtures)."""
        mask, log_prob = self._valid_log_prob(values, mask)
        return _tensor(_most_probable(mask, log_prob)), _tensor(_log_density(mask, log_prob))

    def _valid_log_prob(self, values: Tensor, mask: Tensor) -> tuple:
        """``mask`` and the ``[G, 2, M]`` log-probabilities, as arrays; padding is replaced by 0 first, so
        that whatever it holds stays harmless."""
        _check_values(values, self.means.shape[0], self.means.device)
        _check_mask(values, mask)
        x, mask = _arrays(values.to(self.means.dtype), mask)
        return mask, self._log_prob(_namespace(x).where(mask, x, 0.0))

    def _log_prob(self, x):
        """:meth:`log_prob` of the array ``x [G, M]``, as a ``[G, 2, M]`` array."""
        weights, means, variances = (a[:, :, None] for a in _arrays(self.weights, self.means, self.variances))
        x = x[:, None, :]
        return _weighted_log_prob(x, x * x, weights, means, variances)


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
    group = torch.arange(len(values), device=values.device)
    with torch.inference_mode():  # the torch path: no autograd bookkeeping
        fit = _fit(*_arrays(values.to(dtype), mask, group), tol=tol, reg_covar=reg_covar, max_iter=max_iter)
    # numpy's arrays become tensors on their memory; torch's are cloned outside inference mode, so that
    # callers get ordinary tensors (in-place ops, autograd)
    return GMMFit(*(torch.from_numpy(a) if isinstance(a, np.ndarray) else a.clone() for a in fit))


def _fit(values, mask, group, *, tol: float, reg_covar: float, max_iter: int) -> tuple:
    """:func:`fit_gmm2` on arrays (numpy or torch): ``values`` and ``mask [G, N]``, ``group [G]`` the
    indices ``0 .. G - 1``. Returns the fields of a :class:`GMMFit`."""
    xp = _namespace(values)
    x = xp.where(mask, values, 0.0)  # padding -> 0: finite, and out of every sum below
    if not xp.isfinite(x).all():
        raise ValueError("values must be finite where mask is True")
    valid = xp.ones_like(x) * mask  # 1 on values, 0 on padding
    # the trick *the M-step as one matmul*: [G, 3, N] per-value (1, x, x^2), zero on padding, so that one
    # batched matmul gives the M-step sums
    moments = xp.stack((valid, x, x * x), axis=1)
    n = valid.sum(axis=1)  # [G] number of values
    empty = n == 0
    if x.shape[1]:  # amin/amax refuse an empty dimension
        low, high = (
            xp.amin(xp.where(mask, x, math.inf), axis=1),
            xp.amax(xp.where(mask, x, -math.inf), axis=1),
        )
    else:
        low = high = n  # zeros
    means = xp.where(empty[:, None], 0.0, xp.stack((low, high), axis=1))
    weights = xp.full_like(means, 0.5)
    variances = xp.ones_like(means)  # precisions_init = 1 -> precisions_cholesky = sqrt(1), no reg_covar
    n_iter = xp.zeros_like(group)
    converged = empty  # an empty group takes no step
    lower_bound = xp.zeros_like(n)
    lower_bound[~empty] = -math.inf
    _em(moments, group, weights, means, variances, n_iter, converged, lower_bound, tol, reg_covar, max_iter)
    return weights, means, variances, n_iter, converged, lower_bound


def _em(moments, group, weights, means, variances, n_iter, converged, lower_bound, tol, reg_covar, max_iter):
    """The EM iterations (see the module docstring) on arrays, writing each group's result in place.

    Args:
        moments: ``[G, 3, N]`` per-value (1, x, x^2), 0 on padding; group: ``[G]`` the indices ``0 .. G - 1``.
        weights, means, variances: ``[G, 2]`` the initial parameters, overwritten by the final ones.
        n_iter: ``[G]`` zeros; converged: ``[G]`` the groups that take no step (the empty ones);
            lower_bound: ``[G]`` 0 for those, -inf for the others. All three are filled in.
    """
    xp = _namespace(moments)
    nk_eps = 10 * float((np.finfo if xp is np else torch.finfo)(moments.dtype).eps)  # sklearn's 10 eps
    # the trick *stopped groups leave*: the groups still running, A of them, leave these arrays on the
    # iteration they stop
    run = ~converged
    group, moments, bound = group[run], moments[run], lower_bound[run]
    w, mu, var = weights[run][:, :, None], means[run][:, :, None], variances[run][:, :, None]  # [A, 2, 1]
    n = moments[:, 0].sum(axis=1)  # [A]
    for step in range(1, max_iter + 1):
        if not len(group):
            break
        valid, x, x_sq = moments[:, :1], moments[:, 1:2], moments[:, 2:]  # [A, 1, N] each
        # E-step (sklearn's _estimate_log_prob_resp).
        weighted = _weighted_log_prob(x, x_sq, w, mu, var)  # [A, 2, N]
        log_norm = _log_sum_exp(weighted)  # [A, 1, N] log p(x)
        resp = xp.exp(weighted - log_norm)
        new_bound = (log_norm * valid).sum(axis=2)[:, 0] / n  # mean log-likelihood over the valid values
        # M-step (_estimate_gaussian_parameters, diag): E[x^2] - mean^2, not E[(x - mean)^2].
        sums = resp @ moments.swapaxes(1, 2)  # [A, 2, 3]: sum_i r_ik (1, x_i, x_i^2)
        nk = sums[:, :, :1] + nk_eps  # [A, 2, 1]
        w = nk / (nk[:, :1] + nk[:, 1:])
        averages = sums[:, :, 1:] / nk  # [A, 2, 2]: (mean, E[x^2]) per component
        mu = averages[:, :, :1]
        var = averages[:, :, 1:] - mu**2 + reg_covar
        var = xp.where(var > 0, var, reg_covar)  # where sklearn raises "ill-defined empirical covariance"
        # Tested after the M-step on this E-step's bound: sklearn's order, one M-step past convergence.
        done = xp.abs(new_bound - bound) < tol
        bound = new_bound
        last = step == max_iter  # every group left stops, not converged
        if last or done.any():  # write out the groups that stop here, go on with the others
            stop = done | last
            stopped = group[stop]
            weights[stopped], means[stopped], variances[stopped] = (a[stop, :, 0] for a in (w, mu, var))
            n_iter[stopped], converged[stopped], lower_bound[stopped] = step, done[stop], bound[stop]
            go_on = ~stop
            group, moments, n, w, mu, var, bound = (a[go_on] for a in (group, moments, n, w, mu, var, bound))


def _weighted_log_prob(x, x_sq, weights, means, variances):
    """``log w_k + log N(x | mu_k, var_k)``: ``[G, 2, M]`` arrays for ``x`` and ``x_sq = x^2`` ``[G, 1, M]``
    and parameters ``[G, 2, 1]`` (numpy or torch).

    sklearn's ``_estimate_log_gaussian_prob`` for "diag", in its order of operations: the precision ``p``
    comes from its Cholesky factor ``1 / sqrt(var)``, and the squared distance is expanded as
    ``mu^2 p - 2 x mu p + x^2 p`` with every product rounded on its own (no fused multiply-add). The terms
    cancel where a component has collapsed (``p ~ 1e6``), and only sklearn's rounding gives sklearn's
    result. Here each term is scaled by ``-1/2`` before the sum: a power of two, so the sum is exactly
    ``-1/2`` times sklearn's.
    """
    xp = _namespace(x)
    precision_chol = 1.0 / xp.sqrt(variances)
    precision = precision_chol**2
    minus_half_p = -0.5 * precision
    half_sq_dist = (means**2 * minus_half_p + x * (means * precision)) + x_sq * minus_half_p
    return (xp.log(weights * precision_chol) - 0.5 * _LOG_2PI) + half_sq_dist


def _most_probable(mask, log_prob):
    """:meth:`GMMFit.predict` on arrays: ``mask [G, M]``, ``log_prob [G, 2, M]``."""
    # argmax takes the first maximum, as numpy's: ties (identical components) go to component 0.
    return _namespace(mask).where(mask, log_prob.argmax(axis=1), -1)


def _log_density(mask, log_prob):
    """:meth:`GMMFit.score_samples` on arrays: ``mask [G, M]``, ``log_prob [G, 2, M]``."""
    return _namespace(mask).where(mask, _log_sum_exp(log_prob)[:, 0], -math.inf)


def _log_sum_exp(weighted):
    """``log(exp(weighted_0) + exp(weighted_1))``: ``[G, 1, M]`` for ``weighted [G, 2, M]``.

    The trick *a two-term logsumexp, written out*: sklearn's ``_logsumexp`` (after scipy's) for two terms,
    ``max + log1p(exp(min - max))`` (numpy's ``logaddexp`` does not vectorise: ~15 ns a value).
    """
    xp = _namespace(weighted)
    first, second = weighted[:, :1], weighted[:, 1:]
    top = xp.maximum(first, second)
    return top + xp.log1p(xp.exp(xp.minimum(first, second) - top))


def _arrays(*tensors: Tensor) -> tuple:
    """The tensors as numpy arrays on their memory where they live on the CPU in a dtype numpy has, else
    as they are.

    The trick *numpy on CPU* (module docstring): every function below :func:`fit_gmm2` takes numpy
    arrays or torch tensors alike and asks :func:`_namespace` which module's functions to call; numpy's
    per-operation overhead is ~4x lower than torch's on the small arrays of EM.
    """
    if all(t.device.type == "cpu" and t.dtype in _NUMPY_DTYPES for t in tensors):
        return tuple(t.detach().numpy() for t in tensors)
    return tensors


def _tensor(array) -> Tensor:
    """The inverse of :func:`_arrays`: a tensor on the array's memory."""
    return torch.from_numpy(array) if isinstance(array, np.ndarray) else array


def _namespace(array):
    """The module whose functions apply to ``array``: numpy or torch (their names agree where used here)."""
    return np if isinstance(array, np.ndarray) else torch


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
