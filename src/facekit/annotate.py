"""Drawing results onto photos (``identify --annotate``).

The annotated copies mirror the input tree under the output folder (relative to the inputs'
common folder), so ``a/IMG_0001.jpg`` and ``b/IMG_0001.jpg`` stay two files, and each copy
keeps its photo's format (a PNG stays a PNG). :func:`annotation_targets` plans every output
path before any work starts, so collisions and existing files are refused up front.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ["annotation_targets", "annotate_photo"]

#: Output format when Pillow cannot write the input's format (e.g. HEIC): ``x.heic`` -> ``x.heic.jpg``.
FALLBACK_SUFFIX = ".jpg"


def _writable_suffix(path: Path) -> str:
    """``""`` when Pillow can write ``path``'s format as it is, else the suffix to append."""
    from PIL import Image

    Image.init()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    return "" if fmt and fmt in Image.SAVE else FALLBACK_SUFFIX


def annotation_targets(
    sources: Sequence[str], out_dir: str | os.PathLike[str], *, overwrite: bool = False
) -> dict[str, Path]:
    """Where each source's annotated copy goes: ``out_dir / <path relative to the common folder>``.

    Args:
        sources: the input photos (as given; relative paths are taken from the current folder).
        out_dir: the output folder.
        overwrite: replace annotated copies that already exist (never the input photos).

    Returns:
        source -> output path, for every distinct source.

    Raises:
        UsageError: an output would replace an input photo, two inputs would map to the same
            output, or (without ``overwrite``) outputs already exist.

    Example:
        >>> annotation_targets(["album/a/1.jpg", "album/b/1.png"], "ann")
        {'album/a/1.jpg': PosixPath('ann/a/1.jpg'), 'album/b/1.png': PosixPath('ann/b/1.png')}
    """
    out = Path(out_dir)
    absolute = {s: Path(os.path.abspath(s)) for s in dict.fromkeys(sources)}
    if not absolute:
        return {}
    root = Path(os.path.commonpath([str(p.parent) for p in absolute.values()]))
    targets: dict[str, Path] = {}
    seen: dict[str, str] = {}
    for src, abs_src in absolute.items():
        rel = abs_src.relative_to(root)
        target = out / rel.with_name(rel.name + _writable_suffix(rel))
        key = os.path.normcase(os.path.abspath(target))
        if key in seen:
            raise UsageError(f"--annotate: {src} and {seen[key]} would both be written to {target}")
        seen[key] = src
        targets[src] = target
    inputs = {os.path.normcase(str(p)) for p in absolute.values()}
    clash = [t for t in targets.values() if os.path.normcase(os.path.abspath(t)) in inputs]
    if clash:
        raise UsageError(
            f"--annotate {out}: would overwrite the input photo {clash[0]}; choose another folder"
        )
    existing = [t for t in targets.values() if t.exists() or t.is_symlink()]
    if existing and not overwrite:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UsageError(
            f"--annotate {out}: {existing[0]}{more} already exist; "
            "use --overwrite to replace them, or another folder"
        )
    return targets


def annotate_photo(source: str, matches: Any, target: str | os.PathLike[str]) -> Path:
    """Write a copy of ``source`` with each face's box and name (or "unknown") drawn.

    Args:
        source: the photo.
        matches: its :class:`~facekit.identify.PhotoMatches`.
        target: the file to write (see :func:`annotation_targets`); its suffix picks the format.

    Returns:
        the path written.
    """
    from PIL import Image, ImageDraw, ImageFont

    from .facetable import write_atomic
    from .imageio import load_image

    img = Image.fromarray(load_image(source).rgb.copy())
    draw = ImageDraw.Draw(img)
    size = max(12, img.width // 60)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    for i, m in enumerate(matches.matches):
        x, y, w, h = (float(v) for v in matches.result.faces.xywh[i])
        known = m.identity is not None
        colour = (40, 200, 60) if known else (230, 60, 40)
        label = (
            f"{m.identity.name or m.identity.person} {m.identity.confidence:.0f}"
            if known
            else "unknown"
        )
        draw.rectangle([x, y, x + w, y + h], outline=colour, width=max(2, size // 6))
        tb = draw.textbbox((x, y), label, font=font)
        ty = max(0, y - (tb[3] - tb[1]) - 4)
        draw.rectangle([x, ty, x + (tb[2] - tb[0]) + 6, ty + (tb[3] - tb[1]) + 4], fill=colour)
        draw.text((x + 3, ty), label, fill=(255, 255, 255), font=font)
    out = Path(target)
    Image.init()
    fmt = Image.registered_extensions().get(out.suffix.lower(), "JPEG")
    options: dict[str, Any] = {"quality": 90} if fmt in ("JPEG", "WEBP") else {}
    write_atomic(out, lambda tmp: img.save(tmp, format=fmt, **options))
    return out
