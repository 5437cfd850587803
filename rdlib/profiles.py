"""Experiment profiles: paper settings in YAML (``notebooks/profiles/*.yaml``, every value with
its source) and the *smoke* profile that shrinks any of them to seconds on a CPU.

Notebooks call :func:`grid` with their papermill parameters; it returns validated
:class:`~rdlib.config.RunConfig` objects, so a mistyped parameter fails before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from rdlib.config import RunConfig
from rdlib.paths import repo_root

PROFILES = ("smoke", "full")
# What "smoke" changes: a few epochs, one seed, evaluation every epoch, no early stop.
SMOKE_OVERRIDES = {"epochs": 2, "eval_every": 1, "patience": 0}
DEFAULT_SEEDS = {"smoke": [0], "full": [0, 1, 2, 3, 4]}


def profile_path(name: str) -> Path:
    return repo_root() / "notebooks" / "profiles" / f"{name}.yaml"


def load_profile(name: str) -> dict:
    """The YAML profile ``name`` as a dict; an unknown name lists the known ones."""
    path = profile_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"unknown profile {name!r} ({path.name} not found); known: {known}")
    values = yaml.safe_load(path.read_text())
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    return values


def grid(name: str, profile: str = "smoke", seeds: list[int] | None = None,
         **overrides) -> list[RunConfig]:
    """One config per seed for profile ``name``, shrunk to smoke scale when ``profile='smoke'``.

    ``overrides`` whose value is ``None`` are ignored, so notebook parameters left at ``None``
    keep the profile's value. A profile may list its full-profile ``seeds``.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is unknown; choose one of {PROFILES}")
    base = load_profile(name)
    full_seeds = base.pop("seeds", DEFAULT_SEEDS["full"])
    if profile == "smoke":
        base.update(SMOKE_OVERRIDES)
    base.update({k: v for k, v in overrides.items() if v is not None})
    if seeds is None:
        seeds = DEFAULT_SEEDS["smoke"] if profile == "smoke" else full_seeds
    return [RunConfig.from_dict({**base, "seed": int(s)}) for s in seeds]
