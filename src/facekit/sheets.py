"""Contact sheets: one PNG of face thumbnails per cluster, for reviewing before ``enroll``.

Each sheet ``<cluster id>.png`` has a header (id, size, person) and a grid of tiles labelled
``SOURCE#FACE``; ``<cluster id>.txt`` lists the full label (and a video face's time) per tile,
ready for ``facekit enroll --exclude``. Used by ``facekit cluster --sheets``.

Library code: no printing (an unreadable photo leaves a blank tile and a log warning).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from .cluster import ClusterResult, FaceRef

log = logging.getLogger(__name__)

__all__ = ["tile_label", "video_frame", "write_sheets"]


def write_sheets(
    result: ClusterResult, folder: Path, *, per_sheet: int = 64, thumb: int = 112
) -> int:
    """Write one contact sheet per cluster of ``result`` into ``folder`` (created).

    Args:
        result: clusters with their face references (``result.refs``).
        folder: where the ``.png`` and ``.txt`` files go.
        per_sheet: at most this many faces of a cluster (its first members).
        thumb: tile size in pixels.

    Returns:
        The number of sheets written.
    """
    import numpy as np
    from PIL import Image, ImageDraw

    from .align import box_crops
    from .imageio import load_image

    if result.refs is None:
        raise ValueError("contact sheets need the faces' references (cluster_faces(refs=...))")
    folder.mkdir(parents=True, exist_ok=True)
    cache: dict[str, Any] = {}
    written = 0
    for c in result.clusters:
        refs = [result.refs[int(i)] for i in c.members[:per_sheet]]
        tiles = []
        for ref in refs:
            if ref.time is not None:  # video frame: decode that instant
                rgb = video_frame(ref.source, ref.time)
            else:
                if ref.source not in cache:
                    try:
                        cache = {ref.source: load_image(ref.source).rgb}  # keep one image
                    except Exception as exc:  # noqa: BLE001 - a missing photo leaves a blank tile
                        log.warning("%s: no thumbnail (%s)", ref.source, exc)
                        cache = {ref.source: None}
                rgb = cache[ref.source]
            if rgb is None:
                tiles.append(np.zeros((thumb, thumb, 3), np.uint8))
                continue
            x, y, w, h = ref.box
            tiles.append(box_crops(rgb, np.array([[x, y, x + w, y + h]]), size=thumb)[0])
        cols = min(8, max(1, len(tiles)))
        rows = (len(tiles) + cols - 1) // cols
        head, label = 20, 14
        cell = thumb + label
        sheet = Image.new("RGB", (cols * thumb, rows * cell + head), "white")
        draw = ImageDraw.Draw(sheet)
        draw.text(
            (4, 4),
            f"{c.id}  {c.size} faces" + (f"  {c.name or c.person}" if c.person else ""),
            fill="black",
        )
        legend = []
        for k, (t, ref) in enumerate(zip(tiles, refs, strict=True)):
            x0, y0 = (k % cols) * thumb, head + (k // cols) * cell
            sheet.paste(Image.fromarray(t), (x0, y0))
            tag = tile_label(ref)
            legend.append(f"{k + 1}\t{tag}" + ("" if ref.time is None else f"\t{ref.time:.2f}s"))
            draw.text((x0 + 2, y0 + thumb + 1), _fit(draw, tag, thumb - 4), fill="black")
        sheet.save(folder / f"{c.id}.png")
        # Full SOURCE#FACE per tile, ready for `facekit enroll --exclude`.
        (folder / f"{c.id}.txt").write_text("\n".join(legend) + "\n", encoding="utf-8")
        written += 1
    return written


def tile_label(ref: FaceRef) -> str:
    """``SOURCE#FACE``: the form ``enroll --exclude`` takes."""
    return f"{ref.source}#{ref.face}"


def _fit(draw: Any, text: str, width: int) -> str:
    """``text`` shortened from the left (keeping the file name and face) to fit ``width`` px."""
    if draw.textlength(text) <= width:
        return text
    name = os.path.basename(text)
    while len(name) > 4 and draw.textlength("..." + name) > width:
        name = name[1:]
    return "..." + name


def video_frame(source: str, t: float) -> np.ndarray | None:
    """The RGB frame of video ``source`` at ``t`` seconds, or ``None`` (logged) if unreadable."""
    try:
        from .decode import iter_frames

        for frame in iter_frames(source, start=t, end=t + 0.5, interval=1.0, sampling="exact"):
            return frame.rgb
    except Exception as exc:  # noqa: BLE001
        log.warning("%s@%.1fs: no thumbnail (%s)", source, t, exc)
    return None
