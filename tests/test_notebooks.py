"""Source notebooks are clean inputs; executed notebooks in book/ are faithful outputs of them."""

import json
import re
from pathlib import Path

import pytest

from rdlib.book import NOTEBOOKS
from rdlib.paths import repo_root

ROOT = repo_root()
SOURCES = sorted((ROOT / "notebooks").glob("*.ipynb"))
ABSOLUTE = re.compile(r'["\s(](/work/|/tmp/|/root/|/home/|/Users/)')


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _code(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
            and "injected-parameters" not in c["metadata"].get("tags", [])]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_source_notebook_is_clean_and_parameterised(path):
    nb = _load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0]["metadata"].get("tags", []), "first code cell must be 'parameters'"
    for line in "".join(code[0]["source"]).splitlines():
        if line.strip():
            assert "#" in line, f"{path.name}: parameter line without a comment: {line!r}"
    for c in code:
        assert not c.get("outputs") and c.get("execution_count") is None, \
            f"{path.name}: source notebooks are committed without outputs"


def test_every_source_is_built_into_the_book():
    built = {Path(src).name for src, _, _ in NOTEBOOKS}
    assert built == {p.name for p in SOURCES}


@pytest.mark.parametrize("src,dst", [(s, d) for s, d, _ in NOTEBOOKS])
def test_executed_notebook_matches_its_source(src, dst):
    executed = ROOT / dst
    if not executed.is_file():
        pytest.skip(f"{dst} not executed yet")
    nb = _load(executed)
    assert _code(nb) == _code(_load(ROOT / src)), f"{dst} is stale: re-run python -m rdlib.book"
    counts = [c["execution_count"] for c in nb["cells"] if c["cell_type"] == "code"]
    assert counts == sorted(counts) and None not in counts, f"{dst}: out-of-order execution"
    assert not ABSOLUTE.search(executed.read_text()), f"{dst} leaks an absolute machine path"
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, f"{dst} holds an error output"


# By default pandas elides the middle rows of a long table with a row of "..." and cuts a cell's
# text after 50 characters, ending it with "...": a result, device or note the reader cannot see.
ELIDED = re.compile(r"\.\.\.</t[dh]>")


@pytest.mark.parametrize("dst", [d for _, d, _ in NOTEBOOKS])
def test_executed_notebook_shows_every_row_of_its_tables(dst):
    executed = ROOT / dst
    if not executed.is_file():
        pytest.skip(f"{dst} not executed yet")
    cut = [i for i, c in enumerate(_load(executed)["cells"]) if c["cell_type"] == "code"
           for o in c.get("outputs", []) if ELIDED.search("".join(o.get("data", {}).get("text/html", "")))]
    assert not cut, f"{dst}: cells {cut} elide table rows or text; set display.max_rows and " \
        "display.max_colwidth to None"


def _parameter_names(path: Path) -> set[str]:
    cell = next(c for c in _load(path)["cells"] if c["cell_type"] == "code")
    return {re.match(r"(\w+)", line).group(1) for line in "".join(cell["source"]).splitlines()
            if line.strip()}


@pytest.mark.parametrize("params", sorted((ROOT / "notebooks" / "params").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_papermill_parameter_files_name_real_parameters(params):
    import yaml

    notebook = ROOT / "notebooks" / (params.stem.rsplit("_", 1)[0] + ".ipynb")
    assert notebook.is_file(), f"{params.name} must be named <notebook>_<variant>.yaml"
    unknown = set(yaml.safe_load(params.read_text())) - _parameter_names(notebook)
    assert not unknown, f"{params.name} sets unknown parameters {sorted(unknown)}"
