"""Model registry and verified provisioning of model files.

Importing this package is cheap: it loads no model and imports no runtime (dlib, OpenCV,
onnxruntime, DeepFace); only the standard library and ``platformdirs``.

Example:
    >>> from facekit.models import get_spec, status
    >>> get_spec("dlib").dim
    128
    >>> status("dlib").state  # doctest: +SKIP
    'installed'
"""

from __future__ import annotations

from facekit.models.registry import (
    SPECS,
    ModelFile,
    ModelSpec,
    get_spec,
    list_specs,
    parse_model_list,
)
from facekit.models.store import (
    FileStatus,
    ModelStatus,
    ProgressCallback,
    VerifyResult,
    configure_deepface_env,
    deepface_home,
    deepface_weights_dir,
    ensure,
    fetch,
    home,
    import_file,
    is_offline,
    load_pins,
    locate,
    models_dir,
    resolve_file,
    status,
    status_all,
    verify,
)

__all__ = [
    "SPECS",
    "FileStatus",
    "ModelFile",
    "ModelSpec",
    "ModelStatus",
    "ProgressCallback",
    "VerifyResult",
    "configure_deepface_env",
    "deepface_home",
    "deepface_weights_dir",
    "ensure",
    "fetch",
    "get_spec",
    "home",
    "import_file",
    "is_offline",
    "list_specs",
    "load_pins",
    "locate",
    "models_dir",
    "parse_model_list",
    "resolve_file",
    "status",
    "status_all",
    "verify",
]
