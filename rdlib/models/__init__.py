"""Recommender models. Each module names its paper, the official code it follows and its deviations."""

import inspect

from rdlib.models.base import Recommender
from rdlib.models.bpr import BPRMF
from rdlib.models.neumf import NeuMF

MODELS: dict[str, type[Recommender]] = {"bpr": BPRMF, "neumf": NeuMF}


def build_model(name: str, n_users: int, n_items: int, dim: int, **kwargs) -> Recommender:
    """Instantiate a registered model by name (``bpr``, ``neumf``) with its constructor options
    ``kwargs`` (``RunConfig.model_options``); unknown names or options raise a clear error."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None
    params = inspect.signature(cls.__init__).parameters
    allowed = [p for p in params if p not in ("self", "n_users", "n_items", "dim")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"unknown options {unknown} for model {name!r}; its options: {allowed}")
    return cls(n_users, n_items, dim, **kwargs)


__all__ = ["BPRMF", "MODELS", "Recommender", "build_model"]
