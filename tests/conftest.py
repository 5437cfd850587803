"""Fixtures shared by the data tests."""

from __future__ import annotations

import pytest

from rdlib.data import mirror


@pytest.fixture
def isolated_mirror(monkeypatch, tmp_path):
    """No data root but an empty temporary shared mirror and download cache, and a fresh
    checksum cache: what a machine without ``../shared/data`` sees."""
    monkeypatch.delenv(mirror.ENV_VAR, raising=False)
    shared, cache = tmp_path / "shared", tmp_path / "cache"
    shared.mkdir()
    monkeypatch.setattr(mirror, "shared_data_dir", lambda: shared)
    monkeypatch.setattr(mirror, "download_root", lambda: cache)
    monkeypatch.setattr(mirror, "_verified", {})
    return {"shared": shared, "cache": cache, "tmp": tmp_path}
