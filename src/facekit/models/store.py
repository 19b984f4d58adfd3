"""Find, download, verify and import model files.

Resolution order for each :class:`~facekit.models.registry.ModelFile`:

1. ``$FACEKIT_HOME/models/<name>`` (checked by size, and by SHA-256 once per process);
2. the installed PyPI package that ships it (dlib's models in ``face_recognition_models``);
3. ``$FACEKIT_MODEL_MIRROR/<name>``: a local folder (allowed offline) or an ``http(s)://`` base;
4. the upstream URLs, in order (never when offline).

Every download is streamed into ``<name>.part-<random>`` beside its destination, hashed while
streaming, checked for size and SHA-256, then renamed into place with :func:`os.replace`; on
any failure (or Ctrl-C) the temporary file is deleted, so a final file is never half written.
Files whose SHA-256 is not in the registry are pinned on first download in
``$FACEKIT_HOME/models/pins.json`` (trust on first use, logged as a warning).

The library never prints: progress is reported through an optional callback
``progress(file_name, bytes_so_far, total_or_None)``.

Example:
    >>> from facekit.models import store
    >>> paths = store.ensure("yunet")  # doctest: +SKIP
    >>> paths["face_detection_yunet_2023mar.onnx"]  # doctest: +SKIP
    PosixPath('/home/me/.cache/facekit/models/face_detection_yunet_2023mar.onnx')
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import platformdirs

from facekit.errors import ChecksumError, ModelError, OfflineError
from facekit.models.registry import SPECS, ModelFile, ModelSpec, get_spec, parse_model_list

__all__ = [
    "FileStatus",
    "ModelStatus",
    "ProgressCallback",
    "VerifyResult",
    "configure_deepface_env",
    "deepface_home",
    "deepface_weights_dir",
    "ensure",
    "fetch",
    "home",
    "import_file",
    "is_offline",
    "load_pins",
    "load_test",
    "locate",
    "models_dir",
    "resolve_file",
    "status",
    "status_all",
    "verify",
]

logger = logging.getLogger(__name__)

ENV_HOME = "FACEKIT_HOME"
ENV_MIRROR = "FACEKIT_MODEL_MIRROR"
ENV_OFFLINE = "FACEKIT_OFFLINE"
ENV_DEEPFACE_HOME = "DEEPFACE_HOME"

PINS_FILE = "pins.json"
_CHUNK = 1 << 20
_TIMEOUT = 60.0  # seconds per connect/read, not for the whole download
_USER_AGENT = "facekit-cli (+https://github.com/facekit-dev/facekit)"

ProgressCallback = Callable[[str, int, int | None], None]
"""``progress(file_name, bytes_so_far, total_or_None)``, called while a file is copied."""

FileState = Literal["installed", "fetchable", "missing"]


# --- places ----------------------------------------------------------------------------------


def home() -> Path:
    """Return facekit's data folder: ``$FACEKIT_HOME``, else the user cache dir.

    Nothing is created here; folders are made when a file is first written.

    Returns:
        The folder, e.g. ``~/.cache/facekit`` on Linux.
    """
    env = os.environ.get(ENV_HOME, "").strip()
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("facekit"))


def models_dir() -> Path:
    """Return the folder that holds downloaded and imported model files: ``home()/"models"``."""
    return home() / "models"


def deepface_home() -> Path:
    """Return DeepFace's home: ``$DEEPFACE_HOME`` if set, else ``home()/"deepface"``."""
    env = os.environ.get(ENV_DEEPFACE_HOME, "").strip()
    if env:
        return Path(env).expanduser()
    return home() / "deepface"


def deepface_weights_dir() -> Path:
    """Return the folder where DeepFace looks for weights: ``deepface_home()/.deepface/weights``."""
    return deepface_home() / ".deepface" / "weights"


def configure_deepface_env() -> Path:
    """Point DeepFace at facekit's weights before ``deepface`` is imported.

    Sets ``os.environ["DEEPFACE_HOME"]`` to :func:`deepface_home` unless it is already set, so
    DeepFace finds the verified files that :func:`ensure` placed and does not download its own.

    Returns:
        DeepFace's weights folder (not created here).

    Example:
        >>> weights = configure_deepface_env()  # doctest: +SKIP
        >>> from deepface import DeepFace  # doctest: +SKIP
    """
    os.environ.setdefault(ENV_DEEPFACE_HOME, str(deepface_home()))
    return deepface_weights_dir()


def is_offline(offline: bool | None = None) -> bool:
    """Return whether network use is forbidden.

    Args:
        offline: An explicit choice (e.g. from ``--offline``); it wins when not ``None``.

    Returns:
        ``offline`` if given, else whether ``$FACEKIT_OFFLINE`` is ``1``, ``true`` or ``yes``.
    """
    if offline is not None:
        return bool(offline)
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes")


def _mirror() -> tuple[Literal["local", "http"], str] | None:
    """Parse ``$FACEKIT_MODEL_MIRROR`` into ("local", folder) or ("http", base URL)."""
    value = os.environ.get(ENV_MIRROR, "").strip()
    if not value:
        return None
    lowered = value.lower()
    if lowered.startswith(("http://", "https://")):
        return "http", value.rstrip("/")
    if lowered.startswith("file://"):
        import urllib.request  # lazily: it pulls in http, email and ssl

        return "local", urllib.request.url2pathname(urllib.parse.urlparse(value).path)
    return "local", str(Path(value).expanduser())


def _mirror_url(base: str, file: ModelFile) -> str:
    return f"{base}/{urllib.parse.quote(file.name)}"


def _models_using(file: ModelFile) -> list[str]:
    return [spec.name for spec in SPECS.values() if any(f.name == file.name for f in spec.files)]


# --- pins (trust on first use) -----------------------------------------------------------------


def load_pins() -> dict[str, dict[str, object]]:
    """Return the recorded trust-on-first-use pins, by file name.

    Returns:
        ``{file_name: {"sha256": str, "size": int, "source": str, "recorded": str}}``; empty
        when ``pins.json`` does not exist or cannot be read.
    """
    path = models_dir() / PINS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _record_pin(file: ModelFile, sha256: str, size: int, source: str) -> None:
    from filelock import FileLock  # light, and only needed when writing

    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / (PINS_FILE + ".lock"))):
        pins = load_pins()
        pins[file.name] = {
            "sha256": sha256,
            "size": size,
            "source": source,
            "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        fd, tmp = tempfile.mkstemp(prefix=PINS_FILE + ".part-", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(pins, out, indent=2, sort_keys=True)
                out.write("\n")
            os.replace(tmp, folder / PINS_FILE)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    logger.warning(
        "%s has no SHA-256 in facekit's registry; trusting this first copy (from %s) and "
        "pinning sha256=%s, %d bytes in %s",
        file.name,
        source,
        sha256,
        size,
        folder / PINS_FILE,
    )


def _expected(file: ModelFile) -> tuple[str | None, int | None, bool]:
    """Return (sha256, size, pinned_by_us) expected for ``file``: registry first, then pins."""
    if file.sha256 is not None:
        return file.sha256.lower(), file.size, False
    pin = load_pins().get(file.name)
    if isinstance(pin, dict) and isinstance(pin.get("sha256"), str):
        size = pin.get("size")
        return str(pin["sha256"]).lower(), (size if isinstance(size, int) else file.size), True
    return None, file.size, False


# --- hashing ----------------------------------------------------------------------------------

# (path, size, mtime_ns, inode) -> sha256; a file is hashed at most once per process unless
# it changes or verify() asks for a fresh hash.
_HASH_CACHE: dict[tuple[str, int, int, int], str] = {}


def _cache_key(path: Path) -> tuple[str, int, int, int]:
    st = path.stat()
    return (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)


def _sha256_of(path: Path, *, fresh: bool = False) -> str:
    key = _cache_key(path)
    if not fresh and key in _HASH_CACHE:
        return _HASH_CACHE[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    _HASH_CACHE[key] = digest
    return digest


def clear_cache() -> None:
    """Forget which files were already verified in this process (the next use re-hashes them)."""
    _HASH_CACHE.clear()


def _check_candidate(path: Path, file: ModelFile) -> bool:
    """Whether an existing file matches what is expected of ``file`` (size, then SHA-256)."""
    try:
        if not path.is_file():
            return False
        sha, size, _ = _expected(file)
        if size is not None and path.stat().st_size != size:
            logger.warning("%s has the wrong size; ignoring it", path)
            return False
        if sha is not None and _sha256_of(path) != sha:
            logger.warning("%s does not match its SHA-256; ignoring it", path)
            return False
    except OSError as exc:
        logger.warning("cannot check %s: %s", path, exc)
        return False
    return True


def _package_path(file: ModelFile) -> Path | None:
    """Path of ``file`` inside its installed package, without importing the package."""
    if file.package is None or file.package_path is None:
        return None
    try:
        spec = importlib.util.find_spec(file.package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / file.package_path
        if candidate.is_file():
            return candidate
    return None


# --- locating and resolving ---------------------------------------------------------------------


def _locate_with_source(file: ModelFile, *, skip_home: bool = False) -> tuple[Path, str] | None:
    if not skip_home:
        candidate = models_dir() / file.name
        if candidate.exists() and _check_candidate(candidate, file):
            return candidate, "home"
    pkg = _package_path(file)
    if pkg is not None and _check_candidate(pkg, file):
        return pkg, f"package:{file.package}"
    return None


def locate(file: ModelFile) -> Path | None:
    """Find a verified local copy of ``file`` without using the network.

    Looks in ``$FACEKIT_HOME/models`` first, then in the installed package that ships it. A copy
    counts only if its size matches and its SHA-256 matches the registry (or the recorded pin);
    each copy is hashed once per process. A copy with no known hash is accepted by size alone.

    Args:
        file: The file to find.

    Returns:
        Its path, or ``None`` when there is no valid local copy.
    """
    found = _locate_with_source(file)
    return found[0] if found else None


def _open_url(url: str, timeout: float) -> IO[bytes]:
    """Open ``url`` for streaming; a seam the tests replace to keep them off the internet."""
    import urllib.request  # lazily: it pulls in http, email and ssl

    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only)


def _stream_install(
    stream: IO[bytes],
    file: ModelFile,
    dest: Path,
    *,
    total: int | None,
    source: str,
    progress: ProgressCallback | None,
) -> Path:
    """Copy ``stream`` to ``dest`` through a verified temporary file; never half-writes ``dest``."""
    sha_expected, size_expected, _ = _expected(file)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{file.name}.part-", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            if progress is not None:
                progress(file.name, 0, total)
            while chunk := stream.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(file.name, done, total)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if total is not None and done != total:
            raise ModelError(
                f"incomplete copy of {file.name} from {source}: {done} of {total} bytes"
            )
        if size_expected is not None and done != size_expected:
            raise ChecksumError(
                f"{file.name} from {source} has {done} bytes, expected {size_expected}"
            )
        if sha_expected is not None and sha != sha_expected:
            raise ChecksumError(
                f"{file.name} from {source} has sha256 {sha}, expected {sha_expected}"
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _HASH_CACHE[_cache_key(dest)] = sha
    if sha_expected is None:
        _record_pin(file, sha, done, source)
    return dest


def _fetch_local(src: Path, file: ModelFile, dest: Path, progress: ProgressCallback | None) -> Path:
    with open(src, "rb") as fh:
        total = os.fstat(fh.fileno()).st_size
        return _stream_install(fh, file, dest, total=total, source=str(src), progress=progress)


def _fetch_url(url: str, file: ModelFile, dest: Path, progress: ProgressCallback | None) -> Path:
    with contextlib.closing(_open_url(url, _TIMEOUT)) as response:
        length = getattr(response, "headers", {}).get("Content-Length")
        total = int(length) if length and str(length).isdigit() else None
        return _stream_install(response, file, dest, total=total, source=url, progress=progress)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect ({exc.reason})"
    return str(exc) or type(exc).__name__


def resolve_file(
    file: ModelFile,
    *,
    offline: bool | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> Path:
    """Return a verified local path for ``file``, fetching it if needed.

    Order: :func:`locate` (FACEKIT_HOME, installed package), then the mirror
    (``$FACEKIT_MODEL_MIRROR/<file.name>``; a local-folder mirror is used even offline), then the
    upstream URLs. Fetched files land in :func:`models_dir`.

    Args:
        file: The file to provide.
        offline: Forbid network use (``None``: read ``$FACEKIT_OFFLINE``).
        progress: Optional ``progress(file_name, bytes_so_far, total_or_None)``.
        force: Fetch again even if ``$FACEKIT_HOME/models`` already holds a valid copy
            (a copy inside an installed package is still used; it is never downloaded).

    Returns:
        Path of the verified file.

    Raises:
        ChecksumError: a source delivered a file with the wrong size or SHA-256 and no other
            source worked.
        OfflineError: only network sources were left and network use is forbidden.
        ModelError: every source failed; the message lists each source and why.
    """
    if force:
        _HASH_CACHE.clear()
    found = _locate_with_source(file, skip_home=force)
    if found is not None:
        return found[0]

    offline_now = is_offline(offline)
    dest = models_dir() / file.name
    tried: list[str] = []
    skipped_offline: list[str] = []
    checksum_failed = False

    sources: list[tuple[str, str]] = []  # (kind, location)
    mirror = _mirror()
    if mirror is not None:
        mirror_kind, mirror_where = mirror
        if mirror_kind == "local":
            sources.append(("local", str(Path(mirror_where) / file.name)))
        else:
            sources.append(("url", _mirror_url(mirror_where, file)))
    sources.extend(("url", url) for url in file.urls)

    for kind, where in sources:
        if kind == "local":
            src = Path(where)
            if not src.is_file():
                tried.append(f"mirror {where}: no such file")
                continue
            try:
                return _fetch_local(src, file, dest, progress)
            except ChecksumError as exc:
                checksum_failed = True
                tried.append(f"mirror {where}: {exc}")
            except (OSError, ModelError) as exc:
                tried.append(f"mirror {where}: {_describe(exc)}")
            continue
        if offline_now:
            skipped_offline.append(where)
            continue
        try:
            return _fetch_url(where, file, dest, progress)
        except ChecksumError as exc:
            checksum_failed = True
            tried.append(f"{where}: {exc}")
        except Exception as exc:  # any network/HTTP/disk problem: try the next source
            tried.append(f"{where}: {_describe(exc)}")

    owners = _models_using(file)
    models = ("models " if len(owners) > 1 else "model ") + (", ".join(owners) or "?")
    hint = (
        f"download it elsewhere and run `facekit models import FILE --name {owners[0]}`"
        if owners
        else "download it elsewhere and run `facekit models import FILE`"
    ) + f", or set {ENV_MIRROR} to a folder or URL that holds {file.name}"
    if file.package and _package_path(file) is None:
        hint += f", or `pip install {file.package}`"
    if skipped_offline:
        tried.append(f"offline, not tried: {', '.join(skipped_offline)}")
    if not sources:
        tried.append("no mirror or download URL is known for this file")
    if file.package:
        tried.insert(0, f"package {file.package}: not installed or file invalid")
    tried.insert(0, f"{dest}: " + ("skipped (force)" if force else "not present or invalid"))
    detail = "; ".join(tried)
    if checksum_failed:
        raise ChecksumError(
            f"{file.name} ({models}) failed verification, nothing was installed; {hint}. "
            f"Tried: {detail}"
        )
    if skipped_offline:
        raise OfflineError(
            f"{file.name} ({models}) is not installed and offline mode forbids downloading it; "
            f"{hint}. Tried: {detail}"
        )
    raise ModelError(f"cannot provide {file.name} ({models}); {hint}. Tried: {detail}")


def _place_for_deepface(path: Path, file: ModelFile) -> Path | None:
    """Hard-link (or copy) a verified file to DeepFace's weights folder under its name there."""
    if not file.deepface_name:
        return None
    target = deepface_weights_dir() / file.deepface_name
    try:
        if target.exists():
            if os.path.samefile(target, path):
                return target
            sha, _, _ = _expected(file)
            if sha is not None and _sha256_of(target) == sha:
                return target
            logger.warning("replacing %s, which differs from the verified %s", target, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f"{file.deepface_name}.part-", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            tmp.unlink()
            try:
                os.link(path, tmp)
            except OSError:  # other file system, or links not supported
                shutil.copyfile(path, tmp)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    except OSError as exc:
        raise ModelError(f"cannot place {file.name} for DeepFace at {target}: {exc}") from exc
    return target


def ensure(
    name: str,
    *,
    offline: bool | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Make every file of model ``name`` available and verified; fetch what is missing.

    Files with a ``deepface_name`` are also hard-linked (or copied) into DeepFace's weights folder
    (see :func:`configure_deepface_env`).

    Args:
        name: Registry name, e.g. ``"mobilefacenet"``.
        offline: Forbid network use (``None``: read ``$FACEKIT_OFFLINE``).
        progress: Optional ``progress(file_name, bytes_so_far, total_or_None)``.
        force: Fetch again even when FACEKIT_HOME already holds valid copies.

    Returns:
        ``{file_name: path}`` for each file of the model.

    Raises:
        ModelError: unknown model, or a file cannot be provided (see :func:`resolve_file`).
    """
    spec = get_spec(name)
    paths: dict[str, Path] = {}
    for file in spec.files:
        path = resolve_file(file, offline=offline, progress=progress, force=force)
        _place_for_deepface(path, file)
        paths[file.name] = path
    return paths


# --- status -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileStatus:
    """Where one file of a model is, or would come from.

    Attributes:
        file: The registry entry.
        path: Local path when installed, else ``None``.
        state: ``"installed"`` (verified local copy), ``"fetchable"`` (a mirror or URL is
            available and network use is allowed, or a local mirror holds it) or ``"missing"``.
        source: ``"home"``, ``"package:<name>"``, ``"mirror"``, ``"upstream"`` or ``"-"``.
    """

    file: ModelFile
    path: Path | None
    state: FileState
    source: str


@dataclass(frozen=True)
class ModelStatus:
    """Whether a model is ready to use.

    Attributes:
        spec: The model.
        state: ``"installed"`` if every file is, ``"fetchable"`` if every missing file can be
            fetched, else ``"missing"``.
        files: One :class:`FileStatus` per file.
        size: Total bytes (registry size or recorded pin), ``None`` if any is unknown.
        source: The distinct sources of the files, comma-separated (e.g. ``"home, mirror"``).
    """

    spec: ModelSpec
    state: FileState
    files: tuple[FileStatus, ...]
    size: int | None
    source: str

    def paths(self) -> dict[str, Path]:
        """Return ``{file_name: path}`` of the installed files."""
        return {f.file.name: f.path for f in self.files if f.path is not None}


def _file_status(file: ModelFile, offline: bool) -> FileStatus:
    found = _locate_with_source(file)
    if found is not None:
        return FileStatus(file, found[0], "installed", found[1])
    mirror = _mirror()
    if mirror is not None:
        kind, where = mirror
        if kind == "local" and (Path(where) / file.name).is_file():
            return FileStatus(file, None, "fetchable", "mirror")
        if kind == "http" and not offline:
            return FileStatus(file, None, "fetchable", "mirror")
    if file.urls and not offline:
        return FileStatus(file, None, "fetchable", "upstream")
    return FileStatus(file, None, "missing", "-")


def status(name: str, *, offline: bool | None = None) -> ModelStatus:
    """Report whether model ``name`` is installed, fetchable or missing; never uses the network.

    Args:
        name: Registry name.
        offline: Treat network sources as unavailable (``None``: read ``$FACEKIT_OFFLINE``).

    Returns:
        A :class:`ModelStatus`.

    Raises:
        ModelError: unknown model.
    """
    spec = get_spec(name)
    off = is_offline(offline)
    files = tuple(_file_status(f, off) for f in spec.files)
    if all(f.state == "installed" for f in files):
        state: FileState = "installed"
    elif all(f.state != "missing" for f in files):
        state = "fetchable"
    else:
        state = "missing"
    size: int | None = 0
    for f in spec.files:
        _, fsize, _ = _expected(f)
        size = None if size is None or fsize is None else size + fsize
    sources = list(dict.fromkeys(f.source for f in files)) or ["builtin"]
    return ModelStatus(spec, state, files, size, ", ".join(sources))


def status_all(kind: str | None = None, *, offline: bool | None = None) -> list[ModelStatus]:
    """Return :func:`status` of every model (or every model of ``kind``), in registry order."""
    from facekit.models.registry import list_specs

    return [status(spec.name, offline=offline) for spec in list_specs(kind)]


def fetch(
    names: str | Sequence[str],
    *,
    offline: bool | None = None,
    progress: ProgressCallback | None = None,
    force: bool = False,
) -> list[ModelStatus]:
    """Install the given models (see :func:`ensure`) and return their status.

    Args:
        names: ``"yunet,mobilefacenet"`` or a list of registry names.
        offline: Forbid network use (``None``: read ``$FACEKIT_OFFLINE``).
        progress: Optional ``progress(file_name, bytes_so_far, total_or_None)``.
        force: Fetch again even when FACEKIT_HOME already holds valid copies.

    Returns:
        One :class:`ModelStatus` per model, in the order given.

    Raises:
        ModelError: at the first model that cannot be provided (names are all checked first).

    Example:
        >>> [s.state for s in fetch(["yunet", "mobilefacenet"])]  # doctest: +SKIP
        ['installed', 'installed']
    """
    wanted = parse_model_list(names)
    result = []
    for name in wanted:
        ensure(name, offline=offline, progress=progress, force=force)
        result.append(status(name, offline=offline))
    return result


# --- verify -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of re-hashing one installed file.

    Attributes:
        model: Registry name of the model.
        file: The registry entry.
        path: The local copy checked, or ``None`` if there is none.
        state: ``"ok"``, ``"mismatch"`` (wrong size or SHA-256), ``"missing"``, or
            ``"unpinned"`` (a copy exists but no SHA-256 is known to check it against).
        expected_sha256: Registry hash or recorded pin, ``None`` if unknown.
        actual_sha256: Hash of the local copy, ``None`` if missing.
        source: ``"home"``, ``"package:<name>"`` or ``"-"``.
    """

    model: str
    file: ModelFile
    path: Path | None
    state: Literal["ok", "mismatch", "missing", "unpinned"]
    expected_sha256: str | None
    actual_sha256: str | None
    source: str

    @property
    def ok(self) -> bool:
        """Whether the file verified."""
        return self.state == "ok"


def _local_copy(file: ModelFile) -> tuple[Path, str] | None:
    candidate = models_dir() / file.name
    if candidate.is_file():
        return candidate, "home"
    pkg = _package_path(file)
    if pkg is not None:
        return pkg, f"package:{file.package}"
    return None


def verify(names: str | Sequence[str] | None = None) -> list[VerifyResult]:
    """Re-hash local copies of model files against the registry or recorded pins.

    Every file is hashed afresh (ignoring this process's cache). With ``names=None`` only models
    with at least one local file are checked, so models never installed are not reported.

    Args:
        names: Models to check (``"dlib,yunet"`` or a list), or ``None`` for all present ones.

    Returns:
        One :class:`VerifyResult` per (model, file).

    Raises:
        ModelError: an unknown model name.
    """
    wanted = list(SPECS) if names is None else parse_model_list(names)
    fresh: dict[Path, str] = {}
    results: list[VerifyResult] = []
    for name in wanted:
        spec = SPECS[name]
        copies = [(f, _local_copy(f)) for f in spec.files]
        if names is None and not any(c is not None for _, c in copies):
            continue
        for file, copy in copies:
            sha, size, _ = _expected(file)
            if copy is None:
                results.append(VerifyResult(name, file, None, "missing", sha, None, "-"))
                continue
            path, source = copy
            if path not in fresh:
                fresh[path] = _sha256_of(path, fresh=True)
            actual = fresh[path]
            if sha is None:
                state: Literal["ok", "mismatch", "missing", "unpinned"] = "unpinned"
            elif actual == sha and (size is None or path.stat().st_size == size):
                state = "ok"
            else:
                state = "mismatch"
            results.append(VerifyResult(name, file, path, state, sha, actual, source))
    return results


# --- import -----------------------------------------------------------------------------------


def import_file(path: Path | str, name: str | None = None) -> tuple[ModelSpec, ModelFile, Path]:
    """Install a model file obtained by hand (e.g. downloaded on another machine).

    The file is identified by its SHA-256 among all registry files (and recorded pins). For a
    file whose hash facekit does not know, give the model ``name``; it is then matched by file
    name (or as the model's only file), accepted, and pinned (trust on first use, with a warning).
    The copy into :func:`models_dir` is atomic and re-verified while copying.

    Args:
        path: The file to import.
        name: Registry name of the model it belongs to (required for files without a known hash).

    Returns:
        ``(spec, file, installed_path)``.

    Raises:
        ChecksumError: the file claims to be (by name or ``name``) a file with a known hash but
            its size or SHA-256 differs.
        ModelError: the file cannot be read or identified, or ``name`` is unknown.

    Example:
        >>> spec, file, dest = import_file("face_detection_yunet_2023mar.onnx")  # doctest: +SKIP
        >>> spec.name
        'yunet'
    """
    src = Path(path).expanduser()
    if not src.is_file():
        raise ModelError(f"cannot import {src}: not a file")
    try:
        sha = _sha256_of(src, fresh=True)
        size = src.stat().st_size
    except OSError as exc:
        raise ModelError(f"cannot read {src}: {exc}") from exc

    specs = [get_spec(name)] if name is not None else list(SPECS.values())

    # 1. identified by hash (registry or pin): a file of the named model, else of any model
    matches = [
        (spec, file)
        for spec in SPECS.values()
        for file in spec.files
        if _expected(file)[0] == sha and _expected(file)[1] in (None, size)
    ]
    if name is not None:
        own = [(s, f) for s, f in matches if s.name == specs[0].name]
        if not own and matches:
            other, ofile = matches[0]
            raise ChecksumError(
                f"refusing {src}: its sha256 {sha} is that of {ofile.name} (model "
                f"{other.name}), not a file of model {specs[0].name!r}; drop --name or pass "
                f"--name {other.name}"
            )
        matches = own
    if matches:
        spec, file = matches[0]
        dest = _fetch_local(src, file, models_dir() / file.name, None)
        return spec, file, dest

    # 2. identified by file name (or as the only file of the named model)
    candidates = [(s, f) for s in specs for f in s.files if f.name == src.name]
    if not candidates and name is not None and len(specs[0].files) == 1:
        candidates = [(specs[0], specs[0].files[0])]
    if not candidates:
        if name is not None:
            names = ", ".join(f.name for f in specs[0].files) or "(none)"
            raise ModelError(
                f"{src.name} (sha256 {sha}) is not a file of model {specs[0].name!r}; "
                f"its files: {names}"
            )
        raise ModelError(
            f"{src.name} (sha256 {sha}) matches no known model file; if it is a model file "
            f"without a pinned hash, rename it to the registry's file name or pass --name MODEL"
        )
    spec, file = candidates[0]
    expected_sha, expected_size, pinned = _expected(file)
    if expected_sha is not None:
        what = "recorded pin" if pinned else "registry"
        raise ChecksumError(
            f"refusing {src}: sha256 {sha} ({size} bytes) does not match the {what} for "
            f"{file.name} (model {spec.name}): sha256 {expected_sha}"
            + (f", {expected_size} bytes" if expected_size is not None else "")
        )
    if name is None:
        raise ModelError(
            f"{file.name} has no known SHA-256; to trust this copy, run "
            f"`facekit models import {src} --name {spec.name}`"
        )
    if expected_size is not None and expected_size != size:
        raise ChecksumError(
            f"refusing {src}: {size} bytes, but {file.name} (model {spec.name}) has {expected_size}"
        )
    load_test(src, file)  # before trusting it: garbage must never be pinned
    dest = _fetch_local(src, file, models_dir() / file.name, None)
    return spec, file, dest


def load_test(path: Path, file: ModelFile) -> None:
    """Check that ``path`` loads as the kind of model file ``file`` is (by its file name).

    ``.onnx`` files must open in ONNX Runtime, dlib ``.dat`` files in dlib, ``.pt`` files must be
    zip archives (PyTorch's format) and ``.h5`` files HDF5.

    Raises:
        ModelError: the file does not load; the message names it and the loader's reason.
    """
    suffix = file.name.rsplit(".", 1)[-1].lower()
    try:
        if suffix == "onnx":
            from facekit.models.runtime import onnx_session

            onnx_session(path)
        elif suffix == "dat":
            import dlib

            if "shape_predictor" in file.name:
                dlib.shape_predictor(str(path))
            elif "mmod" in file.name:
                dlib.cnn_face_detection_model_v1(str(path))
            else:
                dlib.face_recognition_model_v1(str(path))
        elif suffix == "pt":
            import zipfile

            if not zipfile.is_zipfile(path):
                raise ModelError("not a PyTorch (zip) file")
        elif suffix == "h5":
            with open(path, "rb") as fh:
                if fh.read(8) != b"\x89HDF\r\n\x1a\n":
                    raise ModelError("not an HDF5 file")
    except ModelError as exc:
        raise ModelError(f"refusing {path}: it does not load as {file.name}: {exc}") from exc
    except Exception as exc:  # dlib RuntimeError and the like
        detail = " ".join(str(exc).split())[:200]
        raise ModelError(f"refusing {path}: it does not load as {file.name}: {detail}") from exc
