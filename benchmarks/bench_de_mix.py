"""Benchmark: DE's expert mixture, dense GEMM against the sparse per-expert path, by density.

:meth:`rdlib.kd.de.ExpertSet.mix` computes Σ_m s_m E_m(x) either densely (all B·M pairs in one
GEMM) or sparsely (only the pairs whose Gumbel weight s_m is non-zero, expert by expert). Both
give the same output and gradients; which is faster depends on the share of non-zero weights,
which falls from 1 to 1/M as DE's temperature anneals (about epochs 90 to 150 on CiteULike).
This script times one forward and backward of each path at several densities and so tells where
``mix``'s switch (``SPARSE_BELOW_CPU`` / ``SPARSE_BELOW_OTHER``) should sit on a device.

Shapes are those of a CiteULike batch of the DE-RRD grid: 2,600 rows (the unique users, positive
and negative items of a 1,024-pair batch), M = 30 experts, d_s = 20 → 110 → d_t = 200. Each row
keeps its largest weight (one expert at least, as a Gumbel softmax does) and each other weight
with probability ``density``. Rows (benchmark, path, target_density, density, repeat, seconds,
rows, n_experts, + the device columns of ``_common.stamp``) go to
``benchmarks/results/de_mix.csv``.

    python benchmarks/bench_de_mix.py --device cpu --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch
from _common import add_run_arguments, save_rows, stamp, start, sync

from rdlib.kd.de import ExpertSet

OUT = Path(__file__).resolve().parent / "results" / "de_mix.csv"
ROWS, EXPERTS, D_S, HIDDEN, D_T = 2600, 30, 20, 110, 200
DENSITIES = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0)
PATHS = {"dense": -1.0, "sparse": 2.0}  # sparse_below that forces each path


def weights(n_rows: int, n_exp: int, density: float, device: str,
            gen: torch.Generator) -> torch.Tensor:
    """(n_rows, n_exp) softmax weights with about ``density`` of them non-zero."""
    logits = torch.randn(n_rows, n_exp, generator=gen)
    keep = torch.rand(n_rows, n_exp, generator=gen) < density
    keep[torch.arange(n_rows), logits.argmax(1)] = True
    s = torch.where(keep, torch.softmax(logits, -1), torch.zeros(()))  # (B, M)
    return s.to(device).requires_grad_()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, OUT, "timed forward+backward passes per path and density")
    args = ap.parse_args()
    device = start(args)
    n_rows = 260 if args.quick else ROWS
    torch.manual_seed(0)
    experts = ExpertSet(EXPERTS, D_S, HIDDEN, D_T).to(device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_rows, D_S, generator=gen).to(device).requires_grad_()  # (B, d_s)
    rows = []
    for target in DENSITIES:
        s = weights(n_rows, EXPERTS, target, device, gen)  # (B, M)
        density = float((s != 0).float().mean())
        for path, below in PATHS.items():
            for rep in range(args.repeats + 1):  # the first pass warms up
                sync(device)
                t0 = time.perf_counter()
                experts.mix(x, s, sparse_below=below).pow(2).sum().backward()
                sync(device)
                if rep:
                    rows.append({"benchmark": "de_mix", "path": path, "target_density": target,
                                 "density": density, "repeat": rep,
                                 "seconds": time.perf_counter() - t0, "rows": n_rows,
                                 "n_experts": EXPERTS, **stamp(device)})
    df = pd.DataFrame(rows)
    med = df.groupby(["density", "path"])["seconds"].median().unstack()
    med["sparse/dense"] = med["sparse"] / med["dense"]
    print(med.round(4).to_string())
    save_rows(df, Path(args.out), args.quick)


if __name__ == "__main__":
    main()
