"""Negative sampling on the device, vectorised (no per-interaction Python loop).

The official DE-RRD code draws one uniform negative per training interaction with a Python loop
and dict look-ups every epoch (methods.md §2.6). Here membership in the training set is tested
with ``torch.searchsorted`` on sorted ``user * n_items + item`` keys, and only rejected draws are
re-drawn, so the result is the same distribution: uniform over items not in R_u.
"""

from __future__ import annotations

import numpy as np
import torch


def in_sorted_keys(sorted_keys: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """Boolean tensor shaped like ``queries``: which values occur in the sorted 1-D
    ``sorted_keys`` (the torch twin of :func:`rdlib.protocols.split.in_sorted`)."""
    if sorted_keys.numel() == 0:
        return torch.zeros_like(queries, dtype=torch.bool)
    idx = torch.searchsorted(sorted_keys, queries).clamp_(max=sorted_keys.numel() - 1)
    return sorted_keys[idx] == queries


def sample_unobserved(sorted_keys: torch.Tensor, users: torch.Tensor, n: int, n_items: int,
                      generator: torch.Generator) -> torch.Tensor:
    """``n`` items per entry of ``users`` (B,) → (B, n), i.i.d. uniform among items whose
    ``user * n_items + item`` key is not in ``sorted_keys``: rejected entries alone are redrawn,
    which keeps every entry uniform over the allowed items."""
    dev = sorted_keys.device
    u = users.to(dev).unsqueeze(1).expand(-1, n)  # (B, n)
    items = torch.randint(n_items, u.shape, device=dev, generator=generator)
    bad = in_sorted_keys(sorted_keys, u * n_items + items)  # (B, n)
    while bool(bad.any()):
        items[bad] = torch.randint(n_items, (int(bad.sum()),), device=dev, generator=generator)
        bad = in_sorted_keys(sorted_keys, u * n_items + items)
    return items


def seeded_generator(current: torch.Generator | None, seed: int,
                     device: torch.device) -> torch.Generator:
    """``current`` when it already lives on ``device``, else a new generator seeded with ``seed``
    (a module moved to another device restarts its stream there)."""
    if current is None or current.device != device:
        current = torch.Generator(device=device)
        current.manual_seed(seed)
    return current


def draw_positions(weights: torch.Tensor, n_rows: int, k: int, generator: torch.Generator,
                   chunk_rows: int = 8192) -> torch.Tensor:
    """``(n_rows, k)`` distinct positions per row, drawn without replacement with probability
    ∝ ``weights`` (N,), in draw order; ``torch.multinomial`` on row chunks bounds memory."""
    out = torch.empty((n_rows, k), dtype=torch.long, device=weights.device)
    for a in range(0, n_rows, chunk_rows):
        b = min(a + chunk_rows, n_rows)
        w = weights.expand(b - a, -1).contiguous()  # (C, N)
        out[a:b] = torch.multinomial(w, k, replacement=False, generator=generator)
    return out


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
        return in_sorted_keys(self.keys, users * self.n_items + items)

    def sample(self, users: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` negatives for each entry of ``users`` (B,) → (B, n), by rejection."""
        return sample_unobserved(self.keys, users, n, self.n_items, generator)
