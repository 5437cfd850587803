"""Execute the source notebooks with papermill into ``book/`` and build the HTML book.

``python -m rdlib.book`` is the README's main command. With the committed results of the full
profile every run is a cache hit, so it finishes in minutes on a fresh clone; ``--recompute``
retrains everything (use ``--device cuda`` on a GPU machine). Paths passed to papermill are
repository-relative, so no machine path ends up in the executed notebooks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from rdlib.paths import repo_root
from rdlib.reports import papermill_command

# (source notebook, executed copy, parameters of the full profile)
NOTEBOOKS: list[tuple[str, str, dict]] = [
    ("notebooks/datasets.ipynb", "book/datasets.ipynb", {"profile": "full"}),
    ("notebooks/bpr_baseline.ipynb", "book/bpr_baseline.ipynb", {"profile": "full"}),
    # the DE-RRD grid is larger than one CPU session: the book reports the stored runs only
    ("notebooks/derrd.ipynb", "book/derrd.ipynb", {"profile": "full", "run_missing": False}),
    ("notebooks/provenance.ipynb", "book/provenance.ipynb", {}),
]


def execute(names: list[str] | None, device: str, recompute: bool) -> None:
    import papermill as pm

    root = repo_root()
    os.chdir(root)
    if recompute:
        os.environ["RDLIB_RECOMPUTE"] = "1"
    for src, dst, params in NOTEBOOKS:
        if names and Path(src).stem not in names:
            continue
        params = dict(params)
        if "profile" in params:
            params["device"] = device
        t0 = time.perf_counter()
        print(papermill_command(src, params, dst), flush=True)
        pm.execute_notebook(src, dst, parameters=params, cwd=str(root), progress_bar=False,
                            kernel_name="python3")
        print(f"  done in {time.perf_counter() - t0:.1f} s", flush=True)


def build() -> None:
    jb = Path(sys.executable).parent / "jupyter-book"
    subprocess.run([str(jb), "build", "book", "--config", "_config.yml", "-W", "-n",
                    "--keep-going"], cwd=repo_root(), check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rdlib.book", description=__doc__)
    ap.add_argument("--only", nargs="*", help="notebook stems to execute (default: all)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ap.add_argument("--recompute", action="store_true",
                    help="retrain every run instead of reading the committed results")
    ap.add_argument("--no-execute", action="store_true", help="only build the HTML book")
    ap.add_argument("--no-build", action="store_true", help="only execute the notebooks")
    args = ap.parse_args(argv)
    if not args.no_execute:
        execute(args.only, args.device, args.recompute)
    if not args.no_build:
        build()
        print(f"book: {repo_root() / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
