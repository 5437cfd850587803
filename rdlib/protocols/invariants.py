"""Invariants every :class:`~rdlib.protocols.split.Split` must satisfy.

Each protocol function calls :func:`check_split` before returning, so every split used anywhere
in the study has been checked. A violation raises :class:`InvariantError` whose message names
the invariant, the protocol and one offending ``(user, item)`` pair.

Invariants (names as they appear in messages, see ``INVARIANTS``):

* ``shape`` — parts are ``(N, 2)`` int64, ``negatives`` is ``(n_users, C)`` int64, ``times``
  match the parts;
* ``id_range`` — users in ``[0, n_users)``, items and negatives in ``[0, n_items)``;
* ``no_duplicates`` — no ``(user, item)`` pair twice within a part;
* ``disjoint`` — train, valid and test pairwise disjoint;
  (both skipped when ``info["allow_repeats"]``: a temporal split built with ``dedupe=False``
  keeps repeated consumptions on purpose);
* ``loo_one_per_user`` — LOO: every evaluated user has exactly one valid and one test item, and
  the valid and test users are the same (methods.md §2.1);
* ``loo_valid_ne_test`` — LOO: the two held-out items of a user differ;
* ``holdout_same_users`` — holdout: valid and test users are the same (HetComp drops a user from
  both when either is empty, methods.md §3.1);
* ``holdout_items_in_train`` — holdout: every valid/test item occurs in training (§3.1);
* ``negatives_unobserved`` — no sampled negative of a user is in that user's train, valid or
  test (methods.md §2.1: "499 sampled unobserved items");
* ``negatives_unique`` — no item twice in a user's candidate row;
* ``temporal_order`` — temporal: every valid/test time of a user is ≥ every train time of that
  user, and every test time ≥ every valid time (methods.md §1.1, Caser's 70/10/20 split);
* ``expected_counts`` — ``split.stats()`` / ``split.info`` equal the ``expected`` values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rdlib.data.types import DataError
from rdlib.protocols.split import PARTS, Split, in_sorted

INVARIANTS = (
    "shape",
    "id_range",
    "no_duplicates",
    "disjoint",
    "loo_one_per_user",
    "loo_valid_ne_test",
    "holdout_same_users",
    "holdout_items_in_train",
    "negatives_unobserved",
    "negatives_unique",
    "temporal_order",
    "expected_counts",
)


class InvariantError(DataError):
    """A split violates one of the invariants in :data:`INVARIANTS`."""

    def __init__(self, invariant: str, protocol: str, detail: str, example: Any = None) -> None:
        self.invariant = invariant
        self.protocol = protocol
        msg = f"split invariant '{invariant}' violated (protocol '{protocol}'): {detail}"
        if example is not None:
            msg += f"; e.g. (user, item) = {example}"
        super().__init__(msg)


def _keys(rows: np.ndarray, n_items: int) -> np.ndarray:
    """``(N,)`` int64 keys ``user * n_items + item`` of ``(N, 2)`` rows."""
    return rows[:, 0].astype(np.int64) * np.int64(n_items) + rows[:, 1]


def _example(key: int, n_items: int) -> tuple[int, int]:
    return (int(key // n_items), int(key % n_items))


def _first_dup(keys: np.ndarray) -> int | None:
    """A key that occurs twice in ``keys`` (or ``None``)."""
    s = np.sort(keys)
    hit = np.flatnonzero(s[1:] == s[:-1])
    return None if hit.size == 0 else int(s[hit[0]])


def check_split(split: Split, *, expected: dict[str, Any] | None = None) -> None:
    """Check every invariant that applies to ``split.protocol``; raise on the first violation.

    Args:
        split: the split to check.
        expected: optional exact values for keys of ``split.stats()`` or ``split.info`` (for
            instance the official HetComp counts ``{"n_train": 78958, ...}``).

    Raises:
        InvariantError: naming the violated invariant, the protocol and an example pair.
    """
    p = split.protocol
    n_items = int(split.n_items)

    # shape
    for name in PARTS:
        a = split.part(name)
        if a.ndim != 2 or a.shape[1] != 2 or a.dtype != np.int64:
            raise InvariantError(
                "shape", p, f"{name} must be (N, 2) int64, got {a.shape} {a.dtype}"
            )
    if split.negatives is not None:
        neg = split.negatives
        if neg.ndim != 2 or neg.shape[0] != split.n_users or neg.dtype != np.int64:
            raise InvariantError(
                "shape",
                p,
                f"negatives must be (n_users={split.n_users}, C) int64, "
                f"got {neg.shape} {neg.dtype}",
            )
    if split.times is not None:
        for name, t in zip(PARTS, split.times, strict=True):
            if t.shape != (split.part(name).shape[0],):
                raise InvariantError("shape", p, f"times of {name} have shape {t.shape}")

    # id_range
    for name in PARTS:
        a = split.part(name)
        bad = np.flatnonzero(
            (a[:, 0] < 0) | (a[:, 0] >= split.n_users) | (a[:, 1] < 0) | (a[:, 1] >= n_items)
        )
        if bad.size:
            raise InvariantError(
                "id_range",
                p,
                f"{bad.size} {name} rows outside users [0, {split.n_users}) x items [0, {n_items})",
                tuple(int(x) for x in a[bad[0]]),
            )
    if split.negatives is not None and split.negatives.size:
        neg = split.negatives
        bad = np.argwhere((neg < 0) | (neg >= n_items))
        if bad.size:
            u, j = bad[0]
            raise InvariantError(
                "id_range",
                p,
                f"{len(bad)} negatives outside [0, {n_items})",
                (int(u), int(neg[u, j])),
            )

    keys = {name: _keys(split.part(name), n_items) for name in PARTS}  # each (N_part,)
    allow_repeats = bool(split.info.get("allow_repeats", False))

    vu, tu = split.valid[:, 0], split.test[:, 0]
    if p == "loo":
        for name, users in (("valid", vu), ("test", tu)):
            c = np.bincount(users, minlength=split.n_users)
            bad = np.flatnonzero(c > 1)
            if bad.size:
                u = int(bad[0])
                raise InvariantError(
                    "loo_one_per_user",
                    p,
                    f"{bad.size} users have several {name} items (user {u} has {int(c[u])})",
                    (u, int(split.part(name)[users == u][0, 1])),
                )
        sym = np.setxor1d(vu, tu)
        if sym.size:
            u = int(sym[0])
            raise InvariantError(
                "loo_one_per_user",
                p,
                f"{sym.size} users have a valid item but no test item or the reverse (user {u})",
            )
        v_item = np.full(split.n_users, -1, dtype=np.int64)
        v_item[vu] = split.valid[:, 1]
        same = np.flatnonzero(v_item[tu] == split.test[:, 1])
        if same.size:
            raise InvariantError(
                "loo_valid_ne_test",
                p,
                f"{same.size} users have valid item == test item",
                tuple(int(x) for x in split.test[same[0]]),
            )
    if p == "holdout":
        sym = np.setxor1d(vu, tu)
        if sym.size:
            raise InvariantError(
                "holdout_same_users",
                p,
                f"{sym.size} users are evaluated on only one of valid/test (user {int(sym[0])})",
            )
        in_train = np.zeros(n_items, dtype=bool)
        in_train[split.train[:, 1]] = True
        for name in ("valid", "test"):
            a = split.part(name)
            bad = np.flatnonzero(~in_train[a[:, 1]])
            if bad.size:
                raise InvariantError(
                    "holdout_items_in_train",
                    p,
                    f"{bad.size} {name} items never occur in training",
                    tuple(int(x) for x in a[bad[0]]),
                )

    # no_duplicates, disjoint
    if not allow_repeats:
        for name in PARTS:
            dup = _first_dup(keys[name])
            if dup is not None:
                raise InvariantError(
                    "no_duplicates", p, f"a pair occurs twice in {name}", _example(dup, n_items)
                )
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            both = np.intersect1d(keys[a], keys[b])
            if both.size:
                raise InvariantError(
                    "disjoint",
                    p,
                    f"{both.size} pairs are in both {a} and {b}",
                    _example(both[0], n_items),
                )

    # negatives
    if split.negatives is not None and split.negatives.size:
        neg = split.negatives  # (n_users, C)
        observed = np.unique(np.concatenate([keys[n] for n in PARTS]))  # sorted (M,)
        nkeys = np.arange(split.n_users, dtype=np.int64)[:, None] * n_items + neg  # (n_users, C)
        hit = np.argwhere(in_sorted(observed, nkeys))
        if hit.size:
            u, j = hit[0]
            raise InvariantError(
                "negatives_unobserved",
                p,
                f"{len(hit)} sampled negatives are observed items of their user",
                (int(u), int(neg[u, j])),
            )
        s = np.sort(neg, axis=1)
        hit = np.argwhere(s[:, 1:] == s[:, :-1])
        if hit.size:
            u, j = hit[0]
            raise InvariantError(
                "negatives_unique",
                p,
                f"{len(hit)} repeated negatives within a user's row",
                (int(u), int(s[u, j])),
            )

    if p == "temporal":
        if split.times is None:
            raise InvariantError("temporal_order", p, "a temporal split must carry its times")
        t_tr, t_va, t_te = split.times
        last_train = np.full(split.n_users, -np.inf)
        np.maximum.at(last_train, split.train[:, 0], t_tr)
        last_valid = last_train.copy()
        np.maximum.at(last_valid, vu, t_va)
        for name, a, t, bound in (
            ("valid", split.valid, t_va, last_train),
            ("test", split.test, t_te, last_valid),
        ):
            bad = np.flatnonzero(t < bound[a[:, 0]])
            if bad.size:
                raise InvariantError(
                    "temporal_order",
                    p,
                    f"{bad.size} {name} rows are earlier than a training"
                    f"{'' if name == 'valid' else ' or validation'} row of their user",
                    tuple(int(x) for x in a[bad[0]]),
                )

    if expected:
        have = {**split.info, **split.stats()}
        for k, v in expected.items():
            if k not in have:
                raise InvariantError("expected_counts", p, f"unknown count {k!r}")
            if have[k] != v:
                raise InvariantError("expected_counts", p, f"{k} = {have[k]!r}, expected {v!r}")
