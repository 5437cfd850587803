"""RunConfig validation and hashing, and profile loading."""

import pytest

from rdlib import profiles
from rdlib.config import RunConfig


def test_unknown_key_is_named():
    with pytest.raises(ValueError, match="unknown config keys \\['dimm'\\]"):
        RunConfig.from_dict({"dataset": "x", "dimm": 3})


@pytest.mark.parametrize("field,value,match", [
    ("protocol", "loo", "protocol='loo' is unknown"),
    ("selection", "best", "selection='best' is unknown"),
    ("dim", 0, "dim must be a positive integer"),
    ("ks", (5, 0), "ks must be positive"),
    ("selection_metric", "map", "selection_metric='map'"),
    ("device", "tpu", "device='tpu'"),
    ("ndcg_variant", "cut", "ndcg_variant='cut'"),
])
def test_bad_values_give_clear_errors(field, value, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(dataset="x", **{field: value})


def test_hash_ignores_labels_and_device_but_not_settings():
    a = RunConfig(dataset="x", device="cpu", paper="A", role="student", progress=True)
    b = RunConfig(dataset="x", device="cuda", paper="B", role="teacher", progress=False)
    assert a.run_id == b.run_id
    assert RunConfig(dataset="x", seed=1).run_id != a.run_id
    assert RunConfig(dataset="x", lr=2e-3).config_hash != a.config_hash
    assert a.run_id.startswith("x-loo_sampled-bpr20-none-s0-")


def test_round_trip_through_dict():
    cfg = RunConfig(dataset="x", ks=[1, 2], metrics=["hr", "ndcg"])
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


def test_profiles_build_validated_grids():
    cfgs = profiles.grid("derrd_loo_bpr", "full")
    assert [c.seed for c in cfgs] == [0, 1, 2, 3, 4]
    assert cfgs[0].epochs == 1000 and cfgs[0].patience == 20 and cfgs[0].dim == 20
    smoke = profiles.grid("derrd_loo_bpr", "smoke", dim=None, epochs=None)
    assert len(smoke) == 1 and smoke[0].epochs == profiles.SMOKE_OVERRIDES["epochs"]
    assert profiles.grid("derrd_loo_bpr", "smoke", epochs=7)[0].epochs == 7


def test_profile_errors():
    with pytest.raises(ValueError, match="unknown profile 'nope'"):
        profiles.load_profile("nope")
    with pytest.raises(ValueError, match="profile='big' is unknown"):
        profiles.grid("derrd_loo_bpr", "big")
