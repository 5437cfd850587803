"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking.

Rendle et al., UAI 2009, and the base model of DE-RRD (Kang et al., CIKM 2020, §5.1) and the
student of HetComp (Kang et al., WWW 2023). The official DE-RRD code
(SeongKu-Kang/DE-RRD_CIKM20 @97b6bf6, ``Models/BPR.py``) scores by inner product of user and item
embeddings initialised from N(0, 0.01²), with the loss *summed* over the batch
(``reduction="sum"``, the default here; see ``shared/research/methods.md`` §2.1).
The parameter count is (n_users + n_items) · dim, as DE-RRD Table 3 reports.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdlib.models.base import Recommender, RowEmbedding


class BPRMF(Recommender):
    """Inner-product matrix factorisation.

    Args:
        n_users: number of users.
        n_items: number of items.
        dim: embedding size d.
        init_std: standard deviation of the normal initialisation (0.01 as in DE-RRD's code).
    """

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float = 0.01) -> None:
        super().__init__()
        if dim <= 0 or n_users <= 0 or n_items <= 0:
            raise ValueError(f"BPRMF needs positive sizes, got n_users={n_users}, "
                             f"n_items={n_items}, dim={dim}")
        self.n_users, self.n_items, self.dim = n_users, n_items, dim
        self.user_emb = RowEmbedding(n_users, dim)
        self.item_emb = RowEmbedding(n_items, dim)
        nn.init.normal_(self.user_emb.weight, std=init_std)
        nn.init.normal_(self.item_emb.weight, std=init_std)

    def user_repr(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_emb(users)  # (B, d)

    def item_repr(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_emb(items)  # (..., d)

    def score_pairs(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        u = self.user_emb(users)  # (B, d)
        v = self.item_emb(items)  # (B, C, d)
        return torch.einsum("bd,bcd->bc", u, v)  # (B, C)

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
