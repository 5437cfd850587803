"""Registry, mirror resolution / checksums / download (with a fake fetch), load_dataset.

The unit tests use the tiny registry ``tests/fixtures/data/registry.yaml`` (selected through
``RDLIB_REGISTRY``) and hand-made files; the shared mirror and the download cache are replaced by
temporary folders so nothing outside ``tmp_path`` is read or written. The integration tests at
the end load every registered dataset from the real mirror and skip where it is absent.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rdlib.data import (
    DataError,
    apply_preprocessing,
    dataset_stats,
    get_spec,
    list_datasets,
    load_dataset,
    mirror,
    read_split_tsv,
    resolve_dataset_dir,
)
from rdlib.data.registry import SPLIT_TSV, Preprocessing, load_registry
from rdlib.data.types import Interactions

FIX = Path(__file__).parent / "fixtures" / "data"
FIX_MIRROR = FIX / "mirror"
WEB_BYTES = b"0 1 2\n1 2\n"


@pytest.fixture
def tiny(monkeypatch, isolated_mirror):
    """The tiny registry, with empty temporary shared mirror and download cache."""
    monkeypatch.setenv("RDLIB_REGISTRY", str(FIX / "registry.yaml"))
    return isolated_mirror


def _copy_mirror(dest: Path, name: str = "tiny-cite") -> Path:
    shutil.copytree(FIX_MIRROR / name, dest / name)
    return dest


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------

def test_unknown_dataset_lists_known_names(tiny):
    with pytest.raises(DataError, match=r"unknown dataset 'nope'; known datasets: tiny-cite, "
                                        r"tiny-split, tiny-web"):
        get_spec("nope")


def test_fixture_registry_parses(tiny):
    assert list_datasets() == ["tiny-cite", "tiny-split", "tiny-web"]
    spec = get_spec("tiny-cite")
    assert spec.format == "citeulike"
    assert spec.preprocessing == Preprocessing(min_user_interactions=3, filter="one_pass")
    assert (spec.expected.n_users, spec.expected.n_items, spec.expected.n_interactions) == \
        (3, 10, 12)
    assert spec.files[0].bytes == 60
    assert get_spec("tiny-split").split_dir == "loo"


def test_fixture_registry_checksums_match_fixture_files(tiny):
    for name in ("tiny-cite", "tiny-split"):
        spec = get_spec(name)
        for f in spec.files:
            path = FIX_MIRROR / name / f.path
            assert mirror.sha256_file(path) == f.sha256
            assert path.stat().st_size == f.bytes


@pytest.mark.parametrize("entry, message", [
    ("format: parquet", "unknown format 'parquet'"),
    ("colour: red", "unknown key"),
    ("files: []", "at least one file"),
    ("preprocessing: {min_user_interactions: 2.5}", "min_user_interactions must be int"),
    ("preprocessing: {binarize: 1}", "binarize must be bool"),
    ("preprocessing: {filter: sideways}", "filter must be one of"),
])
def test_bad_registry_entries(tmp_path, monkeypatch, entry, message):
    base = {"format": "format: csv", "files": "files: [{path: a, sha256: '" + "0" * 64
            + "', bytes: 1}]", "expected": "expected: {n_users: 1, n_items: 1, n_interactions: 1}"}
    key = entry.split(":")[0]
    base[key] = entry
    text = "datasets:\n  x:\n" + "".join(f"    {v}\n" for v in base.values())
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    monkeypatch.setenv("RDLIB_REGISTRY", str(path))
    with pytest.raises(DataError, match=re.escape(message)):
        list_datasets()


def test_registry_bad_sha_and_bad_yaml(tmp_path, monkeypatch):
    path = tmp_path / "registry.yaml"
    path.write_text("datasets:\n  x:\n    format: csv\n    files: [{path: a, sha256: abc, "
                    "bytes: 1}]\n    expected: {n_users: 1, n_items: 1, n_interactions: 1}\n")
    monkeypatch.setenv("RDLIB_REGISTRY", str(path))
    with pytest.raises(DataError, match="64-hex-digit sha256"):
        list_datasets()
    path2 = tmp_path / "broken.yaml"
    path2.write_text("datasets: [unclosed\n")
    monkeypatch.setenv("RDLIB_REGISTRY", str(path2))
    with pytest.raises(DataError, match="not valid YAML"):
        list_datasets()


REQUIRED = ["citeulike-t", "citeulike-t-derrd-loo", "foursquare-vldb17", "ml-100k",
            "amazon-digital-music-dmf", "gowalla-vldb17-1k-ts", "foursquare-vldb17-5k-ts",
            "amazon-beauty", "gowalla-lightgcn"]


def test_project_registry_has_the_required_datasets(monkeypatch):
    monkeypatch.delenv("RDLIB_REGISTRY", raising=False)
    names = list_datasets()
    assert set(REQUIRED) <= set(names)
    cite = get_spec("citeulike-t")
    assert cite.preprocessing.min_user_interactions == 5
    assert cite.preprocessing.filter == "one_pass"
    assert (cite.expected.n_users, cite.expected.n_items, cite.expected.n_interactions) == \
        (5219, 25181, 125580)
    assert get_spec("citeulike-t-derrd-loo").format == SPLIT_TSV
    for name in names:  # every non-derived file is downloadable from a pinned commit
        spec = get_spec(name)
        for f in (*spec.files, *spec.sources):
            for url in f.urls:
                assert re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/",
                                url), url


def _provenance_table(path: Path) -> dict[str, tuple[int, str]]:
    """``file -> (bytes, sha256)`` from a PROVENANCE.md 'Files' table."""
    rows = re.findall(r"^\| `([^`]+)` \| ([\d,]+) \| `([0-9a-f]{64})` \|$", path.read_text(),
                      flags=re.M)
    return {name: (int(size.replace(",", "")), sha) for name, size, sha in rows}


@pytest.mark.skipif(not mirror.shared_data_dir().is_dir(), reason="shared data mirror absent")
def test_project_registry_matches_provenance(monkeypatch):
    monkeypatch.delenv("RDLIB_REGISTRY", raising=False)
    for name in list_datasets():
        table = _provenance_table(mirror.shared_data_dir() / name / "PROVENANCE.md")
        spec = get_spec(name)
        for f in (*spec.files, *spec.sources):
            assert table[f.path] == (f.bytes, f.sha256), (name, f.path)


# --------------------------------------------------------------------------------------------
# resolution order and checksums
# --------------------------------------------------------------------------------------------

def test_explicit_dir_beats_env_beats_shared(tiny, monkeypatch):
    explicit = _copy_mirror(tiny["tmp"] / "explicit")
    env = _copy_mirror(tiny["tmp"] / "env")
    _copy_mirror(tiny["shared"])
    monkeypatch.setenv(mirror.ENV_VAR, str(env))
    assert resolve_dataset_dir("tiny-cite", explicit) == explicit / "tiny-cite"
    assert resolve_dataset_dir("tiny-cite") == env / "tiny-cite"
    monkeypatch.delenv(mirror.ENV_VAR)
    assert resolve_dataset_dir("tiny-cite") == tiny["shared"] / "tiny-cite"


def test_a_root_without_the_dataset_falls_through(tiny):
    _copy_mirror(tiny["shared"])
    empty = tiny["tmp"] / "empty"
    empty.mkdir()
    assert mirror.locate_dataset("tiny-cite", empty) == ("shared", tiny["shared"] / "tiny-cite")


def test_not_found_without_download(tiny):
    with pytest.raises(DataError, match="dataset .tiny-cite. not found.*library.dat"):
        resolve_dataset_dir("tiny-cite", download=False)


def test_checksum_mismatch_names_file_and_both_hashes(tiny):
    root = _copy_mirror(tiny["tmp"] / "bad")
    target = root / "tiny-cite" / "library.dat"
    target.write_bytes(target.read_bytes().replace(b"10", b"99", 1))
    expected = get_spec("tiny-cite").files[0].sha256
    with pytest.raises(DataError) as err:
        resolve_dataset_dir("tiny-cite", root)
    msg = str(err.value)
    assert str(target) in msg and expected in msg and mirror.sha256_file(target) in msg
    with pytest.raises(DataError, match="sha256 mismatch"):
        load_dataset("tiny-cite", root)


def test_verification_is_cached_per_file(tiny, monkeypatch):
    root = _copy_mirror(tiny["tmp"] / "m")
    calls = []
    real = mirror.sha256_file
    monkeypatch.setattr(mirror, "sha256_file", lambda p: calls.append(p) or real(p))
    resolve_dataset_dir("tiny-cite", root)
    resolve_dataset_dir("tiny-cite", root)
    assert len(calls) == 1


# --------------------------------------------------------------------------------------------
# download (the HTTP call replaced by a fake fetch)
# --------------------------------------------------------------------------------------------

def _fake_fetch(payload_by_url: dict[str, bytes], log: list[str]):
    def fetch(url: str, dest: Path) -> None:
        log.append(url)
        if url not in payload_by_url:
            raise OSError("connection refused")
        dest.write_bytes(payload_by_url[url])
    return fetch


def test_download_success_goes_to_cache_and_loads(tiny, monkeypatch):
    log: list[str] = []
    urls = get_spec("tiny-web").files[0].urls
    monkeypatch.setattr(mirror, "fetch", _fake_fetch({urls[1]: WEB_BYTES}, log))
    folder = resolve_dataset_dir("tiny-web")
    assert folder == tiny["cache"] / "tiny-web"
    assert (folder / "blob.txt").read_bytes() == WEB_BYTES
    assert log == list(urls)  # the first URL failed, the second worked
    assert not list(folder.glob("*.part"))
    inter = load_dataset("tiny-web")
    assert (inter.n_users, inter.n_items, len(inter)) == (2, 2, 3)
    assert len(log) == 2  # second load uses the cache, no new fetch


def test_download_checksum_failure(tiny, monkeypatch):
    log: list[str] = []
    urls = get_spec("tiny-web").files[0].urls
    monkeypatch.setattr(mirror, "fetch", _fake_fetch({urls[0]: b"tampered\n"}, log))
    with pytest.raises(DataError) as err:
        resolve_dataset_dir("tiny-web")
    msg = str(err.value)
    assert "sha256 mismatch" in msg and urls[0] in msg
    assert get_spec("tiny-web").files[0].sha256 in msg
    assert not (tiny["cache"] / "tiny-web" / "blob.txt").exists()
    assert not (tiny["cache"] / "tiny-web" / "blob.txt.part").exists()


def test_download_all_urls_fail(tiny, monkeypatch):
    monkeypatch.setattr(mirror, "fetch", _fake_fetch({}, []))
    with pytest.raises(DataError, match="download failed from every URL.*connection refused"):
        resolve_dataset_dir("tiny-web")


def test_derived_file_without_url_cannot_be_downloaded(tiny, monkeypatch):
    monkeypatch.setattr(mirror, "fetch", _fake_fetch({}, []))
    with pytest.raises(DataError, match="no upstream URL"):
        resolve_dataset_dir("tiny-split")


# --------------------------------------------------------------------------------------------
# load_dataset and preprocessing
# --------------------------------------------------------------------------------------------

def test_load_applies_one_pass_user_filter_and_reindexes(tiny):
    inter = load_dataset("tiny-cite", FIX_MIRROR)
    # users with >= 3 distinct items: lines 0, 3, 5; items re-indexed by first appearance
    np.testing.assert_array_equal(inter.users, [0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2])
    np.testing.assert_array_equal(inter.items, [0, 1, 2, 3, 0, 4, 5, 6, 2, 7, 8, 9])
    np.testing.assert_array_equal(inter.user_ids, ["0", "3", "5"])
    np.testing.assert_array_equal(inter.item_ids,
                                  ["10", "11", "12", "14", "15", "16", "17", "13", "19", "20"])
    assert inter.name == "tiny-cite"
    assert any("dropped 2 of 5 users, 1 of 11 items and 3 of 15 interactions" in n
               for n in inter.notes), inter.notes
    assert dataset_stats("tiny-cite", FIX_MIRROR) == {
        "n_users": 3, "n_items": 10, "n_interactions": 12, "density": 12 / 30}


def test_load_split_dataset_is_the_union(tiny):
    inter = load_dataset("tiny-split", FIX_MIRROR)
    np.testing.assert_array_equal(inter.users, [0, 0, 1, 1, 0, 1, 0, 1])
    np.testing.assert_array_equal(inter.items, [0, 1, 2, 1, 2, 0, 3, 3])
    assert (inter.n_users, inter.n_items) == (2, 4)


def test_expected_statistics_mismatch(tiny, tmp_path, monkeypatch):
    reg = (FIX / "registry.yaml").read_text().replace(
        "expected: {n_users: 3, n_items: 10, n_interactions: 12}",
        "expected: {n_users: 3, n_items: 10, n_interactions: 13}")
    path = tmp_path / "registry.yaml"
    path.write_text(reg)
    monkeypatch.setenv("RDLIB_REGISTRY", str(path))
    with pytest.raises(DataError, match=r"expected 3 users / 10 items / 13 interactions, "
                                        r"found 3 / 10 / 12"):
        load_dataset("tiny-cite", FIX_MIRROR)


def _toy(users, items, ratings=None) -> Interactions:
    u, i = np.asarray(users), np.asarray(items)
    return Interactions(users=u, items=i, n_users=int(u.max()) + 1, n_items=int(i.max()) + 1,
                        ratings=None if ratings is None else np.asarray(ratings, float),
                        user_ids=np.arange(u.max() + 1).astype(str),
                        item_ids=np.arange(i.max() + 1).astype(str), name="toy")


def test_one_pass_versus_iterative_filter():
    # u0: {0,1}  u1: {0,1,2}  u2: {0,1}  u3: {2,3}; k = 2 for users and items
    toy = _toy([0, 0, 1, 1, 1, 2, 2, 3, 3], [0, 1, 0, 1, 2, 0, 1, 2, 3])
    one = apply_preprocessing(toy, Preprocessing(min_user_interactions=2,
                                                 min_item_interactions=2))
    core = apply_preprocessing(toy, Preprocessing(min_user_interactions=2,
                                                  min_item_interactions=2, filter="iterative"))
    # one pass: users all have >= 2; items: 0 (3 users), 1 (3), 2 (2: users 1, 3), 3 (1) -> drop 3
    assert (one.n_users, one.n_items, len(one)) == (4, 3, 8)
    # iterative: after dropping item 3, user 3 has 1 item -> dropped, then item 2 has 1 user
    assert (core.n_users, core.n_items, len(core)) == (3, 2, 6)
    np.testing.assert_array_equal(core.user_ids, ["0", "1", "2"])


def test_min_rating_and_binarize():
    toy = _toy([0, 0, 1, 1], [0, 1, 1, 2], ratings=[5, 2, 4, 3])
    out = apply_preprocessing(toy, Preprocessing(min_rating=4, binarize=True))
    assert out.ratings is None
    np.testing.assert_array_equal(out.users, [0, 1])
    np.testing.assert_array_equal(out.item_ids, ["0", "1"])
    assert any("dropped 2 of 4 rows" in n for n in out.notes)
    with pytest.raises(DataError, match="no ratings"):
        apply_preprocessing(_toy([0], [0]), Preprocessing(min_rating=4))


# --------------------------------------------------------------------------------------------
# the real mirror (skipped where it is absent)
# --------------------------------------------------------------------------------------------

def _real_available(name: str) -> bool:
    try:
        return mirror.locate_dataset(name) is not None
    except DataError:
        return False


def _real_names() -> list[str]:
    return [n for n in load_registry() if _real_available(n)]


@pytest.mark.skipif(not _real_available("citeulike-t"), reason="shared data mirror absent")
def test_real_citeulike_matches_derrd_ids(monkeypatch):
    monkeypatch.delenv("RDLIB_REGISTRY", raising=False)
    inter = load_dataset("citeulike-t")
    assert (inter.n_users, inter.n_items, len(inter)) == (5219, 25181, 125580)
    if _real_available("citeulike-t-derrd-loo"):
        split = read_split_tsv(resolve_dataset_dir("citeulike-t-derrd-loo") / "derrd")
        ours = set(zip(inter.users.tolist(), inter.items.tolist(), strict=True))
        theirs = set(map(tuple, np.concatenate(
            [split["train"], split["valid"], split["test"]]).tolist()))
        assert ours == theirs  # DE-RRD's own ids = ours (file order, first appearance)


@pytest.mark.parametrize("name", _real_names())
def test_real_dataset_loads_with_registered_statistics(name, monkeypatch):
    monkeypatch.delenv("RDLIB_REGISTRY", raising=False)
    inter = load_dataset(name)  # raises on any difference from the registry
    spec = get_spec(name)
    assert (inter.n_users, inter.n_items, len(inter)) == (
        spec.expected.n_users, spec.expected.n_items, spec.expected.n_interactions)
    assert np.array_equal(np.unique(inter.users), np.arange(inter.n_users))
    assert np.array_equal(np.unique(inter.items), np.arange(inter.n_items))
