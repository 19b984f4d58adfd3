"""Throughput of ``--engine ray`` with 1 and 2 actors against the local engine.

Runs the real CLI in subprocesses (each run is cold: interpreter start, model load, and for
Ray starting a private local Ray instance with a 100 MB object store) on the 790 lfw-dev
photos and - with ``--video`` - on a generated long video. For each run it prints the load
average before it, the wall time and the CPU time of the whole process tree (the CLI, and for
Ray the GCS, raylet, agents and actors it started and reaped), and for Ray the engine's own
split (``-v`` log line): connecting / starting the instance, actor start-up (processes,
imports, model load), and the work once every actor is warm, hence the steady-state rate.
Figures go to docs/performance.md ("Ray engine").

    python benchmarks/bench_ray.py --repeats 3            # photos
    python benchmarks/bench_ray.py --no-photos --video 600  # a 10-minute generated video
    python benchmarks/bench_ray.py --no-photos --video 600 --interval 1  # exact sampling
    python benchmarks/bench_ray.py --only-ray --photos ../shared/datasets/lfw-dev \
        ../shared/datasets/lfw-few ../shared/datasets/lfw-singles  # 5,199 photos

``--only-ray`` skips the local-engine rows (for before/after comparisons of the Ray engine).
For the video it also prints the driver's CPU and how many faces the driver's tracker
identified by embedding and how many it followed (``-v`` log line of ``facekit video``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEKIT_SHARED", ROOT.parent / "shared"))
PHOTO_LINE = re.compile(
    r"ray: (\d+) actors, (\d+) files; connect ([\d.]+) s, actor start-up ([\d.]+) s, "
    r"work ([\d.]+) s \(([\d.]+) files/s once warm, actors busy (\d+)%, (\d+) ms CPU a file\)"
)
VIDEO_LINE = re.compile(
    r"ray: (\d+) actors, (\d+) segments, (\d+) samples; connect ([\d.]+) s, "
    r"start-up \+ work ([\d.]+) s \(actors busy (\d+)%\)"
    # since the actors embed (5 December 2026): their start-up, warm rate and CPU
    r"(?:; actor start-up ([\d.]+) s, work ([\d.]+) s \(([\d.]+) samples/s once warm, "
    r"(\d+) ms CPU a sample\))?"
)
FACES_LINE = re.compile(r"(\d+) faces identified by embedding, (\d+) followed by the tracker")
PHOTO_EXTS = (".jpg", ".jpeg", ".png", ".webp")


def _category(pid: int, root: int, cmd: str) -> str:
    if pid == root:
        return "driver"
    for key, name in (
        ("Actor", "actors"),
        ("spawn_main", "workers"),
        ("raylet", "raylet"),
        ("gcs_server", "gcs"),
        ("agent", "agents"),
        ("Agent", "agents"),
    ):
        if key in cmd:
            return name
    return "other ray" if "ray" in cmd else "other"


POLL = 0.25  # seconds between polls of /proc


class TreeCPU(threading.Thread):
    """Polls /proc (Linux) for the CPU seconds of every process under ``root``, by kind:
    the CLI itself (driver), the pipeline actors, and Ray's own processes; and, over the
    polls in which the actors (or local workers) used CPU, what the others used meanwhile."""

    def __init__(self, root: int):
        super().__init__(daemon=True)
        self.root = root
        self.seen: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()
        self.tick = os.sysconf("SC_CLK_TCK")
        self.during_work: dict[str, float] = {}
        self.work_polls = 0

    def _poll(self) -> None:
        parent: dict[int, int] = {}
        stat: dict[int, list[str]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                    parent[int(d)], stat[int(d)] = int(fields[1]), fields
                except OSError:
                    pass
        for pid, fields in stat.items():
            p, hops = pid, 0
            while p not in (self.root, 0, 1) and hops < 12:
                p, hops = parent.get(p, 0), hops + 1
            if p != self.root:
                continue
            try:
                with open(f"/proc/{pid}/cmdline") as f:
                    cmd = f.read().replace("\0", " ")
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / self.tick
            kind = _category(pid, self.root, cmd)
            old = self.seen.get(pid)
            if old is not None and kind in ("other", "other ray"):
                kind = old[0]  # a process renamed as it exits keeps what it was
            self.seen[pid] = (kind, cpu)

    def run(self) -> None:
        last: dict[int, float] = {}
        while not self.stop.is_set():
            self._poll()
            delta = {pid: cpu - last.get(pid, 0.0) for pid, (_, cpu) in self.seen.items()}
            working = [pid for pid, d in delta.items() if d > 0 and self._pipeline(pid)]
            if last and working:
                # the pipeline was working: what did everything else cost meanwhile?
                self.work_polls += 1
                for pid, d in delta.items():
                    if not self._pipeline(pid):
                        kind = self.seen[pid][0]
                        self.during_work[kind] = self.during_work.get(kind, 0.0) + d
            last = {pid: cpu for pid, (_, cpu) in self.seen.items()}
            self.stop.wait(POLL)

    def _pipeline(self, pid: int) -> bool:
        return self.seen[pid][0] in ("actors", "workers")

    def totals(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, cpu in self.seen.values():
            out[kind] = out.get(kind, 0.0) + cpu
        return out


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, keep_stdout: bool = False
) -> dict:
    """One CLI run: wall, CPU of the process tree (total, and by kind of process as last
    seen), load before, and stderr (one line)."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "facekit", *args],
        cwd=cwd,
        stdout=subprocess.PIPE if keep_stdout else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "400", **(env or {})},
    )
    tree = TreeCPU(proc.pid)
    tree.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    tree.stop.set()
    tree.join()
    r = subprocess.CompletedProcess(proc.args, proc.returncode, stdout or "", stderr)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode not in (0, 1, 3):
        raise SystemExit(f"facekit {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    # Ray's processes are not children the CLI waits for: count the polled tree too.
    reaped = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu = max(reaped, sum(tree.totals().values()))
    return {
        "wall": wall,
        "cpu": cpu,
        "load": load,
        "err": " ".join(r.stderr.split()),
        "by_kind": tree.totals(),
        "stdout": r.stdout,
        "during_work": tree.during_work,
        "work_seconds": tree.work_polls * POLL,
    }


def _overhead(r: dict) -> str:
    """CPU the driver and Ray's processes used while the pipeline worked, as cores."""
    secs = r["work_seconds"]
    if not secs:
        return ""
    other = sum(r["during_work"].values())
    return f"{other:.1f} s in {secs:.1f} s ({other / secs:.2f} cores)"


def _kinds(r: dict) -> str:
    k = r["by_kind"]
    order = ("driver", "workers", "actors", "raylet", "gcs", "agents", "other ray", "other")
    return ", ".join(f"{name} {k[name]:.1f}" for name in order if k.get(name, 0) >= 0.05)


def _summary(label: str, runs: list[dict], unit_count: float, unit: str) -> dict:
    best = min(runs, key=lambda r: r["wall"])
    med = statistics.median(r["wall"] for r in runs)
    walls = ", ".join(f"{r['wall']:.1f}" for r in runs)
    loads = ", ".join(f"{r['load']:.1f}" for r in runs)
    print(
        f"{label:16s} best {best['wall']:6.1f} s (median {med:5.1f}; runs {walls}; loads {loads})"
        f"  CPU {best['cpu']:5.1f} s  {unit_count / best['wall']:6.1f} {unit}",
        flush=True,
    )
    return {"label": label, "best": best, "median": med}


def bench_photos(tmp: Path, repeats: int, folders: list[Path], only_ray: bool) -> None:
    folders = [f.resolve() for f in folders]  # the runs work in a temporary folder
    for folder in folders:
        if not folder.is_dir():
            raise SystemExit(f"{folder} not found")
    n = sum(1 for f in folders for p in f.rglob("*") if p.suffix.lower() in PHOTO_EXTS)
    print(f"photos: {n} in {', '.join(str(f) for f in folders)}", flush=True)
    rows = []
    configs = (
        ("local -j 1", ["-j", "1"]),
        ("local -j 2", ["-j", "2"]),
        ("ray, 1 actor", ["--engine", "ray", "-j", "1"]),
        ("ray, 2 actors", ["--engine", "ray", "-j", "2"]),
    )
    if only_ray:
        configs = configs[2:]
    runs: dict[str, list[dict]] = {label: [] for label, _ in configs}
    for i in range(repeats):  # interleaved, so that a burst of load hits every config alike
        for label, extra in configs:
            out = tmp / f"out{i}.parquet"
            runs[label].append(
                run(["embed", *map(str, folders), "-o", str(out), "--force", "-v", *extra], tmp)
            )
    for label, _ in configs:
        rows.append(_summary(label, runs[label], n, "photos/s"))
    print(
        "\n| engine | wall best (median) | CPU | photos/s end-to-end | load before "
        "| CPU by process (s) | others' CPU while the pipeline worked |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        b = row["best"]
        print(
            f"| {row['label']} | {b['wall']:.1f} s ({row['median']:.1f}) | {b['cpu']:.1f} s "
            f"| {n / b['wall']:.1f} | {b['load']:.1f} | {_kinds(b)} | {_overhead(b)} |"
        )
    print(
        "\n| ray | connect | actor start-up | work (warm) | photos/s warm | actors busy "
        "| actor CPU a photo |\n|---|---|---|---|---|---|---|"
    )
    steady = {}
    for row in [r for r in rows if r["label"].startswith("ray")]:
        m = PHOTO_LINE.search(row["best"]["err"])
        if not m:
            print(f"| {row['label']} | (no ray log line) |")
            continue
        actors, _files, connect, startup, work, rate, busy, ms = m.groups()
        steady[int(actors)] = float(rate)
        print(
            f"| {row['label']} | {connect} s | {startup} s | {work} s | {rate} | {busy}% "
            f"| {ms} ms |"
        )
    w = {r["label"]: r["best"]["wall"] for r in rows}
    line = f"\nend-to-end: ray 2 vs 1 actors {w['ray, 1 actor'] / w['ray, 2 actors']:.2f}x"
    if not only_ray:
        line += (
            f"; local 2 vs 1 {w['local -j 1'] / w['local -j 2']:.2f}x; "
            f"ray vs local at 2: {w['ray, 2 actors'] / w['local -j 2']:.2f}x the time"
        )
    print(line)
    if 1 in steady and 2 in steady:
        print(f"steady state (warm actors): ray 2 vs 1 actors {steady[2] / steady[1]:.2f}x")


def bench_video(tmp: Path, seconds: int, repeats: int, interval: float, only_ray: bool) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_video import make_video  # type: ignore[import-not-found]

    minutes = seconds / 60
    video = make_video(Path(f"/tmp/facekit-bench-{minutes:g}min-720p.mp4"), minutes)
    db = tmp / "db"
    train = SHARED / "datasets" / "face_recognition-examples" / "knn_examples" / "train"
    run(["build-index", str(train), "-d", str(db), "-q"], tmp)
    configs = (
        ("local, 1 worker", [], {"FACEKIT_WORKERS": "1"}),
        ("local, 2 workers", [], {"FACEKIT_WORKERS": "2"}),
        ("ray, 1 actor", ["--engine", "ray"], {"FACEKIT_WORKERS": "1"}),
        ("ray, 2 actors", ["--engine", "ray"], {"FACEKIT_WORKERS": "2"}),
    )
    if only_ray:
        configs = configs[2:]
    runs: dict[str, list[dict]] = {label: [] for label, _, _ in configs}
    for _ in range(repeats):
        for label, extra, env in configs:
            args = ["video", str(video), "-d", str(db), "--interval", f"{interval:g}"]
            args += ["--format", "json"]
            runs[label].append(run([*args, "-v", *extra], tmp, env, keep_stdout=True))
    rows = [_summary(label, runs[label], seconds, "x real time") for label, _, _ in configs]
    print(
        "\n| engine | wall best (median) | CPU | x real time | load before | ray split "
        "| CPU by process (s) | others' CPU while the pipeline worked | faces embedded / followed |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    split: dict[str, re.Match[str]] = {}
    for row in rows:
        b = row["best"]
        m = VIDEO_LINE.search(b["err"])
        text = ""
        if m:
            split[row["label"]] = m
            text = (
                f"{m.group(2)} segments; connect {m.group(4)} s, start-up + work {m.group(5)} s, "
                f"actors busy {m.group(6)}%"
            )
        f = FACES_LINE.search(b["err"])
        faces = f"{f.group(1)} / {f.group(2)}" if f else ""
        print(
            f"| {row['label']} | {b['wall']:.1f} s ({row['median']:.1f}) | {b['cpu']:.1f} s "
            f"| {seconds / b['wall']:.0f}x | {b['load']:.1f} | {text} | {_kinds(b)} "
            f"| {_overhead(b)} | {faces} |"
        )
    print(
        "\n| ray | connect | start-up + work | actor start-up | work (warm) | samples/s warm "
        "| actor CPU a sample | driver CPU |\n|---|---|---|---|---|---|---|---|"
    )
    for row in rows:
        m = split.get(row["label"])
        if m is None or m.group(7) is None:
            continue
        driver = row["best"]["by_kind"].get("driver", 0.0)
        print(
            f"| {row['label']} | {m.group(4)} s | {m.group(5)} s | {m.group(7)} s "
            f"| {m.group(8)} s | {m.group(9)} | {m.group(10)} ms | {driver:.1f} s |"
        )
    reports = set()
    for label, _, _ in configs:
        for r in runs[label]:
            rec = json.loads(r["stdout"])
            for cost in ("timings", "frames_decoded"):
                rec.pop(cost, None)
            reports.add(json.dumps(rec, sort_keys=True))
    print(
        f"\nreports identical across all runs (timings, frames_decoded aside): {len(reports) == 1}"
    )
    w = {r["label"]: r["best"]["wall"] for r in rows}
    line = f"\nvideo end-to-end: ray 2 vs 1 actors {w['ray, 1 actor'] / w['ray, 2 actors']:.2f}x"
    if not only_ray:
        line += f"; local 2 vs 1 {w['local, 1 worker'] / w['local, 2 workers']:.2f}x"
    print(line)
    one, two = split.get("ray, 1 actor"), split.get("ray, 2 actors")
    if one and two:
        print(
            "video without Ray's connect (start-up + work): ray 2 vs 1 actors "
            f"{float(one.group(5)) / float(two.group(5)):.2f}x"
        )
        if one.group(9) and two.group(9):
            print(
                "video steady state (warm actors): ray 2 vs 1 actors "
                f"{float(two.group(9)) / float(one.group(9)):.2f}x"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="runs per configuration (best shown)")
    ap.add_argument("--no-photos", action="store_true", help="skip the lfw-dev photo runs")
    ap.add_argument(
        "--video", type=int, default=0, help="also a generated video of this many seconds"
    )
    ap.add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="video sampling interval (5: keyframe sampling on this video; 1: exact times)",
    )
    ap.add_argument(
        "--photos",
        type=Path,
        nargs="+",
        default=[SHARED / "datasets" / "lfw-dev"],
        help="photo folders embedded in one run (default: lfw-dev, 790 photos)",
    )
    ap.add_argument("--only-ray", action="store_true", help="skip the local-engine runs")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs")
        if not a.no_photos:
            bench_photos(tmp, a.repeats, a.photos, a.only_ray)
        if a.video:
            bench_video(tmp, a.video, a.repeats, a.interval, a.only_ray)


if __name__ == "__main__":
    main()
