"""Readers for the raw file formats of the datasets the three papers (and our substitutes) use.

Every reader returns an :class:`~rdlib.data.types.Interactions` with the raw ids kept as text
(``user_ids`` / ``item_ids``) and contiguous indices assigned **in order of first appearance**
while scanning the file(s): users in file order, items in the order they are first met. This is
the id mapping of the DE-RRD (CIKM'20) and HetComp (WWW'23) loaders for ``users.dat``, so our
indices for CiteULike equal theirs (see ``citeulike-t-derrd-loo/PROVENANCE.md``). Rows keep the
file order. No preprocessing (filters, binarisation) happens here; that is
:mod:`rdlib.data.datasets`' job, driven by ``data/registry.yaml``.

Duplicated (user, item) pairs are dropped and counted in ``notes``: the earliest occurrence is
kept (earliest timestamp where the format has time, else the first in the file). Bad input
never passes silently: a missing or empty file, a line with the wrong number of fields, a
non-integer id where the format requires one, or a ``users.dat`` count that does not match its
line all raise :class:`~rdlib.data.types.DataError` naming the file, the 1-based line and what
was expected.

Formats (``read_file(path, fmt)``):

``citeulike``
    ``users.dat`` of citeulike-t (Wang et al. IJCAI'13) and ``foursquare-vldb17``: line ``k``
    (0-based) is user ``k``; each line is ``n i_1 ... i_n``.
``inter``
    RecBole atomic ``.inter`` file: TSV with a typed header ``user_id:token item_id:token ...``.
``lightgcn``
    NGCF/LightGCN ``train.txt``/``test.txt``: ``user item item ...``; several files (train and
    test) may form one dataset.
``sequences``
    S3-Rec/ICLRec ``Beauty.txt``/``Yelp.txt``: ``user item item ...`` in time order; the
    position within the user's sequence (0, 1, 2, ...) is stored as the timestamp.
``checkins``
    VLDB'17 LBSN check-ins ``user poi unix_time`` (tab separated), one row per check-in; repeat
    check-ins of a pair are merged into one row at the first check-in time.
``csv``
    Generic ``user,item[,rating][,timestamp]``, comma, tab or whitespace separated, optional
    header (e.g. the DMF Amazon Digital Music file ``user item rating timestamp``).

:func:`read_split_tsv` reads the DE-RRD authors' leave-one-out split as converted to TSV in
``citeulike-t-derrd-loo/derrd/`` (written from the original pickles by :mod:`rdlib.data.derrd`,
with a restricted unpickler, when no mirror has them).
"""

from __future__ import annotations

import csv as _csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from rdlib.data.types import DataError, Interactions

__all__ = [
    "FORMATS",
    "read_file",
    "read_citeulike",
    "read_inter",
    "read_lightgcn",
    "read_sequences",
    "read_checkins",
    "read_csv",
    "read_split_tsv",
]

PathLike = str | os.PathLike
Paths = PathLike | Sequence[PathLike]

_INT_RE = r"[0-9]+"
_ROLE_NAMES = {
    "user": {"user", "users", "user_id", "userid", "uid", "reviewerid"},
    "item": {"item", "items", "item_id", "itemid", "iid", "poi", "poi_id", "asin"},
    "rating": {"rating", "ratings", "score"},
    "timestamp": {"timestamp", "time", "ts", "unixreviewtime"},
}
_HEADER_WORDS = set().union(*_ROLE_NAMES.values())
_CSV_ROLES = ("user", "item", "rating", "timestamp")


# --------------------------------------------------------------------------------------------
# raw rows, before indexing
# --------------------------------------------------------------------------------------------

@dataclass
class _Raw:
    """Parsed rows of one or more files, raw ids not yet indexed.

    ``users``/``items`` are int64 for formats whose ids must be integers, object (text)
    otherwise. ``notes`` collects what the parser skipped.
    """

    users: np.ndarray
    items: np.ndarray
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)

    @staticmethod
    def concat(parts: Sequence[_Raw], paths: Sequence[Path]) -> _Raw:
        """Rows of several files, in the order given (e.g. LightGCN train then test)."""
        if len(parts) == 1:
            return parts[0]

        def cat(attr: str) -> np.ndarray | None:
            arrays = [getattr(p, attr) for p in parts]
            if all(a is None for a in arrays):
                return None
            if any(a is None for a in arrays):
                have = [str(p) for p, a in zip(paths, arrays, strict=True) if a is not None]
                raise DataError(f"{', '.join(map(str, paths))}: expected the same columns in "
                                f"every file, found {attr} only in {', '.join(have)}")
            if any(a.dtype == object for a in arrays):
                arrays = [a.astype(str).astype(object) for a in arrays]
            return np.concatenate(arrays)

        notes = [n for p in parts for n in p.notes]
        return _Raw(cat("users"), cat("items"), cat("timestamps"), cat("ratings"), notes)


def _as_paths(paths: Paths) -> list[Path]:
    if isinstance(paths, str | os.PathLike):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise DataError("no input file given")
    return out


def _read_bytes(path: Path, what: str) -> bytes:
    """The file's bytes; a missing or empty (whitespace-only) file is a DataError."""
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected {what})")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path}: empty file (expected {what})")
    return raw


def _read_lines(path: Path, what: str) -> list[str]:
    """Lines of a text file without their terminators (``\\n`` or ``\\r\\n``)."""
    raw = _read_bytes(path, what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text at byte {e.start} (expected {what})") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln.rstrip("\r") for ln in lines]


def _is_uint(token: str) -> bool:
    return token.isascii() and token.isdigit()


def _check_uint_tokens(tokens: Sequence[str], path: Path, lineno: int, what: str) -> None:
    """All tokens are non-negative decimal integers (one string test per line, not per token)."""
    joined = "".join(tokens)
    if joined.isascii() and joined.isdigit():
        return
    bad = next(t for t in tokens if not _is_uint(t))
    raise DataError(f"{path}: line {lineno}: expected {what} as non-negative integers, "
                    f"found {bad!r}")


def _to_int64(tokens: Sequence[str] | np.ndarray, path: Path) -> np.ndarray:
    """Validated decimal tokens as int64 (an id beyond 64 bits is a DataError)."""
    if len(tokens) == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        return np.asarray(tokens, dtype=object).astype(np.int64)
    except OverflowError as e:
        raise DataError(f"{path}: an id does not fit in a 64-bit integer") from e


# --------------------------------------------------------------------------------------------
# tabular files: vectorised field counting + pandas parsing
# --------------------------------------------------------------------------------------------

@dataclass
class _Table:
    """Data rows of a delimited file as text columns, with each row's 1-based line number."""

    columns: list[np.ndarray]
    lines: np.ndarray
    header: list[str] | None
    blank: int


def _sniff_sep(first_line: bytes) -> str | None:
    """Comma if the first line has one, else tab, else runs of whitespace."""
    if b"," in first_line:
        return ","
    if b"\t" in first_line:
        return "\t"
    return None


def _line_bounds(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start (inclusive) and end (exclusive) byte offsets of every line."""
    nl = np.flatnonzero(buf == 10)
    ends = nl if buf.size and buf[-1] == 10 else np.append(nl, buf.size)
    starts = np.concatenate(([0], nl + 1))[: ends.size]
    return starts, ends


def _per_line(mask: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    cs = np.concatenate(([0], np.cumsum(mask, dtype=np.int64)))
    return cs[ends] - cs[starts]


_SPACE_BYTES = np.frombuffer(b" \t\r\n\x0b\x0c", dtype=np.uint8)


def _field_counts(buf: np.ndarray, space: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                  sep: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Number of fields on every line and whether the line is blank, without a Python loop.

    With a single-character separator a non-blank line has ``#sep + 1`` fields; with runs of
    whitespace it has as many fields as tokens.
    """
    blank = _per_line(~space, starts, ends) == 0
    if sep is None:
        prev_space = np.concatenate(([True], space[:-1]))
        counts = _per_line(~space & prev_space, starts, ends)
    else:
        counts = _per_line(buf == ord(sep), starts, ends) + 1
    return np.where(blank, 0, counts), blank


def _allowed_counts(first_count: int, n_fields: Sequence[int]) -> list[int]:
    """The field counts every data line must have: the first data line fixes it when several
    are allowed (a file has one layout), so a later 3-field line in a 4-field file is an error."""
    if len(n_fields) > 1 and first_count in n_fields:
        return [first_count]
    return list(n_fields)


_SNIFF = "sniff"
_SEP_NAMES = {None: "whitespace", "\t": "tab", ",": "comma"}


def _check_field_counts(path: Path, what: str, sep: str | None, counts: np.ndarray,
                        data_idx: np.ndarray, expected: Sequence[int]) -> None:
    """Every data line has an allowed number of fields, else a DataError naming the line."""
    want = _allowed_counts(int(counts[data_idx[0]]), expected)
    bad = data_idx[~np.isin(counts[data_idx], want)]
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{path}: line {i + 1}: expected {' or '.join(map(str, want))} "
                        f"{_SEP_NAMES[sep]}-separated fields ({what}), found {counts[i]}")


def _parse_rows(raw: bytes, bounds: tuple[np.ndarray, np.ndarray], data_idx: np.ndarray,
                skip_first: bool, sep: str | None) -> list[np.ndarray]:
    """Text columns of the data lines ``data_idx`` (pandas' C parser, every value a string).

    When the file has blank lines only the data lines are handed over, so row ``k`` is always
    line ``data_idx[k] + 1``.
    """
    starts, ends = bounds
    body, skip = raw, int(skip_first)
    if data_idx.size + skip != starts.size:  # blank lines present
        body, skip = b"\n".join(raw[starts[i]:ends[i]] for i in data_idx) + b"\n", 0
    frame = pd.read_csv(io.BytesIO(body), sep=r"\s+" if sep is None else sep, header=None,
                        skiprows=skip, dtype=str, na_filter=False, engine="c",
                        quoting=_csv.QUOTE_MINIMAL if sep == "," else _csv.QUOTE_NONE)
    return [frame[c].to_numpy(dtype=object) for c in frame.columns]


def _read_table(path: Path, what: str, *, sep: str | None = _SNIFF,
                header: bool | None = None, n_fields: Sequence[int] = (),
                fields_from_header: bool = False) -> _Table:
    """Read a delimited file into text columns after checking every line's field count.

    ``sep`` is ``"\\t"``, ``","``, ``None`` (runs of whitespace) or ``"sniff"`` (from the first
    non-blank line). ``header=None`` detects a header (a first line naming columns such as
    ``user``/``item_id``). ``n_fields`` lists the allowed field counts; with
    ``fields_from_header`` the header's field count is required. Blank lines are skipped and
    counted. The check runs on the raw bytes first, so every error names its exact line; then
    pandas parses the (already valid) rows.
    """
    raw = _read_bytes(path, what)
    buf = np.frombuffer(raw, dtype=np.uint8)
    starts, ends = _line_bounds(buf)
    space = np.isin(buf, _SPACE_BYTES)
    data_idx = np.flatnonzero(_per_line(~space, starts, ends) > 0)
    first = int(data_idx[0])
    first_line = raw[starts[first]:ends[first]]
    if sep == _SNIFF:
        sep = _sniff_sep(first_line)
    counts, blank = _field_counts(buf, space, starts, ends, sep)
    first_tokens = _split_line(first_line.decode("utf-8", "replace"), sep)
    if header is None:
        header = _looks_like_header(first_tokens)
    head = [t.strip() for t in first_tokens] if header else None
    if header:
        data_idx = data_idx[1:]
        if data_idx.size == 0:
            raise DataError(f"{path}: line {first + 1}: a header but no data rows "
                            f"(expected {what})")
    expected = [len(head)] if fields_from_header and head is not None else list(n_fields)
    if expected:
        _check_field_counts(path, what, sep, counts, data_idx, expected)
    columns = _parse_rows(raw, (starts, ends), data_idx, bool(header) and first == 0, sep)
    if len(columns[0]) != data_idx.size:  # quoted line breaks or other tokenizer surprises
        raise DataError(f"{path}: parsed {len(columns[0])} rows but the file has "
                        f"{data_idx.size} data lines (expected {what}; quoted line breaks are "
                        f"not supported)")
    return _Table(columns, data_idx + 1, head, int(blank.sum()))


def _split_line(line: str, sep: str | None) -> list[str]:
    line = line.rstrip("\r")
    return line.split() if sep is None else line.split(sep)


def _header_name(token: str) -> str:
    """``'item_id:token'`` -> ``'item_id'``; quotes and case ignored."""
    return token.strip().strip('"').split(":", 1)[0].lower()


def _looks_like_header(tokens: Sequence[str]) -> bool:
    """A first line whose fields name columns (``user``, ``item_id:token``, ``rating`` ...)."""
    return any(_header_name(t) in _HEADER_WORDS for t in tokens)


def _uint_column(col: np.ndarray, lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """A text column that must hold non-negative integers, as int64."""
    ok = pd.Series(col, dtype=object).str.fullmatch(_INT_RE).fillna(False).to_numpy(dtype=bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DataError(f"{path}: line {lines[i]}: expected a non-negative integer {what}, "
                        f"found {col[i]!r}")
    return _to_int64(col, path)


def _float_column(col: np.ndarray, lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """A text column that must hold finite numbers, as float64."""
    values = pd.to_numeric(pd.Series(col, dtype=object), errors="coerce").to_numpy(
        dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: line {lines[i]}: expected a number for {what}, "
                        f"found {col[i]!r}")
    return values


def _token_column(col: np.ndarray, lines: np.ndarray, path: Path, what: str) -> np.ndarray:
    """A text id column (ids may be any non-empty token, e.g. Amazon ASINs)."""
    stripped = pd.Series(col, dtype=object).str.strip()
    empty = (stripped == "").to_numpy(dtype=bool)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise DataError(f"{path}: line {lines[i]}: expected a non-empty {what}, found ''")
    return stripped.to_numpy(dtype=object)


def _blank_note(path: Path, n: int) -> list[str]:
    return [f"{path.name}: skipped {n:,} blank line(s)"] if n else []


# --------------------------------------------------------------------------------------------
# per-format parsers (one file each)
# --------------------------------------------------------------------------------------------

def _parse_citeulike(path: Path) -> _Raw:
    what = "'n i_1 ... i_n' per line (citeulike users.dat layout)"
    user_of_line: list[int] = []
    counts: list[int] = []
    items: list[str] = []
    empty_users: list[int] = []
    for lineno, line in enumerate(_read_lines(path, what), start=1):
        tokens = line.split()
        if not tokens or tokens == ["0"]:
            empty_users.append(lineno)
            continue
        _check_uint_tokens(tokens, path, lineno, "the count and item ids")
        n = int(tokens[0])
        if n != len(tokens) - 1:
            raise DataError(f"{path}: line {lineno}: expected {n} item ids (the leading count), "
                            f"found {len(tokens) - 1}")
        user_of_line.append(lineno - 1)
        counts.append(n)
        items.extend(tokens[1:])
    users = np.repeat(np.asarray(user_of_line, dtype=np.int64), counts)
    notes = []
    if empty_users:
        shown = ", ".join(str(x) for x in empty_users[:5]) + (" ..." if len(empty_users) > 5
                                                              else "")
        notes.append(f"{path.name}: {len(empty_users):,} user line(s) with no items "
                     f"(count 0) skipped: line(s) {shown}")
    return _Raw(users, _to_int64(items, path), notes=notes)


def _parse_user_lists(path: Path, what: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Lines ``user item item ...``: users repeated per item, items, notes."""
    users: list[str] = []
    counts: list[int] = []
    items: list[str] = []
    no_items: list[int] = []
    blank = 0
    for lineno, line in enumerate(_read_lines(path, what), start=1):
        tokens = line.split()
        if not tokens:
            blank += 1
            continue
        _check_uint_tokens(tokens, path, lineno, "the user id and item ids")
        if len(tokens) == 1:
            no_items.append(lineno)
            continue
        users.append(tokens[0])
        counts.append(len(tokens) - 1)
        items.extend(tokens[1:])
    notes = _blank_note(path, blank)
    if no_items:
        notes.append(f"{path.name}: {len(no_items):,} line(s) with a user but no items skipped "
                     f"(first at line {no_items[0]})")
    user_arr = np.repeat(_to_int64(users, path), counts)
    return user_arr, _to_int64(items, path), notes


def _parse_lightgcn(path: Path) -> _Raw:
    users, items, notes = _parse_user_lists(path, "'user item item ...' per line (LightGCN)")
    return _Raw(users, items, notes=notes)


def _parse_sequences(path: Path) -> _Raw:
    users, items, notes = _parse_user_lists(
        path, "'user item item ...' per line in time order (S3-Rec/ICLRec)")
    return _Raw(users, items, notes=notes)


def _parse_inter(path: Path) -> _Raw:
    what = "RecBole .inter: TSV with a typed header 'user_id:token<TAB>item_id:token ...'"
    table = _read_table(path, what, sep="\t", header=True, fields_from_header=True)
    names = [h.split(":", 1)[0] for h in table.header or []]
    for required in ("user_id", "item_id"):
        if required not in names:
            raise DataError(f"{path}: line 1: expected a header field '{required}:token', "
                            f"found {table.header}")
    col = dict(zip(names, table.columns, strict=True))
    users = _token_column(col["user_id"], table.lines, path, "user_id")
    items = _token_column(col["item_id"], table.lines, path, "item_id")
    ratings = (_float_column(col["rating"], table.lines, path, "rating")
               if "rating" in col else None)
    ts = (_float_column(col["timestamp"], table.lines, path, "timestamp")
          if "timestamp" in col else None)
    return _Raw(users, items, ts, ratings, notes=_blank_note(path, table.blank))


def _parse_checkins(path: Path) -> _Raw:
    what = "'user<TAB>poi<TAB>unix_timestamp' per check-in (VLDB'17 LBSN layout)"
    table = _read_table(path, what, header=False, n_fields=(3,))
    users = _uint_column(table.columns[0], table.lines, path, "user id")
    items = _uint_column(table.columns[1], table.lines, path, "POI id")
    ts = _float_column(table.columns[2], table.lines, path, "the check-in time")
    return _Raw(users, items, ts, notes=_blank_note(path, table.blank))


def _csv_roles(path: Path, header: list[str] | None, n_cols: int) -> list[str]:
    """The role of each column: from the header's names when there is one, else positional
    ``user, item[, rating][, timestamp]``."""
    if header is None:
        return list(_CSV_ROLES[:n_cols])
    roles = []
    for token in header:
        role = next((r for r, names in _ROLE_NAMES.items() if _header_name(token) in names), None)
        if role is None or role in roles:
            raise DataError(f"{path}: line 1: expected header names for user, item[, rating]"
                            f"[, timestamp] (each once), found {header}")
        roles.append(role)
    if "user" not in roles or "item" not in roles:
        raise DataError(f"{path}: line 1: expected a user and an item column in the header, "
                        f"found {header}")
    return roles


def _parse_csv(path: Path) -> _Raw:
    what = "'user,item[,rating][,timestamp]' per line"
    table = _read_table(path, what, n_fields=(2, 3, 4))
    lines = table.lines
    col = dict(zip(_csv_roles(path, table.header, len(table.columns)), table.columns,
                   strict=True))
    users = _token_column(col["user"], lines, path, "user id")
    items = _token_column(col["item"], lines, path, "item id")
    ratings = _float_column(col["rating"], lines, path, "rating") if "rating" in col else None
    ts = _float_column(col["timestamp"], lines, path, "timestamp") if "timestamp" in col else None
    return _Raw(users, items, ts, ratings, notes=_blank_note(path, table.blank))


# --------------------------------------------------------------------------------------------
# indexing and de-duplication
# --------------------------------------------------------------------------------------------

def _sequence_positions(users: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each user's rows, in row order (the S3-Rec/ICLRec time order)."""
    return pd.Series(users).groupby(users, sort=False).cumcount().to_numpy(dtype=np.float64)


def _keep_first(users: np.ndarray, items: np.ndarray, ts: np.ndarray | None) -> np.ndarray:
    """Boolean mask keeping one row per (user, item): the earliest timestamp (ties and untimed
    formats: the first row in the file)."""
    frame = pd.DataFrame({"u": users, "i": items})
    if ts is None:
        return ~frame.duplicated(keep="first").to_numpy()
    order = np.argsort(ts, kind="stable")
    dup_sorted = frame.iloc[order].duplicated(keep="first").to_numpy()
    keep = np.empty(users.size, dtype=bool)
    keep[order] = ~dup_sorted
    return keep


def _finalize(raw: _Raw, name: str, duplicate_note: str) -> Interactions:
    """Index raw ids by first appearance, drop duplicate pairs (counted), build Interactions."""
    u_codes, u_uniques = pd.factorize(raw.users, sort=False)
    i_codes, i_uniques = pd.factorize(raw.items, sort=False)
    users = u_codes.astype(np.int64)
    items = i_codes.astype(np.int64)
    notes = list(raw.notes)
    keep = _keep_first(users, items, raw.timestamps)
    n_dup = int((~keep).sum())
    if n_dup:
        notes.append(duplicate_note.format(n=n_dup))
        users, items = users[keep], items[keep]
    ts = raw.timestamps[keep] if raw.timestamps is not None and n_dup else raw.timestamps
    ratings = raw.ratings[keep] if raw.ratings is not None and n_dup else raw.ratings
    return Interactions(
        users=users, items=items, n_users=len(u_uniques), n_items=len(i_uniques),
        timestamps=None if ts is None else ts.astype(np.float64),
        ratings=None if ratings is None else ratings.astype(np.float64),
        user_ids=np.asarray(u_uniques).astype(str), item_ids=np.asarray(i_uniques).astype(str),
        name=name, notes=tuple(notes))


_DUPLICATES = "dropped {n:,} duplicate (user, item) row(s), kept the first occurrence"


def _read(paths: Paths, parser, name: str | None, duplicate_note: str = _DUPLICATES,
          post=None) -> Interactions:
    plist = _as_paths(paths)
    raw = _Raw.concat([parser(p) for p in plist], plist)
    if raw.users.size == 0:
        raise DataError(f"{', '.join(str(p) for p in plist)}: no interactions in the file(s)")
    if post is not None:
        raw = post(raw)
    return _finalize(raw, name if name is not None else plist[0].parent.name, duplicate_note)


# --------------------------------------------------------------------------------------------
# public readers
# --------------------------------------------------------------------------------------------

def read_citeulike(paths: Paths, name: str | None = None) -> Interactions:
    """Read ``users.dat`` (citeulike-t / foursquare-vldb17): line ``k`` = user ``k``.

    The leading count must equal the number of ids on the line. Count-0 lines are users with
    no items: they get no index and are reported in ``notes``. The raw user id is the 0-based
    line index, as in the DE-RRD/HetComp loaders (which skip the count, ``line.split()[1:]``).
    """
    return _read(paths, _parse_citeulike, name)


def read_inter(paths: Paths, name: str | None = None) -> Interactions:
    """Read a RecBole ``.inter`` file (e.g. ml-100k from ``recbole==1.2.1``).

    Uses the typed header to find ``user_id``, ``item_id`` and, where present, ``rating`` and
    ``timestamp``; ids are kept as tokens.
    """
    return _read(paths, _parse_inter, name)


def read_lightgcn(paths: Paths, name: str | None = None) -> Interactions:
    """Read NGCF/LightGCN ``user item item ...`` files; pass train and test to get their union.

    A line with a user but no items is skipped and reported.
    """
    return _read(paths, _parse_lightgcn, name)


def read_sequences(paths: Paths, name: str | None = None) -> Interactions:
    """Read S3-Rec/ICLRec sequences ``user item item ...`` (oldest first).

    The position in the user's sequence (0, 1, 2, ...) is stored as the timestamp so a stable
    sort by ``(user, timestamp)`` restores the order. A repeated item keeps its first position.
    """
    def positions(raw: _Raw) -> _Raw:
        raw.timestamps = _sequence_positions(raw.users)
        return raw

    return _read(paths, _parse_sequences, name, post=positions)


def read_checkins(paths: Paths, name: str | None = None) -> Interactions:
    """Read VLDB'17 LBSN check-ins ``user poi unix_time`` (``*_checkins.txt``).

    The implicit view keeps one row per (user, POI) at its first (earliest) check-in time, in
    file order; the number of merged repeat check-ins is reported in ``notes``.
    """
    note = ("merged {n:,} repeat check-in(s) into their (user, POI) pair, "
            "kept the earliest check-in time")
    return _read(paths, _parse_checkins, name, duplicate_note=note)


def read_csv(paths: Paths, name: str | None = None) -> Interactions:
    """Read ``user,item[,rating][,timestamp]`` (comma, tab or whitespace; header optional).

    The separator is sniffed from the first line; a header is recognised when it names columns
    (``user``, ``item_id``, ``rating`` ...) and then gives the column order (so ``item,user``
    works); without one the order is ``user, item[, rating][, timestamp]``. Ids are kept as
    tokens (e.g. Amazon ASINs).
    """
    return _read(paths, _parse_csv, name)


_READERS = {
    "citeulike": read_citeulike,
    "inter": read_inter,
    "lightgcn": read_lightgcn,
    "sequences": read_sequences,
    "checkins": read_checkins,
    "csv": read_csv,
}
FORMATS: tuple[str, ...] = tuple(_READERS)


def read_file(path: Paths, fmt: str, name: str | None = None) -> Interactions:
    """Read one file (or several forming one dataset) in format ``fmt``, unfiltered.

    ``fmt`` is one of :data:`FORMATS`.
    """
    try:
        reader = _READERS[fmt]
    except KeyError:
        raise DataError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}") from None
    return reader(path, name=name)


# --------------------------------------------------------------------------------------------
# the DE-RRD authors' split
# --------------------------------------------------------------------------------------------

_SPLIT_PARTS = ("train", "valid", "test")


def _read_split_part(path: Path) -> np.ndarray:
    what = "'user_id<TAB>item_id' with that header line (DE-RRD split as TSV)"
    table = _read_table(path, what, sep="\t", header=True, n_fields=(2,))
    if table.header != ["user_id", "item_id"]:
        raise DataError(f"{path}: line 1: expected the header 'user_id<TAB>item_id', "
                        f"found {table.header}")
    users = _uint_column(table.columns[0], table.lines, path, "user_id")
    items = _uint_column(table.columns[1], table.lines, path, "item_id")
    pairs = np.stack([users, items], axis=1)
    dup = pd.DataFrame(pairs).duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}: line {table.lines[i]}: expected unique (user, item) pairs, "
                        f"found a repeat of {tuple(int(x) for x in pairs[i])}")
    return pairs


def _check_contiguous(ids: np.ndarray, folder: Path, what: str) -> int:
    """``max + 1``, after checking every index below it occurs (ids are 0-based contiguous)."""
    n = int(ids.max()) + 1
    present = np.zeros(n, dtype=bool)
    present[ids] = True
    if not present.all():
        missing = np.flatnonzero(~present)
        raise DataError(f"{folder}: expected contiguous 0-based {what} ids in train ∪ valid ∪ "
                        f"test, found {missing.size:,} missing below {n} (first {missing[0]})")
    return n


def read_split_tsv(folder: PathLike) -> dict[str, np.ndarray | int]:
    """Read ``{train,valid,test}.tsv`` of a fixed split (``citeulike-t-derrd-loo/derrd``).

    The files carry the DE-RRD code's own 0-based contiguous ids, kept as they are. Returns
    ``train``/``valid``/``test`` as ``(N, 2)`` int64 ``(user, item)`` arrays and ``n_users`` /
    ``n_items`` = ``max id + 1`` over the three parts (5,219 / 25,181 for CiteULike; the
    authors' ``counts`` file says one more, a never-used index). Only the TSVs are read here
    (:mod:`rdlib.data.derrd` writes them from the pickles when no mirror has them).
    """
    folder = Path(folder)
    parts = {p: _read_split_part(folder / f"{p}.tsv") for p in _SPLIT_PARTS}
    allpairs = np.concatenate(list(parts.values()))
    out: dict[str, np.ndarray | int] = dict(parts)
    out["n_users"] = _check_contiguous(allpairs[:, 0], folder, "user")
    out["n_items"] = _check_contiguous(allpairs[:, 1], folder, "item")
    return out
