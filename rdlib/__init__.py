"""rdlib: a re-executable reproducibility study of knowledge distillation for recommenders.

The library holds everything the notebooks call: data readers and registry (:mod:`rdlib.data`),
evaluation protocols (:mod:`rdlib.protocols`), metrics (:mod:`rdlib.metrics`,
:mod:`rdlib.evaluate`), models (:mod:`rdlib.models`), training (:mod:`rdlib.training`), the results
store (:mod:`rdlib.results`) and the report helpers that draw the book's tables and figures
(:mod:`rdlib.reports`).
"""

from rdlib.paths import repo_root

__version__ = "0.1.0"
__all__ = ["repo_root", "__version__"]
