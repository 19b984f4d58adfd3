"""The new models end to end through the real command line (build-index, identify, embed,
cluster, video), with the model mirror; skips when ../shared is absent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )


@pytest.fixture
def people(tmp_path: Path, fr_examples: Path, mirror: Path) -> Path:
    return shutil.copytree(fr_examples / "knn_examples" / "train", tmp_path / "people")


def _who(stdout: str) -> list[str]:
    [line] = stdout.splitlines()
    rec = json.loads(line)
    return sorted(f["identity"]["person"] for f in rec["faces"] if f["identity"])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("models", "detector"),
    [("sface,dlib", None), ("arcface-mbf,sface", None), ("sface", "scrfd")],
)
def test_build_index_and_identify(people, fr_examples, tmp_path, models, detector):
    db = tmp_path / "faces.db"
    extra = ["--detector", detector] if detector else []
    r = run("build-index", str(people), "-d", str(db), "-j", "1", "--models", models, *extra)
    assert r.returncode == 0, r.stderr
    assert "5 people" in r.stderr
    manifest_models = models.split(",")
    r = run("identify", str(fr_examples / "two_people.jpg"), "-d", str(db), "-f", "ndjson")
    assert r.returncode == 0, r.stderr
    assert _who(r.stdout) == ["biden", "obama"]
    rec = json.loads(r.stdout)
    for face in rec["faces"]:
        for cand in face["candidates"]:
            assert set(cand["distances"]) == set(manifest_models)
    noncommercial = {"arcface-mbf", "scrfd"} & {*manifest_models, detector}
    # the licence notice was shown once, on first use (build-index), not again
    assert ("non-commercial" in r.stderr) is False
    if not noncommercial:
        return
    r2 = run("models", "list", "-f", "json")
    rows = {row["name"]: row for row in json.loads(r2.stdout)}
    for name in noncommercial:
        assert rows[name]["commercial_use"] is False and "non-commercial" in rows[name]["license"]


@pytest.mark.slow
def test_blazeface_and_scrfd_in_embed_cluster_video(people, fr_examples, shared, tmp_path):
    out = tmp_path / "faces.parquet"
    r = run("embed", str(fr_examples / "two_people.jpg"), "--detector", "blazeface", "-o", str(out))
    assert r.returncode == 0, r.stderr
    from facekit.facetable import FaceTable

    table = FaceTable.read(out)
    assert len(table.frame) == 2
    assert table.models["detector"].startswith("blazeface:")

    r = run(
        "cluster", str(people), "--detector", "scrfd", "-o", str(tmp_path / "c.json"), "-f", "json"
    )
    assert r.returncode == 0, r.stderr
    clusters = json.loads((tmp_path / "c.json").read_text())
    assert clusters

    db = tmp_path / "faces.db"
    r = run("build-index", str(people), "-d", str(db), "-j", "1", "--detector", "blazeface")
    assert r.returncode == 0, r.stderr
    video = shared / "videos" / "facenet-pytorch_video.mp4"
    r = run("video", str(video), "-d", str(db), "--frames", "3", "-f", "json")
    assert r.returncode in (0, 1), r.stderr  # nobody of the knn folder is in that clip
    assert "Traceback" not in r.stderr


def test_unknown_names_are_usage_errors(tmp_path, fr_examples):
    photo = str(fr_examples / "two_people.jpg")
    r = run("embed", photo, "--detector", "nope", "-o", str(tmp_path / "x.parquet"))
    assert r.returncode == 2, r.stderr
    assert "unknown model 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = run("embed", photo, "--models", "sface,nope", "-o", str(tmp_path / "x.parquet"))
    assert r.returncode == 2, r.stderr
