"""Session bases of the bad-input suite: one small database, its people folder, a cluster file
and a FACEKIT_HOME holding the dlib ONNX conversion, each built once from ``../shared`` and
copied per case (never committed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from facekit.cli import app

TRAIN = ("datasets", "face_recognition-examples", "knn_examples", "train")
EXAMPLES = ("datasets", "face_recognition-examples")


@pytest.fixture(scope="session")
def badinput_base(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with ``home``, ``people`` (5 people, 9 photos), ``db`` (built from it) and
    ``clusters.json`` + ``clusters.faces.parquet`` (one cluster c-0001 of 4 Obama photos)."""
    train = shared.joinpath(*TRAIN)
    if not train.is_dir():
        pytest.skip(f"{train} not found: the bad-input suite derives its files from ../shared")
    base = tmp_path_factory.mktemp("badinput-base")
    (base / "home").mkdir()
    env = {"FACEKIT_HOME": str(base / "home"), "FACEKIT_OFFLINE": "1"}
    for var in (
        "FACEKIT_DB",
        "FACEKIT_KEY",
        "FACEKIT_MODEL_MIRROR",
        "FACEKIT_RAISE",
        "FACEKIT_DEBUG",
    ):
        env[var] = None  # type: ignore[assignment]
    people = base / "people"
    for src in sorted(train.rglob("*")):
        if src.is_file():
            dst = people / src.relative_to(train)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # copyfile: the shared files are read-only
    runner = CliRunner()
    res = runner.invoke(
        app, ["build-index", str(people), "-d", str(base / "db"), "-q", "-j", "1"], env=env
    )
    assert res.exit_code == 0, res.output
    album = base / "album"
    album.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "obama-240p.jpg", "obama_small.jpg"):
        shutil.copyfile(shared.joinpath(*EXAMPLES, name), album / name)
    res = runner.invoke(
        app,
        ["cluster", str(album), "-o", str(base / "clusters.json"), "-q", "-j", "1", "-f", "json"],
        env=env,
    )
    assert res.exit_code == 0, res.output
    assert (base / "clusters.faces.parquet").is_file()
    for p in [base, *base.rglob("*")]:  # the cases' copies must be writable
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return base
