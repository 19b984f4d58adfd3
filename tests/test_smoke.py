"""Smoke tests that always run: no ../shared needed (scikit-image's astronaut.png is the photo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent
HEAVY = [
    "dlib",
    "cv2",
    "onnxruntime",
    "av",
    "deepface",
    "pandas",
    "pyarrow",
    "PIL",
    "voyager",
    "tensorflow",
    "torch",
    "sklearn",
    "scipy",
]


def _run(args, **kw):
    return subprocess.run(
        args, capture_output=True, text=True, timeout=120, env=dict(os.environ), **kw
    )


def test_embed_astronaut_json(astronaut, tmp_path):
    proc = _run([str(BIN / "facekit"), "embed", str(astronaut), "--format", "json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout is the JSON document and nothing else
    assert len(doc) == 1 and doc[0]["error"] is None
    assert (doc[0]["width"], doc[0]["height"]) == (512, 512)
    (face,) = doc[0]["faces"]
    vec = face["embeddings"]["dlib"]
    assert len(vec) == 128 and abs(sum(v * v for v in vec) - 1) < 1e-3
    x, y, w, h = face["box"]
    assert 150 < x + w / 2 < 300 and 50 < y + h / 2 < 200 and 60 < w < 160  # her face, upper middle
    assert "1 face," in proc.stderr
    assert not list(tmp_path.iterdir()), "--format json must not also write faces.parquet"


def test_python_m_facekit_help():
    proc = _run([sys.executable, "-m", "facekit", "--help"])
    assert proc.returncode == 0, proc.stderr
    assert "embed" in proc.stdout and "models" in proc.stdout


def _imported_by_cli() -> set[str]:
    code = "import sys, facekit.cli; print(' '.join(sorted(sys.modules)))"
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 0, proc.stderr
    return {m.split(".")[0] for m in proc.stdout.split()}


def test_cli_import_loads_no_heavy_module():
    loaded = _imported_by_cli() & set(HEAVY)
    assert not loaded, f"`facekit --help` imports {sorted(loaded)}"


def test_cli_import_loads_no_numpy():
    assert "numpy" not in _imported_by_cli()
