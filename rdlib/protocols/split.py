"""The :class:`Split` container shared by every evaluation protocol.

A split is the fixed partition of one interaction log into training, validation and test pairs,
plus (for sampled evaluation) the candidate negatives of each user. It is produced once per
(dataset, protocol, seed) by :mod:`rdlib.protocols` and then read by models, trainers and
evaluators; all arrays are made read-only so that nothing downstream can alter a split silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PARTS = ("train", "valid", "test")


def pairs(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Stack two ``(N,)`` id vectors into one ``(N, 2)`` int64 array of ``(user, item)`` rows."""
    return np.stack([np.asarray(users, dtype=np.int64), np.asarray(items, dtype=np.int64)], axis=1)


def csr_by_user(rows: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Group ``(N, 2)`` rows by user, keeping each user's row order (stable sort).

    Returns ``indptr`` ``(n_users + 1,)`` and ``items`` ``(N,)``: the items of user ``u`` are
    ``items[indptr[u]:indptr[u + 1]]``, in the order they had in ``rows``.
    """
    order = np.argsort(rows[:, 0], kind="stable")  # (N,)
    counts = np.bincount(rows[:, 0], minlength=n_users)  # (n_users,)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, rows[order, 1].astype(np.int64, copy=False)


def in_sorted(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Boolean mask shaped like ``keys``: which values occur in the sorted 1-D ``sorted_keys``."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    idx = np.searchsorted(sorted_keys, keys)
    np.minimum(idx, sorted_keys.size - 1, out=idx)
    return sorted_keys[idx] == keys


def _freeze(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Split:
    """A fixed train/validation/test partition of an interaction log.

    Ids are those of the source :class:`~rdlib.data.types.Interactions` (no re-indexing): users
    or items that a protocol drops simply do not occur in any part.

    Attributes:
        protocol: ``"loo"`` (DE-RRD leave-one-out, methods.md §2.1), ``"holdout"`` (HetComp
            per-user random 60/20/20, §3.1) or ``"temporal"`` (RD/Caser per-user time split,
            §1.1).
        n_users: number of user ids (``Interactions.n_users``).
        n_items: number of item ids (``Interactions.n_items``); the Caser padding id is
            ``n_items`` (see :func:`rdlib.protocols.temporal.caser_windows`).
        train: ``(N_train, 2)`` int64 ``(user, item)`` rows grouped by user (ascending); within a
            user, time order for the temporal protocol.
        valid: ``(N_valid, 2)`` int64 rows, grouped by user.
        test: ``(N_test, 2)`` int64 rows, grouped by user.
        negatives: ``(n_users, C)`` int64 sampled candidates for sampled evaluation (shared by
            validation and test), or ``None`` for full ranking.
        seed: the seed that produced the split (0 for the deterministic temporal protocol).
        info: parameters and counts of what was dropped and why (JSON-serialisable values).
        times: for the temporal protocol, the ``(N_train,)``, ``(N_valid,)``, ``(N_test,)``
            float64 times of the rows (timestamps, or row positions when the source has none);
            ``None`` otherwise.
    """

    protocol: str
    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    negatives: np.ndarray | None
    seed: int
    info: dict[str, Any] = field(default_factory=dict)
    times: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def __post_init__(self) -> None:
        for name in PARTS:
            object.__setattr__(self, name, _freeze(getattr(self, name)))
        object.__setattr__(self, "negatives", _freeze(self.negatives))
        if self.times is not None:
            object.__setattr__(self, "times", tuple(_freeze(t) for t in self.times))

    def part(self, name: str) -> np.ndarray:
        """The ``(N, 2)`` rows of ``"train"``, ``"valid"`` or ``"test"``."""
        if name not in PARTS:
            raise ValueError(f"unknown part {name!r}; expected one of {PARTS}")
        return getattr(self, name)

    def by_user(self, name: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """CSR view of one part: ``indptr`` ``(n_users + 1,)`` and ``items`` ``(N,)``."""
        return csr_by_user(self.part(name), self.n_users)

    def train_by_user(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR view of the training rows (time order within a user for temporal splits)."""
        return self.by_user("train")

    def eval_users(self, name: str = "test") -> np.ndarray:
        """``(U,)`` sorted ids of the users with at least one row in ``name``."""
        return np.unique(self.part(name)[:, 0])

    def train_plus_valid(self) -> np.ndarray:
        """``(N_train + N_valid, 2)`` rows of train then valid for each user, grouped by user.

        For the temporal protocol this is the time-ordered 80% prefix on which RD's code fits
        the final model before testing (``datasets/gowalla/test/train.txt``, methods.md §1.1).
        """
        both = np.concatenate([self.train, self.valid], axis=0)
        return both[np.argsort(both[:, 0], kind="stable")]

    def stats(self) -> dict[str, Any]:
        """Counts of the split: the keys that :func:`check_split` compares with ``expected``."""
        return {
            "protocol": self.protocol,
            "seed": int(self.seed),
            "n_users": int(self.n_users),
            "n_items": int(self.n_items),
            "n_train": int(self.train.shape[0]),
            "n_valid": int(self.valid.shape[0]),
            "n_test": int(self.test.shape[0]),
            "n_train_users": int(np.unique(self.train[:, 0]).size),
            "n_valid_users": int(np.unique(self.valid[:, 0]).size),
            "n_test_users": int(np.unique(self.test[:, 0]).size),
            "n_negatives": 0 if self.negatives is None else int(self.negatives.shape[1]),
        }
