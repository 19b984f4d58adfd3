"""facekit.cluster: clustering logic (synthetic embeddings) and real photos (lfw-dev, dlib)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facekit.calibration import Calibration
from facekit.cluster import (
    FaceRef,
    assign_ids,
    cluster_faces,
    cluster_threshold,
    read_cluster_file,
    write_cluster_file,
)
from facekit.errors import InputError, UsageError
from facekit.types import Embeddings

CAL = Calibration.default(["dlib"])


def people(
    counts: list[int], *, seed: int = 0, spread: float = 0.02
) -> tuple[Embeddings, np.ndarray]:
    """Synthetic dlib-like embeddings: one random direction per person plus small noise."""
    rng = np.random.default_rng(seed)
    vecs, truth = [], []
    for p, n in enumerate(counts):
        centre = rng.normal(size=128)
        centre /= np.linalg.norm(centre)
        for _ in range(n):
            v = centre + rng.normal(scale=spread, size=128)
            vecs.append(v / np.linalg.norm(v))
            truth.append(p)
    return Embeddings({"dlib": np.array(vecs, np.float32)}), np.array(truth)


def refs_for(n: int, prefix: str = "p") -> list[FaceRef]:
    return [FaceRef(f"{prefix}{i:03d}.jpg", 0, (10.0, 10.0, 50.0, 50.0)) for i in range(n)]


def test_default_threshold_is_one_percent_impostor_tail():
    # the measured impostor-pair tail (facekit.calibration.pair_threshold), stricter for rarer merges
    assert 1.5 < cluster_threshold() < 3.5
    assert cluster_threshold(0.001) > cluster_threshold(0.003) > cluster_threshold(0.01)


def test_default_cut_grows_with_the_number_of_faces():
    """A face meets every other face: the per-pair rate is the per-face share over n - 1."""
    from facekit.calibration import pair_threshold
    from facekit.cluster import FALSE_MERGE_RATE, PAIRS_PER_FALSE_MERGE

    cuts = [cluster_threshold(faces=n) for n in (100, 1_000, 10_000, 1_000_000)]
    assert cuts == sorted(cuts) and cuts[0] < cuts[-1]
    want = pair_threshold(FALSE_MERGE_RATE * PAIRS_PER_FALSE_MERGE / 999, CAL)
    assert cluster_threshold(calibration=CAL, faces=1_000) == pytest.approx(want)
    # cluster_faces uses the cut for its own number of faces, on cohort-normalised evidence
    emb, _ = people([4, 3, 1, 1, 1])
    res = cluster_faces(emb, CAL)
    want = cluster_threshold(calibration=CAL, faces=len(emb), normalised=True)
    assert res.threshold == pytest.approx(want)
    raw = cluster_faces(emb, CAL, normalise=False)
    assert raw.threshold == pytest.approx(cluster_threshold(calibration=CAL, faces=len(emb)))


def test_separated_people_and_strangers_are_noise():
    emb, truth = people([4, 3, 1, 1, 1])
    res = cluster_faces(emb, CAL, refs=refs_for(len(truth)))
    assert [c.size for c in res.clusters] == [4, 3]
    assert sorted(res.noise.tolist()) == [7, 8, 9]  # the three strangers are never forced in
    for c in res.clusters:
        assert len(set(truth[c.members])) == 1
        assert c.medoid in c.members
        assert c.cohesion > CAL.threshold
    assert [c.id for c in res.clusters] == ["c-0001", "c-0002"]
    assert res.next_id == 3


def test_min_size_and_edge_cases():
    emb, _ = people([3, 2])
    assert [c.size for c in cluster_faces(emb, CAL, min_size=3).clusters] == [3]
    one = cluster_faces(emb[[0]], CAL)
    assert one.clusters == [] and one.noise.tolist() == [0]
    assert len(cluster_faces(emb[[0]], CAL, min_size=1).clusters) == 1
    empty = cluster_faces(Embeddings({"dlib": np.zeros((0, 128), np.float32)}), CAL)
    assert empty.clusters == [] and len(empty.noise) == 0
    with pytest.raises(UsageError):
        cluster_faces(emb, CAL, method="kmeans")
    with pytest.raises(UsageError):
        cluster_faces(emb, Calibration.default(["mobilefacenet"]))


@pytest.mark.parametrize("method", ["hdbscan", "dbscan"])
def test_other_methods_run(method):
    emb, truth = people([5, 5, 5])
    res = cluster_faces(emb, CAL, method=method)
    for c in res.clusters:
        assert len(set(truth[c.members])) == 1


def test_ids_are_deterministic_and_ordered_by_earliest_member():
    emb, truth = people([3, 3, 3], seed=3)
    refs = refs_for(9)
    a = cluster_faces(emb, CAL, refs=refs).to_record()
    b = cluster_faces(emb, CAL, refs=refs).to_record()
    assert a == b
    firsts = [c["members"][0]["source"] for c in a["clusters"]]
    assert firsts == sorted(firsts)


def test_ids_kept_when_files_are_added_and_names_carried_over():
    emb, truth = people([3, 3, 3, 3], seed=4)
    refs = refs_for(12)
    first_idx = np.flatnonzero(truth < 3)  # persons 0-2 only
    first = cluster_faces(emb[first_idx], CAL, refs=[refs[i] for i in first_idx]).to_record()
    id_of = {}
    for c in first["clusters"]:
        src = c["members"][0]["source"]
        id_of[truth[int(src[1:4])]] = c["id"]
    first["clusters"][0]["person"], first["clusters"][0]["name"] = "ada", "Ada"
    named = first["clusters"][0]["id"]
    # Re-run with a new person whose photos sort *first* (p000-p002 renamed to a-...).
    refs2 = [FaceRef("a" + r.source, 0, r.box) if truth[i] == 3 else r for i, r in enumerate(refs)]
    second = cluster_faces(emb, CAL, refs=refs2, previous=first)
    for c in second.clusters:
        src = refs2[int(c.members[0])].source
        p = truth[int(c.members[0])]
        if p == 3:
            assert c.id == "c-0004", src  # fresh id after every id issued
        else:
            assert c.id == id_of[p]
        if c.id == named:
            assert (c.person, c.name) == ("ada", "Ada")
    assert second.next_id == 5


def test_ids_never_reused_after_a_cluster_disappears():
    emb, truth = people([3, 3], seed=5)
    refs = refs_for(6)
    first = cluster_faces(emb, CAL, refs=refs).to_record()
    keep = np.flatnonzero(truth == truth[3])  # drop the first person's files
    gone_ids = {c["id"] for c in first["clusters"]}
    second = cluster_faces(emb[keep], CAL, refs=[refs[i] for i in keep], previous=first)
    assert second.clusters[0].id in gone_ids
    # now a brand-new person appears: it must not get the vanished cluster's id
    emb3, _ = people([3], seed=99)
    both = Embeddings({"dlib": np.concatenate([emb[keep].vectors["dlib"], emb3.vectors["dlib"]])})
    refs3 = [refs[i] for i in keep] + refs_for(3, "z")
    third = cluster_faces(both, CAL, refs=refs3, previous=second.to_record())
    new = [c for c in third.clusters if refs3[int(c.members[0])].source.startswith("z")][0]
    assert new.id == "c-0003"


def test_matching_tolerates_slightly_moved_boxes():
    emb, _ = people([3], seed=6)
    refs = refs_for(3)
    first = cluster_faces(emb, CAL, refs=refs).to_record()
    first["clusters"][0]["id"] = "c-0042"
    moved = [FaceRef(r.source, r.face, (12.0, 11.0, 50.0, 49.0)) for r in refs]
    res = cluster_faces(emb, CAL, refs=moved)
    assign_ids(res, first)
    assert res.clusters[0].id == "c-0042"


def test_cluster_file_round_trip(tmp_path: Path):
    emb, _ = people([2, 2])
    doc = cluster_faces(emb, CAL, refs=refs_for(4)).to_record()
    write_cluster_file(tmp_path / "c.json", doc)
    assert read_cluster_file(tmp_path / "c.json") == doc
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(InputError):
        read_cluster_file(tmp_path / "bad.json")
    with pytest.raises(InputError):
        read_cluster_file(tmp_path / "missing.json")


# --------------------------------------------------------------------------- real photos
PEOPLE = ["Bill_Clinton", "Britney_Spears", "Andy_Roddick", "Condoleezza_Rice", "Carlos_Moya"]


@pytest.fixture(scope="module")
def lfw_table(tmp_path_factory):
    from conftest import shared_dir

    root = shared_dir() / "datasets" / "lfw-dev"
    if not root.exists():
        pytest.skip(
            f"{root} not found: real-photo tests need the shared data folder (or FACEKIT_SHARED)"
        )
    from facekit.facetable import FaceTable
    from facekit.pipeline import PipelineConfig, run_paths

    paths = [str(root / p / f"{p}_{i:04d}.jpg") for p in PEOPLE for i in range(1, 5)]
    results = list(run_paths(PipelineConfig(digest=False), paths))
    return FaceTable.from_results(results)


def test_real_photos_cluster_by_person(lfw_table):
    frame = lfw_table.frame
    emb = lfw_table.embeddings()
    refs = [
        FaceRef(s, int(f), (x, y, w, h))
        for s, f, x, y, w, h in zip(
            frame.source, frame.face, frame.x, frame.y, frame.w, frame.h, strict=True
        )
    ]
    truth = np.array([Path(s).parent.name for s in frame.source])
    res = cluster_faces(emb, Calibration.default(emb.models), refs=refs)
    # Every cluster is one person, and each person is (almost) entirely in one cluster.
    for c in res.clusters:
        assert len(set(truth[c.members])) == 1, truth[c.members]
    for p in PEOPLE:
        best = max((int(np.sum(truth[c.members] == p)) for c in res.clusters), default=0)
        assert best >= 3, p
    assert len(res.clusters) == len(PEOPLE)
