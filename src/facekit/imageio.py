"""Still-image loading for the face pipeline: any photo file -> full-resolution RGB ``uint8``.

Every failure on a bad file (missing, unreadable, empty, not an image, corrupt, truncated,
too large) is an :class:`~facekit.errors.InputError` whose message is one line,
``"<path>: <problem>"``. No other exception type escapes :func:`load_image` for a bad file.

Decisions, and why:

* **Orientation.** The EXIF orientation tag (all 8 values, and the XMP one Pillow also reads)
  is applied, so ``rgb`` is upright as a photo viewer shows it. A damaged EXIF block is
  ignored (logged at debug level) rather than failing the photo.
* **Alpha.** Transparent pixels are composited over white, the way most viewers and
  browsers show a cut-out portrait. Dropping alpha would expose whatever colour the encoder
  left under fully transparent pixels (often black or garbage). Exception: an image whose
  alpha is zero everywhere (a broken export) keeps its colour channels, since compositing it
  would give a blank white picture.
* **High bit depths.** 16-bit samples are scaled to 8 bits (``round(v / 257)``), never
  clipped. 32-bit integer images (mode ``I``) holding values in ``0..65535`` are treated as
  16-bit; other integer ranges, and float images (mode ``F``) outside ``0..1``, are stretched
  linearly from their minimum to their maximum. Floats in ``0..1`` are scaled by 255.
* **Truncated files are refused** ("truncated image file"), not padded with grey. facekit
  never sets Pillow's process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES``; if another library
  has set it (``face_recognition`` does, on import) a warning is logged once, because
  truncated files then load partially.
* **Multi-frame files** (GIF, TIFF, animated WebP, MPO camera JPEGs) give their first frame.
* **Formats.** Only the formats in :data:`IMAGE_EXTENSIONS` are decoded, whatever the file
  is called (a WebP named ``.jpg`` loads). Formats that run external programs or are rarely
  photos (EPS, PDF, PSD, ...) are refused as "cannot identify image file". HEIC/HEIF
  (phones' default) decodes through the ``pillow-heif`` plugin, a dependency; without it
  such files are reported by :func:`unsupported_reason`, never skipped silently.
* **Decompression bombs.** The pixel count from the file header is checked against
  ``max_pixels`` (default :data:`MAX_PIXELS`) before any pixel data is decoded. Pillow has
  its own process-wide guard (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 M pixels for a warning
  and 179 M for an error), lower than facekit's limit, which would refuse a 200-megapixel
  phone photo and warn about a 108-megapixel one. :func:`load_image` therefore raises that
  guard to ``max_pixels`` when it is lower (never lowers or disables it). Pillow's own error
  for still larger headers is reported as the same ``InputError``.
* **No needless copies.** ``rgb`` is built from the decoded RGB image with one copy
  (``np.asarray``); it is read-only, matching the frozen :class:`LoadedImage`. Call
  ``.copy()`` before drawing on it.

Example:
    >>> from facekit.imageio import iter_image_paths, load_image
    >>> for path in iter_image_paths(["photos/"]):  # doctest: +SKIP
    ...     img = load_image(path)
    ...     small, s = img.detection_copy(1600)
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import re
import stat
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError, features

from .errors import InputError
from .pathtext import existing_path

__all__ = [
    "HEIF_EXTENSIONS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "LoadedImage",
    "file_digest",
    "iter_image_paths",
    "load_image",
    "load_image_bytes",
    "unsupported_reason",
]

log = logging.getLogger(__name__)

MAX_PIXELS: int = 200_000_000
"""Largest image (width x height, from the file header) that is decoded. A 200-megapixel
phone photo (16320 x 12240) fits; the RGB array for it takes about 600 MB. Larger headers
are refused with :class:`~facekit.errors.InputError` before decoding (decompression-bomb
protection)."""


def _supported() -> tuple[frozenset[str], tuple[str, ...]]:
    exts = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".tif", ".tiff", ".gif"}
    exts |= {".pgm", ".ppm", ".pnm"}  # research face sets (e.g. FERET) use them
    formats = ["JPEG", "PNG", "BMP", "TIFF", "GIF", "PPM"]
    # WebP and AVIF depend on how Pillow was built; list them only when they decode here.
    if features.check_module("webp"):
        exts.add(".webp")
        formats.append("WEBP")
    if features.check_module("avif"):
        exts.add(".avif")
        formats.append("AVIF")
    if _HEIF_AVAILABLE:
        exts |= set(HEIF_EXTENSIONS)
        formats.append("HEIF")
    return frozenset(exts), tuple(formats)


#: Extensions of HEIC/HEIF photos (the default format of phone cameras). They decode through
#: the ``pillow-heif`` plugin (a dependency of facekit); if it is missing they are reported as
#: unsupported (see :func:`unsupported_reason`), never skipped silently.
HEIF_EXTENSIONS = (".heic", ".heif", ".hif")
_HEIF_AVAILABLE = importlib.util.find_spec("pillow_heif") is not None
_heif_registered = False


def _register_heif() -> None:
    """Register pillow-heif's opener with Pillow once (about 40 ms), on the first decode."""
    global _heif_registered, _HEIF_AVAILABLE
    if _heif_registered or not _HEIF_AVAILABLE:
        return
    _heif_registered = True
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except Exception:  # a broken plugin install: HEIC files then fail one by one
        log.warning("pillow-heif is installed but failed to load: HEIC/HEIF photos cannot be read")


def unsupported_reason(name: str | os.PathLike[str]) -> str | None:
    """Why a photo file (by its name) cannot be decoded here, or ``None``.

    Used by folder walks so that photos in a known but unsupported format are reported as
    skipped instead of being left out without a word.

    Example:
        >>> unsupported_reason("IMG_0001.HEIC")  # doctest: +SKIP
        'HEIC/HEIF photo: install pillow-heif to read it'
    """
    ext = os.path.splitext(os.fspath(name))[1].lower()
    if ext in HEIF_EXTENSIONS and not _HEIF_AVAILABLE:
        return "HEIC/HEIF photo: install pillow-heif to read it (pip install pillow-heif)"
    return None


IMAGE_EXTENSIONS: frozenset[str]
"""Lower-case file extensions (with the dot) that folder walks pick up and that decode here."""
IMAGE_EXTENSIONS, _FORMATS = _supported()

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_TRUNCATED = re.compile(r"truncated|premature end", re.IGNORECASE)
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_CHUNK = 1 << 20

_warned_truncated_flag = False


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded photo, upright and in RGB.

    Attributes:
        path: the path as given to :func:`load_image` (or the ``name`` given to
            :func:`load_image_bytes`).
        rgb: ``(height, width, 3)`` ``uint8`` array, C-contiguous, read-only, full resolution,
            EXIF orientation applied.
        width: width of ``rgb`` in pixels.
        height: height of ``rgb`` in pixels.
    """

    path: str
    rgb: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        a = self.rgb
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
            raise ValueError(f"rgb must be (H, W, 3) uint8, got {a.shape} {a.dtype}")
        if a.shape[:2] != (self.height, self.width):
            raise ValueError(
                f"rgb shape {a.shape[:2]} does not match height, width {(self.height, self.width)}"
            )

    def detection_copy(self, max_side: int) -> tuple[np.ndarray, float]:
        """A copy small enough for face detection, and its scale factor.

        Args:
            max_side: the longest side allowed, in pixels (>= 1).

        Returns:
            ``(rgb, s)``: an ``(h, w, 3)`` ``uint8`` array whose long side is at most
            ``max_side`` (shrunk with ``cv2.INTER_AREA``), and ``s = max_side / long_side``
            so that ``original_coord = detection_coord / s``. When the image is already
            small enough, ``(self.rgb, 1.0)`` is returned without copying.

        Example:
            >>> small, s = img.detection_copy(1600)  # doctest: +SKIP
            >>> boxes_original = boxes_small / s  # doctest: +SKIP
        """
        if max_side < 1:
            raise ValueError(f"max_side must be >= 1, got {max_side}")
        long_side = max(self.width, self.height)
        if long_side <= max_side:
            return self.rgb, 1.0
        import cv2  # imported here: only detection needs OpenCV, and it is slow to import

        s = max_side / long_side
        w = max(1, min(max_side, round(self.width * s)))
        h = max(1, min(max_side, round(self.height * s)))
        small = cv2.resize(self.rgb, (w, h), interpolation=cv2.INTER_AREA)
        return small, s


def load_image(path: str | os.PathLike[str], *, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Decode a photo file into an upright RGB array.

    The format is found from the file's content, not its name.

    Args:
        path: the file to read. For image data already in memory use
            :func:`load_image_bytes`.
        max_pixels: refuse images whose header declares more pixels than this
            (default :data:`MAX_PIXELS`).

    Returns:
        A :class:`LoadedImage` with ``rgb`` of shape ``(H, W, 3)``, dtype ``uint8``.

    Raises:
        InputError: the file is missing, a directory, unreadable, empty, not an image in a
            supported format, corrupt, truncated or too large. The message is one line,
            ``"<path>: <problem>"``.

    Example:
        >>> img = load_image("photos/alice.jpg")  # doctest: +SKIP
        >>> img.rgb.shape  # doctest: +SKIP
        (1600, 1200, 3)
    """
    if isinstance(path, (bytes, bytearray, memoryview)):
        raise TypeError("load_image() takes a path; use load_image_bytes() for image data")
    name = existing_path(os.fspath(path))  # also a non-UTF-8 name read back from a report
    try:
        st = os.stat(name)
        if stat.S_ISDIR(st.st_mode):
            raise InputError(f"{name}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{name}: not a regular file")
        if st.st_size == 0:
            raise InputError(f"{name}: file is empty")
        reason = unsupported_reason(name)
        if reason:
            raise InputError(f"{name}: {reason}")
        with open(name, "rb") as fp:
            return _decode(fp, name, max_pixels)
    except OSError as exc:  # from stat() or open(); decoding errors are handled in _decode
        raise InputError(f"{name}: {_os_problem(exc)}") from exc


def load_image_bytes(
    data: bytes | bytearray | memoryview, name: str = "<bytes>", *, max_pixels: int = MAX_PIXELS
) -> LoadedImage:
    """Decode a photo held in memory (an upload, a database blob, a zip member).

    Args:
        data: the encoded file content.
        name: what to call the image in ``LoadedImage.path`` and in error messages.
        max_pixels: as for :func:`load_image`.

    Returns:
        A :class:`LoadedImage`, as :func:`load_image` returns.

    Raises:
        InputError: ``data`` is empty or not a decodable image (one-line message).

    Example:
        >>> img = load_image_bytes(Path("a.png").read_bytes(), "a.png")  # doctest: +SKIP
    """
    if len(data) == 0:
        raise InputError(f"{name}: file is empty")
    return _decode(io.BytesIO(data), name, max_pixels)


def _decode(fp: IO[bytes], name: str, max_pixels: int) -> LoadedImage:
    _check_global_flags(max_pixels)
    _register_heif()
    try:
        with Image.open(fp, formats=_FORMATS) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise InputError(_too_large(name, w * h, max_pixels, f"{w}x{h}, "))
            im.load()
            _apply_orientation(im, name)
            rgb = _to_rgb_array(im)
    except InputError:
        raise
    except UnidentifiedImageError as exc:
        raise InputError(
            f"{name}: cannot identify image file (not an image, or an unsupported format)"
        ) from exc
    except Image.DecompressionBombError as exc:
        m = _BOMB_PIXELS.search(str(exc))
        pixels = int(m.group(1)) if m else -1
        raise InputError(_too_large(name, pixels, max_pixels, "")) from exc
    except MemoryError as exc:
        raise InputError(f"{name}: not enough memory to decode the image") from exc
    except Exception as exc:
        # Decoders signal bad data with many exception types (OSError, ValueError,
        # SyntaxError, EOFError, struct.error, IndexError, zlib.error...); for one file they
        # all mean "this input is broken", so each becomes a one-line InputError.
        log.debug("decoding %s failed", name, exc_info=True)
        text = " ".join(str(exc).split()) or type(exc).__name__
        if _TRUNCATED.search(text):
            raise InputError(f"{name}: truncated image file ({text})") from exc
        raise InputError(f"{name}: cannot decode image ({text})") from exc
    h, w = rgb.shape[:2]
    return LoadedImage(path=name, rgb=rgb, width=w, height=h)


def _too_large(name: str, pixels: int, limit: int, dims: str) -> str:
    count = f"{pixels} pixels" if pixels >= 0 else "too many pixels"
    return (
        f"{name}: image too large ({dims}{count}; limit {limit}), refused as a possible "
        "decompression bomb"
    )


def _check_global_flags(max_pixels: int) -> None:
    global _warned_truncated_flag
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and limit < max_pixels:
        # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that, before we can
        # look at the header; lift it to our own limit so it does not pre-empt it.
        Image.MAX_IMAGE_PIXELS = max_pixels
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated_flag:
        _warned_truncated_flag = True
        log.warning(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set by another library: "
            "truncated image files will load partially instead of being refused"
        )


def _apply_orientation(im: Image.Image, name: str) -> None:
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except Exception:  # a broken EXIF block must not cost us the photo
        log.debug("%s: ignoring unreadable EXIF orientation", name, exc_info=True)


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        out = im
    elif mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        if mode == "I" and a.size and (a.min() < 0 or a.max() > 0xFFFF):
            return _gray3(_stretch(a))
        return _gray3(((a.astype(np.uint32) + 128) // 257).astype(np.uint8))
    elif mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            return _gray3(np.rint(a * 255.0).astype(np.uint8))
        return _gray3(_stretch(a))
    elif mode in _ALPHA_MODES or "transparency" in im.info:
        out = _over_white(im.convert("RGBA"))
    else:  # L, 1, P, CMYK (Adobe-inverted handled by Pillow), YCbCr, LAB, HSV, RGBX...
        out = im.convert("RGB")
    return np.asarray(out)


def _over_white(rgba: Image.Image) -> Image.Image:
    alpha = rgba.getchannel("A")
    lo, hi = alpha.getextrema()
    if lo == 255 or hi == 0:  # opaque, or alpha unusable (all transparent): keep colours
        return rgba.convert("RGB")
    out = Image.new("RGB", rgba.size, (255, 255, 255))
    out.paste(rgba, mask=alpha)
    return out


def _stretch(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _gray3(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(a[:, :, None], 3, axis=2))


def _os_problem(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return "permission denied"
    return (exc.strerror or str(exc) or type(exc).__name__).lower()


def iter_image_paths(
    inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = True
) -> Iterator[str]:
    """Expand command-line inputs into the image files to process, lazily and in order.

    * A file (or anything that is not a directory, including a missing path) is yielded as
      given, whatever its extension, so the loader reports a clean per-file error for it.
    * A directory is walked in sorted order (a directory's files before its
      subdirectories), yielding files whose extension is in :data:`IMAGE_EXTENSIONS`
      (case-insensitive), and photos in a known format that cannot be decoded here (HEIC
      without pillow-heif: :func:`load_image` then reports them), and skipping hidden files and directories (names starting with
      ``.``). Symlinked directories are not followed; symlinked files are yielded.
      Unreadable subdirectories are skipped with a logged warning.
    * ``"-"`` reads newline-separated inputs from standard input (stripped, blank lines
      skipped); each is then treated as above.

    Args:
        inputs: files, directories and ``"-"``.
        recursive: walk subdirectories (default) or only a directory's own files.

    Returns:
        An iterator of path strings. It never raises for a bad input.

    Example:
        >>> list(iter_image_paths(["album/", "extra.jpg"]))  # doctest: +SKIP
        ['album/a.jpg', 'album/b.png', 'album/2024/c.jpg', 'extra.jpg']
    """
    for item in inputs:
        name = os.fspath(item)
        if name == "-":
            for line in sys.stdin:
                line = line.strip()
                if line and line != "-":
                    yield from _expand(line, recursive)
        else:
            yield from _expand(name, recursive)


def _expand(name: str, recursive: bool) -> Iterator[str]:
    if not os.path.isdir(name):
        yield name
        return

    def onerror(exc: OSError) -> None:
        log.warning("%s: skipped (%s)", exc.filename, _os_problem(exc))

    for dirpath, dirnames, filenames in os.walk(name, onerror=onerror):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS or unsupported_reason(f):
                # photos in a format that cannot be decoded here are yielded too, so that the
                # loader reports them (one line each) instead of leaving them out silently
                yield os.path.join(dirpath, f)


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB chunks (to skip files that did not change).

    Args:
        path: the file.

    Returns:
        The digest as 64 lower-case hex characters.

    Raises:
        InputError: the file cannot be read (one-line message).

    Example:
        >>> file_digest("photos/alice.jpg")  # doctest: +SKIP
        '9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'
    """
    name = existing_path(os.fspath(path))
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    try:
        with open(name, "rb", buffering=0) as f:
            while n := f.readinto(view):
                h.update(view[:n])
    except OSError as exc:
        raise InputError(f"{name}: {_os_problem(exc)}") from exc
    return h.hexdigest()
