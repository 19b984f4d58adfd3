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

5. Accuracy on a composite video (``--composite``): 720p, stitched from LFW photos of
   known people (gallery: photos 2-4 of Bill_Clinton, Serena_Williams, Tom_Ridge; shown:
   photos 1, 5, 6, never enrolled) and a stranger (Hans_Blix), with known on-screen intervals:
   still shots, two people side by side, drifting faces, and cuts between people framed the
   same way (the tracker's trap). Reports, per sampled time, recall (known people on screen
   who are reported) and wrong seconds (a person reported where they are not), with the
   tracker on and off.

Every timed figure is printed with the CPU time of this process and of its worker
processes, and the load average (the machine is shared: wall time alone misleads).

Usage:
    python benchmarks/bench_video.py [--minutes 60] [--out /tmp/facekit-bench-video]
        [--skip-long] [--skip-decode] [--composite] [--no-track]
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
from typing import Any

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


LFW = SHARED / "datasets" / "lfw-dev"
KNOWN = ("Bill_Clinton", "Serena_Williams", "Tom_Ridge")
STRANGER = "Hans_Blix"
GALLERY_PHOTOS = (2, 3, 4)


def load_face(who: str, n: int, size: int = 360) -> np.ndarray:
    from PIL import Image

    im = Image.open(LFW / who / f"{who}_{n:04d}.jpg").convert("RGB")
    return np.asarray(im.resize((size, size), Image.BICUBIC))


#: (seconds, [(person, photo, x0, x1)]): each shot shows people at x drifting from x0 to x1.
COMPOSITE: list[tuple[float, list[tuple[str, int, int, int]]]] = [
    (12, [("Bill_Clinton", 1, 200, 200)]),
    (8, []),
    (12, [("Serena_Williams", 1, 100, 100), ("Tom_Ridge", 1, 760, 760)]),
    (10, [("Bill_Clinton", 5, 100, 700)]),  # drifting
    (6, [("Serena_Williams", 5, 460, 460)]),  # cut, same framing as the next shots
    (6, [("Tom_Ridge", 5, 460, 460)]),
    (6, [("Bill_Clinton", 6, 460, 460)]),
    (10, [(STRANGER, 1, 460, 460)]),
    (10, [("Serena_Williams", 6, 300, 300), (STRANGER, 5, 760, 760)]),
    (8, [("Tom_Ridge", 6, 200, 600)]),
]


def make_composite(path: Path, fps: int = 10) -> tuple[Path, list[tuple[float, float, str]]]:
    """Encode :data:`COMPOSITE` (1280x720, H.264, keyframe every 2 s); returns the truth
    ``[(start, end, person)]``."""
    import av

    h, w = 720, 1280
    rng = np.random.default_rng(1)
    base = np.clip(
        np.full((h, w, 3), 110, np.int16) + rng.integers(-15, 15, (h, w, 3)), 0, 255
    ).astype(np.uint8)
    truth = []
    t = 0.0
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = 2 * fps
        s.options = {"preset": "ultrafast", "crf": "20", "keyint": str(2 * fps)}
        for secs, shot in COMPOSITE:
            faces = [(who, load_face(who, n), x0, x1) for who, n, x0, x1 in shot]
            for who, *_ in shot:
                truth.append((t, t + secs, who))
            n = int(secs * fps)
            for k in range(n):
                img = base.copy()
                for _, face, x0, x1 in faces:
                    x = int(x0 + (x1 - x0) * k / max(n - 1, 1))
                    img[180:540, x : x + 360] = face
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            t += secs
        for p in s.encode():
            out.mux(p)
    return path, truth


def score_report(rep: Any, truth: list[tuple[float, float, str]]) -> dict[str, float]:
    """Per sampled time: known people on screen and reported (recall), and people reported
    who are not on screen (wrong seconds = count x sampling step); plus the seconds of the
    reported segments that lie outside the person's on-screen intervals."""

    def on(t: float, who: str) -> bool:
        return any(a <= t < b and p == who for a, b, p in truth)

    reported: dict[float, set[str]] = {}
    for r in rep.detections:
        if r["person"] is not None:
            reported.setdefault(round(r["time"], 3), set()).add(r["person"])
    hits = total = wrong = 0
    for t in rep.sample_times:
        t = round(t, 3)
        expect = {p for a, b, p in truth if a <= t < b and p in KNOWN}
        got = reported.get(t, set())
        hits += len(expect & got)
        total += len(expect)
        wrong += sum(1 for p in got if not on(t, p))
    seg_wrong = 0.0
    for p in rep.known:
        for a, b in p.segments:
            seg_wrong += sum(0.1 for x in np.arange(a, b + 1e-9, 0.1) if not on(x, p.person))
    return {
        "samples": rep.samples,
        "recall": hits / max(total, 1),
        "wrong_s": wrong * rep.step,
        "segment_wrong_s": seg_wrong,
    }


def lfw_db(folder: Path) -> Path:
    """Database of photos 2-4 of :data:`KNOWN` (as tests/test_video.py)."""
    people = folder / "lfw-people"
    if people.exists():
        shutil.rmtree(people)
    for who in KNOWN:
        (people / who).mkdir(parents=True)
        for n in GALLERY_PHOTOS:
            shutil.copy(LFW / who / f"{who}_{n:04d}.jpg", people / who)
    db = folder / "lfw.db"
    if db.exists():
        shutil.rmtree(db)
    subprocess.run(
        [sys.executable, "-m", "facekit", "build-index", str(people), "-d", str(db), "-q"],
        check=True,
    )
    return db


def cpu_now() -> tuple[float, float, float]:
    """(wall, CPU of this process, CPU of reaped child processes) in seconds."""
    import resource

    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), time.process_time(), ch.ru_utime + ch.ru_stime


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def options(**kw: Any) -> Any:
    """VideoOptions, leaving out fields an older facekit lacks (for before/after runs)."""
    import dataclasses

    from facekit.video import VideoOptions

    names = {f.name for f in dataclasses.fields(VideoOptions)}
    return VideoOptions(**{k: v for k, v in kw.items() if k in names})


def composite_check(out: Path) -> None:
    from facekit.database import Database
    from facekit.identify import Identifier
    from facekit.pipeline import Pipeline
    from facekit.video import analyse_video

    video, truth = make_composite(out / "composite.mp4")
    db = Database.open(lfw_db(out))
    pipe, ident = Pipeline(db.config), Identifier(db)
    print("\n## composite (LFW photos, 88 s, 720p)\n")
    print(
        "| interval | tracker | samples | recall | wrong s (samples) | wrong s (segments) "
        "| faces embedded / followed | wall s | CPU s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for interval in (1.0, 2.0, 5.0):
        for track in (False, True):
            w0, c0, k0 = cpu_now()
            rep = analyse_video(video, db, pipe, ident, options(interval=interval, track=track))
            w1, c1, k1 = cpu_now()
            sc = score_report(rep, truth)
            cnt = getattr(rep, "counters", {}) or {}
            print(
                f"| {interval:g} | {'on' if track else 'off'} | {sc['samples']} | "
                f"{sc['recall']:.3f} | {sc['wrong_s']:.1f} | {sc['segment_wrong_s']:.1f} | "
                f"{cnt.get('embedded', '-')} / {cnt.get('followed', '-')} | {w1 - w0:.1f} | "
                f"{(c1 - c0) + (k1 - k0):.1f} |"
            )
    print(load())


def hamilton_check(database: Any, pipe: Any, ident: Any, out: Path) -> None:
    from facekit.video import analyse_video, draw_timeline

    clip = SHARED / "videos" / "short_hamilton_clip.mp4"
    for interval in (1.0, 5.0):
        for track in (False, True):
            t0 = time.perf_counter()
            rep = analyse_video(
                clip, database, pipe, ident, options(interval=interval, track=track)
            )
            secs = time.perf_counter() - t0
            print(
                f"\n## {clip.name} --interval {interval:g} tracker {'on' if track else 'off'} "
                f"({rep.sampling_used}, {rep.samples} samples at "
                f"{', '.join(f'{t:.2f}' for t in rep.sample_times)}; {secs:.1f} s)"
            )
            print(json.dumps(rep.to_record()["people"], indent=None))
            if interval == 1.0 and track:
                draw_timeline(rep, out / "hamilton_timeline.png")
                print(f"timeline: {out / 'hamilton_timeline.png'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--interval", type=float, default=5)
    ap.add_argument("--out", type=Path, default=Path("/tmp/facekit-bench-video"))
    ap.add_argument("--skip-long", action="store_true", help="no run on the long file")
    ap.add_argument("--skip-decode", action="store_true", help="no decode-only table")
    ap.add_argument("--composite", action="store_true", help="also the composite check")
    ap.add_argument("--no-track", action="store_true", help="long run with the tracker off")
    ap.add_argument("--max-side", type=int, default=None, help="detection copy's long side")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print(load())
    if args.composite:
        composite_check(args.out)
    if args.skip_long:
        from facekit.database import Database
        from facekit.identify import Identifier
        from facekit.pipeline import Pipeline

        db = args.out / "faces.db"
        if db.exists():
            shutil.rmtree(db)
        people = gallery(args.out / "people")
        subprocess.run(
            [sys.executable, "-m", "facekit", "build-index", str(people), "-d", str(db), "-q"],
            check=True,
        )
        database = Database.open(db)
        hamilton_check(database, Pipeline(database.config), Identifier(database), args.out)
        return
    video = make_video(Path(f"/tmp/facekit-bench-{args.minutes:g}min-720p.mp4"), args.minutes)

    from facekit.decode import probe

    info = probe(video)
    print(
        f"## {video.name}: {info.duration:.0f} s, {info.frames} frames, {info.fps:g} fps, "
        f"keyframes every {info.keyframe_interval:.2f} s (median), {len(info.keyframes)} keyframes\n"
    )
    if args.skip_decode or args.skip_long:
        n_all, t_all = info.frames, float("nan")
    else:
        n_all, t_all = decode_all(video)
    print("| strategy | frames decoded | % of decode-all | samples | seconds | x real time |")
    print("|---|---|---|---|---|---|")
    print(
        f"| decode every frame (no RGB) | {n_all} | 100% | - | {t_all:.2f} | {info.duration / t_all:.0f}x |"
    )
    for mode in () if args.skip_decode or args.skip_long else ("exact", "keyframe", "auto"):
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
    from facekit.video import analyse_video

    database = Database.open(db)
    config = database.config
    if args.max_side:
        import dataclasses

        config = dataclasses.replace(config, max_side=args.max_side)
    pipe = Pipeline(config)
    ident = Identifier(database)
    if not args.skip_long:
        w0, c0, k0 = cpu_now()
        rep = analyse_video(
            video, database, pipe, ident, options(interval=args.interval, track=not args.no_track)
        )
        w1, c1, k1 = cpu_now()
        total = w1 - w0
        print(
            f"\n## analyse_video --interval {args.interval:g} (auto -> {rep.sampling_used}): "
            f"{rep.samples} samples, {rep.frames_decoded} frames decoded, "
            f"tracker {'off' if args.no_track else 'on'}, counters {getattr(rep, 'counters', {})}, "
            f"max side {config.max_side}"
        )
        print(
            f"total {total:.1f} s = {info.duration / total:.0f}x real time; CPU {c1 - c0:.1f} s "
            f"here + {k1 - k0:.1f} s in workers; decode {rep.timings['decode']:.1f} s, "
            f"detect+embed+identify {rep.timings['analyse']:.1f} s; {load()}"
        )
        for p in rep.people:
            print(
                f"  {p.person}: {p.frames} samples, best {p.confidence:.0f}, segments "
                + ", ".join(f"{a:.0f}-{b:.0f}" for a, b in p.segments[:6])
                + (" ..." if len(p.segments) > 6 else "")
            )
    hamilton_check(database, pipe, ident, args.out)


if __name__ == "__main__":
    main()
