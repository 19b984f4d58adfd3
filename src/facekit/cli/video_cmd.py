"""``facekit video``: who appears in a video, and when."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError, UsageError
from ..render import Format, Renderer, count
from .common import (
    DbOpt,
    DownloadBars,
    EngineOpt,
    FormatOpt,
    MaxStrangersOpt,
    MinConfidenceOpt,
    OfflineOpt,
    QuietOpt,
    RayAddressOpt,
    UpsampleOpt,
    VerboseOpt,
    default_db,
    engine_scope,
    file_error,
    handle_errors,
    resolve_format,
    setup_logging,
    stderr,
    warn_line,
)


def _writable_ancestor(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process can write to
    (missing folders below it are created later)."""
    import os

    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        if parent.is_symlink():  # dangling link
            raise UsageError(f"{option} {path}: {parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {path}: folder {parent} is not writable")


def _os_reason(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return where + (exc.strerror or str(exc) or type(exc).__name__).lower()


def check_output_file(path: Path, option: str) -> None:
    """A file output: not an existing folder; an existing file must be writable; its folder
    (or the nearest existing ancestor) must be a writable folder.

    Raises:
        UsageError: one line naming the option, the path and the problem.
    """
    import os

    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: file is not writable")
    _writable_ancestor(path, option)


def check_output_dir(path: Path, option: str) -> None:
    """A folder output: not an existing file; writable if it exists, else creatable.

    Raises:
        UsageError: one line naming the option, the path and the problem.
    """
    import os

    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{option} {path}: is a file, not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"{option} {path}: folder is not writable")
        return
    _writable_ancestor(path, option)


class SamplingChoice(str, Enum):
    auto = "auto"
    exact = "exact"
    keyframe = "keyframe"


def video_cmd(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="FILE_OR_DIR",
            help="Videos, or folders searched recursively for video files.",
            show_default=False,
        ),
    ] = None,
    db: DbOpt = None,
    upsample: UpsampleOpt = None,
    max_side: Annotated[
        int | None,
        typer.Option(
            "--max-side",
            min=64,
            help="Detect on a copy of each frame whose long side is at most this many pixels (default: the database's, 1600). 960 makes detection on 720p about 1.8x cheaper but misses faces smaller than about 110 px (720p) or 160 px (1080p).",
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", "-i", min=0.01, help="Seconds between sampled frames.")
    ] = 5.0,
    frames: Annotated[
        int | None,
        typer.Option(
            "--frames",
            "-n",
            min=1,
            help="Instead of --interval: this many frames spread evenly over 5%-95% of the runtime.",
        ),
    ] = None,
    min_samples: Annotated[
        int,
        typer.Option(
            "--min-samples",
            min=1,
            help="With --interval: a clip too short for this many samples gets this many, evenly spaced (exact times). 1: no minimum.",
        ),
    ] = 8,
    start: Annotated[
        float | None,
        typer.Option(
            "--start",
            min=0,
            help="Start at this many seconds (at or past the end of a video: an error for that file).",
        ),
    ] = None,
    end: Annotated[
        float | None, typer.Option("--end", min=0, help="Stop at this many seconds.")
    ] = None,
    sampling: Annotated[
        SamplingChoice,
        typer.Option(
            "--sampling",
            case_sensitive=False,
            help="exact: frames at the exact times (seek + decode forward); keyframe: the keyframe nearest each time (cheapest); auto: keyframe when keyframes are at most two intervals apart, else exact.",
        ),
    ] = SamplingChoice.auto,
    min_confidence: MinConfidenceOpt = None,
    max_strangers: MaxStrangersOpt = None,
    crops: Annotated[
        Path | None,
        typer.Option(
            "--crops", help="Save the best face crop per person as DIR/<video>/<person>.jpg."
        ),
    ] = None,
    embed_crops: Annotated[
        bool,
        typer.Option(
            "--embed-crops",
            help="Put each person's best crop inline in JSON/NDJSON as a base64 JPEG ('crop').",
        ),
    ] = False,
    detections: Annotated[
        Path | None,
        typer.Option(
            "--detections",
            help="Write every sampled face (time, box, identity, confidence, track) to this Parquet file.",
        ),
    ] = None,
    timeline: Annotated[
        Path | None,
        typer.Option(
            "--timeline",
            help="Draw a timeline PNG (people on rows, segments as bars). Several videos: OUT-<video>.png.",
        ),
    ] = None,
    sprite: Annotated[
        Path | None,
        typer.Option(
            "--sprite", help="A Stash sprite sheet to read instead of a video (needs --vtt)."
        ),
    ] = None,
    vtt: Annotated[
        Path | None,
        typer.Option("--vtt", help="The sprite's WebVTT index (cues with #xywh=x,y,w,h)."),
    ] = None,
    keep_single: Annotated[
        bool,
        typer.Option(
            "--keep-single-unknowns", help="Also list unknown faces seen in only one sample."
        ),
    ] = False,
    fmt: FormatOpt = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Find who appears in videos and when: one row per person with time segments.

    Samples one frame every --interval seconds (or --frames N spread over the runtime),
    identifies the faces against a database made by build-index, and joins each person's
    sightings into segments \\[start, end] in seconds (a gap of more than two sampling steps
    splits a segment). Unknown faces that recur become tracks unknown-1, unknown-2, ... with
    their own segments and crops. Known people are ranked by frames x mean confidence.

    Example:

        facekit video talk.mp4 -d faces.db --interval 2 --timeline talk.png --crops crops/

        facekit video ./recordings --format ndjson | jq -c '[.source, [.people[].person]]'

        facekit video --sprite scene_sprite.jpg --vtt scene_thumbs.vtt -d faces.db

    Exit codes: 0 a known person was found; 1 none was; 3 some files could not be read
    (the others are still reported; each unreadable file's record has "error");
    5 database error; 130 interrupted.
    """
    setup_logging(verbose, quiet)
    # Ray actors for video: $FACEKIT_WORKERS as for local worker processes, else one per CPU
    # of the cluster.
    env_workers = os.environ.get("FACEKIT_WORKERS", "")
    actors = max(1, int(env_workers)) if env_workers.isdigit() else None
    with handle_errors(), engine_scope(engine, ray_address, actors) as eng:
        from dataclasses import replace

        from ..database import Database
        from ..decode import iter_video_paths
        from ..identify import Identifier
        from ..pipeline import Pipeline
        from ..video import (
            PEOPLE_COLUMNS,
            VideoOptions,
            analyse_sprite,
            analyse_video,
            crops_base64,
            draw_timeline,
            error_record,
            error_row,
            save_crops,
            write_detections,
        )

        if (sprite is None) != (vtt is None):
            raise UsageError("--sprite and --vtt go together")
        if sprite is None and not paths:
            raise UsageError("give at least one video file or folder (or --sprite with --vtt)")
        if start is not None and end is not None and end <= start:
            raise UsageError(f"--end ({end}) must be after --start ({start})")
        if detections is not None and detections.suffix.lower() != ".parquet":
            raise UsageError(f"--detections writes Parquet: give a .parquet file, not {detections}")
        # Output paths are checked before any work (issue 15): a file where a folder is
        # needed, a folder where a file is, or an unwritable place is one line, exit 2.
        if crops is not None:
            check_output_dir(crops, "--crops")
        if timeline is not None:
            check_output_file(timeline, "--timeline")
        if detections is not None:
            check_output_file(detections, "--detections")

        database = Database.open(db or default_db())
        config = database.config
        if offline:
            config = replace(config, offline=True)
        config = replace(config, digest=False)
        if upsample is not None:  # detection only: embeddings stay comparable with the database
            config = replace(config, upsample=upsample)
        if max_side is not None:  # detection only, too: crops are cut from the full frame
            config = replace(config, max_side=max_side)
        options = VideoOptions(
            interval=None if frames else interval,
            frames=frames,
            min_samples=min_samples,
            start=start,
            end=end,
            sampling=sampling.value,
            min_unknown_frames=1 if keep_single else 2,
            keep_detections=detections is not None,
            crops=bool(crops or embed_crops),
        )
        bars = DownloadBars(quiet)
        try:
            pipeline = Pipeline(config, bars)
        finally:
            bars.close()
        identifier = Identifier(
            database, min_confidence=min_confidence, max_strangers=max_strangers
        )

        jobs: list[tuple[str, Any]] = []
        if sprite is not None:
            jobs.append(
                (
                    str(sprite),
                    lambda cb, tot, sp=sprite, vt=vtt: analyse_sprite(
                        sp,
                        vt,
                        database,
                        pipeline,
                        identifier,
                        options,
                        on_sample=cb,
                        on_total=tot,
                    ),
                )
            )
        for p in iter_video_paths(list(paths or [])):
            jobs.append(
                (
                    p,
                    lambda cb, tot, p=p: analyse_video(
                        p,
                        database,
                        pipeline,
                        identifier,
                        options,
                        on_sample=cb,
                        on_total=tot,
                        engine=eng,
                    ),
                )
            )
        if not jobs:
            raise InputError(f"no video files found in {', '.join(paths or [])}")

        out_fmt = resolve_format(fmt)
        single = len(jobs) == 1
        renderer = Renderer(
            out_fmt,
            columns=PEOPLE_COLUMNS,
            table_columns=[c for c in PEOPLE_COLUMNS if c != "error"],
            title="people",
            wrap=lambda recs: recs[0] if single and len(recs) == 1 else recs,
        )
        all_rows: list[dict[str, Any]] = []
        errors = known = people = samples = 0
        for source, job in jobs:
            try:
                report = _run_with_progress(job, source, quiet)
            except InputError as exc:
                errors += 1
                file_error(str(exc))
                # scripts get one record per input, in order: this one says why it has none
                row = error_row(source, str(exc))
                if out_fmt is Format.table:  # the reason is on stderr; the table stays narrow
                    row |= {"segments": "(unreadable)", "error": None}
                renderer.add(error_record(source, str(exc)), [row])
                continue
            if report.warning and not quiet:
                warn_line(report.warning)
            samples += report.samples
            known += len(report.known)
            people += len(report.people)
            b64 = crops_base64(report) if embed_crops else None
            rows = report.rows()
            if not rows and out_fmt is Format.table:
                rows = [{"source": source, "person": None, "segments": "(nobody)", "frames": 0}]
            renderer.add(report.to_record(crops=b64) | {"error": None}, rows)
            stem = Path(source).stem
            try:
                if crops is not None:
                    save_crops(report, crops / stem)
                if timeline is not None:
                    target = (
                        timeline
                        if single
                        else timeline.with_name(
                            f"{timeline.stem}-{stem}{timeline.suffix or '.png'}"
                        )
                    )
                    draw_timeline(report, target)
            except OSError as exc:  # e.g. disk full, or a file named like a crops sub-folder
                errors += 1
                warn_line(f"{source}: cannot write outputs ({_os_reason(exc)})")
            if detections is not None:
                all_rows.extend(report.detections)
        renderer.close()
        if detections is not None:
            try:
                write_detections(all_rows, detections)
            except OSError as exc:
                raise InputError(f"{detections}: cannot write ({_os_reason(exc)})") from None
        if not quiet:
            stderr().print(
                f"done: {count(len(jobs), 'video')}, {count(samples, 'frame')} sampled, "
                f"{count(known, 'known person')} ({people} incl. unknown tracks), "
                f"{count(errors, 'error')}",
                highlight=False,
            )
        raise typer.Exit(3 if errors else (0 if known else 1))


def samples_text(done: int, total: int | None) -> str:
    """The progress line's count: ``12/432 samples``, or ``12 samples`` when the total is unknown."""
    if total is None:
        return f"{done} samples"
    return f"{done}/{max(total, done)} samples"


def _run_with_progress(job: Any, source: str, quiet: bool) -> Any:
    """Run one video with a progress line on stderr: samples done / total, the current time in
    the video, elapsed time and (when the video's duration, hence the total, is known) ETA.
    No bar when stderr is not a terminal (it would only leave a blank line in a log)."""
    if quiet or not stderr().is_terminal:
        return job(None, None)
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Count(ProgressColumn):
        def render(self, task: Any) -> Text:
            total = None if task.total is None else int(task.total)
            return Text(samples_text(int(task.completed), total))

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        Count(),
        TextColumn("at {task.fields[at]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr(),
        transient=True,
    ) as progress:
        task = progress.add_task(Path(source).name, total=None, at="0s")

        def on_total(total: int | None) -> None:
            progress.update(task, total=total)

        def on_sample(frame: Any) -> None:
            progress.update(task, advance=1, at=f"{frame.time:.1f}s")

        return job(on_sample, on_total)
