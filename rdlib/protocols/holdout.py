"""HetComp's per-user random 60/20/20 split, bit-identical to the official loader (methods.md §3.1).

The official ``Utils/data_utils.load_data`` (SeongKu-Kang/HetComp_WWW23) does, after
``np.random.seed(0)`` and the ≥ 5 items filter:

1. for each user in index order, ``items = list(total_mat[user].keys())`` — the user's distinct
   items in file order — then ``np.random.shuffle(items)``;
2. ``k = int(len(items) * test_ratio)``: ``items[:k]`` → test, ``items[k:2k]`` → validation, the
   rest → training;
3. ``train_mat_R`` = the set of items that occur in *anyone's* training data; validation and
   test items outside it are deleted (the check is global, not per user);
4. a user whose validation **or** test set is now empty is deleted from both — but keeps its
   training rows (``train_ints`` is built from the whole ``train_mat``).

On citeulike-t (5,219 users) this gives 78,958 training rows, 4,719 evaluated users and 20,823
validation and 20,823 test rows; :func:`random_holdout` reproduces these numbers exactly
(``tests/test_protocols.py``). Note that the official ``--test_ratio`` / ``--random_seed`` flags
never reach ``load_data``; here they are real parameters, the defaults being the official ones.
"""

from __future__ import annotations

import numpy as np

from rdlib.data.types import Interactions
from rdlib.protocols.invariants import check_split
from rdlib.protocols.loo import dedupe_first
from rdlib.protocols.split import Split, pairs


def random_holdout(
    inter: Interactions, seed: int = 0, test_ratio: float = 0.2, valid_ratio: float = 0.2
) -> Split:
    """HetComp's random per-user split (methods.md §3.1, papers.md §3.3), full ranking.

    Per user (ascending index, users without rows skipped), the distinct items in the order of
    their first row in ``inter`` are shuffled by ``np.random.RandomState(seed).shuffle`` — one
    ``RandomState`` for all users, called in user order, which replays the global stream of
    ``np.random.seed(seed)`` + ``np.random.shuffle`` exactly (legacy shuffle draws the same
    Fisher–Yates intervals for a list and an ndarray). Then the first ``int(n * test_ratio)``
    items go to test, the next ``int(n * valid_ratio)`` to validation and the rest to training
    (with the official ratios, 20/20/60; ``int`` of the same float product as the official code).
    Valid/test items that occur in nobody's training rows are dropped; users with an empty
    validation or test set are then dropped from both but keep their training rows.

    The shuffle is a per-user Python loop on purpose: it must consume the sequential legacy RNG
    stream in the official order, and it runs once per split (≈ 5k users, well under a second).
    Everything else is vectorised.

    Args:
        inter: the interaction log (rows in file order; duplicates collapse to the first row).
        seed: the legacy NumPy seed (official: 0).
        test_ratio: fraction of a user's items for test (official: 0.2).
        valid_ratio: fraction for validation (official: equal to ``test_ratio``).

    Returns:
        A checked :class:`Split` with ``protocol="holdout"`` and ``negatives=None``. ``info``
        counts ``duplicates_dropped``, ``users_train_only`` (no held-out item by rounding),
        ``cold_valid_dropped`` / ``cold_test_dropped`` (items never in training),
        ``users_dropped_empty`` and the ``valid_dropped_with_users`` / ``test_dropped_with_users``
        rows that went with them.
    """
    for name, r in (("test_ratio", test_ratio), ("valid_ratio", valid_ratio)):
        if not 0.0 <= r < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {r}")
    if test_ratio + valid_ratio >= 1.0:
        raise ValueError(f"test_ratio + valid_ratio must be < 1, got {test_ratio + valid_ratio}")
    if test_ratio == 0.0 or valid_ratio == 0.0:
        raise ValueError("test_ratio and valid_ratio must be > 0 (every evaluated user needs both)")

    keep = dedupe_first(inter.users, inter.items, inter.n_items)  # (M,) file order
    order = np.argsort(inter.users[keep], kind="stable")  # (M,) by user, file order within
    users = inter.users[keep][order].astype(np.int64)  # (M,)
    items = inter.items[keep][order].astype(np.int64)  # (M,)
    counts = np.bincount(users, minlength=inter.n_users)  # (n_users,)
    start = np.zeros(inter.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])

    rs = np.random.RandomState(seed)
    shuffled = items.copy()  # (M,)
    for u in np.flatnonzero(counts):  # sequential legacy stream: one shuffle per user, in order
        seg = shuffled[start[u] : start[u + 1]]  # view: shuffled in place
        rs.shuffle(seg)

    n = counts[users]  # (M,) size of the row's user
    pos = np.arange(users.size) - start[users]  # (M,) position in the shuffled list
    k_test = (n * float(test_ratio)).astype(np.int64)  # int() of the same float products
    k_valid = (n * float(valid_ratio)).astype(np.int64)
    is_test = pos < k_test
    is_valid = ~is_test & (pos < k_test + k_valid)
    is_train = ~(is_test | is_valid)

    in_train = np.zeros(inter.n_items, dtype=bool)
    in_train[shuffled[is_train]] = True
    cold = ~in_train[shuffled]  # (M,)
    v_keep, t_keep = is_valid & ~cold, is_test & ~cold
    has_v = np.bincount(users[v_keep], minlength=inter.n_users) > 0
    has_t = np.bincount(users[t_keep], minlength=inter.n_users) > 0
    had = np.bincount(users[is_valid | is_test], minlength=inter.n_users) > 0
    evaluated = has_v & has_t
    v_final, t_final = v_keep & evaluated[users], t_keep & evaluated[users]

    train = pairs(users[is_train], shuffled[is_train])
    valid = pairs(users[v_final], shuffled[v_final])
    test = pairs(users[t_final], shuffled[t_final])
    info = {
        "test_ratio": float(test_ratio),
        "valid_ratio": float(valid_ratio),
        "rng": "np.random.RandomState(seed).shuffle per user, user order",
        "duplicates_dropped": int(len(inter) - keep.size),
        "users_train_only": int(np.count_nonzero((counts > 0) & ~had)),
        "cold_valid_dropped": int(np.count_nonzero(is_valid & cold)),
        "cold_test_dropped": int(np.count_nonzero(is_test & cold)),
        "users_dropped_empty": int(np.count_nonzero(had & ~evaluated)),
        "valid_dropped_with_users": int(np.count_nonzero(v_keep & ~evaluated[users])),
        "test_dropped_with_users": int(np.count_nonzero(t_keep & ~evaluated[users])),
    }
    split = Split(
        "holdout", int(inter.n_users), int(inter.n_items), train, valid, test, None, int(seed), info
    )
    check_split(split)
    return split
