"""CD — Collaborative Distillation (Lee et al., "Collaborative Distillation for Top-N
Recommendation", ICDM 2019), a baseline of DE-RRD (Kang et al., CIKM 2020, Table 2).

No official code is known (methods.md §4). This follows the common re-implementation lineage
(chengang95/UnKD → woriazzc/KDs) as methods.md §4 describes it:

* every epoch, for each user, ``n_samples`` distinct unobserved items are drawn by rank-aware
  sampling from a ranked list of length N, with probability ∝ exp(−pos/(N·T)) for the 0-based
  position ``pos``;
* the soft target of a sampled item is the teacher's σ((t_ui + t2)/t1), t1 = 2, t2 = 0
  (t_ui: teacher logit/score);
* L_CD = λ · Σ_{u ∈ unique(batch users)} Σ_{i ∈ S_u} BCE(σ(s_ui), σ((t_ui + t2)/t1)),
  BCE(p, y) = −[y log p + (1 − y) log(1 − p)], computed from logits.

Strategies: ``"teacher"`` (CD-TG, default) samples from the teacher's top list
(:func:`rdlib.kd.topk.teacher_topk`); ``"student"`` (CD-SG) re-ranks each epoch with the
student's current scores (its top-N unobserved items) and samples from that list; soft
targets always come from the teacher.

Deviations / inferred choices:

* sampling is ``torch.multinomial`` without replacement over positions, for all users at once
  (in user chunks), instead of UnKD's pairwise tournament ("keep the higher-scored of two
  draws until n distinct items"); both favour top positions, the exact distribution differs;
* the loss is summed over the batch's unique users, as DE-RRD's code does for RRD/DE (the
  CD paper's exact weighting and its λ for sum losses are not known: ``lmbda``, ``T``,
  ``n_samples`` and the list length are ours to tune — UnKD uses a list of 3,000);
* the teacher list excludes the user's training items; held-out items may be sampled;
* samples come from the module's own seeded generator, whose state is saved with the
  module (:class:`rdlib.training.Distiller`), so a resumed run draws what an uninterrupted
  one would.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rdlib.kd.topk import teacher_topk as ranked_unobserved
from rdlib.models.base import Recommender
from rdlib.sampling import draw_positions, seeded_generator
from rdlib.training import Distiller

STRATEGIES: tuple[str, ...] = ("teacher", "student")


def soft_targets(teacher_scores: torch.Tensor, t1: float = 2.0, t2: float = 0.0) -> torch.Tensor:
    """CD's soft labels σ((t + t2)/t1), same shape as ``teacher_scores``."""
    return torch.sigmoid((teacher_scores + t2) / t1)


def rank_weights(n: int, T: float = 1.0) -> torch.Tensor:
    """Unnormalised sampling weights exp(−pos/(n·T)) for 0-based positions → (n,)."""
    pos = torch.arange(n, dtype=torch.float64)
    return torch.exp(-pos / (n * T)).float()


class CollaborativeDistillation(Distiller):
    """Collaborative Distillation with per-epoch rank-aware sampling.

    Args:
        teacher: the trained teacher (scores give the soft targets; kept out of the module's
            parameters and state).
        teacher_topk: ``(n_users, ≥ top_n)`` teacher's ranked unobserved items.
        train: ``(N, 2)`` training pairs (the student-guided list excludes them).
        n_items: number of item ids.
        lmbda: weight λ of the CD term (ours: 0.01).
        n_samples: items sampled per user per epoch.
        top_n: length N of the ranked list (default: all columns of ``teacher_topk``).
        T: temperature of exp(−pos/(N·T)).
        t1, t2: soft-target temperature and shift (2, 0).
        strategy: ``"teacher"`` (CD-TG) or ``"student"`` (CD-SG).
        seed: seed of the module's generator.
        chunk_users: users per ``torch.multinomial`` / scoring call.
    """

    def __init__(self, teacher: Recommender, teacher_topk: torch.Tensor, train: np.ndarray,
                 n_items: int, *, lmbda: float = 0.01, n_samples: int = 10,
                 top_n: int | None = None, T: float = 1.0, t1: float = 2.0, t2: float = 0.0,
                 strategy: str = "teacher", seed: int = 0, chunk_users: int = 8192) -> None:
        super().__init__()
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        top_n = int(teacher_topk.shape[1]) if top_n is None else top_n
        if teacher_topk.dim() != 2 or teacher_topk.shape[1] < top_n:
            raise ValueError(f"teacher_topk must be (n_users, >= top_n={top_n}), "
                             f"got {tuple(teacher_topk.shape)}")
        if not 0 < n_samples <= top_n:
            raise ValueError(f"need 0 < n_samples <= top_n, got {n_samples}, {top_n}")
        self.n_users, self.n_items = int(teacher_topk.shape[0]), int(n_items)
        self.lmbda, self.n_samples, self.top_n, self.T = lmbda, n_samples, top_n, T
        self.t1, self.t2, self.strategy, self.seed = t1, t2, strategy, seed
        self.chunk_users = chunk_users
        self.teacher = [teacher]  # a list: not a submodule (no grads, not saved)
        self.train_pairs = np.asarray(train, dtype=np.int64).reshape(-1, 2)
        self.register_buffer("top", teacher_topk[:, :top_n].long().contiguous(),
                             persistent=False)  # (U, N)
        self.register_buffer("pos_weights", rank_weights(top_n, T), persistent=False)  # (N,)
        self._gen: torch.Generator | None = None
        self.samples: torch.Tensor | None = None  # (U, n) this epoch's items
        self.targets: torch.Tensor | None = None  # (U, n) their soft targets

    def _generator(self) -> torch.Generator:
        self._gen = seeded_generator(self._gen, self.seed, self.top.device)
        return self._gen

    def sample_positions(self) -> torch.Tensor:
        """``(U, n)`` distinct 0-based list positions, p ∝ exp(−pos/(N·T)), in draw order."""
        return draw_positions(self.pos_weights, self.n_users, self.n_samples, self._generator(),
                              self.chunk_users)

    @torch.no_grad()
    def ranked_list(self, student: Recommender) -> torch.Tensor:
        """``(U, N)`` list sampled from: the teacher's, or the student's current one (CD-SG)."""
        if self.strategy == "teacher":
            return self.top
        was_training = student.training
        lst = ranked_unobserved(student, self.train_pairs, self.n_users, self.n_items,
                                k=self.top_n, batch_size=self.chunk_users,
                                device=self.top.device)
        student.train(was_training)
        return lst

    @torch.no_grad()
    def start_epoch(self, epoch: int, student: Recommender) -> None:
        """Sample this epoch's items per user and compute their teacher soft targets."""
        lst = self.ranked_list(student)  # (U, N)
        self.samples = torch.gather(lst, 1, self.sample_positions())  # (U, n)
        teacher = self.teacher[0].to(self.top.device).eval()
        users = torch.arange(self.n_users, device=self.top.device)
        t = torch.cat([teacher.score_pairs(users[a:a + self.chunk_users],
                                           self.samples[a:a + self.chunk_users])
                       for a in range(0, self.n_users, self.chunk_users)])  # (U, n)
        self.targets = soft_targets(t.float(), self.t1, self.t2)

    def loss(self, student: Recommender, users: torch.Tensor, pos: torch.Tensor,
             neg: torch.Tensor, epoch: int) -> torch.Tensor:
        """λ · Σ over the batch's unique users of the BCE between σ(s_ui) and the soft targets."""
        if self.samples is None or self.targets is None:
            raise RuntimeError("CollaborativeDistillation.start_epoch must be called before loss")
        u = torch.unique(users)  # (U_B,)
        s = student.score_pairs(u, self.samples[u])  # (U_B, n)
        bce = F.binary_cross_entropy_with_logits(s, self.targets[u].to(s.dtype),
                                                 reduction="sum")
        return self.lmbda * bce
