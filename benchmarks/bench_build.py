"""Scale benchmark of ``build-index --from-embeddings``: a synthetic embed table of N people
with F faces each (identity-structured 128-d dlib-like embeddings), built into a database,
then re-run unchanged (the incremental path). Reports wall and CPU time and peak RSS.

    python benchmarks/bench_build.py --people 100000 --faces 10 --workdir /tmp/fkbench
    python benchmarks/bench_build.py --people 10000 --faces 10 --add 100 --remove 100

Peak RSS is measured in a child process per step (``resource.getrusage(RUSAGE_CHILDREN)``),
so the table generation does not count towards the build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def make_table(path: Path, people: int, faces: int, dim: int = 128, seed: int = 0) -> None:
    """Write an embed-format Parquet (as ``facekit embed -o`` does) in chunks of people.

    Same-person cosine distances sit near dlib's ~0.05 and different-person ones near
    ~0.16 (lfw-dev, NOTES.md): centres share a common mean direction, faces add noise.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    mean = rng.normal(size=dim).astype(np.float32)
    mean /= np.linalg.norm(mean)
    writer = None
    files: dict[str, dict[str, object]] = {}
    chunk = 5000
    for start in range(0, people, chunk):
        n = min(chunk, people - start)
        centres = mean + 0.045 * rng.normal(size=(n, dim)).astype(np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        vecs = np.repeat(centres, faces, axis=0) + 0.026 * rng.normal(size=(n * faces, dim)).astype(
            np.float32
        )
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        src = [f"people/p{start + i:06d}/img{j:03d}.jpg" for i in range(n) for j in range(faces)]
        digest = [hashlib.sha256(s.encode()).hexdigest() for s in src]  # same in every run
        for s, d in zip(src, digest, strict=True):
            files[s] = {"digest": d, "faces": 1, "error": None}
        m = len(src)
        table = pa.table(
            {
                "source": src,
                "face": pa.array(np.zeros(m, np.int64)),
                "x": pa.array(np.full(m, 50.0)),
                "y": pa.array(np.full(m, 60.0)),
                "w": pa.array(np.full(m, 120.0)),
                "h": pa.array(np.full(m, 120.0)),
                "det_score": pa.array(np.ones(m)),
                "face_size": pa.array(np.full(m, 120.0)),
                "time": pa.nulls(m, pa.float64()),
                "digest": digest,
                "emb_dlib": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), dim).cast(
                    pa.list_(pa.float32())
                ),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="zstd")
        writer.write_table(table)
    assert writer is not None
    from facekit.embed import embedder_fingerprint

    writer.add_key_value_metadata(
        {
            "facekit.files": json.dumps(files),
            "facekit.models": json.dumps({"dlib": embedder_fingerprint("dlib")}),
        }
    )
    writer.close()


def drop_table(src: Path, dest: Path, people: int) -> None:
    """Copy an embed table without the faces and file entries of its first ``people``."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(src)  # (the footer's file list is kept apart from the schema)
    gone = tuple(f"people/p{i:06d}/" for i in range(people))
    keep = pc.invert(pc.starts_with(t["source"], "people/p000000/"))
    for prefix in gone[1:]:
        keep = pc.and_(keep, pc.invert(pc.starts_with(t["source"], prefix)))
    meta = {
        k.decode(): v.decode()
        for k, v in (pq.ParquetFile(src).metadata.metadata or {}).items()
        if k.startswith(b"facekit.")
    }
    files = json.loads(meta["facekit.files"])
    meta["facekit.files"] = json.dumps({k: v for k, v in files.items() if not k.startswith(gone)})
    t = t.filter(keep)
    with pq.ParquetWriter(dest, t.schema) as writer:
        writer.write_table(t)
        writer.add_key_value_metadata(meta)


def _child(table: str, db: str) -> None:
    from facekit.gallery_table import build_from_embeddings

    t0, c0 = time.perf_counter(), time.process_time()
    report = build_from_embeddings(table, db, allow_mass_removal=False)
    out = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "persons": report.persons,
        "faces": report.faces,
        "added": report.added,
        "unchanged": report.unchanged,
        "threshold": round(report.calibration.threshold, 3) if report.calibration else None,
    }
    print(json.dumps(out))


def _run_step(table: Path, db: Path) -> dict[str, object]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    r = subprocess.run(
        [sys.executable, __file__, "--child", str(table), str(db)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode:
        raise SystemExit(r.stderr)
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rec["process_wall_s"] = round(time.perf_counter() - t0, 1)
    rec["peak_rss_mb"] = round(max(peak, before) / 1024)  # ru_maxrss is in KiB on Linux
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--people", type=int, default=10_000)
    ap.add_argument("--faces", type=int, default=10, help="faces per person")
    ap.add_argument(
        "--add",
        type=int,
        default=0,
        help="then build again from a table with this many more people (the incremental add)",
    )
    ap.add_argument(
        "--remove",
        type=int,
        default=0,
        help="then build again without the first this many people (photos deleted)",
    )
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/facekit-bench-build"))
    ap.add_argument("--child", nargs=2, metavar=("TABLE", "DB"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(*a.child)
        return
    import shutil

    a.workdir.mkdir(parents=True, exist_ok=True)
    table = a.workdir / f"synthetic-{a.people}x{a.faces}.parquet"
    if not table.exists():
        t0 = time.perf_counter()
        make_table(table, a.people, a.faces)
        print(
            f"table: {table} ({table.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s"
        )
    db = a.workdir / f"db-{a.people}x{a.faces}"
    shutil.rmtree(db, ignore_errors=True)
    print("first build:", json.dumps(_run_step(table, db)))
    print("unchanged re-run:", _rerun(table, db))
    if a.add:
        # the same people (the generator is deterministic per chunk of 5,000 people) plus
        # a.add new ones at the end: an incremental build that only adds faces
        if a.people % 5000:
            print("note: --people is not a multiple of 5,000: the old people's vectors differ")
        bigger = a.workdir / f"synthetic-{a.people + a.add}x{a.faces}.parquet"
        if not bigger.exists():
            make_table(bigger, a.people + a.add, a.faces)
        print(f"+{a.add} people re-run:", _rerun(bigger, db))
        table = bigger
    if a.remove:
        # the last table without its first a.remove people (photos deleted from the library)
        smaller = a.workdir / f"{table.stem}-minus{a.remove}.parquet"
        if not smaller.exists():
            drop_table(table, smaller, a.remove)
        print(f"-{a.remove} people re-run:", _rerun(smaller, db))
    os.system(f"du -sh {db}")


def _rerun(table: Path, db: Path) -> str:
    """Build ``db`` from ``table`` in a fresh parent process: RUSAGE_CHILDREN keeps the
    maximum over all children, so each re-run's own peak is measured by a new parent."""
    r = subprocess.run(
        [sys.executable, "-c", _RERUN, __file__, str(table), str(db)],
        capture_output=True,
        text=True,
        check=False,
    )
    return r.stdout.strip() or r.stderr.strip()


_RERUN = """
import sys, importlib.util
spec = importlib.util.spec_from_file_location("bench_build", sys.argv[1])
mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
import json
from pathlib import Path
print(json.dumps(mod._run_step(Path(sys.argv[2]), Path(sys.argv[3]))))
"""


if __name__ == "__main__":
    main()
