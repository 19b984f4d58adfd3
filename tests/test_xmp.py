"""XMP face regions (facekit.xmp) against exiftool, on real photos from ../shared.

Test photos are built here: a shared photo is copied into tmp_path (re-stored sideways or
mirrored for the EXIF orientations), then tagged with exiftool the way digiKam / Windows
Photo Gallery tag photos. What facekit writes is read back with exiftool.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facekit.errors import InputError, UsageError
from facekit.imageio import load_image
from facekit.xmp import (
    NewRegion,
    match_regions,
    read_regions,
    sidecar_paths,
    to_display,
    write_regions,
)

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None,
    reason="exiftool not installed (Debian/Ubuntu: apt-get install libimage-exiftool-perl): "
    "the XMP tests write and check tags with it",
)

# Transform that builds the stored image of each EXIF orientation from the upright one
# (the inverse of what ImageOps.exif_transpose applies).
INVERSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exiftool(*args: str | Path) -> str:
    assert EXIFTOOL is not None
    out = subprocess.run(
        [EXIFTOOL, *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def exif_json(path: Path, *tags: str) -> dict:
    return json.loads(exiftool("-j", "-struct", *tags, path))[0]


def mwg_arg(regions, dims) -> str:
    """exiftool's struct syntax for ``XMP-mwg-rs:RegionInfo``; ``regions`` are
    ``(name, (x, y, w, h) top-left normalised, type)``."""
    items = []
    for name, (x, y, w, h), kind in regions:
        fields = f"Area={{X={x + w / 2:.6f},Y={y + h / 2:.6f},W={w:.6f},H={h:.6f},Unit=normalized}}"
        if name:
            fields += f",Name={name}"
        items.append("{" + fields + f",Type={kind}}}")
    return (
        f"-XMP-mwg-rs:RegionInfo={{AppliedToDimensions={{W={dims[0]},H={dims[1]},Unit=pixel}},"
        f"RegionList=[{','.join(items)}]}}"
    )


def faces_of(path: Path) -> list[tuple[float, float, float, float]]:
    from facekit.detect import detect_image, get_detector

    rgb = load_image(path).rgb
    xyxy = detect_image(get_detector("dlib-hog"), rgb).xyxy
    return [(float(a), float(b), float(c - a), float(d - b)) for a, b, c, d in xyxy]


def with_margin(box, width, height, m=0.25):
    """A face box grown by ``m`` per side (photo managers draw looser boxes), normalised."""
    x, y, w, h = box
    return (
        (x - m * w) / width,
        (y - m * h) / height,
        w * (1 + 2 * m) / width,
        h * (1 + 2 * m) / height,
    )


def oriented_copy(src: Path, dest: Path, orientation: int) -> Path:
    with Image.open(src) as im:
        upright = im.convert("RGB")
    t = INVERSE[orientation]
    stored = upright if t is None else upright.transpose(t)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(dest, "JPEG", quality=95, exif=exif.tobytes())
    return dest


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- pure functions


def test_to_display_round_trips_every_orientation():
    box = (0.1, 0.2, 0.3, 0.15)
    for o in range(1, 9):
        back = to_display(to_display(box, o), o, inverse=True)
        assert np.allclose(back, box), (o, back)
    assert np.allclose(to_display(box, 3), (0.6, 0.65, 0.3, 0.15))
    assert np.allclose(to_display(box, 6), (0.65, 0.1, 0.15, 0.3))
    assert np.allclose(to_display(box, 8), (0.2, 0.6, 0.15, 0.3))


def test_match_regions_is_one_to_one_and_rejects_far_or_misfit_boxes():
    regions = [(0, 0, 100, 100), (200, 0, 100, 100), (400, 400, 10, 10)]
    faces = [(210, 10, 80, 80), (20, 15, 70, 75), (400, 400, 200, 200)]
    assert match_regions(regions, faces) == [1, 0, None]
    # two regions on one face: the closer one gets it
    assert match_regions([(0, 0, 100, 100), (30, 0, 100, 100)], [(10, 10, 80, 80)]) == [0, None]


# --------------------------------------------------------------------------- reading


@needs_exiftool
@pytest.mark.parametrize("orientation", range(1, 9))
def test_reads_exiftool_mwg_regions_in_every_orientation(tmp_path, fr_examples, orientation):
    photo = oriented_copy(fr_examples / "obama.jpg", tmp_path / f"o{orientation}.jpg", orientation)
    img = load_image(photo)
    (face,) = faces_of(photo)  # in facekit's (displayed) frame
    area = with_margin(face, img.width, img.height)
    exiftool(
        "-overwrite_original",
        mwg_arg([("Barack Obama", area, "Face")], (img.width, img.height)),
        photo,
    )

    found = read_regions(photo)

    assert (found.width, found.height) == (img.width, img.height)
    (r,) = found.faces
    assert r.name == "Barack Obama" and r.schema == "mwg" and not r.facekit
    assert np.allclose(r.box, area, atol=1e-5)
    assert match_regions([r.pixel_box(img.width, img.height)], [face]) == [0]


@needs_exiftool
@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_regions_stated_in_the_stored_frame_are_rotated(tmp_path, fr_examples, orientation):
    """A writer that ignored the orientation states AppliedToDimensions as the stored
    (unrotated) size: facekit recognises it and rotates the regions into its frame."""
    photo = oriented_copy(fr_examples / "obama.jpg", tmp_path / "s.jpg", orientation)
    img = load_image(photo)
    (face,) = faces_of(photo)
    area = with_margin(face, img.width, img.height)
    stored_area = to_display(area, orientation, inverse=True)
    exiftool(
        "-overwrite_original",
        mwg_arg([("Obama", stored_area, "Face")], (img.height, img.width)),
        photo,
    )
    (r,) = read_regions(photo).faces
    assert np.allclose(r.box, area, atol=1e-5)
    assert match_regions([r.pixel_box(img.width, img.height)], [face]) == [0]


@needs_exiftool
def test_reads_exiftool_mp_regions(tmp_path, fr_examples):
    photo = shutil.copy(fr_examples / "two_people.jpg", tmp_path / "mp.jpg")
    photo = Path(photo)
    img = load_image(photo)
    faces = sorted(faces_of(photo))
    assert len(faces) == 2
    names = ["Joe Biden", "Barack Obama"]  # left to right
    rects = [with_margin(f, img.width, img.height) for f in faces]
    items = ",".join(
        f"{{Rectangle={x:.6f}|, {y:.6f}|, {w:.6f}|, {h:.6f},PersonDisplayName={n}}}"
        for n, (x, y, w, h) in zip(names, rects)
    )
    exiftool("-overwrite_original", f"-XMP-MP:RegionInfoMP={{Regions=[{items}]}}", photo)

    found = read_regions(photo)

    assert [r.name for r in found.faces] == names
    assert all(r.schema == "mp" for r in found.faces)
    for r, rect in zip(found.faces, rects):
        assert np.allclose(r.box, rect, atol=1e-5)
    boxes = [r.pixel_box(img.width, img.height) for r in found.faces]
    assert match_regions(boxes, faces) == [0, 1]


@needs_exiftool
def test_sidecars_of_both_names_are_read_and_win_over_the_embedded_copy(tmp_path, fr_examples):
    photo = Path(shutil.copy(fr_examples / "two_people.jpg", tmp_path / "p.jpg"))
    img = load_image(photo)
    left, right = sorted(faces_of(photo))
    dims = (img.width, img.height)
    la, ra = with_margin(left, *dims), with_margin(right, *dims)
    exiftool("-overwrite_original", mwg_arg([("Old Name", la, "Face")], dims), photo)
    # digiKam's name: photo.jpg.xmp; exiftool's / Lightroom's: photo.xmp
    long_sc, short_sc = sidecar_paths(photo)
    assert (long_sc.name, short_sc.name) == ("p.jpg.xmp", "p.xmp")
    exiftool("-o", long_sc, mwg_arg([("Joe Biden", la, "Face")], dims))
    found = read_regions(photo)
    assert [(r.name, Path(r.origin).name) for r in found.faces] == [("Joe Biden", "p.jpg.xmp")]

    long_sc.unlink()
    exiftool("-o", short_sc, mwg_arg([("Barack Obama", ra, "Face")], dims))
    found = read_regions(photo)
    assert sorted((r.name, Path(r.origin).name) for r in found.faces) == [
        ("Barack Obama", "p.xmp"),
        ("Old Name", "p.jpg"),
    ]


def test_refuses_dtds_and_malformed_packets(tmp_path, fr_examples):
    photo = Path(shutil.copy(fr_examples / "obama.jpg", tmp_path / "a.jpg"))
    sc = sidecar_paths(photo)[0]
    sc.write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>'
    )
    with pytest.raises(InputError, match="DTD or entity"):
        read_regions(photo)
    sc.write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF>")
    with pytest.raises(InputError, match=r"a\.jpg\.xmp: malformed XMP"):
        read_regions(photo)


# --------------------------------------------------------------------------- writing


def read_back(path: Path) -> dict:
    return exif_json(path, "-XMP-mwg-rs:all", "-XMP-MP:all")


@needs_exiftool
def test_sidecar_write_is_read_back_by_exiftool_and_never_touches_the_photo(tmp_path, fr_examples):
    photo = Path(shutil.copy(fr_examples / "two_people.jpg", tmp_path / "t.jpg"))
    before = sha(photo)
    img = load_image(photo)
    left, right = sorted(faces_of(photo))
    new = [NewRegion(left, "Joe Biden", "biden", 91.0), NewRegion(right, None)]

    rep = write_regions(photo, new, width=img.width, height=img.height, mp=True)

    assert sha(photo) == before
    assert rep.target == str(tmp_path / "t.jpg.xmp") and rep.written == 2 and rep.mp_written == 2
    info = read_back(tmp_path / "t.jpg.xmp")["RegionInfo"]
    assert info["AppliedToDimensions"] == {"W": img.width, "H": img.height, "Unit": "pixel"}
    got = info["RegionList"]
    assert [g.get("Name") for g in got] == ["Joe Biden", None]
    for g, face in zip(got, [left, right]):
        a = g["Area"]
        x, y, w, h = face
        want = ((x + w / 2) / img.width, (y + h / 2) / img.height, w / img.width, h / img.height)
        assert np.allclose([a["X"], a["Y"], a["W"], a["H"]], want, atol=1e-5)
        assert a["Unit"] == "normalized" and g["Type"] == "Face"
    mp = read_back(tmp_path / "t.jpg.xmp")["RegionInfoMP"]["Regions"]
    assert [m.get("PersonDisplayName") for m in mp] == ["Joe Biden", None]
    rect = [float(v) for v in mp[0]["Rectangle"].split(",")]
    assert np.allclose(
        rect,
        [left[0] / img.width, left[1] / img.height, left[2] / img.width, left[3] / img.height],
        atol=1e-5,
    )


@needs_exiftool
def test_rewrite_replaces_facekit_regions_and_keeps_everything_else(tmp_path, fr_examples):
    photo = Path(shutil.copy(fr_examples / "two_people.jpg", tmp_path / "k.jpg"))
    img = load_image(photo)
    dims = (img.width, img.height)
    left, right = sorted(faces_of(photo))
    # a photo manager's tags: a named face (left), a pet region, keywords and a rating
    exiftool(
        "-overwrite_original",
        mwg_arg(
            [("Joe Biden", with_margin(left, *dims), "Face"), ("Bo", (0.05, 0.7, 0.1, 0.1), "Pet")],
            dims,
        ),
        "-XMP-dc:Subject=holiday",
        "-XMP-xmp:Rating=4",
        photo,
    )
    for name in ("Someone", "Barack Obama"):  # a re-run with a better answer
        rep = write_regions(
            photo,
            [NewRegion(left, "Wrong Guess"), NewRegion(right, name)],
            width=img.width,
            height=img.height,
        )
    assert rep.written == 1 and rep.replaced == 1
    assert rep.skipped == [("Wrong Guess", "already tagged 'Joe Biden' in the same place")]
    sc = tmp_path / "k.jpg.xmp"
    meta = exif_json(sc, "-XMP-mwg-rs:all", "-XMP-dc:Subject", "-XMP-xmp:Rating")
    got = [(g.get("Name"), g["Type"]) for g in meta["RegionInfo"]["RegionList"]]
    assert got == [("Joe Biden", "Face"), ("Bo", "Pet"), ("Barack Obama", "Face")]
    assert meta["Subject"] == ["holiday"] and meta["Rating"] == 4
    # facekit reads its own sidecar back the same way
    names = sorted((r.name, r.facekit) for r in read_regions(photo).faces)
    assert names == [("Barack Obama", True), ("Joe Biden", False)]


@needs_exiftool
def test_unnamed_face_of_another_tool_gets_the_name(tmp_path, fr_examples):
    photo = Path(shutil.copy(fr_examples / "obama.jpg", tmp_path / "u.jpg"))
    img = load_image(photo)
    (face,) = faces_of(photo)
    exiftool(
        "-overwrite_original",
        mwg_arg(
            [(None, with_margin(face, img.width, img.height, 0.1), "Face")], (img.width, img.height)
        ),
        photo,
    )
    rep = write_regions(
        photo, [NewRegion(face, "Barack Obama")], width=img.width, height=img.height
    )
    assert rep.written == 1
    got = read_back(tmp_path / "u.jpg.xmp")["RegionInfo"]["RegionList"]
    assert [g.get("Name") for g in got] == ["Barack Obama"]


@needs_exiftool
def test_unknown_faces_can_be_skipped(tmp_path, fr_examples):
    photo = Path(shutil.copy(fr_examples / "two_people.jpg", tmp_path / "s.jpg"))
    img = load_image(photo)
    left, right = sorted(faces_of(photo))
    rep = write_regions(
        photo,
        [NewRegion(left, "Joe Biden"), NewRegion(right, None)],
        width=img.width,
        height=img.height,
        unknown="skip",
    )
    assert rep.written == 1 and rep.skipped == [("unknown", "unknown face (--xmp-unknown skip)")]
    got = read_back(tmp_path / "s.jpg.xmp")["RegionInfo"]["RegionList"]
    assert [g.get("Name") for g in got] == ["Joe Biden"]


@needs_exiftool
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_in_place_jpeg_keeps_pixels_and_exif(tmp_path, fr_examples, orientation):
    photo = oriented_copy(fr_examples / "obama.jpg", tmp_path / "i.jpg", orientation)
    exiftool("-overwrite_original", "-EXIF:Make=TestCam", "-XMP-dc:Subject=family", photo)
    photo.chmod(0o640)
    warnings = exif_json(photo, "-validate", "-warning", "-a")
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    img = load_image(photo)
    (face,) = faces_of(photo)

    rep = write_regions(
        photo, [NewRegion(face, "Barack Obama")], width=img.width, height=img.height, in_place=True
    )

    assert rep.target == str(photo) and not sidecar_paths(photo)[0].exists()
    assert np.array_equal(np.asarray(Image.open(photo).convert("RGB")), pixels)
    assert photo.stat().st_mode & 0o777 == 0o640
    meta = exif_json(
        photo, "-XMP-mwg-rs:all", "-EXIF:Make", "-EXIF:Orientation#", "-XMP-dc:Subject"
    )
    assert meta["Make"] == "TestCam" and meta["Orientation"] == orientation
    assert meta["Subject"] in ("family", ["family"])
    info = meta["RegionInfo"]
    assert info["AppliedToDimensions"]["W"] == img.width
    assert info["AppliedToDimensions"]["H"] == img.height
    (r,) = read_regions(photo).faces
    assert r.name == "Barack Obama" and r.facekit
    assert match_regions([r.pixel_box(img.width, img.height)], [face]) == [0]
    # the rewritten file is no less valid than before (Pillow's EXIF lacks some tags)
    after = exif_json(photo, "-validate", "-warning", "-a")
    assert after["Validate"] == warnings["Validate"], after


@needs_exiftool
def test_in_place_png(tmp_path, fr_examples):
    photo = tmp_path / "p.png"
    shutil.copy(fr_examples / "lin-manuel-miranda.png", photo)
    pixels = np.asarray(Image.open(photo).convert("RGB"))
    img = load_image(photo)
    faces = faces_of(photo)
    assert faces
    write_regions(
        photo,
        [NewRegion(faces[0], "Lin-Manuel Miranda")],
        width=img.width,
        height=img.height,
        in_place=True,
    )
    write_regions(
        photo,
        [NewRegion(faces[0], "Lin-Manuel Miranda")],
        width=img.width,
        height=img.height,
        in_place=True,
    )
    assert np.array_equal(np.asarray(Image.open(photo).convert("RGB")), pixels)
    got = read_back(photo)["RegionInfo"]["RegionList"]
    assert [g.get("Name") for g in got] == ["Lin-Manuel Miranda"]


def test_in_place_refuses_other_formats(tmp_path, fr_examples):
    photo = tmp_path / "w.tif"
    Image.open(fr_examples / "obama.jpg").save(photo)
    with pytest.raises(UsageError, match="supports JPEG and PNG"):
        write_regions(photo, [NewRegion((1, 1, 5, 5), "x")], width=10, height=10, in_place=True)
    assert not sidecar_paths(photo)[0].exists()
    rep = write_regions(photo, [NewRegion((1, 1, 5, 5), "x")], width=10, height=10)
    assert rep.target.endswith("w.tif.xmp")


@needs_exiftool
def test_reads_heic_regions(tmp_path, fr_examples):
    pytest.importorskip("pillow_heif", reason="pillow-heif not installed: no HEIC support")
    import pillow_heif

    pillow_heif.register_heif_opener()
    photo = tmp_path / "h.heic"
    Image.open(fr_examples / "obama.jpg").save(photo, quality=80)
    img = load_image(photo)
    (face,) = faces_of(photo)
    area = with_margin(face, img.width, img.height)
    exiftool(
        "-overwrite_original",
        mwg_arg([("Barack Obama", area, "Face")], (img.width, img.height)),
        photo,
    )
    (r,) = read_regions(photo).faces
    assert r.name == "Barack Obama" and np.allclose(r.box, area, atol=1e-5)


def test_nothing_to_write_leaves_files_alone(tmp_path, fr_examples):
    photo = Path(shutil.copy(fr_examples / "obama.jpg", tmp_path / "n.jpg"))
    before = sha(photo)
    rep = write_regions(photo, [NewRegion((10, 10, 50, 50))], width=100, height=100, unknown="skip")
    assert rep.target == "" and rep.written == 0
    assert not sidecar_paths(photo)[0].exists() and sha(photo) == before
    # but facekit's own regions from an earlier run are removed when no face is left
    write_regions(photo, [NewRegion((10, 10, 50, 50), "A")], width=100, height=100)
    rep = write_regions(photo, [NewRegion((10, 10, 50, 50))], width=100, height=100, unknown="skip")
    assert rep.replaced == 1 and read_regions(photo).faces == []


def test_refuses_utf16_packets(tmp_path, fr_examples):
    photo = Path(shutil.copy(fr_examples / "obama.jpg", tmp_path / "a.jpg"))
    sidecar_paths(photo)[0].write_bytes(
        '<!DOCTYPE x [<!ENTITY a "a">]><x:xmpmeta xmlns:x="adobe:ns:meta/"/>'.encode("utf-16")
    )
    with pytest.raises(InputError, match="not in UTF-8"):
        read_regions(photo)


LIGHTROOM_STYLE = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:mwg-rs="http://www.metadataworkinggroup.com/schemas/regions/"
    xmlns:stDim="http://ns.adobe.com/xap/1.0/sType/Dimensions#"
    xmlns:stArea="http://ns.adobe.com/xmp/sType/Area#"
    xmlns:dc="http://purl.org/dc/elements/1.1/">
   <mwg-rs:Regions>
    <rdf:Description>
     <mwg-rs:AppliedToDimensions stDim:w="{w}" stDim:h="{h}" stDim:unit="pixel"/>
     <mwg-rs:RegionList>
      <rdf:Bag>
       <rdf:li>
        <rdf:Description mwg-rs:Name="Joe Biden" mwg-rs:Type="Face">
         <mwg-rs:Area stArea:x="{x}" stArea:y="{y}" stArea:w="{aw}" stArea:h="{ah}"
           stArea:unit="normalized"/>
        </rdf:Description>
       </rdf:li>
      </rdf:Bag>
     </mwg-rs:RegionList>
    </rdf:Description>
   </mwg-rs:Regions>
   <dc:subject><rdf:Bag><rdf:li>family</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>"""


@needs_exiftool
def test_compact_rdf_forms_are_read_and_extended(tmp_path, fr_examples):
    """Lightroom-style RDF (nested rdf:Description, fields as attributes) with an
    exiftool-readable check: facekit reads it, and adds its region beside the old one."""
    photo = Path(shutil.copy(fr_examples / "two_people.jpg", tmp_path / "l.jpg"))
    img = load_image(photo)
    left, right = sorted(faces_of(photo))
    x, y, aw, ah = with_margin(left, img.width, img.height)
    sc = sidecar_paths(photo)[1]  # photo.xmp, Lightroom's name
    sc.write_text(
        LIGHTROOM_STYLE.format(w=img.width, h=img.height, x=x + aw / 2, y=y + ah / 2, aw=aw, ah=ah)
    )
    (r,) = read_regions(photo).faces
    assert r.name == "Joe Biden" and np.allclose(r.box, (x, y, aw, ah), atol=1e-6)
    assert exif_json(sc, "-XMP-mwg-rs:all")["RegionInfo"]["RegionList"][0]["Name"] == "Joe Biden"

    rep = write_regions(
        photo,
        [NewRegion(left, "Joe Biden"), NewRegion(right, "Barack Obama")],
        width=img.width,
        height=img.height,
    )
    assert rep.target == str(sc) and rep.written == 1 and not sidecar_paths(photo)[0].exists()
    meta = exif_json(sc, "-XMP-mwg-rs:all", "-XMP-dc:Subject")
    assert [g.get("Name") for g in meta["RegionInfo"]["RegionList"]] == [
        "Joe Biden",
        "Barack Obama",
    ]
    assert meta["Subject"] in ("family", ["family"])
