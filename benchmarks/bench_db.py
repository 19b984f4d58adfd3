"""Large face databases: commit, open, load and search at up to 1M faces (issue 9 part 3).

Synthetic dlib-like galleries with identity structure: 128-d unit vectors in a narrow cone
(as dlib's are), ``v = a*mu + b*c_person + s*noise`` with a^2 = 0.838, b^2 = 0.117,
s^2 = 0.045, so that different-person cosine distances sit near dlib's 0.16 and same-person
ones near 0.045 (lfw-dev, NOTES.md). Each phase runs in its own process so that its peak
RSS is its own:

    python benchmarks/bench_db.py build --faces 1000000 --persons 100000 --db /tmp/bench1m.db
    python benchmarks/bench_db.py query --db /tmp/bench1m.db
    python benchmarks/bench_db.py all --faces 1000000 --persons 100000 --db /tmp/bench1m.db
    python benchmarks/bench_db.py query --db /tmp/fkbench/db-100000x10 --probe-from-db --cold

``query`` reports: open time (CURRENT + manifest + structure + sizes), the first search
(tables and index read, hashed and parsed; with and without the ``.verified`` cache), the
warm per-face time of ``Database.knn`` (Voyager search of 2k candidates + exact re-rank)
and of ``Identifier.match`` (the whole decision), RSS after loading and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

A2, B2, S2 = 0.838, 0.117, 0.045


def synth(n: int, persons: int, dim: int = 128, seed: int = 0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=dim).astype(np.float32)
    mu /= np.linalg.norm(mu)
    centres = rng.normal(size=(persons, dim)).astype(np.float32) / np.sqrt(dim)
    owner = np.arange(n) % persons  # every person gets n / persons faces
    out = np.empty((n, dim), np.float32)
    for s in range(0, n, 100_000):  # in blocks: bounded temporaries
        e = min(n, s + 100_000)
        noise = rng.normal(size=(e - s, dim)).astype(np.float32) / np.sqrt(dim)
        v = np.sqrt(A2) * mu + np.sqrt(B2) * centres[owner[s:e]] + np.sqrt(S2) * noise
        out[s:e] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return owner, out, (mu, centres)


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(args: argparse.Namespace) -> dict:
    import pandas as pd

    from facekit.database import FACE_COLUMNS, Database, Person

    t0 = time.perf_counter()
    owner, vec, _ = synth(args.faces, args.persons)
    n = len(owner)
    names = np.array([f"p{i:06d}" for i in range(args.persons)], dtype=object)
    faces = pd.DataFrame({c: np.zeros(n, np.int64) for c in FACE_COLUMNS})
    faces["person"] = names[owner]
    faces["source"] = [f"{names[o]}/{j}.jpg" for j, o in enumerate(owner)]
    faces["origin"] = "folder"
    faces["digest"] = ""
    persons = {p: Person(p, f"Person {p}") for p in names}
    t_gen = time.perf_counter() - t0
    c0, t1 = time.process_time(), time.perf_counter()
    with Database.lock(args.db):
        cal = Database.commit(
            args.db,
            faces=faces,
            vectors={"dlib": vec},
            persons=persons,
            pipeline={"detector": "dlib-hog"},
            fingerprints={"dlib": "synthetic"},
            weights={"dlib": 1.0},
            storage=args.storage,
            encrypt=args.encrypt,
        )
    size = sum(f.stat().st_size for f in Path(args.db).rglob("*") if f.is_file())
    return {
        "phase": "build",
        "faces": n,
        "persons": args.persons,
        "storage": args.storage,
        "encrypted": args.encrypt,
        "generate_s": round(t_gen, 1),
        "commit_wall_s": round(time.perf_counter() - t1, 1),
        "commit_cpu_s": round(time.process_time() - c0, 1),
        "peak_rss_mb": round(peak_mb()),
        "db_mb": round(size / 1e6),
        "threshold": round(cal.threshold, 3),
        "calibration": cal.source,
        "loo_strangers_named": cal.stats.get("loo_strangers_named"),
    }


def query(args: argparse.Namespace) -> dict:
    from facekit.database import Database
    from facekit.identify import Identifier
    from facekit.types import Embeddings

    out: dict = {"phase": "query", "rss_start_mb": round(rss_mb())}
    if args.cold:
        (Path(args.db) / ".verified").unlink(missing_ok=True)
    t = time.perf_counter()
    db = Database.open(args.db)
    out["open_s"] = round(time.perf_counter() - t, 4)
    out["faces"] = db.n_faces
    rng = np.random.default_rng(123)
    first = rng.normal(size=(1, 128)).astype(np.float32)
    first /= np.linalg.norm(first)
    t, c = time.perf_counter(), time.process_time()
    db.knn("dlib", first, 10)
    out["first_search_s"] = round(time.perf_counter() - t, 2)  # reads + hashes + parses
    out["first_search_cpu_s"] = round(time.process_time() - c, 2)
    out["rss_loaded_mb"] = round(rss_mb())
    if args.probe_from_db:
        # any database (e.g. bench_build.py's): probes are stored faces moved by noise of
        # about the same-person spread (cosine ~0.05 from the stored face)
        rows = rng.integers(0, db.n_faces, args.queries)
        base = db.vectors["dlib"][rows]
        noise = rng.normal(size=base.shape).astype(np.float32) * np.float32(0.026)
        q = base + noise
        q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        want = [str(p) for p in db.person_ids[rows]]
    else:
        # queries: new faces of enrolled people (same construction, other noise)
        _, _, (mu, centres) = synth(args.persons, args.persons)  # same seed: the gallery's
        who = rng.integers(0, len(centres), args.queries)
        noise = rng.normal(size=(args.queries, 128)).astype(np.float32) / np.sqrt(128)
        q = np.sqrt(A2) * mu + np.sqrt(B2) * centres[who] + np.sqrt(S2) * noise
        q = (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)
        want = [f"p{w:06d}" for w in who]
    k = 50
    t = time.perf_counter()
    for i in range(args.queries):
        db.knn("dlib", q[i : i + 1], k)
    out["knn_ms_per_face"] = round(1000 * (time.perf_counter() - t) / args.queries, 2)
    ident = Identifier(db)
    ident.match(Embeddings({"dlib": q[:1]}))  # warm-up (person groups)
    t = time.perf_counter()
    named = 0
    for i in range(args.queries):
        [m] = ident.match(Embeddings({"dlib": q[i : i + 1]}))
        named += int(m.identity is not None and m.identity.person == want[i])
    out["identify_ms_per_face"] = round(1000 * (time.perf_counter() - t) / args.queries, 2)
    out["identify_correct"] = f"{named}/{args.queries}"
    out["peak_rss_mb"] = round(peak_mb())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=["build", "query", "all"])
    ap.add_argument("--faces", type=int, default=1_000_000)
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--storage", default="float32", choices=["float32", "e4m3"])
    ap.add_argument("--db", type=Path, required=True)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--cold", action="store_true", help="drop the .verified cache first")
    ap.add_argument("--encrypt", action="store_true", help="encrypted database ($FACEKIT_KEY)")
    ap.add_argument(
        "--probe-from-db",
        action="store_true",
        help="probes = stored faces + same-person noise (any database, e.g. bench_build.py's)",
    )
    args = ap.parse_args()
    if args.phase == "build":
        print(json.dumps(build(args)), flush=True)
    elif args.phase == "query":
        print(json.dumps(query(args)), flush=True)
    else:
        me = [sys.executable, __file__]
        common = ["--db", str(args.db), "--storage", args.storage]
        common += ["--encrypt"] if args.encrypt else []
        subprocess.run(
            [*me, "build", "--faces", str(args.faces), "--persons", str(args.persons), *common],
            check=True,
        )
        hint = ["--persons", str(args.persons), "--queries", str(args.queries)]
        subprocess.run([*me, "query", *common, *hint, "--cold"], check=True, env=os.environ)
        subprocess.run([*me, "query", *common, *hint], check=True, env=os.environ)


if __name__ == "__main__":
    main()
