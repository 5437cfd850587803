"""environment.yml, requirements.txt and pyproject.toml agree (conda cannot be run here)."""

import tomllib

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from rdlib.paths import repo_root

ROOT = repo_root()


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.txt: {line!r} is not pinned with =="
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_environment_yml_delegates_to_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-r requirements.txt", "-e ."]


def test_every_pyproject_requirement_is_pinned_in_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    lock = _lock()
    for spec in reqs:
        r = Requirement(spec)
        name = r.name.lower().replace("_", "-")
        assert name in lock, f"{name} is required by pyproject.toml but not pinned"
        assert Version(lock[name]) in r.specifier, f"{name}=={lock[name]} violates {r.specifier}"


def test_torch_is_the_cpu_wheel_pin():
    assert _lock()["torch"] == "2.13.0"
