"""User clusters of the teacher space (DE-RRD Fig. 5): k-means labels and their stored file."""

import json

import numpy as np
import pytest

from rdlib.clusters import clusters_path, kmeans_labels, teacher_user_clusters
from rdlib.config import RunConfig
from rdlib.distill import teacher_checkpoint_path
from rdlib.experiments import run_experiment
from rdlib.results import ResultStore


def _blobs(sizes, seed=0):
    """Well-separated Gaussian blobs in 5 dimensions, rows shuffled; the blob of each row."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    centres = 20.0 * np.eye(5)[: len(sizes)]
    x = centres[truth] + rng.normal(0, 0.5, (len(truth), 5))
    order = rng.permutation(len(truth))
    return x[order], truth[order]


def test_kmeans_finds_separated_blobs_numbered_by_size():
    x, truth = _blobs([20, 50, 30])
    labels = kmeans_labels(x, 3, seed=0)
    # blob 1 (50 rows) is cluster 0, blob 2 (30) cluster 1, blob 0 (20) cluster 2
    assert np.array_equal(labels, np.array([2, 0, 1])[truth])
    for seed in (1, 2):  # another seeding finds the same partition, numbered the same
        assert np.array_equal(kmeans_labels(x, 3, seed=seed), labels)


@pytest.mark.parametrize("k", [0, 101])
def test_kmeans_rejects_a_cluster_count_outside_the_rows(k):
    x, _ = _blobs([50, 50])
    with pytest.raises(ValueError, match=f"n_clusters must be between 1 and the 100 rows, got {k}"):
        kmeans_labels(x, k)


def test_teacher_clusters_are_computed_once_then_read_without_the_checkpoint(tmp_path):
    store = ResultStore(tmp_path)
    cfg = RunConfig(dataset="synthetic", protocol="loo_sampled", dim=8, epochs=2, batch_size=256,
                    lr=0.01, weight_decay=0.0, n_eval_negatives=50, progress=False,
                    role="teacher")
    run_experiment(cfg, store=store)
    labels = teacher_user_clusters(store, cfg, n_clusters=4, seed=0)
    n_users = store.manifest(cfg.run_id)["split"]["n_users"]
    assert labels.shape == (n_users,) and set(np.unique(labels)) == {0, 1, 2, 3}
    assert np.all(np.diff(np.bincount(labels)) <= 0)  # numbered by decreasing size
    path = clusters_path(store, cfg, 4, 0)
    provenance = json.loads(path.with_suffix(".json").read_text())
    assert provenance["teacher_run_id"] == cfg.run_id
    assert provenance["sizes"] == np.bincount(labels).tolist()
    assert len(provenance["checkpoint_sha256"]) == 64
    teacher_checkpoint_path(store, cfg).unlink()  # a fresh clone: no checkpoint, stored labels
    assert np.array_equal(teacher_user_clusters(store, cfg, n_clusters=4, seed=0), labels)
    with pytest.raises(FileNotFoundError, match="no teacher checkpoint at .*best.pt"):
        teacher_user_clusters(store, cfg, n_clusters=5, seed=0)
