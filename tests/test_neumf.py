"""NeuMF (rdlib.models.neumf): shapes, DE-RRD Table 3 parameter counts, scoring, loss, fit."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from rdlib.config import RunConfig
from rdlib.data.synthetic import synthetic_interactions
from rdlib.models import MODELS, build_model
from rdlib.models.neumf import NeuMF, neumf_n_parameters
from rdlib.protocols import loo_sampled
from rdlib.training import fit

CITEULIKE_USERS, CITEULIKE_ITEMS = 5220, 25182
TABLE3 = {200: 15.33e6, 100: 7.63e6, 20: 1.52e6}  # DE-RRD Table 3, CiteULike NeuMF


def _model(n_layers: int = 1, width_ratio: float = 1.25, loss_type: str = "bpr",
           seed: int = 0) -> NeuMF:
    torch.manual_seed(seed)
    m = NeuMF(7, 23, 8, n_layers=n_layers, width_ratio=width_ratio, loss_type=loss_type,
              init_std=0.5, chunk_pairs=5)
    with torch.no_grad():  # non-zero biases so that they are exercised
        for p in m.parameters():
            if p.dim() == 1:
                p.normal_()
    return m.double()


@torch.no_grad()
def _score_loop(m: NeuMF, u: int, i: int) -> float:
    """NeuMF logit of one (user, item) pair written out from the definition."""
    uu, ii = torch.tensor(u), torch.tensor(i)
    gmf = m.user_gmf(uu) * m.item_gmf(ii)
    h = torch.cat([m.user_mlp(uu), m.item_mlp(ii)])
    for lin in m.tower:
        h = torch.relu(lin.weight @ h + lin.bias)
    return float(m.final.weight[0] @ torch.cat([gmf, h]) + m.final.bias[0])


@pytest.mark.parametrize("dim", [200, 100, 20])
def test_parameter_count_matches_deRRD_table3(dim):
    n = neumf_n_parameters(CITEULIKE_USERS, CITEULIKE_ITEMS, dim)
    assert abs(n - TABLE3[dim]) / TABLE3[dim] < 0.01
    assert round(n / 1e4) / 100 == pytest.approx(TABLE3[dim] / 1e6)  # equal after rounding
    if dim <= 100:  # building the φ=1.0 model also works (< 1 s) but is not needed
        m = NeuMF(CITEULIKE_USERS, CITEULIKE_ITEMS, dim)
        assert m.n_parameters() == n


@pytest.mark.parametrize("n_layers,ratio", [(1, 1.25), (3, 1.0), (0, 1.25), (2, 0.5)])
def test_analytic_count_equals_module(n_layers, ratio):
    m = NeuMF(11, 13, 16, n_layers=n_layers, width_ratio=ratio)
    assert m.n_parameters() == neumf_n_parameters(11, 13, 16, width_ratio=ratio,
                                                  n_layers=n_layers)


def test_architecture_shapes():
    m = NeuMF(7, 23, 8)  # d_b = 10, tower 20 → 10, final 10 + 10 → 1
    assert m.d_b == 10
    assert [tuple(lin.weight.shape) for lin in m.tower] == [(10, 20)]
    assert tuple(m.final.weight.shape) == (1, 20)
    m3 = NeuMF(7, 23, 16, width_ratio=1.0, n_layers=3)  # 32 → 16 → 8 → 4
    assert [tuple(lin.weight.shape) for lin in m3.tower] == [(16, 32), (8, 16), (4, 8)]
    assert tuple(m3.final.weight.shape) == (1, 20)
    users = torch.tensor([0, 3, 6])
    assert m.user_repr(users).shape == (3, 20)
    assert m.item_repr(torch.tensor([[1, 2], [3, 4], [5, 6]])).shape == (3, 2, 20)
    assert torch.equal(m.user_repr(users)[:, :10], m.user_gmf(users))
    assert torch.equal(m.item_repr(users)[:, 10:], m.item_mlp(users))
    assert m.score_pairs(users, torch.tensor([[1, 2], [3, 4], [5, 6]])).shape == (3, 2)
    assert m.score_users(users).shape == (3, 23)


@pytest.mark.parametrize("n_layers,ratio", [(1, 1.25), (3, 1.0), (0, 1.0)])
def test_scores_match_definition_and_each_other(n_layers, ratio):
    m = _model(n_layers, ratio)
    users = torch.tensor([0, 4, 6, 4])
    items = torch.tensor([[0, 22, 5], [1, 1, 9], [17, 3, 2], [8, 0, 21]])
    with torch.no_grad():
        pairs = m.score_pairs(users, items)  # (4, 3)
        full = m.score_users(users)  # (4, 23)
    assert torch.allclose(pairs, torch.gather(full, 1, items), atol=1e-10)
    for b in range(4):
        for c in range(3):
            assert pairs[b, c].item() == pytest.approx(
                _score_loop(m, int(users[b]), int(items[b, c])), abs=1e-10)
    assert full[1, 11].item() == pytest.approx(_score_loop(m, 4, 11), abs=1e-10)


@pytest.mark.parametrize("loss_type", ["bpr", "bce"])
def test_loss_equals_brute_force(loss_type):
    m = _model(loss_type=loss_type)
    users, pos, neg = torch.tensor([0, 2, 2, 6]), torch.tensor([1, 5, 7, 22]), \
        torch.tensor([3, 4, 0, 9])
    expected = 0.0
    for u, i, j in zip(users.tolist(), pos.tolist(), neg.tolist(), strict=True):
        si, sj = _score_loop(m, u, i), _score_loop(m, u, j)
        if loss_type == "bpr":
            expected += -float(F.logsigmoid(torch.tensor(si - sj, dtype=torch.float64)))
        else:
            expected += -float(F.logsigmoid(torch.tensor(si, dtype=torch.float64))) \
                - float(F.logsigmoid(torch.tensor(-sj, dtype=torch.float64)))
    assert m.loss(users, pos, neg).item() == pytest.approx(expected, rel=1e-10)
    assert m.loss(users, pos, neg, reduction="mean").item() == pytest.approx(expected / 4,
                                                                             rel=1e-10)
    with pytest.raises(ValueError):
        m.loss(users, pos, neg, reduction="none")


def test_registry_and_validation():
    assert MODELS["neumf"] is NeuMF
    m = build_model("neumf", 5, 9, 4, n_layers=1)
    assert isinstance(m, NeuMF) and m.n_users == 5 and m.n_items == 9 and m.d_b == 5
    with pytest.raises(ValueError):
        NeuMF(5, 9, 0)
    with pytest.raises(ValueError):
        NeuMF(5, 9, 4, loss_type="mse")
    with pytest.raises(ValueError):
        NeuMF(5, 9, 4, n_layers=5)  # 10 >> 5 == 0
    with pytest.raises(ValueError, match=r"unknown options \['dropout'\] for model 'neumf'"):
        build_model("neumf", 5, 9, 4, dropout=0.1)
    assert build_model("bpr", 5, 9, 4, init_std=0.1).user_emb.weight.std() > 0.05


def test_model_options_reach_the_model_and_keep_old_run_ids():
    """``RunConfig.model_options`` is hashed only when set, so stored run ids stay valid."""
    plain = RunConfig(dataset="synthetic", model="neumf")
    bce = RunConfig(dataset="synthetic", model="neumf", model_options={"loss_type": "bce"})
    assert "model_options" not in plain.hash_dict() and plain.run_id != bce.run_id
    m = build_model(bce.model, 5, 9, 4, **bce.model_options)
    assert m.loss_type == "bce"


def test_fit_one_epoch():
    split = loo_sampled(synthetic_interactions(n_users=60, n_items=120, per_user=10), seed=0,
                        n_negatives=20)
    cfg = RunConfig(dataset="synthetic", epochs=1, patience=0, progress=False,
                    n_eval_negatives=20)
    torch.manual_seed(0)
    m = NeuMF(split.n_users, split.n_items, 8)
    before = copy.deepcopy(m.state_dict())
    out = fit(m, split.train, split.n_items, cfg, evaluate=None)
    assert out.epochs_run == 1
    for name in ("user_gmf.weight", "item_mlp.weight", "tower.0.weight", "final.weight"):
        assert not torch.equal(before[name], m.state_dict()[name]), name
    u = torch.tensor(split.train[:32, 0])
    loss = m.loss(u, torch.tensor(split.train[:32, 1]), (u * 7) % split.n_items)
    assert torch.isfinite(loss)


def test_score_pairs_per_item_path_equals_per_pair_path():
    """More pairs than items (evaluation) takes the per-item first layer; same logits and
    gradients as the per-pair path (forced here by comparing against a one-row-at-a-time
    call, which always has fewer pairs than items)."""
    m = _model()  # 7 users, 23 items
    users = torch.tensor([0, 1, 2, 3, 4, 5, 6])
    items = torch.randint(0, 23, (7, 5), generator=torch.Generator().manual_seed(1))  # 35 > 23
    fast = m.score_pairs(users, items)  # per-item path
    slow = torch.cat([m.score_pairs(users[b:b + 1], items[b:b + 1]) for b in range(7)])
    assert torch.allclose(fast, slow, atol=1e-6)
    g_fast = torch.autograd.grad(fast.sum(), m.tower[0].weight)[0]
    g_slow = torch.autograd.grad(slow.sum(), m.tower[0].weight)[0]
    assert torch.allclose(g_fast, g_slow, atol=1e-6)
