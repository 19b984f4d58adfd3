"""XMP face regions: read the tags photo managers write, and write facekit's results back.

Formats read (embedded in JPEG, PNG, HEIC/TIFF/WebP through Pillow, and in ``.xmp`` sidecars
named ``photo.jpg.xmp`` or ``photo.xmp``):

* **MWG regions** (digiKam, Lightroom, Picasa, exiftool): ``mwg-rs:Regions`` with
  ``mwg-rs:AppliedToDimensions`` and a ``mwg-rs:RegionList`` of structs with ``Type``,
  ``Name`` and ``Area`` (``stArea:x/y`` = centre, ``w/h``, normalised to 0..1).
* **Microsoft Photo regions** (Windows Photo Gallery): ``MP:RegionInfo/MPRI:Regions`` of
  structs with ``MPReg:Rectangle`` (``"x, y, w, h"``, normalised, top-left corner) and
  ``MPReg:PersonDisplayName``.

Written: MWG face regions (and, on request, MP regions) with the names facekit found, into a
sidecar (default; the photo is never touched) or into the photo itself (JPEG and PNG only).
Regions of other types, other tools' regions and every other XMP field are kept; regions
facekit wrote before are replaced, so a re-run does not duplicate them (see
:func:`write_regions`).

Orientation: facekit's pixel frame is the displayed (EXIF-orientation-applied) image
(:mod:`facekit.imageio`). Regions are taken to be stated in that frame, the frame that
``AppliedToDimensions`` describes. One exception is recognised: when the photo's
orientation swaps width and height (EXIF orientations 5-8) and ``AppliedToDimensions``
matches the *stored* (unrotated) size instead, the regions were written in the stored frame
and are rotated into the displayed one (:func:`to_display`). Writing uses the displayed
frame, with ``AppliedToDimensions`` set to the displayed size.

Library choice (docs/xmp.md): no new dependency. The RDF/XML is edited with the standard
library's ElementTree, after refusing any DTD or entity declaration (no entity expansion, no
external fetches: what defusedxml forbids) and bounding every packet's size; embedded packets
are read and written by the small JPEG APP1 / PNG iTXt segment code below.

Example:
    >>> found = read_regions("photos/party.jpg")  # doctest: +SKIP
    >>> [(r.name, r.pixel_box(found.width, found.height)) for r in found.regions]  # doctest: +SKIP
    [('Ada Lovelace', (412.0, 130.0, 96.0, 120.0))]
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, UsageError

__all__ = [
    "NewRegion",
    "Region",
    "RegionSet",
    "WriteReport",
    "match_regions",
    "same_place",
    "read_regions",
    "sidecar_paths",
    "to_display",
    "write_regions",
]

log = logging.getLogger(__name__)

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XMETA = "adobe:ns:meta/"
MWGRS = "http://www.metadataworkinggroup.com/schemas/regions/"
STAREA = "http://ns.adobe.com/xmp/sType/Area#"
STDIM = "http://ns.adobe.com/xap/1.0/sType/Dimensions#"
MP = "http://ns.microsoft.com/photo/1.2/"
MPRI = "http://ns.microsoft.com/photo/1.2/t/RegionInfo#"
MPREG = "http://ns.microsoft.com/photo/1.2/t/Region#"
#: facekit's own namespace: marks the regions it wrote (inside ``mwg-rs:Extensions``).
FACEKIT = "https://github.com/facekit-dev/facekit/ns/xmp/1.0/"
XMLNS = "http://www.w3.org/XML/1998/namespace"

_PREFIXES = {
    "x": XMETA,
    "rdf": RDF,
    "mwg-rs": MWGRS,
    "stArea": STAREA,
    "stDim": STDIM,
    "MP": MP,
    "MPRI": MPRI,
    "MPReg": MPREG,
    "facekit": FACEKIT,
}

#: Largest XMP packet or sidecar read (bytes); larger ones are refused, not parsed.
MAX_PACKET = 16 << 20
#: Largest standard XMP packet that fits one JPEG APP1 segment.
JPEG_XMP_MAX = 65535 - 2 - 29
_JPEG_XMP_SIG = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_EXT_SIG = b"http://ns.adobe.com/xmp/extension/\x00"
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_XMP_KEY = b"XML:com.adobe.xmp"
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)

Box = tuple[float, float, float, float]


# --------------------------------------------------------------------------- result types


@dataclass(frozen=True)
class Region:
    """One face (or other) region found in a photo's XMP.

    Attributes:
        name: the person's name, or ``None`` for an unnamed region.
        box: ``(x, y, w, h)`` normalised to 0..1, top-left corner, in the displayed
            (orientation-applied) frame: facekit's pixel frame divided by its size.
        kind: the MWG ``Type`` (``"Face"``, ``"Pet"``, ``"Focus"``, ...); ``"Face"`` for MP.
        schema: ``"mwg"`` or ``"mp"``.
        origin: the file the region was read from (the photo, or its sidecar).
        facekit: ``True`` when facekit wrote the region.
    """

    name: str | None
    box: Box
    kind: str = "Face"
    schema: str = "mwg"
    origin: str = ""
    facekit: bool = False

    def pixel_box(self, width: int, height: int) -> Box:
        """``(x, y, w, h)`` in pixels of a ``width`` x ``height`` displayed image."""
        x, y, w, h = self.box
        return (x * width, y * height, w * width, h * height)


@dataclass
class RegionSet:
    """What :func:`read_regions` found for one photo.

    Attributes:
        photo: the photo path.
        regions: the regions, sidecar ones first (duplicates across files removed).
        width, height: displayed size of the photo (0 when it could not be read).
        sources: the files that held XMP (photo and/or sidecars).
        problems: one-line notes on what was ignored (bad areas, unreadable packets).
    """

    photo: str
    regions: list[Region] = field(default_factory=list)
    width: int = 0
    height: int = 0
    sources: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def faces(self) -> list[Region]:
        """The regions of type Face (MWG ``Type=Face``, and every MP region)."""
        return [r for r in self.regions if r.kind.lower() == "face"]


@dataclass(frozen=True)
class NewRegion:
    """A face region to write.

    Attributes:
        box: ``(x, y, w, h)`` in pixels of the displayed image (facekit's boxes).
        name: the name to write, or ``None`` for an unknown face.
        person: facekit's person id (stored in facekit's extension field).
        confidence: facekit's 0-100 confidence, if any (stored likewise).
    """

    box: Box
    name: str | None = None
    person: str | None = None
    confidence: float | None = None


@dataclass
class WriteReport:
    """What :func:`write_regions` did.

    Attributes:
        target: the file written (sidecar or photo), or ``""`` when nothing was written.
        written: regions written (MWG).
        replaced: facekit regions from an earlier run that were replaced.
        kept: existing MWG regions kept (other types, other tools', other areas).
        skipped: new regions not written, as ``(name or "unknown", reason)``.
        mp_written: MP regions written (with ``mp=True``).
    """

    target: str = ""
    written: int = 0
    replaced: int = 0
    kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    mp_written: int = 0


# --------------------------------------------------------------------------- geometry


def _orient_point(o: int, u: float, v: float) -> tuple[float, float]:
    """A normalised point of the stored image -> the displayed image, for EXIF orientation
    ``o`` (what Pillow's ``exif_transpose`` does to pixels)."""
    return {
        2: (1 - u, v),
        3: (1 - u, 1 - v),
        4: (u, 1 - v),
        5: (v, u),
        6: (1 - v, u),
        7: (1 - v, 1 - u),
        8: (v, 1 - u),
    }.get(o, (u, v))


_INVERSE = {6: 8, 8: 6}


def to_display(box: Box, orientation: int, *, inverse: bool = False) -> Box:
    """Map a normalised ``(x, y, w, h)`` box from the stored frame to the displayed one.

    Args:
        box: normalised, top-left corner.
        orientation: EXIF orientation 1-8 (others act as 1).
        inverse: map from the displayed frame back to the stored one.

    Returns:
        the box in the other frame, normalised.

    Example:
        >>> to_display((0.0, 0.0, 0.5, 0.25), 6)  # rotated 90 degrees clockwise for display
        (0.75, 0.0, 0.25, 0.5)
    """
    o = _INVERSE.get(orientation, orientation) if inverse else orientation
    x, y, w, h = box
    (a, b), (c, d) = _orient_point(o, x, y), _orient_point(o, x + w, y + h)
    return (min(a, c), min(b, d), abs(c - a), abs(d - b))


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def same_place(a: Box, b: Box, width: float = 1.0, height: float = 1.0) -> bool:
    """Whether two normalised boxes mark the same face: centres closer than 0.4 x the larger
    box's long side and sides within 2x of each other (tools draw different margins, so
    overlap alone misses a loose box around a tight one)."""
    sa = max(a[2] * width, a[3] * height)
    sb = max(b[2] * width, b[3] * height)
    if min(sa, sb) <= 0 or max(sa, sb) > 2 * min(sa, sb):
        return False
    dx = (a[0] + a[2] / 2 - b[0] - b[2] / 2) * width
    dy = (a[1] + a[3] / 2 - b[1] - b[3] / 2) * height
    return (dx * dx + dy * dy) ** 0.5 <= 0.4 * max(sa, sb)


def match_regions(
    regions: Sequence[Box], faces: Sequence[Box], *, max_offset: float = 0.5
) -> list[int | None]:
    """Pair tagged regions with detected faces (one-to-one), by centre distance.

    Tools draw face regions with different margins than facekit's detector, so overlap alone
    is a poor test; a region and a face match when the face's centre lies within
    ``max_offset`` x the region's long side of the region's centre and neither box is more
    than 4x the other's side. Pairs are taken closest first.

    Args:
        regions: ``(x, y, w, h)`` region boxes (any unit, same as ``faces``).
        faces: ``(x, y, w, h)`` detected face boxes.
        max_offset: largest centre distance, as a share of the region's long side.

    Returns:
        for each region, the index of its face in ``faces``, or ``None``.

    Example:
        >>> match_regions([(0, 0, 10, 10)], [(50, 50, 8, 8), (2, 1, 8, 9)])
        [1]
    """
    pairs = []
    for i, r in enumerate(regions):
        rs = max(r[2], r[3], 1e-9)
        rc = (r[0] + r[2] / 2, r[1] + r[3] / 2)
        for j, f in enumerate(faces):
            fs = max(f[2], f[3], 1e-9)
            if not 0.25 <= fs / rs <= 4.0:
                continue
            d = ((f[0] + f[2] / 2 - rc[0]) ** 2 + (f[1] + f[3] / 2 - rc[1]) ** 2) ** 0.5 / rs
            if d <= max_offset:
                pairs.append((d, i, j))
    out: list[int | None] = [None] * len(regions)
    used: set[int] = set()
    for _, i, j in sorted(pairs):
        if out[i] is None and j not in used:
            out[i] = j
            used.add(j)
    return out


# --------------------------------------------------------------------------- packets in files


def sidecar_paths(photo: str | os.PathLike[str]) -> list[Path]:
    """The two sidecar names of a photo, in the order they are read: ``photo.jpg.xmp``
    (digiKam, darktable) then ``photo.xmp`` (Lightroom, exiftool)."""
    p = Path(photo)
    return [p.with_name(p.name + ".xmp"), p.with_suffix(".xmp")]


def _read_file(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        from .imageio import _os_problem

        raise InputError(f"{path}: {_os_problem(exc)}") from exc
    if len(data) > limit:
        raise InputError(f"{path}: XMP larger than {limit} bytes; not read")
    return data


def _jpeg_segments(data: bytes, name: str) -> Iterable[tuple[int, int, int]]:
    """``(marker, start, end)`` of each segment before the image data (``start`` = the
    0xFF byte, ``end`` = one past the segment); stops at SOS."""
    if data[:2] != b"\xff\xd8":
        raise InputError(f"{name}: not a JPEG file")
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise InputError(f"{name}: damaged JPEG (no marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            yield marker, i, i + 2
            i += 2
            continue
        if marker == 0xD9:
            return
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        end = i + 2 + length
        if length < 2 or end > n:
            raise InputError(f"{name}: damaged JPEG (segment at byte {i} runs past the end)")
        yield marker, i, end
        if marker == 0xDA:
            return
        i = end


def _jpeg_xmp(data: bytes, name: str) -> tuple[list[bytes], bool]:
    """The XMP packets of a JPEG (standard, then the reassembled extended one) and whether
    it has ExtendedXMP."""
    main: bytes | None = None
    parts: dict[bytes, dict[int, bytes]] = {}
    for marker, s, e in _jpeg_segments(data, name):
        if marker != 0xE1:
            continue
        body = data[s + 4 : e]
        if body.startswith(_JPEG_XMP_SIG) and main is None:
            main = body[len(_JPEG_XMP_SIG) :]
        elif body.startswith(_JPEG_EXT_SIG) and len(body) > len(_JPEG_EXT_SIG) + 40:
            b = body[len(_JPEG_EXT_SIG) :]
            guid, (_total, offset) = b[:32], struct.unpack(">II", b[32:40])
            parts.setdefault(guid, {})[offset] = b[40:]
    out = [main] if main is not None else []
    for chunks in parts.values():
        ext = b"".join(chunks[k] for k in sorted(chunks))
        if len(ext) <= MAX_PACKET:
            out.append(ext)
    return out, bool(parts)


def _png_chunks(data: bytes, name: str) -> Iterable[tuple[bytes, int, int]]:
    """``(type, start, end)`` of each PNG chunk (``start`` = its length field)."""
    if not data.startswith(_PNG_SIG):
        raise InputError(f"{name}: not a PNG file")
    i = len(_PNG_SIG)
    while i + 12 <= len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        kind = data[i + 4 : i + 8]
        end = i + 12 + length
        if end > len(data):
            raise InputError(f"{name}: damaged PNG (chunk at byte {i} runs past the end)")
        yield kind, i, end
        if kind == b"IEND":
            return
        i = end


def _png_xmp(data: bytes, name: str) -> list[bytes]:
    for kind, s, e in _png_chunks(data, name):
        if kind != b"iTXt":
            continue
        body = data[s + 8 : e - 4]
        key, _, rest = body.partition(b"\x00")
        if key != _PNG_XMP_KEY or len(rest) < 2:
            continue
        compressed = rest[0] == 1
        rest = rest[2:]
        _lang, _, rest = rest.partition(b"\x00")
        _tkey, _, text = rest.partition(b"\x00")
        if compressed:
            d = zlib.decompressobj()
            text = d.decompress(text, MAX_PACKET + 1)
            if len(text) > MAX_PACKET:
                raise InputError(f"{name}: XMP larger than {MAX_PACKET} bytes; not read")
        return [text]
    return []


def _pillow_info(path: Path) -> tuple[tuple[int, int], int, list[bytes]]:
    """Stored size, EXIF orientation and (for formats without our own reader) the XMP
    packet, from the file header through Pillow (no pixel decoding)."""
    from PIL import Image

    from .imageio import _FORMATS, _register_heif

    _register_heif()
    try:
        with Image.open(path, formats=_FORMATS) as im:
            size = im.size
            try:
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            except Exception:
                orientation = 1
            info = im.info
            xmp = info.get("xmp") or info.get("XML:com.adobe.xmp")
            if xmp is None and hasattr(im, "tag_v2"):
                xmp = im.tag_v2.get(700)
    except Exception as exc:
        raise InputError(f"{path}: cannot read the image header ({exc})") from exc
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    packets = [bytes(xmp)] if isinstance(xmp, (bytes, bytearray)) and xmp else []
    return size, orientation if 1 <= orientation <= 8 else 1, packets


def _embedded_packets(path: Path) -> list[bytes]:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"\xff\xd8":
        return _jpeg_xmp(_read_file(path, 1 << 31), str(path))[0]
    if head == _PNG_SIG:
        return _png_xmp(_read_file(path, 1 << 31), str(path))
    return _pillow_info(path)[2]


# --------------------------------------------------------------------------- RDF parsing


def _parse(data: bytes, name: str) -> ET.Element:
    """Parse an XMP packet safely: no DTD / entity declarations, bounded size."""
    if len(data) > MAX_PACKET:
        raise InputError(f"{name}: XMP larger than {MAX_PACKET} bytes; not read")
    data = data.strip(b"\x00 \t\r\n")
    if b"\x00" in data:  # UTF-16/32: the DTD check below only reads 8-bit text
        raise InputError(f"{name}: XMP not in UTF-8 (UTF-16/32 packets are not read)")
    if _DTD.search(data):
        raise InputError(f"{name}: XMP with a DTD or entity declaration; refused")
    for prefix, uri in _namespaces(data):
        _register(prefix, uri)
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        raise InputError(f"{name}: malformed XMP ({exc})") from exc


def _namespaces(data: bytes) -> list[tuple[str, str]]:
    out = []
    try:
        for _ev, (prefix, uri) in ET.iterparse(io.BytesIO(data), events=("start-ns",)):
            out.append((prefix, uri))
    except ET.ParseError:
        pass
    return out


def _register(prefix: str, uri: str) -> None:
    if not prefix or re.fullmatch(r"ns\d+", prefix) or prefix.lower().startswith("xml"):
        return
    if (uri in _PREFIXES.values() or prefix in _PREFIXES) and _PREFIXES.get(prefix) != uri:
        return  # keep facekit's prefixes for the namespaces it writes
    with contextlib.suppress(ValueError):
        ET.register_namespace(prefix, uri)


for _p, _u in _PREFIXES.items():
    ET.register_namespace(_p, _u)


def _descriptions(root: ET.Element) -> list[ET.Element]:
    if root.tag == RDF + "RDF":
        rdf = root
    else:
        found = root.find(f".//{{{RDF}}}RDF")
        if found is None:
            return []
        rdf = found
    return rdf.findall(f"{{{RDF}}}Description")


def _node(el: ET.Element) -> ET.Element:
    """The element holding a struct's fields (``parseType="Resource"``, a nested
    ``rdf:Description``, or attributes on the property element itself)."""
    if el.get(f"{{{RDF}}}parseType") == "Resource":
        return el
    d = el.find(f"{{{RDF}}}Description")
    return d if d is not None else el


def _value(el: ET.Element) -> Any:
    """An RDF property element -> ``str`` | ``dict`` (struct) | ``list`` (Bag/Seq/Alt)."""
    res = el.get(f"{{{RDF}}}resource")
    if res is not None:
        return res
    if el.get(f"{{{RDF}}}parseType") == "Resource":
        return _fields(el)
    children = list(el)
    if children:
        c = children[0]
        if c.tag in (f"{{{RDF}}}Bag", f"{{{RDF}}}Seq", f"{{{RDF}}}Alt"):
            return [_value(li) for li in c.findall(f"{{{RDF}}}li")]
        if c.tag == f"{{{RDF}}}Description":
            return {**_fields(c), **_attrs(el)}
        return _fields(el)
    attrs = _attrs(el)
    return attrs if attrs else (el.text or "").strip()


def _attrs(el: ET.Element) -> dict[str, Any]:
    return {k: v for k, v in el.attrib.items() if not k.startswith(f"{{{RDF}}}") and XMLNS not in k}


def _fields(node: ET.Element) -> dict[str, Any]:
    d: dict[str, Any] = _attrs(node)
    for ch in node:
        d[ch.tag] = _value(ch)
    return d


def _float(v: Any) -> float | None:
    try:
        f = float(str(v).strip())
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def _text(v: Any) -> str | None:
    if isinstance(v, list):  # an Alt (language alternatives): the first one
        v = v[0] if v else None
    if isinstance(v, dict):
        v = v.get(f"{{{RDF}}}value")
    s = str(v).strip() if v is not None else ""
    return s or None


def _mwg_regions(root: ET.Element, origin: str, problems: list[str]) -> tuple[list[Any], Any]:
    """``([(name, box, kind, facekit)], applied_to)`` of the first ``mwg-rs:Regions``."""
    for desc in _descriptions(root):
        el = desc.find(f"{{{MWGRS}}}Regions")
        if el is None:
            continue
        v = _value(el)
        if not isinstance(v, dict):
            problems.append(f"{origin}: mwg-rs:Regions is not a struct; ignored")
            return [], None
        dims = v.get(f"{{{MWGRS}}}AppliedToDimensions")
        applied = None
        if isinstance(dims, dict):
            w, h = _float(dims.get(f"{{{STDIM}}}w")), _float(dims.get(f"{{{STDIM}}}h"))
            if w and h and w > 0 and h > 0:
                applied = (w, h)
        items = v.get(f"{{{MWGRS}}}RegionList")
        out = []
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                continue
            parsed = _mwg_item(item)
            if parsed is None:
                problems.append(f"{origin}: MWG region {i} has no usable normalised area; ignored")
                continue
            out.append(parsed)
        return out, applied
    return [], None


def _mwg_item(item: dict[str, Any]) -> tuple[str | None, Box, str, bool] | None:
    area = item.get(f"{{{MWGRS}}}Area")
    if not isinstance(area, dict):
        return None
    vals = [_float(area.get(f"{{{STAREA}}}{k}")) for k in ("x", "y", "w", "h")]
    unit = str(area.get(f"{{{STAREA}}}unit", "normalized")).strip().lower()
    if any(v is None for v in vals) or unit not in ("normalized", "normalised", ""):
        return None
    cx, cy, w, h = (float(v) for v in vals)  # type: ignore[arg-type]
    if w <= 0 or h <= 0:
        return None
    ext = item.get(f"{{{MWGRS}}}Extensions")
    mine = isinstance(ext, dict) and any(k.startswith(f"{{{FACEKIT}}}") for k in ext)
    kind = _text(item.get(f"{{{MWGRS}}}Type")) or "Face"
    return _text(item.get(f"{{{MWGRS}}}Name")), (cx - w / 2, cy - h / 2, w, h), kind, mine


def _mp_regions(root: ET.Element, origin: str, problems: list[str]) -> list[tuple[str | None, Box]]:
    for desc in _descriptions(root):
        el = desc.find(f"{{{MP}}}RegionInfo")
        if el is None:
            continue
        v = _value(el)
        items = v.get(f"{{{MPRI}}}Regions") if isinstance(v, dict) else None
        out = []
        for i, item in enumerate(items if isinstance(items, list) else []):
            if not isinstance(item, dict):
                continue
            rect = item.get(f"{{{MPREG}}}Rectangle")
            if rect is None:
                continue  # a person tag without a rectangle
            vals = [_float(s) for s in str(rect).split(",")]
            if len(vals) != 4 or any(x is None for x in vals) or vals[2] <= 0 or vals[3] <= 0:  # type: ignore[operator]
                problems.append(f"{origin}: MP region {i} has a bad Rectangle {rect!r}; ignored")
                continue
            x, y, w, h = (float(x) for x in vals)  # type: ignore[arg-type]
            out.append((_text(item.get(f"{{{MPREG}}}PersonDisplayName")), (x, y, w, h)))
        return out
    return []


# --------------------------------------------------------------------------- reading


def _frame_orientation(
    applied: tuple[float, float] | None, stored: tuple[int, int], orientation: int
) -> int:
    """The orientation to apply to regions: 1 (they are in the displayed frame) unless
    AppliedToDimensions names the stored size of a photo whose orientation swaps axes."""
    if orientation < 5 or applied is None:
        return 1
    sw, sh = stored
    aw, ah = applied
    if sw == sh or aw == ah:
        return 1
    return orientation if (aw > ah) == (sw > sh) else 1


def read_regions(photo: str | os.PathLike[str], *, sidecars: bool = True) -> RegionSet:
    """Read the face (and other) regions of a photo from its XMP and its sidecars.

    Sidecar regions come first; a region of the photo's embedded XMP (or of the second
    sidecar) is dropped when a region already read marks the same face (:func:`same_place`), so a
    sidecar's edits win over the embedded copy.

    Args:
        photo: the photo file.
        sidecars: also read ``photo.jpg.xmp`` and ``photo.xmp``.

    Returns:
        a :class:`RegionSet` with boxes normalised in the displayed frame.

    Raises:
        InputError: the photo cannot be read, or an XMP packet is malformed, too large or
            declares a DTD (one line naming the file).
    """
    path = Path(photo)
    stored, orientation, pil_packets = _pillow_info(path)
    display = stored[::-1] if orientation >= 5 else stored
    out = RegionSet(str(path), width=int(display[0]), height=int(display[1]))
    files: list[tuple[str, list[bytes]]] = []
    if sidecars:
        for sc in sidecar_paths(path):
            if sc.is_file() and sc != path:
                files.append((str(sc), [_read_file(sc, MAX_PACKET)]))
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:2] == b"\xff\xd8" or head == _PNG_SIG:
        files.append((str(path), _embedded_packets(path)))
    else:
        files.append((str(path), pil_packets))
    for origin, packets in files:
        if not packets:
            continue
        out.sources.append(origin)
        for data in packets:
            root = _parse(data, origin)
            mwg, applied = _mwg_regions(root, origin, out.problems)
            o = _frame_orientation(applied, stored, orientation)
            found = [
                Region(name, to_display(box, o), kind, "mwg", origin, mine)
                for name, box, kind, mine in mwg
            ]
            found += [
                Region(name, box, "Face", "mp", origin)
                for name, box in _mp_regions(root, origin, out.problems)
            ]
            for r in found:
                # the same face from an earlier file (or, in one file, its MWG region and its
                # MP copy) is kept once: the earlier one wins
                if any(
                    (q.origin != r.origin or q.schema != r.schema)
                    and same_place(q.box, r.box, out.width, out.height)
                    for q in out.regions
                ):
                    continue
                out.regions.append(r)
    return out


# --------------------------------------------------------------------------- writing


def _skeleton() -> ET.Element:
    root = ET.Element(f"{{{XMETA}}}xmpmeta")
    rdf = ET.SubElement(root, f"{{{RDF}}}RDF")
    ET.SubElement(rdf, f"{{{RDF}}}Description", {f"{{{RDF}}}about": ""})
    return root


def _first_description(root: ET.Element) -> ET.Element:
    descs = _descriptions(root)
    if descs:
        return descs[0]
    rdf = root if root.tag == f"{{{RDF}}}RDF" else root.find(f".//{{{RDF}}}RDF")
    if rdf is None:
        rdf = ET.SubElement(root, f"{{{RDF}}}RDF")
    return ET.SubElement(rdf, f"{{{RDF}}}Description", {f"{{{RDF}}}about": ""})


def _bag(parent: ET.Element, tag: str) -> ET.Element:
    """The rdf:Bag of list property ``tag`` under struct node ``parent`` (created if absent)."""
    el = parent.find(tag)
    if el is None:
        el = ET.SubElement(parent, tag)
    bag = el.find(f"{{{RDF}}}Bag")
    if bag is None:
        bag = el.find(f"{{{RDF}}}Seq")
    if bag is None:
        for ch in list(el):
            el.remove(ch)
        el.text = None
        bag = ET.SubElement(el, f"{{{RDF}}}Bag")
    return bag


def _resource(parent: ET.Element, tag: str) -> ET.Element:
    return ET.SubElement(parent, tag, {f"{{{RDF}}}parseType": "Resource"})


def _leaf(parent: ET.Element, tag: str, text: str) -> None:
    ET.SubElement(parent, tag).text = text


def _num(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".") if v else "0"


def _update_mwg(
    root: ET.Element,
    new: Sequence[tuple[NewRegion, Box]],
    display: tuple[int, int],
    stored: tuple[int, int],
    orientation: int,
    report: WriteReport,
) -> list[Box]:
    """Merge ``new`` (with normalised displayed-frame boxes) into the MWG regions; returns
    the areas (normalised, displayed frame) of the facekit regions removed."""
    el = _find_or_add(root, f"{{{MWGRS}}}Regions")
    node = _node(el)
    if node is el and el.get(f"{{{RDF}}}parseType") != "Resource" and list(el) == []:
        el.set(f"{{{RDF}}}parseType", "Resource")
    dims_el = node.find(f"{{{MWGRS}}}AppliedToDimensions")
    applied = None
    if dims_el is not None:
        dv = _value(dims_el)
        if isinstance(dv, dict):
            w, h = _float(dv.get(f"{{{STDIM}}}w")), _float(dv.get(f"{{{STDIM}}}h"))
            applied = (w, h) if w and h else None
    o = _frame_orientation(applied, stored, orientation)
    if dims_el is None:
        dims_el = _resource(node, f"{{{MWGRS}}}AppliedToDimensions")
        node.remove(dims_el)
        node.insert(0, dims_el)
        _leaf(dims_el, f"{{{STDIM}}}w", str(display[0]))
        _leaf(dims_el, f"{{{STDIM}}}h", str(display[1]))
        _leaf(dims_el, f"{{{STDIM}}}unit", "pixel")
    bag = _bag(node, f"{{{MWGRS}}}RegionList")
    removed: list[Box] = []
    old: list[tuple[ET.Element, tuple[str | None, Box, str, bool]]] = []
    for li in bag.findall(f"{{{RDF}}}li"):
        v = _value(li)
        parsed = _mwg_item(v) if isinstance(v, dict) else None
        if parsed is None:
            report.kept += 1
            continue
        name, box, kind, mine = parsed
        box = to_display(box, o)
        if mine and kind.lower() == "face":
            bag.remove(li)
            removed.append(box)
            report.replaced += 1
        else:
            old.append((li, (name, box, kind, mine)))
    for nr, box in new:
        label = nr.name or "unknown"
        same = [
            (li, p) for li, p in old if p[2].lower() == "face" and same_place(p[1], box, *display)
        ]
        if any(p[0] for _, p in same):
            report.skipped.append((label, f"already tagged {same[0][1][0]!r} in the same place"))
            continue
        for li, p in same:  # an unnamed face region of another tool: name it
            bag.remove(li)
            old.remove((li, p))
            removed.append(p[1])
        li = _resource(bag, f"{{{RDF}}}li")
        x, y, w, h = to_display(box, o, inverse=True)
        area = ET.SubElement(li, f"{{{MWGRS}}}Area")
        for k, v in (("x", x + w / 2), ("y", y + h / 2), ("w", w), ("h", h)):
            area.set(f"{{{STAREA}}}{k}", _num(v))
        area.set(f"{{{STAREA}}}unit", "normalized")
        if nr.name:
            _leaf(li, f"{{{MWGRS}}}Name", nr.name)
        _leaf(li, f"{{{MWGRS}}}Type", "Face")
        ext = _resource(li, f"{{{MWGRS}}}Extensions")
        from . import __version__

        _leaf(ext, f"{{{FACEKIT}}}Writer", f"facekit {__version__}")
        if nr.person:
            _leaf(ext, f"{{{FACEKIT}}}Person", nr.person)
        if nr.confidence is not None:
            _leaf(ext, f"{{{FACEKIT}}}Confidence", f"{nr.confidence:.0f}")
        report.written += 1
    report.kept += len(old)
    return removed


def _find_or_add(root: ET.Element, tag: str) -> ET.Element:
    """The first ``tag`` property of any rdf:Description, or a new empty resource of that
    name on the first description."""
    for d in _descriptions(root):
        el = d.find(tag)
        if el is not None:
            return el
    return _resource(_first_description(root), tag)


def _update_mp(
    root: ET.Element,
    new: Sequence[tuple[NewRegion, Box]],
    replaced: Sequence[Box],
    display: tuple[int, int],
    report: WriteReport,
) -> None:
    el = _find_or_add(root, f"{{{MP}}}RegionInfo")
    bag = _bag(_node(el), f"{{{MPRI}}}Regions")
    old = []
    for li in bag.findall(f"{{{RDF}}}li"):
        v = _value(li)
        rect = v.get(f"{{{MPREG}}}Rectangle") if isinstance(v, dict) else None
        vals = [_float(s) for s in str(rect).split(",")] if rect is not None else []
        if len(vals) != 4 or any(x is None for x in vals):
            continue
        box: Box = tuple(float(x) for x in vals)  # type: ignore[arg-type, assignment]
        if any(_iou(box, r) >= 0.9 for r in replaced):  # facekit's own, from an earlier run
            bag.remove(li)
            continue
        old.append((li, _text(v.get(f"{{{MPREG}}}PersonDisplayName")), box))
    for nr, box in new:
        same = [o for o in old if same_place(o[2], box, *display)]
        if any(o[1] for o in same):
            continue
        for o in same:
            bag.remove(o[0])
            old.remove(o)
        li = _resource(bag, f"{{{RDF}}}li")
        _leaf(li, f"{{{MPREG}}}Rectangle", ", ".join(_num(v) for v in box))
        if nr.name:
            _leaf(li, f"{{{MPREG}}}PersonDisplayName", nr.name)
        report.mp_written += 1


def _serialise(root: ET.Element, padding: int) -> bytes:
    ET.indent(root, space=" ")
    body = ET.tostring(root, encoding="unicode")
    pad = ("\n" + " " * 99) * (padding // 100) if padding else ""
    text = (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        + body
        + pad
        + '\n<?xpacket end="w"?>'
    )
    return text.encode("utf-8")


def _jpeg_with_xmp(data: bytes, packet: bytes, name: str) -> bytes:
    payload = _JPEG_XMP_SIG + packet
    if len(payload) + 2 > 65535:
        raise UsageError(
            f"{name}: the XMP packet ({len(packet)} bytes) does not fit in a JPEG segment; "
            "write a sidecar instead (leave out --in-place)"
        )
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    out = bytearray(data[:2])
    inserted = False
    pos = 2
    for marker, s, e in _jpeg_segments(data, name):
        body = data[s + 4 : e]
        is_xmp = marker == 0xE1 and body.startswith(_JPEG_XMP_SIG)
        if is_xmp:
            if not inserted:
                out += seg
                inserted = True
        else:
            if not inserted and not (
                marker == 0xE0 or (marker == 0xE1 and body.startswith(b"Exif"))
            ):
                out += seg
                inserted = True
            out += data[s:e]
        pos = e
        if marker == 0xDA:
            break
    if not inserted:
        out += seg
    out += data[pos:]
    return bytes(out)


def _png_with_xmp(data: bytes, packet: bytes, name: str) -> bytes:
    body = _PNG_XMP_KEY + b"\x00\x00\x00\x00\x00" + packet
    chunk = struct.pack(">I", len(body)) + b"iTXt" + body
    chunk += struct.pack(">I", zlib.crc32(b"iTXt" + body) & 0xFFFFFFFF)
    out = bytearray(_PNG_SIG)
    inserted = False
    for kind, s, e in _png_chunks(data, name):
        if (
            kind == b"iTXt"
            and data[s + 8 : s + 8 + len(_PNG_XMP_KEY) + 1] == _PNG_XMP_KEY + b"\x00"
        ):
            continue
        if not inserted and kind in (b"IDAT", b"IEND"):
            out += chunk
            inserted = True
        out += data[s:e]
    return bytes(out)


def write_regions(
    photo: str | os.PathLike[str],
    regions: Sequence[NewRegion],
    *,
    width: int,
    height: int,
    in_place: bool = False,
    unknown: str = "unnamed",
    mp: bool = False,
) -> WriteReport:
    """Write face regions for a photo: to its sidecar, or (``in_place``) into the photo.

    * Sidecar (default): the first existing of ``photo.jpg.xmp`` / ``photo.xmp`` is updated;
      when neither exists ``photo.jpg.xmp`` is created, starting from a copy of the photo's
      embedded XMP (so the sidecar keeps its tags). The photo is not touched.
    * In place: the photo's own XMP packet is replaced (JPEG APP1 segment, PNG iTXt chunk);
      pixels and every other segment stay byte for byte. Other formats are refused.

    Rules: facekit's regions from an earlier run are replaced; regions of other types and
    other tools' regions are kept. A new face that another tool already
    tagged with a name is not written (the user's tag wins); an unnamed one there is replaced
    by facekit's named region. Both files are written atomically (temp file + rename).

    Args:
        photo: the photo the regions belong to.
        regions: the faces, with boxes in pixels of the displayed image.
        width, height: the displayed image's size (facekit's ``ImageResult`` size).
        in_place: write into the photo instead of a sidecar.
        unknown: ``"unnamed"`` writes faces without a name as unnamed regions; ``"skip"``
            leaves them out.
        mp: also write Microsoft Photo regions (``MP:RegionInfo``).

    Returns:
        a :class:`WriteReport`.

    Raises:
        UsageError: ``in_place`` for a format other than JPEG/PNG, a JPEG with ExtendedXMP
            or a packet too large for one JPEG segment; a bad ``unknown`` value.
        InputError: the photo or an existing XMP packet cannot be read or parsed.
        OutputError: the file cannot be written.
    """
    if unknown not in ("unnamed", "skip"):
        raise UsageError(f"unknown faces: 'unnamed' or 'skip', not {unknown!r}")
    from .facetable import write_atomic

    path = Path(photo)
    stored, orientation, _ = _pillow_info(path)
    report = WriteReport()
    new: list[tuple[NewRegion, Box]] = []
    for r in regions:
        if not r.name and unknown == "skip":
            report.skipped.append(("unknown", "unknown face (--xmp-unknown skip)"))
            continue
        x, y, w, h = r.box
        box = (
            max(0.0, x / width),
            max(0.0, y / height),
            min(w / width, 1.0),
            min(h / height, 1.0),
        )
        new.append((r, box))
    data = b""
    if in_place:
        data = _read_file(path, 1 << 31)
        if data[:2] == b"\xff\xd8":
            packets, extended = _jpeg_xmp(data, str(path))
            if extended:
                raise UsageError(
                    f"{path}: has ExtendedXMP; in-place writing is refused (write a sidecar)"
                )
            kind = "jpeg"
        elif data.startswith(_PNG_SIG):
            packets, kind = _png_xmp(data, str(path)), "png"
        else:
            raise UsageError(
                f"{path}: in-place XMP writing supports JPEG and PNG; write a sidecar instead "
                "(leave out --in-place)"
            )
        target = path
        base = packets[0] if packets else None
    else:
        existing = [s for s in sidecar_paths(path) if s.is_file() and s != path]
        target = existing[0] if existing else sidecar_paths(path)[0]
        if existing:
            base = _read_file(target, MAX_PACKET)
        else:
            packets = _embedded_packets(path) if path.is_file() else []
            base = packets[0] if packets else None
    root = _parse(base, str(target)) if base and base.strip(b"\x00 \t\r\n") else _skeleton()
    if root.tag != f"{{{XMETA}}}xmpmeta" and root.tag != f"{{{RDF}}}RDF":
        raise InputError(f"{target}: not an XMP packet (root element {root.tag})")
    if not new and not any(mine for *_, mine in _mwg_regions(root, str(target), [])[0]):
        return report  # nothing to add and nothing of facekit's to remove: leave files alone
    display = (stored[1], stored[0]) if orientation >= 5 else stored
    replaced = _update_mwg(root, new, display, stored, orientation, report)
    if mp:
        _update_mp(root, new, replaced, display, report)
    if not in_place:
        packet = _serialise(root, 0)
        write_atomic(target, lambda tmp: Path(tmp).write_bytes(packet))
    else:
        packet = _serialise(root, 2048)
        if kind == "jpeg" and len(packet) + len(_JPEG_XMP_SIG) + 2 > 65535:
            packet = _serialise(root, 0)
        blob = (
            _jpeg_with_xmp(data, packet, str(path))
            if kind == "jpeg"
            else _png_with_xmp(data, packet, str(path))
        )
        write_atomic(path, lambda tmp: Path(tmp).write_bytes(blob))
    report.target = str(target)
    return report
