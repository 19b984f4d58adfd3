"""Tests for facekit.imageio: still-image loading, path expansion and file digests.

Test images are built in ``tmp_path`` by the helpers below (no binary files in the repo);
real photos come from ``../shared/datasets`` beside the checkout and those tests skip when
it is absent.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from facekit import imageio
from facekit.errors import InputError
from facekit.imageio import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    LoadedImage,
    file_digest,
    iter_image_paths,
    load_image,
    load_image_bytes,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATASETS = SHARED / "datasets"
needs_shared = pytest.mark.skipif(
    not DATASETS.is_dir(), reason=f"shared test data not found at {DATASETS} (../shared)"
)

RED = (255, 0, 0)
WHITE = (255, 255, 255)


# --------------------------------------------------------------------------- helpers


def save(tmp_path: Path, name: str, img: Image.Image, fmt: str | None = None, **kw) -> Path:
    """Save ``img`` as ``tmp_path/name`` (format from the suffix unless ``fmt``) and return it."""
    path = tmp_path / name
    img.save(path, format=fmt, **kw)
    return path


def header(path: Path, attr: str):
    """One attribute (``size``, ``mode``, ``n_frames``...) of the file as Pillow opens it."""
    with Image.open(path) as im:
        return getattr(im, attr)


def asymmetric(w: int = 40, h: int = 20, patch: int = 8) -> Image.Image:
    """A white ``w`` x ``h`` RGB image with a red ``patch`` x ``patch`` square top-left."""
    img = Image.new("RGB", (w, h), WHITE)
    img.paste(RED, (0, 0, patch, patch))
    return img


def png_claiming_size(width: int, height: int) -> bytes:
    """A 1x1 PNG whose IHDR has been patched to claim ``width`` x ``height`` (CRC fixed)."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1), RED).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    # signature (8) + length (4) + b"IHDR" (4), then width and height, then the rest of IHDR
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def corner_means(rgb: np.ndarray, k: int = 6) -> dict[str, np.ndarray]:
    return {
        "tl": rgb[:k, :k].reshape(-1, 3).mean(0),
        "tr": rgb[:k, -k:].reshape(-1, 3).mean(0),
        "bl": rgb[-k:, :k].reshape(-1, 3).mean(0),
        "br": rgb[-k:, -k:].reshape(-1, 3).mean(0),
    }


def is_red(c: np.ndarray) -> bool:
    return c[0] > 200 and c[1] < 60 and c[2] < 60


def is_white(c: np.ndarray) -> bool:
    return bool((c > 200).all())


def assert_rgb(img: LoadedImage, w: int, h: int) -> None:
    assert isinstance(img, LoadedImage)
    assert img.rgb.shape == (h, w, 3)
    assert img.rgb.dtype == np.uint8
    assert img.rgb.flags["C_CONTIGUOUS"]
    assert (img.width, img.height) == (w, h)


def assert_input_error(excinfo: pytest.ExceptionInfo[InputError], path: object, *words: str):
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert msg.startswith(f"{os.fspath(path)}: "), msg  # type: ignore[arg-type]
    for w in words:
        assert w in msg, msg


@pytest.fixture(autouse=True)
def _restore_pillow_globals(monkeypatch):
    # load_image may raise Pillow's process-wide MAX_IMAGE_PIXELS; keep each test independent.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)


# --------------------------------------------------------------------------- orientation

# Transform that undoes each EXIF orientation (what ImageOps.exif_transpose applies), and
# its inverse, used to build the stored (sideways / mirrored) image.
CORRECT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
INVERSE = {**CORRECT, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(tmp_path, fmt, ext, orientation):
    upright = asymmetric()
    stored = upright if INVERSE[orientation] is None else upright.transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra = {"quality": 95} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}
    path = save(tmp_path, f"o{orientation}.{ext}", stored, fmt, exif=exif.tobytes(), **extra)
    if orientation in (5, 6, 7, 8):
        assert header(path, "size") == (20, 40)  # really stored sideways

    img = load_image(path)

    assert_rgb(img, 40, 20)
    c = corner_means(img.rgb)
    assert is_red(c["tl"]), c
    assert is_white(c["tr"]) and is_white(c["bl"]) and is_white(c["br"]), c
    # and the same answer as Pillow's reference implementation
    with Image.open(path) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert np.array_equal(img.rgb, ref)


def test_broken_exif_block_is_ignored(tmp_path):
    path = save(tmp_path, "bad_exif.jpg", asymmetric(), exif=b"Exif\x00\x00MM\x00*garbage")
    img = load_image(path)
    assert_rgb(img, 40, 20)


# --------------------------------------------------------------------------- modes


def test_rgb_jpeg_matches_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = save(tmp_path, "n.jpg", noise(64, 48), quality=90)
    img = load_image(path)
    ref = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert_rgb(img, 64, 48)
    assert np.abs(img.rgb.astype(int) - ref).mean() < 2.0


def test_result_is_read_only(tmp_path):
    img = load_image(save(tmp_path, "a.png", asymmetric()))
    assert not img.rgb.flags["WRITEABLE"]
    with pytest.raises(ValueError):
        img.rgb[0, 0, 0] = 1


def test_grayscale_l(tmp_path):
    img = load_image(save(tmp_path, "g.png", Image.new("L", (5, 4), 77)))
    assert_rgb(img, 5, 4)
    assert (img.rgb == 77).all()


def test_one_bit(tmp_path):
    im = Image.new("1", (4, 2), 0)
    im.putpixel((3, 1), 1)
    img = load_image(save(tmp_path, "b.png", im))
    assert_rgb(img, 4, 2)
    assert img.rgb[1, 3].tolist() == [255, 255, 255]
    assert img.rgb[0, 0].tolist() == [0, 0, 0]


def test_rgba_is_composited_over_white(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[..., 0] = 255  # red everywhere
    a[0, 0, 3] = 255  # opaque red
    a[0, 1, 3] = 0  # fully transparent
    a[0, 2, 3] = 128  # half
    a[1, :, 3] = 255
    img = load_image(save(tmp_path, "a.png", Image.fromarray(a, "RGBA")))
    assert_rgb(img, 3, 2)
    assert img.rgb[0, 0].tolist() == [255, 0, 0]
    assert img.rgb[0, 1].tolist() == [255, 255, 255]
    r, g, b = img.rgb[0, 2].tolist()
    assert r == 255 and abs(g - 127) <= 2 and abs(b - 127) <= 2


def test_opaque_rgba_keeps_colours(tmp_path):
    im = noise(8, 6).convert("RGBA")
    img = load_image(save(tmp_path, "o.png", im))
    assert np.array_equal(img.rgb, np.asarray(im)[..., :3])


def test_all_transparent_rgba_keeps_colours(tmp_path):
    # a broken export with alpha 0 everywhere: compositing would give a blank white image
    a = np.asarray(noise(8, 6).convert("RGBA")).copy()
    a[..., 3] = 0
    img = load_image(save(tmp_path, "t.png", Image.fromarray(a, "RGBA")))
    assert np.array_equal(img.rgb, a[..., :3])


def test_la_is_composited_over_white(tmp_path):
    im = Image.new("LA", (2, 1), (0, 255))
    im.putpixel((1, 0), (0, 0))
    img = load_image(save(tmp_path, "la.png", im))
    assert img.rgb[0, 0].tolist() == [0, 0, 0]
    assert img.rgb[0, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize("ext", ["png", "gif"])
def test_palette_with_transparency(tmp_path, ext):
    p = Image.new("P", (3, 1), 0)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    p.putpixel((1, 0), 1)
    img = load_image(save(tmp_path, f"p.{ext}", p, transparency=1))
    assert img.rgb[0, 0].tolist() == [255, 0, 0]
    assert img.rgb[0, 1].tolist() == [255, 255, 255]  # the transparent index


def test_palette_without_transparency(tmp_path):
    p = Image.new("P", (2, 1), 1)
    p.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    img = load_image(save(tmp_path, "p.bmp", p))
    assert img.rgb[0, 0].tolist() == [0, 0, 255]


def test_16bit_gray_png_is_scaled_not_clipped(tmp_path):
    vals = np.array([[0, 257 * 128, 40000, 65535]], np.uint16)
    path = save(tmp_path, "g16.png", Image.fromarray(vals))
    assert header(path, "mode").startswith("I")
    img = load_image(path)
    assert_rgb(img, 4, 1)
    assert img.rgb[0, :, 0].tolist() == [0, 128, round(40000 / 257), 255]
    assert (img.rgb[..., 0] == img.rgb[..., 2]).all()


def test_16bit_rgb_png(tmp_path):
    cv2 = pytest.importorskip("cv2")
    a = np.zeros((2, 2, 3), np.uint16)
    a[0, 0] = [65535, 32896, 0]
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), a[..., ::-1])
    img = load_image(path)
    r, g, b = img.rgb[0, 0].tolist()
    assert r == 255 and abs(g - 128) <= 1 and b == 0


def test_16bit_pgm(tmp_path):
    cv2 = pytest.importorskip("cv2")
    path = tmp_path / "g16.pgm"
    assert cv2.imwrite(str(path), np.full((3, 3), 40000, np.uint16))
    img = load_image(path)
    assert abs(int(img.rgb[0, 0, 0]) - round(40000 / 257)) <= 1


def test_int32_mode_i(tmp_path):
    in_range = np.array([[0, 65535]], np.int32)
    img = load_image(save(tmp_path, "i.tif", Image.fromarray(in_range)))
    assert img.rgb[0, :, 0].tolist() == [0, 255]
    wide = np.array([[-1000, 0, 1000]], np.int32)  # not 16-bit data: stretched
    img = load_image(save(tmp_path, "i2.tif", Image.fromarray(wide)))
    assert img.rgb[0, :, 0].tolist() == [0, 128, 255]


def test_float_mode_f(tmp_path):
    unit = np.array([[0.0, 0.5, 1.0]], np.float32)
    img = load_image(save(tmp_path, "f.tif", Image.fromarray(unit)))
    assert header(tmp_path / "f.tif", "mode") == "F"
    assert img.rgb[0, :, 1].tolist() == [0, 128, 255]
    wide = np.array([[-5.0, 0.0, 5.0]], np.float32)
    img = load_image(save(tmp_path, "f2.tif", Image.fromarray(wide)))
    assert img.rgb[0, :, 1].tolist() == [0, 128, 255]


def test_cmyk_jpeg_round_trip_preserves_colour(tmp_path):
    colour = (30, 160, 220)
    path = save(tmp_path, "c.jpg", Image.new("RGB", (16, 16), colour).convert("CMYK"), quality=95)
    assert header(path, "mode") == "CMYK"
    img = load_image(path)
    assert np.abs(img.rgb.reshape(-1, 3).mean(0) - colour).max() < 8


def test_webp_lossless(tmp_path):
    im = noise(10, 7)
    img = load_image(save(tmp_path, "n.webp", im, lossless=True))
    assert np.array_equal(img.rgb, np.asarray(im))


@pytest.mark.parametrize("ext", ["bmp", "tif", "ppm", "png", "jpg", "jpeg", "jfif"])
def test_common_formats(tmp_path, ext):
    img = load_image(save(tmp_path, f"a.{ext}", asymmetric()))
    assert_rgb(img, 40, 20)
    assert is_red(corner_means(img.rgb)["tl"])


@pytest.mark.skipif(".avif" not in IMAGE_EXTENSIONS, reason="this Pillow has no AVIF support")
def test_avif(tmp_path):
    img = load_image(save(tmp_path, "a.avif", asymmetric(64, 32, 16), quality=90))
    assert_rgb(img, 64, 32)


def test_content_decides_format_not_name(tmp_path):
    img = load_image(save(tmp_path, "really_webp.jpg", asymmetric(), "WEBP", lossless=True))
    assert_rgb(img, 40, 20)
    img = load_image(save(tmp_path, "photo.dat", asymmetric(), "PNG"))
    assert_rgb(img, 40, 20)


def test_multiframe_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 4), c) for c in (RED, (0, 0, 255), (0, 255, 0))]
    path = save(tmp_path, "anim.gif", frames[0], save_all=True, append_images=frames[1:])
    assert header(path, "n_frames") == 3
    img = load_image(path)
    assert_rgb(img, 6, 4)
    assert (img.rgb == RED).all()


def test_multipage_tiff_gives_first_page(tmp_path):
    pages = [Image.new("RGB", (6, 4), RED), Image.new("L", (9, 9), 0)]
    path = save(tmp_path, "pages.tif", pages[0], save_all=True, append_images=pages[1:])
    assert header(path, "n_frames") == 2
    img = load_image(path)
    assert_rgb(img, 6, 4)
    assert (img.rgb == RED).all()


def test_load_image_bytes(tmp_path):
    data = save(tmp_path, "a.png", asymmetric()).read_bytes()
    for blob in (data, bytearray(data), memoryview(data)):
        img = load_image_bytes(blob, "upload.png")
        assert img.path == "upload.png"
        assert_rgb(img, 40, 20)
    with pytest.raises(InputError) as e:
        load_image_bytes(b"")
    assert_input_error(e, "<bytes>", "file is empty")
    with pytest.raises(InputError) as e:
        load_image_bytes(b"hello world", "blob")
    assert_input_error(e, "blob", "cannot identify image file")


def test_path_is_kept_as_given(tmp_path, monkeypatch):
    save(tmp_path, "a.png", asymmetric())
    monkeypatch.chdir(tmp_path)
    assert load_image("a.png").path == "a.png"
    assert load_image(Path("a.png")).path == "a.png"


def test_bytes_path_is_a_type_error():
    with pytest.raises(TypeError, match="load_image_bytes"):
        load_image(b"\x89PNG...")  # type: ignore[arg-type]


def test_library_prints_nothing(tmp_path, capsys):
    load_image(save(tmp_path, "a.png", asymmetric()))
    with pytest.raises(InputError):
        load_image(tmp_path / "missing.png")
    assert capsys.readouterr() == ("", "")


# --------------------------------------------------------------------------- bombs


def test_bomb_header_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming_size(100_000, 100_000))
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "too large", "10000000000 pixels")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_header_just_above_limit_refused(tmp_path):
    # 225 M pixels: above facekit's 200 M but below twice Pillow's raised limit, so it is
    # facekit's own header check that refuses it (the body is 1 pixel: decoding would say
    # "truncated", so "too large" proves the check ran first).
    path = tmp_path / "big.png"
    path.write_bytes(png_claiming_size(15_000, 15_000))
    assert MAX_PIXELS < 15_000 * 15_000
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "too large", "225000000 pixels")


def test_large_phone_photo_header_is_not_pillow_refused(tmp_path):
    # 12000x9000 = 108 M pixels (a 108 MP phone): Pillow's default guard would warn, and
    # refuse above 179 M; facekit's limit is what counts. The 1-pixel body then fails to decode.
    for w, h in ((12_000, 9_000), (16_320, 12_240)):
        path = tmp_path / f"phone{w}.png"
        path.write_bytes(png_claiming_size(w, h))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(InputError) as e:
                load_image(path)
        assert "too large" not in str(e.value)
        assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]


def test_max_pixels_argument(tmp_path):
    path = save(tmp_path, "a.png", noise(64, 64))
    with pytest.raises(InputError) as e:
        load_image(path, max_pixels=1000)
    assert_input_error(e, path, "64x64", "4096 pixels", "limit 1000")
    assert_rgb(load_image(path, max_pixels=4096), 64, 64)
    with pytest.raises(InputError):
        load_image_bytes(path.read_bytes(), max_pixels=4095)


# --------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "no such file")


def test_directory(tmp_path):
    with pytest.raises(InputError) as e:
        load_image(tmp_path)
    assert_input_error(e, tmp_path, "is a directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "file is empty")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("just some text\n" * 20)
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "cannot identify image file")


def test_eps_is_not_decoded(tmp_path):
    # Pillow would run Ghostscript for EPS; photo loading must not.
    path = tmp_path / "x.eps"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "cannot identify image file")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.jpg"
    os.mkfifo(path)
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "not a regular file")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read any file"
)
def test_permission_denied_real(tmp_path):
    path = save(tmp_path, "a.png", asymmetric())
    path.chmod(0)
    try:
        with pytest.raises(InputError) as e:
            load_image(path)
        assert_input_error(e, path, "permission denied")
    finally:
        path.chmod(0o644)


def test_permission_denied(tmp_path, monkeypatch):
    path = save(tmp_path, "a.png", asymmetric())

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(imageio, "open", denied, raising=False)
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "permission denied")
    with pytest.raises(InputError) as e:
        file_digest(path)
    assert_input_error(e, path, "permission denied")


@pytest.mark.parametrize("fraction", [0.02, 0.3, 0.7, 0.99])
def test_truncated_jpeg_is_refused(tmp_path, fraction):
    data = save(tmp_path, "full.jpg", noise(200, 150), quality=90).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path)
    assert "truncated" in str(e.value) or "cannot identify" in str(e.value)
    if fraction >= 0.3:
        assert "truncated image file" in str(e.value)


def test_truncated_png_is_refused(tmp_path):
    data = save(tmp_path, "full.png", noise(100, 100)).read_bytes()
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path, "truncated image file")


def test_truncated_flag_set_by_another_library_is_reported(tmp_path, monkeypatch, caplog):
    data = save(tmp_path, "full.jpg", noise(200, 150)).read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    monkeypatch.setattr(imageio, "_warned_truncated_flag", False)
    with caplog.at_level("WARNING", logger="facekit.imageio"):
        img = load_image(path)  # partially loaded, as the other library asked
    assert_rgb(img, 200, 150)
    assert "LOAD_TRUNCATED_IMAGES" in caplog.text


def test_corrupt_png_data(tmp_path):
    data = bytearray(save(tmp_path, "full.png", noise(64, 64)).read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 20 : idat + 60] = b"\xff" * 40
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        load_image(path)
    assert_input_error(e, path)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged TIFF/EXIF tags
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "TIFF", "WEBP", "BMP", "PPM"])
def test_fuzzed_files_raise_only_input_error(tmp_path, fmt):
    base = io.BytesIO()
    src = asymmetric(48, 32)
    src.save(base, fmt, **({"exif": _exif(6)} if fmt in ("JPEG", "WEBP") else {}))
    good = base.getvalue()
    rng = random.Random(f"fuzz-{fmt}")
    for i in range(60):
        data = bytearray(good)
        if i % 3 == 0:  # cut somewhere
            data = data[: rng.randrange(1, len(data))]
        else:  # overwrite a few bytes, often in the header
            for _ in range(rng.randint(1, 8)):
                pos = rng.randrange(min(len(data), 120) if i % 2 else len(data))
                data[pos] = rng.randrange(256)
        try:
            img = load_image_bytes(bytes(data), f"fuzz{i}", max_pixels=10_000_000)
        except InputError as exc:
            msg = str(exc)
            assert msg.startswith(f"fuzz{i}: ") and "\n" not in msg
        else:
            assert img.rgb.dtype == np.uint8 and img.rgb.ndim == 3


def _exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


# --------------------------------------------------------------------------- real photos


def _real_photos() -> list[Path]:
    out: list[Path] = []
    for d in ("deepface-unit", "face_recognition-examples"):
        out += sorted(p for p in (DATASETS / d).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    return out


@needs_shared
def test_every_shared_photo_loads():
    photos = _real_photos()
    assert len(photos) > 60
    for p in photos:
        img = load_image(p)
        assert img.rgb.dtype == np.uint8 and img.rgb.shape[2] == 3, p
        assert min(img.width, img.height) >= 100, p


@needs_shared
def test_webp_named_jpg_in_shared_data_loads():
    path = DATASETS / "deepface-unit" / "img47.jpg"
    assert path.read_bytes()[8:12] == b"WEBP"
    img = load_image(path)
    assert_rgb(img, 1350, 1800)


@needs_shared
def test_real_photo_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    path = DATASETS / "face_recognition-examples" / "obama.jpg"
    img = load_image(path)
    ref = cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert img.rgb.shape == ref.shape
    assert np.abs(img.rgb.astype(int) - ref).mean() < 2.0


# --------------------------------------------------------------------------- detection copy


def _with_block(w: int, h: int, x0: int, y0: int, x1: int, y1: int) -> LoadedImage:
    a = np.full((h, w, 3), 255, np.uint8)
    a[y0:y1, x0:x1] = 0
    return LoadedImage("synthetic", a, w, h)


def _block_box(a: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(a[..., 0] < 128)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("w,h", [(4000, 3000), (3000, 4000)])
def test_detection_copy_scales_and_maps_back(w, h):
    box = (2000, 1000, 2400, 1500) if w > h else (1000, 2000, 1500, 2400)
    img = _with_block(w, h, *box)
    small, s = img.detection_copy(1600)
    assert s == pytest.approx(0.4)
    assert max(small.shape[:2]) == 1600
    assert small.shape == ((1200, 1600, 3) if w > h else (1600, 1200, 3))
    assert small.dtype == np.uint8
    mapped = np.array(_block_box(small)) / s
    assert np.abs(mapped - np.array(box)).max() <= 1 / s + 1e-9


def test_detection_copy_small_image_is_unchanged():
    img = _with_block(800, 600, 10, 10, 20, 20)
    small, s = img.detection_copy(1600)
    assert s == 1.0 and small is img.rgb
    small, s = img.detection_copy(800)
    assert s == 1.0 and small is img.rgb


def test_detection_copy_rejects_bad_max_side():
    with pytest.raises(ValueError):
        _with_block(10, 10, 0, 0, 1, 1).detection_copy(0)


def test_loaded_image_checks_shape():
    with pytest.raises(ValueError):
        LoadedImage("x", np.zeros((4, 5, 3), np.uint8), 4, 5)
    with pytest.raises(ValueError):
        LoadedImage("x", np.zeros((4, 5), np.uint8), 5, 4)
    with pytest.raises(ValueError):
        LoadedImage("x", np.zeros((4, 5, 3), np.float32), 5, 4)


# --------------------------------------------------------------------------- paths


def _tree(root: Path) -> None:
    for rel in [
        "album/b.JPG",
        "album/a.png",
        "album/.hidden.jpg",
        "album/notes.txt",
        "album/sub/c.webp",
        "album/sub/deeper/d.TIFF",
        "album/.git/e.jpg",
        "album/z/f.jpeg",
    ]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_extensions_are_lower_case_with_dot():
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".jfif"} <= (
        IMAGE_EXTENSIONS
    )
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)
    # HEIC/HEIF (phones' default) is picked up exactly when pillow-heif can decode it
    from facekit.imageio import _HEIF_AVAILABLE

    assert (".heic" in IMAGE_EXTENSIONS) == _HEIF_AVAILABLE


def _heic(path, src):
    pytest.importorskip("pillow_heif", reason="HEIC support needs pillow-heif")
    from PIL import Image

    import facekit.imageio as fio

    fio._register_heif()
    Image.open(src).convert("RGB").save(path, format="HEIF", quality=90)
    return path


def test_heic_photo_decodes_and_is_walked(tmp_path, fr_examples):
    """A real photo saved as HEIC (as phones do) is found by folder walks and decodes to the
    same picture; before pillow-heif support it was skipped without a word."""
    src = fr_examples / "obama.jpg"
    (tmp_path / "album").mkdir()
    heic = _heic(tmp_path / "album" / "IMG_0001.HEIC", src)
    assert list(iter_image_paths([str(tmp_path / "album")])) == [str(heic)]
    img = load_image(heic)
    ref = load_image(src)
    assert (img.width, img.height) == (ref.width, ref.height)
    diff = np.abs(img.rgb.astype(int) - ref.rgb.astype(int)).mean()
    assert diff < 6, diff


def test_heic_without_plugin_is_reported_not_skipped(tmp_path, fr_examples, monkeypatch):
    """Without pillow-heif a HEIC photo is still walked, and loading it says why it fails."""
    import facekit.imageio as fio

    heic = _heic(tmp_path / "IMG_0002.heic", fr_examples / "obama.jpg")
    monkeypatch.setattr(fio, "_HEIF_AVAILABLE", False)
    monkeypatch.setattr(fio, "IMAGE_EXTENSIONS", fio.IMAGE_EXTENSIONS - set(fio.HEIF_EXTENSIONS))
    assert list(iter_image_paths([str(tmp_path)])) == [str(heic)]
    with pytest.raises(InputError, match="HEIC/HEIF photo: install pillow-heif"):
        load_image(heic)


def test_iter_walks_folders_sorted_skipping_hidden(tmp_path):
    _tree(tmp_path)
    album = str(tmp_path / "album")
    got = list(iter_image_paths([album]))
    rel = [os.path.relpath(p, album) for p in got]
    assert rel == ["a.png", "b.JPG", "sub/c.webp", "sub/deeper/d.TIFF", "z/f.jpeg"]
    assert all(p.startswith(album) for p in got)


def test_iter_not_recursive(tmp_path):
    _tree(tmp_path)
    album = tmp_path / "album"
    got = list(iter_image_paths([album], recursive=False))
    assert got == [str(album / "a.png"), str(album / "b.JPG")]


def test_iter_yields_files_and_missing_paths_as_given(tmp_path, monkeypatch):
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    inputs = ["album/notes.txt", "missing.jpg", "album/.hidden.jpg"]
    assert list(iter_image_paths(inputs)) == inputs
    with pytest.raises(InputError) as e:
        load_image("missing.jpg")
    assert_input_error(e, "missing.jpg", "no such file")


def test_iter_reads_stdin(tmp_path, monkeypatch):
    _tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("  one.jpg \n\n\talbum/sub\n\ntwo.png\n"))
    got = list(iter_image_paths(["first.jpg", "-"]))
    assert got == [
        "first.jpg",
        "one.jpg",
        os.path.join("album/sub", "c.webp"),
        os.path.join("album/sub/deeper", "d.TIFF"),
        "two.png",
    ]


def test_iter_is_lazy():
    it = iter_image_paths(x for x in ["a.jpg", "b.jpg"])
    assert next(it) == "a.jpg"


# --------------------------------------------------------------------------- digest


def test_file_digest_streams_large_and_empty_files(tmp_path):
    big = tmp_path / "big.bin"
    data = os.urandom(int(2.5 * (1 << 20)))
    big.write_bytes(data)
    assert file_digest(big) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty.bin"
    empty.touch()
    assert file_digest(str(empty)) == hashlib.sha256(b"").hexdigest()


def test_file_digest_missing(tmp_path):
    with pytest.raises(InputError) as e:
        file_digest(tmp_path / "gone.jpg")
    assert_input_error(e, tmp_path / "gone.jpg", "no such file")
