"""Drawing results onto photos (``identify --annotate``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def annotate_photo(source: str, matches: Any, out_dir: str | os.PathLike[str]) -> Path:
    """Write a copy of ``source`` with each face's box and name (or "unknown") drawn.

    Returns:
        the path written (``out_dir/<file stem>.jpg``; parent folders of the source are not kept).
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
    out = Path(out_dir) / (Path(source).stem + ".jpg")
    write_atomic(out, lambda tmp: img.save(tmp, format="JPEG", quality=90))
    return out
