"""The photo-manager workflow at album scale: lfw-dev tagged as digiKam would, then
``facekit import-xmp`` and ``facekit identify --write-xmp``.

1. Copy lfw-dev (790 photos, 79 people) into a temp folder, flat, and tag each photo with
   exiftool (one process, ``-@`` argument file): an MWG face region named after the person
   ("Abdullah Gul"), drawn 25% larger than the face facekit detects closest to the centre
   (dlib HOG, upsample 0); photos where it finds none are tagged at the centre
   (LFW faces are centred), as a person tagging by hand would.
2. ``facekit import-xmp`` on the folder (wall and CPU time, what was enrolled), next to
   ``facekit build-index`` on lfw-dev itself (the person-folder path).
3. ``facekit identify`` on the tagged folder with and without ``--write-xmp`` (the cost of
   writing sidecars), and how many sidecar names exiftool reads back equal the tag's name.

Usage:
    python benchmarks/bench_xmp.py [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(*args: str) -> tuple[subprocess.CompletedProcess, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "facekit", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if r.returncode not in (0, 1):
        sys.exit(f"facekit {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r, wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--workers", default="2")
    args = ap.parse_args()
    if shutil.which("exiftool") is None:
        sys.exit("exiftool is needed (apt-get install libimage-exiftool-perl)")

    from facekit.detect import detect_image, get_detector
    from facekit.imageio import load_image

    lfw = Path(args.shared) / "datasets" / "lfw-dev"
    tmp = Path(tempfile.mkdtemp(prefix="facekit-bench-xmp-"))
    album = tmp / "album"
    album.mkdir()
    det = get_detector("dlib-hog")
    lines: list[str] = []
    truth: dict[str, str] = {}
    hand = 0
    for person in sorted(p for p in lfw.iterdir() if p.is_dir()):
        for src in sorted(person.iterdir()):
            dst = album / src.name
            shutil.copy(src, dst)
            name = person.name.replace("_", " ")
            truth[dst.name] = name
            img = load_image(dst)
            W, H = img.width, img.height
            boxes = detect_image(det, img.rgb).xyxy
            if len(boxes):
                c = [
                    ((a + c) / 2 - W / 2) ** 2 + ((b + d) / 2 - H / 2) ** 2 for a, b, c, d in boxes
                ]
                a, b, c2, d = boxes[min(range(len(boxes)), key=c.__getitem__)]
                w, h = (c2 - a) * 1.5 / W, (d - b) * 1.5 / H
                x, y = (a + c2) / 2 / W, (b + d) / 2 / H
            else:
                hand += 1
                x, y, w, h = 0.5, 0.5, 0.35, 0.45
            lines += [
                "-q",
                "-overwrite_original",
                "-struct",
                f"-XMP-mwg-rs:RegionInfo={{AppliedToDimensions={{W={W},H={H},Unit=pixel}},"
                f"RegionList=[{{Area={{X={x:.5f},Y={y:.5f},W={w:.5f},H={h:.5f},Unit=normalized}},"
                f"Name={name},Type=Face}}]}}",
                str(dst),
                "-execute",
            ]
    (tmp / "args.txt").write_text("\n".join(lines) + "\n")
    t = time.perf_counter()
    subprocess.run(["exiftool", "-q", "-@", str(tmp / "args.txt")], check=True)
    print(
        f"tagged {len(truth)} photos with exiftool in {time.perf_counter() - t:.1f} s "
        f"({hand} tagged by hand at the centre: no face detected)"
    )

    r, wall, cpu = timed(
        "import-xmp",
        str(album),
        "-d",
        str(tmp / "xmp.db"),
        "-j",
        args.workers,
        "--format",
        "json",
        "-q",
    )
    rep = json.loads(r.stdout)
    print(
        f"import-xmp: {wall:.1f} s wall, {cpu:.1f} s CPU; {rep['enrolled']} faces of "
        f"{len(rep['people'])} people enrolled from {rep['regions']} regions; "
        f"{len(rep['unmatched'])} unmatched, {len(rep['errors'])} errors"
    )
    r, wall, cpu = timed(
        "build-index",
        str(lfw),
        "-d",
        str(tmp / "folder.db"),
        "-j",
        args.workers,
        "--format",
        "json",
        "-q",
    )
    rec = json.loads(r.stdout)
    print(
        f"build-index (person folders): {wall:.1f} s wall, {cpu:.1f} s CPU; "
        f"{rec['faces']} faces of {rec['persons']} people"
    )

    new = tmp / "untagged"
    new.mkdir()
    for f in sorted(album.iterdir()):
        if f.suffix.lower() == ".jpg":
            shutil.copy(f, new / f.name)
    # strip the tags in one exiftool run so the photos are untagged
    subprocess.run(
        ["exiftool", "-q", "-overwrite_original", "-XMP-mwg-rs:all=", str(new)], check=True
    )
    identify = ["identify", str(new), "-d", str(tmp / "xmp.db"), "-j", args.workers, "-q"]
    _, w0, c0 = timed(*identify, "--format", "ndjson")
    _, w1, c1 = timed(*identify, "--format", "ndjson", "--write-xmp")
    print(f"identify: {w0:.1f} s wall / {c0:.1f} s CPU; with --write-xmp {w1:.1f} s / {c1:.1f} s")
    out = subprocess.run(
        ["exiftool", "-j", "-struct", "-XMP-mwg-rs:RegionInfo", "-ext", "xmp", str(new)],
        capture_output=True,
        text=True,
        check=True,
    )
    right = named = regions = 0
    for rec in json.loads(out.stdout or "[]"):
        photo = Path(rec["SourceFile"]).name[: -len(".xmp")]
        for g in rec.get("RegionInfo", {}).get("RegionList", []):
            regions += 1
            if g.get("Name"):
                named += 1
                right += g["Name"] == truth.get(photo)
    print(
        f"sidecars: {regions} regions, {named} named, {right} named as the photo's person "
        f"(LFW photos may show other people too; photos tagged here are in the gallery)"
    )
    print(f"(files in {tmp})")


if __name__ == "__main__":
    main()
