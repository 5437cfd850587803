"""Helpers shared by the benchmarks: the columns that say where and when a row was measured,
device synchronisation, and writing (or, for smoke checks, printing) the rows."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from rdlib import env
from rdlib.results import ALLOCATOR_NOT_RECORDED

# what rows written before a column existed get in it when a benchmark adds that column
OLD_ROWS = {"allocator": ALLOCATOR_NOT_RECORDED}


def choices(text: str, allowed, what: str) -> list[str]:
    """The comma-separated names in ``text``; an unknown one exits naming the allowed ones."""
    picked = [t.strip() for t in text.split(",") if t.strip()]
    unknown = sorted(set(picked) - set(allowed))
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}; choose from {', '.join(allowed)}")
    return picked


def set_threads(threads: int | None) -> None:
    """Use ``threads`` intra-op CPU threads (``None``: leave torch's default)."""
    if threads is not None:
        torch.set_num_threads(threads)


def add_run_arguments(ap: argparse.ArgumentParser, out: Path, repeats_help: str) -> None:
    """The options every benchmark takes: --device, --repeats, --threads, --quick,
    --data-dir and --out."""
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--repeats", type=int, default=3, help=repeats_help)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's own default; 1 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke check on a tiny synthetic split; rows are printed, not saved")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=str(out))


def start(args: argparse.Namespace) -> str:
    """Apply ``--threads`` (one thread for ``--quick`` unless given) and the allocator training
    runs use (:func:`rdlib.env.keep_freed_memory`, so that a benchmark times what a run does;
    ``RDLIB_MALLOC_DEFAULT=1`` keeps glibc's default), and return the device."""
    env.keep_freed_memory()
    set_threads(1 if args.quick and args.threads is None else args.threads)
    return env.resolve_device(args.device)


def stamp(device: str) -> dict[str, str | int]:
    """The columns every benchmark row carries (the format of ``bench_bpr.py``, plus
    ``threads`` and ``allocator``): device, device_name, torch, commit, timestamp, threads,
    allocator (what :func:`start` set; rows written before the column read
    ``ALLOCATOR_NOT_RECORDED``: glibc's default)."""
    return {"device": device, "device_name": env.device_name(device),
            "torch": env.versions()["torch"], "commit": str(env.git_state()["commit"])[:10],
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "threads": torch.get_num_threads(), "allocator": env.keep_freed_memory()}


def sync(device: str) -> None:
    """Wait for queued GPU work, so that a wall-clock timer measures it."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def save_rows(df: pd.DataFrame, out: Path, quick: bool) -> None:
    """Append ``df`` to the CSV ``out`` (header only for a new file) in the file's column order;
    ``quick`` (smoke check) prints the rows instead and writes nothing.

    Where ``df`` has a column the file lacks, the file is first rewritten with that column
    added, its old rows reading :data:`OLD_ROWS`' value (else empty) and every other field
    kept as it was written."""
    if quick:
        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(df.to_string(index=False))
        print(f"(--quick: {len(df)} rows printed, not appended to {out})")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        header = list(pd.read_csv(out, nrows=0).columns)
        added = [c for c in df.columns if c not in header]
        if added:  # old rows as strings, so that each field is written back unchanged
            old = pd.read_csv(out, dtype=str, keep_default_na=False)
            old.assign(**{c: OLD_ROWS.get(c, "") for c in added}).to_csv(out, index=False)
        df = df.reindex(columns=header + added)
    df.to_csv(out, mode="a", header=not out.exists(), index=False, float_format="%.5f")
    print(f"appended {len(df)} rows to {out}")
