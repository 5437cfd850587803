"""``benchmarks/_common.save_rows``: appending rows to a stored benchmark file, including rows
with a column the file predates (``allocator``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _common import save_rows  # noqa: E402

from rdlib.results import ALLOCATOR_NOT_RECORDED  # noqa: E402

OLD = ('benchmark,epoch,seconds,device_name,threads\n'
       'train_epoch,,1.11260,"cpu (x86_64, 2 threads)",2\n'
       'train_epoch,300,0.50000,"cpu (x86_64, 2 threads)",2\n')


def test_a_new_column_is_added_to_the_old_rows_and_their_fields_are_kept(tmp_path):
    out = tmp_path / "kd.csv"
    out.write_text(OLD)
    new = pd.DataFrame([{"benchmark": "train_epoch", "threads": 1, "seconds": 2.0,
                         "allocator": "glibc, mmap and trim thresholds 1 GiB",
                         "device_name": "cpu (y, 1 threads)", "epoch": 0}])
    save_rows(new, out, quick=False)
    lines = out.read_text().splitlines()
    assert lines[0] == "benchmark,epoch,seconds,device_name,threads,allocator"
    # the old rows' fields are written back as they were (blank epoch, 5 decimals, quotes)
    assert lines[1] == f'train_epoch,,1.11260,"cpu (x86_64, 2 threads)",2,{ALLOCATOR_NOT_RECORDED}'
    assert lines[2] == f'train_epoch,300,0.50000,"cpu (x86_64, 2 threads)",2,{ALLOCATOR_NOT_RECORDED}'
    # the new row follows the file's column order
    assert lines[3] == ('train_epoch,0,2.00000,"cpu (y, 1 threads)",1,'
                        '"glibc, mmap and trim thresholds 1 GiB"')
    got = pd.read_csv(out)
    assert got["allocator"].tolist() == [ALLOCATOR_NOT_RECORDED] * 2 + [
        "glibc, mmap and trim thresholds 1 GiB"]


def test_rows_with_the_files_columns_are_appended_and_a_new_file_gets_a_header(tmp_path):
    out = tmp_path / "sub" / "rows.csv"
    row = pd.DataFrame([{"a": 1, "b": 0.5}])
    save_rows(row, out, quick=False)
    save_rows(row[["b", "a"]], out, quick=False)  # another column order: the file's is kept
    assert out.read_text().splitlines() == ["a,b", "1,0.50000", "1,0.50000"]


def test_quick_prints_the_rows_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    save_rows(pd.DataFrame([{"a": 1}]), out, quick=True)
    assert not out.exists()
    assert "not appended" in capsys.readouterr().out


@pytest.mark.parametrize("missing", ["allocator", "threads"])
def test_a_row_without_a_column_of_the_file_leaves_it_empty(tmp_path, missing):
    out = tmp_path / "rows.csv"
    out.write_text("a,threads,allocator\n1,2,x\n")
    save_rows(pd.DataFrame([{"a": 3, "threads": 4, "allocator": "y"}]).drop(columns=missing),
              out, quick=False)
    assert pd.read_csv(out, dtype=str, keep_default_na=False)[missing].tolist()[-1] == ""


def test_bench_kd_rows_carry_every_stamp_column():
    """bench_kd picks its columns by name: the stamp's (allocator included) must all be kept."""
    import bench_kd
    from _common import stamp

    df = bench_kd.bench("cpu", ["none"], repeats=1, quick=True, data_dir=None)
    assert set(stamp("cpu")) <= set(df.columns)
    assert df["allocator"].notna().all()
    # every timed row says how busy the machine was (a load average is never negative)
    assert (df["load_1min"] >= 0).all()
