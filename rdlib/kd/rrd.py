"""RRD — Relaxed Ranking Distillation (Kang et al., CIKM 2020, §4.2; methods.md §2.3).

For user u with K *interesting* items I_u (in teacher order) and L *uninteresting* items N_u,
the relaxed Plackett–Luce likelihood of the paper (Eq. for p(π_u^{1:K}), the official
``Utils/loss.py``) gives the loss

    L_RRD = −Σ_u Σ_{k=1}^{K} [ s_{u,I_k} − log( Σ_{l=k}^{K} e^{s_{u,I_l}} + Σ_{j∈N_u} e^{s_{uj}} ) ]

summed over the unique users of a mini-batch and multiplied by λ_RRD.

Deviations from the official code:

* the log-denominator is computed with log-sum-exp (reverse ``logcumsumexp`` of the interesting
  scores ⊕ ``logsumexp`` of the uninteresting ones) instead of raw ``exp``; the value is the
  same wherever the raw form does not overflow (tested);
* sampling runs on the device for all users at once (``torch.multinomial`` in user chunks, and
  vectorised rejection sampling against sorted ``user·n_items + item`` keys) instead of a dense
  U×I mask and Python loops; the distributions are the same;
* samples come from the module's own seeded generator, whose state is saved with the module
  (:class:`rdlib.training.Distiller`), so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rdlib.models.base import Recommender
from rdlib.sampling import draw_positions, in_sorted_keys, seeded_generator
from rdlib.training import Distiller

VARIANTS: tuple[str, ...] = ("relaxed", "full", "interesting_only")
SAMPLINGS: tuple[str, ...] = ("rank", "top")


def relaxed_ranking_loss(interesting: torch.Tensor,
                         uninteresting: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log relaxed permutation probability per row, computed stably.

    Args:
        interesting: ``(B, K)`` student scores of the interesting items, in teacher order.
        uninteresting: ``(B, L)`` student scores of the uninteresting items (any order), or
            ``None`` for the plain Plackett–Luce (ListMLE) loss over ``interesting`` alone.

    Returns:
        ``(B,)``: ``−Σ_k [s_k − log(Σ_{l≥k} e^{s_l} + Σ_j e^{u_j})]``.
    """
    # log Σ_{l≥k} e^{s_l}: logcumsumexp of the reversed row, reversed back
    tail = torch.flip(torch.logcumsumexp(torch.flip(interesting, (-1,)), dim=-1), (-1,))  # (B, K)
    if uninteresting is not None and uninteresting.shape[-1] > 0:
        rest = torch.logsumexp(uninteresting, dim=-1, keepdim=True)  # (B, 1)
        tail = torch.logaddexp(tail, rest)  # (B, K)
    return -(interesting - tail).sum(-1)  # (B,)


def relaxed_ranking_loss_naive(interesting: torch.Tensor,
                               uninteresting: torch.Tensor | None = None) -> torch.Tensor:
    """The official code's raw-``exp`` form of :func:`relaxed_ranking_loss` (for tests)."""
    above = torch.exp(interesting)  # (B, K)
    below = torch.flip(torch.cumsum(torch.flip(above, (-1,)), -1), (-1,))  # (B, K)
    if uninteresting is not None:
        below = below + torch.exp(uninteresting).sum(-1, keepdim=True)  # (B, K)
    return -(interesting - torch.log(below)).sum(-1)  # (B,)


class RRD(Distiller):
    """Relaxed Ranking Distillation with per-epoch sampling of interesting/uninteresting items.

    Args:
        teacher_topk: ``(n_users, ≥ top_n)`` teacher's ranked unobserved items
            (:func:`rdlib.kd.topk.teacher_topk`); only the first ``top_n`` columns are used.
        train: ``(N, 2)`` training pairs (uninteresting items avoid them).
        n_items: number of item ids.
        lmbda: λ_RRD (official default 0.001).
        K: interesting items per user (``U_K`` = 40).
        L: uninteresting items per user (``U_L`` = 40).
        T: temperature of the rank weights ``exp(−r/T)`` (``U_T`` = 10).
        top_n: length of the teacher list sampled from (500).
        variant: ``"relaxed"`` — the paper's RRD (above). ``"interesting_only"`` — Table 4 (e):
            the Plackett–Luce loss of the K interesting items only,
            ``−Σ_k [s_{I_k} − log Σ_{l≥k} e^{s_{I_l}}]`` (no uninteresting term).
            ``"full"`` — Table 4 (d), "full ranking": the Plackett–Luce loss of the whole
            sampled list π = (I_1..I_K, N_(1)..N_(L)), where the uninteresting items are
            also ranked, among themselves, in decreasing **teacher** score (they all come after
            the interesting ones, being outside the teacher's top-N):
            ``−Σ_{k=1}^{K+L} [s_{π_k} − log Σ_{l≥k} e^{s_{π_l}}]``. The paper does not give the
            formula; this is our reading, and it needs ``teacher`` to order N_u.
        sampling: ``"rank"`` — official: K ranks drawn without replacement from 1..top_n with
            probability ∝ exp(−r/T), then sorted by rank. ``"top"`` — the authors' 2023
            update: the teacher's top-K items used directly (no sampling).
        teacher: the teacher model, required for ``variant="full"`` (orders N_u).
        seed: seed of the module's own ``torch.Generator``.
        chunk_users: users per ``torch.multinomial`` call (bounds memory to chunk × top_n).
    """

    def __init__(self, teacher_topk: torch.Tensor, train: np.ndarray, n_items: int, *,
                 lmbda: float = 0.001, K: int = 40, L: int = 40, T: float = 10.0,
                 top_n: int = 500, variant: str = "relaxed", sampling: str = "rank",
                 teacher: Recommender | None = None, seed: int = 0,
                 chunk_users: int = 8192) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if variant == "full" and teacher is None:
            raise ValueError("variant='full' needs the teacher to order the uninteresting items")
        if teacher_topk.dim() != 2 or teacher_topk.shape[1] < top_n:
            raise ValueError(f"teacher_topk must be (n_users, >= top_n={top_n}), "
                             f"got {tuple(teacher_topk.shape)}")
        if not 0 < K <= top_n or L < 0:
            raise ValueError(f"need 0 < K <= top_n and L >= 0, got K={K}, L={L}, top_n={top_n}")
        self.n_users, self.n_items = int(teacher_topk.shape[0]), int(n_items)
        self.lmbda, self.K, self.L, self.T, self.top_n = lmbda, K, L, T, top_n
        self.variant, self.sampling, self.seed = variant, sampling, seed
        self.chunk_users = chunk_users
        self.teacher = [teacher]  # a list: not registered as a submodule (no grads, not saved)
        top = teacher_topk[:, :top_n].long()
        self.register_buffer("top", top, persistent=False)  # (U, N)
        train = np.asarray(train, dtype=np.int64).reshape(-1, 2)
        keys = np.concatenate([train[:, 0] * n_items + train[:, 1],
                               (np.arange(self.n_users)[:, None] * n_items
                                + top.cpu().numpy()).ravel()])
        keys = np.unique(keys)  # sorted forbidden (user, item) keys
        n_forbidden = np.bincount(keys // n_items, minlength=self.n_users)  # (U,)
        if L and (n_items - n_forbidden).min() < L:
            u = int((n_items - n_forbidden).argmin())
            raise ValueError(f"user {u} has only {n_items - n_forbidden[u]} items outside its "
                             f"training set and teacher top-{top_n}; L={L}")
        self.register_buffer("forbidden", torch.as_tensor(keys), persistent=False)  # (F,)
        self.register_buffer("n_eligible", torch.as_tensor(n_items - n_forbidden),
                             persistent=False)  # (U,)
        ranks = torch.arange(1, top_n + 1, dtype=torch.float64)
        self.register_buffer("rank_weights", torch.exp(-ranks / T).float(),
                             persistent=False)  # (N,)
        self._gen: torch.Generator | None = None
        self.interesting: torch.Tensor | None = None  # (U, K) item ids, teacher order
        self.uninteresting: torch.Tensor | None = None  # (U, L) item ids

    # ------------------------------------------------------------------ sampling
    def _generator(self) -> torch.Generator:
        self._gen = seeded_generator(self._gen, self.seed, self.top.device)
        return self._gen

    def sample_positions(self) -> torch.Tensor:
        """``(U, K)`` 0-based positions in the teacher list, ascending (best rank first)."""
        dev = self.top.device
        if self.sampling == "top":
            return torch.arange(self.K, device=dev).expand(self.n_users, -1)
        out = draw_positions(self.rank_weights, self.n_users, self.K, self._generator(),
                             self.chunk_users)  # (U, K) in draw order
        return out.sort(dim=1).values  # (U, K)

    def sample_uninteresting(self) -> torch.Tensor:
        """``(U, L)`` distinct items per user, uniform among items in neither the user's training
        set nor the teacher top-N.

        Rejection sampling: each pending row draws C i.i.d. uniform items; the first L distinct
        admissible ones are kept (a uniformly random L-subset, in random order). Rows with fewer
        than L are redrawn whole with C doubled, which keeps the result uniform.
        """
        dev = self.top.device
        gen = self._generator()
        out = torch.empty((self.n_users, self.L), dtype=torch.long, device=dev)
        if self.L == 0:
            return out
        pending = torch.arange(self.n_users, device=dev)  # (R,)
        # sized for the average user; rows that come up short are redrawn with C doubled
        frac = self.n_eligible.float().mean().item() / self.n_items
        n_cand = int(math.ceil(2 * self.L / frac)) + 8
        while pending.numel():
            r = pending.numel()
            cand = torch.randint(self.n_items, (r, n_cand), device=dev, generator=gen)  # (R, C)
            ok = ~in_sorted_keys(self.forbidden, pending[:, None] * self.n_items + cand)  # (R, C)
            # keep only the first occurrence of each item in the row
            srt, order = torch.sort(cand, dim=1, stable=True)  # (R, C)
            dup_sorted = torch.zeros_like(ok)
            dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
            dup = torch.zeros_like(ok).scatter_(1, order, dup_sorted)  # (R, C)
            ok &= ~dup
            csum = ok.cumsum(1)  # (R, C)
            done = csum[:, -1] >= self.L  # (R,)
            take = ok & (csum <= self.L) & done[:, None]  # (R, C), exactly L per done row
            out[pending[done]] = cand[take].view(-1, self.L)
            pending = pending[~done]
            n_cand *= 2
        return out

    @torch.no_grad()
    def start_epoch(self, epoch: int, student: Recommender) -> None:
        """Draw this epoch's interesting and uninteresting items for every user."""
        pos = self.sample_positions()  # (U, K)
        self.interesting = torch.gather(self.top, 1, pos)  # (U, K)
        unint = self.sample_uninteresting()  # (U, L)
        if self.variant == "full" and self.L:
            teacher = self.teacher[0]
            teacher.to(self.top.device).eval()
            users = torch.arange(self.n_users, device=self.top.device)
            t_scores = torch.cat([teacher.score_pairs(users[a:a + self.chunk_users],
                                                      unint[a:a + self.chunk_users])
                                  for a in range(0, self.n_users, self.chunk_users)])  # (U, L)
            order = torch.argsort(t_scores, dim=1, descending=True, stable=True)
            unint = torch.gather(unint, 1, order)  # (U, L), decreasing teacher score
        self.uninteresting = unint

    # ------------------------------------------------------------------ loss
    def loss(self, student: Recommender, users: torch.Tensor, pos: torch.Tensor,
             neg: torch.Tensor, epoch: int) -> torch.Tensor:
        """λ_RRD · Σ over the batch's unique users of the chosen ranking loss."""
        if self.interesting is None or self.uninteresting is None:
            raise RuntimeError("RRD.start_epoch must be called before loss")
        u = torch.unique(users)  # (U_B,)
        s_int = student.score_pairs(u, self.interesting[u])  # (U_B, K)
        if self.variant == "interesting_only":
            per_user = relaxed_ranking_loss(s_int)
        elif self.variant == "full":
            s_unint = student.score_pairs(u, self.uninteresting[u])  # (U_B, L)
            per_user = relaxed_ranking_loss(torch.cat([s_int, s_unint], dim=1))  # (U_B,)
        else:
            s_unint = student.score_pairs(u, self.uninteresting[u])  # (U_B, L)
            per_user = relaxed_ranking_loss(s_int, s_unint)  # (U_B,)
        return self.lmbda * per_user.sum()
