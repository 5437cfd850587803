"""Where a dataset's files are: resolution, checksum verification and download.

Resolution order for a dataset ``name`` (each candidate is a *mirror root* that holds
``<root>/<name>/``; the first root that has all registered files wins):

1. the explicit ``data_dir`` argument (``--data-dir`` on the command line);
2. the ``RDLIB_DATA_DIR`` environment variable;
3. ``<repo_root>/../shared/data`` when it exists (the project's read-only mirror);
4. ``<repo_root>/data/raw`` (git-ignored download cache); when no root has the dataset its
   files are downloaded there from the upstream URLs in ``data/registry.yaml``. A dataset with
   ``derive`` (the DE-RRD split) has its ``sources`` downloaded there instead (e.g. the authors'
   pickles, sha256-verified) and its files written from them (:mod:`rdlib.data.derrd`).

Falling through to the next root is safe because every file actually used is verified against
the registry's sha256, whichever root it comes from: a wrong checksum is a DataError (naming
the file, expected and actual hash), never a silent fallback. Verification is cached per
process (keyed by path, size and modification time) so repeated loads stay fast.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from rdlib.data.registry import DERIVERS, DatasetSpec, FileSpec, get_spec
from rdlib.data.types import DataError
from rdlib.paths import repo_root

__all__ = [
    "ENV_VAR",
    "candidate_roots",
    "download_dataset",
    "download_root",
    "fetch",
    "has_dataset",
    "locate_dataset",
    "resolve_dataset_dir",
    "sha256_file",
    "shared_data_dir",
    "verify_dataset_files",
]

ENV_VAR = "RDLIB_DATA_DIR"
_CHUNK = 1 << 20

_verified: dict[tuple[str, int, int], str] = {}


def shared_data_dir() -> Path:
    """The project's shared mirror, ``<repo_root>/../shared/data``."""
    return repo_root().parent / "shared" / "data"


def download_root() -> Path:
    """Where downloads go: ``<repo_root>/data/raw`` (git-ignored)."""
    return repo_root() / "data" / "raw"


def candidate_roots(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """Mirror roots to search, in order, each with a label saying where it came from."""
    roots: list[tuple[str, Path]] = []
    if data_dir is not None:
        roots.append(("data_dir", Path(data_dir)))
    env = os.environ.get(ENV_VAR)
    if env:
        roots.append((ENV_VAR, Path(env)))
    shared = shared_data_dir()
    if shared.is_dir():
        roots.append(("shared", shared))
    roots.append(("download cache", download_root()))
    return roots


def has_dataset(root: Path, spec: DatasetSpec) -> bool:
    """Whether ``<root>/<name>/`` holds every file the registry lists for the dataset."""
    folder = root / spec.name
    return all((folder / f.path).is_file() for f in spec.files)


def locate_dataset(name: str, data_dir: str | os.PathLike | None = None
                   ) -> tuple[str, Path] | None:
    """``(label, <root>/<name>)`` of the first root that has the dataset, without verifying or
    downloading anything; ``None`` when no root has it."""
    spec = get_spec(name)
    for label, root in candidate_roots(data_dir):
        if has_dataset(root, spec):
            return label, root / name
    return None


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _verify_file(path: Path, spec: FileSpec) -> None:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    actual = _verified.get(key)
    if actual is None:
        actual = sha256_file(path)
        _verified[key] = actual
    if actual != spec.sha256:
        raise DataError(f"{path}: sha256 mismatch: expected {spec.sha256}, found {actual} "
                        f"(the registry in data/registry.yaml and the file disagree; "
                        f"re-fetch the file or fix the mirror)")


def verify_dataset_files(folder: Path, spec: DatasetSpec) -> None:
    """Check every registered file of ``spec`` in ``folder`` against its sha256."""
    for f in spec.files:
        path = folder / f.path
        if not path.is_file():
            raise DataError(f"{path}: file not found (registered file of dataset {spec.name!r})")
        _verify_file(path, f)


def fetch(url: str, dest: Path) -> None:
    """Stream ``url`` into ``dest`` with a tqdm progress bar (the only function that touches
    the network, so tests replace it)."""
    import requests
    from tqdm.auto import tqdm

    with requests.get(url, stream=True, timeout=60) as resp:
        resp.raise_for_status()
        total = int(resp.headers.get("content-length", 0)) or None
        with dest.open("wb") as fh, tqdm(total=total, unit="B", unit_scale=True,
                                          desc=dest.name, leave=False) as bar:
            for chunk in resp.iter_content(chunk_size=_CHUNK):
                fh.write(chunk)
                bar.update(len(chunk))


def _download_file(f: FileSpec, dest: Path, name: str) -> None:
    """Fetch one file from its first working URL into ``dest`` (via ``dest.part``), verified.

    ``fetch`` is looked up in this module at call time, so tests replace it with a fake.
    """
    if not f.urls:
        raise DataError(f"{dest}: no upstream URL for this file of dataset {name!r} (it was "
                        f"derived in the shared mirror, see its PROVENANCE.md); point "
                        f"{ENV_VAR} or --data-dir at a mirror that has it")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors = []
    for url in f.urls:
        try:
            fetch(url, part)
        except (OSError, RuntimeError, ValueError) as e:  # requests errors derive from OSError
            errors.append(f"{url}: {e}")
            part.unlink(missing_ok=True)
            continue
        actual = sha256_file(part)
        if actual != f.sha256:
            part.unlink(missing_ok=True)
            raise DataError(f"{dest}: sha256 mismatch for the download from {url}: expected "
                            f"{f.sha256}, found {actual}")
        shutil.move(part, dest)
        return
    raise DataError(f"{dest}: download failed from every URL: " + "; ".join(errors))


def _is_current(dest: Path, f: FileSpec) -> bool:
    return dest.is_file() and sha256_file(dest) == f.sha256


def download_dataset(name: str, root: Path | None = None) -> Path:
    """Download the registered files of ``name`` into ``<root>/<name>/`` (default root:
    :func:`download_root`), skipping files already there with the right checksum.

    A dataset with ``derive`` gets its ``sources`` downloaded (same checks) and its files
    written from them by ``DERIVERS[spec.derive]``, then verified against the registry.
    """
    spec = get_spec(name)
    folder = (root or download_root()) / name
    todo = [f for f in spec.files if not _is_current(folder / f.path, f)]
    if todo and spec.derive:
        for s in spec.sources:
            if not _is_current(folder / s.path, s):
                _download_file(s, folder / s.path, name)
        DERIVERS[spec.derive]([folder / s.path for s in spec.sources],
                              [folder / f.path for f in spec.files])
        verify_dataset_files(folder, spec)
        return folder
    for f in todo:
        _download_file(f, folder / f.path, name)
    return folder


def resolve_dataset_dir(name: str, data_dir: str | os.PathLike | None = None, *,
                        download: bool = True, verify: bool = True) -> Path:
    """The verified folder ``<root>/<name>/`` of a dataset (see the module doc for the order).

    Downloads into ``<repo_root>/data/raw/<name>/`` when no root has it (``download=False``
    raises instead).
    """
    spec = get_spec(name)
    found = locate_dataset(name, data_dir)
    if found is None:
        if not download:
            tried = ", ".join(f"{label} {root}" for label, root in candidate_roots(data_dir))
            raise DataError(f"dataset {name!r} not found under any data root ({tried}); "
                            f"expected files: {', '.join(f.path for f in spec.files)}")
        folder = download_dataset(name)
    else:
        folder = found[1]
    if verify:
        verify_dataset_files(folder, spec)
    return folder
