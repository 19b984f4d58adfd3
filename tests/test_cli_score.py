"""`facekit score` end to end (hand-written identify/video outputs in tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from facekit.cli import app
from test_score import face, photo, video

runner = CliRunner()


def write_results(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    # identify --format json: a list of photo records
    (folder / "identify.json").write_text(
        json.dumps(
            [
                photo("s1.jpg", face("ada", 95, 0.03, "Ada"), face(None, 20)),
                photo("s2.jpg", face("ada", 85, 0.05, "Ada"), face("bob", 70, 0.09, "Bob")),
            ]
        )
    )
    # identify --format ndjson
    (folder / "more.ndjson").write_text(json.dumps(photo("s3.jpg", face("bob", 65, 0.1))) + "\n")
    # video --format json: one object
    (folder / "video.json").write_text(
        json.dumps(
            video(
                "clip.mp4",
                {
                    "person": "ada",
                    "name": "Ada",
                    "segments": [[0, 5]],
                    "frames": 2,
                    "confidence": 80,
                },
            )
        )
    )
    return folder


def test_score_json(tmp_path: Path):
    res = runner.invoke(app, ["score", str(write_results(tmp_path)), "-f", "json", "-q"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["photos"], doc["videos"]) == (3, 1)
    ada, bob = doc["people"]
    assert ada["person"] == "ada" and ada["hits"] == 3 and abs(ada["score"] - 2.6) < 1e-9
    assert bob["person"] == "bob" and bob["hits"] == 2 and abs(bob["score"] - 1.35) < 1e-9


def test_score_csv_table_and_stdin(tmp_path: Path):
    folder = write_results(tmp_path)
    res = runner.invoke(app, ["score", str(folder), "-f", "csv", "-q"])
    assert res.exit_code == 0
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "score,hits,confidence,distance_dlib,person,name"
    assert lines[1].startswith("2.6,3,") and lines[1].endswith(",ada,Ada")
    res = runner.invoke(
        app, ["score", "-", "-f", "table"], input=(folder / "more.ndjson").read_text()
    )
    assert res.exit_code == 0 and "bob" in res.stdout


def test_score_nothing_named_and_bad_input(tmp_path: Path):
    empty = tmp_path / "e.ndjson"
    empty.write_text(json.dumps(photo("a.jpg", face(None))) + "\n")
    assert runner.invoke(app, ["score", str(empty), "-q", "-f", "json"]).exit_code == 1
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    res = runner.invoke(app, ["score", str(bad)])
    assert res.exit_code == 3
    assert "bad.json" in res.output
