"""``facekit build-index``: build or update the face database from a folder of people."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..render import Renderer, count
from .common import (
    DbOpt,
    DetectorOpt,
    DownloadBars,
    EngineOpt,
    FormatOpt,
    MaxYawOpt,
    ModelsOpt,
    OfflineOpt,
    QuietOpt,
    RayAddressOpt,
    UpsampleOpt,
    VerboseOpt,
    WeightsOpt,
    WorkersOpt,
    default_db,
    engine_scope,
    handle_errors,
    parse_weights,
    setup_logging,
    stderr,
    track,
    warn_line,
)
from .runner import build_config


def build_index_cmd(
    people_dir: Annotated[
        Path | None,
        typer.Argument(
            metavar="PEOPLE_DIR",
            help="Folder with one subfolder of photos per person (folder name = person id). "
            "With --from-embeddings: optional, where people.json / people.csv are read.",
            show_default=False,
        ),
    ] = None,
    db: DbOpt = None,
    from_embeddings: Annotated[
        Path | None,
        typer.Option(
            "--from-embeddings",
            metavar="TABLE",
            help="Build from a Parquet table written by `facekit embed -o` instead of "
            "embedding photos: face 0 of each photo, person = the `person` column or the "
            "photo's parent folder name.",
            show_default=False,
        ),
    ] = None,
    models: ModelsOpt = None,
    weights: WeightsOpt = None,
    detector: DetectorOpt = None,
    upsample: UpsampleOpt = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Index storage: float32 or e4m3 (3.4x smaller at 512-d, ~1.7x slower queries). "
            "Default: the database's, else float32.",
            show_default=False,
        ),
    ] = None,
    encrypt: Annotated[
        bool | None,
        typer.Option(
            "--encrypt/--no-encrypt",
            help="Encrypt tables and indices (AES-256, key from $FACEKIT_KEY), or decrypt "
            "(needs the key). Default: keep the database's setting (plaintext when new).",
            show_default=False,
        ),
    ] = None,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild",
            help="Re-embed every photo (needed to change models, detector or upsampling). "
            "Enrolled faces are kept (re-embedded from their stored crops).",
        ),
    ] = False,
    discard_encrypted: Annotated[
        bool,
        typer.Option(
            "--discard-encrypted",
            help="With --rebuild: replace an encrypted database whose key you do not have "
            "(its faces are lost).",
        ),
    ] = False,
    recursive: Annotated[
        bool | None,
        typer.Option(
            "--recursive/--no-recursive",
            help="Also enrol photos in folders nested inside a person folder, under that "
            "person. Default: the database's setting, else no (nested folders are reported).",
            show_default=False,
        ),
    ] = None,
    allow_mass_removal: Annotated[
        bool,
        typer.Option(
            "--allow-mass-removal",
            help="Allow a run that removes more than half of the people or faces, or all of "
            "them (refused by default: an empty or unmounted people folder).",
        ),
    ] = False,
    max_strangers: Annotated[
        float | None,
        typer.Option(
            "--max-strangers",
            min=0.0001,
            max=0.5,
            metavar="RATE",
            help="Share of photos of people not in the database that may be named (stored; default 0.01, 0.02 for dlib alone, or the database's current rate). The threshold is set for this rate at the gallery's size.",
        ),
    ] = None,
    max_yaw: MaxYawOpt = None,
    fmt: FormatOpt = None,
    workers: WorkersOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Build or update the database of known people from a folder of photos.

    Each subfolder of PEOPLE_DIR is one person (PEOPLE_DIR/<id>/*.jpg); an optional
    people.json or people.csv maps ids to names and extra fields. Re-running adds new photos,
    re-embeds changed ones and removes deleted ones; unchanged photos are not re-embedded.
    Options not given keep the database's settings. Photos that cannot be read keep their
    stored faces; faces added with `facekit enroll` are kept by every run. Writes are atomic
    and locked.

    Example:

        facekit build-index ./people -d faces.db --models dlib,mobilefacenet

        facekit embed ./people -o faces.parquet && facekit build-index --from-embeddings faces.parquet -d faces.db

    Exit codes: 0 built; 1 no face enrolled; 2 usage error (wrong folder layout, changed
    settings without --rebuild, or a mass removal refused); 3 some photos unreadable (the rest
    is stored) or a bad people.json/csv; 4 model error; 5 database error (locked, wrong key).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..gallery import build_index, stored_settings

        if storage is not None and storage not in ("float32", "e4m3"):
            raise typer.BadParameter("--storage must be float32 or e4m3")
        db_path = db or default_db()
        if people_dir is None and from_embeddings is None:
            raise UsageError(
                "give PEOPLE_DIR (one subfolder per person) or --from-embeddings TABLE"
            )
        if from_embeddings is not None and max_strangers is not None:
            raise UsageError(
                "--max-strangers is not available with --from-embeddings yet: build, then run "
                "build-index PEOPLE_DIR --max-strangers RATE (or identify --max-strangers)"
            )
        if from_embeddings is not None and (models or detector or upsample is not None or weights):
            raise UsageError(
                "--from-embeddings uses the table's models and detector; leave out "
                "--models, --weights, --detector and --upsample"
            )
        if from_embeddings is not None and max_yaw is not None:
            raise UsageError(
                "--max-yaw is not available with --from-embeddings: use embed --max-yaw to "
                "make the table"
            )
        if discard_encrypted and not rebuild:
            raise typer.BadParameter("--discard-encrypted needs --rebuild")
        # options not given keep the database's settings (cron re-runs need no options)
        kept = stored_settings(db_path) or {}
        same_models = models is None or not kept
        config = build_config(
            models or (",".join(kept["models"]) if kept else None),
            weights=parse_weights(weights)
            if weights is not None
            else (kept.get("weights") if same_models else None),
            detector=detector or kept.get("detector"),
            upsample=upsample if upsample is not None else kept.get("upsample", 0),
            max_side=kept.get("max_side", 1600),
            flip=kept.get("flip"),
            offline=offline,
        )
        bars = DownloadBars(quiet)
        try:
            if from_embeddings is not None:
                from ..gallery_table import build_from_embeddings

                report = build_from_embeddings(
                    from_embeddings,
                    db_path,
                    people_dir=people_dir,
                    storage=storage,
                    encrypt=encrypt,
                    rebuild=rebuild,
                    allow_mass_removal=allow_mass_removal,
                    discard_encrypted=discard_encrypted,
                )
            else:
                assert people_dir is not None
                with engine_scope(engine, ray_address, workers) as eng:
                    report = build_index(
                        people_dir,
                        db_path,
                        config,
                        storage=storage,
                        encrypt=encrypt,
                        workers=workers,
                        progress=bars,
                        rebuild=rebuild,
                        recursive=recursive,
                        allow_mass_removal=allow_mass_removal,
                        max_strangers=max_strangers,
                        wrap=lambda stream, total: track(stream, total, "embedding gallery", quiet),
                        engine=eng,
                        discard_encrypted=discard_encrypted,
                        max_yaw=max_yaw,
                    )
        finally:
            bars.close()
        rec = report.to_record()
        for e in report.errors:  # errors stay visible under -q
            warn_line(e)
        if not quiet:
            for path, why in report.skipped:
                warn_line(f"{path}: skipped ({why})")
            for s in report.no_face:
                warn_line(f"{s}: no face found; not enrolled")
            for s, n in report.several_faces:
                warn_line(f"{s}: {n} faces; enrolled the largest, most central one")
            for src, why in report.enrolled_lost:
                warn_line(f"{src}: enrolled face not kept ({why})")
            cal = report.calibration
            if cal is not None:
                from ..calibration import describe

                stderr().print(f"calibration: {describe(cal)}", highlight=False)
            removed = f"{report.removed} removed"
            if report.removed or report.faces_removed:
                removed += (
                    f" ({count(report.faces_removed, 'face')}"
                    + (
                        f", {count(len(report.people_removed), 'person')}"
                        if report.people_removed
                        else ""
                    )
                    + ")"
                )
            enrolled = ""
            if report.enrolled_kept or report.enrolled_lost:
                enrolled = f"; enrolled faces: {report.enrolled_kept} kept" + (
                    f" ({report.enrolled_reembedded} re-embedded)"
                    if report.enrolled_reembedded
                    else ""
                )
                if report.enrolled_lost:
                    enrolled += f", {len(report.enrolled_lost)} could not be kept"
            stderr().print(
                f"done: {count(report.persons, 'person')}, {count(report.faces, 'face')} in {db_path} "
                f"(photos: {report.added} added, {report.updated} updated, {removed}, "
                f"{report.unchanged} unchanged, "
                + (f"{report.kept_unreadable} kept unreadable, " if report.kept_unreadable else "")
                + f"{len(report.no_face)} without a face, "
                f"{len(report.skipped)} skipped, {count(len(report.errors), 'error')}{enrolled})",
                highlight=False,
                markup=False,
            )
        if fmt is not None:
            r = Renderer(fmt, wrap=lambda recs: recs[0])
            r.add(rec, [{k: v for k, v in rec.items() if not isinstance(v, (list, dict))}])
            r.close()
        if report.errors:
            raise typer.Exit(3)
        raise typer.Exit(0 if report.faces else 1)
