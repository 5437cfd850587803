"""The ``rdlib`` command through ``main([...])``: output, JSON keys and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdlib.cli import main
from rdlib.data import mirror

FIX = Path(__file__).parent / "fixtures" / "data"
FIX_MIRROR = FIX / "mirror"
USERS_DAT = FIX_MIRROR / "tiny-cite" / "library.dat"
KEYS = {"n_users", "n_items", "n_interactions", "density"}


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """The tiny test registry; shared mirror and download cache are empty temporary folders."""
    monkeypatch.setenv("RDLIB_REGISTRY", str(FIX / "registry.yaml"))
    monkeypatch.delenv(mirror.ENV_VAR, raising=False)
    monkeypatch.setattr(mirror, "shared_data_dir", lambda: tmp_path / "shared")
    monkeypatch.setattr(mirror, "download_root", lambda: tmp_path / "cache")

    def no_network(url: str, dest: Path) -> None:
        raise OSError("no network in tests")

    monkeypatch.setattr(mirror, "fetch", no_network)


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # exactly one JSON object on one line
    return json.loads(out)


def test_stats_registered_dataset_json(tiny, capsys):
    assert main(["data", "stats", "tiny-cite", "--json", "--data-dir", str(FIX_MIRROR)]) == 0
    stats = _json(capsys)
    assert set(stats) == KEYS
    assert stats == {"n_users": 3, "n_items": 10, "n_interactions": 12, "density": 0.4}


def test_stats_registered_dataset_text(tiny, capsys):
    assert main(["data", "stats", "tiny-cite", "--data-dir", str(FIX_MIRROR)]) == 0
    out = capsys.readouterr().out
    assert "tiny-cite" in out and "12" in out
    assert "users with >= 3 items" in out  # the preprocessing note is shown


def test_stats_file_unfiltered_json(capsys):
    assert main(["data", "stats", "--file", str(USERS_DAT), "--format", "citeulike",
                 "--json"]) == 0
    assert _json(capsys) == {"n_users": 5, "n_items": 11, "n_interactions": 15,
                             "density": 15 / 55}


def test_stats_several_files(capsys):
    fmt_dir = FIX / "formats"
    assert main(["data", "stats", "--file", str(fmt_dir / "lightgcn_train.txt"), "--file",
                 str(fmt_dir / "lightgcn_test.txt"), "--format", "lightgcn", "--json"]) == 0
    assert _json(capsys)["n_interactions"] == 6


def test_list_shows_every_dataset_and_location(tiny, capsys):
    assert main(["data", "list", "--data-dir", str(FIX_MIRROR)]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines()[2:]}
    assert set(lines) == {"tiny-cite", "tiny-split", "tiny-web"}
    assert "data_dir" in lines["tiny-cite"] and "12" in lines["tiny-cite"]
    assert "not present" in lines["tiny-web"]


@pytest.mark.parametrize("argv, message", [
    (["data", "stats", "nope"], "unknown dataset 'nope'"),
    (["data", "stats", "--file", "x.txt", "--format", "parquet"], "invalid choice"),
    (["data", "stats", "--file", "/nonexistent/x.txt", "--format", "csv"], "file not found"),
    (["data", "stats"], "give a dataset NAME"),
    (["data", "stats", "--file", str(USERS_DAT)], "--file PATH --format FMT"),
    (["data", "stats", "tiny-cite", "--format", "csv"], "--format goes with --file"),
    (["data"], "required"),
    ([], "required"),
])
def test_errors_exit_2_with_message_on_stderr(tiny, capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_malformed_file_exit_2(tmp_path, capsys):
    bad = tmp_path / "users.dat"
    bad.write_text("3 1 2\n")
    assert main(["data", "stats", "--file", str(bad), "--format", "citeulike", "--json"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 1" in err and "expected 3 item ids" in err


def test_dataset_missing_everywhere_exit_2(tiny, capsys):
    assert main(["data", "stats", "tiny-web"]) == 2
    assert "download failed" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["data", "stats", "--help"]) == 0
    assert "--format" in capsys.readouterr().out


# ------------------------------------------------------------------ rdlib run derrd

@pytest.fixture(autouse=True)
def committed_code(monkeypatch):
    """The tests below train (fakes of) runs whatever the tree under test holds: its code
    counts as committed unless a test says otherwise."""
    from rdlib import env

    monkeypatch.setattr(env, "code_git_state", lambda: {"commit": "c" * 40, "dirty": False})


@pytest.mark.parametrize("extra", [[], ["--teachers-only"]])
def test_run_derrd_refuses_uncommitted_code_unless_allowed(tmp_path, capsys, monkeypatch,
                                                           extra):
    import rdlib.distill as distill
    import rdlib.experiments as ex
    from rdlib import env

    trained: list[str] = []
    monkeypatch.setattr(ex, "run_experiment", lambda cfg, **kw: trained.append(cfg.method))
    monkeypatch.setattr(distill, "ensure_teacher", lambda cfg, *a, **kw: trained.append("t"))
    monkeypatch.setattr(env, "code_git_state", lambda: {"commit": "a" * 40, "dirty": True})
    monkeypatch.setattr(env, "code_changes", lambda: [f"rdlib/m{i}.py" for i in range(7)])
    argv = ["run", "derrd", "--settings", "CiteULike/BPR", "--methods", "RRD", "--seeds", "0",
            "--profile", "smoke", "--results-dir", str(tmp_path), *extra]
    assert main(argv + ["--dry-run"]) == 0  # listing trains nothing: allowed
    capsys.readouterr()
    assert main(argv) == 2 and trained == []
    err = capsys.readouterr().err
    assert "code differs from commit aaaaaaaaaa" in err and "--allow-dirty" in err
    assert "rdlib/m0.py, rdlib/m1.py, rdlib/m2.py, rdlib/m3.py, rdlib/m4.py and 2 more" in err
    assert main(argv + ["--allow-dirty"]) == 0 and trained == (["t"] if extra else ["rrd"])


def test_run_derrd_dry_run_lists_stored_and_missing_cells(tmp_path, capsys):
    from rdlib import derrd
    from rdlib.results import ResultStore

    cells = derrd.chapter_grid("smoke", ["CiteULike/BPR"], ["Teacher", "RRD"], seeds=[0, 1])
    teacher = cells[0].cfg
    run_dir = ResultStore(tmp_path).run_dir(teacher.run_id)  # a finished run: its manifest
    run_dir.mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"status": "complete"}))
    code = main(["run", "derrd", "--settings", "CiteULike/BPR", "--methods", "Teacher", "RRD",
                 "--seeds", "0", "1", "--profile", "smoke", "--dry-run",
                 "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[-1] == "3 cells, 2 missing"
    assert out[0].startswith("stored ") and teacher.run_id in out[0]
    assert [line.split()[0] for line in out[1:3]] == ["missing", "missing"]
    assert {cells[1].cfg.run_id, cells[2].cfg.run_id} == {line.split()[-1] for line in out[1:3]}


def test_run_derrd_skips_a_cell_whose_teacher_is_unavailable(tmp_path, capsys, monkeypatch):
    import rdlib.experiments as ex
    from rdlib.distill import TeacherUnavailable

    ran = []

    def fake(cfg, **kwargs):
        if cfg.method != "none":
            raise TeacherUnavailable(f"teacher of {cfg.method} was trained on cuda")
        ran.append(cfg.method)
    monkeypatch.setattr(ex, "run_experiment", fake)
    code = main(["run", "derrd", "--settings", "CiteULike/BPR", "--methods", "RRD", "Student",
                 "--seeds", "0", "--profile", "smoke", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and ran == ["none"]  # the other cell still ran
    assert "skipped: teacher of rrd was trained on cuda" in err
    assert "1 cell skipped" in err


def test_run_derrd_skips_a_cell_another_process_is_training(tmp_path, capsys, monkeypatch):
    import rdlib.experiments as ex
    from rdlib.results import RunLocked

    ran = []

    def fake(cfg, **kwargs):
        if cfg.seed == 1:
            raise RunLocked(f"run {cfg.run_id} is already being trained by pid 42")
        ran.append(cfg.seed)
    monkeypatch.setattr(ex, "run_experiment", fake)
    code = main(["run", "derrd", "--settings", "CiteULike/BPR", "--methods", "Student",
                 "--seeds", "1", "2", "--profile", "smoke", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and ran == [2]  # seed 2 still ran after seed 1 was found locked
    assert "already being trained by pid 42" in err and "1 cell skipped" in err


def test_run_derrd_flush_denormal_is_on_while_its_runs_train(tmp_path, capsys, monkeypatch):
    import torch

    import rdlib.experiments as ex
    from rdlib import env

    seen = []
    monkeypatch.setattr(ex, "run_experiment",
                        lambda cfg, **kw: seen.append(env.determinism_flags()["flush_denormal"]))
    try:
        code = main(["run", "derrd", "--settings", "CiteULike/BPR", "--methods", "Student",
                     "--seeds", "0", "--profile", "smoke", "--flush-denormal",
                     "--results-dir", str(tmp_path)])
    finally:
        torch.set_flush_denormal(False)
    assert code == 0 and seen == [True]


def test_run_derrd_ends_each_cell_with_its_outcome(tmp_path, capsys, monkeypatch):
    import pandas as pd

    import rdlib.experiments as ex
    from rdlib.results import ResultStore, RunRecord

    def fake(cfg, *, store, **kwargs):  # stores a hand-made run of 7 epochs, HR@5 0.5
        rows = pd.DataFrame([{"run_id": cfg.run_id, "paper": "DE-RRD", "dataset": cfg.dataset,
                              "protocol": cfg.protocol, "model": cfg.model, "role": cfg.role,
                              "method": cfg.method, "dim": cfg.dim, "seed": cfg.seed,
                              "split": "test", "metric": m, "k": 5, "value": v, "epoch": 6}
                             for m, v in (("ndcg", 0.25), ("hr", 0.5))])
        store.save(RunRecord(cfg.run_id, {"epochs_run": 7, "seconds_per_epoch": 1.5}, rows,
                             pd.DataFrame(), {"test/users": [0]}))
    monkeypatch.setattr(ex, "run_experiment", fake)
    code = main(["run", "derrd", "--settings", "CiteULike/BPR", "--methods", "Student",
                 "--seeds", "0", "--profile", "smoke", "--results-dir", str(tmp_path)])
    last = capsys.readouterr().out.splitlines()[-1]
    run_id = ResultStore(tmp_path).run_ids()[0]
    assert code == 0
    assert last == f"stored {run_id}: 7 epochs at 1.5 s/epoch, test HR@5 0.5000"


def _spy_teachers(monkeypatch, fail_model: str | None = None) -> list[str]:
    """Record the teacher run id each ``ensure_teacher`` call restores (raising
    TeacherUnavailable for the model ``fail_model``); any training run fails the test."""
    import rdlib.distill as distill
    import rdlib.experiments as ex

    restored: list[str] = []

    def fake(cfg, store, data_dir=None):
        if cfg.model == fail_model:
            raise distill.TeacherUnavailable("teacher of neumf was trained on cuda")
        restored.append(distill.teacher_config(cfg).run_id)

    def no_training(cfg, **kwargs):
        raise AssertionError(f"--teachers-only trained {cfg.run_id}")
    monkeypatch.setattr(distill, "ensure_teacher", fake)
    monkeypatch.setattr(ex, "run_experiment", no_training)
    return restored


def test_run_derrd_teachers_only_restores_each_teacher_once_and_trains_no_student(
        tmp_path, capsys, monkeypatch):
    from rdlib import derrd
    from rdlib.distill import teacher_config

    restored = _spy_teachers(monkeypatch)
    argv = ["run", "derrd", "--settings", "CiteULike/BPR", "CiteULike/NeuMF",
            "--methods", "Student", "DE", "RRD", "--seeds", "0", "1", "--profile", "smoke",
            "--teachers-only", "--results-dir", str(tmp_path)]
    assert main([*argv, "--dry-run"]) == 0 and restored == []  # a dry run restores nothing
    assert "2 teachers of the selected KD cells" in capsys.readouterr().out
    assert main(argv) == 0
    expected = [teacher_config(derrd.chapter_grid("smoke", [s], ["DE"], seeds=[0])[0].cfg).run_id
                for s in ("CiteULike/BPR", "CiteULike/NeuMF")]
    assert restored == expected  # once per setting, though 4 KD cells share each teacher
    assert capsys.readouterr().out.count("ready    ") == 2


def test_run_derrd_teachers_only_reports_a_teacher_it_cannot_restore(tmp_path, capsys,
                                                                     monkeypatch):
    restored = _spy_teachers(monkeypatch, fail_model="neumf")
    code = main(["run", "derrd", "--settings", "CiteULike/NeuMF", "CiteULike/BPR",
                 "--methods", "RRD", "--seeds", "0", "--profile", "smoke", "--teachers-only",
                 "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and len(restored) == 1  # the BPR teacher is still restored after it
    assert "not restored: teacher of neumf was trained on cuda" in err


def test_run_derrd_teachers_only_without_kd_cells_does_nothing(tmp_path, capsys, monkeypatch):
    restored = _spy_teachers(monkeypatch)
    code = main(["run", "derrd", "--settings", "CiteULike/BPR", "--methods", "Teacher",
                 "Student", "--seeds", "1", "--profile", "smoke", "--teachers-only",
                 "--results-dir", str(tmp_path)])
    assert code == 0 and restored == []
    assert "0 teachers of the selected KD cells" in capsys.readouterr().out


def test_run_derrd_flush_denormal_is_a_usage_error_where_the_cpu_cannot(tmp_path, capsys,
                                                                        monkeypatch):
    import torch

    import rdlib.experiments as ex

    ran = []
    monkeypatch.setattr(torch, "set_flush_denormal", lambda on: False)  # a CPU without SSE3
    monkeypatch.setattr(ex, "run_experiment", lambda cfg, **kw: ran.append(cfg.run_id))
    code = main(["run", "derrd", "--settings", "CiteULike/BPR", "--methods", "Student",
                 "--seeds", "0", "--profile", "smoke", "--flush-denormal",
                 "--results-dir", str(tmp_path)])
    assert code == 2 and ran == []  # nothing trains with denormals it was asked to flush
    assert "--flush-denormal: this CPU cannot flush denormals" in capsys.readouterr().err


@pytest.mark.parametrize("argv,named", [
    (["--methods", "DEX"], "DEX"),
    (["--settings", "Yelp/BPR"], "Yelp/BPR"),
    (["--phis", "0.3"], "0.3"),
])
def test_run_derrd_rejects_unknown_choices(argv, named, tmp_path, capsys):
    code = main(["run", "derrd", *argv, "--dry-run", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and named in err


def test_run_derrd_reads_setting_and_method_names_in_any_case(tmp_path, capsys):
    code = main(["run", "derrd", "--settings", "citeulike/bpr", "--methods", "de-rrd",
                 "--seeds", "0", "--profile", "smoke", "--dry-run", "--results-dir", str(tmp_path)])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[-1] == "1 cell, 1 missing"
    assert out[0].split()[1:3] == ["CiteULike/BPR", "DE-RRD"]


def test_run_derrd_table4_and_table5_lay_out_the_variant_runs(tmp_path, capsys):
    args = ["run", "derrd", "--settings", "CiteULike/BPR", "--seeds", "0", "--dry-run",
            "--results-dir", str(tmp_path)]
    assert main([*args, "--study", "table4", "--variants", "(a) attention",
                 "(d) full ranking"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 cells, 2 missing"
    assert [line.split()[2] for line in out[:2]] == ["DE", "RRD"]
    assert main([*args, "--study", "table5"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "16 cells, 16 missing"
    assert main([*args, "--study", "table4", "--variants", "(z) none"]) == 2
    assert "unknown Table 4 variants" in capsys.readouterr().err


def test_run_derrd_table5_runs_the_named_lambdas_only(tmp_path, capsys):
    from rdlib import derrd

    args = ["run", "derrd", "--settings", "CiteULike/BPR", "--seeds", "0", "--dry-run",
            "--study", "table5", "--results-dir", str(tmp_path)]
    assert main([*args, "--lambda-de", "1e-2", "--lambda-rrd", "0.1", "0.0001"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "2 cells, 2 missing"
    grid = derrd.chapter_grid("full", ["CiteULike/BPR"], ["DE-RRD"], seeds=[0])
    want = {(l_de, l_rrd): c.cfg.run_id for l_de, l_rrd, c in derrd.lambda_cells(grid, "CiteULike/BPR")}
    # grid order, each line naming its λ and its run
    assert [line.split()[-3:] for line in out[:2]] == [
        ["λ_DE=0.01", "λ_RRD=0.0001", want[0.01, 1e-4]], ["λ_DE=0.01", "λ_RRD=0.1", want[0.01, 0.1]]]


@pytest.mark.parametrize("argv,named", [
    (["--study", "table5", "--lambda-de", "0.5"], "'0.5' is not a λ of the Table 5 grid"),
    (["--study", "table5", "--lambda-rrd", "high"], "'high' is not a λ of the Table 5 grid"),
    (["--lambda-de", "0.01"], "add --study table5"),
])
def test_run_derrd_rejects_lambdas_off_the_grid_or_outside_table5(argv, named, tmp_path, capsys):
    code = main(["run", "derrd", "--settings", "CiteULike/BPR", "--seeds", "0", *argv,
                 "--dry-run", "--results-dir", str(tmp_path)])
    assert code == 2 and named in capsys.readouterr().err
