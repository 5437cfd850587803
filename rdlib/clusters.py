"""User clusters of a teacher's representation space (DE-RRD, Kang et al. 2020, Fig. 5).

The paper's Fig. 5 groups users into 20 clusters of the teacher's representation space and plots
each DE variant's N@20 gain over the student per cluster: its point is that one expert or an
attention-weighted average serves some regions of that space badly, while expert selection
gains almost everywhere. The paper does not say how it clustered; we use k-means (scipy's
``kmeans2`` with k-means++ seeding) on the teacher's user representations, the vectors DE's
selection network reads (:meth:`user_repr`), each scaled to unit length. The scaling groups
users by the direction of their vector, which decides how a BPR teacher ranks items for them
(u·i, up to a positive factor); on the raw CiteULike teacher vectors, whose norms run from 1.2
to 14, k-means set apart five clusters of 1 to 16 long-vector users.

The clusters depend on the teacher's weights, which are not committed (checkpoints are
git-ignored), so they are computed once from the checkpoint and stored under
``results/derived/`` with their provenance: a fresh clone reads the stored labels.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy
import torch
from scipy.cluster.vq import kmeans2

from rdlib import env
from rdlib.config import RunConfig
from rdlib.distill import teacher_checkpoint_path
from rdlib.models import build_model
from rdlib.results import ResultStore, atomic_write


def kmeans_labels(x: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster label of each row of ``x`` (n, d): k-means with k-means++ seeding from
    ``seed``, 100 Lloyd iterations (scipy ``kmeans2``), in float64. Clusters are numbered by
    decreasing size (ties: by first row), so the labels do not depend on the seeding order."""
    if not 1 <= n_clusters <= len(x):
        raise ValueError(f"n_clusters must be between 1 and the {len(x)} rows, got {n_clusters}")
    _, labels = kmeans2(np.asarray(x, dtype=np.float64), n_clusters, iter=100, minit="++",
                        seed=np.random.default_rng(seed))
    sizes = np.bincount(labels, minlength=n_clusters)  # (C,)
    first = np.array([np.flatnonzero(labels == c)[0] if sizes[c] else len(x)
                      for c in range(n_clusters)])  # (C,)
    order = np.lexsort((first, -sizes))  # old label of new label 0, 1, ...
    rank = np.empty(n_clusters, dtype=np.int64)
    rank[order] = np.arange(n_clusters)
    return rank[labels]  # (n,)


def clusters_path(store: ResultStore, teacher: RunConfig, n_clusters: int, seed: int) -> Path:
    """Where :func:`teacher_user_clusters` stores the labels of ``teacher``'s users."""
    return store.root / "derived" / f"{teacher.run_id}-user-clusters-k{n_clusters}-s{seed}.npz"


def teacher_user_clusters(store: ResultStore, teacher: RunConfig, n_clusters: int = 20,
                          seed: int = 0) -> np.ndarray:
    """The cluster of each user (``(n_users,)``, by user id) in ``teacher``'s representation
    space: read from ``results/derived/`` when stored, else computed from the teacher's
    checkpoint and stored beside a JSON of its provenance (teacher run, checkpoint digest,
    method, versions, commit). Raises FileNotFoundError, naming the checkpoint, when neither
    the labels nor the checkpoint are here."""
    path = clusters_path(store, teacher, n_clusters, seed)
    if path.is_file():
        with np.load(path) as z:
            return z["cluster"]
    ckpt = teacher_checkpoint_path(store, teacher)
    if not ckpt.is_file():
        raise FileNotFoundError(
            f"no stored user clusters at {path} and no teacher checkpoint at {ckpt} to compute "
            f"them from: train the teacher {teacher.run_id} here first")
    split = store.manifest(teacher.run_id)["split"]
    model = build_model(teacher.model, split["n_users"], split["n_items"], teacher.dim,
                        **teacher.model_options)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    with torch.no_grad():
        reps = model.eval().user_repr(torch.arange(split["n_users"])).double()  # (U, d)
    reps = torch.nn.functional.normalize(reps, dim=1).numpy()
    labels = kmeans_labels(reps, n_clusters, seed)  # (n_users,)
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = {
        "teacher_run_id": teacher.run_id,
        "checkpoint_sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest(),
        "representation": f"{type(model).__name__}.user_repr, {reps.shape[1]} dimensions, "
                          "each user's vector scaled to unit length",
        "method": f"scipy.cluster.vq.kmeans2(k={n_clusters}, iter=100, minit='++', "
                  f"seed=numpy.random.default_rng({seed})), clusters numbered by size",
        "scipy": scipy.__version__, "torch": torch.__version__, "git": env.code_git_state(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": np.bincount(labels, minlength=n_clusters).tolist(),
    }
    atomic_write(path.with_suffix(".json"),
                 lambda p: Path(p).write_text(json.dumps(provenance, indent=1) + "\n"))
    atomic_write(path, lambda p: np.savez_compressed(p, cluster=labels))
    return labels
