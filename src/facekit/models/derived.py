"""Model files that facekit derives from verified downloads, cached with a hash sidecar.

Two model files are not used as published but rebuilt from a verified original:

* dlib's ResNet, converted to ONNX (:mod:`facekit.models.dlib_onnx`);
* OpenCV Zoo's SFace int8 file, whose 29 dangling graph inputs ONNX Runtime refuses
  (:func:`repair_dangling_inputs`).

Each derived file ``X`` sits next to a sidecar ``X.json`` that records the SHA-256 of the source
it was built from, the builder's version, and the size and SHA-256 of ``X`` itself. On every
load (:func:`ensure_derived`) the sidecar is checked against the source, and ``X`` against its
recorded size and hash (hashed once per process and file version, see
:func:`facekit.models.runtime.file_sha256`). A derived file that was changed after it was built
(for instance weights permuted in place, same size) is rebuilt from the verified source, with a
warning; it is never used.

Example:
    >>> path = ensure_derived(out, src, 1, build)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SFACE_REPAIR_VERSION",
    "atomic_write",
    "check_derived",
    "ensure_sface_repaired",
    "ensure_derived",
    "repair_dangling_inputs",
    "sidecar",
]

log = logging.getLogger(__name__)

#: Bump when :func:`repair_dangling_inputs` changes its output.
SFACE_REPAIR_VERSION = 2


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".part-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def sidecar(path: Path) -> Path:
    """The sidecar of a derived file: ``<name>.json`` beside it."""
    return path.with_name(path.name + ".json")


def _read_meta(path: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(sidecar(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def check_derived(path: Path, source_sha: str, version: int) -> str | None:
    """Why the cached ``path`` cannot be used (``None`` when it can).

    Checks, in order: the sidecar exists and names ``source_sha`` and ``version``; ``path``
    has the recorded size; its SHA-256 equals the recorded one.
    """
    from facekit.models.runtime import file_sha256

    if not path.is_file():
        return "not built yet"
    meta = _read_meta(path)
    if meta is None:
        return "its sidecar is missing or unreadable"
    if meta.get("source_sha256") != source_sha or meta.get("version") != version:
        return "it was built from another source file or by another version"
    try:
        size = path.stat().st_size
        if size != meta.get("size"):
            return f"it has {size} bytes, {meta.get('size')} were recorded when it was built"
        if file_sha256(path) != meta.get("sha256"):
            return "its SHA-256 differs from the one recorded when it was built (changed on disk)"
    except OSError as exc:
        return f"it cannot be read ({exc})"
    return None


def ensure_derived(
    out: Path,
    source: str | os.PathLike[str],
    version: int,
    build: Callable[[Path], bytes],
    *,
    what: str,
    extra_meta: Callable[[bytes], dict[str, Any]] | None = None,
    source_id: str | None = None,
) -> Path:
    """Return ``out``, (re)building it from ``source`` unless a verified copy is cached.

    Args:
        out: Where the derived file lives.
        source: The verified original (its SHA-256 goes into the sidecar).
        version: The builder's version; a cache built by another version is rebuilt.
        build: ``build(source_path) -> bytes`` of the derived file.
        what: Short name for log lines, e.g. ``"repaired SFace"``.
        extra_meta: More sidecar fields computed from the built bytes (e.g. the keys that older
            facekit versions read, so that they accept the sidecar instead of rebuilding).
        source_id: Identifies a source that is not a file (e.g. ``"dlib-19.24.9"`` for a model
            compiled into a library); recorded instead of the source file's SHA-256.

    Returns:
        ``out``, verified against its sidecar.
    """
    from facekit.models.runtime import file_sha256

    src = Path(source)
    source_sha = source_id if source_id is not None else file_sha256(src)
    problem = check_derived(out, source_sha, version)
    if problem is None:
        return out
    if out.exists() and problem != "not built yet":
        log.warning("rebuilding the %s at %s: %s", what, out, problem)
    data = build(src)
    import hashlib

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, data)
    meta = {
        "source": src.name,
        "source_sha256": source_sha,
        "version": version,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **(extra_meta(data) if extra_meta else {}),
    }
    atomic_write(sidecar(out), (json.dumps(meta, indent=2) + "\n").encode())
    return out


def repair_dangling_inputs(source: Path) -> bytes:
    """Remove graph inputs that no node reads, and inputs that merely shadow initializers.

    OpenCV Zoo's ``face_recognition_sface_2021dec_int8bq.onnx`` lists the names of 29 fp32
    weights as graph inputs although the quantised graph never reads them (ONNX Runtime 1.32 then
    demands values for them at run time, OpenCV 5 refuses the file); it also lists its
    initializers as inputs, which blocks constant folding. Neither change alters what the graph
    computes. The result is checked with ``onnx.checker``.

    Raises:
        facekit.errors.ModelError: the ``onnx`` package is missing, or the file is not ONNX.
    """
    from facekit.errors import ModelError

    try:
        import onnx
    except ImportError as exc:
        raise ModelError(
            f"repairing {source.name} needs the 'onnx' package (pip install onnx)"
        ) from exc
    try:
        model = onnx.load(str(source))
    except Exception as exc:  # protobuf raises various DecodeErrors
        raise ModelError(f"cannot read {source} as ONNX: {' '.join(str(exc).split())}") from exc
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    inits = {init.name for init in graph.initializer}
    keep = [i for i in graph.input if i.name in used and i.name not in inits]
    if not keep:
        raise ModelError(f"{source.name}: no graph input is read by any node")
    del graph.input[:]
    graph.input.extend(keep)
    _fold_constant_dequantize(model)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ModelError(f"{source.name}: repaired graph fails the ONNX checker: {exc}") from exc
    return bytes(model.SerializeToString())


def _fold_constant_dequantize(model: Any) -> None:
    """Replace ``DequantizeLinear`` nodes whose inputs are all initializers by their fp32 result.

    SFace int8 stores its weights block-quantised and dequantises them in the graph. ONNX
    Runtime never constant-folds ``DequantizeLinear`` (it keeps QDQ patterns for its quantised
    kernels), so every inference dequantised all 29 weight tensors again (measured: 47 ms of CPU
    per face before folding, 28 ms after, one thread). The values are computed once here with ONNX Runtime itself, so the graph
    computes exactly what it computed before.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    graph = model.graph
    inits = {init.name for init in graph.initializer}
    nodes = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input and all(i in inits for i in n.input if i)
    ]
    if not nodes:
        return
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n.output[0]) for n in nodes)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():  # unused by these outputs, but ORT wants every input fed
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = np.zeros(shape, np.float32)
    values = sess.run([n.output[0] for n in nodes], feeds)
    folded = {n.output[0] for n in nodes}
    keep_nodes = [
        n for n in graph.node if not (n.op_type == "DequantizeLinear" and n.output[0] in folded)
    ]
    del graph.node[:]
    graph.node.extend(keep_nodes)
    graph.initializer.extend(
        numpy_helper.from_array(np.asarray(v, np.float32), name)
        for name, v in zip([n.output[0] for n in nodes], values)
    )
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    live = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)


def ensure_sface_repaired(source: str | os.PathLike[str], cache_dir: Path | None = None) -> Path:
    """The repaired copy of the verified SFace int8 file (built and cached on first use).

    Args:
        source: The verified ``face_recognition_sface_2021dec_int8bq.onnx``.
        cache_dir: Where to cache it (default: :func:`facekit.models.store.models_dir`).

    Returns:
        ``<cache_dir>/face_recognition_sface_2021dec_int8bq.repaired.onnx``.
    """
    if cache_dir is None:
        from facekit.models.store import models_dir

        cache_dir = models_dir()
    src = Path(source)
    out = Path(cache_dir) / (src.stem + ".repaired.onnx")
    return ensure_derived(
        out, src, SFACE_REPAIR_VERSION, repair_dangling_inputs, what="repaired SFace"
    )
