"""Convert the DE-RRD authors' leave-one-out pickles into the ``derrd/*.tsv`` split files.

``SeongKu-Kang/DE-RRD_CIKM20`` ships its CiteULike split as Python pickles (protocol 3):
``train_mat_0`` is ``dict[user] -> dict[item] -> 1``, ``valid_sample_0`` / ``test_sample_0`` are
``dict[user] -> item``. The shared mirror holds them converted to TSV; on a machine without the
mirror :func:`rdlib.data.mirror.download_dataset` downloads the pickles (sha256-verified against
the registry) and calls :func:`convert_derrd_pickles`, which writes byte-identical TSV files
(header ``user_id<TAB>item_id``, rows sorted by user, then item, ``\\n`` line ends).

Why a restricted unpickler: unpickling runs code. Every way a pickle can call something
(``REDUCE``, ``BUILD``, ``INST``, ``OBJ``, ``NEWOBJ``, ``EXT*``) needs a callable, and the only
way to get one is through ``Unpickler.find_class`` (opcodes ``GLOBAL`` / ``STACK_GLOBAL`` /
``EXT*``). :class:`_NoGlobalsUnpickler` makes ``find_class`` always raise, so only builtin
containers and scalars (dict, list, tuple, int, str, ...) can be built and no code can run,
even if a file were tampered with (it is also sha256-checked before it is read). The real
files contain only ``dict`` / ``tuple`` / ``int`` opcodes (see the mirror's ``PROVENANCE.md``).
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path

from rdlib.data.types import DataError

__all__ = ["HEADER", "convert_derrd_pickles", "load_pickle_restricted", "read_pairs",
           "read_train", "write_pairs_tsv"]

HEADER = "user_id\titem_id\n"


class _NoGlobalsUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global (class, function), naming the file."""

    def __init__(self, fh: io.BufferedIOBase, path: Path) -> None:
        super().__init__(fh)
        self._path = path

    def find_class(self, module: str, name: str):  # noqa: ANN201 - never returns
        raise DataError(f"{self._path}: pickle references the global {module}.{name}; refused "
                        f"(only builtin dict / tuple / int data is allowed, no code is ever run)")


def load_pickle_restricted(path: str | os.PathLike) -> object:
    """Unpickle ``path`` without ever resolving a global; any failure is a DataError."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            return _NoGlobalsUnpickler(fh, path).load()
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - a corrupt pickle can raise almost anything
        raise DataError(f"{path}: not a readable pickle: {type(e).__name__}: {e}") from e


def _is_id(x: object) -> bool:
    return type(x) is int and x >= 0  # exactly int: no bool, no int subclass


def _bad(path: Path, expected: str, found: str) -> DataError:
    return DataError(f"{path}: expected {expected}; found {found}")


def read_train(path: str | os.PathLike) -> list[tuple[int, int]]:
    """``(user, item)`` pairs of a ``dict[user] -> dict[item] -> int`` pickle, sorted."""
    path = Path(path)
    obj = load_pickle_restricted(path)
    expected = "dict[int user] -> dict[int item] -> int (DE-RRD train_mat)"
    if type(obj) is not dict:
        raise _bad(path, expected, f"a {type(obj).__name__}")
    pairs = []
    for user, items in obj.items():
        if not _is_id(user):
            raise _bad(path, expected, f"user key {user!r} ({type(user).__name__})")
        if type(items) is not dict:
            raise _bad(path, expected, f"a {type(items).__name__} for user {user}")
        for item, value in items.items():
            if not _is_id(item) or type(value) is not int:
                raise _bad(path, expected,
                           f"entry {item!r}: {value!r} ({type(item).__name__}: "
                           f"{type(value).__name__}) for user {user}")
            pairs.append((user, item))
    return sorted(pairs)


def read_pairs(path: str | os.PathLike) -> list[tuple[int, int]]:
    """``(user, item)`` pairs of a ``dict[user] -> item`` pickle, sorted by user."""
    path = Path(path)
    obj = load_pickle_restricted(path)
    expected = "dict[int user] -> int item (DE-RRD valid/test sample)"
    if type(obj) is not dict:
        raise _bad(path, expected, f"a {type(obj).__name__}")
    for user, item in obj.items():
        if not _is_id(user) or not _is_id(item):
            raise _bad(path, expected, f"entry {user!r}: {item!r} "
                                       f"({type(user).__name__}: {type(item).__name__})")
    return sorted(obj.items())


def write_pairs_tsv(pairs: Iterable[tuple[int, int]], dest: str | os.PathLike) -> None:
    """Write ``user_id<TAB>item_id`` rows after the header, atomically (via ``dest.part``)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    text = HEADER + "".join(f"{u}\t{i}\n" for u, i in pairs)
    part.write_bytes(text.encode("ascii"))
    part.replace(dest)


def convert_derrd_pickles(sources: Sequence[str | os.PathLike],
                          outputs: Sequence[str | os.PathLike]) -> None:
    """Write ``outputs`` (train, valid, test TSV) from ``sources`` (train_mat, valid_sample,
    test_sample pickles). All three pickles are read and checked before anything is written."""
    if len(sources) != 3 or len(outputs) != 3:
        raise DataError(f"derrd_pickles needs 3 sources and 3 outputs (train, valid, test); "
                        f"found {len(sources)} and {len(outputs)}")
    splits = [read_train(sources[0]), read_pairs(sources[1]), read_pairs(sources[2])]
    for pairs, dest in zip(splits, outputs, strict=True):
        write_pairs_tsv(pairs, dest)
