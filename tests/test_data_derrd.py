"""The DE-RRD pickle -> TSV conversion (``rdlib.data.derrd``) and its download hook.

Tiny pickles are made here with ``pickle.dumps`` of small dicts; a registry naming them is
written into ``tmp_path`` (selected through ``RDLIB_REGISTRY``) and a fake ``fetch`` serves
them, so nothing outside ``tmp_path`` is read or written and no network is used. Malicious
pickles are only ever *created* (``pickle.dumps`` of an object whose ``__reduce__`` names
``os.system``, or hand-written opcodes), and ``os.system`` is replaced by a recorder while they
are loaded, so the tests prove nothing runs without ever running anything.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import pickletools
import sys
from pathlib import Path

import pytest

from rdlib.data import (
    DataError,
    get_spec,
    load_dataset,
    mirror,
    read_split_tsv,
    resolve_dataset_dir,
)
from rdlib.data.derrd import convert_derrd_pickles, load_pickle_restricted, read_pairs, read_train

NAME = "tiny-derrd"
URL = "https://example.invalid/derrd/"
SOURCES = ("train_mat_0", "valid_sample_0", "test_sample_0")
PARTS = ("train", "valid", "test")
# deliberately unsorted dicts: the TSVs must come out sorted by user, then item
TRAIN = {1: {2: 1, 0: 1}, 0: {3: 1}}
VALID = {1: 3, 0: 0}
TEST = {0: 1, 1: 1}
EXPECTED_TSV = {
    "train": "user_id\titem_id\n0\t3\n1\t0\n1\t2\n",
    "valid": "user_id\titem_id\n0\t0\n1\t3\n",
    "test": "user_id\titem_id\n0\t1\n1\t1\n",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _good_pickles() -> dict[str, bytes]:
    objs = zip(SOURCES, (TRAIN, VALID, TEST), strict=True)
    return {s: pickle.dumps(obj, protocol=3) for s, obj in objs}


def _write_registry(path: Path, pickles: dict[str, bytes]) -> None:
    lines = ["datasets:", f"  {NAME}:", "    format: split_tsv", "    split_dir: derrd",
             "    files:"]
    for part in PARTS:
        data = EXPECTED_TSV[part].encode()
        lines += [f"      - path: derrd/{part}.tsv", f"        sha256: {_sha(data)}",
                  f"        bytes: {len(data)}"]
    lines += ["    derive: derrd_pickles", "    sources:"]
    for s in SOURCES:
        lines += [f"      - path: original_derrd/{s}", f"        sha256: {_sha(pickles[s])}",
                  f"        bytes: {len(pickles[s])}", f"        urls: [{URL}{s}]"]
    lines += ["    expected: {n_users: 2, n_items: 4, n_interactions: 7}"]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def env(monkeypatch, isolated_mirror):
    """Empty shared mirror and download cache in ``tmp_path``; ``setup(pickles, served)``
    registers ``pickles`` and makes the fake fetch serve ``served`` (default: the same)."""
    tmp_path = isolated_mirror["tmp"]
    log: list[str] = []

    def setup(pickles: dict[str, bytes], served: dict[str, bytes] | None = None) -> list[str]:
        registry = tmp_path / "registry.yaml"
        _write_registry(registry, pickles)
        monkeypatch.setenv("RDLIB_REGISTRY", str(registry))
        served = pickles if served is None else served

        def fetch(url: str, dest: Path) -> None:
            log.append(url)
            dest.write_bytes(served[url.removeprefix(URL)])
        monkeypatch.setattr(mirror, "fetch", fetch)
        return log

    return {"setup": setup, **isolated_mirror}


@pytest.fixture
def no_system(monkeypatch):
    """Replace ``os.system`` (alias of ``posix.system``, the name pickle records) by a recorder:
    any call would show up in the returned list."""
    calls: list[object] = []
    for module in {os, sys.modules[os.name]}:
        monkeypatch.setattr(module, "system", lambda *a: calls.append(a))
    return calls


class _Evil:
    """``pickle.dumps`` of this emits a global reference to ``os.system`` (only when loaded
    with an ordinary unpickler would it be called; dumping calls nothing)."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


# built at import, before any test replaces os.system (pickle records it as posix.system)
EVIL = {
    # hand-written protocol-0 opcodes: GLOBAL 'os system', MARK, STRING, TUPLE, REDUCE, STOP
    "global_opcode": b"cos\nsystem\n(S'echo pwned'\ntR.",
    "protocol3_global": pickle.dumps(_Evil(), protocol=3),
    "protocol4_stack_global": pickle.dumps(_Evil(), protocol=4),
    "nested_in_train_dict": pickle.dumps({0: {1: _Evil()}}, protocol=3),
}


# --------------------------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------------------------

def test_convert_writes_sorted_tsvs(tmp_path):
    srcs = []
    for s, data in _good_pickles().items():
        (tmp_path / s).write_bytes(data)
        srcs.append(tmp_path / s)
    outs = [tmp_path / "out" / f"{p}.tsv" for p in PARTS]
    convert_derrd_pickles(srcs, outs)
    for part, out in zip(PARTS, outs, strict=True):
        assert out.read_bytes() == EXPECTED_TSV[part].encode()
    assert not list((tmp_path / "out").glob("*.part"))
    split = read_split_tsv(tmp_path / "out")
    assert (split["n_users"], split["n_items"]) == (2, 4)
    assert split["train"].tolist() == [[0, 3], [1, 0], [1, 2]]


@pytest.mark.parametrize("kind", list(EVIL))
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, no_system, kind):
    ops = {op.name for op, _, _ in pickletools.genops(EVIL[kind])}  # static: runs nothing
    assert ops & {"GLOBAL", "STACK_GLOBAL"} and "REDUCE" in ops  # really a call of a global
    path = tmp_path / kind
    path.write_bytes(EVIL[kind])
    with pytest.raises(DataError) as err:
        load_pickle_restricted(path)
    msg = str(err.value)
    assert str(path) in msg and f"{os.name if kind != 'global_opcode' else 'os'}.system" in msg
    assert "refused" in msg
    with pytest.raises(DataError, match="refused"):
        read_train(path)
    assert no_system == []


@pytest.mark.parametrize(("reader", "obj", "found"), [
    (read_train, [(0, 1)], "a list"),
    (read_train, {0: [1, 2]}, "a list for user 0"),
    (read_train, {"0": {1: 1}}, "user key '0'"),
    (read_train, {True: {1: 1}}, "user key True"),
    (read_train, {0: {1: "1"}}, "entry 1: '1'"),
    (read_train, {0: {-1: 1}}, "entry -1: 1"),
    (read_pairs, {0: {1: 1}}, "entry 0: {1: 1}"),
    (read_pairs, {0: 1.0}, "entry 0: 1.0"),
    (read_pairs, (5220, 25182), "a tuple"),  # the 'counts' file is not a split
])
def test_wrong_structure_is_a_data_error(tmp_path, reader, obj, found):
    path = tmp_path / "bad_pickle"
    path.write_bytes(pickle.dumps(obj, protocol=3))
    with pytest.raises(DataError) as err:
        reader(path)
    msg = str(err.value)
    assert str(path) in msg and "expected dict[int user]" in msg and found in msg


def test_corrupt_pickle_is_a_data_error(tmp_path):
    path = tmp_path / "truncated"
    path.write_bytes(pickle.dumps(TRAIN, protocol=3)[:-5])
    with pytest.raises(DataError, match=f"{path}: not a readable pickle"):
        read_train(path)


# --------------------------------------------------------------------------------------------
# download hook (registry 'derive: derrd_pickles' + sources)
# --------------------------------------------------------------------------------------------

def test_download_fetches_pickles_and_writes_tsvs(env):
    log = env["setup"](_good_pickles())
    folder = resolve_dataset_dir(NAME)
    assert folder == env["cache"] / NAME
    assert log == [URL + s for s in SOURCES]
    for part in PARTS:
        assert (folder / "derrd" / f"{part}.tsv").read_bytes() == EXPECTED_TSV[part].encode()
    for s, data in _good_pickles().items():
        assert (folder / "original_derrd" / s).read_bytes() == data
    assert not list(folder.rglob("*.part"))
    inter = load_dataset(NAME)
    assert (inter.n_users, inter.n_items, len(inter)) == (2, 4, 7)
    assert len(log) == 3  # the second resolution finds the TSVs, no new fetch


def test_tsvs_rederived_from_cached_pickles(env):
    log = env["setup"](_good_pickles())
    folder = resolve_dataset_dir(NAME)
    (folder / "derrd" / "valid.tsv").unlink()
    assert resolve_dataset_dir(NAME) == folder
    assert (folder / "derrd" / "valid.tsv").read_bytes() == EXPECTED_TSV["valid"].encode()
    assert len(log) == 3  # the verified pickles were reused


def test_download_checksum_mismatch(env):
    pickles = _good_pickles()
    served = {**pickles, "valid_sample_0": pickle.dumps({0: 2, 1: 3}, protocol=3)}
    env["setup"](pickles, served)
    with pytest.raises(DataError) as err:
        resolve_dataset_dir(NAME)
    msg = str(err.value)
    assert "sha256 mismatch" in msg and URL + "valid_sample_0" in msg
    assert _sha(pickles["valid_sample_0"]) in msg
    folder = env["cache"] / NAME
    assert not (folder / "original_derrd" / "valid_sample_0").exists()
    assert not (folder / "derrd").exists()


def test_download_of_malicious_pickle_runs_nothing(env, no_system):
    # even a pickle that matches its registered checksum is loaded without globals
    pickles = {**_good_pickles(), "test_sample_0": EVIL["protocol3_global"]}
    env["setup"](pickles)
    refused = r"test_sample_0: pickle references the global \w+\.system; refused"
    with pytest.raises(DataError, match=refused):
        resolve_dataset_dir(NAME)
    assert no_system == []
    assert not (env["cache"] / NAME / "derrd").exists()  # nothing written before all 3 are read


def test_download_of_wrong_structure_writes_nothing(env):
    pickles = {**_good_pickles(), "train_mat_0": pickle.dumps({0: [1, 2]}, protocol=3)}
    env["setup"](pickles)
    with pytest.raises(DataError, match=r"train_mat_0: expected dict\[int user\]"):
        resolve_dataset_dir(NAME)
    assert not (env["cache"] / NAME / "derrd").exists()


def test_registry_rejects_bad_derive(env, tmp_path):
    env["setup"](_good_pickles())
    path = Path(os.environ["RDLIB_REGISTRY"])
    text = path.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("derive: derrd_pickles", "derive: run_anything"))
    from rdlib.data.registry import load_registry
    with pytest.raises(DataError, match="unknown derive 'run_anything'"):
        load_registry(bad)
    bad2 = tmp_path / "bad2.yaml"
    bad2.write_text(text.replace("    derive: derrd_pickles\n", ""))
    with pytest.raises(DataError, match="'derive' and 'sources' must be given together"):
        load_registry(bad2)


# --------------------------------------------------------------------------------------------
# the project registry and the real pickles (skipped without the shared mirror)
# --------------------------------------------------------------------------------------------

def test_project_registry_derives_the_derrd_split(monkeypatch):
    monkeypatch.delenv("RDLIB_REGISTRY", raising=False)
    spec = get_spec("citeulike-t-derrd-loo")
    assert spec.derive == "derrd_pickles"
    base = ("https://raw.githubusercontent.com/SeongKu-Kang/DE-RRD_CIKM20/"
            "97b6bf6fa70caecb26f22b539763f476a1843949/Dataset/citeULike/LOO/")
    assert [s.urls for s in spec.sources] == [(base + s,) for s in SOURCES]
    assert [s.path for s in spec.sources] == [f"original_derrd/{s}" for s in SOURCES]
    assert [f.path for f in spec.files] == [f"derrd/{p}.tsv" for p in PARTS]


REAL = mirror.shared_data_dir() / "citeulike-t-derrd-loo"


@pytest.mark.skipif(not (REAL / "original_derrd").is_dir(), reason="shared data mirror absent")
def test_real_pickles_convert_to_the_mirror_tsvs_byte_for_byte(monkeypatch, tmp_path):
    monkeypatch.delenv("RDLIB_REGISTRY", raising=False)
    spec = get_spec("citeulike-t-derrd-loo")
    for s in spec.sources:
        assert mirror.sha256_file(REAL / s.path) == s.sha256
    outs = [tmp_path / f.path for f in spec.files]
    convert_derrd_pickles([REAL / s.path for s in spec.sources], outs)
    for f, out in zip(spec.files, outs, strict=True):
        assert out.read_bytes() == (REAL / f.path).read_bytes(), f.path
        assert (mirror.sha256_file(out), out.stat().st_size) == (f.sha256, f.bytes)
    split = read_split_tsv(tmp_path / "derrd")
    assert (len(split["train"]), len(split["valid"]), len(split["test"])) == (115142, 5219, 5219)


@pytest.mark.skipif(not (REAL / "original_derrd").is_dir(), reason="shared data mirror absent")
def test_real_dataset_downloads_without_the_mirror(monkeypatch, tmp_path):
    """The project registry entry end to end: no data root has the TSVs, the fake fetch serves
    the mirror's copies of the pickles by URL, and the derived files pass verification."""
    monkeypatch.delenv("RDLIB_REGISTRY", raising=False)
    monkeypatch.delenv(mirror.ENV_VAR, raising=False)
    monkeypatch.setattr(mirror, "shared_data_dir", lambda: tmp_path / "no-mirror")
    monkeypatch.setattr(mirror, "download_root", lambda: tmp_path / "cache")
    monkeypatch.setattr(mirror, "_verified", {})
    log: list[str] = []

    def fetch(url: str, dest: Path) -> None:
        log.append(url)
        dest.write_bytes((REAL / "original_derrd" / url.rsplit("/", 1)[1]).read_bytes())
    monkeypatch.setattr(mirror, "fetch", fetch)
    folder = resolve_dataset_dir("citeulike-t-derrd-loo")
    assert folder == tmp_path / "cache" / "citeulike-t-derrd-loo"
    assert log == [u for s in get_spec("citeulike-t-derrd-loo").sources for u in s.urls]
    for part in PARTS:
        rel = f"derrd/{part}.tsv"
        assert (folder / rel).read_bytes() == (REAL / rel).read_bytes()
