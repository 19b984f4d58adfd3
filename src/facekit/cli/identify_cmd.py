"""``facekit identify``: name the people in photos."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..render import Renderer
from .common import (
    DbOpt,
    DownloadBars,
    FormatOpt,
    MaxStrangersOpt,
    MinConfidenceOpt,
    OfflineOpt,
    QuietOpt,
    UpsampleOpt,
    VerboseOpt,
    WorkersOpt,
    default_db,
    handle_errors,
    resolve_format,
    setup_logging,
    stderr,
    track,
    warn_line,
)
from .runner import expand_inputs

COLUMNS = [
    "source",
    "face",
    "box",
    "person",
    "name",
    "confidence",
    "nearest",
    "nearest_confidence",
    "distances",
]


def identify_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Photos, folders (recursive), or - to read paths from stdin.", show_default=False
        ),
    ],
    db: DbOpt = None,
    upsample: UpsampleOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Candidates per face.")] = 5,
    min_confidence: MinConfidenceOpt = None,
    max_strangers: MaxStrangersOpt = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models",
            "-m",
            metavar="LIST",
            help="Must match the database's models (the database decides).",
        ),
    ] = None,
    annotate: Annotated[
        Path | None,
        typer.Option(
            "--annotate",
            help="Write copies of the photos with boxes and names drawn into this folder.",
        ),
    ] = None,
    fmt: FormatOpt = None,
    workers: WorkersOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Name the people in photos, using a database made by build-index.

    Every face gets the top-k people with per-model distances and a 0-100 confidence; a face
    below the calibrated threshold is unknown (identity null) rather than the nearest stranger.

    Example:

        facekit identify party.jpg -d faces.db

        facekit identify ./album --format ndjson | jq -c '.faces[].identity.name'

    Exit codes: 0 at least one known person found; 1 none found; 3 some files unreadable;
    4 model error; 5 database error (missing, tampered, wrong key).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..database import Database
        from ..identify import Identifier
        from ..models.registry import parse_model_list
        from ..pipeline import run_paths

        database = Database.open(db or default_db())
        if models is not None and parse_model_list(models, kind="recognizer") != database.models:
            raise UsageError(
                f"the database {database.path} uses models {','.join(database.models)}; "
                f"--models {models} cannot be used with it",
            )
        from dataclasses import replace

        config = database.config
        if offline:
            config = replace(config, offline=True)
        if upsample is not None:  # detection only: embeddings stay comparable with the database
            config = replace(config, upsample=upsample)
        files = expand_inputs(paths, sys.stdin)
        ident = Identifier(
            database, top_k=top_k, min_confidence=min_confidence, max_strangers=max_strangers
        )
        renderer = Renderer(resolve_format(fmt), columns=COLUMNS, title="faces")
        found = errors = 0
        bars = DownloadBars(quiet)
        try:
            stream = run_paths(config, files, workers=workers, progress=bars)
            for result in track(stream, len(files), "identifying", quiet):
                pm = ident.match_result(result)
                if result.error:
                    errors += 1
                    if not quiet:
                        warn_line(result.error)
                found += len(pm.known)
                renderer.add(pm.to_record(), pm.rows())
                if annotate is not None and not result.error:
                    from ..annotate import annotate_photo

                    annotate_photo(result.source, pm, annotate)
        finally:
            bars.close()
        renderer.close()
        if not quiet:
            stderr().print(
                f"done: {len(files)} files, {found} known faces, {errors} errors", highlight=False
            )
        raise typer.Exit(3 if errors else (0 if found else 1))
