"""Benchmark: training seconds per epoch of a distilled BPR student on CiteULike.

What is timed, on the DE-RRD authors' CiteULike split (``citeulike-t-derrd-loo``,
``loo_authors``: 5,219 users, 25,181 items, 115,142 training interactions):

- ``train_epoch``: one epoch of a BPR student (d = 20, batch 1,024, one negative per positive,
  Adam; :func:`rdlib.training.fit`'s own per-epoch timer, which includes the distiller's
  ``start_epoch`` — RRD's and CD's per-epoch sampling, RD's dynamic samples) under each method
  of :data:`rdlib.distill.OPTIONS` with its default options: ``none`` (the plain student),
  ``rd``, ``cd``, ``de``, ``rrd``, ``de-rrd``; teacher BPR d = 200. After one warm-up epoch,
  ``--repeats`` epochs are timed.
- ``teacher_topk``: building the teacher's top-500 lists of unobserved items (the input of RD,
  CD and RRD), which a run does once, before its first epoch; timed on its own, after one
  warm-up build.

The teacher is **randomly initialised**: its weights do not change the amount of work (the same
shapes, the same number of samples), so no trained checkpoint is needed. Distillers are built
with :func:`rdlib.distill.build_distiller` without a cache directory.

Some costs depend on the epoch, so those methods are timed at two epoch indices (the epoch
is shifted by a wrapper distiller, :class:`AtEpoch`; ``fit`` itself runs one epoch):

- DE and DE-RRD at epoch 0 (Gumbel temperature τ = 1: all 30 experts get non-zero weights,
  the dense path of ``ExpertSet.mix``) and at epoch 300 (τ ≈ 1e-3: the selection weights
  underflow to exact one-hots and ``ExpertSet.mix`` takes its sparse path);
- RD at epoch 0 (static position weights only) and at its ``dynamic_start_epoch`` (10), from
  which on the hybrid weights score the ε = 100 dynamic samples of every batch user.

For comparison, the official code's per-epoch times are in ``data/official_timings.csv``
(with their sources): on the project's 2-core CPU, official DE 28–34 s, RRD 4.3–5.0 s, the
plain student 0.4–0.7 s per epoch; in the authors' GPU logs student ≈ 1 s, DE ≈ 11 s,
RRD ≈ 3.2 s. :func:`rdlib.reports.kd_timing_table` puts our rows next to them.

Rows (benchmark, method, epoch, repeat, seconds, n_interactions, dataset, dim, load_1min (the
1-minute load average when the timed epoch ended: how busy the machine was; rows written before
the column have none), device, device_name, torch, commit, timestamp, threads, allocator) are
appended to ``benchmarks/results/kd_citeulike.csv``; ``--quick`` runs a tiny synthetic split as a
smoke check (one thread unless ``--threads`` says otherwise) and only prints its rows.

    python benchmarks/bench_kd.py --device cpu --repeats 3
    python benchmarks/bench_kd.py --device cuda --repeats 3
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch
from _common import add_run_arguments, choices, save_rows, stamp, start, sync

from rdlib.config import RunConfig
from rdlib.distill import METHODS, OPTIONS, build_distiller
from rdlib.experiments import load_split
from rdlib.kd import teacher_topk
from rdlib.models import build_model
from rdlib.models.base import Recommender
from rdlib.protocols import Split
from rdlib.training import Distiller, fit

OUT = Path(__file__).resolve().parent / "results" / "kd_citeulike.csv"
DATASET, PROTOCOL = "citeulike-t-derrd-loo", "loo_authors"
QUICK_DATASET, QUICK_PROTOCOL, QUICK_NEGATIVES = "synthetic", "loo_sampled", 99
STUDENT_DIM, TEACHER_DIM = 20, 200
TOPK = int(OPTIONS["rrd"]["top_n"])  # 500: the list RRD samples from (CD uses the same length)
QUICK_TOPK = 100  # the synthetic data set has only 300 items
#: epoch indices timed per method (default (0,)); see the module notes.
TIMED_EPOCHS: dict[str, tuple[int, ...]] = {
    "de": (0, 300), "de-rrd": (0, 300), "rd": (0, int(OPTIONS["rd"]["dynamic_start_epoch"]))}
USES_TOPK = ("rd", "cd", "rrd", "de-rrd")


class AtEpoch(Distiller):
    """``inner`` run as if ``fit``'s epoch ``e`` were epoch ``e + offset`` (schedules such as
    DE's temperature and RD's hybrid start depend on the epoch index)."""

    def __init__(self, inner: Distiller, offset: int) -> None:
        super().__init__()
        self.inner, self.offset = inner, offset

    def start_epoch(self, epoch: int, student: Recommender) -> None:
        self.inner.start_epoch(epoch + self.offset, student)

    def loss(self, student: Recommender, users: torch.Tensor, pos: torch.Tensor,
             neg: torch.Tensor, epoch: int) -> torch.Tensor:
        return self.inner.loss(student, users, pos, neg, epoch + self.offset)


def method_config(method: str, dataset: str, protocol: str, device: str, quick: bool
                  ) -> RunConfig:
    """A one-epoch student config for ``method`` (default options; ``quick`` shortens the teacher
    lists to fit the synthetic data set)."""
    extra: dict = {}
    if method != "none":
        extra = {"teacher": {"model": "bpr", "dim": TEACHER_DIM}}
        if quick and "top_n" in OPTIONS[method]:
            extra["top_n"] = QUICK_TOPK
    return RunConfig(dataset=dataset, protocol=protocol, model="bpr", method=method,
                     dim=STUDENT_DIM, epochs=1, eval_every=10**6, patience=0, device=device,
                     progress=False, extra=extra)


def random_teacher(split: Split, device: str) -> Recommender:
    """A randomly initialised, frozen BPR teacher (d = 200) in eval mode."""
    torch.manual_seed(0)
    teacher = build_model("bpr", split.n_users, split.n_items, TEACHER_DIM)
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def time_teacher_topk(teacher: Recommender, split: Split, k: int, cfg: RunConfig,
                      repeats: int) -> list[dict]:
    """Seconds to build the teacher's top-``k`` lists as :func:`build_distiller` does (one
    warm-up build, then ``repeats``)."""
    rows = []
    for r in range(repeats + 1):
        sync(cfg.device)
        t0 = time.perf_counter()
        teacher_topk(teacher, split.train, split.n_users, split.n_items, k,
                     batch_size=cfg.eval_batch_size, device=cfg.device)
        sync(cfg.device)
        if r:
            rows.append({"benchmark": "teacher_topk", "method": "teacher_topk", "epoch": None,
                         "repeat": r - 1, "seconds": time.perf_counter() - t0,
                         "dim": TEACHER_DIM, "load_1min": os.getloadavg()[0]})
    return rows


def time_method(method: str, cfg: RunConfig, teacher: Recommender, split: Split,
                repeats: int) -> list[dict]:
    """Seconds of one training epoch of a fresh student under ``method``, at each epoch index
    of :data:`TIMED_EPOCHS` (one warm-up epoch, then ``repeats``)."""
    torch.manual_seed(0)
    student = build_model("bpr", split.n_users, split.n_items, STUDENT_DIM)
    distiller = build_distiller(cfg, teacher, student, split)
    rows = []
    for epoch in TIMED_EPOCHS.get(method, (0,)):
        shifted = None if distiller is None else AtEpoch(distiller, epoch)
        for r in range(repeats + 1):
            out = fit(student, split.train, split.n_items, cfg, None, distiller=shifted)
            if r:
                rows.append({"benchmark": "train_epoch", "method": method, "epoch": epoch,
                             "repeat": r - 1, "seconds": out.train_seconds / out.epochs_run,
                             "dim": STUDENT_DIM, "load_1min": os.getloadavg()[0]})
    return rows


def bench(device: str, methods: list[str], repeats: int, quick: bool,
          data_dir: str | None) -> pd.DataFrame:
    """All rows of one benchmark run, stamped with the device and the code version."""
    dataset, protocol = (QUICK_DATASET, QUICK_PROTOCOL) if quick else (DATASET, PROTOCOL)
    split = (load_split(dataset, protocol, 0, QUICK_NEGATIVES) if quick
             else load_split(dataset, protocol, 0, 499, data_dir))
    teacher = random_teacher(split, device)
    rows: list[dict] = []
    if any(m in USES_TOPK for m in methods):
        cfg = method_config("rrd", dataset, protocol, device, quick)
        rows += time_teacher_topk(teacher, split, QUICK_TOPK if quick else TOPK, cfg, repeats)
    for method in methods:
        cfg = method_config(method, dataset, protocol, device, quick)
        rows += time_method(method, cfg, teacher, split, repeats)
        print(f"{method}: done", flush=True)
    df = pd.DataFrame(rows).assign(n_interactions=len(split.train), dataset=dataset)
    df["epoch"] = df["epoch"].astype("Int64")
    stamped = stamp(device)  # its columns follow the row's own, whatever the stamp holds
    return df.assign(**stamped)[["benchmark", "method", "epoch", "repeat", "seconds",
                                 "n_interactions", "dataset", "dim", "load_1min", *stamped]]


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Median seconds (and the number of repeats) per benchmark, method, epoch and device."""
    keys = ["benchmark", "method", "epoch", "device_name"]
    return (df.groupby(keys, dropna=False, sort=False)["seconds"]
            .agg(median="median", repeats="count").reset_index())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, OUT, "timed epochs (after one warm-up)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"comma-separated, from {','.join(METHODS)} (default: all)")
    args = ap.parse_args()
    device = start(args)
    df = bench(device, choices(args.methods, METHODS, "method"), args.repeats, args.quick, args.data_dir)
    save_rows(df, Path(args.out), args.quick)
    print(summary(df).to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
