"""The model interface every recommender in rdlib implements.

Evaluation needs two things from a model: full score rows for a batch of users (full-ranking
protocols) and scores of given (user, item) candidates (sampled protocols). Training needs a loss
on a batch. Later chapters extend this with NeuMF, CML, LightGCN, VAEs, Caser and Fossil; the
distillation methods only rely on these methods and on ``user_repr``/``item_repr``.
"""

from __future__ import annotations

import torch
from torch import nn


class Recommender(nn.Module):
    """Base class: subclasses implement :meth:`score_pairs` and :meth:`score_users`."""

    n_users: int
    n_items: int

    def score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of ``items`` (B, C) for ``users`` (B,) → (B, C)."""
        raise NotImplementedError

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of every item for ``users`` (B,) → (B, n_items)."""
        raise NotImplementedError

    def n_parameters(self, trainable_only: bool = True) -> int:
        """Number of parameters (the quantity of DE-RRD Table 3 and RD Table 3)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def row_blocks(n_rows: int, per_row: int, budget: int) -> range:
    """Starts of blocks of consecutive rows, each holding at most ``budget`` elements when a
    row holds ``per_row`` (at least one row per block; ``.step`` is the block's row count).

    The models score many pairs without gradients block by block (NeuMF's ``chunk_pairs``,
    BPR-MF's ``chunk_floats``), so that their intermediates stay small."""
    return range(0, n_rows, max(1, budget // max(per_row, 1)))


class RowEmbedding(nn.Embedding):
    """An ``nn.Embedding`` whose lookup is ``weight.index_select``: the same rows, the same
    parameters and state_dict keys, and on CPU the same gradient bit for bit, but faster.

    ``index_select``'s backward is one ``index_add_``, which sums the same rows in the same
    order as ``nn.Embedding``'s dense backward but is faster on CPU for large lookups. RRD looks
    up about 40,000 item rows per mini-batch (≈1,000 users × K = 40, and as many for L = 40),
    where ``embedding_dense_backward`` was 35% of a profiled epoch
    (``torch.profiler``, Foursquare, one thread). A BPR + RRD epoch of Foursquare's size
    ran 1.3–1.5× faster with ``index_select``, with identical weights after it
    (``benchmarks/bench_lookup.py --epoch``; measured on a loaded 2-core CPU, one thread).
    ``padding_idx``, ``max_norm`` and sparse gradients are not supported (rdlib uses none).
    """

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__(num_embeddings, embedding_dim)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows of ``idx`` (any shape) → (*idx.shape, d)."""
        return self.weight.index_select(0, idx.reshape(-1)).view(*idx.shape, self.embedding_dim)
