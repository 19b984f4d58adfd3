"""``facekit video`` end to end (CliRunner): JSON contract, formats, outputs, exit codes, sprites.

Uses a database built with ``facekit build-index`` from LFW photos in ../shared and the
slideshow of tests/test_video.py (Clinton 0-10 s and 30-40 s, Serena Williams 20-30 s).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from facekit.cli import app


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    from conftest import shared_dir
    from test_video import build_db, make_slideshow

    lfw = shared_dir() / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip(
            f"{lfw} not found: real-photo tests need the shared data folder (or FACEKIT_SHARED)"
        )
    if "video" not in [c.name for c in app.registered_commands]:
        pytest.skip("facekit video is not registered")
    tmp = tmp_path_factory.mktemp("clivideo")
    db = build_db(tmp, lfw)
    plan = [
        (0, 10, "Bill_Clinton"),
        (10, 20, None),
        (20, 30, "Serena_Williams"),
        (30, 40, "Bill_Clinton"),
    ]
    video = make_slideshow(tmp / "slides.mp4", lfw, plan)
    nobody = make_slideshow(tmp / "nobody.mp4", lfw, [(0, 6, None)])
    return {"db": db, "video": video, "nobody": nobody, "tmp": tmp, "lfw": lfw}


def run(*args: str):
    return CliRunner().invoke(app, ["video", *args])


def test_json_contract(setup, tmp_path: Path) -> None:
    res = run(
        str(setup["video"]),
        "-d",
        str(setup["db"]),
        "--format",
        "json",
        "--interval",
        "5",
        "--timeline",
        str(tmp_path / "t.png"),
        "--crops",
        str(tmp_path / "crops"),
        "--detections",
        str(tmp_path / "det.parquet"),
        "-q",
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    assert doc["source"] == str(setup["video"])
    assert doc["duration"] == pytest.approx(40) and doc["samples"] == 8
    people = {p["person"]: p for p in doc["people"]}
    assert set(people) == {"Bill_Clinton", "Serena_Williams"}
    bill = people["Bill_Clinton"]
    assert bill["segments"] == [[0, 5], [30, 35]] and bill["frames"] == 4
    assert 50 <= bill["confidence"] <= 100 and bill["name"] == "Bill_Clinton"  # id when no name
    assert people["Serena_Williams"]["segments"] == [[20, 25]]
    for key in (
        "person",
        "name",
        "segments",
        "frames",
        "confidence",
        "mean_confidence",
        "first_seen",
        "last_seen",
    ):
        assert key in bill
    assert Image.open(tmp_path / "t.png").size[0] == 1100
    crop = Image.open(tmp_path / "crops" / "slides" / "Bill_Clinton.jpg")
    assert crop.size == (112, 112)
    import pandas as pd

    det = pd.read_parquet(tmp_path / "det.parquet")
    assert len(det) == 6 and set(det.person) == {"Bill_Clinton", "Serena_Williams"}
    assert {"time", "x", "y", "w", "h", "confidence", "track"} <= set(det.columns)


def test_several_videos_csv_ndjson_and_bad_file(setup, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 1000)
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a.mp4").write_bytes(setup["video"].read_bytes())
    (folder / "notes.txt").write_text("not a video, and not picked up from a folder")
    res = run(
        str(folder),
        str(bad),
        str(setup["nobody"]),
        "-d",
        str(setup["db"]),
        "-f",
        "ndjson",
        "--sampling",
        "exact",
        "--interval",
        "10",
    )
    assert res.exit_code == 3, res.output  # the bad file; the others are still reported
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [Path(rec["source"]).name for rec in lines] == ["a.mp4", "nobody.mp4"]
    assert lines[1]["people"] == [] and lines[1]["samples"] == 1
    assert "broken.mp4" in res.stderr and "done: 3 videos" in res.stderr
    res = run(str(setup["video"]), str(setup["video"]), "-d", str(setup["db"]), "-f", "json", "-q")
    assert res.exit_code == 0 and isinstance(json.loads(res.stdout), list)
    res = run(str(setup["video"]), "-d", str(setup["db"]), "-f", "csv", "-q", "--frames", "4")
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows[0]["person"] == "Bill_Clinton" and rows[0]["segments"]


def test_exit_1_nobody_known_and_embed_crops(setup) -> None:
    res = run(str(setup["nobody"]), "-d", str(setup["db"]), "-f", "json", "-q")
    assert res.exit_code == 1, res.output
    assert json.loads(res.stdout)["people"] == []
    res = run(
        str(setup["video"]),
        "-d",
        str(setup["db"]),
        "-f",
        "json",
        "-q",
        "--embed-crops",
        "--start",
        "20",
        "--end",
        "30",
    )
    doc = json.loads(res.stdout)
    assert [p["person"] for p in doc["people"]] == ["Serena_Williams"]
    jpeg = base64.b64decode(doc["people"][0]["crop"])
    assert Image.open(io.BytesIO(jpeg)).format == "JPEG"


def test_min_confidence_makes_faces_unknown(setup) -> None:
    res = run(
        str(setup["video"]), "-d", str(setup["db"]), "-f", "json", "-q", "--min-confidence", "100"
    )
    assert res.exit_code == 1
    people = json.loads(res.stdout)["people"]
    assert people and all(p["person"].startswith("unknown-") and p["name"] is None for p in people)


def test_errors(setup, tmp_path: Path) -> None:
    res = run(str(setup["video"]), "-d", str(tmp_path / "nodb"))
    assert res.exit_code == 5 and "no face database" in res.stderr
    res = run(str(tmp_path / "missing.mp4"), "-d", str(setup["db"]), "-q")
    assert res.exit_code == 3
    res = run("-d", str(setup["db"]))
    assert res.exit_code == 2
    res = run(str(setup["video"]), "-d", str(setup["db"]), "--sprite", "x.jpg")
    assert res.exit_code == 2 and "--vtt" in res.stderr


def test_sprite(setup, tmp_path: Path) -> None:
    lfw = setup["lfw"]
    sheet = np.full((250, 1000, 3), 90, np.uint8)
    for k, who in enumerate(["Serena_Williams", None, None, "Serena_Williams"]):
        if who:
            sheet[:, k * 250 : (k + 1) * 250] = np.asarray(
                Image.open(lfw / who / f"{who}_0001.jpg").convert("RGB")
            )
    Image.fromarray(sheet).save(tmp_path / "scene_sprite.jpg", quality=95)
    cues = "".join(
        f"\n{k + 1}\n00:00:{k * 20:02d}.000 --> 00:00:{k * 20 + 20:02d}.000\n"
        f"scene_sprite.jpg#xywh={k * 250},0,250,250\n"
        for k in range(4)
    )
    (tmp_path / "scene_thumbs.vtt").write_text("WEBVTT\n" + cues)
    res = run(
        "--sprite",
        str(tmp_path / "scene_sprite.jpg"),
        "--vtt",
        str(tmp_path / "scene_thumbs.vtt"),
        "-d",
        str(setup["db"]),
        "-f",
        "json",
        "-q",
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["samples"] == 4 and doc["duration"] == 80
    assert doc["people"][0]["person"] == "Serena_Williams"
    assert doc["people"][0]["segments"] == [[0, 0], [60, 60]]  # 60 s gap > 2 x 20 s step


def test_help_has_example() -> None:
    res = CliRunner().invoke(app, ["video", "--help"])
    assert res.exit_code == 0 and "facekit video" in res.output and "--interval" in res.output
