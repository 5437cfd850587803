"""The DE-RRD chapter's grid, Table 2, paired tests and claim checks (rdlib.derrd), on a store
of hand-made runs."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rdlib import derrd
from rdlib.distill import teacher_config
from rdlib.paths import repo_root
from rdlib.results import ALLOCATOR_NOT_RECORDED, ResultStore, RunRecord

N_USERS = 300


def _store_run(store: ResultStore, cell: derrd.Cell, hr5: np.ndarray) -> None:
    """A stored run whose per-user test HR@5 is ``hr5`` (other metrics: a fixed fraction)."""
    per_user = {"test/users": np.arange(N_USERS)}
    rows = []
    for metric in ("hr", "mrr", "ndcg"):
        for k in (5, 10, 20):
            v = hr5 * (1.0 if metric == "hr" else 0.7) * (1 + k / 100)
            per_user[f"test/{metric}@{k}"] = v.astype(np.float32)
            for split in ("valid", "test"):
                rows.append({"split": split, "metric": metric, "k": k,
                             "value": float(v.mean()), "epoch": 3})
    _save(store, cell, rows, pd.DataFrame(), per_user)


def _save(store: ResultStore, cell: derrd.Cell, rows: list[dict], curve: pd.DataFrame,
          per_user: dict[str, np.ndarray]) -> None:
    """Store a hand-made run of ``cell``: metric ``rows`` (split, metric, k, value, epoch)."""
    cfg = cell.cfg
    labels = {"run_id": cfg.run_id, "paper": "DE-RRD", "dataset": cfg.dataset,
              "protocol": cfg.protocol, "model": cfg.model, "role": cfg.role,
              "method": cfg.method, "dim": cfg.dim, "seed": cfg.seed}
    frame = pd.DataFrame([{**labels, **r} for r in rows])
    store.save(RunRecord(cfg.run_id, {"config": cfg.to_dict()}, frame, curve, per_user))


@pytest.fixture
def filled(tmp_path):
    """Student seeds 0-2, RRD seeds 0-2 (clearly better per user), DE seed 0 (equal), teacher."""
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], list(derrd.METHODS), seeds=[0, 1, 2])
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2, size=N_USERS).astype(float)
    for c in cells:
        if c.method == "Student":  # seeds differ a little, so there is seed noise
            _store_run(store, c, base * (1 - 0.01 * c.cfg.seed))
        elif c.method == "RRD":
            better = np.maximum(base, (np.arange(N_USERS) % 3 == 0))
            _store_run(store, c, better * (1 - 0.02 * c.cfg.seed))
        elif c.method == "DE" and c.cfg.seed == 0:
            _store_run(store, c, base)
        elif c.method == "Teacher":
            _store_run(store, c, np.ones(N_USERS))
    return store, cells


def test_grid_sizes_and_teacher_is_the_students_teacher():
    cells = derrd.chapter_grid("full", ["CiteULike/BPR", "Foursquare/NeuMF"],
                               ["Teacher", "Student", "DE"], seeds=[0, 1], phis=(0.1, 0.5))
    # per setting: 1 teacher + 2 methods × 2 φ × 2 seeds
    assert len(cells) == 2 * (1 + 2 * 2 * 2)
    for setting, tseed in (("CiteULike/BPR", 0), ("Foursquare/NeuMF", 1)):
        teacher = next(c for c in cells if c.setting == setting and c.method == "Teacher")
        assert teacher.cfg.dim == 200 and teacher.cfg.seed == tseed
        for c in cells:
            if c.setting == setting and c.method == "DE":  # every seed: the setting's one teacher
                assert teacher_config(c.cfg).run_id == teacher.cfg.run_id
    cite = [c for c in cells if c.setting == "CiteULike/BPR"]
    seed1 = next(c for c in cite if c.method == "DE" and c.cfg.seed == 1)
    assert seed1.cfg.extra == {"teacher": {"dim": 200, "seed": 0}}
    seed0 = next(c for c in cite if c.method == "DE" and c.cfg.seed == 0)
    assert seed0.cfg.extra == {"teacher": {"dim": 200}}  # as the stored seed-0 runs spell it
    four0 = next(c for c in cells if c.setting == "Foursquare/NeuMF" and c.method == "DE"
                 and c.cfg.seed == 0)
    assert four0.cfg.extra == {"teacher": {"dim": 200, "seed": 1}}
    dims = {(c.method, c.phi): c.cfg.dim for c in cells if c.setting == "CiteULike/BPR"}
    assert dims[("Student", 0.1)] == 20 and dims[("DE", 0.5)] == 100
    four = next(c for c in cells if c.setting == "Foursquare/NeuMF")
    assert (four.cfg.dataset, four.cfg.model) == ("foursquare-vldb17", "neumf")


def test_set_aside_cells_are_the_seed0_teachers_runs_the_grid_no_longer_names():
    """Foursquare/NeuMF distils from a seed-1 teacher (TEACHER_SEEDS); the seed-0 teacher's
    cells keep the run ids its H100 runs were stored under, and no grid cell shares them."""
    assert derrd.TEACHER_SEEDS == {"Foursquare/NeuMF": 1}
    methods = list(derrd.METHODS)
    aside = derrd.set_aside_cells("full", list(derrd.SETTINGS), methods, seeds=[0, 1])
    assert {c.setting for c in aside} == {"Foursquare/NeuMF"}
    assert "Student" not in {c.method for c in aside}  # plain students have no teacher
    ids = {(c.method, c.cfg.seed): c.cfg.run_id[-12:] for c in aside}
    # the ids of the stored H100 teacher and its two RRD students (results/runs)
    assert (ids[("Teacher", 0)], ids[("RRD", 0)], ids[("RRD", 1)]) == (
        "2ca702ac9899", "beb2389aa81e", "8000b4cd9e07")
    grid = derrd.chapter_grid("full", list(derrd.SETTINGS), methods, seeds=[0, 1])
    assert not {c.cfg.run_id for c in aside} & {c.cfg.run_id for c in grid}
    assert derrd.set_aside_cells("full", ["CiteULike/BPR"], methods) == []


def test_table2_without_references_keeps_our_rows_only(filled):
    store, cells = filled
    t = derrd.table2(derrd.stored_rows(store, cells), "CiteULike/BPR", references=False)
    assert set(t.index.get_level_values("source").str[:4]) == {"ours"}
    assert list(t.index.get_level_values("method")) == list(derrd.METHODS)
    empty = derrd.stored_rows(store, [])
    assert empty.empty and "run_id" in empty.columns  # no cells: no rows, the same columns


@pytest.mark.parametrize("kwargs, needle", [
    ({"settings": ["MovieLens/BPR"], "methods": ["DE"]}, "MovieLens/BPR"),
    ({"settings": ["CiteULike/BPR"], "methods": ["KD"]}, "KD"),
    ({"settings": ["CiteULike/BPR"], "methods": ["RRD"], "lambdas": "tuned"}, "tuned"),
])
def test_grid_rejects_unknown_names(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        derrd.chapter_grid("smoke", **kwargs)


def test_lambda_sources_differ_for_neumf_only():
    methods = ["Student", "DE", "RRD", "DE-RRD"]
    grids = {src: {(c.setting, c.method): c for c in derrd.chapter_grid(
        "full", ["CiteULike/BPR", "CiteULike/NeuMF"], methods, seeds=[0], lambdas=src)}
        for src in derrd.LAMBDA_SOURCES}
    paper, official = grids["paper"], grids["official"]
    for key in paper:  # BPR, and NeuMF's Student and DE: one run under both sources
        same = key[0] == "CiteULike/BPR" or key[1] in ("Student", "DE")
        assert (paper[key].cfg.run_id == official[key].cfg.run_id) == same, key
    assert paper["CiteULike/NeuMF", "RRD"].cfg.extra["lmbda_rrd"] == 0.1
    de_rrd = paper["CiteULike/NeuMF", "DE-RRD"].cfg.extra
    assert (de_rrd["lmbda_de"], de_rrd["lmbda_rrd"]) == (1e-4, 1e-1)
    assert set(official["CiteULike/NeuMF", "DE-RRD"].cfg.extra) == {"teacher"}


def test_with_options_spells_defaults_once():
    paper = derrd.chapter_grid("full", ["CiteULike/NeuMF"], ["DE-RRD"], seeds=[0])[0]
    official = derrd.chapter_grid("full", ["CiteULike/NeuMF"], ["DE-RRD"], seeds=[0],
                                  lambdas="official")[0]
    back = derrd.with_options(paper, lmbda_de=0.01, lmbda_rrd=0.001)
    assert back.cfg.extra == official.cfg.extra and back.cfg.run_id == official.cfg.run_id
    assert derrd.with_options(official, lmbda_rrd=0.1).cfg.extra["lmbda_rrd"] == 0.1
    grid = {(l_de, l_rrd): c for l_de, l_rrd, c in derrd.lambda_cells([paper], "CiteULike/NeuMF")}
    assert grid[1e-4, 1e-1].cfg.run_id == paper.cfg.run_id  # Table 2's cell in Table 5
    assert grid[1e-2, 1e-3].cfg.run_id == official.cfg.run_id
    assert len({c.cfg.run_id for c in grid.values()}) == 16


def test_student_dim_rejects_other_phi():
    assert derrd.student_dim(0.5) == 100
    with pytest.raises(ValueError, match="phi"):
        derrd.student_dim(0.3)


def test_holm_hand_worked():
    # sorted p: 0.01, 0.02, 0.04 (+ NaN) → 3·0.01, max(2·0.02, 0.03), max(1·0.04, 0.04)
    got = derrd.holm([0.04, 0.01, np.nan, 0.02])
    assert np.allclose(got[[1, 3, 0]], [0.03, 0.04, 0.04]) and np.isnan(got[2])
    assert derrd.holm([0.6, 0.5])[0] == 1.0  # capped
    assert derrd.holm([]).size == 0


def test_table2_rows_and_not_run_cells(filled):
    store, cells = filled
    rows = derrd.stored_rows(store, cells)
    t = derrd.table2(rows, "CiteULike/BPR")
    assert list(t.columns[:3]) == ["HR@5", "MRR@5", "NDCG@5"]
    hr5 = rows[(rows.method == "Student") & (rows.split == "test") & (rows.metric == "hr")
               & (rows.k == 5)].value
    assert t.loc[("Student", "ours (n=3)"), "HR@5"] == f"{hr5.mean():.4f} ± {hr5.std():.4f}"
    assert t.loc[("RD", "ours (n=0)"), "HR@5"] == "not run"
    assert t.loc[("DE", "ours (n=1)"), "HR@5"].count("±") == 0
    # the paper's value comes from data/paper_results.csv, the log row only where a log exists
    assert t.loc[("Student", "paper"), "HR@5"] == "0.4441"
    assert ("DE", "official log") in t.index and ("CD", "official log") not in t.index


def test_paired_tests_match_scipy_and_are_holm_adjusted(filled):
    store, cells = filled
    res = derrd.paired_tests(store, cells, "CiteULike/BPR")
    assert set(res["method"]) == {"RRD", "DE"}  # methods without runs are left out
    rrd = res[(res["method"] == "RRD") & (res["metric"] == "HR@5")].iloc[0]
    def seed_mean(label):
        return np.mean([store.per_user(c.cfg.run_id)["test/hr@5"] for c in cells
                        if c.method == label], axis=0)
    base, better = seed_mean("Student"), seed_mean("RRD")
    assert rrd["n_seeds"] == 3
    assert rrd["p"] == pytest.approx(sps.wilcoxon(better, base).pvalue, rel=1e-6)
    assert rrd["diff"] > 0 and rrd["significant"]
    de = res[res["method"] == "DE"]
    assert (de["n_seeds"] == 1).all() and (de["p"] == 1.0).all() and not de["significant"].any()
    assert np.allclose(res["p_holm"], derrd.holm(res["p"].to_numpy()))


def test_paired_tests_rank_tied_seed_means_as_ties(tmp_path):
    """HR@5 averaged over 5 seeds takes the values j/5: equal differences must tie in the
    Wilcoxon ranks. Float32 averages made them differ in the last bit (p 0.306 instead of 0.224
    here); the independent check counts hits in integers."""
    store = ResultStore(tmp_path)
    cells = [c for c in derrd.chapter_grid("full", ["CiteULike/BPR"], ["Student", "RRD"])
             if c.phi == 0.1]
    rng = np.random.default_rng(0)
    hits = {"Student": rng.random((5, 2000)) < 0.45, "RRD": rng.random((5, 2000)) < 0.47}
    for c in cells:
        hr5 = hits[c.method][c.cfg.seed].astype(np.float32)  # (users,)
        _save(store, c, [{"split": "test", "metric": "hr", "k": 5, "value": float(hr5.mean()),
                          "epoch": 1}], pd.DataFrame(), {"test/users": np.arange(2000),
                                                         "test/hr@5": hr5})
    got = derrd.paired_tests(store, cells, "CiteULike/BPR", metrics=(("hr", 5),)).iloc[0]
    counts = hits["RRD"].sum(0).astype(int) - hits["Student"].sum(0).astype(int)  # (users,)
    exact = sps.wilcoxon(counts / 5, zero_method="wilcox").pvalue
    assert got["n_seeds"] == 5 and got["p"] == pytest.approx(exact, rel=1e-9)
    naive = sps.wilcoxon(hits["RRD"].astype(np.float32).mean(0),
                         hits["Student"].astype(np.float32).mean(0)).pvalue
    assert abs(naive - exact) > 0.05  # the premise: untied float32 averages change p here


def test_log_check_uses_student_noise_for_a_single_seed(filled):
    store, cells = filled
    rows = derrd.stored_rows(store, cells)
    chk = derrd.log_check(rows).set_index("method")
    assert chk.loc["DE", "n_seeds"] == 1 and chk.loc["DE", "std from"] == "Student's seeds"
    assert chk.loc["RRD", "std from"] == "own seeds"
    assert chk.loc["Student", "official log"] == pytest.approx(0.4486)


def test_paper_lambda_grid_is_table5():
    g = derrd.paper_lambda_grid("BPR")
    assert g.shape == (4, 4)
    assert g.loc[0.01, 0.001] == pytest.approx(0.5308)  # the optimum = Table 2 DE-RRD H@5


def _rows(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Test-split HR@5 rows: (setting, method) → per-seed values (other metrics copy HR@5)."""
    out = []
    for (setting, method), vals in values.items():
        for seed, v in enumerate(vals):
            for metric in ("hr", "mrr", "ndcg"):
                for k in (5, 10, 20):
                    out.append({"setting": setting, "method": method,
                                "phi": 1.0 if method == "Teacher" else 0.1, "split": "test",
                                "metric": metric, "k": k, "value": v, "seed": seed})
    return pd.DataFrame(out, columns=["setting", "method", "phi", "split", "metric", "k",
                                      "value", "seed"])


def test_claim1_ordering_verdicts():
    cu = "CiteULike/BPR"
    full = {(cu, "DE-RRD"): [0.49], (cu, "DE"): [0.48], (cu, "RRD"): [0.47], (cu, "CD"): [0.46],
            (cu, "RD"): [0.455], (cu, "Student"): [0.45]}
    assert derrd.claim1_ordering(_rows(full))["verdict"] == derrd.REPRODUCED
    swapped = dict(full)
    swapped[(cu, "RRD")] = [0.485]  # RRD above DE breaks DE ≥ RRD only
    assert derrd.claim1_ordering(_rows(swapped))["verdict"] == derrd.PARTLY
    part = {k: v for k, v in full.items() if k[1] in ("RRD", "Student", "RD")}
    got = derrd.claim1_ordering(_rows(part))
    assert got["verdict"] == derrd.INCOMPLETE and "CD vs Student" in got["evidence"]
    assert derrd.claim1_ordering(_rows({(cu, "Student"): [0.45]}))["verdict"] == derrd.NOT_TESTED
    # a gain over the student that is not significant does not count
    tests = pd.DataFrame({"method": ["RD"], "metric": ["HR@5"], "significant": [False]})
    assert "RD > Student: no" in derrd.claim1_ordering(_rows(part), tests)["evidence"]


def _between(better: str, worse: str, diff: float, significant: bool) -> pd.DataFrame:
    return pd.DataFrame({"better": [better], "worse": [worse], "diff": [diff],
                         "p_holm": [0.01 if significant else 0.5], "significant": [significant]})


@pytest.mark.parametrize("relation, means, significant, held", [
    # "≥" claims no loss: a lower mean fails only when the loss is significant
    (("DE-RRD", "DE"), (0.479, 0.480), False, True),
    (("DE-RRD", "DE"), (0.479, 0.480), True, False),
    (("DE-RRD", "DE"), (0.481, 0.480), True, True),
    # ">" needs a higher mean and a significant difference
    (("RRD", "RD"), (0.470, 0.460), True, True),
    (("RRD", "RD"), (0.470, 0.460), False, False),
    (("RRD", "RD"), (0.450, 0.460), True, False),
])
def test_claim1_judges_kd_relations_by_their_test(relation, means, significant, held):
    cu = "CiteULike/BPR"
    values = {(cu, "DE-RRD"): [0.49], (cu, "DE"): [0.48], (cu, "RRD"): [0.47], (cu, "CD"): [0.46],
              (cu, "RD"): [0.455], (cu, "Student"): [0.45]}
    values[(cu, relation[0])], values[(cu, relation[1])] = [means[0]], [means[1]]
    between = _between(*relation, means[0] - means[1], significant)
    got = derrd.claim1_ordering(_rows(values), between=between)
    op = "≥" if relation == ("DE-RRD", "DE") else ">"
    assert f"{relation[0]} {op} {relation[1]}: {'yes' if held else 'no'} (Δ " in got["evidence"]


def test_relation_tests_match_scipy(filled):
    store, cells = filled
    got = derrd.relation_tests(store, cells)
    # DE has seed 0 only; RRD seeds 0-2, so "DE ≥ RRD" pairs seed 0; CD and RD have no runs
    assert list(zip(got["better"], got["worse"], strict=True)) == [("DE", "RRD")]
    run = {c.method: store.per_user(c.cfg.run_id)["test/hr@5"] for c in cells
           if c.cfg.seed == 0 and c.method in ("DE", "RRD")}
    row = got.iloc[0]
    assert row["n_seeds"] == 1 and row["diff"] == pytest.approx(run["DE"].mean() - run["RRD"].mean())
    assert row["p"] == pytest.approx(sps.wilcoxon(run["DE"], run["RRD"]).pvalue, rel=1e-6)
    assert row["p_holm"] == pytest.approx(row["p"])  # one relation: nothing to adjust
    assert derrd.relation_tests(ResultStore(store.root / "empty"), cells).empty


def test_gap_closed_reads_gains_against_the_teacher_student_gap():
    fs = "Foursquare/BPR"
    rows = _rows({(fs, "Teacher"): [0.54], (fs, "Student"): [0.49, 0.51], (fs, "RRD"): [0.51]})
    got = derrd.gap_closed(rows, [fs]).set_index("method")
    # ours: student mean 0.50, gap 0.04, RRD gains 0.01 → a quarter of the gap
    assert got.loc["RRD", "our gap"] == pytest.approx(0.04)
    assert got.loc["RRD", "our share"] == pytest.approx(0.25)
    assert np.isnan(got.loc["DE", "our gain"])  # not run
    # the paper's Foursquare/BPR HR@5, read from the data file
    paper = {m: derrd.reference_rows(fs, m) for m in ("Teacher", "Student", "RRD")}
    hr5 = {m: r.loc[(r["source"] == "paper") & (r["metric"] == "hr") & (r["k"] == 5),
                    "value"].iloc[0] for m, r in paper.items()}
    expected = (hr5["RRD"] - hr5["Student"]) / (hr5["Teacher"] - hr5["Student"])
    assert got.loc["RRD", "paper share"] == pytest.approx(expected)
    assert 0 < expected < 1


def test_claim2_and_claim3():
    s = "CiteULike/NeuMF"
    rows = _rows({(s, "Teacher"): [0.50], (s, "Student"): [0.40], (s, "DE"): [0.41],
                  (s, "RRD"): [0.47], (s, "DE-RRD"): [0.48]})
    c2 = derrd.claim2_best_student(rows, settings=[s])
    assert c2["verdict"] == derrd.REPRODUCED and "0.960" in c2["evidence"]
    c2_all = derrd.claim2_best_student(rows)
    assert c2_all["verdict"] == derrd.INCOMPLETE
    assert "Foursquare/BPR (DE-RRD, teacher, other students)" in c2_all["evidence"]
    no_de_rrd = rows[rows["method"] != "DE-RRD"]
    assert "not run: CiteULike/NeuMF (DE-RRD)" in derrd.claim2_best_student(no_de_rrd, [s])[
        "evidence"]
    low = _rows({(s, "Teacher"): [0.60], (s, "Student"): [0.40], (s, "DE-RRD"): [0.48]})
    assert derrd.claim2_best_student(low, [s])["verdict"] == derrd.NOT_REPRODUCED  # 80% only
    assert derrd.claim3_neumf(rows)["verdict"] == derrd.REPRODUCED  # +17.5% vs +2.5%
    assert derrd.claim3_neumf(_rows({}))["verdict"] == derrd.NOT_TESTED


def test_claim6_inference():
    inf = pd.DataFrame({"dataset": ["CiteULike"] * 2, "model": ["BPR", "NeuMF"],
                        "time ratio 0.1/1.0": [0.95, 0.70]})
    got = derrd.claim6_inference(inf)
    assert got["verdict"] == derrd.REPRODUCED and "30% for NeuMF" in got["evidence"]
    inf["time ratio 0.1/1.0"] = [0.5, 0.02]  # NeuMF falls more, by far more than the paper's
    assert derrd.claim6_inference(inf)["verdict"] == derrd.PARTLY
    inf["time ratio 0.1/1.0"] = [0.5, 0.9]
    assert derrd.claim6_inference(inf)["verdict"] == derrd.NOT_REPRODUCED
    assert derrd.claim6_inference(None)["verdict"] == derrd.NOT_TESTED


def test_claim6_judges_each_device_and_names_it():
    one = pd.DataFrame({"dataset": ["CiteULike"] * 2, "model": ["BPR", "NeuMF"],
                        "time ratio 0.1/1.0": [0.95, 0.70]})
    two = pd.concat([one.assign(hardware="cpu A"),
                     one.assign(hardware="cpu B", **{"time ratio 0.1/1.0": [0.5, 0.1]})])
    got = derrd.claim6_inference(two)
    assert got["verdict"] == derrd.PARTLY  # reproduced on A, only partly on B
    assert "30% for NeuMF and 5% for BPR on cpu A" in got["evidence"]
    assert "90% for NeuMF and 50% for BPR on cpu B" in got["evidence"]
    both = pd.concat([one.assign(hardware="cpu A"), one.assign(hardware="cpu B")])
    assert derrd.claim6_inference(both)["verdict"] == derrd.REPRODUCED
    half = two[(two["hardware"] == "cpu A") | (two["model"] == "BPR")]  # B lacks NeuMF
    got = derrd.claim6_inference(half)
    assert got["verdict"] == derrd.REPRODUCED and "cpu B" not in got["evidence"]


def test_claim7_needs_a_noise_estimate():
    check = pd.DataFrame([
        {"method": "Student", "n_seeds": 1, "ours": 0.45, "std": np.nan, "std from": "x",
         "official log": 0.4486, "z": np.nan, "verdict": "no noise estimate"},
        {"method": "DE", "n_seeds": 0, "official log": 0.4773, "verdict": "not run"}])
    got = derrd.claim7_logs(check)
    assert got["verdict"] == derrd.NOT_TESTED and "no seed-noise estimate" in got["evidence"]
    check.loc[0, ["std", "z", "verdict"]] = [0.005, 0.3, "within seed noise"]
    assert derrd.claim7_logs(check)["verdict"] == derrd.INCOMPLETE
    check.loc[1, ["n_seeds", "ours", "std", "std from", "z", "verdict"]] = [
        2, 0.40, 0.01, "own seeds", 7.7, "outside seed noise"]
    assert derrd.claim7_logs(check)["verdict"] == derrd.PARTLY


def test_option_sweep_marks_the_best_validation_run(tmp_path):
    store = ResultStore(tmp_path)
    base = next(c for c in derrd.chapter_grid("full", ["CiteULike/BPR"], ["CD"], seeds=[0]))
    low = derrd.with_options(base, T=0.1)
    assert low.cfg.extra == {"teacher": {"dim": 200}, "T": 0.1}
    assert low.cfg.run_id != base.cfg.run_id
    _store_run(store, base, np.full(N_USERS, 0.3))
    _store_run(store, low, np.full(N_USERS, 0.5))
    sweep = derrd.option_sweep(store, base, "T", [None, 0.1, 0.02]).set_index("T")
    assert sweep.loc["default", "test"] == pytest.approx(0.3 * 1.05)  # HR@5 = hr5 · (1 + 5/100)
    assert sweep.loc[0.1, "chosen"] and not sweep.loc["default", "chosen"]
    assert np.isnan(sweep.loc[0.02, "test"]) and not sweep.loc[0.02, "chosen"]


def _store_curve_run(store: ResultStore, cell: derrd.Cell, valid10: list[float],
                     test_scale: float, stored: float = 0.9) -> None:
    """A run whose curve has validation HR@10 = ``valid10`` per epoch and every test metric =
    ``test_scale`` × epoch; its stored (per-cutoff) test metrics are ``stored`` each."""
    curve = pd.DataFrame([{"epoch": e, "split": split, "metric": m, "k": k,
                           "value": v if split == "valid" else test_scale * e}
                          for e, v in enumerate(valid10, start=1) for split in ("valid", "test")
                          for m in ("hr", "ndcg") for k in (5, 10, 20)])
    rows = [{"split": "test", "metric": m, "k": k, "value": stored, "epoch": len(valid10)}
            for m in ("hr", "ndcg") for k in (5, 10, 20)]
    _save(store, cell, rows, curve, {})


def test_selection_frame_replays_the_best_epoch_of_each_run(tmp_path):
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["Teacher", "Student", "RD"],
                               seeds=[0, 1])
    plateau = [0.1, 0.5] + [0.4] * 20 + [0.6]  # best-epoch stops at 22 (patience 20), keeps 2
    for c in cells:
        if c.method == "Student":
            _store_curve_run(store, c, plateau, test_scale=0.01 * (1 + c.cfg.seed))
        elif c.method == "RD" and c.cfg.seed == 0:
            _store_curve_run(store, c, [0.1, 0.2, 0.3], test_scale=0.1, stored=0.8)
        elif c.method == "Teacher":  # never part of the comparison
            _store_curve_run(store, c, [0.1], test_scale=1.0)
    frame = derrd.selection_frame(store, cells, "CiteULike/BPR")
    best = frame[frame["selection"] == "best_epoch"].set_index(["method", "seed", "column"])
    assert best.loc[("Student", 0, "HR@5"), "epoch"] == 2  # not the later 0.6 at epoch 23
    assert best.loc[("Student", 1, "HR@20"), "value"] == pytest.approx(0.02 * 2)
    assert best.loc[("RD", 0, "NDCG@10"), "value"] == pytest.approx(0.1 * 3)
    per_cutoff = frame[frame["selection"] == "per_cutoff"].groupby("method")["value"]
    assert per_cutoff.unique().map(list).to_dict() == {"RD": [0.8], "Student": [0.9]}
    assert "Teacher" not in set(frame["method"])
    table = derrd.selection_comparison(frame)
    assert list(table.index) == [("Student", "per_cutoff"), ("Student", "best_epoch"),
                                 ("RD", "per_cutoff"), ("RD", "best_epoch")]
    assert table.loc[("Student", "best_epoch"), "n_seeds"] == 2
    assert table.loc[("Student", "best_epoch"), "HR@5"] == f"{0.03:.4f} ± {np.std([0.02, 0.04], ddof=1):.4f}"
    assert table.loc[("RD", "best_epoch"), "HR@5"] == "0.3000"  # one seed: no ± part
    # the rule flips the order: RD's curve peaks late, the student's early
    assert derrd.selection_orders(frame) == {"per_cutoff": "Student > RD",
                                             "best_epoch": "RD > Student"}
    assert derrd.selection_comparison(frame.iloc[:0]).empty


def test_replay_matches_the_stored_best_epoch_runs_of_the_chapter():
    """On the committed CiteULike/BPR runs: the best-epoch student runs of seeds 0 and 1 report
    what replaying their per-cutoff twins' curves gives."""
    store = ResultStore(repo_root() / "results")
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["Student"], seeds=[0, 1])
    pairs = [(c.cfg.run_id, replace(c.cfg, selection="best_epoch").run_id) for c in cells
             if c.phi == 0.1]
    if not all(store.has(a) and store.has(b) for a, b in pairs):
        pytest.skip("the chapter's best-epoch runs are not in results/")
    frame = derrd.selection_frame(store, cells, "CiteULike/BPR").set_index(
        ["seed", "selection", "column"])
    for seed, (_, best) in enumerate(pairs):
        reported = store.metrics(best).set_index(["split", "metric", "k"])["value"]
        assert frame.loc[(seed, "best_epoch", "HR@5"), "epoch"] == \
            store.manifest(best)["selected_epochs"]["hr@10"]
        for column, key in (("HR@5", ("hr", 5)), ("NDCG@10", ("ndcg", 10)), ("HR@20", ("hr", 20))):
            assert frame.loc[(seed, "best_epoch", column), "value"] == \
                pytest.approx(reported[("test", *key)], abs=1e-6)


# ---------------------------------------------------------------- Table 4 and Table 5

def test_ablation_cells_resolve_expert_sizes_and_keep_the_base_runs():
    cells = derrd.chapter_grid("full", ["CiteULike/BPR", "CiteULike/NeuMF"],
                               ["DE", "RRD"], seeds=[0, 1])
    bpr = derrd.ablation_cells(cells, "CiteULike/BPR")
    assert len(bpr) == 2 * len(derrd.ABLATIONS)  # every variant for both seeds
    extra = {v: c.cfg.extra for v, c in bpr if c.cfg.seed == 0}
    assert extra["(b) one expert, large"]["expert_hidden"] == 30 * 110  # (20 + 200) // 2 = 110
    assert extra["(c) one expert, small"]["expert_hidden"] == 110
    assert extra["(d) full ranking"]["variant"] == "full"
    base_ids = {c.cfg.run_id for c in cells}
    assert {c.cfg.run_id for v, c in bpr if v in ("DE", "RRD")} <= base_ids
    assert not {c.cfg.run_id for v, c in bpr if v not in ("DE", "RRD")} & base_ids
    neumf = dict((v, c) for v, c in derrd.ablation_cells(cells, "CiteULike/NeuMF")
                 if c.cfg.seed == 0)  # [GMF; MLP] widths: 2·25 = 50 and 2·250 = 500
    assert neumf["(c) one expert, small"].cfg.extra["expert_hidden"] == (50 + 500) // 2
    with pytest.raises(ValueError, match="unknown Table 4 variants"):
        derrd.ablation_cells(cells, "CiteULike/BPR", ["(f) nothing"])


def test_table4_means_stored_variant_runs_beside_the_papers_foursquare_numbers(tmp_path):
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["DE", "RRD"], seeds=[0, 1])
    pairs = derrd.ablation_cells(cells, "CiteULike/BPR")
    for variant, cell in pairs:
        if variant == "(a) attention":  # seed s: HR@5 = (0.5 - 0.1·s)·1.05 (_store_run)
            _store_run(store, cell, np.full(N_USERS, 0.5 - 0.1 * cell.cfg.seed))
        if variant == "DE":  # seed s: HR@5 = (0.4 + 0.1·s)·1.05
            _store_run(store, cell, np.full(N_USERS, 0.4 + 0.1 * cell.cfg.seed))
        if variant == "(d) full ranking" and cell.cfg.seed == 1:
            _store_run(store, cell, np.full(N_USERS, 0.3))
        if variant == "RRD":
            _store_run(store, cell, np.full(N_USERS, 0.2 + 0.2 * cell.cfg.seed))
    got = derrd.table4(store, cells, "CiteULike/BPR")
    assert got.loc["DE", "ours HR@5"] == pytest.approx(0.45 * 1.05)
    assert got.loc["(a) attention", "base HR@5 (same seeds)"] == pytest.approx(0.45 * 1.05)
    assert got.loc["(d) full ranking", "base HR@5 (same seeds)"] == pytest.approx(0.4 * 1.05)
    assert got.loc["RRD", "ours HR@5"] == pytest.approx(0.3 * 1.05)
    assert got.loc["(a) attention", "n"] == 2
    assert got.loc["(a) attention", "ours HR@5"] == pytest.approx(0.45 * 1.05)
    assert got.loc["(b) one expert, large", "n"] == 0
    assert np.isnan(got.loc["(b) one expert, large", "ours HR@5"])
    paper = derrd.reports.paper_numbers("DE-RRD", dataset="Foursquare", base_model="BPR",
                                        method="DE variant (a) attention (phi=0.1)",
                                        metric="HR", cutoff=5)
    assert got.loc["(a) attention", "paper (Foursquare) HR@5"] == paper["value"].iloc[0]
    assert got["paper (Foursquare) NDCG@10"].notna().sum() == len(derrd.ABLATIONS)
    # a variant stored on more seeds than its base: both sides on the seeds they share
    de0 = next(c for v, c in pairs if v == "DE" and c.cfg.seed == 1)
    (store.runs / de0.cfg.run_id / "manifest.json").unlink()  # DE keeps seed 0 only
    got = derrd.table4(store, cells, "CiteULike/BPR")
    row = got.loc["(a) attention"]
    assert (row["n"], row["n same seeds"]) == (2, 1)
    assert row["ours HR@5"] == pytest.approx(0.45 * 1.05)  # (a) over its own seeds 0 and 1
    assert row["ours HR@5 (same seeds)"] == pytest.approx(0.5 * 1.05)  # (a) at seed 0 alone
    assert row["base HR@5 (same seeds)"] == pytest.approx(0.4 * 1.05)


def test_lambda_cells_and_table5(tmp_path):
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["DE-RRD"], seeds=[0])
    grid = derrd.lambda_cells(cells, "CiteULike/BPR")
    assert len(grid) == 16 and len({c.cfg.run_id for _, _, c in grid}) == 16
    default = [c for l_de, l_rrd, c in grid if (l_de, l_rrd) == (1e-2, 1e-3)]
    assert default[0].cfg.run_id == cells[0].cfg.run_id  # the Table 2 run itself
    for l_de, l_rrd, cell in grid:
        if l_de == 1e-4:  # one row stored: HR@5 = λ_RRD · 10 · 1.05 (_store_run)
            _store_run(store, cell, np.full(N_USERS, l_rrd * 10))
    t5 = derrd.table5(store, cells, "CiteULike/BPR")
    assert t5.shape == (4, 4)
    assert t5.loc[1e-4, 1e-1] == pytest.approx(1.05)
    assert t5.loc[1e-4, 1e-3] == pytest.approx(0.0105, rel=1e-5)
    assert t5.loc[1e-1].isna().all()
    assert list(t5.columns) == list(derrd.paper_lambda_grid("BPR").columns)
    assert derrd.table5_seeds(store, cells, "CiteULike/BPR") == [0]


def test_table5_seeds_keep_the_grid_on_the_seeds_every_cell_has(tmp_path):
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["DE-RRD"], seeds=[0, 1, 2])
    for l_de, l_rrd, cell in derrd.lambda_cells(cells, "CiteULike/BPR"):
        if (l_de, l_rrd) == (1e-2, 1e-3):  # the Table 2 run: three seeds, 0.1·(seed + 1)
            _store_run(store, cell, np.full(N_USERS, 0.1 * (cell.cfg.seed + 1)))
        elif (l_de, l_rrd) == (1e-4, 1e-1) and cell.cfg.seed in (1, 2):
            _store_run(store, cell, np.full(N_USERS, 0.5))
    assert derrd.table5_seeds(store, cells, "CiteULike/BPR") == [1, 2]
    every = derrd.table5(store, cells, "CiteULike/BPR")
    shared = derrd.table5(store, cells, "CiteULike/BPR", seeds=[1, 2])
    assert every.loc[1e-2, 1e-3] == pytest.approx(0.2 * 1.05)  # seeds 0, 1, 2
    assert shared.loc[1e-2, 1e-3] == pytest.approx(0.25 * 1.05)  # seeds 1, 2
    assert shared.loc[1e-4, 1e-1] == pytest.approx(0.5 * 1.05)
    assert derrd.table5_seeds(ResultStore(tmp_path / "empty"), cells, "CiteULike/BPR") == []


def test_lambda_grid_tests_pair_each_cell_with_the_table2_lambda(tmp_path):
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["DE-RRD"], seeds=[0, 1])
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, N_USERS)
    for l_de, l_rrd, cell in derrd.lambda_cells(cells, "CiteULike/BPR"):
        if (l_de, l_rrd) == (1e-2, 1e-3):  # the Table 2 run, both seeds
            _store_run(store, cell, base)
        elif (l_de, l_rrd) == (1e-2, 1e-1):  # much worse, both seeds
            _store_run(store, cell, base - 0.1)
        elif (l_de, l_rrd) == (1e-4, 1e-3) and cell.cfg.seed == 1:  # same per user, seed 1
            _store_run(store, cell, base)
        elif (l_de, l_rrd) == (1e-1, 1e-1) and cell.cfg.seed == 0:  # alone, paired below
            _store_run(store, cell, base + 0.01)
    got = derrd.lambda_grid_tests(store, cells, "CiteULike/BPR").set_index(["λ_DE", "λ_RRD"])
    assert len(got) == 3  # the Table 2 run is the reference, not a row
    worse = got.loc[(1e-2, 1e-1)]
    assert worse["n_seeds"] == 2 and worse["diff"] == pytest.approx(-0.105, rel=1e-4)
    assert worse["cell mean"] - worse["table2 mean"] == pytest.approx(worse["diff"])
    assert worse["significant"]
    same = got.loc[(1e-4, 1e-3)]
    assert same["n_seeds"] == 1 and same["p"] == 1.0 and not same["significant"]
    assert got.loc[(1e-1, 1e-1), "n_seeds"] == 1 and got.loc[(1e-1, 1e-1), "diff"] > 0
    assert list(got["p_holm"]) == list(derrd.holm(got["p"].to_numpy()))
    assert derrd.lambda_grid_tests(ResultStore(tmp_path / "empty"), cells, "CiteULike/BPR").empty
    summary = derrd.lambda_grid_summary(derrd.table5(store, cells, "CiteULike/BPR", seeds=[0]), got.reset_index())
    assert summary.startswith("the best stored cell is λ_DE 0.1, λ_RRD 0.1;")  # base + 0.01
    assert "below the Table 2 run: (λ_DE 0.01, λ_RRD 0.1);" in summary
    assert summary.endswith("significantly above it: (λ_DE 0.1, λ_RRD 0.1).")  # +0.01 per user
    assert derrd.lambda_grid_summary(derrd.table5(store, cells, "CiteULike/BPR", seeds=[0]),
                                     got.reset_index().assign(significant=False)).endswith(
        "below the Table 2 run: none; significantly above it: none.")


def test_claim4_self_distillation_reads_phi_one():
    cu, fs = "CiteULike/BPR", "Foursquare/BPR"
    rows = _rows({(cu, "Teacher"): [0.50], (fs, "Teacher"): [0.60]})
    at_one = _rows({(cu, "DE-RRD"): [0.51, 0.52], (fs, "DE-RRD"): [0.58]})
    at_one["phi"] = 1.0
    small = _rows({(cu, "DE-RRD"): [0.99]})  # φ = 0.1: ignored by claim 4
    both = pd.concat([rows, at_one, small], ignore_index=True)
    got = derrd.claim4_self_distillation(both, [cu, fs])
    assert got["verdict"] == derrd.PARTLY  # above the teacher on CiteULike, below on Foursquare
    assert "CiteULike/BPR: HR@5 ratio 1.030 (n=2)" in got["evidence"]
    only_cu = derrd.claim4_self_distillation(both, [cu, "CiteULike/NeuMF"])
    assert only_cu["verdict"] == derrd.INCOMPLETE
    assert "not run: CiteULike/NeuMF (teacher, DE-RRD at φ = 1.0)" in only_cu["evidence"]
    teacher_only = derrd.claim4_self_distillation(rows, [cu])
    assert teacher_only["verdict"] == derrd.NOT_TESTED
    assert teacher_only["evidence"] == "not run: CiteULike/BPR (DE-RRD at φ = 1.0)"


def _sized_grid(tmp_path, methods: list[str], phi: float, seed: int
                ) -> tuple[ResultStore, list[derrd.Cell], np.ndarray]:
    """An empty store, the CiteULike/BPR cells of ``methods`` at φ = 0.1 and ``phi`` (seeds 0
    and 1), and a random per-user hit vector to build runs from."""
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], methods, seeds=[0, 1], phis=(0.1, phi))
    hits = np.random.default_rng(seed).integers(0, 2, size=N_USERS).astype(float)
    return ResultStore(tmp_path), cells, hits


def test_paired_tests_at_another_student_size(tmp_path):
    store, cells, base = _sized_grid(tmp_path, ["Student", "RRD"], 0.5, seed=2)
    worse = np.where(np.arange(N_USERS) % 5 == 0, 0.0, base)  # RRD loses some users at φ = 0.5
    for c in cells:
        _store_run(store, c, worse if (c.method, c.phi) == ("RRD", 0.5) else base)
    at_half = derrd.paired_tests(store, cells, "CiteULike/BPR", metrics=[("hr", 5)], phi=0.5)
    row = at_half.iloc[0]
    hits = {m: store.per_user(next(c.cfg.run_id for c in cells if c.method == m and c.phi == 0.5
                                   and c.cfg.seed == 0))["test/hr@5"] for m in ("Student", "RRD")}
    assert row["method"] == "RRD" and row["n_seeds"] == 2 and row["diff"] < 0
    assert row["p"] == pytest.approx(sps.wilcoxon(hits["RRD"], hits["Student"]).pvalue, rel=1e-6)
    at_tenth = derrd.paired_tests(store, cells, "CiteULike/BPR", metrics=[("hr", 5)])
    assert at_tenth.iloc[0]["diff"] == 0 and at_tenth.iloc[0]["p"] == 1.0  # φ = 0.1: equal runs


def test_self_distillation_tests_pair_every_seed_with_the_one_teacher(tmp_path):
    store, cells, teacher = _sized_grid(tmp_path, ["Teacher", "DE-RRD"], 1.0, seed=1)
    hits = {0: np.maximum(teacher, np.arange(N_USERS) % 4 == 0),  # seed 0 gains some users
            1: teacher.copy()}
    for c in cells:
        if c.method == "Teacher":
            _store_run(store, c, teacher)
        elif c.phi == 1.0:
            _store_run(store, c, hits[c.cfg.seed])
        else:  # φ = 0.1 runs must not enter claim 4's test
            _store_run(store, c, np.zeros(N_USERS))
    got = derrd.self_distillation_tests(store, cells, ["CiteULike/BPR", "Foursquare/BPR"])
    assert list(got["setting"]) == ["CiteULike/BPR"]  # Foursquare has no runs: left out
    assert list(got["method"]) == ["DE-RRD"]
    r = got.iloc[0]
    stored = {(c.method, c.phi, c.cfg.seed): store.per_user(c.cfg.run_id)["test/hr@5"]
              for c in cells}
    teacher = stored[("Teacher", 1.0, 0)].astype(float)
    mean_kd = (stored[("DE-RRD", 1.0, 0)] + stored[("DE-RRD", 1.0, 1)].astype(float)) / 2
    assert r["n_seeds"] == 2 and r["diff"] == pytest.approx(mean_kd.mean() - teacher.mean())
    assert r["ratio"] == pytest.approx(mean_kd.mean() / teacher.mean())
    assert r["p"] == pytest.approx(sps.wilcoxon(mean_kd, teacher).pvalue, rel=1e-6)
    assert r["significant"]


def test_self_distillation_tests_of_several_methods_share_one_holm_family(tmp_path):
    store, cells, teacher = _sized_grid(tmp_path, ["Teacher", "RD", "DE-RRD"], 1.0, seed=0)
    gains = {"RD": np.maximum(teacher, np.arange(N_USERS) % 3 == 0),
             "DE-RRD": np.maximum(teacher, np.arange(N_USERS) % 5 == 0)}
    for c in cells:
        _store_run(store, c, teacher if c.method == "Teacher" or c.phi != 1.0
                   else gains[c.method])
    both = derrd.self_distillation_tests(store, cells, ["CiteULike/BPR"],
                                         methods=("RD", "CD", "DE-RRD"))
    assert list(both["method"]) == ["RD", "DE-RRD"]  # CD is not stored: no row
    alone = derrd.self_distillation_tests(store, cells, ["CiteULike/BPR"])
    assert list(alone["method"]) == ["DE-RRD"]
    assert alone["p"].iloc[0] == pytest.approx(both["p"].iloc[1])  # the same test
    # Holm over two tests: the smaller p doubled, the larger kept at least that
    p = sorted(both["p"])
    assert sorted(both["p_holm"]) == pytest.approx([min(1, 2 * p[0]), max(min(1, 2 * p[0]), p[1])])
    assert alone["p_holm"].iloc[0] == pytest.approx(alone["p"].iloc[0])


@pytest.mark.parametrize("significant, verdict", [(True, derrd.REPRODUCED),
                                                  (False, derrd.NOT_REPRODUCED)])
def test_claim4_needs_a_significant_gain_when_tested(significant, verdict):
    cu = "CiteULike/BPR"
    rows = _rows({(cu, "Teacher"): [0.50]})
    at_one = _rows({(cu, "DE-RRD"): [0.505]})
    at_one["phi"] = 1.0
    tests = pd.DataFrame({"setting": [cu], "diff": [0.005], "p_holm": [0.01 if significant else 0.4],
                          "significant": [significant]})
    got = derrd.claim4_self_distillation(pd.concat([rows, at_one]), [cu], tests=tests)
    assert got["verdict"] == verdict
    assert "ratio 1.010 (n=1, per-user Δ +0.0050, Holm p " in got["evidence"]


def test_claim5_ablations_compare_each_variant_with_its_base():
    idx = list(derrd.ABLATIONS)
    hr = {"DE": 0.48, "(a) attention": 0.47, "(b) one expert, large": 0.46,
          "(c) one expert, small": 0.45, "RRD": 0.46, "(d) full ranking": 0.47,
          "(e) interesting-only ranking": 0.44}
    base = {v: hr[derrd.ABLATIONS[v][0]] for v in idx}  # the base method on the same seeds
    t = pd.DataFrame({"n": 2, "n same seeds": 1, "ours HR@5": 0.0,  # all seeds: not compared
                      "ours HR@5 (same seeds)": [hr[v] for v in idx],
                      "base HR@5 (same seeds)": [base[v] for v in idx]}, index=idx)
    got = derrd.claim5_ablations({"CiteULike/BPR": t})
    assert got["verdict"] == derrd.PARTLY  # (d) full ranking beats relaxed RRD
    assert "RRD 0.4600 vs (d) full ranking 0.4700 (n=1)" in got["evidence"]
    t.loc["(b) one expert, large", "ours HR@5 (same seeds)"] = np.nan
    t.loc["(d) full ranking", "ours HR@5 (same seeds)"] = 0.40
    got = derrd.claim5_ablations({"CiteULike/BPR": t, "CiteULike/NeuMF": t * 0})
    assert got["verdict"] == derrd.INCOMPLETE and "(b) one expert, large" in got["evidence"]
    assert derrd.claim5_ablations({})["verdict"] == derrd.NOT_TESTED


def test_ablation_tests_pair_each_variant_with_its_base_on_shared_seeds(tmp_path):
    cells = derrd.chapter_grid("full", ["CiteULike/BPR", "CiteULike/NeuMF"], ["DE", "RRD"],
                               seeds=[0, 1])
    store = ResultStore(tmp_path)
    base = np.random.default_rng(3).integers(0, 2, size=N_USERS).astype(float)
    worse = np.where(np.arange(N_USERS) % 4 == 0, 0.0, base)  # (d) loses a quarter of the users
    for setting in ("CiteULike/BPR", "CiteULike/NeuMF"):
        for variant, c in derrd.ablation_cells(cells, setting,
                                               ["RRD", "(d) full ranking", "(a) attention"]):
            if variant == "RRD":
                _store_run(store, c, base)
            elif variant == "(d) full ranking" and c.cfg.seed == 0:  # one seed of (d) only
                _store_run(store, c, worse)
    got = derrd.ablation_tests(store, cells, ["CiteULike/BPR", "CiteULike/NeuMF"])
    # NeuMF is not part of claim 5; (a) and DE are not stored; (d) pairs RRD's seed 0 only
    assert list(zip(got["setting"], got["variant"], strict=True)) == [
        ("CiteULike/BPR", "(d) full ranking")]
    r = got.iloc[0]
    stored = {v: store.per_user(c.cfg.run_id)["test/hr@5"].astype(float)
              for v, c in derrd.ablation_cells(cells, "CiteULike/BPR",
                                               ["RRD", "(d) full ranking"]) if c.cfg.seed == 0}
    rrd, full = stored["RRD"], stored["(d) full ranking"]
    assert r["base"] == "RRD" and r["n_seeds"] == 1
    assert r["diff"] == pytest.approx(rrd.mean() - full.mean()) and r["diff"] > 0
    assert r["p"] == pytest.approx(sps.wilcoxon(rrd, full).pvalue, rel=1e-6)
    assert r["significant"] and r["p_holm"] == pytest.approx(r["p"])


@pytest.mark.parametrize("significant, verdict", [(True, derrd.REPRODUCED),
                                                  (False, derrd.PARTLY)])
def test_claim5_needs_a_significant_gain_when_tested(significant, verdict):
    """Each part holds on the means; only (d)'s per-user test decides the claim."""
    idx = list(derrd.ABLATIONS)
    table = pd.DataFrame({"n": 1, "n same seeds": 1, "ours HR@5 (same seeds)": 0.46,
                          "base HR@5 (same seeds)": 0.47}, index=idx)
    tests = pd.DataFrame({"setting": "CiteULike/BPR", "variant": [v for v in idx if "(" in v],
                          "p_holm": 0.01, "significant": True})
    tests.loc[tests["variant"] == "(d) full ranking", ["p_holm", "significant"]] = \
        (0.01, True) if significant else (0.3, False)
    got = derrd.claim5_ablations({"CiteULike/BPR": table}, tests)
    p = 0.01 if significant else 0.3
    assert f"RRD 0.4700 vs (d) full ranking 0.4600 (n=1, Holm p {p:.2g})" in got["evidence"]
    assert got["verdict"] == verdict
    untested = derrd.claim5_ablations({"CiteULike/BPR": table})  # the means alone: all hold
    assert untested["verdict"] == derrd.REPRODUCED and "Holm" not in untested["evidence"]


def test_claim3_names_what_is_missing():
    s = "CiteULike/NeuMF"
    got = derrd.claim3_neumf(_rows({(s, "Student"): [0.40], (s, "RRD"): [0.48]}))
    assert got["verdict"] == derrd.NOT_TESTED
    assert got["evidence"].startswith("RRD +20.0% HR@5") and got["evidence"].endswith("DE")
    lam = pd.DataFrame([{"method": "RRD", "comparison": "official λ − Student", "n_seeds": 3,
                         "A mean": 0.40, "B mean": 0.42, "diff": 0.02, "p_holm": 0.004},
                        {"method": "RRD", "comparison": "paper λ − Student", "n_seeds": 3,
                         "A mean": 0.40, "B mean": 0.30, "diff": -0.10, "p_holm": 1e-9}])
    got = derrd.claim3_neumf(_rows({(s, "Student"): [0.40], (s, "RRD"): [0.30],
                                    (s, "DE"): [0.41]}), lam)
    assert got["verdict"] == derrd.NOT_REPRODUCED  # the Table 2 cell (paper λ) decides
    assert got["evidence"] == ("HR@5 gain over the student: RRD -25.0% (n=1), DE +2.5% (n=1); "
                               "RRD with the "
                               "official λ_RRD = 0.001: +5.0% (n=3, Holm p 0.004)")


def test_size_frame_means_per_phi():
    cu = "CiteULike/BPR"
    rows = _rows({(cu, "RRD"): [0.40, 0.42], (cu, "Teacher"): [0.5]})
    big = _rows({(cu, "RRD"): [0.52]})
    big["phi"] = 1.0
    got = derrd.size_frame(pd.concat([rows, big], ignore_index=True))
    hr = got[(got["metric"] == "HR@5")].set_index(["method", "phi"])
    assert hr.loc[("RRD", 0.1), "mean"] == pytest.approx(0.41)
    assert hr.loc[("RRD", 0.1), "n"] == 2 and hr.loc[("RRD", 1.0), "n"] == 1
    assert hr.loc[("Teacher", 1.0), "mean"] == pytest.approx(0.5)
    assert set(got["metric"]) == {"HR@5", "NDCG@5"}


def test_size_leaders_say_whether_de_rrd_leads_at_each_size():
    cu, nm = "CiteULike/BPR", "CiteULike/NeuMF"
    small = _rows({(cu, "RRD"): [0.46, 0.48], (cu, "DE-RRD"): [0.48], (cu, "Student"): [0.6],
                   (nm, "RD"): [0.30], (nm, "CD"): [0.31]})
    half = _rows({(cu, "RD"): [0.52], (cu, "DE-RRD"): [0.51]})
    half["phi"] = 0.5
    alone = _rows({(cu, "DE-RRD"): [0.53], (cu, "Teacher"): [0.5]})
    alone.loc[alone["method"] == "DE-RRD", "phi"] = 1.0
    got = derrd.size_leaders(derrd.size_frame(pd.concat([small, half, alone], ignore_index=True)))
    got = got.set_index(["setting", "phi"])
    # 0.48 against RRD's mean 0.47; the plain student (0.6) is no KD method
    assert got.loc[(cu, 0.1), "DE-RRD leads"] is True and got.loc[(cu, 0.1), "best"] == "DE-RRD"
    assert got.loc[(cu, 0.1), "best other mean"] == pytest.approx(0.47)
    assert got.loc[(cu, 0.1), "DE-RRD n"] == 1 and got.loc[(cu, 0.1), "best other n"] == 2
    assert got.loc[(cu, 0.5), "DE-RRD leads"] is False and got.loc[(cu, 0.5), "best"] == "RD"
    assert got.loc[(cu, 1.0), "DE-RRD leads"] is None  # no other KD method at that size
    assert got.loc[(cu, 1.0), "best other n"] == 0 and got.loc[(nm, 0.1), "DE-RRD n"] == 0
    assert got.loc[(nm, 0.1), "DE-RRD leads"] is None and got.loc[(nm, 0.1), "best"] == "CD"
    assert got.loc[(nm, 0.1), "methods"] == "RD, CD"


def test_stored_rows_label_a_shared_run_once_per_cell(tmp_path):
    """The φ = 1.0 plain student of seed 0 has the teacher's config, so one run fills both."""
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["Teacher", "Student"], seeds=[0],
                               phis=(1.0,))
    assert cells[0].cfg.run_id == cells[1].cfg.run_id
    _store_run(store, cells[0], np.full(N_USERS, 0.5))
    rows = derrd.stored_rows(store, cells)
    hr5 = rows[(rows["split"] == "test") & (rows["metric"] == "hr") & (rows["k"] == 5)]
    assert sorted(hr5["method"]) == ["Student", "Teacher"]


def test_epoch_seconds_frame_gives_one_row_per_epoch_of_the_stored_runs(tmp_path):
    store = ResultStore(tmp_path)
    student, de = derrd.chapter_grid("full", ["CiteULike/BPR"], ["Student", "DE"], seeds=[3])
    curve = pd.DataFrame({"epoch": [1, 1, 2, 2], "split": ["valid", "test"] * 2,
                          "metric": "hr", "k": 5, "value": [0.1, 0.9, 0.2, 0.8],
                          "loss": 1.0, "epoch_seconds": [20.0, 20.0, 2.5, 2.5]})
    rows = pd.DataFrame([{"run_id": de.cfg.run_id, "split": "test", "metric": "hr", "k": 5,
                          "value": 0.2, "epoch": 2, "paper": "DE-RRD", "dataset": "d",
                          "protocol": "p", "model": "bpr", "role": "student",
                          "method": "de", "dim": 20, "seed": 3}])
    store.save(RunRecord(de.cfg.run_id, {"config": de.cfg.to_dict(), "device_name": "cpu (x)"},
                         rows, curve, {}))
    got = derrd.epoch_seconds_frame(store, [student, de])  # the student is not stored: skipped
    assert got.to_dict("list") == {"method": ["DE", "DE"], "seed": [3, 3],
                                   "device": ["cpu (x)", "cpu (x)"], "epoch": [1, 2],
                                   "seconds": [20.0, 2.5]}
    assert list(derrd.epoch_seconds_frame(store, [student]).columns) == [
        "method", "seed", "device", "epoch", "seconds"]


def test_epoch_seconds_by_phase_takes_medians_per_method_and_phase():
    frame = pd.DataFrame({"method": ["DE"] * 5 + ["RRD"] * 2, "seed": [0, 0, 0, 1, 1, 0, 0],
                          "device": "cpu", "epoch": [1, 2, 51, 1, 52, 1, 2],
                          "seconds": [20.0, 22.0, 3.0, 30.0, 5.0, 1.0, 1.5]})
    got = derrd.epoch_seconds_by_phase(frame, edges=(0, 50))
    assert list(got.columns) == ["1–50", "51+"] and list(got.index) == ["DE", "RRD"]
    assert got.loc["DE", "1–50"] == 22.0 and got.loc["DE", "51+"] == 4.0  # both seeds' epochs
    assert got.loc["RRD", "1–50"] == 1.25 and np.isnan(got.loc["RRD", "51+"])


def test_curve_frame_selects_one_metric_of_the_stored_runs(tmp_path):
    store = ResultStore(tmp_path)
    student, cd = derrd.chapter_grid("full", ["CiteULike/BPR"], ["Student", "CD"], seeds=[0])
    curve = pd.DataFrame({"epoch": [1, 1, 2, 2], "split": ["valid", "test"] * 2,
                          "metric": "hr", "k": 5, "value": [0.1, 0.9, 0.2, 0.8],
                          "loss": 1.0, "epoch_seconds": 0.5})
    rows = pd.DataFrame([{"run_id": student.cfg.run_id, "split": "test", "metric": "hr", "k": 5,
                          "value": 0.2, "epoch": 2, "paper": "DE-RRD", "dataset": "d",
                          "protocol": "p", "model": "bpr", "role": "student",
                          "method": "none", "dim": 20, "seed": 0}])
    store.save(RunRecord(student.cfg.run_id, {"config": student.cfg.to_dict()}, rows, curve, {}))
    got = derrd.curve_frame(store, {"Student": student, "CD": cd})  # CD not stored: skipped
    assert got.to_dict("list") == {"label": ["Student", "Student"], "epoch": [1, 2],
                                   "value": [0.1, 0.2]}
    assert derrd.curve_frame(store, {"CD": cd}).empty


def test_neumf_loss_choice_marks_the_grid_teacher(tmp_path):
    store = ResultStore(tmp_path)
    teacher = derrd.chapter_grid("full", ["CiteULike/NeuMF"], ["Teacher"])[0]
    assert teacher.cfg.model_options == {"loss_type": "bce"}  # the profile's choice
    _store_run(store, teacher, np.full(N_USERS, 0.4))
    (store.run_dir(teacher.cfg.run_id) / "manifest.json").write_text(
        '{"status": "complete", "epochs_run": 70}')
    bpr_loss = derrd.Cell(teacher.setting, "Teacher", 1.0,
                          replace(teacher.cfg, model_options={}))  # NeuMF's default loss
    _store_run(store, bpr_loss, np.full(N_USERS, 0.3))
    got = derrd.neumf_loss_choice(store).set_index("loss")
    assert got.loc["bpr", "test HR@5"] == pytest.approx(0.3 * 1.05)
    assert bool(got.loc["bce", "in the grid"]) and not bool(got.loc["bpr", "in the grid"])
    assert got.loc["bce", "test HR@5"] == pytest.approx(0.4 * 1.05)
    assert got.loc["bce", "epochs"] == 70


def test_lambda_source_tests_pair_paper_and_official_lambda(tmp_path):
    store = ResultStore(tmp_path)
    setting = "CiteULike/NeuMF"
    cells = derrd.chapter_grid("full", [setting], ["Student", "RRD", "DE-RRD"], seeds=[0, 1])
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.6, N_USERS)
    for c in cells:
        if c.method == "Student":
            _store_run(store, c, base)
        elif c.method == "RRD":  # paper λ: +0.1 per user; official λ: the student's values
            _store_run(store, c, base + 0.1)
            if c.cfg.seed == 0:
                _store_run(store, derrd.official_lambda(c), base)
    got = derrd.lambda_source_tests(store, cells, setting).set_index("comparison")
    assert set(got["method"]) == {"RRD"}  # no DE-RRD run stored
    assert (got["λ (paper)"] == "lmbda_rrd = 0.1").all()
    assert got.loc["paper λ − Student", "n_seeds"] == 2
    assert got.loc["paper λ − Student", "diff"] == pytest.approx(0.105, rel=1e-4)
    assert got.loc["paper λ − Student", "significant"]
    # each side is named, and its mean stands under its own name: B is the paper's λ (higher)
    row = got.loc["paper λ − Student"]
    assert (row["A"], row["B"]) == ("Student", "paper λ")
    assert row["B mean"] > row["A mean"]
    assert row["B mean"] - row["A mean"] == pytest.approx(row["diff"])
    assert got.loc["official λ − Student", "p"] == 1.0  # identical per user
    assert got.loc["paper λ − official λ", "n_seeds"] == 1
    assert got.loc["paper λ − official λ", "diff"] > 0
    assert derrd.lambda_source_tests(store, cells, "CiteULike/BPR").empty
    rrd = next(c for c in cells if c.method == "RRD")
    assert derrd.official_lambda(rrd).cfg.extra == {"teacher": rrd.cfg.extra["teacher"]}


def test_sweep_cells_vary_one_option_of_their_base_cells(tmp_path):
    cells = derrd.chapter_grid("full", ["CiteULike/BPR", "CiteULike/NeuMF"], ["CD", "RRD"],
                               seeds=[0, 1, 2])
    runs = derrd.sweep_cells(cells)
    # CD T: 2 values × seed 0; CD λ: 3 × seed 0; RRD sampling: 1 × seeds 0, 1; NeuMF RRD λ: 3
    assert len(runs) == 2 + 3 + 2 + 3 and len({c.cfg.run_id for c in runs}) == len(runs)
    neumf = [c for c in runs if c.setting == "CiteULike/NeuMF"]
    assert sorted(c.cfg.extra["lmbda_rrd"] for c in neumf if "lmbda_rrd" in c.cfg.extra) == [
        1e-4, 1e-2]  # 1e-3 is the official default: left unspelt, the official-λ run
    official = derrd.official_lambda(next(c for c in cells if c.setting == "CiteULike/NeuMF"
                                          and c.method == "RRD" and c.cfg.seed == 0))
    assert official.cfg.run_id in {c.cfg.run_id for c in neumf}
    assert derrd.sweep_cells(cells, ["RRD sampling"])[0].cfg.extra["sampling"] == "top"
    with pytest.raises(ValueError, match="unknown sweep 'CD K'"):
        derrd.sweep_bases(cells, "CD K")
    store = ResultStore(tmp_path)
    _store_run(store, runs[0], np.full(N_USERS, 0.4))  # CD T = 0.1, seed 0
    table = derrd.sweep_table(store, cells, "CD T")
    assert list(table["T"]) == ["default", 0.1, 0.02] and list(table["seed"]) == [0, 0, 0]
    assert table["test"].isna().tolist() == [True, False, True]
    assert derrd.sweep_table(store, cells[:1], "NeuMF RRD λ") == ("CiteULike/NeuMF RRD not in "
                                                                  "this grid")


def test_device_mix_compares_the_seeds_of_two_kinds_of_device(tmp_path):
    from scipy import stats

    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["Teacher", "Student"],
                               seeds=[0, 1, 2, 3, 4])
    hr5 = {0: 0.50, 1: 0.51, 2: 0.49, 3: 0.60, 4: 0.62}
    for c in cells:
        kind = "cuda" if c.method == "Student" and c.cfg.seed >= 3 else "cpu"
        value = hr5[c.cfg.seed] if c.method == "Student" else 0.7
        rows = pd.DataFrame([{"run_id": c.cfg.run_id, "split": "test", "metric": "hr", "k": 5,
                              "value": value, "epoch": 3, "paper": "DE-RRD", "dataset": "d",
                              "protocol": "p", "model": "bpr", "role": c.cfg.role,
                              "method": c.cfg.method, "dim": c.cfg.dim, "seed": c.cfg.seed}])
        store.save(RunRecord(c.cfg.run_id, {"config": c.cfg.to_dict(), "device": kind}, rows,
                             pd.DataFrame(), {}))
    got = derrd.device_mix(store, derrd.stored_rows(store, cells))
    assert len(got) == 1  # the teacher ran on one kind only
    row = got.iloc[0]
    assert (row["method"], row["A"], row["B"]) == ("Student", "cpu", "cuda")
    assert row["A seeds"] == [0, 1, 2] and row["B seeds"] == [3, 4]
    assert row["A mean"] == pytest.approx(0.50) and row["B mean"] == pytest.approx(0.61)
    assert row["diff"] == pytest.approx(0.11)
    # Welch by hand: variances 1e-4 and 2e-4, se² = 1e-4/3 + 2e-4/2, Welch–Satterthwaite df
    se2 = 1e-4 / 3 + 2e-4 / 2
    df = se2 ** 2 / ((1e-4 / 3) ** 2 / 2 + (2e-4 / 2) ** 2 / 1)
    assert row["p (Welch)"] == pytest.approx(2 * stats.t.sf(0.11 / se2 ** 0.5, df), rel=1e-6)


def test_device_mix_is_empty_when_every_cell_ran_on_one_kind(filled):
    store, cells = filled
    assert derrd.device_mix(store, derrd.stored_rows(store, cells)).empty


def test_kd_loss_share_reads_the_first_epoch_of_each_run_against_its_student(tmp_path):
    store = ResultStore(tmp_path)
    student, rrd = derrd.chapter_grid("full", ["CiteULike/BPR"], ["Student", "RRD"], seeds=[0])
    tuned = derrd.with_options(rrd, lmbda_rrd=0.1)
    lost = derrd.chapter_grid("full", ["CiteULike/BPR"], ["RRD"], seeds=[1])[0]  # no student
    for cell, first in ((student, 100.0), (rrd, 125.0), (tuned, 400.0), (lost, 50.0)):
        curve = pd.DataFrame({"epoch": [1, 1, 2], "split": ["valid", "test", "valid"],
                              "metric": "hr", "k": 5, "value": 0.1,
                              "loss": [first, first, 1.0], "epoch_seconds": 0.5})
        _save(store, cell, [{"split": "test", "metric": "hr", "k": 5, "value": 0.1,
                             "epoch": 1}], curve, {})
    got = derrd.kd_loss_share(store, [student, rrd, tuned, lost, rrd])  # rrd twice: one row
    assert list(got["options"]) == ["official defaults", "lmbda_rrd = 0.1"]
    assert list(got["KD share"]) == pytest.approx([25 / 125, 300 / 400])
    assert list(got["student loss"]) == [100.0, 100.0] and list(got["seed"]) == [0, 0]


def test_flush_status_and_line_name_the_runs_whose_manifest_flushed_denormals(tmp_path):
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["DE"], seeds=[0, 1])
    pairs = derrd.ablation_cells(cells, "CiteULike/BPR", ["(a) attention", "(b) one expert, large"])
    for i, (_, c) in enumerate(pairs[:3]):  # pairs[3] is not stored
        _store_run(store, c, np.full(N_USERS, 0.4))
        path = store.run_dir(c.cfg.run_id) / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["determinism"] = {"flush_denormal": i > 0}  # the first run did not flush
        path.write_text(json.dumps(manifest))
    # pairs[3] is not stored, so it is not listed
    assert derrd.flush_status(store, pairs) == [("(a) attention", 0, False),
                                                ("(a) attention", 1, True),
                                                ("(b) one expert, large", 0, True)]
    head = "denormals flushed to zero (--flush-denormal)"
    # two of three flushed: the one that did not is named
    assert derrd.flushed_line(store, pairs) == (f"{head}: 2 of 3 stored runs; "
                                                "not flushed: (a) attention seed 0")
    assert derrd.flushed_line(store, pairs[:1]) == f"{head}: none"
    assert derrd.flushed_line(store, pairs[1:]) == f"{head}: all 2 stored runs"
    # one of two flushed: named; a label's seeds are listed together
    assert derrd.flushed_line(store, pairs[:2]) == (f"{head}: 1 of 2 stored runs: "
                                                    "(a) attention seed 1")
    same = [("x", c) for _, c in pairs[:3]]
    assert derrd.flushed_line(store, same) == f"{head}: 2 of 3 stored runs; not flushed: x seed 0"
    assert derrd.flushed_line(store, same[:1] + same) == (f"{head}: 2 of 4 stored runs: "
                                                          "x seeds 0, 1")
    # a run resumed without flushing, whose first process flushed, is listed too
    path = store.run_dir(pairs[0][1].cfg.run_id) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["segments"] = [{"from_epoch": 0, "to_epoch": 5, "determinism": {"flush_denormal": True}},
                            {"from_epoch": 5, "to_epoch": 9, "determinism": {"flush_denormal": False}}]
    path.write_text(json.dumps(manifest))
    assert derrd.flush_status(store, pairs)[0] == ("(a) attention", 0, True)


def test_cluster_gains_average_each_variants_gain_per_cluster(tmp_path):
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["Student", "DE"], seeds=[0, 1])
    clusters = np.arange(N_USERS) % 3  # users 0, 3, 6, ... in cluster 0
    student = np.full(N_USERS, 0.5)
    for c in cells:
        if c.method == "Student":
            _store_run(store, c, student)
    pairs = dict(((v, c.cfg.seed), c) for v, c in derrd.ablation_cells(cells, "CiteULike/BPR"))
    # DE: +0.1 HR@5 everywhere at seed 0, +0.3 at seed 1; attention: −0.2 in cluster 2 only
    _store_run(store, pairs["DE", 0], student + 0.1)
    _store_run(store, pairs["DE", 1], student + 0.3)
    _store_run(store, pairs["(a) attention", 0], student - 0.2 * (clusters == 2))
    got = derrd.cluster_gains(store, cells, "CiteULike/BPR", clusters, noise_seeds=None)
    ndcg20 = 0.7 * 1.2  # _store_run's NDCG@20 per unit of HR@5
    de = got[got["variant"] == "DE"].set_index("cluster")
    assert list(de.index) == [0, 1, 2] and (de["users"] == N_USERS // 3).all()
    assert (de["n_seeds"] == 2).all() and de["gain"].to_numpy() == pytest.approx([0.2 * ndcg20] * 3)
    att = got[got["variant"] == "(a) attention"].set_index("cluster")
    assert att["gain"].to_numpy() == pytest.approx([0, 0, -0.2 * ndcg20], abs=1e-6)
    assert set(got["variant"]) == {"DE", "(a) attention"}  # (b), (c) not stored
    only0 = derrd.cluster_gains(store, cells, "CiteULike/BPR", clusters, seeds=[0],
                                noise_seeds=None)
    assert only0.loc[only0["variant"] == "DE", "gain"].to_numpy() == pytest.approx([0.1 * ndcg20] * 3)
    # the noise row: two student seeds, here the same per user, so no gain in any cluster
    noise = derrd.cluster_gains(store, cells, "CiteULike/BPR", clusters)
    noise = noise[noise["variant"] == "Student 1 − 0"]
    assert len(noise) == 3 and (noise["gain"] == 0).all() and (noise["n_seeds"] == 1).all()
    assert derrd.cluster_gains(store, cells, "CiteULike/BPR", clusters,
                               noise_seeds=(0, 7))["variant"].nunique() == 2  # seed 7 not stored
    summary = derrd.cluster_gain_summary(got)
    assert summary.loc["DE", "clusters gaining"] == 3
    assert summary.loc["(a) attention", "clusters gaining"] == 0  # zero is not a gain
    assert summary.loc["(a) attention", "users in clusters not gaining"] == N_USERS
    assert summary.loc["(a) attention", "worst cluster"] == pytest.approx(-0.2 * ndcg20)
    assert summary.loc["(a) attention", "mean gain"] == pytest.approx(-0.2 * ndcg20 / 3)


def test_lambda_main_effects_are_row_and_column_means_of_an_additive_grid():
    lams = [1e-4, 1e-3, 1e-2, 1e-1]
    a, b = np.array([0.0, 0.01, 0.02, 0.05]), np.array([0.3, 0.1, 0.0, 0.2])
    grid = pd.DataFrame(0.4 + a[:, None] + b[None, :], index=pd.Index(lams, name="λ_DE"),
                        columns=pd.Index(lams, name="λ_RRD"))  # value = 0.4 + a_DE + b_RRD
    got = derrd.lambda_main_effects(grid)
    assert list(got.index) == ["λ_DE", "λ_RRD"] and list(got.columns) == [*lams, "range"]
    np.testing.assert_allclose(got.loc["λ_DE", lams].to_numpy(float), 0.4 + a + b.mean())
    np.testing.assert_allclose(got.loc["λ_RRD", lams].to_numpy(float), 0.4 + b + a.mean())
    assert got.loc["λ_DE", "range"] == pytest.approx(0.05)
    assert got.loc["λ_RRD", "range"] == pytest.approx(0.3)
    paper = derrd.lambda_main_effects(derrd.paper_lambda_grid("BPR"))  # hand-worked on the data
    assert paper.loc["λ_RRD", 1e-3] == pytest.approx(
        derrd.paper_lambda_grid("BPR")[1e-3].sum() / 4)
    grid.loc[1e-2, 1e-3] = np.nan  # an empty cell: its row and column have no mean
    got = derrd.lambda_main_effects(grid)
    assert np.isnan(got.loc["λ_DE", 1e-2]) and np.isnan(got.loc["λ_RRD", 1e-3])
    assert np.isnan(got.loc["λ_DE", "range"]) and np.isnan(got.loc["λ_RRD", "range"])
    assert got.loc["λ_DE", 1e-4] == pytest.approx(0.4 + a[0] + b.mean())


def test_lambda_grid_agreement_ranks_the_cells_both_grids_hold():
    paper = derrd.paper_lambda_grid("BPR")
    ours = paper * 0.5 - 0.1  # same order, other level: ρ = 1 on all 16 cells
    got = derrd.lambda_grid_agreement(ours, paper)
    assert got["n"] == 16 and got["rho"] == pytest.approx(1.0) and got["p"] < 1e-6
    reversed_ = -ours
    reversed_.loc[[1e-2, 1e-1]] = np.nan  # rows λ_DE 1e-4 and 1e-3 only, in reverse order
    got = derrd.lambda_grid_agreement(reversed_, paper)
    assert got["n"] == 8 and got["rho"] == pytest.approx(-1.0)
    two = ours * np.nan
    two.loc[1e-1, [1e-4, 1e-3]] = 0.5
    got = derrd.lambda_grid_agreement(two, paper)
    assert got["n"] == 2 and np.isnan(got["rho"]) and np.isnan(got["p"])


def test_lambda_seed_agreement_compares_two_seeds_on_the_cells_both_have(tmp_path):
    store = ResultStore(tmp_path)
    cells = derrd.chapter_grid("full", ["CiteULike/BPR"], ["DE-RRD"], seeds=[0, 1])
    setting = "CiteULike/BPR"
    assert derrd.lambda_seed_agreement(store, cells, setting)["n"] == 0  # nothing stored
    shift = {(1e-4, 1e-4): 0.02, (1e-4, 1e-3): -0.01, (1e-3, 1e-4): 0.03, (1e-1, 1e-1): 0.0}
    for l_de, l_rrd, cell in derrd.lambda_cells(cells, setting):
        value = 0.3 + l_de + 2 * l_rrd  # seed 0: a distinct value per cell
        if cell.cfg.seed == 0:
            _store_run(store, cell, np.full(N_USERS, value))
        elif (l_de, l_rrd) in shift:  # seed 1 on four cells only
            _store_run(store, cell, np.full(N_USERS, value + shift[(l_de, l_rrd)]))
    got = derrd.lambda_seed_agreement(store, cells, setting)
    assert got["n"] == 4
    diffs = np.array(list(shift.values())) * 1.05  # _store_run's HR@5 factor
    assert got["mean diff"] == pytest.approx(diffs.mean(), abs=1e-6)
    assert got["mean |diff|"] == pytest.approx(np.abs(diffs).mean(), abs=1e-6)
    assert got["max |diff|"] == pytest.approx(0.03 * 1.05, abs=1e-6)
    # by hand, cells (1e-4,1e-4), (1e-4,1e-3), (1e-3,1e-4), (1e-1,1e-1): seed 0 values 0.3003,
    # 0.3021, 0.3012, 0.6 rank 1, 3, 2, 4; seed 1 values 0.3203, 0.2921, 0.3312, 0.6 rank
    # 2, 1, 3, 4; Σd² = 1 + 4 + 1 + 0 = 6, ρ = 1 − 6·6/(4·(16 − 1)) = 0.4
    assert got["rho"] == pytest.approx(0.4)
    one_seed = derrd.lambda_seed_agreement(store, cells, setting, seeds=(0, 2))
    assert one_seed["n"] == 0 and np.isnan(one_seed["rho"]) and np.isnan(one_seed["mean diff"])


def test_teacher_restores_and_the_weights_their_students_name(filled):
    """The teacher's first training and each restore, one row each; and per weights digest the
    KD students that recorded it (plain students name no teacher; an older student without the
    field counts as "not recorded")."""
    store, cells = filled
    teacher = next(c for c in cells if c.method == "Teacher").cfg.run_id
    m = store.manifest(teacher)
    store.write_manifest(teacher, {
        **m, "started_at": "2026-11-23T17:58:43+00:00", "device_name": "cpu A",
        "git": {"commit": "1111111aaaa"}, "seconds_per_epoch": 1.5,
        "restores": [{"started_at": "2026-12-05T01:00:00+00:00", "device_name": "cpu B",
                      "git": {"commit": "2222222bbbb"}, "seconds_per_epoch": 1.1,
                      "weights_sha256": "ab" * 32},
                     {"started_at": "2026-12-06T01:00:00+00:00",
                      "device_name": "cpu (AMD EPYC (family 25, model 17), AVX512, x86_64, 1 threads)",
                      "git": {"commit": "3333333cccc"}, "seconds_per_epoch": 1.0}]})
    named = {("RRD", 0): ("ab" * 32, "cpu B"), ("RRD", 1): ("ab" * 32, "cpu A"),
             ("RRD", 2): ("cd" * 32, "cpu C"), ("DE", 0): (None, "cpu A")}
    for c in cells:
        if (c.method, c.cfg.seed) in named and store.has(c.cfg.run_id):
            digest, device = named[(c.method, c.cfg.seed)]
            extra = {"teacher_checkpoint_sha256": digest} if digest else {}
            store.write_manifest(c.cfg.run_id, {**store.manifest(c.cfg.run_id), **extra,
                                                "teacher_run_id": teacher, "device_name": device})
    runs = derrd.teacher_restores(store, cells)
    assert runs["run"].tolist() == ["trained", "restore 1", "restore 2"]
    assert runs["commit"].tolist() == ["1111111", "2222222", "3333333"]
    assert runs["started"].tolist() == ["2026-11-23", "2026-12-05", "2026-12-06"]
    assert runs["weights SHA-256"].tolist() == ["not recorded", "ab" * 6, "not recorded"]
    assert runs["s/epoch"].tolist() == [1.5, 1.1, 1.0]
    assert runs["device"].tolist() == ["cpu A", "cpu B", "AMD EPYC (family 25, model 17)"]
    weights = derrd.teacher_weights_named(store, cells)
    assert weights[["weights SHA-256", "students", "devices"]].values.tolist() == [
        ["ab" * 6, 2, "cpu A; cpu B"], ["cd" * 6, 1, "cpu C"], ["not recorded", 1, "cpu A"]]
    assert set(weights["setting"]) == {"CiteULike/BPR"}
    empty = ResultStore(store.root / "nothing")
    assert derrd.teacher_restores(empty, cells).empty
    assert derrd.teacher_weights_named(empty, cells).empty


def test_training_cost_sums_every_process_of_a_resumed_run():
    # two seeds of one cell on one device; seed 1 was resumed, so its wall_time_s (last process
    # only) is far below its training plus evaluation time, which the table must use
    a, b = derrd.chapter_grid("full", ["CiteULike/BPR"], ["RRD"], seeds=[0, 1])
    dev = "cpu (test)"
    manifests = [
        {"device_name": dev, "epochs_run": 100, "seconds_per_epoch": 2.0, "train_seconds": 200.0,
         "eval_seconds": 40.0, "wall_time_s": 250.0, "resumed_from_epoch": None},
        {"device_name": dev, "epochs_run": 300, "seconds_per_epoch": 4.0, "train_seconds": 1200.0,
         "eval_seconds": 120.0, "wall_time_s": 60.0, "resumed_from_epoch": 280}]
    got = derrd.training_cost([a, b], manifests)
    row = got.loc[("CiteULike/BPR", "RRD", 0.1, dev, ALLOCATOR_NOT_RECORDED)]
    assert row["runs"] == 2 and row["epochs"] == 200 and row["s_per_epoch"] == 3.0
    assert row["train_eval_min"] == round((240 / 60 + 1320 / 60) / 2, 2)  # 13.0, not wall's 2.58
    assert row["resumed"] == 1
    with pytest.raises(ValueError, match="1 cells but 2 manifests"):
        derrd.training_cost([a], manifests)


def test_training_cost_keeps_runs_of_two_allocators_apart():
    """Seconds per epoch under glibc's default and under the 1 GiB thresholds are not one
    cost: the same device gives one row per allocator, and a run resumed across the change
    its own "mixed" row."""
    a, b, c = derrd.chapter_grid("full", ["CiteULike/BPR"], ["DE"], seeds=[0, 1, 2])
    dev, new = "cpu (test)", "glibc, mmap and trim thresholds 1 GiB"
    base = {"device_name": dev, "epochs_run": 10, "train_seconds": 100.0, "eval_seconds": 0.0,
            "resumed_from_epoch": None}
    old_run = {**base, "seconds_per_epoch": 30.0}  # written before the field existed
    new_run = {**base, "seconds_per_epoch": 20.0, "allocator": new}
    mixed = {**base, "seconds_per_epoch": 25.0, "allocator": new, "resumed_from_epoch": 4,
             "segments": [{"from_epoch": 0, "to_epoch": 4}, {"from_epoch": 4, "to_epoch": 10,
                                                             "allocator": new}]}
    got = derrd.training_cost([a, b, c], [old_run, new_run, mixed])
    by_allocator = got.xs(("CiteULike/BPR", "DE", 0.1, dev))["s_per_epoch"].to_dict()
    assert by_allocator == {ALLOCATOR_NOT_RECORDED: 30.0, new: 20.0,
                            f"mixed: {ALLOCATOR_NOT_RECORDED} → {new}": 25.0}


def test_missing_runs_counts_the_seeds_left_and_prices_them_from_the_stored_ones(filled):
    """Student and RRD have all three seeds: not listed. DE has one stored run of 30 min, so its
    two missing seeds cost an hour; RD, CD and DE-RRD have no run to price them by."""
    store, cells = filled
    for c in cells:
        if c.method == "Teacher":
            store.write_manifest(c.cfg.run_id, {**store.manifest(c.cfg.run_id),
                                                "device_name": "NVIDIA H100 80GB HBM3"})
        if c.method == "DE" and store.has(c.cfg.run_id):
            store.write_manifest(c.cfg.run_id, {**store.manifest(c.cfg.run_id),
                                                "device_name": "cpu (x86_64, 1 threads)",
                                                "train_seconds": 1500.0, "eval_seconds": 300.0})
    got = derrd.missing_runs(store, cells).set_index("method")
    assert sorted(got.index) == ["CD", "DE", "DE-RRD", "RD"]
    assert got.loc["DE"].tolist() == ["CiteULike/BPR", 1, 2, "NVIDIA H100 80GB HBM3", 30.0,
                                      "CPU (model not recorded)", 1.0]
    assert got.loc["RD", "stored"] == 0 and got.loc["RD", "missing"] == 3
    assert got.loc["RD", "min/run"] == "no stored run" and got.loc["RD", "hours left"] == "not known"
    assert derrd.missing_runs(store, cells, phi=0.5).empty  # the grid has no φ = 0.5 cell
    # the commands name the missing seeds of each listed cell, in its order; the teacher's
    # config says where it trained (the device name above is only its label)
    commands = derrd.missing_run_commands(store, cells)
    assert len(commands) == len(got)
    de = next(c for c in commands if "--methods DE " in c)
    missing = [c.cfg.seed for c in cells if c.method == "DE" and not store.has(c.cfg.run_id)]
    assert de == (f"rdlib run derrd --profile full --settings CiteULike/BPR --methods DE "
                  f"--seeds {' '.join(map(str, missing))}")
    teacher = next(c for c in cells if c.method == "Teacher")
    manifest = store.manifest(teacher.cfg.run_id)
    store.write_manifest(teacher.cfg.run_id,
                         {**manifest, "config": {**manifest["config"], "device": "cuda"}})
    assert all(c.endswith(" --device cuda") for c in derrd.missing_run_commands(store, cells))
    assert derrd.missing_run_commands(store, cells, phi=0.5) == []
