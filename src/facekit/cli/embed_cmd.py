"""``facekit embed``: detect and embed every face, one row per face."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DetectorOpt,
    DownloadBars,
    EngineOpt,
    FormatOpt,
    MaxSideOpt,
    MaxYawOpt,
    ModelsOpt,
    OfflineOpt,
    QuietOpt,
    RayAddressOpt,
    UpsampleOpt,
    VerboseOpt,
    WeightsOpt,
    WorkersOpt,
    engine_scope,
    handle_errors,
    parse_weights,
    setup_logging,
    stderr,
)
from .runner import build_config, embed_inputs


def embed_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="Photos, folders (searched recursively), or - to read paths from stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Parquet file to write (default faces.parquet unless --format or --sidecar is given). Re-runs skip unchanged files.",
        ),
    ] = None,
    fmt: FormatOpt = None,
    sidecar: Annotated[
        bool,
        typer.Option(
            "--sidecar", help="Write <photo>.faces.json next to each photo instead of one table."
        ),
    ] = False,
    models: ModelsOpt = None,
    weights: WeightsOpt = None,
    detector: DetectorOpt = None,
    upsample: UpsampleOpt = 0,
    max_side: MaxSideOpt = 1600,
    min_face: Annotated[
        int, typer.Option("--min-face", min=0, help="Ignore faces smaller than this many pixels.")
    ] = 0,
    max_yaw: MaxYawOpt = None,
    flip: Annotated[
        bool | None,
        typer.Option(
            "--flip/--no-flip", help="Average each face with its mirror image (default: per model)."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Re-embed every file even if unchanged.")
    ] = False,
    workers: WorkersOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Detect and embed every face in photos: one row per face.

    Writes a Parquet table (source, face index, box \\[x, y, w, h] in original pixels,
    landmarks, detector score, face size, head pose yaw/pitch/roll in degrees, one embedding
    column per model and the models' fingerprints). Unchanged files (same SHA-256) are skipped when re-running onto the same
    output.

    Example:

        facekit embed ./photos -o faces.parquet --models dlib,mobilefacenet

        find . -name '*.jpg' | facekit embed - --format ndjson > faces.ndjson

    Exit codes: 0 faces found; 1 no face in any file; 2 usage error; 3 some files could not
    be read; 4 model error; 74 an output cannot be written (disk full, read-only folder).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        config = build_config(
            models,
            weights=parse_weights(weights),
            detector=detector,
            upsample=upsample,
            max_side=max_side,
            min_face=min_face,
            flip=flip,
            offline=offline,
        )
        if output is None and fmt is None and not sidecar:
            output = Path("faces.parquet")
        bars = DownloadBars(quiet)
        try:
            with engine_scope(engine, ray_address, workers) as eng:
                summary = embed_inputs(
                    paths,
                    config,
                    output=output,
                    fmt=fmt,
                    sidecar=sidecar,
                    force=force,
                    workers=workers,
                    quiet=quiet,
                    progress=bars,
                    stdin=sys.stdin,
                    engine=eng,
                    max_yaw=max_yaw,
                )
        finally:
            bars.close()
        if not quiet:
            stderr().print(summary.line(), highlight=False)
        raise typer.Exit(summary.exit_code)
