"""rdlib.env: what a manifest records about the code and machine."""

from __future__ import annotations

import pytest

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
