"""Run configuration: one frozen dataclass that papermill parameters are turned into.

Every field is typed and validated, so a mistyped value fails at once with a message naming the
field, the value and what is allowed (practices.md §2). The config hash ignores fields that only
label a run or choose where it runs (``paper``, ``role``, ``device``, ``progress``), so the same
experiment recomputed on another device is the same ``run_id``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, field, fields

PROTOCOLS = ("loo_sampled", "loo_authors", "random_holdout", "temporal")
SELECTIONS = ("per_cutoff", "best_epoch", "last_epoch")
LABEL_FIELDS = frozenset({"paper", "role", "device", "progress"})


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run.

    Defaults follow the official DE-RRD code for BPR (SeongKu-Kang/DE-RRD_CIKM20 @97b6bf6,
    ``main.py``: Adam lr 1e-3, weight decay 1e-3, batch 1024, one negative per positive,
    evaluation every epoch, patience 20, at most 1000 epochs; methods.md §2.1).
    """

    dataset: str  # registered dataset name, e.g. "citeulike-t"
    protocol: str = "loo_sampled"  # one of PROTOCOLS
    model: str = "bpr"  # registered model name
    method: str = "none"  # distillation method ("none" = plain training)
    dim: int = 20  # embedding size d
    seed: int = 0  # seeds split negatives, initialisation and sampling
    epochs: int = 1000  # maximum number of epochs
    batch_size: int = 1024  # training interactions per mini-batch
    lr: float = 1e-3  # Adam learning rate
    weight_decay: float = 1e-3  # Adam weight decay (DE-RRD's "reg")
    n_negatives: int = 1  # training negatives per positive
    eval_every: int = 1  # evaluate every n epochs
    patience: int = 20  # evaluations without improvement before stopping (0 = never stop)
    selection: str = "per_cutoff"  # one of SELECTIONS
    selection_metric: str = "hr"  # validation metric used for model selection
    selection_k: int = 10  # cutoff for "best_epoch" selection (and the checkpoint kept)
    ks: tuple[int, ...] = (5, 10, 20)  # cutoffs reported
    metrics: tuple[str, ...] = ("hr", "ndcg", "mrr")  # metrics reported
    ndcg_variant: str = "standard"  # "standard" or "rd" (RD's truncated nDCG)
    n_eval_negatives: int = 499  # sampled candidates per user (sampled protocols)
    split_seed: int = 0  # seed of the split / sampled candidates (0 = the authors' LOO seed)
    eval_batch_size: int = 1024  # users per evaluation batch
    paper: str = "foundation"  # label: which chapter the run belongs to
    role: str = "baseline"  # label: teacher, student, baseline
    device: str = "cpu"  # "cpu", "cuda", "cuda:0"
    progress: bool = True  # show tqdm progress bars
    extra: dict = field(default_factory=dict)  # method-specific options (hashed)
    model_options: dict = field(default_factory=dict)  # model constructor options, e.g. NeuMF's loss_type

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol={self.protocol!r} is unknown; choose one of {PROTOCOLS}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection={self.selection!r} is unknown; choose one of {SELECTIONS}")
        if self.ndcg_variant not in ("standard", "rd"):
            raise ValueError(f"ndcg_variant={self.ndcg_variant!r}; choose 'standard' or 'rd'")
        for name in ("dim", "epochs", "batch_size", "n_negatives", "eval_every",
                     "eval_batch_size", "selection_k"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")
        if not self.ks or any(int(k) <= 0 for k in self.ks):
            raise ValueError(f"ks must be positive cutoffs, got {self.ks!r}")
        if self.selection_metric not in self.metrics:
            raise ValueError(f"selection_metric={self.selection_metric!r} must be one of the "
                             f"reported metrics {self.metrics}")
        if not self.device.startswith(("cpu", "cuda", "mps")):
            raise ValueError(f"device={self.device!r}; use 'cpu', 'cuda' or 'cuda:N'")
        object.__setattr__(self, "ks", tuple(int(k) for k in self.ks))
        object.__setattr__(self, "metrics", tuple(self.metrics))

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """Build from a dict (papermill parameters, YAML); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ks"], d["metrics"] = list(self.ks), list(self.metrics)
        return d

    def hash_dict(self) -> dict:
        """The fields that define the experiment's numbers: labels, device and fields left at
        their default are left out, so adding a new option (with a default) keeps every stored
        run id valid. Defaults are therefore frozen: change behaviour with a new field."""
        defaults = {f.name: (f.default_factory() if f.default_factory is not MISSING  # type: ignore[misc]
                             else f.default) for f in fields(self)}
        defaults["ks"], defaults["metrics"] = list(defaults["ks"]), list(defaults["metrics"])
        return {k: v for k, v in self.to_dict().items()
                if k not in LABEL_FIELDS and (k == "dataset" or v != defaults[k])}

    @property
    def config_hash(self) -> str:
        blob = json.dumps(self.hash_dict(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def run_id(self) -> str:
        """Readable prefix + 12 hex digits of the config hash: stable across machines."""
        return f"{self.dataset}-{self.protocol}-{self.model}{self.dim}-{self.method}-s{self.seed}-" \
               f"{self.config_hash[:12]}"
