"""Glue shared by several commands: building the pipeline config and running ``embed``."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import UsageError
from ..render import Format, Renderer, count
from .common import (
    check_output_dir,
    check_output_file,
    file_error,
    resolve_format,
    track,
    warn_line,
)


def build_config(
    models: str | None,
    *,
    weights: tuple[float, ...] | None = None,
    detector: str | None = None,
    upsample: int | None = 0,
    max_side: int = 1600,
    min_face: int = 0,
    flip: bool | None = None,
    offline: bool = False,
) -> Any:
    """A :class:`~facekit.pipeline.PipelineConfig` from command-line options."""
    from ..detect import DEFAULT_DETECTOR
    from ..embed import DEFAULT_MODELS
    from ..models.recommend import resolve_best
    from ..models.registry import parse_model_list
    from ..pipeline import PipelineConfig

    models, detector = resolve_best(models, detector)  # --models best / --detector best-nc
    names = tuple(parse_model_list(models, kind="recognizer")) if models else DEFAULT_MODELS
    if detector:
        parse_model_list(detector, kind="detector")
    if weights is not None and len(weights) != len(names):
        raise UsageError(
            f"--weights has {len(weights)} values for {len(names)} models ({', '.join(names)})"
        )
    return PipelineConfig(
        detector=detector or DEFAULT_DETECTOR,
        models=names,
        weights=weights,
        max_side=max_side,
        upsample=upsample or 0,
        min_face=min_face,
        flip=flip,
        offline=True if offline else None,
    )


def expand_inputs(paths: list[str], stdin: IO[str] | None = None) -> list[str]:
    """Files, folders (recursive, image extensions) and ``-`` (paths on stdin) -> file list."""
    from ..imageio import iter_image_paths

    if "-" in paths and stdin is not None and stdin is not sys.stdin:
        lines = [ln.strip() for ln in stdin.read().splitlines() if ln.strip()]
        paths = [q for p in paths for q in (lines if p == "-" else [p])]
    return list(iter_image_paths(paths))


@dataclass
class Summary:
    """Counts shown at the end of a batch, and the exit code they imply."""

    files: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    skipped: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def add(self, result: Any, reused: bool = False) -> None:
        self.files += 1
        if result.error:
            self.errors += 1
            return
        self.faces += len(result.faces)
        self.no_face += len(result.faces) == 0
        self.skipped += reused

    def line(self) -> str:
        parts = [
            count(self.files, "file"),
            count(self.faces, "face"),
            f"{self.no_face} without a face",
            count(self.errors, "error"),
        ]
        if self.skipped:
            parts.append(f"{self.skipped} unchanged (skipped)")
        parts += [f"{v} {k}" for k, v in self.extra.items()]
        return "done: " + ", ".join(parts)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 3
        return 0 if self.faces else 1


#: The terminal table of ``embed``: what fits in 80 columns (CSV and JSON keep every field).
EMBED_TABLE_COLUMNS = ["source", "face", "box", "det_score", "size", "yaw", "note"]
#: CSV columns before the embeddings; ``error`` is set (and ``face`` empty) for unreadable
#: files, ``face`` is empty and ``error`` blank for files without a face.
EMBED_CSV_COLUMNS = [
    "source",
    "face",
    "x",
    "y",
    "w",
    "h",
    "landmarks",
    "det_score",
    "face_size",
    "yaw",
    "pitch",
    "roll",
    "time",
    "digest",
    "error",
    "dims",
]


def check_embed_outputs(output: Path | None, sidecar: bool, files: list[str]) -> None:
    """Refuse unwritable outputs before any photo is processed."""
    check_output_file(output, "--output")
    if sidecar:
        for folder in dict.fromkeys(str(Path(f).parent) for f in files):
            check_output_dir(Path(folder), "--sidecar")


def embed_table_rows(result: Any) -> list[dict[str, Any]]:
    """Short rows for the terminal table of ``embed``."""
    if result.error:
        msg = result.error
        if msg.startswith(f"{result.source}: "):
            msg = msg[len(result.source) + 2 :]
        return [{"source": result.source, "face": "ERROR", "note": msg}]
    if len(result.faces) == 0:
        return [{"source": result.source, "face": "-", "note": "no face found"}]
    from ..facetable import pose_columns

    rows = []
    for i, (x, y, w, h) in enumerate(result.faces.xywh.tolist()):
        yaw = pose_columns(result.faces, i)["yaw"]
        rows.append(
            {
                "source": result.source,
                "face": i,
                "box": f"{x:.0f},{y:.0f},{w:.0f},{h:.0f}",
                "det_score": float(result.faces.confidence[i]),
                "size": f"{float(result.faces.size[i]):.0f}",
                "yaw": None if yaw is None else f"{yaw:.0f}",
            }
        )
    return rows


def embed_csv_rows(result: Any) -> list[dict[str, Any]]:
    """CSV rows of one file: one per face with embeddings, or one marking no face / the error."""
    from ..facetable import face_rows

    rows = face_rows(result, with_embeddings=True)
    if not rows:
        return [{"source": result.source, "digest": result.digest, "error": result.error}]
    dims = ",".join(f"{m}:{v.shape[1]}" for m, v in result.embeddings.vectors.items())
    for row in rows:
        row["dims"] = dims
    return rows


def embed_inputs(
    paths: list[str],
    config: Any,
    *,
    output: Path | None,
    fmt: Format | None,
    sidecar: bool,
    force: bool,
    workers: int | None,
    quiet: bool,
    progress: Any,
    stdin: IO[str] | None,
    engine: Any = None,
    max_yaw: float | None = None,
) -> Summary:
    """Run ``facekit embed``: returns the summary; writes table / sidecars / stdout records.

    Faces turned more than ``max_yaw`` degrees (:mod:`facekit.pose`) are left out.
    """
    from ..facetable import FaceTable, record_for, write_atomic
    from ..pipeline import embed_incremental
    from ..pose import drop_beyond_yaw

    files = expand_inputs(paths, stdin)
    check_embed_outputs(output, sidecar, files)
    previous = None
    if output is not None and output.exists() and not force:
        previous = FaceTable.read(output)
        want = _models_meta(config, max_yaw)
        if {k: previous.models.get(k) for k in want} != want:
            warn_line(f"{output}: written with other models or detector; re-embedding everything")
            previous = None
    renderer = None
    if fmt is not None or (output is None and not sidecar):
        out_fmt = resolve_format(fmt)
        # CSV keeps every column (embeddings included); the table shows a readable subset.
        renderer = Renderer(
            out_fmt,
            columns=EMBED_CSV_COLUMNS + [f"emb_{m}" for m in config.models],
            table_columns=EMBED_TABLE_COLUMNS,
            title="faces",
        )
    summary = Summary()
    results = []
    stream = embed_incremental(
        config, files, previous, force=force, workers=workers, progress=progress, engine=engine
    )
    for result, reused in track(stream, len(files), "embedding", quiet, unit="files"):
        result, dropped = drop_beyond_yaw(result, max_yaw)
        if dropped:
            summary.extra["faces beyond --max-yaw left out"] = (
                summary.extra.get("faces beyond --max-yaw left out", 0) + dropped
            )
        summary.add(result, reused)
        if result.error:
            file_error(result.error)
        if output is not None:
            results.append(result)
        if sidecar and not result.error:
            rec = record_for(result)
            write_atomic(
                Path(result.source + ".faces.json"),
                lambda tmp, rec=rec: Path(tmp).write_text(json.dumps(_plain(rec)) + "\n"),
            )
        if renderer is not None:
            renderer.add(
                record_for(result),
                embed_csv_rows(result) if renderer.fmt is Format.csv else None,
                embed_table_rows(result),
            )
    if renderer is not None:
        renderer.close()
    if output is not None:
        table = FaceTable.from_results(results, _models_meta(config, max_yaw))
        if previous is not None:
            old_sources = set(previous.files) - set(table.files)
            keep = FaceTable(
                previous.frame[previous.frame.source.isin(old_sources)],
                {k: v for k, v in previous.files.items() if k in old_sources},
                previous.models,
            )
            table = keep.merged_with(table, ())
        table.write(output)
    return summary


def _models_meta(config: Any, max_yaw: float | None = None) -> dict[str, str]:
    from ..embed import embedder_fingerprint
    from ..models.runtime import fingerprint

    meta = {m: embedder_fingerprint(m, config.flip) for m in config.models}
    meta["detector"] = (
        f"{config.detector}:{fingerprint(config.detector)}:up{config.upsample}:max{config.max_side}"
    )
    if max_yaw is not None:  # a table filtered by pose is not reused by a run without it
        meta["detector"] += f":yaw{max_yaw:g}"
    return meta


def _plain(rec: dict[str, Any]) -> Any:
    from ..render import to_jsonable

    return to_jsonable(rec)
