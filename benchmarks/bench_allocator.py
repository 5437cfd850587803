"""Benchmark: glibc's default allocator against :func:`rdlib.env.keep_freed_memory` on a dense
DE training step, in CPU time spent in the kernel, and whether the weights come out the same.

Each training step of DE's dense phase allocates and frees the same large tensors (the experts'
hidden layer of a CiteULike batch: 2,600 rows × 30 experts × 110 = 34 MB of float32). glibc
maps each block above its threshold from the kernel and unmaps it when freed, so every step
page-faults the block in again. ``keep_freed_memory`` raises the threshold to 1 GiB, so the
blocks stay in malloc's heap. Each allocator runs in its own child process (``mallopt`` acts
once per process): ``--steps`` Adam steps of ``ExpertSet.mix`` (dense path) from the same seed,
timed with ``getrusage`` (wall, user and system seconds, minor page faults), then a SHA-256 of
the final weights. ``identical`` says whether both children ended with the same weights: the
allocator must change no number. Rows (benchmark, allocator, steps, wall_s, user_s, sys_s,
minor_faults, weights_sha256, identical + the device columns of ``_common.stamp``) go to
``benchmarks/results/allocator.csv``.

    python benchmarks/bench_allocator.py --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from _common import add_run_arguments, save_rows, stamp, start
from bench_de_mix import D_S, D_T, EXPERTS, HIDDEN, ROWS  # its CiteULike batch's shapes

from rdlib import env
from rdlib.kd.de import ExpertSet

OUT = Path(__file__).resolve().parent / "results" / "allocator.csv"


def child(steps: int, n_rows: int) -> dict:
    """This process's allocator (set first), then ``steps`` timed dense DE steps."""
    allocator = env.keep_freed_memory()
    torch.manual_seed(0)
    experts = ExpertSet(EXPERTS, D_S, HIDDEN, D_T)
    opt = torch.optim.Adam(experts.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n_rows, D_S, generator=gen)  # (B, d_s)
    s = torch.softmax(torch.randn(n_rows, EXPERTS, generator=gen), -1)  # (B, M): dense

    def step() -> None:
        opt.zero_grad()
        experts.mix(x, s, sparse_below=-1.0).pow(2).sum().backward()  # dense path
        opt.step()

    step()  # warm-up: first touches, kernel choice
    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    wall, after = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    digest = hashlib.sha256()
    for p in experts.parameters():
        digest.update(p.detach().numpy().tobytes())
    return {"allocator": allocator, "steps": steps, "wall_s": wall,
            "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
            "minor_faults": after.ru_minflt - before.ru_minflt,
            "weights_sha256": digest.hexdigest()[:16]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_arguments(ap, OUT, "(unused: each allocator runs once, --steps steps)")
    ap.add_argument("--steps", type=int, default=40, help="timed training steps per allocator")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    device = start(args)
    if device != "cpu":
        raise SystemExit("the allocator is the CPU's: run with --device cpu")
    n_rows, steps = (260, 3) if args.quick else (ROWS, args.steps)
    if args.child:
        print(json.dumps(child(steps, n_rows)))
        return
    rows = []
    for default in (True, False):
        child_env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
        child_env.pop("RDLIB_MALLOC_DEFAULT", None)
        if default:
            child_env["RDLIB_MALLOC_DEFAULT"] = "1"
        argv = [sys.executable, __file__, "--child", "--steps", str(steps),
                "--threads", str(torch.get_num_threads())] + (["--quick"] if args.quick else [])
        done = subprocess.run(argv, env=child_env, capture_output=True, text=True, check=True)
        rows.append({"benchmark": "allocator", **stamp(device),  # then the child's allocator
                     **json.loads(done.stdout.splitlines()[-1]), "rows": n_rows})
    df = pd.DataFrame(rows)
    df["identical"] = df["weights_sha256"].nunique() == 1
    print(df[["allocator", "wall_s", "user_s", "sys_s", "minor_faults", "identical"]]
          .round(2).to_string(index=False))
    save_rows(df, Path(args.out), args.quick)


if __name__ == "__main__":
    main()
