"""Benchmark ``facekit video``: decoding cost per sampling strategy, and a whole run.

1. Generates (once; cached in /tmp) a 60-minute 1280x720 30 fps H.264 file with x264's default
   keyframe spacing (keyint 250 = 8.3 s, scene cuts on), made of synthetic moving frames with
   a real face (from ../shared) pasted in, so that detection and embedding have work to do.
2. Decodes it: every frame (no RGB conversion, the cheapest possible full pass), then
   ``--interval 5`` with ``exact``, ``keyframe`` and ``auto`` sampling; prints frames decoded and
   seconds side by side.
3. Runs :func:`facekit.video.analyse_video` on it (``--interval 5``, auto) with a database
   built from ../shared/datasets/face_recognition-examples and splits the time into decoding
   and detect+embed+identify.
4. Runs ``short_hamilton_clip.mp4`` with the same database (``--interval 1``) and writes its
   timeline picture.

Usage:
    python benchmarks/bench_video.py [--minutes 60] [--out /tmp/facekit-bench-video]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("FACEKIT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
FR = SHARED / "datasets" / "face_recognition-examples"


def make_video(path: Path, minutes: float, fps: int = 30) -> Path:
    """Synthetic 1280x720 H.264 with x264's default GOP: a scrolling textured background and a
    real face (obama.jpg from ../shared) drifting across it, absent one minute in five.

    A loop of 90 frames is prepared once as YUV 4:2:0 arrays and cycled (about 4 ms a frame
    to encode with ``ultrafast``: 60 minutes take about 7 minutes, once; the file is cached).
    """
    import av
    from PIL import Image

    if path.exists():
        return path
    face = np.asarray(Image.open(FR / "obama.jpg").convert("RGB").resize((240, 300)))
    h, w = 720, 1280
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 255 // (w + h))], -1).astype(
        np.int16
    )
    base += np.random.default_rng(0).integers(
        -12, 12, (h, w, 3), dtype=np.int16
    )  # some texture to code
    base = np.clip(base, 0, 255).astype(np.uint8)
    loop = 90

    def yuv(rgb: np.ndarray) -> np.ndarray:
        return (
            av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
        )

    with_face, without = [], []
    for i in range(loop):
        img = np.roll(base, i * 4, axis=1)
        without.append(yuv(img))
        x = int(100 + (w - 440) * (0.5 + 0.5 * np.sin(2 * np.pi * i / loop)))
        img = img.copy()
        img[200:500, x : x + 240] = face
        with_face.append(yuv(img))
    tmp = path.with_suffix(".part.mp4")
    n = int(minutes * 60 * fps)
    t0 = time.perf_counter()
    with av.open(str(tmp), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"preset": "ultrafast"}  # keyint/scenecut left at x264's defaults
        s.codec_context.gop_size = 250  # = x264's default keyint (PyAV would otherwise pass 12)
        for i in range(n):
            frames = without if (i // (60 * fps)) % 5 == 4 else with_face
            frame = av.VideoFrame.from_ndarray(frames[i % loop], format="yuv420p")
            for p in s.encode(frame):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    os.replace(tmp, path)
    print(f"generated {path} ({n} frames) in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return path


def decode_all(path: Path) -> tuple[int, float]:
    import av

    t0 = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        for _ in c.decode(c.streams.video[0]):
            n += 1
    return n, time.perf_counter() - t0


def sampled(path: Path, mode: str, interval: float) -> tuple[int, int, float, str]:
    from facekit.decode import DecodeStats, iter_frames

    st = DecodeStats()
    t0 = time.perf_counter()
    for _ in iter_frames(path, interval=interval, sampling=mode, stats=st):
        pass
    return st.decoded, st.kept, time.perf_counter() - t0, st.sampling


def gallery(folder: Path) -> Path:
    """face_recognition's knn train folders plus its single photos of the Hamilton cast."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(FR / "knn_examples" / "train", folder)
    for name, person in (
        ("lin-manuel-miranda.png", "lin_manuel_miranda"),
        ("alex-lacamoire.png", "alex_lacamoire"),
    ):
        (folder / person).mkdir(exist_ok=True)
        shutil.copy(FR / name, folder / person / name)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--interval", type=float, default=5)
    ap.add_argument("--out", type=Path, default=Path("/tmp/facekit-bench-video"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    video = make_video(Path(f"/tmp/facekit-bench-{args.minutes:g}min-720p.mp4"), args.minutes)

    from facekit.decode import probe

    info = probe(video)
    print(
        f"## {video.name}: {info.duration:.0f} s, {info.frames} frames, {info.fps:g} fps, "
        f"keyframes every {info.keyframe_interval:.2f} s (median), {len(info.keyframes)} keyframes\n"
    )
    n_all, t_all = decode_all(video)
    print("| strategy | frames decoded | % of decode-all | samples | seconds | x real time |")
    print("|---|---|---|---|---|---|")
    print(
        f"| decode every frame (no RGB) | {n_all} | 100% | - | {t_all:.2f} | {info.duration / t_all:.0f}x |"
    )
    for mode in ("exact", "keyframe", "auto"):
        dec, kept, secs, used = sampled(video, mode, args.interval)
        label = f"--interval {args.interval:g} --sampling {mode}" + (
            f" (-> {used})" if mode == "auto" else ""
        )
        print(
            f"| {label} | {dec} | {100 * dec / n_all:.1f}% | {kept} | {secs:.2f} | {info.duration / secs:.0f}x |"
        )

    db = args.out / "faces.db"
    people = gallery(args.out / "people")
    if db.exists():
        shutil.rmtree(db)
    subprocess.run(
        [sys.executable, "-m", "facekit", "build-index", str(people), "-d", str(db), "-q"],
        check=True,
    )

    from facekit.database import Database
    from facekit.identify import Identifier
    from facekit.pipeline import Pipeline
    from facekit.video import VideoOptions, analyse_video, draw_timeline

    database = Database.open(db)
    pipe = Pipeline(database.config)
    ident = Identifier(database)
    t0 = time.perf_counter()
    rep = analyse_video(video, database, pipe, ident, VideoOptions(interval=args.interval))
    total = time.perf_counter() - t0
    print(
        f"\n## analyse_video --interval {args.interval:g} (auto -> {rep.sampling_used}): {rep.samples} samples, "
        f"{rep.frames_decoded} frames decoded"
    )
    print(
        f"total {total:.1f} s = {info.duration / total:.0f}x real time; decode {rep.timings['decode']:.1f} s, "
        f"detect+embed+identify {rep.timings['analyse']:.1f} s "
        f"({100 * rep.timings['analyse'] / total:.0f}% of the run)"
    )
    for p in rep.people:
        print(
            f"  {p.person}: {p.frames} samples, best {p.confidence:.0f}, segments "
            + ", ".join(f"{a:.0f}-{b:.0f}" for a, b in p.segments[:6])
            + (" ..." if len(p.segments) > 6 else "")
        )

    clip = SHARED / "videos" / "short_hamilton_clip.mp4"
    for interval in (1.0, 5.0):
        t0 = time.perf_counter()
        rep = analyse_video(clip, database, pipe, ident, VideoOptions(interval=interval))
        secs = time.perf_counter() - t0
        print(
            f"\n## {clip.name} --interval {interval:g} ({rep.sampling_used}, {rep.samples} samples at "
            f"{', '.join(f'{t:.2f}' for t in rep.sample_times)}; {secs:.1f} s)"
        )
        print(json.dumps(rep.to_record()["people"], indent=None))
        if interval == 1.0:
            draw_timeline(rep, args.out / "hamilton_timeline.png")
            print(f"timeline: {args.out / 'hamilton_timeline.png'}")


if __name__ == "__main__":
    main()
