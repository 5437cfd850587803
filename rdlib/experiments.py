"""One function that runs (or finds in the store) a configured experiment.

``run_experiment(cfg)`` loads the dataset through the data mirror, builds the protocol's split
(checking its invariants), trains, evaluates with the protocol's candidates, and stores the
result rows, per-user values, learning curve and manifest. A finished run is a cache hit unless
``recompute=True`` (or ``RDLIB_RECOMPUTE=1``), so a notebook re-executes in seconds from the
committed results and an interrupted grid resumes.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from functools import lru_cache, partial

import numpy as np
import pandas as pd
import torch

from rdlib import distill, env
from rdlib.config import RunConfig
from rdlib.evaluate import evaluate_full_ranking, evaluate_sampled
from rdlib.kd.topk import file_digest
from rdlib.metrics import split_metric_name
from rdlib.models import build_model
from rdlib.models.base import Recommender
from rdlib.protocols import Split, loo_from_fixed_split, loo_sampled, random_holdout, temporal
from rdlib.results import ResultStore, RunLocked, RunRecord, atomic_write, run_lock
from rdlib.training import fit

env.code_git_state()  # pinned now: the commit of the code this process has imported

SYNTHETIC = "synthetic"
#: what :func:`run_experiment` raises when one grid cell cannot run here and now but the others
#: can: its teacher's weights are on another kind of device, or another process trains it (or
#: its teacher); grids (``rdlib run derrd``, the DE-RRD notebook) skip the cell and go on
CELL_SKIPPED: tuple[type[Exception], ...] = (distill.TeacherUnavailable, RunLocked)


def _load_interactions(dataset: str, data_dir: str | None):
    if dataset == SYNTHETIC:
        from rdlib.data.synthetic import synthetic_interactions
        return synthetic_interactions()
    from rdlib.data import load_dataset
    return load_dataset(dataset, data_dir=data_dir)


@lru_cache(maxsize=8)
def load_split(dataset: str, protocol: str, split_seed: int = 0, n_eval_negatives: int = 499,
               data_dir: str | None = None) -> Split:
    """The split a config asks for (cached in-process; every split checks its invariants).

    ``loo_authors`` reads the DE-RRD authors' own CiteULike split (``citeulike-t-derrd-loo``)
    and only draws the 499 negatives, whose file the authors did not publish.
    """
    if protocol == "loo_authors":
        from rdlib.data import read_split_tsv, resolve_dataset_dir
        folder = resolve_dataset_dir(dataset, data_dir) / "derrd"
        s = read_split_tsv(folder)
        return loo_from_fixed_split(s["train"], s["valid"], s["test"], s["n_users"],
                                    s["n_items"], seed=split_seed, n_negatives=n_eval_negatives)
    inter = _load_interactions(dataset, data_dir)
    if protocol == "loo_sampled":
        return loo_sampled(inter, seed=split_seed, n_negatives=n_eval_negatives)
    if protocol == "random_holdout":
        return random_holdout(inter, seed=split_seed)
    if protocol == "temporal":
        return temporal(inter)
    raise ValueError(f"unknown protocol {protocol!r}")


def make_evaluator(split: Split, cfg: RunConfig):
    """Evaluation on the protocol's candidates: sampled (LOO) or full ranking (masking train and
    the other held-out split)."""
    device = cfg.device
    if split.negatives is not None:
        negatives = split.negatives

        def evaluate(model: Recommender, which: str):
            targets = split.valid if which == "valid" else split.test
            return evaluate_sampled(model.score_pairs, targets, negatives, ks=cfg.ks,
                                    metrics=cfg.metrics, batch_size=cfg.eval_batch_size,
                                    device=device)
        return evaluate

    def evaluate_full(model: Recommender, which: str):
        targets, other = (split.valid, split.test) if which == "valid" else (split.test, split.valid)
        return evaluate_full_ranking(model.score_users, split.n_users, split.n_items, targets,
                                     exclude=[split.train, other], ks=cfg.ks, metrics=cfg.metrics,
                                     ndcg_variant=cfg.ndcg_variant,
                                     batch_size=cfg.eval_batch_size, device=device)
    return evaluate_full


def recompute_requested() -> bool:
    """Whether ``RDLIB_RECOMPUTE=1`` asks every run to be trained again (:func:`run_experiment`'s
    default for ``recompute``)."""
    return os.environ.get("RDLIB_RECOMPUTE", "0") == "1"


def check_committed_before_training(configs: list[RunConfig], store: ResultStore, *,
                                    profile: str = "full", allow_dirty: bool = False,
                                    override: str = "pass -p allow_dirty True") -> None:
    """Before a notebook trains ``configs`` into ``store``: refuse, as ``rdlib run`` does
    (:func:`rdlib.env.require_committed_code` raises :class:`rdlib.env.UncommittedCode`), when
    the code differs from its commit and any of them would train: one the store lacks, or any
    under ``RDLIB_RECOMPUTE=1``. A page whose runs are all stored still re-executes on edited
    code, since it trains nothing (its runs are cache hits). The notebook's ``allow_dirty``
    parameter lifts the refusal, as ``--allow-dirty`` does, and a ``smoke`` profile never
    meets it: its runs are checks, not results, and nbval executes them in edited worktrees."""
    if profile == "smoke" or allow_dirty:
        return
    if recompute_requested() or not all(store.has(c.run_id) for c in configs):
        env.require_committed_code(override)


def run_experiment(cfg: RunConfig, *, store: ResultStore | None = None,
                   data_dir: str | None = None, recompute: bool | None = None,
                   resume: bool = False) -> str:
    """Run ``cfg`` unless the store already holds it; return its ``run_id``.

    ``recompute`` trains it again even so, from scratch: a checkpoint left by an interrupted
    earlier recomputation is discarded, unless ``resume``, which continues it (a teacher
    retrained because its weights are missing, :func:`rdlib.distill.ensure_teacher`: the
    checkpoint can only come from an interrupted retrain of the same config).
    """
    store = store or ResultStore()
    if recompute is None:
        recompute = recompute_requested()
    kd = cfg.method != "none"
    if kd:
        distill.validate(cfg)  # unknown method / option: fail before anything runs
    if store.has(cfg.run_id) and not recompute:
        return cfg.run_id
    # before the clock starts: the teacher's own training is not the student's time
    teacher = distill.ensure_teacher(cfg, store, data_dir) if kd else None
    with run_lock(store.root / "checkpoints" / f"{cfg.run_id}.lock"):
        if store.has(cfg.run_id) and not recompute:  # finished by another process meanwhile
            return cfg.run_id
        _train_and_store(cfg, store, data_dir, recompute and not resume, teacher)
    return cfg.run_id


def _train_and_store(cfg: RunConfig, store: ResultStore, data_dir: str | None, fresh: bool,
                     teacher: Recommender | None) -> None:
    """Train ``cfg`` (resuming from its checkpoint unless ``fresh``), then store its record and
    best state."""
    kd = teacher is not None
    if kd:
        teacher_cfg = distill.teacher_config(cfg)
    started = datetime.now(UTC)
    allocator = env.keep_freed_memory()  # before the split's and the model's tensors
    git = env.code_git_state()  # the code this process imported, not what the tree holds now
    t0 = time.perf_counter()
    split = load_split(cfg.dataset, cfg.protocol, cfg.split_seed, cfg.n_eval_negatives, data_dir)
    torch.manual_seed(cfg.seed)  # initialisation drawn on CPU: same weights on every device
    model = build_model(cfg.model, split.n_users, split.n_items, cfg.dim,
                        **cfg.model_options)
    distiller = None
    if kd:  # after the student's init: DE's modules draw from the global RNG seeded above
        distiller = distill.build_distiller(
            cfg, teacher, model, split, cache_dir=store.root / "cache" / "teacher_topk",
            teacher_checkpoint=distill.teacher_checkpoint_path(store, teacher_cfg))
    ckpt = store.root / "checkpoints" / f"{cfg.run_id}.pt"
    if fresh and ckpt.exists():
        ckpt.unlink()
    # this process's facts: its segment of the run (fit), and the manifest's top-level fields
    process = {"started_at": started.isoformat(timespec="seconds"), "git": git,
               "device_name": env.device_name(cfg.device), "torch": torch.__version__,
               "determinism": env.determinism_flags(), "allocator": allocator}
    out = fit(model, split.train, split.n_items, cfg, make_evaluator(split, cfg),
              distiller=distiller, checkpoint=ckpt, process=process)

    rows, per_user = [], {"valid/users": out.valid_users, "test/users": out.test_users}
    for sel in out.selected.values():
        for which, values in (("valid", sel.valid), ("test", sel.test)):
            for name, v in values.items():
                metric, k = split_metric_name(name)
                rows.append({"split": which, "metric": metric, "k": k,
                             "value": float(np.mean(v)), "epoch": sel.epoch})
                per_user[f"{which}/{name}"] = np.asarray(v, dtype=np.float32)
    labels = {"run_id": cfg.run_id, "paper": cfg.paper, "dataset": cfg.dataset,
              "protocol": cfg.protocol, "model": cfg.model, "role": cfg.role,
              "method": cfg.method, "dim": cfg.dim, "seed": cfg.seed}
    frame = pd.DataFrame([{**labels, **r} for r in rows]).drop_duplicates(
        subset=["split", "metric", "k"])
    curve = out.curve.copy()
    if not curve.empty:
        mk = curve["metric"].map(split_metric_name)
        curve["metric"], curve["k"] = mk.str[0], mk.str[1]
    manifest = {
        "run_id": cfg.run_id, "config": cfg.to_dict(), "config_hash": cfg.config_hash,
        "git": process["git"], "device": cfg.device, "device_name": process["device_name"],
        "versions": env.versions(), "determinism": process["determinism"],
        "allocator": process["allocator"],
        "started_at": process["started_at"],
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - t0, 3),
        "train_seconds": round(out.train_seconds, 3), "eval_seconds": round(out.eval_seconds, 3),
        "epochs_run": out.epochs_run,
        "seconds_per_epoch": round(out.train_seconds / max(out.epochs_run, 1), 4),
        "selected_epochs": {k: s.epoch for k, s in out.selected.items()},
        "split": {"protocol": split.protocol, **split.stats()},
        "n_parameters": model.n_parameters(),
        # a resumed run: epochs before this one ran in an earlier process (maybe other code);
        # checkpoints written before distiller generators were saved (training.Distiller's
        # extra state) restart those generators, so such runs draw other samples after it
        "resumed_from_epoch": out.resumed_from_epoch,
        # every process that trained the run, with its epochs (the fields above are the last's)
        "segments": out.segments,
    }
    if kd:
        manifest["teacher_run_id"] = teacher_cfg.run_id
        # which weights: a teacher retrained elsewhere can differ (distill.ensure_teacher)
        manifest["teacher_checkpoint_sha256"] = file_digest(
            distill.teacher_checkpoint_path(store, teacher_cfg))
        manifest["distiller"] = {"options": distill.validate(cfg),
                                 **distill.distiller_summary(distiller)}
    store.save(RunRecord(cfg.run_id, manifest, frame, curve, per_user))
    if out.best_state is not None:
        atomic_write(store.root / "checkpoints" / f"{cfg.run_id}.best.pt",
                     partial(torch.save, out.best_state))
    if ckpt.exists():
        ckpt.unlink()  # the run is complete: the resume checkpoint is no longer needed
