"""facekit.score: Score/Hits over identify and video records (hand-written per the contract)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from facekit.errors import InputError
from facekit.score import read_records, score_records


def face(
    person: str | None, conf: float = 90.0, dist: float = 0.05, name: str | None = None
) -> dict:
    cand = {
        "person": person or "zoe",
        "name": name,
        "confidence": conf,
        "distances": {"dlib": dist},
    }
    ident = (
        None
        if person is None
        else {"person": person, "name": name, "confidence": conf, "distances": {"dlib": dist}}
    )
    return {"box": [1, 2, 30, 30], "identity": ident, "candidates": [cand]}


def photo(source: str, *faces: dict) -> dict:
    return {"source": source, "faces": list(faces)}


def video(source: str, *people: dict) -> dict:
    return {"source": source, "duration": 60.0, "samples": 12, "people": list(people)}


def test_score_sums_best_confidence_per_photo():
    t = score_records(
        [
            photo(
                "a.jpg", face("ada", 90, 0.04, "Ada"), face("ada", 60, 0.08)
            ),  # counted once: 0.9
            photo("b.jpg", face("ada", 80, 0.06), face("bob", 99, 0.02, "Bob")),
            photo("c.jpg", face(None, 30)),  # unknown face: nothing
        ]
    )
    rows = {r["person"]: r for r in t.rows()}
    assert rows["ada"]["score"] == pytest.approx(1.7)
    assert rows["ada"]["hits"] == 2
    assert rows["ada"]["confidence"] == pytest.approx(85.0)
    assert rows["ada"]["distance_dlib"] == pytest.approx(0.05)
    assert rows["ada"]["name"] == "Ada"
    assert rows["bob"]["score"] == pytest.approx(0.99)
    assert [r["person"] for r in t.rows()] == ["ada", "bob"]  # sorted by score
    assert (t.records, t.photos, t.videos) == (3, 3, 0)
    assert t.columns == ["score", "hits", "confidence", "distance_dlib", "person", "name"]


def test_repeated_evidence_outranks_one_certain_hit():
    recs = [photo(f"{i}.jpg", face("ada", 80)) for i in range(3)] + [
        photo("x.jpg", face("bob", 99.9))
    ]
    assert [r["person"] for r in score_records(recs).rows()] == ["ada", "bob"]


def test_video_records_and_unknown_tracks():
    t = score_records(
        [
            video(
                "v.mp4",
                {
                    "person": "ada",
                    "name": "Ada",
                    "segments": [[0, 10]],
                    "frames": 3,
                    "confidence": 70,
                },
                {"person": None, "name": None, "segments": [], "frames": 2, "confidence": None},
                {"person": "unknown-1", "frames": 1, "confidence": None},
            ),
            photo("a.jpg", face("ada", 90)),
            {"source": "bad.jpg", "faces": [], "error": "cannot read"},
            {"something": "else"},
        ]
    )
    (row,) = t.rows()
    assert row["person"] == "ada" and row["hits"] == 2 and row["score"] == pytest.approx(1.6)
    assert (t.photos, t.videos, t.ignored) == (1, 1, 2)
    assert t.to_record()["people"][0]["frames"] == 3


def test_identity_without_confidence_uses_candidate():
    f = {
        "box": [0, 0, 1, 1],
        "identity": {"person": "ada"},
        "candidates": [{"person": "ada", "confidence": 75.0, "distances": {"dlib": 0.1}}],
    }
    (row,) = score_records([photo("a.jpg", f)]).rows()
    assert row["score"] == pytest.approx(0.75) and row["distance_dlib"] == pytest.approx(0.1)


def test_read_json_ndjson_folders_and_stdin(tmp_path: Path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "one.json").write_text(json.dumps([photo("a.jpg", face("ada"))]))
    (tmp_path / "r" / "sub").mkdir()
    (tmp_path / "r" / "sub" / "two.ndjson").write_text(
        json.dumps(photo("b.jpg", face("bob"))) + "\n\n" + json.dumps(video("v.mp4")) + "\n"
    )
    (tmp_path / "r" / "notes.txt").write_text("ignored")
    (tmp_path / "r" / "single.json").write_text(json.dumps(video("w.mp4")))
    recs = list(read_records([str(tmp_path / "r")]))
    assert [r["source"] for r in recs] == ["a.jpg", "w.mp4", "b.jpg", "v.mp4"]
    stdin = io.StringIO(json.dumps(photo("c.jpg")) + "\n")
    assert [r["source"] for r in read_records(["-"], stdin)] == ["c.jpg"]


def test_read_errors(tmp_path: Path):
    with pytest.raises(InputError, match="no such file"):
        list(read_records([str(tmp_path / "nope.json")]))
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"source": "a"}\n{oops\n')
    with pytest.raises(InputError, match=r"bad.ndjson:2"):
        list(read_records([str(bad)]))
