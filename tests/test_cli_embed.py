"""``facekit embed`` end to end on real photos (in-process through Typer's CliRunner)."""

from __future__ import annotations

import csv
import io
import json
import shutil

import pytest
from typer.testing import CliRunner

from facekit.cli import app
from facekit.facetable import FaceTable

PHOTOS = [
    "Bill_Clinton/Bill_Clinton_0001.jpg",
    "Ann_Veneman/Ann_Veneman_0001.jpg",
    "Amelie_Mauresmo/Amelie_Mauresmo_0001.jpg",
]


@pytest.fixture
def album(lfw, tmp_path):
    """Copies of three lfw-dev photos in tmp_path/album (one face each)."""
    folder = tmp_path / "album"
    folder.mkdir()
    for rel in PHOTOS:
        shutil.copy(lfw / rel, folder / rel.split("/")[1])
    return folder


def embed(*args: str, input: str | None = None):
    result = CliRunner().invoke(app, ["embed", *args], input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _stderr_lines(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.strip()]


def test_folder_to_parquet_then_incremental_rerun(album, tmp_path):
    out = tmp_path / "faces.parquet"
    r = embed(str(album), "-o", str(out), "-j", "1")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    table = FaceTable.read(out)
    assert len(table.files) == 3 and len(table.frame) == 3
    assert table.model_ids == ["dlib"] and table.frame.emb_dlib.iloc[0].shape == (128,)
    assert {
        "source",
        "face",
        "x",
        "y",
        "w",
        "h",
        "landmarks",
        "det_score",
        "face_size",
        "digest",
    } <= set(table.frame.columns)
    assert "3 faces" in r.stderr

    r = embed(str(album), "-o", str(out), "-j", "1")
    assert r.exit_code == 0 and "3 unchanged" in r.stderr, r.stderr

    changed = album / "Ann_Veneman_0001.jpg"
    old_digest = table.files[str(changed)]["digest"]
    shutil.copy(album / "Bill_Clinton_0001.jpg", changed)
    r = embed(str(album), "-o", str(out), "-j", "1")
    assert r.exit_code == 0 and "2 unchanged" in r.stderr, r.stderr
    after = FaceTable.read(out)
    assert set(after.files) == set(table.files) and len(after.frame) == 3  # nothing dropped
    assert after.files[str(changed)]["digest"] != old_digest
    row = after.rows_for(str(changed)).iloc[0]
    same = after.rows_for(str(album / "Bill_Clinton_0001.jpg")).iloc[0]
    assert float(row.emb_dlib @ same.emb_dlib) > 0.999  # really re-embedded: now the same photo


def test_ndjson_and_csv_on_stdout_only(album):
    r = embed(str(album), "--format", "ndjson", "-j", "1")
    assert r.exit_code == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted(rec["source"] for rec in records) == sorted(str(p) for p in album.iterdir())
    assert all(
        len(rec["faces"]) == 1 and len(rec["faces"][0]["embeddings"]["dlib"]) == 128
        for rec in records
    )
    assert "done:" in r.stderr and "done:" not in r.stdout

    r = embed(str(album), "--format", "csv", "-j", "1")
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 3 and {"source", "face", "x", "y", "w", "h", "det_score", "dims"} <= set(
        rows[0]
    )
    assert rows[0]["dims"] == "dlib:128" and float(rows[0]["w"]) > 50
    assert "done:" in r.stderr and "done:" not in r.stdout


def test_csv_has_embedding_columns(album):
    r = embed(str(album), "--format", "csv", "-j", "1")
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(json.loads(rows[0]["emb_dlib"])) == 128


def test_paths_from_stdin(album):
    wanted = sorted(str(p) for p in album.iterdir())[:2]
    r = embed("-", "--format", "ndjson", "-j", "1", input="\n".join(wanted) + "\n\n")
    assert r.exit_code == 0, r.stderr
    assert [json.loads(line)["source"] for line in r.stdout.splitlines()] == wanted


def test_sidecar_next_to_each_photo(album, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = embed(str(album), "--sidecar", "-j", "1")
    assert r.exit_code == 0, r.stderr
    for photo in [p for p in album.iterdir() if p.suffix == ".jpg"]:
        side = photo.with_name(photo.name + ".faces.json")
        rec = json.loads(side.read_text())
        assert rec["source"] == str(photo) and len(rec["faces"]) == 1
        assert len(rec["faces"][0]["embeddings"]["dlib"]) == 128
    assert not (tmp_path / "faces.parquet").exists()
    assert r.stdout == ""


def test_corrupt_file_exit_3_others_embedded(album, tmp_path):
    bad = album / "corrupt.jpg"
    bad.write_bytes((album / "Bill_Clinton_0001.jpg").read_bytes()[:2000])
    out = tmp_path / "faces.parquet"
    r = embed(str(album), "-o", str(out), "-j", "1")
    assert r.exit_code == 3, r.stderr
    naming = [ln for ln in _stderr_lines(r) if "corrupt.jpg" in ln]
    assert len(naming) == 1, r.stderr
    assert "1 error" in r.stderr and "1 errors" not in r.stderr
    table = FaceTable.read(out)
    assert len(table.frame) == 3 and table.files[str(bad)]["error"]


def test_no_face_exit_1(tmp_path):
    from PIL import Image

    gray = tmp_path / "gray.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(gray)
    r = embed(str(gray), "--format", "ndjson")
    assert r.exit_code == 1, r.stderr
    assert json.loads(r.stdout)["faces"] == []
    assert "1 without a face" in r.stderr


def test_two_models_two_embedding_columns(album, tmp_path, mirror):
    out = tmp_path / "faces.parquet"
    r = embed(str(album), "-o", str(out), "--models", "dlib,mobilefacenet", "-j", "1")
    assert r.exit_code == 0, r.stderr
    table = FaceTable.read(out)
    assert table.model_ids == ["dlib", "mobilefacenet"]
    assert table.frame.emb_mobilefacenet.iloc[0].shape == (128,)
    assert set(table.models) >= {"dlib", "mobilefacenet", "detector"}


@pytest.mark.parametrize("opt", [["--models", "nosuchmodel"], ["--detector", "nosuchdetector"]])
def test_unknown_model_one_line(album, opt):
    r = embed(str(album), "--format", "ndjson", *opt)
    assert r.exit_code in (2, 4)
    lines = _stderr_lines(r)
    assert len(lines) == 1 and opt[1] in lines[0], r.stderr
    assert r.stdout == ""
