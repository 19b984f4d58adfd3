"""Generated bad-input corpus: every case builds its bad file(s) in a temp folder and says what
facekit must do with them.

Nothing here is a committed copy of a photo or video: valid bases come from ``../shared`` (a
small database, a people folder and a cluster file are built from them once per session, see
``conftest.py``) and the bad files are derived from them at run time (truncated, garbled,
re-encoded, renamed...) or written from scratch.

A :class:`Case` is a builder ``build(ctx) -> argv`` plus the documented outcome:

* ``exit``: the exit codes allowed (README "Exit codes": 2 usage, 3 input, 4 model,
  5 database; 0/1 only where the input is odd but valid);
* ``names`` / ``problem``: for an error exit, one stderr line must contain ``names`` (the bad
  file, usually its base name) and match the ``problem`` regex (case-insensitive);
* ``db``: ``"intact"`` (every file of the stored generations is byte-identical afterwards) or
  ``"works"`` (the database still opens and still names Obama in a known photo, with at least
  as many people and faces as before) when a database is involved;
* ``check``: an extra check of the result (e.g. the good files of the batch were processed).

Add a case by appending to :data:`CASES`; ``test_badinput.py`` runs each through the CLI.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Case", "Ctx", "CASES"]


# --------------------------------------------------------------------------- context
@dataclass
class Ctx:
    """What a case builder gets: a fresh temp folder and the session's valid bases.

    Attributes:
        tmp: the case's own empty folder.
        shared: ``../shared``.
        base: session folder with ``db`` (a small database of 5 people), ``people``
            (the folder it was built from), ``clusters.json`` (+ its face table), ``home``
            (FACEKIT_HOME with the dlib ONNX conversion).
        env: extra environment variables for the command (the builder may set them).
        stdin: text fed on stdin.
        no_dac: run the command without CAP_DAC_OVERRIDE, so that file modes apply to root.
    """

    tmp: Path
    shared: Path
    base: Path
    env: dict[str, str] = field(default_factory=dict)
    stdin: str | None = None
    no_dac: bool = False
    db: Path | None = None

    # ---- valid bases
    @property
    def photo(self) -> Path:
        """A small JPEG of Obama (one face, 33 KB)."""
        return self.shared / "datasets" / "face_recognition-examples" / "obama_small.jpg"

    @property
    def png(self) -> Path:
        return self.shared / "datasets" / "face_recognition-examples" / "alex-lacamoire.png"

    @property
    def video(self) -> Path:
        """A 10 s 640x360 H.264 clip with audio."""
        return self.shared / "videos" / "short_hamilton_clip.mp4"

    def good(self) -> str:
        """A copy of the Obama photo inside tmp (the good file of a mixed batch)."""
        p = self.tmp / "good" / "obama_ok.jpg"
        p.parent.mkdir(exist_ok=True)
        shutil.copyfile(self.photo, p)
        return str(p)

    def copy_db(self) -> Path:
        """A private copy of the session database (``self.db``)."""
        self.db = self.tmp / "faces.db"
        shutil.copytree(self.base / "db", self.db, symlinks=True)
        return self.db

    def copy_people(self) -> Path:
        p = self.tmp / "people"
        shutil.copytree(self.base / "people", p, symlinks=True)
        return p

    def copy_clusters(self) -> Path:
        """``clusters.json`` and its ``clusters.faces.parquet`` in tmp."""
        for name in ("clusters.json", "clusters.faces.parquet"):
            shutil.copyfile(self.base / name, self.tmp / name)
        return self.tmp / "clusters.json"

    def write(self, name: str | bytes, data: bytes | str) -> Path:
        p = Path(os.fsdecode(name)) if isinstance(name, bytes) else Path(name)
        p = self.tmp / p
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        p.write_bytes(data)
        return p


@dataclass
class Case:
    """One bad input and what facekit must do with it (see the module docs)."""

    id: str
    build: Callable[[Ctx], list[str]]
    exit: frozenset[int]
    names: str | None = None
    problem: str = r"."
    db: str | None = None
    check: Callable[[Ctx, Any], None] | None = None
    subprocess: bool = False

    @property
    def kind(self) -> str:
        return self.id.split("/", 1)[0]


CASES: list[Case] = []


def case(
    id: str,
    exit: int | set[int],
    names: str | None = None,
    problem: str = r".",
    db: str | None = None,
    check: Callable[[Ctx, Any], None] | None = None,
    subprocess: bool = False,
) -> Callable[[Callable[[Ctx], list[str]]], Callable[[Ctx], list[str]]]:
    def deco(fn: Callable[[Ctx], list[str]]) -> Callable[[Ctx], list[str]]:
        codes = frozenset({exit} if isinstance(exit, int) else exit)
        CASES.append(Case(id, fn, codes, names, problem, db, check, subprocess))
        return fn

    return deco


# --------------------------------------------------------------------------- byte helpers
def _jpeg(ctx: Ctx) -> bytes:
    return ctx.photo.read_bytes()


def _png(ctx: Ctx) -> bytes:
    return ctx.png.read_bytes()


def _pil(ctx: Ctx) -> Any:
    from PIL import Image

    return Image.open(ctx.photo).convert("RGB")


def _save(im: Any, fmt: str, **kw: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(w: int = 100_000, h: int = 100_000) -> bytes:
    """A tiny PNG whose header declares ``w x h`` pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def jpeg_bomb(ctx: Ctx) -> bytes:
    """The Obama JPEG with its frame header (SOF0) patched to claim 65000 x 65000 pixels."""
    data = bytearray(_jpeg(ctx))
    i = 2
    while i < len(data) - 9:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", 65000, 65000)
            return bytes(data)
        seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
        i += 2 + seg
    raise AssertionError("no SOF marker in the base JPEG")


def _noise(n: int, seed: int = 0) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def _ok_faces(ctx: Ctx, res: Any) -> None:
    """The good photo of a mixed batch was processed: its record is on stdout with a face."""
    assert "obama_ok.jpg" in res.stdout, "the good file of the batch is missing from stdout"


# =========================================================================== images
def _image_case(
    id: str,
    filename: str | bytes,
    make: Callable[[Ctx], bytes],
    exit: int | set[int] = 3,
    problem: str = r".",
    names: str | None = None,
    command: str = "identify",
) -> None:
    def build(ctx: Ctx) -> list[str]:
        bad = ctx.write(filename, make(ctx))
        good = ctx.good()
        if command == "identify":
            return ["identify", str(bad), good, "-d", str(ctx.copy_db()), "-f", "ndjson", "-j", "1"]
        out = ctx.tmp / "out.parquet"
        return ["embed", str(bad), good, "-o", str(out), "-f", "ndjson", "-j", "1"]

    nm = names if names is not None else Path(os.fsdecode(filename)).name
    case(f"image/{id}", exit, nm, problem, check=_ok_faces)(build)


_UNREADABLE = (
    r"truncat|corrupt|cannot|damaged|broken|invalid|not an image|unsupported|decode|incomplete"
)
_image_case("zero-byte", "empty.jpg", lambda c: b"", problem=r"empty|0 bytes|zero")
_image_case(
    "truncated-jpeg-half", "half.jpg", lambda c: _jpeg(c)[: len(_jpeg(c)) // 2], problem=_UNREADABLE
)
_image_case("truncated-jpeg-header", "head.jpg", lambda c: _jpeg(c)[:300], problem=_UNREADABLE)
_image_case("truncated-jpeg-2bytes", "soi.jpg", lambda c: b"\xff\xd8", problem=_UNREADABLE)
_image_case(
    "truncated-png-half", "half.png", lambda c: _png(c)[: len(_png(c)) // 2], problem=_UNREADABLE
)
_image_case("truncated-png-signature", "sig.png", lambda c: _png(c)[:8], problem=_UNREADABLE)


def _png_bad_crc(c: Ctx) -> bytes:
    d = bytearray(_png(c))
    i = d.find(b"IDAT")
    d[i + 40] ^= 0xFF
    return bytes(d)


_image_case("png-corrupt-idat", "crc.png", _png_bad_crc, problem=_UNREADABLE + r"|crc")
_image_case(
    "text-named-jpg",
    "notes.jpg",
    lambda c: "just some text\n" * 20,  # type: ignore[arg-type,return-value]
    problem=r"not an image|cannot identify|unsupported",
)
_image_case(
    "html-named-jpg",
    "page.jpg",
    lambda c: b"<!doctype html><html><body>404</body></html>",
    problem=r"not an image|cannot identify|unsupported",
)
_image_case(
    "zip-named-jpg",
    "archive.jpg",
    lambda c: zlib.compress(b"x" * 4000),
    problem=r"not an image|cannot identify|unsupported",
)
_image_case(
    "random-bytes-jpg",
    "noise.jpg",
    lambda c: _noise(5000),
    problem=r"not an image|cannot identify|unsupported",
)
_image_case(
    "jpeg-magic-then-noise",
    "magic.jpg",
    lambda c: b"\xff\xd8\xff\xe0" + _noise(5000, 1),
    problem=_UNREADABLE,
)
_image_case("png-bomb-header", "bomb.png", lambda c: png_bomb(), problem=r"too large|pixels|bomb")
_image_case("jpeg-bomb-header", "bomb.jpg", jpeg_bomb, problem=r"too large|pixels|bomb")
_image_case(
    "png-zero-size-header",
    "zero.png",
    lambda c: png_bomb(0, 0),
    problem=_UNREADABLE + r"|size|dimension",
)
_image_case(
    "truncated-webp",
    "half.webp",
    lambda c: _save(_pil(c), "WEBP")[: len(_save(_pil(c), "WEBP")) // 2],
    problem=_UNREADABLE,
)
_image_case(
    "truncated-tiff",
    "half.tiff",
    lambda c: _save(_pil(c), "TIFF")[: len(_save(_pil(c), "TIFF")) // 3],
    problem=_UNREADABLE,
)
_image_case(
    "bmp-bad-header",
    "bad.bmp",
    lambda c: b"BM" + _noise(60, 2),
    problem=_UNREADABLE + r"|cannot identify",
)
_image_case(
    "embed-truncated-jpeg",
    "half.jpg",
    lambda c: _jpeg(c)[: len(_jpeg(c)) // 2],
    problem=_UNREADABLE,
    command="embed",
)
_image_case(
    "embed-zero-byte", "empty.jpg", lambda c: b"", problem=r"empty|0 bytes|zero", command="embed"
)


def _heic(c: Ctx) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return _save(_pil(c), "HEIF")


_image_case(
    "truncated-heic", "phone.heic", lambda c: _heic(c)[:2000], problem=_UNREADABLE + r"|heic|heif"
)

# bracket and encoding trouble in names: the error line must show the name as it is
_image_case(
    "bracketed-name",
    "bad/[red]x.jpg",
    lambda c: _jpeg(c)[:300],
    problem=_UNREADABLE,
    names="bad/[red]x.jpg",
)
_image_case(
    "bracketed-name-markup",
    "[bold]loud[/bold].jpg",
    lambda c: b"",
    problem=r"empty",
    names="[bold]loud[/bold].jpg",
)
_image_case(
    "non-utf8-name", b"caf\xe9-\xff.jpg", lambda c: _jpeg(c)[:300], problem=_UNREADABLE, names="caf"
)
_image_case("newline-in-name", "two\nlines.jpg", lambda c: b"", problem=r"empty", names="lines.jpg")


# odd but valid images: never an error; the good photo is still processed
def _valid_image(
    id: str, filename: str, make: Callable[[Ctx], bytes], exit: set[int] | int = 0
) -> None:
    def build(ctx: Ctx) -> list[str]:
        p = ctx.write(filename, make(ctx))
        return ["identify", str(p), ctx.good(), "-d", str(ctx.copy_db()), "-f", "ndjson", "-j", "1"]

    case(f"image/{id}", exit, check=_ok_faces)(build)


_valid_image("png-named-jpg", "really_png.jpg", lambda c: _save(_pil(c), "PNG"))
_valid_image("jpeg-named-png", "really_jpeg.png", _jpeg)
_valid_image("jpeg-no-extension-case", "UPPER.JPEG", _jpeg)
_valid_image("cmyk-jpeg", "cmyk.jpg", lambda c: _save(_pil(c).convert("CMYK"), "JPEG"), {0, 1})
_valid_image(
    "grey-16bit-png",
    "grey16.png",
    lambda c: _save(_pil(c).convert("L").point(lambda v: v * 256, "I").convert("I;16"), "PNG"),
    {0, 1},
)


def _rgb16(c: Ctx) -> bytes:
    import cv2
    import numpy as np

    a = np.asarray(_pil(c))[:, :, ::-1].astype(np.uint16) * 257
    ok, buf = cv2.imencode(".png", a)
    assert ok
    return buf.tobytes()


_valid_image("rgb-16bit-png", "rgb16.png", _rgb16, {0, 1})
_valid_image("palette-png", "palette.png", lambda c: _save(_pil(c).convert("P"), "PNG"), {0, 1})
_valid_image("one-bit-png", "onebit.png", lambda c: _save(_pil(c).convert("1"), "PNG"), {0, 1})
_valid_image("rgba-png", "alpha.png", lambda c: _save(_pil(c).convert("RGBA"), "PNG"), {0, 1})
_valid_image("la-png", "greyalpha.png", lambda c: _save(_pil(c).convert("LA"), "PNG"), {0, 1})


def _animated(c: Ctx, fmt: str) -> bytes:
    im = _pil(c)
    frames = [im, im.transpose(0), im.rotate(90)]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


_valid_image("animated-gif", "anim.gif", lambda c: _animated(c, "GIF"), {0, 1})
_valid_image("animated-png", "anim.png", lambda c: _animated(c, "PNG"), {0, 1})
_valid_image("one-pixel", "dot.png", lambda c: _save(_pil(c).resize((1, 1)), "PNG"), {0, 1})
_valid_image(
    "extreme-aspect", "strip.png", lambda c: _save(_pil(c).resize((20000, 2)), "PNG"), {0, 1}
)


def _bad_exif(c: Ctx) -> bytes:
    im = _pil(c)
    exif = im.getexif()
    exif[0x0112] = 9  # orientation 9 does not exist
    return _save(im, "JPEG", exif=exif.tobytes())


_valid_image("bad-exif-orientation", "orient9.jpg", _bad_exif, {0, 1})
_valid_image("heic", "phone.heic", _heic, {0, 3})


@case(
    "image/directory-named-jpg",
    {0, 3},
    "dir.jpg",
    r"directory|not a (regular )?file",
    check=_ok_faces,
)
def _dir_jpg(ctx: Ctx) -> list[str]:
    (ctx.tmp / "dir.jpg").mkdir()
    return [
        "identify",
        str(ctx.tmp / "dir.jpg"),
        ctx.good(),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "ndjson",
        "-j",
        "1",
    ]


@case(
    "image/dangling-symlink",
    3,
    "gone.jpg",
    r"no such|missing|dangling|broken|not found|exist",
    check=_ok_faces,
)
def _dangling(ctx: Ctx) -> list[str]:
    (ctx.tmp / "gone.jpg").symlink_to(ctx.tmp / "unmounted" / "photo.jpg")
    return [
        "identify",
        str(ctx.tmp / "gone.jpg"),
        ctx.good(),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "ndjson",
        "-j",
        "1",
    ]


@case(
    "image/symlink-loop", 3, "loop.jpg", r"loop|symbolic|symlink|too many|cannot", check=_ok_faces
)
def _loop(ctx: Ctx) -> list[str]:
    (ctx.tmp / "loop.jpg").symlink_to(ctx.tmp / "loop.jpg")
    return [
        "identify",
        str(ctx.tmp / "loop.jpg"),
        ctx.good(),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "ndjson",
        "-j",
        "1",
    ]


@case("image/fifo", 3, "pipe.jpg", r"not a regular file|fifo|pipe|special", check=_ok_faces)
def _fifo(ctx: Ctx) -> list[str]:
    os.mkfifo(ctx.tmp / "pipe.jpg")
    return [
        "identify",
        str(ctx.tmp / "pipe.jpg"),
        ctx.good(),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "ndjson",
        "-j",
        "1",
    ]


@case("image/missing-file", 3, "nowhere.jpg", r"no such|not found|missing|exist", check=_ok_faces)
def _missing(ctx: Ctx) -> list[str]:
    return [
        "identify",
        str(ctx.tmp / "nowhere.jpg"),
        ctx.good(),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "ndjson",
        "-j",
        "1",
    ]


@case(
    "image/unreadable-permission",
    3,
    "secret.jpg",
    r"permission|denied|cannot read",
    check=_ok_faces,
)
def _noperm(ctx: Ctx) -> list[str]:
    p = ctx.write("secret.jpg", _jpeg(ctx))
    p.chmod(0)
    ctx.no_dac = True
    return ["identify", str(p), ctx.good(), "-d", str(ctx.copy_db()), "-f", "ndjson", "-j", "1"]


@case("image/quiet-keeps-errors", 3, "half.jpg", _UNREADABLE, check=_ok_faces)
def _quiet(ctx: Ctx) -> list[str]:
    p = ctx.write("half.jpg", _jpeg(ctx)[:300])
    return [
        "identify",
        str(p),
        ctx.good(),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "ndjson",
        "-j",
        "1",
        "-q",
    ]


@case("image/csv-marks-errors", 3, "half.jpg", _UNREADABLE)
def _csv_marks(ctx: Ctx) -> list[str]:
    p = ctx.write("half.jpg", _jpeg(ctx)[:300])
    return ["identify", str(p), ctx.good(), "-d", str(ctx.copy_db()), "-f", "csv", "-j", "1"]


def _folder_of_bad(ctx: Ctx) -> Path:
    """A folder holding one of most kinds of bad image above, plus one good photo."""
    folder = ctx.tmp / "album"
    folder.mkdir()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "half.jpg").write_bytes(_jpeg(ctx)[:4000])
    (folder / "notes.jpg").write_text("text")
    (folder / "bomb.png").write_bytes(png_bomb())
    (folder / "dir.jpg").mkdir()
    (folder / "gone.jpg").symlink_to(folder / "nowhere" / "x.jpg")
    os.mkfifo(folder / "pipe.jpg")
    (folder / "[red]x.jpg").write_bytes(_jpeg(ctx)[:300])
    shutil.copyfile(ctx.photo, folder / "obama_ok.jpg")
    return folder


@case("image/folder-walk-pool", 3, "half.jpg", _UNREADABLE, check=_ok_faces)
def _folder_pool(ctx: Ctx) -> list[str]:
    # more files than POOL_MIN_FILES, default workers: the worker-pool path
    return [
        "identify",
        str(_folder_of_bad(ctx)),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "ndjson",
        "-j",
        "2",
    ]


@case("image/cluster-folder", 3, "half.jpg", _UNREADABLE)
def _cluster_folder(ctx: Ctx) -> list[str]:
    return ["cluster", str(_folder_of_bad(ctx)), "-f", "json", "-j", "1"]


@case("image/embed-folder", 3, "notes.jpg", r"not an image|cannot identify|unsupported")
def _embed_folder(ctx: Ctx) -> list[str]:
    return [
        "embed",
        str(_folder_of_bad(ctx)),
        "-o",
        str(ctx.tmp / "f.parquet"),
        "-f",
        "csv",
        "-j",
        "1",
    ]


# bad photos in the people folder of an existing database: the rest is stored, nothing lost
def _people_case(
    id: str,
    mutate: Callable[[Ctx, Path], str],
    exit: int | set[int] = 3,
    problem: str = _UNREADABLE,
    names: str | None = None,
    check: Callable[[Ctx, Any], None] | None = None,
) -> None:
    holder: dict[str, str] = {}

    def build(ctx: Ctx) -> list[str]:
        people = ctx.copy_people()
        holder["n"] = mutate(ctx, people)
        return ["build-index", str(people), "-d", str(ctx.copy_db()), "-f", "json", "-j", "1"]

    case(f"image/{id}", exit, names, problem, db="works", check=check)(build)


def _kept_one(ctx: Ctx, res: Any) -> None:
    """The report counts the unreadable photo as kept, never as removed."""
    rec = json.loads(res.stdout)
    assert (rec["kept_unreadable"], rec["removed"], rec["faces_removed"]) == (1, 0, 0), rec
    assert "1 kept unreadable" in res.stderr, res.stderr


def _add_truncated(ctx: Ctx, people: Path) -> str:
    (people / "obama" / "new_half.jpg").write_bytes(_jpeg(ctx)[:3000])
    return "new_half.jpg"


def _truncate_enrolled(ctx: Ctx, people: Path) -> str:
    p = people / "obama" / "obama2.jpg"
    p.write_bytes(p.read_bytes()[:5000])
    return "obama2.jpg"


def _dangle_enrolled(ctx: Ctx, people: Path) -> str:
    p = people / "biden" / "biden2.jpg"
    p.unlink()
    p.symlink_to("/mnt/unmounted-drive/biden2.jpg")
    return "biden2.jpg"


def _unreadable_enrolled(ctx: Ctx, people: Path) -> str:
    ctx.no_dac = True
    (people / "kit_harington" / "john1.jpeg").chmod(0)
    return "john1.jpeg"


def _unreadable_person(ctx: Ctx, people: Path) -> str:
    ctx.no_dac = True
    (people / "rose_leslie").chmod(0)
    return "rose_leslie"


_people_case("build-new-truncated-photo", _add_truncated, names="new_half.jpg")
_people_case(
    "build-enrolled-photo-truncated", _truncate_enrolled, names="obama2.jpg", check=_kept_one
)
_people_case(
    "build-enrolled-photo-dangling",
    _dangle_enrolled,
    names="biden2.jpg",
    problem=r"no such|missing|dangling|broken|not found|exist|unreadable|cannot",
    check=_kept_one,
)
_people_case(
    "build-enrolled-photo-unreadable",
    _unreadable_enrolled,
    names="john1.jpeg",
    problem=r"permission|denied|unreadable|cannot",
    check=_kept_one,
)


def _dangle_person(ctx: Ctx, people: Path) -> str:
    shutil.rmtree(people / "rose_leslie")
    (people / "rose_leslie").symlink_to("/mnt/unmounted-drive/rose_leslie")
    return "rose_leslie"


_people_case(
    "build-person-folder-dangling",
    _dangle_person,
    names="rose_leslie",
    problem=r"dangling|unmounted|missing",
)
_people_case(
    "build-person-folder-unreadable",
    _unreadable_person,
    names="rose_leslie",
    problem=r"permission|denied|unreadable|cannot",
)


@case(
    "image/build-empty-people-folder",
    {2, 3},
    "people",
    r"empty|no person|nothing|remov|mass",
    db="works",
)
def _empty_people(ctx: Ctx) -> list[str]:
    people = ctx.tmp / "people"
    people.mkdir()
    return ["build-index", str(people), "-d", str(ctx.copy_db()), "-f", "json", "-j", "1"]


@case(
    "image/build-missing-people-folder",
    {2, 3},
    "unmounted",
    r"no such|missing|not found|exist|not a folder",
    db="works",
)
def _missing_people(ctx: Ctx) -> list[str]:
    return [
        "build-index",
        str(ctx.tmp / "unmounted"),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "json",
        "-j",
        "1",
    ]


# =========================================================================== videos
def _video_case(
    id: str,
    filename: str,
    make: Callable[[Ctx], bytes] | None,
    exit: int | set[int] = 3,
    problem: str = r".",
    extra: tuple[str, ...] = (),
    names: str | None = None,
    good: bool = True,
    subprocess: bool = False,
    good_fails_too: bool = False,
) -> None:
    """``good_fails_too``: the bad option applies to every input, the good clip included, so
    that clip is the one named in the error and is not expected on stdout."""

    def build(ctx: Ctx) -> list[str]:
        args = ["video"]
        if make is not None:
            args.append(str(ctx.write(filename, make(ctx))))
        if good:
            ok = ctx.tmp / "good" / "clip_ok.mp4"
            ok.parent.mkdir(exist_ok=True)
            shutil.copyfile(ctx.video, ok)
            args.append(str(ok))
        return [*args, "-d", str(ctx.copy_db()), "-f", "json", "--interval", "2.5", *extra]

    def good_check(ctx: Ctx, res: Any) -> None:
        if good and not good_fails_too and res.exit_code in (0, 1, 3):
            assert "clip_ok.mp4" in res.stdout, "the good video is missing from stdout"

    nm = names if names is not None else (filename if make is not None else None)
    case(f"video/{id}", exit, nm, problem, check=good_check, subprocess=subprocess)(build)


_VIDEO_BAD = r"truncat|corrupt|cannot|damaged|broken|invalid|not a video|no video|unsupported|decode|moov|stream|format"


def _audio_only(ctx: Ctx) -> bytes:
    import av

    out = io.BytesIO()
    with av.open(str(ctx.video)) as src, av.open(out, "w", format="mp4") as dst:
        a = src.streams.audio[0]
        o = dst.add_stream_from_template(a)
        for pkt in src.demux(a):
            if pkt.dts is None:
                continue
            pkt.stream = o
            dst.mux(pkt)
    return out.getvalue()


def _video_bytes(ctx: Ctx) -> bytes:
    return ctx.video.read_bytes()


_video_case("zero-byte", "empty.mp4", lambda c: b"", problem=r"empty|0 bytes|zero|" + _VIDEO_BAD)
_video_case("truncated-head", "head.mp4", lambda c: _video_bytes(c)[:65536], problem=_VIDEO_BAD)
_video_case(
    "truncated-half",
    "half.mp4",
    lambda c: _video_bytes(c)[: len(_video_bytes(c)) // 2],
    exit={0, 1, 3},
    problem=_VIDEO_BAD,
)
_video_case("audio-only", "song.mp4", _audio_only, problem=r"no video|audio|stream")
_video_case("garbage", "noise.mp4", lambda c: _noise(200_000, 3), problem=_VIDEO_BAD)
_video_case(
    "text-named-mp4", "readme.mp4", lambda c: b"this is not a video\n" * 50, problem=_VIDEO_BAD
)
_video_case(
    "ftyp-then-garbage",
    "fake.mp4",
    lambda c: _video_bytes(c)[:32] + _noise(100_000, 4),
    problem=_VIDEO_BAD,
)
_video_case("jpeg-named-mp4", "still.mp4", _jpeg, exit={0, 1, 3}, problem=_VIDEO_BAD)
_video_case("huge-interval", "", None, exit={0, 1, 2}, extra=("--interval", "1e12"))
_video_case("inf-interval", "", None, exit={0, 1, 2}, extra=("--interval", "inf"))
_video_case("nan-interval", "", None, exit={0, 1, 2}, extra=("--interval", "nan"))
_video_case(
    "start-past-end",
    "",
    None,
    exit={2, 3},
    extra=("--start", "1e9"),
    names="clip_ok.mp4",
    good_fails_too=True,
    problem=r"start|end|longer|past|beyond|duration",
)
_video_case("start-nan", "", None, exit={0, 1, 2}, extra=("--start", "nan"))
_video_case(
    "end-before-start",
    "",
    None,
    exit=2,
    extra=("--start", "6", "--end", "2"),
    names="--end",
    problem=r"start|before|after",
)
_video_case(
    "frames-huge", "", None, exit={0, 1, 2}, extra=("--frames", "1000000000"), subprocess=True
)


def _video_path_case(
    id: str, setup: Callable[[Ctx], Path], problem: str, names: str, exit: int | set[int] = 3
) -> None:
    def build(ctx: Ctx) -> list[str]:
        bad = setup(ctx)
        ok = ctx.tmp / "good" / "clip_ok.mp4"
        ok.parent.mkdir(exist_ok=True)
        shutil.copyfile(ctx.video, ok)
        return [
            "video",
            str(bad),
            str(ok),
            "-d",
            str(ctx.copy_db()),
            "-f",
            "json",
            "--interval",
            "2.5",
        ]

    def good_check(ctx: Ctx, res: Any) -> None:
        if res.exit_code in (0, 1, 3):
            assert "clip_ok.mp4" in res.stdout, "the good video is missing from stdout"

    case(f"video/{id}", exit, names, problem, check=good_check)(build)


def _mkdir(ctx: Ctx, name: str) -> Path:
    (ctx.tmp / name).mkdir()
    return ctx.tmp / name


_video_path_case(
    "directory-named-mp4",
    lambda c: _mkdir(c, "dir.mp4"),
    r"directory|not a (regular )?file|no video",
    "dir.mp4",
    exit={1, 3},
)


def _dangling_video(ctx: Ctx) -> Path:
    (ctx.tmp / "gone.mp4").symlink_to("/mnt/unmounted/gone.mp4")
    return ctx.tmp / "gone.mp4"


def _fifo_video(ctx: Ctx) -> Path:
    os.mkfifo(ctx.tmp / "pipe.mp4")
    return ctx.tmp / "pipe.mp4"


_video_path_case(
    "dangling-symlink", _dangling_video, r"no such|missing|not found|exist|dangling", "gone.mp4"
)
_video_path_case("fifo", _fifo_video, r"not a regular file|fifo|pipe|special", "pipe.mp4")
_video_path_case(
    "missing", lambda c: c.tmp / "nowhere.mp4", r"no such|missing|not found|exist", "nowhere.mp4"
)


@case("video/folder-with-bad", 3, "half.mp4", _VIDEO_BAD)
def _video_folder(ctx: Ctx) -> list[str]:
    folder = ctx.tmp / "vids"
    folder.mkdir()
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "half.mp4").write_bytes(_video_bytes(ctx)[:65536])
    return ["video", str(folder), "-d", str(ctx.copy_db()), "-f", "json"]


@case("video/sprite-garbage", 3, "sprite.jpg", _UNREADABLE + r"|not an image|cannot identify")
def _sprite_garbage(ctx: Ctx) -> list[str]:
    sprite = ctx.write("sprite.jpg", b"garbage")
    vtt = ctx.write(
        "sprite.vtt", "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nsprite.jpg#xywh=0,0,160,90\n"
    )
    return [
        "video",
        "--sprite",
        str(sprite),
        "--vtt",
        str(vtt),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "json",
    ]


@case("video/vtt-garbage", 3, "sprite.vtt", r"vtt|cue|xywh|not|invalid|malformed|no ")
def _vtt_garbage(ctx: Ctx) -> list[str]:
    sprite = ctx.write("sprite.jpg", _jpeg(ctx))
    vtt = ctx.write("sprite.vtt", _noise(3000, 5))
    return [
        "video",
        "--sprite",
        str(sprite),
        "--vtt",
        str(vtt),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "json",
    ]


@case("video/vtt-box-outside-sprite", {0, 1, 3}, "sprite.vtt", r"outside|xywh|box|beyond|invalid")
def _vtt_outside(ctx: Ctx) -> list[str]:
    sprite = ctx.write("sprite.jpg", _jpeg(ctx))
    vtt = ctx.write(
        "sprite.vtt",
        "WEBVTT\n\n00:00:00.000 --> 00:00:05.000\nsprite.jpg#xywh=90000,90000,-5,160\n",
    )
    return [
        "video",
        "--sprite",
        str(sprite),
        "--vtt",
        str(vtt),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "json",
    ]


# =========================================================================== databases
def _manifest(db: Path) -> Path:
    gen = (db / "CURRENT").read_text().split()[0]
    return db / gen / "manifest.json"


def _sha(p: Path) -> str:
    import hashlib

    return hashlib.sha256(p.read_bytes()).hexdigest()


def _reseal(db: Path, files_too: bool = True) -> None:
    """Update the manifest's file checksums and CURRENT's manifest checksum to match the files
    (what an attacker or a careless repair would do): checksums alone then catch nothing."""
    m = _manifest(db)
    gen = m.parent
    if files_too:
        try:
            doc = json.loads(m.read_text())
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("files"), dict):
            doc["files"] = {n: _sha(gen / n) for n in doc["files"] if (gen / n).is_file()}
            m.write_text(json.dumps(doc, indent=1))
    (db / "CURRENT").write_text(f"{gen.name} {_sha(m)}\n")


def _identify_db(ctx: Ctx) -> list[str]:
    return ["identify", str(ctx.photo), "-d", str(ctx.db), "-f", "json", "-j", "1"]


def _db_case(
    id: str,
    mutate: Callable[[Ctx, Path], None],
    exit: int | set[int] = 5,
    problem: str = r"damaged|corrupt|tamper|invalid|manifest|unreadable|cannot|missing|not a",
    names: str | None = "faces.db",
    command: Callable[[Ctx], list[str]] = _identify_db,
    db: str = "intact",
) -> None:
    def build(ctx: Ctx) -> list[str]:
        mutate(ctx, ctx.copy_db())
        return command(ctx)

    case(f"database/{id}", exit, names, problem, db=db)(build)


def _edit_manifest(fn: Callable[[dict[str, Any]], Any]) -> Callable[[Ctx, Path], None]:
    def mutate(ctx: Ctx, db: Path) -> None:
        m = _manifest(db)
        doc = json.loads(m.read_text())
        new = fn(doc)
        m.write_text(json.dumps(doc if new is None else new))
        _reseal(db)

    return mutate


def _truncate_manifest(ctx: Ctx, db: Path) -> None:
    m = _manifest(db)
    m.write_bytes(m.read_bytes()[:100])
    _reseal(db)


def _replace_gen_file(
    name: str, make: Callable[[Ctx, bytes], bytes]
) -> Callable[[Ctx, Path], None]:
    def mutate(ctx: Ctx, db: Path) -> None:
        p = _manifest(db).parent / name
        p.write_bytes(make(ctx, p.read_bytes()))
        _reseal(db)

    return mutate


_db_case("manifest-truncated", _truncate_manifest)
_db_case("manifest-not-json", _replace_gen_file("manifest.json", lambda c, b: b"\x00\x01garbage"))
_db_case("manifest-list", _edit_manifest(lambda d: [d]))
_db_case("manifest-number", _edit_manifest(lambda d: 42))
_db_case("manifest-missing-files", _edit_manifest(lambda d: d.pop("files")))
_db_case("manifest-missing-models", _edit_manifest(lambda d: d.pop("models")))
_db_case("manifest-missing-calibration", _edit_manifest(lambda d: d.pop("calibration")))
_db_case("manifest-missing-pipeline", _edit_manifest(lambda d: d.pop("pipeline")))
_db_case("manifest-models-string", _edit_manifest(lambda d: d.__setitem__("models", "dlib")))
_db_case(
    "manifest-dim-string", _edit_manifest(lambda d: d["models"]["dlib"].__setitem__("dim", "128"))
)
_db_case("manifest-dim-wrong", _edit_manifest(lambda d: d["models"]["dlib"].__setitem__("dim", 7)))
_db_case(
    "manifest-threshold-string",
    _edit_manifest(lambda d: d["calibration"].__setitem__("threshold", "high")),
)
_db_case(
    "manifest-calibration-list", _edit_manifest(lambda d: d.__setitem__("calibration", [1, 2]))
)
_db_case("manifest-files-list", _edit_manifest(lambda d: d.__setitem__("files", ["faces.parquet"])))
_db_case(
    "manifest-format-version-string", _edit_manifest(lambda d: d.__setitem__("format_version", "1"))
)
_db_case(
    "manifest-path-escape",
    _edit_manifest(lambda d: d["files"].__setitem__("../CURRENT", "0" * 64)),
    problem=r"damaged|corrupt|tamper|invalid|manifest|outside|not allowed|unexpected|checksum",
)
# A gallery of <= 2,000 faces is searched exactly: identify never reads the index then, so it
# may succeed; `facekit db verify` reports the damage (tests/test_database.py).
_db_case(
    "voyager-garbage",
    _replace_gen_file("index-dlib.voy", lambda c, b: _noise(len(b), 6)),
    exit={0, 5},
)
_db_case("voyager-truncated", _replace_gen_file("index-dlib.voy", lambda c, b: b[: len(b) // 2]))
_db_case("voyager-empty", _replace_gen_file("index-dlib.voy", lambda c, b: b""))
_db_case(
    "faces-parquet-garbage", _replace_gen_file("faces.parquet", lambda c, b: _noise(len(b), 7))
)
_db_case(
    "faces-parquet-truncated", _replace_gen_file("faces.parquet", lambda c, b: b[: len(b) // 2])
)


def _swap_tables(ctx: Ctx, db: Path) -> None:
    gen = _manifest(db).parent
    shutil.copyfile(gen / "files.parquet", gen / "persons.parquet")
    shutil.copyfile(gen / "files.parquet", gen / "faces.parquet")
    _reseal(db)


_db_case("tables-wrong-schema", _swap_tables)


def _lose_current(ctx: Ctx, db: Path) -> None:
    (db / "CURRENT").unlink()


def _current_elsewhere(ctx: Ctx, db: Path) -> None:
    gen = _manifest(db).parent
    shutil.copytree(gen, ctx.tmp / "elsewhere")
    (db / "CURRENT").write_text(f"../elsewhere {_sha(ctx.tmp / 'elsewhere' / 'manifest.json')}\n")


def _current_absolute(ctx: Ctx, db: Path) -> None:
    gen = _manifest(db).parent
    shutil.copytree(gen, ctx.tmp / "abs-gen")
    (db / "CURRENT").write_text(
        f"{ctx.tmp / 'abs-gen'} {_sha(ctx.tmp / 'abs-gen' / 'manifest.json')}\n"
    )


_db_case(
    "current-lost-identify",
    _lose_current,
    exit={0, 5},
    problem=r"CURRENT|generation|recover|damaged|missing",
)
_db_case(
    "current-lost-build",
    _lose_current,
    exit={0, 5},
    problem=r"CURRENT|generation|recover|damaged|missing",
    command=lambda c: [
        "build-index",
        str(c.copy_people()),
        "-d",
        str(c.db),
        "-f",
        "json",
        "-j",
        "1",
    ],
)
# Damaged CURRENT, intact generations: facekit recovers the newest verified generation inside
# the folder with a warning (allowed by the issue), or refuses.
_db_case(
    "current-elsewhere",
    _current_elsewhere,
    exit={0, 5},
    problem=r"CURRENT|generation|outside|invalid|damaged",
)
_db_case(
    "current-absolute-path",
    _current_absolute,
    exit={0, 5},
    problem=r"CURRENT|generation|outside|invalid|damaged",
)
_db_case(
    "current-empty",
    lambda c, db: (db / "CURRENT").write_text(""),
    exit={0, 5},
    problem=r"CURRENT|damaged|empty|invalid",
)
_db_case(
    "current-garbage",
    lambda c, db: (db / "CURRENT").write_bytes(_noise(64, 8)),
    exit={0, 5},
    problem=r"CURRENT|damaged|invalid",
)
_db_case(
    "current-missing-generation",
    lambda c, db: (db / "CURRENT").write_text("gen-000099 " + "0" * 64 + "\n"),
    problem=r"gen-000099|generation|missing|damaged",
)


def _current_dir(ctx: Ctx, db: Path) -> None:
    (db / "CURRENT").unlink()
    (db / "CURRENT").mkdir()


_db_case(
    "current-is-directory",
    _current_dir,
    exit={0, 5},  # refused, or recovered from the newest complete generation
    problem=r"CURRENT|damaged|directory|invalid|no face database",
)
_db_case(
    "generation-deleted",
    lambda c, db: shutil.rmtree(_manifest(db).parent),
    problem=r"generation|missing|damaged",
)


@case(
    "database/empty-folder",
    5,
    "faces.db",
    r"no face database|not a (facekit )?database|empty|build",
)
def _empty_db(ctx: Ctx) -> list[str]:
    ctx.db = ctx.tmp / "faces.db"
    ctx.db.mkdir()
    return _identify_db(ctx)


@case("database/missing-folder", 5, "faces.db", r"no face database|not found|no such|build")
def _missing_db(ctx: Ctx) -> list[str]:
    ctx.db = ctx.tmp / "faces.db"
    return _identify_db(ctx)


@case(
    "database/db-is-regular-file-identify",
    5,
    "faces.db",
    r"not a (database|folder|directory)|file|no face database",
)
def _db_file_identify(ctx: Ctx) -> list[str]:
    ctx.db = ctx.write("faces.db", "I am a file")
    return _identify_db(ctx)


@case(
    "database/db-is-regular-file-build",
    {2, 5},
    "faces.db",
    r"not a (database|folder|directory)|file|exists",
)
def _db_file_build(ctx: Ctx) -> list[str]:
    ctx.write("faces.db", "I am a file")
    return [
        "build-index",
        str(ctx.copy_people()),
        "-d",
        str(ctx.tmp / "faces.db"),
        "-f",
        "json",
        "-j",
        "1",
    ]


@case(
    "database/read-only-folder-build",
    5,
    "faces.db",
    r"read-only|permission|denied|cannot write|writ",
    db="intact",
)
def _ro_db(ctx: Ctx) -> list[str]:
    people = ctx.copy_people()
    (people / "obama" / "extra.jpg").write_bytes(_jpeg(ctx))  # something to add
    db = ctx.copy_db()
    db.chmod(0o555)
    ctx.no_dac = True
    return ["build-index", str(people), "-d", str(db), "-f", "json", "-j", "1"]


@case("database/read-only-folder-identify", {0}, db="intact")
def _ro_db_read(ctx: Ctx) -> list[str]:
    db = ctx.copy_db()
    for p in [db, *db.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    ctx.no_dac = True
    return _identify_db(ctx)


@case("database/unreadable-folder", 5, "faces.db", r"permission|denied|cannot read|unreadable")
def _noperm_db(ctx: Ctx) -> list[str]:
    db = ctx.copy_db()
    db.chmod(0)
    ctx.no_dac = True
    return _identify_db(ctx)


def _garbage_manifest_build(ctx: Ctx) -> list[str]:
    return ["build-index", str(ctx.copy_people()), "-d", str(ctx.db), "-f", "json", "-j", "1"]


_db_case(
    "build-over-garbage-voyager",
    _replace_gen_file("index-dlib.voy", lambda c, b: _noise(len(b), 9)),
    exit={0, 5},
    command=_garbage_manifest_build,
)
_db_case(
    "build-over-truncated-manifest", _truncate_manifest, exit=5, command=_garbage_manifest_build
)
_db_case(
    "enroll-into-garbage-manifest",
    _truncate_manifest,
    exit=5,
    command=lambda c: [
        "enroll",
        "c-0001",
        "--id",
        "obama",
        "-c",
        str(c.copy_clusters()),
        "-d",
        str(c.db),
    ],
)


@case("database/empty-database-readable", 1, db=None)
def _empty_database(ctx: Ctx) -> list[str]:
    # a build that enrols nobody (a photo without a face) must leave a valid, readable database
    from typer.testing import CliRunner

    from facekit.cli import app

    people = ctx.tmp / "people" / "nobody"
    people.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (200, 200), (120, 160, 200)).save(people / "sky.jpg")
    ctx.db = ctx.tmp / "empty.db"
    res = CliRunner().invoke(
        app,
        ["build-index", str(ctx.tmp / "people"), "-d", str(ctx.db), "-q", "-j", "1"],
        env={"FACEKIT_HOME": str(ctx.base / "home")},
    )
    assert res.exit_code in (1, 3), (res.exit_code, res.output)
    return _identify_db(ctx)


# =========================================================================== models
@case(
    "model/import-garbage-as-sface",
    4,
    "garbage.onnx",
    r"not a|load|parse|checksum|hash|sha|invalid|model",
)
def _import_garbage(ctx: Ctx) -> list[str]:
    p = ctx.write("garbage.onnx", _noise(1000, 10))
    ctx.env["FACEKIT_HOME"] = str(ctx.tmp / "home")
    return ["models", "import", str(p), "--name", "sface"]


@case(
    "model/import-garbage-as-mobilefacenet",
    4,
    "garbage.onnx",
    r"not a|load|parse|checksum|hash|sha|invalid|model",
)
def _import_garbage_mfn(ctx: Ctx) -> list[str]:
    p = ctx.write("garbage.onnx", _noise(4000, 11))
    ctx.env["FACEKIT_HOME"] = str(ctx.tmp / "home")
    return ["models", "import", str(p), "--name", "mobilefacenet"]


@case(
    "model/import-garbage-unnamed",
    {2, 4},
    "mystery.onnx",
    r"unknown|not a|which model|--name|load|model",
)
def _import_unnamed(ctx: Ctx) -> list[str]:
    p = ctx.write("mystery.onnx", _noise(1000, 12))
    ctx.env["FACEKIT_HOME"] = str(ctx.tmp / "home")
    return ["models", "import", str(p)]


@case("model/import-zero-byte", 4, "empty.onnx", r"empty|not a|load|checksum|hash|size|model")
def _import_empty(ctx: Ctx) -> list[str]:
    p = ctx.write("empty.onnx", b"")
    ctx.env["FACEKIT_HOME"] = str(ctx.tmp / "home")
    return ["models", "import", str(p), "--name", "yunet"]


@case(
    "model/import-truncated-yunet",
    4,
    "face_detection_yunet_2023mar.onnx",
    r"checksum|hash|sha|size|truncat|load|model",
)
def _import_trunc(ctx: Ctx) -> list[str]:
    src = ctx.shared / "models" / "face_detection_yunet_2023mar.onnx"
    p = ctx.write("face_detection_yunet_2023mar.onnx", src.read_bytes()[:50_000])
    ctx.env["FACEKIT_HOME"] = str(ctx.tmp / "home")
    return ["models", "import", str(p)]


@case("model/import-directory", {2, 3, 4}, "models-dir", r"directory|not a (regular )?file")
def _import_dir(ctx: Ctx) -> list[str]:
    (ctx.tmp / "models-dir").mkdir()
    ctx.env["FACEKIT_HOME"] = str(ctx.tmp / "home")
    return ["models", "import", str(ctx.tmp / "models-dir"), "--name", "sface"]


@case("model/import-missing", {2, 3, 4}, "nowhere.onnx", r"no such|not found|missing|exist")
def _import_missing(ctx: Ctx) -> list[str]:
    ctx.env["FACEKIT_HOME"] = str(ctx.tmp / "home")
    return ["models", "import", str(ctx.tmp / "nowhere.onnx"), "--name", "sface"]


def _home_with(ctx: Ctx, name: str, data: bytes) -> Path:
    home = ctx.tmp / "home"
    shutil.copytree(ctx.base / "home", home)
    (home / "models").mkdir(exist_ok=True)
    (home / "models" / name).write_bytes(data)
    ctx.env["FACEKIT_HOME"] = str(home)
    ctx.env["FACEKIT_OFFLINE"] = "1"
    return home


@case(
    "model/truncated-yunet-in-home",
    4,
    "face_detection_yunet_2023mar.onnx",
    r"checksum|hash|sha|size|truncat|load|damaged|corrupt|verif",
    subprocess=True,
)
def _home_yunet(ctx: Ctx) -> list[str]:
    src = ctx.shared / "models" / "face_detection_yunet_2023mar.onnx"
    _home_with(ctx, src.name, src.read_bytes()[:60_000])
    return [
        "embed",
        str(ctx.photo),
        "--detector",
        "yunet",
        "-o",
        str(ctx.tmp / "o.parquet"),
        "-j",
        "1",
    ]


@case(
    "model/garbage-mobilefacenet-in-home",
    4,
    "mobilefacenet",
    r"checksum|hash|sha|size|truncat|load|damaged|corrupt|verif",
    subprocess=True,
)
def _home_mfn(ctx: Ctx) -> list[str]:
    src = ctx.shared / "models" / "mobilefacenet_foamliu.onnx"
    _home_with(ctx, src.name, _noise(src.stat().st_size, 13))
    return [
        "embed",
        str(ctx.photo),
        "--models",
        "mobilefacenet",
        "-o",
        str(ctx.tmp / "o.parquet"),
        "-j",
        "1",
    ]


@case(
    "model/truncated-dlib-onnx-conversion",
    {0, 4},
    "dlib",
    r"checksum|hash|size|truncat|load|damaged|corrupt|convert",
    subprocess=True,
)
def _home_dlib(ctx: Ctx) -> list[str]:
    name = "dlib_face_recognition_resnet_model_v1.onnx"
    data = (ctx.base / "home" / "models" / name).read_bytes()
    _home_with(ctx, name, data[: len(data) // 3])
    return ["embed", str(ctx.photo), "-o", str(ctx.tmp / "o.parquet"), "-f", "json", "-j", "1"]


@case(
    "model/permuted-dlib-onnx-conversion",
    {0, 4},
    "dlib",
    r"checksum|hash|tamper|damaged|corrupt|convert|verif",
    subprocess=True,
)
def _home_dlib_perm(ctx: Ctx) -> list[str]:
    name = "dlib_face_recognition_resnet_model_v1.onnx"
    data = bytearray((ctx.base / "home" / "models" / name).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4096] = data[mid + 4096 : mid + 8192] + data[mid : mid + 4096]  # same size
    _home_with(ctx, name, bytes(data))
    return ["embed", str(ctx.photo), "-o", str(ctx.tmp / "o.parquet"), "-f", "json", "-j", "1"]


@case("model/pins-json-garbage", {0, 4}, "pins.json", r"pins|damaged|corrupt|invalid|json")
def _pins_garbage(ctx: Ctx) -> list[str]:
    home = _home_with(ctx, "pins.json", b"{not json")
    del home
    return ["models", "list", "-f", "json"]


@case("model/unknown-recogniser", 2, "nosuchmodel", r"unknown|not a|no such|choose|model")
def _unknown_model(ctx: Ctx) -> list[str]:
    return ["embed", str(ctx.photo), "--models", "nosuchmodel", "-o", str(ctx.tmp / "o.parquet")]


@case("model/unknown-detector", 2, "nosuchdetector", r"unknown|not a|no such|choose|detector")
def _unknown_detector(ctx: Ctx) -> list[str]:
    return [
        "embed",
        str(ctx.photo),
        "--detector",
        "nosuchdetector",
        "-o",
        str(ctx.tmp / "o.parquet"),
    ]


@case("model/mirror-garbage-fetch", 4, "yunet", r"checksum|hash|sha|size|verif|mismatch")
def _mirror_garbage(ctx: Ctx) -> list[str]:
    mirror = ctx.tmp / "mirror"
    mirror.mkdir()
    (mirror / "face_detection_yunet_2023mar.onnx").write_bytes(_noise(232589, 14))
    ctx.env["FACEKIT_HOME"] = str(ctx.tmp / "home")
    ctx.env["FACEKIT_MODEL_MIRROR"] = str(mirror)
    return ["models", "fetch", "yunet"]


# =========================================================================== metadata
def _meta_case(
    id: str,
    filename: str,
    data: bytes | str | Callable[[Ctx], bytes],
    exit: int | set[int] = 3,
    problem: str = r"invalid|not|expected|must|malformed|cannot|json|csv|decode|utf|nest|deep|entry",
    names: str | None = None,
) -> None:
    def build(ctx: Ctx) -> list[str]:
        people = ctx.copy_people()
        payload = data(ctx) if callable(data) else data
        (people / filename).write_bytes(payload if isinstance(payload, bytes) else payload.encode())
        return ["build-index", str(people), "-d", str(ctx.copy_db()), "-f", "json", "-j", "1"]

    case(f"metadata/{id}", exit, names or filename, problem, db="works")(build)


_meta_case("people-json-number", "people.json", "42")
_meta_case("people-json-string", "people.json", '"obama"')
_meta_case(
    "people-json-list", "people.json", '[{"id": "obama", "name": "Barack Obama"}]', exit={0, 3}
)
_meta_case("people-json-null", "people.json", "null")
_meta_case("people-json-truncated", "people.json", '{"obama": {"name": "Barack')
_meta_case(
    "people-json-name-number",
    "people.json",
    '{"obama": {"name": 44}, "biden": {"name": "Joe"}}',
    exit={0, 3},
    names="people.json",
)
_meta_case(
    "people-json-name-list", "people.json", '{"obama": {"name": ["Barack", "Obama"]}}', exit={0, 3}
)
_meta_case("people-json-entry-string", "people.json", '{"obama": "Barack Obama"}', exit={0, 3})
_meta_case("people-json-entry-number", "people.json", '{"obama": 7}', exit={0, 3})
_meta_case("people-json-non-utf8", "people.json", b'{"obama": {"name": "Bar\xe1ck"}}', exit={0, 3})
_meta_case("people-json-deep", "people.json", lambda c: (b"[" * 100_000) + (b"]" * 100_000))
_meta_case(
    "people-json-deep-in-entry",
    "people.json",
    lambda c: b'{"obama": {"name": "B", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    exit={0, 3},
)
_meta_case(
    "people-json-bom",
    "people.json",
    b'\xef\xbb\xbf{"obama": {"name": "Barack Obama"}}',
    exit={0, 3},
)
_meta_case(
    "people-csv-unbalanced-quote",
    "people.csv",
    'id,name\nobama,"Barack Obama\nbiden,Joe\n',
    exit={0, 3},
)
_meta_case("people-csv-no-id-column", "people.csv", "who,what\nobama,Barack\n")
_meta_case("people-csv-binary", "people.csv", lambda c: _noise(2000, 15), exit={0, 3})
_meta_case("people-csv-non-utf8", "people.csv", b"id,name\nobama,Bar\xe1ck\n", exit={0, 3})
_meta_case("people-csv-ragged", "people.csv", "id,name\nobama\nbiden,Joe,extra,more\n", exit={0, 3})
_meta_case("people-csv-empty", "people.csv", "", exit={0, 3})


@case(
    "metadata/people-json-is-directory",
    {0, 3},
    "people.json",
    r"directory|not a (regular )?file",
    db="works",
)
def _people_dir(ctx: Ctx) -> list[str]:
    people = ctx.copy_people()
    (people / "people.json").mkdir()
    return ["build-index", str(people), "-d", str(ctx.copy_db()), "-f", "json", "-j", "1"]


def _enrolled_as_text(ctx: Ctx, res: Any) -> None:
    """The folder named with non-UTF-8 bytes is enrolled, its id written as text."""
    from facekit.database import Database

    assert ctx.db is not None
    assert "caf\\xe9" in Database.open(ctx.db).persons, "the non-UTF-8 person was not enrolled"


@case("metadata/person-folder-non-utf8", 0, db="works", check=_enrolled_as_text)
def _person_nonutf8(ctx: Ctx) -> list[str]:
    # enrolled under the text form of its name (bad bytes as \xNN, facekit.pathtext): not
    # an Obama photo, so that the "database still names Obama" check stays meaningful
    people = ctx.copy_people()
    d = Path(os.fsdecode(b"caf\xe9"))
    (people / d).mkdir()
    shutil.copyfile(ctx.png.with_name("lin-manuel-miranda.png"), people / d / "x.png")
    return [
        "build-index",
        str(people),
        "-d",
        str(ctx.copy_db()),
        "-f",
        "json",
        "-j",
        "1",
    ]


# =========================================================================== score inputs
def _photo(source: str, *faces: dict[str, Any]) -> dict[str, Any]:
    return {"source": source, "width": 100, "height": 100, "faces": list(faces)}


def _face(person: str | None, conf: float = 90.0, name: str | None = None) -> dict[str, Any]:
    ident = None if person is None else {"person": person, "name": name, "confidence": conf}
    cands = (
        []
        if person is None
        else [{"person": person, "name": name, "confidence": conf, "distances": {"dlib": 0.05}}]
    )
    return {"face": 0, "box": [1, 2, 30, 30], "identity": ident, "candidates": cands}


GOOD = json.dumps(_photo("good.jpg", _face("ada", 95, "Ada")))


def _ranked(ctx: Ctx, res: Any) -> None:
    """The good record still made it into the ranking."""
    assert '"ada"' in res.stdout, "the ranking of the good records is missing"


def _score_case(
    id: str,
    content: bytes | str | Callable[[Ctx], bytes],
    exit: int | set[int] = 3,
    problem: str = r"invalid|not|expected|must|skipp|bad|malformed|cannot|json|record|deep|large|utf|decode",
    filename: str = "results.ndjson",
    good_file: bool = True,
    names: str | None = None,
) -> None:
    def build(ctx: Ctx) -> list[str]:
        payload = content(ctx) if callable(content) else content
        bad = ctx.write(filename, payload)
        args = ["score", str(bad)]
        if good_file:
            args.append(str(ctx.write("good.ndjson", GOOD + "\n")))
        return [*args, "-f", "json"]

    case(f"score/{id}", exit, names or filename, problem, check=_ranked if good_file else None)(
        build
    )


def _rec(**ident: Any) -> str:
    return json.dumps(_photo("x.jpg", {"face": 0, "box": [0, 0, 9, 9], **ident}))


_score_case(
    "candidates-strings",
    json.dumps(
        _photo(
            "x.jpg",
            {
                "face": 0,
                "box": [0, 0, 9, 9],
                "identity": {"person": "bob", "confidence": 80},
                "candidates": ["bob", "eve"],
            },
        )
    ),
)
_score_case(
    "candidates-ints",
    json.dumps(
        _photo(
            "x.jpg",
            {
                "face": 0,
                "box": [0, 0, 9, 9],
                "identity": {"person": "bob", "confidence": 80},
                "candidates": [1, 2],
            },
        )
    ),
)
_score_case(
    "candidates-dict", _rec(identity={"person": "bob", "confidence": 80}, candidates={"bob": 1})
)
_score_case(
    "distances-list", _rec(identity={"person": "bob", "confidence": 80, "distances": [0.1, 0.2]})
)
_score_case(
    "distances-string", _rec(identity={"person": "bob", "confidence": 80, "distances": "0.1"})
)
_score_case("identity-list", _rec(identity=["bob", 80]))
_score_case("identity-string", _rec(identity="bob"))
_score_case("person-number", _rec(identity={"person": 7, "confidence": 80}))
_score_case("person-dict", _rec(identity={"person": {"id": "bob"}, "confidence": 80}))
_score_case("confidence-string", _rec(identity={"person": "bob", "confidence": "high"}))
_score_case(
    "confidence-nan",
    '{"source": "x.jpg", "faces": [{"identity": {"person": "bob", "confidence": NaN}}]}',
)
_score_case(
    "confidence-infinity",
    '{"source": "x.jpg", "faces": [{"identity": {"person": "bob", "confidence": Infinity}}]}',
)
_score_case(
    "confidence-1e400",
    '{"source": "x.jpg", "faces": [{"identity": {"person": "bob", "confidence": 1e400}}]}',
)
_score_case("confidence-negative", _rec(identity={"person": "bob", "confidence": -5}))
_score_case("faces-dict", json.dumps({"source": "x.jpg", "faces": {"0": {}}}))
_score_case("faces-strings", json.dumps({"source": "x.jpg", "faces": ["bob"]}))
_score_case(
    "video-frames-infinity",
    '{"source": "v.mp4", "people": [{"person": "bob", "confidence": 80, "frames": Infinity}]}',
)
_score_case(
    "video-frames-string",
    json.dumps(
        {"source": "v.mp4", "people": [{"person": "bob", "confidence": 80, "frames": "many"}]}
    ),
)
_score_case("video-people-dict", json.dumps({"source": "v.mp4", "people": {"bob": 1}}))
_score_case(
    "video-confidence-list",
    json.dumps({"source": "v.mp4", "people": [{"person": "bob", "confidence": [80]}]}),
)
_score_case("record-number-line", "42\n")
_score_case("record-string-line", '"hello"\n')
_score_case("record-other-shape", json.dumps({"foo": 1}) + "\n")
_score_case("nested-100000", lambda c: b"[" * 100_000 + b"]" * 100_000)
_score_case("nested-object-100000", lambda c: b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
_score_case(
    "line-50mb",
    lambda c: b'{"source": "' + b"x" * (50 * 1024 * 1024) + b'", "faces": []}\n',
    problem=r"large|long|size|limit|MB|bytes|skipp",
)
_score_case("bad-utf8", b'{"source": "caf\xe9.jpg", "faces": []}\n' + b"\xff\xfe\xfa\n")
_score_case("empty-file", b"", problem=r"empty|no record|nothing")
_score_case("whitespace-only", b"\n \n\t\n", problem=r"empty|no record|nothing")
_score_case("not-json", "hello world\n", problem=r"json|not|invalid")
_score_case(
    "mixed-good-and-bad-lines",
    lambda c: (GOOD + "\n{broken\n" + GOOD.replace("ada", "bob") + "\n[1,\n").encode(),
    good_file=False,
    problem=r"line|json|skipp|bad|invalid",
)
_score_case(
    "truncated-json-document",
    lambda c: json.dumps([json.loads(GOOD)] * 3)[:-20].encode(),
    filename="results.json",
    problem=r"json|truncat|invalid|not|skipp",
)
_score_case("binary-garbage", lambda c: _noise(4000, 16), filename="results.json")


@case("score/bom-prefixed", 0, check=_ranked)
def _bom(ctx: Ctx) -> list[str]:
    return [
        "score",
        str(ctx.write("r.ndjson", b"\xef\xbb\xbf" + GOOD.encode() + b"\n")),
        "-f",
        "json",
    ]


@case("score/crlf-lines", 0, check=_ranked)
def _crlf(ctx: Ctx) -> list[str]:
    return [
        "score",
        str(ctx.write("r.ndjson", (GOOD + "\r\n" + GOOD + "\r\n").encode())),
        "-f",
        "json",
    ]


@case("score/stdin-garbage", 3, "stdin", r"json|not|invalid|skipp", check=_ranked)
def _stdin_garbage(ctx: Ctx) -> list[str]:
    ctx.stdin = "garbage line\n" + GOOD + "\n"
    return ["score", "-", "-f", "json"]


@case("score/missing-file", 3, "nowhere.ndjson", r"no such|not found|missing|exist", check=_ranked)
def _score_missing(ctx: Ctx) -> list[str]:
    return [
        "score",
        str(ctx.tmp / "nowhere.ndjson"),
        str(ctx.write("good.ndjson", GOOD + "\n")),
        "-f",
        "json",
    ]


@case(
    "score/directory-without-results",
    3,
    "empty-dir",
    r"no result|no .*files|empty|nothing",
    check=_ranked,
)
def _score_empty_dir(ctx: Ctx) -> list[str]:
    (ctx.tmp / "empty-dir").mkdir()
    return [
        "score",
        str(ctx.tmp / "empty-dir"),
        str(ctx.write("good.ndjson", GOOD + "\n")),
        "-f",
        "json",
    ]


@case("score/folder-with-one-bad-file", 3, "bad.json", r"json|not|invalid|skipp", check=_ranked)
def _score_folder(ctx: Ctx) -> list[str]:
    ctx.write("results/a.ndjson", GOOD + "\n")
    ctx.write("results/bad.json", "{nope")
    ctx.write("results/b.ndjson", GOOD + "\n")
    return ["score", str(ctx.tmp / "results"), "-f", "json"]


@case("score/quiet-keeps-errors", 3, "bad.ndjson", r"json|not|invalid|skipp", check=_ranked)
def _score_quiet(ctx: Ctx) -> list[str]:
    return ["score", str(ctx.write("bad.ndjson", "{nope\n" + GOOD + "\n")), "-f", "json", "-q"]


@case("score/fifo-process-substitution", 0, check=_ranked)
def _score_fifo(ctx: Ctx) -> list[str]:
    # `facekit score <(facekit identify ...)`: a pipe named on the command line is read
    import threading

    fifo = ctx.tmp / "pipe.ndjson"
    os.mkfifo(fifo)

    def writer() -> None:
        with open(fifo, "w") as fh:
            fh.write(GOOD + "\n")

    threading.Thread(target=writer, daemon=True).start()
    return ["score", str(fifo), "-f", "json"]


@case("score/fifo-in-folder-skipped", 0, check=_ranked)
def _score_fifo_folder(ctx: Ctx) -> list[str]:
    ctx.write("results/a.ndjson", GOOD + "\n")
    os.mkfifo(ctx.tmp / "results" / "stuck.ndjson")  # a folder walk must not block on it
    return ["score", str(ctx.tmp / "results"), "-f", "json"]


# =========================================================================== cluster inputs
@case(
    "cluster/database-faces-table",
    {0, 1, 3},
    "faces.parquet",
    r"not a face table|embedding|column|expected|facekit embed",
)
def _db_faces(ctx: Ctx) -> list[str]:
    db = ctx.copy_db()
    return ["cluster", str(_manifest(db).parent / "faces.parquet"), "-f", "json"]


@case(
    "cluster/database-files-table",
    {2, 3},
    "files.parquet",
    r"not a face table|embedding|column|expected|facekit embed",
)
def _db_files(ctx: Ctx) -> list[str]:
    db = ctx.copy_db()
    return ["cluster", str(_manifest(db).parent / "files.parquet"), "-f", "json"]


@case("cluster/garbage-parquet", 3, "faces.parquet", r"parquet|not|invalid|corrupt|cannot|magic")
def _garbage_parquet(ctx: Ctx) -> list[str]:
    return ["cluster", str(ctx.write("faces.parquet", _noise(3000, 17))), "-f", "json"]


@case("cluster/zero-byte-parquet", 3, "faces.parquet", r"parquet|empty|not|invalid|corrupt|cannot")
def _zero_parquet(ctx: Ctx) -> list[str]:
    return ["cluster", str(ctx.write("faces.parquet", b"")), "-f", "json"]


@case(
    "cluster/truncated-face-table",
    3,
    "clusters.faces.parquet",
    r"parquet|truncat|not|invalid|corrupt|cannot|magic",
)
def _trunc_facetable(ctx: Ctx) -> list[str]:
    data = (ctx.base / "clusters.faces.parquet").read_bytes()
    return [
        "cluster",
        str(ctx.write("clusters.faces.parquet", data[: len(data) // 2])),
        "-f",
        "json",
    ]


def _enroll_case(
    id: str,
    mutate: Callable[[dict[str, Any]], Any] | bytes,
    exit: int | set[int] = 3,
    problem: str = r"cluster file|not|invalid|missing|expected|box|member|json",
    drop_table: bool = True,
    names: str = "clusters.json",
) -> None:
    def build(ctx: Ctx) -> list[str]:
        cf = ctx.copy_clusters()
        if drop_table:
            (ctx.tmp / "clusters.faces.parquet").unlink()
        if isinstance(mutate, bytes):
            cf.write_bytes(mutate)
        else:
            doc = json.loads(cf.read_text())
            new = mutate(doc)
            cf.write_text(json.dumps(doc if new is None else new))
        return ["enroll", "c-0001", "--id", "obama", "-c", str(cf), "-d", str(ctx.copy_db())]

    case(f"cluster/{id}", exit, names, problem, db="works")(build)


def _members(doc: dict[str, Any]) -> list[Any]:
    return doc["clusters"][0]["members"]


_enroll_case("enroll-members-without-box", lambda d: [m.pop("box") for m in _members(d)] and None)
_enroll_case(
    "enroll-members-without-box-with-table",
    lambda d: [m.pop("box") for m in _members(d)] and None,
    drop_table=False,
)
_enroll_case(
    "enroll-members-without-source", lambda d: [m.pop("source") for m in _members(d)] and None
)
_enroll_case(
    "enroll-box-three-numbers",
    lambda d: [m.__setitem__("box", [1, 2, 3]) for m in _members(d)] and None,
)
_enroll_case(
    "enroll-box-strings",
    lambda d: [m.__setitem__("box", ["a", "b", "c", "d"]) for m in _members(d)] and None,
)
_enroll_case("enroll-members-strings", lambda d: d["clusters"][0].__setitem__("members", ["a.jpg"]))
_enroll_case("enroll-members-missing", lambda d: d["clusters"][0].pop("members") and None)
_enroll_case("enroll-cluster-not-object", lambda d: d.__setitem__("clusters", ["c-0001"]))
_enroll_case(
    "enroll-face-index-string",
    lambda d: [m.__setitem__("face", "first") for m in _members(d)] and None,
    exit={0, 3},
)
_enroll_case("enroll-garbage-file", _noise(500, 18))
_enroll_case("enroll-empty-file", b"")
_enroll_case("enroll-top-level-list", lambda d: [d])
_enroll_case("enroll-deep-nesting", b"[" * 100_000 + b"]" * 100_000)
_enroll_case(
    "enroll-source-missing-photo",
    lambda d: [m.__setitem__("source", "/nonexistent/photo.jpg") for m in _members(d)] and None,
    problem=r"no such|not found|missing|exist",
    names="photo.jpg",
)


@case(
    "cluster/enroll-garbage-face-table",
    {0, 3},
    "clusters.faces.parquet",
    r"parquet|not|invalid|corrupt|cannot",
    db="works",
)
def _enroll_garbage_table(ctx: Ctx) -> list[str]:
    cf = ctx.copy_clusters()
    (ctx.tmp / "clusters.faces.parquet").write_bytes(_noise(2000, 19))
    return ["enroll", "c-0001", "--id", "obama", "-c", str(cf), "-d", str(ctx.copy_db())]


@case(
    "cluster/previous-clusters-garbage", {0, 3}, "clusters.json", r"cluster file|not|invalid|json"
)
def _cluster_prev_garbage(ctx: Ctx) -> list[str]:
    folder = ctx.tmp / "album"
    folder.mkdir()
    shutil.copyfile(ctx.photo, folder / "a.jpg")
    shutil.copyfile(ctx.photo, folder / "b.jpg")
    cf = ctx.write("clusters.json", "{garbage")
    return ["cluster", str(folder), "-o", str(cf), "-f", "json", "-j", "1"]


# =========================================================================== output paths
def _album(ctx: Ctx) -> Path:
    folder = ctx.tmp / "album"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(ctx.photo, folder / "a.jpg")
    shutil.copyfile(ctx.photo, folder / "b.jpg")
    return folder


_OUT = r"exists|not a (directory|folder)|is a (file|directory)|directory|folder|permission|read-only|no such|missing|cannot (write|create)"


def _out_case(
    id: str,
    build_args: Callable[[Ctx], list[str]],
    names: str,
    exit: int | set[int] = frozenset({2, 3}),
    problem: str = _OUT,
    no_dac: bool = False,
) -> None:
    def build(ctx: Ctx) -> list[str]:
        ctx.no_dac = no_dac
        return build_args(ctx)

    case(f"output/{id}", set(exit) if not isinstance(exit, int) else exit, names, problem)(build)


def _ro_dir(ctx: Ctx, name: str) -> Path:
    d = ctx.tmp / name
    d.mkdir()
    d.chmod(0o555)
    return d


_out_case(
    "annotate-is-file",
    lambda c: [
        "identify",
        str(_album(c)),
        "-d",
        str(c.copy_db()),
        "-j",
        "1",
        "--annotate",
        str(c.write("annot", "x")),
    ],
    "annot",
)
_out_case(
    "annotate-read-only",
    lambda c: [
        "identify",
        str(_album(c)),
        "-d",
        str(c.copy_db()),
        "-j",
        "1",
        "--annotate",
        str(_ro_dir(c, "annot")),
    ],
    "annot",
    exit=74,
    no_dac=True,
)
_out_case(
    "annotate-parent-is-file",
    lambda c: [
        "identify",
        str(_album(c)),
        "-d",
        str(c.copy_db()),
        "-j",
        "1",
        "--annotate",
        str(c.write("plain", "x") / "annot"),
    ],
    "plain",
)
_out_case(
    "embed-o-is-directory",
    lambda c: ["embed", str(_album(c)), "-j", "1", "-o", str(_mkdir(c, "out.parquet"))],
    "out.parquet",
)
_out_case(
    "embed-o-missing-parent",
    lambda c: [
        "embed",
        str(_album(c)),
        "-j",
        "1",
        "-o",
        str(c.tmp / "no" / "such" / "out.parquet"),
    ],
    "out.parquet",
    exit={0, 2, 3},
)
_out_case(
    "embed-o-read-only",
    lambda c: ["embed", str(_album(c)), "-j", "1", "-o", str(_ro_dir(c, "ro") / "out.parquet")],
    "ro",
    exit=74,
    no_dac=True,
)
_out_case(
    "embed-o-existing-garbage",
    lambda c: [
        "embed",
        str(_album(c)),
        "-j",
        "1",
        "-o",
        str(c.write("old.parquet", _noise(999, 20))),
    ],
    "old.parquet",
    exit={0, 3},
    problem=r"parquet|not|invalid|corrupt|cannot|overwrit",
)


def _sidecar_ro(ctx: Ctx) -> list[str]:
    album = _album(ctx)
    album.chmod(0o555)
    return ["embed", str(album), "-j", "1", "--sidecar"]


_out_case("embed-sidecar-read-only", _sidecar_ro, "album", exit=74, no_dac=True)
_out_case(
    "cluster-o-missing-folder",
    lambda c: [
        "cluster",
        str(_album(c)),
        "-j",
        "1",
        "-o",
        str(c.tmp / "missing" / "clusters.json"),
    ],
    "clusters.json",
    exit={0, 2, 3},
)
_out_case(
    "cluster-o-is-directory",
    lambda c: ["cluster", str(_album(c)), "-j", "1", "-o", str(_mkdir(c, "clusters.json"))],
    "clusters.json",
)
_out_case(
    "cluster-sheets-is-file",
    lambda c: ["cluster", str(_album(c)), "-j", "1", "--sheets", str(c.write("sheets", "x"))],
    "sheets",
)
_out_case(
    "cluster-o-read-only",
    lambda c: ["cluster", str(_album(c)), "-j", "1", "-o", str(_ro_dir(c, "ro") / "clusters.json")],
    "ro",
    exit=74,
    no_dac=True,
)


def _video_out(opt: str, target: Callable[[Ctx], Path]) -> Callable[[Ctx], list[str]]:
    def build(ctx: Ctx) -> list[str]:
        return [
            "video",
            str(ctx.video),
            "-d",
            str(ctx.copy_db()),
            "--interval",
            "2.5",
            "-f",
            "json",
            opt,
            str(target(ctx)),
        ]

    return build


_out_case(
    "video-timeline-is-directory", _video_out("--timeline", lambda c: _mkdir(c, "t.png")), "t.png"
)
_out_case(
    "video-timeline-missing-parent",
    _video_out("--timeline", lambda c: c.tmp / "no" / "t.png"),
    "t.png",
    exit={0, 1, 2, 3},
)
_out_case("video-crops-is-file", _video_out("--crops", lambda c: c.write("crops", "x")), "crops")
_out_case(
    "video-crops-read-only",
    _video_out("--crops", lambda c: _ro_dir(c, "crops")),
    "crops",
    no_dac=True,
)
_out_case(
    "video-detections-is-directory",
    _video_out("--detections", lambda c: _mkdir(c, "d.parquet")),
    "d.parquet",
)
