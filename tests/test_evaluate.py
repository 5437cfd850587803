"""End-to-end tests of rdlib.evaluate on tiny problems with hand-computed expectations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rdlib.evaluate import EvalResult, evaluate_full_ranking, evaluate_sampled

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))]
FULL = ("precision", "recall", "ndcg", "map", "hr", "mrr")


def d(i: int) -> float:
    return 1.0 / math.log2(i + 1)


def idcg(m: int) -> float:
    return sum(d(i) for i in range(1, m + 1))


def scorer(matrix: torch.Tensor, n_items: int):
    def score_users(users: torch.Tensor) -> torch.Tensor:
        assert users.dim() == 1 and users.dtype == torch.long
        return matrix.to(users.device)[users]  # (B, I)
    return score_users


# Tiny full-ranking problem: 4 users, 6 items.
S = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4],   # user 0
                  [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],   # user 1
                  [0.3, 0.1, 0.2, 0.6, 0.5, 0.4],   # user 2: no target, not evaluated
                  [0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])  # user 3: constant scores
TRAIN = np.array([[0, 0], [1, 5], [2, 1]])
OTHER = np.array([[0, 2]])  # the other held-out split of user 0 (HetComp masks it)
TARGETS = np.array([[0, 1], [0, 3], [1, 4], [1, 0], [1, 5], [3, 2], [0, 1]])  # (0, 1) twice
# user 0: ranking [1, 3, 4, 5] → targets at ranks 1, 2; |T| = 2
# user 1: ranking [4, 3, 2, 1, 0] → targets at ranks 1, 5; target 5 is a train item: rank inf,
#         |T| = 3
# user 3: constant scores, target 2 → pessimistic rank 6 (optimistic 1); |T| = 1
EXPECTED = {
    "precision@1": [1, 1, 0], "precision@3": [2 / 3, 1 / 3, 0], "precision@10": [.2, .2, .1],
    "recall@1": [1 / 2, 1 / 3, 0], "recall@3": [1, 1 / 3, 0], "recall@10": [1, 2 / 3, 1],
    "ndcg@1": [1, 1, 0], "ndcg@3": [1, 1 / idcg(3), 0],
    "ndcg@10": [1, (1 + d(5)) / idcg(3), d(6) / idcg(1)],
    "map": [1, (1 / 1 + 2 / 5) / 3, 1 / 6],
    "hr@1": [1, 1, 0], "hr@3": [1, 1, 0], "hr@10": [1, 1, 1],
    "mrr@1": [1, 1, 0], "mrr@3": [1, 1, 0], "mrr@10": [1, 1, 1 / 6],
}
# RD's nDCG@min(|T|, k): user 0 at k=3 → nDCG@2 = 1; user 1 at k=10 → nDCG@3; user 3 → nDCG@1
EXPECTED_RD = {"ndcg@1": [1, 1, 0], "ndcg@3": [1, 1 / idcg(3), 0],
               "ndcg@10": [1, 1 / idcg(3), 0]}


def tiny(**kw) -> EvalResult:
    args = dict(ks=(1, 3, 10), metrics=FULL)
    args.update(kw)
    return evaluate_full_ranking(scorer(S, 6), 4, 6, TARGETS, [TRAIN, OTHER], **args)


@pytest.mark.parametrize("device", DEVICES)
def test_full_ranking_hand_computed(device: str):
    res = tiny(device=device)
    assert res.users.dtype == np.int64 and res.users.tolist() == [0, 1, 3]
    assert list(res.values) == list(EXPECTED)
    for key, exp in EXPECTED.items():
        np.testing.assert_allclose(res.values[key], exp, atol=1e-12, rtol=0, err_msg=key)
    rd = tiny(device=device, ndcg_variant="rd")
    for key, exp in EXPECTED_RD.items():
        np.testing.assert_allclose(rd.values[key], exp, atol=1e-12, rtol=0, err_msg=key)
    # the rd variant only changes nDCG
    for key in EXPECTED:
        if not key.startswith("ndcg"):
            np.testing.assert_array_equal(rd.values[key], res.values[key])


def test_full_ranking_optimistic_ties():
    res = tiny(ties="optimistic", metrics=("hr", "mrr"), ks=(1,))
    np.testing.assert_allclose(res.values["hr@1"], [1, 1, 1])  # user 3's constant row ranks 1st
    pess = tiny(metrics=("hr",), ks=(1,))
    np.testing.assert_allclose(pess.values["hr@1"], [1, 1, 0])


def test_full_ranking_other_split_is_masked():
    # without masking item 2 (user 0's other split), item 2 sits at rank 2 and pushes target 3
    res = evaluate_full_ranking(scorer(S, 6), 4, 6, TARGETS, [TRAIN], ks=(2,),
                                metrics=("recall",), users=[0])
    np.testing.assert_allclose(res.values["recall@2"], [1 / 2])
    np.testing.assert_allclose(tiny(ks=(2,), metrics=("recall",)).values["recall@2"][0], 1.0)


def test_users_argument_and_result_helpers():
    full = tiny()
    sub = tiny(users=np.array([3, 2, 0]))  # user 2 has no target: skipped
    assert sub.users.tolist() == [0, 3]
    for key, v in sub.values.items():
        np.testing.assert_array_equal(v, full.values[key][[0, 2]])
    means = full.means()
    assert means["map"] == pytest.approx(np.mean(EXPECTED["map"]), abs=1e-12)
    names = full.metric_names()
    assert names["ndcg@10"] == ("ndcg", 10) and names["map"] == ("map", 0)
    df = full.to_frame()
    assert list(df.columns) == ["user", "metric", "k", "value"]
    assert len(df) == len(full) * len(full.values)
    row = df[(df.metric == "map") & (df.user == 1)]
    assert row.k.item() == 0 and row.value.item() == pytest.approx((1 + 2 / 5) / 3)
    assert df[(df.metric == "ndcg") & (df.k == 3) & (df.user == 1)].value.item() == \
        pytest.approx(1 / idcg(3))
    assert pd.api.types.is_integer_dtype(df["k"])


def random_problem(seed: int, n_users: int = 30, n_items: int = 40):
    rng = np.random.default_rng(seed)
    scores = torch.from_numpy(rng.random((n_users, n_items)))
    cells = rng.random((n_users, n_items))
    train = np.argwhere(cells < 0.3)
    valid = np.argwhere((cells >= 0.3) & (cells < 0.38))
    test = np.argwhere((cells >= 0.38) & (cells < 0.46))
    return scores, train, valid, test


@pytest.mark.parametrize("variant", ["standard", "rd"])
def test_batch_size_invariance(variant: str):
    scores, train, valid, test = random_problem(0)
    runs = [evaluate_full_ranking(scorer(scores, 40), 30, 40, test, [train, valid],
                                  ks=(1, 5, 20), metrics=FULL + ("ap",), ndcg_variant=variant,
                                  batch_size=bs)
            for bs in (1, 7, 1024)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.users, runs[0].users)
        assert list(other.values) == list(runs[0].values)
        for key in runs[0].values:
            np.testing.assert_array_equal(other.values[key], runs[0].values[key])


def test_full_ranking_matches_per_user_walk():
    # every user's metrics from an explicit sort of that user's unmasked items
    scores, train, valid, test = random_problem(1, n_users=12, n_items=25)
    res = evaluate_full_ranking(scorer(scores, 25), 12, 25, test, [train, valid], ks=(5,),
                                metrics=("recall", "map"), batch_size=5)
    for j, u in enumerate(res.users):
        masked = set(train[train[:, 0] == u, 1]) | set(valid[valid[:, 0] == u, 1])
        tset = set(test[test[:, 0] == u, 1])
        ranking = [int(i) for i in torch.argsort(scores[u], descending=True) if int(i) not in masked]
        hits = [pos for pos, i in enumerate(ranking, start=1) if i in tset]
        assert res.values["recall@5"][j] == pytest.approx(sum(p <= 5 for p in hits) / len(tset))
        ap = sum((n + 1) / p for n, p in enumerate(hits)) / len(tset)
        assert res.values["map"][j] == pytest.approx(ap, abs=1e-12)
    assert set(res.users.tolist()) == set(test[:, 0].tolist())


def test_empty_targets():
    res = evaluate_full_ranking(scorer(S, 6), 4, 6, np.empty((0, 2), dtype=np.int64), [],
                                ks=(5,), metrics=("hr", "map"))
    assert len(res) == 0 and set(res.values) == {"hr@5", "map"}
    assert res.to_frame().empty


# ---------------------------------------------------------------------------------------------
# sampled leave-one-out
# ---------------------------------------------------------------------------------------------

def pair_scorer(matrix: torch.Tensor, n_candidates: int):
    def score_pairs(users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        assert items.shape == (users.numel(), n_candidates)
        m = matrix.to(users.device)
        return m[users[:, None], items]  # (B, C+1)
    return score_pairs


@pytest.mark.parametrize("device", DEVICES)
def test_sampled_derrd_example(device: str):
    n_items = 600
    S2 = torch.zeros(2, n_items)
    S2[0] = torch.linspace(0.0, 0.5, n_items)  # every other item below the target's 0.6
    S2[0, 5] = 0.6                       # user 0's target
    S2[0, [100, 200, 300]] = torch.tensor([0.9, 0.8, 0.7])  # three negatives above it → rank 4
    S2[1, 0] = 1.0                       # user 1's target beats all → rank 1
    negatives = np.stack([np.arange(100, 599), np.arange(1, 500)])  # (2, 499)
    targets = np.array([[1, 0], [0, 5]])  # unsorted on purpose
    res = evaluate_sampled(pair_scorer(S2, 500), targets, negatives, ks=(3, 5),
                           metrics=("hr", "ndcg", "mrr"), device=device)
    assert res.users.tolist() == [0, 1]
    np.testing.assert_allclose(res.values["hr@5"], [1.0, 1.0])
    np.testing.assert_allclose(res.values["ndcg@5"], [1 / math.log2(5), 1.0], atol=1e-12)
    np.testing.assert_allclose(res.values["mrr@5"], [1 / 4, 1.0], atol=1e-12)
    np.testing.assert_allclose(res.values["hr@3"], [0.0, 1.0])
    np.testing.assert_allclose(res.values["mrr@3"], [0.0, 1.0])


def test_sampled_ties_and_batch_invariance():
    rng = np.random.default_rng(4)
    n_users, n_items, C = 20, 80, 30
    S3 = torch.from_numpy(rng.random((n_users, n_items)))
    targets = np.stack([np.arange(n_users), rng.integers(0, n_items, n_users)], 1)
    negatives = np.stack([rng.choice(np.setdiff1d(np.arange(n_items), [t]), C, replace=False)
                          for t in targets[:, 1]])
    runs = [evaluate_sampled(pair_scorer(S3, C + 1), targets, negatives, ks=(1, 10),
                             batch_size=bs) for bs in (1, 6, 100)]
    for other in runs[1:]:
        for key in runs[0].values:
            np.testing.assert_array_equal(other.values[key], runs[0].values[key])
    const = evaluate_sampled(pair_scorer(torch.zeros(n_users, n_items), C + 1), targets,
                             negatives, ks=(10,))
    np.testing.assert_array_equal(const.values["hr@10"], np.zeros(n_users))
    np.testing.assert_allclose(const.values["mrr@10"], 0.0)
    opt = evaluate_sampled(pair_scorer(torch.zeros(n_users, n_items), C + 1), targets,
                           negatives, ks=(10,), ties="optimistic")
    np.testing.assert_array_equal(opt.values["hr@10"], np.ones(n_users))


def test_sampled_equals_full_ranking_when_negatives_are_all_other_items():
    rng = np.random.default_rng(5)
    n_users, n_items = 15, 20
    S4 = torch.from_numpy(rng.random((n_users, n_items)))
    targets = np.stack([np.arange(n_users), rng.integers(0, n_items, n_users)], 1)
    negatives = np.stack([np.setdiff1d(np.arange(n_items), [t]) for t in targets[:, 1]])
    sampled = evaluate_sampled(pair_scorer(S4, n_items), targets, negatives, ks=(1, 5, 10),
                               metrics=("hr", "ndcg", "mrr", "map"))
    full = evaluate_full_ranking(scorer(S4, n_items), n_users, n_items, targets, [],
                                 ks=(1, 5, 10), metrics=("hr", "ndcg", "mrr", "map"))
    for key in sampled.values:
        np.testing.assert_allclose(sampled.values[key], full.values[key], atol=1e-12)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

def test_full_ranking_bad_input():
    with pytest.raises(ValueError, match=r"'foo'.*allowed"):
        tiny(metrics=("foo",))
    with pytest.raises(ValueError, match="positive"):
        tiny(ks=(0,))
    with pytest.raises(ValueError, match=r"'cut'"):
        tiny(ndcg_variant="cut")
    with pytest.raises(ValueError, match=r"'random'"):
        tiny(ties="random")
    with pytest.raises(ValueError, match="batch_size"):
        tiny(batch_size=0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        evaluate_full_ranking(scorer(S, 6), 4, 6, np.zeros((3, 3), dtype=int), [], ks=(1,))
    with pytest.raises(ValueError, match="item ids"):
        evaluate_full_ranking(scorer(S, 6), 4, 6, np.array([[0, 6]]), [], ks=(1,))
    with pytest.raises(ValueError, match=r"exclude\[0\]: user ids"):
        evaluate_full_ranking(scorer(S, 6), 4, 6, TARGETS, [np.array([[4, 0]])], ks=(1,))
    with pytest.raises(ValueError, match="score_users returned shape"):
        evaluate_full_ranking(lambda u: S[u, :5], 4, 6, TARGETS, [TRAIN], ks=(1,))


def test_sampled_bad_input():
    negatives = np.stack([np.arange(10, 20), np.arange(20, 30)])
    f = pair_scorer(torch.rand(2, 40), 11)
    with pytest.raises(ValueError, match="exactly one target per user"):
        evaluate_sampled(f, np.array([[0, 1], [0, 2]]), negatives, ks=(5,))
    with pytest.raises(ValueError, match="among its own negatives"):
        evaluate_sampled(f, np.array([[0, 1], [1, 25]]), negatives, ks=(5,))
    with pytest.raises(ValueError, match="negatives must be"):
        evaluate_sampled(f, np.array([[0, 1]]), np.arange(10), ks=(5,))
    with pytest.raises(ValueError, match="user ids"):
        evaluate_sampled(f, np.array([[2, 1]]), negatives, ks=(5,))
    with pytest.raises(ValueError, match=r"'precision@'|'foo'"):
        evaluate_sampled(f, np.array([[0, 1]]), negatives, ks=(5,), metrics=("foo",))
    with pytest.raises(ValueError, match="positive"):
        evaluate_sampled(f, np.array([[0, 1]]), negatives, ks=(-1,))
    with pytest.raises(ValueError, match="score_pairs returned shape"):
        evaluate_sampled(lambda u, i: i[:, :5].double(), np.array([[0, 1]]), negatives, ks=(5,))
