"""Benchmark: embedding lookups, ``nn.Embedding`` against :class:`rdlib.models.base.RowEmbedding`.

Both return the same rows; ``RowEmbedding`` (``weight.index_select``) backs up through one
``index_add_`` instead of ``nn.Embedding``'s dense embedding backward. This script times a forward and backward of each on a Foursquare-sized item
table (28,593 × 20) for index counts from a BPR batch (1,024) to an RRD batch's interesting or
uninteresting items (≈1,000 users × 40), and checks that the two gradients are equal bit for
bit. With ``--epoch`` it also times whole training epochs of a BPR student with RRD
(``rdlib.training.fit``, no evaluation) on a synthetic split of Foursquare's size (24,941 users,
28,593 items, 667,204 pairs, random teacher top-500 lists: the cost depends on the shapes, not
on the data), one lookup after the other, and checks that the weights after the epoch are equal.
Rows (benchmark, lookup, n_indices, repeat, seconds, same_grad, load_1min: the machine's load
average when the row was taken, + the device columns of ``_common.stamp``) go to
``benchmarks/results/lookup.csv``.

    python benchmarks/bench_lookup.py --device cpu --threads 1 --epoch
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch
from _common import add_run_arguments, save_rows, stamp, start, sync
from torch import nn

from rdlib.config import RunConfig
from rdlib.kd.rrd import RRD
from rdlib.models.base import RowEmbedding
from rdlib.models.bpr import BPRMF
from rdlib.training import fit

OUT = Path(__file__).resolve().parent / "results" / "lookup.csv"
N_ROWS, DIM = 28_593, 20  # Foursquare items, the φ = 0.1 student
N_INDICES = (1_024, 3_000, 3_001, 10_000, 40_000, 80_000)
N_USERS, N_PAIRS = 24_941, 667_204  # the Foursquare split of the DE-RRD chapter


def rrd_epoch(lookup: str, n_users: int, n_items: int, n_pairs: int, device: str
              ) -> tuple[float, torch.Tensor]:
    """Seconds of one BPR + RRD training epoch with ``lookup`` tables, and the item weights
    after it. Pairs and teacher lists are drawn from fixed seeds, so both lookups see the same
    data."""
    gen = torch.Generator().manual_seed(1)
    users = torch.arange(n_pairs) % n_users  # every user has pairs
    train = torch.stack([users, torch.randint(n_items, (n_pairs,), generator=gen)], 1).numpy()
    top = torch.stack([torch.randperm(n_items, generator=gen)[:500] for _ in range(n_users)])
    torch.manual_seed(0)
    model = BPRMF(n_users, n_items, DIM)
    if lookup == "nn.Embedding":  # the same initial weights in plain nn.Embedding tables
        for name in ("user_emb", "item_emb"):
            plain = nn.Embedding(*getattr(model, name).weight.shape)
            plain.load_state_dict(getattr(model, name).state_dict())
            setattr(model, name, plain)
    rrd = RRD(top, train, n_items, seed=0)
    cfg = RunConfig("synthetic", epochs=1, device=device, progress=False)
    out = fit(model, train, n_items, cfg, None, distiller=rrd)
    return out.train_seconds, model.item_emb.weight.detach().cpu()


def grad_of(table: nn.Embedding, idx: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """``table.weight.grad`` after one lookup of ``idx`` backed up with ``upstream``."""
    table.weight.grad = None
    table(idx).backward(upstream)
    return table.weight.grad


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, OUT, "timed forward+backward passes per lookup and index count")
    ap.add_argument("--epoch", action="store_true",
                    help="also time whole BPR + RRD epochs of Foursquare's size")
    args = ap.parse_args()
    device = start(args)
    n_rows = 2_000 if args.quick else N_ROWS
    torch.manual_seed(0)
    plain = nn.Embedding(n_rows, DIM).to(device)
    rows_ = RowEmbedding(n_rows, DIM).to(device)
    rows_.load_state_dict(plain.state_dict())  # the same weights
    gen = torch.Generator().manual_seed(0)
    rows = []
    for n in N_INDICES:
        idx = torch.randint(n_rows, (n,), generator=gen).to(device)  # (n,), with repeats
        upstream = torch.randn(n, DIM, generator=gen).to(device)  # (n, d)
        same = torch.equal(grad_of(plain, idx, upstream), grad_of(rows_, idx, upstream))
        for name, table in (("nn.Embedding", plain), ("RowEmbedding", rows_)):
            for rep in range(args.repeats + 1):  # the first pass warms up
                sync(device)
                t0 = time.perf_counter()
                grad_of(table, idx, upstream)
                sync(device)
                if rep:
                    rows.append({"benchmark": "lookup", "lookup": name, "n_indices": n,
                                 "repeat": rep, "seconds": time.perf_counter() - t0,
                                 "same_grad": same, "load_1min": os.getloadavg()[0],
                                 **stamp(device)})
    if args.epoch:  # n_indices = 0 marks a whole epoch
        sizes = (500, 600, 20_000) if args.quick else (N_USERS, N_ROWS, N_PAIRS)
        for rep in range(1, args.repeats + 1):  # alternate, so that load falls on both alike
            got = {name: rrd_epoch(name, *sizes, device) for name in ("nn.Embedding",
                                                                       "RowEmbedding")}
            same = torch.equal(got["nn.Embedding"][1], got["RowEmbedding"][1])
            rows += [{"benchmark": "rrd_epoch", "lookup": name, "n_indices": 0, "repeat": rep,
                      "seconds": sec, "same_grad": same,
                      "load_1min": os.getloadavg()[0], **stamp(device)}
                     for name, (sec, _) in got.items()]
    df = pd.DataFrame(rows)
    med = df.groupby(["n_indices", "lookup"])["seconds"].median().unstack() * 1e3
    med["speed-up"] = med["nn.Embedding"] / med["RowEmbedding"]
    print("median ms per forward+backward (n_indices 0: a whole RRD epoch); equal:",
          bool(df["same_grad"].all()))
    print(med.round(3).to_string())
    save_rows(df, Path(args.out), args.quick)


if __name__ == "__main__":
    main()
