"""``facekit enroll``: add faces (e.g. a cluster's) to the database as a person.

Enrolled faces are not in the people folder, so ``build-index`` cannot re-create them from
it. To let them survive every rebuild, each enrolled face is stored with what is needed to
embed it again with other models:

* ``source``: the absolute path of the photo (``path@seconds`` for a video frame) and its box;
* ``crop``: a JPEG of the face with a margin (long side of the face at most
  :data:`CROP_FACE_SIDE` pixels), with ``crop_box`` (the face box in the crop's pixels) and
  ``crop_landmarks`` (the five landmarks in the crop's pixels, when known).

:func:`reembed_enrolled` embeds them again from the crop (or, for faces enrolled by older
versions without a crop, from the photo, re-detected and matched by box overlap) and says
which faces could not be kept. Enrolling the same faces twice stores them once: a face whose
source and box (IoU >= 0.5) are already in the database is skipped and reported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UsageError
from .types import Embeddings, Faces

__all__ = [
    "CROP_FACE_SIDE",
    "EnrollFace",
    "EnrollGroup",
    "EnrollReport",
    "enroll_faces",
    "enroll_groups",
    "face_crop",
    "reembed_enrolled",
]

#: Long side (pixels) of the face in a stored crop; larger faces are scaled down. The aligned
#: chips the recognisers see are 112-160 px, so nothing they use is lost.
CROP_FACE_SIDE = 256
#: Margin around the face box in a stored crop, as a fraction of the box's long side.
CROP_MARGIN = 0.6
#: Two boxes on the same photo are the same face at or above this IoU.
SAME_FACE_IOU = 0.5
#: Columns an enrolled face adds to the faces table.
ENROLL_COLUMNS = ("crop", "crop_box", "crop_landmarks")


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``[x, y, w, h]`` boxes."""
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class EnrollFace:
    """One face to enrol: where it is, and a crop to embed it again later.

    Attributes:
        source: absolute photo path, or ``"<video path>@<seconds>"``.
        box: ``(x, y, w, h)`` in the original pixels.
        crop: JPEG bytes of the face with a margin (see :func:`face_crop`), or ``None``.
        crop_box: the face box ``(x, y, w, h)`` in the crop's pixels.
        crop_landmarks: ``(5, 2)`` landmarks in the crop's pixels, or ``None``.
        digest: SHA-256 of the photo (empty for video frames).
    """

    source: str
    box: tuple[float, float, float, float]
    crop: bytes | None = None
    crop_box: tuple[float, float, float, float] | None = None
    crop_landmarks: np.ndarray | None = None
    digest: str = ""


@dataclass
class EnrollReport:
    """What :func:`enroll_faces` did: faces ``added``; ``skipped`` as ``(face, reason)``."""

    person: str
    added: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def face_crop(
    rgb: np.ndarray,
    box: Sequence[float],
    landmarks: np.ndarray | None = None,
    *,
    source: str = "",
    digest: str = "",
) -> EnrollFace:
    """Cut the stored crop of a face out of an RGB image.

    Args:
        rgb: ``(H, W, 3) uint8`` image the box refers to.
        box: ``(x, y, w, h)`` face box in ``rgb``'s pixels.
        landmarks: ``(5, 2)`` landmarks in ``rgb``'s pixels, if known.
        source: recorded as :attr:`EnrollFace.source`.
        digest: recorded as :attr:`EnrollFace.digest`.

    Returns:
        an :class:`EnrollFace` with the crop as JPEG (quality 95).
    """
    import cv2

    x, y, w, h = (float(v) for v in box)
    side = max(w, h, 1.0)
    m = CROP_MARGIN * side
    H, W = rgb.shape[:2]
    x0, y0 = max(0, int(np.floor(x - m))), max(0, int(np.floor(y - m)))
    x1, y1 = min(W, int(np.ceil(x + w + m))), min(H, int(np.ceil(y + h + m)))
    if x1 <= x0 or y1 <= y0:
        raise InputError(f"{source}: face box {list(box)} lies outside the image")
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    scale = min(1.0, CROP_FACE_SIDE / side)
    if scale < 1.0:
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", crop[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:  # pragma: no cover - OpenCV always encodes a non-empty uint8 array
        raise InputError(f"{source}: cannot encode the face crop")
    cbox = ((x - x0) * scale, (y - y0) * scale, w * scale, h * scale)
    lm = None
    if landmarks is not None:
        lm = (np.asarray(landmarks, np.float32).reshape(5, 2) - [x0, y0]) * scale
    return EnrollFace(source, (x, y, w, h), buf.tobytes(), cbox, lm, digest)


def _decode_crop(data: bytes) -> np.ndarray:
    from .imageio import load_image_bytes

    return load_image_bytes(data, "stored face crop").rgb


def _abs_source(source: str, people_dir: str | None, origin: str) -> str:
    """The absolute source as stored (text: a name that is not UTF-8 as ``\\xNN``)."""
    from .pathtext import path_text

    if origin == "folder" and people_dir and not os.path.isabs(source):
        return path_text(os.path.join(people_dir, source))
    path, sep, t = source.rpartition("@")
    if sep and _is_float(t):
        return path_text(os.path.abspath(path)) + "@" + t
    return path_text(os.path.abspath(source))


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def enroll_faces(
    db_path: str | os.PathLike[str],
    person: str,
    name: str | None,
    embeddings: Embeddings,
    faces: Sequence[EnrollFace],
    *,
    extra: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> EnrollReport:
    """Add ``faces`` to ``person`` (created if new) as one new database generation.

    Faces already stored (same source, box IoU >= 0.5, any person) are skipped and reported,
    so running the same enrolment twice stores each face once.

    Args:
        db_path: the database folder.
        person: person id.
        name: display name (``None`` keeps the stored one).
        embeddings: ``(len(faces), dim)`` per model; must come from the database's models.
        faces: what to store for each face (see :func:`face_crop`).
        extra: extra person fields to merge.
        key: encryption key (default ``$FACEKIT_KEY``).

    Returns:
        an :class:`EnrollReport`.

    Raises:
        UsageError: the embeddings come from other models than the database's.
        DatabaseError / LockedError / KeyRequiredError: as :meth:`Database.open` / ``lock``.
    """
    (report,) = enroll_groups(
        db_path, [EnrollGroup(person, name, embeddings, list(faces), dict(extra or {}))], key=key
    )
    return report


@dataclass
class EnrollGroup:
    """Faces to enrol under one person (see :func:`enroll_groups`)."""

    person: str
    name: str | None
    embeddings: Embeddings
    faces: list[EnrollFace]
    extra: dict[str, Any] = field(default_factory=dict)


def enroll_groups(
    db_path: str | os.PathLike[str],
    groups: Sequence[EnrollGroup],
    *,
    key: str | None = None,
    config: Any = None,
) -> list[EnrollReport]:
    """Enrol several people's faces as **one** new database generation (atomic, locked).

    Same rules as :func:`enroll_faces` for each group. With ``config`` (a
    :class:`~facekit.pipeline.PipelineConfig`) a missing database is created with its
    models and detector; without it the database must exist.

    Returns:
        one :class:`EnrollReport` per group, in order.
    """
    from .database import KEY_ENV, Database, Person

    for g in groups:
        if len(g.embeddings) != len(g.faces):
            raise UsageError(f"internal: {len(g.embeddings)} embeddings for {len(g.faces)} faces")
    reports = [EnrollReport(g.person) for g in groups]
    with Database.lock(db_path):
        if config is not None and not Database.exists(db_path):
            from .gallery import check_db_path, pipeline_manifest

            check_db_path(Path(db_path))
            models = list(config.models)
            pipeline, fingerprints = pipeline_manifest(config)
            weights = config.weights or tuple(1.0 for _ in models)
            weight_map = {m: w / float(sum(weights)) for m, w in zip(models, weights)}
            old = concat_faces([])
            old_vectors = {
                m: np.zeros((0, _dim(g.embeddings for g in groups)[m]), np.float32) for m in models
            }
            old_persons: dict[str, Person] = {}
            manifest_extra: dict[str, Any] = {}
            storage, encrypt, files = "float32", False, None
            people_dir = None
            db = None
        else:
            db = Database.open(db_path, key=key)
            models = db.models
            pipeline = db.manifest["pipeline"]
            fingerprints = {m: db.manifest["models"][m]["fingerprint"] for m in models}
            weight_map = db.calibration.weights
            old, old_vectors, old_persons = db.faces, db.vectors, dict(db.persons)
            manifest_extra = carried_manifest(db.manifest)
            storage = db.manifest["models"][models[0]].get("storage", "float32")
            encrypt, files = bool(db.manifest.get("encrypted")), db.files
            people_dir = db.manifest.get("people_dir")
        for g in groups:
            missing = [m for m in models if m not in g.embeddings.vectors]
            if missing and len(g.faces):
                raise UsageError(f"embeddings lack the database's models: {', '.join(missing)}")
            for m in models:
                fp = g.embeddings.fingerprints.get(m)
                want = fingerprints.get(m)
                if fp and want and fp != want:
                    raise UsageError(
                        f"embeddings of {m} come from other weights ({fp}) than the database "
                        f"({want})"
                    )
        stored: dict[str, list[tuple[str, tuple[float, float, float, float]]]] = {}
        if len(old):
            origins = old["origin"] if "origin" in old.columns else ["folder"] * len(old)
            for src, org, p, x, y, w, h in zip(
                old["source"], origins, old["person"], old["x"], old["y"], old["w"], old["h"]
            ):
                stored.setdefault(_abs_source(str(src), people_dir, str(org)), []).append(
                    (str(p), (x, y, w, h))
                )
        persons = dict(old_persons)
        parts = [old]
        vec_parts: dict[str, list[np.ndarray]] = {m: [old_vectors[m]] for m in models}
        changed = False
        for g, report in zip(groups, reports):
            take: list[int] = []
            for i, f in enumerate(g.faces):
                src = _abs_source(f.source, None, "enrolled")
                dup = next(
                    (p for p, b in stored.get(src, []) if iou(b, f.box) >= SAME_FACE_IOU), None
                )
                label = f"{f.source} [{', '.join(f'{v:.0f}' for v in f.box)}]"
                if dup is not None:
                    why = "already enrolled" if dup == g.person else f"already stored as {dup}"
                    report.skipped.append((label, why + "; not added again"))
                    continue
                stored.setdefault(src, []).append((g.person, f.box))
                take.append(i)
            old_person = persons.get(g.person)
            new_name = g.name if g.name is not None else (old_person.name if old_person else None)
            new_extra = {**(old_person.extra if old_person else {}), **g.extra}
            if take or old_person is not None:
                persons[g.person] = Person(
                    g.person, new_name, new_extra, old_person.added if old_person else None
                )
            changed = (
                changed
                or bool(take)
                or (
                    old_person is not None
                    and (new_name != old_person.name or new_extra != old_person.extra)
                )
            )
            if not take:
                continue
            sel = [g.faces[i] for i in take]
            parts.append(_enrolled_rows(g.person, sel))
            idx = np.asarray(take, np.int64)
            for m in models:
                vec_parts[m].append(np.asarray(g.embeddings.vectors[m], np.float32)[idx])
            report.added = len(take)
        if not changed:
            return reports
        Database.commit(
            db_path,
            faces=concat_faces(parts),
            vectors={m: np.concatenate(vec_parts[m]) for m in models},
            persons=persons,
            pipeline=pipeline,
            fingerprints=fingerprints,
            weights=weight_map,
            storage=storage,
            encrypt=encrypt,
            key=key or os.environ.get(KEY_ENV),
            extra_manifest=manifest_extra,
            files_table=files,
            base=db,
        )
    return reports


def _dim(embeddings: Any) -> dict[str, int]:
    dims: dict[str, int] = {}
    for e in embeddings:
        for m, v in e.vectors.items():
            if np.ndim(v) == 2:
                dims.setdefault(m, int(np.shape(v)[1]))
    return dims


def _enrolled_rows(person: str, sel: Sequence[EnrollFace]) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "face_id": np.zeros(len(sel), np.int64),
            "person": [person] * len(sel),
            "source": [_abs_source(f.source, None, "enrolled") for f in sel],
            "digest": [f.digest for f in sel],
            "size": np.full(len(sel), -1, np.int64),
            "mtime_ns": np.full(len(sel), -1, np.int64),
            "origin": ["enrolled"] * len(sel),
            "x": [f.box[0] for f in sel],
            "y": [f.box[1] for f in sel],
            "w": [f.box[2] for f in sel],
            "h": [f.box[3] for f in sel],
            "det_score": np.full(len(sel), np.nan),
            "face_size": [min(f.box[2], f.box[3]) for f in sel],
            "others": np.zeros(len(sel), np.int64),
            "crop": [f.crop for f in sel],
            "crop_box": [None if f.crop_box is None else list(f.crop_box) for f in sel],
            "crop_landmarks": [
                None
                if f.crop_landmarks is None
                else np.asarray(f.crop_landmarks, np.float32).reshape(-1).tolist()
                for f in sel
            ],
        }
    )


#: Manifest keys written by build-index that other writers must carry forward.
CARRIED_MANIFEST_KEYS = ("people_dir", "build")


def carried_manifest(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: manifest[k] for k in CARRIED_MANIFEST_KEYS if k in manifest}


def concat_faces(parts: Sequence[Any]) -> Any:
    """Concatenate face tables; enrol-only columns stay ``None`` (not NaN) where absent."""
    import pandas as pd

    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        from .database import FACE_COLUMNS

        return pd.DataFrame({c: [] for c in FACE_COLUMNS})
    out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].reset_index(drop=True)
    for c in ENROLL_COLUMNS:
        if c in out.columns:
            col = out[c].astype(object)
            out[c] = col.where(col.notna(), None)
    return out


# --------------------------------------------------------------------------- re-embedding
@dataclass
class Reembedded:
    """Result of :func:`reembed_enrolled`: ``vectors`` for the rows in ``kept`` (positions
    in the input table) and ``lost`` as ``(source, reason)``."""

    kept: list[int]
    vectors: dict[str, np.ndarray]
    lost: list[tuple[str, str]] = field(default_factory=list)
    from_crop: int = 0
    from_photo: int = 0


def reembed_enrolled(rows: Any, config: Any, *, pipeline: Any = None) -> Reembedded:
    """Embed enrolled faces again with ``config``'s models (after a model change).

    Each face is embedded from its stored crop (landmarks as stored, or re-detected in the
    crop); faces enrolled without a crop are re-detected in their photo and matched by box
    (IoU >= 0.5). Faces that cannot be embedded (photo gone or changed, face not found) are
    listed in :attr:`Reembedded.lost` with a reason.

    Args:
        rows: DataFrame of enrolled faces (the faces table's columns).
        config: the :class:`~facekit.pipeline.PipelineConfig` of the new database.
        pipeline: an already-loaded :class:`~facekit.pipeline.Pipeline` for ``config``.
    """
    from .detect import detect_image
    from .imageio import load_image
    from .pipeline import Pipeline

    out = Reembedded([], {m: np.zeros((0, 0), np.float32) for m in config.models})
    if rows is None or not len(rows):
        return out
    pipe = pipeline or Pipeline(config)
    ensemble = pipe.ensemble
    assert ensemble is not None, "re-embedding needs a pipeline with recognisers"
    cols = set(rows.columns)
    parts: list[Embeddings] = []
    for pos, r in enumerate(rows.itertuples(index=False)):
        src = str(r.source)
        box = (float(r.x), float(r.y), float(r.w), float(r.h))
        crop = getattr(r, "crop", None) if "crop" in cols else None
        try:
            if isinstance(crop, (bytes, bytearray)) and len(crop):
                rgb = _decode_crop(bytes(crop))
                x, y, w, h = (float(v) for v in np.asarray(r.crop_box, np.float32).reshape(4))
                lms = getattr(r, "crop_landmarks", None)
                faces: Faces | None
                if lms is not None and len(lms) == 10:
                    faces = Faces(
                        np.array([[x, y, x + w, y + h]], np.float32),
                        np.ones(1, np.float32),
                        np.asarray(lms, np.float32).reshape(1, 5, 2),
                    )
                else:
                    found = detect_image(pipe.detector, rgb, config.max_side)
                    faces = _match(found, (x, y, w, h))
                if faces is None:
                    raise InputError(f"{src}: the face is not found in its stored crop")
                out.from_crop += 1
            else:
                path, sep, t = src.rpartition("@")
                if sep and _is_float(t) and not Path(src).exists():
                    raise InputError(f"{src}: a video face enrolled without a stored crop")
                img = load_image(src)
                digest = str(getattr(r, "digest", "") or "")
                if digest:
                    from .imageio import file_digest

                    if file_digest(src) != digest:
                        raise InputError(f"{src}: the photo changed since it was enrolled")
                rgb = img.rgb
                faces = _match(detect_image(pipe.detector, rgb, config.max_side), box)
                if faces is None:
                    raise InputError(f"{src}: the enrolled face at {list(box)} is no longer found")
                out.from_photo += 1
            parts.append(ensemble.embed(rgb, faces))
            out.kept.append(pos)
        except InputError as exc:
            msg = str(exc)
            out.lost.append((src, msg[len(src) + 2 :] if msg.startswith(src + ": ") else msg))
    merged = Embeddings.merge(parts) if parts else None
    out.vectors = {
        m: (
            np.asarray(merged.vectors[m], np.float32)
            if merged is not None
            else np.zeros((0, 0), np.float32)
        )
        for m in config.models
    }
    return out


def _match(found: Faces, box: Sequence[float]) -> Faces | None:
    if not len(found):
        return None
    xywh = np.column_stack([found.xyxy[:, :2], found.xyxy[:, 2:] - found.xyxy[:, :2]])
    ious = [iou(box, b) for b in xywh]
    best = int(np.argmax(ious))
    return found[best] if ious[best] >= SAME_FACE_IOU else None


def crop_for_member(
    source: str,
    box: Sequence[float],
    landmarks: np.ndarray | None = None,
    *,
    time: float | None = None,
    frame: np.ndarray | None = None,
) -> EnrollFace:
    """The :class:`EnrollFace` of a cluster member: a photo (loaded here) or a video frame."""
    from .imageio import file_digest, load_image

    if time is not None:
        if frame is None:
            raise InputError(f"{source}: the video frame at {time:.2f} s is needed")
        return face_crop(frame, box, landmarks, source=f"{os.path.abspath(source)}@{time:.2f}")
    img = load_image(source)
    return face_crop(
        img.rgb, box, landmarks, source=os.path.abspath(source), digest=file_digest(source)
    )


# --------------------------------------------------------------------------- cluster members
def check_members(cluster: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Check that a cluster's members have what enrolling needs (``source``, ``box``).

    Raises:
        InputError: one line naming the cluster file, the cluster and the member.
    """
    cid = cluster.get("id")
    members = cluster.get("members")
    if not isinstance(members, list):
        raise InputError(f"{path}: cluster {cid}: no 'members' list; re-run facekit cluster -o")
    for i, m in enumerate(members):
        where = f"{path}: cluster {cid}, member {i}"
        if not isinstance(m, dict) or not isinstance(m.get("source"), str):
            raise InputError(f"{where}: no 'source'; re-run facekit cluster -o")
        box = m.get("box")
        if (
            not isinstance(box, (list, tuple))
            or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)
        ):
            raise InputError(
                f"{where} ({m['source']}): no box [x, y, w, h]; re-run facekit cluster -o"
            )
        face = m.get("face", 0)
        if not isinstance(face, int) or isinstance(face, bool):
            raise InputError(f"{where} ({m['source']}): 'face' must be an integer")
        t = m.get("time")
        if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool)):
            raise InputError(f"{where} ({m['source']}): 'time' must be a number of seconds")


def member_box(member: Mapping[str, Any]) -> tuple[float, float, float, float]:
    box = member.get("box")
    src = member.get("source", "?")
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise InputError(f"{src}: cluster member has no box [x, y, w, h]; re-run facekit cluster")
    try:
        x, y, w, h = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"{src}: cluster member box {box!r} is not four numbers") from None
    return x, y, w, h


def members_from_table(
    members: Sequence[Mapping[str, Any]], table: Any, models: Sequence[str]
) -> tuple[Embeddings, list[np.ndarray | None]] | None:
    """Embeddings and landmarks of cluster ``members`` from a face table (the
    ``*.faces.parquet`` beside a cluster file), matched by source, time and box IoU.

    Returns:
        ``(embeddings, landmarks)`` or ``None`` if a member is not in the table or the table
        lacks one of ``models``.
    """
    f = table.frame
    if any(f"emb_{m}" not in f.columns for m in models):
        return None
    pos: list[int] = []
    lms: list[np.ndarray | None] = []
    for m in members:
        box = member_box(m)
        sub = f[f.source == m["source"]]
        if "time" in sub.columns and m.get("time") is not None:
            sub = sub[(sub.time - float(m["time"])).abs() < 0.01]
        best, best_iou = None, SAME_FACE_IOU
        for idx, r in zip(sub.index, sub.itertuples(), strict=True):
            o = iou(box, (r.x, r.y, r.w, r.h))
            if o >= best_iou:
                best, best_iou = idx, o
        if best is None:
            return None
        pos.append(int(f.index.get_loc(best)))
        lm = f["landmarks"].iloc[pos[-1]] if "landmarks" in f.columns else None
        lms.append(None if lm is None else np.asarray(lm, np.float32).reshape(5, 2))
    sel = table.embeddings()[np.array(pos, dtype=np.int64)]
    emb = Embeddings(
        {mm: sel.vectors[mm] for mm in models}, {mm: sel.fingerprints.get(mm, "") for mm in models}
    )
    return emb, lms


def members_reembedded(
    members: Sequence[Mapping[str, Any]], config: Any
) -> tuple[Embeddings, list[np.ndarray | None]]:
    """Re-detect and embed the members' photos; each member's face is picked by box overlap.

    Raises:
        InputError: a photo cannot be read, its face is no longer found, or a member is a
            video face (those need the cluster's face table).
    """
    from .pipeline import Pipeline

    pipe = Pipeline(config)
    parts, lms = [], []
    for m in members:
        box = member_box(m)
        if m.get("time") is not None:
            raise InputError(
                f"{m['source']}: video faces need the cluster's face table; re-run facekit cluster -o"
            )
        r = pipe.process_path(m["source"])
        if r.error:
            raise InputError(r.error)
        found = _match(r.faces, box)
        if found is None:
            raise InputError(f"{m['source']}: the face at {list(box)} is no longer found")
        assert pipe.ensemble is not None
        parts.append(pipe.ensemble.embed(_load_rgb(m["source"]), found))
        lms.append(found.landmarks[0])
    return Embeddings.merge(parts), lms


def _load_rgb(path: str) -> np.ndarray:
    from .imageio import load_image

    return load_image(path).rgb
