"""File names that are not valid UTF-8 (issue 15): every command writes them as text
(bad bytes as ``\\xNN``), never crashes on them, and can open the file again from that text.

Real photos (face_recognition's examples, dlib models, one worker) under names made of
Latin-1 bytes, as a camera card or an old archive copied to Linux has them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from facekit.cli import app
from facekit.database import Database
from facekit.gallery import build_index
from facekit.pathtext import existing_path, path_text, text_path
from facekit.pipeline import PipelineConfig

runner = CliRunner()
BAD_DIR = os.fsdecode(b"caf\xe9")  # "café" in Latin-1
BAD_PHOTO = os.fsdecode(b"mir\xe1nda \xff.png")


@pytest.mark.parametrize(
    "raw",
    [b"caf\xe9.jpg", b"\xff\xfe/x.jpg", "café/ü.jpg".encode(), b"plain.jpg", b"a\\xe9b\xe9.jpg"],
)
def test_round_trip(raw):
    name = os.fsdecode(raw)
    text = path_text(name)
    text.encode("utf-8")  # valid UTF-8: JSON, CSV and Parquet take it
    if b"\\x" not in raw:
        assert text_path(text) == name
    assert path_text(raw) == text


def test_valid_text_is_unchanged_and_lone_surrogates_are_escaped():
    assert path_text("café/Zoë 1.jpg") == "café/Zoë 1.jpg"
    assert path_text("caf\udce9.jpg") == "caf\\xe9.jpg"
    assert path_text("x\ud800y") == "x\\ud800y"  # not an escaped byte (e.g. from JSON)


def test_existing_path_finds_the_file_behind_its_text(tmp_path):
    p = tmp_path / BAD_PHOTO
    p.write_bytes(b"x")
    shown = path_text(str(p))
    assert shown != str(p) and existing_path(shown) == str(p)
    assert existing_path(str(tmp_path / "other\\xe9.png")) == str(tmp_path / "other\\xe9.png")


@pytest.fixture
def album(tmp_path, fr_examples):
    people = Path(shutil.copytree(fr_examples / "knn_examples" / "train", tmp_path / "people"))
    (people / BAD_DIR).mkdir()
    shutil.copyfile(fr_examples / "lin-manuel-miranda.png", people / BAD_DIR / BAD_PHOTO)
    return people


def test_build_enrols_non_utf8_names_and_reruns_unchanged(album, tmp_path):
    db = tmp_path / "faces.db"
    report = build_index(album, db, PipelineConfig(), workers=1)
    assert not report.errors and report.added == 10
    d = Database.open(db)
    pid, src = path_text(BAD_DIR), path_text(f"{BAD_DIR}/{BAD_PHOTO}")
    assert pid == "caf\\xe9" and pid in d.persons
    assert src in set(d.faces.source)
    again = build_index(album, db, PipelineConfig(), workers=1)
    assert (again.unchanged, again.added, again.removed, again.updated) == (10, 0, 0, 0)
    assert Database.open(db).generation == d.generation  # nothing re-embedded or rewritten
    # identify the photo by its raw name: named as the text-form person, in every format
    photo = str(album / BAD_DIR / BAD_PHOTO)
    for fmt in ("json", "ndjson", "csv", "table"):
        r = runner.invoke(app, ["identify", photo, "-d", str(db), "-f", fmt, "-q", "-j", "1"])
        assert r.exit_code == 0, r.output
        if fmt in ("json", "ndjson"):  # valid JSON, the path and the id as text
            rec = json.loads(r.stdout)[0] if fmt == "json" else json.loads(r.stdout)
            assert rec["source"] == path_text(photo)
            assert rec["faces"][0]["identity"]["person"] == pid
        elif fmt == "csv":
            assert path_text(photo) in r.stdout and f",{pid}," in r.stdout, r.stdout
        else:
            assert "nda \\xff.png" in r.stdout and pid in r.stdout, r.stdout


def test_embed_and_cluster_write_text_and_reopen_it(album, tmp_path):
    photo = str(album / BAD_DIR / BAD_PHOTO)
    other = str(album / "lin.png")  # the same person, so that cluster makes one cluster
    shutil.copyfile(photo, other)
    table = tmp_path / "faces.parquet"
    r = runner.invoke(app, ["embed", photo, other, "-o", str(table), "-q", "-j", "1"])
    assert r.exit_code == 0, r.output
    assert path_text(photo) in set(pd.read_parquet(table).source)
    r = runner.invoke(app, ["embed", photo, other, "-o", str(table), "-j", "1"])
    assert r.exit_code == 0 and "2 unchanged" in r.output, r.output  # found again by its text
    # cluster re-reads the photo (contact sheets) from the text form it stored
    out = tmp_path / "clusters.json"
    sheets = tmp_path / "sheets"
    r = runner.invoke(
        app, ["cluster", photo, other, "-o", str(out), "--sheets", str(sheets), "-j", "1"]
    )
    assert r.exit_code == 0, r.output
    assert "no thumbnail" not in r.output, r.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert path_text(photo) in {m["source"] for c in doc["clusters"] for m in c["members"]}
    assert len(list(sheets.glob("*.png"))) == 1


def test_enrolling_a_non_utf8_photo_stores_its_text(album, tmp_path):
    """enroll (and import-xmp, which enrols the same way) with a raw non-UTF-8 path."""
    from facekit.pipeline import Pipeline

    db = tmp_path / "faces.db"
    shutil.rmtree(album / BAD_DIR)
    build_index(album, db, PipelineConfig(), workers=1)
    photo = tmp_path / BAD_PHOTO
    shutil.copyfile(album / "obama" / sorted(os.listdir(album / "obama"))[0], photo)
    r = Pipeline(PipelineConfig()).process_path(str(photo))
    assert len(r.faces) == 1
    added = Database.open(db).enroll("newbie", None, r.embeddings, [str(photo)], r.faces.xywh)
    assert added == 1
    assert path_text(str(photo)) in set(Database.open(db).faces.source)
    again = Database.open(db).enroll("newbie", None, r.embeddings, [str(photo)], r.faces.xywh)
    assert again == 0  # found again by its text: stored once
