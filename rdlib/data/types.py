"""The in-memory form of an interaction log, shared by readers, protocols and models."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class DataError(ValueError):
    """Bad input data: a malformed line, a wrong checksum, a missing file, an unknown name.

    The message always names the file (and the line, where there is one) and what was expected.
    """


@dataclass(frozen=True)
class Interactions:
    """Implicit-feedback interactions with contiguous 0-based ids.

    Rows keep the order of the source file (which is the time order for sequence formats), so a
    stable sort by ``(user, timestamp)`` recovers each user's history.

    Attributes:
        users: ``(N,)`` int64 user index in ``[0, n_users)``.
        items: ``(N,)`` int64 item index in ``[0, n_items)``.
        n_users: number of users (every index in range occurs at least once).
        n_items: number of items (every index in range occurs at least once).
        timestamps: ``(N,)`` float64 or ``None`` when the source has no time.
        ratings: ``(N,)`` float64 or ``None`` when the source is implicit.
        user_ids: ``(n_users,)`` the raw id of each user index (as text).
        item_ids: ``(n_items,)`` the raw id of each item index (as text).
        name: dataset name, for messages.
        notes: what preprocessing did (e.g. counts dropped), in order.
    """

    users: np.ndarray
    items: np.ndarray
    n_users: int
    n_items: int
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    name: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return int(self.users.shape[0])

    @property
    def density(self) -> float:
        return len(self) / float(self.n_users * self.n_items) if self.n_users and self.n_items else 0.0

    def stats(self) -> dict[str, float | int]:
        """Users, items, interactions and density: the keys ``rdlib data stats --json`` prints."""
        return {
            "n_users": int(self.n_users),
            "n_items": int(self.n_items),
            "n_interactions": len(self),
            "density": self.density,
        }
