"""Tests of rdlib.metrics: hand-worked cases, boundaries, a slow reference, torchmetrics, ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rdlib.metrics import (
    METRICS,
    average_precision,
    check_request,
    compute_metrics,
    hit_rate_at_k,
    metric_key,
    mrr_at_k,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    sampled_ranks,
    split_metric_name,
    target_ranks,
    topk_items,
)

INF = math.inf
ALL = ("precision", "recall", "ndcg", "map", "ap", "hr", "mrr")


def d(i: int) -> float:
    """Discount of 1-based rank i."""
    return 1.0 / math.log2(i + 1)


def idcg(m: int) -> float:
    return sum(d(i) for i in range(1, m + 1))


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def n(*values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def close(actual: torch.Tensor, expected, atol: float = 1e-12) -> None:
    exp = torch.as_tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual.double(), exp, atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------
# hand-worked cases
# ---------------------------------------------------------------------------------------------

def test_hand_worked_six_item_list():
    # 6-item ranking, targets at ranks 1 and 3; the third target is an excluded item (rank inf)
    # that still counts in |T| = 3
    ranks, nrel = t([1, 3, INF]), n(3)
    m = compute_metrics(ranks, nrel, ALL, [1, 3, 5])
    close(m["precision@1"], [1.0])
    close(m["precision@3"], [2 / 3])
    close(m["precision@5"], [2 / 5])
    close(m["recall@1"], [1 / 3])
    close(m["recall@3"], [2 / 3])
    close(m["recall@5"], [2 / 3])
    close(m["hr@1"], [1.0])
    close(m["mrr@5"], [1.0])
    close(m["ndcg@1"], [d(1) / idcg(1)])
    close(m["ndcg@3"], [(d(1) + d(3)) / idcg(3)])
    close(m["ndcg@5"], [(d(1) + d(3)) / idcg(3)])
    close(m["map"], [(1 / 1 + 2 / 3) / 3])
    close(m["ap@1"], [(1 / 1) / 1])
    close(m["ap@3"], [(1 / 1 + 2 / 3) / 3])
    assert "map@1" not in m and "map" in m


def test_ndcg_standard_and_rd_differ_when_targets_fewer_than_k():
    # |T| = 2 < k = 5, hits at ranks 2 and 5: RD cuts at k' = min(|T|, k) = 2
    ranks, nrel = t([2, 5]), n(2)
    std = ndcg_at_k(ranks, nrel, 5, "standard")
    rd = ndcg_at_k(ranks, nrel, 5, "rd")
    close(std, [(d(2) + d(5)) / idcg(2)])
    close(rd, [d(2) / idcg(2)])
    assert abs(float(std) - float(rd)) > 0.1
    # when |T| >= k both variants agree
    ranks3, nrel3 = t([2, 5, 9, INF, INF, INF]), n(6)
    close(ndcg_at_k(ranks3, nrel3, 5, "standard"), ndcg_at_k(ranks3, nrel3, 5, "rd"))
    close(ndcg_at_k(ranks3, nrel3, 5, "rd"), [(d(2) + d(5)) / idcg(5)])


def test_textbook_binary_dcg_example():
    # Järvelin & Kekäläinen DCG with binary gains: relevance along the list [1, 0, 1, 1, 0],
    # three relevant items, so IDCG@5 = 1 + 1/log2(3) + 1/log2(4)
    ranks, nrel = t([1, 3, 4]), n(3)
    dcg = 1.0 + 1.0 / math.log2(4) + 1.0 / math.log2(5)
    ideal = 1.0 + 1.0 / math.log2(3) + 1.0 / math.log2(4)
    close(ndcg_at_k(ranks, nrel, 5), [dcg / ideal])
    close(ndcg_at_k(ranks, nrel, 5), [0.9060254355346626], atol=1e-12)
    close(average_precision(ranks, nrel), [(1 / 1 + 2 / 3 + 3 / 4) / 3])


def test_single_target_reduces_to_derrd_definitions():
    # sampled LOO: one target at rank p; HR = 1[p<=N], NDCG = 1/log2(p+1), MRR = 1/p
    p = torch.tensor([[1.0], [4.0], [7.0], [500.0]], dtype=torch.float64)
    nrel = torch.ones(4, dtype=torch.float64)
    m = compute_metrics(p, nrel, ["hr", "ndcg", "mrr"], [5])
    close(m["hr@5"], [1, 1, 0, 0])
    close(m["ndcg@5"], [1.0, 1 / math.log2(5), 0, 0])
    close(m["mrr@5"], [1.0, 1 / 4, 0, 0])
    # RD's truncated variant is nDCG@min(|T|, k) = nDCG@1 = HR@1 for one target: not DE-RRD's
    m_rd = compute_metrics(p, nrel, ["ndcg"], [5], ndcg_variant="rd")
    close(m_rd["ndcg@5"], [1, 0, 0, 0])


# ---------------------------------------------------------------------------------------------
# boundary cases
# ---------------------------------------------------------------------------------------------

def test_perfect_ranking_gives_one():
    for size in (1, 3, 10):
        ranks = torch.arange(1, size + 1, dtype=torch.float64)[None]  # targets at 1..|T|
        nrel = n(size)
        for k in (1, 3, 10, 50):
            m = compute_metrics(ranks, nrel, ALL, [k])
            close(m[f"ndcg@{k}"], [1.0])
            close(ndcg_at_k(ranks, nrel, k, "rd"), [1.0])
            close(m[f"hr@{k}"], [1.0])
            close(m[f"mrr@{k}"], [1.0])
            close(m[f"ap@{k}"], [1.0])
            close(m[f"precision@{k}"], [min(size, k) / k])
            close(m[f"recall@{k}"], [min(size, k) / size])
        close(average_precision(ranks, nrel), [1.0])


def test_no_hit_gives_zero():
    ranks, nrel = t([11, 20, INF]), n(3)
    m = compute_metrics(ranks, nrel, ALL, [1, 5, 10], ndcg_variant="rd")
    for key, v in m.items():
        if key != "map":
            close(v, [0.0])
    close(m["map"], [(1 / 11 + 2 / 20) / 3])  # MAP reads the whole list
    m = compute_metrics(t([INF, INF]), n(2), ALL, [10])
    for v in m.values():
        close(v, [0.0])


def test_more_targets_than_k():
    # |T| = 8 > k = 3, all of the top 3 are hits
    ranks, nrel = t([1, 2, 3, 9, 12, 40, INF, INF]), n(8)
    m = compute_metrics(ranks, nrel, ALL, [3])
    close(m["precision@3"], [1.0])
    close(m["recall@3"], [3 / 8])  # RD / HetComp divide by |T|, not min(|T|, k)
    close(m["ndcg@3"], [1.0])
    close(m["ap@3"], [1.0])
    close(m["map"], [(1 + 1 + 1 + 4 / 9 + 5 / 12 + 6 / 40) / 8])


def test_k_larger_than_item_count():
    # 4 items, targets at ranks 2 and 4: precision@10 keeps k = 10 as denominator
    ranks, nrel = t([2, 4]), n(2)
    m = compute_metrics(ranks, nrel, ALL, [10])
    close(m["precision@10"], [2 / 10])
    close(m["recall@10"], [1.0])
    close(m["ndcg@10"], [(d(2) + d(4)) / idcg(2)])
    close(ndcg_at_k(ranks, nrel, 10, "rd"), [d(2) / idcg(2)])


def test_excluded_targets_get_inf_rank_but_count():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5]], dtype=torch.float64)
    targets = torch.tensor([[0, 3]])
    exclude = torch.tensor([[True, False, False, False, False]])  # target 0 is a training item
    r = target_ranks(scores, targets, exclude)
    close(r, [[INF, 3.0]])  # item 3 is third among items 1..4
    m = compute_metrics(r, n(2), ["recall", "hr", "map"], [5])
    close(m["recall@5"], [0.5])
    close(m["map"], [(1 / 3) / 2])


def test_padding_and_empty_target_columns():
    close(precision_at_k(torch.empty((2, 0), dtype=torch.float64), 3), [0.0, 0.0])
    ranks = t([1, INF, INF], [2, 3, INF])
    close(recall_at_k(ranks, n(1, 2), 2), [1.0, 0.5])
    close(hit_rate_at_k(ranks, 1), [1.0, 0.0])
    close(mrr_at_k(ranks, 3), [1.0, 0.5])


def test_metric_functions_match_compute_metrics():
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(5, 30, generator=g, dtype=torch.float64)
    targets = torch.stack([torch.randperm(30, generator=g)[:4] for _ in range(5)])
    r = target_ranks(scores, targets)
    nrel = torch.full((5,), 4.0)
    m = compute_metrics(r, nrel, ALL, [5], ndcg_variant="rd")
    close(m["precision@5"], precision_at_k(r, 5))
    close(m["recall@5"], recall_at_k(r, nrel, 5))
    close(m["hr@5"], hit_rate_at_k(r, 5))
    close(m["mrr@5"], mrr_at_k(r, 5))
    close(m["ndcg@5"], ndcg_at_k(r, nrel, 5, "rd"))
    close(m["map"], average_precision(r, nrel))
    close(m["ap@5"], average_precision(r, nrel, 5))


# ---------------------------------------------------------------------------------------------
# slow pure-Python reference (walks each user's explicitly sorted list, as RD's evaluation.py)
# ---------------------------------------------------------------------------------------------

def reference_user(scores: list[float], targets: list[int], excluded: set[int], k: int,
                   variant: str) -> dict[str, float]:
    ranking = sorted((i for i in range(len(scores)) if i not in excluded),
                     key=lambda i: -scores[i])
    tset = set(targets)
    out: dict[str, float] = {}
    top = ranking[:k]
    hits = sum(1 for i in top if i in tset)
    out["precision"] = hits / k
    out["recall"] = hits / len(tset)
    out["hr"] = 1.0 if hits else 0.0
    out["mrr"] = 0.0
    for pos, i in enumerate(top, start=1):
        if i in tset:
            out["mrr"] = 1.0 / pos
            break
    cut = min(len(tset), k) if variant == "rd" else k
    dcg = sum(1.0 / math.log2(pos + 1) for pos, i in enumerate(ranking[:cut], start=1)
              if i in tset)
    ideal = sum(1.0 / math.log2(pos + 1) for pos in range(1, min(len(tset), k) + 1))
    out["ndcg"] = dcg / ideal
    num, score, score_k = 0, 0.0, 0.0
    for pos, i in enumerate(ranking, start=1):
        if i in tset:
            num += 1
            score += num / pos
            if pos <= k:
                score_k += num / pos
    out["map"] = score / len(tset)
    out["ap"] = score_k / min(len(tset), k)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("variant", ["standard", "rd"])
def test_against_slow_reference(seed: int, variant: str):
    rng = np.random.default_rng(seed)
    B, n_items = 12, int(rng.integers(15, 60))
    ks = [1, 3, 5, 10, 100]  # 100 > n_items: cut-offs beyond the list
    scores = rng.random((B, n_items))  # continuous: no ties
    excl = rng.random((B, n_items)) < rng.uniform(0.0, 0.4)
    tgt_lists = []
    for _ in range(B):
        size = int(rng.integers(1, min(12, n_items) + 1))
        tgt_lists.append(rng.choice(n_items, size=size, replace=False).tolist())
    R = max(len(x) for x in tgt_lists)
    targets = torch.full((B, R), -1, dtype=torch.long)
    for u, x in enumerate(tgt_lists):
        targets[u, :len(x)] = torch.tensor(x)
    nrel = torch.tensor([len(x) for x in tgt_lists])
    for ties in ("pessimistic", "optimistic"):
        ranks = target_ranks(torch.from_numpy(scores), targets, torch.from_numpy(excl), ties)
        got = compute_metrics(ranks, nrel, ALL, ks, ndcg_variant=variant)
        for k in ks:
            ref = [reference_user(scores[u].tolist(), tgt_lists[u],
                                  set(np.flatnonzero(excl[u]).tolist()), k, variant)
                   for u in range(B)]
            for m in ALL:
                expected = [r[m] for r in ref]
                close(got[metric_key(m, k)], expected, atol=1e-6)


def test_ranks_against_explicit_sort():
    rng = np.random.default_rng(7)
    B, n_items = 6, 40
    scores = rng.standard_normal((B, n_items)).astype(np.float32)
    excl = rng.random((B, n_items)) < 0.3
    targets = np.stack([rng.choice(n_items, 5, replace=False) for _ in range(B)])
    ranks = target_ranks(torch.from_numpy(scores), torch.from_numpy(targets),
                         torch.from_numpy(excl))
    for u in range(B):
        kept = [i for i in np.argsort(-scores[u], kind="stable") if not excl[u, i]]
        for j, item in enumerate(targets[u]):
            expected = kept.index(item) + 1 if not excl[u, item] else INF
            assert float(ranks[u, j]) == expected


# ---------------------------------------------------------------------------------------------
# an independent library: torchmetrics.retrieval
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_torchmetrics(seed: int):
    tmf = pytest.importorskip("torchmetrics.functional.retrieval")
    g = torch.Generator().manual_seed(seed)
    B, n_items = 10, 35
    # torchmetrics treats items with preds <= 0 as non-relevant (precision, recall, MRR, MAP),
    # so scores are kept strictly positive; continuous, hence no ties
    preds = torch.rand(B, n_items, generator=g) + 0.01
    rel = torch.rand(B, n_items, generator=g) < 0.2
    rel[:, 0] |= ~rel.any(1)  # every user has at least one target
    R = int(rel.sum(1).max())
    targets = torch.full((B, R), -1, dtype=torch.long)
    for u in range(B):
        idx = torch.nonzero(rel[u]).flatten()
        targets[u, :idx.numel()] = idx
    ranks = target_ranks(preds, targets)
    nrel = rel.sum(1)
    for k in (1, 3, 5, 10, 50):  # 50 > n_items
        ours = compute_metrics(ranks, nrel, ALL, [k])
        for u in range(B):
            p, y = preds[u], rel[u]
            # Precision@k = hits/k (adaptive_k=False keeps k even when k > n_items, as we do)
            close(ours[f"precision@{k}"][u], float(tmf.retrieval_precision(p, y, top_k=k)),
                  atol=1e-6)
            # Recall@k = hits/|T| in both
            close(ours[f"recall@{k}"][u], float(tmf.retrieval_recall(p, y, top_k=k)), atol=1e-6)
            # nDCG@k with IDCG over the min(|T|, k) best positions = our "standard" variant
            # (torchmetrics averages tied gains; there are no ties here); RD's variant has no
            # torchmetrics counterpart
            close(ours[f"ndcg@{k}"][u],
                  float(tmf.retrieval_normalized_dcg(p, y.long(), top_k=k)), atol=1e-6)
            close(ours[f"mrr@{k}"][u], float(tmf.retrieval_reciprocal_rank(p, y, top_k=k)),
                  atol=1e-6)
            close(ours[f"hr@{k}"][u], float(tmf.retrieval_hit_rate(p, y, top_k=k)), atol=1e-6)
            # MAP@k differs: torchmetrics divides by the number of hits in the top k, RD's
            # _compute_apk (our ap@k) by min(|T|, k); not compared
        for u in range(B):
            # without a cutoff both are (1/|T|) Σ_j j/r_j: RD's MAP over the whole list
            close(ours["map"][u],
                  float(tmf.retrieval_average_precision(preds[u], rel[u])), atol=1e-6)


def test_against_torchmetrics_modular_means():
    tm = pytest.importorskip("torchmetrics.retrieval")
    g = torch.Generator().manual_seed(11)
    B, n_items, k = 8, 25, 5
    preds = torch.rand(B, n_items, generator=g) + 0.01
    rel = torch.rand(B, n_items, generator=g) < 0.25
    rel[:, 3] |= ~rel.any(1)
    R = int(rel.sum(1).max())
    targets = torch.full((B, R), -1, dtype=torch.long)
    for u in range(B):
        idx = torch.nonzero(rel[u]).flatten()
        targets[u, :idx.numel()] = idx
    ours = compute_metrics(target_ranks(preds, targets), rel.sum(1), ALL, [k])
    indexes = torch.arange(B)[:, None].expand(B, n_items).reshape(-1)
    flat_p, flat_y = preds.reshape(-1), rel.reshape(-1)
    pairs = {"precision@5": tm.RetrievalPrecision(top_k=k),
             "recall@5": tm.RetrievalRecall(top_k=k),
             "ndcg@5": tm.RetrievalNormalizedDCG(top_k=k),
             "mrr@5": tm.RetrievalMRR(top_k=k),
             "hr@5": tm.RetrievalHitRate(top_k=k),
             "map": tm.RetrievalMAP()}
    for key, metric in pairs.items():
        expected = float(metric(flat_p, flat_y, indexes=indexes))
        assert abs(float(ours[key].mean()) - expected) < 1e-6, key


# ---------------------------------------------------------------------------------------------
# tie policies
# ---------------------------------------------------------------------------------------------

def test_constant_scores_pessimistic_vs_optimistic():
    n_items = 50
    scores = torch.zeros(3, n_items)
    targets = torch.tensor([[7], [0], [49]])
    pess = target_ranks(scores, targets, ties="pessimistic")
    opt = target_ranks(scores, targets, ties="optimistic")
    close(pess, [[n_items], [n_items], [n_items]])
    close(opt, [[1.0], [1.0], [1.0]])
    close(hit_rate_at_k(pess, 10), [0, 0, 0])
    close(hit_rate_at_k(opt, 10), [1, 1, 1])
    # the default is pessimistic
    close(target_ranks(scores, targets), pess)


def test_constant_scores_with_exclusions_and_several_targets():
    n_items = 10
    scores = torch.ones(1, n_items)
    exclude = torch.zeros(1, n_items, dtype=torch.bool)
    exclude[0, :4] = True  # 6 items remain
    targets = torch.tensor([[5, 8, 9]])
    # tied targets take the last (pessimistic) or first (optimistic) positions of the group
    close(target_ranks(scores, targets, exclude).sort(1).values, [[4.0, 5.0, 6.0]])
    close(target_ranks(scores, targets, exclude, "optimistic").sort(1).values, [[1.0, 2.0, 3.0]])
    # constant scores with every remaining item a target: any order is perfect
    all_targets = torch.tensor([[4, 5, 6, 7, 8, 9]])
    m = compute_metrics(target_ranks(scores, all_targets, exclude), n(6), ["ndcg", "map"], [6])
    close(m["ndcg@6"], [1.0])
    close(m["map"], [1.0])


def test_partial_ties():
    scores = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0]])
    targets = torch.tensor([[2, 4]])
    close(target_ranks(scores, targets, ties="pessimistic"), [[4.0, 5.0]])
    close(target_ranks(scores, targets, ties="optimistic"), [[2.0, 5.0]])
    # two tied targets within a group of three
    targets = torch.tensor([[1, 3]])
    close(target_ranks(scores, targets).sort(1).values, [[3.0, 4.0]])
    close(target_ranks(scores, targets, ties="optimistic").sort(1).values, [[2.0, 3.0]])


def test_sampled_ranks_derrd_example():
    # 499 negatives, three of them scored above the target: rank 4 among 500 candidates
    g = torch.Generator().manual_seed(0)
    neg = torch.rand(1, 499, generator=g) * 0.5  # all below 0.5
    neg[0, [10, 200, 400]] = torch.tensor([0.9, 0.8, 0.7])
    target = torch.tensor([0.6])
    r = sampled_ranks(target, neg)
    close(r, [4.0])
    m = compute_metrics(r[:, None], torch.ones(1), ["hr", "ndcg", "mrr"], [3, 5])
    close(m["hr@5"], [1.0])
    close(m["ndcg@5"], [1 / math.log2(5)])
    close(m["mrr@5"], [1 / 4])
    close(m["hr@3"], [0.0])
    # ties with the target: pessimistic counts them, optimistic does not
    neg[0, 0] = 0.6
    close(sampled_ranks(target, neg), [5.0])
    close(sampled_ranks(target, neg, ties="optimistic"), [4.0])
    close(sampled_ranks(torch.zeros(1), torch.zeros(1, 499)), [500.0])
    close(sampled_ranks(torch.zeros(1), torch.zeros(1, 499), "optimistic"), [1.0])


def test_model_scored_minus_inf_target_is_ranked_last_among_kept():
    scores = torch.tensor([[0.5, -INF, 0.2, 0.1]])
    exclude = torch.tensor([[False, False, False, True]])
    close(target_ranks(scores, torch.tensor([[1]]), exclude), [[3.0]])
    close(target_ranks(scores, torch.tensor([[1]]), exclude, "optimistic"), [[3.0]])


# ---------------------------------------------------------------------------------------------
# top-K lists
# ---------------------------------------------------------------------------------------------

def test_topk_items():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7], [0.4, 0.3, 0.2, 0.1]])
    exclude = torch.tensor([[False, True, False, False], [True, True, True, False]])
    assert topk_items(scores, exclude, 2).tolist() == [[3, 2], [3, -1]]
    assert topk_items(scores, None, 3).tolist() == [[1, 3, 2], [0, 1, 2]]
    with pytest.raises(ValueError, match="exceeds"):
        topk_items(scores, None, 5)


# ---------------------------------------------------------------------------------------------
# names and bad input
# ---------------------------------------------------------------------------------------------

def test_metric_names():
    assert split_metric_name("ndcg@10") == ("ndcg", 10)
    assert split_metric_name("map") == ("map", 0)
    assert metric_key("ndcg", 10) == "ndcg@10" and metric_key("map", 10) == "map"
    for bad in ("foo@3", "ndcg", "map@5", "hr@0", "hr@x"):
        with pytest.raises(ValueError):
            split_metric_name(bad)
    assert set(METRICS) == set(ALL)


def test_bad_input():
    ranks, nrel = t([1, 2]), n(2)
    with pytest.raises(ValueError, match=r"'foo'.*allowed"):
        compute_metrics(ranks, nrel, ["foo"], [5])
    with pytest.raises(ValueError, match="positive"):
        compute_metrics(ranks, nrel, ["ndcg"], [0])
    with pytest.raises(ValueError, match="positive"):
        precision_at_k(ranks, -3)
    with pytest.raises(ValueError, match="positive"):
        check_request(["hr"], [2.5])
    with pytest.raises(ValueError, match=r"'cut'.*standard"):
        compute_metrics(ranks, nrel, ["ndcg"], [5], ndcg_variant="cut")
    with pytest.raises(ValueError, match="n_relevant must have shape"):
        compute_metrics(ranks, n(2, 2), ["ndcg"], [5])
    with pytest.raises(ValueError, match="n_relevant must be"):
        compute_metrics(t([1, 2, 3]), n(2), ["recall"], [5])
    with pytest.raises(ValueError, match=">= 1"):
        compute_metrics(t([0, 2]), n(2), ["recall"], [5])
    with pytest.raises(ValueError, match="no cutoff"):
        compute_metrics(ranks, nrel, ["ndcg"], [])
    assert list(compute_metrics(ranks, nrel, ["map"], [])) == ["map"]
    scores = torch.rand(2, 5)
    with pytest.raises(ValueError, match="targets must be"):
        target_ranks(scores, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="exclude must be"):
        target_ranks(scores, torch.zeros(2, 1, dtype=torch.long), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        target_ranks(scores, torch.full((2, 1), 5))
    with pytest.raises(ValueError, match=r"'random'.*pessimistic"):
        target_ranks(scores, torch.zeros(2, 1, dtype=torch.long), ties="random")
    with pytest.raises(ValueError, match="NaN"):
        target_ranks(torch.full((2, 5), math.nan), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="candidate_scores"):
        sampled_ranks(torch.zeros(2), torch.zeros(3, 4))


@pytest.mark.parametrize("ties", ["pessimistic", "optimistic"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_topk_fast_path_equals_the_sort_path_up_to_max_rank(ties, seed):
    """Integer scores make many ties, including at the top-K boundary."""
    g = torch.Generator().manual_seed(seed)
    B, n_items, R, K = 16, 40, 6, 7
    scores = torch.randint(0, 6, (B, n_items), generator=g).double()
    targets = torch.stack([torch.randperm(n_items, generator=g)[:R] for _ in range(B)])
    targets[:, -1] = -1  # padding
    exclude = torch.rand(B, n_items, generator=g) < 0.3
    slow = target_ranks(scores, targets, exclude, ties=ties)
    fast = target_ranks(scores, targets, exclude, ties=ties, max_rank=K)
    expected = slow.masked_fill(slow > K, torch.inf)
    fast = fast.masked_fill(fast > K, torch.inf)
    assert torch.equal(fast, expected)
