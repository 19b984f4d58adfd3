"""Worker processes never outlive their parent (issue 15 "Processes"): kill -9 of the parent,
SIGTERM of the command (exit 143, workers stopped). Real processes, real models."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


def children(pid: int) -> set[int]:
    """Direct children of ``pid`` (from /proc)."""
    out = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            out.add(int(d.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for_workers(proc: subprocess.Popen, n: int, timeout: float = 120) -> set[int]:
    """Wait until ``proc`` has ``n`` worker children that loaded their models (ps name)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = {k for k in children(proc.pid) if "spawn_main" in _cmdline(k)}
        if len(kids) >= n:
            time.sleep(3)  # let them get into their work
            return kids
        if proc.poll() is not None:
            raise AssertionError(f"parent ended early: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.2)
    raise AssertionError("workers did not start")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def wait_gone(pids: set[int], timeout: float = 8) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {p for p in pids if alive(p)}
        if not left:
            return set()
        time.sleep(0.1)
    return {p for p in pids if alive(p)}


@pytest.fixture(scope="module")
def many_photos(lfw) -> list[str]:
    photos = sorted(str(p) for p in lfw.rglob("*.jpg"))[:300]
    assert len(photos) >= 100
    return photos


def test_workers_exit_when_parent_is_killed(many_photos, tmp_path):
    """A parent running run_paths with 2 workers gets SIGKILL: its workers go within seconds."""
    script = tmp_path / "parent.py"
    script.write_text(
        "import sys\n"
        "from facekit.pipeline import PipelineConfig, run_paths\n"
        "if __name__ == '__main__':\n"
        "    for r in run_paths(PipelineConfig(), sys.argv[1:], workers=2):\n"
        "        pass\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script), *many_photos],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers: set[int] = set()
    try:
        workers = wait_for_workers(proc, 2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        left = wait_gone(workers)
        assert not left, f"workers {left} outlived their SIGKILLed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in workers:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_sigterm_is_handled_like_ctrl_c(many_photos, tmp_path, fr_examples):
    """`timeout` sends SIGTERM: one line, exit 143, and no worker left behind."""
    db = tmp_path / "f.db"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "facekit",
            "build-index",
            str(fr_examples / "knn_examples" / "train"),
            "-d",
            str(db),
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    listing = tmp_path / "list.txt"
    # repeated, so that an idle machine cannot finish before the signal arrives
    listing.write_text("\n".join(list(many_photos) * 20) + "\n")
    with open(listing) as stdin:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facekit",
                "identify",
                "-",
                "-d",
                str(db),
                "-j",
                "2",
                "-f",
                "ndjson",
            ],
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        workers: set[int] = set()
        try:
            workers = wait_for_workers(proc, 2)
            os.kill(proc.pid, signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 143, err
            assert err.strip().splitlines()[-1] == "error: terminated (SIGTERM)", err
            assert "Traceback" not in err
            assert not wait_gone(workers, timeout=5)
        finally:
            if proc.poll() is None:
                proc.kill()
            for p in workers:
                if alive(p):
                    os.kill(p, signal.SIGKILL)


def test_resource_tracker_says_nothing_after_an_interrupted_run():
    """A semaphore left registered at an abrupt exit (as a killed pool leaves one) makes
    multiprocessing's resource tracker print 'leaked semaphore' warnings on the inherited
    stderr, after facekit's last line; the CLI's entry point turns them off."""
    code = (
        "import multiprocessing as mp, os, sys\n"
        "from facekit.cli import quiet_resource_tracker\n"
        "if sys.argv[1] == 'quiet': quiet_resource_tracker()\n"
        "s = mp.get_context('spawn').Semaphore()\n"
        "os._exit(0)\n"
    )
    loud = subprocess.run([sys.executable, "-c", code, "loud"], capture_output=True, text=True)
    assert "leaked semaphore" in loud.stderr  # the failure the entry point prevents
    quiet = subprocess.run([sys.executable, "-c", code, "quiet"], capture_output=True, text=True)
    assert quiet.stderr == ""
