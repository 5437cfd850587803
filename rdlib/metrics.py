"""Rank-based ranking metrics, vectorised in torch (methods.md §1.7, §2.5, §3.5).

Every metric is computed from the **1-based ranks of a user's relevant (target) items** in the
user's filtered ranking, not from the ranked list itself:

* ``ranks`` — ``(B, R)`` float tensor, one row per user; padding slots hold ``+inf``. A target
  that can never be ranked (because it is also an excluded item, e.g. a training item) also has
  rank ``+inf``: it is never a hit but still counts in ``|T|``, as in RD's official code
  (graytowne/rank_distill ``evaluation.evaluate_ranking`` divides by ``len(targets)``);
* ``n_relevant`` — ``(B,)`` the number of targets ``|T_u|`` (≥ the number of finite ranks).

With ``h_k = #{rank ≤ k}`` the metrics are

==============  ===========================================================================
precision@k     ``h_k / k``                          (RD ``_compute_precision_recall``)
recall@k        ``h_k / |T|``                        (RD; HetComp divides by ``|G_u|`` too)
hr@k            ``1[h_k > 0]``                       (DE-RRD ``LOO_check``: ``1[p ≤ N]``)
mrr@k           ``1 / min rank`` if it is ≤ k else 0 (DE-RRD: ``1/p``)
ndcg@k          ``Σ_{rank ≤ c} 1/log2(rank+1)`` over ``IDCG = Σ_{i=1}^{min(|T|, k)} 1/log2(i+1)``
                with ``c = k`` ("standard", HetComp / DE-RRD) or ``c = min(|T|, k)`` ("rd",
                RD's ``_compute_ndcg``, which truncates the cut-off for DCG *and* IDCG)
map             ``(1/|T|) Σ_j j / r_j`` over the hits in rank order over the **whole** list
                (RD ``_compute_apk(k=np.inf)``; the key has no cutoff)
ap@k            ``(1/min(|T|, k)) Σ_{r_j ≤ k} j / r_j`` (RD ``_compute_apk`` with a finite k)
==============  ===========================================================================

For a single target at rank ``p`` (sampled leave-one-out, DE-RRD) these reduce to
``HR = 1[p ≤ N]``, ``NDCG = 1/log2(p+1)·1[p ≤ N]`` and ``MRR = 1[p ≤ N]/p``.

Metric keys are ``"<name>@<k>"`` (``"ndcg@10"``) and ``"map"`` for the cutoff-free MAP;
:func:`split_metric_name` maps ``"map"`` to ``("map", 0)``, the ``k = 0`` convention of the
results store's integer ``k`` column.

Ranks come from scores through :func:`target_ranks` (full ranking, one sort per row plus
``torch.searchsorted``) or :func:`sampled_ranks` (target among ``C`` sampled candidates). Ties
are broken **pessimistically** by default; see :func:`target_ranks`.

Metric values are computed in float64 (float32 on MPS, which has no float64).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import torch
from torch import Tensor

#: Metric names accepted by :func:`compute_metrics` (``"map"`` takes no cutoff).
METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "ap", "hr", "mrr")
#: Metrics without a cutoff: one key each, whatever ``ks`` is.
CUTOFF_FREE: tuple[str, ...] = ("map",)
#: ``"standard"`` nDCG@k, or ``"rd"``: RD's official nDCG@min(|T|, k).
NDCG_VARIANTS: tuple[str, ...] = ("standard", "rd")
#: Tie policies of :func:`target_ranks` and :func:`sampled_ranks`.
TIE_POLICIES: tuple[str, ...] = ("pessimistic", "optimistic")


# --------------------------------------------------------------------------------------------
# names and validation
# --------------------------------------------------------------------------------------------

def metric_key(metric: str, k: int | None = None) -> str:
    """The result key of ``metric`` at cutoff ``k``: ``"ndcg@10"``, or ``"map"`` (no cutoff)."""
    return metric if metric in CUTOFF_FREE else f"{metric}@{int(k)}"


def split_metric_name(name: str) -> tuple[str, int]:
    """Split a result key: ``"ndcg@10"`` → ``("ndcg", 10)``; ``"map"`` → ``("map", 0)``.

    ``k = 0`` stands for "no cutoff" (the whole ranked list), so the ``k`` column of result
    tables stays integer.
    """
    metric, sep, k = name.partition("@")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} in {name!r}; allowed: {METRICS}")
    if not sep:
        if metric not in CUTOFF_FREE:
            raise ValueError(f"metric key {name!r} lacks its cutoff, e.g. '{metric}@10'")
        return metric, 0
    if metric in CUTOFF_FREE:
        raise ValueError(f"{metric!r} takes no cutoff (key {name!r}); use {metric!r}")
    try:
        kk = int(k)
    except ValueError:
        raise ValueError(f"cutoff of {name!r} is not an integer") from None
    if kk <= 0:
        raise ValueError(f"cutoff of {name!r} must be a positive integer")
    return metric, kk


def _check_k(k: int) -> int:
    try:
        kk = operator.index(k)
    except TypeError:
        raise ValueError(f"cutoff k must be a positive integer, got {k!r}") from None
    if isinstance(k, bool) or kk <= 0:
        raise ValueError(f"cutoff k must be a positive integer, got {k!r}")
    return kk


def _check_variant(variant: str) -> None:
    if variant not in NDCG_VARIANTS:
        raise ValueError(f"ndcg_variant={variant!r} is unknown; allowed: {NDCG_VARIANTS}")


def _check_ties(ties: str) -> None:
    if ties not in TIE_POLICIES:
        raise ValueError(f"ties={ties!r} is unknown; allowed: {TIE_POLICIES}")


def check_request(metrics: Sequence[str], ks: Sequence[int],
                  ndcg_variant: str = "standard") -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Validate metric names, cutoffs and the nDCG variant; return them as tuples.

    Raises:
        ValueError: naming the bad value and the allowed ones.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError(f"no metric requested; allowed: {METRICS}")
    for m in metrics:
        if m not in METRICS:
            raise ValueError(f"unknown metric {m!r}; allowed: {METRICS}")
    ks = tuple(_check_k(k) for k in ks)
    if not ks and any(m not in CUTOFF_FREE for m in metrics):
        raise ValueError("no cutoff given: ks must hold at least one positive integer")
    _check_variant(ndcg_variant)
    return metrics, ks


def _float_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def _check_shapes(ranks: Tensor, n_relevant: Tensor | None = None) -> None:
    if not isinstance(ranks, Tensor) or ranks.dim() != 2:
        raise ValueError(f"ranks must be a (B, R) tensor, got shape "
                         f"{tuple(getattr(ranks, 'shape', ()))}")
    if n_relevant is not None:
        if not isinstance(n_relevant, Tensor) or n_relevant.shape != ranks.shape[:1]:
            raise ValueError(f"n_relevant must have shape ({ranks.shape[0]},) to match ranks "
                             f"{tuple(ranks.shape)}, got {tuple(getattr(n_relevant, 'shape', ()))}")


def check_ranks(ranks: Tensor, n_relevant: Tensor | None = None) -> None:
    """Check shapes and values of a ``(ranks, n_relevant)`` pair.

    Every rank must be a number ≥ 1 (or ``+inf``), and every ``n_relevant`` ≥ 1 and ≥ the
    user's number of finite ranks.

    Raises:
        ValueError: on a bad shape or value.
    """
    _check_shapes(ranks, n_relevant)
    if ranks.numel() and bool(((ranks < 1) | torch.isnan(ranks)).any()):
        raise ValueError("ranks must be >= 1 (or +inf for padding / unrankable targets)")
    if n_relevant is not None and n_relevant.numel():
        finite = torch.isfinite(ranks).sum(1)  # (B,)
        if bool((n_relevant < 1).any()) or bool((n_relevant < finite).any()):
            raise ValueError("n_relevant must be >= 1 and >= the number of finite ranks per "
                             "user (|T| counts every target, ranked or not)")


def _prep(ranks: Tensor, n_relevant: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    dtype = _float_dtype(ranks.device)
    r = ranks.to(dtype)
    if r.shape[1] == 0:  # no target slot at all: one padding column keeps reductions defined
        r = torch.full((r.shape[0], 1), torch.inf, dtype=dtype, device=r.device)
    n = None if n_relevant is None else n_relevant.to(dtype)
    return r, n


def _discount(ranks: Tensor) -> Tensor:
    """``1/log2(rank+1)`` (0 for +inf ranks)."""
    return 1.0 / torch.log2(ranks + 1.0)


def _ideal_dcg(m: Tensor) -> Tensor:
    """``IDCG(m) = Σ_{i=1}^{m} 1/log2(i+1)`` for a (B,) tensor of non-negative counts ``m``."""
    m = m.long()
    top = int(m.max()) if m.numel() else 0
    disc = 1.0 / torch.log2(torch.arange(2, top + 2, device=m.device, dtype=_float_dtype(m.device)))
    table = torch.cat([disc.new_zeros(1), disc.cumsum(0)])  # (top + 1,) table[j] = IDCG(j)
    return table[m]


# --------------------------------------------------------------------------------------------
# metrics from ranks (private implementations take prepared float tensors)
# --------------------------------------------------------------------------------------------

def _hits(r: Tensor, k: int) -> Tensor:
    return (r <= k).sum(1).to(r.dtype)  # (B,)


def _precision(r: Tensor, k: int) -> Tensor:
    return _hits(r, k) / k


def _recall(r: Tensor, n: Tensor, k: int) -> Tensor:
    return _hits(r, k) / n


def _hr(r: Tensor, k: int) -> Tensor:
    return (r <= k).any(1).to(r.dtype)


def _mrr(r: Tensor, k: int) -> Tensor:
    best = r.amin(1)  # (B,)
    return torch.where(best <= k, 1.0 / best, torch.zeros_like(best))


def _ndcg(r: Tensor, n: Tensor, k: int, variant: str) -> Tensor:
    cut = torch.clamp(n, max=k)  # (B,) min(|T|, k)
    idcg = _ideal_dcg(cut)  # (B,)
    limit = cut[:, None] if variant == "rd" else torch.full_like(cut[:, None], float(k))  # (B, 1)
    dcg = torch.where(r <= limit, _discount(r), torch.zeros_like(r)).sum(1)  # (B,)
    return dcg / idcg


def _ap(r: Tensor, n: Tensor, k: int | None) -> Tensor:
    srt = r.sort(dim=1).values  # (B, R) ascending: hits in rank order, +inf last
    j = torch.arange(1, srt.shape[1] + 1, device=r.device, dtype=r.dtype)  # (R,) hit counter
    keep = torch.isfinite(srt) if k is None else srt <= k  # (B, R)
    terms = torch.where(keep, j / srt, torch.zeros_like(srt))  # (B, R) precision at each hit
    denom = n if k is None else torch.clamp(n, max=k)
    return terms.sum(1) / denom


# --------------------------------------------------------------------------------------------
# public metric functions
# --------------------------------------------------------------------------------------------

def precision_at_k(ranks: Tensor, k: int) -> Tensor:
    """Precision@k = ``#{rank ≤ k} / k`` per user, (B,).

    RD's ``_compute_precision_recall`` (``num_hit / len(predictions[:k])``); it equals ours
    except when fewer than k items are left after filtering, where RD divides by the list
    length and we keep ``k`` (as torchmetrics ``RetrievalPrecision`` without ``adaptive_k``).
    """
    k = _check_k(k)
    check_ranks(ranks)
    r, _ = _prep(ranks)
    return _precision(r, k)


def recall_at_k(ranks: Tensor, n_relevant: Tensor, k: int) -> Tensor:
    """Recall@k = ``#{rank ≤ k} / |T|`` per user, (B,).

    The denominator is ``|T|``, not ``min(k, |T|)``, as in RD's and HetComp's code (so a user
    with more than k targets cannot reach 1).
    """
    k = _check_k(k)
    check_ranks(ranks, n_relevant)
    r, n = _prep(ranks, n_relevant)
    return _recall(r, n, k)


def hit_rate_at_k(ranks: Tensor, k: int) -> Tensor:
    """HR@k = ``1[min rank ≤ k]`` per user, (B,) (DE-RRD's HR@N: ``1[p ≤ N]``)."""
    k = _check_k(k)
    check_ranks(ranks)
    r, _ = _prep(ranks)
    return _hr(r, k)


def mrr_at_k(ranks: Tensor, k: int) -> Tensor:
    """MRR@k = ``1/min rank`` if ``min rank ≤ k`` else 0, per user, (B,).

    Reciprocal rank of the first hit (DE-RRD's MRR@N = ``1/p`` for ``p ≤ N``).
    """
    k = _check_k(k)
    check_ranks(ranks)
    r, _ = _prep(ranks)
    return _mrr(r, k)


def ndcg_at_k(ranks: Tensor, n_relevant: Tensor, k: int, variant: str = "standard") -> Tensor:
    """Binary-gain nDCG per user, (B,).

    ``variant="standard"`` (HetComp ``Utils/evaluation.py``; DE-RRD's ``1/log2(p+1)`` for one
    target; torchmetrics ``RetrievalNormalizedDCG``)::

        DCG@k  = Σ_{rank ≤ k} 1/log2(rank + 1)
        IDCG@k = Σ_{i=1}^{min(|T|, k)} 1/log2(i + 1)
        nDCG@k = DCG@k / IDCG@k

    ``variant="rd"`` (RD's official ``evaluation._compute_ndcg``): the cut-off is first set to
    ``k' = min(|T|, k)`` for *both* DCG and IDCG, i.e. the value is the standard nDCG@k'. The
    two differ whenever ``|T| < k`` and a target sits at a rank in ``(|T|, k]``.
    """
    k = _check_k(k)
    _check_variant(variant)
    check_ranks(ranks, n_relevant)
    r, n = _prep(ranks, n_relevant)
    return _ndcg(r, n, k, variant)


def average_precision(ranks: Tensor, n_relevant: Tensor, k: int | None = None) -> Tensor:
    """Average precision per user, (B,), as RD's ``evaluation._compute_apk``.

    With the hits in rank order, the j-th at rank ``r_j``:

    * ``k=None`` (RD's MAP, key ``"map"``): ``(1/|T|) Σ_j j / r_j`` over the **whole** filtered
      ranking; unrankable targets (rank +inf) add nothing but count in ``|T|``;
    * ``k`` given (key ``"ap@k"``): ``(1/min(|T|, k)) Σ_{r_j ≤ k} j / r_j``.

    torchmetrics ``RetrievalMAP(top_k=k)`` divides by the number of hits in the top k instead;
    the two coincide only without a cutoff.
    """
    if k is not None:
        k = _check_k(k)
    check_ranks(ranks, n_relevant)
    r, n = _prep(ranks, n_relevant)
    return _ap(r, n, k)


def compute_metrics(ranks: Tensor, n_relevant: Tensor, metrics: Sequence[str],
                    ks: Sequence[int], ndcg_variant: str = "standard") -> dict[str, Tensor]:
    """Every requested metric at every cutoff, per user.

    Args:
        ranks: ``(B, R)`` 1-based ranks of the targets, ``+inf`` for padding / unrankable.
        n_relevant: ``(B,)`` ``|T_u|``.
        metrics: names from :data:`METRICS`.
        ks: positive cutoffs (ignored by ``"map"``).
        ndcg_variant: ``"standard"`` or ``"rd"`` (see :func:`ndcg_at_k`).

    Returns:
        ``{"ndcg@10": (B,), ..., "map": (B,)}`` in the order metrics × ks, float64 tensors on
        ``ranks.device``.

    Raises:
        ValueError: unknown metric, non-positive k, unknown variant, bad shapes or values.
    """
    metrics, ks = check_request(metrics, ks, ndcg_variant)
    check_ranks(ranks, n_relevant)
    r, n = _prep(ranks, n_relevant)
    out: dict[str, Tensor] = {}
    for m in metrics:
        if m == "map":
            out["map"] = _ap(r, n, None)
            continue
        for k in ks:
            key = metric_key(m, k)
            if m == "precision":
                out[key] = _precision(r, k)
            elif m == "recall":
                out[key] = _recall(r, n, k)
            elif m == "hr":
                out[key] = _hr(r, k)
            elif m == "mrr":
                out[key] = _mrr(r, k)
            elif m == "ndcg":
                out[key] = _ndcg(r, n, k, ndcg_variant)
            else:  # "ap"
                out[key] = _ap(r, n, k)
    return out


# --------------------------------------------------------------------------------------------
# ranks from scores
# --------------------------------------------------------------------------------------------

def _check_scores(scores: Tensor, name: str = "scores") -> Tensor:
    if not isinstance(scores, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        scores = scores.to(torch.float64)
    if scores.numel() and bool(torch.isnan(scores).any()):
        raise ValueError(f"{name} contain NaN: a ranking of NaN scores is undefined")
    return scores


def _spread_ties(raw: Tensor, ties: str) -> Tensor:
    """Give targets that tie with each other distinct consecutive ranks, (B, R).

    ``raw`` ranks of tied targets are equal (each counts the others). A real ranking puts them
    in consecutive positions: the last ``m`` positions of their tie group (pessimistic,
    ``r-m+1 … r``) or the first ``m`` (optimistic, ``r … r+m-1``). Targets are interchangeable
    for binary relevance, so which one gets which position does not matter.
    """
    B, R = raw.shape
    if R <= 1:
        return raw
    srt, order = raw.sort(dim=1)  # (B, R) ascending, +inf last
    pos = torch.arange(R, device=raw.device).expand(B, R)  # (B, R)
    same_prev = torch.zeros_like(srt, dtype=torch.bool)
    same_prev[:, 1:] = srt[:, 1:] == srt[:, :-1]  # (B, R)
    if ties == "optimistic":
        start = torch.where(same_prev, 0, pos).cummax(dim=1).values  # (B, R) group start
        adjusted = srt + (pos - start).to(srt.dtype)
    else:
        same_next = torch.zeros_like(same_prev)
        same_next[:, :-1] = same_prev[:, 1:]
        end = torch.where(same_next, R, pos).flip(1).cummin(dim=1).values.flip(1)  # group end
        adjusted = srt - (end - pos).to(srt.dtype)
    return torch.empty_like(raw).scatter_(1, order, adjusted)


def target_ranks(scores: Tensor, targets: Tensor, exclude: Tensor | None = None,
                 ties: str = "pessimistic", max_rank: int | None = None) -> Tensor:
    """1-based ranks of each user's targets in the full ranking of non-excluded items.

    Args:
        scores: ``(B, I)`` scores, higher is better.
        targets: ``(B, R)`` int64 item ids, padded with ``-1``; ids distinct within a row.
        exclude: ``(B, I)`` bool, True for items removed from the ranking (the user's training
            items and, for HetComp, the other held-out split), or None.
        ties: ``"pessimistic"`` (default) or ``"optimistic"``.
        max_rank: when given, ranks are exact up to ``max_rank`` and ``+inf`` beyond it, which
            is all that metrics with cutoffs ``k <= max_rank`` need (not RD's whole-list MAP).
            Computed with one ``torch.topk`` per row instead of a full sort (several times
            faster for full-item rankings).

    Returns:
        ``(B, R)`` float ranks (float64; float32 on MPS); ``+inf`` for padding and for targets
        that are themselves excluded (they can never be hit but still count in ``|T|``).

    Tie policy. The official codes break ties arbitrarily (unstable NumPy / torch argsorts,
    methods.md §5), so their numbers for tied scores depend on item ids and sort internals.
    Here ties are resolved by rule:

    * ``"pessimistic"``: a target ranks after every non-excluded item with an equal score,
      ``rank = #{j not excluded: s_j ≥ s_t}``;
    * ``"optimistic"``: ``rank = 1 + #{j not excluded: s_j > s_t}``.

    Pessimistic is the default because it can never flatter a model: a degenerate model giving
    every item the same score (collapsed or untrained embeddings) gets rank ``n_items`` for its
    target and HR@10 = 0, whereas the optimistic rule would rank every target first and report
    a perfect score. For continuous scores without ties the two policies coincide. When several
    *targets* tie with each other they receive distinct consecutive ranks (the last, resp.
    first, positions of their tie group), so the ranks are those of an actual worst-case
    (resp. best-case) ordering; for one target this is exactly the formula above.

    Implementation: one ascending sort per row and ``torch.searchsorted`` of the target scores,
    O(B·I log I) time and O(B·I) memory (no per-user loop, no ``(B, R, I)`` comparison).
    """
    _check_ties(ties)
    scores = _check_scores(scores)
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, I), got shape {tuple(scores.shape)}")
    if not isinstance(targets, Tensor) or targets.dim() != 2 \
            or targets.shape[0] != scores.shape[0]:
        raise ValueError(f"targets must be (B, R) with B={scores.shape[0]} rows like scores, got "
                         f"shape {tuple(getattr(targets, 'shape', ()))}")
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"targets must hold integer item ids, got dtype {targets.dtype}")
    B, n_items = scores.shape
    if exclude is not None:
        if not isinstance(exclude, Tensor) or exclude.shape != scores.shape \
                or exclude.dtype != torch.bool:
            raise ValueError(f"exclude must be a bool tensor of shape {tuple(scores.shape)}, got "
                             f"{getattr(exclude, 'dtype', type(exclude))} "
                             f"{tuple(getattr(exclude, 'shape', ()))}")
    targets = targets.long()
    if targets.numel() and bool(((targets < -1) | (targets >= n_items)).any()):
        raise ValueError(f"target ids must lie in [0, {n_items}) (or be -1 for padding)")
    dtype = _float_dtype(scores.device)
    valid = targets >= 0  # (B, R)
    t = targets.clamp(min=0)  # (B, R)
    s = scores if exclude is None else scores.masked_fill(exclude, -torch.inf)  # (B, n_items)
    ts = s.gather(1, t).contiguous()  # (B, R) target scores
    n_kept = torch.full((B,), n_items, device=s.device) if exclude is None \
        else n_items - exclude.sum(1)  # (B,)
    if max_rank is not None and 0 < max_rank < n_items:
        raw = _topk_raw_ranks(s, ts, n_kept, max_rank, ties)
    else:
        raw = _sorted_raw_ranks(s, ts, n_kept, ties)
    out = ~valid  # (B, R)
    if exclude is not None:
        out |= exclude.gather(1, t)
    ranks = raw.to(dtype).masked_fill(out, torch.inf)  # (B, R)
    return _spread_ties(ranks, ties)


def _topk_raw_ranks(s: Tensor, ts: Tensor, n_kept: Tensor, K: int, ties: str) -> Tensor:
    """Raw ranks exact up to ``K`` (+inf beyond) from the top-``K`` scores of each row.

    Every item scored strictly above the K-th value v_K is in the top K, so for a target with
    s_t > v_K both counts are read off the top K. At s_t = v_K the pessimistic count may include
    tied items outside the top K: it is counted over the whole row, an O(B·I) comparison.
    Targets below v_K rank after at least K items: +inf.
    """
    top = s.topk(K, dim=1).values  # (B, K) descending
    v_k = top[:, -1:]  # (B, 1)
    if ties == "pessimistic":
        raw = (top[:, None, :] >= ts[..., None]).sum(-1).to(torch.float64)  # (B, R)
        at_edge = (s >= v_k).sum(1, keepdim=True).to(torch.float64)  # (B, 1)
        raw = torch.where(ts == v_k, at_edge.expand_as(raw), raw)
        raw = torch.minimum(raw, n_kept[:, None].to(torch.float64))
    else:
        raw = 1 + (top[:, None, :] > ts[..., None]).sum(-1).to(torch.float64)  # (B, R)
    return raw.masked_fill(ts < v_k, torch.inf)


def _sorted_raw_ranks(s: Tensor, ts: Tensor, n_kept: Tensor, ties: str) -> Tensor:
    """Raw ranks of every target from one ascending sort per row and ``searchsorted``."""
    n_items = s.shape[1]
    srt = s.sort(dim=1).values  # (B, n_items) ascending; excluded items (-inf) first
    if ties == "pessimistic":
        below = torch.searchsorted(srt, ts, side="left")  # (B, R) #{j: s_j < s_t}
        # #{kept j: s_j ≥ s_t}; the clamp only acts on targets scored -inf by the model itself
        return torch.minimum(n_items - below, n_kept[:, None])
    not_above = torch.searchsorted(srt, ts, side="right")  # (B, R) #{j: s_j ≤ s_t}
    return 1 + n_items - not_above  # (B, R) 1 + #{j: s_j > s_t}; excluded -inf never counted


def sampled_ranks(target_scores: Tensor, candidate_scores: Tensor,
                  ties: str = "pessimistic") -> Tensor:
    """1-based rank of one target among itself and ``C`` sampled candidates, (B,).

    DE-RRD's sampled leave-one-out (``Utils/evaluation.py``): the target competes with 499
    negatives, so ``rank ∈ [1, C + 1]``. ``"pessimistic"``: ``1 + #{c: s_c ≥ s_t}``;
    ``"optimistic"``: ``1 + #{c: s_c > s_t}`` (see :func:`target_ranks` for why pessimistic is
    the default).

    Args:
        target_scores: ``(B,)`` score of each user's target.
        candidate_scores: ``(B, C)`` scores of the user's negatives.
    """
    _check_ties(ties)
    target_scores = _check_scores(target_scores, "target_scores")
    candidate_scores = _check_scores(candidate_scores, "candidate_scores")
    if target_scores.dim() != 1 or candidate_scores.dim() != 2 \
            or candidate_scores.shape[0] != target_scores.shape[0]:
        raise ValueError(f"need target_scores (B,) and candidate_scores (B, C), got shapes "
                         f"{tuple(target_scores.shape)} and {tuple(candidate_scores.shape)}")
    t = target_scores[:, None]  # (B, 1)
    beaten = (candidate_scores >= t) if ties == "pessimistic" else (candidate_scores > t)  # (B, C)
    return (1 + beaten.sum(1)).to(_float_dtype(candidate_scores.device))  # (B,)


def topk_items(scores: Tensor, exclude: Tensor | None, k: int) -> Tensor:
    """The ``k`` best non-excluded items per user, best first, (B, k) int64.

    Excluded items are masked to ``-inf`` and reported as ``-1``: if fewer than ``k`` items are
    kept, the remaining slots are ``-1`` (a kept item the model itself scores ``-inf`` may then
    be among them). Ties are broken by ``torch.topk`` (not specified by torch,
    but deterministic for a given input and device).
    """
    scores = _check_scores(scores)
    if scores.dim() != 2:
        raise ValueError(f"scores must be (B, I), got shape {tuple(scores.shape)}")
    k = _check_k(k)
    if k > scores.shape[1]:
        raise ValueError(f"k={k} exceeds the number of items {scores.shape[1]}")
    if exclude is not None and (not isinstance(exclude, Tensor) or exclude.shape != scores.shape
                                or exclude.dtype != torch.bool):
        raise ValueError(f"exclude must be a bool tensor of shape {tuple(scores.shape)}")
    s = scores if exclude is None else scores.masked_fill(exclude, -torch.inf)  # (B, I)
    idx = s.topk(k, dim=1, sorted=True).indices  # (B, k)
    if exclude is not None:
        idx = idx.masked_fill(exclude.gather(1, idx), -1)
    return idx
