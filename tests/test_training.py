"""End-to-end training on a synthetic log: learns, is deterministic, caches, resumes."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from rdlib.config import RunConfig
from rdlib.experiments import load_split, make_evaluator, run_experiment
from rdlib.models import BPRMF, build_model
from rdlib.results import ResultStore, run_lock
from rdlib.training import fit, replay_best_epoch

CFG = dict(dataset="synthetic", protocol="loo_sampled", dim=8, epochs=6, batch_size=256,
           lr=0.01, weight_decay=0.0, eval_every=1, patience=0, n_eval_negatives=50,
           progress=False)


def test_bpr_loss_matches_formula():
    torch.manual_seed(0)
    m = BPRMF(3, 4, 2)
    u, p, n = torch.tensor([0, 2]), torch.tensor([1, 3]), torch.tensor([0, 0])
    su = m.user_emb.weight[u]
    expected = -torch.log(torch.sigmoid((su * m.item_emb.weight[p]).sum(1)
                                        - (su * m.item_emb.weight[n]).sum(1))).sum()
    assert torch.allclose(m.loss(u, p, n), expected, atol=1e-6)
    assert m.n_parameters() == (3 + 4) * 2
    assert m.score_users(u).shape == (2, 4)
    assert torch.allclose(m.score_pairs(u, torch.tensor([[1, 3], [0, 2]])),
                          m.score_users(u).gather(1, torch.tensor([[1, 3], [0, 2]])))


def test_unknown_model_is_named():
    with pytest.raises(ValueError, match="unknown model 'svd'"):
        build_model("svd", 2, 2, 2)


def test_training_learns_and_is_deterministic(tmp_path):
    store = ResultStore(tmp_path)
    cfg = RunConfig(**CFG)
    rid = run_experiment(cfg, store=store)
    rows = store.metrics(rid)
    hr10 = rows[(rows["split"] == "test") & (rows["metric"] == "hr") & (rows["k"] == 10)]["value"]
    assert float(hr10.iloc[0]) > 0.5  # random ranking of 51 candidates gives 10/51 ≈ 0.2
    again = run_experiment(cfg, store=ResultStore(tmp_path / "other"))
    assert again == rid
    assert ResultStore(tmp_path / "other").metrics(rid)["value"].tolist() == rows["value"].tolist()
    m = store.manifest(rid)
    assert m["config_hash"] == cfg.config_hash and m["n_parameters"] > 0
    assert set(m["versions"]) >= {"torch", "numpy", "python"}
    (segment,) = m["segments"]  # one process trained it, over every epoch it ran
    assert (segment["from_epoch"], segment["to_epoch"]) == (0, m["epochs_run"])
    assert segment["git"] == m["git"] and segment["device_name"] == m["device_name"]
    assert segment["determinism"] == m["determinism"]
    assert np.all(store.per_user(rid)["test/hr@10"] <= 1)


def test_finished_run_is_a_cache_hit(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    cfg = RunConfig(**{**CFG, "epochs": 1})
    run_experiment(cfg, store=store)
    import rdlib.experiments as ex
    monkeypatch.setattr(ex, "fit", lambda *a, **k: pytest.fail("a cached run was retrained"))
    assert run_experiment(cfg, store=store) == cfg.run_id


def test_a_run_being_trained_elsewhere_is_not_trained_twice(tmp_path, monkeypatch):
    """A second process that starts a run another one holds fails at once, naming the run, and
    trains nothing (two grids queued on the same cell raced on its checkpoint before)."""
    store = ResultStore(tmp_path)
    cfg = RunConfig(**{**CFG, "epochs": 1})
    import rdlib.experiments as ex
    monkeypatch.setattr(ex, "fit", lambda *a, **k: pytest.fail("a locked run was trained"))
    with run_lock(store.root / "checkpoints" / f"{cfg.run_id}.lock"):
        with pytest.raises(RuntimeError, match=f"{cfg.run_id} is already being trained by pid"):
            run_experiment(cfg, store=store)
    assert not store.has(cfg.run_id)


def test_a_run_finished_while_waiting_for_its_lock_is_a_cache_hit(tmp_path, monkeypatch):
    """The store is checked again under the lock: a run another process finished between the
    first check and the lock is not retrained."""
    store = ResultStore(tmp_path)
    cfg = RunConfig(**{**CFG, "epochs": 1})
    run_experiment(cfg, store=store)
    import rdlib.experiments as ex
    calls = iter([False, True])  # not stored at the first check, stored under the lock
    monkeypatch.setattr(store, "has", lambda run_id: next(calls))
    monkeypatch.setattr(ex, "fit", lambda *a, **k: pytest.fail("a finished run was retrained"))
    assert run_experiment(cfg, store=store) == cfg.run_id


def _curve(values: list[float]) -> pd.DataFrame:
    """A curve with validation HR@10 = ``values`` at epochs 1, 2, ... and test = 2 × valid."""
    return pd.DataFrame([{"epoch": e, "split": split, "metric": "hr", "k": 10,
                          "value": v * (2 if split == "test" else 1)}
                         for e, v in enumerate(values, start=1) for split in ("valid", "test")])


@pytest.mark.parametrize("values, patience, expected", [
    ([0.1, 0.3, 0.3, 0.2, 0.5], 2, 2),  # a tie is no improvement: stops at epoch 4, keeps 2
    ([0.1, 0.3, 0.3, 0.2, 0.5], 3, 5),
    ([0.1, 0.3, 0.3, 0.2, 0.5], 0, 5),  # patience 0 never stops
    ([0.4, 0.1, 0.2], 20, 1),
])
def test_replay_best_epoch_by_hand(values, patience, expected):
    assert replay_best_epoch(_curve(values), "hr", 10, patience) == expected


def test_replay_best_epoch_names_a_missing_metric():
    with pytest.raises(ValueError, match="no validation ndcg@10"):
        replay_best_epoch(_curve([0.1]), "ndcg", 10, 20)


def test_replayed_best_epoch_is_what_a_best_epoch_run_reports(tmp_path):
    """A per-cutoff run's curve replays the best-epoch run of the same seed exactly, although
    the two runs stop at different epochs."""
    store = ResultStore(tmp_path)
    cfg = RunConfig(**{**CFG, "epochs": 40, "patience": 3})
    per_cutoff = run_experiment(cfg, store=store)
    best = run_experiment(replace(cfg, selection="best_epoch"), store=store)
    # the premise: the rules stop the same trajectory at different epochs
    assert store.manifest(best)["epochs_run"] < store.manifest(per_cutoff)["epochs_run"]
    curve = store.curve(per_cutoff)
    epoch = replay_best_epoch(curve, "hr", 10, 3)
    assert epoch == store.manifest(best)["selected_epochs"]["hr@10"]
    replayed = curve[(curve["split"] == "test") & (curve["epoch"] == epoch)]
    reported = store.metrics(best)
    reported = reported[reported["split"] == "test"]
    assert len(replayed) == len(reported) == 9
    merged = replayed.merge(reported, on=["metric", "k"], suffixes=("_replay", "_run"))
    assert np.allclose(merged["value_replay"], merged["value_run"], atol=1e-6)


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    cfg = RunConfig(**{**CFG, "epochs": 4})
    split = load_split("synthetic", "loo_sampled", 0, 50)
    evaluate = make_evaluator(split, cfg)

    def train(epochs, ckpt):
        torch.manual_seed(cfg.seed)
        model = BPRMF(split.n_users, split.n_items, cfg.dim)
        run_cfg = RunConfig(**{**CFG, "epochs": 4})
        if epochs < 4:  # stop early by pretending the run ends at `epochs`, keep the checkpoint
            run_cfg = RunConfig(**{**CFG, "epochs": epochs})
        out = fit(model, split.train, split.n_items, run_cfg, evaluate, checkpoint=ckpt,
                  checkpoint_every=0.0)
        return out, model

    full, m_full = train(4, None)
    ckpt = tmp_path / "ck.pt"
    train(2, ckpt)  # "interrupted" after 2 epochs
    resumed, m_res = train(4, ckpt)
    assert resumed.epochs_run == 4
    assert resumed.resumed_from_epoch == 2 and full.resumed_from_epoch is None
    for a, b in zip(m_full.state_dict().values(), m_res.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    assert full.selected.keys() == resumed.selected.keys()


def test_a_resumed_run_lists_each_process_that_trained_it(tmp_path):
    split = load_split("synthetic", "loo_sampled", 0, 50)
    ckpt = tmp_path / "ck.pt"

    def train(epochs, process, checkpoint=ckpt):
        cfg = RunConfig(**{**CFG, "epochs": epochs})  # stops "early" at `epochs`
        torch.manual_seed(cfg.seed)
        return fit(BPRMF(split.n_users, split.n_items, cfg.dim), split.train, split.n_items,
                   cfg, make_evaluator(split, cfg), checkpoint=checkpoint,
                   checkpoint_every=0.0, process=process)

    train(2, {"threads": 2, "flush": False})
    train(3, {"threads": 1, "flush": True})
    out = train(4, {"threads": 1, "flush": False})
    assert out.segments == [{"threads": 2, "flush": False, "from_epoch": 0, "to_epoch": 2},
                            {"threads": 1, "flush": True, "from_epoch": 2, "to_epoch": 3},
                            {"threads": 1, "flush": False, "from_epoch": 3, "to_epoch": 4}]
    alone = train(2, {"threads": 2}, checkpoint=None)  # one process: one segment
    assert alone.segments == [{"threads": 2, "from_epoch": 0, "to_epoch": 2}]
    old = torch.load(ckpt, weights_only=False)  # a checkpoint from before segments were kept
    del old["segments"]
    torch.save(old, ckpt)
    assert train(5, {"threads": 1}).segments == [
        {"from_epoch": 0, "to_epoch": 4, "recorded": False},
        {"threads": 1, "from_epoch": 4, "to_epoch": 5}]


def test_checkpoint_survives_a_kill_while_it_is_written(tmp_path, monkeypatch):
    """A run killed in the middle of writing its checkpoint leaves the previous one whole."""
    cfg = RunConfig(**{**CFG, "epochs": 3})
    split = load_split("synthetic", "loo_sampled", 0, 50)
    evaluate = make_evaluator(split, cfg)  # checkpoints are written after evaluations
    ckpt = tmp_path / "ck.pt"
    torch.manual_seed(cfg.seed)
    fit(BPRMF(split.n_users, split.n_items, cfg.dim), split.train, split.n_items,
        RunConfig(**{**CFG, "epochs": 2}), evaluate, checkpoint=ckpt, checkpoint_every=0.0)
    saved = torch.load(ckpt, weights_only=False)

    def killed_mid_write(obj, path):  # half a file, then the process dies
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 truncated")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed_mid_write)
    torch.manual_seed(cfg.seed)
    with pytest.raises(KeyboardInterrupt):
        fit(BPRMF(split.n_users, split.n_items, cfg.dim), split.train, split.n_items, cfg,
            evaluate, checkpoint=ckpt, checkpoint_every=0.0)
    monkeypatch.undo()
    kept = torch.load(ckpt, weights_only=False)  # still the epoch-2 checkpoint, loadable
    assert kept["epoch"] == saved["epoch"] == 2
    assert torch.equal(kept["model"]["item_emb.weight"], saved["model"]["item_emb.weight"])


def test_distiller_loss_and_parameters_are_trained():
    from rdlib.training import Distiller

    class PullToZero(Distiller):
        """A toy distillation term with its own parameter: pulls a scalar and scores to 0."""

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor(5.0))
            self.epochs_seen = []

        def start_epoch(self, epoch, student):
            self.epochs_seen.append(epoch)

        def loss(self, student, users, pos, neg, epoch):
            return self.w ** 2 + student.score_pairs(users, pos[:, None]).pow(2).sum()

    cfg = RunConfig(**{**CFG, "epochs": 3, "lr": 0.1})
    split = load_split("synthetic", "loo_sampled", 0, 50)
    torch.manual_seed(0)
    d = PullToZero()
    fit(BPRMF(split.n_users, split.n_items, 4), split.train, split.n_items, cfg, None, distiller=d)
    assert d.epochs_seen == [0, 1, 2]
    assert abs(d.w.item()) < 5.0  # its parameter was in the optimiser


def test_resumed_distillation_draws_what_an_uninterrupted_run_draws(tmp_path):
    """DE's Gumbel noise comes from its own generator, saved in the checkpoint: a run stopped
    after 2 epochs and resumed ends with the weights of an uninterrupted 4-epoch run."""
    from rdlib.kd.de import DistillationExperts

    split = load_split("synthetic", "loo_sampled", 0, 50)
    evaluate = make_evaluator(split, RunConfig(**CFG))
    t_user = torch.randn(split.n_users, 16, generator=torch.Generator().manual_seed(1))
    t_item = torch.randn(split.n_items, 16, generator=torch.Generator().manual_seed(2))

    def train(epochs, ckpt):
        torch.manual_seed(0)
        model = BPRMF(split.n_users, split.n_items, CFG["dim"])
        de = DistillationExperts(t_user, t_item, CFG["dim"], n_experts=4, seed=3)
        out = fit(model, split.train, split.n_items, RunConfig(**{**CFG, "epochs": epochs}),
                  evaluate, distiller=de, checkpoint=ckpt, checkpoint_every=0.0)
        return out, model, de

    _, m_full, de_full = train(4, None)
    ckpt = tmp_path / "ck.pt"
    _, _, de_cut = train(2, ckpt)
    state = torch.load(ckpt, weights_only=False)["distiller"]
    assert torch.equal(state["_extra_state"]["generator"], de_cut._gen.get_state())
    resumed, m_res, de_res = train(4, ckpt)
    assert resumed.resumed_from_epoch == 2
    assert torch.equal(de_res._gen.get_state(), de_full._gen.get_state())
    for a, b in zip(m_full.state_dict().values(), m_res.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_checkpoint_without_generator_state_still_loads(tmp_path):
    """Checkpoints written before generators were saved have no ``_extra_state``: ``fit``
    resumes from them (the stream restarts from the seed); a key that does not fit the
    distiller still fails, naming the key."""
    from rdlib.kd.de import DistillationExperts

    split = load_split("synthetic", "loo_sampled", 0, 50)
    evaluate = make_evaluator(split, RunConfig(**CFG))
    t_user, t_item = torch.randn(split.n_users, 16), torch.randn(split.n_items, 16)

    def train(epochs, ckpt):
        de = DistillationExperts(t_user, t_item, CFG["dim"], n_experts=2)
        return fit(BPRMF(split.n_users, split.n_items, CFG["dim"]), split.train, split.n_items,
                   RunConfig(**{**CFG, "epochs": epochs}), evaluate, distiller=de,
                   checkpoint=ckpt, checkpoint_every=0.0)

    ckpt = tmp_path / "ck.pt"
    train(2, ckpt)
    state = torch.load(ckpt, weights_only=False)
    state["distiller"] = {k: v for k, v in state["distiller"].items()
                          if not k.endswith("_extra_state")}  # as an old checkpoint
    torch.save(state, ckpt)
    assert train(3, ckpt).resumed_from_epoch == 2
    state = torch.load(ckpt, weights_only=False)
    state["distiller"]["user_experts.w3"] = torch.zeros(1)
    torch.save(state, ckpt)
    with pytest.raises(RuntimeError, match="user_experts.w3"):
        train(4, ckpt)


def test_notebooks_refuse_to_train_on_uncommitted_code_but_find_stored_runs(tmp_path,
                                                                           monkeypatch):
    """check_committed_before_training, the notebooks' guard: only a run that would train is
    refused on a dirty tree; a page whose runs are all stored re-executes (cache hits)."""
    from rdlib import env
    from rdlib.experiments import check_committed_before_training

    store = ResultStore(tmp_path)
    cfgs = [RunConfig(**CFG, seed=s) for s in (0, 1)]
    run_experiment(cfgs[0], store=store)
    monkeypatch.delenv("RDLIB_RECOMPUTE", raising=False)
    monkeypatch.setattr(env, "code_git_state", lambda: {"commit": "d" * 40, "dirty": True})
    monkeypatch.setattr(env, "code_changes", lambda: ["rdlib/training.py"])
    check_committed_before_training(cfgs[:1], store)  # stored: nothing would train
    with pytest.raises(env.UncommittedCode, match=r"\(rdlib/training.py\).*-p allow_dirty True"):
        check_committed_before_training(cfgs, store)  # seed 1 would train
    monkeypatch.setenv("RDLIB_RECOMPUTE", "1")  # every run would train again
    with pytest.raises(env.UncommittedCode):
        check_committed_before_training(cfgs[:1], store)
    check_committed_before_training(cfgs, store, allow_dirty=True)  # the reader's override
    check_committed_before_training(cfgs, store, profile="smoke")  # checks, not results
    monkeypatch.setattr(env, "code_git_state", lambda: {"commit": "d" * 40, "dirty": False})
    check_committed_before_training(cfgs, store)  # committed code trains
