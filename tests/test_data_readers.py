"""Readers: hand-checked arrays on tiny hand-made files, and every kind of bad input.

Expected arrays were worked out by hand from the fixture files in ``tests/fixtures/data``:
indices follow first appearance (users in file order, items as first met), rows keep file
order, duplicate pairs keep their earliest occurrence.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rdlib.data import (
    FORMATS,
    DataError,
    read_checkins,
    read_citeulike,
    read_csv,
    read_file,
    read_inter,
    read_lightgcn,
    read_sequences,
    read_split_tsv,
)
from rdlib.data.mirror import locate_dataset

FIX = Path(__file__).parent / "fixtures" / "data"
FORMATS_DIR = FIX / "formats"
USERS_DAT = FIX / "mirror" / "tiny-cite" / "library.dat"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _eq(a: np.ndarray | None, expected: list) -> None:
    assert a is not None
    np.testing.assert_array_equal(a, np.asarray(expected))


def _assert_message(err: pytest.ExceptionInfo, path: Path, line: int | None, *words: str):
    msg = str(err.value)
    assert str(path) in msg
    if line is not None:
        assert f"line {line}:" in msg
    for w in ("expected", *words):
        assert w in msg, msg


# --------------------------------------------------------------------------------------------
# well-formed files: exact arrays
# --------------------------------------------------------------------------------------------

def test_citeulike_indices_follow_file_order_and_first_appearance():
    inter = read_citeulike(USERS_DAT)
    # lines: 0:{10,11,12} 1:(count 0) 2:{11,13} 3:{14,10,15,16,17} 4:{18} 5:{12,13,19,20,12}
    _eq(inter.users, [0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 4, 4, 4, 4])
    _eq(inter.items, [0, 1, 2, 1, 3, 4, 0, 5, 6, 7, 8, 2, 3, 9, 10])
    _eq(inter.user_ids, ["0", "2", "3", "4", "5"])  # raw id = 0-based line index
    _eq(inter.item_ids, ["10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20"])
    assert (inter.n_users, inter.n_items, len(inter)) == (5, 11, 15)
    assert inter.timestamps is None and inter.ratings is None
    assert inter.name == "tiny-cite"
    assert any("1 user line(s) with no items" in n and "line(s) 2" in n for n in inter.notes)
    assert any("dropped 1 duplicate" in n for n in inter.notes)


def test_inter_keeps_tokens_and_earliest_duplicate():
    inter = read_inter(FORMATS_DIR / "tiny.inter")
    # (u1,i1) occurs at t=100 and t=80: the t=80 row (last line) is kept, file order preserved
    _eq(inter.users, [1, 0, 0])
    _eq(inter.items, [0, 1, 0])
    _eq(inter.timestamps, [50.0, 90.0, 80.0])
    _eq(inter.ratings, [3.0, 5.0, 2.0])
    _eq(inter.user_ids, ["u1", "u2"])
    _eq(inter.item_ids, ["i1", "i2"])
    assert any("dropped 1 duplicate" in n for n in inter.notes)


def test_lightgcn_union_of_train_and_test():
    inter = read_lightgcn([FORMATS_DIR / "lightgcn_train.txt", FORMATS_DIR / "lightgcn_test.txt"])
    # train: 0:{5,6,7} 1:{6} 2:{} ; test: 0:{8} 1:{5,6}  ((1,6) repeats across files)
    _eq(inter.users, [0, 0, 0, 1, 0, 1])
    _eq(inter.items, [0, 1, 2, 1, 3, 0])
    _eq(inter.user_ids, ["0", "1"])
    _eq(inter.item_ids, ["5", "6", "7", "8"])
    assert inter.timestamps is None
    assert any("user but no items" in n for n in inter.notes)
    assert any("dropped 1 duplicate" in n for n in inter.notes)


def test_sequences_store_positions_as_timestamps():
    inter = read_sequences(FORMATS_DIR / "sequences.txt")
    # user 1: 3 4 3 5 -> the repeated 3 (position 2) is dropped; user 2: 4 6
    _eq(inter.users, [0, 0, 0, 1, 1])
    _eq(inter.items, [0, 1, 2, 1, 3])
    _eq(inter.timestamps, [0.0, 1.0, 3.0, 0.0, 1.0])
    _eq(inter.item_ids, ["3", "4", "5", "6"])


def test_checkins_keep_first_checkin_time_and_count_repeats():
    inter = read_checkins(FORMATS_DIR / "checkins.txt")
    # (7,100) at 1000, 400, 1200 -> one row at 400 (4th line); rows stay in file order
    _eq(inter.users, [1, 0, 0, 1])
    _eq(inter.items, [0, 1, 0, 2])
    _eq(inter.timestamps, [500.0, 900.0, 400.0, 700.0])
    _eq(inter.user_ids, ["7", "8"])
    _eq(inter.item_ids, ["100", "101", "102"])
    assert any("merged 2 repeat check-in(s)" in n for n in inter.notes)


def test_csv_with_header_and_text_ids():
    inter = read_csv(FORMATS_DIR / "ratings_header.csv")
    _eq(inter.users, [0, 1, 0])
    _eq(inter.items, [0, 1, 1])
    _eq(inter.ratings, [5.0, 3.0, 4.0])
    assert inter.timestamps is None
    _eq(inter.user_ids, ["a", "b"])
    _eq(inter.item_ids, ["x", "y"])


def test_csv_whitespace_four_columns_like_dmf():
    inter = read_csv(FORMATS_DIR / "ratings_whitespace.txt")
    _eq(inter.users, [0, 1, 0])
    _eq(inter.items, [0, 0, 1])
    _eq(inter.ratings, [5.0, 5.0, 3.0])
    _eq(inter.timestamps, [1158019200.0, 1059523200.0, 959385600.0])


def test_csv_tab_two_columns_without_header():
    inter = read_csv(FORMATS_DIR / "pairs.tsv")
    _eq(inter.users, [0, 1, 0])
    _eq(inter.items, [0, 1, 1])
    _eq(inter.user_ids, ["u9", "u8"])
    assert inter.ratings is None and inter.timestamps is None


def test_csv_header_gives_column_order(tmp_path):
    path = _write(tmp_path, "r.csv", "item_id,user_id,timestamp,rating\nx,a,10,5\ny,a,11,4\n")
    inter = read_csv(path)
    _eq(inter.user_ids, ["a"])
    _eq(inter.item_ids, ["x", "y"])
    _eq(inter.ratings, [5.0, 4.0])
    _eq(inter.timestamps, [10.0, 11.0])


def test_csv_header_with_unknown_column(tmp_path):
    path = _write(tmp_path, "r.csv", "user,item,colour\na,x,red\n")
    with pytest.raises(DataError) as err:
        read_csv(path)
    _assert_message(err, path, 1, "header names", "colour")


def test_blank_lines_are_skipped_and_counted_with_correct_line_numbers(tmp_path):
    path = _write(tmp_path, "gaps.tsv", "1\t2\t10\n\n1\t3\t11\n  \n2\tx\t12\n")
    with pytest.raises(DataError) as err:
        read_checkins(path)
    _assert_message(err, path, 5, "integer", "'x'")
    good = _write(tmp_path, "gaps_ok.tsv", "1\t2\t10\n\n1\t3\t11\n")
    inter = read_checkins(good)
    _eq(inter.items, [0, 1])
    assert any("skipped 1 blank line" in n for n in inter.notes)


def test_crlf_line_endings(tmp_path):
    path = _write(tmp_path, "crlf.dat", "2 1 2\r\n1 3\r\n")
    inter = read_citeulike(path)
    _eq(inter.items, [0, 1, 2])
    tsv = tmp_path / "crlf.tsv"
    tsv.write_bytes(b"1\t2\t10\r\n1\t3\t11\r\n")
    _eq(read_checkins(tsv).timestamps, [10.0, 11.0])


def test_read_file_dispatches_every_format():
    files = {
        "citeulike": USERS_DAT,
        "inter": FORMATS_DIR / "tiny.inter",
        "lightgcn": FORMATS_DIR / "lightgcn_test.txt",
        "sequences": FORMATS_DIR / "sequences.txt",
        "checkins": FORMATS_DIR / "checkins.txt",
        "csv": FORMATS_DIR / "pairs.tsv",
    }
    assert set(files) == set(FORMATS)
    sizes = {fmt: len(read_file(path, fmt, name="x")) for fmt, path in files.items()}
    assert sizes == {"citeulike": 15, "inter": 3, "lightgcn": 3, "sequences": 5,
                     "checkins": 4, "csv": 3}


def test_files_of_one_dataset_must_share_columns():
    timed, untimed = FORMATS_DIR / "ratings_whitespace.txt", FORMATS_DIR / "pairs.tsv"
    with pytest.raises(DataError, match=f"expected the same columns.*only in {timed}"):
        read_csv([timed, untimed])


def test_read_file_unknown_format():
    with pytest.raises(DataError, match="unknown format 'parquet'.*citeulike"):
        read_file(USERS_DAT, "parquet")


def test_read_split_tsv_keeps_ids():
    split = read_split_tsv(FIX / "mirror" / "tiny-split" / "loo")
    _eq(split["train"], [[0, 0], [0, 1], [1, 2], [1, 1]])
    _eq(split["valid"], [[0, 2], [1, 0]])
    _eq(split["test"], [[0, 3], [1, 3]])
    assert split["train"].dtype == np.int64
    assert (split["n_users"], split["n_items"]) == (2, 4)


# --------------------------------------------------------------------------------------------
# bad input: message names file, line and what was expected
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_file(tmp_path, fmt):
    path = tmp_path / "absent.txt"
    with pytest.raises(DataError) as err:
        read_file(path, fmt)
    _assert_message(err, path, None, "file not found")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_empty_file(tmp_path, fmt, content):
    path = _write(tmp_path, "empty.txt", content)
    with pytest.raises(DataError) as err:
        read_file(path, fmt)
    _assert_message(err, path, None, "empty file")


def test_citeulike_count_mismatch(tmp_path):
    path = _write(tmp_path, "users.dat", "2 1 2\n3 4 5\n")
    with pytest.raises(DataError) as err:
        read_citeulike(path)
    _assert_message(err, path, 2, "expected 3 item ids", "found 2")


def test_citeulike_non_integer_id(tmp_path):
    path = _write(tmp_path, "users.dat", "2 1 2\n\n2 4 x5\n")
    with pytest.raises(DataError) as err:
        read_citeulike(path)
    _assert_message(err, path, 3, "non-negative integers", "'x5'")


def test_citeulike_only_empty_users(tmp_path):
    path = _write(tmp_path, "users.dat", "0\n0\n")
    with pytest.raises(DataError, match="no interactions"):
        read_citeulike(path)


@pytest.mark.parametrize("reader", [read_lightgcn, read_sequences])
def test_user_list_non_integer(tmp_path, reader):
    path = _write(tmp_path, "lists.txt", "0 1 2\n1 2 -3\n")
    with pytest.raises(DataError) as err:
        reader(path)
    _assert_message(err, path, 2, "non-negative integers", "'-3'")


def test_inter_wrong_column_count(tmp_path):
    path = _write(tmp_path, "bad.inter",
                  "user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t2\n")
    with pytest.raises(DataError) as err:
        read_inter(path)
    _assert_message(err, path, 3, "expected 3 tab-separated fields", "found 2")


def test_inter_missing_item_column(tmp_path):
    path = _write(tmp_path, "bad.inter", "user_id:token\tmovie:token\n1\t2\n")
    with pytest.raises(DataError) as err:
        read_inter(path)
    _assert_message(err, path, 1, "item_id:token")


def test_inter_non_numeric_rating(tmp_path):
    path = _write(tmp_path, "bad.inter",
                  "user_id:token\titem_id:token\trating:float\n1\t2\t3\n1\t3\tgood\n")
    with pytest.raises(DataError) as err:
        read_inter(path)
    _assert_message(err, path, 3, "number for rating", "'good'")


def test_checkins_wrong_column_count(tmp_path):
    path = _write(tmp_path, "checkins.txt", "1\t2\t10.0\n1\t3\n")
    with pytest.raises(DataError) as err:
        read_checkins(path)
    _assert_message(err, path, 2, "expected 3 tab-separated fields", "found 2")


def test_checkins_non_integer_poi(tmp_path):
    path = _write(tmp_path, "checkins.txt", "1\t2\t10.0\n1\t2.5\t11.0\n")
    with pytest.raises(DataError) as err:
        read_checkins(path)
    _assert_message(err, path, 2, "non-negative integer POI id", "'2.5'")


def test_checkins_bad_timestamp(tmp_path):
    path = _write(tmp_path, "checkins.txt", "1\t2\t10.0\n1\t3\tnan\n")
    with pytest.raises(DataError) as err:
        read_checkins(path)
    _assert_message(err, path, 2, "check-in time")


def test_csv_inconsistent_column_count(tmp_path):
    path = _write(tmp_path, "r.csv", "a,x,5,100\nb,y,3\n")
    with pytest.raises(DataError) as err:
        read_csv(path)
    _assert_message(err, path, 2, "expected 4 comma-separated fields", "found 3")


def test_csv_too_many_columns(tmp_path):
    path = _write(tmp_path, "r.txt", "a x 5 100 extra\n")
    with pytest.raises(DataError) as err:
        read_csv(path)
    _assert_message(err, path, 1, "2 or 3 or 4 whitespace-separated fields", "found 5")


def test_csv_non_numeric_rating(tmp_path):
    path = _write(tmp_path, "r.csv", "user,item,rating\na,x,5\nb,y,high\n")
    with pytest.raises(DataError) as err:
        read_csv(path)
    _assert_message(err, path, 3, "number for rating", "'high'")


def test_csv_header_only(tmp_path):
    path = _write(tmp_path, "r.csv", "user,item\n")
    with pytest.raises(DataError) as err:
        read_csv(path)
    _assert_message(err, path, 1, "header but no data rows")


def _split_dir(tmp_path: Path, train: str, valid: str = "user_id\titem_id\n0\t1\n",
               test: str = "user_id\titem_id\n0\t0\n") -> Path:
    for part, text in (("train", train), ("valid", valid), ("test", test)):
        _write(tmp_path, f"{part}.tsv", text)
    return tmp_path


def test_split_wrong_header(tmp_path):
    folder = _split_dir(tmp_path, "user\titem\n0\t0\n")
    with pytest.raises(DataError) as err:
        read_split_tsv(folder)
    _assert_message(err, folder / "train.tsv", 1, "header 'user_id<TAB>item_id'")


def test_split_non_integer(tmp_path):
    folder = _split_dir(tmp_path, "user_id\titem_id\n0\t2\n0\tb\n")
    with pytest.raises(DataError) as err:
        read_split_tsv(folder)
    _assert_message(err, folder / "train.tsv", 3, "non-negative integer item_id", "'b'")


def test_split_wrong_column_count(tmp_path):
    folder = _split_dir(tmp_path, "user_id\titem_id\n0\t2\t1\n")
    with pytest.raises(DataError) as err:
        read_split_tsv(folder)
    _assert_message(err, folder / "train.tsv", 2, "expected 2 tab-separated fields", "found 3")


def test_split_duplicate_pair(tmp_path):
    folder = _split_dir(tmp_path, "user_id\titem_id\n0\t2\n0\t2\n")
    with pytest.raises(DataError) as err:
        read_split_tsv(folder)
    _assert_message(err, folder / "train.tsv", 3, "unique (user, item) pairs")


def test_split_non_contiguous_ids(tmp_path):
    folder = _split_dir(tmp_path, "user_id\titem_id\n0\t5\n")
    with pytest.raises(DataError) as err:
        read_split_tsv(folder)
    _assert_message(err, folder, None, "contiguous 0-based item ids")


def test_split_missing_part(tmp_path):
    _write(tmp_path, "train.tsv", "user_id\titem_id\n0\t0\n")
    with pytest.raises(DataError) as err:
        read_split_tsv(tmp_path)
    _assert_message(err, tmp_path / "valid.tsv", None, "file not found")


# --------------------------------------------------------------------------------------------
# the real mirror (skipped where it is absent)
# --------------------------------------------------------------------------------------------

def _real_dir(name: str) -> Path | None:
    found = locate_dataset(name)
    return None if found is None else found[1]


@pytest.mark.skipif(_real_dir("citeulike-t") is None, reason="shared data mirror absent")
def test_real_citeulike_raw_file_statistics():
    inter = read_citeulike(_real_dir("citeulike-t") / "users.dat")
    assert (inter.n_users, inter.n_items, len(inter)) == (7947, 25584, 134860)
    assert not any("duplicate" in n for n in inter.notes)


@pytest.mark.skipif(_real_dir("citeulike-t-derrd-loo") is None,
                    reason="shared data mirror absent")
def test_real_derrd_split_sizes():
    split = read_split_tsv(_real_dir("citeulike-t-derrd-loo") / "derrd")
    assert split["train"].shape == (115142, 2)
    assert split["valid"].shape == (5219, 2)
    assert split["test"].shape == (5219, 2)
    assert (split["n_users"], split["n_items"]) == (5219, 25181)
