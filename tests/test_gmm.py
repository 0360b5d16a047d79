"""fit_gmm2 against one sklearn GaussianMixture per group, with PAA's settings; degenerate groups; checks."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

import lad_edu.gmm
from lad_edu.gmm import fit_gmm2

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(params=["numpy", "torch"])
def backend(request, monkeypatch):
    """On CPU the arithmetic runs in numpy; "torch" makes it take the torch path, the one CUDA takes."""
    if request.param == "torch":
        monkeypatch.setattr(lad_edu.gmm, "_NUMPY_DTYPES", ())
    return request.param


def sklearn_gmm(values, tol=1e-3, max_iter=100):
    """The per-GT fit of MMDetection's PAA, on one group's values."""
    x = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    gmm = GaussianMixture(
        n_components=2,
        covariance_type="diag",
        weights_init=[0.5, 0.5],
        means_init=[[x.min()], [x.max()]],
        precisions_init=[[1.0], [1.0]],
        reg_covar=1e-6,
        tol=tol,
        max_iter=max_iter,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter reached, on purpose in some tests
        gmm.fit(x)
    return gmm


def pack(groups, width=None, rng=None, fill=math.nan):
    """``[G, width]`` float64 values and bool mask: group ``g`` in row ``g``, as a prefix, or at random
    positions when ``rng`` is given; padding holds ``fill``. Returns ``(values, mask, positions)``."""
    width = max([len(g) for g in groups] + [0]) if width is None else width
    values = torch.full((len(groups), width), fill, dtype=torch.float64)
    mask = torch.zeros(len(groups), width, dtype=torch.bool)
    positions = []
    for row, group in enumerate(groups):
        pos = np.arange(len(group)) if rng is None else np.sort(rng.permutation(width)[: len(group)])
        values[row, pos] = torch.as_tensor(np.asarray(group, dtype=np.float64))
        mask[row, pos] = True
        positions.append(torch.as_tensor(pos, dtype=torch.long))
    return values, mask, positions


def random_groups(rng):
    """About 60 groups like PAA's: up to 45 costs each, of the kinds that matter."""
    groups = []
    for _ in range(9):
        n = int(rng.integers(4, 46))
        groups.append(np.r_[rng.normal(0.6, 0.2, n // 2), rng.normal(3.0, 0.5, n - n // 2)])  # bimodal
        groups.append(rng.normal(2.0, 0.7, int(rng.integers(4, 46))))  # unimodal
        groups.append(rng.uniform(0.0, 5.0, int(rng.integers(2, 4))))  # tiny: n = 2, 3
        groups.append(np.r_[rng.normal(1.0, 0.1, int(rng.integers(3, 40))), rng.uniform(20, 60)])  # outlier
        groups.append(rng.gamma(2.0, 0.6, int(rng.integers(5, 46))))  # PAA-like costs, 0..~5
        groups.append(np.round(rng.uniform(0.0, 5.0, int(rng.integers(2, 46))), 1))  # many ties
    # all equal, two points, and a component that collapses onto repeated values
    groups += [
        np.full(2, 2.5),
        np.full(7, 0.0),
        np.full(45, 1.3),
        np.array([1.0, 4.0]),
        np.array([0.0, 0.0, 5.0]),
    ]
    return groups


def assert_matches_sklearn(fit, values, mask, positions, groups, tol=1e-3, max_iter=100):
    predicted, scores = fit.predict(values, mask), fit.score_samples(values, mask)
    assert (predicted[~mask] == -1).all() and (scores[~mask] == -math.inf).all()
    for g, group in enumerate(groups):
        ref = sklearn_gmm(group, tol=tol, max_iter=max_iter)
        x = np.asarray(group, dtype=np.float64).reshape(-1, 1)
        np.testing.assert_allclose(
            fit.weights[g].numpy(), ref.weights_, rtol=1e-9, atol=1e-11, err_msg=f"{g}"
        )
        np.testing.assert_allclose(
            fit.means[g].numpy(), ref.means_[:, 0], rtol=1e-9, atol=1e-11, err_msg=f"{g}"
        )
        np.testing.assert_allclose(
            fit.variances[g].numpy(), ref.covariances_[:, 0], rtol=1e-8, atol=1e-13, err_msg=f"{g}"
        )
        # log-likelihoods: a component collapsed onto equal values has precision ~1e6, and the expanded
        # squared distance mu^2 p - 2 x mu p + x^2 p of both sides cancels to ~1e-9 there.
        np.testing.assert_allclose(fit.lower_bound[g].item(), ref.lower_bound_, rtol=1e-9, atol=1e-8)
        np.testing.assert_allclose(
            scores[g, positions[g]].numpy(), ref.score_samples(x), rtol=1e-9, atol=1e-8
        )
        assert predicted[g, positions[g]].tolist() == ref.predict(x).tolist(), g
        assert fit.n_iter[g].item() == ref.n_iter_, g
        assert fit.converged[g].item() == ref.converged_, g


@pytest.mark.parametrize("scattered", [False, True], ids=["prefix", "scattered"])
@pytest.mark.parametrize("tol, max_iter", [(1e-3, 100), (0.0, 1), (0.0, 6)])
def test_batched_fit_matches_sklearn_per_group(scattered, tol, max_iter, backend):
    """tol = 0 never converges, so the parameters after exactly 1 and 6 (E, M) pairs are compared too."""
    rng = np.random.default_rng(0)
    groups = random_groups(rng)
    values, mask, positions = pack(groups, width=50, rng=rng if scattered else None)
    fit = fit_gmm2(values, mask, tol=tol, max_iter=max_iter)
    assert_matches_sklearn(fit, values, mask, positions, groups, tol=tol, max_iter=max_iter)
    if tol > 0:  # the groups really stop on their own: not all after the same number of iterations
        assert fit.converged.all() and len(set(fit.n_iter.tolist())) > 3


@st.composite
def value_groups(draw):
    """1-4 groups of 2-20 values on a 0.01 grid in [0, 5] (ties and collapsed components included)."""
    n_groups = draw(st.integers(1, 4))
    return [
        np.array(draw(st.lists(st.integers(0, 500), min_size=2, max_size=20))) / 100.0
        for _ in range(n_groups)
    ]


@settings(max_examples=40, deadline=None)
@given(groups=value_groups(), seed=st.integers(0, 2**16))
def test_predict_matches_sklearn_property(groups, seed):
    values, mask, positions = pack(groups, width=24, rng=np.random.default_rng(seed), fill=math.inf)
    fit = fit_gmm2(values, mask)
    predicted = fit.predict(values, mask)
    for g, group in enumerate(groups):
        ref = sklearn_gmm(group)
        x = group.reshape(-1, 1)
        np.testing.assert_allclose(fit.means[g].numpy(), ref.means_[:, 0], rtol=1e-9, atol=1e-11)
        # A value (almost) halfway between two components may go either way on rounding: skip those.
        clear = np.abs(ref.predict_proba(x)[:, 0] - 0.5) > 1e-7
        assert (predicted[g, positions[g]].numpy() == ref.predict(x))[clear].all()


def test_degenerate_groups_give_the_documented_result(backend):
    groups = [[], [3.0], [2.5] * 4, [0.4, 0.6, 0.5, 3.0, 3.2]]
    values, mask, _ = pack(groups, width=6)
    fit = fit_gmm2(values, mask)

    # n == 0: defaults, no EM
    assert fit.weights[0].tolist() == [0.5, 0.5] and fit.means[0].tolist() == [0.0, 0.0]
    assert fit.variances[0].tolist() == [1.0, 1.0] and fit.lower_bound[0].item() == 0.0
    assert fit.n_iter[0].item() == 0 and fit.converged[0].item()
    # n == 1 and all equal: two identical components on the value, variance ~ reg_covar, converged at 3
    for g, value in [(1, 3.0), (2, 2.5)]:
        assert fit.weights[g].tolist() == [0.5, 0.5]
        assert fit.means[g, 0].item() == fit.means[g, 1].item() == pytest.approx(value, rel=1e-14)
        assert fit.variances[g, 0].item() == fit.variances[g, 1].item() == pytest.approx(1e-6, rel=1e-6)
        assert fit.n_iter[g].item() == 3 and fit.converged[g].item()
    # all equal, n >= 2: exactly what sklearn does
    ref = sklearn_gmm(groups[2])
    np.testing.assert_allclose(fit.means[2].numpy(), ref.means_[:, 0], rtol=1e-14)
    np.testing.assert_allclose(fit.variances[2].numpy(), ref.covariances_[:, 0], rtol=1e-9)
    assert fit.lower_bound[2].item() == pytest.approx(ref.lower_bound_, rel=1e-12)

    predicted, scores = fit.predict(values, mask), fit.score_samples(values, mask)
    assert predicted[:3].tolist() == [[-1] * 6, [0] + [-1] * 5, [0] * 4 + [-1] * 2]
    assert torch.isfinite(scores[mask]).all() and (scores[~mask] == -math.inf).all()
    for tensor in (fit.weights, fit.means, fit.variances, fit.lower_bound):
        assert torch.isfinite(tensor).all()


def test_sklearn_refuses_a_single_value():
    """Why n == 1 needs a definition of its own (MMDetection's PAA crashes here, issue #4152)."""
    with pytest.raises(ValueError, match="minimum of 2 is required"):
        sklearn_gmm([3.0])


def test_large_equal_values_stay_finite(backend):
    """43 copies of 123456.7: E[x^2] - mu^2 rounds to ~ -x^2 eps < -reg_covar (sklearn, with its BLAS,
    raises "ill-defined empirical covariance" here); the variance stays positive and all go to 0."""
    values = torch.full((1, 43), 123456.7, dtype=torch.float64)
    mask = torch.ones_like(values, dtype=torch.bool)
    fit = fit_gmm2(values, mask)
    assert (fit.variances > 0).all() and torch.isfinite(fit.variances).all()
    assert fit.means[0].tolist() == pytest.approx([123456.7] * 2, rel=1e-14)
    assert fit.converged.item() and (fit.predict(values, mask) == 0).all()
    assert torch.isfinite(fit.score_samples(values, mask)).all()


def test_a_group_fitted_in_a_batch_equals_it_fitted_alone(backend):
    rng = np.random.default_rng(1)
    groups = [[], [3.0], [2.5] * 4] + random_groups(rng)[:12] + [[], [0.7]]
    values, mask, _ = pack(groups, width=46, rng=rng)
    batch = fit_gmm2(values, mask)
    for g in range(len(groups)):
        alone = fit_gmm2(values[g : g + 1], mask[g : g + 1])
        for name in ("weights", "means", "variances", "lower_bound"):
            torch.testing.assert_close(
                getattr(batch, name)[g : g + 1], getattr(alone, name), rtol=1e-12, atol=1e-12
            )
        assert batch.n_iter[g] == alone.n_iter[0] and batch.converged[g] == alone.converged[0]
        assert torch.equal(
            batch.predict(values, mask)[g : g + 1], alone.predict(values[g : g + 1], mask[g : g + 1])
        )


@pytest.mark.parametrize("shape", [(0, 5), (3, 0), (0, 0)])
def test_empty_inputs(shape, backend):
    fit = fit_gmm2(torch.zeros(shape), torch.zeros(shape, dtype=torch.bool))
    assert fit.means.shape == (shape[0], 2) and fit.n_iter.shape == (shape[0],)
    assert fit.converged.all() and (fit.n_iter == 0).all()
    assert fit.predict(torch.zeros(shape), torch.zeros(shape, dtype=torch.bool)).shape == shape


def test_max_iter_zero_returns_the_initial_parameters(backend):
    values, mask, _ = pack([[1.0, 2.0, 4.0], [0.5, 0.5]])
    fit = fit_gmm2(values, mask, max_iter=0)
    assert fit.means.tolist() == [[1.0, 4.0], [0.5, 0.5]]
    assert (fit.weights == 0.5).all() and (fit.variances == 1.0).all()
    assert (fit.n_iter == 0).all() and not fit.converged.any()


def test_dtype_argument(backend):
    groups = [[0.1, 0.2, 0.15, 3.0, 3.1, 2.9], [1.0, 1.1, 4.0]]
    values, mask, _ = pack(groups)
    fit64 = fit_gmm2(values.float(), mask)  # float32 input, float64 computation by default
    fit32 = fit_gmm2(values, mask, dtype=torch.float32)
    assert (
        fit64.means.dtype == torch.float64 and fit32.means.dtype == fit32.lower_bound.dtype == torch.float32
    )
    torch.testing.assert_close(fit32.means, fit64.means.float(), rtol=1e-5, atol=1e-5)
    assert torch.equal(fit32.predict(values, mask), fit64.predict(values, mask))


def test_predict_and_score_is_predict_and_score_samples(backend):
    rng = np.random.default_rng(4)
    values, mask, _ = pack([[], [3.0]] + random_groups(rng)[:12], width=46, rng=rng)
    fit = fit_gmm2(values, mask)
    component, score = fit.predict_and_score(values, mask)
    assert torch.equal(component, fit.predict(values, mask))
    assert torch.equal(score, fit.score_samples(values, mask))


def test_numpy_and_torch_paths_agree(monkeypatch):
    """The same arithmetic on both (see the module docstring), but for the summation order of the batched
    matmul: the tolerances of the CUDA test below."""
    rng = np.random.default_rng(3)
    groups = [[], [3.0], [2.5] * 4] + random_groups(rng)
    values, mask, _ = pack(groups, width=50, rng=rng)
    in_numpy = fit_gmm2(values, mask)
    in_numpy_predict, in_numpy_score = in_numpy.predict(values, mask), in_numpy.score_samples(values, mask)
    monkeypatch.setattr(lad_edu.gmm, "_NUMPY_DTYPES", ())
    in_torch = fit_gmm2(values, mask)
    for name in ("weights", "means", "variances"):
        torch.testing.assert_close(getattr(in_torch, name), getattr(in_numpy, name), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(in_torch.lower_bound, in_numpy.lower_bound, rtol=1e-9, atol=1e-8)
    assert torch.equal(in_torch.n_iter, in_numpy.n_iter) and torch.equal(
        in_torch.converged, in_numpy.converged
    )
    assert torch.equal(in_torch.predict(values, mask), in_numpy_predict)
    torch.testing.assert_close(in_torch.score_samples(values, mask), in_numpy_score, rtol=1e-9, atol=1e-8)
    for fit in (in_numpy, in_torch):  # ordinary tensors, whichever path made them
        assert all(not t.is_inference() for t in (fit.weights, fit.means, fit.n_iter, fit.lower_bound))


@pytest.mark.parametrize(
    "values, mask, kwargs, match",
    [
        (torch.zeros(5), torch.ones(5, dtype=torch.bool), {}, "2-D"),
        (torch.zeros(2, 3, 1), torch.ones(2, 3, 1, dtype=torch.bool), {}, "2-D"),
        (
            torch.zeros(2, 3, dtype=torch.long),
            torch.ones(2, 3, dtype=torch.bool),
            {},
            "floating-point tensor",
        ),
        (np.zeros((2, 3)), torch.ones(2, 3, dtype=torch.bool), {}, "torch.Tensor"),
        (torch.zeros(2, 3), torch.ones(2, 3), {}, "mask must be a bool tensor"),
        (torch.zeros(2, 3), torch.ones(2, 4, dtype=torch.bool), {}, "mask shape"),
        (
            torch.zeros(2, 3),
            torch.ones(2, 3, dtype=torch.bool),
            {"dtype": torch.int64},
            "floating-point dtype",
        ),
        (torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), {"tol": -1.0}, "tol"),
        (torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), {"reg_covar": 0.0}, "reg_covar"),
        (torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.bool), {"max_iter": -1}, "max_iter"),
        (torch.tensor([[1.0, math.nan]]), torch.ones(1, 2, dtype=torch.bool), {}, "finite"),
        (torch.tensor([[1.0, math.inf]]), torch.ones(1, 2, dtype=torch.bool), {}, "finite"),
    ],
)
def test_invalid_inputs_raise_value_error(values, mask, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_gmm2(values, mask, **kwargs)


def test_predict_checks_its_inputs():
    values, mask, _ = pack([[1.0, 2.0], [3.0, 4.0]])
    fit = fit_gmm2(values, mask)
    with pytest.raises(ValueError, match="groups"):
        fit.predict(values[:1], mask[:1])
    with pytest.raises(ValueError, match="mask shape"):
        fit.score_samples(values, mask[:, :1])
    with pytest.raises(ValueError, match="2-D"):
        fit.log_prob(values[0])


@CUDA
def test_cuda_matches_cpu():
    rng = np.random.default_rng(2)
    groups = [[], [3.0], [2.5] * 4] + random_groups(rng)
    values, mask, _ = pack(groups, width=50, rng=rng)
    cpu = fit_gmm2(values, mask)
    gpu = fit_gmm2(values.cuda(), mask.cuda())
    assert gpu.means.device.type == "cuda" and gpu.n_iter.device.type == "cuda"
    for name in ("weights", "means", "variances"):
        torch.testing.assert_close(getattr(gpu, name).cpu(), getattr(cpu, name), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(gpu.lower_bound.cpu(), cpu.lower_bound, rtol=1e-9, atol=1e-8)
    assert torch.equal(gpu.n_iter.cpu(), cpu.n_iter) and torch.equal(gpu.converged.cpu(), cpu.converged)
    assert torch.equal(gpu.predict(values.cuda(), mask.cuda()).cpu(), cpu.predict(values, mask))
    torch.testing.assert_close(
        gpu.score_samples(values.cuda(), mask.cuda()).cpu(),
        cpu.score_samples(values, mask),
        rtol=1e-9,
        atol=1e-8,
    )
