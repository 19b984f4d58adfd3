"""The photo-manager workflow end to end: tags written by exiftool (as digiKam would) ->
``facekit import-xmp`` builds the database -> ``facekit identify --write-xmp`` names the
untagged photos -> exiftool shows the right names in the right places."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from facekit.imageio import load_image
from test_xmp import (
    EXIFTOOL,
    INVERSE,
    exif_json,
    exiftool,
    faces_of,
    mwg_arg,
    needs_exiftool,
    with_margin,
)

pytestmark = needs_exiftool

NAMES = {
    "alex_lacamoire": "Alex Lacamoire",
    "biden": "Joe Biden",
    "kit_harington": "Kit Harington",
    "obama": "Barack Obama",
    "rose_leslie": "Rose Leslie",
}


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


def tag(photo: Path, regions: list[tuple[str | None, tuple]], how: str = "embedded") -> None:
    """Tag ``photo`` the way a photo manager does: MWG regions embedded, in a sidecar
    (``photo.jpg.xmp``), or as Microsoft Photo regions."""
    img = load_image(photo)
    dims = (img.width, img.height)
    if how == "mp":
        items = ",".join(
            f"{{Rectangle={x:.6f}|, {y:.6f}|, {w:.6f}|, {h:.6f},PersonDisplayName={n}}}"
            for n, (x, y, w, h) in regions
        )
        exiftool("-overwrite_original", f"-XMP-MP:RegionInfoMP={{Regions=[{items}]}}", photo)
    elif how == "sidecar":
        exiftool("-o", f"{photo}.xmp", mwg_arg([(n, a, "Face") for n, a in regions], dims))
    else:
        exiftool("-overwrite_original", mwg_arg([(n, a, "Face") for n, a in regions], dims), photo)


def rotate(photo: Path, orientation: int) -> None:
    """Store ``photo`` sideways / mirrored with an EXIF orientation that shows it upright."""
    with Image.open(photo) as im:
        upright = im.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    t = INVERSE[orientation]
    (upright if t is None else upright.transpose(t)).save(
        photo, "JPEG", quality=95, exif=exif.tobytes()
    )


@pytest.fixture(scope="module")
def tagged(tmp_path_factory, fr_examples) -> Path:
    """A digiKam-like album: every training photo tagged with its person's name, in the
    three forms (embedded MWG, photo.jpg.xmp sidecar, MP regions), some stored rotated; plus
    one region on empty wall (matches no face)."""
    album = tmp_path_factory.mktemp("album")
    train = fr_examples / "knn_examples" / "train"
    forms = ["embedded", "sidecar", "mp"]
    k = 0
    for person in sorted(NAMES):
        for src in sorted((train / person).iterdir()):
            photo = album / f"{person}-{src.stem}.jpg"
            shutil.copy(src, photo)
            if k % 3 == 1:
                rotate(photo, [6, 8, 3, 5, 7][k % 5])
            img = load_image(photo)
            faces = sorted(faces_of(photo), key=lambda b: -b[2] * b[3])
            assert faces, photo
            area = with_margin(faces[0], img.width, img.height)
            regions: list[tuple[str | None, tuple]] = [(NAMES[person], area)]
            if k == 0:
                regions.append(("Nobody Here", (0.0, 0.0, 0.05, 0.05)))
            tag(photo, regions, forms[k % 3])
            k += 1
    return album


def test_album_to_database_to_sidecars(tagged, tmp_path, fr_examples):
    db = tmp_path / "faces.db"
    r = run("import-xmp", str(tagged), "-d", str(db), "--format", "json", "-j", "1")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["people"] == {
        "alex-lacamoire": 1,
        "barack-obama": 2,
        "joe-biden": 2,
        "kit-harington": 2,
        "rose-leslie": 2,
    }
    assert sorted(rep["new_people"]) == sorted(rep["people"])
    assert rep["tagged"] == rep["photos"] == 9 and rep["regions"] == 10
    assert [u["name"] for u in rep["unmatched"]] == ["Nobody Here"]
    assert rep["mismatches"] == [] and rep["errors"] == []
    assert "'Nobody Here' matches no face" in r.stderr

    # a re-run adds nothing and changes nothing
    gen = (db / "CURRENT").read_text()
    again = run("import-xmp", str(tagged), "-d", str(db), "--format", "json", "-j", "1")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["enrolled"] == 0
    assert (db / "CURRENT").read_text() == gen

    # name the untagged photos and write sidecars
    new = tmp_path / "new"
    shutil.copytree(fr_examples / "knn_examples" / "test", new)
    before = {p.name: p.read_bytes() for p in new.iterdir()}
    r = run("identify", str(new), "-d", str(db), "--write-xmp", "--xmp-mp", "-j", "1")
    assert r.returncode == 0, r.stderr
    assert {p.name: p.read_bytes() for p in new.iterdir() if p.suffix != ".xmp"} == before

    def names_left_to_right(photo: Path) -> list[str | None]:
        meta = exif_json(Path(f"{photo}.xmp"), "-XMP-mwg-rs:all")
        regions = meta["RegionInfo"]["RegionList"]
        assert len(regions) == len(faces_of(photo))  # one region per detected face
        return [g.get("Name") for g in sorted(regions, key=lambda g: g["Area"]["X"])]

    assert names_left_to_right(new / "obama1.jpg") == ["Barack Obama"]
    assert names_left_to_right(new / "alex_lacamoire1.jpg") == ["Alex Lacamoire"]
    both = names_left_to_right(new / "obama_and_biden.jpg")
    assert sorted(n for n in both if n) == ["Barack Obama", "Joe Biden"]
    kr = names_left_to_right(new / "kit_with_rose.jpg")
    assert sorted(n for n in kr if n) == ["Kit Harington", "Rose Leslie"]
    # each name sits on its face: exiftool's area centre lies inside the detected face box
    img = load_image(new / "obama_and_biden.jpg")
    meta = exif_json(new / "obama_and_biden.jpg.xmp", "-XMP-mwg-rs:all")
    faces = faces_of(new / "obama_and_biden.jpg")
    ident = json.loads(
        run("identify", str(new / "obama_and_biden.jpg"), "-d", str(db), "--format", "json").stdout
    )
    for g in meta["RegionInfo"]["RegionList"]:
        cx, cy = g["Area"]["X"] * img.width, g["Area"]["Y"] * img.height
        inside = [
            i for i, (x, y, w, h) in enumerate(faces) if x <= cx <= x + w and y <= cy <= y + h
        ]
        assert len(inside) == 1
    named = {
        f["identity"]["name"]: f["box"] for rec in ident for f in rec["faces"] if f.get("identity")
    }
    for g in meta["RegionInfo"]["RegionList"]:
        if g.get("Name"):
            x, y, w, h = named[g["Name"]]
            assert abs(g["Area"]["X"] * img.width - (x + w / 2)) < 2
            assert abs(g["Area"]["Y"] * img.height - (y + h / 2)) < 2
    mp = exif_json(new / "obama1.jpg.xmp", "-XMP-MP:all")["RegionInfoMP"]["Regions"]
    assert [m.get("PersonDisplayName") for m in mp] == ["Barack Obama"]

    # a re-run does not duplicate regions
    r = run("identify", str(new), "-d", str(db), "--write-xmp", "--xmp-mp", "-j", "1")
    assert r.returncode == 0, r.stderr
    assert names_left_to_right(new / "obama1.jpg") == ["Barack Obama"]
    mp = exif_json(new / "obama1.jpg.xmp", "-XMP-MP:all")["RegionInfoMP"]["Regions"]
    assert len(mp) == 1

    # facekit's own regions (its guesses, MWG and MP) are never enrolled back as tags
    gen = (db / "CURRENT").read_text()
    r = run("import-xmp", str(new), "-d", str(db), "--format", "json", "-j", "1")
    assert r.returncode == 1, r.stderr  # no tagged face found
    rep = json.loads(r.stdout)
    assert rep["enrolled"] == 0 and rep["regions"] == 0 and rep["tagged"] == 0
    # named: obama1, alex_lacamoire1, johnsnow_test1, kit_with_rose (2), obama_and_biden (2)
    assert rep["facekit_regions"] == 7
    assert (db / "CURRENT").read_text() == gen


def test_name_mismatch_and_person_folders_combine(tagged, tmp_path, fr_examples):
    """A people folder (ids = folder names, names from people.json) and XMP tags feed one
    database; a tag naming the wrong person is reported as a name mismatch."""
    people = tmp_path / "people"
    train = fr_examples / "knn_examples" / "train"
    for p in ("obama", "biden"):
        shutil.copytree(train / p, people / p)
    (people / "people.json").write_text(json.dumps({"obama": "Barack Obama", "biden": "Joe Biden"}))
    db = tmp_path / "faces.db"
    r = run("build-index", str(people), "-d", str(db), "-j", "1")
    assert r.returncode == 0, r.stderr

    album = tmp_path / "album"
    album.mkdir()
    wrong = album / "wrong.jpg"
    shutil.copy(fr_examples / "obama.jpg", wrong)
    img = load_image(wrong)
    (face,) = faces_of(wrong)
    tag(wrong, [("Joe Biden", with_margin(face, img.width, img.height))])
    kit = album / "kit.jpg"
    shutil.copy(train / "kit_harington" / "john1.jpeg", kit)
    img = load_image(kit)
    face = max(faces_of(kit), key=lambda b: b[2] * b[3])
    tag(kit, [("Kit Harington", with_margin(face, img.width, img.height))], "sidecar")

    r = run("import-xmp", str(album), "-d", str(db), "--format", "json", "-j", "1")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    # "Joe Biden" maps to the folder person "biden" (same name), Kit is new
    assert rep["people"] == {"biden": 1, "kit-harington": 1}
    assert rep["new_people"] == ["kit-harington"]
    (m,) = rep["mismatches"]
    assert (m["name"], m["person"], m["db_person"]) == ("Joe Biden", "biden", "obama")
    assert m["confidence"] > 50
    assert "name mismatch: tagged 'Joe Biden'" in r.stderr

    # the enrolled faces survive a build-index run over the people folder
    r = run("build-index", str(people), "-d", str(db), "-j", "1", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["persons"] == 3


def test_in_place_and_option_errors(tmp_path, fr_examples, tagged):
    db = tmp_path / "faces.db"
    assert run("import-xmp", str(tagged), "-d", str(db), "-q", "-j", "1").returncode == 0
    photo = tmp_path / "o.jpg"
    shutil.copy(fr_examples / "knn_examples" / "test" / "obama1.jpg", photo)
    r = run("identify", str(photo), "-d", str(db), "--in-place")
    assert r.returncode == 2 and "need --write-xmp" in r.stderr
    r = run("identify", str(photo), "-d", str(db), "--write-xmp", "--in-place")
    assert r.returncode == 0, r.stderr
    assert not Path(f"{photo}.xmp").exists()
    regions = exif_json(photo, "-XMP-mwg-rs:all")["RegionInfo"]["RegionList"]
    assert [g.get("Name") for g in regions] == ["Barack Obama"]
    tif = tmp_path / "t.tif"
    Image.open(photo).save(tif)
    r = run("identify", str(tif), "-d", str(db), "--write-xmp", "--in-place")
    assert r.returncode == 3 and "supports JPEG and PNG" in r.stderr


def test_import_without_tags_exits_1(tmp_path, fr_examples):
    assert EXIFTOOL
    photo = tmp_path / "plain.jpg"
    shutil.copy(fr_examples / "obama.jpg", photo)
    r = run("import-xmp", str(photo), "-d", str(tmp_path / "db"))
    assert r.returncode == 1, r.stderr
    assert "0 faces enrolled" in r.stderr and not (tmp_path / "db").exists()


def test_import_into_an_encrypted_database(tmp_path, fr_examples, tagged):
    people = tmp_path / "people"
    shutil.copytree(fr_examples / "knn_examples" / "train" / "obama", people / "obama")
    db = tmp_path / "enc.db"
    env = {**os.environ, "FACEKIT_KEY": "correct horse battery staple"}

    def run_env(*args: str, key: dict) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "facekit", *args],
            capture_output=True,
            text=True,
            env=key,
            timeout=300,
        )

    r = run_env("build-index", str(people), "-d", str(db), "--encrypt", "-j", "1", key=env)
    assert r.returncode == 0, r.stderr
    no_key = {k: v for k, v in env.items() if k != "FACEKIT_KEY"}
    r = run_env("import-xmp", str(tagged), "-d", str(db), "-j", "1", key=no_key)
    assert r.returncode == 5, r.stderr
    r = run_env("import-xmp", str(tagged), "-d", str(db), "-j", "1", "--format", "json", key=env)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["enrolled"] == 9
    # the folder person "obama" has no name, so the tag "Barack Obama" became its own person;
    # the database says those faces are "obama": name mismatches
    assert {(m["person"], m["db_person"]) for m in rep["mismatches"]} == {("barack-obama", "obama")}
    r = run_env("db", "info", "-d", str(db), "--format", "json", key=env)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    info = info[0] if isinstance(info, list) else info
    assert info["encrypted"] is True and info["persons"] == 6, info


def test_people_file_maps_names_and_already_stored_faces_are_mismatches(tmp_path, fr_examples):
    train = fr_examples / "knn_examples" / "train"
    people = tmp_path / "people"
    shutil.copytree(train / "obama", people / "obama")
    db = tmp_path / "faces.db"
    assert run("build-index", str(people), "-d", str(db), "-j", "1", "-q").returncode == 0
    # the folder photos themselves get tagged; a mapping file sends "Barack Obama" to potus44
    for photo in sorted((people / "obama").iterdir()):
        img = load_image(photo)
        face = max(faces_of(photo), key=lambda b: b[2] * b[3])
        tag(photo, [("Barack Obama", with_margin(face, img.width, img.height))], "sidecar")
    mapping = tmp_path / "map.csv"
    mapping.write_text("id,name\npotus44,Barack Obama\n")
    r = run(
        "import-xmp",
        str(people),
        "-d",
        str(db),
        "--people",
        str(mapping),
        "--format",
        "json",
        "-j",
        "1",
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    # the faces are stored already (as obama): not added again, each a name mismatch
    assert rep["enrolled"] == 0 and len(rep["skipped"]) == 2
    pairs = {(m["person"], m["db_person"], m["confidence"] is None) for m in rep["mismatches"]}
    assert ("potus44", "obama", True) in pairs and ("potus44", "obama", False) in pairs
    assert "is already stored as obama (obama)" in r.stderr
    r = run("import-xmp", str(people), "-d", str(db), "--people", str(tmp_path / "x.txt"))
    assert r.returncode == 3 and "no such file" in r.stderr


def test_tags_follow_people_merge_and_remove(tmp_path, fr_examples):
    """A tag naming a person merged away with `facekit people merge` enrols under the survivor
    (not as a new person); a tag naming a removed person is skipped and reported."""
    train = fr_examples / "knn_examples" / "train"
    people = tmp_path / "people"
    for p in ("obama", "biden", "kit_harington"):
        shutil.copytree(train / p, people / p)
    db = tmp_path / "faces.db"
    assert run("build-index", str(people), "-d", str(db), "-j", "1", "-q").returncode == 0
    assert run("people", "merge", "obama", "biden", "-d", str(db), "-q").returncode == 0
    assert run("people", "remove", "kit_harington", "-d", str(db), "-q").returncode == 0

    album = tmp_path / "album"
    album.mkdir()
    for name, src, pid in (
        ("Biden", fr_examples / "biden.jpg", "biden"),
        ("Kit", train / "kit_harington" / "john1.jpeg", "kit_harington"),
    ):
        photo = album / f"{name}.jpg"
        shutil.copy(src, photo)
        img = load_image(photo)
        face = max(faces_of(photo), key=lambda b: b[2] * b[3])
        tag(photo, [(pid, with_margin(face, img.width, img.height))], "sidecar")
    mapping = tmp_path / "map.csv"
    mapping.write_text("id,name\nbiden,biden\nkit_harington,kit_harington\n")
    r = run(
        "import-xmp", str(album), "-d", str(db), "--people", str(mapping), "-f", "json", "-j", "1"
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["people"] == {"obama": 1} and rep["new_people"] == []
    (skip,) = rep["skipped"]
    assert "kit_harington was removed" in skip["reason"], skip
