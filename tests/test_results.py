"""The results store: atomic complete runs, filters, per-user values, run locks."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from rdlib.results import (
    ALLOCATOR_NOT_RECORDED,
    DIRTY_COLUMNS,
    PROCESS_COLUMNS,
    ROW_COLUMNS,
    ResultStore,
    RunRecord,
    allocator_of,
    atomic_write,
    dirty_runs,
    resumed_processes,
    run_lock,
)


def _record(run_id="r1", value=0.5):
    rows = pd.DataFrame([{"run_id": run_id, "paper": "P", "dataset": "d", "protocol": "loo_sampled",
                          "model": "bpr", "role": "student", "method": "none", "dim": 4, "seed": 0,
                          "split": "test", "metric": "hr", "k": 5, "value": value, "epoch": 3}])
    curve = pd.DataFrame({"epoch": [1], "split": ["valid"], "metric": ["hr"], "k": [5],
                          "value": [0.1]})
    return RunRecord(run_id, {"config": {"paper": "P", "dataset": "d"}, "versions": {"torch": "x"}},
                     rows, curve, {"test/hr@5": np.array([1.0, 0.0]), "test/users": np.array([0, 1])})


def test_save_and_read_back(tmp_path):
    store = ResultStore(tmp_path)
    assert not store.has("r1")
    store.save(_record())
    assert store.has("r1") and store.run_ids() == ["r1"]
    df = store.metrics()
    assert list(df.columns) == ROW_COLUMNS and df["value"].iloc[0] == 0.5
    assert np.array_equal(store.per_user("r1")["test/hr@5"], [1.0, 0.0])
    assert store.manifest("r1")["status"] == "complete"
    assert store.curve("r1")["value"].iloc[0] == 0.1


def test_incomplete_run_is_not_a_hit(tmp_path):
    store = ResultStore(tmp_path)
    d = store.run_dir("r2")
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"status": "running"}))
    assert not store.has("r2") and store.finished("r2") is None
    (d / "manifest.json").write_text("{broken")
    assert not store.has("r2") and store.finished("r2") is None
    assert store.finished("absent") is None and store.finished_manifests() == {}


def test_finished_manifests_lists_complete_runs_only_in_run_id_order(tmp_path):
    store = ResultStore(tmp_path)
    for run_id in ["b", "a"]:
        store.save(_record(run_id))
    store.run_dir("c").mkdir()
    (store.run_dir("c") / "manifest.json").write_text(json.dumps({"status": "running"}))
    found = store.finished_manifests()
    assert list(found) == ["a", "b"] == store.run_ids()
    assert found["a"] == store.manifest("a") == store.finished("a")
    assert found["a"]["status"] == "complete"


def test_filters_and_errors(tmp_path):
    store = ResultStore(tmp_path)
    store.save(_record("a", 0.1))
    store.save(_record("b", 0.2))
    assert store.metrics(run_id="b")["value"].tolist() == [0.2]
    assert len(store.metrics(run_id=["a", "b"])) == 2
    with pytest.raises(KeyError, match="unknown result column 'colour'"):
        store.metrics(colour="red")
    with pytest.raises(FileNotFoundError, match="no stored run 'zz'"):
        store.manifest("zz")
    bad = _record("c")
    bad.rows = bad.rows.drop(columns=["seed"])
    with pytest.raises(ValueError, match="lack columns \\['seed'\\]"):
        store.save(bad)


def test_paper_dataset_table_joins_paper_and_ours():
    from rdlib.reports import paper_dataset_table

    ours = pd.DataFrame({"n_users": [5219], "n_items": [25181], "n_interactions": [125580],
                         "n_train_loo": [115142]}, index=["citeulike-t"])
    t = paper_dataset_table(ours)
    cite = t[t["paper dataset"] == "CiteULike"].set_index("statistic")
    assert cite.loc["#users", "paper value"] == 5220 and cite.loc["#users", "ours"] == 5219
    assert cite.loc["#interactions", "ours"] == cite.loc["#interactions", "paper value"] == 115142
    assert t[t["paper dataset"] == "Gowalla"]["ours"].isna().all()  # not loaded → NaN, not dropped


def test_reference_table_reads_official_log_and_paper():
    from rdlib.reports import reference_table

    t = reference_table("DE-RRD", "CiteULike", "BPR", "Student")
    assert set(t.index) == {"official log", "paper"}
    assert t.loc["official log", "HR@5"] == "0.4486" and t.loc["paper", "HR@5"] == "0.4441"
    with pytest.raises(KeyError, match="no reported numbers"):
        reference_table("DE-RRD", "CiteULike", "BPR", "Nothing")


def test_papermill_command_and_devices():
    from rdlib.reports import devices_of, papermill_command

    cmd = papermill_command("notebooks/x.ipynb", {"profile": "full", "seeds": [0, 1]})
    assert cmd == "papermill notebooks/x.ipynb book/x.ipynb -p profile full -y 'seeds: [0, 1]'"
    ms = [{"device_name": "cpu", "versions": {"torch": "2"}}] * 2
    assert devices_of(ms) == "cpu, torch 2" and devices_of([]) == "no stored run"


def test_papermill_command_gives_the_notebook_the_values_themselves(tmp_path):
    """The Reproduce box's command, split as a shell splits it and run through papermill's own
    command line (--prepare-only: parameters injected, nothing executed), hands the notebook
    lists as lists and numbers as numbers; papermill's ``-p`` would hand it the string
    "[0, 1]"."""
    import shlex

    import nbformat
    from click.testing import CliRunner
    from papermill.cli import papermill

    from rdlib.reports import papermill_command

    src, out = tmp_path / "x.ipynb", tmp_path / "out.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("profile = 'smoke'\nseeds = None",
                                          metadata={"tags": ["parameters"]})]
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    nbformat.write(nb, src)
    params = {"profile": "full", "seeds": [0, 1], "settings": ["CiteULike/BPR", "Foursquare/BPR"],
              "lr": 0.001, "device": "cuda:0", "run_missing": False, "data_dir": None}
    args = shlex.split(papermill_command(str(src), params, output=str(out)))
    result = CliRunner().invoke(papermill, [*args[1:], "--prepare-only"])
    assert result.exit_code == 0, result.output
    injected = [c for c in nbformat.read(out, as_version=4).cells
                if "injected-parameters" in c.metadata.get("tags", [])]
    got: dict = {}
    exec(injected[0].source, {}, got)  # the assignments papermill wrote
    assert got == params


def test_a_killed_run_leaves_no_stale_lock(tmp_path):
    """The lock dies with its process: a run killed at a session's end (SIGKILL, no cleanup)
    can be resumed at once by the next process."""
    lock = tmp_path / "checkpoints" / "r.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path;"
         "from rdlib.results import run_lock\n"
         f"with run_lock(Path({str(lock)!r})):\n print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RuntimeError, match=f"pid {holder.pid} "), run_lock(lock):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_lock(lock):  # taken at once, no stale lock to clear
        assert lock.read_text().startswith(f"pid {os.getpid()} on ")


def test_run_lock_removes_temporaries_a_killed_holder_left(tmp_path):
    """A run killed while writing its checkpoint leaves ``atomic_write``'s temporary folder; the
    next holder of the run's lock removes it, and leaves other runs' temporaries alone."""
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir()
    stale = ckpt / ".r1.pt.abc123.tmp"
    stale.mkdir()
    (stale / "r1.pt").write_bytes(b"half")
    other = ckpt / ".r10.pt.def456.tmp"  # another run's (r10 starts with r1)
    other.mkdir()
    with run_lock(ckpt / "r1.lock"):
        assert not stale.exists()
        assert other.exists()


def test_atomic_write_uses_a_fresh_temporary_name_each_call(tmp_path):
    """Two writers of one file must not share a temporary file (they would truncate each other's
    half-written bytes); the temporary keeps the file's name (torch.save embeds it, and
    determinism tests compare checkpoint bytes); a failed write leaves the old file whole and no
    temporary behind."""
    target = tmp_path / "topk.pt"
    seen = []

    def write(text):
        def _w(p):
            seen.append(p)
            p.write_text(text)
        return _w

    atomic_write(target, write("a"))
    atomic_write(target, write("b"))
    assert seen[0].parent != seen[1].parent and all(p.name == "topk.pt" for p in seen)
    assert all(p.parent.parent == tmp_path for p in seen)
    assert target.read_text() == "b"

    def broken(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert target.read_text() == "b"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["topk.pt"]


def _erratum(runs, recorded, corrected):
    return {"runs": runs, "field": "git", "recorded": recorded, "corrected": corrected,
            "why": "stale .git on the copy"}


def test_errata_correct_the_provenance_table_not_the_manifest(tmp_path):
    store = ResultStore(tmp_path)
    stale, right = {"commit": "aaaaaaaaaaaa", "dirty": True}, {"commit": "bbbbbbbbbbbb", "dirty": None}
    for r in ("r1", "r2"):
        rec = _record(r)
        rec.manifest["git"] = stale
        store.save(rec)
    assert store.errata() == [] and set(store.manifests()["commit"]) == {"aaaaaaaaaa"}
    (tmp_path / "errata.json").write_text(json.dumps({"errata": [_erratum(["r2"], stale, right)]}))
    table = store.manifests().set_index("run_id")
    assert table.loc["r1", "commit"] == "aaaaaaaaaa" and table.loc["r1", "erratum"] == ""
    assert table.loc["r2", "commit"] == "bbbbbbbbbb" and table.loc["r2", "erratum"] == "git"
    assert table.loc["r1", "dirty"] is True and table.loc["r2", "dirty"] is None  # corrected
    assert store.manifest("r2")["git"] == stale  # the run's own record is left as it wrote it
    # manifests the caller already read get the same corrections
    pd.testing.assert_frame_equal(store.manifests(store.finished_manifests()), store.manifests())
    assert store.manifests({"r1": store.manifest("r1")})["run_id"].tolist() == ["r1"]


@pytest.mark.parametrize("runs, recorded, message", [
    (["gone"], {"commit": "aaaaaaaaaaaa", "dirty": True}, "names run 'gone', which is not stored"),
    (["r1"], {"commit": "cccccccccccc", "dirty": True}, "manifest of r1 holds git="),
])
def test_an_erratum_that_does_not_match_its_run_is_an_error(tmp_path, runs, recorded, message):
    store = ResultStore(tmp_path)
    rec = _record("r1")
    rec.manifest["git"] = {"commit": "aaaaaaaaaaaa", "dirty": True}
    store.save(rec)
    (tmp_path / "errata.json").write_text(json.dumps({"errata": [_erratum(runs, recorded, {})]}))
    with pytest.raises(ValueError, match=message):
        store.manifests()
    (tmp_path / "errata.json").write_text(json.dumps({"errata": [{"runs": ["r1"]}]}))
    with pytest.raises(ValueError, match=r"erratum 0 .* lacks \['corrected', 'field'"):
        store.errata()


def test_the_committed_errata_match_their_runs():
    """``results/errata.json`` names stored runs whose manifests still hold what it corrects."""
    store = ResultStore()
    errata = store.errata()
    assert errata and all(e["runs"] for e in errata)


def test_provenance_counts_every_process_of_a_resumed_run(tmp_path):
    store = ResultStore(tmp_path)
    one, resumed, old = _record("r1"), _record("r2"), _record("r3")
    one.manifest.update(wall_time_s=100.0, train_seconds=80.0, eval_seconds=15.0)
    # resumed at epoch 221: the last process ran 50 s, the whole run trained and evaluated 144 s
    resumed.manifest.update(wall_time_s=50.0, train_seconds=130.0, eval_seconds=14.0,
                            resumed_from_epoch=221)
    for rec in (one, resumed, old):  # r3's manifest predates the timing fields
        store.save(rec)
    table = store.manifests().set_index("run_id")
    assert table.loc["r1", "train_eval_s"] == 95.0 and not table.loc["r1", "resumed"]
    assert table.loc["r2", "train_eval_s"] == 144.0 and table.loc["r2", "resumed"]
    assert table.loc["r2", "wall_time_s"] == 50.0
    assert pd.isna(table.loc["r3", "train_eval_s"])


def _process(commit, start, flush=False):
    return {"git": {"commit": commit, "dirty": False}, "device_name": f"cpu {commit}",
            "determinism": {"flush_denormal": flush}, "started_at": start}


def test_allocator_of_names_one_allocator_or_the_mix_of_a_resumed_run():
    new = "glibc, mmap and trim thresholds 1 GiB"
    assert allocator_of({"allocator": new}) == new
    assert allocator_of({"git": {}}) == ALLOCATOR_NOT_RECORDED  # written before the field
    same = {"allocator": new, "segments": [{"allocator": new}, {"allocator": new}]}
    assert allocator_of(same) == new
    # resumed across the change: the first process had no field, the manifest's own is the last
    across = {"allocator": new, "segments": [{"from_epoch": 0}, {"allocator": new}]}
    assert allocator_of(across) == f"mixed: {ALLOCATOR_NOT_RECORDED} → {new}"


def test_resumed_processes_names_every_process_of_each_resumed_run():
    once = {"git": {"commit": "a" * 40}, "device_name": "cpu", "epochs_run": 9}
    two = {"resumed_from_epoch": 142, "epochs_run": 177, "segments": [
        {**_process("b" * 40, "day 1"), "from_epoch": 0, "to_epoch": 142},
        {**_process("c" * 40, "day 2", flush=True), "from_epoch": 142, "to_epoch": 177,
         "allocator": "thresholds"}]}
    # the checkpoint of the first process predates segments: the training loop marks it
    early = {"resumed_from_epoch": 12, "epochs_run": 40, "segments": [
        {"from_epoch": 0, "to_epoch": 12, "recorded": False},
        {**_process("d" * 40, "day 3"), "from_epoch": 12, "to_epoch": 40}]}
    # a manifest that predates segments: only the last process is known, from the manifest
    old = {**_process("e" * 40, "day 4"), "resumed_from_epoch": 78, "epochs_run": 200}
    got = resumed_processes({"once": once, "two": two, "early": early, "old": old})
    assert list(got.columns) == PROCESS_COLUMNS
    assert got["run_id"].tolist() == ["two", "two", "early", "early", "old", "old"]
    assert got["process"].tolist() == [1, 2, 1, 2, 1, 2]
    assert got["from_epoch"].tolist() == [0, 142, 0, 12, 0, 78]
    assert got["to_epoch"].tolist() == [142, 177, 12, 40, 78, 200]
    assert got["commit"].tolist() == ["b" * 10, "c" * 10, "not recorded", "d" * 10,
                                      "not recorded", "e" * 10]
    assert got["flush_denormal"].tolist() == [False, True, None, False, None, False]
    assert got["allocator"].tolist() == [ALLOCATOR_NOT_RECORDED, "thresholds",
                                         "not recorded", ALLOCATOR_NOT_RECORDED,
                                         "not recorded", ALLOCATOR_NOT_RECORDED]
    assert got.loc[5, "device"] == "cpu " + "e" * 40 and got.loc[4, "started_at"] == "not recorded"
    assert resumed_processes({"once": once}).empty


def test_dirty_runs_lists_runs_on_uncommitted_code_beside_the_next_code_commit(tmp_path,
                                                                               monkeypatch):
    from rdlib import env

    store = ResultStore(tmp_path)
    for r, dirty, start in (("clean", False, "2026-01-01T09:00:00+00:00"),
                            ("edited", True, "2026-01-01T10:00:00+00:00"),
                            ("fixed", True, "2026-01-01T10:00:00+00:00"),
                            ("last", True, "2026-01-02T10:00:00+00:00")):
        rec = _record(r)
        rec.manifest.update(git={"commit": "a" * 40, "dirty": dirty}, started_at=start)
        store.save(rec)
    (tmp_path / "errata.json").write_text(json.dumps({"errata": [
        _erratum(["fixed"], {"commit": "a" * 40, "dirty": True},
                 {"commit": "a" * 40, "dirty": False})]}))
    later = {"2026-01-01T10:00:00+00:00": {"commit": "b" * 10,
                                           "committed_at": "2026-01-01T11:30:00+00:00",
                                           "paths": "rdlib/x.py"}}
    monkeypatch.setattr(env, "next_code_commit", lambda after: later.get(after))
    got = dirty_runs(store.manifests()).set_index("run_id")
    assert list(got.reset_index().columns) == DIRTY_COLUMNS
    assert sorted(got.index) == ["edited", "last"]  # not the clean run, nor the corrected one
    assert got.loc["edited"].tolist() == ["a" * 10, "2026-01-01T10:00:00+00:00", "b" * 10, 90,
                                          "rdlib/x.py"]
    assert got.loc["last", "next_code_commit"] == "not known"  # no later code commit
    assert dirty_runs(pd.DataFrame()).empty and list(dirty_runs(pd.DataFrame()).columns) == \
        DIRTY_COLUMNS
