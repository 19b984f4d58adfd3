"""``facekit build-index``: build or update the face database from a folder of people."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..render import Renderer
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
    WeightsOpt,
    WorkersOpt,
    default_db,
    handle_errors,
    parse_weights,
    setup_logging,
    stderr,
    warn_line,
)
from .runner import build_config


def build_index_cmd(
    people_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder with one subfolder of photos per person (folder name = person id).",
            show_default=False,
        ),
    ],
    db: DbOpt = None,
    models: ModelsOpt = None,
    weights: WeightsOpt = None,
    detector: DetectorOpt = None,
    upsample: UpsampleOpt = None,
    storage: Annotated[
        str,
        typer.Option(
            "--storage",
            help="Index storage: float32 or e4m3 (3.4x smaller at 512-d, ~1.7x slower queries).",
        ),
    ] = "float32",
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="Store the tables that name people in an AES-256 zip; key from $FACEKIT_KEY.",
        ),
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild", help="Re-embed every photo (needed to change models or encryption)."
        ),
    ] = False,
    fmt: FormatOpt = None,
    workers: WorkersOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Build or update the database of known people from a folder of photos.

    Each subfolder of PEOPLE_DIR is one person; an optional people.json or people.csv maps
    ids to names and extra fields. Re-running adds new photos, re-embeds changed ones and
    removes deleted ones; unchanged photos are not re-embedded. Writes are atomic and locked.

    Example:

        facekit build-index ./people -d faces.db --models dlib,mobilefacenet

    Exit codes: 0 built; 1 no face enrolled; 3 some photos unreadable (the rest is stored);
    4 model error; 5 database error (locked, wrong key).
    """
    setup_logging(verbose, quiet)
    with handle_errors():
        from ..gallery import build_index

        if storage not in ("float32", "e4m3"):
            raise typer.BadParameter("--storage must be float32 or e4m3")
        db_path = db or default_db()
        config = build_config(
            models, weights=parse_weights(weights), detector=detector, offline=offline
        )
        if models is None and not rebuild:
            from ..database import Database

            if Database.exists(db_path):
                try:
                    old = Database.open(db_path)
                    config = build_config(
                        ",".join(old.models),
                        weights=tuple(old.calibration.weights.values()),
                        detector=detector or old.config.detector,
                        upsample=old.config.upsample if upsample is None else upsample,
                        offline=offline,
                    )
                except Exception:  # let build_index report the real problem
                    pass
        bars = DownloadBars(quiet)
        progress_state: dict[str, object] = {}
        try:
            report = build_index(
                people_dir,
                db_path,
                config,
                storage=storage,
                encrypt=encrypt,
                workers=workers,
                progress=bars,
                rebuild=rebuild,
                on_result=_progress_cb(progress_state, quiet),
            )
        finally:
            bars.close()
            p = progress_state.get("bar")
            if p is not None:
                p.stop()  # type: ignore[attr-defined]
        rec = report.to_record()
        if not quiet:
            for e in report.errors:
                warn_line(e)
            for s in report.no_face:
                warn_line(f"{s}: no face found; not enrolled")
            for s, n in report.several_faces:
                warn_line(f"{s}: {n} faces; enrolled the largest, most central one")
            cal = report.calibration
            if cal is not None:
                how = (
                    "measured on this gallery"
                    if cal.source == "gallery"
                    else "defaults (gallery too small to calibrate; add more people / photos)"
                )
                extra = ""
                if cal.source == "gallery":
                    extra = (
                        f"; leave-one-out: {cal.stats.get('loo_genuine_named', 0):.1%} of enrolled faces named, "
                        f"{cal.stats.get('loo_strangers_named', 0):.1%} of strangers named"
                    )
                stderr().print(
                    f"calibration: threshold {cal.threshold:.2f} ({how}){extra}", highlight=False
                )
            stderr().print(
                f"done: {report.persons} people, {report.faces} faces in {db_path} "
                f"({report.added} added, {report.updated} updated, {report.removed} removed, {report.unchanged} unchanged, "
                f"{len(report.no_face)} without a face, {len(report.errors)} errors)",
                highlight=False,
            )
        if fmt is not None:
            r = Renderer(fmt, wrap=lambda recs: recs[0])
            r.add(rec, [{k: v for k, v in rec.items() if not isinstance(v, (list, dict))}])
            r.close()
        if report.errors:
            raise typer.Exit(3)
        raise typer.Exit(0 if report.faces else 1)


def _progress_cb(state: dict[str, object], quiet: bool):  # type: ignore[no-untyped-def]
    if quiet:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    def cb(result: object) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = Progress(
                TextColumn("embedding gallery"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=stderr(),
                transient=True,
            )
            bar.start()
            state["bar"] = bar
            state["task"] = bar.add_task("embed", total=None)
        bar.advance(state["task"])  # type: ignore[attr-defined]

    return cb
