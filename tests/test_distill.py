"""KD students through run_experiment on the synthetic log: every method end to end, the teacher
trained once and reused, retrained when its checkpoint is missing, clear errors, distinct ids."""

import json
from dataclasses import replace

import pytest

import rdlib.experiments as ex
from rdlib import distill
from rdlib.config import RunConfig
from rdlib.experiments import run_experiment
from rdlib.kd.topk import file_digest
from rdlib.results import ResultStore

BASE = dict(dataset="synthetic", protocol="loo_sampled", dim=4, epochs=2, batch_size=512,
            lr=0.01, weight_decay=0.0, patience=0, n_eval_negatives=50, progress=False)
TEACHER = {"dim": 8}
SMALL = {  # sized to the synthetic log (300 items, ~18 training items per user)
    "rd": {"K": 5, "n_dynamic_samples": 20},
    "cd": {"top_n": 50, "n_samples": 5},
    "de": {"n_experts": 3},
    "rrd": {"top_n": 50, "K": 5, "L": 5},
    "de-rrd": {"n_experts": 3, "top_n": 50, "K": 5, "L": 5},
}


def student(method: str, **options) -> RunConfig:
    return RunConfig(**BASE, method=method, role="student",
                     extra={"teacher": TEACHER, **SMALL[method], **options})


def count_fits(monkeypatch, record=lambda cfg: cfg.run_id) -> list:
    """Record ``record(cfg)`` (by default the run_id) of every training run as it starts (the
    teacher's fit and the students')."""
    calls: list = []
    real = ex.fit

    def spy(model, train, n_items, cfg, *a, **k):
        calls.append(record(cfg))
        return real(model, train, n_items, cfg, *a, **k)
    monkeypatch.setattr(ex, "fit", spy)
    return calls


@pytest.mark.parametrize("method", ["rd", "cd", "de", "rrd", "de-rrd"])
def test_each_method_runs_end_to_end(tmp_path, method):
    store = ResultStore(tmp_path)
    cfg = student(method)
    rid = run_experiment(cfg, store=store)
    rows = store.metrics(rid)
    assert len(rows) and rows["value"].between(0, 1).all()
    assert set(rows["method"]) == {method}
    m = store.manifest(rid)
    tcfg = distill.teacher_config(cfg)
    assert m["teacher_run_id"] == tcfg.run_id and store.has(tcfg.run_id)
    assert store.manifest(tcfg.run_id)["config"]["role"] == "teacher"
    assert m["distiller"]["n_parameters"] >= 0
    if "de" in method.split("-"):
        de = m["distiller"]["DistillationExperts"]
        assert de["gates"] > 0 and de["experts"] > 0
        assert m["distiller"]["n_parameters"] == de["total"]
    assert (tmp_path / "checkpoints" / f"{rid}.best.pt").is_file()


def test_teacher_config_merges_over_student():
    cfg = student("de", lmbda_de=0.1)
    t = distill.teacher_config(cfg)
    assert (t.dim, t.method, t.role, t.extra) == (8, "none", "teacher", {})
    assert (t.dataset, t.epochs, t.lr, t.n_eval_negatives) == (cfg.dataset, 2, 0.01, 50)
    # the teacher is the plain run of that config: a baseline with it shares the run id
    assert t.run_id == RunConfig(**{**BASE, "dim": 8}).run_id


def test_teacher_trained_once_and_topk_cached(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    calls = count_fits(monkeypatch)
    a, b = student("rrd"), student("rrd", lmbda_rrd=0.01)
    tid = distill.teacher_config(a).run_id
    run_experiment(a, store=store)
    cache = tmp_path / "cache" / "teacher_topk" / f"{tid}.pt"
    assert cache.is_file()
    stamp = cache.stat().st_mtime_ns
    run_experiment(b, store=store)
    assert calls == [tid, a.run_id, b.run_id]  # the teacher trained once, for the first student
    assert cache.stat().st_mtime_ns == stamp  # the second student read the cached top list
    assert store.manifest(b.run_id)["teacher_run_id"] == tid


def stored_teacher_without_weights(tmp_path):
    """A store holding a DE student and its teacher run, but not the teacher's weights (a
    fresh clone: results committed, checkpoints not). Returns the store, a second student of
    that teacher, the teacher's config, its checkpoint path and the bytes it had."""
    store = ResultStore(tmp_path)
    a, b = student("de"), student("de", lmbda_de=0.1)
    tcfg = distill.teacher_config(a)
    run_experiment(a, store=store)
    ckpt = distill.teacher_checkpoint_path(store, tcfg)
    before = ckpt.read_bytes()
    ckpt.unlink()
    return store, b, tcfg, ckpt, before


def test_missing_teacher_checkpoint_retrains_it(tmp_path, monkeypatch):
    store, b, tcfg, ckpt, before = stored_teacher_without_weights(tmp_path)
    calls = count_fits(monkeypatch)
    run_experiment(b, store=store)
    assert calls == [tcfg.run_id, b.run_id]
    assert ckpt.read_bytes() == before  # same config and seed on CPU: the same weights


def test_repeated_teacher_retrain_keeps_the_stored_run_and_lists_each_restore(tmp_path):
    """A restore leaves the stored teacher run as first trained (its curve, timings, commit)
    and appends itself to the manifest's ``restores``, with the digest of the weights the
    students then name; a second fresh clone appends a second record."""
    store, b, tcfg, ckpt, _ = stored_teacher_without_weights(tmp_path)
    run = tmp_path / "runs" / tcfg.run_id
    stored = {p.name: p.read_bytes() for p in run.iterdir()}
    made = store.manifest(tcfg.run_id)
    run_experiment(b, store=store)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != "manifest.json"} == {
        n: v for n, v in stored.items() if n != "manifest.json"}
    kept = store.manifest(tcfg.run_id)
    restores = kept.pop("restores")
    assert kept == made  # the first training's record, untouched
    assert len(restores) == 1
    assert restores[0]["weights_sha256"] == file_digest(ckpt)
    assert restores[0]["weights_sha256"] == store.manifest(b.run_id)["teacher_checkpoint_sha256"]
    assert restores[0]["epochs_run"] == made["epochs_run"]
    assert {"git", "device_name", "started_at", "seconds_per_epoch", "allocator"} <= restores[0].keys()
    ckpt.unlink()  # the next fresh clone
    run_experiment(student("de", lmbda_de=0.5), store=store)
    assert [r["weights_sha256"] for r in store.manifest(tcfg.run_id)["restores"]] == [
        file_digest(ckpt)] * 2


@pytest.mark.parametrize("stored_flushed", [False, True])
def test_teacher_retrains_with_the_stored_runs_denormal_setting(tmp_path, monkeypatch,
                                                                 stored_flushed):
    """A student run started with --flush-denormal retrains a missing teacher as the stored
    teacher was made (with or without flushing), then trains the student flushed."""
    import torch

    from rdlib import env

    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals")
    torch.set_flush_denormal(False)
    store, b, tcfg, ckpt, before = stored_teacher_without_weights(tmp_path)
    path = tmp_path / "runs" / tcfg.run_id / "manifest.json"
    made = json.loads(path.read_text())
    assert made["determinism"]["flush_denormal"] is False  # the fixture's teacher did not flush
    made["determinism"]["flush_denormal"] = stored_flushed
    path.write_text(json.dumps(made))
    seen = count_fits(monkeypatch, lambda cfg: (cfg.run_id, env.flush_denormal_enabled()))
    torch.set_flush_denormal(True)  # as `rdlib run derrd --flush-denormal` does
    try:
        run_experiment(b, store=store)
        assert env.flush_denormal_enabled()  # the student process flushes again afterwards
    finally:
        torch.set_flush_denormal(False)
    assert seen == [(tcfg.run_id, stored_flushed), (b.run_id, True)]
    assert ckpt.read_bytes() == before  # tiny weights: no denormals, so the same either way


def test_retrain_that_does_not_repeat_the_stored_teacher_is_undone(tmp_path, monkeypatch):
    """A stored teacher made on another CPU whose kernels round differently (simulated by
    nudging its stored numbers): the retrain here differs, so it is undone and the student
    refused, then refused at once on the next call instead of retraining for hours again."""
    store, b, tcfg, ckpt, _ = stored_teacher_without_weights(tmp_path)
    run = tmp_path / "runs" / tcfg.run_id
    rows = store.metrics(tcfg.run_id)
    rows.loc[(rows["split"] == "test") & (rows["metric"] == "hr"), "value"] += 0.01
    rows.to_csv(run / "metrics.csv", index=False)
    stored = {p.name: p.read_bytes() for p in run.iterdir()}
    calls = count_fits(monkeypatch)
    with pytest.raises(distill.TeacherUnavailable,
                       match=r"does not repeat the stored run .*stored test HR@5 .* retrained"):
        run_experiment(b, store=store)
    assert calls == [tcfg.run_id]  # the teacher retrained, the student never started
    assert {p.name: p.read_bytes() for p in run.iterdir()} == stored  # stored run written back
    assert not ckpt.exists()  # no student can load the unmatched weights
    assert (ckpt.parent / f"{tcfg.run_id}.unmatched.best.pt").is_file()
    assert not store.has(b.run_id)
    with pytest.raises(distill.TeacherUnavailable, match=r"did not repeat.*delete it to try"):
        run_experiment(b, store=store)
    assert calls == [tcfg.run_id]  # refused without a second retrain


def test_student_manifest_names_its_teacher_weights(tmp_path):
    store = ResultStore(tmp_path)
    cfg = student("rd")
    run_experiment(cfg, store=store)
    ckpt = distill.teacher_checkpoint_path(store, distill.teacher_config(cfg))
    assert store.manifest(cfg.run_id)["teacher_checkpoint_sha256"] == file_digest(ckpt)


def test_interrupted_teacher_retrain_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A session cut off while a missing teacher is retrained: the next one continues it."""
    store, b, tcfg, best, before = stored_teacher_without_weights(tmp_path)
    real = ex.fit

    def cut_off(model, train, n_items, cfg, *args, **kw):  # one epoch checkpointed, then killed
        real(model, train, n_items, replace(cfg, epochs=1), *args, **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(ex, "fit", cut_off)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(b, store=store)
    assert (tmp_path / "checkpoints" / f"{tcfg.run_id}.pt").is_file()
    monkeypatch.setattr(ex, "fit", real)
    run_experiment(b, store=store)
    # not started over (the restore's record says so; the stored run itself was not resumed)
    assert store.manifest(tcfg.run_id)["restores"][-1]["resumed_from_epoch"] == 1
    assert best.read_bytes() == before  # and the resumed retrain has the same weights


def test_teacher_made_on_another_device_is_not_retrained(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    a, b = student("de"), student("de", lmbda_de=0.1)
    tcfg = distill.teacher_config(a)
    run_experiment(a, store=store)
    path = tmp_path / "runs" / tcfg.run_id / "manifest.json"
    made = json.loads(path.read_text())
    path.write_text(json.dumps({**made, "device": "cuda", "device_name": "NVIDIA H100"}))
    distill.teacher_checkpoint_path(store, tcfg).unlink()  # its weights stayed on the GPU
    calls = count_fits(monkeypatch)
    with pytest.raises(RuntimeError, match=r"trained on cuda \(NVIDIA H100\).*"
                                           r"run this student on cuda"):
        run_experiment(b, store=store)
    assert calls == [] and json.loads(path.read_text())["device"] == "cuda"  # nothing replaced


def test_unknown_method_is_named(tmp_path):
    cfg = RunConfig(**BASE, method="kd-magic", extra={"teacher": TEACHER})
    with pytest.raises(ValueError, match="unknown method 'kd-magic'.*'de-rrd'"):
        run_experiment(cfg, store=ResultStore(tmp_path))


def test_unknown_option_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown option.*'lmbda'.*allowed.*'lmbda_de'"):
        run_experiment(student("de", lmbda=0.1), store=ResultStore(tmp_path))
    # RRD options are not DE's
    with pytest.raises(ValueError, match=r"'top_n'.*method 'de'"):
        distill.validate(student("de", top_n=10))
    with pytest.raises(ValueError, match="needs extra\\['teacher'\\]"):
        distill.validate(RunConfig(**BASE, method="rrd"))
    with pytest.raises(ValueError, match="teacher method must be 'none'"):
        distill.teacher_config(RunConfig(**BASE, method="de",
                                         extra={"teacher": {"method": "de"}}))
    assert not any(tmp_path.iterdir())  # nothing ran


def test_run_ids_differ_between_methods_and_options():
    ids = {student(m).run_id for m in SMALL}
    ids |= {student("de", lmbda_de=0.1).run_id, student("de", n_experts=5).run_id,
            RunConfig(**BASE).run_id}
    assert len(ids) == len(SMALL) + 3
    # a plain run's id does not depend on this module (no new hashed field)
    assert "extra" not in RunConfig(**BASE).hash_dict()


def test_student_numbers_do_not_depend_on_where_the_teacher_came_from(tmp_path):
    cfg = student("de-rrd")
    fresh = ResultStore(tmp_path / "fresh")  # the teacher trained inside the student's call
    run_experiment(cfg, store=fresh)
    warm = ResultStore(tmp_path / "warm")  # the teacher already stored
    run_experiment(distill.teacher_config(cfg), store=warm)
    run_experiment(cfg, store=warm)
    assert fresh.metrics(cfg.run_id)["value"].tolist() == warm.metrics(cfg.run_id)["value"].tolist()
