"""Processes against one database (issue 15, "Also measure and keep"): writers killed with
SIGKILL at random moments, and readers running while a writer commits.

Synthetic galleries, no models: the writer is ``Database.commit`` (what build-index and
enroll end with), so the kills land in every phase of a commit (tables, indices, fsync,
renames, CURRENT, clean-up). ``FACEKIT_KILL_LOOPS`` sets the number of kills (default 3;
the 20-kill run: ``FACEKIT_KILL_LOOPS=20 python -m pytest tests/test_db_processes.py -k kill -s``).
A real build-index killed just before its switch is tests/test_index.py.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from facekit.database import Database

SRC = str(Path(__file__).resolve().parents[1] / "src")

HELPERS = textwrap.dedent(
    """
    import sys, numpy as np, pandas as pd
    sys.path.insert(0, {src!r})
    from facekit.database import FACE_COLUMNS, Database, Person

    def gallery(seed, n=400, people=40):
        rng = np.random.default_rng(seed)
        centres = rng.normal(size=(people, 128)).astype(np.float32)
        owner = rng.integers(0, people, n)
        vec = centres[owner] + 0.5 * rng.normal(size=(n, 128)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        faces = pd.DataFrame({{c: [0] * n for c in FACE_COLUMNS}})
        faces["person"] = [f"p{{i}}" for i in owner]
        faces["source"] = [f"p{{i}}/{{j}}.jpg" for j, i in enumerate(owner)]
        faces["origin"] = "folder"
        return faces, {{"dlib": vec}}, {{f"p{{i}}": Person(f"p{{i}}") for i in range(people)}}

    def commit(path, seed):
        faces, vectors, persons = gallery(seed)
        with Database.lock(path, timeout=30):
            Database.commit(path, faces=faces, vectors=vectors, persons=persons,
                            pipeline={{"detector": "dlib-hog"}}, fingerprints={{"dlib": "x"}},
                            weights={{"dlib": 1.0}}, extra_manifest={{"seed": seed}})
    """
).format(src=SRC)

ns: dict = {}
exec(HELPERS, ns)  # the same gallery() in the test and in the child processes


def _expected(seed: int) -> np.ndarray:
    return ns["gallery"](seed)[1]["dlib"]


def _check(db: Database) -> int:
    """The open generation is complete and is exactly what its writer meant to store."""
    seed = db.manifest["seed"]
    assert np.array_equal(db.vectors["dlib"], _expected(seed))
    q = _expected(seed)[:5]
    ids, _ = db.knn("dlib", q, 1)
    assert list(ids[:, 0]) == [0, 1, 2, 3, 4]  # each face finds itself: identifies the same
    assert len(db.persons) == 40 and len(db.person_ids) == 400
    return int(seed)


def _writer(path: Path, seeds: list[int]) -> subprocess.Popen:
    body = HELPERS + f"\nfor s in {seeds!r}:\n    commit({str(path)!r}, s)\n"
    return subprocess.Popen([sys.executable, "-c", body])


def test_kill_9_loop_never_loses_the_database(tmp_path):
    loops = int(os.environ.get("FACEKIT_KILL_LOOPS", "3"))
    path = tmp_path / "faces.db"
    ns["commit"](path, 0)
    t = time.perf_counter()
    p = _writer(path, [1])  # one undisturbed commit: how long a writer lives
    assert p.wait(120) == 0
    span = time.perf_counter() - t
    live = _check(Database.open(path))
    rng = random.Random(15)
    outcomes = []
    for i in range(loops):
        seed = 100 + i
        p = _writer(path, [seed])
        time.sleep(rng.uniform(0.2, 1.0) * span)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        db = Database.open(path)
        got = _check(db)  # either the previous generation or the new one, complete
        assert got in (live, seed)
        assert db.verify().ok
        outcomes.append("new" if got == seed else "old")
        live = got
        with Database.lock(path, timeout=0):  # no stale lock blocks the next run
            pass
    # the next writer succeeds and cleans up what the killed ones left
    ns["commit"](path, 999)
    assert _check(Database.open(path)) == 999
    assert not [q for q in path.iterdir() if q.name.startswith((".gen-", ".CURRENT.tmp"))]
    print("kill outcomes:", outcomes)


def test_readers_never_see_a_half_written_generation(tmp_path):
    path = tmp_path / "faces.db"
    ns["commit"](path, 0)
    writer = _writer(path, list(range(1, 7)))
    reads, seen = 0, set()
    try:
        while writer.poll() is None or reads < 3:
            seen.add(_check(Database.open(path)))  # must never fail
            reads += 1
    finally:
        if writer.poll() is None:
            writer.kill()
    assert writer.wait(60) == 0
    assert reads >= 3 and len(seen) >= 2, (reads, seen)
    assert _check(Database.open(path)) == 6


# --------------------------------------------------------------------------- real processes
# The same two properties with the real commands: `facekit build-index` adding a person to an
# existing database (detection, embedding, calibration and the commit), killed at random
# moments, and `facekit identify` runs reading the database while such builds commit. dlib
# models on real photos: face_recognition's knn_examples/train as the people folder, LFW
# (lfw-dev) people as the persons added, LFW photos (lfw-few) as the identify load.
#
# FACEKIT_KILL_LOOPS sets the kills here too (default 3); FACEKIT_IDENTIFY_LOAD the photos
# identified while build-index adds people (default 60; the run is 2000):
#   FACEKIT_KILL_LOOPS=20 python -m pytest tests/test_db_processes.py -k build_index -s
#   FACEKIT_IDENTIFY_LOAD=2000 python -m pytest tests/test_db_processes.py -k identify_load -s


def _facekit(*args: str) -> list[str]:
    return [sys.executable, "-m", "facekit", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, fr_examples, lfw):
    """``(home, people, db, probes, newcomers)``: a database of the 5 knn people; probe
    results (embedded once) of each knn person and of each newcomer; newcomers are LFW people
    (two photos to add, a third as probe)."""
    root = tmp_path_factory.mktemp("procs")
    home = root / "home"  # one FACEKIT_HOME: the dlib ONNX conversion is made once
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEKIT_HOME", str(home))
        return _make_gallery(root, home, fr_examples, lfw)


def _make_gallery(root: Path, home: Path, fr_examples: Path, lfw: Path) -> tuple:
    from facekit.gallery import build_index
    from facekit.pipeline import Pipeline, PipelineConfig

    people = Path(shutil.copytree(fr_examples / "knn_examples" / "train", root / "people"))
    db = root / "faces.db"
    build_index(people, db, PipelineConfig(), workers=1)
    pipe = Pipeline(PipelineConfig())
    test = fr_examples / "knn_examples" / "test"
    probes = {}
    for person, photo in [
        ("obama", test / "obama1.jpg"),
        ("alex_lacamoire", test / "alex_lacamoire1.jpg"),
        ("kit_harington", test / "johnsnow_test1.jpg"),
        ("biden", fr_examples / "biden.jpg"),
    ]:
        r = pipe.process_path(str(photo))
        assert len(r.faces) == 1, photo
        probes[person] = r
    newcomers = []
    for name in sorted(os.listdir(lfw)):
        photos = sorted((lfw / name).glob("*.jpg"))
        results = [pipe.process_path(str(p)) for p in photos[:3]]
        if len(photos) >= 3 and all(len(r.faces) == 1 for r in results):
            newcomers.append((name, photos[:2]))
            probes[name] = results[2]
        if len(newcomers) == 30:
            break
    return home, people, db, probes, newcomers


def _answers(db: Database, probes: dict) -> dict[str, tuple]:
    """probe -> (identity, confidence, nearest candidate) from the database ``db``."""
    from facekit.identify import Identifier

    ident = Identifier(db)
    out = {}
    for name, r in probes.items():
        [m] = ident.match(r.embeddings)
        top = m.candidates[0] if m.candidates else None
        out[name] = (
            m.identity.person if m.identity else None,
            round(top.confidence, 4) if top else None,
            top.person if top else None,
        )
    return out


def _add(people: Path, name: str, photos: list[Path]) -> None:
    (people / name).mkdir()
    for p in photos:
        shutil.copyfile(p, people / name / p.name)


def _temp_left(db: Path) -> list[str]:
    return sorted(q.name for q in db.iterdir() if q.name.startswith((".gen-", ".CURRENT.tmp")))


def test_kill_9_of_build_index_adding_a_person(gallery, tmp_path, monkeypatch):
    """kill -9 of `facekit build-index` (adding a person) at random moments: every time the
    database opens, verifies and identifies exactly as the generation it holds (the previous
    one, or the complete new one), no stale lock blocks the next run, and the next run
    finishes the work and leaves no temporary files."""
    home, people0, db0, probes, newcomers = gallery
    monkeypatch.setenv("FACEKIT_HOME", str(home))
    loops = int(os.environ.get("FACEKIT_KILL_LOOPS", "3"))
    assert loops + 1 < len(newcomers)
    people = Path(shutil.copytree(people0, tmp_path / "people"))
    db = Path(shutil.copytree(db0, tmp_path / "faces.db"))
    argv = _facekit("build-index", str(people), "-d", str(db), "-j", "1", "-q")
    # one undisturbed run adding the first newcomer: how long such a run lives
    _add(people, *newcomers[0])
    t = time.perf_counter()
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=600)
    span = time.perf_counter() - t
    assert done.returncode == 0, done.stderr
    answers = {Database.open(db).generation: _answers(Database.open(db), probes)}
    rng = random.Random(15)
    outcomes: list[str] = []
    kills, i = 0, 0
    while kills < loops:  # runs that finish before their kill do not count
        i += 1
        assert i < len(newcomers), f"{i - 1} runs gave only {kills} kills: {outcomes}"
        before = Database.open(db)
        name, photos = newcomers[i]
        _add(people, name, photos)
        temp_before = set(_temp_left(db))  # left by earlier kills, removed by the next commit
        p = subprocess.Popen(argv, env=_env(), stderr=subprocess.PIPE, text=True)
        t = time.perf_counter()
        if i % 3:  # anywhere in the run: start-up, model loading, embedding, calibration
            time.sleep(span * rng.uniform(0.1, 0.95))
        else:  # inside the commit, which lasts milliseconds: once its temp folder appears
            while p.poll() is None and not set(_temp_left(db)) - temp_before:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.03))
        at = time.perf_counter() - t
        p.send_signal(signal.SIGKILL)
        rc = p.wait(30)
        err = p.stderr.read() if p.stderr else ""
        assert rc in (0, -signal.SIGKILL), f"build-index ended by itself with exit {rc}: {err}"
        mid_commit = bool(set(_temp_left(db)) - temp_before)  # it was writing a generation
        after = Database.open(db)
        assert after.verify().ok, f"kill {i} at {at:.1f} s: {after.verify()}"
        if after.generation == before.generation:
            outcome = "old"
            assert _answers(after, probes) == answers[before.generation]
            # the next run adds only its own newcomer, so that runs keep the same length
            shutil.rmtree(people / name)
        else:  # the run got to switch: the new generation is complete and has the newcomer
            outcome = "new"
            assert name in after.persons and len(after.faces_of([name])) == 2
            assert after.n_faces >= before.n_faces + 2
            # every face stored before is there with the very same embedding ...
            old_vec = dict(zip(before.faces.source, before.vectors["dlib"], strict=True))
            new_vec = dict(zip(after.faces.source, after.vectors["dlib"], strict=True))
            assert all(np.array_equal(v, new_vec[s]) for s, v in old_vec.items())
            # ... and everyone stored before is still the nearest person to their probe (the
            # identity itself may move: adding a person re-calibrates the threshold)
            got = _answers(after, probes)
            for person in before.persons:
                if person in probes:
                    assert got[person][2] == answers[before.generation][person][2], person
            answers[after.generation] = got
        if rc == 0:  # it finished before the kill: then it must have committed
            assert outcome == "new", err
            outcome = "finished"
        else:
            kills += 1
        outcomes.append(f"{outcome}{'(mid-commit)' if mid_commit else ''}@{at:.2f}s")
        with Database.lock(db, timeout=0):  # no stale lock blocks the next run
            pass
    # the next run succeeds, adds whoever the kills left out, and cleans up
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    final = Database.open(db)
    assert final.verify().ok and not _temp_left(db)
    added = [n for n, _ in newcomers[: i + 1] if (people / n).is_dir()]
    assert added and all(len(final.faces_of([n])) == 2 for n in added), added
    print(f"build-index kill outcomes (undisturbed run {span:.1f} s):", ", ".join(outcomes))


def test_identify_load_while_build_index_adds_people(gallery, tmp_path, monkeypatch, shared):
    """`facekit identify` runs over FACEKIT_IDENTIFY_LOAD photos (LFW, lfw-few) while
    `facekit build-index` keeps adding (and, once all are in, removing and re-adding) people:
    every identify run succeeds, reports every photo, names its control photo right and only
    names people some committed generation held; every build succeeds."""
    import json
    import threading

    home, people0, db0, probes, newcomers = gallery
    monkeypatch.setenv("FACEKIT_HOME", str(home))
    few = shared / "datasets" / "lfw-few"
    if not few.is_dir():
        pytest.skip(f"{few} not found")
    load = int(os.environ.get("FACEKIT_IDENTIFY_LOAD", "60"))
    photos = sorted(str(p) for p in few.glob("*/*.jpg"))[:load]
    assert len(photos) == load, f"lfw-few has only {len(photos)} photos"
    chunk = 20 if load <= 200 else 200
    people = Path(shutil.copytree(people0, tmp_path / "people"))
    db = Path(shutil.copytree(db0, tmp_path / "faces.db"))
    control = probes["obama"].source
    known = set(Database.open(db).persons) | {n for n, _ in newcomers}
    stop = threading.Event()
    builds: list[tuple[int, str]] = []

    def writer() -> None:
        j = 0
        argv = _facekit("build-index", str(people), "-d", str(db), "-j", "1", "-q")
        while not stop.is_set():
            name, files = newcomers[j % len(newcomers)]
            if (people / name).exists():
                shutil.rmtree(people / name)
            else:
                _add(people, name, files)
            r = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=900)
            builds.append((r.returncode, r.stderr[-500:]))
            j += 1

    t = threading.Thread(target=writer, daemon=True)
    t0, c0 = time.perf_counter(), os.times()
    t.start()
    runs = 0
    try:
        for k in range(0, load, chunk):
            part = photos[k : k + chunk]
            argv = _facekit("identify", control, *part, "-d", str(db), "-f", "ndjson", "-j", "1")
            r = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=1800)
            runs += 1
            assert r.returncode == 0, f"identify run {runs}: exit {r.returncode}: {r.stderr[-800:]}"
            assert "error:" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-800:]
            recs = [json.loads(line) for line in r.stdout.splitlines()]
            assert [x["source"] for x in recs] == [control, *part]
            assert all(x["error"] is None for x in recs)
            first = [f["identity"]["person"] for f in recs[0]["faces"] if f["identity"]]
            assert first == ["obama"], first
            named = {f["identity"]["person"] for x in recs for f in x["faces"] if f["identity"]}
            assert named <= known, named - known
    finally:
        stop.set()
        t.join(900)
    wall, c1 = time.perf_counter() - t0, os.times()
    cpu = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
    assert builds and all(rc == 0 for rc, _ in builds), [b for b in builds if b[0]]
    final = Database.open(db)
    assert final.verify().ok and not _temp_left(db)
    print(
        f"identify load: {load} photos in {runs} identify runs, {len(builds)} build-index "
        f"commits meanwhile; wall {wall:.0f} s, CPU of the processes {cpu:.0f} s"
    )
