"""`facekit build-index` and `facekit identify` through the real command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest


def run(
    *args: str, env: dict | None = None, input: str | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        input=input,
        timeout=300,
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory, fr_examples):
    root = tmp_path_factory.mktemp("cli")
    people = shutil.copytree(fr_examples / "knn_examples" / "train", root / "people")
    r = run("build-index", str(people), "-d", str(root / "faces.db"), "-j", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""  # data only on stdout; the summary is on stderr
    assert "5 people" in r.stderr
    return root / "faces.db"


def test_ndjson_contract_and_exit_0(db, fr_examples):
    photo = str(fr_examples / "two_people.jpg")
    r = run("identify", photo, "-d", str(db), "--format", "ndjson")
    assert r.returncode == 0, r.stderr
    [line] = r.stdout.splitlines()
    rec = json.loads(line)
    assert rec["source"] == photo
    people = sorted(f["identity"]["person"] for f in rec["faces"] if f["identity"])
    assert people == ["biden", "obama"]
    for f in rec["faces"]:
        assert len(f["box"]) == 4
        for c in f["candidates"]:
            assert {"person", "name", "confidence", "distances"} <= set(c) and "dlib" in c[
                "distances"
            ]


def test_nobody_known_exit_1_and_annotate(db, lfw, tmp_path):
    photo = str(sorted((lfw / sorted(p.name for p in lfw.iterdir())[0]).glob("*.jpg"))[0])
    r = run(
        "identify", photo, "-d", str(db), "--format", "json", "--annotate", str(tmp_path / "ann")
    )
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc[0]["faces"] and all(f["identity"] is None for f in doc[0]["faces"])
    assert len(list((tmp_path / "ann").glob("*.jpg"))) == 1


def test_bad_file_and_stdin(db, fr_examples, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    good = str(fr_examples / "obama.jpg")
    r = run("identify", "-", "-d", str(db), "--format", "csv", input=f"{bad}\n{good}\n")
    assert r.returncode == 3
    assert "broken.jpg" in r.stderr and "Traceback" not in r.stderr
    assert "obama" in r.stdout


def test_missing_db_and_wrong_models(tmp_path, db, fr_examples):
    r = run("identify", str(fr_examples / "obama.jpg"), "-d", str(tmp_path / "nope.db"))
    assert r.returncode == 5 and "no face database" in r.stderr and "Traceback" not in r.stderr
    r = run("identify", str(fr_examples / "obama.jpg"), "-d", str(db), "--models", "mobilefacenet")
    assert r.returncode == 2


def test_encrypted_missing_key_is_one_line(tmp_path, fr_examples):
    people = shutil.copytree(fr_examples / "knn_examples" / "train", tmp_path / "people")
    r = run("build-index", str(people), "-d", str(tmp_path / "enc.db"), "--encrypt", "-j", "1")
    assert r.returncode == 5 and "FACEKIT_KEY" in r.stderr
    r = run(
        "build-index",
        str(people),
        "-d",
        str(tmp_path / "enc.db"),
        "--encrypt",
        "-j",
        "1",
        env={"FACEKIT_KEY": "k1"},
    )
    assert r.returncode == 0, r.stderr
    r = run(
        "identify",
        str(fr_examples / "obama.jpg"),
        "-d",
        str(tmp_path / "enc.db"),
        env={"FACEKIT_KEY": "k2"},
    )
    assert r.returncode == 5 and len(r.stderr.strip().splitlines()) == 1 and "wrong key" in r.stderr
    assert r.stdout == ""


def test_help_has_examples():
    for cmd in ("build-index", "identify", "embed"):
        r = run(cmd, "--help")
        assert r.returncode == 0 and "Example" in r.stdout


def test_a_person_is_named_once_per_photo(db, fr_examples, tmp_path):
    """Two photos of Obama side by side: both faces match him, but one person cannot be two
    faces of one photo, so the stronger match keeps the name and the other is unknown with
    Obama still its nearest candidate."""
    from PIL import Image

    a = Image.open(fr_examples / "obama.jpg").convert("RGB")
    b = Image.open(fr_examples / "obama2.jpg").convert("RGB").resize(a.size)
    both = Image.new("RGB", (a.width * 2, a.height))
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    photo = tmp_path / "twice.jpg"
    both.save(photo, quality=95)
    r = run("identify", str(photo), "-d", str(db), "--format", "json")
    assert r.returncode == 0, r.stderr
    [rec] = json.loads(r.stdout)
    faces = rec["faces"]
    assert len(faces) == 2
    assert all(f["candidates"][0]["person"] == "obama" for f in faces)
    named = [f for f in faces if f["identity"]]
    assert [f["identity"]["person"] for f in named] == ["obama"]
    loser = next(f for f in faces if not f["identity"])
    assert loser["candidates"][0]["evidence"] <= named[0]["identity"]["evidence"]
