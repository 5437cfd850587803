"""Leave-one-out with sampled negatives: the DE / RRD / DE-RRD protocol (methods.md §2.1, §2.5).

Per user, two observed items drawn at random are held out, one for test and one for validation,
and 499 items the user never interacted with are sampled once; validation and test share them,
so each target is ranked against the same 499 negatives (the other held-out item is observed and
therefore never among them). The authors' CiteULike split is shipped (train/valid/test pickles,
``citeulike-t-derrd-loo``), but its ``candidates_0`` file is a Git-LFS pointer, so the negatives
are always re-sampled here, seeded.
"""

from __future__ import annotations

import numpy as np

from rdlib.data.types import DataError, Interactions
from rdlib.protocols.invariants import check_split
from rdlib.protocols.split import Split, in_sorted, pairs

#: Budget of int64 cells per drawing block (≈32 MB), bounding memory whatever ``n_users``.
_BLOCK_CELLS = 1 << 22


def dedupe_first(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Indices ``(M,)`` (ascending) of the first occurrence of each ``(user, item)`` pair."""
    keys = users.astype(np.int64) * np.int64(n_items) + items
    _, first = np.unique(keys, return_index=True)
    return np.sort(first)


def _first_occurrence_mask(draws: np.ndarray) -> np.ndarray:
    """``(R, K)`` bool: True where a value appears for the first time in its row."""
    order = np.argsort(draws, axis=1, kind="stable")  # (R, K), equal values keep draw order
    s = np.take_along_axis(draws, order, axis=1)
    first_sorted = np.ones(draws.shape, dtype=bool)
    first_sorted[:, 1:] = s[:, 1:] != s[:, :-1]
    first = np.empty_like(first_sorted)
    np.put_along_axis(first, order, first_sorted, axis=1)
    return first


def sample_negatives(
    observed: np.ndarray,
    n_users: int,
    n_items: int,
    n_negatives: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Sample, for every user, ``n_negatives`` distinct items the user never interacted with.

    Uniform without replacement over ``[0, n_items)`` minus the user's observed items. Two
    vectorised paths, both exact:

    * rejection (users whose free items outnumber ``4 * n_negatives``): draw a ``(R, K)`` block
      of uniform ids, reject observed ids (``np.searchsorted`` against the sorted keys
      ``user * n_items + item``) and repeats within a row, keep the first ``n_negatives``
      survivors in draw order; rows with too few survivors are re-drawn with ``2K`` columns.
      Keeping the first distinct free draws of an i.i.d. uniform stream is sequential sampling
      without replacement; discarding a whole failed row is a permutation-invariant event, so
      the accepted subsets stay uniform;
    * random keys (users with few free items, where rejection would stall): a uniform key per
      item, observed items pushed to the end, the ``n_negatives`` smallest keys kept.

    Args:
        observed: ``(M, 2)`` int64 ``(user, item)`` rows to exclude (train ∪ valid ∪ test).
        n_users: rows of the result.
        n_items: size of the item catalogue.
        n_negatives: ``C``, the number of candidates per user.
        rng: the generator; the result is a deterministic function of its state.

    Returns:
        ``(n_users, C)`` int64 candidates, in sampling order.

    Raises:
        DataError: if a user has fewer than ``C`` unobserved items.
    """
    C = int(n_negatives)
    if C < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    keys = np.unique(observed[:, 0].astype(np.int64) * np.int64(n_items) + observed[:, 1])  # (M',)
    free = n_items - np.bincount(keys // n_items, minlength=n_users)  # (n_users,)
    short = np.flatnonzero(free < C)
    if short.size:
        u = int(short[0])
        raise DataError(
            f"cannot sample {C} negatives: {short.size} users have fewer unobserved items "
            f"(user {u} has {int(free[u])} of {n_items})"
        )
    out = np.empty((n_users, C), dtype=np.int64)  # (n_users, C)
    dense = 4 * C > free  # (n_users,) bool

    # rejection path
    rows = np.flatnonzero(~dense)
    if rows.size:
        # Distinct free values expected after m free draws: F (1 - exp(-m / F)); solve for C
        # with the smallest F of the block, add a margin, and divide by the free fraction.
        f = float(free[rows].min())
        m = f * np.log(f / (f - C)) + 8.0 * np.sqrt(C) + 16.0
        k0 = int(np.ceil(m * n_items / f))
        block = max(1, _BLOCK_CELLS // k0)
        for b in range(0, rows.size, block):
            pending = rows[b : b + block]  # (R,) user ids still to fill
            k = k0
            while pending.size:
                draws = rng.integers(0, n_items, size=(pending.size, k), dtype=np.int64)  # (R, k)
                seen = in_sorted(keys, pending[:, None] * np.int64(n_items) + draws)
                ok = ~seen & _first_occurrence_mask(draws)  # (R, k)
                done = ok.sum(axis=1) >= C  # (R,)
                take = ok[done] & (np.cumsum(ok[done], axis=1) <= C)  # exactly C per row
                out[pending[done]] = draws[done][take].reshape(-1, C)
                pending = pending[~done]
                k *= 2

    # random-key path
    rows = np.flatnonzero(dense)
    if rows.size:
        pos = np.full(n_users, -1, dtype=np.int64)
        obs_u, obs_i = keys // n_items, keys % n_items  # (M',)
        block = max(1, _BLOCK_CELLS // n_items)
        for b in range(0, rows.size, block):
            chunk = rows[b : b + block]  # (R,)
            r = rng.random((chunk.size, n_items))  # (R, n_items)
            pos[chunk] = np.arange(chunk.size)
            sel = pos[obs_u] >= 0
            r[pos[obs_u[sel]], obs_i[sel]] = 2.0  # observed items sort after every free one
            pos[chunk] = -1
            out[chunk] = np.argsort(r, axis=1, kind="stable")[:, :C]
    return out


def loo_sampled(inter: Interactions, seed: int, n_negatives: int = 499) -> Split:
    """DE-RRD's leave-one-out split with ``n_negatives`` shared sampled negatives (§2.1, §2.5).

    Per user with at least 3 distinct items, two observed items drawn uniformly at random are
    held out: the first is the test item, the second the validation item; the rest is training.
    Users with fewer than 3 distinct items stay in training only (counted in
    ``info["users_train_only"]``): they keep ≥ 1 training item and are not evaluated. Repeated
    ``(user, item)`` rows are collapsed to their first occurrence (counted). Then ``n_negatives``
    items per user (every user, so ``negatives`` has one row per user id) are sampled uniformly
    without replacement among the items the user never interacted with, by
    :func:`sample_negatives`.

    One ``np.random.default_rng(seed)`` drives both steps: first a uniform key per row (held-out
    items = the two smallest keys of each user, via one ``np.lexsort``), then the negatives.

    Args:
        inter: the interaction log (e.g. citeulike-t users with ≥ 5 items).
        seed: the split seed (DE-RRD's ``LOO_seed``).
        n_negatives: candidates per user (499 in DE-RRD).

    Returns:
        A checked :class:`Split` with ``protocol="loo"``.
    """
    if int(n_negatives) < 1:
        raise ValueError(f"n_negatives must be >= 1, got {n_negatives}")
    rng = np.random.default_rng(seed)
    keep = dedupe_first(inter.users, inter.items, inter.n_items)  # (M,)
    users = inter.users[keep].astype(np.int64)  # (M,)
    items = inter.items[keep].astype(np.int64)  # (M,)
    counts = np.bincount(users, minlength=inter.n_users)  # (n_users,)
    order = np.lexsort((rng.random(users.size), users))  # (M,) by user, random within user
    su = users[order]
    start = np.zeros(inter.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    rank = np.arange(su.size) - start[su]  # (M,) random position within user
    eligible = counts[su] >= 3
    is_test = np.zeros(users.size, dtype=bool)
    is_valid = np.zeros(users.size, dtype=bool)
    is_test[order[eligible & (rank == 0)]] = True
    is_valid[order[eligible & (rank == 1)]] = True
    is_train = ~(is_test | is_valid)

    def grouped(mask: np.ndarray) -> np.ndarray:
        r = pairs(users[mask], items[mask])
        return r[np.argsort(r[:, 0], kind="stable")]

    train, valid, test = grouped(is_train), grouped(is_valid), grouped(is_test)
    observed = np.concatenate([train, valid, test], axis=0)
    negatives = sample_negatives(observed, inter.n_users, inter.n_items, n_negatives, rng)
    info = {
        "split_source": "sampled",
        "n_negatives": int(n_negatives),
        "duplicates_dropped": int(len(inter) - keep.size),
        "users_train_only": int(np.count_nonzero((counts > 0) & (counts < 3))),
        "users_without_interactions": int(np.count_nonzero(counts == 0)),
    }
    split = Split(
        "loo",
        int(inter.n_users),
        int(inter.n_items),
        train,
        valid,
        test,
        negatives,
        int(seed),
        info,
    )
    check_split(split)
    return split


def loo_from_fixed_split(
    train: np.ndarray,
    valid: np.ndarray,
    test: np.ndarray,
    n_users: int,
    n_items: int,
    seed: int,
    n_negatives: int = 499,
) -> Split:
    """Use a given leave-one-out split as is and only sample its negatives.

    This is how the DE-RRD authors' own CiteULike split (``citeulike-t-derrd-loo/derrd``: 5,219
    users, one valid and one test item each) is used: the pairs come from their pickles, the
    499 candidates (their ``candidates_0`` is unavailable) are drawn here with
    ``np.random.default_rng(seed)`` by :func:`sample_negatives`, excluding train ∪ valid ∪ test.

    Args:
        train: ``(N_train, 2)`` ``(user, item)`` rows.
        valid: ``(U, 2)`` rows, one per evaluated user.
        test: ``(U, 2)`` rows, one per evaluated user.
        n_users: number of user ids (exact, not the authors' ``count + 1``).
        n_items: number of item ids.
        seed: seed of the negative sample.
        n_negatives: candidates per user.

    Returns:
        A checked :class:`Split` with ``protocol="loo"`` and ``info["split_source"]="fixed"``.
    """
    parts = []
    for name, a in (("train", train), ("valid", valid), ("test", test)):
        a = np.asarray(a)
        if a.ndim != 2 or a.shape[1] != 2:
            raise DataError(f"{name} must be an (N, 2) array of (user, item), got shape {a.shape}")
        a = a.astype(np.int64)
        parts.append(a[np.argsort(a[:, 0], kind="stable")])
    tr, va, te = parts
    rng = np.random.default_rng(seed)
    observed = np.concatenate(parts, axis=0)
    for col, name, bound in ((0, "user", n_users), (1, "item", n_items)):
        bad = np.flatnonzero((observed[:, col] < 0) | (observed[:, col] >= bound))
        if bad.size:
            raise DataError(
                f"{bad.size} {name} ids outside [0, {bound}), e.g. (user, item) = "
                f"{tuple(int(x) for x in observed[bad[0]])}"
            )
    negatives = sample_negatives(observed, int(n_users), int(n_items), n_negatives, rng)
    has_train = np.zeros(n_users, dtype=bool)
    has_train[tr[:, 0]] = True
    has_test = np.zeros(n_users, dtype=bool)
    has_test[te[:, 0]] = True
    info = {
        "split_source": "fixed",
        "n_negatives": int(n_negatives),
        "users_train_only": int(np.count_nonzero(has_train & ~has_test)),
    }
    split = Split("loo", int(n_users), int(n_items), tr, va, te, negatives, int(seed), info)
    check_split(split)
    return split
