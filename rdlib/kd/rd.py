"""RD — Ranking Distillation (Tang & Wang, KDD 2018) for non-sequential students.

The baseline "RD" of DE-RRD (Kang et al., CIKM 2020, Table 2) applied to BPR/NeuMF students.
Formulas follow the official RD code (graytowne/rank_distill, ``distill_caser.py`` and
``losses.weighted_sigmoid_log_loss``; methods.md §1.3–1.6):

    L_RD = α · Σ_{u ∈ unique(batch users)} Σ_{r=1}^{K} w_{u,r} · (−log σ(s_{u,π_{u,r}}))

with π_u the teacher's top-K *unobserved* items of u (:func:`rdlib.kd.topk.teacher_topk`) and
detached weights

* position ("static"): w^a_r = e^{−r/λ} / Σ_{r'=1}^{K} e^{−r'/λ};
* ranking discrepancy ("dynamic"): from ε items D_u drawn uniformly with replacement from u's
  non-training items once per epoch, m_{u,r} = #{j ∈ D_u : s_uj > s_{u,π_r}} (strict),
  r̂ = ⌊(n_items − 1)·m/ε⌋, w^b_{u,r} = max(tanh(μ(r̂ − c)), 0) with c = r − 1 the 0-based
  column;
* hybrid: w^a for the first ``dynamic_start_epoch`` epochs, then w^a ⊙ w^b.

Choices and deviations (the RD code only has Caser; DE-RRD's re-implementation for BPR is not
public):

* **unit of distillation**: the loss is summed over the *unique users* of each interaction
  batch (the RRD/DE convention of DE-RRD's code), not per training instance as RD does for
  Caser; active users are therefore distilled once per batch they appear in;
* **renormalisation**: ``renormalize=True`` (default) divides the hybrid/dynamic weight by its
  row sum, as the paper writes; the final official code does not (``renormalize=False``).
  A row whose weights are all 0 contributes 0;
* ``n_items − 1`` in r̂ is the official code's "Small fix" (its item 0 is padding); we keep the
  formula although our item ids have no padding (the difference is one item);
* dynamic samples are drawn per user per epoch (official: per training instance per epoch)
  and scored under ``no_grad`` (official: in the same forward pass; the values are equal for
  models without dropout);
* epochs: :func:`rdlib.training.fit` counts from 0, so "epoch ≤ dynamic_start_epoch" of the
  1-based official loop is ``epoch < dynamic_start_epoch`` here;
* the teacher list excludes the user's training items (the paper's "unobserved"; the code only
  drops the current target — methods.md §1.6 item 4);
* α is the *code* form (L = L_base + α·L_RD), not the paper's (1 − α)/α mixture.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rdlib.models.base import Recommender
from rdlib.sampling import sample_unobserved, seeded_generator
from rdlib.training import Distiller

WEIGHTINGS: tuple[str, ...] = ("static", "dynamic", "hybrid")


def position_weights(K: int, lam: float = 1.0) -> torch.Tensor:
    """w^a_r = e^{−r/λ} / Σ_{r'=1}^{K} e^{−r'/λ} for r = 1..K → (K,) float64."""
    r = torch.arange(1, K + 1, dtype=torch.float64)
    w = torch.exp(-r / lam)
    return w / w.sum()


def discrepancy_weights(s_top: torch.Tensor, s_dyn: torch.Tensor, n_items: int,
                        mu: float = 0.1) -> torch.Tensor:
    """Ranking-discrepancy weights w^b of the official RD code.

    Args:
        s_top: ``(B, K)`` student scores of the teacher's top-K items (teacher order).
        s_dyn: ``(B, ε)`` student scores of the uniformly sampled items.
        n_items: number of items; the rank scale is ``n_items − 1``.
        mu: μ of ``tanh(μ(r̂ − c))``.

    Returns:
        ``(B, K)``: max(tanh(μ(⌊(n_items − 1)·m/ε⌋ − c)), 0), c = 0-based column.
    """
    eps = s_dyn.shape[1]
    m = (s_dyn[:, None, :] > s_top[:, :, None]).sum(-1)  # (B, K), strict comparison
    r_hat = torch.div((n_items - 1) * m, eps, rounding_mode="floor")  # (B, K)
    col = torch.arange(s_top.shape[1], device=s_top.device)  # (K,)
    return torch.tanh(mu * (r_hat - col).to(s_top.dtype)).clamp_min(0)  # (B, K)


class RankingDistillation(Distiller):
    """RD point-wise distillation of the teacher's top-K unobserved items.

    Args:
        teacher_topk: ``(n_users, ≥ K)`` teacher's ranked unobserved items; first K columns used.
        train: ``(N, 2)`` training pairs (dynamic samples avoid them).
        n_items: number of item ids.
        lmbda: α, the weight of the RD term (official ``teach_alpha`` = 1.0).
        K: teacher items per user (10).
        lam: λ of the position weights (official ``lamda`` = 1).
        mu: μ of the discrepancy weights (0.1).
        n_dynamic_samples: ε, items sampled per user per epoch for the rank estimate (100).
        dynamic_start_epoch: epochs with static weights before the hybrid starts (10).
        weighting: ``"hybrid"`` (official), ``"static"`` (w^a only) or ``"dynamic"`` (w^b
            only, from the first epoch).
        renormalize: divide the hybrid/dynamic weights by their row sum (paper: True; final
            official code: False).
        seed: seed of the module's own generator.
    """

    def __init__(self, teacher_topk: torch.Tensor, train: np.ndarray, n_items: int, *,
                 lmbda: float = 1.0, K: int = 10, lam: float = 1.0, mu: float = 0.1,
                 n_dynamic_samples: int = 100, dynamic_start_epoch: int = 10,
                 weighting: str = "hybrid", renormalize: bool = True, seed: int = 0) -> None:
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        if teacher_topk.dim() != 2 or not 0 < K <= teacher_topk.shape[1]:
            raise ValueError(f"teacher_topk must be (n_users, >= K={K}), "
                             f"got {tuple(teacher_topk.shape)}")
        if n_dynamic_samples <= 0:
            raise ValueError(f"n_dynamic_samples must be positive, got {n_dynamic_samples}")
        self.n_users, self.n_items = int(teacher_topk.shape[0]), int(n_items)
        self.lmbda, self.K, self.lam, self.mu = lmbda, K, lam, mu
        self.n_dynamic_samples, self.dynamic_start_epoch = n_dynamic_samples, dynamic_start_epoch
        self.weighting, self.renormalize, self.seed = weighting, renormalize, seed
        self.register_buffer("top", teacher_topk[:, :K].long().contiguous(),
                             persistent=False)  # (U, K)
        self.register_buffer("w_static", position_weights(K, lam), persistent=False)  # (K,)
        train = np.asarray(train, dtype=np.int64).reshape(-1, 2)
        keys = np.unique(train[:, 0] * n_items + train[:, 1])  # sorted (user, item) keys
        n_obs = np.bincount(keys // n_items, minlength=self.n_users)
        if (n_obs >= n_items).any():
            raise ValueError(f"user {int(n_obs.argmax())} has no unobserved item")
        self.register_buffer("train_keys", torch.as_tensor(keys), persistent=False)  # (P,)
        self._gen: torch.Generator | None = None
        self.dynamic: torch.Tensor | None = None  # (U, ε) this epoch's samples

    def _generator(self) -> torch.Generator:
        self._gen = seeded_generator(self._gen, self.seed, self.top.device)
        return self._gen

    def sample_dynamic(self) -> torch.Tensor:
        """``(U, ε)`` items i.i.d. uniform over each user's non-training items (entry-wise
        rejection: rejected entries are redrawn, which keeps each entry uniform)."""
        users = torch.arange(self.n_users, device=self.top.device)
        return sample_unobserved(self.train_keys, users, self.n_dynamic_samples, self.n_items,
                                 self._generator())  # (U, ε)

    @torch.no_grad()
    def start_epoch(self, epoch: int, student: Recommender) -> None:
        """Draw this epoch's ε uniform samples per user (only when w^b may be used)."""
        if self.weighting != "static":
            self.dynamic = self.sample_dynamic()

    def uses_dynamic(self, epoch: int) -> bool:
        """Whether w^b enters the weight at 0-based ``epoch``."""
        if self.weighting == "hybrid":
            return epoch >= self.dynamic_start_epoch
        return self.weighting == "dynamic"

    def weights(self, student: Recommender, users: torch.Tensor, s_top: torch.Tensor,
                epoch: int) -> torch.Tensor:
        """Detached weights ``(B, K)`` for ``users`` (B,) whose top-K scores are ``s_top``."""
        w_a = self.w_static.to(s_top.dtype).expand(users.numel(), -1)  # (B, K)
        if not self.uses_dynamic(epoch):
            return w_a
        if self.dynamic is None:
            raise RuntimeError("RankingDistillation.start_epoch must be called before loss")
        with torch.no_grad():
            s_dyn = student.score_pairs(users, self.dynamic[users])  # (B, ε)
            w_b = discrepancy_weights(s_top.detach(), s_dyn, self.n_items, self.mu)  # (B, K)
        w = w_b if self.weighting == "dynamic" else w_a * w_b  # (B, K)
        if self.renormalize:
            total = w.sum(-1, keepdim=True)  # (B, 1)
            w = torch.where(total > 0, w / total.clamp_min(1e-30), torch.zeros_like(w))
        return w

    def loss(self, student: Recommender, users: torch.Tensor, pos: torch.Tensor,
             neg: torch.Tensor, epoch: int) -> torch.Tensor:
        """α · Σ over the batch's unique users of Σ_r w_r · (−log σ(s_{u,π_r}))."""
        u = torch.unique(users)  # (U_B,)
        s_top = student.score_pairs(u, self.top[u])  # (U_B, K)
        w = self.weights(student, u, s_top, epoch)  # (U_B, K)
        return self.lmbda * (w * -F.logsigmoid(s_top)).sum()
