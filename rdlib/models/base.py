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
