"""The results store: tidy metric rows, per-user values, learning curves and a manifest per run.

Layout (committed, compact)::

    results/runs/<run_id>/manifest.json   full config, hash, git commit, device, versions, time
    results/runs/<run_id>/metrics.csv     one row per (run, split, metric, k)
    results/runs/<run_id>/curve.csv.gz    the learning curve (epoch, split, metric, k, value)
    results/runs/<run_id>/per_user.npz    per-user values for paired tests (compressed)

``run_id`` comes from the config hash (:attr:`rdlib.config.RunConfig.run_id`), so a finished run
is found again and skipped: re-running a grid resumes where it stopped. A run is *finished* only
when its manifest says ``"status": "complete"``; it is written last, atomically.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from rdlib.paths import results_root

ROW_COLUMNS = ["run_id", "paper", "dataset", "protocol", "model", "role", "method", "dim", "seed",
               "split", "metric", "k", "value", "epoch"]


@dataclass
class RunRecord:
    """Everything one run produces, ready to be stored."""

    run_id: str
    manifest: dict
    rows: pd.DataFrame  # ROW_COLUMNS
    curve: pd.DataFrame  # epoch, split, metric, k, value (+ loss, seconds)
    per_user: dict[str, np.ndarray]  # "test/hr@5" -> (n_eval,), "test/users" -> (n_eval,)


def atomic_write(path: Path, write) -> None:
    """``write(tmp)`` to a temporary file beside ``path``, then rename it over ``path``: a
    process killed while writing (a run stopped at a session's end) leaves the previous file
    whole instead of a truncated one; the rename is atomic on one file system.

    The temporary file sits in a folder unique to the call (``tempfile.mkdtemp``) and has
    ``path``'s own name, so two processes that write the same file at once (two runs caching one
    teacher's top list) never write into each other's temporary file, and writers that embed the
    file name (``torch.save`` names its archive after it) give the same bytes as a direct write.
    The last rename wins and both leave a whole file. A failed ``write`` leaves nothing behind.
    """
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    tmp = tmp_dir / path.name
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp_dir.rmdir()


class RunLocked(RuntimeError):
    """Another process holds the run's lock (:func:`run_lock`): it is training that run now.
    Grids skip such a cell and go on."""


@contextmanager
def run_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` while one run trains.

    A second process that starts the same run (a grid queued twice) fails at once with an error
    naming the holder, instead of training the run a second time and racing the first on its
    checkpoint. The lock is ``flock``'s: the OS drops it when its process dies, so a run killed
    at a session's end leaves no stale lock to clear by hand. Where ``fcntl`` is missing
    (Windows), runs are not locked.

    Once the lock is held, the temporary folders of :func:`atomic_write` that a killed holder
    left beside the run's files (``.<run>.*.tmp`` next to the lock) are removed: only the lock's
    holder writes those files, so no live writer owns them.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise RunLocked(f"run {path.stem} is already being trained by {holder} "
                            f"(lock {path}); wait for it or stop it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        for stale in path.parent.glob(f".{path.stem}.*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class ResultStore:
    """Read and write runs under ``root`` (default: ``<repo>/results``)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else results_root()
        self.runs = self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def finished(self, run_id: str) -> dict | None:
        """The manifest of a finished run (it exists and says complete); None for a run that is
        absent, unfinished or has an unreadable manifest. One read answers both "is it stored?"
        and "what does its record say?", so callers that need both parse the file once."""
        path = self.run_dir(run_id) / "manifest.json"
        if not path.is_file():
            return None
        try:
            manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        return manifest if manifest.get("status") == "complete" else None

    def has(self, run_id: str) -> bool:
        """True when the run finished (its manifest exists and says complete)."""
        return self.finished(run_id) is not None

    def finished_manifests(self) -> dict[str, dict]:
        """Run id → manifest of every finished run of the store, in run-id order."""
        if not self.runs.is_dir():
            return {}
        found = {p.name: self.finished(p.name) for p in sorted(self.runs.iterdir())}
        return {r: m for r, m in found.items() if m is not None}

    def save(self, record: RunRecord) -> Path:
        """Write a finished run; the manifest goes last so a crash never leaves a 'complete' run."""
        missing = [c for c in ROW_COLUMNS if c not in record.rows.columns]
        if missing:
            raise ValueError(f"result rows of {record.run_id} lack columns {missing}")
        d = self.run_dir(record.run_id)
        d.mkdir(parents=True, exist_ok=True)
        atomic_write(d / "metrics.csv",
                      lambda p: record.rows[ROW_COLUMNS].to_csv(p, index=False, float_format="%.6g"))
        atomic_write(d / "curve.csv.gz",
                      lambda p: record.curve.to_csv(p, index=False, float_format="%.6g",
                                                    compression="gzip"))
        atomic_write(d / "per_user.npz", lambda p: _savez(p, record.per_user))
        self.write_manifest(record.run_id, dict(record.manifest, status="complete"))
        return d

    def write_manifest(self, run_id: str, manifest: dict) -> None:
        """Write (or rewrite) a run's ``manifest.json`` atomically, in the store's format."""
        atomic_write(self.run_dir(run_id) / "manifest.json",
                     lambda p: p.write_text(json.dumps(manifest, indent=1, sort_keys=True,
                                                       default=str) + "\n"))

    def manifest(self, run_id: str) -> dict:
        path = self.run_dir(run_id) / "manifest.json"
        if not path.is_file():
            raise FileNotFoundError(f"no stored run {run_id!r} under {self.runs}")
        return json.loads(path.read_text())

    def run_ids(self) -> list[str]:
        return list(self.finished_manifests())

    def metrics(self, run_ids: str | Iterable[str] | None = None, **filters) -> pd.DataFrame:
        """All stored metric rows (optionally of some runs), filtered by column equality."""
        if isinstance(run_ids, str):
            run_ids = [run_ids]
        ids = list(run_ids) if run_ids is not None else self.run_ids()
        frames = [pd.read_csv(self.run_dir(r) / "metrics.csv") for r in ids]
        if not frames:
            return pd.DataFrame(columns=ROW_COLUMNS)
        df = pd.concat(frames, ignore_index=True)
        for col, val in filters.items():
            if col not in df.columns:
                raise KeyError(f"unknown result column {col!r}; columns are {list(df.columns)}")
            df = df[df[col].isin(val if isinstance(val, list | tuple | set) else [val])]
        return df.reset_index(drop=True)

    def curve(self, run_id: str) -> pd.DataFrame:
        """The learning curve of a run (``curve.csv.gz``; plain ``curve.csv`` is read too)."""
        d = self.run_dir(run_id)
        path = d / "curve.csv.gz" if (d / "curve.csv.gz").is_file() else d / "curve.csv"
        return pd.read_csv(path)

    def per_user(self, run_id: str) -> dict[str, np.ndarray]:
        with np.load(self.run_dir(run_id) / "per_user.npz") as z:
            return {k: z[k] for k in z.files}

    def errata(self) -> list[dict]:
        """Corrections to stored manifests, from ``<root>/errata.json`` (none when it is absent).

        A manifest is the record a run wrote; a fact it got wrong (the commit of a tree copied to
        a GPU machine with a stale ``.git``) is corrected here, beside it, not by rewriting it.
        Each erratum names its ``runs``, the manifest ``field``, the value ``recorded`` there,
        the ``corrected`` value and ``why``. Every erratum is checked against the manifests, so
        a correction cannot silently outlive or miss the record it corrects: a run that is not
        stored, or a manifest whose field no longer holds ``recorded``, raises ValueError
        naming the run.
        """
        path = self.root / "errata.json"
        if not path.is_file():
            return []
        errata = json.loads(path.read_text())["errata"]
        for i, e in enumerate(errata):
            missing = {"runs", "field", "recorded", "corrected", "why"} - set(e)
            if missing:
                raise ValueError(f"erratum {i} in {path} lacks {sorted(missing)}")
            for r in e["runs"]:
                manifest = self.finished(r)
                if manifest is None:
                    raise ValueError(f"erratum {i} in {path} names run {r!r}, which is not stored")
                held = manifest.get(e["field"])
                if held != e["recorded"]:
                    raise ValueError(f"erratum {i} in {path}: manifest of {r} holds "
                                     f"{e['field']}={held!r}, not the recorded {e['recorded']!r}")
        return errata

    def _fixes(self) -> dict[str, dict]:
        """Run id → {field: corrected value} of every erratum (:meth:`errata`)."""
        fixes: dict[str, dict] = {}
        for e in self.errata():
            for r in e["runs"]:
                fixes.setdefault(r, {})[e["field"]] = e["corrected"]
        return fixes

    def corrected_manifest(self, run_id: str) -> dict:
        """A run's manifest with the fields its errata correct (:meth:`errata`) replaced."""
        return {**self.manifest(run_id), **self._fixes().get(run_id, {})}

    def manifests(self, found: dict[str, dict] | None = None) -> pd.DataFrame:
        """One row per finished run with its provenance, for the book's provenance page.

        ``found`` is :meth:`finished_manifests` when the caller has already read it (the page
        also lists resumed runs from it), so the manifests are not parsed a second time.

        Fields corrected by :meth:`errata` show the corrected value; ``erratum`` says which
        field of the row was corrected (empty when none was). A run resumed from its checkpoint
        (``resumed``) shows its last process's commit, device and ``wall_time_s``; its
        ``train_eval_s`` (training plus evaluation seconds, carried in the checkpoint) counts
        every process, and its manifest's ``segments`` name each one. ``dirty`` is whether the
        code differed from ``commit`` when the (last) process started (:func:`rdlib.env.git_state`;
        None where not known)."""
        fixes = self._fixes()
        rows = []
        for r, manifest in (self.finished_manifests() if found is None else found).items():
            fixed = fixes.get(r, {})
            m = {**manifest, **fixed}
            rows.append({"run_id": r, "paper": m["config"].get("paper"),
                         "dataset": m["config"].get("dataset"), "device": m.get("device_name"),
                         "commit": str(m.get("git", {}).get("commit", ""))[:10],
                         "dirty": m.get("git", {}).get("dirty"),
                         "wall_time_s": m.get("wall_time_s"),
                         "train_eval_s": train_eval_seconds(m), "resumed": was_resumed(m),
                         "torch": m["versions"]["torch"],
                         "started_at": m.get("started_at"), "finished_at": m.get("finished_at"),
                         "erratum": ", ".join(sorted(fixed))})
        return pd.DataFrame(rows)


def run_numbers(store: ResultStore, run_id: str) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """What a recomputation must repeat: the run's metric rows as stored (split, metric, k,
    value, epoch) and its per-user values."""
    rows = store.metrics(run_id)[["split", "metric", "k", "value", "epoch"]]
    return rows.reset_index(drop=True), store.per_user(run_id)


def compare_numbers(old: tuple[pd.DataFrame, dict[str, np.ndarray]],
                    new: tuple[pd.DataFrame, dict[str, np.ndarray]]) -> dict[str, float | bool]:
    """Whether two :func:`run_numbers` are the same, and by how much they differ.

    ``identical``: every metric row (its value and selected epoch, matched on split, metric, k,
    in any order) and every per-user array are equal, bit for bit as stored. ``metrics_max_abs_diff``: the largest |difference| of a
    metric value (rows matched on split, metric, k); ``per_user_max_abs_diff``: the same over
    the per-user arrays; ``epochs_differ``: the number of rows whose selected epoch differs.
    A row or array one side lacks makes the differences infinite."""
    (old_rows, old_users), (new_rows, new_users) = old, new
    key = ["split", "metric", "k"]
    both = old_rows.merge(new_rows, on=key, how="outer", suffixes=("_old", "_new"))
    missing = bool(both[["value_old", "value_new"]].isna().any(axis=None))
    diff = (both["value_old"] - both["value_new"]).abs().to_numpy()  # (rows,)
    metrics = float("inf") if missing else float(diff.max(initial=0.0))
    epochs = int((both["epoch_old"] != both["epoch_new"]).sum())
    same_arrays = old_users.keys() == new_users.keys() and all(
        old_users[k].shape == new_users[k].shape for k in old_users)
    per_user = float("inf") if not same_arrays else max(
        (float(np.abs(old_users[k].astype(np.float64) - new_users[k]).max(initial=0.0))
         for k in old_users), default=0.0)
    # by value, not by row order: another commit's code may write the same rows in another order
    identical = (not missing and metrics == 0.0 and epochs == 0 and same_arrays
                 and all(np.array_equal(old_users[k], new_users[k]) for k in old_users))
    return {"identical": identical, "metrics_max_abs_diff": metrics,
            "per_user_max_abs_diff": per_user, "epochs_differ": epochs}


def train_eval_seconds(manifest: dict) -> float | None:
    """A run's training plus evaluation seconds over every process that trained it (a resumed
    run carries both sums in its checkpoint; its ``wall_time_s`` is the last process's alone);
    None for a manifest without the fields."""
    train, evaluate = manifest.get("train_seconds"), manifest.get("eval_seconds")
    return None if train is None or evaluate is None else float(train + evaluate)


def was_resumed(manifest: dict) -> bool:
    """Whether more than one process trained the run (it restarted from its checkpoint)."""
    return manifest.get("resumed_from_epoch") is not None


ALLOCATOR_NOT_RECORDED = "glibc default (not recorded)"


def allocator_of(manifest: dict) -> str:
    """What served the run's CPU memory (:func:`rdlib.env.keep_freed_memory`): the one
    allocator of all its processes, or "mixed: A → B" where a resumed run's processes differed.

    Seconds per epoch depend on it (a dense DE step spent a third of its CPU time in the kernel
    under glibc's default), so tables of seconds group by it. A manifest or process written
    before the field existed used glibc's default: ``ALLOCATOR_NOT_RECORDED``."""
    parts = manifest.get("segments") or [manifest]
    names = list(dict.fromkeys(part.get("allocator", ALLOCATOR_NOT_RECORDED) for part in parts))
    return names[0] if len(names) == 1 else "mixed: " + " → ".join(names)


PROCESS_COLUMNS = ["run_id", "process", "from_epoch", "to_epoch", "commit", "device",
                   "flush_denormal", "allocator", "started_at"]


def resumed_processes(manifests: dict[str, dict]) -> pd.DataFrame:
    """One row per process that trained a resumed run, in order: the epochs [from_epoch,
    to_epoch) it ran, its commit (10 hex digits), device, whether it flushed denormals, its
    allocator (:func:`allocator_of`), and when it started. The provenance summary groups a
    resumed run under its last process; this names every one.

    ``manifests`` is run id → manifest (:meth:`ResultStore.finished_manifests`); runs trained by
    one process are left out. A process whose facts were not kept shows "not recorded": the
    first process of a run whose checkpoint predates ``segments``, and, for a manifest that
    predates ``segments`` altogether, every process before the last (the manifest's own facts
    are the last process's)."""
    unknown = {"commit": "not recorded", "device": "not recorded", "flush_denormal": None,
               "allocator": "not recorded", "started_at": "not recorded"}

    def facts(part: dict) -> dict:
        if part.get("recorded") is False or "git" not in part:
            return unknown
        return {"commit": str(part["git"].get("commit", ""))[:10],
                "device": part.get("device_name"),
                "flush_denormal": part.get("determinism", {}).get("flush_denormal"),
                "allocator": allocator_of(part),  # one process: its own allocator
                "started_at": part.get("started_at")}

    rows = []
    for run_id, m in manifests.items():
        if not was_resumed(m):
            continue
        parts = m.get("segments") or [
            {"from_epoch": 0, "to_epoch": m["resumed_from_epoch"], "recorded": False},
            {**m, "from_epoch": m["resumed_from_epoch"], "to_epoch": m.get("epochs_run")}]
        rows += [{"run_id": run_id, "process": i, "from_epoch": part["from_epoch"],
                  "to_epoch": part["to_epoch"], **facts(part)}
                 for i, part in enumerate(parts, start=1)]
    return pd.DataFrame(rows, columns=PROCESS_COLUMNS)


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **{k: np.asarray(v) for k, v in arrays.items()})


DIRTY_COLUMNS = ["run_id", "commit", "started_at", "next_code_commit", "minutes_later",
                 "code_it_changed"]


def dirty_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs of ``runs`` (:meth:`ResultStore.manifests`, errata applied) recorded as trained
    on uncommitted code (``dirty`` true), each beside the first later commit that changed code
    (:func:`rdlib.env.next_code_commit`): the edit most likely in progress when it started,
    how many minutes after the start it was committed, and the code files it changed. Those
    three read "not known" where the history is missing or has no later code commit."""
    from rdlib import env  # here: env imports torch, which reading results does not need

    dirty = runs[runs["dirty"].eq(True)] if len(runs) else runs
    rows = []
    for run in dirty.itertuples():
        later = env.next_code_commit(run.started_at) if run.started_at else None
        minutes = ("not known" if later is None else
                   round((datetime.fromisoformat(later["committed_at"])
                          - datetime.fromisoformat(run.started_at)).total_seconds() / 60))
        rows.append({"run_id": run.run_id, "commit": run.commit, "started_at": run.started_at,
                     "next_code_commit": later["commit"] if later else "not known",
                     "minutes_later": minutes,
                     "code_it_changed": later["paths"] if later else "not known"})
    return pd.DataFrame(rows, columns=DIRTY_COLUMNS)
