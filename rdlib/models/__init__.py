"""Recommender models. Each module names its paper, the official code it follows and its deviations."""

from rdlib.models.base import Recommender
from rdlib.models.bpr import BPRMF
from rdlib.models.neumf import NeuMF

MODELS: dict[str, type[Recommender]] = {"bpr": BPRMF, "neumf": NeuMF}


def build_model(name: str, n_users: int, n_items: int, dim: int, **kwargs) -> Recommender:
    """Instantiate a registered model by name (``bpr``); unknown names raise a clear error."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None
    return cls(n_users, n_items, dim, **kwargs)


__all__ = ["BPRMF", "MODELS", "Recommender", "build_model"]
