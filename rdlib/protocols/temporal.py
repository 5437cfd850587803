"""RD/Caser per-user temporal split and Caser's training windows (methods.md §1.1, §1.7).

Rounding rule (inferred from RD's shipped Gowalla files, papers.md §1.1)
    For a user with ``n`` distinct items in time order::

        n_test  = ⌊ρ_test · n⌋
        n_valid = ⌊(ρ_test + ρ_valid) · n⌋ − ⌊ρ_test · n⌋
        n_train = n − n_test − n_valid            (= ⌈(1 − ρ_test − ρ_valid) · n⌉)

    i.e. the last ⌊30%⌋ is held out and its last ⌊20%⌋ is the test set. RD's shipped files
    (``gowalla-rd-partial``: 13,149 users, ≥ 3 test and ≥ 1 validation items each) give every
    user's (test, valid) sizes: (3,1), (3,2), (4,2), (4,3), (5,2), (5,3), … . Among the
    floor / ceil / round / int variants tried (of ρ·n, of the remaining prefix, of the train
    share) only this rule, with ≥ 15 interactions per user (15 or 16 both fit the files;
    15 is the Gowalla threshold of the Caser paper as we recall it — not in methods.md),
    produces exactly that set; e.g. ⌊0.1 n⌋ for validation cannot give (3,2).
    Products are floored with a 1e-9 tolerance so that e.g. 0.3 · 10 counts as 3.

Repeated consumptions
    Check-in logs repeat (user, item) pairs. RD's Gowalla test files contain no repeated pair
    within a user, so by default (``dedupe=True``) only the first occurrence of a pair in time
    order is kept (counted in ``info["duplicates_dropped"]``) and the parts are disjoint sets.
    ``dedupe=False`` keeps every row (``info["allow_repeats"] = True`` relaxes the
    ``no_duplicates`` / ``disjoint`` invariants).
"""

from __future__ import annotations

import numpy as np

from rdlib.data.types import Interactions
from rdlib.protocols.invariants import check_split
from rdlib.protocols.split import Split, csr_by_user, pairs

_EPS = 1e-9


def temporal_counts(
    n: np.ndarray, valid_ratio: float, test_ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(n_valid, n_test)`` per user for sequence lengths ``n`` (see the module docstring)."""
    n = np.asarray(n, dtype=np.int64)
    n_test = np.floor(n * test_ratio + _EPS).astype(np.int64)
    n_held = np.floor(n * (test_ratio + valid_ratio) + _EPS).astype(np.int64)
    return n_held - n_test, n_test


def temporal(
    inter: Interactions,
    valid_ratio: float = 0.1,
    test_ratio: float = 0.2,
    min_interactions: int = 15,
    *,
    dedupe: bool = True,
) -> Split:
    """Per-user temporal split: oldest ~70% train, next ~10% validation, newest ~20% test.

    Each user's rows are sorted by timestamp, stably (ties keep file order); without timestamps
    the file order is the time order (Caser convention, methods.md §1.1) and the row index
    serves as time. Users with fewer than ``min_interactions`` (distinct, after ``dedupe``) rows
    are removed from every part — Caser's preprocessing drops them from the data set (15 on
    Gowalla, which yields RD's minima of 3 test and 1 validation items) — and so are users whose
    rounding leaves a part empty (possible only with a low ``min_interactions``); both are
    counted in ``info``. No randomness: ``seed`` is 0.

    Vectorised: one stable ``np.lexsort`` by (user, time), positions within a user by cumulative
    counts, parts by comparing positions with the per-user sizes of :func:`temporal_counts`.

    Args:
        inter: the log; ``inter.timestamps`` if present, else file order.
        valid_ratio: ρ_valid (0.1).
        test_ratio: ρ_test (0.2).
        min_interactions: users below this are dropped (15 fits RD's Gowalla files; Caser's
            paper thresholds, recalled and unverified here: 15 Gowalla, 10 Foursquare).
        dedupe: keep only the first occurrence of a repeated (user, item) pair.

    Returns:
        A checked :class:`Split` with ``protocol="temporal"``, train rows in time order within
        each user and the row times in ``split.times``.
    """
    for name, r in (("valid_ratio", valid_ratio), ("test_ratio", test_ratio)):
        if not 0.0 < r < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {r}")
    if valid_ratio + test_ratio >= 1.0:
        raise ValueError(f"valid_ratio + test_ratio must be < 1, got {valid_ratio + test_ratio}")
    if min_interactions < 1:
        raise ValueError(f"min_interactions must be >= 1, got {min_interactions}")

    has_ts = inter.timestamps is not None
    t_all = (
        np.asarray(inter.timestamps, dtype=np.float64)
        if has_ts
        else np.arange(len(inter), dtype=np.float64)
    )  # (N,)
    order = np.lexsort((t_all, inter.users))  # (N,) stable: ties keep file order
    users = inter.users[order].astype(np.int64)  # (N,)
    items = inter.items[order].astype(np.int64)
    times = t_all[order]
    n_dup = 0
    if dedupe:
        _, first = np.unique(users * np.int64(inter.n_items) + items, return_index=True)
        first = np.sort(first)  # earliest occurrence of each pair, order kept
        n_dup = users.size - first.size
        users, items, times = users[first], items[first], times[first]

    counts = np.bincount(users, minlength=inter.n_users)  # (n_users,)
    start = np.zeros(inter.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    n_valid, n_test = temporal_counts(counts, valid_ratio, test_ratio)  # (n_users,) each
    n_train = counts - n_valid - n_test
    short = (counts > 0) & (counts < min_interactions)
    empty = (counts >= min_interactions) & ((n_train < 1) | (n_valid < 1) | (n_test < 1))
    kept = (counts > 0) & ~short & ~empty  # (n_users,)

    pos = np.arange(users.size) - start[users]  # (N',) position in the user's sequence
    k = kept[users]
    is_train = k & (pos < n_train[users])
    is_test = k & (pos >= (counts - n_test)[users])
    is_valid = k & ~is_train & ~is_test

    def part(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return pairs(users[mask], items[mask]), times[mask]

    (train, t_tr), (valid, t_va), (test, t_te) = part(is_train), part(is_valid), part(is_test)
    info = {
        "valid_ratio": float(valid_ratio),
        "test_ratio": float(test_ratio),
        "min_interactions": int(min_interactions),
        "rounding": "n_test=floor(rt*n), n_valid=floor((rt+rv)*n)-n_test",
        "time_source": "timestamps" if has_ts else "file order",
        "allow_repeats": not dedupe,
        "duplicates_dropped": int(n_dup),
        "users_dropped_short": int(np.count_nonzero(short)),
        "interactions_dropped_short": int(counts[short].sum()),
        "users_dropped_empty_part": int(np.count_nonzero(empty)),
        "users_kept": int(np.count_nonzero(kept)),
    }
    split = Split(
        "temporal",
        int(inter.n_users),
        int(inter.n_items),
        train,
        valid,
        test,
        None,
        0,
        info,
        times=(t_tr, t_va, t_te),
    )
    check_split(split)
    return split


def _sequences(split: Split, include_valid: bool) -> tuple[np.ndarray, np.ndarray]:
    """CSR (``indptr`` ``(n_users + 1,)``, ``items``) of each user's training sequence."""
    rows = split.train_plus_valid() if include_valid else split.train
    return csr_by_user(rows, split.n_users)


def caser_windows(
    split: Split, L: int = 5, T: int = 1, *, include_valid: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Caser's training instances: every window of ``L + T`` items of each training sequence.

    Mirrors caser_pytorch's ``Interactions.to_sequence`` with its fixed ``_sliding_window``
    (methods.md §1.1, §1.7 last bullet; caser_pytorch issue #5 / PR #6): for a user with a
    sequence of ``n ≥ L + T`` items, the ``n - L - T + 1`` windows are emitted from the newest
    to the oldest (window ending at ``n``, then ``n - 1``, …); a user with ``n < L + T`` gets
    exactly one window, the whole sequence left-padded to ``L + T``. The first ``L`` items of a
    window are the input, the last ``T`` the targets. Users without training rows get none.

    The padding id is ``split.n_items`` (our ids are 0-based, so the padding takes the first
    free id instead of Caser's 0 with items shifted by +1): embedding tables need
    ``n_items + 1`` rows. If ``n < T`` the targets contain padding too, as in caser_pytorch;
    the loss must mask them (never the case with RD's ``T = 1``).

    Args:
        split: usually a temporal split (train rows in time order).
        L: input length (RD: 5).
        T: number of targets (RD: 1; caser_pytorch default 3).
        include_valid: use train + valid (RD's final fit on the 80% prefix).

    Returns:
        ``users`` ``(W,)``, ``inputs`` ``(W, L)`` and ``targets`` ``(W, T)``, all int64.
    """
    if L < 1 or T < 1:
        raise ValueError(f"L and T must be >= 1, got L={L}, T={T}")
    W = L + T
    indptr, seq = _sequences(split, include_valid)
    n = np.diff(indptr)  # (n_users,)
    users_with = np.flatnonzero(n > 0)
    n_win = np.maximum(n[users_with] - W + 1, 1)  # (U,) windows per user
    users = np.repeat(users_with, n_win)  # (Wn,)
    first = np.zeros(users_with.size + 1, dtype=np.int64)
    np.cumsum(n_win, out=first[1:])
    k = np.arange(users.size) - np.repeat(first[:-1], n_win)  # (Wn,) 0 = newest window
    end = n[users] - k  # (Wn,) exclusive end position in the user's sequence
    offs = end[:, None] - W + np.arange(W)  # (Wn, W) positions, < 0 means padding
    win = seq[indptr[users][:, None] + np.maximum(offs, 0)]  # (Wn, W); every user has n >= 1
    win[offs < 0] = split.n_items  # left padding
    return users.astype(np.int64), win[:, :L].copy(), win[:, L:].copy()


def last_inputs(split: Split, L: int = 5, *, include_valid: bool = False) -> np.ndarray:
    """``(n_users, L)`` int64: the last ``L`` training items of each user, left-padded.

    The test-time input of Caser (``test_sequences`` in caser_pytorch, methods.md §1.1, §1.7):
    the newest ``L`` items of the training sequence (train + valid with ``include_valid``, as
    when RD scores its test set), padded on the left with ``split.n_items``; users without
    training rows get a row of padding.
    """
    if L < 1:
        raise ValueError(f"L must be >= 1, got {L}")
    indptr, seq = _sequences(split, include_valid)
    offs = indptr[1:, None] - L + np.arange(L)  # (n_users, L) absolute positions
    valid = offs >= indptr[:-1, None]
    out = np.full((split.n_users, L), split.n_items, dtype=np.int64)
    out[valid] = seq[offs[valid]]
    return out
