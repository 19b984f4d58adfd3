"""The pipeline over files: per-file errors never stop a batch; the worker pool keeps order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facekit.pipeline import Pipeline, PipelineConfig, run_paths


@pytest.fixture(scope="module")
def pipe():
    return Pipeline(PipelineConfig())


@pytest.fixture
def bad_files(tmp_path, lfw):
    good = (lfw / "Bill_Clinton" / "Bill_Clinton_0001.jpg").read_bytes()
    files = {
        "missing": tmp_path / "missing.jpg",
        "text": tmp_path / "notes.jpg",
        "empty": tmp_path / "empty.png",
        "truncated": tmp_path / "truncated.jpg",
    }
    files["text"].write_text("not an image\n")
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(good[: len(good) // 3])
    return files


def test_bad_files_give_one_line_errors(pipe, bad_files):
    for kind, path in bad_files.items():
        r = pipe.process_path(str(path))
        assert not r.ok, kind
        assert "\n" not in r.error and str(path) in r.error, (kind, r.error)
        assert len(r.faces) == 0 and len(r.embeddings) == 0


def test_batch_continues_after_bad_files(pipe, bad_files, lfw):
    good = [
        str(lfw / "Bill_Clinton" / "Bill_Clinton_0001.jpg"),
        str(lfw / "Ann_Veneman" / "Ann_Veneman_0001.jpg"),
    ]
    paths = [good[0], *map(str, bad_files.values()), good[1]]
    results = list(run_paths(pipe.config, paths, workers=1, pipeline=pipe))
    assert [r.source for r in results] == paths
    assert [r.ok for r in results] == [True, False, False, False, False, True]
    assert all(
        len(r.faces) == 1 and r.embeddings.vectors["dlib"].shape == (1, 128)
        for r in (results[0], results[-1])
    )
    assert len(results[0].digest) == 64


def test_photo_without_a_face_is_not_an_error(pipe, tmp_path):
    from PIL import Image

    path = tmp_path / "gray.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(path)
    r = pipe.process_path(str(path))
    assert r.ok, r.error
    assert len(r.faces) == 0 and r.width == 200


def test_workers_2_same_results_and_order_as_workers_1(pipe, lfw, tmp_path):
    people = sorted(p for p in lfw.iterdir() if p.is_dir())[:9]
    paths = [str(sorted(p.glob("*.jpg"))[0]) for p in people]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    paths.insert(4, str(bad))  # 10 files: above POOL_MIN_FILES, so the pool really runs
    one = list(run_paths(pipe.config, paths, workers=1, pipeline=pipe))
    two = list(run_paths(pipe.config, paths, workers=2))
    assert [r.source for r in two] == [r.source for r in one] == paths
    assert [r.error for r in two] == [r.error for r in one] and one[4].error
    for a, b in zip(one, two, strict=True):
        assert len(a.faces) == len(b.faces)
        np.testing.assert_allclose(a.faces.xyxy, b.faces.xyxy, atol=1e-3)
        if len(a.faces):
            np.testing.assert_allclose(
                a.embeddings.vectors["dlib"], b.embeddings.vectors["dlib"], atol=1e-5
            )
        assert a.digest == b.digest
    assert sum(len(r.faces) for r in one) >= 8


def test_process_rgb_source_and_sizes(pipe, astronaut):
    from facekit.imageio import load_image

    rgb = load_image(astronaut).rgb
    r = pipe.process_rgb(rgb, "frame-7", time=1.5)
    assert (r.width, r.height, r.time) == (512, 512, 1.5)
    assert r.faces.metadata["source"] == "frame-7" and len(r.faces) == 1
    assert isinstance(Path(r.source), Path)
