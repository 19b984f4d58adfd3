"""Clustering at scale: identity-structured synthetic embed tables at 10k, 100k and 1M faces.

The synthetic faces are built from real dlib embeddings of ../shared/datasets/lfw-dev (one face
per photo, the one nearest the centre, as in bench_cluster.py): identity centres are drawn
around the real mean with the real between-person covariance, faces around their centre with
the real within-person covariance, both scaled so that the mean same-person cosine distance
and the mean different-person distance match lfw-dev's (about 0.045 and 0.16; printed).
Identity sizes follow a Zipf law (exponent 2, capped at 1% of the table): a few people with
thousands of faces, most with a handful, and about 60% of identities seen once (singletons).

Each size runs ``facekit cluster TABLE.parquet -o OUT.json -q`` in a fresh subprocess, which
reports wall time, CPU time and peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``); the
quality is scored against the synthetic identities (pairwise P/R/F1 from the contingency
table, noise = singletons), then an incremental step adds 1,000 new faces
(``facekit cluster NEW.parquet -o OUT.json``) and is timed the same way.

Usage:
    python benchmarks/bench_scale.py --base /work/cache/lfw-dev.dlib.parquet --sizes 10000 100000
    python benchmarks/bench_scale.py --base ... --sizes 1000000       # check `free -g` first
    python benchmarks/bench_scale.py --base ... --knn 100000           # kNN backends compared
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

HERE = Path(__file__).resolve().parent
#: Model metadata of the base table, copied onto the synthetic ones.
MODELS: dict[str, str] = {}


# --------------------------------------------------------------------------- synthetic data
def real_embeddings(base: str) -> tuple[np.ndarray, np.ndarray]:
    sys.path.insert(0, str(HERE))
    from bench_cluster import central_faces

    from facekit.facetable import FaceTable

    full = FaceTable.read(base)
    MODELS.update({k: v for k, v in full.models.items() if k in ("dlib", "detector")})
    table = central_faces(full)
    x = table.embeddings().vectors["dlib"].astype(np.float64)
    names = [Path(s).parent.name for s in table.frame.source]
    ids = {n: i for i, n in enumerate(sorted(set(names)))}
    return x, np.array([ids[n] for n in names])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _mean_dists(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    d = 1 - x @ x.T
    same = y[:, None] == y[None, :]
    iu = np.triu_indices(len(y), 1)
    s, o = d[iu][same[iu]], d[iu][~same[iu]]
    return float(s.mean()), float(o.mean()), float(o.std())


class Synth:
    """Identity-structured generator fitted to real embeddings."""

    def __init__(self, x: np.ndarray, y: np.ndarray, seed: int = 0) -> None:
        self.mean = x.mean(0)
        means = np.stack([x[y == p].mean(0) for p in np.unique(y)])
        resid = x - means[np.searchsorted(np.unique(y), y)]
        self.lb = self._root(np.cov((means - self.mean).T))
        self.lw = self._root(np.cov(resid.T))
        self.target = _mean_dists(x, y)
        self.sb, self.sw = 1.0, 1.0
        self._fit(seed)

    @staticmethod
    def _root(c: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(c)
        w = np.maximum(w, 0.05 * np.median(np.maximum(w, 0)))  # fill the rank a little
        return v * np.sqrt(w)

    def sample(self, sizes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        dim = len(self.mean)
        centres = self.mean + self.sb * rng.standard_normal((len(sizes), dim)) @ self.lb.T
        ident = np.repeat(np.arange(len(sizes)), sizes)
        out = np.empty((len(ident), dim), np.float32)
        for lo in range(0, len(ident), 1 << 16):
            hi = min(lo + (1 << 16), len(ident))
            noise = self.sw * rng.standard_normal((hi - lo, dim)) @ self.lw.T
            out[lo:hi] = _unit(centres[ident[lo:hi]] + noise)
        return out, ident

    def _fit(self, seed: int) -> None:
        same_t, diff_t, _ = self.target
        for _ in range(12):
            rng = np.random.default_rng(seed)
            x, y = self.sample(np.full(150, 6), rng)
            s, d, _ = _mean_dists(x.astype(np.float64), y)
            self.sw *= (same_t / s) ** 0.5
            self.sb *= ((diff_t - same_t) / max(d - s, 1e-6)) ** 0.5


def zipf_sizes(n: int, rng: np.random.Generator, cap: int) -> np.ndarray:
    sizes: list[int] = []
    total = 0
    while total < n:
        s = rng.zipf(2.0, 4096)
        s = np.minimum(s, cap)
        for v in s:
            v = int(min(v, n - total))
            sizes.append(v)
            total += v
            if total >= n:
                break
    return np.array(sizes, np.int64)


def write_table(path: Path, x: np.ndarray, ident: np.ndarray, prefix: str) -> None:
    """A `facekit embed`-style Parquet table (one face per synthetic photo)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(x)
    sources = [f"{prefix}p{int(p):07d}/{prefix}{i:08d}.jpg" for i, p in enumerate(ident)]
    flat = pa.array(x.reshape(-1), pa.float32())
    emb = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * x.shape[1] + 1, x.shape[1], dtype=np.int32)), flat
    )
    lm = pa.ListArray.from_arrays(
        pa.array(np.arange(0, n * 10 + 1, 10, dtype=np.int32)),
        pa.array(np.zeros(n * 10, np.float32)),
    )
    table = pa.table(
        {
            "source": pa.array(sources),
            "face": pa.array(np.zeros(n, np.int64)),
            "x": pa.array(np.full(n, 10.0)),
            "y": pa.array(np.full(n, 10.0)),
            "w": pa.array(np.full(n, 100.0)),
            "h": pa.array(np.full(n, 100.0)),
            "landmarks": lm,
            "det_score": pa.array(np.ones(n)),
            "face_size": pa.array(np.full(n, 100.0)),
            "time": pa.nulls(n, pa.float64()),
            "digest": pa.array([""] * n),
            "emb_dlib": emb,
        }
    )
    models = MODELS
    files = {s: {"digest": "", "faces": 1, "error": None} for s in sources}
    meta = {
        b"facekit.files": json.dumps(files).encode(),
        b"facekit.models": json.dumps(models).encode(),
    }
    pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")


# --------------------------------------------------------------------------- scoring
def pairwise_prf(truth: np.ndarray, pred: np.ndarray) -> tuple[float, float, float]:
    """Pairwise P/R/F1 from the contingency table (-1 = noise = singletons, in either)."""

    def expand(lab: np.ndarray) -> np.ndarray:
        lab = np.asarray(lab, np.int64).copy()
        noise = lab < 0
        lab[noise] = lab.max(initial=0) + 1 + np.arange(int(noise.sum()))
        return lab

    truth, pred = expand(truth), expand(pred)

    def pairs(c: np.ndarray) -> float:
        c = c.astype(np.float64)
        return float((c * (c - 1) / 2).sum())

    _, joint = np.unique(truth.astype(np.int64) * (pred.max() + 1) + pred, return_counts=True)
    tp = pairs(joint)
    pp = pairs(np.unique(pred, return_counts=True)[1])
    tt = pairs(np.unique(truth, return_counts=True)[1])
    p, r = tp / max(pp, 1.0), tp / max(tt, 1.0)
    return p, r, 2 * p * r / (p + r) if p + r else 0.0


def labels_from_doc(doc: dict, sources: list[str]) -> np.ndarray:
    pos = {s: i for i, s in enumerate(sources)}
    lab = np.full(len(sources), -1, np.int64)
    for ci, c in enumerate(doc["clusters"]):
        for m in c["members"]:
            lab[pos[m["source"]]] = ci
    return lab


# --------------------------------------------------------------------------- subprocess runs
def run_child(args: list[str]) -> dict:
    """Run `facekit ARGS` in a fresh interpreter; wall, CPU and peak RSS of that process."""
    code = (
        "import json, resource, sys, time\n"
        "t = time.perf_counter(); c = time.process_time()\n"
        "from facekit.cli import app\n"
        "try:\n"
        "    app(sys.argv[1:], standalone_mode=False)\n"
        "except SystemExit as e:\n"
        "    pass\n"
        "ru = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(json.dumps({'wall': time.perf_counter() - t, 'cpu': ru.ru_utime + ru.ru_stime,"
        " 'rss_gb': ru.ru_maxrss / 1e6}), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=False
    )
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "{}"
    try:
        return json.loads(last)
    except ValueError:
        raise SystemExit(f"facekit {' '.join(args)} failed:\n{proc.stderr[-3000:]}") from None


def bench_size(synth: Synth, n: int, work: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sizes = zipf_sizes(n + 1000, rng, cap=max(10, n // 100))
    x, ident = synth.sample(sizes, rng)
    perm = rng.permutation(len(ident))
    x, ident = x[perm], ident[perm]
    old, new = slice(0, n), slice(n, n + 1000)
    t0 = time.perf_counter()
    tab, tab_new = work / f"scale{n}.parquet", work / f"scale{n}-new.parquet"
    write_table(tab, x[old], ident[old], "a")
    write_table(tab_new, x[new], ident[new], "b")
    gen = time.perf_counter() - t0
    del x
    out = work / f"scale{n}.json"
    for p in work.glob(f"scale{n}.*"):
        if p.suffix != ".parquet" or p.name.endswith(".faces.parquet"):
            p.unlink()
    full = run_child(["cluster", str(tab), "-o", str(out), "-q", "--rebuild"])
    doc = json.loads(out.read_text())
    src_old = [f"ap{int(p):07d}/a{i:08d}.jpg" for i, p in enumerate(ident[old])]
    p, r, f = pairwise_prf(ident[old], labels_from_doc(doc, src_old))
    singles = float(np.mean(np.bincount(ident[old])[np.unique(ident[old])] == 1))
    print(
        f"| {n:,} | {len(np.unique(ident[old])):,} ({singles:.0%} seen once) | {full['wall']:.1f} | "
        f"{full['cpu']:.1f} | {full['rss_gb']:.2f} | {p:.3f} | {r:.3f} | {f:.3f} | "
        f"{len(doc['clusters']):,} | {len(doc['noise']) / n:.1%} |",
        flush=True,
    )
    inc = run_child(["cluster", str(tab_new), "-o", str(out), "-q"])
    doc2 = json.loads(out.read_text())
    src_new = [f"bp{int(p):07d}/b{i:08d}.jpg" for i, p in enumerate(ident[new])]
    lab = labels_from_doc(doc2, src_old + src_new)
    p2, r2, f2 = pairwise_prf(ident[: n + 1000], lab)
    after = {c["id"]: {m["source"] for m in c["members"]} for c in doc2["clusters"]}
    same_ids = sum(
        1
        for c in doc["clusters"]
        if c["id"] in after and {m["source"] for m in c["members"]} <= after[c["id"]]
    )
    print(
        f"|   + 1,000 new faces (incremental) | | {inc['wall']:.1f} | {inc['cpu']:.1f} | "
        f"{inc['rss_gb']:.2f} | {p2:.3f} | {r2:.3f} | {f2:.3f} | {len(doc2['clusters']):,} | "
        f"{len(doc2['noise']) / (n + 1000):.1%} |",
        flush=True,
    )
    print(
        f"    (tables written in {gen:.1f} s; {same_ids} of {len(doc['clusters'])} old clusters "
        "kept their id and all their faces)",
        flush=True,
    )


def bench_knn(synth: Synth, n: int, seed: int) -> None:
    from facekit.graph import build_index, knn_query

    rng = np.random.default_rng(seed)
    x, _ = synth.sample(zipf_sizes(n, rng, cap=max(10, n // 100)), rng)
    q = rng.choice(n, 2000, replace=False)
    exact = np.argsort(-(x[q] @ x.T), axis=1)[:, 1:17]
    print("| backend | build s | build CPU s | query all s | recall@16 | peak RSS GB |")
    print("|---|---|---|---|---|---|")
    for backend in ("voyager", "faiss"):
        t, c = time.perf_counter(), time.process_time()
        index = build_index(x, backend)
        tb, cb = time.perf_counter() - t, time.process_time() - c
        t = time.perf_counter()
        for lo in range(0, n, 8192):
            knn_query(index, x[lo : lo + 8192], 17)
        tq = time.perf_counter() - t
        got, _ = knn_query(index, x[q], 17)
        rec = np.mean([len(set(g[1:]) & set(e)) / 16 for g, e in zip(got, exact, strict=True)])
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(f"| {backend} | {tb:.1f} | {cb:.1f} | {tq:.1f} | {rec:.3f} | {rss:.2f} |", flush=True)
        del index


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="lfw-dev embed table (dlib)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[10000, 100000])
    ap.add_argument("--knn", type=int, default=0, help="compare kNN backends at this size")
    ap.add_argument("--work", default="/tmp/facekit-scale")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    x, y = real_embeddings(args.base)
    synth = Synth(x, y, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    sx, sy = synth.sample(np.full(300, 6), rng)
    print(
        "real lfw-dev: same-person {:.3f}, different-person {:.3f} (sd {:.3f}); "
        "synthetic: {:.3f}, {:.3f} (sd {:.3f})".format(
            *synth.target, *_mean_dists(sx.astype(np.float64), sy)
        )
    )
    if args.knn:
        bench_knn(synth, args.knn, args.seed)
    if args.sizes:
        print(
            "\n| faces | identities | wall s | CPU s | peak RSS GB | pairwise P | pairwise R | "
            "pairwise F1 | clusters | noise |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        bench_size(synth, n, work, args.seed + n)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("FACEKIT_OFFLINE", "1")
    sys.exit(main())
