"""One-line licence notices for models whose weights are not licensed for commercial use.

The first time such a model is loaded, :func:`licence_notice` logs one warning line (the CLI
shows warnings on stderr) and records it in ``$FACEKIT_HOME/models/notices.json``, so the line
appears once per installation, not on every run. If that file cannot be written, the notice is
shown once per process instead.

Example:
    >>> from facekit.models.registry import get_spec
    >>> licence_notice(get_spec("arcface-mbf"))  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import logging
import threading

from facekit.models.registry import ModelSpec

__all__ = ["NOTICE_FILE", "licence_notice", "notice_text"]

log = logging.getLogger("facekit.licence")

NOTICE_FILE = "notices.json"
_shown: set[str] = set()
_lock = threading.Lock()


def notice_text(spec: ModelSpec) -> str:
    """The notice line for ``spec``."""
    return (
        f"notice: model {spec.name!r} is licensed {spec.license}; it is not for commercial "
        "use (you opted in; `facekit models list` shows every model's licence)"
    )


def licence_notice(spec: ModelSpec) -> bool:
    """Log the licence notice of a non-commercial model the first time it is used.

    Returns:
        Whether the notice was logged now.
    """
    if spec.commercial_use:
        return False
    from facekit.models.store import models_dir

    with _lock:
        if spec.name in _shown:
            return False
        _shown.add(spec.name)
        path = models_dir() / NOTICE_FILE
        try:
            seen = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(seen, list):
                seen = []
        except (OSError, ValueError):
            seen = []
        if spec.name in seen:
            return False
        log.warning("%s", notice_text(spec))
        try:
            from facekit.models.derived import atomic_write

            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, (json.dumps(sorted({*seen, spec.name})) + "\n").encode())
        except OSError:  # read-only model folder: once per process then
            pass
        return True
