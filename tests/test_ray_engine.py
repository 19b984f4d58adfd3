"""``--engine ray`` on a real two-node local Ray cluster gives the same results as a local run.

The cluster is started with ``ray start --head`` plus a second node joined with
``ray start --address`` (one CPU each), and stopped at the end. Skipped when the ``ray``
extra is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the ray extra is not installed: pip install 'facekit-cli[ray]'")

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ray_bin() -> str:
    exe = Path(sys.executable).parent / "ray"
    return str(exe) if exe.exists() else "ray"


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env.pop("RAY_ADDRESS", None)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """Address of a local two-node Ray cluster (head + one joined node, 1 CPU each)."""
    home = tmp_path_factory.mktemp("ray-node-home")  # the nodes' own FACEKIT_HOME
    env = _env(FACEKIT_HOME=str(home))
    for var in ("FACEKIT_MODEL_MIRROR", "FACEKIT_OFFLINE"):
        env.pop(var, None)
    port = _free_port()
    # 127.0.0.2: Ray replaces 127.0.0.1 / localhost by the machine's network address, any
    # other loopback address is kept, so every node and connection stays on loopback.
    address = f"127.0.0.2:{port}"
    env["RAY_AUTH_MODE"] = "token"  # as Ray's default for `ray start --head`, with our token
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(16)
    os.environ["RAY_AUTH_TOKEN"] = env["RAY_AUTH_TOKEN"]
    os.environ["RAY_AUTH_MODE"] = "token"
    ray = _ray_bin()
    # Our own temp dir: every process of this cluster carries it in its command line, so the
    # teardown stops exactly this cluster (`ray stop` would stop every Ray on the machine).
    temp = tempfile.mkdtemp(prefix="fkray", dir="/tmp")
    common = [
        "--num-cpus=1",
        "--disable-usage-stats",
        "--node-ip-address=127.0.0.2",
        # small object stores: the machine is shared; only paths, results and crops travel
        "--object-store-memory=100000000",
    ]
    starts = [
        [
            ray,
            "start",
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            f"--temp-dir={temp}",
            *common,
        ],
        [ray, "start", f"--address={address}", *common],
    ]
    try:
        for cmd in starts:
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                pytest.fail(f"{' '.join(cmd[1:3])} failed: {(r.stderr or r.stdout)[-1500:]}")
        yield address
    finally:
        _stop_processes_of(temp)
        shutil.rmtree(temp, ignore_errors=True)
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.pop("RAY_AUTH_MODE", None)


def _processes_of(marker: str) -> set[int]:
    """Processes whose command line mentions ``marker``, and all their descendants (Ray
    renames its agents and workers, e.g. ``ray::DashboardAgent``, so they lose the marker)."""
    parent: dict[int, int] = {}
    found: set[int] = set()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parent[int(d)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.add(int(d))
        except (OSError, ValueError, IndexError):
            continue
    grew = True
    while grew:
        kids = {pid for pid, pp in parent.items() if pp in found} - found
        grew = bool(kids)
        found |= kids
    return found


def _stop_processes_of(marker: str) -> None:
    """SIGTERM every process of this cluster, then SIGKILL what is left after a grace period
    (gcs_server and raylet do not always exit on SIGTERM)."""
    pids = _processes_of(marker)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.time() + 5
        while pids and time.time() < deadline:
            pids = {pid for pid in pids if os.path.exists(f"/proc/{pid}")}
            time.sleep(0.2)
        if not pids:
            return


def facekit(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args],
        env=_env(**env),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture
def album(lfw, tmp_path):
    """Photos of three lfw-dev people (30 photos) and one corrupt file."""
    folder = tmp_path / "album"
    folder.mkdir()
    for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:3]:
        for photo in sorted(person.glob("*.jpg")):
            shutil.copy(photo, folder / photo.name)
    (folder / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def _read(path: Path):
    import pandas as pd

    return pd.read_parquet(path).sort_values(["source", "face"]).reset_index(drop=True)


def test_embed_on_ray_cluster_matches_local(ray_cluster, album, tmp_path):
    local = facekit("embed", "album", "-o", "local.parquet", cwd=tmp_path)
    remote = facekit(
        "embed",
        "album",
        "-o",
        "ray.parquet",
        "--engine",
        "ray",
        "--ray-address",
        ray_cluster,
        cwd=tmp_path,
    )
    # same exit code (3: one unreadable file), same one-line error, nothing else on stderr
    assert local.returncode == remote.returncode == 3, remote.stderr
    err = [ln for ln in remote.stderr.splitlines() if "zz_broken.jpg" in ln]
    assert err and err == [ln for ln in local.stderr.splitlines() if "zz_broken.jpg" in ln]
    assert "Traceback" not in remote.stderr
    assert remote.stdout == ""
    a, b = _read(tmp_path / "local.parquet"), _read(tmp_path / "ray.parquet")
    assert len(a) == len(b) >= 30
    assert list(a.source) == list(b.source)
    np.testing.assert_array_equal(
        a[["x", "y", "w", "h"]].to_numpy(), b[["x", "y", "w", "h"]].to_numpy()
    )
    ea, eb = np.stack(a["emb_dlib"].to_numpy()), np.stack(b["emb_dlib"].to_numpy())
    np.testing.assert_allclose(ea, eb, atol=1e-5)


def test_build_index_and_identify_on_ray_match_local(ray_cluster, fr_examples, tmp_path):
    train = fr_examples / "knn_examples" / "train"
    probe = fr_examples / "two_people.jpg"
    out = {}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--ray-address", ray_cluster])):
        r = facekit("build-index", str(train), "-d", f"{name}.db", "-q", *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        r = facekit("identify", str(probe), "-d", f"{name}.db", "--format", "json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        out[name] = json.loads(r.stdout)
    assert out["local"] == out["ray"]
    names = {f["identity"]["person"] for rec in out["ray"] for f in rec["faces"] if f["identity"]}
    assert {"biden", "obama"} <= names


def test_a_node_without_the_model_gives_the_one_line_model_error(ray_cluster, album, tmp_path):
    # The nodes have no mirror and no mobilefacenet in their FACEKIT_HOME.
    r = facekit(
        "embed",
        "album",
        "-o",
        "x.parquet",
        "--models",
        "mobilefacenet",
        "--engine",
        "ray",
        "--ray-address",
        ray_cluster,
        cwd=tmp_path,
    )
    assert r.returncode == 4, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "mobilefacenet" in lines[0], r.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_ray_address_without_ray_engine_is_a_usage_error(tmp_path):
    r = facekit("embed", str(tmp_path), "--ray-address", "127.0.0.1:1")
    assert r.returncode == 2 and "--engine ray" in r.stderr


@pytest.mark.slow
def test_a_killed_worker_is_retried(ray_cluster, lfw, tmp_path):
    """SIGKILL one pipeline actor mid-run: Ray restarts it and the output is still complete."""
    folder = tmp_path / "many"
    folder.mkdir()
    for person in sorted(p for p in lfw.iterdir() if p.is_dir())[:40]:
        for photo in sorted(person.glob("*.jpg")):
            shutil.copy(photo, folder / photo.name)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "facekit",
            "embed",
            "many",
            "-o",
            "ray.parquet",
            "-q",
            "--engine",
            "ray",
            "--ray-address",
            ray_cluster,
        ],
        env=_env(),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    killed = None
    deadline = time.time() + 240
    while killed is None and time.time() < deadline and proc.poll() is None:
        ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
        actors = [int(ln.split()[0]) for ln in ps.splitlines() if "PipelineActor" in ln]
        if actors:
            time.sleep(1)  # let it get some work done first
            try:
                os.kill(actors[0], signal.SIGKILL)
                killed = actors[0]
            except ProcessLookupError:  # that worker had just exited: try the next one
                pass
        time.sleep(0.5)
    _, err = proc.communicate(timeout=600)
    assert killed is not None, "no pipeline actor process was seen"
    assert proc.returncode == 0, err
    local = facekit("embed", "many", "-o", "local.parquet", "-q", cwd=tmp_path)
    assert local.returncode == 0
    a, b = _read(tmp_path / "local.parquet"), _read(tmp_path / "ray.parquet")
    assert list(a.source) == list(b.source) and len(a) >= 400


@pytest.mark.parametrize(
    "sampling",
    [
        ["--interval", "1"],  # exact times: each actor seeks to its own range of samples
        ["--interval", "0.5", "--sampling", "keyframe", "--embed-crops"],
    ],
    ids=["exact", "keyframe"],
)
def test_video_on_ray_cluster_matches_local(ray_cluster, shared, fr_examples, tmp_path, sampling):
    clip = shared / "videos" / "short_hamilton_clip.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    train = fr_examples / "knn_examples" / "train"
    assert facekit("build-index", str(train), "-d", "db", "-q", cwd=tmp_path).returncode == 0
    out = {}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--ray-address", ray_cluster])):
        r = facekit(
            "video", str(clip), "-d", "db", *sampling, "--format", "json", *extra, cwd=tmp_path
        )
        assert r.returncode in (0, 1), r.stderr
        assert "Traceback" not in r.stderr
        rec = json.loads(r.stdout)
        rec.pop("timings", None)
        # A cost, not a result: segments seek (exact) or skip keyframes (keyframe) on their
        # own, so the frames decoded in all differ from one decoder's count.
        out[name] = (rec, rec.pop("frames_decoded"))
    assert out["local"][0] == out["ray"][0]
    assert out["ray"][1] > 0
    assert out["ray"][0]["samples"] >= 6 and out["ray"][0]["people"]  # at least one track found


def _without_duration(clip: Path, dest: Path) -> Path:
    """``clip`` remuxed to Matroska through a stream that cannot seek: no duration is
    written (as with a recording cut short or a live capture)."""
    import io

    import av

    class Sink(io.RawIOBase):
        def __init__(self) -> None:
            self.data = bytearray()

        def writable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def write(self, b) -> int:  # type: ignore[override]
            self.data += bytes(b)
            return len(b)

    sink = Sink()
    with av.open(str(clip)) as src, av.open(sink, "w", format="matroska") as out:
        stream = out.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    dest.write_bytes(bytes(sink.data))
    return dest


def test_video_without_duration_on_ray_matches_local(ray_cluster, shared, fr_examples, tmp_path):
    """A file without a duration cannot be split into ranges: it is decoded here and its
    frames go to the actors (``RayFramePool``); the report equals a local run's."""
    clip = shared / "videos" / "short_hamilton_clip.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found")
    from facekit.decode import plan_samples, probe

    video = _without_duration(clip, tmp_path / "nodur.mkv")
    assert plan_samples(probe(video), str(video), interval=1.0).unbounded  # no plan to split
    train = fr_examples / "knn_examples" / "train"
    assert facekit("build-index", str(train), "-d", "db", "-q", cwd=tmp_path).returncode == 0
    out = {}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--ray-address", ray_cluster])):
        r = facekit(
            "video", str(video), "-d", "db", "--interval", "1", "-f", "json", *extra, cwd=tmp_path
        )
        assert r.returncode in (0, 1), r.stderr
        assert "Traceback" not in r.stderr
        rec = json.loads(r.stdout)
        rec.pop("timings", None)
        out[name] = rec
    assert out["local"] == out["ray"]
    assert out["ray"]["samples"] >= 6 and out["ray"]["people"]


def test_video_with_the_tracker_on_ray_matches_local(ray_cluster, lfw, tmp_path):
    """A slideshow of still photos, where the tracker follows faces instead of embedding
    them: the actors embed every face, the driver uses only the embeddings a local run
    computes, and the report and every per-face row are the same."""
    import pandas as pd

    sys.path.insert(0, str(ROOT / "tests"))
    from test_video import make_gallery, make_slideshow

    video = make_slideshow(tmp_path / "slides.mp4", lfw)
    people = make_gallery(tmp_path / "people", lfw)
    assert facekit("build-index", str(people), "-d", "db", "-q", cwd=tmp_path).returncode == 0
    out = {}
    for name, extra in (("local", []), ("ray", ["--engine", "ray", "--ray-address", ray_cluster])):
        r = facekit(
            "video",
            str(video),
            "-d",
            "db",
            "--interval",
            "1",
            "--detections",
            f"{name}.parquet",
            "--format",
            "json",
            "-v",
            *extra,
            cwd=tmp_path,
        )
        assert r.returncode in (0, 1), r.stderr
        rec = json.loads(r.stdout)
        rec.pop("timings", None)
        rec.pop("frames_decoded")
        counts = [ln.split(": ", 1)[1] for ln in r.stderr.splitlines() if "followed by" in ln]
        out[name] = (rec, counts)
    assert out["local"] == out["ray"]
    followed = int(out["ray"][1][0].split(", ")[-1].split()[0])
    assert followed > 0, out["ray"][1]
    a, b = (pd.read_parquet(tmp_path / f"{n}.parquet") for n in ("local", "ray"))
    pd.testing.assert_frame_equal(a, b)
    assert {p["person"] for p in out["ray"][0]["people"]} >= {"Bill_Clinton", "Serena_Williams"}


def test_video_ranges_cover_the_plan_and_balance_the_actors():
    from facekit.ray_engine import SEGMENT_SAMPLES, video_ranges

    for n, actors, mode in [
        (600, 2, "exact"),
        (600, 1, "exact"),
        (19, 2, "exact"),
        (3, 2, "exact"),
        (1, 4, "exact"),
        (72, 2, "keyframe"),
    ]:
        r = video_ranges(n, actors, mode)
        assert r[0][0] == 0 and r[-1][1] == n, (n, actors, mode)
        assert all(a < b for a, b in r) and all(r[k][1] == r[k + 1][0] for k in range(len(r) - 1))
    r = video_ranges(600, 2, "exact")
    sizes = [b - a for a, b in r]
    assert max(sizes) <= SEGMENT_SAMPLES and len(r) % 2 == 0
    # the last two ranges of each actor are cut in halves: actors finish within half a range
    assert max(sizes[-8:]) <= max(sizes) // 2 + 1 and min(sizes[:-8]) > max(sizes[-8:])
    assert len(video_ranges(72, 2, "keyframe")) == 4
    assert all(b - a > SEGMENT_SAMPLES // 2 for a, b in video_ranges(600, 1, "exact"))


def test_error_line_of_a_remote_error_is_its_cause_without_terminal_codes() -> None:
    """A programming error raised in an actor reaches the user as one plain line naming the
    remote exception, not Ray's coloured ``ray::Actor.method() (pid=...)`` header."""
    import ray.exceptions

    from facekit.ray_engine import _error_line

    header = "\x1b[36mray::EmbedActor.run()\x1b[39m (pid=4242, ip=127.0.0.1, actor_id=abc)"
    tb = f'{header}\n  File "/x/facekit/embed.py", line 10, in run\n    1 / 0\nZeroDivisionError: division by zero'
    try:
        1 / 0  # noqa: B018
    except ZeroDivisionError as cause:
        err = ray.exceptions.RayTaskError("EmbedActor.run", tb, cause, pid=4242, ip="127.0.0.1")
    line = _error_line(err)
    assert line == "ZeroDivisionError: division by zero"
    # Without the remote exception object, the first line, with the colour codes removed.
    plain = _error_line(RuntimeError(tb))
    assert "\x1b" not in plain and plain.startswith("ray::EmbedActor.run() (pid=4242")
    missing = RuntimeError(f"{header}\nModuleNotFoundError: No module named 'facekit'")
    assert _error_line(missing) == (
        "No module named 'facekit' on the cluster's workers "
        "(install the same facekit-cli on every node)"
    )
