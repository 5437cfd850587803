"""The dataset registry: ``data/registry.yaml`` parsed into :class:`DatasetSpec` objects.

One entry per dataset names where its files come from (repository, commit, raw URLs), the
sha256 and size of every file the loader reads (copied from the mirror's ``PROVENANCE.md``),
the file format, the preprocessing the papers' code applies (e.g. DE-RRD/HetComp keep the
CiteULike users with at least 5 items, one pass, items not filtered) and the statistics the
preprocessed data must have. :func:`rdlib.data.load_dataset` checks every load against them, so
a changed file or a changed rule cannot slip through unnoticed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from rdlib.data.derrd import convert_derrd_pickles
from rdlib.data.readers import FORMATS
from rdlib.data.types import DataError
from rdlib.paths import repo_root

__all__ = [
    "DERIVERS",
    "DatasetSpec",
    "ExpectedStats",
    "FileSpec",
    "Preprocessing",
    "SPLIT_TSV",
    "get_spec",
    "list_datasets",
    "load_registry",
    "registry_path",
]

SPLIT_TSV = "split_tsv"
"""Format of a dataset stored as a fixed train/valid/test split (read by ``read_split_tsv``)."""

_FILTER_MODES = ("one_pass", "iterative")

DERIVERS = {"derrd_pickles": convert_derrd_pickles}
"""``derive`` kinds: ``f(source_paths, output_paths)`` writes a dataset's ``files`` from its
downloaded ``sources`` (used only when no data root has the files)."""


@dataclass(frozen=True)
class FileSpec:
    """One file of a dataset: its path inside ``<mirror>/<name>/``, checksum, size, sources.

    ``urls`` are tried in order when downloading; an empty tuple means the file was derived in
    the mirror (e.g. the DE-RRD split converted from pickles to TSV): it cannot be downloaded
    itself, only re-derived from the dataset's ``sources`` when the dataset has a ``derive``.
    """

    path: str
    sha256: str
    bytes: int
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Preprocessing:
    """What :func:`rdlib.data.load_dataset` does after reading, in this order.

    ``min_rating`` keeps ratings at or above it; ``binarize`` then drops the rating values
    (every remaining row is a positive). ``min_user_interactions`` / ``min_item_interactions``
    drop users / items with fewer distinct items / users; ``filter`` is ``one_pass`` (users
    first, then items, each once; the DE-RRD/HetComp ``users.dat`` rule) or ``iterative``
    (repeat until stable: a k-core).
    """

    min_rating: float | None = None
    binarize: bool = False
    min_user_interactions: int | None = None
    min_item_interactions: int | None = None
    filter: str = "one_pass"

    def describe(self) -> str:
        parts = []
        if self.min_rating is not None:
            parts.append(f"rating >= {self.min_rating:g}")
        if self.binarize:
            parts.append("binarize")
        if self.min_user_interactions:
            parts.append(f"users >= {self.min_user_interactions}")
        if self.min_item_interactions:
            parts.append(f"items >= {self.min_item_interactions}")
        if self.min_user_interactions or self.min_item_interactions:
            parts.append(self.filter.replace("_", "-"))
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class ExpectedStats:
    """The statistics the preprocessed dataset must have (computed on the mirror, recorded)."""

    n_users: int
    n_items: int
    n_interactions: int


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset. ``files`` are exactly the files the loader reads (in order).

    ``derive`` (a key of :data:`DERIVERS`) with ``sources``: when no data root has ``files``,
    the ``sources`` are downloaded (sha256-verified) and ``files`` are written from them.
    """

    name: str
    format: str
    files: tuple[FileSpec, ...]
    expected: ExpectedStats
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    description: str = ""
    source: str = ""
    citation: str = ""
    used_by: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    split_dir: str | None = None
    derive: str | None = None
    sources: tuple[FileSpec, ...] = ()

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)


def registry_path() -> Path:
    """``data/registry.yaml`` of the repository, or ``$RDLIB_REGISTRY`` when set (tests)."""
    override = os.environ.get("RDLIB_REGISTRY")
    return Path(override) if override else repo_root() / "data" / "registry.yaml"


def _require(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise DataError(f"{where}: missing key {key!r}")
    return entry[key]


def _check_keys(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise DataError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _parse_file(entry: dict[str, Any], where: str) -> FileSpec:
    _check_keys(entry, {"path", "sha256", "bytes", "urls"}, where)
    sha = str(_require(entry, "sha256", where)).lower()
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise DataError(f"{where}: expected a 64-hex-digit sha256, found {sha!r}")
    return FileSpec(path=str(_require(entry, "path", where)), sha256=sha,
                    bytes=int(_require(entry, "bytes", where)),
                    urls=tuple(str(u) for u in entry.get("urls") or ()))


def _typed(value: Any, kind: type, key: str, where: str) -> Any:
    """``value`` as ``kind`` (``None`` stays ``None``); a wrong type is a DataError."""
    if value is None:
        return None
    if kind in (bool, str):
        ok = isinstance(value, kind)
    else:  # int / float: a YAML number, not a bool; an int must have no fraction
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and (kind is float or float(value).is_integer()))
    if not ok:
        raise DataError(f"{where}: {key} must be {kind.__name__}, found {value!r}")
    return kind(value)


_PREP_TYPES = {"min_rating": float, "binarize": bool, "min_user_interactions": int,
               "min_item_interactions": int, "filter": str}


def _parse_preprocessing(entry: dict[str, Any] | None, where: str) -> Preprocessing:
    entry = entry or {}
    _check_keys(entry, set(_PREP_TYPES), where)
    prep = Preprocessing(**{k: _typed(v, _PREP_TYPES[k], k, where) for k, v in entry.items()})
    if prep.filter not in _FILTER_MODES:
        raise DataError(f"{where}: filter must be one of {_FILTER_MODES}, found {prep.filter!r}")
    return prep


_SPEC_KEYS = {"format", "files", "expected", "preprocessing", "description", "source",
              "citation", "used_by", "notes", "split_dir", "derive", "sources"}


def _parse_spec(name: str, entry: dict[str, Any], where: str) -> DatasetSpec:
    where = f"{where}: dataset {name!r}"
    _check_keys(entry, _SPEC_KEYS, where)
    fmt = str(_require(entry, "format", where))
    if fmt not in (*FORMATS, SPLIT_TSV):
        raise DataError(f"{where}: unknown format {fmt!r}; expected one of "
                        f"{', '.join((*FORMATS, SPLIT_TSV))}")
    files = tuple(_parse_file(f, f"{where} file {i}")
                  for i, f in enumerate(_require(entry, "files", where)))
    if not files:
        raise DataError(f"{where}: expected at least one file")
    exp = _require(entry, "expected", where)
    _check_keys(exp, set(ExpectedStats.__dataclass_fields__), f"{where} expected")
    expected = ExpectedStats(**{k: int(_require(exp, k, f"{where} expected"))
                                for k in ExpectedStats.__dataclass_fields__})
    if fmt == SPLIT_TSV and not entry.get("split_dir"):
        raise DataError(f"{where}: format {SPLIT_TSV} needs 'split_dir'")
    derive = entry.get("derive")
    sources = tuple(_parse_file(f, f"{where} source {i}")
                    for i, f in enumerate(entry.get("sources") or ()))
    if derive is not None and derive not in DERIVERS:
        raise DataError(f"{where}: unknown derive {derive!r}; expected one of {sorted(DERIVERS)}")
    if bool(derive) != bool(sources):
        raise DataError(f"{where}: 'derive' and 'sources' must be given together")
    return DatasetSpec(
        name=name, format=fmt, files=files, expected=expected,
        preprocessing=_parse_preprocessing(entry.get("preprocessing"), f"{where} preprocessing"),
        description=str(entry.get("description", "")).strip(),
        source=str(entry.get("source", "")).strip(),
        citation=str(entry.get("citation", "")).strip(),
        used_by=tuple(entry.get("used_by") or ()), notes=tuple(entry.get("notes") or ()),
        split_dir=entry.get("split_dir"), derive=derive, sources=sources)


@lru_cache(maxsize=4)
def _load(path: Path) -> dict[str, DatasetSpec]:
    if not path.is_file():
        raise DataError(f"{path}: dataset registry not found")
    try:
        with path.open(encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets"), dict):
        raise DataError(f"{path}: expected a mapping with a 'datasets' mapping at the top")
    return {name: _parse_spec(name, entry, str(path)) for name, entry in doc["datasets"].items()}


def load_registry(path: Path | None = None) -> dict[str, DatasetSpec]:
    """All registered datasets by name (parsed and validated once per file and process)."""
    return _load((path or registry_path()).resolve())


def list_datasets() -> list[str]:
    """Registered dataset names, in registry order."""
    return list(load_registry())


def get_spec(name: str) -> DatasetSpec:
    """The spec of ``name``; an unknown name is a DataError listing the known ones."""
    registry = load_registry()
    try:
        return registry[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known datasets: "
                        f"{', '.join(registry)}") from None
