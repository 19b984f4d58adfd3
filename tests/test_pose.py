"""Head pose from five landmarks (facekit.pose): synthetic faces of known pose, real photos,
and the --max-yaw filter of embed / identify / build-index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from facekit.pose import (
    drop_beyond_yaw,
    pose_from_points,
    project,
    rotation_from_angles,
    yaw_within,
)
from facekit.types import Embeddings, Faces, ImageResult

W, H = 640, 480
POSES = [
    (yaw, pitch, roll)
    for yaw in (-70, -45, -20, 0, 20, 45, 70)
    for pitch in (-25, 0, 20)
    for roll in (-20, 0, 15)
]


@pytest.mark.parametrize("layout", ["standard5", "dlib5"])
def test_synthetic_exact(layout):
    """Points projected from the rotated 3-D model give back the angles."""
    for yaw, pitch, roll in POSES:
        pts = project(
            layout, yaw, pitch, roll, centre=(300, 260), eye_distance=60, width=W, height=H
        )
        est = pose_from_points(pts[None], layout, width=W, height=H)[0]
        assert np.allclose(est, [yaw, pitch, roll], atol=0.5), (layout, yaw, pitch, roll, est)


@pytest.mark.parametrize("layout", ["standard5", "dlib5"])
def test_synthetic_noisy_within_a_few_degrees(layout):
    """Landmark noise of 2% of the eye distance (about a pixel on a 60 px face)."""
    rng = np.random.default_rng(1)
    errs = []
    for yaw, pitch, roll in POSES:
        pts = project(
            layout, yaw, pitch, roll, centre=(320, 240), eye_distance=60, width=W, height=H
        )
        pts = pts + rng.normal(0, 0.02 * 60, pts.shape)
        est = pose_from_points(pts[None], layout, width=W, height=H)[0]
        errs.append(np.abs(est - [yaw, pitch, roll]))
    med = np.median(errs, axis=0)
    assert (med < 3).all(), med
    assert np.percentile(np.array(errs)[:, 0], 90) < 5  # yaw, what --max-yaw uses


def test_sign_convention():
    """Yaw > 0: nose moves towards the image's right; pitch > 0: up; roll > 0: clockwise."""
    kw = dict(centre=(320, 240), eye_distance=60, width=W, height=H)
    front = project("standard5", 0, 0, 0, **kw)
    right = project("standard5", 30, 0, 0, **kw)
    up = project("standard5", 0, 20, 0, **kw)
    cw = project("standard5", 0, 0, 20, **kw)
    nose = 2
    assert right[nose, 0] - right[:2, 0].mean() > front[nose, 0] - front[:2, 0].mean()
    assert up[nose, 1] - up[:2, 1].mean() < front[nose, 1] - front[:2, 1].mean()
    assert cw[1, 1] > cw[0, 1]  # the image-right eye goes down
    assert np.allclose(rotation_from_angles(0, 0, 0), np.eye(3))


def test_degenerate_points_give_nan():
    pts = np.zeros((2, 5, 2))
    pts[1] = np.nan
    out = pose_from_points(pts, width=W, height=H)
    assert out.shape == (2, 3) and np.isnan(out).all()


def _faces(yaws):
    n = len(yaws)
    return Faces(
        np.tile([0, 0, 10, 10], (n, 1)),
        np.ones(n),
        np.zeros((n, 5, 2)),
        {"pose": np.array([[y, 0, 0] for y in yaws], np.float32)},
    )


def test_yaw_within_and_drop():
    faces = _faces([5, -50, np.nan, 44])
    assert yaw_within(faces, 45).tolist() == [True, False, True, True]
    assert yaw_within(faces, None).all()
    emb = Embeddings({"m": np.eye(4, dtype=np.float32)})
    r = ImageResult("x.jpg", 10, 10, faces, emb)
    out, dropped = drop_beyond_yaw(r, 45)
    assert dropped == 1 and len(out.faces) == 3 and len(out.embeddings) == 3
    assert out.embeddings.vectors["m"][1, 2] == 1  # rows stay paired with their faces
    same, zero = drop_beyond_yaw(r, None)
    assert same is r and zero == 0


# --------------------------------------------------------------------------- real photos
def test_frontal_lfw_photos_small_yaw(lfw):
    """LFW is mostly near-frontal: dlib's points give |yaw| <= 15 for most faces, and the
    frontal photos checked by eye stay within 10 degrees."""
    from facekit.detect import detect_image, get_detector
    from facekit.imageio import load_image

    det = get_detector("dlib-hog")
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:12]
    yaws = []
    for person in people:
        for photo in sorted(person.glob("*.jpg"))[:4]:
            faces = detect_image(det, load_image(photo).rgb)
            if len(faces):
                yaws.append(abs(float(faces.data["pose"][0, 0])))
    assert len(yaws) >= 30
    assert np.median(yaws) < 8, np.median(yaws)
    assert np.mean(np.array(yaws) <= 15) >= 0.75


def test_checked_by_eye_photos(shared, mirror, fr_examples, lfw):
    """Photos looked at by eye (docs/pose.md): frontal ~0, turned ~+-35-65, a profile ~+85."""
    from facekit.detect import detect_image, get_detector
    from facekit.imageio import load_image

    det = get_detector("yunet")

    def yaw(path, face=0):
        f = detect_image(det, load_image(path).rgb)
        return float(f.data["pose"][face, 0])

    assert abs(yaw(fr_examples / "obama.jpg")) < 8
    assert 25 < yaw(lfw / "Arnold_Schwarzenegger" / "Arnold_Schwarzenegger_0001.jpg") < 50
    assert -65 < yaw(lfw / "Ricardo_Lagos" / "Ricardo_Lagos_0005.jpg") < -40
    unit = shared / "datasets" / "deepface-unit"
    assert abs(yaw(unit / "img54.jpg")) < 8  # frontal, smiling
    assert yaw(unit / "img59.jpg", 1) > 60  # the man in profile behind, facing right


# --------------------------------------------------------------------------- CLI
def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **kw.get("env", {})},
        timeout=300,
    )


def test_embed_and_identify_report_pose_and_max_yaw(tmp_path, fr_examples, lfw):
    lagos = lfw / "Ricardo_Lagos" / "Ricardo_Lagos_0005.jpg"
    obama = fr_examples / "obama.jpg"
    r = run("embed", str(obama), str(lagos), "--format", "ndjson")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    face = recs[0]["faces"][0]
    assert {"yaw", "pitch", "roll"} <= set(face) and abs(face["yaw"]) < 10
    lagos_yaw = recs[1]["faces"][0]["yaw"]
    assert lagos_yaw < -30
    r = run("embed", str(obama), str(lagos), "--format", "csv", "--max-yaw", "25")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines[0].split(",")
    assert {"yaw", "pitch", "roll"} <= set(header)
    assert not any(line.startswith(str(lagos) + ",0,") for line in lines)  # left out
    assert "beyond --max-yaw" in r.stderr

    people = shutil.copytree(fr_examples / "knn_examples" / "train", tmp_path / "people")
    db = tmp_path / "faces.db"
    assert run("build-index", str(people), "-d", str(db), "-j", "1").returncode == 0
    r = run("identify", str(obama), str(lagos), "-d", str(db), "--format", "ndjson")
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert recs[0]["faces"][0]["identity"]["person"] == "obama"
    assert recs[0]["faces"][0]["yaw"] is not None
    r = run(
        "identify", str(obama), str(lagos), "-d", str(db), "--format", "ndjson", "--max-yaw", "25"
    )
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert recs[0]["faces"][0]["identity"]["person"] == "obama"
    lagos_face = recs[1]["faces"][0]
    assert lagos_face["identity"] is None and lagos_face["candidates"] == []
    assert "beyond --max-yaw 25" in lagos_face["skipped"]


def test_build_index_max_yaw_skips_turned_gallery_photos(tmp_path, lfw):
    people = tmp_path / "people"
    (people / "lagos").mkdir(parents=True)
    for p in sorted((lfw / "Ricardo_Lagos").glob("*.jpg")):
        shutil.copy(p, people / "lagos" / p.name)
    db = tmp_path / "faces.db"
    r = run("build-index", str(people), "-d", str(db), "-j", "1", "--max-yaw", "30", "-f", "json")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    skipped = [s for s in rep["skipped"] if "beyond --max-yaw 30" in s["reason"]]
    assert [os.path.basename(s["source"]) for s in skipped] == ["Ricardo_Lagos_0005.jpg"]
    assert rep["faces"] == len(list((people / "lagos").glob("*.jpg"))) - 1
    from facekit.database import Database

    d = Database.open(db)
    assert d.manifest["build"]["max_yaw"] == 30
    assert (d.faces["yaw"].abs() <= 30).all()
