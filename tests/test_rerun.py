"""rdlib.rerun and `rdlib rerun`: a stored run recomputed with its commit's code and compared."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from rdlib import derrd, rerun
from rdlib.cli import main
from rdlib.config import RunConfig
from rdlib.distill import teacher_checkpoint_path, teacher_config
from rdlib.experiments import run_experiment
from rdlib.paths import repo_root
from rdlib.results import ResultStore, RunRecord, compare_numbers

CFG = dict(dataset="synthetic", protocol="loo_sampled", dim=8, epochs=3, batch_size=256,
           lr=0.01, weight_decay=0.0, eval_every=1, patience=0, n_eval_negatives=50,
           progress=False)


def _save_fake(store: ResultStore, cfg: RunConfig, **manifest) -> None:
    """A stored run of ``cfg`` with one metric row and ``manifest`` fields."""
    labels = {"run_id": cfg.run_id, "paper": cfg.paper, "dataset": cfg.dataset,
              "protocol": cfg.protocol, "model": cfg.model, "role": cfg.role,
              "method": cfg.method, "dim": cfg.dim, "seed": cfg.seed}
    rows = pd.DataFrame([{**labels, "split": "test", "metric": "hr", "k": 5, "value": 0.5,
                          "epoch": 1}])
    store.save(RunRecord(cfg.run_id, {"config": cfg.to_dict(), **manifest}, rows,
                         pd.DataFrame(), {"test/users": np.arange(2)}))


def _numbers(values=(0.5, 0.25), epochs=(3, 4), users=(1.0, 0.0, 1.0)):
    rows = pd.DataFrame({"split": ["test", "test"], "metric": ["hr", "ndcg"], "k": [5, 5],
                         "value": list(values), "epoch": list(epochs)})
    return rows, {"test/hr@5": np.array(users, dtype=np.float32)}


def test_compare_numbers_is_exact_and_says_by_how_much():
    same = compare_numbers(_numbers(), _numbers())
    assert same == {"identical": True, "metrics_max_abs_diff": 0.0, "per_user_max_abs_diff": 0.0,
                    "epochs_differ": 0}
    moved = compare_numbers(_numbers(), _numbers(values=(0.5, 0.2), epochs=(3, 5),
                                                 users=(1.0, 1.0, 1.0)))
    assert not moved["identical"] and moved["metrics_max_abs_diff"] == pytest.approx(0.05)
    assert moved["per_user_max_abs_diff"] == 1.0 and moved["epochs_differ"] == 1
    tiny = compare_numbers(_numbers(), _numbers(users=(1.0, np.float32(1e-7), 1.0)))
    assert not tiny["identical"]  # one per-user value one float32 step off is not the same run
    rows, users = _numbers()
    assert compare_numbers(_numbers(), (rows.iloc[::-1], users))["identical"]  # row order
    fewer = compare_numbers(_numbers(), (rows.iloc[:1], {}))
    assert not fewer["identical"] and fewer["metrics_max_abs_diff"] == float("inf")
    assert fewer["per_user_max_abs_diff"] == float("inf")


@pytest.mark.parametrize("name,threads", [
    ("cpu (AMD EPYC (family 25, model 1), AVX2, x86_64, 1 threads)", 1),
    ("cpu (x86_64, 16 threads)", 16), ("NVIDIA H100 80GB HBM3", None)])
def test_recorded_threads(name, threads):
    assert rerun.recorded_threads(name) == threads


ZEN3 = "cpu (AMD EPYC (family 25, model 1), AVX2, x86_64, {} threads)"
XEON = "cpu (Intel Xeon (family 6, model 207), AVX512, x86_64, {} threads)"


@pytest.mark.parametrize("stored,here,same", [
    (ZEN3.format(1), ZEN3.format(2), True),  # threads are not hardware
    (XEON.format(1), ZEN3.format(1), False),
    (ZEN3.format(1).replace("AVX2", "AVX512"), ZEN3.format(1), False),  # ATen capability differs
    ("cpu (x86_64, 1 threads)", ZEN3.format(1), None),  # an older name: not known
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3", True),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H200", False)])
def test_same_cpu_compares_the_hardware_and_knows_when_it_cannot(stored, here, same):
    assert rerun.same_cpu(stored, here) is same
    caveat = rerun.cpu_caveat(stored, here)
    assert (caveat is None) == bool(same)
    if same is None:
        assert "lacks the CPU model" in caveat
    rows = pd.DataFrame({"stored_device": [stored], "rerun_device": [here]}, index=[3])
    assert rerun.same_hardware(rows).to_dict() == {
        3: {True: "yes", False: "no", None: "not recorded"}[same]}


def test_export_code_writes_a_commit_without_its_outputs(tmp_path):
    if not (repo_root() / ".git").exists():
        pytest.skip("a copy of the tree without git")
    head = subprocess.run(["git", "-C", str(repo_root()), "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()
    rerun.export_code(head, tmp_path / "code")
    assert (tmp_path / "code/pyproject.toml").is_file()
    assert (tmp_path / "code/rdlib/experiments.py").is_file()
    for output in ("results", "book", "benchmarks/results"):
        assert not (tmp_path / "code" / output).exists()
    with pytest.raises(rerun.RerunError, match="cannot export commit 0000000"):
        rerun.export_code("0000000", tmp_path / "none")


def _working_tree(commit, dest):
    """export_code for tests: this tree's code (committed or not), as a commit would give it."""
    dest.mkdir(parents=True)
    shutil.copy(repo_root() / "pyproject.toml", dest)
    shutil.copytree(repo_root() / "rdlib", dest / "rdlib",
                    ignore=shutil.ignore_patterns("__pycache__"))


def test_rerun_repeats_a_stored_run_in_a_child_process_and_records_it(tmp_path, monkeypatch):
    source, scratch = ResultStore(tmp_path / "results"), tmp_path / "scratch"
    cfg = RunConfig(**CFG, seed=3)
    run_experiment(cfg, store=source)
    manifest = source.manifest(cfg.run_id)
    source.write_manifest(cfg.run_id, {**manifest, "git": {"commit": "abc1234", "dirty": False}})
    exported = []
    monkeypatch.setattr(rerun, "export_code",
                        lambda commit, dest: exported.append(commit) or _working_tree(commit, dest))
    row = rerun.rerun(cfg.run_id, source, scratch)
    assert exported == ["abc1234"] and ResultStore(scratch / "abc1234").has(cfg.run_id)
    assert row["identical"] and row["metrics_max_abs_diff"] == 0.0
    assert row["stored_epochs"] == row["rerun_epochs"] == manifest["epochs_run"]
    assert row["threads"] == torch.get_num_threads()
    assert row["commit"] == row["stored_commit"] == "abc1234"
    recorded = rerun.reruns(source)
    assert list(recorded.columns) == rerun.RERUN_COLUMNS and len(recorded) == 1
    assert rerun.rerun_outcomes(source).to_dict() == {cfg.run_id: "repeats"}
    # a finished rerun is compared again, not retrained, and not recorded twice
    again = rerun.rerun(cfg.run_id, source, scratch)
    assert exported == ["abc1234"] and again["identical"] and len(rerun.reruns(source)) == 1
    if not (repo_root() / ".git").exists():
        return
    # another commit's code: its own scratch store, its own row
    head = rerun.resolve_commit("HEAD")
    at_head = rerun.rerun(cfg.run_id, source, scratch, at="HEAD")
    assert exported == ["abc1234", head] and ResultStore(scratch / head[:10]).has(cfg.run_id)
    assert at_head["commit"] == head[:10] and at_head["stored_commit"] == "abc1234"
    assert at_head["identical"] and len(rerun.reruns(source)) == 2
    rows = rerun.reruns(source)
    rows.loc[0, "identical"] = False  # the own-commit rerun differs, the HEAD one repeats
    rows.to_csv(tmp_path / "results" / rerun.RERUNS_FILE, index=False)
    assert rerun.rerun_outcomes(source).to_dict() == {cfg.run_id: "differs"}
    with pytest.raises(rerun.RerunError, match="'no-such-branch' is not a commit"):
        rerun.rerun(cfg.run_id, source, scratch, at="no-such-branch")


def test_stage_teacher_copies_the_teacher_run_and_its_weights(tmp_path):
    source, scratch = ResultStore(tmp_path / "results"), ResultStore(tmp_path / "scratch")
    student = derrd.chapter_grid("smoke", ["CiteULike/BPR"], ["RRD"], seeds=[0])[-1].cfg
    tcfg = teacher_config(student)
    with pytest.raises(rerun.RerunError, match=f"teacher {tcfg.run_id} .* is not stored"):
        rerun.stage_teacher(source, scratch, student)
    _save_fake(source, tcfg)
    weights = teacher_checkpoint_path(source, tcfg)
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    assert rerun.stage_teacher(source, scratch, student) == tcfg.run_id
    assert scratch.has(tcfg.run_id)
    assert teacher_checkpoint_path(scratch, tcfg).read_bytes() == b"weights"
    assert rerun.stage_teacher(source, scratch, RunConfig(**CFG)) is None  # no teacher


def test_rerun_refuses_what_it_cannot_recompute_here(tmp_path):
    source = ResultStore(tmp_path / "results")
    cfg = RunConfig(**CFG, seed=5)
    _save_fake(source, cfg, git={"commit": "unknown", "dirty": True},
               device_name="cpu (x86_64, 1 threads)")
    with pytest.raises(rerun.RerunError, match="records no commit \\(unknown\\)"):
        rerun.rerun(cfg.run_id, source, tmp_path / "scratch")
    if torch.cuda.is_available():
        return
    gpu = RunConfig(**{**CFG, "device": "cuda"}, seed=5)
    _save_fake(source, gpu, git={"commit": "abc1234"}, device_name="NVIDIA H100 80GB HBM3")
    with pytest.raises(rerun.RerunError, match="trained on NVIDIA H100 .* with a GPU"):
        rerun.rerun(gpu.run_id, source, tmp_path / "scratch")


def test_cli_rerun_exit_codes(tmp_path, capsys, monkeypatch):
    source = ResultStore(tmp_path)
    assert main(["rerun", "nope", "--results-dir", str(tmp_path)]) == 2
    assert "no stored run 'nope' under" in capsys.readouterr().err
    cfg = RunConfig(**CFG, seed=6)
    _save_fake(source, cfg)
    outcome = {"identical": False, "metrics_max_abs_diff": 0.002, "per_user_max_abs_diff": 1.0,
               "epochs_differ": 2, "commit": "abc1234", "stored_commit": "abc1234",
               "stored_device": ZEN3.format(1), "rerun_device": ZEN3.format(1)}
    monkeypatch.setattr(rerun, "rerun", lambda *a, **kw: outcome)
    assert main(["rerun", cfg.run_id, "--results-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "differs from the stored run: metrics by up to 0.002" in out and "2 selected" in out
    assert "rather than from the code" not in out  # same CPU: the difference is the code's
    outcome["stored_device"] = XEON.format(1)
    assert main(["rerun", cfg.run_id, "--results-dir", str(tmp_path)]) == 1
    assert "the stored run ran on Intel Xeon (family 6, model 207), this rerun on AMD EPYC " \
           "(family 25, model 1): a difference may come from" in capsys.readouterr().out
    outcome["identical"] = True
    assert main(["rerun", cfg.run_id, "--results-dir", str(tmp_path)]) == 0
    assert "repeats the stored run bit for bit" in capsys.readouterr().out
    other = RunConfig(**CFG, seed=7)
    _save_fake(source, other)
    outcomes = iter([dict(outcome), dict(outcome, identical=False)])
    monkeypatch.setattr(rerun, "rerun", lambda *a, **kw: next(outcomes))
    argv = ["rerun", cfg.run_id, other.run_id, "--results-dir", str(tmp_path)]
    assert main(argv) == 1  # one of two differs
    out = capsys.readouterr().out.splitlines()
    assert "repeats" in out[0] and out[1].startswith(f"{other.run_id} (stored at abc1234)")
    # an unknown id is refused before any run is recomputed (the fake would raise StopIteration)
    assert main(["rerun", cfg.run_id, "nope", "--results-dir", str(tmp_path)]) == 2
    assert "no stored run 'nope'" in capsys.readouterr().err
