"""Walking a people folder: one subfolder per person, photos inside.

The expected layout is ``PEOPLE_DIR/<person id>/<photos>``. :func:`scan_people` also finds
the layouts that mean the command was pointed at the wrong folder, so that ``build-index``
can say what is expected instead of enrolling nothing, or the wrong thing, without a word:

* **flat**: photos directly in ``PEOPLE_DIR`` and no person folders at all;
* **one level too high**: person folders that hold no photos of their own, only further
  folders (``PEOPLE_DIR/people/alice/*.jpg``);
* **stray photos**: photos at the top level beside person folders (never enrolled);
* **nested folders** inside a person folder: their photos are enrolled under the person
  only when asked (``recursive=True``), otherwise they are listed as skipped;
* **unreadable folders** (permission, I/O error): listed as errors, so that the faces
  stored for them are kept rather than treated as deleted.

Names that are not valid UTF-8 are enrolled like any other: the person id is the folder
name's text form (:func:`facekit.pathtext.path_text`, bad bytes as ``\\xNN``); photo paths
stay as the OS gave them, so they open.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .pathtext import path_text

__all__ = ["PeopleScan", "iter_people", "scan_people", "image_extensions"]


def image_extensions() -> frozenset[str]:
    from .imageio import IMAGE_EXTENSIONS

    return IMAGE_EXTENSIONS


def _is_photo(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in image_extensions()


@dataclass
class PeopleScan:
    """What :func:`scan_people` found in a people folder.

    Attributes:
        root: the folder scanned.
        people: ``person id -> photo paths`` (sorted), for every person folder, also empty
            ones (a person whose folder is present but empty keeps no faces). The id is the
            folder name as text (:func:`facekit.pathtext.path_text`).
        unreadable: ``person id -> one-line error`` for person folders (or nested folders)
            that could not be listed; their stored faces must be kept.
        top_level_photos: photos directly in ``root`` (not enrolled).
        nested: ``person id -> nested folders`` holding photos that were *not* enrolled
            (``recursive=False``).
        other_files: ``(path, reason)`` of photos in person folders whose format cannot be
            decoded here (e.g. HEIC when pillow-heif is missing): reported, never enrolled.
        dangling: ``person id -> path`` of symlinks at the top level whose target is missing
            (a person folder on an unmounted drive): the caller keeps the stored faces of
            such a person, never treats them as deleted.
    """

    root: Path
    people: dict[str, list[str]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    top_level_photos: list[str] = field(default_factory=list)
    nested: dict[str, list[str]] = field(default_factory=dict)
    other_files: list[tuple[str, str]] = field(default_factory=list)
    dangling: dict[str, str] = field(default_factory=dict)

    @property
    def n_photos(self) -> int:
        return sum(len(v) for v in self.people.values())

    def layout_problem(self) -> str | None:
        """A one-line explanation when nothing usable was found, else ``None``."""
        root = self.root
        expected = f"expected {root}/<person id>/<photos>, one subfolder per person"
        if self.n_photos:
            return None
        if self.unreadable:
            return None  # the caller reports (and keeps) unreadable folders
        if self.top_level_photos and not self.people:
            return (
                f"{root}: holds {len(self.top_level_photos)} photos but no person folders; "
                f"{expected} (move each person's photos into a folder named after them)"
            )
        if self.nested:
            pid, subs = next(iter(self.nested.items()))
            return (
                f"{root}: its subfolders hold further folders, not photos "
                f"(e.g. {subs[0]}); {expected}: point build-index one level lower "
                f"(at {root / pid}), or pass --recursive to enrol nested photos under "
                "the top folder's name"
            )
        if not self.people:
            return f"{root}: no person folders and no photos; {expected}"
        return f"{root}: the person folders hold no photos; {expected}"

    def looks_one_level_too_high(self) -> bool:
        """Most person folders hold only further folders (``PEOPLE_DIR/people/alice``)."""
        if not self.people:
            return False
        only_nested = [p for p, photos in self.people.items() if not photos and p in self.nested]
        return len(only_nested) * 2 > len(self.people)


def _listdir(path: str) -> tuple[list[os.DirEntry[str]], str | None]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name), None
    except OSError as exc:
        from .imageio import _os_problem

        return [], f"{path}: cannot list folder ({_os_problem(exc)})"


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _walk_person(
    folder: str, recursive: bool
) -> tuple[list[str], list[str], list[str], list[tuple[str, str]]]:
    """-> (photos, nested folders with photos not taken, errors, unsupported files)."""
    photos: list[str] = []
    nested: list[str] = []
    errors: list[str] = []
    other: list[tuple[str, str]] = []
    entries, err = _listdir(folder)
    if err:
        return [], [], [err], []
    subdirs = []
    for e in entries:
        if e.name.startswith("."):
            continue
        if _is_dir(e):
            subdirs.append(e.path)
        elif _is_photo(e.name):
            photos.append(e.path)
        elif (reason := _unsupported(e.name)) is not None:
            other.append((e.path, reason))
    for sub in subdirs:
        if recursive:
            p, n, e2, o = _walk_person(sub, True)
            photos.extend(p)
            errors.extend(e2)
            other.extend(o)
        elif _holds_photos(sub):
            nested.append(sub)
    return photos, nested, errors, other


def _holds_photos(folder: str, depth: int = 3) -> bool:
    entries, err = _listdir(folder)
    if err:
        return False
    for e in entries:
        if e.name.startswith("."):
            continue
        if _is_dir(e):
            if depth > 0 and _holds_photos(e.path, depth - 1):
                return True
        elif _is_photo(e.name):
            return True
    return False


def _unsupported(name: str) -> str | None:
    from .imageio import unsupported_reason

    return None if name.startswith(".") else unsupported_reason(name)


def scan_people(people_dir: str | os.PathLike[str], *, recursive: bool = False) -> PeopleScan:
    """Scan ``people_dir`` (see the module docs). Never raises for a bad folder inside it.

    Args:
        people_dir: the people folder.
        recursive: enrol photos of folders nested in a person folder under that person.

    Returns:
        a :class:`PeopleScan`; person ids and photo paths are sorted.
    """
    root = Path(people_dir)
    scan = PeopleScan(root)
    entries, err = _listdir(str(root))
    if err:
        scan.unreadable[""] = err
        return scan
    for e in entries:
        if e.name.startswith("."):
            continue
        if _is_dir(e):
            photos, nested, errors, other = _walk_person(e.path, recursive)
            pid = path_text(e.name)  # a name that is not UTF-8 is stored as its text form
            scan.people[pid] = photos
            if errors:
                scan.unreadable[pid] = errors[0]
            if nested:
                scan.nested[pid] = nested
            scan.other_files.extend(other)
        elif _is_photo(e.name) or _unsupported(e.name) is not None:
            scan.top_level_photos.append(e.path)
        elif e.is_symlink() and not os.path.exists(e.path):
            scan.dangling[path_text(e.name)] = e.path
    return scan


def iter_people(people_dir: Path, *, recursive: bool = True) -> Iterable[tuple[str, list[str]]]:
    """``(person id, photo paths)`` for each subfolder of ``people_dir`` (sorted)."""
    yield from scan_people(people_dir, recursive=recursive).people.items()
