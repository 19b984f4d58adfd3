"""A commit that only appends faces (or changes none) extends the live generation's Voyager
index instead of rebuilding it, and the extended index answers as a rebuilt one would; any
other change rebuilds. Synthetic galleries, no models needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import facekit.index
from facekit import people
from facekit.database import FACE_COLUMNS, Database, Person


@pytest.fixture(autouse=True)
def graph_search(monkeypatch):
    """Search through the Voyager index from 100 faces up (keeps the galleries small)."""
    monkeypatch.setattr(facekit.index, "EXACT_MAX", 100)


def _gallery(n: int, start: int = 0, people_n: int = 40, seed: int = 0, storage_dim: int = 128):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(people_n, storage_dim)).astype(np.float32)
    owner = rng.integers(0, people_n, n)
    vec = centres[owner] + 0.3 * rng.normal(size=(n, storage_dim)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    faces = pd.DataFrame({c: [0] * n for c in FACE_COLUMNS})
    faces["person"] = [f"p{i}" for i in owner]
    faces["source"] = [f"p{i}/{start + j}.jpg" for j, i in enumerate(owner)]
    faces["origin"] = "folder"
    return faces, vec.astype(np.float32)


def _persons(n: int = 40) -> dict[str, Person]:
    return {f"p{i}": Person(f"p{i}", f"Person {i}") for i in range(n)}


def _commit(path: Path, faces, vec, *, base=None, storage="float32"):
    with Database.lock(path):
        Database.commit(
            path,
            faces=faces,
            vectors={"dlib": vec},
            persons=_persons(),
            pipeline={"detector": "dlib-hog"},
            fingerprints={"dlib": "x"},
            weights={"dlib": 1.0},
            storage=storage,
            base=base,
        )
    return Database.open(path)


def _no_build(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the index was rebuilt instead of extended")

    monkeypatch.setattr(facekit.index, "build", refuse)


def _self_hits(db: Database, rows: np.ndarray) -> float:
    """Share of ``rows`` whose own vector finds them first in the stored graph, and in what
    ``Database.knn`` (graph + exact re-rank) finds first."""
    q = np.array(db.vectors["dlib"][rows], np.float32)
    ids, _ = db.index("dlib").query(q, k=1)
    knn, _ = db.knn("dlib", q, 1)
    # the graph answers with face uids, knn with rows
    graph_ok = float(np.mean(ids[:, 0] == db.face_uids[rows]))
    return min(graph_ok, float(np.mean(knn[:, 0] == rows)))


@pytest.mark.parametrize("storage", ["float32", "e4m3"])
def test_appended_faces_extend_the_index(tmp_path, monkeypatch, storage):
    path = tmp_path / "db"
    faces, vec = _gallery(600)
    db = _commit(path, faces, vec, storage=storage)
    new_faces, new_vec = _gallery(150, start=600, seed=1)
    _no_build(monkeypatch)
    db2 = _commit(
        path,
        pd.concat([db.faces, new_faces], ignore_index=True),
        np.concatenate([db.vectors["dlib"], new_vec]),
        base=db,
        storage=storage,
    )
    assert db2.n_faces == 750 and len(db2.index("dlib")) == 750
    # the appended faces are found through the graph under their own row ids, the old ones too
    assert _self_hits(db2, np.arange(600, 750)) >= 0.99
    assert _self_hits(db2, np.arange(0, 600, 7)) >= 0.99
    assert db2.verify().ok


def test_unchanged_vectors_reuse_the_index(tmp_path, monkeypatch):
    path = tmp_path / "db"
    faces, vec = _gallery(300)
    db = _commit(path, faces, vec)
    before = db.manifest["files"]["index-dlib.voy"]
    _no_build(monkeypatch)
    people.rename_person(path, "p3", "Someone Else")  # a people edit passes its database
    db2 = Database.open(path)
    assert db2.generation != db.generation
    assert db2.persons["p3"].name == "Someone Else"
    assert db2.manifest["files"]["index-dlib.voy"] == before


def _counting_build(monkeypatch) -> list[int]:
    built: list[int] = []
    real_build = facekit.index.build

    def counting(v, storage="float32", ids=None):
        built.append(len(v))
        return real_build(v, storage, ids)

    monkeypatch.setattr(facekit.index, "build", counting)
    return built


def test_removed_faces_are_marked_deleted(tmp_path, monkeypatch):
    path = tmp_path / "db"
    faces, vec = _gallery(400)
    db = _commit(path, faces, vec)
    built = _counting_build(monkeypatch)
    keep = np.ones(400, bool)
    keep[10:20] = False  # photos removed: the rows after them are renumbered
    gone = db.vectors["dlib"][~keep]
    new_faces, new_vec = _gallery(30, start=400, seed=2)
    db2 = _commit(
        path,
        pd.concat([db.faces[keep], new_faces], ignore_index=True),
        np.concatenate([db.vectors["dlib"][keep], new_vec]),
        base=db,
    )
    assert built == []  # updated in place
    info = db2.manifest["models"]["dlib"]
    assert info["index_ids"] == "face_uid" and info["index_deleted"] == 10
    assert len(db2.index("dlib")) == 430 and db2.n_faces == 420
    uids = db2.face_uids
    assert uids[0] == 0 and uids[10] == 20 and uids[-1] == 429  # ids kept, rows renumbered
    # every face is found under its own row, through the graph and through knn
    assert _self_hits(db2, np.arange(0, 420, 3)) >= 0.99
    # a removed face's vector never brings back its deleted id: it finds a row of the gallery
    rows, _ = db2.knn("dlib", np.array(gone), 5)
    assert rows.min() >= 0 and rows.max() < 420
    assert db2.verify().ok
    # the next write carries the tombstones' count forward
    keep2 = np.ones(420, bool)
    keep2[:5] = False
    db3 = _commit(path, db2.faces[keep2], db2.vectors["dlib"][keep2], base=db2)
    assert built == [] and db3.manifest["models"]["dlib"]["index_deleted"] == 15
    assert _self_hits(db3, np.arange(0, 415, 5)) >= 0.99 and db3.verify().ok


def test_too_many_deleted_rebuilds(tmp_path, monkeypatch):
    path = tmp_path / "db"
    faces, vec = _gallery(400)
    db = _commit(path, faces, vec)
    built = _counting_build(monkeypatch)
    keep = np.arange(400) >= 150  # 150 of 400 removed: more than MAX_INDEX_DELETED
    db2 = _commit(path, db.faces[keep], db.vectors["dlib"][keep], base=db)
    assert built == [250]
    assert db2.manifest["models"]["dlib"]["index_deleted"] == 0
    assert len(db2.index("dlib")) == 250 and _self_hits(db2, np.arange(0, 250, 2)) >= 0.99


def test_other_changes_rebuild(tmp_path, monkeypatch):
    path = tmp_path / "db"
    faces, vec = _gallery(400)
    db = _commit(path, faces, vec)
    built = _counting_build(monkeypatch)
    changed = db.vectors["dlib"].copy()
    changed[0] = changed[1]  # a face re-embedded under the same id
    db2 = _commit(path, db.faces, changed, base=db)
    assert built == [400]
    assert _self_hits(db2, np.arange(2, 400, 3)) >= 0.99
    # a base that is not the live generation is never updated
    _commit(path, db2.faces, db2.vectors["dlib"], base=db)
    assert built == [400, 400]
    # other storage: rebuilt
    _commit(path, db2.faces, db2.vectors["dlib"], base=Database.open(path), storage="e4m3")
    assert built == [400, 400, 400]
