"""Benchmark: parameters and inference time of teacher and students (DE-RRD paper Table 3).

For BPR and NeuMF on CiteULike (the authors' split, ``citeulike-t-derrd-loo``) and Foursquare
(``foursquare-vldb17``, our LOO split), the teacher (φ = 1.0, d = 200) and the students
(φ = 0.5, d = 100; φ = 0.1, d = 20) are built with
:func:`rdlib.models.build_model` at the split's sizes and **randomly initialised**: neither the
parameter count nor the work of scoring depends on trained weights.

Inference, as Table 3 times it, is recommendation for every user: score every item with
:meth:`~rdlib.models.base.Recommender.score_users` and keep the top 50 with :func:`torch.topk`,
in batches of users (1,024 for BPR; 64 for NeuMF, whose scoring materialises a
users × items-chunk × width tensor), under :func:`torch.inference_mode`. Training items are not
masked (the paper does not say; masking adds the same small cost at every φ).

NeuMF over all users × all items is slow on a 2-core CPU: ``--max-users N`` times only the first
N users; the row records the measured ``seconds``, ``n_users_timed`` and the linear
extrapolation ``seconds_all_users = seconds × n_users / n_users_timed`` (scoring is the same work
for every user). Each (dataset, model, φ) gets one warm-up batch, then ``--repeats`` timed passes.

The paper's numbers (params_M, inference_time_s; "DE-RRD (phi=…)" rows of
``data/paper_results.csv``) and ours side by side: :func:`rdlib.reports.inference_table`.

Rows (benchmark, dataset, model, phi, dim, n_parameters, n_users, n_items, n_users_timed,
seconds, seconds_all_users, repeat, device, device_name, torch, commit, timestamp, threads) are
appended to ``benchmarks/results/inference.csv``; ``--quick`` (a tiny synthetic split, one thread
unless ``--threads`` says otherwise) only prints them.

    python benchmarks/bench_inference.py --device cpu --models bpr --repeats 3
    python benchmarks/bench_inference.py --device cpu --models neumf --max-users 1024 --repeats 3
    python benchmarks/bench_inference.py --device cuda --repeats 3
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from _common import add_run_arguments, choices, save_rows, stamp, start, sync

from rdlib.experiments import load_split
from rdlib.models import build_model
from rdlib.models.base import Recommender

OUT = Path(__file__).resolve().parent / "results" / "inference.csv"
#: our data set → (protocol, n_eval_negatives) of its split; the split only gives the sizes.
DATASETS: dict[str, tuple[str, int]] = {"citeulike-t-derrd-loo": ("loo_authors", 499),
                                        "foursquare-vldb17": ("loo_sampled", 499)}
QUICK_DATASETS: dict[str, tuple[str, int]] = {"synthetic": ("loo_sampled", 99)}
MODELS: tuple[str, ...] = ("bpr", "neumf")
#: φ (student size / teacher size) → dim; the teacher is φ = 1.0.
PHI_DIM: dict[float, int] = {1.0: 200, 0.5: 100, 0.1: 20}
TOP_N = 50
BATCH_USERS: dict[str, int] = {"bpr": 1024, "neumf": 64}
# each row's own columns; _common.stamp's (device, …, allocator) follow them
COLUMNS = ["benchmark", "dataset", "model", "phi", "dim", "n_parameters", "n_users", "n_items",
           "n_users_timed", "seconds", "seconds_all_users", "repeat"]


def recommend(model: Recommender, users: torch.Tensor, batch: int) -> None:
    """Top-:data:`TOP_N` items of every user in ``users``, ``batch`` users at a time."""
    for a in range(0, users.numel(), batch):
        scores = model.score_users(users[a:a + batch])  # (B, I)
        torch.topk(scores, TOP_N, dim=1)


def time_model(model: Recommender, n_timed: int, batch: int, device: str, repeats: int
               ) -> list[float]:
    """Seconds of :func:`recommend` for users ``0..n_timed−1``: one warm-up batch, then
    ``repeats`` passes."""
    users = torch.arange(n_timed, device=device)
    out = []
    with torch.inference_mode():
        recommend(model, users[:batch], batch)
        for _ in range(repeats):
            sync(device)
            t0 = time.perf_counter()
            recommend(model, users, batch)
            sync(device)
            out.append(time.perf_counter() - t0)
    return out


def bench_dataset(dataset: str, protocol: str, negatives: int, models: list[str], device: str,
                  repeats: int, max_users: int | None, batch_users: dict[str, int],
                  data_dir: str | None) -> list[dict]:
    """Rows for every model and φ on one data set."""
    split = load_split(dataset, protocol, 0, negatives, data_dir)
    n_timed = split.n_users if max_users is None else min(max_users, split.n_users)
    rows = []
    for name in models:
        for phi, dim in PHI_DIM.items():
            torch.manual_seed(0)
            model = build_model(name, split.n_users, split.n_items, dim).to(device).eval()
            seconds = time_model(model, n_timed, batch_users[name], device, repeats)
            rows += [{"benchmark": "inference", "dataset": dataset, "model": name, "phi": phi,
                      "dim": dim, "n_parameters": model.n_parameters(), "n_users": split.n_users,
                      "n_items": split.n_items, "n_users_timed": n_timed, "seconds": sec,
                      "seconds_all_users": sec * split.n_users / n_timed, "repeat": r}
                     for r, sec in enumerate(seconds)]
            print(f"{dataset} {name} phi={phi}: {min(seconds):.3f} s for {n_timed} users",
                  flush=True)
    return rows


def bench(datasets: dict[str, tuple[str, int]], models: list[str], device: str, repeats: int,
          max_users: int | None, batch_users: dict[str, int], data_dir: str | None
          ) -> pd.DataFrame:
    """All rows, stamped with the device and the code version."""
    rows = []
    for dataset, (protocol, negatives) in datasets.items():
        rows += bench_dataset(dataset, protocol, negatives, models, device, repeats, max_users,
                              batch_users, data_dir)
    return pd.DataFrame(rows, columns=COLUMNS).assign(**stamp(device))


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Median extrapolated seconds per data set, model, φ and device, with parameter counts."""
    keys = ["dataset", "model", "phi", "dim", "n_parameters", "device_name"]
    return (df.groupby(keys, sort=False)["seconds_all_users"]
            .agg(median="median", repeats="count").reset_index())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, OUT, "timed passes (after a warm-up batch)")
    ap.add_argument("--datasets", default=",".join(DATASETS),
                    help=f"comma-separated, from {','.join(DATASETS)} (default: both)")
    ap.add_argument("--models", default=",".join(MODELS), help="comma-separated: bpr,neumf")
    ap.add_argument("--max-users", type=int, default=None,
                    help="time only the first N users and extrapolate (default: all users)")
    ap.add_argument("--batch-bpr", type=int, default=BATCH_USERS["bpr"], help="users per batch")
    ap.add_argument("--batch-neumf", type=int, default=BATCH_USERS["neumf"],
                    help="users per batch")
    args = ap.parse_args()
    device = start(args)
    if args.quick:
        datasets = QUICK_DATASETS
    else:
        datasets = {d: DATASETS[d] for d in choices(args.datasets, list(DATASETS), "dataset")}
    models = choices(args.models, MODELS, "model")
    batch_users = {"bpr": args.batch_bpr, "neumf": args.batch_neumf}
    df = bench(datasets, models, device, args.repeats, args.max_users, batch_users,
               args.data_dir)
    save_rows(df, Path(args.out), args.quick)
    print(summary(df).to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
