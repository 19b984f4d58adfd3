"""`facekit people` through the real command line, on a database built from
face_recognition's example photos (../shared)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory, fr_examples):
    root = tmp_path_factory.mktemp("clipeople")
    people = shutil.copytree(fr_examples / "knn_examples" / "train", root / "people")
    r = run("build-index", str(people), "-d", str(root / "db"), "-j", "1", "-q")
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture
def ws(built, tmp_path):
    people = shutil.copytree(built / "people", tmp_path / "people")
    db = shutil.copytree(built / "db", tmp_path / "db")
    return people, str(db)


def ndjson(r: subprocess.CompletedProcess) -> list[dict]:
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def identify(db: str, photo) -> list:
    r = run("identify", str(photo), "-d", db, "-f", "ndjson")
    [rec] = ndjson(r) if r.returncode == 0 else [json.loads(r.stdout)]
    return [f["identity"] and f["identity"]["person"] for f in rec["faces"]]


def test_list_show_formats(ws):
    _, db = ws
    rows = ndjson(run("people", "list", "-d", db, "-f", "ndjson"))
    assert [r["person"] for r in rows] == [
        "alex_lacamoire",
        "biden",
        "kit_harington",
        "obama",
        "rose_leslie",
    ]
    assert {"person", "name", "faces", "photos", "added"} <= set(rows[0])
    r = run("people", "list", "-d", db, "-f", "csv")
    table = list(csv.DictReader(io.StringIO(r.stdout)))
    assert table[3]["person"] == "obama" and table[3]["faces"] == "2"
    r = run("people", "list", "-d", db, "-f", "table")
    assert r.returncode == 0 and "kit_harington" in r.stdout
    doc = json.loads(run("people", "show", "obama", "-d", db, "-f", "json").stdout)
    assert len(doc["faces"]) == 2 and len(doc["sources"]) == 2
    assert all(os.path.isfile(s) for s in doc["sources"])
    r = run("people", "show", "nobody", "-d", db)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no person 'nobody'" in r.stderr


def test_identify_reports_gallery_face_and_edits_follow(ws, fr_examples):
    _, db = ws
    rose = fr_examples / "knn_examples" / "test" / "kit_with_rose.jpg"
    r = run("identify", str(rose), "-d", db, "-f", "ndjson")
    [rec] = ndjson(r)
    who = sorted(f["identity"]["person"] for f in rec["faces"])
    assert who == ["kit_harington", "rose_leslie"]
    face_ids = {f["identity"]["person"]: f["identity"]["gallery_face"] for f in rec["faces"]}
    shown = json.loads(run("people", "show", "rose_leslie", "-d", db, "-f", "json").stdout)
    assert face_ids["rose_leslie"] in [f["face"] for f in shown["faces"]]

    r = run("people", "rename", "kit_harington", "Kit Harington", "-d", db, "-f", "json")
    ch = json.loads(r.stdout)
    assert r.returncode == 0 and ch["changed"] and not ch["recalibrated"]
    r = run("people", "rename", "kit_harington", "Kit Harington", "-d", db, "-f", "json")
    assert r.returncode == 0 and not json.loads(r.stdout)["changed"]
    assert "unchanged" in r.stderr

    r = run("people", "merge", "kit_harington", "rose_leslie", "-d", db, "-f", "json")
    ch = json.loads(r.stdout)
    assert ch["changed"] and ch["recalibrated"] and ch["faces"] == 2
    assert "kit_harington is kept" in ch["message"]
    [rec] = ndjson(run("identify", str(rose), "-d", db, "-f", "ndjson"))
    # both faces now match the merged person, who is named once per photo: the stronger
    # match keeps the name, the other is unknown with the merged person first among its
    # candidates
    assert [f["identity"]["name"] for f in rec["faces"] if f["identity"]] == ["Kit Harington"]
    assert {f["candidates"][0]["person"] for f in rec["faces"]} == {"kit_harington"}
    assert run("people", "merge", "kit_harington", "rose_leslie", "-d", db).returncode == 0

    # move one of Obama's gallery faces to Biden, by the id identify reports
    obama = fr_examples / "obama.jpg"
    [rec] = ndjson(run("identify", str(obama), "-d", db, "-f", "ndjson"))
    gface = rec["faces"][0]["identity"]["gallery_face"]
    r = run("people", "move-face", str(gface), "--to", "biden", "-d", db)
    assert r.returncode == 0 and f"face {gface} moved from obama to biden" in r.stderr
    assert gface in [
        f["face"]
        for f in json.loads(run("people", "show", "biden", "-d", db, "-f", "json").stdout)["faces"]
    ]
    r = run("people", "move-face", "424242", "--to", "biden", "-d", db)
    assert r.returncode == 2 and "no face 424242" in r.stderr

    alex = fr_examples / "knn_examples" / "train" / "alex_lacamoire" / "img1.jpg"
    assert identify(db, alex) == ["alex_lacamoire"]
    r = run("people", "remove", "alex_lacamoire", "-d", db)
    assert r.returncode == 0
    assert identify(db, alex) == [None]
    r = run("people", "remove", "alex_lacamoire", "-d", db)
    assert r.returncode == 0 and "already removed" in r.stderr


def test_build_index_does_not_undo(ws):
    people, db = ws
    assert run("people", "rename", "obama", "Barack Obama", "-d", db).returncode == 0
    assert run("people", "merge", "kit_harington", "rose_leslie", "-d", db).returncode == 0
    assert run("people", "remove", "alex_lacamoire", "-d", db).returncode == 0
    (people / "people.json").write_text('{"obama": "Someone Else"}')
    r = run("build-index", str(people), "-d", db, "-j", "1", "-f", "json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert any("alex_lacamoire" in s["source"] for s in rep["skipped"])
    # a log warning is one line (Rich's log handler wrapped it at 80 columns on a pipe)
    assert any(
        line.startswith("warning: obama: the people file names them 'Someone Else'; keeping")
        and line.rstrip().endswith("changes it)")
        for line in r.stderr.splitlines()
    ), r.stderr
    rows = {r["person"]: r for r in ndjson(run("people", "list", "-d", db, "-f", "ndjson"))}
    assert sorted(rows) == ["biden", "kit_harington", "obama"]
    assert rows["obama"]["name"] == "Barack Obama" and rows["kit_harington"]["faces"] == 4
    assert run("people", "restore", "alex_lacamoire", "-d", db).returncode == 0
    # restoring twice (before the build-index run that enrols it) changes nothing, exit 0
    r = run("people", "restore", "alex_lacamoire", "-d", db)
    assert r.returncode == 0 and "unchanged: alex_lacamoire is already restored" in r.stderr
    assert run("build-index", str(people), "-d", db, "-j", "1", "-q").returncode == 0
    rows = {r["person"] for r in ndjson(run("people", "list", "-d", db, "-f", "ndjson"))}
    assert "alex_lacamoire" in rows


def test_import_of_own_export_says_it_pins_names(ws, tmp_path):
    """Importing the export back pins the names (a new generation): the message says so,
    instead of a bare "matches the database" that reads like a no-op."""
    people, db = ws
    (people / "people.json").write_text('{"obama": "Barack Obama"}')
    assert run("build-index", str(people), "-d", db, "-j", "1", "-q").returncode == 0
    (tmp_path / "named.csv").write_text("id,name\nobama,Barack Obama\n")
    r = run("people", "import", str(tmp_path / "named.csv"), "-d", db)
    assert r.returncode == 0
    assert "names of 1 person are now kept over people.json" in r.stderr, r.stderr
    r = run("people", "import", str(tmp_path / "named.csv"), "-d", db)
    assert r.returncode == 0 and r.stderr.startswith("unchanged:"), r.stderr


def test_export_import(ws, tmp_path):
    _, db = ws
    out = tmp_path / "people.csv"
    r = run("people", "export", "-o", str(out), "-d", db)
    assert r.returncode == 0 and out.read_text().startswith("id,name\n")
    r = run("people", "export", "-d", db, "-f", "json")
    assert [p["id"] for p in json.loads(r.stdout)][:2] == ["alex_lacamoire", "biden"]
    out.write_text("id,name,team\nbiden,Joe Biden,blue\n")
    r = run("people", "import", str(out), "-d", db, "-f", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["people"] == ["biden"]
    doc = json.loads(run("people", "show", "biden", "-d", db, "-f", "json").stdout)
    assert (doc["name"], doc["extra"]) == ("Joe Biden", {"team": "blue"})
    bad = tmp_path / "bad.csv"
    bad.write_text("id,name\nbiden,Joe\nnobody,X\n")
    r = run("people", "import", str(bad), "-d", db)
    assert r.returncode == 3 and r.stderr.count("\n") == 1
    assert str(bad) in r.stderr and "entry 'nobody'" in r.stderr
    doc = json.loads(run("people", "show", "biden", "-d", db, "-f", "json").stdout)
    assert doc["name"] == "Joe Biden"  # nothing changed


def test_encrypted(tmp_path, fr_examples):
    people = shutil.copytree(fr_examples / "knn_examples" / "train", tmp_path / "people")
    db = str(tmp_path / "db")
    key = {"FACEKIT_KEY": "k3y"}
    r = run("build-index", str(people), "-d", db, "-j", "1", "-q", "--encrypt", env=key)
    assert r.returncode == 0, r.stderr
    r = run("people", "list", "-d", db)
    assert r.returncode == 5 and "FACEKIT_KEY" in r.stderr
    r = run("people", "merge", "biden", "obama", "-d", db, env={"FACEKIT_KEY": "nope"})
    assert r.returncode == 5
    r = run("people", "merge", "biden", "obama", "-d", db, env=key)
    assert r.returncode == 0, r.stderr
    assert run("build-index", str(people), "-d", db, "-j", "1", "-q", env=key).returncode == 0
    r = run("people", "list", "-d", db, "-f", "ndjson", env=key)
    assert "obama" not in [p["person"] for p in ndjson(r)]
    r = run("db", "info", "-d", db, "-f", "json", env=key)
    assert json.loads(r.stdout)["encrypted"] is True


def test_help_has_examples():
    for cmd in ("list", "show", "rename", "merge", "remove", "restore", "move-face", "export"):
        r = run("people", cmd, "--help")
        assert r.returncode == 0 and "Example" in r.stdout, cmd


def test_from_embeddings_keeps_edits_and_face_ids(tmp_path, fr_examples):
    people = shutil.copytree(fr_examples / "knn_examples" / "train", tmp_path / "people")
    table, db = str(tmp_path / "t.parquet"), str(tmp_path / "db")
    assert run("embed", str(people), "-o", table, "-j", "1", "-q").returncode == 0
    r = run("build-index", "--from-embeddings", table, "-d", db, "-q")
    assert r.returncode == 0, r.stderr
    before = json.loads(run("people", "show", "obama", "-d", db, "-f", "json").stdout)
    assert run("people", "merge", "kit_harington", "rose_leslie", "-d", db).returncode == 0
    assert run("people", "remove", "alex_lacamoire", "-d", db).returncode == 0
    r = run("build-index", "--from-embeddings", table, "-d", db, "-q")
    assert r.returncode == 0, r.stderr
    rows = {p["person"]: p for p in ndjson(run("people", "list", "-d", db, "-f", "ndjson"))}
    assert sorted(rows) == ["biden", "kit_harington", "obama"]
    assert rows["kit_harington"]["faces"] == 4
    after = json.loads(run("people", "show", "obama", "-d", db, "-f", "json").stdout)
    assert [f["face"] for f in after["faces"]] == [f["face"] for f in before["faces"]]
