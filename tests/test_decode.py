"""facekit.decode: probing, sampling strategies, rotation, VFR times, bad files, sprites.

Videos are synthetic and tiny (made with PyAV in tmp_path): each frame carries its own
number in its brightness so a test can tell which frame it got.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from facekit.decode import (
    DecodeStats,
    choose_sampling,
    iter_frames,
    iter_sprite,
    iter_video_paths,
    parse_vtt,
    probe,
    sample_times,
)
from facekit.errors import InputError


def encode(
    path: Path,
    frames: list[np.ndarray],
    *,
    fps: int = 10,
    gop: int | None = None,
    pts_ms: list[int] | None = None,
    rotation: int | None = None,
    codec: str = "libx264",
) -> Path:
    """Write RGB frames to an MP4. ``pts_ms`` gives variable-frame-rate times in milliseconds."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        opts = {"preset": "ultrafast"}
        if gop is not None:
            stream.codec_context.gop_size = gop
            opts.update({"keyint": str(gop), "min-keyint": str(gop), "scenecut": "0"})
        stream.options = opts
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if pts_ms is not None:
                frame.pts = pts_ms[i]
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def numbered(n: int, size: tuple[int, int] = (64, 96)) -> list[np.ndarray]:
    """Frames carrying their number in binary: 8 vertical bars of 12 px, white = 1."""
    out = []
    for i in range(n):
        img = np.zeros((*size, 3), np.uint8)
        for bit in range(8):
            if i >> bit & 1:
                img[:, bit * 12 : (bit + 1) * 12] = 255
        out.append(img)
    return out


def frame_no(rgb: np.ndarray) -> int:
    return sum(1 << bit for bit in range(8) if rgb[8:-8, bit * 12 + 3 : bit * 12 + 9].mean() > 128)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s at 10 fps (120 frames), keyframe every 10 frames (1 s)."""
    return encode(tmp_path_factory.mktemp("v") / "clip.mp4", numbered(120), fps=10, gop=10)


@pytest.fixture(scope="module")
def long_gop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s at 10 fps, a single keyframe."""
    return encode(tmp_path_factory.mktemp("v") / "long.mp4", numbered(120), fps=10, gop=1000)


def test_probe(clip: Path) -> None:
    info = probe(clip)
    assert info.codec == "h264"
    assert (info.width, info.height) == (96, 64)
    assert info.fps == pytest.approx(10)
    assert info.frames == 120
    assert info.duration == pytest.approx(12, abs=0.2)
    assert info.keyframe_interval == pytest.approx(1.0, abs=0.05)
    assert info.rotation == 0


def test_sample_times() -> None:
    assert sample_times(12, interval=5) == [0, 5, 10]
    assert sample_times(12, interval=5, start=3, end=9) == [3, 8]
    t = sample_times(100, frames=5)
    assert t == pytest.approx([5, 27.5, 50, 72.5, 95])
    assert sample_times(100) is None


def test_all_frames_in_order(clip: Path) -> None:
    stats = DecodeStats()
    got = [(f.time, frame_no(f.rgb)) for f in iter_frames(clip, stats=stats)]
    assert stats.sampling == "all" and stats.decoded == stats.kept == 120
    assert [n for _, n in got][:100] == list(range(100))
    assert got[37][0] == pytest.approx(3.7)


def test_exact_sampling_hits_target_frames(clip: Path) -> None:
    stats = DecodeStats()
    frames = list(iter_frames(clip, interval=2.5, sampling="exact", stats=stats))
    assert [round(f.time, 3) for f in frames] == [0, 2.5, 5, 7.5, 10]
    assert [frame_no(f.rgb) for f in frames] == [0, 25, 50, 75, 100]
    # Dense keyframes (1 s): seeking, so only about half a GOP per sample is decoded.
    assert stats.seeks >= 4
    assert stats.decoded <= 5 * 10
    assert stats.kept == 5


def test_exact_without_keyframes_decodes_forward(long_gop: Path) -> None:
    stats = DecodeStats()
    frames = list(iter_frames(long_gop, interval=3, sampling="exact", stats=stats))
    assert [frame_no(f.rgb) for f in frames] == [0, 30, 60, 90]
    assert stats.seeks == 1  # the initial one: no seek can skip a keyframe here
    assert stats.decoded <= 91


def test_keyframe_sampling_is_cheap(clip: Path) -> None:
    stats = DecodeStats()
    frames = list(iter_frames(clip, interval=2, sampling="keyframe", stats=stats))
    assert stats.sampling == "keyframe"
    assert all(f.keyframe for f in frames)
    assert [round(f.time, 3) for f in frames] == [0, 2, 4, 6, 8, 10]
    assert [frame_no(f.rgb) for f in frames] == [0, 20, 40, 60, 80, 100]
    assert stats.decoded <= 12  # keyframes only


def test_keyframe_sampling_nearest(clip: Path) -> None:
    frames = list(iter_frames(clip, interval=2.6, sampling="keyframe"))
    # targets 0, 2.6, 5.2, 7.8, 10.4 -> nearest keyframes 0, 3, 5, 8, 10
    assert [round(f.time, 3) for f in frames] == [0, 3, 5, 8, 10]


def test_auto_chooses_by_keyframe_spacing(clip: Path, long_gop: Path) -> None:
    s1, s2 = DecodeStats(), DecodeStats()
    list(iter_frames(clip, interval=2, stats=s1))
    list(iter_frames(long_gop, interval=2, stats=s2))
    assert s1.sampling == "keyframe"
    assert s2.sampling == "exact"
    assert choose_sampling(probe(clip), 0.4) == "exact"  # keyframes 1 s apart, step 0.4 s


def test_frames_and_range(clip: Path) -> None:
    frames = list(iter_frames(clip, frames=3, sampling="exact"))
    assert [round(f.time, 1) for f in frames] == [0.6, 6.0, 11.4]
    part = list(iter_frames(clip, interval=1, start=4, end=7, sampling="exact"))
    assert [round(f.time, 3) for f in part] == [4, 5, 6]
    every = list(iter_frames(clip, start=4, end=5))
    assert len(every) == 10 and every[0].time == pytest.approx(4)


def test_vfr_timestamps(tmp_path: Path) -> None:
    pts = [0, 100, 200, 1500, 1600, 4000, 4100]  # gaps of 1.3 s and 2.4 s
    path = encode(tmp_path / "vfr.mp4", numbered(len(pts)), fps=10, pts_ms=pts)
    got = [(round(f.time, 3), frame_no(f.rgb)) for f in iter_frames(path)]
    assert got == [(p / 1000, i) for i, p in enumerate(pts)]
    sampled = [
        (round(f.time, 3), frame_no(f.rgb)) for f in iter_frames(path, interval=1, sampling="exact")
    ]
    # targets 0,1,2,3,4 -> first frame at/after: 0, 1.5 (covers 1), 4.0 (covers 2,3,4)
    assert sampled == [(0.0, 0), (1.5, 3), (4.0, 5)]


@pytest.mark.parametrize("rotation,shape", [(90, (96, 64)), (-90, (96, 64)), (180, (64, 96))])
def test_rotation_applied(tmp_path: Path, rotation: int, shape: tuple[int, int]) -> None:
    img = np.zeros((64, 96, 3), np.uint8)
    img[:16, :16] = 255  # a white block in the top-left corner of the coded picture
    path = encode(tmp_path / "rot.mp4", [img] * 3, rotation=rotation)
    info = probe(path)
    assert info.rotation == rotation % 360
    assert (info.height, info.width) == shape
    rgb = next(iter_frames(path)).rgb
    assert rgb.shape[:2] == shape
    expected = np.rot90(img, (rotation % 360) // 90)
    assert np.abs(rgb.astype(int) - expected.astype(int)).mean() < 10


def test_bad_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 50)
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    audio = tmp_path / "tone.m4a"
    with av.open(str(audio), "w") as out:
        s = out.add_stream("aac", rate=8000)
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 8000, i * 1024
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    for bad in (empty, text, garbage, audio, tmp_path / "missing.mp4", tmp_path):
        with pytest.raises(InputError) as err:
            list(iter_frames(bad, interval=1))
        msg = str(err.value)
        assert str(bad) in msg and "\n" not in msg
        with pytest.raises(InputError):
            probe(bad)
    assert "no video stream" in _err(audio)
    assert "empty" in _err(empty)


def _err(path: Path) -> str:
    with pytest.raises(InputError) as err:
        probe(path)
    return str(err.value)


def test_truncated_file(clip: Path, tmp_path: Path) -> None:
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    # moov is at the end of PyAV's MP4s: half a file has no index and cannot be opened.
    with pytest.raises(InputError, match="cut.mp4"):
        list(iter_frames(cut, interval=1))


def test_video_paths(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    for name in ("a/x.MP4", "a/y.txt", "b.mkv", ".hidden.mp4"):
        (tmp_path / name).write_bytes(b"0")
    assert list(iter_video_paths([str(tmp_path)])) == [
        str(tmp_path / "b.mkv"),
        str(tmp_path / "a" / "x.MP4"),
    ]
    assert list(iter_video_paths(["nope.bin"])) == ["nope.bin"]


VTT = """WEBVTT

00:00:00.000 --> 00:00:05.000
scene_sprite.jpg#xywh=0,0,40,30

00:00:05.000 --> 00:00:10.000
scene_sprite.jpg#xywh=40,0,40,30

1
00:00:10.500 --> 00:01:02.250
scene_sprite.jpg#xywh=0,30,40,30
"""


def test_parse_vtt() -> None:
    cues = parse_vtt(VTT)
    assert [(c.start, c.end, c.x, c.y, c.w, c.h) for c in cues] == [
        (0, 5, 0, 0, 40, 30),
        (5, 10, 40, 0, 40, 30),
        (10.5, 62.25, 0, 30, 40, 30),
    ]
    assert parse_vtt("WEBVTT\n\n01:02.5 --> 01:03\nx.jpg#xywh=1,2,3,4\n")[0].start == pytest.approx(
        62.5
    )
    with pytest.raises(InputError, match="no sprite cues"):
        parse_vtt("WEBVTT\n\nhello\n")


def test_iter_sprite(tmp_path: Path) -> None:
    from PIL import Image

    sheet = np.zeros((60, 80, 3), np.uint8)
    sheet[:30, :40] = 10
    sheet[:30, 40:] = 20
    sheet[30:, :40] = 30
    Image.fromarray(sheet).save(tmp_path / "scene_sprite.png")
    (tmp_path / "thumbs.vtt").write_text(VTT)
    stats = DecodeStats()
    tiles = list(iter_sprite(tmp_path / "scene_sprite.png", tmp_path / "thumbs.vtt", stats))
    assert [(t.time, t.rgb.shape, int(t.rgb.mean())) for t in tiles] == [
        (0, (30, 40, 3), 10),
        (5, (30, 40, 3), 20),
        (10.5, (30, 40, 3), 30),
    ]
    assert stats.sampling == "sprite" and stats.kept == 3
    (tmp_path / "bad.vtt").write_text(VTT.replace("0,30,40,30", "60,30,40,30"))
    with pytest.raises(InputError, match="outside"):
        list(iter_sprite(tmp_path / "scene_sprite.png", tmp_path / "bad.vtt"))


# --------------------------------------------------------------------------- short clips, --start
def test_sample_times_min_samples_on_short_clips() -> None:
    # A 4 s clip at the default interval of 5 s got one sample; now at least 8, evenly spread.
    assert sample_times(4, interval=5, min_samples=8) == [k * 0.5 for k in range(8)]
    assert sample_times(4, interval=5, start=2, min_samples=8) == [2 + k * 0.25 for k in range(8)]
    # Long enough for the interval: unchanged.
    assert sample_times(100, interval=5, min_samples=8) == sample_times(100, interval=5)
    assert sample_times(4, interval=5) == [0]  # no minimum asked


def test_short_clip_gets_min_samples(clip: Path) -> None:
    st = DecodeStats()
    got = list(iter_frames(clip, interval=5, min_samples=8, stats=st))
    # 12 s at --interval 5 would be 3 samples (keyframe sampling); now 8 exact ones, 1.5 s apart.
    assert [round(f.time, 2) for f in got] == [k * 1.5 for k in range(8)]
    assert [frame_no(f.rgb) for f in got] == [k * 15 for k in range(8)]
    assert st.adapted and st.sampling == "exact" and st.planned == 8


def test_start_past_the_end_is_one_line_error(clip: Path) -> None:
    for mode in ("auto", "keyframe", "exact"):
        with pytest.raises(InputError, match=r"clip\.mp4: start 30 s is at or past the end"):
            list(iter_frames(clip, interval=5, start=30, sampling=mode))


def test_keyframe_sampling_never_before_start(clip: Path) -> None:
    # Keyframes every 1 s; with --start 3.4 the nearest keyframe to 3.4 is 3.0: not allowed.
    got = list(iter_frames(clip, interval=2, start=3.4, sampling="keyframe"))
    assert got and min(f.time for f in got) >= 3.4 - 1e-3


def test_planned_samples_for_progress(clip: Path, long_gop: Path) -> None:
    st = DecodeStats()
    n = len(list(iter_frames(clip, interval=0.5, sampling="exact", stats=st)))
    assert st.planned == n == 24
    st = DecodeStats()
    n = len(list(iter_frames(clip, interval=0.4, sampling="keyframe", stats=st)))
    assert st.planned == n == 12  # one per keyframe, not 30 targets
    st = DecodeStats()
    list(iter_frames(long_gop, stats=st))
    assert st.planned is None  # every frame: unknown in advance


def _segmented(path: Path, parts: int, **kw: object) -> list[tuple[float, int, float | None]]:
    """Sample ``path`` in ``parts`` ranges of the plan's targets, as the Ray engine's actors
    do (``select``), and join them the way it does (a frame repeated at a seam is dropped)."""
    from facekit.decode import plan_samples

    plan = plan_samples(probe(path), str(path), **kw)  # type: ignore[arg-type]
    assert plan.targets is not None
    n = len(plan.targets)
    bounds = [round(k * n / parts) for k in range(parts + 1)]
    out: list[tuple[float, int, float | None]] = []
    for lo, hi in zip(bounds, bounds[1:]):
        for f in iter_frames(path, select=(lo, hi), **kw):  # type: ignore[arg-type]
            if not out or f.time > out[-1][0] + 1e-6:
                out.append((f.time, frame_no(f.rgb), f.target))
    return out


@pytest.mark.parametrize(
    "video,kw",
    [
        ("clip", {"interval": 0.7, "sampling": "exact"}),
        ("clip", {"interval": 0.7, "sampling": "keyframe"}),  # neighbours share keyframes
        ("clip", {"interval": 0.3, "sampling": "keyframe"}),
        ("clip", {"interval": 2.6, "sampling": "keyframe"}),
        ("clip", {"frames": 17, "sampling": "auto"}),
        ("clip", {"interval": 0.5, "start": 3.0, "end": 9.5}),
        ("long_gop", {"interval": 0.9}),
        ("vfr", {"interval": 0.5, "sampling": "exact"}),  # gaps longer than the interval
        ("vfr", {"interval": 0.5, "sampling": "keyframe"}),
    ],
)
@pytest.mark.parametrize("parts", [2, 3, 7])
def test_segments_give_the_frames_of_a_whole_run(
    request: pytest.FixtureRequest, tmp_path: Path, video: str, kw: dict, parts: int
) -> None:
    if video == "vfr":
        pts = [0, 100, 200, 1500, 1600, 4000, 4100, 4200, 6900, 7000]
        path = encode(tmp_path / "vfr.mp4", numbered(len(pts)), fps=10, gop=3, pts_ms=pts)
    else:
        path = request.getfixturevalue(video)
    whole = [(f.time, frame_no(f.rgb), f.target) for f in iter_frames(path, **kw)]
    assert len(whole) >= 3
    assert _segmented(path, parts, **kw) == whole
