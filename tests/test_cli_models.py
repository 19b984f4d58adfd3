"""`facekit models ...` through Typer's CliRunner, against the ../shared/models mirror."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import urllib.error
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from facekit.cli.models_cmd import models_app
from facekit.models import models_dir, store

YUNET = "face_detection_yunet_2023mar.onnx"
MFN = "mobilefacenet_foamliu.onnx"

app = typer.Typer()
app.add_typer(models_app, name="models")
runner = CliRunner()


def _shared_models() -> Path:
    env = os.environ.get("FACEKIT_SHARED")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return base / "models"


@pytest.fixture
def mirror_dir() -> Path:
    folder = _shared_models()
    if not (folder / YUNET).is_file() or not (folder / MFN).is_file():
        pytest.skip(f"model mirror not found at {folder} (set FACEKIT_SHARED to ../shared)")
    return folder


@pytest.fixture(autouse=True)
def fk_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path / "fkhome"))
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path / "dfhome"))
    monkeypatch.delenv("FACEKIT_MODEL_MIRROR", raising=False)
    monkeypatch.delenv("FACEKIT_OFFLINE", raising=False)
    monkeypatch.delenv("FACEKIT_DEBUG", raising=False)

    def no_internet(url, timeout):
        raise urllib.error.URLError("internet blocked in tests")

    monkeypatch.setattr(store, "_open_url", no_internet)
    store.clear_cache()
    yield
    store.clear_cache()


def run(*args: str):
    return runner.invoke(app, ["models", *args])


def _list_json() -> dict[str, dict]:
    result = run("list", "--format", "json")
    assert result.exit_code == 0, result.output
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_help_has_summary_and_example():
    for command in ("list", "fetch", "import", "verify", "path"):
        result = run(command, "--help")
        assert result.exit_code == 0
        assert "Example: " in result.stdout
        assert "facekit models " in result.stdout


def test_list_json_before_and_after_fetch(mirror_dir, monkeypatch):
    rows = _list_json()
    assert len(rows) == 14
    dlib = rows["dlib"]
    assert dlib["state"] == "installed"
    assert dlib["source"] == "package:face_recognition_models"
    assert dlib["default"] is True
    assert dlib["commercial_use"] is True
    assert rows["arcface"]["commercial_use"] is False
    assert rows["yunet"]["state"] == "fetchable"  # upstream URL, not offline
    assert rows["yunet"]["source"] == "upstream"
    assert rows["yunet"]["size"] == 232589
    assert rows["yunet"]["license"] == "MIT"

    monkeypatch.setenv("FACEKIT_OFFLINE", "1")
    assert _list_json()["yunet"]["state"] == "missing"
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(mirror_dir))
    rows = _list_json()
    assert (rows["yunet"]["state"], rows["yunet"]["source"]) == ("fetchable", "mirror")
    assert rows["facenet512"]["state"] == "missing"  # not in the mirror, offline
    assert (rows["sface"]["state"], rows["sface"]["source"]) == ("fetchable", "mirror")

    result = run("fetch", "yunet,mobilefacenet")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # status lines go to stderr
    assert "yunet: installed" in result.stderr
    assert "mobilefacenet: installed" in result.stderr

    rows = _list_json()
    for name, file in (("yunet", YUNET), ("mobilefacenet", MFN)):
        assert (rows[name]["state"], rows[name]["source"]) == ("installed", "home")
        assert rows[name]["files"][0]["path"] == str(models_dir() / file)


def test_list_table_and_csv():
    result = run("list", "--kind", "detector")
    assert result.exit_code == 0
    assert "dlib-hog" in result.stdout and "mobilefacenet" not in result.stdout
    result = run("list", "-f", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["name"] for r in rows][:2] == ["dlib", "mobilefacenet"]
    assert rows[0]["commercial_use"] == "yes" and rows[0]["default"] == "yes"
    assert rows[3]["name"] == "arcface" and rows[3]["commercial_use"] == "no"


def test_fetch_failures_exit_4(mirror_dir, tmp_path, monkeypatch):
    evil = tmp_path / "evil"
    evil.mkdir()
    data = bytearray((mirror_dir / YUNET).read_bytes())
    data[100] ^= 0xFF
    (evil / YUNET).write_bytes(bytes(data))
    shutil.copyfile(mirror_dir / MFN, evil / MFN)
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(evil))
    result = run("fetch", "yunet", "mobilefacenet", "--offline")
    assert result.exit_code == 4
    assert "error: yunet:" in result.stderr
    assert "mobilefacenet: installed" in result.stderr  # the others still go ahead
    assert sorted(p.name for p in models_dir().iterdir()) == [MFN]

    result = run("fetch", "sface", "--offline")
    assert result.exit_code == 4
    assert "offline" in result.stderr and "facekit models import" in result.stderr

    result = run("fetch", "nope")
    assert result.exit_code == 2  # an unknown name is a usage error
    assert "unknown model 'nope'" in result.stderr


def test_import_verify_and_path(mirror_dir, tmp_path):
    result = run("path", "yunet")
    assert result.exit_code == 4
    assert "not installed" in result.stderr and "--fetch" in result.stderr

    bad = tmp_path / "bad" / YUNET
    bad.parent.mkdir()
    data = bytearray((mirror_dir / YUNET).read_bytes())
    data[-1] ^= 1
    bad.write_bytes(bytes(data))
    result = run("import", str(bad))
    assert result.exit_code == 4
    assert "error:" in result.stderr
    assert not (models_dir() / YUNET).exists()

    result = run("import", str(mirror_dir / YUNET))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(models_dir() / YUNET)

    result = run("path", "yunet")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [str(models_dir() / YUNET)]
    result = run("path", "dlib")
    assert [Path(p).name for p in result.stdout.splitlines()] == [
        "dlib_face_recognition_resnet_model_v1.dat",
        "shape_predictor_5_face_landmarks.dat",
    ]

    result = run("verify", "-f", "json")
    assert result.exit_code == 0, result.output
    states = {(r["model"], r["file"]): r["state"] for r in json.loads(result.stdout)}
    assert states[("yunet", YUNET)] == "ok"
    assert states[("dlib", "dlib_face_recognition_resnet_model_v1.dat")] == "ok"
    assert "mobilefacenet" not in {m for m, _ in states}  # never installed: not reported

    result = run("verify", "mobilefacenet")
    assert result.exit_code == 4
    assert "missing" in result.stderr

    (models_dir() / YUNET).write_bytes(bytes(data))  # tamper with the installed copy
    store.clear_cache()
    result = run("verify", "yunet")
    assert result.exit_code == 4
    assert "mismatch" in result.stderr


def test_path_fetch(mirror_dir, monkeypatch):
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(mirror_dir))
    result = run("path", "mobilefacenet", "--fetch", "--offline")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [str(models_dir() / MFN)]


def test_listing_formats_like_every_command():
    """models list/verify/recommend take --format ndjson, and default to NDJSON when stdout
    is not a terminal (README: 'default: a table on a terminal, NDJSON when piped')."""
    for args in (["list"], ["verify"], ["recommend"]):
        for extra in ([], ["--format", "ndjson"]):
            result = run(*args, *extra)
            assert result.exit_code == 0, result.output
            rows = [json.loads(line) for line in result.stdout.splitlines()]
            assert rows and all(isinstance(r, dict) for r in rows), (args, extra)
    rows = [json.loads(line) for line in run("list", "-f", "ndjson").stdout.splitlines()]
    assert {r["name"] for r in rows} >= {"dlib", "yunet"}
    assert "│" in run("list", "--format", "table").stdout
