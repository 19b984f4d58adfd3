"""``facekit people``: list, show, rename, merge, remove, restore, move-face, export, import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ..render import Format, Renderer, count
from .common import (
    DbOpt,
    FormatOpt,
    QuietOpt,
    VerboseOpt,
    check_output_file,
    default_db,
    handle_errors,
    resolve_format,
    setup_logging,
    stderr,
)

people_app = typer.Typer(
    name="people",
    help="Manage the people of a database: list, show, rename, merge, remove, restore, "
    "move-face, export, import. Every change is an atomic new database generation, kept by "
    "later build-index runs (docs/database.md).",
    no_args_is_help=True,
    add_completion=False,
)

LIST_COLUMNS = ["person", "name", "faces", "photos", "added"]
SHOW_COLUMNS = ["face", "person", "source", "box", "origin", "yaw"]
CHANGE_COLUMNS = [
    "action",
    "person",
    "changed",
    "message",
    "faces",
    "generation",
    "recalibrated",
    "threshold",
]
PersonArg = Annotated[str, typer.Argument(metavar="ID", help="Person id (see people list).")]


def _db(db: Path | None) -> Path:
    return db or default_db()


def _change(result: Any, fmt: Format | None, quiet: bool) -> None:
    """Print a change: the record on stdout when a format is asked for (or piped), and
    the one-line message on stderr."""
    if fmt is not None:
        r = Renderer(fmt, columns=CHANGE_COLUMNS, wrap=lambda recs: recs[0])
        r.add(result.to_record(), [result.row()])
        r.close()
    if not quiet:
        stderr().print(("" if result.changed else "unchanged: ") + result.message, highlight=False)


@people_app.command("list")
def list_cmd(
    db: DbOpt = None, fmt: FormatOpt = None, quiet: QuietOpt = False, verbose: VerboseOpt = 0
) -> None:
    """List the people of a database: id, name, faces, photos, when added.

    Example:

        facekit people list -d faces.db

    Exit codes: 0 listed; 5 database error (missing, damaged, wrong or missing key).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import list_people

        r = Renderer(resolve_format(fmt), columns=LIST_COLUMNS, title="people")
        for p in list_people(_db(db)):
            r.add(p.to_record(), [p.row()])
        r.close()


@people_app.command("show")
def show_cmd(
    person: PersonArg,
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Show a person's stored faces: face id, photo, box, origin, yaw.

    The face id is what `people move-face` takes; identify reports the matching gallery face
    as gallery_face. It is kept while the photo is unchanged; `build-index --rebuild` gives
    new ids.

    Example:

        facekit people show obama -d faces.db

    Exit codes: 0 shown; 2 no such person; 5 database error.
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import show_person

        detail = show_person(_db(db), person)
        out = resolve_format(fmt)
        r = Renderer(
            out,
            columns=SHOW_COLUMNS,
            wrap=lambda recs: recs[0],
            title=f"{person} ({detail.person.name or person})",
        )
        if out is Format.ndjson:  # one line per face, like the CSV rows
            for f in detail.faces:
                r.add(f.to_record())
        else:
            r.add(detail.to_record(), detail.rows())
        r.close()


@people_app.command("rename")
def rename_cmd(
    person: PersonArg,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The new display name.")],
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Set a person's display name; the id stays. Later build-index runs keep it over
    people.json / people.csv (and warn where those differ).

    Example:

        facekit people rename obama "Barack Obama" -d faces.db

    Exit codes: 0 done (also when nothing needed changing); 2 unknown person or face id,
    or a bad argument; 3 unreadable or malformed file; 5 database error (missing,
    locked, wrong or missing FACEKIT_KEY).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import rename_person

        _change(rename_person(_db(db), person, name), fmt, quiet)


@people_app.command("merge")
def merge_cmd(
    keep: Annotated[str, typer.Argument(metavar="A", help="The person who stays.")],
    other: Annotated[str, typer.Argument(metavar="B", help="The person merged into A.")],
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Merge B into A: B's faces become A's and B is gone; A keeps its id and name. Photos
    in B's folder are enrolled as A by later build-index runs. Re-calibrates.

    Example:

        facekit people merge kit_harington jon_snow -d faces.db

    Exit codes: 0 done (also when nothing needed changing); 2 unknown person or face id,
    or a bad argument; 3 unreadable or malformed file; 5 database error (missing,
    locked, wrong or missing FACEKIT_KEY).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import merge_people

        _change(merge_people(_db(db), keep, other), fmt, quiet)


@people_app.command("remove")
def remove_cmd(
    person: PersonArg,
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Remove a person and all their faces. Later build-index runs do not enrol their folder
    again (they report it as skipped) until `facekit people restore ID`. Re-calibrates.

    Example:

        facekit people remove alex_lacamoire -d faces.db

    Exit codes: 0 done (also when nothing needed changing); 2 unknown person or face id,
    or a bad argument; 3 unreadable or malformed file; 5 database error (missing,
    locked, wrong or missing FACEKIT_KEY).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import remove_person

        _change(remove_person(_db(db), person), fmt, quiet)


@people_app.command("restore")
def restore_cmd(
    person: PersonArg,
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Let build-index enrol a removed person's folder again (at its next run).

    Example:

        facekit people restore alex_lacamoire -d faces.db && facekit build-index ./people -d faces.db

    Exit codes: 0 done (also when nothing needed changing); 2 unknown person or face id,
    or a bad argument; 3 unreadable or malformed file; 5 database error (missing,
    locked, wrong or missing FACEKIT_KEY).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import restore_person

        _change(restore_person(_db(db), person), fmt, quiet)


@people_app.command("move-face")
def move_face_cmd(
    face: Annotated[
        int,
        typer.Argument(
            metavar="FACE_ID",
            help="Face id (people show; identify's gallery_face); kept while the photo is unchanged, new after --rebuild.",
        ),
    ],
    to: Annotated[str, typer.Option("--to", metavar="ID", help="The person the face belongs to.")],
    create: Annotated[
        bool, typer.Option("--create", help="Create the person --to names if there is none.")
    ] = False,
    name: Annotated[
        str | None, typer.Option("--name", help="Display name of a person made with --create.")
    ] = None,
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Give one stored face to another person (correct a wrong assignment). The face stays
    moved when build-index embeds its photo again. Re-calibrates.

    Example:

        facekit people move-face 7 --to biden -d faces.db

    Exit codes: 0 done (also when nothing needed changing); 2 unknown person or face id,
    or a bad argument; 3 unreadable or malformed file; 5 database error (missing,
    locked, wrong or missing FACEKIT_KEY).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import move_face

        _change(move_face(_db(db), face, to, create=create, name=name), fmt, quiet)


@people_app.command("export")
def export_cmd(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (.json or .csv); default: stdout."),
    ] = None,
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Write the people table (id, name, extra fields) as JSON or CSV.

    The JSON is people.json's list form: `people import` and build-index read it back. The
    format follows --format, else the --output suffix, else JSON.

    Example:

        facekit people export -o people.csv -d faces.db

    Exit codes: 0 written; 2 bad option; 5 database error; 74 the output cannot be written.
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import export_people

        out_fmt = fmt or (
            Format.csv if output is not None and output.suffix.lower() == ".csv" else Format.json
        )
        records = export_people(_db(db))
        columns = ["id", "name"] + sorted({k for r in records for k in r} - {"id", "name"})

        def write(stream: Any) -> None:
            r = Renderer(out_fmt, stream, columns=columns, title="people")
            for rec in records:
                r.add(rec, [rec])
            r.close()

        if output is None:
            write(None)
        else:
            import io

            from ..facetable import write_atomic

            check_output_file(output, "--output")
            buf = io.StringIO()
            write(buf)
            write_atomic(output, lambda tmp: Path(tmp).write_text(buf.getvalue(), "utf-8"))
            if not quiet:
                stderr().print(
                    f"{count(len(records), 'person')} written to {output}", highlight=False
                )


@people_app.command("import")
def import_cmd(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="A .json or .csv file from people export.")
    ],
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Set names and fields of the people listed in FILE (people export's JSON or CSV).

    A null (JSON) or empty (CSV) field is removed (a missing or empty name keeps the name);
    people not listed are left alone; names set this way are kept by build-index, as with
    rename. The whole file is checked first:
    a problem is one line naming the file and entry, and nothing changes.

    Example:

        facekit people import people.csv -d faces.db

    Exit codes: 0 done (also when nothing needed changing); 2 unknown person or face id,
    or a bad argument; 3 unreadable or malformed file; 5 database error (missing,
    locked, wrong or missing FACEKIT_KEY).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..people import import_people

        _change(import_people(_db(db), file), fmt, quiet)
