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
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

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
