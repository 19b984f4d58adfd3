"""facekit.people: people edits on a real database (dlib on face_recognition's example
photos), each an atomic new generation, and kept by later build-index runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facekit.database import Database
from facekit.errors import InputError, KeyRequiredError, UsageError
from facekit.gallery import build_index
from facekit.identify import Identifier
from facekit.people import (
    apply_edits,
    export_people,
    import_people,
    list_people,
    merge_people,
    move_face,
    remove_person,
    rename_person,
    restore_person,
    show_person,
)
from facekit.pipeline import Pipeline, PipelineConfig

CONFIG = PipelineConfig()


@pytest.fixture(scope="module")
def built(tmp_path_factory, fr_examples):
    """A people folder (5 people) and the database built from it, copied per test."""
    root = tmp_path_factory.mktemp("people")
    people = shutil.copytree(fr_examples / "knn_examples" / "train", root / "people")
    build_index(people, root / "db", CONFIG, workers=1)
    return root


@pytest.fixture
def ws(built, tmp_path):
    """``(people folder, database)``: private copies of the built ones."""
    people = shutil.copytree(built / "people", tmp_path / "people")
    db = shutil.copytree(built / "db", tmp_path / "db")
    return people, db


def _build(people: Path, db: Path, **kw):
    return build_index(people, db, CONFIG, workers=1, **kw)


def _who(db: Path, photo: Path) -> list[str | None]:
    pipe = Pipeline(Database.open(db).config)
    r = pipe.process_path(str(photo))
    ident = Identifier(Database.open(db))
    return [m.identity.person if m.identity else None for m in ident.match_result(r).matches]


def test_list_and_show(ws):
    _, db = ws
    people = {p.id: p for p in list_people(db)}
    assert sorted(people) == ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
    assert (people["obama"].faces, people["obama"].photos) == (2, 2)
    assert people["obama"].added  # ISO time of the first commit
    detail = show_person(db, "obama")
    assert len(detail.faces) == 2 and all(Path(f.source).is_file() for f in detail.faces)
    assert len({f.face for f in detail.faces}) == 2
    assert all(f.yaw is not None and abs(f.yaw) < 30 for f in detail.faces)
    with pytest.raises(UsageError, match="no person 'nobody'"):
        show_person(db, "nobody")


def test_face_ids_are_stable_across_writes(ws):
    _, db = ws
    before = {f.source: f.face for f in show_person(db, "rose_leslie").faces}
    remove_person(db, "alex_lacamoire")  # renumbers the rows: face_id changes, face_uid not
    after = {f.source: f.face for f in show_person(db, "rose_leslie").faces}
    assert before == after
    uids = Database.open(db).face_uids
    assert len(set(uids.tolist())) == len(uids)


def test_rename_is_a_generation_and_idempotent(ws, fr_examples):
    _, db = ws
    gen0 = Database.open(db).generation
    thr0 = Database.open(db).calibration.threshold
    ch = rename_person(db, "obama", "Barack Obama")
    assert ch.changed and not ch.recalibrated and ch.generation != gen0
    d = Database.open(db)
    assert d.persons["obama"].name == "Barack Obama"
    assert d.calibration.threshold == thr0  # names only: no re-calibration
    again = rename_person(db, "obama", "Barack Obama")
    assert not again.changed and again.generation == ch.generation
    with pytest.raises(UsageError, match="empty"):
        rename_person(db, "obama", "  ")
    with pytest.raises(UsageError, match="no person"):
        rename_person(db, "nobody", "X")


def test_merge_moves_faces_and_identify_follows(ws, fr_examples):
    _, db = ws
    rose = fr_examples / "knn_examples" / "train" / "rose_leslie" / "img1.jpg"
    assert _who(db, rose) == ["rose_leslie"]
    ch = merge_people(db, "kit_harington", "rose_leslie")
    assert ch.changed and ch.faces == 2 and ch.recalibrated
    d = Database.open(db)
    assert "rose_leslie" not in d.persons
    assert (d.faces["person"] == "kit_harington").sum() == 4
    assert _who(db, rose) == ["kit_harington"]
    assert show_person(db, "kit_harington").merged_from == ["rose_leslie"]
    again = merge_people(db, "kit_harington", "rose_leslie")
    assert not again.changed and "already merged" in again.message
    with pytest.raises(UsageError, match="merged into kit_harington"):
        merge_people(db, "rose_leslie", "kit_harington")
    with pytest.raises(UsageError, match="itself"):
        merge_people(db, "obama", "obama")


def test_move_face_and_remove(ws, fr_examples):
    _, db = ws
    obama2 = [f for f in show_person(db, "obama").faces if f.source.endswith("obama2.jpg")][0]
    ch = move_face(db, obama2.face, "biden")
    assert ch.changed and ch.recalibrated
    assert obama2.face in [f.face for f in show_person(db, "biden").faces]
    assert not move_face(db, obama2.face, "biden").changed
    with pytest.raises(UsageError, match="no face 99999"):
        move_face(db, 99999, "biden")
    with pytest.raises(UsageError, match="--create"):
        move_face(db, obama2.face, "stranger")
    move_face(db, obama2.face, "stranger", create=True, name="A Stranger")
    assert Database.open(db).persons["stranger"].name == "A Stranger"

    ch = remove_person(db, "alex_lacamoire")
    assert ch.changed and ch.faces == 1
    d = Database.open(db)
    assert "alex_lacamoire" not in d.persons and "alex_lacamoire" not in set(d.faces["person"])
    assert not (d.files["person"] == "alex_lacamoire").any()
    assert not remove_person(db, "alex_lacamoire").changed
    alex = fr_examples / "knn_examples" / "train" / "alex_lacamoire" / "img1.jpg"
    assert _who(db, alex) == [None]
    assert Database.open(db).verify().ok


def test_build_index_keeps_the_edits(ws, fr_examples):
    """A later build-index over the same folders undoes none of the edits, also when photos
    change, new photos arrive in a merged folder, people.json disagrees, or --rebuild."""
    people, db = ws
    rename_person(db, "obama", "Barack Obama")
    merge_people(db, "kit_harington", "rose_leslie")
    obama2 = [f for f in show_person(db, "obama").faces if f.source.endswith("obama2.jpg")][0]
    move_face(db, obama2.face, "biden")
    remove_person(db, "alex_lacamoire")
    (people / "people.json").write_text(json.dumps({"obama": "Json Obama", "biden": "Joe Biden"}))
    shutil.copy(
        fr_examples / "knn_examples" / "test" / "johnsnow_test1.jpg",
        people / "rose_leslie" / "n.jpg",
    )

    def check() -> None:
        d = Database.open(db)
        assert sorted(d.persons) == ["biden", "kit_harington", "obama"]
        assert d.persons["obama"].name == "Barack Obama"  # the rename wins over people.json
        assert d.persons["biden"].name == "Joe Biden"  # people.json still names the others
        f = d.faces
        src = dict(zip(f["source"], f["person"]))
        assert src["obama/obama2.jpg"] == "biden"  # moved stays moved
        assert src["rose_leslie/img1.jpg"] == "kit_harington"  # merged stays merged
        assert src["rose_leslie/n.jpg"] == "kit_harington"  # new photo of a merged folder
        assert not any(s.startswith("alex_lacamoire/") for s in src)  # removed stays removed

    rep = _build(people, db)
    check()
    assert any("alex_lacamoire" in s and "removed" in r for s, r in rep.skipped)
    # nothing changed since: no new generation
    gen = Database.open(db).generation
    _build(people, db)
    assert Database.open(db).generation == gen
    # a changed photo is re-embedded: its move is kept (by photo and box)
    from PIL import Image

    Image.open(people / "obama" / "obama2.jpg").save(people / "obama" / "obama2.jpg", quality=85)
    _build(people, db)
    check()
    _build(people, db, rebuild=True)
    check()
    # restore: the folder is enrolled again
    gen = Database.open(db).generation
    assert restore_person(db, "alex_lacamoire").changed
    # restoring twice writes nothing (README: running a change twice exits 0)
    assert not restore_person(db, "alex_lacamoire").changed
    assert Database.open(db).generation != gen
    with pytest.raises(UsageError, match="no removed person"):
        restore_person(db, "never_there")
    _build(people, db)
    assert "alex_lacamoire" in Database.open(db).persons


def test_enroll_carries_the_edits(ws, fr_examples):
    """A writer that does not know about the edits (enroll) keeps them."""
    from facekit.enroll import crop_for_member, enroll_faces

    _, db = ws
    rename_person(db, "obama", "Barack Obama")
    photo = str(fr_examples / "obama2.jpg")
    pipe = Pipeline(Database.open(db).config)
    r = pipe.process_path(photo)
    face = crop_for_member(photo, tuple(r.faces.xywh[0]), r.faces.landmarks[0])
    enroll_faces(db, "obama", None, r.embeddings[[0]], [face])
    assert Database.open(db).people_edits["names"] == {"obama": "Barack Obama"}


def test_export_import_roundtrip_and_validation(ws, tmp_path):
    _, db = ws
    rename_person(db, "biden", "Joe Biden")
    recs = export_people(db)
    assert {"id": "biden", "name": "Joe Biden"} in recs
    good = tmp_path / "p.json"
    good.write_text(json.dumps([{"id": "obama", "name": "Barack", "party": "D", "age": 60}]))
    ch = import_people(db, good)
    assert ch.changed and ch.people == ["obama"]
    p = Database.open(db).persons["obama"]
    assert (p.name, p.extra) == ("Barack", {"party": "D", "age": 60})
    assert not import_people(db, good).changed  # idempotent
    csv = tmp_path / "p.csv"
    csv.write_text("id,name,party,age\nobama,Barack,,60\n")  # empty cell removes; 60 == 60
    import_people(db, csv)
    assert Database.open(db).persons["obama"].extra == {"age": 60}
    gen = Database.open(db).generation
    for text, where in [
        ('[{"id": "nobody", "name": "X"}]', "entry 'nobody': no person"),
        ('[{"name": "X"}]', 'item 0: has no "id"'),
        ("{not json", "not valid JSON"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(InputError, match=where) as exc:
            import_people(db, bad)
        assert str(bad) in str(exc.value) and "\n" not in str(exc.value)
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nX\n")
    with pytest.raises(InputError, match='needs an "id" column'):
        import_people(db, bad)
    assert Database.open(db).generation == gen  # nothing changed


def test_encrypted_database(tmp_path, fr_examples, monkeypatch):
    people = shutil.copytree(fr_examples / "knn_examples" / "train", tmp_path / "people")
    db = tmp_path / "db"
    monkeypatch.setenv("FACEKIT_KEY", "s3cret")
    build_index(people, db, CONFIG, workers=1, encrypt=True)
    merge_people(db, "kit_harington", "rose_leslie")
    rename_person(db, "obama", "Barack Obama")
    d = Database.open(db)
    assert d.manifest["encrypted"] and "people-edits.json" not in d.manifest["files"]
    assert d.people_edits["merged"] == {"rose_leslie": "kit_harington"}
    assert not any(p.name.startswith("people-edits") for p in (db / d.generation).iterdir())
    build_index(people, db, CONFIG, workers=1)
    d = Database.open(db)
    assert d.manifest["encrypted"] and "rose_leslie" not in d.persons
    assert d.persons["obama"].name == "Barack Obama"
    monkeypatch.setenv("FACEKIT_KEY", "wrong")
    with pytest.raises(KeyRequiredError):
        rename_person(db, "obama", "X")
    monkeypatch.delenv("FACEKIT_KEY")
    with pytest.raises(KeyRequiredError):
        list_people(db)


def test_apply_edits_unit():
    import pandas as pd

    faces = pd.DataFrame(
        {
            "person": ["a", "b", "c", "c"],
            "source": ["a/1.jpg", "b/1.jpg", "c/1.jpg", "c/2.jpg"],
            "x": [0.0, 0, 0, 0],
            "y": [0.0, 0, 0, 0],
            "w": [10.0, 10, 10, 10],
            "h": [10.0, 10, 10, 10],
        }
    )
    edits = {
        "merged": {"b": "a"},
        "moves": [{"source": "c/2.jpg", "box": [1, 1, 10, 10], "to": "b"}],
        "removed": {"c": "2026-01-01T00:00:00+00:00"},
    }
    out = apply_edits(faces, edits)
    assert faces["person"].tolist() == ["a", "a", "c", "a"]  # the move follows b's merge
    assert out.keep.tolist() == [True, True, False, True]
    assert np.all(apply_edits(faces.copy(), {}).keep)
