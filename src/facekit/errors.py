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
130   interrupted (Ctrl-C)
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


class UsageError(FacekitError):
    """Options that are valid on their own but not together."""

    exit_code = 2


class EngineError(FacekitError):
    """The distributed engine failed: cluster unreachable, or its workers cannot run facekit."""

    exit_code = 6
