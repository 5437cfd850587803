"""Model building blocks: RowEmbedding is nn.Embedding with a faster backward on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rdlib.models import BPRMF, build_model
from rdlib.models.base import RowEmbedding


@pytest.mark.parametrize("n_indices", [7, 3_000, 3_001, 20_000])  # small and RRD-sized lookups
def test_row_embedding_equals_nn_embedding_bit_for_bit(n_indices):
    torch.manual_seed(0)
    plain, rows = nn.Embedding(500, 8), RowEmbedding(500, 8)
    rows.load_state_dict(plain.state_dict())
    idx = torch.randint(500, (n_indices // 5 + 1, 5))  # 2-D, with repeated rows
    upstream = torch.randn(*idx.shape, 8)
    out_plain, out_rows = plain(idx), rows(idx)
    assert out_rows.shape == (*idx.shape, 8)
    assert torch.equal(out_plain, out_rows)
    out_plain.backward(upstream)
    out_rows.backward(upstream)
    assert torch.equal(plain.weight.grad, rows.weight.grad)


def test_row_embedding_draws_the_same_initial_weights_and_keys():
    torch.manual_seed(3)
    a = nn.Embedding(40, 4)
    torch.manual_seed(3)
    b = RowEmbedding(40, 4)
    assert torch.equal(a.weight, b.weight) and a.state_dict().keys() == b.state_dict().keys()


def test_models_load_state_saved_with_nn_embedding():
    """Checkpoints written before RowEmbedding (plain nn.Embedding tables) load unchanged."""
    torch.manual_seed(0)
    old = BPRMF(30, 40, 6)
    for name in ("user_emb", "item_emb"):
        plain = nn.Embedding(*getattr(old, name).weight.shape)
        plain.load_state_dict(getattr(old, name).state_dict())
        setattr(old, name, plain)
    new = BPRMF(30, 40, 6)
    new.load_state_dict(old.state_dict())
    users, items = torch.tensor([0, 5]), torch.tensor([[1, 2], [3, 39]])
    assert torch.equal(new.score_pairs(users, items), old.score_pairs(users, items))
    assert isinstance(build_model("neumf", 30, 40, 20).item_gmf, RowEmbedding)
