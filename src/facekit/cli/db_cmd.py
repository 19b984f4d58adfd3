"""``facekit db info`` (summary of a database) and ``facekit db verify`` (full check)."""

from __future__ import annotations

from typing import Any

import typer

from ..render import Renderer
from .common import (
    DbOpt,
    FormatOpt,
    QuietOpt,
    VerboseOpt,
    default_db,
    handle_errors,
    resolve_format,
    setup_logging,
    stderr,
)

db_app = typer.Typer(
    name="db",
    help="Inspect and check a face database: `facekit db info`, `facekit db verify`.",
    no_args_is_help=True,
    add_completion=False,
)


def _share(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def info_record(db: Any) -> dict[str, Any]:
    """The ``db info`` record of an open database (other helpers may add keys)."""
    i = db.info()
    return {
        "db": i.path,
        "generation": i.generation,
        "persons": i.persons,
        "faces": i.faces,
        "models": ",".join(i.models),
        "storage": i.storage,
        "encrypted": i.encrypted,
        "authenticated": bool(db.manifest.get("auth")),
        "format_version": db.manifest.get("format_version"),
        "bytes": i.bytes,
        "threshold": round(i.threshold, 3),
        "calibration": i.calibration_source,
        # the promise (issue 11): the stated share of strangers that may be named, what the
        # calibration expects at this gallery's size, and the share of enrolled people's
        # photos still named (leave-one-out; null when not measurable)
        "max_strangers": _share(i.max_strangers),
        "expected_strangers": _share(i.expected_strangers),
        "expected_named": _share(i.expected_named),
        "detector": db.manifest["pipeline"].get("detector"),
        "updated": i.updated,
        "recovered": i.recovered,
    }


@db_app.command("info")
def info_cmd(
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Summarise a database: people, faces, models, storage, encryption, calibration.

    The calibration's promise: max_strangers (the stated share of strangers that may be
    named), expected_strangers (at this gallery's size) and expected_named (share of enrolled
    people's photos still named, leave-one-out; empty when not measurable).

    Reads only CURRENT and the manifest (instant at any size); no table is read.

    Example:

        facekit db info -d faces.db --format json

    Exit codes: 0 ok; 5 database error (missing, damaged, tampered, wrong key).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..database import Database

        database = Database.open(db or default_db())
        rec = info_record(database)
        r = Renderer(resolve_format(fmt), wrap=lambda recs: recs[0])
        r.add(rec, [rec])
        r.close()


@db_app.command("verify")
def verify_cmd(
    db: DbOpt = None,
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Check a whole database: hash every file, parse every table and index, check counts,
    dimensions and index ids against the manifest (and its authentication when encrypted).

    Commands verify only what they read, as they read it; run this from cron to find damage
    in files a command has not read yet.

    Example:

        facekit db verify -d faces.db

    Exit codes: 0 intact; 5 damaged, tampered, or wrong / missing key.
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..database import Database
        from ..errors import DatabaseError

        database = Database.open(db or default_db())
        rep = database.verify()
        rec = {
            "db": rep.path,
            "generation": rep.generation,
            "ok": rep.ok,
            "files": rep.files,
            "bytes": rep.bytes,
            "seconds": round(rep.seconds, 3),
            "problems": rep.problems,
        }
        if fmt is not None:
            r = Renderer(fmt, wrap=lambda recs: recs[0])
            r.add(rec, [{**rec, "problems": "; ".join(rep.problems)}])
            r.close()
        if not rep.ok:
            raise DatabaseError(rep.problems[0])
        if not quiet:
            stderr().print(
                f"ok: {rep.path} {rep.generation}, {rep.files} files, {rep.bytes:,} bytes "
                f"checked in {rep.seconds:.2f} s",
                highlight=False,
            )
