"""A small synthetic interaction log with planted structure, for tests and the smoke profile.

Users and items get latent clusters; a user interacts mostly with items of its own cluster, so
a model that learns anything beats a random ranking. Deterministic given the seed.
"""

from __future__ import annotations

import numpy as np

from rdlib.data.types import Interactions


def synthetic_interactions(n_users: int = 200, n_items: int = 300, per_user: int = 20,
                           n_clusters: int = 5, noise: float = 0.2, seed: int = 0,
                           name: str = "synthetic") -> Interactions:
    """Each user draws ``per_user`` distinct items, a fraction ``1 - noise`` from its cluster.

    Timestamps are the draw order, so temporal protocols work on it too.
    """
    if per_user >= n_items // n_clusters:
        raise ValueError(f"per_user={per_user} must be below n_items/n_clusters="
                         f"{n_items // n_clusters}")
    rng = np.random.default_rng(seed)
    item_cluster = np.arange(n_items) % n_clusters  # (I,)
    users, items = [], []
    for u in range(n_users):
        c = u % n_clusters
        own = np.flatnonzero(item_cluster == c)
        n_own = int(round(per_user * (1 - noise)))
        chosen = list(rng.choice(own, n_own, replace=False))
        others = np.setdiff1d(np.arange(n_items), chosen)
        chosen += list(rng.choice(others, per_user - n_own, replace=False))
        users += [u] * per_user
        items += chosen
    users_a = np.asarray(users, dtype=np.int64)
    items_a = np.asarray(items, dtype=np.int64)
    # keep every item index in range occurring: re-index by first appearance
    _, first = np.unique(items_a, return_index=True)
    order = np.argsort(first)
    remap = np.empty(n_items, dtype=np.int64)
    present = np.unique(items_a)[order]
    remap[present] = np.arange(present.size)
    items_a = remap[items_a]
    ts = np.tile(np.arange(per_user, dtype=np.float64), n_users)
    return Interactions(users=users_a, items=items_a, n_users=n_users, n_items=int(present.size),
                        timestamps=ts, user_ids=np.arange(n_users).astype(str),
                        item_ids=present.astype(str), name=name,
                        notes=(f"synthetic: {n_clusters} clusters, noise {noise}, seed {seed}",))
