"""Rendering: table, JSON, NDJSON and CSV from records and rows (golden strings inline)."""

from __future__ import annotations

import io
import json

import numpy as np

from facekit.facetable import face_rows, record_for
from facekit.render import Format, Renderer, render_rows, to_jsonable
from factories import make_result

ROWS = [
    {"source": "a.jpg", "face": 0, "distance": 0.123456789, "box": [1, 2, 3, 4]},
    {"source": "b,c.jpg", "face": 1, "distance": float("nan"), "box": None},
]


def test_to_jsonable():
    got = to_jsonable(
        {
            "a": np.float32(0.5),
            "b": np.array([1.0, np.nan]),
            "c": (np.int64(3), np.bool_(True)),
            1: float("inf"),
            "d": 1 / 3,
        }
    )
    assert got == {"a": 0.5, "b": [1.0, None], "c": [3, True], "1": None, "d": 0.333333}
    json.dumps(got, allow_nan=False)


def _render(fmt, records=(), rows_list=(), **kw):
    out = io.StringIO()
    r = Renderer(fmt, out, **kw)
    for rec, rows in zip(records, rows_list, strict=True):
        r.add(rec, rows)
    r.close()
    return out.getvalue()


def test_ndjson_streams_one_line_per_record_nan_null():
    recs = [{"source": "a.jpg", "d": float("nan")}, {"source": "b.jpg", "d": np.float32(0.25)}]
    assert _render(Format.ndjson, recs, [[], []]) == (
        '{"source": "a.jpg", "d": null}\n{"source": "b.jpg", "d": 0.25}\n'
    )


def test_json_document_and_wrap():
    recs = [{"x": np.arange(2)}]
    assert json.loads(_render(Format.json, recs, [[]])) == [{"x": [0, 1]}]
    wrapped = _render(Format.json, recs, [[]], wrap=lambda rs: {"results": rs, "n": len(rs)})
    assert json.loads(wrapped) == {"results": [{"x": [0, 1]}], "n": 1}
    assert _render(Format.json) == "[]\n"


def test_csv_header_quoting_nan_lists():
    got = _render(Format.csv, [None], [ROWS])
    assert got == ('source,face,distance,box\na.jpg,0,0.1235,"[1,2,3,4]"\n"b,c.jpg",1,nan,\n')


def test_csv_column_order_and_extra_keys_ignored():
    got = _render(Format.csv, [None], [ROWS], columns=["face", "source"])
    assert got.splitlines() == ["face,source", "0,a.jpg", '1,"b,c.jpg"']


def test_table_plain_when_not_a_terminal():
    got = _render(
        Format.table, [None], [ROWS[:1]], columns=["source", "face", "distance"], title="faces"
    )
    assert "faces" in got and "a.jpg" in got and "0.1235" in got and "\x1b[" not in got
    out = io.StringIO()
    render_rows([], out, title="faces")
    assert out.getvalue() == "faces: (no rows)\n"


def test_face_records_and_rows_of_a_result():
    result = make_result(2, ("dlib", "mobilefacenet"))
    rec = record_for(result)
    assert rec["source"] == "photo.jpg" and rec["error"] is None and len(rec["faces"]) == 2
    face = rec["faces"][1]
    assert face["box"] == [10.0, 20.0, 51.0, 61.0]
    assert np.asarray(face["landmarks"]).shape == (5, 2)
    assert (
        set(face["embeddings"]) == {"dlib", "mobilefacenet"}
        and len(face["embeddings"]["dlib"]) == 128
    )
    assert rec["models"] == result.embeddings.fingerprints
    line = json.loads(json.dumps(to_jsonable(rec), allow_nan=False))
    assert line["faces"][0]["det_score"] == 0.9
    rows = face_rows(result)
    assert [r["face"] for r in rows] == [0, 1]
    assert rows[0]["emb_dlib"].shape == (128,) and rows[0]["landmarks"].shape == (10,)
    assert "emb_dlib" not in face_rows(result, with_embeddings=False)[0]


def test_table_never_crops_columns_at_80():
    """Columns that do not fit the terminal fold instead of being cropped away (db info on 80
    columns showed 7 of 15 fields; identify lost its note); one wide record goes vertical."""
    info = {f"field_{i:02d}": f"value-{i:02d}" for i in range(15)}
    out = io.StringIO()
    render_rows([info], out, width=80)
    got = out.getvalue()
    assert max(len(line) for line in got.splitlines()) <= 80
    for k, v in info.items():
        assert k in got and v in got, (k, got)
    faces = [
        {
            "source": f"album/photo_{i}.jpg",
            "face": i,
            "person": "Barack H. Obama (obama)",
            "confidence": 99,
            "note": "nearest: obama (8)" if i else "",
        }
        for i in range(3)
    ]
    out = io.StringIO()
    render_rows(faces, out, width=70, columns=list(faces[0]))
    got = out.getvalue()
    assert max(len(line) for line in got.splitlines()) <= 70
    assert "note" in got and "nearest" in got and "99" in got, got
