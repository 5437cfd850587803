"""The teacher's top-ranked *unobserved* items per user, the input of RRD (methods.md §2.3).

DE-RRD's official code reads a ranked list ``topk_dict[u]`` of at least 500 items per user
(the file is not shipped); HetComp's README calls these lists "top-ranked unobserved items", so
the user's **training** items are excluded here. Held-out (validation/test) items are *not*
excluded: the teacher only sees training data, and excluding held-out items would leak them.

Deviation from the official pipeline: none known, except that ties among equal teacher scores
are broken by :func:`torch.topk` (arbitrary but deterministic), whereas the order of the
official file is unknown.
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path

import numpy as np
import torch

from rdlib.models.base import Recommender
from rdlib.results import atomic_write


def _user_offsets(train: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Training items sorted by user and the CSR offsets ``(n_users + 1,)`` into them."""
    order = np.argsort(train[:, 0], kind="stable")
    users, items = train[order, 0], train[order, 1]
    offsets = np.searchsorted(users, np.arange(n_users + 1))
    return items.astype(np.int64), offsets.astype(np.int64)


@torch.no_grad()
def teacher_topk(teacher: Recommender, train: np.ndarray, n_users: int, n_items: int,
                 k: int = 500, batch_size: int = 1024, device: str | torch.device = "cpu",
                 ) -> torch.Tensor:
    """Each user's ``k`` highest-scored items by ``teacher``, training items excluded.

    Args:
        teacher: a trained recommender (put in eval mode here, on ``device``).
        train: ``(N, 2)`` ``(user, item)`` training pairs; these items are masked with ``-inf``.
        n_users: number of user ids (rows of the result).
        n_items: number of item ids.
        k: list length (500 in the official RRD code).
        batch_size: users scored per :meth:`Recommender.score_users` call.
        device: where scoring and ``torch.topk`` run.

    Returns:
        ``(n_users, k)`` int64 tensor on ``device``, row ``u`` in decreasing teacher score.

    Raises:
        ValueError: if some user has fewer than ``k`` unobserved items.
    """
    train = np.asarray(train, dtype=np.int64).reshape(-1, 2)
    items_sorted, offsets = _user_offsets(train, n_users)
    counts = np.diff(offsets)  # (n_users,), duplicates counted; checked on unique pairs below
    if counts.size and n_items - counts.max() < k:
        uniq = np.unique(train[:, 0] * n_items + train[:, 1])
        n_obs = np.bincount(uniq // n_items, minlength=n_users)
        if n_items - n_obs.max() < k:
            raise ValueError(f"k={k} exceeds the unobserved items of user "
                             f"{int(n_obs.argmax())} ({n_items - int(n_obs.max())})")
    device = torch.device(device)
    teacher = teacher.to(device).eval()
    items_t = torch.as_tensor(items_sorted, device=device)  # (N,)
    out = torch.empty((n_users, k), dtype=torch.long, device=device)
    for a in range(0, n_users, batch_size):
        b = min(a + batch_size, n_users)
        users = torch.arange(a, b, device=device)  # (B,)
        scores = teacher.score_users(users).float()  # (B, I)
        lo, hi = int(offsets[a]), int(offsets[b])
        rows = torch.as_tensor(np.repeat(np.arange(b - a), counts[a:b]), device=device)  # (n,)
        scores[rows, items_t[lo:hi]] = -torch.inf
        out[a:b] = torch.topk(scores, k, dim=1, sorted=True).indices  # (B, k)
    return out


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file (used to key caches by teacher checkpoint)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _train_digest(train: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(train, dtype=np.int64).tobytes()).hexdigest()


def cached_teacher_topk(path: str | Path, teacher: Recommender, train: np.ndarray, n_users: int,
                        n_items: int, k: int = 500, *, key: str | None = None,
                        checkpoint: str | Path | None = None, batch_size: int = 1024,
                        device: str | torch.device = "cpu") -> torch.Tensor:
    """:func:`teacher_topk`, cached in the ``.pt`` file ``path``.

    The cache is keyed by ``key`` if given, else by the SHA-256 of the teacher ``checkpoint``
    file; the training pairs' digest and the sizes are stored too. A cached list with at least
    ``k`` columns and matching key/train/sizes is loaded (and sliced to ``k``); otherwise the
    list is computed and the file (re)written.
    """
    if key is None:
        if checkpoint is None:
            raise ValueError("cached_teacher_topk needs key= or checkpoint=")
        key = file_digest(checkpoint)
    path = Path(path)
    meta = {"key": key, "train": _train_digest(train), "n_users": n_users, "n_items": n_items}
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if all(saved.get(m) == v for m, v in meta.items()) and saved["topk"].shape[1] >= k:
            return saved["topk"][:, :k].contiguous().to(device)
    topk = teacher_topk(teacher, train, n_users, n_items, k=k, batch_size=batch_size,
                        device=device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, partial(torch.save, {**meta, "topk": topk.cpu()}))
    return topk
