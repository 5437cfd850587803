"""Evaluation protocols: how an interaction log becomes train / validation / test (+ negatives).

One function per paper's protocol, each returning a checked :class:`Split`:

* :func:`loo_sampled`, :func:`loo_from_fixed_split` — DE-RRD leave-one-out with 499 shared
  sampled negatives (methods.md §2.1, §2.5);
* :func:`random_holdout` — HetComp's per-user random 60/20/20, bit-identical to the official
  loader (methods.md §3.1);
* :func:`temporal` (+ :func:`caser_windows`, :func:`last_inputs`) — RD/Caser's per-user time
  split and sliding windows (methods.md §1.1, §1.7).

:func:`check_split` enforces the invariants listed in :mod:`rdlib.protocols.invariants`.
"""

from rdlib.protocols.holdout import random_holdout
from rdlib.protocols.invariants import INVARIANTS, InvariantError, check_split
from rdlib.protocols.loo import loo_from_fixed_split, loo_sampled, sample_negatives
from rdlib.protocols.split import Split
from rdlib.protocols.temporal import caser_windows, last_inputs, temporal, temporal_counts

__all__ = [
    "INVARIANTS",
    "InvariantError",
    "Split",
    "caser_windows",
    "check_split",
    "last_inputs",
    "loo_from_fixed_split",
    "loo_sampled",
    "random_holdout",
    "sample_negatives",
    "temporal",
    "temporal_counts",
]
