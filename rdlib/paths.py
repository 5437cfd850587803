"""Repository-relative paths, so notebooks work whatever folder papermill or jupyter-book runs in."""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The repository root: the folder that holds ``pyproject.toml`` above this package."""
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "pyproject.toml").is_file() and (candidate / "rdlib").is_dir():
            return candidate
    raise RuntimeError(f"cannot find the rdlib repository root above {here}")


def results_root() -> Path:
    """Where result rows, per-user values and manifests are stored (committed)."""
    return repo_root() / "results"


def relpath(path: Path | str) -> str:
    """``path`` relative to the repository root when inside it, so no machine path leaks out."""
    p = Path(path).resolve()
    try:
        return p.relative_to(repo_root()).as_posix()
    except ValueError:
        return p.name
