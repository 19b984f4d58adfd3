"""Incremental clustering (facekit.incremental and `facekit cluster` onto an existing -o file)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import pairwise_scores
from facekit.calibration import Calibration
from facekit.cli import app
from facekit.cluster import FaceRef, cluster_faces, read_cluster_file
from facekit.errors import InputError
from facekit.graph import EvidenceSpace
from facekit.incremental import ClusterState, id_numbers, settings_of, update_clusters
from facekit.types import Embeddings

runner = CliRunner()
CAL = Calibration.default(["dlib"])


def pairwise_f1(a: np.ndarray, b: np.ndarray) -> float:
    return pairwise_scores(a, b)[2]


def people(counts: list[int], *, seed: int = 0, spread: float = 0.02) -> Embeddings:
    rng = np.random.default_rng(seed)
    rows = []
    for n in counts:
        c = rng.normal(size=128)
        c /= np.linalg.norm(c)
        for _ in range(n):
            v = c + rng.normal(scale=spread, size=128)
            rows.append(v / np.linalg.norm(v))
    return Embeddings({"dlib": np.array(rows, np.float32)})


def refs(n: int, prefix: str) -> list[FaceRef]:
    return [FaceRef(f"{prefix}{i:04d}.jpg", 0, (1.0, 1.0, 50.0, 50.0)) for i in range(n)]


def state_of(res, min_size: int = 2) -> ClusterState:
    space = EvidenceSpace.from_calibration(CAL)
    return ClusterState(id_numbers(res), settings_of(space, res.threshold, min_size, 16, {}))


def test_new_faces_join_old_clusters_and_ids_stay():
    emb = people([5, 5, 5, 1], seed=1)
    old = Embeddings({"dlib": emb.vectors["dlib"][[0, 1, 2, 5, 6, 7, 10, 11, 12, 15]]})
    new = Embeddings({"dlib": emb.vectors["dlib"][[3, 4, 8, 9, 13, 14]]})
    extra = people([4], seed=99)  # a person never seen before
    new = Embeddings({"dlib": np.concatenate([new.vectors["dlib"], extra.vectors["dlib"]])})
    first = cluster_faces(old, CAL, refs=refs(10, "a"))
    first.clusters[0].person, first.clusters[0].name = "ada", "Ada"
    doc = first.to_record()
    res, x, index = update_clusters(
        old,
        state_of(first),
        new,
        CAL,
        threshold=first.threshold,
        refs=refs(10, "a") + refs(10, "b"),
        previous=doc,
    )
    assert len(x) == 20 and len(index) == 20
    before = {c.id: set(c.members.tolist()) for c in first.clusters}
    after = {c.id: set(c.members.tolist()) for c in res.clusters}
    for cid, members in before.items():  # every old cluster kept its id and its faces
        assert members <= after[cid]
    for cid in before:  # each grew by the two new faces of its person
        assert len(after[cid]) == 5
    fresh = [c for c in res.clusters if c.id not in before]
    assert len(fresh) == 1 and set(fresh[0].members.tolist()) == set(range(16, 20))
    assert fresh[0].id == f"c-{first.next_id:04d}"
    assert res.cluster(first.clusters[0].id).name == "Ada"
    assert 9 in res.noise  # the old singleton stays noise


def test_two_people_enrolled_apart_are_never_merged():
    emb = people([3], seed=2, spread=0.01)
    v = emb.vectors["dlib"]
    old = Embeddings({"dlib": np.concatenate([v, v + 0.0])})
    first = cluster_faces(old, CAL, refs=refs(6, "a"), threshold=50.0, min_size=1)
    # Pretend an earlier run split them into two enrolled people.
    ids = np.array([1, 1, 1, 2, 2, 2])
    doc = {
        "next_id": 3,
        "clusters": [
            {"id": "c-0001", "person": "ann", "members": []},
            {"id": "c-0002", "person": "bea", "members": []},
        ],
    }
    space = EvidenceSpace.from_calibration(CAL)
    st = ClusterState(ids, settings_of(space, 2.75, 2, 16, {}))
    res, _, _ = update_clusters(
        old,
        st,
        Embeddings({"dlib": v[:1]}),
        CAL,
        threshold=2.75,
        refs=refs(6, "a") + refs(1, "b"),
        previous=doc,
    )
    assert sorted(c.id for c in res.clusters) == ["c-0001", "c-0002"]
    assert {c.person for c in res.clusters} == {"ann", "bea"}
    del first


# --------------------------------------------------------------------------- lfw-dev
CACHED = Path(os.environ.get("FACEKIT_LFW_DEV_TABLE", "/work/cache/lfw-dev.dlib.parquet"))


@pytest.fixture(scope="module")
def lfw_dev(lfw: Path, tmp_path_factory: pytest.TempPathFactory):
    """lfw-dev embedded with dlib: the shared embedding cache when present, else 12 people."""
    from facekit.facetable import FaceTable

    if CACHED.exists():
        return FaceTable.read(CACHED)
    from facekit.pipeline import PipelineConfig, run_paths

    names = sorted(p.name for p in lfw.iterdir() if p.is_dir())[:12]
    paths = [str(q) for n in names for q in sorted((lfw / n).glob("*.jpg"))]
    return FaceTable.from_results(list(run_paths(PipelineConfig(digest=False), paths)))


@pytest.mark.slow
def test_incremental_agrees_with_a_full_run_on_lfw_dev(lfw_dev):
    """Photos split into an old and a new half (by a hash of the file name)."""
    f = lfw_dev.frame
    emb = lfw_dev.embeddings()
    refs_all = [
        FaceRef(s, int(i), (x, y, w, h))
        for s, i, x, y, w, h in zip(f.source, f.face, f.x, f.y, f.w, f.h, strict=True)
    ]
    is_old = np.array(
        [hashlib.sha256(Path(s).name.encode()).digest()[0] % 2 == 0 for s in f.source]
    )
    o, nw = np.flatnonzero(is_old), np.flatnonzero(~is_old)
    old, new = emb[o], emb[nw]
    first = cluster_faces(old, CAL, refs=[refs_all[i] for i in o])
    res, _, _ = update_clusters(
        old,
        state_of(first),
        new,
        CAL,
        threshold=first.threshold,
        refs=[refs_all[i] for i in o] + [refs_all[i] for i in nw],
        previous=first.to_record(),
    )
    # An update keeps the cut of the last full run (the default cut grows with the number of
    # faces; `cluster --rebuild` re-derives it), so the full run it must agree with is the one
    # at that cut. (At the cut for all 787 faces the agreement is 0.973: measured, docs/clustering.md.)
    full = cluster_faces(emb[np.concatenate([o, nw])], CAL, threshold=first.threshold)
    agree = pairwise_f1(full.labels, res.labels)
    assert agree >= 0.99, agree
    truth = np.array([Path(refs_all[i].source).parent.name for i in np.concatenate([o, nw])])
    _, t = np.unique(truth, return_inverse=True)
    assert pairwise_f1(t, res.labels) >= pairwise_f1(t, full.labels) - 0.01
    # Ids stable: every old cluster is inside the one with its id, or was merged into one
    # (listed under "merged"); never split.
    absorbed = {m: c for c in res.clusters for m in c.extra.get("merged", [])}
    kept = 0
    for c in first.clusters:
        into = absorbed[c.id] if c.id in absorbed else res.cluster(c.id)
        assert set(c.members.tolist()) <= set(into.members.tolist())
        kept += c.id not in absorbed
    assert kept >= 0.9 * len(first.clusters)
    print(f"agreement F1 {agree:.4f}; {kept}/{len(first.clusters)} ids kept, rest merged")


@pytest.mark.slow
def test_update_uses_the_same_cohort_normalisation_as_a_full_run(lfw_dev, tmp_path: Path):
    """The per-face cohort shifts are saved with the state and reused by an update; with them
    (or recomputed) the update equals the full run on normalised evidence, and differs from
    raw evidence (so the shift is really applied)."""
    from facekit.incremental import load_state, norm_key, save_state

    f = lfw_dev.frame
    emb = lfw_dev.embeddings()
    is_old = np.array(
        [hashlib.sha256(Path(s).name.encode()).digest()[0] % 2 == 0 for s in f.source]
    )
    o, nw = np.flatnonzero(is_old), np.flatnonzero(~is_old)
    first = cluster_faces(emb[o], CAL)
    assert first.shift is not None and np.any(first.shift > 0)
    space = EvidenceSpace.from_calibration(CAL)
    settings = settings_of(space, first.threshold, 2, 16, {}, norm_key(CAL))
    assert settings["norm"] and settings != settings_of(space, first.threshold, 2, 16, {})
    save_state(tmp_path / "c.json", first, settings, first.vectors)
    state = load_state(tmp_path / "c.json", len(o))
    assert state is not None and state.shift is not None
    np.testing.assert_allclose(state.shift, first.shift)
    runs = []
    for st in (state, state_of(first)):  # stored shifts, then recomputed ones
        res, _, _ = update_clusters(emb[o], st, emb[nw], CAL, threshold=first.threshold)
        np.testing.assert_allclose(res.shift[: len(o)], first.shift)
        runs.append(res.labels)
    assert pairwise_f1(runs[0], runs[1]) == 1.0
    raw, _, _ = update_clusters(
        emb[o], state_of(first), emb[nw], CAL, threshold=first.threshold, normalise=False
    )
    assert pairwise_f1(runs[0], raw.labels) < 0.999


# --------------------------------------------------------------------------- CLI
PEOPLE = ["Bill_Clinton", "Britney_Spears", "Andy_Roddick"]


@pytest.fixture
def album(lfw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for p in PEOPLE:
        (tmp_path / "album" / p).mkdir(parents=True)
        for i in range(1, 4):
            shutil.copy(lfw / p / f"{p}_{i:04d}.jpg", tmp_path / "album" / p)
    return tmp_path / "album"


def test_cli_update_rebuild_and_sheet_labels(album: Path, lfw: Path, tmp_path: Path):
    res = runner.invoke(app, ["cluster", "album", "-o", "c.json", "-q", "--sheets", "sheets"])
    assert res.exit_code == 0, res.output
    for name in ("c.faces.parquet", "c.state.npz", "c.knn.voy"):
        assert (tmp_path / name).exists(), name
    first = read_cluster_file("c.json")
    legend = (tmp_path / "sheets" / f"{first['clusters'][0]['id']}.txt").read_text().splitlines()
    members = first["clusters"][0]["members"]
    assert [line.split("\t")[1] for line in legend] == [
        f"{m['source']}#{m['face']}" for m in members
    ]

    new = tmp_path / "new"
    (new / "Bill_Clinton").mkdir(parents=True)
    (new / "Abdullah_Gul").mkdir(parents=True)
    shutil.copy(lfw / "Bill_Clinton" / "Bill_Clinton_0004.jpg", new / "Bill_Clinton")
    for i in range(1, 4):
        shutil.copy(lfw / "Abdullah_Gul" / f"Abdullah_Gul_{i:04d}.jpg", new / "Abdullah_Gul")
    res = runner.invoke(app, ["cluster", "new", "-o", "c.json", "-q", "--update"])
    assert res.exit_code == 0, res.output
    doc = read_cluster_file("c.json")
    by_id = {c["id"]: c for c in doc["clusters"]}
    for c in first["clusters"]:  # old clusters keep id and faces
        assert {m["source"] for m in c["members"]} <= {
            m["source"] for m in by_id[c["id"]]["members"]
        }
    bill = next(c for c in first["clusters"] if "Bill_Clinton" in c["members"][0]["source"])
    assert "new/Bill_Clinton/Bill_Clinton_0004.jpg" in {
        m["source"] for m in by_id[bill["id"]]["members"]
    }
    gul = [c for c in doc["clusters"] if c["id"] not in {x["id"] for x in first["clusters"]}]
    assert len(gul) == 1 and {Path(m["source"]).parent.name for m in gul[0]["members"]} == {
        "Abdullah_Gul"
    }
    assert doc["faces"] == first["faces"] + 4
    # the default cut grows with the number of faces, but an update keeps the last full run's
    assert doc["threshold"] == first["threshold"]
    # Same inputs again: nothing new, nothing changes.
    res = runner.invoke(app, ["cluster", "new", "-o", "c.json", "-q"])
    assert res.exit_code == 0, res.output
    again = read_cluster_file("c.json")
    assert [(c["id"], c["size"]) for c in again["clusters"]] == [
        (c["id"], c["size"]) for c in doc["clusters"]
    ]
    # --rebuild: only the given inputs, ids matched to the previous file.
    res = runner.invoke(app, ["cluster", "album", "-o", "c.json", "-q", "--rebuild"])
    assert res.exit_code == 0, res.output
    rebuilt = read_cluster_file("c.json")
    assert rebuilt["faces"] == first["faces"]
    assert {c["id"] for c in rebuilt["clusters"]} == {c["id"] for c in first["clusters"]}


def test_cli_update_needs_an_existing_file(album: Path, tmp_path: Path):
    res = runner.invoke(app, ["cluster", "album", "-o", "none.json", "--update"])
    assert res.exit_code == 2 and "--update needs an existing cluster file" in res.output


def test_cli_output_folder_checked_before_any_work(album: Path, tmp_path: Path):
    res = runner.invoke(app, ["cluster", "album", "-o", "missing/c.json"])
    assert res.exit_code == 2 and "missing" in res.output and "does not exist" in res.output
    assert "embedding" not in res.output and not (tmp_path / "missing").exists()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user who can write to read-only folders (root)")
        res = runner.invoke(app, ["cluster", "album", "-o", "ro/c.json"])
        assert res.exit_code == 2 and "not writable" in res.output
    finally:
        ro.chmod(0o700)


def test_cli_rejects_a_database_faces_table_in_one_line(tmp_path: Path, monkeypatch):
    import pandas as pd

    monkeypatch.chdir(tmp_path)
    pd.DataFrame(
        {
            "face_id": [0],
            "person": ["ada"],
            "source": ["a.jpg"],
            "x": [1.0],
            "y": [1.0],
            "w": [9.0],
            "h": [9.0],
        }
    ).to_parquet("faces.parquet")
    res = runner.invoke(app, ["cluster", "faces.parquet"])
    assert res.exit_code == 3, res.output
    assert (
        "not a face table from `facekit embed -o`" in res.output and "Traceback" not in res.output
    )
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"clusters": [{"id": "c-0001", "members": [{"source": "a.jpg", "face": 0}]}]}, "no 'box'"),
        ({"clusters": [{"id": "c-0001", "members": ["a.jpg"]}]}, "not an object"),
        ({"clusters": [{"members": []}]}, "no 'id'"),
        ({"clusters": [{"id": "c-1", "members": [{"source": "a", "box": [1, 2, "x", 4]}]}]}, "box"),
        ({"clusters": [], "noise": 7}, "'noise' is not a list"),
        ([1, 2], "no 'clusters' list"),
    ],
)
def test_cluster_file_validation(tmp_path: Path, doc, message):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError, match=message):
        read_cluster_file(p)
