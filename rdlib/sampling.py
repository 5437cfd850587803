"""Negative sampling on the device, vectorised (no per-interaction Python loop).

The official DE-RRD code draws one uniform negative per training interaction with a Python loop
and dict look-ups every epoch (methods.md §2.6). Here membership in the training set is tested
with ``torch.searchsorted`` on sorted ``user * n_items + item`` keys, and only rejected draws are
re-drawn, so the result is the same distribution: uniform over items not in R_u.
"""

from __future__ import annotations

import numpy as np
import torch


class NegativeSampler:
    """Uniform negatives among the items a user has no *training* interaction with.

    As in DE-RRD's code, held-out (validation/test) items may be drawn as negatives: the model
    must not see which items are held out.

    Args:
        train: (N, 2) int64 array of training (user, item) pairs.
        n_items: number of items.
        device: where keys live and draws happen.
    """

    def __init__(self, train: np.ndarray, n_items: int, device: str | torch.device = "cpu") -> None:
        self.n_items = int(n_items)
        self.device = torch.device(device)
        keys = torch.as_tensor(train[:, 0] * self.n_items + train[:, 1], dtype=torch.int64)
        self.keys = torch.unique(keys).to(self.device)  # (N',) sorted
        counts = np.bincount(train[:, 0], minlength=int(train[:, 0].max()) + 1)
        if (counts >= self.n_items).any():
            bad = int(np.flatnonzero(counts >= self.n_items)[0])
            raise ValueError(f"user {bad} interacted with all {self.n_items} items: "
                             "no negative can be drawn")

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Boolean tensor, same shape as ``items``: is (user, item) a training pair."""
        q = users * self.n_items + items
        pos = torch.searchsorted(self.keys, q).clamp_max(self.keys.numel() - 1)
        return self.keys[pos] == q

    def sample(self, users: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` negatives for each entry of ``users`` (B,) → (B, n), by rejection."""
        users = users.to(self.device)
        u = users.unsqueeze(1).expand(-1, n)  # (B, n)
        items = torch.randint(self.n_items, u.shape, device=self.device, generator=generator)
        bad = self.is_positive(u, items)
        while bool(bad.any()):
            redraw = torch.randint(self.n_items, (int(bad.sum()),), device=self.device,
                                   generator=generator)
            items[bad] = redraw
            bad = self.is_positive(u, items)
        return items
