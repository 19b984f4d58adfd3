"""Walking a people folder: one subfolder per person, photos inside."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = ["iter_people"]


def iter_people(people_dir: Path) -> Iterable[tuple[str, list[str]]]:
    """``(person id, photo paths)`` for each subfolder of ``people_dir`` (sorted)."""
    from .imageio import iter_image_paths

    for sub in sorted(p for p in people_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        yield sub.name, list(iter_image_paths([str(sub)]))
