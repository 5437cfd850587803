"""Recompute a stored run with the code of its own commit, and compare it with the stored run.

A stored run's manifest holds everything needed to train it again: its full config (the run id
is the config's hash), its commit, its device with the number of CPU threads, and whether it
flushed denormal floats to zero. :func:`rerun` exports that commit's tracked files from git
into a temporary folder (the working tree and its own edits are not used), runs them in a
child process with the recorded threads and denormal setting, into a scratch result store
beside the checkout, and compares the new metric rows and per-user values with the stored ones
(:func:`rdlib.results.compare_numbers`). A student distils from its teacher's stored weights,
copied into the scratch store first; without them, the teacher is retrained there and checked
as a restore is (:func:`rdlib.distill.ensure_teacher`). Another commit's code can be asked
for instead (``at``): then the rerun checks that a later change leaves the run's numbers as
they are.

Each outcome is appended to ``<store>/reruns.csv``, which the provenance page shows: a run
"repeats" when the rerun equals it bit for bit. A rerun on another CPU can differ in the last
bits where the two CPUs' vector kernels differ (see :func:`rdlib.distill.ensure_teacher`), so
each row names the device it ran on. An interrupted rerun resumes from its checkpoint in the
scratch store; a finished one is compared again without training.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pandas as pd
import torch

from rdlib import env
from rdlib.config import RunConfig
from rdlib.paths import repo_root
from rdlib.results import ResultStore, compare_numbers, run_numbers, train_eval_seconds

RERUNS_FILE = "reruns.csv"
#: ``stored_commit``, ``stored_device``: the stored run's; ``commit``: the code that reran it;
#: ``rerun_device``: this machine, with the rerun's threads; ``rerun_seconds``: the rerun's
#: training plus evaluation
RERUN_COLUMNS = ["run_id", "stored_commit", "stored_device", "threads", "flush_denormal",
                 "commit", "identical", "metrics_max_abs_diff", "per_user_max_abs_diff",
                 "epochs_differ", "stored_epochs", "rerun_epochs", "rerun_device",
                 "rerun_started_at", "rerun_seconds"]

# what the child process runs, with the exported commit's own rdlib: only APIs every stored
# run's commit has (RunConfig.from_dict, ResultStore(root), run_experiment(cfg, store=, data_dir=))
_CHILD = """
import json, sys
from pathlib import Path
import torch
spec = json.loads(sys.argv[1])
import rdlib
if not Path(rdlib.__file__).resolve().is_relative_to(Path(spec["code"]).resolve()):
    sys.exit(f"imported rdlib from {rdlib.__file__}, not from the exported commit")
if spec["threads"]:
    torch.set_num_threads(spec["threads"])
if spec["flush_denormal"] and not torch.set_flush_denormal(True):
    sys.exit("this CPU cannot flush denormals to zero, as the stored run did")
from rdlib.config import RunConfig
from rdlib.experiments import run_experiment
from rdlib.results import ResultStore
cfg = RunConfig.from_dict(spec["config"])
if cfg.run_id != spec["run_id"]:
    sys.exit(f"commit {spec['commit']} gives this config the id {cfg.run_id}, not {spec['run_id']}")
run_experiment(cfg, store=ResultStore(spec["store"]), data_dir=spec["data_dir"])
"""


class RerunError(RuntimeError):
    """A stored run cannot be recomputed here (unknown commit, no GPU for a GPU run, ...)."""


def recorded_threads(device_name: str) -> int | None:
    """The torch CPU threads in a :func:`rdlib.env.device_name` (``cpu (..., 2 threads)`` → 2);
    None for a GPU or a name without them. Threads change the order of a CPU's float sums."""
    found = re.search(r"(\d+) threads\)$", device_name)
    return int(found.group(1)) if found else None


def export_code(commit: str, dest: Path) -> None:
    """Write the files git tracks at ``commit``, outputs (:data:`rdlib.env.OUTPUT_PATHS`) aside,
    under ``dest``: the code a run recorded, without the working tree's edits."""
    excluded = [f":(exclude){p}" for p in env.OUTPUT_PATHS]
    try:
        tar = subprocess.run(["git", "-C", str(repo_root()), "archive", "--format=tar", commit,
                              "--", ".", *excluded], check=True, capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        raise RerunError(f"cannot export commit {commit} from git: "
                         f"{detail.decode(errors='replace').strip() or e}") from e
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")


def stage_teacher(source: ResultStore, scratch: ResultStore, cfg: RunConfig) -> str | None:
    """Copy ``cfg``'s teacher run, and its weights where ``source`` has them, into ``scratch``,
    so that the rerun distils from the very teacher the stored run did; returns its run id
    (None for a run without a teacher)."""
    if cfg.method == "none":
        return None
    from rdlib.distill import teacher_checkpoint_path, teacher_config

    tcfg = teacher_config(cfg)
    if not source.has(tcfg.run_id):
        raise RerunError(f"teacher {tcfg.run_id} of {cfg.run_id} is not stored in {source.root}")
    if not scratch.has(tcfg.run_id):
        shutil.copytree(source.run_dir(tcfg.run_id), scratch.run_dir(tcfg.run_id),
                        dirs_exist_ok=True)
    weights = teacher_checkpoint_path(source, tcfg)
    target = teacher_checkpoint_path(scratch, tcfg)
    if weights.is_file() and not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(weights, target)
    return tcfg.run_id


def cpu_of(device_name: str) -> str | None:
    """The hardware a :func:`rdlib.env.device_name` names, without its threads: on a CPU its
    model, widest vector instructions and architecture; a GPU's name as it is; ``None`` for an
    older CPU name that lacks the model (``cpu (x86_64, 1 threads)``)."""
    if not device_name.startswith("cpu ("):
        return device_name
    if "(family " not in device_name:
        return None
    return re.sub(r", \d+ threads\)$", ")", device_name)


def same_cpu(stored_device: str, rerun_device: str) -> bool | None:
    """Whether a rerun ran on the hardware of the stored run (:func:`cpu_of`), ``None`` when
    the stored run's name does not say. Only then can a difference be laid on the code: two
    CPUs' vector kernels (AVX2, AVX-512) can round one sum differently, which moves a user's
    rank from the first epochs on."""
    stored, here = cpu_of(stored_device), cpu_of(rerun_device)
    return None if stored is None or here is None else stored == here


def same_hardware(rows: pd.DataFrame) -> pd.Series:
    """For rows of :func:`reruns`: ``"yes"``, ``"no"`` or ``"not recorded"``
    (:func:`same_cpu` of each row's stored and rerun devices), for tables."""
    words = {True: "yes", False: "no", None: "not recorded"}
    return pd.Series([words[same_cpu(stored, here)] for stored, here in
                      zip(rows["stored_device"], rows["rerun_device"], strict=True)],
                     index=rows.index, dtype=object)


def cpu_caveat(stored_device: str, rerun_device: str) -> str | None:
    """A sentence on what a difference between the rerun and the stored run may come from when
    they ran on other hardware, or on hardware the stored run does not name; ``None`` when
    both ran on the same."""
    same = same_cpu(stored_device, rerun_device)
    if same:
        return None
    if same is None:
        return (f"the stored run's device name ({stored_device}) lacks the CPU model, so a "
                f"difference may come from the CPU rather than from the code")
    return (f"the stored run ran on {env.short_device_name(stored_device)}, this rerun on "
            f"{env.short_device_name(rerun_device)}: a difference may come from the two CPUs' "
            f"vector kernels rather than from the code")


def _this_device(device: str, threads: int | None) -> str:
    """This machine as :func:`rdlib.env.device_name` names it, with the rerun's threads (the
    child's own manifest may come from a commit whose names lack the CPU model)."""
    name = env.device_name(device)
    return re.sub(r"\d+ threads\)$", f"{threads} threads)", name) if threads else name


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _data_root(cfg: RunConfig, data_dir: str | None) -> str | None:
    """The mirror root that holds ``cfg``'s dataset here, for the child, whose own repository
    root (a temporary folder) has no ``../shared/data`` beside it."""
    if data_dir is not None or cfg.dataset == "synthetic":
        return data_dir
    from rdlib.data.mirror import locate_dataset

    found = locate_dataset(cfg.dataset)
    return str(found[1].parent) if found else None


def resolve_commit(rev: str) -> str:
    """The full hash of a git revision (``HEAD``, a branch, a short hash) of this checkout."""
    try:
        return subprocess.run(["git", "-C", str(repo_root()), "rev-parse", "--verify", "--quiet",
                               f"{rev}^{{commit}}"], check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        raise RerunError(f"{rev!r} is not a commit of this checkout") from e


def rerun(run_id: str, source: ResultStore | None = None, scratch: Path | str | None = None,
          data_dir: str | None = None, at: str | None = None) -> dict:
    """Recompute stored run ``run_id`` of ``source`` (default ``results/``) with the code of
    commit ``at`` (default: the run's own), compare, append the outcome to
    ``<source>/reruns.csv`` and return it (a row of :data:`RERUN_COLUMNS`).

    The rerun is stored under ``<scratch>/<commit>/`` (default ``scratch``: ``_build/rerun/``),
    one store per commit, so that reruns of one run with two commits' code are kept apart.
    The run's commit is its manifest's after errata (:meth:`ResultStore.corrected_manifest`); a
    resumed run is recomputed in one process. With ``at`` another commit, the rerun says
    whether that code still computes the stored numbers: the check for a change (a speed-up, a
    refactoring) that must not move any."""
    source = source or ResultStore()
    manifest = source.corrected_manifest(run_id)
    cfg = RunConfig.from_dict(manifest["config"])
    stored_commit = str(manifest.get("git", {}).get("commit") or "")
    commit = resolve_commit(at) if at else stored_commit
    if not re.fullmatch(r"[0-9a-f]{7,40}", commit):
        raise RerunError(f"run {run_id} records no commit ({commit or 'none'}): its code is "
                         f"not known; pass another commit to rerun it with that code")
    if torch.device(cfg.device).type == "cuda" and not torch.cuda.is_available():
        raise RerunError(f"run {run_id} was trained on {manifest.get('device_name', 'cuda')}; "
                         f"recompute it on a machine with a GPU")
    device = str(manifest.get("device_name", ""))
    threads = recorded_threads(device)
    flush = bool(manifest.get("determinism", {}).get("flush_denormal", False))
    store = ResultStore(Path(scratch or repo_root() / "_build" / "rerun") / commit[:10])
    stage_teacher(source, store, cfg)
    here = _this_device(cfg.device, threads)
    if not store.has(run_id):
        caveat = cpu_caveat(device, here)
        if caveat:  # said before hours of training, and again beside a difference
            print(f"note: {caveat}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="rdlib-rerun-") as tmp:
            code = Path(tmp) / "code"
            export_code(commit, code)
            spec = {"run_id": run_id, "config": manifest["config"], "commit": commit,
                    "code": str(code), "store": str(store.root.resolve()),
                    "data_dir": _data_root(cfg, data_dir), "threads": threads,
                    "flush_denormal": flush}
            child_env = {**os.environ, "PYTHONPATH": str(code), "RDLIB_GIT_COMMIT": commit,
                         "GIT_CEILING_DIRECTORIES": tmp}  # git must not find this checkout
            child_env.pop("RDLIB_GIT_DIRTY", None)
            if threads:
                child_env["OMP_NUM_THREADS"] = str(threads)
            done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], cwd=code,
                                  env=child_env)
            if done.returncode != 0:
                raise RerunError(f"the rerun of {run_id} at {commit[:10]} failed (exit "
                                 f"{done.returncode}); its output is above")
    new = store.manifest(run_id)
    row = {"run_id": run_id, "stored_commit": stored_commit[:10], "stored_device": device,
           "threads": threads, "flush_denormal": flush, "commit": commit[:10],
           **compare_numbers(run_numbers(source, run_id), run_numbers(store, run_id)),
           "stored_epochs": manifest.get("epochs_run"), "rerun_epochs": new.get("epochs_run"),
           "rerun_device": here,
           "rerun_started_at": new.get("started_at"),
           "rerun_seconds": _rounded(train_eval_seconds(new))}
    record_rerun(source, row)
    return row


def record_rerun(store: ResultStore, row: dict) -> pd.DataFrame:
    """Append ``row`` to ``<store>/reruns.csv`` (once per run and rerun start) and return the
    file's rows."""
    path = store.root / RERUNS_FILE
    rows = reruns(store)
    if ((rows["run_id"] == row["run_id"])
            & (rows["rerun_started_at"] == row["rerun_started_at"])).any():
        return rows
    rows = pd.concat([rows, pd.DataFrame([row], columns=RERUN_COLUMNS)], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(path, index=False)
    return rows


def reruns(store: ResultStore) -> pd.DataFrame:
    """The reruns recorded in ``<store>/reruns.csv`` (no rows when there is none); ``identical``
    is a bool column either way."""
    path = store.root / RERUNS_FILE
    rows = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=RERUN_COLUMNS)
    return rows.astype({"identical": bool})


def rerun_outcomes(store: ResultStore) -> pd.Series:
    """Run id → ``"repeats"`` or ``"differs"``: the latest recorded rerun of each run with the
    code of its own commit (:func:`reruns`; reruns ``at`` another commit are left out), for
    tables that name runs."""
    rows = reruns(store)
    own = rows[rows["commit"].astype(str) == rows["stored_commit"].astype(str)]
    last = own.drop_duplicates("run_id", keep="last").set_index("run_id")["identical"]
    return last.map({True: "repeats", False: "differs"})
