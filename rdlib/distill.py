"""Knowledge-distillation runs: the teacher a student config names, and the distiller it trains
with.

A student is an ordinary :class:`~rdlib.config.RunConfig` with ``method`` in :data:`METHODS`
and ``extra`` holding

* ``"teacher"``: a dict of RunConfig fields merged over the student's own config (with
  ``method="none"``, ``role="teacher"`` and ``extra={}`` unless the dict sets ``extra``), e.g.
  ``{"model": "bpr", "dim": 200}``. The teacher is therefore an ordinary run with its own
  ``run_id`` (``role`` is a label, so a baseline with the same config *is* the teacher);
* method options (:data:`OPTIONS`; unknown names are an error naming the allowed ones).
  Defaults follow the official code (methods.md §2): DE λ_DE = 0.01, M = 30 experts (Gumbel
  selection); RRD λ_RRD = 0.001, K = L = 40, T = 10, teacher list of 500; DE-RRD both. RD
  uses :class:`~rdlib.kd.rd.RankingDistillation`'s official defaults (α = 1, K = 10), CD
  :class:`~rdlib.kd.cd.CollaborativeDistillation`'s (λ = 0.01, 10 samples; no official code)
  with a teacher list of 500 (the RRD list, shared through the cache).

Options are hashed as given (``extra`` is part of the config hash): spelling out a default
(``{"lmbda_de": 0.01}``) gives a different ``run_id`` than leaving it out, although the numbers
are the same; the manifest records the resolved options.

Teacher checkpoints: :func:`ensure_teacher` runs (or finds) the teacher with
:func:`~rdlib.experiments.run_experiment` and loads ``<store.root>/checkpoints/<id>.best.pt``.
Checkpoints are git-ignored, so in a fresh clone the teacher's *results* are in the store but its
weights are not: the teacher is then **retrained** (``recompute=True``) with the same config and
seed, and kept only if it repeats the stored numbers exactly (on the same CPU it does; on another
it may not, and is then undone: :func:`ensure_teacher`). Otherwise the teacher is never
recomputed on behalf of a student, not even with ``recompute=True`` / ``RDLIB_RECOMPUTE=1`` for
the student (a grid of students would retrain it once per student); recompute the teacher's own
config to refresh it.

Teacher top lists (RD, CD, RRD) come from :func:`~rdlib.kd.topk.cached_teacher_topk` under
``<store.root>/cache/teacher_topk/<teacher run_id>.pt``, keyed by the SHA-256 of the teacher
checkpoint: a retrained teacher invalidates them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch

from rdlib import env
from rdlib.config import RunConfig
from rdlib.kd import RRD, DistillationExperts, DistillerSum, cached_teacher_topk, teacher_topk
from rdlib.kd.cd import CollaborativeDistillation
from rdlib.kd.rd import RankingDistillation
from rdlib.kd.topk import file_digest
from rdlib.models import build_model
from rdlib.models.base import Recommender
from rdlib.protocols import Split
from rdlib.results import ResultStore, atomic_write, compare_numbers, run_numbers
from rdlib.training import Distiller

_DE = {"lmbda_de": 0.01, "n_experts": 30, "selection": "gumbel", "expert_hidden": None}
_RRD = {"lmbda_rrd": 0.001, "K": 40, "L": 40, "T": 10.0, "top_n": 500, "variant": "relaxed",
        "sampling": "rank"}

#: method → its options in ``cfg.extra`` and their defaults (besides ``"teacher"``).
OPTIONS: dict[str, dict[str, Any]] = {
    "none": {},
    "rd": {"lmbda_rd": 1.0, "K": 10, "lam": 1.0, "mu": 0.1, "n_dynamic_samples": 100,
           "dynamic_start_epoch": 10, "weighting": "hybrid", "renormalize": True},
    "cd": {"lmbda_cd": 0.01, "n_samples": 10, "top_n": 500, "T": 1.0, "t1": 2.0, "t2": 0.0,
           "strategy": "teacher"},
    "de": _DE,
    "rrd": _RRD,
    "de-rrd": {**_DE, **_RRD},
}
METHODS: tuple[str, ...] = tuple(OPTIONS)


def validate(cfg: RunConfig) -> dict[str, Any]:
    """Check ``cfg.method`` and ``cfg.extra``; return the method's options with defaults filled.

    Raises:
        ValueError: unknown method, unknown option (naming the allowed ones), or a KD method
            without ``extra["teacher"]``.
    """
    if cfg.method not in OPTIONS:
        raise ValueError(f"unknown method {cfg.method!r}; choose one of {METHODS}")
    if cfg.method == "none":
        return {}
    allowed = OPTIONS[cfg.method]
    unknown = sorted(set(cfg.extra) - set(allowed) - {"teacher"})
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {cfg.method!r}; "
                         f"allowed: {['teacher', *sorted(allowed)]}")
    if not isinstance(cfg.extra.get("teacher"), dict):
        raise ValueError(f"method {cfg.method!r} needs extra['teacher'], a dict of RunConfig "
                         f"fields such as {{'model': 'bpr', 'dim': 200}}")
    return {**allowed, **{k: v for k, v in cfg.extra.items() if k != "teacher"}}


def teacher_config(cfg: RunConfig) -> RunConfig:
    """The teacher's config: ``extra["teacher"]`` merged over the student's config, with
    ``method="none"``, ``role="teacher"`` and ``extra={}`` (unless the teacher dict sets it)."""
    validate(cfg)
    if cfg.method == "none":
        raise ValueError("method 'none' has no teacher")
    spec = dict(cfg.extra["teacher"])
    if spec.get("method", "none") != "none":
        raise ValueError(f"the teacher is trained plainly: teacher method must be 'none', "
                         f"got {spec['method']!r}")
    return RunConfig.from_dict({**cfg.to_dict(), "method": "none", "role": "teacher",
                                "extra": {}, **spec})


class TeacherUnavailable(RuntimeError):
    """A student's teacher can be neither loaded nor retrained here (see
    :func:`ensure_teacher`); grids skip such a cell and name it."""


def teacher_checkpoint_path(store: ResultStore, tcfg: RunConfig) -> Path:
    """Where :func:`~rdlib.experiments.run_experiment` saves the teacher's best weights."""
    return store.root / "checkpoints" / f"{tcfg.run_id}.best.pt"


def ensure_teacher(cfg: RunConfig, store: ResultStore, data_dir: str | None = None
                   ) -> Recommender:
    """Train (or find) the teacher of ``cfg`` and return it loaded, in eval mode, on
    ``cfg.device``.

    A stored teacher run whose ``.best.pt`` is missing (a fresh clone: checkpoints are not
    committed) is retrained with ``recompute=True``, resuming an interrupted retrain from its
    checkpoint; a stored run with its checkpoint is reused
    as is, whatever the student's ``recompute``. Retraining replaces the stored teacher run, so
    it is refused when that run was made on another kind of device: a CPU run repeats a CPU
    run's numbers exactly, not a GPU run's, and the students already distilled from the stored
    teacher would no longer match it.

    Nor does every CPU repeat every other CPU: a CiteULike NeuMF teacher (MLP layers, so MKL
    and oneDNN kernels chosen per instruction set) retrained on an AVX-512 Xeon diverged from
    the stored run within the first epoch, whereas the BPR teacher repeated it byte for byte,
    and so did the NeuMF teacher on an AVX-512 AMD EPYC (family 25, model 17).
    So a retrain is checked against the stored metrics and per-user values
    (:func:`_check_retrain`); one that differs is undone (the stored files are written back,
    its weights set aside) and the student refused, here and on later calls on this CPU. One
    that repeats them keeps the stored run's files too, and is appended to its manifest's
    ``restores`` (:func:`_keep_stored_run`): the run stays the one that was first trained.

    For the same reason the retrain flushes denormal floats to zero only if the stored run did
    (its manifest's ``determinism.flush_denormal``), even inside a student run started with
    ``--flush-denormal``; the student itself then trains with the process's setting.
    """
    from rdlib.experiments import load_split, run_experiment  # experiments imports this module

    tcfg = teacher_config(cfg)
    ckpt = teacher_checkpoint_path(store, tcfg)
    missing = store.has(tcfg.run_id) and not ckpt.is_file()
    if missing:
        before = _read_stored(store, tcfg.run_id)
        made = before.manifest
        made_on = torch.device(str(made.get("device", "cpu"))).type
        if made_on != torch.device(cfg.device).type:
            raise TeacherUnavailable(
                f"teacher {tcfg.run_id} was trained on {made_on} "
                f"({made.get('device_name', '?')}) and its weights are not at {ckpt}; "
                f"retraining it on {cfg.device} would not repeat it and would replace the "
                f"stored run that other students were distilled from. Put its checkpoint "
                f"there, or run this student on {made_on}.")
        _refuse_known_mismatch(store, tcfg, cfg.device)
    # a retrain flushes denormals as the stored run did (older manifests predate the flag and
    # were made without it), whatever this student process set: else it cannot repeat the run
    flush = (bool(before.manifest.get("determinism", {}).get("flush_denormal", False))
             if missing else env.flush_denormal_enabled())
    # resume: a session cut off while retraining leaves a checkpoint worth hours on a CPU
    with env.denormals_flushed(flush):
        run_experiment(tcfg, store=store, data_dir=data_dir, recompute=missing, resume=True)
    if missing:
        _check_retrain(store, tcfg, before)
    if not ckpt.is_file():
        raise RuntimeError(f"teacher {tcfg.run_id} finished without a checkpoint at {ckpt}")
    split = load_split(tcfg.dataset, tcfg.protocol, tcfg.split_seed, tcfg.n_eval_negatives,
                       data_dir)
    teacher = build_model(tcfg.model, split.n_users, split.n_items, tcfg.dim,
                          **tcfg.model_options)
    teacher.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    teacher.requires_grad_(False)
    return teacher.to(cfg.device).eval()


def _unmatched_path(store: ResultStore, tcfg: RunConfig) -> Path:
    """Where a retrain that did not repeat the stored teacher is recorded (beside its weights,
    ``<id>.unmatched.best.pt``); git-ignored like every checkpoint."""
    return store.root / "checkpoints" / f"{tcfg.run_id}.unmatched.json"


class _StoredRun(NamedTuple):
    """A stored run as it was before its retrain."""

    files: dict[str, bytes]  # written back if the retrain does not repeat the run
    manifest: dict
    numbers: tuple[pd.DataFrame, dict[str, np.ndarray]]  # :func:`run_numbers`


def _read_stored(store: ResultStore, run_id: str) -> _StoredRun:
    files = {p.name: p.read_bytes() for p in store.run_dir(run_id).iterdir() if p.is_file()}
    return _StoredRun(files, store.manifest(run_id), run_numbers(store, run_id))


def _refuse_known_mismatch(store: ResultStore, tcfg: RunConfig, device: str) -> None:
    """Refuse at once where a retrain already failed to repeat the stored teacher on this very
    device: another try would cost the same hours and end the same way."""
    path = _unmatched_path(store, tcfg)
    if not path.is_file():
        return
    note = json.loads(path.read_text())
    if note.get("device_name") == env.device_name(device):
        raise TeacherUnavailable(
            f"teacher {tcfg.run_id}: a retrain on this device ({note['device_name']}) did not "
            f"repeat the stored run ({note['difference']}); see {path}, and delete it to try "
            f"again")


def _check_retrain(store: ResultStore, tcfg: RunConfig, before: _StoredRun) -> None:
    """Keep a retrained teacher only if it repeats the stored run's metrics and per-user values
    exactly; else write the stored files back, set the new weights aside and raise
    :class:`TeacherUnavailable`.

    Students already stored were distilled from the stored teacher: pairing new students of a
    different teacher with them (means over seeds, paired tests) would mix two teachers.
    """
    rid = tcfg.run_id
    new = run_numbers(store, rid)
    if compare_numbers(before.numbers, new)["identical"]:
        _keep_stored_run(store, tcfg, before)
        return
    old_rows, new_rows = before.numbers[0], new[0]
    made_here = store.manifest(rid).get("device_name", "?")

    def hr5(rows: pd.DataFrame) -> str:
        r = rows[(rows["split"] == "test") & (rows["metric"] == "hr") & (rows["k"] == 5)]
        return (f"test HR@5 {r['value'].iloc[0]:.4f} at epoch {r['epoch'].iloc[0]}"
                if len(r) else "no test HR@5")
    difference = f"stored {hr5(old_rows)}, retrained {hr5(new_rows)}"
    _write_back(store, rid, before.files)
    ckpt = teacher_checkpoint_path(store, tcfg)
    aside = ckpt.with_name(f"{rid}.unmatched.best.pt")
    ckpt.replace(aside)
    note = {"device_name": made_here, "stored_device_name": before.manifest.get("device_name", "?"),
            "difference": difference, "weights": aside.name}
    _unmatched_path(store, tcfg).write_text(json.dumps(note, indent=1) + "\n")
    raise TeacherUnavailable(
        f"teacher {rid} retrained on {made_here} does not repeat the stored run made on "
        f"{note['stored_device_name']} ({difference}); the stored run is kept, the new weights "
        f"are set aside as {aside}. Run this student where the stored teacher was made, or put "
        f"its checkpoint at {ckpt}.")


def _write_back(store: ResultStore, run_id: str, files: dict[str, bytes]) -> None:
    """Rewrite a run's ``files`` (name → bytes, from :class:`_StoredRun`), the manifest last."""
    run_dir = store.run_dir(run_id)
    for name in sorted(files, key=lambda n: n == "manifest.json"):
        atomic_write(run_dir / name, lambda p, b=files[name]: p.write_bytes(b))


# what a restore record keeps of the retrain's own manifest
RESTORE_FIELDS = ("started_at", "finished_at", "git", "device_name", "determinism", "allocator",
                  "versions", "epochs_run", "seconds_per_epoch", "train_seconds", "eval_seconds",
                  "wall_time_s", "resumed_from_epoch", "segments")


def _keep_stored_run(store: ResultStore, tcfg: RunConfig, before: _StoredRun) -> None:
    """A retrain that repeated the stored teacher: write the stored files back and append the
    retrain to the manifest's ``restores`` (its commit, device, timings and the SHA-256 of the
    weights it wrote, which the students' ``teacher_checkpoint_sha256`` can be matched to).

    Why not keep the retrain's files: its numbers are the stored ones, but its manifest and
    learning curve carry its own commit, date and timings, so each fresh clone that restored
    the teacher would rewrite the record of the run that was first trained, and the chapter's
    training cost would show whichever restore came last.
    """
    rid = tcfg.run_id
    retrain = store.manifest(rid)
    record = {k: retrain[k] for k in RESTORE_FIELDS if k in retrain}
    record["weights_sha256"] = file_digest(teacher_checkpoint_path(store, tcfg))
    manifest = dict(before.manifest)
    manifest["restores"] = [*manifest.get("restores", []), record]
    # the stored files but the manifest, which is written once, with the record, last
    _write_back(store, rid, {n: b for n, b in before.files.items() if n != "manifest.json"})
    store.write_manifest(rid, manifest)


def _all_repr(fn, n: int, device: torch.device) -> torch.Tensor:
    with torch.no_grad():
        return fn(torch.arange(n, device=device)).detach().float()  # (n, d)


def build_distiller(cfg: RunConfig, teacher: Recommender | None, student: Recommender,
                    split: Split, *, cache_dir: str | Path | None = None,
                    teacher_checkpoint: str | Path | None = None) -> Distiller | None:
    """The distiller of ``cfg.method`` (``None`` for ``"none"``).

    Teacher top lists are cached in ``cache_dir/<teacher checkpoint stem>.pt`` keyed by the
    checkpoint's digest when both ``cache_dir`` and ``teacher_checkpoint`` are given, else
    computed. Module parameters (DE's experts and gates) are drawn from the global torch RNG.
    """
    opts = validate(cfg)
    if cfg.method == "none":
        return None
    if teacher is None:
        raise ValueError(f"method {cfg.method!r} needs a teacher")
    device = torch.device(cfg.device)
    teacher = teacher.to(device).eval()

    def topk(k: int) -> torch.Tensor:
        if cache_dir is not None and teacher_checkpoint is not None:
            name = Path(teacher_checkpoint).name.removesuffix(".best.pt")
            return cached_teacher_topk(Path(cache_dir) / f"{name}.pt", teacher, split.train,
                                       split.n_users, split.n_items, k,
                                       checkpoint=teacher_checkpoint,
                                       batch_size=cfg.eval_batch_size, device=device)
        return teacher_topk(teacher, split.train, split.n_users, split.n_items, k,
                            batch_size=cfg.eval_batch_size, device=device)

    parts: list[Distiller] = []
    if cfg.method == "rd":
        parts.append(RankingDistillation(
            topk(opts["K"]), split.train, split.n_items, lmbda=opts["lmbda_rd"], K=opts["K"],
            lam=opts["lam"], mu=opts["mu"], n_dynamic_samples=opts["n_dynamic_samples"],
            dynamic_start_epoch=opts["dynamic_start_epoch"], weighting=opts["weighting"],
            renormalize=opts["renormalize"], seed=cfg.seed))
    if cfg.method == "cd":
        parts.append(CollaborativeDistillation(
            teacher, topk(opts["top_n"]), split.train, split.n_items, lmbda=opts["lmbda_cd"],
            n_samples=opts["n_samples"], top_n=opts["top_n"], T=opts["T"], t1=opts["t1"],
            t2=opts["t2"], strategy=opts["strategy"], seed=cfg.seed))
    if cfg.method in ("de", "de-rrd"):
        for name in ("user_repr", "item_repr"):
            if not hasattr(student, name) or not hasattr(teacher, name):
                raise ValueError(f"DE needs {name}() on the student ({type(student).__name__}) "
                                 f"and the teacher ({type(teacher).__name__})")
        probe = torch.zeros(1, dtype=torch.long, device=next(student.parameters()).device)
        with torch.no_grad():
            student_dim = int(student.user_repr(probe).shape[-1])
        parts.append(DistillationExperts(
            _all_repr(teacher.user_repr, split.n_users, device),
            _all_repr(teacher.item_repr, split.n_items, device), student_dim,
            n_experts=opts["n_experts"], lmbda=opts["lmbda_de"], selection=opts["selection"],
            expert_hidden=opts["expert_hidden"], seed=cfg.seed))
    if cfg.method in ("rrd", "de-rrd"):
        parts.append(RRD(
            topk(opts["top_n"]), split.train, split.n_items, lmbda=opts["lmbda_rrd"],
            K=opts["K"], L=opts["L"], T=opts["T"], top_n=opts["top_n"],
            variant=opts["variant"], sampling=opts["sampling"], teacher=teacher,
            seed=cfg.seed))
    return parts[0] if len(parts) == 1 else DistillerSum(*parts)


def distiller_summary(distiller: Distiller) -> dict[str, Any]:
    """Parameter counts for the manifest: ``n_parameters`` (trainable, all parts) and, where a
    part reports its own (DE: gates/experts/total), that breakdown under the part's class."""
    out: dict[str, Any] = {
        "class": type(distiller).__name__,
        "n_parameters": sum(p.numel() for p in distiller.parameters() if p.requires_grad)}
    parts = distiller.parts if isinstance(distiller, DistillerSum) else [distiller]
    for part in parts:
        counts = getattr(part, "n_parameters", None)
        if callable(counts):
            out[type(part).__name__] = counts()
    return out
