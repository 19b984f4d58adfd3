"""facekit.score: Score/Hits over identify and video records (hand-written per the contract)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from facekit.errors import InputError
from facekit.score import BadInput, read_records, score_records


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
    assert (t.photos, t.videos, t.ignored, t.bad) == (1, 1, 1, 1)  # error record; other shape
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


# --------------------------------------------------------------------------- bad input
GOOD = photo("good.jpg", face("ada", 90, 0.05, "Ada"))


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (
            photo(
                "x.jpg", {"identity": {"person": "bob", "confidence": 80}, "candidates": ["bob"]}
            ),
            "faces[0].candidates[0] is not an object",
        ),
        (
            photo("x.jpg", {"identity": {"person": "bob", "confidence": 80}, "candidates": [1]}),
            "faces[0].candidates[0] is not an object",
        ),
        (
            photo("x.jpg", {"identity": {"person": "bob", "distances": [0.1]}}),
            "faces[0].identity.distances is not an object",
        ),
        (
            photo("x.jpg", {"identity": {"person": "bob", "confidence": float("inf")}}),
            "faces[0].identity.confidence is not finite",
        ),
        (
            photo("x.jpg", {"identity": {"person": "bob", "confidence": float("nan")}}),
            "faces[0].identity.confidence is not finite",
        ),
        (photo("x.jpg", {"identity": {"person": "bob", "confidence": 120}}), "outside 0-100"),
        (photo("x.jpg", {"identity": {"person": "bob", "confidence": "high"}}), "not a number"),
        (photo("x.jpg", {"identity": {"person": 7}}), "identity.person is not a non-empty string"),
        (photo("x.jpg", {"identity": ["bob"]}), "identity is not an object or null"),
        (photo("x.jpg", "bob"), "faces[0] is not an object"),
        ({"source": "x.jpg", "faces": {"0": {}}}, "faces is not a list"),
        (
            video("v.mp4", {"person": "bob", "confidence": 80, "frames": float("inf")}),
            "people[0].frames is not finite",
        ),
        (
            video("v.mp4", {"person": "bob", "confidence": [80]}),
            "people[0].confidence is not a number",
        ),
        ({"source": "v.mp4", "people": {"bob": 1}}, "people is not a list"),
        ({"foo": 1}, "neither a photo"),
        (42, "not a result record (a JSON number"),
    ],
)
def test_bad_records_are_skipped_whole_and_reported(record, problem):
    bad: list[BadInput] = []
    t = score_records([GOOD, record, GOOD], bad)
    assert [r["person"] for r in t.rows()] == ["ada"] and t.rows()[0]["hits"] == 2
    assert t.bad == 1 and len(bad) == 1
    assert bad[0].where == "<records>[2]" and problem in bad[0].problem, bad[0]
    # a record is never half-counted: bob, named on a valid face beside the bad one, is absent
    mixed = photo(
        "m.jpg",
        face("bob", 80),
        *(
            record.get("faces", [])
            if isinstance(record, dict) and isinstance(record.get("faces"), list)
            else []
        ),
    )
    if mixed["faces"][1:]:
        assert "bob" not in {r["person"] for r in score_records([mixed]).rows()}


def test_reader_skips_bad_lines_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import facekit.score as score

    monkeypatch.setattr(score, "MAX_LINE_BYTES", 1000)
    good = json.dumps(GOOD)
    f = tmp_path / "r.ndjson"
    f.write_bytes(
        b"\xef\xbb\xbf"  # a byte-order mark is fine
        + good.encode()
        + b"\n{broken\n"
        + b'{"source": "'
        + b"x" * 5000
        + b'", "faces": []}\n'  # over the line limit
        + b"\xff\xfe\n"  # not UTF-8
        + b"[" * 200
        + b"]" * 200
        + b"\n"  # nested too deeply
        + good.encode()
        + b"\r\n"
    )
    (tmp_path / "empty.json").write_bytes(b"  \n")
    (tmp_path / "doc.json").write_text(json.dumps([GOOD, GOOD], indent=2)[:-30])  # truncated
    (tmp_path / "nothing").mkdir()
    bad: list[BadInput] = []
    recs = list(
        score.iter_records(
            [
                str(f),
                str(tmp_path / "empty.json"),
                str(tmp_path / "doc.json"),
                str(tmp_path / "nothing"),
                str(tmp_path / "nope.ndjson"),
            ],
            None,
            bad,
        )
    )
    assert [where for where, _ in recs] == [f"{f}:1", f"{f}:6"]
    got = [str(b).replace(str(tmp_path) + "/", "") for b in bad]
    assert got[0].startswith("r.ndjson:2: skipped line: not JSON")
    assert got[1] == "r.ndjson:3: skipped line: longer than 0 MB" or got[1].startswith(
        "r.ndjson:3: skipped line: longer"
    )
    assert got[2].startswith("r.ndjson:4: skipped line: not UTF-8")
    assert got[3] == "r.ndjson:5: skipped line: JSON nested more than 64 levels deep"
    assert got[4] == "empty.json: empty: no result records"
    assert got[5].startswith("doc.json: skipped file: not JSON")
    assert got[6].startswith("nothing: no result files")
    assert got[7] == "nope.ndjson: skipped: no such file"
    t = score.score_records(recs, bad)
    assert t.rows()[0]["hits"] == 2 and t.bad == 8


def test_reader_oversized_line_is_never_held_whole(tmp_path: Path):
    """A 50 MB line is skipped in bounded chunks (not parsed) and the next line still read."""
    import tracemalloc

    from facekit.score import MAX_LINE_BYTES, iter_records

    f = tmp_path / "big.ndjson"
    with open(f, "wb") as fh:
        fh.write(b'{"source": "')
        fh.write(b"x" * (MAX_LINE_BYTES * 3))
        fh.write(b'", "faces": []}\n' + json.dumps(GOOD).encode() + b"\n")
    bad: list[BadInput] = []
    tracemalloc.start()
    recs = list(iter_records([str(f)], None, bad))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert [r["source"] for _, r in recs] == ["good.jpg"]
    assert len(bad) == 1 and bad[0].where == f"{f}:1" and "longer than 16 MB" in bad[0].problem
    assert peak < 2.5 * MAX_LINE_BYTES, peak
