"""``facekit import-xmp``: enrol the faces photo managers tagged in XMP."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..render import Renderer, count
from .common import (
    DbOpt,
    DetectorOpt,
    DownloadBars,
    FormatOpt,
    ModelsOpt,
    OfflineOpt,
    QuietOpt,
    UpsampleOpt,
    VerboseOpt,
    WorkersOpt,
    default_db,
    handle_errors,
    setup_logging,
    stderr,
    track,
    warn_line,
)
from .runner import build_config, expand_inputs


def import_xmp_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PHOTO",
            help="Tagged photos, folders (recursive), or - to read paths from stdin.",
            show_default=False,
        ),
    ],
    db: DbOpt = None,
    people: Annotated[
        Path | None,
        typer.Option(
            "--people",
            metavar="FILE",
            help="people.json / people.csv giving person ids for names (a person whose name "
            "is the tag's gets the tag's faces). Default: a database person of the same name, "
            "else a slug of the name.",
            show_default=False,
        ),
    ] = None,
    models: ModelsOpt = None,
    detector: DetectorOpt = None,
    upsample: UpsampleOpt = None,
    fmt: FormatOpt = None,
    workers: WorkersOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Enrol the faces named in photos' XMP face regions (digiKam, Lightroom, Picasa, Windows).

    Reads MWG and Microsoft Photo face regions from the photos and their .xmp sidecars, pairs
    each named region with a face facekit detects there (after EXIF orientation), and adds
    those faces to the database under the region's name, in one atomic, locked generation.
    The database is created if missing (--models/--detector/--upsample apply then); an
    existing one keeps its settings. Faces are stored like `facekit enroll`'s, so
    `build-index PEOPLE_DIR` runs keep them: tags and person folders combine. Regions no
    face matches, and tagged faces the database says are someone else ("name mismatch"), are
    listed. Re-running adds only new tags.

    Example:

        facekit import-xmp ~/Pictures/tagged -d faces.db

        facekit import-xmp ~/Pictures -d faces.db --people people.csv --format json

    Exit codes: 0 faces enrolled (or all already stored); 1 no tagged face found; 2 usage
    error; 3 some photos unreadable or a bad --people file; 4 model error; 5 database error
    (locked, wrong key).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..database import Database
        from ..xmp_import import import_xmp

        db_path = db or default_db()
        files = expand_inputs(paths, sys.stdin)
        config = None
        if not Database.exists(db_path) or models or detector or upsample is not None:
            config = build_config(
                models, detector=detector, upsample=upsample or 0, offline=offline
            )
        bars = DownloadBars(quiet)
        try:
            report = import_xmp(
                files,
                db_path,
                config,
                people_file=people,
                workers=workers,
                progress=bars,
                wrap=lambda stream, total: track(stream, total, "tagged photos", quiet),
            )
        finally:
            bars.close()
        for e in report.errors:  # errors stay visible under -q
            warn_line(e)
        if not quiet:
            for p in report.problems:
                warn_line(p)
            for src, name, why in report.unmatched:
                warn_line(f"{src}: region {name!r} matches no face ({why}); not enrolled")
            for m in report.mismatches:
                said = (
                    "is already stored as"
                    if m.confidence is None
                    else f"looks like (confidence {m.confidence:.0f})"
                )
                warn_line(
                    f"{m.source}: name mismatch: tagged {m.name!r} ({m.person}), the database "
                    f"{said} {m.db_name} ({m.db_person})"
                )
            stderr().print(
                f"done: {count(report.enrolled, 'face')} enrolled for "
                f"{count(len(report.people), 'person')} "
                f"({len(report.new_people)} new) in {db_path} (photos: {report.photos}, "
                f"{report.tagged} tagged; {count(report.regions, 'named region')}, "
                + (
                    f"{report.facekit_regions} written by facekit (not enrolled), "
                    if report.facekit_regions
                    else ""
                )
                + f"{len(report.unmatched)} unmatched, {len(report.skipped)} already stored, "
                f"{count(len(report.mismatches), 'name mismatch', 'name mismatches')}, "
                f"{count(len(report.errors), 'error')})",
                highlight=False,
                markup=False,
            )
        rec = report.to_record()
        if fmt is not None:
            r = Renderer(fmt, wrap=lambda recs: recs[0])
            r.add(rec, [{k: v for k, v in rec.items() if not isinstance(v, (list, dict))}])
            r.close()
        if report.errors:
            raise typer.Exit(3)
        raise typer.Exit(0 if report.enrolled or report.skipped else 1)
