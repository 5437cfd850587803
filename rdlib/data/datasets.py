"""Load a registered dataset: resolve and verify its files, read, preprocess, check statistics.

``load_dataset("citeulike-t")`` reproduces the CiteULike data of DE-RRD (CIKM'20) and HetComp
(WWW'23): ``users.dat`` users with at least 5 items (one pass, items not filtered), users in
file order, items re-indexed by first appearance — 5,219 users, 25,181 items, 125,580
interactions, with exactly the DE-RRD code's ids. Every load is checked against the statistics
recorded in ``data/registry.yaml``; a mismatch is a DataError, so a silently changed file or
rule cannot produce a different dataset. Everything dropped is counted in
``Interactions.notes``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from rdlib.data.mirror import resolve_dataset_dir
from rdlib.data.readers import read_file, read_split_tsv
from rdlib.data.registry import SPLIT_TSV, DatasetSpec, Preprocessing, get_spec
from rdlib.data.types import DataError, Interactions

__all__ = ["apply_preprocessing", "check_expected", "dataset_stats", "load_dataset",
           "split_to_interactions"]


def _reindex(inter: Interactions, keep: np.ndarray, notes: list[str]) -> Interactions:
    """Keep rows ``keep`` and re-index users and items contiguously by first appearance among
    the kept rows (DE-RRD/HetComp: filtered users in file order, items as first met)."""
    users, items = inter.users[keep], inter.items[keep]
    u_codes, u_old = pd.factorize(users, sort=False)
    i_codes, i_old = pd.factorize(items, sort=False)

    def sub(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[keep]

    return replace(
        inter, users=u_codes.astype(np.int64), items=i_codes.astype(np.int64),
        n_users=len(u_old), n_items=len(i_old), timestamps=sub(inter.timestamps),
        ratings=sub(inter.ratings),
        user_ids=None if inter.user_ids is None else inter.user_ids[u_old],
        item_ids=None if inter.item_ids is None else inter.item_ids[i_old],
        notes=tuple(notes))


def _distinct_counts(index: np.ndarray, other: np.ndarray, n: int, keep: np.ndarray
                     ) -> np.ndarray:
    """For each of ``n`` ids in ``index``, the number of distinct partners among kept rows."""
    pairs = pd.DataFrame({"a": index[keep], "b": other[keep]}).drop_duplicates()
    return np.bincount(pairs["a"].to_numpy(), minlength=n)


def _filter_pass(inter: Interactions, keep: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """One pass: drop users below the user threshold, then items below the item threshold."""
    keep = keep.copy()
    if prep.min_user_interactions:
        per_user = _distinct_counts(inter.users, inter.items, inter.n_users, keep)
        keep &= per_user[inter.users] >= prep.min_user_interactions
    if prep.min_item_interactions:
        per_item = _distinct_counts(inter.items, inter.users, inter.n_items, keep)
        keep &= per_item[inter.items] >= prep.min_item_interactions
    return keep


def _user_item_filter(inter: Interactions, keep: np.ndarray, prep: Preprocessing,
                      notes: list[str]) -> np.ndarray:
    """Rows kept by the registered user/item thresholds (one pass or iterated to a k-core),
    starting from the rows in ``keep``."""
    if not (prep.min_user_interactions or prep.min_item_interactions):
        return keep
    start = keep
    rounds = 0
    while True:
        rounds += 1
        new = _filter_pass(inter, keep, prep)
        done = prep.filter == "one_pass" or np.array_equal(new, keep)
        keep = new
        if done:
            break
    n_users0, n_items0 = np.unique(inter.users[start]).size, np.unique(inter.items[start]).size
    lost_users = n_users0 - np.unique(inter.users[keep]).size
    lost_items = n_items0 - np.unique(inter.items[keep]).size
    rule = []
    if prep.min_user_interactions:
        rule.append(f"users with >= {prep.min_user_interactions} items")
    if prep.min_item_interactions:
        rule.append(f"items with >= {prep.min_item_interactions} users")
    how = "one pass" if prep.filter == "one_pass" else f"iterative, {rounds} round(s)"
    items_note = "" if prep.min_item_interactions else "; items not filtered"
    notes.append(f"kept {' and '.join(rule)} ({how}{items_note}): dropped {lost_users:,} of "
                 f"{n_users0:,} users, {lost_items:,} of {n_items0:,} items and "
                 f"{int(start.sum() - keep.sum()):,} of {int(start.sum()):,} interactions")
    return keep


def apply_preprocessing(inter: Interactions, prep: Preprocessing) -> Interactions:
    """Apply a registered :class:`Preprocessing` (rating threshold, binarisation, duplicate
    guard, user/item filter) and, when rows were dropped, re-index contiguously in
    first-appearance order. With nothing dropped the ids stay exactly as read (so a fixed
    split's shipped ids survive)."""
    notes = list(inter.notes)
    keep = np.ones(len(inter), dtype=bool)
    if prep.min_rating is not None:
        if inter.ratings is None:
            raise DataError(f"{inter.name}: min_rating={prep.min_rating} registered but the "
                            f"data have no ratings")
        keep = inter.ratings >= prep.min_rating
        notes.append(f"kept ratings >= {prep.min_rating:g}: dropped {int((~keep).sum()):,} "
                     f"of {len(inter):,} rows")
    if prep.binarize and inter.ratings is not None:
        notes.append("binarized: every kept row is a positive, rating values dropped")
        inter = replace(inter, ratings=None)
    dup = pd.DataFrame({"u": inter.users, "i": inter.items}).duplicated().to_numpy()
    if dup.any():  # readers already de-duplicate; a guard for other sources (split unions)
        notes.append(f"dropped {int(dup.sum()):,} duplicate (user, item) row(s)")
        keep = keep & ~dup
    keep = _user_item_filter(inter, keep, prep, notes)
    if keep.all():
        return replace(inter, notes=tuple(notes))
    return _reindex(inter, keep, notes)


def check_expected(inter: Interactions, spec: DatasetSpec) -> None:
    """Raise DataError unless users/items/interactions equal the registry's expected values."""
    exp = spec.expected
    found = (inter.n_users, inter.n_items, len(inter))
    want = (exp.n_users, exp.n_items, exp.n_interactions)
    if found != want:
        raise DataError(
            f"{spec.name}: statistics after preprocessing ({spec.preprocessing.describe()}) "
            f"differ from data/registry.yaml: expected {want[0]:,} users / {want[1]:,} items / "
            f"{want[2]:,} interactions, found {found[0]:,} / {found[1]:,} / {found[2]:,}")


def split_to_interactions(split: dict[str, np.ndarray | int], name: str, origin: str
                          ) -> Interactions:
    """train ∪ valid ∪ test of a fixed split as one Interactions, ids kept as shipped."""
    parts = [np.asarray(split[p]) for p in ("train", "valid", "test")]
    pairs = np.concatenate(parts)
    n_users, n_items = int(split["n_users"]), int(split["n_items"])
    sizes = " + ".join(f"{p.shape[0]:,}" for p in parts)
    return Interactions(
        users=pairs[:, 0].astype(np.int64), items=pairs[:, 1].astype(np.int64),
        n_users=n_users, n_items=n_items, user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str), name=name,
        notes=(f"union of the fixed split {origin}/{{train,valid,test}}.tsv ({sizes} rows); "
               f"ids kept as shipped",))


def _read_registered(spec: DatasetSpec, folder: Path) -> Interactions:
    if spec.format == SPLIT_TSV:
        split = read_split_tsv(folder / spec.split_dir)
        return split_to_interactions(split, spec.name, spec.split_dir)
    return read_file([folder / f.path for f in spec.files], spec.format, name=spec.name)


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Interactions:
    """Read a registered dataset, apply its registered preprocessing and check its statistics.

    ``data_dir`` is a mirror root holding ``<data_dir>/<name>/`` (see
    :func:`rdlib.data.mirror.resolve_dataset_dir` for the search order and download).
    """
    spec = get_spec(name)
    folder = resolve_dataset_dir(name, data_dir)
    inter = apply_preprocessing(_read_registered(spec, folder), spec.preprocessing)
    check_expected(inter, spec)
    return inter


def dataset_stats(name: str, data_dir: str | os.PathLike | None = None
                  ) -> dict[str, float | int]:
    """``n_users``, ``n_items``, ``n_interactions`` and ``density`` of the loaded dataset."""
    return load_dataset(name, data_dir).stats()
