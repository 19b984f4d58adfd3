"""Shared fixtures: the ../shared data folder, an isolated FACEKIT_HOME, the model mirror.

Real-photo tests read ``../shared`` (beside the checkout, or ``$FACEKIT_SHARED``) and skip
with a reason that says so when it is absent. Nothing from ``../shared`` is copied into the
repository. The smoke test uses scikit-image's ``astronaut.png`` and always runs.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

SHARED_HINT = "real-photo tests need the shared data folder beside the checkout (or FACEKIT_SHARED)"


def shared_dir() -> Path:
    """``$FACEKIT_SHARED`` or ``<checkout>/../shared`` (may not exist)."""
    env = os.environ.get("FACEKIT_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not found: {SHARED_HINT}")
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path of the shared data folder; skips when it is absent."""
    return _require(shared_dir())


@pytest.fixture(scope="session")
def lfw(shared: Path) -> Path:
    """``shared/datasets/lfw-dev``: one folder per person, 790 photos."""
    return _require(shared / "datasets" / "lfw-dev")


@pytest.fixture(scope="session")
def fr_examples(shared: Path) -> Path:
    """``shared/datasets/face_recognition-examples`` (face_recognition's example photos)."""
    return _require(shared / "datasets" / "face_recognition-examples")


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """FACEKIT_HOME and DEEPFACE_HOME in fresh temp folders; no mirror, offline flag, db or key.

    dlib's models still resolve offline (they ship in face_recognition_models).
    """
    home = tmp_path_factory.mktemp("fkhome")
    monkeypatch.setenv("FACEKIT_HOME", str(home))
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path_factory.mktemp("dfhome")))
    for var in ("FACEKIT_MODEL_MIRROR", "FACEKIT_OFFLINE", "FACEKIT_DB", "FACEKIT_KEY"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def mirror(shared: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``shared/models`` set as ``FACEKIT_MODEL_MIRROR`` (YuNet, MobileFaceNet, RetinaFace)."""
    folder = _require(shared / "models")
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(folder))
    return folder


@pytest.fixture(scope="session")
def astronaut() -> Path:
    """scikit-image's ``astronaut.png`` (Eileen Collins, one frontal face, 512x512)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-image is not installed: the smoke test uses its astronaut.png")
    path = Path(spec.origin).parent / "data" / "astronaut.png"
    if not path.is_file():
        pytest.skip(f"{path} not found in the scikit-image install")
    return path


def pairwise_scores(truth, pred) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of clustering labels ``pred`` against ``truth``
    (``(n,)`` integer arrays; ``-1`` = noise, each such face its own group). ``O(n^2)``: test
    sizes only."""
    import numpy as np

    def expand(lab):
        lab = np.array(lab, copy=True)
        lab[lab < 0] = lab.max(initial=0) + 1 + np.arange(int((lab < 0).sum()))
        return lab

    a, b = expand(truth), expand(pred)
    iu = np.triu_indices(len(a), 1)
    same_a = (a[:, None] == a[None, :])[iu]
    same_b = (b[:, None] == b[None, :])[iu]
    tp = float(np.sum(same_a & same_b))
    p = tp / max(float(same_b.sum()), 1.0)
    r = tp / max(float(same_a.sum()), 1.0)
    return p, r, 2 * p * r / (p + r) if p + r else 0.0
