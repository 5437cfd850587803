"""The ``rdlib`` console command (declared in ``pyproject.toml`` as ``rdlib.cli:main``).

Subcommands are grouped per area (``rdlib data ...``); each group registers its parsers in a
``_add_<group>_commands`` function and each leaf sets ``func`` to a handler returning the exit
code, so new groups (``rdlib run ...``, ``rdlib book ...``) plug in without touching ``main``.

    rdlib data list
    rdlib data stats NAME [--json] [--data-dir DIR]
    rdlib data stats --file PATH [--file PATH ...] --format FMT [--json]
    rdlib run derrd [--settings S ...] [--methods M ...] [--seeds N ...] [--phis P ...]
                    [--study table2|table4|table5] [--variants V ...]
                    [--lambda-de L ...] [--lambda-rrd L ...]
                    [--profile full|smoke] [--device D] [--threads N] [--dry-run]
    rdlib rerun RUN_ID [RUN_ID ...] [--at COMMIT] [--results-dir DIR] [--scratch DIR] [--data-dir DIR]

Errors in the data (:class:`~rdlib.data.types.DataError`) print one message on stderr and exit
with code 2, like argparse usage errors.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from rdlib.data.types import DataError

if TYPE_CHECKING:
    from rdlib.derrd import Cell
    from rdlib.results import ResultStore

__all__ = ["main", "build_parser"]

EXIT_OK = 0
EXIT_ERROR = 2

Handler = Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------------------------
# rdlib data ...
# --------------------------------------------------------------------------------------------

def _fmt_int(n: int) -> str:
    return f"{n:,}"


def _print_table(rows: list[list[str]], header: list[str], right: set[int]) -> None:
    """A plain fixed-width table on stdout (no extra dependency)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    print(line(header))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def _where(name: str, data_dir: str | None) -> str:
    from rdlib.data.mirror import locate_dataset
    from rdlib.paths import relpath

    found = locate_dataset(name, data_dir)
    if found is None:
        return "not present (downloaded on first load)"
    label, folder = found
    shown = relpath(folder) if label == "download cache" else str(folder)
    return f"{label}: {shown}"


def _cmd_data_list(args: argparse.Namespace) -> int:
    """Registered datasets with format, expected statistics and where each resolves."""
    from rdlib.data.registry import load_registry

    rows = []
    for name, spec in load_registry().items():
        e = spec.expected
        rows.append([name, spec.format, _fmt_int(e.n_users), _fmt_int(e.n_items),
                     _fmt_int(e.n_interactions), spec.preprocessing.describe(),
                     _where(name, args.data_dir)])
    _print_table(rows, ["name", "format", "users", "items", "interactions", "preprocessing",
                        "location"], right={2, 3, 4})
    return EXIT_OK


def _print_stats(stats: dict[str, float | int], notes: Sequence[str], as_json: bool,
                 title: str) -> None:
    if as_json:
        print(json.dumps(stats))
        return
    print(title)
    print(f"  users         {stats['n_users']:>12,}")
    print(f"  items         {stats['n_items']:>12,}")
    print(f"  interactions  {stats['n_interactions']:>12,}")
    print(f"  density       {stats['density']:>12.6f}")
    for note in notes:
        print(f"  note: {note}")


def _cmd_data_stats(args: argparse.Namespace) -> int:
    """Statistics of a registered dataset (preprocessed, checked) or of raw file(s)."""
    if args.file:
        if args.name or not args.format:
            raise _UsageError("give either NAME or --file PATH --format FMT")
        from rdlib.data.readers import read_file
        inter = read_file(args.file, args.format)
        title = f"{', '.join(args.file)} ({args.format}, unfiltered)"
    else:
        if not args.name:
            raise _UsageError("give a dataset NAME (see 'rdlib data list') or --file/--format")
        if args.format:
            raise _UsageError("--format goes with --file, not with a dataset NAME")
        from rdlib.data.datasets import load_dataset
        inter = load_dataset(args.name, data_dir=args.data_dir)
        title = (f"{args.name} (registered preprocessing, statistics checked; "
                 f"{_where(args.name, args.data_dir)})")
    _print_stats(inter.stats(), inter.notes, args.json, title)
    return EXIT_OK


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    from rdlib.data.readers import FORMATS

    data = sub.add_parser("data", help="datasets: list the registry, show statistics")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)

    p_list = data_sub.add_parser("list", help="registered datasets and where they resolve")
    p_list.add_argument("--data-dir", metavar="DIR",
                        help="mirror root holding DIR/<name>/ (searched first)")
    p_list.set_defaults(func=_cmd_data_list)

    p_stats = data_sub.add_parser("stats", help="users, items, interactions, density")
    p_stats.add_argument("name", nargs="?", metavar="NAME", help="a registered dataset")
    p_stats.add_argument("--file", action="append", metavar="PATH",
                         help="read raw file(s) instead (repeat for several files, e.g. "
                              "LightGCN train and test); needs --format")
    p_stats.add_argument("--format", choices=FORMATS, metavar="FMT",
                         help=f"format of --file: one of {', '.join(FORMATS)}")
    p_stats.add_argument("--json", action="store_true",
                         help="print one JSON object (n_users, n_items, n_interactions, "
                              "density)")
    p_stats.add_argument("--data-dir", metavar="DIR",
                         help="mirror root holding DIR/<name>/ (searched first)")
    p_stats.set_defaults(func=_cmd_data_stats)


# --------------------------------------------------------------------------------------------
# rdlib run ...
# --------------------------------------------------------------------------------------------

def _cmd_run_derrd(args: argparse.Namespace) -> int:
    """Run the missing cells of a slice of the DE-RRD grid (stored runs are skipped).

    The chapter notebook runs the same cells in one kernel; this command runs a slice in a
    shell, e.g. one process per core on a CPU, or one slice per GPU call. An interrupted run
    resumes from its checkpoint the next time.
    """
    from rdlib import derrd
    from rdlib.experiments import CELL_SKIPPED, run_experiment
    from rdlib.results import ResultStore

    if (args.lambda_de or args.lambda_rrd) and args.study != "table5":
        raise _UsageError("--lambda-de and --lambda-rrd select Table 5 cells: add --study table5")
    methods = {"table2": args.methods, "table4": ["DE", "RRD"], "table5": ["DE-RRD"],
               "sweeps": ["CD", "RRD"]}
    try:
        cells = derrd.chapter_grid(args.profile, args.settings, methods[args.study],
                                   seeds=args.seeds, phis=tuple(args.phis),
                                   lambdas=args.lambdas, device=args.device)
        picked: list[tuple[str, derrd.Cell]] = []  # (the study's name for the cell, cell)
        if args.study == "table4":
            picked = [(v, c) for s in args.settings
                      for v, c in derrd.ablation_cells(cells, s, args.variants or
                                                       tuple(derrd.ABLATIONS))]
        elif args.study == "table5":
            picked = [(f"λ_DE={l_de:g} λ_RRD={l_rrd:g}", c) for s in args.settings
                      for l_de, l_rrd, c in derrd.lambda_cells(cells, s)
                      if l_de in (args.lambda_de or derrd.LAMBDAS)
                      and l_rrd in (args.lambda_rrd or derrd.LAMBDAS)]
        elif args.study == "sweeps":
            cells = derrd.sweep_cells(cells)
        if args.study in ("table4", "table5"):  # may pick none: then no cell runs
            cells = [c for _, c in picked]
        labels = {c.cfg.run_id: v for v, c in picked}  # run id → the study's name for it
    except ValueError as e:
        raise _UsageError(str(e)) from e
    store = ResultStore(args.results_dir)
    missing = [c for c in cells if not store.has(c.cfg.run_id)]
    missing_ids = {c.cfg.run_id for c in missing}
    for c in cells:
        state = "missing" if c.cfg.run_id in missing_ids else "stored "
        label = f"{labels[c.cfg.run_id]}  " if c.cfg.run_id in labels else ""
        print(f"{state}  {c.setting:<17} {c.method:<7} phi={c.phi:<4} seed={c.cfg.seed}  "
              f"{label}{c.cfg.run_id}")
    print(f"{_count(len(cells), 'cell')}, {len(missing)} missing")
    if args.teachers_only:
        return _restore_teachers(args, cells, store)
    if args.dry_run or not missing:
        return EXIT_OK
    _prepare_to_train(args)
    skipped = 0
    for i, c in enumerate(missing, 1):
        print(f"[{i}/{len(missing)}] {c.setting} {c.method} phi={c.phi} seed={c.cfg.seed}",
              flush=True)
        try:
            run_experiment(c.cfg, store=store, data_dir=args.data_dir)
        except CELL_SKIPPED as e:  # the other cells can still run
            skipped += 1
            print(f"skipped: {e}", file=sys.stderr, flush=True)
            continue
        print(_stored_line(store, c.cfg.run_id), flush=True)
    if skipped:
        print(f"{_count(skipped, 'cell')} skipped: their teacher is unavailable here, or "
              f"another process is training the run or its teacher", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


def _stored_line(store: ResultStore, run_id: str) -> str:
    """One line saying a run finished: its epochs, seconds per epoch and test HR@5, so a log
    ends with the outcome rather than the last progress bar (or says the run is not stored)."""
    manifest = store.finished(run_id)
    if manifest is None:
        return f"not stored: {run_id}"
    rows = store.metrics(run_id, split="test", metric="hr", k=5)
    hr5 = f"{rows['value'].iloc[0]:.4f}" if len(rows) else "n/a"
    spe = manifest.get("seconds_per_epoch")
    pace = f" at {spe:.1f} s/epoch" if isinstance(spe, int | float) else ""
    return (f"stored {run_id}: {manifest.get('epochs_run', '?')} epochs{pace}, "
            f"test HR@5 {hr5}")


def _prepare_to_train(args: argparse.Namespace) -> None:
    """Before this process trains: refuse uncommitted code unless ``--allow-dirty``
    (:func:`rdlib.env.require_committed_code`), then apply ``--threads`` and
    ``--flush-denormal``."""
    import torch

    from rdlib import env

    if not args.allow_dirty:
        try:
            env.require_committed_code("pass --allow-dirty")
        except env.UncommittedCode as e:
            raise _UsageError(str(e)) from e
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.flush_denormal:
        try:
            env.set_flush_denormal(True)
        except RuntimeError as e:
            raise _UsageError(f"--flush-denormal: {e}") from e


def _restore_teachers(args: argparse.Namespace, cells: list[Cell],
                      store: ResultStore) -> int:
    """``--teachers-only``: train, find or restore the teacher of each selected KD cell, once
    per teacher, and train no student.

    On a fresh clone the teachers' weights are missing; restoring them first lets several
    student processes start at once without each finding the teacher locked by the other
    (the retrain is checked against the stored run: :func:`rdlib.distill.ensure_teacher`).
    """
    from rdlib.distill import ensure_teacher, teacher_config
    from rdlib.experiments import CELL_SKIPPED

    firsts: dict[str, Cell] = {}  # teacher run id → the first selected cell distilled from it
    for c in cells:
        if c.cfg.method != "none":
            firsts.setdefault(teacher_config(c.cfg).run_id, c)
    for run_id in firsts:
        print(f"teacher  {run_id}")
    print(f"{_count(len(firsts), 'teacher')} of the selected KD cells")
    if args.dry_run or not firsts:
        return EXIT_OK
    _prepare_to_train(args)
    failed = 0
    for run_id, c in firsts.items():
        try:
            ensure_teacher(c.cfg, store, args.data_dir)
            print(f"ready    {run_id}", flush=True)
        except CELL_SKIPPED as e:
            failed += 1
            print(f"not restored: {e}", file=sys.stderr, flush=True)
    return EXIT_ERROR if failed else EXIT_OK


def _count(n: int, noun: str) -> str:
    """``3 cells``, ``1 cell``: a count with its noun, plural unless one."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _spelled_as(known: Iterable[str]) -> Callable[[str], str]:
    """An argparse ``type`` that maps a name to its spelling in ``known``, ignoring case
    (``citeulike/bpr`` → ``CiteULike/BPR``); other names pass through, to be named as unknown."""
    by_lower = {k.lower(): k for k in known}
    return lambda name: by_lower.get(name.lower(), name)


def _grid_lambda(text: str) -> float:
    """An argparse ``type``: a λ of the Table 5 grid (``1e-3`` or ``0.001``), else an error
    that lists the grid."""
    from rdlib import derrd

    try:
        value = float(text)
    except ValueError:
        value = math.nan  # close to no λ
    for grid_value in derrd.LAMBDAS:
        if math.isclose(value, grid_value):
            return grid_value
    raise argparse.ArgumentTypeError(f"{text!r} is not a λ of the Table 5 grid {derrd.LAMBDAS}")


def _add_run_commands(sub: argparse._SubParsersAction) -> None:
    from rdlib import derrd

    run = sub.add_parser("run", help="run a slice of a chapter's grid of experiments")
    run_sub = run.add_subparsers(dest="run_command", metavar="CHAPTER", required=True)
    p = run_sub.add_parser("derrd", help="DE-RRD (Kang et al., CIKM 2020): Table 2, Fig. 4")
    p.add_argument("--settings", nargs="+", default=list(derrd.SETTINGS), metavar="SETTING",
                   type=_spelled_as(derrd.SETTINGS),
                   help=f"dataset/model settings: {', '.join(derrd.SETTINGS)} (default: all)")
    p.add_argument("--methods", nargs="+", default=list(derrd.METHODS), metavar="METHOD",
                   type=_spelled_as(derrd.METHODS),
                   help=f"Table 2 rows: {', '.join(derrd.METHODS)} (default: all)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                   help="training seeds (default: the profile's; the teacher is always seed 0)")
    p.add_argument("--phis", nargs="+", type=float, default=[0.1], metavar="PHI",
                   help=f"student sizes phi, of {derrd.PHIS} (default: 0.1)")
    p.add_argument("--study", choices=("table2", "table4", "table5", "sweeps"),
                   default="table2",
                   help="table2: --methods × settings × --phis (also Fig. 4); table4: the DE "
                        "and RRD design variants (--variants); table5: DE-RRD's λ_DE × λ_RRD "
                        "grid; sweeps: the chapter's one-option sweeps (derrd.SWEEPS)")
    p.add_argument("--variants", nargs="+", metavar="VARIANT",
                   help=f"Table 4 rows (default: all): {'; '.join(derrd.ABLATIONS)}")
    for flag, name in (("--lambda-de", "λ_DE (rows)"), ("--lambda-rrd", "λ_RRD (columns)")):
        p.add_argument(flag, nargs="+", type=_grid_lambda, metavar="L",
                       help=f"--study table5 only: the {name} to run, of {derrd.LAMBDAS} "
                            "(default: all)")
    p.add_argument("--lambdas", choices=derrd.LAMBDA_SOURCES, default="paper",
                   help="loss weights: 'paper' (NeuMF: λ_RRD = 1e-1, DE-RRD λ_DE = 1e-4, as "
                        "the paper's Table 5 implies) or 'official' (the official code's "
                        "λ_DE = 1e-2, λ_RRD = 1e-3); BPR is the same under both")
    p.add_argument("--profile", choices=("smoke", "full"), default="full",
                   help="'full' (the paper's settings) or 'smoke' (a few epochs)")
    p.add_argument("--device", help="cpu, cuda, ... (default: the profile's)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    p.add_argument("--flush-denormal", action="store_true",
                   help="flush denormal floats to zero on the CPU (torch.set_flush_denormal): "
                        "DE's experts whose ReLUs die decay into denormals, which make a CPU's "
                        "GEMMs many times slower; recorded in each manifest, off by default so "
                        "that stored runs repeat bit for bit")
    p.add_argument("--teachers-only", action="store_true",
                   help="train, or restore on a fresh clone, the teachers of the selected KD "
                        "cells and train no student (a restored teacher must repeat its stored "
                        "run); then several student slices can start at once")
    p.add_argument("--dry-run", action="store_true",
                   help="list the cells and whether each is stored; run nothing")
    p.add_argument("--allow-dirty", action="store_true",
                   help="train even though tracked code differs from the commit (refused "
                        "otherwise: the manifest records the commit, not the change); the runs "
                        "record git.dirty = true")
    p.add_argument("--data-dir", metavar="DIR", help="mirror root holding DIR/<name>/")
    p.add_argument("--results-dir", metavar="DIR", help="result store (default: results/)")
    p.set_defaults(func=_cmd_run_derrd)


# --------------------------------------------------------------------------------------------
# rdlib rerun ...
# --------------------------------------------------------------------------------------------

EXIT_DIFFERS = 1


def _cmd_rerun(args: argparse.Namespace) -> int:
    from rdlib.rerun import RERUNS_FILE, RerunError, cpu_caveat, rerun
    from rdlib.results import ResultStore

    source = ResultStore(args.results_dir) if args.results_dir else ResultStore()
    unknown = [r for r in args.run_ids if not source.has(r)]
    if unknown:  # before hours of training, not after
        raise _UsageError(f"no stored run {', '.join(map(repr, unknown))} under {source.runs}")
    differ = 0
    for run_id in args.run_ids:
        try:
            row = rerun(run_id, source, args.scratch, data_dir=args.data_dir, at=args.at)
        except RerunError as e:
            raise _UsageError(str(e)) from e
        differ += not row["identical"]
        verdict = ("repeats the stored run bit for bit" if row["identical"] else
                   f"differs from the stored run: metrics by up to "
                   f"{row['metrics_max_abs_diff']:.3g}, per-user values by up to "
                   f"{row['per_user_max_abs_diff']:.3g}, {row['epochs_differ']} selected epochs")
        caveat = None if row["identical"] else cpu_caveat(row["stored_device"],
                                                          row["rerun_device"])
        verdict += f"; {caveat}" if caveat else ""
        print(f"{run_id} (stored at {row['stored_commit']}) rerun with the code of "
              f"{row['commit']} on {row['rerun_device']}: {verdict} "
              f"(recorded in {source.root / RERUNS_FILE})", flush=True)
    return EXIT_DIFFERS if differ else EXIT_OK


def _add_rerun_command(sub: argparse._SubParsersAction) -> None:
    from rdlib.rerun import RERUNS_FILE

    p = sub.add_parser("rerun", help="recompute a stored run with its commit's code and compare",
                       description="Recompute a stored run with the code of its own commit "
                       "(or --at another; exported from git), the CPU threads and denormal "
                       "setting it records and its teacher's stored weights, into a scratch "
                       "store; compare its metrics and per-user values with the stored ones "
                       f"and append the outcome to <results>/{RERUNS_FILE}. Exit 0 when they "
                       "are identical, 1 when any differs.")
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID",
                   help="stored runs' ids (results/runs/<run_id>), recomputed in turn")
    p.add_argument("--results-dir", metavar="DIR", help="result store (default: results/)")
    p.add_argument("--at", metavar="COMMIT",
                   help="rerun with this commit's code instead of the run's own (HEAD, a "
                        "branch, a hash): checks that a change leaves the stored numbers as "
                        "they are")
    p.add_argument("--scratch", metavar="DIR",
                   help="where reruns are stored, one store per commit (default: "
                        "_build/rerun/); an interrupted rerun resumes from its checkpoint there")
    p.add_argument("--data-dir", metavar="DIR", help="mirror root holding DIR/<name>/")
    p.set_defaults(func=_cmd_rerun)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

class _UsageError(Exception):
    """A wrong combination of arguments argparse cannot express."""


_COMMAND_GROUPS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data_commands, _add_run_commands, _add_rerun_command]


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns the code (testable)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The full ``rdlib`` parser; each command group adds its own subparsers."""
    parser = _Parser(prog="rdlib", description="rdlib: reproducibility study of knowledge "
                     "distillation for recommender systems")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_Parser)
    for add in _COMMAND_GROUPS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 usage or data error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except SystemExit as e:  # --help / --version exit through argparse
        return int(e.code or 0)
    except (_UsageError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
