"""``facekit cluster`` (group unknown faces) and ``facekit enroll`` (name a cluster)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError, UsageError
from ..render import count
from .common import (
    DbOpt,
    DetectorOpt,
    DownloadBars,
    FormatOpt,
    MaxSideOpt,
    ModelsOpt,
    OfflineOpt,
    QuietOpt,
    UpsampleOpt,
    VerboseOpt,
    WeightsOpt,
    WorkersOpt,
    check_output_dir,
    check_output_file,
    default_db,
    file_error,
    handle_errors,
    parse_weights,
    resolve_format,
    setup_logging,
    stderr,
    track,
    warn_line,
)
from .runner import Summary, build_config, expand_inputs

log = logging.getLogger(__name__)

CLUSTER_COLUMNS = [
    "id",
    "size",
    "person",
    "name",
    "cohesion",
    "sources",
    "representative",
    "suggestion",
]


def faces_path(cluster_file: Path) -> Path:
    """The face table kept beside a cluster file (embeddings for re-runs and ``enroll``)."""
    return cluster_file.with_name(cluster_file.stem + ".faces.parquet")


#: Columns every embed table has (``facekit embed -o``); a database's faces table lacks them.
TABLE_COLUMNS = ("source", "face", "x", "y", "w", "h")


def read_face_table(path: str | Path) -> Any:
    """A ``facekit embed`` table, or a one-line :class:`InputError` for any other Parquet."""
    from ..facetable import FaceTable

    table = FaceTable.read(path, lean=True)  # vectors as 2-D arrays: a third of the memory
    missing = [c for c in TABLE_COLUMNS if c not in table.frame.columns]
    if missing or not table.model_ids:
        what = f"no {', '.join(repr(c) for c in missing)} column" if missing else "no embeddings"
        raise InputError(
            f"{path}: not a face table from `facekit embed -o` ({what}); "
            "a database's faces table cannot be clustered: give the photos or an embed table"
        )
    return table


def _check_output_file(path: Path) -> None:
    """Fail before any work when ``path``'s folder is missing, not a folder or read-only."""
    folder = path.parent
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, not a file")
    if not folder.exists():
        raise UsageError(f"{folder}: no such folder (create it first)")
    if not folder.is_dir():
        raise UsageError(f"{folder}: not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"{folder}: not writable")


def _video_exts() -> frozenset[str]:
    try:
        from ..decode import VIDEO_EXTENSIONS
    except ImportError:  # decode not available: no video support
        return frozenset()
    return frozenset(VIDEO_EXTENSIONS)


def _split_inputs(paths: list[str]) -> tuple[list[str], list[str], list[str]]:
    """-> (parquet tables, videos, other inputs for image expansion)."""
    vexts = _video_exts()
    tables, videos, images = [], [], []
    for p in paths:
        ext = os.path.splitext(p)[1].lower()
        if ext == ".parquet" and not os.path.isdir(p):
            tables.append(p)
        elif ext in vexts and not os.path.isdir(p):
            videos.append(p)
        else:
            images.append(p)
            if os.path.isdir(p) and vexts:
                from ..decode import iter_video_paths

                videos.extend(q for q in iter_video_paths([p]) if q != p)
    return tables, videos, images


def _collect(
    paths: list[str],
    config: Any,
    *,
    previous_table: Any,
    interval: float,
    workers: int | None,
    quiet: bool,
    progress: Any,
    summary: Summary,
) -> Any:
    """Embed (or reuse) every face of the inputs; returns one FaceTable."""
    from ..facetable import FaceTable
    from ..pipeline import Pipeline, embed_incremental
    from .runner import _models_meta

    tables, videos, image_args = _split_inputs(paths)
    results = []
    files = expand_inputs(image_args, sys.stdin) if image_args else []
    if files:
        stream = embed_incremental(
            config, files, previous_table, workers=workers, progress=progress
        )
        for result, reused in track(stream, len(files), "embedding", quiet):
            summary.add(result, reused)
            if result.error:
                file_error(result.error)
            results.append(result)
    if videos:
        from ..decode import iter_frames

        pipe = Pipeline(config, progress)
        for v in videos:
            try:
                for frame in track(iter_frames(v, interval=interval), None, f"sampling {v}", quiet):
                    r = pipe.process_rgb(frame.rgb, v, time=frame.time)
                    summary.faces += len(r.faces)
                    results.append(r)
                summary.files += 1
            except InputError as exc:
                summary.files += 1
                summary.errors += 1
                file_error(str(exc))
    meta = _models_meta(config)
    table = FaceTable.from_results(results, meta)
    for t in tables:
        other = read_face_table(t)
        missing = [m for m in config.models if m not in other.model_ids]
        if missing:
            raise UsageError(
                f"{t}: has no {', '.join(missing)} embeddings (has {', '.join(other.model_ids)}); "
                f"use --models {','.join(other.model_ids)} or re-embed"
            )
        summary.files += len(other.files)
        summary.faces += len(other.frame)
        summary.errors += sum(1 for f in other.files.values() if f.get("error"))
        table = table.merged_with(other, set(other.files)) if len(table.frame) else other
    return table


def _refs(table: Any) -> list[Any]:
    import numpy as np

    from ..cluster import FaceRef

    f = table.frame
    times = f["time"].tolist() if "time" in f.columns else [None] * len(f)
    cols = [f[c].tolist() for c in ("source", "face", "x", "y", "w", "h")]
    return [
        FaceRef(
            str(s),
            int(i),
            (float(x), float(y), float(w), float(h)),
            None if t is None or (isinstance(t, float) and np.isnan(t)) else float(t),
        )
        for s, i, x, y, w, h, t in zip(*cols, times, strict=True)
    ]


def cluster_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="Photos, folders, videos, Parquet tables from `facekit embed`, or - for paths on stdin.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Cluster file (JSON) to write; when it exists, clusters keep their ids and names. "
            "Embeddings are kept beside it in <name>.faces.parquet.",
        ),
    ] = None,
    fmt: FormatOpt = None,
    method: Annotated[
        str,
        typer.Option(
            "--method", help="agglomerative (default), hdbscan or dbscan (see docs/clustering.md)."
        ),
    ] = "agglomerative",
    min_size: Annotated[
        int, typer.Option("--min-size", min=1, help="Smallest cluster; smaller groups are noise.")
    ] = 2,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Fused-evidence cut (on evidence that penalises faces resembling many people, docs/clustering.md). Default: the cut at which at most 1% of faces land in another person's cluster, for the number of faces clustered (about 2.7 at 300 faces, 2.9 at 2,000 with dlib).",
        ),
    ] = None,
    sheets: Annotated[
        Path | None,
        typer.Option(
            "--sheets",
            help="Write one contact-sheet PNG per cluster into this folder (tiles labelled SOURCE#FACE).",
        ),
    ] = None,
    update: Annotated[
        bool,
        typer.Option(
            "--update",
            help="Add the inputs' new faces to the existing -o clustering (the default when its "
            "state files are usable); fail if it cannot be updated.",
        ),
    ] = False,
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild", help="Cluster every input face from scratch (ids still matched to -o)."
        ),
    ] = False,
    db: DbOpt = None,
    suggest_names: Annotated[
        bool,
        typer.Option("--suggest", help="Suggest known people from the database for each cluster."),
    ] = False,
    interval: Annotated[
        float,
        typer.Option("--interval", "-i", min=0.01, help="Seconds between sampled video frames."),
    ] = 5.0,
    models: ModelsOpt = None,
    weights: WeightsOpt = None,
    detector: DetectorOpt = None,
    upsample: UpsampleOpt = 0,
    max_side: MaxSideOpt = 1600,
    workers: WorkersOpt = None,
    offline: OfflineOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Group faces by person without a gallery; faces that fit nowhere are left as noise.

    Example:

        facekit cluster ./photos -o clusters.json --sheets sheets/

        facekit cluster faces.parquet -o clusters.json -d faces.db --suggest

        facekit cluster ./new-photos -o clusters.json    # add faces to an existing clustering

    Clusters get stable ids (c-0001, ...). When the -o file exists, the run is incremental:
    faces of files not clustered before join the existing clusters or form new ones, and
    the old clusters keep their faces, id, person and name (state kept beside the file:
    <name>.faces.parquet, <name>.state.npz, <name>.knn.voy). --rebuild clusters all inputs
    from scratch, still keeping the ids of clusters that share faces with the previous
    run. Name a cluster with `facekit enroll`.

    Exit codes: 0 clusters found; 1 no cluster; 2 usage error; 3 some inputs unreadable;
    5 database error.
    """
    from ..calibration import Calibration
    from ..cluster import cluster_faces, read_cluster_file, write_cluster_file
    from ..cluster_suggest import add_suggestions
    from ..render import Renderer
    from ..sheets import write_sheets

    setup_logging(verbose, quiet)
    with handle_errors():
        check_output_file(output, "--output")  # outputs: checked before any work
        check_output_dir(sheets, "--sheets")
        database = None
        if suggest_names:
            from ..database import Database

            database = Database.open(db or default_db())
        if database is not None and not models and not detector:
            config = database.config
        else:
            config = build_config(
                models,
                weights=parse_weights(weights),
                detector=detector,
                upsample=upsample,
                max_side=max_side,
                offline=offline,
            )
        from ..cluster import METHODS

        if method not in METHODS:
            raise UsageError(
                f"unknown clustering method {method!r} (choose from {', '.join(METHODS)})"
            )
        if output is not None:
            _check_output_file(output)
        if sheets is not None:
            if sheets.exists() and not sheets.is_dir():
                raise UsageError(f"{sheets}: not a folder")
            _check_output_file(sheets / "x" if sheets.is_dir() else sheets)
        if rebuild and update:
            raise UsageError("give --update or --rebuild, not both")
        previous = None
        previous_table = None
        state = None
        if output is not None and output.exists():
            previous = read_cluster_file(output)
            fp = faces_path(output)
            if fp.exists():
                from .runner import _models_meta

                previous_table = read_face_table(fp)
                want = _models_meta(config)
                if {k: previous_table.models.get(k) for k in want} != want:
                    previous_table = None  # other models or detector: embed again
            if previous_table is not None and not rebuild:
                from ..incremental import load_state

                state = load_state(output, len(previous_table.frame))
        elif update:
            raise UsageError(
                f"--update needs an existing cluster file (-o); {output} does not exist"
            )
        summary = Summary()
        bars = DownloadBars(quiet)
        try:
            table = _collect(
                paths,
                config,
                previous_table=previous_table,
                interval=interval,
                workers=workers,
                quiet=quiet,
                progress=bars,
                summary=summary,
            )
        finally:
            bars.close()
        if database is not None and set(database.models) == set(config.models):
            calibration = database.calibration
        else:
            calibration = Calibration.default(
                list(config.models),
                dict(zip(config.models, config.weights, strict=True)) if config.weights else None,
            )
        from ..cluster import _default_threshold
        from ..graph import DEFAULT_K, EvidenceSpace
        from ..incremental import (
            load_index,
            norm_key,
            save_state,
            settings_of,
            update_clusters,
        )
        from ..types import Embeddings

        space = EvidenceSpace.from_calibration(calibration)
        thr = (
            float(threshold)
            if threshold is not None
            else _default_threshold(method, calibration, len(table.frame))
        )
        from .runner import _models_meta

        norm = norm_key(calibration, method == "agglomerative")
        settings = settings_of(space, thr, min_size, DEFAULT_K, _models_meta(config), norm)
        if threshold is None and state is not None and not state.matches(settings):
            # the default cut grows with the number of faces; an update keeps the cut of the
            # last full run (--rebuild re-derives it for the current number of faces)
            kept = float(state.settings.get("threshold", thr))
            alt = settings_of(space, kept, min_size, DEFAULT_K, _models_meta(config), norm)
            if state.matches(alt):
                thr, settings = kept, alt
        incremental = (
            state is not None
            and previous_table is not None
            and method == "agglomerative"
            and state.matches(settings)
        )
        if update and not incremental:
            raise UsageError(
                f"{output}: cannot be updated (no usable state beside it, or other models, "
                "method or threshold); run with --rebuild"
            )
        if incremental:
            assert previous_table is not None and state is not None and output is not None
            old_sources = set(previous_table.frame.source)
            new_table = table.take(~table.frame.source.isin(old_sources).to_numpy())
            new_table.files = {}
            all_table = previous_table.merged_with(new_table, ())
            all_table.files = {**previous_table.files, **table.files}
            old_emb = previous_table.embeddings()
            new_emb = (
                new_table.embeddings()
                if len(new_table.frame)
                else Embeddings.empty({m: old_emb.vectors[m].shape[1] for m in old_emb.models})
            )
            result, x, index = update_clusters(
                old_emb,
                state,
                new_emb,
                calibration,
                threshold=thr,
                min_size=min_size,
                refs=_refs(all_table),
                previous=previous,
                index=load_index(output, space.project(old_emb.vectors)),
            )
            table = all_table
            emb = None
            log.info(
                "incremental: %d new faces added to %d", len(new_table.frame), len(old_sources)
            )
        else:
            emb = table.embeddings() if len(table.frame) else None
            if emb is None:
                emb = Embeddings.empty({m: 0 for m in config.models})
            result = cluster_faces(
                emb,
                calibration,
                method=method,
                min_size=min_size,
                threshold=thr,
                refs=_refs(table),
                previous=previous,
            )
            x = result.vectors
            index = result.graph.index if result.graph is not None else None
        if database is not None and len(table.frame):
            add_suggestions(result, emb if emb is not None else table.embeddings(), database)
        doc = result.to_record()
        if output is not None:
            table.write(faces_path(output))
            if method == "agglomerative":
                save_state(output, result, settings, x, index)
            write_cluster_file(output, doc)
        if sheets is not None:
            n = write_sheets(result, sheets)
            if not quiet:
                stderr().print(f"{count(n, 'contact sheet')} in {sheets}", highlight=False)
        show = fmt is not None or output is None
        if show:
            renderer = Renderer(
                resolve_format(fmt),
                columns=[c for c in CLUSTER_COLUMNS if c != "suggestion" or database is not None],
                title="clusters",
                wrap=lambda recs: recs[0],
            )
            renderer.add(doc, result.rows())
            renderer.close()
        summary.extra = {"clusters": len(result.clusters), "noise faces": int(len(result.noise))}
        if not quiet:
            stderr().print(summary.line(), highlight=False)
        if summary.errors:
            raise typer.Exit(3)
        raise typer.Exit(0 if result.clusters else 1)


# --------------------------------------------------------------------------- enroll
def _parse_excludes(items: list[str]) -> tuple[set[str], set[tuple[str, int]]]:
    whole, faces = set(), set()
    for item in items:
        src, sep, idx = item.rpartition("#")
        if sep and idx.isdigit():
            faces.add((src, int(idx)))
        else:
            whole.add(item)
    return whole, faces


def _excluded(source: str, whole: set[str]) -> bool:
    """``source`` is excluded as a file, or lies inside an excluded folder."""
    return any(source == w or source.startswith(w.rstrip("/\\") + os.sep) for w in whole)


def enroll_cmd(
    cluster_id: Annotated[
        str,
        typer.Argument(metavar="CLUSTER_ID", help="Cluster id, e.g. c-0003.", show_default=False),
    ],
    name: Annotated[str | None, typer.Option("--name", help="Display name of the person.")] = None,
    person: Annotated[
        str | None,
        typer.Option(
            "--id", help="Person id (new or existing). Default: the name, lower-cased, dashes."
        ),
    ] = None,
    db: DbOpt = None,
    clusters: Annotated[
        Path,
        typer.Option("--clusters", "-c", help="Cluster file written by `facekit cluster -o`."),
    ] = Path("clusters.json"),
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            "-x",
            metavar="SOURCE[#FACE]",
            help="Leave out a wrongly clustered face (SOURCE#FACE), every face of SOURCE, or of a folder. Repeatable.",
        ),
    ] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Add a cluster's faces to the database as a person (new or existing).

    Example:

        facekit enroll c-0003 --name "Ada Lovelace" --id ada -d faces.db --clusters clusters.json

        facekit enroll c-0003 --id ada -d faces.db -x party/img_0042.jpg#1

    The cluster file records the person, so re-running `facekit cluster` keeps the name.

    Enrolling the same faces again stores them once (faces already in the database are
    reported and skipped). A crop of each face is stored in the database, so that
    `build-index --rebuild` can embed it again with other models.

    Exit codes: 0 enrolled (or already enrolled); 1 no face left to enrol; 2 usage error;
    3 input error; 5 database error.
    """
    from ..cluster import read_cluster_file, write_cluster_file
    from ..database import Database
    from ..enroll import (
        check_members,
        crop_for_member,
        enroll_faces,
        member_box,
        members_from_table,
        members_reembedded,
    )
    from ..facetable import FaceTable
    from ..sheets import video_frame

    setup_logging(verbose, quiet)
    with handle_errors():
        if not name and not person:
            raise UsageError("give --id or --name (or both)")
        person_id = person or "-".join((name or "").lower().split())
        doc = read_cluster_file(clusters)
        cluster = next(
            (c for c in doc["clusters"] if isinstance(c, dict) and c.get("id") == cluster_id), None
        )
        if cluster is None:
            known = ", ".join(str(c.get("id")) for c in doc["clusters"][:10] if isinstance(c, dict))
            raise UsageError(f"{clusters}: no cluster {cluster_id!r} (clusters: {known or 'none'})")
        whole, faces = _parse_excludes(exclude or [])
        check_members(cluster, clusters)
        members = [
            m
            for m in cluster["members"]
            if not _excluded(m["source"], whole)
            and (m["source"], int(m.get("face", 0))) not in faces
        ]
        if not members:
            if not quiet:
                warn_line(f"{cluster_id}: every face is excluded; nothing enrolled")
            raise typer.Exit(1)
        db_path = db or default_db()
        database = Database.open(db_path)
        models = list(database.models)
        found = None
        fp = faces_path(clusters)
        if fp.exists():
            found = members_from_table(members, FaceTable.read(fp), models)
        if found is None:
            if not quiet:
                warn_line(f"{fp}: embeddings not usable for this database; re-embedding the photos")
            found = members_reembedded(members, database.config)
        emb, landmarks = found
        # a crop of each face is stored, so that later rebuilds can embed it again
        to_enroll = []
        for m, lm in zip(members, landmarks, strict=True):
            t = m.get("time")
            frame = None if t is None else video_frame(m["source"], float(t))
            to_enroll.append(
                crop_for_member(
                    m["source"],
                    member_box(m),
                    lm,
                    time=None if t is None else float(t),
                    frame=frame,
                )
            )
        result = enroll_faces(db_path, person_id, name, emb, to_enroll)
        added = result.added
        for what, why in result.skipped:
            if not quiet:
                warn_line(f"{what}: {why}")
        cluster["person"] = person_id
        cluster["name"] = name if name is not None else cluster.get("name")
        cluster["enrolled"] = int(cluster.get("enrolled", 0)) + int(added)
        if exclude:
            cluster["excluded"] = sorted(set(cluster.get("excluded", [])) | set(exclude))
        write_cluster_file(clusters, doc)
        if not quiet:
            already = f"; {len(result.skipped)} already in the database" if result.skipped else ""
            stderr().print(
                f"enrolled {count(added, 'face')} of {cluster_id} as {person_id}"
                + (f" ({name})" if name else "")
                + already,
                highlight=False,
                markup=False,
            )
        # the same enrolment twice is not an error: the faces are there
        raise typer.Exit(0 if added or result.skipped else 1)
