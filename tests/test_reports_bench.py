"""Tables of the KD-timing and inference benchmarks (rdlib.reports), on hand-made result files."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from rdlib import reports
from rdlib.derrd import REPRODUCED, claim6_inference


def _kd_rows() -> pd.DataFrame:
    rows = []
    for method, epoch, seconds in [("none", 0, [0.2, 0.25, 0.3]), ("de", 0, [10.0, 14.0, 12.0]),
                                   ("de", 300, [4.0, 4.0, 5.0]), ("de-rrd", 0, [20.0, 21.0, 22.0]),
                                   ("teacher_topk", None, [1.5, 1.5, 1.5])]:
        for r, s in enumerate(seconds):
            rows.append({"benchmark": "teacher_topk" if method == "teacher_topk"
                         else "train_epoch", "method": method, "epoch": epoch, "repeat": r,
                         "seconds": s, "device": "cpu", "device_name": "cpu (x86_64, 2 threads)"})
    rows.append({"benchmark": "train_epoch", "method": "de", "epoch": 0, "repeat": 0,
                 "seconds": 1.0, "device": "cuda", "device_name": "NVIDIA H100"})
    return pd.DataFrame(rows)


@pytest.fixture
def official(tmp_path):
    path = tmp_path / "official.csv"
    pd.DataFrame([
        {"paper": "DE-RRD", "method": "BPR student", "quantity": "train_epoch", "low_s": 0.4,
         "high_s": 0.7, "hardware": "2-core CPU", "source": "x"},
        {"paper": "DE-RRD", "method": "BPR student", "quantity": "eval_sampled", "low_s": 0.8,
         "high_s": 1.5, "hardware": "2-core CPU", "source": "x"},
        {"paper": "DE-RRD", "method": "DE", "quantity": "train_epoch", "low_s": 24.0,
         "high_s": 36.0, "hardware": "2-core CPU", "source": "x"},
        {"paper": "DE-RRD", "method": "DE", "quantity": "train_epoch", "low_s": 11.1,
         "high_s": 11.1, "hardware": "authors' GPU", "source": "x"},
        {"paper": "DE-RRD", "method": "RRD", "quantity": "train_epoch", "low_s": 4.3,
         "high_s": 5.0, "hardware": "2-core CPU", "source": "x"},
    ]).to_csv(path, index=False)
    return path


def test_kd_timing_table_summarises_and_compares(tmp_path, official):
    path = tmp_path / "kd.csv"
    _kd_rows().to_csv(path, index=False)
    t = reports.kd_timing_table(path, official=official)
    assert list(t.columns) == reports.KD_TIMING_COLUMNS
    ours = t[t["code"] == "rdlib"].set_index(["method", "epoch", "hardware"])
    cpu = "cpu (x86_64, 2 threads)"
    assert ours.loc[("de", "0", cpu), "seconds"] == "12.000 (median of 3)"
    assert ours.loc[("de", "300", cpu), "seconds"] == "4.000 (median of 3)"
    assert ours.loc[("none", "0", cpu), "seconds"] == "0.250 (median of 3)"
    # official CPU range / our median: 24/12 = 2.0, 36/12 = 3.0; 24/4 = 6.0, 36/4 = 9.0
    assert ours.loc[("de", "0", cpu), "speed-up vs official CPU"] == "2.0–3.0×"
    assert ours.loc[("de", "300", cpu), "speed-up vs official CPU"] == "6.0–9.0×"
    assert ours.loc[("none", "0", cpu), "speed-up vs official CPU"] == "1.6–2.8×"
    # GPU rows get their speed-up against the authors' GPU log (11.1 / 1.0), CPU rows none
    assert ours.loc[("de", "0", "NVIDIA H100"), "speed-up vs official CPU"] == ""
    assert ours.loc[("de", "0", "NVIDIA H100"), "speed-up vs official GPU log"] == "11.1×"
    assert ours.loc[("de", "0", cpu), "speed-up vs official GPU log"] == ""
    # methods without an official number and the top-list build get no speed-up
    assert ours.loc[("de-rrd", "0", cpu), "speed-up vs official CPU"] == ""
    assert ours.loc[("teacher_topk", "", cpu), "seconds"] == "1.500 (median of 3)"
    off = t[t["code"] == "official DE-RRD"]
    # only train_epoch rows of methods we measured (no RRD, no eval_sampled)
    assert sorted(off["method"]) == ["de", "de", "none"]
    assert (off["epoch"] == "").all()
    assert set(off.loc[off["method"] == "de", "seconds"]) == {"24–36", "11.1"}
    # rows follow the method order none, …, de, de-rrd, then the top-list build
    assert list(dict.fromkeys(t["method"])) == ["none", "de", "de-rrd", "teacher_topk"]


def test_kd_timing_table_keeps_two_allocators_apart(tmp_path, official):
    """The same device under glibc's default and under the 1 GiB thresholds gives two rows,
    each with its own median and speed-up; a file without the column reads as the default."""
    rows = _kd_rows()
    new = rows[rows["device"] == "cpu"].assign(
        seconds=rows["seconds"] / 2, allocator="glibc, mmap and trim thresholds 1 GiB")
    path = tmp_path / "kd.csv"
    pd.concat([rows.assign(allocator=reports.ALLOCATOR_NOT_RECORDED), new]).to_csv(path,
                                                                                  index=False)
    t = reports.kd_timing_table(path, official=official)
    de = t[(t["code"] == "rdlib") & (t["method"] == "de") & (t["epoch"] == "0")
           & (t["hardware"] == "cpu (x86_64, 2 threads)")].set_index("allocator")
    assert de.loc[reports.ALLOCATOR_NOT_RECORDED, "seconds"] == "12.000 (median of 3)"
    assert de.loc["glibc, mmap and trim thresholds 1 GiB", "seconds"] == "6.000 (median of 3)"
    assert de.loc["glibc, mmap and trim thresholds 1 GiB", "speed-up vs official CPU"] == "4.0–6.0×"
    legacy = tmp_path / "legacy.csv"
    rows.to_csv(legacy, index=False)
    ours = reports.kd_timing_table(legacy, official=official).query("code == 'rdlib'")
    assert set(ours["allocator"]) == {reports.ALLOCATOR_NOT_RECORDED}
    assert (reports.kd_timing_table(legacy, official=official).query(
        "code != 'rdlib'")["allocator"] == "").all()


def test_kd_timing_table_missing_file(tmp_path, official):
    t = reports.kd_timing_table(tmp_path / "absent.csv", official=official)
    assert t.empty and list(t.columns) == reports.KD_TIMING_COLUMNS


def test_kd_timing_table_reads_the_official_file(tmp_path):
    path = tmp_path / "kd.csv"
    _kd_rows().to_csv(path, index=False)
    t = reports.kd_timing_table(path)
    off = t[(t["code"] == "official DE-RRD") & (t["method"] == "none")]
    assert "0.4–0.7" in set(off["seconds"])


def _inference_rows() -> pd.DataFrame:
    rows = []
    times = {("bpr", 1.0): 10.0, ("bpr", 0.5): 9.8, ("bpr", 0.1): 9.5,
             ("neumf", 1.0): 40.0, ("neumf", 0.5): 34.0, ("neumf", 0.1): 29.0}
    dims = {1.0: 200, 0.5: 100, 0.1: 20}
    for (model, phi), sec in times.items():
        for r, factor in enumerate((1.0, 1.1, 0.9)):
            rows.append({"benchmark": "inference", "dataset": "citeulike-t-derrd-loo",
                         "model": model, "phi": phi, "dim": dims[phi],
                         "n_parameters": 30400 * dims[phi], "n_users": 5219,
                         "n_users_timed": 1000, "seconds": sec * factor / 5.219,
                         "seconds_all_users": sec * factor, "repeat": r, "device": "cpu",
                         "device_name": "cpu (x86_64, 2 threads)",
                         "timestamp": "2026-11-23T20:00:00+00:00"})
    return pd.DataFrame(rows)


def test_inference_table_beside_the_paper(tmp_path):
    path = tmp_path / "inference.csv"
    _inference_rows().to_csv(path, index=False)
    t = reports.inference_table(path)
    assert list(t.columns) == reports.INFERENCE_COLUMNS
    assert len(t) == 6 and set(t["dataset"]) == {"CiteULike"}
    assert set(t["model"]) == {"BPR", "NeuMF"}
    row = t[(t["model"] == "BPR") & (t["phi"] == 1.0)].iloc[0]
    assert row["seconds (all users)"] == pytest.approx(10.0)  # median of 10, 11, 9
    assert row["repeats"] == 3 and row["n_parameters"] == 6_080_000
    assert row["paper params_M"] == pytest.approx(6.08)
    assert row["paper inference_time_s"] == pytest.approx(59.27)
    assert math.isnan(row["time ratio 0.1/1.0"])
    neumf01 = t[(t["model"] == "NeuMF") & (t["phi"] == 0.1)].iloc[0]
    assert neumf01["time ratio 0.1/1.0"] == pytest.approx(29.0 / 40.0)
    assert neumf01["paper time ratio 0.1/1.0"] == pytest.approx(58.27 / 79.27)
    bpr01 = t[(t["model"] == "BPR") & (t["phi"] == 0.1)].iloc[0]
    assert bpr01["time ratio 0.1/1.0"] == pytest.approx(0.95)
    assert bpr01["paper time ratio 0.1/1.0"] == pytest.approx(55.39 / 59.27)
    # the DE-RRD chapter's claim check reads this table
    assert claim6_inference(t)["verdict"] == REPRODUCED


def test_inference_table_foursquare_and_unknown_dataset(tmp_path):
    df = _inference_rows()
    other = df.assign(dataset="foursquare-vldb17")
    synthetic = df[df["phi"] == 1.0].assign(dataset="synthetic")
    path = tmp_path / "inference.csv"
    pd.concat([df, other, synthetic]).to_csv(path, index=False)
    t = reports.inference_table(path)
    fsq = t[(t["dataset"] == "Foursquare") & (t["model"] == "NeuMF") & (t["phi"] == 1.0)]
    assert fsq["paper inference_time_s"].iloc[0] == pytest.approx(342.84)
    syn = t[t["dataset"] == "synthetic"]
    assert len(syn) == 2 and syn["paper params_M"].isna().all()


def test_inference_table_missing_file(tmp_path):
    t = reports.inference_table(tmp_path / "absent.csv")
    assert t.empty and list(t.columns) == reports.INFERENCE_COLUMNS
    assert claim6_inference(t)["verdict"] != REPRODUCED


def test_inference_table_keeps_the_newest_run_of_each_model(tmp_path):
    old = _inference_rows()
    new = old[old["model"] == "neumf"].assign(seconds_all_users=lambda d: d["seconds_all_users"] / 10,
                                              timestamp="2026-11-23T23:00:00+00:00")
    path = tmp_path / "inference.csv"
    pd.concat([old, new]).to_csv(path, index=False)
    t = reports.inference_table(path)
    neumf10 = t[(t["model"] == "NeuMF") & (t["phi"] == 1.0)].iloc[0]
    assert neumf10["seconds (all users)"] == pytest.approx(4.0) and neumf10["repeats"] == 3
    bpr10 = t[(t["model"] == "BPR") & (t["phi"] == 1.0)].iloc[0]
    assert bpr10["seconds (all users)"] == pytest.approx(10.0)  # BPR was not rerun


def test_denormal_table_gives_medians_and_their_ratio(tmp_path):
    rows = [{"share": share, "flush": flush, "seconds": sec, "load_1min": load,
             "device_name": "cpu (x86_64, 1 threads)"}
            for share, flush, secs, load in ((0.0, False, (0.30, 0.31, 0.50), 1.0),
                                             (0.0, True, (0.30, 0.29, 0.31), 1.0),
                                             (0.01, False, (2.2, 2.0, 9.0), 3.0),
                                             (0.01, True, (0.2, 0.25, 0.3), 3.0))
            for sec in secs]
    path = tmp_path / "denormal.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    got = reports.denormal_table(path).set_index("denormal share")
    assert list(got.index) == ["0.0%", "1.0%"]
    assert got.loc["1.0%", "flush off (s)"] == pytest.approx(2.2)  # median, not the 9.0 outlier
    assert got.loc["1.0%", "flush on (s)"] == pytest.approx(0.25)
    assert got.loc["1.0%", "slow-down"] == "8.8×"
    assert got.loc["0.0%", "slow-down"] == "1.0×"
    assert got.loc["1.0%", "load (1 min)"] == 3.0
    assert reports.denormal_table(tmp_path / "absent.csv").empty


def test_allocator_table_adds_kernel_to_user_time_and_names_the_cpu(tmp_path):
    name = "cpu (AMD EPYC (family 25, model 1), AVX2, x86_64, 1 threads)"
    rows = [{"allocator": a, "steps": 40, "user_s": u, "sys_s": k, "minor_faults": f,
             "identical": True, "device_name": name, "threads": 1}
            for a, u, k, f in (("default", 13.25, 7.55, 2366466), ("tuned", 14.7, 0.2, 67034))]
    path = tmp_path / "allocator.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    got = reports.allocator_table(path).set_index("allocator")
    assert got.loc["default", "CPU s"] == pytest.approx(20.8)
    assert got.loc["tuned", "kernel s"] == pytest.approx(0.2)
    assert got.loc["tuned", "device"] == "AMD EPYC (family 25, model 1)"
    assert got["same weights"].tolist() == [True, True]
    assert reports.allocator_table(tmp_path / "absent.csv").empty


def test_allocator_epoch_table_pairs_the_two_allocators_of_one_device(tmp_path):
    """Medians per allocator and their change; rows without a recorded allocator, or measured
    under one allocator only, are not paired."""
    rows = []
    for allocator, seconds in [(reports.ALLOCATOR_DEFAULT, [10.0, 12.0, 11.0]),
                               (reports.ALLOCATOR_KEPT, [8.0, 9.0, 9.9]),
                               (reports.ALLOCATOR_NOT_RECORDED, [50.0, 50.0, 50.0])]:
        rows += [{"benchmark": "train_epoch", "method": "de", "epoch": 0, "seconds": s,
                  "device_name": "cpu (AMD EPYC (family 25, model 1), AVX2, x86_64, 1 threads)",
                  "threads": 1, "allocator": allocator} for s in seconds]
    rows += [{"benchmark": "train_epoch", "method": "none", "epoch": 0, "seconds": 1.0,
              "device_name": "cpu x", "threads": 1, "allocator": reports.ALLOCATOR_KEPT},
             {"benchmark": "teacher_topk", "method": "teacher_topk", "epoch": None,
              "seconds": 1.0, "device_name": "cpu x", "threads": 1,
              "allocator": reports.ALLOCATOR_DEFAULT}]
    path = tmp_path / "kd.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    got = reports.allocator_epoch_table(path)
    assert list(got.columns) == reports.ALLOCATOR_EPOCH_COLUMNS
    assert got.to_dict("records") == [{
        "method": "de", "epoch": 0, "device": "AMD EPYC (family 25, model 1)", "threads": 1,
        "default s": 11.0, "1 GiB s": 9.0, "change": "-18.2%", "epochs timed": "3 / 3",
        "p": pytest.approx(0.1)}]  # U = 9 of 9: the exact two-sided p is 2 / C(6, 3)
    # the p-value is scipy's Mann–Whitney U, two-sided, on the two samples
    assert got["p"].iloc[0] == stats.mannwhitneyu([10.0, 12.0, 11.0], [8.0, 9.0, 9.9]).pvalue
    # a file from before the column, and a missing file, give an empty table
    pd.DataFrame(rows).drop(columns="allocator").to_csv(path, index=False)
    assert reports.allocator_epoch_table(path).empty
    assert reports.allocator_epoch_table(tmp_path / "absent.csv").empty
