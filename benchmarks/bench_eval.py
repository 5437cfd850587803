"""Benchmark: sampled leave-one-out evaluation of BPR-MF, its scores unblocked and blocked.

The DE-RRD protocol ranks each user's held-out item among 499 sampled ones after every epoch,
for the validation and the test split (:func:`rdlib.evaluate.evaluate_sampled`). For BPR-MF
that gathers 500 item embeddings per user: 1,024 users × 500 × d floats per batch, 200 MB at
d = 100. :meth:`rdlib.models.bpr.BPRMF.score_pairs` scores without gradients in blocks of at
most ``chunk_floats`` gathered floats; this script times one evaluation of a split of
Foursquare's size (19,466 users with a held-out item, 28,594 items, as the Foursquare split of
the DE-RRD chapter) with the blocks as large as a whole batch ("unblocked", the code before the
blocks) and with each ``--chunks`` size, at each φ's dimension (d = 20, 100, 200), and checks
that every per-user metric equals the unblocked one bit for bit. The weights, targets and
negatives are random (the cost depends on the shapes, not on the values).

Rows (benchmark, dim, n_users, n_items, n_candidates, chunk_floats (0: unblocked), repeat,
seconds, same_values, load_1min, + the device columns of ``_common.stamp``) are appended to
``benchmarks/results/eval.csv``.

    python benchmarks/bench_eval.py --device cpu --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import add_run_arguments, save_rows, stamp, start, sync

from rdlib.evaluate import evaluate_sampled
from rdlib.models.bpr import BPRMF

OUT = Path(__file__).resolve().parent / "results" / "eval.csv"
N_USERS, N_ITEMS, N_NEG = 19_466, 28_594, 499  # Foursquare in the DE-RRD chapter
DIMS = (20, 100, 200)  # φ = 0.1, 0.5, 1.0
CHUNKS = (1 << 17, 1 << 19, 1 << 21)
UNBLOCKED = 0  # the chunk_floats column's mark for one block per evaluation batch
BATCH = 1024  # users per evaluation batch (RunConfig.eval_batch_size)


def split(n_users: int, n_items: int, n_neg: int) -> tuple[np.ndarray, np.ndarray]:
    """Random (user, item) targets, one per user, and ``n_neg`` negatives per user that differ
    from the user's target (drawn from a fixed seed)."""
    rng = np.random.default_rng(0)
    targets = np.stack([np.arange(n_users), rng.integers(n_items, size=n_users)], 1)  # (U, 2)
    neg = rng.integers(n_items - 1, size=(n_users, n_neg))  # (U, C), shifted past the target
    neg += neg >= targets[:, 1:2]
    return targets, neg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, OUT, "timed evaluations per dimension and block size")
    ap.add_argument("--chunks", default=",".join(str(c) for c in CHUNKS),
                    help="comma-separated chunk_floats to time beside the unblocked scoring")
    args = ap.parse_args()
    device = start(args)
    chunks = [int(c) for c in args.chunks.split(",") if c.strip()]
    n_users, n_items = (600, 900) if args.quick else (N_USERS, N_ITEMS)
    targets, neg = split(n_users, n_items, N_NEG)
    rows = []
    for dim in DIMS:
        torch.manual_seed(0)
        model = BPRMF(n_users, n_items, dim).to(device)
        ref = None
        for chunk in (UNBLOCKED, *chunks):
            # unblocked: one block holds a whole batch of users
            model.chunk_floats = chunk or BATCH * (N_NEG + 1) * dim
            for rep in range(args.repeats + 1):  # the first pass warms up
                sync(device)
                t0 = time.perf_counter()
                res = evaluate_sampled(model.score_pairs, targets, neg, ks=(5, 10, 20),
                                       batch_size=BATCH, device=device)
                sync(device)
                seconds = time.perf_counter() - t0
                ref = res if ref is None else ref
                same = all(np.array_equal(ref.values[k], v) for k, v in res.values.items())
                if rep:
                    rows.append({"benchmark": "eval_sampled", "dim": dim, "n_users": n_users,
                                 "n_items": n_items, "n_candidates": N_NEG + 1,
                                 "chunk_floats": chunk, "repeat": rep, "seconds": seconds,
                                 "same_values": same, "load_1min": os.getloadavg()[0],
                                 **stamp(device)})
    df = pd.DataFrame(rows)
    med = df.groupby(["dim", "chunk_floats"])["seconds"].median().unstack()
    print("median seconds per evaluation (chunk_floats 0: unblocked); equal:",
          bool(df["same_values"].all()))
    print(med.round(3).to_string())
    save_rows(df, Path(args.out), args.quick)


if __name__ == "__main__":
    main()
