"""``facekit cluster`` (group unknown faces) and ``facekit enroll`` (name a cluster)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import InputError, UsageError
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
        other = FaceTable.read(t)
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
    times = f["time"].to_numpy() if "time" in f.columns else [None] * len(f)
    return [
        FaceRef(
            str(s),
            int(i),
            (float(x), float(y), float(w), float(h)),
            None if t is None or (isinstance(t, float) and np.isnan(t)) else float(t),
        )
        for s, i, x, y, w, h, t in zip(f.source, f.face, f.x, f.y, f.w, f.h, times, strict=True)
    ]


def suggest(result: Any, embeddings: Any, db: Any, top_k: int = 3) -> None:
    """Fill ``cluster.suggestions``: nearest known people by centroid, plus member votes."""
    from ..cluster import centroid
    from ..identify import Identifier

    ident = Identifier(db, top_k=top_k)
    for c in result.clusters:
        sub = embeddings[c.members]
        cen = ident.match(centroid(sub))[0]
        votes: dict[str, int] = {}
        for m in ident.match(sub):
            if m.identity is not None:
                votes[m.identity.person] = votes.get(m.identity.person, 0) + 1
        out = []
        for cand in cen.candidates:
            out.append(
                {
                    "person": cand.person,
                    "name": cand.name,
                    "confidence": round(float(cand.confidence), 1),
                    "votes": votes.pop(cand.person, 0),
                }
            )
        for person, n in sorted(votes.items(), key=lambda kv: -kv[1]):
            p = db.persons.get(person)
            out.append(
                {"person": person, "name": p.name if p else None, "confidence": None, "votes": n}
            )
        for s in out:
            s["vote_share"] = round(s["votes"] / c.size, 3)
        c.suggestions = out


def write_sheets(result: Any, folder: Path, *, per_sheet: int = 64, thumb: int = 112) -> int:
    """One contact-sheet PNG per cluster (grid of face thumbnails); returns sheets written."""
    import numpy as np
    from PIL import Image, ImageDraw

    from ..align import box_crops
    from ..imageio import load_image

    folder.mkdir(parents=True, exist_ok=True)
    cache: dict[str, Any] = {}
    written = 0
    for c in result.clusters:
        refs = [result.refs[int(i)] for i in c.members[:per_sheet]]
        tiles = []
        for ref in refs:
            if ref.time is not None:  # video frame: decode that instant
                rgb = _video_frame(ref.source, ref.time)
            else:
                if ref.source not in cache:
                    try:
                        cache = {ref.source: load_image(ref.source).rgb}  # keep one image
                    except Exception as exc:  # noqa: BLE001 - a missing photo leaves a blank tile
                        log.warning("%s: no thumbnail (%s)", ref.source, exc)
                        cache = {ref.source: None}
                rgb = cache[ref.source]
            if rgb is None:
                tiles.append(np.zeros((thumb, thumb, 3), np.uint8))
                continue
            x, y, w, h = ref.box
            tiles.append(box_crops(rgb, np.array([[x, y, x + w, y + h]]), size=thumb)[0])
        cols = min(8, max(1, len(tiles)))
        rows = (len(tiles) + cols - 1) // cols
        head = 20
        sheet = Image.new("RGB", (cols * thumb, rows * thumb + head), "white")
        ImageDraw.Draw(sheet).text(
            (4, 4),
            f"{c.id}  {c.size} faces" + (f"  {c.name or c.person}" if c.person else ""),
            fill="black",
        )
        for k, t in enumerate(tiles):
            sheet.paste(Image.fromarray(t), ((k % cols) * thumb, head + (k // cols) * thumb))
        sheet.save(folder / f"{c.id}.png")
        written += 1
    return written


def _video_frame(source: str, t: float) -> Any:
    try:
        from ..decode import iter_frames

        for frame in iter_frames(source, start=t, end=t + 0.5, interval=1.0, sampling="exact"):
            return frame.rgb
    except Exception as exc:  # noqa: BLE001
        log.warning("%s@%.1fs: no thumbnail (%s)", source, t, exc)
    return None


def cluster_cmd(
    paths: Annotated[
        list[str],
        typer.Argument(
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
            help="Fused-evidence cut (default 2.75: 0.3% false merges per comparison).",
        ),
    ] = None,
    sheets: Annotated[
        Path | None,
        typer.Option("--sheets", help="Write one contact-sheet PNG per cluster into this folder."),
    ] = None,
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

    Clusters get stable ids (c-0001, ...): re-running onto the same -o file keeps the id,
    person and name of every cluster that shares faces with a previous one; new clusters
    get fresh ids. Name a cluster with `facekit enroll`.

    Exit codes: 0 clusters found; 1 no cluster; 2 usage error; 3 some inputs unreadable;
    5 database error.
    """
    from ..calibration import Calibration
    from ..cluster import cluster_faces, read_cluster_file, write_cluster_file
    from ..facetable import FaceTable
    from ..render import Renderer

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
        previous = None
        previous_table = None
        if output is not None and output.exists():
            previous = read_cluster_file(output)
            fp = faces_path(output)
            if fp.exists():
                from .runner import _models_meta

                previous_table = FaceTable.read(fp)
                want = _models_meta(config)
                if {k: previous_table.models.get(k) for k in want} != want:
                    previous_table = None  # other models or detector: embed again
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
        emb = table.embeddings() if len(table.frame) else None
        if database is not None and set(database.models) == set(config.models):
            calibration = database.calibration
        else:
            calibration = Calibration.default(
                list(config.models),
                dict(zip(config.models, config.weights, strict=True)) if config.weights else None,
            )
        from ..types import Embeddings

        if emb is None:
            emb = Embeddings.empty({m: 0 for m in config.models})
        result = cluster_faces(
            emb,
            calibration,
            method=method,
            min_size=min_size,
            threshold=threshold,
            refs=_refs(table),
            previous=previous,
        )
        if database is not None and len(emb):
            suggest(result, emb, database)
        doc = result.to_record()
        if output is not None:
            table.write(faces_path(output))
            write_cluster_file(output, doc)
        if sheets is not None:
            n = write_sheets(result, sheets)
            if not quiet:
                stderr().print(f"{n} contact sheets in {sheets}", highlight=False)
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
            frame = None if t is None else _video_frame(m["source"], float(t))
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
                f"enrolled {added} faces of {cluster_id} as {person_id}"
                + (f" ({name})" if name else "")
                + already,
                highlight=False,
                markup=False,
            )
        # the same enrolment twice is not an error: the faces are there
        raise typer.Exit(0 if added or result.skipped else 1)
