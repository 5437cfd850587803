"""Tests of rdlib.protocols: splits, negatives, windows and their invariants.

All fixtures are small synthetic logs built here; two integration tests read the shared
citeulike-t mirrors and are skipped when those files are absent.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rdlib.data.types import DataError, Interactions
from rdlib.protocols import (
    INVARIANTS,
    InvariantError,
    Split,
    caser_windows,
    check_split,
    last_inputs,
    loo_from_fixed_split,
    loo_sampled,
    random_holdout,
    sample_negatives,
    temporal,
    temporal_counts,
)

DATA = Path("/work/shared/data")
USERS_DAT = DATA / "citeulike-t" / "users.dat"
DERRD = DATA / "citeulike-t-derrd-loo" / "derrd"


# ----------------------------------------------------------------------------- fixtures


def make_inter(users, items, n_users=None, n_items=None, timestamps=None) -> Interactions:
    u = np.asarray(users, dtype=np.int64)
    i = np.asarray(items, dtype=np.int64)
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    return Interactions(
        u,
        i,
        int(u.max()) + 1 if n_users is None else n_users,
        int(i.max()) + 1 if n_items is None else n_items,
        timestamps=ts,
    )


def random_log(seed: int = 0, n_users: int = 40, n_items: int = 150, lo: int = 1, hi: int = 30):
    """Users with ``lo..hi`` distinct random items each, random timestamps, rows shuffled."""
    rng = np.random.default_rng(seed)
    us, its = [], []
    for u in range(n_users):
        k = int(rng.integers(lo, hi + 1))
        us += [u] * k
        its += rng.choice(n_items, size=k, replace=False).tolist()
    perm = rng.permutation(len(us))
    return make_inter(
        np.array(us)[perm], np.array(its)[perm], n_users, n_items, rng.random(len(us)) * 1e6
    )


def pair_set(a: np.ndarray) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, i in a}


def P(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


# ----------------------------------------------------------------------------- Split


def test_split_is_frozen_and_csr():
    s = Split("holdout", 3, 5, P((0, 1), (2, 4), (0, 3)), P(), P(), None, 0)
    with pytest.raises(ValueError):
        s.train[0, 0] = 1  # read-only arrays
    with pytest.raises(AttributeError):
        s.seed = 1  # type: ignore[misc]
    indptr, items = s.train_by_user()
    assert indptr.tolist() == [0, 2, 2, 3]
    assert items.tolist() == [1, 3, 4]  # user order kept within user
    st = s.stats()
    assert (st["n_train"], st["n_valid"], st["n_train_users"], st["n_negatives"]) == (3, 0, 2, 0)
    with pytest.raises(ValueError, match="unknown part"):
        s.part("tests")


# ----------------------------------------------------------------------------- LOO


def test_loo_deterministic_and_seed_dependent():
    inter = random_log(1)
    a, b, c = loo_sampled(inter, 7, 50), loo_sampled(inter, 7, 50), loo_sampled(inter, 8, 50)
    for name in ("train", "valid", "test", "negatives"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.test, c.test)
    assert not np.array_equal(a.negatives, c.negatives)


def test_loo_counts_and_train_only_users():
    # user 0: 4 items, user 1: 2 items (train only), user 2: 3 items + a duplicate row
    inter = make_inter([0, 0, 0, 0, 1, 1, 2, 2, 2, 2], [0, 1, 2, 3, 4, 5, 6, 7, 8, 6], n_items=40)
    s = loo_sampled(inter, 0, n_negatives=10)
    assert s.protocol == "loo" and s.negatives.shape == (3, 10)
    assert s.valid[:, 0].tolist() == [0, 2] and s.test[:, 0].tolist() == [0, 2]
    assert s.info["users_train_only"] == 1 and s.info["duplicates_dropped"] == 1
    assert pair_set(s.train) | pair_set(s.valid) | pair_set(s.test) == pair_set(
        np.stack([inter.users, inter.items], 1)
    )
    assert len(s.train) == 9 - 4
    assert pair_set(s.train) >= {(1, 4), (1, 5)}


def test_loo_negatives_unobserved_unique():
    inter = random_log(2, n_users=60, n_items=120, lo=3, hi=40)
    s = loo_sampled(inter, 3, n_negatives=60)
    seen: dict[int, set[int]] = {}
    for a in (s.train, s.valid, s.test):
        for u, i in a:
            seen.setdefault(int(u), set()).add(int(i))
    for u in range(s.n_users):
        row = s.negatives[u].tolist()
        assert len(set(row)) == len(row) == 60
        assert not set(row) & seen.get(u, set())
    # the held-out items are observed, hence never a candidate of their own user
    for u, i in s.test:
        assert i not in s.negatives[u]


@pytest.mark.parametrize("n_neg", [10, 30])  # 10: rejection path; 30: random-key path
def test_sample_negatives_uniform(n_neg):
    n_users, n_items = 3000, 50
    obs = P(*[(u, i) for u in range(n_users) for i in range(5)])  # items 0-4 observed
    neg = sample_negatives(obs, n_users, n_items, n_neg, np.random.default_rng(0))
    assert neg.shape == (n_users, n_neg) and neg.min() >= 5
    freq = np.bincount(neg.ravel(), minlength=n_items)[5:]
    expect = n_users * n_neg / 45
    assert np.all(np.abs(freq - expect) < 0.1 * expect)
    s = np.sort(neg, axis=1)
    assert not np.any(s[:, 1:] == s[:, :-1])


def test_loo_bad_parameters():
    inter = make_inter([0, 0, 0, 1, 1, 1], [0, 1, 2, 3, 4, 5], n_items=10)
    with pytest.raises(DataError, match="cannot sample 8 negatives"):
        loo_sampled(inter, 0, n_negatives=8)  # each user has only 7 unobserved items
    with pytest.raises(ValueError, match="n_negatives"):
        loo_sampled(inter, 0, n_negatives=0)
    assert loo_sampled(inter, 0, n_negatives=7).negatives.shape == (2, 7)


def test_loo_from_fixed_split():
    train = P((0, 0), (0, 1), (1, 2), (2, 3))
    valid, test = P((0, 2), (1, 0)), P((0, 3), (1, 1))
    s = loo_from_fixed_split(train, valid, test, 3, 30, seed=5, n_negatives=20)
    assert s.info["split_source"] == "fixed" and s.info["users_train_only"] == 1
    assert np.array_equal(s.train, train) and np.array_equal(s.test, test)
    again = loo_from_fixed_split(train, valid, test, 3, 30, seed=5, n_negatives=20)
    assert np.array_equal(s.negatives, again.negatives)
    with pytest.raises(InvariantError, match="'loo_one_per_user'"):
        loo_from_fixed_split(train, P((0, 2), (0, 4), (1, 0)), test, 3, 30, 0, 20)
    with pytest.raises(InvariantError, match="'disjoint'"):
        loo_from_fixed_split(train, P((0, 1), (1, 0)), test, 3, 30, 0, 20)
    with pytest.raises(DataError, match="item ids outside"):
        loo_from_fixed_split(train, valid, P((0, 30), (1, 1)), 3, 30, 0, 20)


# ----------------------------------------------------------------------------- holdout


def reference_holdout(inter: Interactions, seed: int = 0, ratio: float = 0.2):
    """Direct transcription of HetComp's ``load_data`` loop (dicts, global legacy RNG)."""
    total: dict[int, dict[int, int]] = {}
    for u, i in zip(inter.users.tolist(), inter.items.tolist(), strict=True):
        total.setdefault(u, {}).setdefault(i, 1)
    np.random.seed(seed)  # noqa: NPY002 - the official code's global RNG, on purpose
    train, valid, test = {}, {}, {}
    for u in sorted(total):
        items = list(total[u].keys())
        np.random.shuffle(items)  # noqa: NPY002
        k = int(len(items) * ratio)
        if k:
            test[u], valid[u] = items[:k], items[k : 2 * k]
        train[u] = items[2 * k :]
    in_train = {i for u in train for i in train[u]}
    for u in list(valid):
        valid[u] = [i for i in valid[u] if i in in_train]
        if not valid[u]:
            del valid[u], test[u]
    for u in list(test):
        test[u] = [i for i in test[u] if i in in_train]
        if not test[u]:
            del test[u], valid[u]
    flat = lambda d: {(u, i) for u in d for i in d[u]}  # noqa: E731
    return flat(train), flat(valid), flat(test)


def test_random_holdout_matches_reference_loop():
    # items shared across users so that some held-out items are cold and some users drop
    inter = random_log(4, n_users=80, n_items=400, lo=2, hi=25)
    s = random_holdout(inter, seed=0)
    tr, va, te = reference_holdout(inter, 0)
    assert pair_set(s.train) == tr and pair_set(s.valid) == va and pair_set(s.test) == te
    assert s.info["cold_valid_dropped"] + s.info["cold_test_dropped"] > 0
    assert s.info["users_dropped_empty"] > 0
    assert s.info["users_train_only"] == int(np.sum(np.bincount(inter.users) < 5))
    s1 = random_holdout(inter, seed=1)
    assert pair_set(s1.test) == reference_holdout(inter, 1)[2] != te
    assert np.array_equal(random_holdout(inter, seed=0).test, s.test)


def test_random_holdout_hand_example():
    # user 0: items 0..4 in file order; user 1: items 5..9 then 0..4 (shares 0..4 with user 0)
    users = [0] * 5 + [1] * 10
    items = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    inter = make_inter(users, items)
    rs = np.random.RandomState(0)
    seq0, seq1 = list(range(5)), [5, 6, 7, 8, 9, 0, 1, 2, 3, 4]
    rs.shuffle(seq0)
    rs.shuffle(seq1)
    train_items = set(seq0[2:]) | set(seq1[4:])
    exp_test = {(0, seq0[0])} | {(1, i) for i in seq1[:2]}
    exp_valid = {(0, seq0[1])} | {(1, i) for i in seq1[2:4]}
    exp_test = {p for p in exp_test if p[1] in train_items}
    exp_valid = {p for p in exp_valid if p[1] in train_items}
    for u in (0, 1):  # a user loses both sides when one is empty
        if not any(p[0] == u for p in exp_test) or not any(p[0] == u for p in exp_valid):
            exp_test = {p for p in exp_test if p[0] != u}
            exp_valid = {p for p in exp_valid if p[0] != u}
    s = random_holdout(inter, seed=0)
    assert pair_set(s.train) == {(0, i) for i in seq0[2:]} | {(1, i) for i in seq1[4:]}
    assert pair_set(s.test) == exp_test and pair_set(s.valid) == exp_valid


def test_random_holdout_drop_rules_counted():
    # user 0 owns items 100-104 alone: its held-out items are never in training -> dropped,
    # but its 3 training rows stay; user 1 has 4 items -> int(0.8) = 0 held out -> train only
    users = [0] * 5 + [1] * 4 + [2] * 10 + [3] * 10
    items = list(range(100, 105)) + [0, 1, 2, 3] + list(range(10)) + list(range(10))
    s = random_holdout(make_inter(users, items, n_items=105), seed=0)
    assert s.info["users_train_only"] == 1
    assert s.info["cold_valid_dropped"] >= 1 and s.info["cold_test_dropped"] >= 1
    assert 0 not in s.valid[:, 0] and 0 not in s.test[:, 0]
    assert np.sum(s.train[:, 0] == 0) == 3 and np.sum(s.train[:, 0] == 1) == 4
    assert s.info["users_dropped_empty"] >= 1


@pytest.mark.parametrize(
    "kw", [{"test_ratio": 1.0}, {"valid_ratio": -0.1}, {"test_ratio": 0.5, "valid_ratio": 0.5}]
)
def test_random_holdout_bad_ratios(kw):
    with pytest.raises(ValueError, match="ratio"):
        random_holdout(random_log(0), **kw)


@pytest.mark.skipif(not USERS_DAT.exists(), reason="citeulike-t mirror absent")
def test_random_holdout_citeulike_official_counts():
    users, items, item_map = [], [], {}
    n_users = 0
    with open(USERS_DAT) as f:
        for line in f:
            tok = line.split()
            if int(tok[0]) < 5:
                continue
            for t in tok[1:]:
                users.append(n_users)
                items.append(item_map.setdefault(int(t), len(item_map)))
            n_users += 1
    inter = make_inter(users, items, n_users, len(item_map))
    assert (inter.n_users, inter.n_items, len(inter)) == (5219, 25181, 125580)
    s = random_holdout(inter, seed=0)
    expected = {"n_train": 78958, "n_valid": 20823, "n_test": 20823, "n_test_users": 4719}
    check_split(s, expected=expected | {"n_valid_users": 4719})
    # DE-RRD's LOO on the same data: 115,142 training rows, everyone evaluated
    loo = loo_sampled(inter, 0)
    check_split(loo, expected={"n_train": 115142, "n_test_users": 5219, "n_negatives": 499})


@pytest.mark.skipif(not (DERRD / "train.tsv").exists(), reason="DE-RRD split mirror absent")
def test_loo_from_derrd_authors_split():
    tr, va, te = (
        pd.read_csv(DERRD / f"{n}.tsv", sep="\t")[["user_id", "item_id"]].to_numpy()
        for n in ("train", "valid", "test")
    )
    s = loo_from_fixed_split(tr, va, te, 5219, 25181, seed=0)
    check_split(s, expected={"n_test_users": 5219, "n_valid_users": 5219, "n_train": 115142})
    assert s.negatives.shape == (5219, 499)


# ----------------------------------------------------------------------------- temporal


def test_temporal_counts_rd_rule():
    n = np.arange(15, 25)
    v, t = temporal_counts(n, 0.1, 0.2)
    assert t.tolist() == [3, 3, 3, 3, 3, 4, 4, 4, 4, 4]
    assert v.tolist() == [1, 1, 2, 2, 2, 2, 2, 2, 2, 3]  # (3,1),(3,2),(4,2),(4,3) as in RD files
    n = np.arange(15, 2000)
    v, t = temporal_counts(n, 0.1, 0.2)
    assert t.min() == 3 and v.min() == 1
    assert np.array_equal(n - v - t, -((-7 * n) // 10))  # train = ceil(0.7 n), exactly


def test_temporal_hand_example():
    # user 0: 15 items with shuffled times and one tie (items 20, 21 at t=5, in file order);
    # user 1: 4 items -> dropped as short; user 2: repeats item 30 (dedupe keeps the first).
    t0 = [9, 1, 14, 3, 5, 12, 0, 7, 13, 2, 11, 5, 8, 10, 4]
    i0 = [9, 1, 14, 3, 20, 12, 0, 7, 13, 2, 11, 21, 8, 10, 4]
    users = [0] * 15 + [1] * 4 + [2] * 16
    items = i0 + [40, 41, 42, 43] + list(range(30, 45)) + [30]
    times = t0 + [0, 1, 2, 3] + list(range(15)) + [99]
    s = temporal(make_inter(users, items, timestamps=times))
    by_time = [0, 1, 2, 3, 4, 20, 21, 7, 8, 9, 10, 11, 12, 13, 14]  # stable: 20 before 21
    assert s.train[s.train[:, 0] == 0, 1].tolist() == by_time[:11]
    assert s.valid[s.valid[:, 0] == 0, 1].tolist() == by_time[11:12]
    assert s.test[s.test[:, 0] == 0, 1].tolist() == by_time[12:]
    assert s.train[s.train[:, 0] == 2, 1].tolist() == list(range(30, 41))
    assert s.test[s.test[:, 0] == 2, 1].tolist() == [42, 43, 44]
    assert 1 not in np.concatenate([s.train[:, 0], s.valid[:, 0], s.test[:, 0]])
    assert s.info["users_dropped_short"] == 1 and s.info["interactions_dropped_short"] == 4
    assert s.info["duplicates_dropped"] == 1
    assert s.times[0][s.train[:, 0] == 0].tolist() == sorted(t0)[:11]


def test_temporal_file_order_and_invariant():
    inter = random_log(5, lo=10, hi=40)
    s = temporal(replace(inter, timestamps=None), min_interactions=10)
    assert s.info["time_source"] == "file order"
    for u in np.unique(s.train[:, 0]):
        rows = inter.items[inter.users == u].tolist()  # file order
        seq = s.train[s.train[:, 0] == u, 1].tolist()
        seq += s.valid[s.valid[:, 0] == u, 1].tolist() + s.test[s.test[:, 0] == u, 1].tolist()
        assert seq == rows
    s2 = temporal(inter, min_interactions=10)
    for u in np.unique(s2.test[:, 0]):
        t_tr = s2.times[0][s2.train[:, 0] == u]
        assert np.all(np.diff(t_tr) >= 0)
        assert s2.times[2][s2.test[:, 0] == u].min() >= s2.times[1][s2.valid[:, 0] == u].max()
        assert s2.times[1][s2.valid[:, 0] == u].min() >= t_tr.max()


def test_temporal_repeats_kept_when_asked():
    users = [0] * 20
    items = [i % 7 for i in range(20)]
    s = temporal(make_inter(users, items), min_interactions=5, dedupe=False)
    assert s.info["allow_repeats"] and len(s.train) + len(s.valid) + len(s.test) == 20
    s = temporal(make_inter(users, items), min_interactions=5)
    assert s.info["duplicates_dropped"] == 13 and len(s.train) == 5  # 7 distinct: 5/1/1


@pytest.mark.parametrize(
    "kw", [{"test_ratio": 1.0}, {"valid_ratio": 0.0}, {"valid_ratio": 0.5, "test_ratio": 0.5}]
)
def test_temporal_bad_ratios(kw):
    with pytest.raises(ValueError, match="ratio"):
        temporal(random_log(0), **kw)


def _seq_split(train_rows, valid_rows=(), n_users=3, n_items=20) -> Split:
    tr, va = P(*train_rows), P(*valid_rows)
    times = (np.arange(len(tr), dtype=float), np.arange(len(va), dtype=float) + 100, np.zeros(0))
    return Split("temporal", n_users, n_items, tr, va, P(), None, 0, {}, times)


def test_caser_windows_hand_example():
    # user 0: 1..6 (n = 6 >= L+T = 4 -> 3 windows, newest first); user 1: [7, 8] (padded);
    # user 2: no training rows (no window). Padding id = n_items = 20.
    s = _seq_split([(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (1, 7), (1, 8)])
    users, inputs, targets = caser_windows(s, L=3, T=1)
    assert users.tolist() == [0, 0, 0, 1]
    assert inputs.tolist() == [[3, 4, 5], [2, 3, 4], [1, 2, 3], [20, 20, 7]]
    assert targets.tolist() == [[6], [5], [4], [8]]
    users, inputs, targets = caser_windows(s, L=2, T=3)  # W = 5, user 1 shorter than T
    assert users.tolist() == [0, 0, 1]
    assert inputs.tolist() == [[2, 3], [1, 2], [20, 20]]
    assert targets.tolist() == [[4, 5, 6], [3, 4, 5], [20, 7, 8]]
    assert last_inputs(s, L=3).tolist() == [[4, 5, 6], [20, 7, 8], [20, 20, 20]]


def caser_pytorch_reference(split: Split, L: int, T: int):
    """Transcription of caser_pytorch ``to_sequence`` + fixed ``_sliding_window`` (pad = n_items)."""
    W = L + T
    users, inputs, targets = [], [], []
    tests = np.full((split.n_users, L), split.n_items)
    indptr, seq = split.train_by_user()
    for u in range(split.n_users):
        s = seq[indptr[u] : indptr[u + 1]]
        if s.size == 0:
            continue
        if s.size >= W:
            wins = [s[i - W : i] for i in range(s.size, 0, -1) if i - W >= 0]
        else:
            wins = [np.pad(s, (W - s.size, 0), constant_values=split.n_items)]
        tests[u] = wins[0][-L:]
        for w in wins:
            users.append(u)
            inputs.append(w[:L])
            targets.append(w[-T:])
    return np.array(users), np.array(inputs), np.array(targets), tests


@pytest.mark.parametrize(("L", "T"), [(5, 1), (3, 3)])
def test_caser_windows_match_reference(L, T):
    s = temporal(random_log(7, n_users=30, lo=6, hi=30), min_interactions=7)
    got = caser_windows(s, L=L, T=T)
    ref = caser_pytorch_reference(s, L, T)
    for a, b in zip(got, ref[:3], strict=True):
        assert np.array_equal(a, b)
    ev = np.unique(s.train[:, 0])
    assert np.array_equal(last_inputs(s, L)[ev], ref[3][ev])


def test_caser_windows_include_valid():
    s = _seq_split([(0, 1), (0, 2), (1, 7)], valid_rows=[(0, 3), (1, 8)])
    users, inputs, targets = caser_windows(s, L=2, T=1, include_valid=True)
    assert users.tolist() == [0, 1]
    assert inputs.tolist() == [[1, 2], [20, 7]] and targets.tolist() == [[3], [8]]
    assert last_inputs(s, L=2, include_valid=True).tolist() == [[2, 3], [7, 8], [20, 20]]
    assert last_inputs(s, L=2).tolist() == [[1, 2], [20, 7], [20, 20]]


def test_caser_windows_count_on_temporal_split():
    s = temporal(random_log(6, lo=15, hi=40))
    users, inputs, targets = caser_windows(s, L=5, T=1)
    n = np.bincount(s.train[:, 0], minlength=s.n_users)
    assert users.size == int(np.maximum(n[n > 0] - 5, 1).sum())
    assert inputs.shape == (users.size, 5) and targets.shape == (users.size, 1)
    indptr, seq = s.train_by_user()
    u = int(users[0])  # the first window of a user is its newest
    assert targets[0, 0] == seq[indptr[u + 1] - 1]


# ----------------------------------------------------------------------------- invariants


def _base(protocol: str) -> Split:
    tr = P((0, 0), (0, 1), (0, 2), (1, 2), (1, 3), (1, 4))
    va, te = P((0, 3), (1, 0)), P((0, 4), (1, 1))
    neg = np.array([[5, 6], [6, 7]], dtype=np.int64) if protocol == "loo" else None
    times = None
    if protocol == "temporal":
        times = (np.arange(6.0), np.array([10.0, 10.0]), np.array([20.0, 20.0]))
    return Split(protocol, 2, 8, tr, va, te, neg, 0, {}, times)


def _with(s: Split, **kw) -> Split:
    return replace(s, **kw)


BROKEN = {
    "shape": ("loo", lambda s: _with(s, negatives=np.zeros((1, 2), dtype=np.int64) + 5)),
    "id_range": ("holdout", lambda s: _with(s, train=np.vstack([s.train, P((1, 8))]))),
    "no_duplicates": (
        "temporal",
        lambda s: _with(
            s, train=np.vstack([s.train, P((0, 0))]), times=(np.arange(7.0),) + s.times[1:]
        ),
    ),
    "disjoint": ("loo", lambda s: _with(s, train=np.vstack([s.train, P((0, 3))]))),
    "loo_one_per_user": ("loo", lambda s: _with(s, valid=P((0, 3), (0, 5), (1, 0)))),
    "loo_valid_ne_test": ("loo", lambda s: _with(s, valid=P((0, 4), (1, 0)))),
    "holdout_same_users": ("holdout", lambda s: _with(s, valid=P((0, 3)))),
    "holdout_items_in_train": ("holdout", lambda s: _with(s, test=P((0, 4), (1, 7)))),
    "negatives_unobserved": ("loo", lambda s: _with(s, negatives=P((5, 6), (6, 0)))),
    "negatives_unique": ("loo", lambda s: _with(s, negatives=P((5, 5), (6, 7)))),
    "temporal_order": (
        "temporal",
        lambda s: _with(s, times=(s.times[0], np.array([10.0, 4.0]), s.times[2])),
    ),
}


@pytest.mark.parametrize("protocol", ["loo", "holdout", "temporal"])
def test_base_splits_pass(protocol):
    check_split(_base(protocol))


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_invariant_violation_is_named(name):
    protocol, breaker = BROKEN[name]
    broken = breaker(_base(protocol))
    with pytest.raises(InvariantError, match=f"'{name}'.*protocol '{protocol}'") as exc:
        check_split(broken)
    assert isinstance(exc.value, DataError) and exc.value.invariant == name
    assert name in INVARIANTS


def test_invariant_messages_name_a_pair():
    with pytest.raises(InvariantError, match=r"\(user, item\) = \(1, 0\)"):
        check_split(_with(_base("loo"), negatives=P((5, 6), (6, 0))))


def test_test_after_valid_is_checked():
    s = _base("temporal")
    with pytest.raises(InvariantError, match="'temporal_order'"):
        check_split(_with(s, times=(s.times[0], s.times[1], np.array([20.0, 9.0]))))
    with pytest.raises(InvariantError, match="'temporal_order'"):
        check_split(_with(s, times=None))


def test_expected_counts():
    s = _base("holdout")
    check_split(s, expected={"n_train": 6, "n_test_users": 2})
    with pytest.raises(InvariantError, match="'expected_counts'.*n_train = 6, expected 7"):
        check_split(s, expected={"n_train": 7})
    with pytest.raises(InvariantError, match="'expected_counts'.*unknown count"):
        check_split(s, expected={"n_bogus": 1})


def test_repeats_allowed_only_when_flagged():
    s = _base("temporal")
    dup = _with(s, valid=P((0, 0), (1, 0)))  # (0, 0) is also a training pair
    with pytest.raises(InvariantError, match="'disjoint'"):
        check_split(dup)
    check_split(_with(dup, info={"allow_repeats": True}))
