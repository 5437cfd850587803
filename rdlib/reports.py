"""Tables and figures for the book, drawn only from stored results and the papers' number file.

Nothing here trains. The papers' reported numbers are read from ``data/paper_results.csv``
(one row per number, with its source), never retyped (practices.md §5).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

from rdlib.env import ALLOCATOR_DEFAULT, ALLOCATOR_KEPT, short_device_name
from rdlib.paths import repo_root
from rdlib.results import ALLOCATOR_NOT_RECORDED

METRIC_LABELS = {"hr": "HR", "ndcg": "NDCG", "mrr": "MRR", "recall": "Recall",
                 "precision": "Prec", "map": "MAP"}


def paper_numbers(paper: str | None = None, **filters) -> pd.DataFrame:
    """Reported numbers from ``data/paper_results.csv`` (columns paper, dataset, model_role,
    method, base_model, metric, cutoff, value, source), filtered by equality."""
    df = pd.read_csv(repo_root() / "data" / "paper_results.csv")
    if paper is not None:
        df = df[df["paper"] == paper]
    for col, val in filters.items():
        if col not in df.columns:
            raise KeyError(f"unknown column {col!r} in paper_results.csv")
        df = df[df[col] == val]
    return df.reset_index(drop=True)


def summarise(rows: pd.DataFrame, by: Sequence[str] = ("protocol", "dataset", "method", "dim"),
              split: str = "test") -> pd.DataFrame:
    """Mean, standard deviation and number of seeds of each metric@k over seeds."""
    df = rows[rows["split"] == split]
    keys = [*by, "metric", "k"]
    out = df.groupby(keys, dropna=False)["value"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"count": "n_seeds"})


def metric_column(metric: str, k: int) -> str:
    label = METRIC_LABELS.get(metric, metric)
    return f"{label}@{k}" if k else label


def mean_std_table(summary: pd.DataFrame, index: Sequence[str], digits: int = 4) -> pd.DataFrame:
    """Wide table of "mean ± std" strings, one column per metric@k in (metric, k) order."""
    s = summary.copy()
    s["col"] = [metric_column(m, k) for m, k in zip(s["metric"], s["k"], strict=True)]
    s["cell"] = [f"{m:.{digits}f} ± {0.0 if np.isnan(sd) else sd:.{digits}f}"
                 for m, sd in zip(s["mean"], s["std"], strict=True)]
    order = list(dict.fromkeys(s.sort_values(["k", "metric"])["col"]))
    wide = s.pivot_table(index=list(index), columns="col", values="cell", aggfunc="first")
    return wide[order]


def seed_noise_check(values: Sequence[float], reference: float) -> dict[str, float | bool]:
    """Is ``reference`` within seed noise of ``values``? Reports the mean, the standard
    deviation, the z-score of the reference, a one-sample t-test p-value and the verdict
    |z| ≤ 2 (the reference lies within two seed standard deviations of our mean)."""
    v = np.asarray(values, dtype=float)
    mean, sd = float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else float("nan")
    z = (reference - mean) / sd if sd and not np.isnan(sd) else float("nan")
    p = float(sps.ttest_1samp(v, reference).pvalue) if v.size > 1 else float("nan")
    return {"mean": mean, "std": sd, "n": int(v.size), "reference": reference, "z": z,
            "p_value": p, "within_noise": bool(abs(z) <= 2) if not np.isnan(z) else False}


def plot_learning_curves(curves: pd.DataFrame, metric: str, k: int, ax=None, hue: str = "seed",
                         title: str | None = None):
    """Validation and test ``metric@k`` against the epoch, one line per ``hue`` value."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = curves[(curves["metric"] == metric) & (curves["k"] == k)]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.5))
    sns.lineplot(data=df, x="epoch", y="value", hue=hue, style="split", ax=ax, palette="viridis",
                 legend="brief")
    ax.set_ylabel(metric_column(metric, k))
    if title:
        ax.set_title(title)
    return ax


def degree_ccdf(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complementary CDF of a degree sequence: x = degree, y = P(degree ≥ x)."""
    values = np.sort(np.asarray(counts))
    uniq, first = np.unique(values, return_index=True)
    return uniq, 1.0 - first / values.size


def markdown(df: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A pandas table as GitHub-flavoured markdown (for ``glue`` with ``{glue:md}``)."""
    return df.to_markdown(floatfmt=floatfmt)


# Which of our registered datasets stands for each dataset a paper reports, and how it differs.
PAPER_DATASETS: dict[tuple[str, str], tuple[str, str]] = {
    ("DE-RRD", "CiteULike"): ("citeulike-t", "same data; the paper's counts carry the code's +1 "
                              "phantom user and item, and its interactions are the LOO training part"),
    ("DE-RRD", "Foursquare"): ("foursquare-vldb17", "same source (VLDB'17); the paper's user filter "
                               "(19,466 users) is unknown, ours keeps users with >= 5 items"),
    ("RD", "Gowalla"): ("gowalla-vldb17-1k-ts", "substitute: RD's Caser Gowalla files are not "
                        "obtainable; a 1,000-user sample with timestamps"),
    ("RD", "Foursquare"): ("foursquare-vldb17-5k-ts", "substitute: RD's Caser Foursquare is not "
                           "obtainable; a 5k-user sample with timestamps"),
}
_STAT_OF = {"#users": "n_users", "#items": "n_items", "#interactions": "n_interactions"}


def paper_dataset_table(ours: pd.DataFrame) -> pd.DataFrame:
    """Each paper-reported dataset statistic next to ours.

    ``ours`` is indexed by dataset name with columns ``n_users, n_items, n_interactions`` and,
    optionally, ``n_train_loo`` (training interactions after leave-one-out, which is what DE-RRD's
    Table 1 counts). Returns one row per (paper, dataset, statistic).
    """
    ref = paper_numbers(model_role="data")
    rows = []
    for (paper, name), (ours_name, note) in PAPER_DATASETS.items():
        sub = ref[(ref["paper"] == paper) & (ref["dataset"] == name)]
        for _, r in sub[sub["metric"].isin(list(_STAT_OF))].iterrows():
            col = _STAT_OF[r["metric"]]
            if paper == "DE-RRD" and col == "n_interactions" and "n_train_loo" in ours.columns:
                col = "n_train_loo"
            value = ours.loc[ours_name, col] if ours_name in ours.index else np.nan
            rows.append({"paper": paper, "paper dataset": name, "statistic": r["metric"],
                         "paper value": r["value"], "ours": value, "our dataset": ours_name,
                         "note": note})
    return pd.DataFrame(rows)


def reference_table(paper: str, dataset: str, base_model: str, method_prefix: str,
                    digits: int = 4) -> pd.DataFrame:
    """The paper's and the official logs' numbers for one method as a wide table.

    Rows: ``"official log"`` (numbers whose source is an official training log) and
    ``"paper"`` (the paper's table); columns ``metric_column(metric, k)``. Values are formatted
    strings, ready to stack under :func:`mean_std_table`.
    """
    ref = paper_numbers(paper, dataset=dataset, base_model=base_model)
    ref = ref[ref["method"].str.startswith(method_prefix)]
    if ref.empty:
        raise KeyError(f"no reported numbers for {paper}/{dataset}/{base_model}/{method_prefix}*")
    ref = ref.assign(
        row=np.where(ref["source"].str.contains("official log"), "official log", "paper"),
        col=[metric_column(m.lower(), int(k)) for m, k in zip(ref["metric"], ref["cutoff"],
                                                              strict=True)])
    wide = ref.pivot_table(index="row", columns="col", values="value", aggfunc="first")
    return wide.map(lambda v: f"{v:.{digits}f}")


def _seconds_range(low: float, high: float) -> str:
    """An official timing range as a cell: ``"28–34"``, or ``"11.1"`` when low = high."""
    return f"{low:g}–{high:g}" if low != high else f"{low:g}"


def _median_cell(seconds: pd.Series) -> str:
    """Our repeated timings as a cell: ``"0.512 (median of 3)"``."""
    return f"{seconds.median():.3f} (median of {len(seconds)})"


def _bench_csv(path: str | Path | None, name: str) -> Path:
    """``path``, or ``benchmarks/results/<name>.csv`` of this repository when it is None."""
    return Path(path or repo_root() / "benchmarks" / "results" / f"{name}.csv")


def benchmark_table(path=None) -> pd.DataFrame:
    """Our benchmark rows (``benchmarks/results/bpr_citeulike.csv``) summarised per device, next to
    the official code's timings (``data/official_timings.csv``) for the same quantities."""
    path = _bench_csv(path, "bpr_citeulike")
    official = pd.read_csv(repo_root() / "data" / "official_timings.csv")
    official = official[official["method"] == "BPR student"]
    rows = [{"code": "official DE-RRD", "quantity": r.quantity, "hardware": r.hardware,
             "seconds": _seconds_range(r.low_s, r.high_s)}
            for r in official.itertuples()]
    try:
        ours = pd.read_csv(path)
    except FileNotFoundError:
        ours = pd.DataFrame(columns=["benchmark", "device_name", "seconds"])
    for (q, dev), g in ours.groupby(["benchmark", "device_name"]):
        rows.append({"code": "rdlib", "quantity": q, "hardware": dev,
                     "seconds": _median_cell(g["seconds"])})
    return pd.DataFrame(rows).sort_values(["quantity", "code"]).reset_index(drop=True)


# row order of the timing tables (rdlib.distill.METHODS, not imported: it would pull in torch)
_METHOD_ORDER = ("none", "rd", "cd", "de", "rrd", "de-rrd", "teacher_topk")


def _method_rank(methods: pd.Series) -> pd.Series:
    """Each method's place in :data:`_METHOD_ORDER` (others after it), as a sort key."""
    order = {m: i for i, m in enumerate(_METHOD_ORDER)}
    return methods.map(lambda m: order.get(m, len(order)))

# data/official_timings.csv method names → rdlib.distill methods
_OFFICIAL_METHODS = {"BPR student": "none", "DE": "de", "RRD": "rrd"}
KD_TIMING_COLUMNS = ["code", "method", "epoch", "hardware", "allocator", "seconds",
                     "speed-up vs official CPU", "speed-up vs official GPU log"]


def _official_train_epoch(official: str | Path | None = None) -> pd.DataFrame:
    """``data/official_timings.csv``'s per-epoch training rows with rdlib method names."""
    off = pd.read_csv(official or repo_root() / "data" / "official_timings.csv")
    off = off[(off["quantity"] == "train_epoch") & off["method"].isin(list(_OFFICIAL_METHODS))]
    return off.assign(method=off["method"].map(_OFFICIAL_METHODS)).reset_index(drop=True)


def _speedup(low: float, high: float) -> str:
    """``"2.3–4.0×"``, or ``"13.0×"`` when the official time is one number."""
    return f"{low:.1f}×" if f"{low:.1f}" == f"{high:.1f}" else f"{low:.1f}–{high:.1f}×"


def kd_timing_table(path: str | Path | None = None, *,
                    official: str | Path | None = None) -> pd.DataFrame:
    """Our per-epoch training times of the KD methods next to the official code's.

    ``path`` (default ``benchmarks/results/kd_citeulike.csv``, written by
    ``benchmarks/bench_kd.py``) is summarised as the median seconds per method, epoch, device
    and allocator (``"0.512 (median of 3)"``; rows written before the benchmark recorded its
    allocator used glibc's default, ``ALLOCATOR_NOT_RECORDED``; the allocator changes a CPU
    epoch's time, :func:`allocator_epoch_table`, so rows of two allocators are never pooled);
    ``official`` (default ``data/official_timings.csv``) gives the official code's
    ``train_epoch`` ranges (``"28–34"``) for the student, DE and RRD.
    ``speed-up vs official CPU`` is the official CPU range divided by our median, for our CPU
    rows of a method that has one (``"2.3–4.0×"``); ``speed-up vs official GPU log`` is the
    authors' logged GPU time divided by our median, for our GPU rows (another GPU than theirs,
    whose model is unknown, so it says how far apart the two are, not which code is faster on one
    GPU). Columns: :data:`KD_TIMING_COLUMNS`; a missing ``path`` gives an empty table.
    """
    path = _bench_csv(path, "kd_citeulike")
    if not path.is_file():
        return pd.DataFrame(columns=KD_TIMING_COLUMNS)
    ours = pd.read_csv(path)
    if "allocator" not in ours:
        ours["allocator"] = ALLOCATOR_NOT_RECORDED
    off = _official_train_epoch(official)
    ranges = {kind: {r.method: (r.low_s, r.high_s) for r in off.itertuples()
                     if kind in str(r.hardware).lower()} for kind in ("cpu", "gpu")}
    rows = [{"code": "official DE-RRD", "method": r.method, "epoch": "", "hardware": r.hardware,
             "allocator": "", "seconds": _seconds_range(r.low_s, r.high_s),
             "speed-up vs official CPU": "", "speed-up vs official GPU log": ""}
            for r in off[off["method"].isin(set(ours["method"]))].itertuples()]
    keys = ["method", "epoch", "device", "device_name", "allocator"]
    for (method, epoch, device, name, allocator), g in ours.groupby(keys, dropna=False,
                                                                    sort=False):
        median = float(g["seconds"].median())
        kind = "cpu" if str(device).startswith("cpu") else "gpu"
        speedup = {"cpu": "", "gpu": ""}
        if method in ranges[kind] and median > 0:
            low, high = ranges[kind][method]
            speedup[kind] = _speedup(low / median, high / median)
        rows.append({"code": "rdlib", "method": method,
                     "epoch": "" if pd.isna(epoch) else str(int(epoch)), "hardware": name,
                     "allocator": allocator, "seconds": _median_cell(g["seconds"]),
                     "speed-up vs official CPU": speedup["cpu"],
                     "speed-up vs official GPU log": speedup["gpu"]})
    out = pd.DataFrame(rows, columns=KD_TIMING_COLUMNS)
    out = out.assign(_m=_method_rank(out["method"]),
                     _c=(out["code"] == "rdlib").astype(int),
                     _e=pd.to_numeric(out["epoch"], errors="coerce"))
    return (out.sort_values(["_m", "method", "_c", "_e", "hardware"], kind="stable")
            .drop(columns=["_m", "_c", "_e"]).reset_index(drop=True))


# our data set names → the DE-RRD paper's; our model names → its base_model column
_INFERENCE_DATASETS = {"citeulike-t-derrd-loo": "CiteULike", "citeulike-t": "CiteULike",
                       "foursquare-vldb17": "Foursquare"}
_INFERENCE_MODELS = {"bpr": "BPR", "neumf": "NeuMF"}
INFERENCE_COLUMNS = ["dataset", "model", "phi", "dim", "n_parameters", "paper params_M",
                     "hardware", "seconds (all users)", "repeats", "paper inference_time_s",
                     "time ratio 0.1/1.0", "paper time ratio 0.1/1.0"]


DENORMAL_COLUMNS = ["denormal share", "device", "load (1 min)", "flush off (s)", "flush on (s)",
                    "slow-down"]


def denormal_table(path: str | Path | None = None) -> pd.DataFrame:
    """``benchmarks/bench_denormal.py``'s rows as one line per share of denormal weights and
    device: the median seconds of a forward and backward of DE's large expert with flushing off
    and on, and their ratio (``"7.7×"``), beside the mean load average while it ran. Columns:
    :data:`DENORMAL_COLUMNS`; a missing ``path`` gives an empty table."""
    path = _bench_csv(path, "denormal")
    if not path.is_file():
        return pd.DataFrame(columns=DENORMAL_COLUMNS)
    df = pd.read_csv(path)
    rows = []
    for (share, name), g in df.groupby(["share", "device_name"], sort=True):
        off = float(g.loc[~g["flush"], "seconds"].median())
        on = float(g.loc[g["flush"], "seconds"].median())
        rows.append({"denormal share": f"{share:.1%}", "device": name,
                     "load (1 min)": round(float(g["load_1min"].mean()), 1),
                     "flush off (s)": round(off, 3), "flush on (s)": round(on, 3),
                     "slow-down": f"{off / on:.1f}×"})
    return pd.DataFrame(rows, columns=DENORMAL_COLUMNS)


ALLOCATOR_COLUMNS = ["device", "threads", "allocator", "steps", "CPU s", "kernel s",
                     "page faults", "same weights"]


def allocator_table(path: str | Path | None = None) -> pd.DataFrame:
    """``benchmarks/bench_allocator.py``'s rows, one per allocator and measurement: the CPU
    seconds (user + kernel) of its dense DE training steps, the kernel's part, the minor page
    faults, and whether both allocators ended with the same weights. CPU seconds rather than
    wall time, since the benchmark may share the machine with training runs. Columns:
    :data:`ALLOCATOR_COLUMNS`; a missing ``path`` gives an empty table."""
    path = _bench_csv(path, "allocator")
    if not path.is_file():
        return pd.DataFrame(columns=ALLOCATOR_COLUMNS)
    df = pd.read_csv(path)
    return pd.DataFrame({
        "device": df["device_name"].map(short_device_name), "threads": df["threads"],
        "allocator": df["allocator"], "steps": df["steps"],
        "CPU s": (df["user_s"] + df["sys_s"]).round(2), "kernel s": df["sys_s"].round(2),
        "page faults": df["minor_faults"], "same weights": df["identical"].astype(bool)},
        columns=ALLOCATOR_COLUMNS)


ALLOCATOR_EPOCH_COLUMNS = ["method", "epoch", "device", "threads", "default s", "1 GiB s",
                           "change", "epochs timed", "p"]


def allocator_epoch_table(path: str | Path | None = None) -> pd.DataFrame:
    """Whole training epochs under both allocators, from ``benchmarks/bench_kd.py``'s rows
    (default ``benchmarks/results/kd_citeulike.csv``): per method, epoch, device and threads
    measured under glibc's default (``RDLIB_MALLOC_DEFAULT=1``) and under
    :func:`rdlib.env.keep_freed_memory`, the median seconds of each, the change
    (``"-10.7%"``), the epochs timed under each (``"9 / 9"``, default first) and the two-sided
    Mann–Whitney U p-value of the two samples of epoch times. Wall seconds, and a machine
    shared with training runs adds noise to both sides, so a change is told apart from that
    noise only by its p (the epochs of one benchmark process are not independent draws, so p
    is optimistic if anything). Rows written before the benchmark recorded its allocator are
    left out: they were measured on other days and commits. Columns:
    :data:`ALLOCATOR_EPOCH_COLUMNS`."""
    path = _bench_csv(path, "kd_citeulike")
    df = pd.read_csv(path) if path.is_file() else pd.DataFrame()
    if "allocator" not in df or df.empty:
        return pd.DataFrame(columns=ALLOCATOR_EPOCH_COLUMNS)
    df = df[(df["benchmark"] == "train_epoch")
            & df["allocator"].isin([ALLOCATOR_DEFAULT, ALLOCATOR_KEPT])]
    keys = ["method", "epoch", "device_name", "threads"]
    rows = []
    for key, group in df.groupby(keys):
        old, new = (group.loc[group["allocator"] == a, "seconds"].to_numpy()
                    for a in (ALLOCATOR_DEFAULT, ALLOCATOR_KEPT))
        if not (len(old) and len(new)):
            continue  # measured under one allocator only: nothing to pair
        a, b = float(np.median(old)), float(np.median(new))
        rows.append({**dict(zip(keys, key, strict=True)), "default s": round(a, 3),
                     "1 GiB s": round(b, 3), "change": f"{(b / a - 1):+.1%}",
                     "epochs timed": f"{len(old)} / {len(new)}",
                     "p": float(sps.mannwhitneyu(old, new, alternative="two-sided").pvalue)})
    if not rows:
        return pd.DataFrame(columns=ALLOCATOR_EPOCH_COLUMNS)
    out = pd.DataFrame(rows)
    out = (out.assign(_m=_method_rank(out["method"]))
           .sort_values(["_m", "method", "epoch", "device_name", "threads"]))
    return out.assign(epoch=out["epoch"].astype(int),
                      device=out["device_name"].map(short_device_name)
                      )[ALLOCATOR_EPOCH_COLUMNS].reset_index(drop=True)


def _paper_table3() -> pd.DataFrame:
    """DE-RRD Table 3 as columns dataset, model, phi, paper params_M, paper
    inference_time_s."""
    ref = paper_numbers("DE-RRD")
    ref = ref[ref["metric"].isin(["params_M", "inference_time_s"])
              & ref["method"].str.fullmatch(r"DE-RRD \(phi=[0-9.]+\)")]
    ref = ref.assign(phi=ref["method"].str.extract(r"phi=([0-9.]+)", expand=False).astype(float))
    wide = ref.pivot_table(index=["dataset", "base_model", "phi"], columns="metric",
                           values="value", aggfunc="first").reset_index()
    return wide.rename(columns={"base_model": "model", "params_M": "paper params_M",
                                "inference_time_s": "paper inference_time_s"})


def _ratio_at_01(df: pd.DataFrame, col: str, keys: list[str]) -> pd.Series:
    """``col`` at φ = 0.1 over ``col`` at φ = 1.0 within ``keys``, on the φ = 0.1 rows (NaN
    elsewhere or when either is missing)."""
    base = df[df["phi"] == 1.0].set_index(keys)[col]
    base = base[~base.index.duplicated()]
    ref = pd.Series([base.get(tuple(k), np.nan) for k in df[keys].itertuples(index=False)],
                    index=df.index, dtype=float)
    return (df[col] / ref).where(df["phi"] == 0.1)


def inference_table(path: str | Path | None = None) -> pd.DataFrame:
    """DE-RRD Table 3 beside ours: parameters and inference time per data set, model and φ.

    ``path`` (default ``benchmarks/results/inference.csv``, written by
    ``benchmarks/bench_inference.py``) gives our parameter count and the median
    ``seconds_all_users`` per device (``hardware``), from the newest run of each data set and
    model on that device; the paper's ``params_M`` and
    ``inference_time_s`` come from :func:`paper_numbers` (``"DE-RRD (phi=…)"`` rows). Data sets
    and models carry the paper's names (CiteULike, Foursquare; BPR, NeuMF).
    ``time ratio 0.1/1.0`` (ours, per device) and ``paper time ratio 0.1/1.0`` are on the φ = 0.1
    rows: the paper's claim is a fall of ~26% for NeuMF and only 5–7% for BPR. Columns:
    :data:`INFERENCE_COLUMNS`; a missing ``path`` gives an empty table.
    """
    path = _bench_csv(path, "inference")
    if not path.is_file():
        return pd.DataFrame(columns=INFERENCE_COLUMNS)
    ours = pd.read_csv(path)
    ours = ours.assign(dataset=ours["dataset"].map(lambda d: _INFERENCE_DATASETS.get(d, d)),
                       model=ours["model"].map(lambda m: _INFERENCE_MODELS.get(m, m)),
                       phi=ours["phi"].astype(float))
    keys = ["dataset", "model", "phi", "dim", "n_parameters", "device_name"]
    # the newest measurement of each model on each hardware (a rerun after a code change
    # replaces the older rows rather than being pooled with them)
    newest = ours.groupby(["dataset", "model", "device_name"])["timestamp"].transform("max")
    ours = ours[ours["timestamp"] == newest]
    agg = (ours.groupby(keys, sort=False)["seconds_all_users"]
           .agg(**{"seconds (all users)": "median", "repeats": "count"}).reset_index()
           .rename(columns={"device_name": "hardware"}))
    out = agg.merge(_paper_table3(), on=["dataset", "model", "phi"], how="left")
    out["time ratio 0.1/1.0"] = _ratio_at_01(out, "seconds (all users)",
                                             ["dataset", "model", "hardware"])
    out["paper time ratio 0.1/1.0"] = _ratio_at_01(out, "paper inference_time_s",
                                                   ["dataset", "model", "hardware"])
    out = out.sort_values(["dataset", "model", "hardware", "phi"],
                          ascending=[True, True, True, False], kind="stable")
    return out.reindex(columns=INFERENCE_COLUMNS).reset_index(drop=True)


def papermill_command(notebook: str, parameters: dict, output: str | None = None) -> str:
    """The exact ``papermill`` command that re-executes ``notebook`` with ``parameters``, to show
    in a page's Reproduce box.

    A scalar goes as ``-p`` (papermill reads a number, ``True``, ``False`` or ``None`` as such
    and anything else as a string); a list goes as ``-y`` YAML, since ``-p seeds "[0, 1]"``
    would give the notebook the string ``"[0, 1]"``, not a list. Each argument is quoted for a
    POSIX shell."""
    output = output or f"book/{notebook.rsplit('/', 1)[-1]}"
    parts = ["papermill", notebook, output]
    for key, value in parameters.items():
        if isinstance(value, list | tuple):
            parts += ["-y", shlex.quote(f"{key}: {json.dumps(list(value))}")]
        else:
            parts += ["-p", key, shlex.quote(str(value))]
    return " ".join(parts)


def devices_of(manifests: Sequence[dict]) -> str:
    """The devices (and library versions) that produced a set of runs, in one line."""
    seen = sorted({f"{m['device_name']}, torch {m['versions']['torch']}" for m in manifests})
    return "; ".join(seen) if seen else "no stored run"
