"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking.

Rendle et al., UAI 2009, and the base model of DE-RRD (Kang et al., CIKM 2020, §5.1) and the
student of HetComp (Kang et al., WWW 2023). The official DE-RRD code
(SeongKu-Kang/DE-RRD_CIKM20 @97b6bf6, ``Models/BPR.py``) scores by inner product of user and item
embeddings initialised from N(0, 0.01²), with the loss *summed* over the batch
(``reduction="sum"``, the default here; see ``shared/research/methods.md`` §2.1).
The parameter count is (n_users + n_items) · dim, as DE-RRD Table 3 reports.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rdlib.models.base import Recommender, RowEmbedding, row_blocks


class BPRMF(Recommender):
    """Inner-product matrix factorisation.

    Args:
        n_users: number of users.
        n_items: number of items.
        dim: embedding size d.
        init_std: standard deviation of the normal initialisation (0.01 as in DE-RRD's code).
        chunk_floats: when scoring many pairs without gradients (evaluation, a teacher's
            scores), the most gathered item-embedding floats held at once; see
            :meth:`score_pairs`.
    """

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.01,
                 chunk_floats: int = 1 << 19) -> None:
        super().__init__()
        if dim <= 0 or n_users <= 0 or n_items <= 0:
            raise ValueError(f"BPRMF needs positive sizes, got n_users={n_users}, "
                             f"n_items={n_items}, dim={dim}")
        if chunk_floats <= 0:
            raise ValueError(f"chunk_floats must be positive, got {chunk_floats}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.chunk_floats = chunk_floats
        self.user_emb = RowEmbedding(n_users, dim)
        self.item_emb = RowEmbedding(n_items, dim)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_emb(users)  # (B, d)

    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_emb(items)  # (..., d)

    def score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Inner products of ``users`` (B,) with their ``items`` (B, C) → (B, C).

        Without gradients, the users are scored in blocks of at most ``chunk_floats`` gathered
        item-embedding floats. Sampled evaluation gathers B × 500 × d floats per batch (200 MB
        for 1,024 users at d = 100), and allocating and first touching that block took about
        three quarters of a Foursquare evaluation on one CPU thread; blocks that stay in cache
        are several times faster (``benchmarks/bench_eval.py``). Each user's scores are the
        same products in the same order, so the blocked scores equal the unblocked ones bit
        for bit (tested). With gradients the lookup is not split, so that the embedding
        gradient stays one ``index_add_`` and training is unchanged.
        """
        u = self.user_emb(users)  # (B, d)
        blocks = row_blocks(len(users), math.prod(items.shape[1:]) * self.dim, self.chunk_floats)
        if torch.is_grad_enabled() or len(blocks) <= 1:
            return torch.einsum("bd,bcd->bc", u, self.item_emb(items))  # (B, C)
        r = blocks.step
        return torch.cat([torch.einsum("bd,bcd->bc", u[a:a + r], self.item_emb(items[a:a + r]))
                          for a in blocks])  # (B, C), blocks of (r, C)

    def score_users(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_emb(users) @ self.item_emb.weight.T  # (B, I)

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[
            torch.Tensor, torch.Tensor]:
        """Scores of positives (B,) and negatives (B,) for the BPR loss."""
        u = self.user_emb(users)  # (B, d)
        return (u * self.item_emb(pos)).sum(-1), (u * self.item_emb(neg)).sum(-1)

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor,
             reduction: str = "sum") -> torch.Tensor:
        """BPR loss −Σ log σ(s_ui − s_uj) (Rendle et al. 2009, Eq. 3; summed as DE-RRD's code)."""
        s_pos, s_neg = self(users, pos, neg)
        per_pair = -F.logsigmoid(s_pos - s_neg)  # (B,)
        if reduction == "sum":
            return per_pair.sum()
        if reduction == "mean":
            return per_pair.mean()
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
