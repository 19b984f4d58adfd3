"""facekit.video: aggregation logic (hand-made matches) and the real path on a PyAV slideshow.

The slideshow is made from real LFW photos in ../shared: Bill Clinton 0-10 s, nobody
10-20 s, Serena Williams 20-30 s, Clinton again 30-40 s, Hans Blix (not enrolled) 40-50 s;
2 fps, 500x500 (photos scaled 2x so faces are well above the HOG detector's 80 px).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from facekit.calibration import Calibration
from facekit.identify import Candidate, FaceMatch
from facekit.types import Embeddings, Faces
from facekit.video import (
    PersonTrack,
    VideoAggregator,
    VideoOptions,
    VideoReport,
    _segments,
    draw_timeline,
)

GALLERY = {"Bill_Clinton": (2, 3, 4), "Serena_Williams": (2, 3, 4), "Tom_Ridge": (2, 3, 4)}
# (start, end, person or None); photo 0001 of each person is never in the gallery.
PLAN = [
    (0, 10, "Bill_Clinton"),
    (10, 20, None),
    (20, 30, "Serena_Williams"),
    (30, 40, "Bill_Clinton"),
    (40, 50, "Hans_Blix"),
]


def make_slideshow(
    path: Path, lfw: Path, plan=PLAN, *, fps: int = 2, keyint: int | None = None
) -> Path:
    """Encode ``plan`` as an H.264 MP4 (scenecut off: keyframes only every ``keyint`` frames)."""
    imgs = {}
    for _, _, who in plan:
        if who and who not in imgs:
            im = (
                Image.open(lfw / who / f"{who}_0001.jpg")
                .convert("RGB")
                .resize((500, 500), Image.BICUBIC)
            )
            imgs[who] = np.asarray(im)
    blank = np.full((500, 500, 3), 90, np.uint8)
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = 500, 500, "yuv420p"
        opts = {"preset": "ultrafast", "crf": "18", "scenecut": "0"}
        if keyint:
            s.codec_context.gop_size = keyint
            opts.update(keyint=str(keyint), **{"min-keyint": str(keyint)})
        s.options = opts
        for a, b, who in plan:
            img = imgs[who] if who else blank
            for _ in range(int((b - a) * fps)):
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


def make_gallery(folder: Path, lfw: Path) -> Path:
    for who, nums in GALLERY.items():
        (folder / who).mkdir(parents=True, exist_ok=True)
        for n in nums:
            src = lfw / who / f"{who}_{n:04d}.jpg"
            (folder / who / src.name).write_bytes(src.read_bytes())
    return folder


def build_db(tmp: Path, lfw: Path) -> Path:
    from typer.testing import CliRunner

    from facekit.cli import app

    if "build-index" not in [c.name for c in app.registered_commands]:
        pytest.skip("facekit build-index is not available yet")
    db = tmp / "faces.db"
    res = CliRunner().invoke(
        app, ["build-index", str(make_gallery(tmp / "people", lfw)), "-d", str(db), "-q"]
    )
    assert res.exit_code == 0, res.output
    return db


# --------------------------------------------------------------------------- unit: aggregation
def test_segments_join_and_split() -> None:
    samples = [0, 5, 10, 15, 20, 25, 30, 35]
    assert _segments([0, 5, 10], samples, 5) == [(0, 10)]
    assert _segments([0, 10], samples, 5) == [
        (0, 10)
    ]  # one missed sample is bridged (gap = 2 steps)
    assert _segments([0, 5, 20, 25], samples, 5) == [(0, 5), (20, 25)]  # gap of 3 steps splits
    assert _segments([35], samples, 5) == [(35, 35)]
    # Consecutive samples join even when they are far apart (irregular keyframes).
    assert _segments([0, 30], [0, 30, 31, 32], 1) == [(0, 30)]
    assert _segments([], samples, 5) == []


def _faces(n: int, size: float = 100) -> Faces:
    xyxy = np.array(
        [[10 + 120 * i, 10, 10 + 120 * i + size, 10 + size] for i in range(n)], np.float32
    )
    return Faces(xyxy, np.ones(n), np.zeros((n, 5, 2)))


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _known(person: str, conf: float) -> FaceMatch:
    c = Candidate(person, person.title(), conf, 4.0, {"dlib": 0.05})
    return FaceMatch(c, (c,))


UNKNOWN = FaceMatch(None, ())


def test_aggregator_people_segments_ranking_and_unknown_tracks() -> None:
    rng = np.random.default_rng(0)
    stranger1, stranger2, once = (_unit(rng.normal(size=128)) for _ in range(3))

    def near(v: np.ndarray) -> np.ndarray:  # the same stranger in another frame
        return _unit(v + rng.normal(scale=0.01, size=128))

    cal = Calibration.default(["dlib"])
    agg = VideoAggregator(cal, VideoOptions(interval=5), source="v.mp4")
    rgb = np.zeros((200, 400, 3), np.uint8)
    plan = {  # time -> [(match, embedding)]
        0: [(_known("ann", 90), stranger1), (UNKNOWN, stranger1)],
        5: [(_known("ann", 80), stranger2), (UNKNOWN, near(stranger1))],
        10: [(_known("bob", 99), stranger2)],
        15: [(UNKNOWN, near(stranger1)), (UNKNOWN, stranger2)],
        20: [(UNKNOWN, once)],
        25: [(_known("ann", 70), once), (_known("ann", 60), once), (UNKNOWN, near(stranger2))],
    }
    for t, faces in plan.items():
        emb = Embeddings({"dlib": np.stack([e for _, e in faces])})
        agg.add(t, rgb, _faces(len(faces)), emb, [m for m, _ in faces], frame_index=t)
    people = agg.finish()
    assert [p.person for p in people] == ["ann", "bob", "unknown-1", "unknown-2"]
    ann, bob, u1, u2 = people
    assert ann.segments == [(0, 5), (25, 25)] and ann.frames == 3  # two faces at 25 s count once
    assert ann.confidence == 90 and ann.mean_confidence == pytest.approx(80)
    assert ann.evidence == pytest.approx(2.4) and bob.evidence == pytest.approx(0.99)
    assert (
        ann.name == "Ann" and ann.known and ann.crop.shape == (112, 112, 3) and ann.crop_time == 0
    )
    assert (
        u1.segments == [(0, 15)] and u1.frames == 3 and u1.name is None
    )  # 5 -> 15: gap of 2 steps
    assert u2.segments == [(15, 25)] and u2.frames == 2
    # The stranger seen once (20 s) is not listed but its detection row stays.
    rows = agg.detections
    assert len(rows) == 11
    assert [r["track"] for r in rows if r["time"] == 20] == [None]
    assert {r["track"] for r in rows if r["person"] is None} == {"unknown-1", "unknown-2", None}


def test_report_record_contract_and_rows() -> None:
    p = PersonTrack("ann", "Ann", True, [(0.0, 5.0)], [0.0, 5.0], [90.0, 80.0])
    u = PersonTrack("unknown-1", None, False, [(10.0, 15.0)], [10.0, 15.0], [0.0, 0.0])
    rep = VideoReport("v.mp4", 20.0, 5, "exact", 40, [0, 5, 10, 15, 20], 5.0, [p, u])
    rec = rep.to_record(crops={"ann": "AAAA"})
    assert {"source", "duration", "samples", "people"} <= set(rec)
    assert rec["people"][0] == {
        "person": "ann",
        "name": "Ann",
        "segments": [[0.0, 5.0]],
        "frames": 2,
        "confidence": 90.0,
        "mean_confidence": 85.0,
        "first_seen": 0.0,
        "last_seen": 5.0,
        "crop": "AAAA",
    }
    assert rec["people"][1]["name"] is None and rec["people"][1]["confidence"] is None
    assert rep.rows()[0]["segments"] == "0.0-5.0"
    assert [r["person"] for r in rep.rows()] == ["ann", "unknown-1"]


def test_timeline_png(tmp_path: Path) -> None:
    p = PersonTrack(
        "ann", "Ann", True, [(0.0, 5.0), (30.0, 35.0)], [0.0, 5.0, 30.0, 35.0], [90.0] * 4
    )
    rep = VideoReport("v.mp4", 50.0, 10, "exact", 90, [float(t) for t in range(0, 50, 5)], 5.0, [p])
    draw_timeline(rep, tmp_path / "t.png")
    img = np.asarray(Image.open(tmp_path / "t.png").convert("RGB"))
    assert img.shape[1] == 1100
    row = img[44 + 15]  # the middle of the first person's row
    blue = np.all(row == (31, 119, 180), axis=-1)
    assert blue.any()
    # Bars at 0-5 s and 30-35 s (plus half a step each side): two runs of blue pixels.
    assert (np.diff(blue.astype(int)) == 1).sum() + int(blue[0]) == 2


# --------------------------------------------------------------------------- real path
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from conftest import shared_dir

    lfw = shared_dir() / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip(
            f"{lfw} not found: real-photo tests need the shared data folder (or FACEKIT_SHARED)"
        )
    tmp = tmp_path_factory.mktemp("video")
    db_path = build_db(tmp, lfw)
    from facekit.database import Database
    from facekit.identify import Identifier
    from facekit.pipeline import Pipeline

    db = Database.open(db_path)
    return {"lfw": lfw, "tmp": tmp, "db": db, "pipe": Pipeline(db.config), "ident": Identifier(db)}


def _check_segments(report: VideoReport, step: float) -> None:
    by = {p.person: p for p in report.people}
    assert by["Bill_Clinton"].known and by["Serena_Williams"].known
    truth = {"Bill_Clinton": [(0, 10), (30, 40)], "Serena_Williams": [(20, 30)]}
    for who, segs in truth.items():
        got = by[who].segments
        assert len(got) == len(segs), (who, got)
        for (a, b), (ta, tb) in zip(got, segs, strict=True):
            assert abs(a - ta) <= step + 1e-6 and abs(b - tb) <= 2 * step + 1e-6, (who, got)
            # Exactly as precise as the samples allow: first sample in the segment to last one.
            inside = [t for t in report.sample_times if ta <= t < tb]
            assert (a, b) == (inside[0], inside[-1]), (who, got, report.sample_times)
    assert "Tom_Ridge" not in by
    # Hans Blix is not enrolled: an anonymous track over 40-50 s.
    unknown = [p for p in report.people if not p.known]
    assert len(unknown) == 1 and unknown[0].person == "unknown-1"
    assert unknown[0].segments[0][0] == pytest.approx(40, abs=step)
    assert [p.person for p in report.people][:2] == [
        "Bill_Clinton",
        "Serena_Williams",
    ]  # ranked by evidence


def test_slideshow_exact(world) -> None:
    from facekit.video import analyse_video

    video = make_slideshow(world["tmp"] / "slides.mp4", world["lfw"])
    report = analyse_video(
        video, world["db"], world["pipe"], world["ident"], VideoOptions(interval=5)
    )
    assert report.sampling_used == "exact"  # a single keyframe: auto falls back to exact
    assert report.sample_times == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]
    assert report.samples == 10 and report.duration == pytest.approx(50)
    assert report.frames_decoded <= 100
    _check_segments(report, 5)
    clinton = report.people[0]
    assert clinton.crop is not None and clinton.crop.shape == (112, 112, 3)
    assert 50 <= clinton.confidence <= 100
    assert report.detections and {"time", "x", "y", "w", "h", "person", "confidence"} <= set(
        report.detections[0]
    )


def test_slideshow_keyframe_sampling(world) -> None:
    from facekit.video import analyse_video

    video = make_slideshow(
        world["tmp"] / "slides_kf.mp4", world["lfw"], keyint=8
    )  # keyframe every 4 s
    report = analyse_video(
        video, world["db"], world["pipe"], world["ident"], VideoOptions(interval=5)
    )
    assert report.sampling_used == "keyframe"
    assert all(t % 4 == 0 for t in report.sample_times)
    assert report.frames_decoded <= 13  # keyframes only (0, 4, ..., 48 s), not 100 frames
    _check_segments(report, 4)


def test_sprite_same_answer(world, tmp_path: Path) -> None:
    from facekit.video import analyse_sprite

    lfw = world["lfw"]
    order = ["Bill_Clinton", None, "Serena_Williams", "Bill_Clinton"]
    sheet = np.full((500, 500, 3), 90, np.uint8)
    cues = []
    for k, who in enumerate(order):
        x, y = (k % 2) * 250, (k // 2) * 250
        if who:
            sheet[y : y + 250, x : x + 250] = np.asarray(
                Image.open(lfw / who / f"{who}_0001.jpg").convert("RGB")
            )
        cues.append(
            f"00:00:{k * 10:02d}.000 --> 00:00:{k * 10 + 10:02d}.000\nsprite.jpg#xywh={x},{y},250,250\n"
        )
    Image.fromarray(sheet).save(tmp_path / "sprite.jpg", quality=95)
    (tmp_path / "thumbs.vtt").write_text("WEBVTT\n\n" + "\n".join(cues))
    report = analyse_sprite(
        tmp_path / "sprite.jpg", tmp_path / "thumbs.vtt", world["db"], world["pipe"], world["ident"]
    )
    assert report.sampling_used == "sprite" and report.samples == 4 and report.duration == 40
    by = {p.person: p.segments for p in report.people}
    assert by["Bill_Clinton"] == [(0, 0), (30, 30)]
    assert by["Serena_Williams"] == [(20, 20)]


def test_worker_processes_give_the_same_report(world, monkeypatch) -> None:
    """Samples analysed by the worker pool are folded in order: same report as in-process."""
    import facekit.video as video_mod

    video = make_slideshow(world["tmp"] / "slides_pool.mp4", world["lfw"])
    opts = VideoOptions(interval=2.5)
    monkeypatch.setenv("FACEKIT_WORKERS", "1")
    serial = video_mod.analyse_video(video, world["db"], world["pipe"], world["ident"], opts)
    monkeypatch.setenv("FACEKIT_WORKERS", "2")
    monkeypatch.setattr(video_mod, "POOL_AFTER_SAMPLES", 3)
    pooled = video_mod.analyse_video(video, world["db"], world["pipe"], world["ident"], opts)
    assert pooled.samples == serial.samples == 20
    assert pooled.to_record() == serial.to_record()


# --------------------------------------------------------------------------- unknown tracks
def test_faces_of_one_sample_never_share_an_unknown_track() -> None:
    """Cannot-link: two unknown faces in the same frame start / continue different tracks,
    even when both are close to the same track (issue 10 item 18)."""
    rng = np.random.default_rng(1)
    a = _unit(rng.normal(size=128))

    def near(v: np.ndarray, s: float = 0.01) -> np.ndarray:
        return _unit(v + rng.normal(scale=s, size=128))

    cal = Calibration.default(["dlib"])
    agg = VideoAggregator(cal, VideoOptions(interval=1), source="v.mp4")
    rgb = np.zeros((200, 400, 3), np.uint8)
    for t, vecs in enumerate([[a], [near(a), near(a)], [near(a), near(a)]]):
        emb = Embeddings({"dlib": np.stack(vecs)})
        agg.add(t, rgb, _faces(len(vecs)), emb, [UNKNOWN] * len(vecs), frame_index=t)
    agg.finish()
    for t in range(3):
        tracks = [r["track"] for r in agg.detections if r["time"] == t]
        assert len(set(tracks)) == len(tracks), (t, tracks)
    # One face continues the track, the other starts a second one, which then continues too.
    assert agg.detections[0]["track"] == "unknown-1"
    for t in (1, 2):
        assert sorted(r["track"] for r in agg.detections if r["time"] == t) == [
            "unknown-1",
            "unknown-2",
        ]


def test_unknown_link_uses_the_cluster_cut(monkeypatch) -> None:
    """Unknown faces are linked at cluster.cluster_threshold(), not at the identify threshold."""
    import facekit.cluster as cluster_mod

    cal = Calibration.default(["dlib"])
    assert VideoAggregator(cal).link_threshold == pytest.approx(
        cluster_mod.cluster_threshold(calibration=cal)
    )
    rng = np.random.default_rng(2)
    a = _unit(rng.normal(size=128))
    b = _unit(a + rng.normal(scale=0.06, size=128))
    ev = float(cal.pairwise_evidence({"dlib": a[None]}, {"dlib": b[None]})[0, 0])
    rgb = np.zeros((200, 400, 3), np.uint8)
    for cut, expect in ((ev - 0.01, 1), (ev + 0.01, 2)):
        monkeypatch.setattr(cluster_mod, "cluster_threshold", lambda *a, c=cut, **k: c)
        agg = VideoAggregator(cal, VideoOptions(interval=1))
        for t, v in enumerate([a, b]):
            agg.add(t, rgb, _faces(1), Embeddings({"dlib": v[None]}), [UNKNOWN])
        agg.finish()
        assert len(agg.unknowns) == expect, (cut, ev)


@pytest.fixture(scope="module")
def fr_world(tmp_path_factory: pytest.TempPathFactory):
    """face_recognition's knn_examples/train people plus its Hamilton cast photos: the gallery
    of benchmarks/bench_video.py."""
    import shutil

    from typer.testing import CliRunner

    from conftest import shared_dir
    from facekit.cli import app
    from facekit.identify import Identifier
    from facekit.index import Database
    from facekit.pipeline import Pipeline

    fr = shared_dir() / "datasets" / "face_recognition-examples"
    if not fr.is_dir():
        pytest.skip(f"{fr} not found: the test needs the shared data folder")
    tmp = tmp_path_factory.mktemp("frvideo")
    shutil.copytree(fr / "knn_examples" / "train", tmp / "people")
    for name, person in (
        ("lin-manuel-miranda.png", "lin_manuel_miranda"),
        ("alex-lacamoire.png", "alex_lacamoire"),
    ):
        (tmp / "people" / person).mkdir(exist_ok=True)
        shutil.copy(fr / name, tmp / "people" / person / name)
    res = CliRunner().invoke(
        app, ["build-index", str(tmp / "people"), "-d", str(tmp / "faces.db"), "-q"]
    )
    assert res.exit_code == 0, res.output
    db = Database.open(tmp / "faces.db")
    return {"db": db, "pipe": Pipeline(db.config), "ident": Identifier(db)}


def test_facenet_video_two_people_in_one_frame_are_two_tracks(fr_world) -> None:
    """../shared/videos/facenet-pytorch_video.mp4 at --interval 0.5: several strangers share
    frames; before, two of them (1.0 s and 1.52 s) were both labelled unknown-1."""
    from conftest import shared_dir
    from facekit.video import analyse_video

    clip = shared_dir() / "videos" / "facenet-pytorch_video.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    w = fr_world
    rep = analyse_video(clip, w["db"], w["pipe"], w["ident"], VideoOptions(interval=0.5))
    by_time: dict[float, list[str]] = {}
    for r in rep.detections:
        if r["track"] is not None:
            by_time.setdefault(r["time"], []).append(r["track"])
    assert max(len(v) for v in by_time.values()) >= 2  # frames with several tracked faces
    for t, tracks in by_time.items():
        assert len(set(tracks)) == len(tracks), (t, tracks)
    assert len([p for p in rep.people if not p.known]) >= 3


def test_facenet_video_a_known_person_is_one_face_per_frame(fr_world) -> None:
    """The crowd video holds strangers only. At a loose stated rate (10%) some are named, but
    never two faces of one frame as the same person (with dlib's default at 4% two strangers
    at 0.0 s were both named rose_leslie)."""
    from conftest import shared_dir
    from facekit.identify import Identifier
    from facekit.video import analyse_video

    clip = shared_dir() / "videos" / "facenet-pytorch_video.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    w = fr_world
    loose = Identifier(w["db"], max_strangers=0.10)
    rep = analyse_video(clip, w["db"], w["pipe"], loose, VideoOptions(interval=0.5))
    by_time: dict[float, list[str]] = {}
    for r in rep.detections:
        if r["person"] is not None and not str(r["person"]).startswith("unknown"):
            by_time.setdefault(r["time"], []).append(r["person"])
    assert by_time, "at 10% some stranger should be named: the check below would be empty"
    for t, persons in by_time.items():
        assert len(set(persons)) == len(persons), (t, persons)


def test_one_per_person_keeps_the_strongest_face() -> None:
    from facekit.identify import Candidate, FaceMatch, one_per_person

    def cand(person: str, evidence: float) -> Candidate:
        return Candidate(person, person, 50 + evidence, evidence, {"dlib": 0.3})

    a, b, c = cand("ann", 3.0), cand("ann", 4.0), cand("bob", 3.5)
    matches = [FaceMatch(a, (a,)), FaceMatch(b, (b,)), FaceMatch(c, (c,)), FaceMatch(None, ())]
    out = one_per_person(matches)
    assert [m.identity and m.identity.person for m in out] == [None, "ann", "bob", None]
    assert out[0].candidates == (a,)  # the demoted face still lists its nearest person


def test_on_total_reports_the_planned_samples(world) -> None:
    from facekit.video import analyse_video

    video = make_slideshow(world["tmp"] / "slides_total.mp4", world["lfw"])
    totals: list[int | None] = []
    done: list[float] = []
    rep = analyse_video(
        video,
        world["db"],
        world["pipe"],
        world["ident"],
        VideoOptions(interval=5),
        on_sample=lambda f: done.append(f.time),
        on_total=totals.append,
    )
    assert totals == [10] and len(done) == rep.samples == 10
