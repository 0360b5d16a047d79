import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from lad_edu.assign.paa import paa_reassign
from lad_edu.assign.switch import choose_teacher, merge_costs_per_group, rho_fisher, rho_std_mean


def random_groups(seed=0, groups=12, width=20):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, width + 1, groups)
    costs = np.zeros((groups, width))
    valid = np.zeros((groups, width), dtype=bool)
    for g, n in enumerate(lengths):
        costs[g, :n] = np.r_[rng.normal(0.5, 0.2, n // 2), rng.normal(2.5, 0.5, n - n // 2)].clip(0.01)
        valid[g, :n] = True
    return costs, valid


def test_rho_std_mean_against_numpy():
    costs, valid = random_groups()
    rho = rho_std_mean(torch.from_numpy(costs), torch.from_numpy(valid))
    expected = [costs[g, valid[g]].std(ddof=1) / costs[g, valid[g]].mean() for g in range(len(costs))]
    np.testing.assert_allclose(rho.numpy(), expected, rtol=1e-12)


def test_rho_fisher_against_sklearn_and_numpy():
    costs, valid = random_groups(seed=1)
    rho = rho_fisher(torch.from_numpy(costs), torch.from_numpy(valid))
    for g in range(len(costs)):
        x = costs[g, valid[g]].reshape(-1, 1)
        gmm = GaussianMixture(
            2,
            covariance_type="diag",
            weights_init=[0.5, 0.5],
            means_init=[[x.min()], [x.max()]],
            precisions_init=[[1.0], [1.0]],
        ).fit(x)
        m, v = gmm.means_[:, 0], gmm.covariances_[:, 0]
        assert rho[g].item() == pytest.approx((m[0] - m[1]) ** 2 / (v[0] + v[1]), rel=1e-8)


def test_rho_of_a_lone_cost_is_nan():
    costs = torch.tensor([[1.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    valid = torch.tensor([[True, True, False], [True, False, False]])
    assert rho_std_mean(costs, valid)[1].isnan() and rho_fisher(costs, valid)[1].isnan()
    assert not rho_std_mean(costs, valid)[0].isnan()


@pytest.mark.parametrize("criterion", ["std_mean", "fisher"])
def test_per_iteration_switch_picks_the_network_that_separates_its_costs(criterion):
    separated = torch.tensor([0.2, 0.25, 0.3, 2.0, 2.1, 2.2, 2.3, 2.4])  # a clear low-cost group
    flat = torch.tensor([1.0, 1.1, 1.05, 1.2, 0.95, 1.15, 1.1, 1.0])  # nothing stands out
    assert choose_teacher(separated, flat, criterion)[0] == 1
    assert choose_teacher(flat, separated, criterion)[0] == 2
    with pytest.raises(ValueError, match="criterion"):
        choose_teacher(flat, flat, "entropy")


def test_per_group_switch_takes_each_groups_more_spread_network():
    # GT 0: level 0 anchors 0-2, level 1 anchors 4-5; GT 1: level 0 anchor 3 alone
    candidate_anchor = torch.tensor([0, 1, 2, 4, 5, 3])
    candidate_gt = torch.tensor([0, 0, 0, 0, 0, 1])
    num_level_anchors = [4, 2]
    costs_1 = torch.tensor([0.1, 1.0, 2.0, 1.0, 1.1, 0.9])  # GT 0 level 0: spread (1 wins); level 1: flat
    costs_2 = torch.tensor([1.0, 1.1, 1.2, 0.1, 2.0, 0.5])  # level 1: spread (2 wins); GT 1: lower cost
    merged, from_2 = merge_costs_per_group(
        costs_1, costs_2, candidate_anchor, candidate_gt, num_level_anchors
    )
    assert from_2.tolist() == [False, False, False, True, True, True]
    torch.testing.assert_close(merged, torch.tensor([0.1, 1.0, 2.0, 0.1, 2.0, 0.5]))
    # the merged costs then go through one GMM per GT
    assert paa_reassign(merged, candidate_anchor, candidate_gt, num_level_anchors, 2).shape == (6,)
