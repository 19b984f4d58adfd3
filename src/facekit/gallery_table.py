"""``build-index --from-embeddings``: a database from a face table written by ``facekit embed``.

A library embedded once (``facekit embed ./people -o faces.parquet``) need not be embedded
again to become a database. Each photo's face 0 (the largest) is enrolled; the person is the
table's ``person`` column when it has one, else the name of the photo's parent folder
(``people/alice/1.jpg`` -> ``alice``). Video rows (with a ``time``) are skipped.

The table is streamed in batches of rows (pyarrow), so memory grows with the faces kept
(the embeddings themselves, ``4 * dim`` bytes per face and model, plus one row of the faces
table), not with the file. The rules of :func:`facekit.gallery.build_index` apply: stored
settings are kept (the table's models and detector must match the database's unless
``rebuild``), enrolled faces are kept, photos whose table entry is an error keep their
stored faces, and mass removals are refused without ``allow_mass_removal``.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UsageError
from .facetable import FOOTER_LIMITS
from .gallery import (
    BuildReport,
    _check_removals,
    _persons,
    _Plan,
    check_db_path,
    default_encrypt,
    open_for_build,
)

__all__ = ["build_from_embeddings"]

#: Rows read per batch from the table.
BATCH_ROWS = 65_536

log = logging.getLogger(__name__)


def _person_of_source(source: str) -> str:
    return os.path.basename(os.path.dirname(source))


def _detector_settings(text: str) -> dict[str, Any]:
    """The pipeline settings recorded by ``facekit embed``: ``name:fingerprint:upN:maxM``."""
    from .detect import DEFAULT_DETECTOR

    parts = text.split(":") if text else []
    out: dict[str, Any] = {
        "detector": parts[0] if parts and parts[0] else DEFAULT_DETECTOR,
        "max_side": 1600,
        "upsample": 0,
        "flip": None,
        "detector_fingerprint": parts[1] if len(parts) > 1 else "",
    }
    for p in parts[2:]:
        if p.startswith("up") and p[2:].isdigit():
            out["upsample"] = int(p[2:])
        elif p.startswith("max") and p[3:].isdigit():
            out["max_side"] = int(p[3:])
    return out


def build_from_embeddings(
    table_path: str | os.PathLike[str],
    db_path: str | os.PathLike[str],
    *,
    people_dir: str | os.PathLike[str] | None = None,
    storage: str | None = None,
    encrypt: bool | None = None,
    key: str | None = None,
    rebuild: bool = False,
    allow_mass_removal: bool = False,
    discard_encrypted: bool = False,
    batch_rows: int = BATCH_ROWS,
) -> BuildReport:
    """Build or update the database at ``db_path`` from an embed table.

    Args:
        table_path: Parquet written by ``facekit embed -o``.
        db_path: database folder (created if missing).
        people_dir: where ``people.json`` / ``people.csv`` are read from (optional).
        storage, encrypt, key, rebuild, allow_mass_removal, discard_encrypted: as for
            :func:`facekit.gallery.build_index` (``None`` keeps the database's setting; an
            encrypted database is never replaced or decrypted without its key unless
            ``rebuild`` and ``discard_encrypted``).
        batch_rows: rows per streamed batch.

    Returns:
        a :class:`~facekit.gallery.BuildReport` (photo counts compare the table's digests
        with the database's).

    Raises:
        InputError: not a facekit face table, or a bad people.json / people.csv.
        UsageError: the table's models or detector differ from the database's (without
            ``rebuild``), or a mass removal without ``allow_mass_removal``.
        KeyRequiredError: the database is encrypted and the key is missing or wrong.
        DatabaseError: the database cannot be read (without ``rebuild``).
    """
    import pandas as pd
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from .database import FACE_COLUMNS, FILE_COLUMNS, Database
    from .enroll import carried_manifest, concat_faces, reembed_enrolled
    from .people_meta import read_people_meta
    from .pipeline import PipelineConfig

    table_path = Path(table_path)
    db_path = Path(db_path)
    check_db_path(db_path)
    try:
        pf = pq.ParquetFile(table_path, **FOOTER_LIMITS)  # million-photo footers
    except Exception as exc:
        raise InputError(
            f"{table_path}: not a facekit face table ({' '.join(str(exc).split())})"
        ) from None
    schema = pf.schema_arrow
    names = schema.names
    if "source" not in names:
        raise InputError(f"{table_path}: not a facekit face table (no 'source' column)")
    table_models = [n[4:] for n in names if n.startswith("emb_")]
    if not table_models:
        raise InputError(f"{table_path}: has no embeddings (written with --no-embeddings?)")
    meta = schema.metadata or {}
    try:
        models_meta = json.loads(meta.get(b"facekit.models", b"{}"))
        files_meta = json.loads(meta.get(b"facekit.files", b"{}"))
    except ValueError:
        raise InputError(f"{table_path}: damaged facekit metadata") from None
    if not isinstance(models_meta, dict) or not isinstance(files_meta, dict):
        raise InputError(f"{table_path}: damaged facekit metadata")
    pipeline = _detector_settings(str(models_meta.get("detector") or ""))
    detector = pipeline["detector"]
    report = BuildReport(str(db_path))
    with Database.lock(db_path):
        old = open_for_build(
            db_path,
            key,
            rebuild=rebuild,
            discard_encrypted=discard_encrypted,
            report=report,
            source=table_path,
        )
        models = list(table_models)
        changes: list[str] = []
        if old is not None:
            if all(m in table_models for m in old.models) and not rebuild:
                models = list(old.models)  # the table may hold more models than the database
            if models != old.models:
                changes.append(f"models {','.join(old.models)}")
            p = old.manifest.get("pipeline", {})
            for k in ("detector", "upsample", "max_side", "detector_fingerprint"):
                if (
                    p.get(k) not in (None, "")
                    and pipeline.get(k) not in (None, "")
                    and (str(p.get(k)) != str(pipeline.get(k)))
                ):
                    changes.append(f"{k.replace('_', ' ')} {p.get(k)}")
            for m in set(models) & set(old.models):
                want = old.manifest["models"][m].get("fingerprint")
                got = models_meta.get(m)
                if want and got and want != got:
                    changes.append(f"other {m} weights ({want})")
        if changes and not rebuild:
            raise UsageError(
                f"{db_path} was built with {', '.join(changes)}, unlike {table_path}; "
                "use a table embedded with those settings, or --rebuild"
            )
        compatible = old is not None and not changes
        if storage is None:
            storage = (
                old.manifest["models"][old.models[0]].get("storage", "float32")
                if old is not None
                else "float32"
            )
        if encrypt is None:  # keep the database's setting (also when it could not be read)
            encrypt = default_encrypt(old, db_path, key, discard_encrypted)
        elif old is not None and encrypt != bool(old.manifest.get("encrypted")) and not rebuild:
            raise UsageError(f"{db_path}: changing encryption needs --rebuild")
        people_meta = read_people_meta(Path(people_dir)) if people_dir is not None else {}
        old_files: dict[str, Any] = {}
        if old is not None and old.files is not None and len(old.files):
            of = old.files
            old_files = dict(
                zip(of["source"], zip(of["person"], of["digest"], of["error"], strict=True))
            )
        # ---- stream the table: face 0 of every photo
        cols = ["source", "face", "x", "y", "w", "h", "det_score", "face_size", "digest"]
        cols += [c for c in ("time", "person") if c in names] + [f"emb_{m}" for m in models]
        missing = [c for c in cols if c not in names]
        if missing:
            raise InputError(f"{table_path}: not a facekit face table (no {', '.join(missing)})")
        row_parts: list[Any] = []
        vec_parts: dict[str, list[np.ndarray]] = {m: [] for m in models}
        seen: set[str] = set()
        videos = 0
        for batch in pf.iter_batches(batch_size=batch_rows, columns=cols):
            mask = pc.equal(batch.column("face"), 0)
            if "time" in cols:
                is_video = pc.is_valid(batch.column("time"))
                videos += int(pc.sum(pc.and_(is_video, mask)).as_py() or 0)
                mask = pc.and_(mask, pc.invert(is_video))
            b = batch.filter(mask)
            if not b.num_rows:
                continue
            frame = b.select([c for c in cols if not c.startswith("emb_")]).to_pandas()
            for m in models:
                col = b.column(f"emb_{m}")
                flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), np.float32)
                vec_parts[m].append(flat.reshape(b.num_rows, -1))
            row_parts.append(frame)
        frame = (
            pd.concat(row_parts, ignore_index=True)
            if row_parts
            else pd.DataFrame({c: [] for c in cols if not c.startswith("emb_")})
        )
        del row_parts
        sources = frame["source"].astype(str).to_numpy()
        if "person" in frame.columns:
            person = frame["person"].where(frame["person"].notna(), None).to_numpy(object)
            fallback = [_person_of_source(s) for s in sources]
            persons_col = np.array(
                [str(p) if p is not None and str(p) else f for p, f in zip(person, fallback)],
                dtype=object,
            )
        else:
            persons_col = np.array([_person_of_source(s) for s in sources], dtype=object)
        dup = frame["source"].duplicated(keep="first").to_numpy()
        if dup.any():
            raise InputError(f"{table_path}: source {sources[dup][0]} has two face-0 rows")
        seen = set(sources.tolist())
        digests = frame["digest"].fillna("").astype(str).to_numpy()
        # ---- compare with the database
        plan = _Plan(people=sorted(set(persons_col.tolist())), can_keep=compatible)
        # edits made with `facekit people` apply here as in build-index (facekit.people)
        edits = old.people_edits if old is not None else {}
        if edits:
            from .people import plan_people

            plan.people, _, skipped = plan_people(
                edits, plan.people, Path(people_dir or table_path)
            )
            report.skipped.extend(skipped)

        def persons_for(faces: Any, warn: bool = False) -> dict[str, Any]:
            persons = _persons(plan, faces, people_meta, old)
            if edits and old is not None:
                from .people import pinned_persons

                for warning in pinned_persons(persons, edits, old.persons, people_meta):
                    if warn:
                        log.warning(warning)
            return persons

        plan.old_files = {}
        for s, p, d in zip(sources, persons_col, digests, strict=True):
            prev = old_files.get(s)
            if prev is None:
                report.added += 1
            elif prev[0] == p and prev[1] == d and not prev[2] and not rebuild:
                report.unchanged += 1
            else:
                report.updated += 1
        error_sources: set[str] = set()
        file_rows: list[dict[str, Any]] = []
        for s, info in files_meta.items():
            if not isinstance(info, dict):
                continue
            if info.get("error"):
                error_sources.add(s)
                report.errors.append(str(info["error"]))
            elif s not in seen and int(info.get("faces") or 0) == 0:
                report.no_face.append(s)
                file_rows.append(
                    {
                        "source": s,
                        "person": _person_of_source(s),
                        "size": -1,
                        "mtime_ns": -1,
                        "digest": info.get("digest") or "",
                        "faces": 0,
                        "error": None,
                    }
                )
        present = seen | set(files_meta)
        if old is not None:
            of = old.faces
            old_sources = set(old_files) | set(of.loc[of["origin"] == "folder", "source"])
            for s in old_sources - present:
                plan.removed_sources.add(s)
            for s in error_sources & old_sources:
                if compatible:
                    plan.keep_sources.add(s)
                    report.kept_unreadable += 1
                else:
                    plan.removed_sources.add(s)
        report.removed = len(plan.removed_sources)
        _check_removals(
            plan, old, db_path, Path(people_dir or table_path), allow_mass_removal, report
        )
        if (
            old is not None
            and compatible
            and not rebuild
            and not (report.added or report.updated or report.removed or error_sources)
            and storage == old.manifest["models"][old.models[0]].get("storage", "float32")
            and bool(encrypt) == bool(old.manifest.get("encrypted"))
            and {p.id: (p.name, p.extra) for p in persons_for(old.faces).values()}
            == {p.id: (p.name, p.extra) for p in old.persons.values()}
        ):
            # the table holds what the database holds: write nothing
            report.calibration = old.calibration
            report.persons, report.faces = len(old.persons), old.n_faces
            report.enrolled_kept = int((old.faces["origin"] == "enrolled").sum())
            return report
        # ---- assemble
        parts: list[Any] = []
        vecs: dict[str, list[np.ndarray]] = {m: [] for m in models}
        if old is not None and old.n_faces:
            f = old.faces
            enrolled = (f["origin"] == "enrolled").to_numpy()
            kept = (~enrolled) & f["source"].isin(plan.keep_sources).to_numpy()
            if compatible:
                sel = kept | enrolled
                parts.append(f[sel])
                for m in models:
                    vecs[m].append(old.vectors[m][sel])
                report.enrolled_kept = int(enrolled.sum())
            elif enrolled.any():
                config = PipelineConfig(detector=detector, models=tuple(models))
                rows = f[enrolled].reset_index(drop=True)
                re = reembed_enrolled(rows, config)
                report.enrolled_lost.extend(re.lost)
                if re.kept:
                    parts.append(rows.iloc[re.kept])
                    for m in models:
                        vecs[m].append(re.vectors[m])
                report.enrolled_kept = report.enrolled_reembedded = len(re.kept)
        keep_new = ~np.isin(sources, list(error_sources)) if error_sources else None
        new = pd.DataFrame(
            {
                "face_id": np.zeros(len(frame), np.int64),
                "person": persons_col,
                "source": sources,
                "digest": digests,
                "size": np.full(len(frame), -1, np.int64),
                "mtime_ns": np.full(len(frame), -1, np.int64),
                "origin": np.full(len(frame), "folder", dtype=object),
                "x": frame["x"].to_numpy(np.float64),
                "y": frame["y"].to_numpy(np.float64),
                "w": frame["w"].to_numpy(np.float64),
                "h": frame["h"].to_numpy(np.float64),
                "det_score": frame["det_score"].to_numpy(np.float64),
                "face_size": frame["face_size"].to_numpy(np.float64),
                "others": np.zeros(len(frame), np.int64),
            },
            columns=FACE_COLUMNS,
        )
        new_vecs = {
            m: np.concatenate(vec_parts[m]) if vec_parts[m] else np.zeros((0, 0), np.float32)
            for m in models
        }
        del vec_parts
        if keep_new is not None:
            new = new[keep_new]
            new_vecs = {m: v[keep_new] for m, v in new_vecs.items()}
        parts.append(new)
        for m in models:
            vecs[m].append(new_vecs[m])
        del new_vecs
        faces = concat_faces(parts)
        if old is not None and old.n_faces:
            _carry_face_ids(faces, old)
        vectors = {
            m: np.concatenate([v for v in vecs[m] if v.size]).astype(np.float32, copy=False)
            if any(v.size for v in vecs[m])
            else np.zeros((0, 128), np.float32)
            for m in models
        }
        del vecs
        nf = new[["source", "person", "digest"]]
        counts = pd.DataFrame(
            {
                "source": nf["source"].to_numpy(),
                "person": nf["person"].to_numpy(),
                "size": -1,
                "mtime_ns": -1,
                "digest": nf["digest"].to_numpy(),
                "faces": 1,
                "error": None,
            },
            columns=FILE_COLUMNS,
        )
        kept_files = []
        if old is not None and old.files is not None and len(old.files) and plan.keep_sources:
            kept_files.append(old.files[old.files["source"].isin(plan.keep_sources)])
        files_table = pd.concat(
            [counts, pd.DataFrame(file_rows, columns=FILE_COLUMNS), *kept_files],
            ignore_index=True,
        )
        if edits:
            from .people import apply_edits_to_build

            faces, vectors, skipped = apply_edits_to_build(faces, vectors, edits)
            report.skipped.extend(skipped)
        persons = persons_for(faces, warn=True)
        report.people_removed = sorted(set(old.persons) - set(persons)) if old is not None else []
        extra = carried_manifest(old.manifest) if old is not None else {}
        extra["build"] = {
            **dict(extra.get("build", {})),
            "from_embeddings": str(table_path.resolve()),
        }
        if people_dir is not None:
            extra["people_dir"] = str(Path(people_dir).resolve())
        report.calibration = Database.commit(
            db_path,
            faces=faces,
            vectors=vectors,
            persons=persons,
            pipeline=dict(old.manifest["pipeline"]) if compatible and old is not None else pipeline,
            fingerprints={m: str(models_meta.get(m, "")) for m in models},
            weights=dict(old.calibration.weights)
            if compatible and old is not None
            else {m: 1.0 / len(models) for m in models},
            storage=storage,
            encrypt=encrypt,
            key=key,
            files_table=files_table,
            extra_manifest=extra,
            discard_encrypted=discard_encrypted,
            base=old if compatible and not rebuild else None,
        )
        if videos:
            report.skipped.append((str(table_path), f"{videos} video faces (not gallery photos)"))
        report.persons = len(persons)
        report.faces = len(faces)
    return report


def _carry_face_ids(faces: Any, old: Any) -> None:
    """Folder faces rebuilt from the table keep the stable id (``face_uid``) they had when
    their photo (source and digest) is unchanged (in place)."""
    f = old.faces
    folder = (f["origin"] == "folder").to_numpy()
    known = {
        (str(s), str(d)): int(u)
        for s, d, u, ok in zip(f["source"], f["digest"], old.face_uids, folder)
        if ok
    }
    uid = faces["face_uid"].to_numpy(dtype=float, na_value=-1.0) if "face_uid" in faces else None
    out = []
    for i, (s, d, o) in enumerate(zip(faces["source"], faces["digest"], faces["origin"])):
        cur = -1 if uid is None or not np.isfinite(uid[i]) else int(uid[i])
        out.append(known.get((str(s), str(d)), cur) if o == "folder" and cur < 0 else cur)
    faces["face_uid"] = np.asarray(out, np.int64)
