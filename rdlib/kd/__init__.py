"""Knowledge-distillation methods for recommenders: DE, RRD (DE-RRD, CIKM 2020) and helpers.

DE-RRD (methods.md §2.4; the official code has no joint script) is
``fit(..., distiller=DistillerSum(DistillationExperts(...), RRD(...)))``: both terms on the
same mini-batches, L = L_BPR + λ_DE·L_DE + λ_RRD·L_RRD.
"""

from __future__ import annotations

import torch

from rdlib.kd.cd import CollaborativeDistillation, soft_targets  # noqa: F401
from rdlib.kd.de import (
    DistillationExperts,
    default_hidden,
    gumbel_temperature,
    one_expert_hidden,
)
from rdlib.kd.rd import RankingDistillation, discrepancy_weights, position_weights  # noqa: F401
from rdlib.kd.rrd import RRD, relaxed_ranking_loss, relaxed_ranking_loss_naive
from rdlib.kd.topk import cached_teacher_topk, file_digest, teacher_topk
from rdlib.models.base import Recommender
from rdlib.training import Distiller


class DistillerSum(Distiller):
    """Several distillers whose losses are added (each keeps its own λ)."""

    def __init__(self, *parts: Distiller) -> None:
        super().__init__()
        self.parts = torch.nn.ModuleList(parts)

    def start_epoch(self, epoch: int, student: Recommender) -> None:
        for d in self.parts:
            d.start_epoch(epoch, student)

    def loss(self, student: Recommender, users: torch.Tensor, pos: torch.Tensor,
             neg: torch.Tensor, epoch: int) -> torch.Tensor:
        return sum(d.loss(student, users, pos, neg, epoch) for d in self.parts)  # type: ignore[return-value]


__all__ = ["RRD", "DistillationExperts", "DistillerSum", "cached_teacher_topk",
           "default_hidden", "file_digest", "gumbel_temperature", "one_expert_hidden", "relaxed_ranking_loss",
           "relaxed_ranking_loss_naive", "teacher_topk"]
