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


@pytest.mark.parametrize("dim", [3, 20, 100])
@pytest.mark.parametrize("chunk_floats", [1, 700, 5_000, 1 << 30])
def test_bpr_blocked_scores_equal_unblocked_bit_for_bit(dim, chunk_floats):
    """Evaluation scores users in blocks (BPRMF.score_pairs); each block must give exactly the
    floats of one einsum over the whole batch, or stored runs would not repeat."""
    torch.manual_seed(0)
    model = BPRMF(50, 80, dim, init_std=1.0, chunk_floats=chunk_floats)
    users = torch.randint(50, (37,))  # (B,), B a multiple of no block size
    items = torch.randint(80, (37, 11))  # (B, C)
    want = torch.einsum("bd,bcd->bc", model.user_emb.weight[users],
                        model.item_emb.weight[items])  # (B, C), one product per pair
    with torch.no_grad():
        got = model.score_pairs(users, items)
    assert got.shape == (37, 11)
    assert torch.equal(got, want)


def test_bpr_score_pairs_with_gradients_gives_the_unblocked_gradient():
    """Training lookups are not split: with a tiny chunk_floats, the embedding gradients equal
    those of a model whose one block holds the batch."""
    grads = []
    for chunk_floats in (1, 1 << 30):
        torch.manual_seed(0)
        model = BPRMF(30, 40, 8, chunk_floats=chunk_floats)
        users = torch.arange(30).repeat(4)  # (120,)
        items = torch.randint(40, (120, 9), generator=torch.Generator().manual_seed(1))
        model.score_pairs(users, items).square().sum().backward()
        grads.append((model.user_emb.weight.grad, model.item_emb.weight.grad))
    assert torch.equal(grads[0][0], grads[1][0])
    assert torch.equal(grads[0][1], grads[1][1])


def test_bpr_rejects_a_non_positive_chunk():
    with pytest.raises(ValueError, match="chunk_floats"):
        BPRMF(10, 10, 4, chunk_floats=0)
