"""RD and CD (rdlib.kd.rd, rdlib.kd.cd): weights, losses and sampling vs brute force; fit runs."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rdlib.config import RunConfig
from rdlib.data.synthetic import synthetic_interactions
from rdlib.kd import (
    CollaborativeDistillation,
    RankingDistillation,
    discrepancy_weights,
    position_weights,
    soft_targets,
    teacher_topk,
)
from rdlib.kd.cd import rank_weights
from rdlib.models import BPRMF
from rdlib.protocols import loo_sampled
from rdlib.training import fit


def _problem(n_users: int = 12, n_items: int = 40, per_user: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    train = np.array([(u, i) for u in range(n_users)
                      for i in rng.choice(n_items, per_user, replace=False)], dtype=np.int64)
    torch.manual_seed(seed)
    teacher = BPRMF(n_users, n_items, 16, init_std=0.5).double()
    student = BPRMF(n_users, n_items, 4, init_std=0.7).double()
    return train, teacher, student


def _score(m: BPRMF, u: int, i: int) -> float:
    return float(m.user_emb.weight[u].detach() @ m.item_emb.weight[i].detach())


def _train_sets(train: np.ndarray, n_users: int) -> list[set[int]]:
    sets: list[set[int]] = [set() for _ in range(n_users)]
    for u, i in train.tolist():
        sets[u].add(i)
    return sets


# ------------------------------------------------------------------------------ RD weights

def test_position_weights():
    w = position_weights(10, 1.0)
    z = sum(math.exp(-r) for r in range(1, 11))
    assert w.shape == (10,)
    assert w.tolist() == pytest.approx([math.exp(-r) / z for r in range(1, 11)], rel=1e-12)
    assert w[:3].tolist() == pytest.approx([0.632, 0.233, 0.086], abs=1e-3)  # methods.md §1.4
    w2 = position_weights(4, 2.5)
    z2 = sum(math.exp(-r / 2.5) for r in range(1, 5))
    assert w2.tolist() == pytest.approx([math.exp(-r / 2.5) / z2 for r in range(1, 5)])


def test_discrepancy_weights_brute_force():
    g = torch.Generator().manual_seed(3)
    s_top = torch.randn(5, 6, generator=g, dtype=torch.float64)
    s_dyn = torch.randn(5, 9, generator=g, dtype=torch.float64)
    s_dyn[0, :3] = s_top[0, 0]  # ties do not count (strict >)
    n_items, mu = 50, 0.3
    w = discrepancy_weights(s_top, s_dyn, n_items, mu)
    for b in range(5):
        for c in range(6):
            m = sum(1 for j in range(9) if s_dyn[b, j] > s_top[b, c])
            r_hat = math.floor((n_items - 1) * m / 9)
            assert w[b, c].item() == pytest.approx(max(math.tanh(mu * (r_hat - c)), 0.0))
    # no sampled item above the teacher items: every weight is 0 (tanh(0) at column 0)
    assert torch.equal(discrepancy_weights(s_top, s_top.min() - 1 + 0 * s_dyn, n_items, mu),
                       torch.zeros_like(s_top))


# ------------------------------------------------------------------------------ RD loss

def _rd_brute(rd: RankingDistillation, student: BPRMF, users: torch.Tensor, epoch: int,
              ) -> float:
    wa = [math.exp(-r / rd.lam) for r in range(1, rd.K + 1)]
    wa = [x / sum(wa) for x in wa]
    total = 0.0
    for u in sorted(set(users.tolist())):
        items = rd.top[u].tolist()
        s = [_score(student, u, i) for i in items]
        w = list(wa)
        dynamic = (rd.weighting == "dynamic"
                   or (rd.weighting == "hybrid" and epoch >= rd.dynamic_start_epoch))
        if dynamic:
            d = [_score(student, u, j) for j in rd.dynamic[u].tolist()]
            wb = []
            for c in range(rd.K):
                m = sum(1 for x in d if x > s[c])
                r_hat = math.floor((rd.n_items - 1) * m / len(d))
                wb.append(max(math.tanh(rd.mu * (r_hat - c)), 0.0))
            w = wb if rd.weighting == "dynamic" else [a * b for a, b in zip(wa, wb, strict=True)]
            if rd.renormalize:
                z = sum(w)
                w = [x / z if z > 0 else 0.0 for x in w]
        total += sum(w[r] * -math.log(1 / (1 + math.exp(-s[r]))) for r in range(rd.K))
    return rd.lmbda * total


@pytest.mark.parametrize("weighting,renormalize,epoch", [
    ("static", True, 0), ("hybrid", True, 1), ("hybrid", False, 1), ("hybrid", True, 3),
    ("hybrid", False, 5), ("dynamic", True, 0), ("dynamic", False, 0)])
def test_rd_loss_brute_force(weighting, renormalize, epoch):
    train, teacher, student = _problem()
    top = teacher_topk(teacher, train, 12, 40, k=10)
    rd = RankingDistillation(top, train, 40, lmbda=0.7, K=8, lam=2.0, mu=0.3,
                             n_dynamic_samples=7, dynamic_start_epoch=3, weighting=weighting,
                             renormalize=renormalize, seed=1)
    rd.start_epoch(epoch, student)
    users = torch.tensor([3, 0, 3, 11, 7, 0])
    loss = rd.loss(student, users, users, users, epoch)
    assert loss.item() == pytest.approx(_rd_brute(rd, student, users, epoch), rel=1e-9)
    assert torch.equal(rd.top, top[:, :8])
    u = torch.unique(users)
    s = student.score_pairs(u, rd.top[u])
    assert not rd.weights(student, u, s, epoch).requires_grad
    if rd.uses_dynamic(epoch):  # the brute force is not trivial: w^b has zeros and non-zeros
        wb = discrepancy_weights(s.detach(), student.score_pairs(u, rd.dynamic[u]), 40, 0.3)
        assert (wb > 0).any() and (wb == 0).any() and (wb < 0.99).any()


def test_rd_hybrid_is_static_before_start_epoch():
    train, teacher, student = _problem()
    top = teacher_topk(teacher, train, 12, 40, k=10)
    kw = dict(K=10, n_dynamic_samples=7, dynamic_start_epoch=2, seed=0)
    hybrid = RankingDistillation(top, train, 40, **kw)
    static = RankingDistillation(top, train, 40, weighting="static", **kw)
    users = torch.arange(12)
    for e in (0, 1):
        hybrid.start_epoch(e, student)
        static.start_epoch(e, student)
        assert hybrid.loss(student, users, users, users, e).item() == pytest.approx(
            static.loss(student, users, users, users, e).item())
    hybrid.start_epoch(2, student)
    assert hybrid.uses_dynamic(2) and not hybrid.uses_dynamic(1)
    assert hybrid.loss(student, users, users, users, 2).item() != pytest.approx(
        static.loss(student, users, users, users, 2).item())


def test_rd_dynamic_samples_are_unobserved_and_uniform():
    train, teacher, _ = _problem(n_users=4, n_items=10, per_user=6)
    top = teacher_topk(teacher, train, 4, 10, k=4)
    rd = RankingDistillation(top, train, 10, K=4, n_dynamic_samples=3000, seed=5)
    d = rd.sample_dynamic()
    assert d.shape == (4, 3000)
    sets = _train_sets(train, 4)
    for u in range(4):
        allowed = sorted(set(range(10)) - sets[u])
        assert set(d[u].tolist()) == set(allowed)  # only (and all) unobserved items
        counts = torch.bincount(d[u], minlength=10)[allowed].double() / 3000
        assert torch.allclose(counts, torch.full_like(counts, 1 / len(allowed)), atol=0.05)


def test_rd_validation():
    train, teacher, student = _problem()
    top = teacher_topk(teacher, train, 12, 40, k=5)
    with pytest.raises(ValueError):
        RankingDistillation(top, train, 40, K=6)
    with pytest.raises(ValueError):
        RankingDistillation(top, train, 40, K=5, weighting="soft")
    rd = RankingDistillation(top, train, 40, K=5, weighting="dynamic")
    with pytest.raises(RuntimeError):
        rd.loss(student, torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), 0)


# ------------------------------------------------------------------------------ CD

def test_soft_targets_formula():
    t = torch.tensor([-3.0, 0.0, 1.5, 8.0], dtype=torch.float64)
    assert soft_targets(t).tolist() == pytest.approx([1 / (1 + math.exp(-x / 2)) for x in
                                                      t.tolist()])
    assert soft_targets(t, t1=0.5, t2=1.0).tolist() == pytest.approx(
        [1 / (1 + math.exp(-(x + 1) / 0.5)) for x in t.tolist()])


@pytest.mark.parametrize("strategy", ["teacher", "student"])
def test_cd_samples_and_loss_brute_force(strategy):
    train, teacher, student = _problem()
    top = teacher_topk(teacher, train, 12, 40, k=15)
    cd = CollaborativeDistillation(teacher, top, train, 40, lmbda=0.3, n_samples=6, T=0.5,
                                   t1=2.0, t2=0.5, strategy=strategy, seed=2)
    student.train()
    cd.start_epoch(0, student)
    assert student.training
    lst = top if strategy == "teacher" else teacher_topk(student, train, 12, 40, k=15)
    if strategy == "student":
        assert not torch.equal(lst, top)  # a different list is really used
    sets = _train_sets(train, 12)
    assert cd.samples.shape == (12, 6)
    for u in range(12):
        row = cd.samples[u].tolist()
        assert len(set(row)) == 6  # distinct
        assert set(row) <= set(lst[u].tolist())  # from the ranked list
        assert not set(row) & sets[u]  # unobserved
        for i, y in zip(row, cd.targets[u].tolist(), strict=True):
            assert y == pytest.approx(1 / (1 + math.exp(-(_score(teacher, u, i) + 0.5) / 2)))
    users = torch.tensor([5, 1, 5, 9])
    expected = 0.0
    for u in (1, 5, 9):
        for i, y in zip(cd.samples[u].tolist(), cd.targets[u].tolist(), strict=True):
            p = 1 / (1 + math.exp(-_score(student, u, i)))
            expected -= y * math.log(p) + (1 - y) * math.log(1 - p)
    loss = cd.loss(student, users, users, users, 0)
    assert loss.item() == pytest.approx(0.3 * expected, rel=1e-9)


def test_cd_rank_aware_sampling_distribution():
    n_users, n_items = 3000, 8
    train = np.array([(u, 7) for u in range(n_users)], dtype=np.int64)
    top = torch.arange(7).expand(n_users, -1)  # every user's list: items 0..6
    teacher = BPRMF(n_users, n_items, 2)
    cd = CollaborativeDistillation(teacher, top, train, n_items, n_samples=1, T=0.25, seed=0)
    pos = cd.sample_positions()[:, 0]  # (U,)
    freq = torch.bincount(pos, minlength=7).double() / n_users
    p = rank_weights(7, 0.25).double()
    p = p / p.sum()  # ∝ exp(−pos/(N·T)) = exp(−4·pos/7)
    assert torch.allclose(freq, p, atol=0.03)
    assert freq[0] > 3 * freq[6]


def test_cd_validation():
    train, teacher, student = _problem()
    top = teacher_topk(teacher, train, 12, 40, k=5)
    with pytest.raises(ValueError):
        CollaborativeDistillation(teacher, top, train, 40, n_samples=6)
    with pytest.raises(ValueError):
        CollaborativeDistillation(teacher, top, train, 40, n_samples=2, strategy="both")
    with pytest.raises(ValueError):
        CollaborativeDistillation(teacher, top, train, 40, n_samples=2, top_n=6)
    cd = CollaborativeDistillation(teacher, top, train, 40, n_samples=2)
    with pytest.raises(RuntimeError):
        cd.loss(student, torch.tensor([0]), torch.tensor([0]), torch.tensor([0]), 0)


# ------------------------------------------------------------------------------ smoke runs

@pytest.fixture(scope="module")
def tiny():
    split = loo_sampled(synthetic_interactions(n_users=60, n_items=120, per_user=10), seed=0,
                        n_negatives=20)
    cfg = RunConfig(dataset="synthetic", epochs=2, patience=0, progress=False,
                    n_eval_negatives=20)
    torch.manual_seed(0)
    teacher = BPRMF(split.n_users, split.n_items, 16, init_std=0.3)
    return split, cfg, teacher


def _smoke(split, cfg, distiller) -> None:
    torch.manual_seed(1)
    student = BPRMF(split.n_users, split.n_items, 4)
    before = copy.deepcopy(student.state_dict())
    out = fit(student, split.train, split.n_items, cfg, evaluate=None, distiller=distiller)
    assert out.epochs_run == 2
    assert not torch.equal(before["user_emb.weight"], student.user_emb.weight)
    assert not torch.equal(before["item_emb.weight"], student.item_emb.weight)
    u = torch.tensor(split.train[:64, 0])
    loss = distiller.loss(student, u, torch.tensor(split.train[:64, 1]), u % split.n_items, 1)
    assert torch.isfinite(loss) and loss.item() > 0


def test_fit_with_rd(tiny):
    split, cfg, teacher = tiny
    top = teacher_topk(teacher, split.train, split.n_users, split.n_items, k=10)
    rd = RankingDistillation(top, split.train, split.n_items, n_dynamic_samples=20,
                             dynamic_start_epoch=1)  # epoch 0 static, epoch 1 hybrid
    _smoke(split, cfg, rd)
    assert rd.dynamic is not None and rd.dynamic.shape == (split.n_users, 20)


@pytest.mark.parametrize("strategy", ["teacher", "student"])
def test_fit_with_cd(tiny, strategy):
    split, cfg, teacher = tiny
    top = teacher_topk(teacher, split.train, split.n_users, split.n_items, k=30)
    cd = CollaborativeDistillation(teacher, top, split.train, split.n_items, lmbda=0.1,
                                   n_samples=5, strategy=strategy)
    _smoke(split, cfg, cd)
