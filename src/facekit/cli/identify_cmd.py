"""``facekit identify``: name the people in photos."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UsageError
from ..render import Renderer, count
from .common import (
    DbOpt,
    DownloadBars,
    FormatOpt,
    MaxStrangersOpt,
    MaxYawOpt,
    MinConfidenceOpt,
    OfflineOpt,
    QuietOpt,
    UpsampleOpt,
    VerboseOpt,
    WorkersOpt,
    check_output_dir,
    default_db,
    file_error,
    handle_errors,
    resolve_format,
    setup_logging,
    stderr,
    track,
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
    "gallery_face",
    "distances",
    "yaw",
    "pitch",
    "roll",
    "skipped",
    "error",
]
#: The terminal table: what fits in 80 columns (CSV and JSON keep every field).
TABLE_COLUMNS = ["source", "face", "person", "confidence", "note"]


def table_rows(pm: Any) -> list[dict[str, Any]]:
    """Short rows for the terminal table: who (``unknown`` spelled out), how sure, and a note
    (nearest person for an unknown face, "no face found", or the file's error)."""
    r = pm.result
    if r.error:
        msg = r.error[len(r.source) + 2 :] if r.error.startswith(f"{r.source}: ") else r.error
        return [{"source": r.source, "person": "ERROR", "note": msg}]
    if not pm.matches:
        return [{"source": r.source, "person": "-", "note": "no face found"}]
    out = []
    for i, m in enumerate(pm.matches):
        best = m.candidates[0] if m.candidates else None
        if m.identity is not None:
            who = m.identity.person
            if m.identity.name and m.identity.name != who:
                who = f"{m.identity.name} ({who})"
            out.append(
                {
                    "source": r.source,
                    "face": i,
                    "person": who,
                    "confidence": f"{m.identity.confidence:.0f}",
                }
            )
        else:
            note = f"nearest: {best.person} ({best.confidence:.0f})" if best else ""
            if m.skipped:
                note = m.skipped
            out.append({"source": r.source, "face": i, "person": "unknown", "note": note})
    return out


def identify_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PHOTO",
            help="Photos, folders (recursive), or - to read paths from stdin.",
            show_default=False,
        ),
    ],
    db: DbOpt = None,
    upsample: UpsampleOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, help="Candidates per face.")] = 5,
    min_confidence: MinConfidenceOpt = None,
    max_strangers: MaxStrangersOpt = None,
    max_yaw: MaxYawOpt = None,
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
            metavar="DIR",
            help="Write copies of the photos with boxes and names drawn into this folder, "
            "mirroring the input folders; each copy keeps its photo's format.",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace annotated copies already in the --annotate folder."
        ),
    ] = False,
    write_xmp: Annotated[
        bool,
        typer.Option(
            "--write-xmp",
            help="Write the faces as MWG face regions with the names found, into a sidecar "
            "(photo.jpg.xmp, or an existing photo.xmp) that photo managers read; the photo is "
            "not touched. Re-runs replace facekit's regions; other tags are kept.",
        ),
    ] = False,
    in_place: Annotated[
        bool,
        typer.Option(
            "--in-place",
            help="With --write-xmp: write into the photo's own XMP instead (JPEG and PNG).",
        ),
    ] = False,
    xmp_unknown: Annotated[
        str,
        typer.Option(
            "--xmp-unknown",
            metavar="unnamed|skip",
            help="With --write-xmp: write unknown faces as unnamed regions, or skip them.",
        ),
    ] = "unnamed",
    xmp_mp: Annotated[
        bool,
        typer.Option(
            "--xmp-mp",
            help="With --write-xmp: also write Microsoft Photo regions (Windows Photo Gallery).",
        ),
    ] = False,
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

        facekit identify ./album --format ndjson | jq -c '{source, who: [.faces[].identity.name]}'

        facekit identify ./album --annotate ./annotated

        facekit identify ./album --write-xmp   # names as XMP face regions (docs/xmp.md)

    Exit codes: 0 at least one known person found; 1 none found; 2 usage error (e.g.
    --annotate files already there); 3 some files unreadable, or their XMP could not be
    written; 4 model error; 5 database error
    (missing, tampered, wrong key); 74 an output cannot be written; 143 terminated.
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..database import Database
        from ..identify import Identifier
        from ..models.registry import parse_model_list
        from ..pipeline import run_paths

        if (in_place or xmp_mp or xmp_unknown != "unnamed") and not write_xmp:
            raise UsageError("--in-place, --xmp-unknown and --xmp-mp need --write-xmp")
        if xmp_unknown not in ("unnamed", "skip"):
            raise typer.BadParameter("--xmp-unknown must be unnamed or skip")
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
        targets = {}
        if annotate is not None:
            from ..annotate import annotation_targets

            check_output_dir(annotate, "--annotate")
            targets = annotation_targets(files, annotate, overwrite=overwrite)
        ident = Identifier(
            database,
            top_k=top_k,
            min_confidence=min_confidence,
            max_strangers=max_strangers,
            max_yaw=max_yaw,
        )
        renderer = Renderer(
            resolve_format(fmt), columns=COLUMNS, table_columns=TABLE_COLUMNS, title="faces"
        )
        found = errors = 0
        xmp_files = xmp_regions = 0
        bars = DownloadBars(quiet)
        try:
            stream = run_paths(config, files, workers=workers, progress=bars)
            for result in track(stream, len(files), "identifying", quiet, unit="files"):
                pm = ident.match_result(result)
                if result.error:
                    errors += 1
                    file_error(result.error)
                found += len(pm.known)
                record = pm.to_record()
                record.setdefault("error", None)
                renderer.add(record, pm.rows(), table_rows(pm))
                if result.source in targets and not result.error:
                    from ..annotate import annotate_photo

                    annotate_photo(result.source, pm, targets[result.source])
                if write_xmp and not result.error:
                    from ..errors import FacekitError
                    from ..xmp_import import write_matches

                    try:
                        wrote = write_matches(pm, in_place=in_place, unknown=xmp_unknown, mp=xmp_mp)
                    except FacekitError as exc:
                        errors += 1
                        file_error(str(exc))
                        wrote = None
                    if wrote is not None and wrote.written:
                        xmp_files += 1
                        xmp_regions += wrote.written
        finally:
            bars.close()
        renderer.close()
        if not quiet:
            xmp = (
                f", XMP: {count(xmp_regions, 'region')} in {count(xmp_files, 'file')}"
                if write_xmp
                else ""
            )
            stderr().print(
                f"done: {count(len(files), 'file')}, {count(found, 'known face')}, "
                f"{count(errors, 'error')}{xmp}",
                highlight=False,
            )
        raise typer.Exit(3 if errors else (0 if found else 1))
