"""DE, RRD and the teacher top-k lists (rdlib.kd): formulas, sampling, schedules, smoke runs."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rdlib.config import RunConfig
from rdlib.data.synthetic import synthetic_interactions
from rdlib.kd import (
    RRD,
    DistillationExperts,
    DistillerSum,
    cached_teacher_topk,
    gumbel_temperature,
    one_expert_hidden,
    relaxed_ranking_loss,
    relaxed_ranking_loss_naive,
    teacher_topk,
)
from rdlib.models import BPRMF
from rdlib.protocols import loo_sampled
from rdlib.training import fit


def _pl_brute(lst: list[float], rest: list[float]) -> float:
    """−Σ_k [s_k − log(Σ_{l≥k} e^{s_l} + Σ_j e^{r_j})] with Python loops."""
    total = 0.0
    for k in range(len(lst)):
        denom = sum(math.exp(lst[m]) for m in range(k, len(lst)))
        denom += sum(math.exp(r) for r in rest)
        total -= lst[k] - math.log(denom)
    return total


def _problem(n_users: int = 30, n_items: int = 80, per_user: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    train = np.array([(u, i) for u in range(n_users)
                      for i in rng.choice(n_items, per_user, replace=False)], dtype=np.int64)
    torch.manual_seed(seed)
    teacher = BPRMF(n_users, n_items, 16, init_std=0.5)
    return train, teacher


# ------------------------------------------------------------------------------ RRD loss

@pytest.mark.parametrize("b,k,n_un", [(1, 1, 1), (4, 5, 7), (3, 40, 40), (2, 6, 0)])
def test_stable_rrd_loss_equals_naive(b, k, n_un):
    g = torch.Generator().manual_seed(b * 100 + k + n_un)
    s = torch.randn(b, k, generator=g, dtype=torch.float64) * 3
    u = torch.randn(b, n_un, generator=g, dtype=torch.float64) * 3
    stable, naive = relaxed_ranking_loss(s, u), relaxed_ranking_loss_naive(s, u)
    assert stable.shape == (b,)
    assert torch.allclose(stable, naive, rtol=1e-10, atol=1e-10)
    for row in range(b):
        assert stable[row].item() == pytest.approx(_pl_brute(s[row].tolist(), u[row].tolist()))


def test_stable_rrd_loss_finite_where_naive_overflows():
    g = torch.Generator().manual_seed(1)
    s, u = torch.randn(3, 10, generator=g), torch.randn(3, 12, generator=g)
    big_s, big_u = s + 1000.0, u + 1000.0  # float32 exp overflows
    assert not torch.isfinite(relaxed_ranking_loss_naive(big_s, big_u)).all()
    stable = relaxed_ranking_loss(big_s, big_u)
    assert torch.isfinite(stable).all()
    # Plackett–Luce is shift-invariant: the stable value equals the unshifted one
    assert torch.allclose(stable, relaxed_ranking_loss(s, u), atol=1e-2)


def test_interesting_only_loss_is_plackett_luce():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(4, 7, generator=g, dtype=torch.float64)
    got = relaxed_ranking_loss(s)
    for row in range(4):
        assert got[row].item() == pytest.approx(_pl_brute(s[row].tolist(), []))


# ------------------------------------------------------------------------------ RRD sampling

def test_rrd_sampling_respects_sets_and_order():
    train, teacher = _problem()
    top = teacher_topk(teacher, train, 30, 80, k=25)
    rrd = RRD(top, train, 80, K=8, L=12, T=3.0, top_n=20, seed=3)
    train_sets = [set(train[train[:, 0] == u, 1].tolist()) for u in range(30)]
    for epoch in range(3):
        rrd.start_epoch(epoch, teacher)
        assert rrd.interesting.shape == (30, 8) and rrd.uninteresting.shape == (30, 12)
        for u in range(30):
            row = top[u, :20].tolist()
            inter = rrd.interesting[u].tolist()
            assert set(inter) <= set(row) and len(set(inter)) == 8
            ranks = [row.index(i) for i in inter]
            assert ranks == sorted(ranks)  # teacher order
            unint = rrd.uninteresting[u].tolist()
            assert len(set(unint)) == 12
            assert not set(unint) & (train_sets[u] | set(row))
            assert all(0 <= i < 80 for i in unint)
    other = RRD(top, train, 80, K=8, L=12, T=3.0, top_n=20, seed=4)
    other.start_epoch(0, teacher)
    rrd2 = RRD(top, train, 80, K=8, L=12, T=3.0, top_n=20, seed=3)
    rrd2.start_epoch(0, teacher)
    first = RRD(top, train, 80, K=8, L=12, T=3.0, top_n=20, seed=3)
    first.start_epoch(0, teacher)
    assert torch.equal(first.interesting, rrd2.interesting)  # seeded
    assert not torch.equal(first.uninteresting, other.uninteresting)


def test_rrd_top_sampling_uses_teacher_top_k():
    train, teacher = _problem()
    top = teacher_topk(teacher, train, 30, 80, k=20)
    rrd = RRD(top, train, 80, K=5, L=4, top_n=20, sampling="top")
    rrd.start_epoch(0, teacher)
    assert torch.equal(rrd.interesting, top[:, :5])


def test_rank_sampling_follows_exponential_weights():
    n_users, n_items, top_n, T = 2000, 40, 30, 1.0
    train = np.stack([np.arange(n_users), np.zeros(n_users, dtype=np.int64)], 1)
    top = torch.arange(1, top_n + 1).expand(n_users, -1)  # rank r ↦ item r
    rrd = RRD(top, train, n_items, K=1, L=0, T=T, top_n=top_n, seed=0)
    counts = torch.zeros(top_n)
    for _ in range(10):
        counts += torch.bincount(rrd.sample_positions()[:, 0], minlength=top_n)
    ratio = counts[0] / counts[1]
    assert ratio == pytest.approx(math.e ** (1 / T), rel=0.1)
    assert counts[0] / counts.sum() == pytest.approx(1 - math.exp(-1 / T), abs=0.02)
    # with K > 1 the draw is without replacement: K distinct sorted positions
    rrd3 = RRD(top, train, n_items, K=5, L=0, T=T, top_n=top_n, seed=0)
    pos = rrd3.sample_positions()
    assert (pos[:, 1:] > pos[:, :-1]).all()


def test_uninteresting_sampling_is_roughly_uniform():
    n_items = 30
    train = np.array([[0, 0], [0, 1]], dtype=np.int64)
    top = torch.tensor([[2, 3, 4, 5]])
    rrd = RRD(top, train, n_items, K=2, L=5, top_n=4, seed=0)
    counts = torch.zeros(n_items)
    for _ in range(600):
        counts += torch.bincount(rrd.sample_uninteresting()[0], minlength=n_items)
    assert counts[:6].sum() == 0
    expected = 600 * 5 / 24  # 125 per eligible item
    assert ((counts[6:] - expected).abs() < 0.35 * expected).all()


def test_uninteresting_sampling_redraws_short_rows():
    n_items, n_users = 40, 50
    heavy = [(0, i) for i in range(30)]  # user 0: 30 training items + 4 top → 6 eligible
    light = [(u, 0) for u in range(1, n_users)]
    train = np.array(heavy + light, dtype=np.int64)
    top = torch.tensor([[30, 31, 32, 33]] + [[1, 2, 3, 4]] * (n_users - 1))
    rrd = RRD(top, train, n_items, K=2, L=5, top_n=4, seed=0)
    for _ in range(20):
        unint = rrd.sample_uninteresting()  # (U, 5)
        assert set(unint[0].tolist()) < set(range(34, 40)) and len(set(unint[0].tolist())) == 5
        assert (unint[1:] >= 5).all()
        assert (unint.sort(1).values.diff(dim=1) > 0).all()


def test_rrd_rejects_impossible_sizes():
    train, teacher = _problem(n_items=30)
    top = teacher_topk(teacher, train, 30, 30, k=20)
    with pytest.raises(ValueError, match="items outside"):
        RRD(top, train, 30, K=5, L=10, top_n=20)
    with pytest.raises(ValueError, match="needs the teacher"):
        RRD(top, train, 30, K=5, L=2, top_n=20, variant="full")


@pytest.mark.parametrize("variant", ["relaxed", "full", "interesting_only"])
def test_rrd_loss_variants_against_brute_force(variant):
    train, teacher = _problem()
    top = teacher_topk(teacher, train, 30, 80, k=20)
    rrd = RRD(top, train, 80, lmbda=0.5, K=6, L=5, top_n=20, variant=variant,
              teacher=teacher, seed=1)
    rrd.start_epoch(0, teacher)
    torch.manual_seed(5)
    student = BPRMF(30, 80, 8, init_std=0.5)
    users = torch.tensor([3, 7, 3, 0, 7, 29])  # duplicates count once
    got = rrd.loss(student, users, users, users, 0)
    S = student.score_users(torch.arange(30)).detach().double()  # (U, I)
    T = teacher.score_users(torch.arange(30)).detach()
    want = 0.0
    for u in (0, 3, 7, 29):
        inter = [S[u, i].item() for i in rrd.interesting[u]]
        unint_items = rrd.uninteresting[u].tolist()
        if variant == "full":
            tv = [T[u, i].item() for i in unint_items]
            assert tv == sorted(tv, reverse=True)  # ranked by teacher score
            want += _pl_brute(inter + [S[u, i].item() for i in unint_items], [])
        elif variant == "interesting_only":
            want += _pl_brute(inter, [])
        else:
            want += _pl_brute(inter, [S[u, i].item() for i in unint_items])
    assert got.item() == pytest.approx(0.5 * want, rel=1e-5)
    got.backward()
    assert student.user_emb.weight.grad is not None


# ------------------------------------------------------------------------------ DE

def _de(selection: str = "gumbel", n_experts: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    tu, ti = torch.randn(10, 12), torch.randn(15, 12)
    de = DistillationExperts(tu, ti, 6, n_experts=n_experts, lmbda=0.3, selection=selection,
                             seed=seed)
    student = BPRMF(10, 15, 6, init_std=0.3)
    return de, student, tu, ti


def _expert_loop(experts, x: torch.Tensor) -> list[torch.Tensor]:
    """Every expert's output for one entity, by explicit per-expert matrix products."""
    outs = []
    for m in range(experts.w1.shape[0]):
        h = torch.relu(x @ experts.w1[m] + experts.b1[m])
        outs.append(h @ experts.w2[m] + experts.b2[m])
    return outs


def test_de_loss_equals_brute_force():
    de, student, tu, ti = _de()
    de.start_epoch(301, student)  # τ = 10^-3
    users, pos, neg = torch.tensor([1, 4, 1, 9]), torch.tensor([2, 2, 3, 7]), torch.tensor(
        [3, 0, 0, 0])
    state = de._generator(torch.device("cpu")).get_state()
    got = de.loss(student, users, pos, neg, 301)
    gen = torch.Generator().manual_seed(0)
    gen.set_state(state)
    want = 0.0
    for ids, experts, gate, t_emb, emb, w in (
            ([1, 4, 9], de.user_experts, de.user_gate, tu, student.user_emb, 1.0),
            ([2, 3, 7], de.item_experts, de.item_gate, ti, student.item_emb, 0.5),
            ([0, 3], de.item_experts, de.item_gate, ti, student.item_emb, 0.5)):
        noise = torch.rand((len(ids), 4), generator=gen)  # same draw order as the module
        for r, e in enumerate(ids):
            alpha = torch.softmax(gate(t_emb[e]), -1)
            g = -torch.log(-torch.log(noise[r] + 1e-20) + 1e-20)
            s = torch.softmax((torch.log(alpha + 1e-10) + g) / de.temperature(301), -1)
            outs = _expert_loop(experts, emb.weight[e])
            rec = sum(s[m] * outs[m] for m in range(4))
            want += w * ((t_emb[e] - rec) ** 2).sum().item()
    assert got.item() == pytest.approx(0.3 * want, rel=1e-4)


@pytest.mark.parametrize("tau", [1e-3, 1e-1, 1.0])
def test_sparse_expert_mixture_equals_dense_with_gradients(tau):
    """The sparse path (only non-zero selection weights, grouped per expert) gives the dense
    path's output and the same gradients for the student, the experts and the gate."""
    torch.manual_seed(3)
    d_t, d_s, n_exp = 16, 5, 8
    de = DistillationExperts(torch.randn(40, d_t), torch.randn(3, d_t), d_s, n_experts=n_exp)
    de.tau = tau
    x = torch.randn(40, d_s, requires_grad=True)
    results = []
    for sparse_below in (0.0, 1.0):  # 0: always dense; 1: always sparse
        de.zero_grad()
        x.grad = None
        de._gen = None  # same Gumbel draw in both passes
        s = de.selection_weights(de.user_gate, de.t_user)  # (40, M)
        out = de.user_experts.mix(x, s, sparse_below=sparse_below)  # (40, d_t)
        (out * torch.linspace(-1, 1, d_t)).pow(2).sum().backward()
        grads = [x.grad.clone()] + [p.grad.clone() for p in (*de.user_experts.parameters(),
                                                             *de.user_gate.parameters())]
        results.append((out.detach(), grads))
    (dense, g_dense), (sparse, g_sparse) = results
    assert torch.allclose(dense, sparse, atol=1e-5)
    for a, b in zip(g_dense, g_sparse, strict=True):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    if tau == 1e-3:  # the case the sparse path is for: (nearly) one expert per row
        assert int((s != 0).sum()) < 2 * 40


def test_gumbel_with_small_temperature_selects_one_expert():
    de, student, tu, _ = _de(n_experts=6)
    de.tau = 1e-6
    s = de.selection_weights(de.user_gate, tu)  # (10, 6)
    assert torch.allclose(s.sum(1), torch.ones(10))
    assert (s.max(1).values > 0.999).all()
    de.tau = 1.0
    assert (de.selection_weights(de.user_gate, tu).max(1).values < 0.999).any()


def test_attention_is_alpha_weighted_mean():
    de, student, tu, _ = _de(selection="attention")
    u = torch.tensor([0, 5, 9])
    rec = de.reconstruct(de.user_experts, de.user_gate, student.user_emb(u), tu[u])
    for r, e in enumerate(u.tolist()):
        alpha = torch.softmax(de.user_gate(tu[e]), -1)
        outs = _expert_loop(de.user_experts, student.user_emb.weight[e])
        assert torch.allclose(rec[r], sum(alpha[m] * outs[m] for m in range(4)), atol=1e-5)
    again = de.reconstruct(de.user_experts, de.user_gate, student.user_emb(u), tu[u])
    assert torch.equal(rec, again)  # no noise


def test_one_expert_has_no_gate():
    de, student, tu, _ = _de(n_experts=1)
    assert de.user_gate is None and de.n_parameters()["gates"] == 0
    u = torch.tensor([2])
    rec = de.reconstruct(de.user_experts, None, student.user_emb(u), tu[u])
    assert torch.allclose(rec[0], _expert_loop(de.user_experts, student.user_emb.weight[2])[0])


def test_temperature_schedule():
    de, *_ = _de()
    assert de.temperature(0) == 1.0 and de.temperature(1) == 1.0
    assert de.temperature_after_epoch(50) == pytest.approx(10 ** -0.5)
    assert de.temperature_after_epoch(100) == pytest.approx(0.1)
    assert de.temperature(101) == pytest.approx(0.1)
    assert de.temperature_after_epoch(200) == pytest.approx(0.01)
    assert de.temperature_after_epoch(1000) == pytest.approx(1e-10)
    assert de.temperature_after_epoch(3000) == pytest.approx(1e-10)  # clamped at end_T
    de.start_epoch(201, None)
    assert de.tau == pytest.approx(0.01)
    # the module function is the one schedule, here with another E_max and end_T
    assert [gumbel_temperature(e, 10, 1e-2) for e in (0, 1, 6, 11, 50)] == pytest.approx(
        [1.0, 1.0, 0.1, 0.01, 0.01])


def test_parameter_counts_match_official_log():
    tu, ti = torch.zeros(5, 200), torch.zeros(7, 200)
    de = DistillationExperts(tu, ti, 20)
    assert de.hidden == 110
    assert de.n_parameters() == {"gates": 12_060, "experts": 1_470_600, "total": 1_482_660}
    large = DistillationExperts(tu, ti, 20, n_experts=1,
                                expert_hidden=one_expert_hidden(20, 200, "large"))
    small = DistillationExperts(tu, ti, 20, n_experts=1,
                                expert_hidden=one_expert_hidden(20, 200, "small"))
    assert large.n_parameters()["experts"] == 2 * (3300 * 221 + 200)
    assert small.n_parameters()["experts"] == 1_470_600 // 30
    assert DistillationExperts(torch.zeros(3, 20), torch.zeros(3, 20), 20).hidden == 10


# ------------------------------------------------------------------------------ teacher top-k

def test_teacher_topk_excludes_training_items_and_matches_argsort(tmp_path):
    train, teacher = _problem()
    top = teacher_topk(teacher, train, 30, 80, k=15, batch_size=7)
    scores = teacher.score_users(torch.arange(30)).detach()
    for u in range(30):
        seen = set(train[train[:, 0] == u, 1].tolist())
        order = [i for i in torch.argsort(scores[u], descending=True).tolist() if i not in seen]
        assert top[u].tolist() == order[:15]
    path = tmp_path / "topk.pt"
    first = cached_teacher_topk(path, teacher, train, 30, 80, k=15, key="abc")
    assert torch.equal(first, top) and path.is_file()

    class Boom(BPRMF):
        def score_users(self, users):
            raise AssertionError("cache miss")

    boom = Boom(30, 80, 2)
    assert torch.equal(cached_teacher_topk(path, boom, train, 30, 80, k=10, key="abc"),
                       top[:, :10])
    with pytest.raises(AssertionError, match="cache miss"):
        cached_teacher_topk(path, boom, train, 30, 80, k=10, key="other")
    ckpt = tmp_path / "teacher.pt"
    torch.save(teacher.state_dict(), ckpt)
    via_file = cached_teacher_topk(tmp_path / "t2.pt", teacher, train, 30, 80, k=5,
                                   checkpoint=ckpt)
    assert torch.equal(via_file, top[:, :5])
    with pytest.raises(ValueError, match="exceeds"):
        teacher_topk(teacher, train, 30, 80, k=75)


# ------------------------------------------------------------------------------ smoke runs

@pytest.fixture(scope="module")
def tiny():
    split = loo_sampled(synthetic_interactions(n_users=60, n_items=120, per_user=10), seed=0,
                        n_negatives=20)
    cfg = RunConfig(dataset="synthetic", epochs=2, patience=0, progress=False,
                    n_eval_negatives=20, batch_size=128)
    torch.manual_seed(0)
    teacher = BPRMF(split.n_users, split.n_items, 32, init_std=0.3)
    return split, cfg, teacher


def _smoke(split, cfg, distiller):
    torch.manual_seed(1)
    student = BPRMF(split.n_users, split.n_items, 8)
    before = copy.deepcopy(student.state_dict())
    d_before = copy.deepcopy(distiller.state_dict())
    out = fit(student, split.train, split.n_items, cfg, evaluate=None, distiller=distiller)
    assert out.epochs_run == 2
    assert not torch.equal(before["user_emb.weight"], student.user_emb.weight)
    u = torch.tensor(split.train[:64, 0])
    loss = distiller.loss(student, u, torch.tensor(split.train[:64, 1]), u % split.n_items, 1)
    assert torch.isfinite(loss) and loss.item() > 0
    return d_before


def test_fit_with_rrd(tiny):
    split, cfg, teacher = tiny
    top = teacher_topk(teacher, split.train, split.n_users, split.n_items, k=40)
    _smoke(split, cfg, RRD(top, split.train, split.n_items, K=10, L=10, top_n=40, seed=0))


def test_fit_with_de_and_de_rrd(tiny):
    split, cfg, teacher = tiny
    de = DistillationExperts(teacher.user_emb.weight, teacher.item_emb.weight, 8, n_experts=5)
    d_before = _smoke(split, cfg, de)
    assert not torch.equal(d_before["user_experts.w1"], de.user_experts.w1)
    top = teacher_topk(teacher, split.train, split.n_users, split.n_items, k=40)
    both = DistillerSum(
        DistillationExperts(teacher.user_emb.weight, teacher.item_emb.weight, 8, n_experts=5),
        RRD(top, split.train, split.n_items, K=10, L=10, top_n=40, variant="full",
            teacher=teacher))
    _smoke(split, cfg, both)
