"""The data layer: readers for the raw formats, the dataset registry, mirror resolution and
download, and ``load_dataset`` (read + the papers' preprocessing + statistics check).

Typical use::

    from rdlib.data import load_dataset
    inter = load_dataset("citeulike-t")   # 5,219 users, 25,181 items, 125,580 interactions

See ``data/registry.yaml`` for the registered datasets and ``shared/data/*/PROVENANCE.md`` for
where each file comes from.
"""

from rdlib.data.datasets import (
    apply_preprocessing,
    check_expected,
    dataset_stats,
    load_dataset,
    split_to_interactions,
)
from rdlib.data.mirror import (
    download_dataset,
    locate_dataset,
    resolve_dataset_dir,
    sha256_file,
    verify_dataset_files,
)
from rdlib.data.readers import (
    FORMATS,
    read_checkins,
    read_citeulike,
    read_csv,
    read_file,
    read_inter,
    read_lightgcn,
    read_sequences,
    read_split_tsv,
)
from rdlib.data.registry import DatasetSpec, get_spec, list_datasets, load_registry
from rdlib.data.types import DataError, Interactions

__all__ = [
    "FORMATS",
    "DataError",
    "DatasetSpec",
    "Interactions",
    "apply_preprocessing",
    "check_expected",
    "dataset_stats",
    "download_dataset",
    "get_spec",
    "list_datasets",
    "load_dataset",
    "load_registry",
    "locate_dataset",
    "read_checkins",
    "read_citeulike",
    "read_csv",
    "read_file",
    "read_inter",
    "read_lightgcn",
    "read_sequences",
    "read_split_tsv",
    "resolve_dataset_dir",
    "sha256_file",
    "split_to_interactions",
    "verify_dataset_files",
]
