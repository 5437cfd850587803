"""rdlib.env: what a manifest records about the code and machine."""

from __future__ import annotations

import os
import subprocess

import pytest
import torch

from rdlib import env


def test_git_state_reads_the_commit_from_the_environment_without_dot_git(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "repo_root", lambda: tmp_path)  # a copied tree: no .git
    monkeypatch.setenv("RDLIB_GIT_COMMIT", "abc123")
    monkeypatch.delenv("RDLIB_GIT_DIRTY", raising=False)
    assert env.git_state() == {"commit": "abc123", "dirty": False}
    monkeypatch.setenv("RDLIB_GIT_DIRTY", "1")
    assert env.git_state() == {"commit": "abc123", "dirty": True}


def test_git_state_is_unknown_and_dirty_without_git_or_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(env, "repo_root", lambda: tmp_path)
    monkeypatch.delenv("RDLIB_GIT_COMMIT", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert env.git_state() == {"commit": "unknown", "dirty": True}


def test_git_state_is_dirty_for_changed_code_not_for_changed_outputs(tmp_path, monkeypatch):
    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                       check=True, capture_output=True)
    for path in ("rdlib/code.py", "results/runs/r1/manifest.json", "book/page.ipynb",
                 "benchmarks/results/bench.csv"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("v1")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "v1")
    monkeypatch.setattr(env, "repo_root", lambda: tmp_path)
    assert env.git_state()["dirty"] is False
    # a teacher restore appends to its manifest; the book is re-executed
    (tmp_path / "results/runs/r1/manifest.json").write_text("v2")
    (tmp_path / "book/page.ipynb").write_text("v2")
    (tmp_path / "results/runs/r2").mkdir()  # an untracked run: never counted
    (tmp_path / "results/runs/r2/manifest.json").write_text("v1")
    (tmp_path / "rdlib/new.py").write_text("v1")  # untracked code is not counted either
    assert env.git_state()["dirty"] is False
    (tmp_path / "benchmarks/results/bench.csv").write_text("v2")  # a benchmark's new rows
    assert env.git_state()["dirty"] is False and env.code_changes() == []
    (tmp_path / "rdlib/code.py").write_text("v2")
    assert env.git_state()["dirty"] is True and env.code_changes() == ["rdlib/code.py"]


def test_next_code_commit_skips_output_commits_and_names_the_code_it_changed(tmp_path,
                                                                             monkeypatch):
    def commit(when, **files):
        for path, text in files.items():
            (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path).write_text(text)
        stamp = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        for args in (["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q",
                                    "-m", when]):
            subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                           env={**os.environ, **stamp})
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    commit("2026-01-01T10:00:00+00:00", **{"rdlib/a.py": "v1"})
    commit("2026-01-01T11:00:00+00:00", **{"results/runs/r1/manifest.json": "{}"})  # output
    commit("2026-01-01T12:00:00+00:00", **{"rdlib/a.py": "v2", "results/x.csv": "1",
                                           "notebooks/n.ipynb": "{}"})
    monkeypatch.setattr(env, "repo_root", lambda: tmp_path)
    found = env.next_code_commit("2026-01-01T10:30:00+00:00")
    assert found is not None and found["committed_at"] == "2026-01-01T12:00:00+00:00"
    assert found["paths"] == "notebooks/n.ipynb, rdlib/a.py"  # outputs left out
    # the same instant in another zone; at the commit's own second it is that commit
    assert env.next_code_commit("2026-01-01T13:30:00+02:00")["committed_at"].startswith(
        "2026-01-01T12")
    assert env.next_code_commit("2026-01-01T12:00:00+00:00")["paths"].endswith("rdlib/a.py")
    assert env.next_code_commit("2026-01-01T12:00:01+00:00") is None
    monkeypatch.setattr(env, "repo_root", lambda: tmp_path / "nowhere")  # no git: None
    assert env.next_code_commit("2026-01-01T10:30:00+00:00") is None


def test_git_state_prefers_git_where_the_tree_has_it(monkeypatch):
    monkeypatch.setenv("RDLIB_GIT_COMMIT", "not-this")
    state = env.git_state()
    assert state["commit"] != "not-this" and len(state["commit"]) == 40


def test_determinism_flags_record_whether_denormals_are_flushed():
    import torch

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    try:
        assert env.flush_denormal_enabled()
        assert env.determinism_flags()["flush_denormal"] is True
        assert float(torch.full((1,), 1e-39) * 1.0) == 0.0  # what the flag means
    finally:
        torch.set_flush_denormal(False)
    assert not env.flush_denormal_enabled()
    assert env.determinism_flags()["flush_denormal"] is False
    assert float(torch.full((1,), 1e-39) * 1.0) > 0.0


@pytest.mark.parametrize("outside", [False, True])
def test_denormals_flushed_sets_the_block_and_restores_the_thread(outside):
    import torch

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(outside)
    try:
        with env.denormals_flushed(not outside):
            assert env.flush_denormal_enabled() is (not outside)
        assert env.flush_denormal_enabled() is outside
        with pytest.raises(KeyError), env.denormals_flushed(not outside):
            raise KeyError("an error inside the block")
        assert env.flush_denormal_enabled() is outside  # restored on the way out, too
    finally:
        torch.set_flush_denormal(False)


def test_set_flush_denormal_raises_where_the_cpu_cannot_flush(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "set_flush_denormal", lambda on: False)  # a CPU without SSE3
    with pytest.raises(RuntimeError, match="cannot flush denormals.*SSE3"):
        env.set_flush_denormal(True)
    with pytest.raises(RuntimeError, match="SSE3"), env.denormals_flushed(True):
        pass
    env.set_flush_denormal(False)  # turning it off needs no SSE3
    with env.denormals_flushed(False):
        pass


CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 1
model name\t: AMD EPYC
flags\t\t: fpu avx2

processor\t: 1
cpu family\t: 25
model\t\t: 17
model name\t: Some Other CPU
"""


def test_cpu_model_reads_the_first_processor_with_its_family_and_model():
    assert env.cpu_model(CPUINFO) == "AMD EPYC (family 23, model 1)"


def test_cpu_model_without_family_numbers_is_the_name_alone():
    assert env.cpu_model("model name\t: Neoverse-N1\n") == "Neoverse-N1"


def test_cpu_device_name_names_the_cpu_its_vector_unit_and_threads(monkeypatch):
    monkeypatch.setattr(env, "cpu_model", lambda: "AMD EPYC (family 23, model 1)")
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    monkeypatch.setattr(env.platform, "machine", lambda: "x86_64")
    assert env.device_name("cpu") == "cpu (AMD EPYC (family 23, model 1), AVX2, x86_64, 3 threads)"


def test_require_committed_code_names_the_changed_files_and_the_way_around(monkeypatch):
    monkeypatch.setattr(env, "code_git_state", lambda: {"commit": "b" * 40, "dirty": False})
    monkeypatch.setattr(env, "code_changes", lambda: ["rdlib/x.py"])  # not consulted: clean
    env.require_committed_code("pass --allow-dirty")  # a clean tree trains
    monkeypatch.setattr(env, "code_git_state", lambda: {"commit": "b" * 40, "dirty": True})
    with pytest.raises(env.UncommittedCode) as err:
        env.require_committed_code("pass -p allow_dirty True")
    msg = str(err.value)
    assert msg.startswith("the code differs from commit bbbbbbbbbb (rdlib/x.py)")
    assert msg.endswith("or pass -p allow_dirty True to train anyway with the run marked dirty")
    monkeypatch.setattr(env, "code_changes", lambda: [])  # dirty by $RDLIB_GIT_DIRTY, no .git
    with pytest.raises(env.UncommittedCode, match="RDLIB_GIT_DIRTY or a missing .git says so"):
        env.require_committed_code("pass --allow-dirty")


def test_code_git_state_keeps_the_commit_the_process_started_with(monkeypatch):
    """A commit made while a long process trains is not the code of its later runs."""
    states = iter([{"commit": "imported", "dirty": False}, {"commit": "later", "dirty": False}])
    monkeypatch.setattr(env, "git_state", lambda: next(states))
    env.code_git_state.cache_clear()
    try:
        assert env.code_git_state()["commit"] == "imported"
        assert env.code_git_state()["commit"] == "imported"  # not "later"
    finally:
        env.code_git_state.cache_clear()


@pytest.mark.parametrize("name,short", [
    ("cpu (AMD EPYC (family 25, model 17), AVX512, x86_64, 1 threads)",
     "AMD EPYC (family 25, model 17)"),
    ("cpu (Intel(R) Xeon(R) Processor (family 6, model 207), AVX512, x86_64, 2 threads)",
     "Intel(R) Xeon(R) Processor (family 6, model 207)"),
    ("cpu (x86_64, 2 threads)", "CPU (model not recorded)"),
    ("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"),
])
def test_short_device_name_keeps_what_tells_machines_apart(name, short):
    assert env.short_device_name(name) == short


def test_short_device_name_reads_this_machines_name():
    assert env.short_device_name(env.device_name("cpu")) in (
        env.cpu_model(), "CPU (model not recorded)")


def test_keep_freed_memory_says_what_the_allocator_does_and_can_be_turned_off(monkeypatch):
    """glibc gets the 1 GiB thresholds (once per process: the answer is cached); elsewhere, or
    with RDLIB_MALLOC_DEFAULT=1, the default allocator is kept and the reason recorded."""
    import platform

    env.keep_freed_memory.cache_clear()
    monkeypatch.setenv("RDLIB_MALLOC_DEFAULT", "1")
    assert env.keep_freed_memory() == "default (RDLIB_MALLOC_DEFAULT=1)"
    monkeypatch.delenv("RDLIB_MALLOC_DEFAULT")
    assert env.keep_freed_memory().startswith("default")  # cached: this process was not changed
    env.keep_freed_memory.cache_clear()
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", ""))
    assert env.keep_freed_memory() == "default (not glibc)"
    env.keep_freed_memory.cache_clear()
    monkeypatch.undo()
    if platform.libc_ver()[0] == "glibc":
        assert env.keep_freed_memory() == "glibc, mmap and trim thresholds 1 GiB"
    env.keep_freed_memory.cache_clear()


def test_a_run_records_its_allocator_in_the_manifest_and_its_segment(tmp_path):
    from rdlib.config import RunConfig
    from rdlib.experiments import run_experiment
    from rdlib.results import ResultStore

    store = ResultStore(tmp_path)
    cfg = RunConfig(dataset="synthetic", protocol="loo_sampled", dim=4, epochs=1, batch_size=256,
                    n_eval_negatives=20, progress=False)
    m = store.manifest(run_experiment(cfg, store=store))
    assert m["allocator"] == env.keep_freed_memory()
    assert m["segments"][0]["allocator"] == m["allocator"]
