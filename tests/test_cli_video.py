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
    # one record per input, in order; the unreadable one says why and has no people
    assert [Path(rec["source"]).name for rec in lines] == ["a.mp4", "broken.mp4", "nobody.mp4"]
    assert lines[1]["people"] == [] and lines[1]["samples"] == 0
    assert "broken.mp4: not a readable video" in lines[1]["error"]
    assert lines[0]["error"] is None and lines[2]["error"] is None
    # nobody.mp4 is 6 s long: --interval 10 would give it one sample; it gets the minimum 8.
    assert lines[2]["people"] == [] and lines[2]["samples"] == 8
    assert "broken.mp4" in res.stderr and "done: 3 videos" in res.stderr
    res = run(str(bad), str(setup["nobody"]), "-d", str(setup["db"]), "-f", "csv", "-q")
    assert res.exit_code == 3
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [Path(r["source"]).name for r in rows] == ["broken.mp4"]  # nobody.mp4: nobody seen
    assert "not a readable video" in rows[0]["error"] and rows[0]["person"] == ""
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


def test_output_paths_checked_before_work(setup, tmp_path: Path, monkeypatch) -> None:
    """--timeline / --crops / --detections into a folder, a file or under a file: one line, exit 2,
    before any video is analysed."""
    import facekit.video as video_mod

    def boom(*a, **k):  # the check must come before the work
        raise AssertionError("analysed before the output paths were checked")

    monkeypatch.setattr(video_mod, "analyse_video", boom)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    a_dir = tmp_path / "adir"
    a_dir.mkdir()
    (tmp_path / "adir.parquet").mkdir()
    cases = [
        (["--timeline", str(a_dir)], "is a folder"),
        (["--timeline", str(a_file / "t.png")], "is a file, not a folder"),
        (["--detections", str(tmp_path / "adir.parquet")], "is a folder"),
        (["--detections", str(a_file / "sub" / "d.parquet")], "is a file, not a folder"),
        (["--crops", str(a_file)], "is a file, not a folder"),
        (["--crops", str(a_file / "crops")], "is a file, not a folder"),
    ]
    for extra, message in cases:
        res = run(str(setup["video"]), "-d", str(setup["db"]), "-q", *extra)
        assert res.exit_code == 2, (extra, res.output)
        err = res.stderr.strip()
        assert len(err.splitlines()) == 1 and message in err, (extra, err)
        assert "Traceback" not in res.output


def test_output_into_read_only_folder(setup, tmp_path: Path, monkeypatch) -> None:
    import os

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root: simulate what a read-only mount answers
            real = os.access
            monkeypatch.setattr(
                os, "access", lambda p, m, **k: False if Path(p) == ro else real(p, m, **k)
            )
        for extra in (["--timeline", str(ro / "t.png")], ["--crops", str(ro / "c")]):
            res = run(str(setup["video"]), "-d", str(setup["db"]), "-q", *extra)
            assert res.exit_code == 2 and "not writable" in res.stderr, res.output
    finally:
        ro.chmod(0o755)


def test_start_past_the_end(setup) -> None:
    res = run(str(setup["video"]), "-d", str(setup["db"]), "-f", "json", "--start", "300")
    assert res.exit_code == 3, res.output
    assert "start 300 s is at or past the end of the video" in res.stderr
    assert "Traceback" not in res.output


def test_short_clip_min_samples(setup) -> None:
    # 6 s of nobody: the default interval of 5 s would give 2 samples; at least 8 are taken.
    res = run(str(setup["nobody"]), "-d", str(setup["db"]), "-f", "json", "-q")
    doc = json.loads(res.stdout)
    assert doc["samples"] == 8 and doc["sampling"] == "exact"
    res = run(
        str(setup["nobody"]), "-d", str(setup["db"]), "-f", "json", "-q", "--min-samples", "1"
    )
    assert json.loads(res.stdout)["samples"] < 8


def test_progress_count_text() -> None:
    from facekit.cli.video_cmd import samples_text

    assert samples_text(3, 10) == "3/10 samples"
    assert samples_text(12, 10) == "12/12 samples"  # keyframe plans can be estimates
    assert samples_text(3, None) == "3 samples"


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_workers_exit_when_the_parent_is_killed(setup) -> None:
    """kill -9 of `facekit video` must not leave its worker processes running (issue 15)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    env = {**os.environ, "FACEKIT_WORKERS": "2"}
    cmd = [sys.executable, "-m", "facekit", "video", str(setup["video"]), "-d", str(setup["db"])]
    # 40 s at --interval 0.1: 400 samples, so the pool starts after the first 24 and is busy.
    proc = subprocess.Popen(
        [*cmd, "--interval", "0.1", "-q", "-f", "json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        workers: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            # spawn start method: a resource tracker plus the pool's worker processes
            workers = [c for c in _children(proc.pid) if "spawn_main" in _cmdline(c)]
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert len(workers) >= 2, "the worker pool did not start"
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.2)
        left = [w for w in workers if _alive(w)]
        for w in left:
            os.kill(w, signal.SIGKILL)
        assert not left, f"workers {left} outlived their parent"
    finally:
        if proc.poll() is None:
            proc.kill()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_max_side_downscales_detection(setup) -> None:
    """--max-side reaches the detector: the slideshow's faces (180-220 px in 500 px frames)
    shrink below HOG's 80 px on a 100 px copy, so nobody is found; the default finds them."""
    args = [str(setup["video"]), "-d", str(setup["db"]), "-f", "json", "-q", "--interval", "10"]
    res = run(*args)
    assert res.exit_code == 0 and json.loads(res.stdout)["people"]
    res = run(*args, "--max-side", "100")
    assert res.exit_code == 1 and json.loads(res.stdout)["people"] == [], res.output
