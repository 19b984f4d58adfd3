"""Face tables: lean reads (vector columns as 2-D arrays) and million-photo footers."""

from __future__ import annotations

import numpy as np
import pytest
from tests.factories import make_result

from facekit.facetable import FaceTable, result_from_rows


def _table(n_files: int, faces: int = 2, models=("dlib", "sface")) -> FaceTable:
    results = [make_result(faces, models, source=f"p{i}.jpg", seed=i) for i in range(n_files)]
    return FaceTable.from_results(results, {m: f"fp-{m}" for m in models})


def test_lean_read_matches_the_plain_read(tmp_path):
    path = tmp_path / "t.parquet"
    table = _table(5)
    table.write(path)
    plain = FaceTable.read(path)
    lean = FaceTable.read(path, lean=True)
    assert lean.model_ids == plain.model_ids == ["dlib", "sface"]
    assert not any(c.startswith("emb_") or c == "landmarks" for c in lean.frame.columns)
    assert set(lean.arrays) == {"emb_dlib", "emb_sface", "landmarks"}
    for m in plain.model_ids:
        a, b = plain.embeddings().vectors[m], lean.embeddings().vectors[m]
        assert a.shape == b.shape == (10, 128) and np.array_equal(a, b)
    np.testing.assert_array_equal(plain.faces().landmarks, lean.faces().landmarks)
    assert lean.files == plain.files and lean.models == plain.models
    # a lean table writes the same columns, in the same order, as the plain one
    lean.write(tmp_path / "again.parquet")
    back = FaceTable.read(tmp_path / "again.parquet")
    assert list(back.frame.columns) == list(plain.frame.columns)
    assert np.array_equal(back.embeddings().vectors["dlib"], plain.embeddings().vectors["dlib"])
    assert back.frame.emb_dlib.iloc[3].shape == (128,)


def test_lean_tables_take_merge_and_rebuild_results(tmp_path):
    path = tmp_path / "t.parquet"
    _table(4).write(path)
    lean = FaceTable.read(path, lean=True)
    extra = _table(2)  # plain (per-row cells), sources p0 and p1 again
    extra.frame["source"] = "q" + extra.frame["source"].str[1:]
    extra.files = {"q" + k[1:]: v for k, v in extra.files.items()}
    merged = lean.merged_with(extra, ["p2.jpg"])
    assert len(merged.frame) == 8 - 2 + 4 and merged.arrays["emb_dlib"].shape == (10, 128)
    assert "p2.jpg" not in set(merged.frame.source) and "p2.jpg" not in merged.files
    want = extra.embeddings().vectors["sface"]
    assert np.array_equal(merged.embeddings().vectors["sface"][-4:], want)
    sub = merged.take(merged.frame.source.isin(["q1.jpg"]).to_numpy())
    assert list(sub.frame.source) == ["q1.jpg", "q1.jpg"]
    assert np.array_equal(sub.arrays["emb_dlib"], extra.embeddings().vectors["dlib"][2:])
    # a skipped file's result is rebuilt from a lean table as from a plain one
    r_lean = result_from_rows(lean, "p3.jpg")
    r_plain = result_from_rows(FaceTable.read(path), "p3.jpg")
    assert len(r_lean.faces) == 2
    assert np.array_equal(r_lean.embeddings.vectors["dlib"], r_plain.embeddings.vectors["dlib"])
    np.testing.assert_array_equal(r_lean.faces.landmarks, r_plain.faces.landmarks)


def test_empty_lean_table(tmp_path):
    path = tmp_path / "t.parquet"
    table = _table(1)
    table.take(np.zeros(len(table.frame), bool)).write(path)
    lean = FaceTable.read(path, lean=True)
    assert len(lean.frame) == 0 and lean.model_ids == ["dlib", "sface"]
    assert lean.embeddings().vectors["dlib"].shape[0] == 0


@pytest.mark.parametrize("lean", [False, True])
def test_a_million_photo_footer_is_read(tmp_path, lean):
    """The facekit.files metadata of a 1M-photo library (~150 MB of JSON with digests) is
    above pyarrow's default 100 MB footer-string limit; every reader raises it."""
    import pyarrow.parquet as pq

    path = tmp_path / "big.parquet"
    table = _table(1)
    # one huge entry stands for a million files: the footer string is what matters
    table.files["p0.jpg"]["error"] = "x" * 110_000_000
    table.write(path)
    with pytest.raises(OSError, match="(?i)thrift|deserializ|limit|too large"):
        pq.read_table(path, thrift_string_size_limit=100_000_000)
    back = FaceTable.read(path, lean=lean)
    assert len(back.files["p0.jpg"]["error"]) == 110_000_000
    assert back.embeddings().vectors["dlib"].shape == (2, 128)
    assert back.models["dlib"] == "fp-dlib"
