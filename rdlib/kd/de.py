"""DE — Distillation Experts (Kang et al., CIKM 2020, §4.1; methods.md §2.2).

For an entity e (user or item) with student embedding h_s(e) ∈ R^{d_s} and frozen teacher
embedding h_t(e) ∈ R^{d_t}, each side (users, items) has M experts and a selection network:

* expert  E_m(x) = W2_m ReLU(W1_m x + b1_m) + b2_m,  d_s → hidden → d_t
  (hidden = ⌊(d_s+d_t)/2⌋, or d_s/2 when d_s = d_t, as the official ``Models/DE.py``);
* selection α(e) = softmax(W_g h_t(e) + b_g) on the **teacher** embedding;
  s(e) = softmax((log(α + 1e-10) + g) / τ), g ~ Gumbel(0, 1) (the paper's Gumbel-softmax);
* reconstruction ĥ(e) = Σ_m s_m(e) E_m(h_s(e));
* loss, as the official code sums it over a batch's unique users U_B, unique positive items
  P_B and unique negative items N_B:
  L_DE = Σ_{U_B} ||h_t − ĥ||² + ½ Σ_{P_B} ||h_t − ĥ||² + ½ Σ_{N_B} ||h_t − ĥ||², times λ_DE.

Temperature (``run.LOO_DE_run``): τ_0 = 1; after epoch e (0-based) the next epoch uses
max(end_T^{e/max_epoch}, end_T) with end_T = 1e-10, max_epoch = 1000, so epochs 0 and 1 both use
1.0 and the value computed after epoch 100 is 0.1.

Deviations from the official code: all M experts of a side are stacked weight tensors applied
with one ``einsum`` (the official code loops over a Python list; same function, same
initialisation family as ``nn.Linear``); Gumbel noise comes from the module's own seeded
generator, saved with the module (:class:`rdlib.training.Distiller`) so that a resumed run
draws what an uninterrupted one would. With M = 1 no selection network is
built (the selection is the constant 1, as the official code's behaviour at M = 1).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rdlib.models.base import Recommender
from rdlib.sampling import seeded_generator
from rdlib.training import Distiller

SELECTIONS: tuple[str, ...] = ("gumbel", "attention")
#: :meth:`ExpertSet.mix` takes the sparse path at or below this share of non-zero weights;
#: 0 on GPUs: never (measured on an H100, ``benchmarks/results/kd_citeulike.csv``)
SPARSE_BELOW_CPU, SPARSE_BELOW_OTHER = 0.8, 0.0


def gumbel_temperature(epoch: int, max_epoch: int = 1000, end_T: float = 1e-10) -> float:
    """The Gumbel-softmax τ used during 0-based ``epoch``: 1 for epoch 0, then the value the
    official code computes after epoch e − 1, τ = max(end_T^((e − 1)/E_max), end_T).

    τ falls tenfold every 100 epochs with the defaults; as it falls the softmax of
    :meth:`DistillationExperts.selection_weights` underflows to exact zeros, so on a CPU
    :meth:`ExpertSet.mix` computes fewer expert rows and a DE epoch gets cheaper."""
    if epoch == 0:
        return 1.0
    return max(end_T ** ((epoch - 1) / max_epoch), end_T)


def default_hidden(d_s: int, d_t: int) -> int:
    """The official expert width: ⌊(d_s + d_t)/2⌋, or ⌊d_s/2⌋ when d_s = d_t."""
    return d_s // 2 if d_s == d_t else (d_s + d_t) // 2


def one_expert_hidden(d_s: int, d_t: int, size: str, n_experts: int = 30) -> int:
    """Hidden width of the single expert in DE-RRD Table 4 (b)/(c) (the paper gives no sizes).

    ``"small"``: one expert of the default size, :func:`default_hidden`.
    ``"large"``: ``n_experts × default_hidden``, so that the single expert has (almost) as
    many parameters as the ``n_experts`` default experts together (30 × 110 = 3,300 at
    d_s = 20, d_t = 200: 730,700 vs 735,300 parameters).
    """
    if size == "small":
        return default_hidden(d_s, d_t)
    if size == "large":
        return n_experts * default_hidden(d_s, d_t)
    raise ValueError(f"size must be 'small' or 'large', got {size!r}")


class ExpertSet(nn.Module):
    """M stacked experts d_in → hidden → d_out, mixed per row by :meth:`mix`."""

    def __init__(self, n_experts: int, d_in: int, hidden: int, d_out: int) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(n_experts, d_in, hidden))  # (M, d_s, h)
        self.b1 = nn.Parameter(torch.empty(n_experts, hidden))  # (M, h)
        self.w2 = nn.Parameter(torch.empty(n_experts, hidden, d_out))  # (M, h, d_t)
        self.b2 = nn.Parameter(torch.empty(n_experts, d_out))  # (M, d_t)
        # nn.Linear's default: U(±1/sqrt(fan_in)) for weights and biases
        for p, fan_in in ((self.w1, d_in), (self.b1, d_in), (self.w2, hidden), (self.b2, hidden)):
            nn.init.uniform_(p, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))

    def mix(self, x: torch.Tensor, s: torch.Tensor, sparse_below: float | None = None
            ) -> torch.Tensor:
        """Σ_m s_m E_m(x): ``x`` (B, d_in), weights ``s`` (B, M) → (B, d_out).

        Dense: Σ_m W2_m (s_m h_m) + s·b2, one (B, M·h) × (M·h, d_out) GEMM instead of M expert
        outputs of (B, d_out) each; the same sum, reassociated.

        Sparse: Gumbel selection at a low temperature makes most weights exactly 0 (the softmax
        underflows). When at most ``sparse_below`` of the (row, expert) weights are non-zero,
        only those pairs are computed: the pairs are grouped by expert and each expert runs on
        its own rows, so the work is proportional to the number of pairs however unevenly the
        experts are used (a trained item gate sends a third of the items to one expert).
        Skipping a term whose weight is exactly 0 changes neither the output nor any gradient:
        the term and its gradients are multiplied by 0, and the softmax backward multiplies the
        gradient of a zero weight by that weight.

        ``sparse_below`` defaults to 0.8 on a CPU: there the sparse path's forward and backward
        cost is proportional to the non-zero pairs, and it is faster than the dense GEMM up to
        about 0.85 density (``benchmarks/bench_de_mix.py``, one thread, 2,600 rows, M = 30,
        d_s = 20, d_t = 200: 0.25× the dense time at density 0.27, 0.69× at 0.56, 0.83× at
        0.71, 1.0× at 0.85, 1.13× at 1.0). On other devices it defaults to 0, the dense path
        always: on an H100 a CiteULike DE epoch took 3.75 s on the sparse path (epoch 300,
        one-hot weights, density 1/30) against 0.85 s on the dense one (epoch 0), since the
        expert loop launches ~30 small kernels per step and ``.tolist()`` waits for the device.
        """
        if sparse_below is None:
            sparse_below = SPARSE_BELOW_CPU if x.device.type == "cpu" else SPARSE_BELOW_OTHER
        n_rows, n_exp = s.shape
        if n_exp == 1 or sparse_below <= 0:  # no count of the non-zeros: no device sync
            return self._dense_mix(x, s)
        nz = s != 0  # (B, M)
        if int(nz.sum()) > sparse_below * n_rows * n_exp:
            return self._dense_mix(x, s)
        rows, experts = nz.nonzero(as_tuple=True)  # (P,), (P,)
        order = torch.argsort(experts, stable=True)
        rows, experts = rows[order], experts[order]  # grouped by expert
        sizes = torch.bincount(experts, minlength=n_exp).tolist()  # pairs per expert
        # unbind once: one gradient buffer per weight tensor, not one per expert
        w1, b1, w2, b2 = (p.unbind(0) for p in (self.w1, self.b1, self.w2, self.b2))
        outs = [torch.relu(xm @ w1[m] + b1[m]) @ w2[m] + b2[m]  # (P_m, d_out)
                for m, xm in enumerate(x[rows].split(sizes)) if sizes[m]]
        y = torch.cat(outs) * s[rows, experts].unsqueeze(1)  # (P, d_out)
        return x.new_zeros(n_rows, y.shape[1]).index_add(0, rows, y)  # (B, d_out)

    def _dense_mix(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """:meth:`mix` over all B·M pairs: every expert on every row, in one GEMM per layer."""
        h = torch.relu(torch.einsum("bd,mdh->bmh", x, self.w1) + self.b1)  # (B, M, h)
        hs = (h * s.unsqueeze(2)).reshape(s.shape[0], -1)  # (B, M·h)
        return hs @ self.w2.reshape(-1, self.w2.shape[2]) + s @ self.b2  # (B, d_out)


class DistillationExperts(Distiller):
    """DE as a :class:`~rdlib.training.Distiller`.

    Args:
        teacher_user_emb: ``(n_users, d_t)`` frozen teacher user embeddings.
        teacher_item_emb: ``(n_items, d_t)`` frozen teacher item embeddings.
        student_dim: d_s.
        n_experts: M per side (official 30). Table 4 (b)/(c) use ``n_experts=1`` with
            ``expert_hidden=one_expert_hidden(d_s, d_t, "large" | "small")``.
        lmbda: λ_DE (official 0.01).
        selection: ``"gumbel"`` (paper/official) or ``"attention"`` — Table 4 (a): the
            softmax weights α used directly (the α-weighted average of all experts; no Gumbel
            noise, no temperature).
        expert_hidden: expert hidden width; ``None`` → :func:`default_hidden`.
        max_epoch: E_max of the temperature schedule (1000).
        end_T: final temperature (1e-10).
        seed: seed of the Gumbel-noise generator.
    """

    def __init__(self, teacher_user_emb: torch.Tensor, teacher_item_emb: torch.Tensor,
                 student_dim: int, *, n_experts: int = 30, lmbda: float = 0.01,
                 selection: str = "gumbel", expert_hidden: int | None = None,
                 max_epoch: int = 1000, end_T: float = 1e-10, seed: int = 0) -> None:
        super().__init__()
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts}")
        d_t = int(teacher_user_emb.shape[1])
        if teacher_item_emb.shape[1] != d_t:
            raise ValueError("teacher user and item embeddings differ in size")
        hidden = default_hidden(student_dim, d_t) if expert_hidden is None else expert_hidden
        self.d_s, self.d_t, self.hidden, self.n_experts = student_dim, d_t, hidden, n_experts
        self.lmbda, self.selection, self.max_epoch, self.end_T = lmbda, selection, max_epoch, end_T
        self.seed = seed
        self.register_buffer("t_user", teacher_user_emb.detach().float().clone(),
                             persistent=False)  # (U, d_t)
        self.register_buffer("t_item", teacher_item_emb.detach().float().clone(),
                             persistent=False)  # (I, d_t)
        self.user_experts = ExpertSet(n_experts, student_dim, hidden, d_t)
        self.item_experts = ExpertSet(n_experts, student_dim, hidden, d_t)
        self.user_gate = nn.Linear(d_t, n_experts) if n_experts > 1 else None
        self.item_gate = nn.Linear(d_t, n_experts) if n_experts > 1 else None
        self.tau = 1.0
        self._gen: torch.Generator | None = None

    # ------------------------------------------------------------------ schedule
    def temperature_after_epoch(self, epoch: int) -> float:
        """The τ the official code computes after finishing 0-based ``epoch``."""
        return gumbel_temperature(epoch + 1, self.max_epoch, self.end_T)

    def temperature(self, epoch: int) -> float:
        """The τ used during 0-based ``epoch``: :func:`gumbel_temperature`."""
        return gumbel_temperature(epoch, self.max_epoch, self.end_T)

    def start_epoch(self, epoch: int, student: Recommender) -> None:
        """Set τ for this epoch."""
        self.tau = self.temperature(epoch)

    # ------------------------------------------------------------------ model
    def n_parameters(self) -> dict[str, int]:
        """Parameter counts of the DE modules: ``gates``, ``experts``, ``total``."""
        gates = sum(p.numel() for g in (self.user_gate, self.item_gate) if g is not None
                    for p in g.parameters())
        experts = sum(p.numel() for e in (self.user_experts, self.item_experts)
                      for p in e.parameters())
        return {"gates": gates, "experts": experts, "total": gates + experts}

    def _generator(self, device: torch.device) -> torch.Generator:
        self._gen = seeded_generator(self._gen, self.seed, device)
        return self._gen

    def selection_weights(self, gate: nn.Linear | None, h_t: torch.Tensor) -> torch.Tensor:
        """``(B, M)`` expert weights s(e) for teacher embeddings ``h_t`` (B, d_t)."""
        if gate is None:
            return h_t.new_ones(h_t.shape[0], 1)  # (B, 1): M = 1
        alpha = torch.softmax(gate(h_t), dim=-1)  # (B, M)
        if self.selection == "attention":
            return alpha
        u = torch.rand(alpha.shape, device=alpha.device, generator=self._generator(alpha.device))
        g = -torch.log(-torch.log(u + 1e-20) + 1e-20)  # (B, M) Gumbel(0, 1)
        return torch.softmax((torch.log(alpha + 1e-10) + g) / self.tau, dim=-1)  # (B, M)

    def reconstruct(self, experts: ExpertSet, gate: nn.Linear | None, h_s: torch.Tensor,
                    h_t: torch.Tensor) -> torch.Tensor:
        """ĥ = Σ_m s_m E_m(h_s): ``(B, d_s)``, ``(B, d_t)`` → ``(B, d_t)``."""
        s = self.selection_weights(gate, h_t)  # (B, M)
        return experts.mix(h_s, s)  # (B, d_t)

    def side_loss(self, experts: ExpertSet, gate: nn.Linear | None, h_s: torch.Tensor,
                  h_t: torch.Tensor) -> torch.Tensor:
        """Σ over rows of ||h_t − ĥ||² (squared L2 summed over dimensions)."""
        return (h_t - self.reconstruct(experts, gate, h_s, h_t)).pow(2).sum()

    def loss(self, student: Recommender, users: torch.Tensor, pos: torch.Tensor,
             neg: torch.Tensor, epoch: int) -> torch.Tensor:
        """λ_DE · (Σ_{unique users} + ½ Σ_{unique pos} + ½ Σ_{unique neg}) ||h_t − ĥ||²."""
        u, p, n = torch.unique(users), torch.unique(pos), torch.unique(neg)
        lu = self.side_loss(self.user_experts, self.user_gate, student.user_repr(u),
                            self.t_user[u])
        lp = self.side_loss(self.item_experts, self.item_gate, student.item_repr(p),
                            self.t_item[p])
        ln = self.side_loss(self.item_experts, self.item_gate, student.item_repr(n),
                            self.t_item[n])
        return self.lmbda * (lu + 0.5 * lp + 0.5 * ln)
