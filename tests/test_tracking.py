"""facekit.tracking: the IoU tracker and batched recogniser behind `facekit video`.

Unit tests use a counting fake recogniser and identifier (the decisions are what is tested);
the real-path tests run LFW slideshows (tests/test_video.py) with tracking on and off.
"""

from __future__ import annotations

import numpy as np
import pytest

from facekit.identify import Candidate, FaceMatch
from facekit.tracking import (
    BATCH_SAMPLES,
    TRACK_MAX_FOLLOW,
    SampleResolver,
    box_iou,
    thumbnails,
)
from facekit.types import Faces


class FakeEmbedder:
    model_id = "dlib"
    dim = 4

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed_crops(self, crops: np.ndarray) -> np.ndarray:
        self.calls.append(len(crops))
        # the crop's mean brightness decides "who" it is
        return np.stack([np.full(4, float(c.mean())) for c in crops]).astype(np.float32)


class FakeEnsemble:
    def __init__(self) -> None:
        self.embedders = [FakeEmbedder()]
        self.fingerprints = {"dlib": "x"}


class FakeIdentifier:
    """Brightness 200 -> 'ann' (confidence 99), 100 -> 'bob' (60), else unknown."""

    def match(self, emb) -> list[FaceMatch]:
        out = []
        for v in emb.vectors["dlib"]:
            if abs(v[0] - 200) < 1:
                c = Candidate("ann", None, 99.0, 5.0, {"dlib": 0.02})
            elif abs(v[0] - 100) < 1:
                c = Candidate("bob", None, 60.0, 3.2, {"dlib": 0.06})
            else:
                out.append(FaceMatch(None, ()))
                continue
            out.append(FaceMatch(c, (c,)))
        return out


def faces_at(*xs: float, size: float = 100) -> Faces:
    xyxy = np.array([[x, 10, x + size, 10 + size] for x in xs], np.float32)
    return Faces(xyxy, np.ones(len(xs)), np.zeros((len(xs), 5, 2)))


def crops_of(*levels: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    texture = rng.integers(-40, 40, (150, 150, 1))
    out = [
        np.clip(lv + texture + np.zeros((150, 150, 3)), 0, 255).astype(np.uint8) for lv in levels
    ]
    return {"dlib": np.stack(out)}


def run(samples, track=True):
    ens = FakeEnsemble()
    got = []
    res = SampleResolver(ens, FakeIdentifier(), got.append, track=track)
    for k, (faces, crops) in enumerate(samples):
        res.add(k, faces, crops)
    res.flush()
    return got, res, ens.embedders[0].calls


def test_box_iou() -> None:
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert box_iou(a, b).round(3).tolist() == [[1.0, 0.333, 0.0]]


def test_confident_face_in_place_is_followed_then_reverified() -> None:
    samples = [(faces_at(10), crops_of(200)) for _ in range(10)]
    got, res, calls = run(samples)
    assert [r.item for r in got] == list(range(10))  # in order, every sample
    assert all(r.matches[0].identity.person == "ann" for r in got)
    followed = [r.followed[0] for r in got]
    # embedded, then TRACK_MAX_FOLLOW followed, then embedded again (a wrong chain cannot run on)
    period = [False] + [True] * TRACK_MAX_FOLLOW
    assert followed == (period * 3)[:10]
    assert res.embedded == followed.count(False) and res.followed == followed.count(True)
    # a followed face carries no embedding (zeros), an embedded one does
    assert not got[1].embeddings.vectors["dlib"].any() and got[0].embeddings.vectors["dlib"].any()
    off, res_off, _ = run(samples, track=False)
    assert res_off.followed == 0 and res_off.embedded == 10
    assert [r.matches[0].identity.person for r in off] == ["ann"] * 10


def test_what_is_never_followed() -> None:
    # weakly named (bob, 60), unknown (brightness 50), moved (IoU 0), and changed looks
    # (same place, another person: ann -> bob) are all embedded.
    for first, second in [
        ((faces_at(10), crops_of(100)), (faces_at(10), crops_of(100))),
        ((faces_at(10), crops_of(50)), (faces_at(10), crops_of(50))),
        ((faces_at(10), crops_of(200)), (faces_at(400), crops_of(200))),
    ]:
        got, res, _ = run([first, second])
        assert res.followed == 0 and res.embedded == 2
    rng = np.random.default_rng(5)
    other = {"dlib": rng.integers(0, 255, (1, 150, 150, 3)).astype(np.uint8)}
    got, res, _ = run([(faces_at(10), crops_of(200)), (faces_at(10), other)])
    assert res.followed == 0 and got[1].matches[0].identity is None


def test_two_faces_one_track_each() -> None:
    # ann twice side by side, then both again in place: each old face is followed once.
    samples = [(faces_at(10, 300), crops_of(200, 200)), (faces_at(10, 300), crops_of(200, 200))]
    got, res, _ = run(samples)
    assert got[1].followed == [True, True] and res.embedded == 2


def test_faces_are_embedded_in_batches_across_samples() -> None:
    # unknown faces that move: nothing to follow, so they wait and are embedded together
    samples = [(faces_at(10 + 300 * (k % 2)), crops_of(50)) for k in range(2 * BATCH_SAMPLES)]
    got, res, calls = run(samples)
    assert calls == [BATCH_SAMPLES, BATCH_SAMPLES]
    assert len(got) == 2 * BATCH_SAMPLES and res.embedded == 2 * BATCH_SAMPLES


# --------------------------------------------------------------------------- real path
def test_tracking_keeps_the_report_on_a_slideshow(tmp_path) -> None:
    """A slideshow of still LFW photos (the tracker's best case): tracking skips most
    embeddings and the people, segments and frames are the same as without it."""
    from conftest import shared_dir
    from facekit.identify import Identifier
    from facekit.index import Database
    from facekit.pipeline import Pipeline
    from facekit.video import VideoOptions, analyse_video
    from test_video import build_db, make_slideshow

    lfw = shared_dir() / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip(f"{lfw} not found: real-photo tests need the shared data folder")
    db = Database.open(build_db(tmp_path, lfw))
    pipe, ident = Pipeline(db.config), Identifier(db)
    video = make_slideshow(tmp_path / "slides.mp4", lfw)
    reps = {
        track: analyse_video(video, db, pipe, ident, VideoOptions(interval=1, track=track))
        for track in (True, False)
    }
    on, off = reps[True], reps[False]
    assert on.counters["followed"] > 0 and off.counters["followed"] == 0
    assert on.counters["embedded"] < off.counters["embedded"]
    key = [(p.person, p.segments, p.frames) for p in on.people]
    assert key == [(p.person, p.segments, p.frames) for p in off.people]
    assert {p.person for p in on.known} == {"Bill_Clinton", "Serena_Williams"}


def test_cut_to_another_person_in_the_same_framing_is_not_followed(tmp_path) -> None:
    """LFW photos are framed alike: a cut from Clinton to Serena Williams at the same place
    (IoU ~1) must not carry Clinton's name on (the appearance check and re-embedding)."""
    from conftest import shared_dir
    from facekit.identify import Identifier
    from facekit.index import Database
    from facekit.pipeline import Pipeline
    from facekit.video import VideoOptions, analyse_video
    from test_video import build_db, make_slideshow

    lfw = shared_dir() / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip(f"{lfw} not found: real-photo tests need the shared data folder")
    db = Database.open(build_db(tmp_path, lfw))
    plan = [(0, 6, "Bill_Clinton"), (6, 12, "Serena_Williams"), (12, 18, "Bill_Clinton")]
    video = make_slideshow(tmp_path / "cuts.mp4", lfw, plan)
    rep = analyse_video(
        video,
        db,
        Pipeline(db.config),
        Identifier(db),
        VideoOptions(interval=1, sampling="exact", track=True),
    )
    by = {p.person: p.segments for p in rep.known}
    assert by == {"Bill_Clinton": [(0, 5), (12, 17)], "Serena_Williams": [(6, 11)]}
    assert rep.counters["followed"] > 0  # the tracker did work within the shots


def test_embeddings_given_with_the_samples_give_the_same_decisions() -> None:
    """The Ray engine's actors embed every face; the resolver must take the same decisions
    and use those embeddings only for the faces it would have embedded itself."""
    samples = [(faces_at(10), crops_of(200)) for _ in range(6)]
    samples += [(faces_at(10, 300), crops_of(100, 50)) for _ in range(3)]
    samples += [(faces_at(10 + 300 * (k % 2)), crops_of(50)) for k in range(BATCH_SAMPLES + 2)]
    local, res_local, calls_local = run(samples)
    ens = FakeEnsemble()
    given = []
    res = SampleResolver(ens, FakeIdentifier(), given.append)
    helper = FakeEmbedder()
    for k, (faces, crops) in enumerate(samples):
        vectors = {"dlib": helper.embed_crops(crops["dlib"])}
        res.add(k, faces, vectors=vectors, thumbs=thumbnails(ens, crops))
    res.flush()
    assert ens.embedders[0].calls == []  # nothing embedded by the resolver itself
    assert res_local.followed > 0 and calls_local
    assert (res.embedded, res.followed) == (res_local.embedded, res_local.followed)
    for a, b in zip(local, given, strict=True):
        assert a.item == b.item and a.followed == b.followed
        assert [m.identity for m in a.matches] == [m.identity for m in b.matches]
        # followed faces carry zeros in both: the precomputed embedding is not used for them
        np.testing.assert_array_equal(a.embeddings.vectors["dlib"], b.embeddings.vectors["dlib"])
    with pytest.raises(ValueError):
        res.add(99, faces_at(10))


def test_embeddings_computed_where_the_samples_are_detected_match_a_local_run(
    tmp_path, monkeypatch
) -> None:
    """What a Ray actor computes for its range (facekit.video.detect_range: detections,
    every face's embedding, thumbnails, report crops) is bit for bit what a local run
    computes, and analyse_detected gives the local report, on a slideshow where the tracker
    follows faces (so the choice of which embeddings to use matters)."""
    from conftest import shared_dir
    from facekit.decode import DecodeStats, iter_frames
    from facekit.identify import Identifier
    from facekit.index import Database
    from facekit.pipeline import Pipeline
    from facekit.tracking import detect_and_crop
    from facekit.video import (
        MIN_SAMPLES,
        VideoOptions,
        analyse_detected,
        analyse_video,
        detect_range,
    )
    from test_video import build_db, make_slideshow

    lfw = shared_dir() / "datasets" / "lfw-dev"
    if not lfw.is_dir():
        pytest.skip(f"{lfw} not found: real-photo tests need the shared data folder")
    monkeypatch.setenv("FACEKIT_WORKERS", "1")  # the local run in this process, no pool
    db = Database.open(build_db(tmp_path, lfw))
    pipe, ident = Pipeline(db.config), Identifier(db)
    video = str(make_slideshow(tmp_path / "slides.mp4", lfw))
    options = VideoOptions(interval=1, sampling="exact")
    local = analyse_video(video, db, pipe, ident, options)
    assert local.counters["followed"] > 0 and local.counters["embedded"] > 0

    sampling = dict(interval=1, frames=None, start=None, end=None, sampling="exact")
    sampling["min_samples"] = MIN_SAMPLES
    items = detect_range(pipe, video, sampling, None, crops=True, stats=DecodeStats())
    frames = list(iter_frames(video, **sampling))
    assert [it.frame.time for it in items] == [f.time for f in frames] == local.sample_times
    n_faces = 0
    for item, frame in zip(items, frames, strict=True):
        assert item.frame.rgb.size == 0  # no pixels travel
        faces, crops = detect_and_crop(pipe, frame.rgb)
        np.testing.assert_array_equal(item.faces.xyxy, faces.xyxy)
        for e in pipe.ensemble.embedders:
            here = e.embed_crops(crops[e.model_id])
            assert item.vectors[e.model_id].dtype == np.float32
            np.testing.assert_array_equal(item.vectors[e.model_id], here)  # bit for bit
        np.testing.assert_array_equal(item.thumbs, thumbnails(pipe.ensemble, crops))
        n_faces += len(faces)
    assert n_faces == local.counters["embedded"] + local.counters["followed"]

    counters: dict[str, int] = {}
    people, agg = analyse_detected(
        items, pipe, ident, db.calibration, options, source=video, counters=counters
    )
    assert counters == local.counters
    assert agg.detections == local.detections
    key = [(p.person, p.name, p.segments, p.times, p.confidences) for p in people]
    assert key == [(p.person, p.name, p.segments, p.times, p.confidences) for p in local.people]
    for a, b in zip(people, local.people, strict=True):
        assert (a.crop is None) == (b.crop is None)
        if a.crop is not None:
            np.testing.assert_array_equal(a.crop, b.crop)
