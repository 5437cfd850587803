"""Negative sampling: never a training item, uniform over the rest, seeded."""

import numpy as np
import pytest
import torch

from rdlib.sampling import NegativeSampler


def test_negatives_are_never_training_items_and_cover_the_rest():
    train = np.array([[0, 0], [0, 1], [0, 2], [1, 3], [1, 4]])
    s = NegativeSampler(train, n_items=6)
    g = torch.Generator().manual_seed(0)
    users = torch.tensor([0] * 3000 + [1] * 3000)
    neg = s.sample(users, 2, g)  # (6000, 2)
    for u, banned in ((0, {0, 1, 2}), (1, {3, 4})):
        drawn = neg[users == u].flatten().tolist()
        assert not set(drawn) & banned
        assert set(drawn) == set(range(6)) - banned
        # uniform over the allowed items: each frequency close to 1/|allowed|
        freq = np.bincount(drawn, minlength=6)[sorted(set(range(6)) - banned)] / len(drawn)
        assert np.allclose(freq, 1 / len(freq), atol=0.03)


def test_same_seed_same_draws():
    train = np.array([[0, 0], [1, 1]])
    s = NegativeSampler(train, n_items=50)
    a = s.sample(torch.tensor([0, 1, 1]), 4, torch.Generator().manual_seed(3))
    b = s.sample(torch.tensor([0, 1, 1]), 4, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_user_with_every_item_is_an_error():
    with pytest.raises(ValueError, match="user 0 interacted with all 2 items"):
        NegativeSampler(np.array([[0, 0], [0, 1]]), n_items=2)
