"""`facekit cluster` and `facekit enroll` end to end on real photos (lfw-dev, dlib)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekit.cli import app

runner = CliRunner()

PEOPLE = ["Bill_Clinton", "Britney_Spears", "Andy_Roddick", "Condoleezza_Rice"]


@pytest.fixture
def album(lfw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path/album/<person>/<photo>: 3 photos of each of 4 people (copies, relative paths)."""
    monkeypatch.chdir(tmp_path)
    for p in PEOPLE:
        (tmp_path / "album" / p).mkdir(parents=True)
        for i in range(1, 4):
            shutil.copy(lfw / p / f"{p}_{i:04d}.jpg", tmp_path / "album" / p)
    return tmp_path / "album"


def known_db(lfw: Path, tmp_path: Path) -> Path:
    """``tmp_path/db``: a database of one person (Carlos_Moya, 2 photos), built in the
    current folder (``tmp_path``) with default settings."""
    gallery = tmp_path / "gallery" / "Carlos_Moya"
    gallery.mkdir(parents=True)
    for i in (1, 2):
        shutil.copy(lfw / "Carlos_Moya" / f"Carlos_Moya_{i:04d}.jpg", gallery)
    assert runner.invoke(app, ["build-index", "gallery", "-d", "db", "-q"]).exit_code == 0
    return tmp_path / "db"


def person_of(member: dict) -> str:
    return Path(member["source"]).parent.name


def test_cluster_json_contract_sheets_and_stable_ids(album: Path, lfw: Path, tmp_path: Path):
    res = runner.invoke(
        app, ["cluster", "album", "-o", "c.json", "-f", "json", "-q", "--sheets", "sheets"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc == json.loads((tmp_path / "c.json").read_text())
    assert (tmp_path / "c.faces.parquet").exists()
    assert len(doc["clusters"]) == len(PEOPLE)
    first_ids = {}
    for c in doc["clusters"]:
        assert c["size"] == len(c["members"]) == 3
        assert {person_of(m) for m in c["members"]} == {person_of(c["members"][0])}
        for m in c["members"]:
            assert m["source"].startswith("album/") and len(m["box"]) == 4
        assert c["representative"] in c["members"] and c["cohesion"] > 2
        first_ids[person_of(c["members"][0])] = c["id"]
    assert isinstance(doc["noise"], list)
    assert sorted(p.name for p in (tmp_path / "sheets").glob("*.png")) == sorted(
        f"{c['id']}.png" for c in doc["clusters"]
    )
    # Each sheet has a legend: tile number and SOURCE#FACE (what `enroll --exclude` takes).
    assert sorted(p.name for p in (tmp_path / "sheets").glob("*.txt")) == sorted(
        f"{c['id']}.txt" for c in doc["clusters"]
    )

    # Add a new person whose folder sorts first and more photos of a known one: ids stay.
    (album / "Abdullah_Gul").mkdir()
    for i in range(1, 4):
        shutil.copy(lfw / "Abdullah_Gul" / f"Abdullah_Gul_{i:04d}.jpg", album / "Abdullah_Gul")
    shutil.copy(lfw / "Bill_Clinton" / "Bill_Clinton_0004.jpg", album / "Bill_Clinton")
    res = runner.invoke(app, ["cluster", "album", "-o", "c.json", "-f", "json", "-q"])
    assert res.exit_code == 0, res.output
    doc2 = json.loads(res.stdout)
    ids2 = {person_of(c["members"][0]): c["id"] for c in doc2["clusters"]}
    for p, cid in first_ids.items():
        assert ids2[p] == cid
    assert ids2["Abdullah_Gul"] == "c-0005"
    bill = next(c for c in doc2["clusters"] if c["id"] == first_ids["Bill_Clinton"])
    assert bill["size"] == 4


def test_cluster_table_csv_and_nothing_found(album: Path, tmp_path: Path):
    res = runner.invoke(app, ["cluster", "album/Bill_Clinton", "-f", "csv", "-q"])
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("id,size,") and lines[1].startswith("c-0001,3,")
    one = runner.invoke(
        app, ["cluster", "album/Bill_Clinton/Bill_Clinton_0001.jpg", "-f", "json", "-q"]
    )
    assert one.exit_code == 1
    doc = json.loads(one.stdout)
    assert doc["clusters"] == [] and len(doc["noise"]) == 1
    bad = runner.invoke(app, ["cluster", "album", "--method", "kmeans", "-q"])
    assert bad.exit_code == 2


def test_cluster_reuses_embed_table(album: Path, tmp_path: Path):
    assert runner.invoke(app, ["embed", "album", "-o", "faces.parquet", "-q"]).exit_code == 0
    res = runner.invoke(app, ["cluster", "faces.parquet", "-f", "json", "-q"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["clusters"]) == len(PEOPLE)


def test_enroll_then_identify_round_trip(album: Path, lfw: Path, tmp_path: Path):
    pytest.importorskip(
        "facekit.database", reason="needs facekit.database (build-index / Database)"
    )
    pytest.importorskip("facekit.identify", reason="needs facekit.identify")
    known_db(lfw, tmp_path)
    res = runner.invoke(
        app, ["cluster", "album", "-o", "c.json", "-d", "db", "--suggest", "-f", "json", "-q"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    for c in doc["clusters"]:  # nobody in the album is known yet
        assert all((s["confidence"] or 0) < 50 for s in c["suggestions"])
    bill = next(c for c in doc["clusters"] if person_of(c["members"][0]) == "Bill_Clinton")
    excluded = bill["members"][2]["source"]
    res = runner.invoke(
        app,
        [
            "enroll",
            bill["id"],
            "--name",
            "Bill Clinton",
            "--id",
            "bill",
            "-d",
            "db",
            "--clusters",
            "c.json",
            "--exclude",
            f"{excluded}#0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "enrolled 2 faces" in res.output
    # the same command again stores nothing twice (issue 10 item 3)
    from facekit.database import Database

    n_faces = Database.open("db").n_faces
    res = runner.invoke(
        app,
        [
            "enroll",
            bill["id"],
            "--name",
            "Bill Clinton",
            "--id",
            "bill",
            "-d",
            "db",
            "--clusters",
            "c.json",
            "--exclude",
            f"{excluded}#0",
        ],
    )
    assert res.exit_code == 0 and "enrolled 0 faces" in res.output, res.output
    assert "2 already in the database" in res.output
    assert Database.open("db").n_faces == n_faces
    saved = next(
        c for c in json.loads(Path("c.json").read_text())["clusters"] if c["id"] == bill["id"]
    )
    assert (saved["person"], saved["name"], saved["enrolled"]) == ("bill", "Bill Clinton", 2)
    enrolled = Database.open("db").faces.query("origin == 'enrolled'")
    assert len(enrolled) == 2 and all(isinstance(c, bytes) for c in enrolled.crop)
    probe = lfw / "Bill_Clinton" / "Bill_Clinton_0006.jpg"
    res = runner.invoke(app, ["identify", str(probe), "-d", "db", "-f", "json", "-q"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    rec = out[0] if isinstance(out, list) else out
    assert rec["faces"][0]["identity"]["person"] == "bill"
    # A re-run keeps the name, and --suggest now points the cluster at the enrolled person.
    res = runner.invoke(
        app, ["cluster", "album", "-o", "c.json", "-d", "db", "--suggest", "-f", "json", "-q"]
    )
    again = next(c for c in json.loads(res.stdout)["clusters"] if c["id"] == bill["id"])
    assert (again["person"], again["name"]) == ("bill", "Bill Clinton")
    assert (
        again["suggestions"][0]["person"] == "bill" and again["suggestions"][0]["confidence"] > 50
    )
    # unknown cluster id: usage error; everything excluded: nothing to do
    assert (
        runner.invoke(
            app, ["enroll", "c-9999", "--id", "x", "-d", "db", "--clusters", "c.json"]
        ).exit_code
        == 2
    )
    assert (
        runner.invoke(
            app,
            [
                "enroll",
                bill["id"],
                "--id",
                "x",
                "-d",
                "db",
                "--clusters",
                "c.json",
                "-x",
                "album/Bill_Clinton",
            ],
        ).exit_code
        == 1
    )


def test_video_sheets_and_enroll(shared: Path, lfw: Path, tmp_path: Path, monkeypatch):
    """Faces sampled from a video: the contact sheet decodes each face's instant (tiles are
    real crops, the legend gives the time) and `enroll` stores a crop cut from that frame."""
    import numpy as np
    from PIL import Image

    from facekit.database import Database

    monkeypatch.chdir(tmp_path)
    shutil.copy(shared / "videos" / "short_hamilton_clip.mp4", tmp_path / "clip.mp4")
    known_db(lfw, tmp_path)
    res = runner.invoke(
        app,
        ["cluster", "clip.mp4", "--interval", "1", "-o", "c.json", "--sheets", "sh", "-q"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(Path("c.json").read_text())
    big = doc["clusters"][0]
    assert big["size"] >= 3 and all(m["time"] is not None for m in big["members"])
    legend = (tmp_path / "sh" / f"{big['id']}.txt").read_text().splitlines()
    assert len(legend) == big["size"]
    for line, m in zip(legend, big["members"], strict=True):
        k, tag, t = line.split("\t")
        assert tag == f"clip.mp4#{m['face']}" and t == f"{m['time']:.2f}s"
    sheet = np.asarray(Image.open(tmp_path / "sh" / f"{big['id']}.png").convert("L"))
    first_tile = sheet[20 : 20 + 112, 0:112]  # below the 20 px header
    assert first_tile.std() > 10  # a decoded face, not the blank tile of an unreadable frame
    res = runner.invoke(
        app, ["enroll", big["id"], "--name", "Hamilton", "-d", "db", "--clusters", "c.json"]
    )
    assert res.exit_code == 0 and f"enrolled {big['size']} faces" in res.output, res.output
    enrolled = Database.open("db").faces.query("origin == 'enrolled'")
    assert len(enrolled) == big["size"]
    assert all(isinstance(c, bytes) and len(c) > 1000 for c in enrolled.crop)
