"""Benchmark: BPR-MF training time per epoch and evaluation time on CiteULike.

Measures, on the DE-RRD authors' CiteULike split (115,142 training interactions):

- ``train_epoch``: one epoch of BPR (d = 20, batch 1,024, one negative per positive, Adam), with
  device-side negative sampling — the quantity the official code's own timer reports
  (0.4–0.7 s per epoch on the project's 2-core CPU, ``shared/research/official_timings.md``);
- ``eval_sampled``: validation + test over 500 candidates per user (the DE-RRD protocol; official
  0.8–1.5 s);
- ``eval_full``: full ranking of all 25,181 items for every user of the HetComp hold-out split,
  training and the other split masked.

Each measurement is a row (benchmark, device, device_name, repeat, seconds, …) appended to
``benchmarks/results/bpr_citeulike.csv``, so CPU and GPU rows sit side by side.

    python benchmarks/bench_bpr.py --device cpu --repeats 5
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from rdlib import env
from rdlib.config import RunConfig
from rdlib.experiments import load_split, make_evaluator
from rdlib.models import BPRMF
from rdlib.training import fit

OUT = Path(__file__).resolve().parent / "results" / "bpr_citeulike.csv"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(device: str, repeats: int, data_dir: str | None) -> pd.DataFrame:
    rows = []
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    base = dict(device=device, progress=False, eval_every=10**6, patience=0)
    loo = load_split("citeulike-t-derrd-loo", "loo_authors", 0, 499, data_dir)
    cfg = RunConfig(dataset="citeulike-t-derrd-loo", protocol="loo_authors", epochs=1, **base)
    torch.manual_seed(0)
    model = BPRMF(loo.n_users, loo.n_items, 20)
    # warm-up epoch, then `repeats` timed epochs (fit times its epochs itself)
    fit(model, loo.train, loo.n_items, cfg, None)
    for r in range(repeats):
        out = fit(model, loo.train, loo.n_items, cfg, None)
        rows.append({"benchmark": "train_epoch", "repeat": r, "seconds": out.train_seconds,
                     "n_interactions": len(loo.train)})
    evaluate = make_evaluator(loo, cfg)
    model.eval()
    for r in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            evaluate(model, "valid")
            evaluate(model, "test")
        _sync(device)
        if r:  # the first pass is a warm-up
            rows.append({"benchmark": "eval_sampled", "repeat": r - 1,
                         "seconds": time.perf_counter() - t0, "n_users": loo.n_users})
    hold = load_split("citeulike-t", "random_holdout", 0, 499, data_dir)
    hcfg = RunConfig(dataset="citeulike-t", protocol="random_holdout", metrics=("recall", "ndcg"),
                     selection_metric="recall", ks=(10, 50), **{**base, "epochs": 1})
    hmodel = BPRMF(hold.n_users, hold.n_items, 20).to(device)
    hevaluate = make_evaluator(hold, hcfg)
    for r in range(repeats + 1):
        _sync(device)
        t0 = time.perf_counter()
        with torch.no_grad():
            hevaluate(hmodel, "test")
        _sync(device)
        if r:
            rows.append({"benchmark": "eval_full", "repeat": r - 1,
                         "seconds": time.perf_counter() - t0, "n_users": hold.n_users})
    df = pd.DataFrame(rows)
    v = env.versions()
    return df.assign(dataset="citeulike-t", dim=20, device=device,
                     device_name=env.device_name(device), torch=v["torch"],
                     commit=str(env.git_state()["commit"])[:10], timestamp=stamp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    df = bench(env.resolve_device(args.device), args.repeats, args.data_dir)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, mode="a", header=not out.exists(), index=False, float_format="%.5f")
    print(df.groupby(["benchmark", "device_name"])["seconds"].describe()[["mean", "std", "min"]])


if __name__ == "__main__":
    main()
