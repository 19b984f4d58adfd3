"""The sdist carries its tests and docs, and its tests run from it (issue 10 item 21)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_sdist_contains_tests_and_docs_and_its_tests_run(tmp_path):
    pytest.importorskip("build")
    r = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "-o", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if r.returncode != 0 and any(
        s in r.stdout + r.stderr for s in ("Could not find a version", "NewConnectionError")
    ):
        pytest.skip("building the sdist needs setuptools from the package index (offline)")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    [sdist] = (tmp_path / "dist").glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
        tar.extractall(tmp_path / "x", filter="data")
    for need in (
        "tests/conftest.py",
        "tests/factories.py",
        "docs/cli.md",
        "docs/install.md",
        "README.md",
        "LICENSE",
        "noxfile.py",
    ):
        assert need in names, f"{need} missing from the sdist"
    assert not any("__pycache__" in n for n in names)
    [top] = (tmp_path / "x").iterdir()
    # the unpacked sdist's own tests, on its own sources (docs reference check + renderers)
    env = {**os.environ, "PYTHONPATH": str(top / "src")}
    from conftest import shared_dir

    env["FACEKIT_SHARED"] = str(shared_dir())
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_docs.py",
            "tests/test_render.py",
        ],
        cwd=top,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert " passed" in r.stdout and "error" not in r.stdout.splitlines()[-1]
