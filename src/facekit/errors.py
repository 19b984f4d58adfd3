"""Errors raised by the facekit library.

Every error a user can act on is a :class:`FacekitError` subclass with a one-line message.
The CLI maps each class to an exit code (see ``docs/cli.md``):

====  ===================================================================
code  meaning
====  ===================================================================
0     success (and, for identify/video, at least one known person found)
1     ran fine, but found nothing (no known person / no face)
2     usage error (bad option or argument), as Click does
3     input error: at least one input file could not be read or decoded
4     model error: a model is missing, unverifiable or failed to load
5     database error: missing/corrupt database, locked, or wrong/missing key
6     engine error: the Ray cluster cannot be reached or its workers cannot run facekit
70    internal error (a bug): one line; FACEKIT_DEBUG=1 shows the traceback to report
71    out of memory
74    output error: an output cannot be written (disk full, read-only, permission)
130   interrupted (Ctrl-C)
143   terminated (SIGTERM)
====  ===================================================================
"""

from __future__ import annotations


class FacekitError(Exception):
    """Base class of all facekit errors; ``exit_code`` is what the CLI exits with."""

    exit_code = 3


class InputError(FacekitError):
    """An input file (photo, video, table) cannot be read or decoded."""

    exit_code = 3


class ModelError(FacekitError):
    """A model is unknown, missing, fails verification, or cannot be loaded."""

    exit_code = 4


class UnknownModelError(ModelError):
    """A model or detector name that facekit does not know: a usage error (exit 2)."""

    exit_code = 2


class ChecksumError(ModelError):
    """A downloaded or imported model file does not match its pinned SHA-256."""


class OfflineError(ModelError):
    """A model file would have to be downloaded but network use is forbidden."""


class DatabaseError(FacekitError):
    """The face database is missing, corrupt, incompatible or tampered with."""

    exit_code = 5


class LockedError(DatabaseError):
    """Another process is writing to the same database."""


class KeyRequiredError(DatabaseError):
    """The database is encrypted and FACEKIT_KEY is missing or wrong."""


class OutputError(FacekitError):
    """An output file or folder cannot be written (disk full, read-only, permission denied)."""

    exit_code = 74


class UsageError(FacekitError):
    """Options that are valid on their own but not together."""

    exit_code = 2


class EngineError(FacekitError):
    """The distributed engine failed: cluster unreachable, or its workers cannot run facekit."""

    exit_code = 6


def os_error_line(exc: OSError, path: object = None) -> str:
    """One line for an :class:`OSError`: the path and the problem, in words a user can act on.

    Example:
        >>> os_error_line(OSError(28, "No space left on device"), "out.parquet")
        'out.parquet: disk full (No space left on device)'
    """
    import errno

    where = path if path is not None else (exc.filename or "")
    reason = exc.strerror or type(exc).__name__
    hint = {
        errno.ENOSPC: "disk full",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EEXIST: "already exists",
        errno.ENOTDIR: "a path component is a file, not a folder",
        errno.EISDIR: "is a folder, not a file",
        errno.ENOENT: "no such file or folder",
    }.get(exc.errno or -1)
    text = f"{hint} ({reason})" if hint and hint.lower() != reason.lower() else reason
    return f"{where}: {text}" if where else text
