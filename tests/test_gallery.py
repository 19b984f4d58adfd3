"""build-index and enroll never lose or misfile data (issue 10 items 1, 3, 5, 6, 16, 20;
issue 15 unreadable photos, mass removal, people.json).

Real photos: face_recognition's knn_examples/train (5 people, 9 photos) as the people
folder, LFW photos (lfw-dev) as the faces added with ``enroll``. dlib models, one worker.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from facekit.cli import app
from facekit.database import Database
from facekit.enroll import crop_for_member, enroll_faces, reembed_enrolled
from facekit.errors import InputError, UsageError
from facekit.gallery import build_index
from facekit.pipeline import Pipeline, PipelineConfig

CFG = PipelineConfig()
runner = CliRunner()


def _people(fr_examples: Path, dest: Path) -> Path:
    return Path(shutil.copytree(fr_examples / "knn_examples" / "train", dest))


@pytest.fixture(scope="module")
def base(tmp_path_factory, fr_examples, lfw):
    """A database of the 5 knn people plus 2 LFW faces enrolled as 'carlos'."""
    root = tmp_path_factory.mktemp("gallery")
    people = _people(fr_examples, root / "people")
    db = root / "faces.db"
    report = build_index(people, db, CFG, workers=1)
    enroll_dir = root / "enrolled"
    enroll_dir.mkdir()
    photos = []
    for i in (1, 2):
        p = enroll_dir / f"Carlos_Moya_{i:04d}.jpg"
        shutil.copy(lfw / "Carlos_Moya" / p.name, p)
        photos.append(p)
    rep = _enroll(db, "carlos", photos)
    assert rep.added == 2
    return people, db, report, photos


def _enroll(db: Path, person: str, photos: list[Path], config: PipelineConfig = CFG):
    pipe = Pipeline(config)
    embs, faces = [], []
    for p in photos:
        r = pipe.process_path(str(p))
        assert len(r.faces), p
        embs.append(r.embeddings[0])
        faces.append(crop_for_member(str(p), tuple(r.faces.xywh[0]), r.faces.landmarks[0]))
    from facekit.types import Embeddings

    return enroll_faces(db, person, person.title(), Embeddings.merge(embs), faces)


def _copy(base, tmp_path):
    people, db, _, photos = base
    p2 = Path(shutil.copytree(people, tmp_path / "people"))
    d2 = Path(shutil.copytree(db, tmp_path / "faces.db"))
    return p2, d2, photos


def _enrolled(db: Path):
    d = Database.open(db)
    f = d.faces
    return f[f.origin == "enrolled"], d


# ----------------------------------------------------------------------------- item 1
def test_rebuild_keeps_enrolled_faces(base, tmp_path):
    """`--rebuild` used to drop every enrolled person while reporting 'removed: 0'."""
    people, db, _ = _copy(base, tmp_path)
    before, d0 = _enrolled(db)
    report = build_index(people, db, CFG, workers=1, rebuild=True)
    after, d1 = _enrolled(db)
    assert len(after) == len(before) == 2 and report.enrolled_kept == 2
    assert "carlos" in d1.persons and d1.persons["carlos"].name == "Carlos"
    assert report.removed == 0 and report.faces_removed == 0 and not report.enrolled_lost
    assert report.faces == d0.n_faces


def test_model_change_reembeds_enrolled_faces_from_crops(base, tmp_path):
    """Changing the recogniser's preprocessing (mirror averaging off changes the dlib
    fingerprint) re-embeds enrolled faces from their stored crops, even once the photos are
    gone; the result matches embedding the photo itself with the new settings."""
    people, db, photos = _copy(base, tmp_path)
    new = PipelineConfig(flip=False)
    with pytest.raises(UsageError, match="rebuild"):
        build_index(people, db, new, workers=1)  # a silent change is refused
    moved = [tmp_path / p.name for p in photos]
    for p, m in zip(photos, moved, strict=True):
        shutil.copy(p, m)
    hidden = [p.with_suffix(".bak") for p in photos]
    for p, h in zip(photos, hidden, strict=True):
        p.rename(h)
    try:
        report = build_index(people, db, new, workers=1, rebuild=True)
    finally:
        for p, h in zip(photos, hidden, strict=True):
            h.rename(p)
    after, d = _enrolled(db)
    assert report.enrolled_reembedded == 2 and len(after) == 2 and not report.enrolled_lost
    pipe = Pipeline(new)
    direct = np.stack([pipe.process_path(str(m)).embeddings.vectors["dlib"][0] for m in moved])
    stored = d.vectors["dlib"][after.index.to_numpy()]
    dist = 1 - np.sum(direct * stored, axis=1)
    assert (dist < 0.02).all(), dist


def test_enrolled_face_without_crop_or_photo_is_reported(tmp_path, fr_examples):
    """Faces enrolled by older versions have no crop: re-embedded from the photo, or
    reported with a reason when the photo is gone."""
    import pandas as pd

    rows = pd.DataFrame(
        {
            "source": [str(fr_examples / "obama.jpg"), str(tmp_path / "gone.jpg")],
            "x": [0.0, 0.0],
            "y": [0.0, 0.0],
            "w": [1.0, 1.0],
            "h": [1.0, 1.0],
            "digest": ["", ""],
        }
    )
    pipe = Pipeline(CFG)
    r = pipe.process_path(str(fr_examples / "obama.jpg"))
    rows.loc[0, ["x", "y", "w", "h"]] = [float(v) for v in r.faces.xywh[0]]
    out = reembed_enrolled(rows, CFG, pipeline=pipe)
    assert out.kept == [0] and out.from_photo == 1
    assert len(out.lost) == 1 and out.lost[0][0].endswith("gone.jpg")
    assert "no such file" in out.lost[0][1]


# ----------------------------------------------------------------------------- item 3
def test_enroll_twice_stores_faces_once(base, tmp_path):
    _, db, photos = _copy(base, tmp_path)
    n = Database.open(db).n_faces
    again = _enroll(db, "carlos", photos)
    assert again.added == 0 and len(again.skipped) == 2
    assert all("already enrolled" in why for _, why in again.skipped)
    other = _enroll(db, "someone", photos[:1])
    assert other.added == 0 and "already stored as carlos" in other.skipped[0][1]
    assert Database.open(db).n_faces == n


# ----------------------------------------------------------------------------- issue 15
def test_unreadable_photos_keep_their_faces(base, tmp_path):
    """A dangling symlink and a truncated copy are errors, not deletions."""
    people, db, _ = _copy(base, tmp_path)
    n = Database.open(db).n_faces
    victim = people / "obama" / sorted(os.listdir(people / "obama"))[0]
    victim.unlink()
    victim.symlink_to(tmp_path / "unmounted" / "obama.jpg")
    trunc = people / "biden" / sorted(os.listdir(people / "biden"))[0]
    data = trunc.read_bytes()
    trunc.write_bytes(data[: len(data) // 3])
    report = build_index(people, db, CFG, workers=1)
    assert report.removed == 0 and report.faces_removed == 0
    assert report.kept_unreadable == 2 and len(report.errors) == 2
    assert any("dangling symlink" in e for e in report.errors)
    assert any("truncated" in e for e in report.errors)
    d = Database.open(db)
    assert d.n_faces == n
    assert {os.path.relpath(victim, people), os.path.relpath(trunc, people)} <= set(d.faces.source)


def test_unreadable_person_folder_keeps_its_faces(base, tmp_path, monkeypatch):
    people, db, _ = _copy(base, tmp_path)
    n = Database.open(db).n_faces
    import facekit.walk as walk

    real = walk._listdir

    def fake(path):
        if path.endswith("kit_harington"):
            return [], f"{path}: cannot list folder (permission denied)"
        return real(path)

    monkeypatch.setattr(walk, "_listdir", fake)
    report = build_index(people, db, CFG, workers=1)
    assert report.faces_removed == 0 and "kit_harington" in Database.open(db).persons
    assert Database.open(db).n_faces == n and "permission denied" in report.errors[0]


def test_empty_people_folder_is_refused(base, tmp_path):
    """An empty (unmounted) people folder used to delete every person in one cron run."""
    people, db, _ = _copy(base, tmp_path)
    gen = Database.open(db).generation
    for sub in people.iterdir():
        shutil.rmtree(sub)
    r = runner.invoke(app, ["build-index", str(people), "-d", str(db), "-q", "-j", "1"])
    assert r.exit_code == 2, r.output
    assert "--allow-mass-removal" in r.output and "nothing changed" in r.output
    assert Database.open(db).generation == gen
    # most of it gone: refused too; with the flag it goes ahead and counts honestly
    people2 = Path(shutil.copytree(base[0], tmp_path / "people2"))
    for name in ("obama", "biden", "kit_harington"):
        shutil.rmtree(people2 / name)
    with pytest.raises(UsageError, match="would remove 3 of 6 people and 6 of"):
        build_index(people2, db, CFG, workers=1)
    report = build_index(people2, db, CFG, workers=1, allow_mass_removal=True)
    assert report.removed == 6 and report.faces_removed == 6
    assert report.people_removed == ["biden", "kit_harington", "obama"]
    assert "carlos" in Database.open(db).persons  # enrolled people stay


def test_unchanged_rerun_writes_nothing(base, tmp_path):
    """A cron re-run with nothing new makes no new generation (no re-indexing, no
    re-calibration); a changed name in people.json does."""
    people, db, _ = _copy(base, tmp_path)
    gen = Database.open(db).generation
    report = build_index(people, db, CFG, workers=1)
    assert report.unchanged == 9 and report.faces == Database.open(db).n_faces
    assert Database.open(db).generation == gen and report.calibration is not None
    (people / "people.json").write_text(json.dumps({"obama": "Barack Obama"}))
    build_index(people, db, CFG, workers=1)
    d = Database.open(db)
    assert d.generation != gen and d.persons["obama"].name == "Barack Obama"


def test_removal_counts_are_honest(base, tmp_path):
    people, db, _ = _copy(base, tmp_path)
    shutil.rmtree(people / "rose_leslie")
    (people / "biden" / sorted(os.listdir(people / "biden"))[0]).unlink()
    report = build_index(people, db, CFG, workers=1)
    assert report.removed == 3 and report.faces_removed == 3
    assert report.people_removed == ["rose_leslie"]
    assert report.unchanged == 9 - 3


@pytest.mark.parametrize(
    "name,text,match",
    [
        ("people.json", "42", "top level: expected an object"),
        ("people.json", '"obama"', "top level: expected an object"),
        ("people.json", '{"obama": {"name": 7}}', "entry 'obama': \"name\" must be a string"),
        ("people.json", '{"obama": [1]}', "entry 'obama': expected a name"),
        ("people.json", '[{"name": "x"}]', 'item 0: has no "id"'),
        ("people.json", '[{"id": 1.5}]', 'item 0: "id" must be a folder name'),
        ("people.json", "{", "not valid JSON"),
        ("people.csv", "name\nBarack\n", 'header: needs an "id" column'),
        ("people.csv", "id,name\nobama,Barack,extra\n", "line 2: more fields"),
        ("people.csv", "id,name\n,Barack\n", "line 2: empty id"),
        ("people.csv", "id,name\nobama,A\nobama,B\n", "line 3: duplicate id 'obama'"),
    ],
)
def test_people_metadata_is_validated(tmp_path, fr_examples, name, text, match):
    people = _people(fr_examples, tmp_path / "people")
    (people / name).write_text(text)
    with pytest.raises(InputError, match=match) as exc:
        build_index(people, tmp_path / "db", CFG, workers=1)
    assert str(people / name) in str(exc.value) and "\n" not in str(exc.value)
    assert not Database.exists(tmp_path / "db")


# ----------------------------------------------------------------------------- item 5
def _photo(fr_examples: Path, dest: Path, name: str = "obama.jpg") -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(fr_examples / name, dest)


def test_flat_folder_of_photos_says_what_is_expected(tmp_path, fr_examples):
    flat = tmp_path / "flat"
    _photo(fr_examples, flat / "a.jpg")
    _photo(fr_examples, flat / "b.jpg", "biden.jpg")
    r = runner.invoke(app, ["build-index", str(flat), "-d", str(tmp_path / "db"), "-q"])
    assert r.exit_code == 2
    assert "holds 2 photos but no person folders" in r.output
    assert "<person id>/<photos>" in r.output and not Database.exists(tmp_path / "db")


def test_folder_one_level_too_high_is_refused(tmp_path, fr_examples):
    top = tmp_path / "photos"
    _photo(fr_examples, top / "people" / "obama" / "a.jpg")
    _photo(fr_examples, top / "people" / "biden" / "b.jpg", "biden.jpg")
    r = runner.invoke(app, ["build-index", str(top), "-d", str(tmp_path / "db"), "-q"])
    assert r.exit_code == 2, r.output
    assert "one level lower" in r.output and str(top / "people") in r.output
    assert not Database.exists(tmp_path / "db")


def test_stray_and_nested_photos_are_reported_not_enrolled(tmp_path, fr_examples):
    people = tmp_path / "people"
    _photo(fr_examples, people / "obama" / "a.jpg")
    _photo(fr_examples, people / "obama" / "2019" / "b.jpg", "obama2.jpg")
    _photo(fr_examples, people / "biden" / "c.jpg", "biden.jpg")
    _photo(fr_examples, people / "stray.jpg", "obama_small.jpg")
    db = tmp_path / "db"
    report = build_index(people, db, CFG, workers=1)
    skipped = dict(report.skipped)
    assert (
        str(people / "stray.jpg") in skipped
        and "not in a person folder" in skipped[str(people / "stray.jpg")]
    )
    assert "--recursive" in skipped[str(people / "obama" / "2019")]
    assert sorted(Database.open(db).faces.source) == ["biden/c.jpg", "obama/a.jpg"]
    # asked for: nested photos are enrolled under the top folder, and the setting is kept
    report = build_index(people, db, CFG, workers=1, recursive=True)
    assert report.added == 1
    again = build_index(people, db, CFG, workers=1)
    assert again.unchanged == 3 and again.removed == 0
    assert "obama/2019/b.jpg" in set(Database.open(db).faces.source)


# ----------------------------------------------------------------------------- item 6
def test_detector_and_upsample_changes_are_refused(base, tmp_path):
    people, db, _ = _copy(base, tmp_path)
    for opts in (["--upsample", "1"], ["--detector", "yunet"]):
        r = runner.invoke(app, ["build-index", str(people), "-d", str(db), "-q", "-j", "1", *opts])
        assert r.exit_code == 2, r.output
        assert "--rebuild" in r.output
    with pytest.raises(UsageError, match="--upsample 0"):
        build_index(people, db, PipelineConfig(upsample=1), workers=1)


def test_options_not_given_keep_the_stored_settings(tmp_path, fr_examples):
    """A cron re-run with no options keeps --storage and --upsample of the first build."""
    people = tmp_path / "people"
    _photo(fr_examples, people / "obama" / "a.jpg")
    _photo(fr_examples, people / "biden" / "b.jpg", "biden.jpg")
    db = tmp_path / "db"
    args = ["build-index", str(people), "-d", str(db), "-q", "-j", "1"]
    assert runner.invoke(app, [*args, "--storage", "e4m3", "--upsample", "1"]).exit_code == 0
    _photo(fr_examples, people / "obama" / "c.jpg", "obama2.jpg")
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    d = Database.open(db)
    assert d.manifest["models"]["dlib"]["storage"] == "e4m3"
    assert d.manifest["pipeline"]["upsample"] == 1 and d.n_faces == 3


# ----------------------------------------------------------------------------- 16, 20
def test_progress_gets_the_total_and_heic_photos_are_enrolled(tmp_path, fr_examples):
    pytest.importorskip("pillow_heif", reason="HEIC support needs pillow-heif")
    from PIL import Image

    from facekit import imageio

    imageio._register_heif()
    people = tmp_path / "people"
    _photo(fr_examples, people / "biden" / "b.jpg", "biden.jpg")
    (people / "obama").mkdir()
    Image.open(fr_examples / "obama.jpg").save(people / "obama" / "IMG_0001.HEIC", format="HEIF")
    totals = []

    def wrap(stream, total):
        totals.append(total)
        return stream

    report = build_index(people, tmp_path / "db", CFG, workers=1, wrap=wrap)
    assert totals == [2] and report.added == 2 and report.faces == 2
    assert "obama/IMG_0001.HEIC" in set(Database.open(tmp_path / "db").faces.source)


def test_summary_line_counts(base, tmp_path):
    people, db, _ = _copy(base, tmp_path)
    shutil.rmtree(people / "rose_leslie")
    r = runner.invoke(app, ["build-index", str(people), "-d", str(db), "-j", "1"])
    assert r.exit_code == 0, r.output
    assert "2 removed (2 faces, 1 person)" in r.output
    assert "enrolled faces: 2 kept" in r.output
    (people / "people.json").write_text(json.dumps({"obama": 5}))
    r = runner.invoke(app, ["build-index", str(people), "-d", str(db), "-j", "1"])
    assert r.exit_code == 3 and "people.json" in r.output


# ----------------------------------------------------------------------------- issue 9
def test_build_from_embeddings_matches_a_photo_build(base, tmp_path, fr_examples):
    """`--from-embeddings` turns an embed table into the same database as embedding the
    people folder; a re-run is all unchanged; a table without a person removes it."""
    people = _people(fr_examples, tmp_path / "people")
    (people / "people.json").write_text(json.dumps({"obama": "Barack Obama"}))
    table = tmp_path / "faces.parquet"
    r = runner.invoke(app, ["embed", str(people), "-o", str(table), "-q", "-j", "1"])
    assert r.exit_code == 0, r.output
    db = tmp_path / "db"
    args = ["build-index", str(people), "--from-embeddings", str(table), "-d", str(db), "-q"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    d = Database.open(db)
    ref = Database.open(base[1])
    assert set(d.persons) == set(ref.persons) - {"carlos"}
    assert d.persons["obama"].name == "Barack Obama" and d.n_faces == 9
    by_src = dict(zip(ref.faces.source, ref.vectors["dlib"], strict=True))
    for src, vec in zip(d.faces.source, d.vectors["dlib"], strict=True):
        rel = os.path.relpath(src, people)
        assert float(1 - vec @ by_src[rel]) < 1e-4, src
    from facekit.gallery_table import build_from_embeddings

    gen = Database.open(db).generation
    again = build_from_embeddings(table, db)
    assert again.unchanged == 9 and again.added == again.removed == 0
    assert Database.open(db).generation == gen  # nothing changed: nothing written
    shutil.rmtree(people / "rose_leslie")
    r = runner.invoke(app, ["embed", str(people), "-o", str(tmp_path / "t2.parquet"), "-q"])
    assert r.exit_code == 0, r.output
    third = build_from_embeddings(tmp_path / "t2.parquet", db)
    assert (
        third.removed == 2 and third.faces_removed == 2 and third.people_removed == ["rose_leslie"]
    )
    r = runner.invoke(
        app, ["build-index", "--from-embeddings", str(table), "-d", str(db), "-m", "dlib"]
    )
    assert r.exit_code == 2 and "table's models" in r.output


def test_from_embeddings_never_replaces_an_encrypted_database_without_its_key(
    tmp_path, fr_examples, monkeypatch
):
    """`--from-embeddings` has the encryption rules of a photo build (issue 15): without
    the key, or with a wrong one, an encrypted database is neither replaced nor decrypted,
    --rebuild included; only --rebuild --discard-encrypted replaces it, and says so."""
    from facekit.errors import KeyRequiredError
    from facekit.gallery_table import build_from_embeddings

    people = _people(fr_examples, tmp_path / "people")
    table = tmp_path / "faces.parquet"
    r = runner.invoke(app, ["embed", str(people), "-o", str(table), "-q", "-j", "1"])
    assert r.exit_code == 0, r.output
    db = tmp_path / "db"
    monkeypatch.setenv("FACEKIT_KEY", "owner's key")
    build_from_embeddings(table, db, encrypt=True)
    gen = Database.open(db).generation
    for env, kw in [
        (None, {}),
        (None, {"rebuild": True}),
        ("wrong", {"rebuild": True}),
        ("wrong", {"rebuild": True, "encrypt": True}),
        (None, {"rebuild": True, "encrypt": False}),
    ]:
        if env is None:
            monkeypatch.delenv("FACEKIT_KEY")
        else:
            monkeypatch.setenv("FACEKIT_KEY", env)
        with pytest.raises(KeyRequiredError):
            build_from_embeddings(table, db, **kw)
        monkeypatch.setenv("FACEKIT_KEY", "owner's key")
        d = Database.open(db)
        assert d.generation == gen and d.manifest["encrypted"] and d.n_faces == 9, kw
    # the CLI: --discard-encrypted without --rebuild is a usage error; with it, replaced
    monkeypatch.delenv("FACEKIT_KEY")
    args = ["build-index", "--from-embeddings", str(table), "-d", str(db), "-j", "1"]
    r = runner.invoke(app, [*args, "--discard-encrypted"])
    assert r.exit_code == 2, r.output
    r = runner.invoke(app, [*args, "--rebuild"])
    assert r.exit_code == 5 and "FACEKIT_KEY" in r.output, r.output
    r = runner.invoke(app, [*args, "--rebuild", "--discard-encrypted"])
    assert r.exit_code == 0, r.output
    assert "encrypted database discarded" in r.output
    d = Database.open(db)
    assert not d.manifest["encrypted"] and d.n_faces == 9


def test_database_enroll_api_is_idempotent(base, tmp_path, lfw):
    _, db, _ = _copy(base, tmp_path)
    photo = lfw / "Bill_Clinton" / "Bill_Clinton_0001.jpg"
    r = Pipeline(CFG).process_path(str(photo))
    d = Database.open(db)
    args = ("bill", "Bill", r.embeddings[0], [str(photo)], r.faces.xywh[:1])
    assert d.enroll(*args) == 1
    assert d.enroll(*args) == 0
    assert Database.open(db).n_faces == d.n_faces + 1


def test_db_path_that_is_a_file_is_one_line(tmp_path, fr_examples):
    people = _people(fr_examples, tmp_path / "people")
    (tmp_path / "afile").write_text("x")
    r = runner.invoke(app, ["build-index", str(people), "-d", str(tmp_path / "afile"), "-q"])
    assert r.exit_code == 2 and "is not a folder" in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    r = runner.invoke(app, ["build-index", str(people), "-d", str(tmp_path / "afile" / "db")])
    assert r.exit_code == 2 and "not a folder" in r.output


def test_encrypted_database_rerun_keeps_encryption(tmp_path, fr_examples, monkeypatch):
    """A cron re-run without repeating --encrypt keeps the database encrypted."""
    monkeypatch.setenv("FACEKIT_KEY", "k")
    people = tmp_path / "people"
    _photo(fr_examples, people / "obama" / "a.jpg")
    _photo(fr_examples, people / "biden" / "b.jpg", "biden.jpg")
    db = tmp_path / "db"
    args = ["build-index", str(people), "-d", str(db), "-q", "-j", "1"]
    assert runner.invoke(app, [*args, "--encrypt"]).exit_code == 0
    _photo(fr_examples, people / "obama" / "c.jpg", "obama2.jpg")
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert Database.open(db).manifest["encrypted"] and Database.open(db).n_faces == 3


@pytest.mark.parametrize(
    "member,match",
    [
        ({"source": "a.jpg", "face": 0}, "member \\d.*no 'box'"),
        ({"source": "a.jpg", "box": [1, 2, "x", 4]}, "no 'box'"),
        ({"box": [1, 2, 3, 4]}, "member \\d.*no 'source'"),
        (
            {"source": "a.jpg", "box": [1, 2, 3, 4], "face": "0"},
            "'face' (must be|is not) an integer",
        ),
    ],
)
def test_enroll_bad_cluster_members_are_one_line(base, tmp_path, member, match):
    """Cluster members lacking `box` used to crash enroll with KeyError (issue 15)."""
    _, db, _ = _copy(base, tmp_path)
    cf = tmp_path / "c.json"
    cf.write_text(json.dumps({"clusters": [{"id": "c-0001", "members": [member]}]}))
    r = runner.invoke(app, ["enroll", "c-0001", "--id", "x", "-d", str(db), "-c", str(cf)])
    assert r.exit_code == 3, r.output
    assert str(cf) in r.output and len(r.output.strip().splitlines()) == 1
    import re

    assert re.search(match, r.output)
