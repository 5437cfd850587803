"""Batched evaluation on the device, with per-user values kept (methods.md §1.7, §2.5, §3.5, §5).

Two protocols:

* :func:`evaluate_full_ranking` — every item is a candidate except the user's excluded items
  (training items; for HetComp also the other held-out split). RD (``evaluation.py``, masks
  training items, P/R/nDCG@min(|T|,k)/MAP) and HetComp (``Utils/evaluation.py``, masks train
  and the other split, Recall/NDCG@10,50) follow this protocol.
* :func:`evaluate_sampled` — one target per user ranked among itself and ``C`` sampled negatives
  (DE-RRD ``Utils/evaluation.py``: 499 negatives, HR/NDCG/MRR@5,10,20).

Users are processed in batches; targets and exclusions are kept on the device in CSR form
(``indptr``/``indices``) and expanded per batch into a padded ``(B, R)`` target tensor and a
``(B, I)`` bool mask with one ``index_put``, so there is no per-user Python loop. Everything
stays on ``device`` until the per-user values are moved to NumPy at the end.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rdlib.metrics import (
    _check_ties,
    check_request,
    compute_metrics,
    metric_key,
    sampled_ranks,
    split_metric_name,
    target_ranks,
)

__all__ = ["EvalResult", "evaluate_full_ranking", "evaluate_sampled", "split_metric_name"]

FULL_METRICS: tuple[str, ...] = ("precision", "recall", "ndcg", "map", "hr", "mrr")
SAMPLED_METRICS: tuple[str, ...] = ("hr", "ndcg", "mrr")


@dataclass
class EvalResult:
    """Per-user metric values of one evaluation.

    Attributes:
        users: ``(n_eval,)`` int64 ids of the evaluated users, ascending.
        values: ``{"ndcg@10": (n_eval,), "map": (n_eval,), ...}`` float64 per-user values,
            aligned with ``users`` (keys as :func:`rdlib.metrics.metric_key`).
    """

    users: np.ndarray
    values: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def means(self) -> dict[str, float]:
        """Mean over the evaluated users of every metric (the papers' reported numbers)."""
        return {name: float(np.mean(v)) if v.size else float("nan")
                for name, v in self.values.items()}

    def metric_names(self) -> dict[str, tuple[str, int]]:
        """``{"ndcg@10": ("ndcg", 10), "map": ("map", 0), ...}``; ``k = 0`` means no cutoff."""
        return {name: split_metric_name(name) for name in self.values}

    def to_frame(self) -> pd.DataFrame:
        """Long table with columns ``user, metric, k, value`` (``k = 0`` for ``"map"``)."""
        frames = []
        for name, (metric, k) in self.metric_names().items():
            frames.append(pd.DataFrame({"user": self.users, "metric": metric, "k": k,
                                        "value": self.values[name]}))
        if not frames:
            return pd.DataFrame({"user": pd.Series(dtype=np.int64),
                                 "metric": pd.Series(dtype=object),
                                 "k": pd.Series(dtype=np.int64),
                                 "value": pd.Series(dtype=np.float64)})
        df = pd.concat(frames, ignore_index=True)
        df["k"] = df["k"].astype(np.int64)
        return df


# --------------------------------------------------------------------------------------------
# input checks and CSR helpers
# --------------------------------------------------------------------------------------------

def _check_pairs(pairs: np.ndarray, name: str, n_users: int, n_items: int | None) -> np.ndarray:
    """``pairs`` as an (N, 2) int64 array with ids in range (items unbounded if ``n_items`` is
    None); ValueError otherwise."""
    a = np.asarray(pairs)
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"{name} must be an (N, 2) array of (user, item) rows, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must hold integer ids, got dtype {a.dtype}")
    a = a.astype(np.int64, copy=False)
    if a.size:
        if a[:, 0].min() < 0 or a[:, 0].max() >= n_users:
            raise ValueError(f"{name}: user ids must lie in [0, {n_users})")
        if a[:, 1].min() < 0 or (n_items is not None and a[:, 1].max() >= n_items):
            raise ValueError(f"{name}: item ids must lie in [0, {n_items or 'n_items'})")
    return a


def _check_positive(value: int, name: str) -> int:
    try:
        v = operator.index(value)
    except TypeError:
        v = None
    if v is None or isinstance(value, bool) or v <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return v


class _CSR:
    """Rows of (user, item) pairs on the device: ``indptr`` (n_users+1,), ``indices`` (nnz,)."""

    def __init__(self, pairs: np.ndarray, n_users: int, device: torch.device) -> None:
        order = np.lexsort((pairs[:, 1], pairs[:, 0]))
        counts = np.bincount(pairs[:, 0], minlength=n_users)  # (n_users,)
        self.counts = counts
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        self.indptr = torch.as_tensor(indptr, device=device)  # (n_users + 1,)
        self.indices = torch.as_tensor(pairs[order, 1], device=device)  # (nnz,)

    def entries(self, users: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Batch row, position within the row and item of every entry of ``users`` (B,)."""
        start = self.indptr[users]  # (B,)
        cnt = self.indptr[users + 1] - start  # (B,)
        total = int(cnt.sum())
        rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), cnt,
                                       output_size=total)  # (nnz_b,)
        first = torch.cumsum(cnt, 0) - cnt  # (B,) offset of each row in the flat batch
        within = torch.arange(total, device=users.device) - first[rows]  # (nnz_b,)
        return rows, within, self.indices[start[rows] + within]


def _to_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


# --------------------------------------------------------------------------------------------
# full ranking
# --------------------------------------------------------------------------------------------

def evaluate_full_ranking(
    score_users: Callable[[Tensor], Tensor],
    n_users: int,
    n_items: int,
    targets: np.ndarray,
    exclude: Sequence[np.ndarray],
    ks: Sequence[int],
    metrics: Sequence[str] = FULL_METRICS,
    ndcg_variant: str = "standard",
    ties: str = "pessimistic",
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
    users: np.ndarray | Sequence[int] | None = None,
) -> EvalResult:
    """Full-ranking evaluation over all items minus each user's excluded items.

    Args:
        score_users: ``users (B,) → scores (B, n_items)`` on ``device`` (higher is better).
        n_users: number of user ids.
        n_items: number of item ids (every id is a candidate unless excluded).
        targets: ``(N, 2)`` (user, item) rows of the evaluated split; duplicate rows count
            once (RD's code reads the targets from a CSR matrix, so it dedupes too).
        exclude: ``(M, 2)`` arrays of (user, item) rows removed from each user's ranking: the
            training split, and for HetComp the other held-out split. A target that is also
            excluded is never hit but counts in ``|T|`` (RD's code).
        ks: cutoffs.
        metrics: names from :data:`rdlib.metrics.METRICS`.
        ndcg_variant: ``"standard"`` or ``"rd"`` (RD's nDCG@min(|T|, k)).
        ties: ``"pessimistic"`` (default) or ``"optimistic"`` (see
            :func:`rdlib.metrics.target_ranks`).
        batch_size: users per batch.
        device: where scores, masks and metrics are computed.
        users: restrict the evaluation to these users (those without targets are skipped).

    Returns:
        :class:`EvalResult` over the users with ≥ 1 target, ascending.
    """
    metrics, ks = check_request(metrics, ks, ndcg_variant)
    _check_ties(ties)
    n_users = _check_positive(n_users, "n_users")
    n_items = _check_positive(n_items, "n_items")
    batch_size = _check_positive(batch_size, "batch_size")
    if isinstance(exclude, np.ndarray):
        exclude = [exclude]
    dev = _to_device(device)
    tgt = np.unique(_check_pairs(targets, "targets", n_users, n_items), axis=0)  # (N', 2)
    excl = [_check_pairs(e, f"exclude[{i}]", n_users, n_items) for i, e in enumerate(exclude)]
    t_csr = _CSR(tgt, n_users, dev)
    x_csrs = [_CSR(e, n_users, dev) for e in excl if e.shape[0]]
    eval_users = np.flatnonzero(t_csr.counts > 0)  # (n_eval,)
    if users is not None:
        req = np.asarray(users)
        if req.ndim != 1 or (req.size and not np.issubdtype(req.dtype, np.integer)):
            raise ValueError(f"users must be a 1-d array of integer ids, got {req.dtype} "
                             f"{req.shape}")
        if req.size and (req.min() < 0 or req.max() >= n_users):
            raise ValueError(f"users: ids must lie in [0, {n_users})")
        eval_users = np.intersect1d(eval_users, req)
    eval_users = eval_users.astype(np.int64)
    n_rel_all = torch.as_tensor(t_csr.counts, device=dev)  # (n_users,)
    # ranks beyond the largest cutoff only matter for RD's whole-list MAP: otherwise top-K only
    max_rank = None if "map" in metrics else max(ks)
    users_dev = torch.as_tensor(eval_users, device=dev)  # (n_eval,)

    chunks: dict[str, list[Tensor]] = {}
    with torch.no_grad():
        for b in range(0, users_dev.numel(), batch_size):
            u = users_dev[b:b + batch_size]  # (B,)
            B = u.numel()
            scores = score_users(u)
            if not isinstance(scores, Tensor) or tuple(scores.shape) != (B, n_items):
                raise ValueError(f"score_users returned shape "
                                 f"{tuple(getattr(scores, 'shape', ()))}, expected ({B}, {n_items})")
            scores = scores.to(dev)  # (B, I)
            rows, within, items = t_csr.entries(u)
            n_rel = n_rel_all[u]  # (B,)
            tp = torch.full((B, int(n_rel.max())), -1, dtype=torch.long, device=dev)  # (B, R)
            tp[rows, within] = items
            mask = None
            if x_csrs:
                mask = torch.zeros((B, n_items), dtype=torch.bool, device=dev)  # (B, I)
                for csr in x_csrs:
                    r, _, it = csr.entries(u)
                    mask.index_put_((r, it), torch.ones_like(it, dtype=torch.bool))
            ranks = target_ranks(scores, tp, mask, ties=ties, max_rank=max_rank)  # (B, R)
            for name, v in compute_metrics(ranks, n_rel, metrics, ks, ndcg_variant).items():
                chunks.setdefault(name, []).append(v)
    values = _collect(chunks, metrics, ks)
    return EvalResult(users=eval_users, values=values)


def _collect(chunks: dict[str, list[Tensor]], metrics: tuple[str, ...],
             ks: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Concatenate the per-batch values and move them to NumPy (the only host copy)."""
    if not chunks:  # nobody evaluated: the same keys, empty arrays
        names = dict.fromkeys(metric_key(m, k) for m in metrics for k in ks or (0,))
        return {n: np.empty(0, dtype=np.float64) for n in names}
    return {name: torch.cat(parts).double().cpu().numpy() for name, parts in chunks.items()}


# --------------------------------------------------------------------------------------------
# sampled leave-one-out
# --------------------------------------------------------------------------------------------

def evaluate_sampled(
    score_pairs: Callable[[Tensor, Tensor], Tensor],
    targets: np.ndarray,
    negatives: np.ndarray,
    ks: Sequence[int],
    metrics: Sequence[str] = SAMPLED_METRICS,
    ties: str = "pessimistic",
    batch_size: int = 1024,
    device: str | torch.device = "cpu",
) -> EvalResult:
    """Sampled leave-one-out evaluation (DE-RRD ``Utils/evaluation.py``, methods.md §2.5).

    User ``u``'s candidate list is its target followed by ``negatives[u]``; with ``C = 499``
    the target is ranked among 500 items, rank ``p ∈ [1, C + 1]``, and HR@N = ``1[p ≤ N]``,
    NDCG@N = ``1/log2(p+1)``, MRR@N = ``1/p`` (0 when ``p > N``).

    Args:
        score_pairs: ``(users (B,), items (B, C+1)) → scores (B, C+1)``; column 0 is the target.
        targets: ``(N, 2)`` (user, item) rows, exactly one per user.
        negatives: ``(n_users, C)`` item ids per user (rows of users without a target unused);
            a user's target must not be among its negatives.
        ks: cutoffs N.
        metrics: names from :data:`rdlib.metrics.METRICS`; ``ndcg`` is the standard variant,
            DE-RRD's ``1/log2(p+1)`` (RD's truncated variant would reduce to HR@1 here).
        ties: ``"pessimistic"`` (default) or ``"optimistic"``.
        batch_size: users per batch.
        device: where candidates, scores and metrics live.

    Returns:
        :class:`EvalResult` over the users of ``targets``, ascending.
    """
    metrics, ks = check_request(metrics, ks)
    _check_ties(ties)
    batch_size = _check_positive(batch_size, "batch_size")
    neg = np.asarray(negatives)
    if neg.ndim != 2 or neg.shape[1] < 1 or (neg.size and not np.issubdtype(neg.dtype, np.integer)):
        raise ValueError(f"negatives must be an (n_users, C) integer array with C >= 1, got "
                         f"{neg.dtype} {neg.shape}")
    n_users = neg.shape[0]
    tgt = _check_pairs(targets, "targets", n_users, None)
    tgt = tgt[np.argsort(tgt[:, 0], kind="stable")]
    if tgt.shape[0] > 1 and np.any(tgt[1:, 0] == tgt[:-1, 0]):
        dup = int(tgt[1:, 0][tgt[1:, 0] == tgt[:-1, 0]][0])
        raise ValueError(f"sampled evaluation needs exactly one target per user; user {dup} has "
                         f"several")
    if neg.size and neg.min() < 0:
        raise ValueError("negatives hold negative item ids")
    clash = (neg[tgt[:, 0]] == tgt[:, 1:2]).any(1)  # (N,)
    if clash.any():
        raise ValueError(f"the target of user {int(tgt[clash.argmax(), 0])} is among its own "
                         f"negatives")
    dev = _to_device(device)
    neg_dev = torch.tensor(neg, dtype=torch.long, device=dev)  # (n_users, C), a copy
    users_dev = torch.as_tensor(tgt[:, 0], device=dev)  # (N,)
    items_dev = torch.as_tensor(tgt[:, 1], device=dev)  # (N,)
    C = neg.shape[1]

    chunks: dict[str, list[Tensor]] = {}
    with torch.no_grad():
        for b in range(0, users_dev.numel(), batch_size):
            u = users_dev[b:b + batch_size]  # (B,)
            B = u.numel()
            cand = torch.cat([items_dev[b:b + batch_size, None], neg_dev[u]], dim=1)  # (B, C+1)
            s = score_pairs(u, cand)
            if not isinstance(s, Tensor) or tuple(s.shape) != (B, C + 1):
                raise ValueError(f"score_pairs returned shape {tuple(getattr(s, 'shape', ()))}, "
                                 f"expected ({B}, {C + 1})")
            s = s.to(dev)  # (B, C+1)
            ranks = sampled_ranks(s[:, 0], s[:, 1:], ties=ties)[:, None]  # (B, 1)
            n_rel = torch.ones(B, device=dev)  # (B,)
            for name, v in compute_metrics(ranks, n_rel, metrics, ks).items():
                chunks.setdefault(name, []).append(v)
    values = _collect(chunks, metrics, ks)
    return EvalResult(users=tgt[:, 0].copy(), values=values)
