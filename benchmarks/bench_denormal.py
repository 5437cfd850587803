"""Benchmark: DE's expert mixture with denormal weights, with and without flushing them to zero.

A DE expert whose ReLU units die gets no gradient through them, so its Adam moments decay by
β per step and its weights shrink under weight decay until they fall below float32's smallest
normal number (1.18e-38). On x86 CPUs an FMA with a denormal operand takes a slow microcode
path, and the GEMMs of the expert mixture slow down many times: in this project's Table 4 (b)
run (one large expert, CiteULike/BPR, one thread) an epoch went from 15 s to 135 s by epoch 17,
when 1.2% of the item expert's second-layer weights and 3.3% of their Adam moments were
denormal (epoch 18's checkpoint). ``torch.set_flush_denormal(True)`` (the
``--flush-denormal`` option of ``rdlib run derrd``) reads and writes them as zero instead.

This script times one forward and backward of :meth:`rdlib.kd.de.ExpertSet.mix` for Table 4 (b)'s
one large expert (d_s = 20 → 3,300 → d_t = 200, 2,600 rows: a CiteULike batch) with a share of
its weights set to denormal values, flushing off and on. Rows (benchmark, share, flush, repeat,
seconds, rows, hidden, load_1min, + the device columns of ``_common.stamp``) go to
``benchmarks/results/denormal.csv``. CPU only: GPUs flush denormals in their own way.

    python benchmarks/bench_denormal.py --threads 1
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch
from _common import add_run_arguments, save_rows, stamp, start

from rdlib import env
from rdlib.kd.de import ExpertSet

OUT = Path(__file__).resolve().parent / "results" / "denormal.csv"
ROWS, D_S, HIDDEN, D_T = 2600, 20, 3300, 200
SHARES = (0.0, 0.001, 0.01, 0.03, 0.1)
DENORMAL = 1e-40  # below float32's smallest normal number, 1.18e-38


def with_denormals(experts: ExpertSet, share: float, gen: torch.Generator) -> None:
    """Set about ``share`` of each weight matrix's entries to ±1e-40 (in place)."""
    with torch.no_grad():
        for w in (experts.w1, experts.w2):
            hit = torch.rand(w.shape, generator=gen) < share
            sign = torch.where(torch.rand(w.shape, generator=gen) < 0.5, -1.0, 1.0)
            w.copy_(torch.where(hit, sign * DENORMAL, w))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, OUT, "timed forward+backward passes per share and flush setting")
    args = ap.parse_args()
    device = start(args)
    if device != "cpu":
        raise SystemExit("bench_denormal.py measures the CPU; pass --device cpu")
    n_rows = 260 if args.quick else ROWS
    rows = []
    for share in SHARES:
        torch.manual_seed(0)
        experts = ExpertSet(1, D_S, HIDDEN, D_T)
        gen = torch.Generator().manual_seed(0)
        with_denormals(experts, share, gen)
        x = torch.randn(n_rows, D_S, generator=gen).requires_grad_()  # (B, d_s)
        s = torch.ones(n_rows, 1)  # (B, M = 1): one expert takes every row
        for flush in (False, True):
            with env.denormals_flushed(flush):  # raises where the CPU cannot flush
                for rep in range(args.repeats + 1):  # the first pass warms up
                    experts.zero_grad()
                    t0 = time.perf_counter()
                    experts.mix(x, s).pow(2).sum().backward()
                    if rep:
                        rows.append({"benchmark": "denormal", "share": share, "flush": flush,
                                     "repeat": rep, "seconds": time.perf_counter() - t0,
                                     "rows": n_rows, "hidden": HIDDEN,
                                     "load_1min": os.getloadavg()[0], **stamp(device)})
    df = pd.DataFrame(rows)
    med = df.groupby(["share", "flush"])["seconds"].median().unstack()
    med["off/on"] = med[False] / med[True]
    print(med.round(4).to_string())
    save_rows(df, Path(args.out), args.quick)


if __name__ == "__main__":
    main()
