"""The generated bad-input corpus (``corpus.py``) run through the real CLI, one test per case.

Each case must end with: no Python traceback; an exit code from the case's documented set
(README "Exit codes": 2 usage, 3 input, 4 model, 5 database; never 1 for an error); for an
error, a one-line message on stderr that names the file and the problem; and, where a
database is involved, the stored data intact (or still working) afterwards.

Cases run in-process through Typer's CliRunner (fast: models load once per session); any
exception escaping the command is a failure with its full traceback. ``subprocess=True``
cases (and every case with ``BADINPUT_SUBPROCESS=1``) run ``python -m facekit`` instead.
Cases marked ``no_dac`` run without CAP_DAC_OVERRIDE so that file modes (read-only folders,
unreadable files) apply even when the tests run as root.

XFAIL CONVENTION. A case that still fails because of a known, open defect is listed in
:data:`XFAIL` as ``"case id": "<owner helper>: <defect>"`` and runs as
``xfail(strict=True)``. When the owner fixes the defect the case XPASSes, which FAILS the
run: the fixer then deletes the case's line from :data:`XFAIL`. Never loosen a case's
expectation to make it pass; fix the code or keep the xfail with a true reason.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from corpus import CASES, Case, Ctx
from typer.testing import CliRunner

from facekit.cli import app

#: case id -> "<owner helper>: <open defect>" (see the module docstring).
XFAIL: dict[str, str] = {}

TRACEBACK = "Traceback (most recent call last)"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
FIFO_PATIENCE = 15.0  # seconds before the watchdog unblocks a reader stuck on a FIFO
MEMORY_HEADROOM = 3 << 29  # bytes (1.5 GiB) a case may allocate in-process before MemoryError
SUBPROCESS_MEMORY = 9 << 29  # address-space cap (4.5 GiB) of a subprocess case


def test_corpus_is_large_and_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(CASES) >= 80
    kinds = {c.kind for c in CASES}
    assert kinds >= {
        "image",
        "video",
        "database",
        "model",
        "metadata",
        "score",
        "cluster",
        "output",
    }
    assert set(XFAIL) <= set(ids), f"XFAIL names unknown cases: {set(XFAIL) - set(ids)}"


# --------------------------------------------------------------------------- session bases
# One small database, its people folder, a cluster file and a FACEKIT_HOME holding the dlib
# ONNX conversion, each built once from ../shared and copied per case (never committed).
# (Here rather than in a conftest.py: a second module named "conftest" would shadow
# tests/conftest.py for the tests that import from it.)
TRAIN = ("datasets", "face_recognition-examples", "knn_examples", "train")
EXAMPLES = ("datasets", "face_recognition-examples")


@pytest.fixture(scope="session")
def badinput_base(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with ``home``, ``people`` (5 people, 9 photos), ``db`` (built from it) and
    ``clusters.json`` + ``clusters.faces.parquet`` (one cluster c-0001 of 4 Obama photos)."""
    train = shared.joinpath(*TRAIN)
    if not train.is_dir():
        pytest.skip(f"{train} not found: the bad-input suite derives its files from ../shared")
    base = tmp_path_factory.mktemp("badinput-base")
    (base / "home").mkdir()
    env = {"FACEKIT_HOME": str(base / "home"), "FACEKIT_OFFLINE": "1"}
    for var in (
        "FACEKIT_DB",
        "FACEKIT_KEY",
        "FACEKIT_MODEL_MIRROR",
        "FACEKIT_RAISE",
        "FACEKIT_DEBUG",
    ):
        env[var] = None  # type: ignore[assignment]
    people = base / "people"
    for src in sorted(train.rglob("*")):
        if src.is_file():
            dst = people / src.relative_to(train)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)  # copyfile: the shared files are read-only
    runner = CliRunner()
    res = runner.invoke(
        app, ["build-index", str(people), "-d", str(base / "db"), "-q", "-j", "1"], env=env
    )
    assert res.exit_code == 0, res.output
    album = base / "album"
    album.mkdir()
    for name in ("obama.jpg", "obama2.jpg", "obama-240p.jpg", "obama_small.jpg"):
        shutil.copyfile(shared.joinpath(*EXAMPLES, name), album / name)
    res = runner.invoke(
        app,
        ["cluster", str(album), "-o", str(base / "clusters.json"), "-q", "-j", "1", "-f", "json"],
        env=env,
    )
    assert res.exit_code == 0, res.output
    assert (base / "clusters.faces.parquet").is_file()
    for p in [base, *base.rglob("*")]:  # the cases' copies must be writable
        if not p.is_symlink():
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return base


# --------------------------------------------------------------------------- running a case
@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str
    traceback: str | None  # formatted exception that escaped the command, if any
    seconds: float


_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


@contextmanager
def _without_dac() -> Iterator[None]:
    """Drop CAP_DAC_OVERRIDE/READ_SEARCH/FOWNER from this thread's effective set (so file modes
    apply to root), restoring them afterwards. A no-op for non-root users."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    hdr = _CapHeader(0x20080522, 0)
    data = (_CapData * 2)()
    if libc.capget(ctypes.byref(hdr), data) != 0:
        pytest.skip("capget failed: cannot drop CAP_DAC_OVERRIDE to test file modes as root")
    saved = data[0].effective
    mask = (1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH) | (1 << _CAP_FOWNER)
    data[0].effective = saved & ~mask
    if libc.capset(ctypes.byref(hdr), data) != 0:
        pytest.skip("capset failed: cannot drop CAP_DAC_OVERRIDE to test file modes as root")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(hdr), data)


@contextmanager
def _memory_cap() -> Iterator[None]:
    """Cap this process's address space at its current size + MEMORY_HEADROOM while a case
    runs, so that a runaway allocation is a MemoryError (a failed case), not the OOM killer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        with open("/proc/self/statm") as fh:
            vm = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        yield
        return
    cap = vm + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (SUBPROCESS_MEMORY, SUBPROCESS_MEMORY))


def _watch_fifos(folder: Path, stop: threading.Event) -> None:
    """After FIFO_PATIENCE s, keep opening every FIFO under ``folder`` for writing and closing
    it, so that a command blocked reading one gets EOF instead of hanging the suite."""
    if stop.wait(FIFO_PATIENCE):
        return
    fifos = [p for p in folder.rglob("*") if p.is_fifo()]
    while not stop.is_set():
        for p in fifos:
            with suppress(OSError):
                os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))
        stop.wait(0.2)


def _env(ctx: Ctx) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "FACEKIT_HOME": str(ctx.base / "home"),
        "FACEKIT_OFFLINE": "1",
        "FACEKIT_DB": None,
        "FACEKIT_KEY": None,
        "FACEKIT_MODEL_MIRROR": None,
        "FACEKIT_DEBUG": None,
        "FACEKIT_RAISE": None,
        "COLUMNS": "200",
    }
    env.update(ctx.env)
    return env


def _fresh_logging() -> None:
    """Forget the log handlers of earlier in-process commands (bound to their closed streams),
    as a new process would."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_facekit", False):
            root.removeHandler(h)


def run_case(case: Case, argv: list[str], ctx: Ctx) -> Outcome:
    _fresh_logging()
    stop = threading.Event()
    watchdog = threading.Thread(target=_watch_fifos, args=(ctx.tmp, stop), daemon=True)
    watchdog.start()
    t0 = time.monotonic()
    try:
        if case.subprocess or os.environ.get("BADINPUT_SUBPROCESS") == "1":
            return _run_subprocess(argv, ctx, t0)
        runner = CliRunner()
        with _memory_cap(), _without_dac() if ctx.no_dac else nullcontext():
            res = runner.invoke(app, argv, env=_env(ctx), input=ctx.stdin)
        tb = None
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            tb = "".join(traceback.format_exception(*res.exc_info))  # type: ignore[misc]
        return Outcome(res.exit_code, res.stdout, res.stderr, tb, time.monotonic() - t0)
    finally:
        stop.set()


def _run_subprocess(argv: list[str], ctx: Ctx, t0: float) -> Outcome:
    env = dict(os.environ)
    for k, v in _env(ctx).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH", "")]
    )
    cmd = [sys.executable, "-m", "facekit", *argv]
    if ctx.no_dac and os.geteuid() == 0:
        caps = "-dac_override,-dac_read_search,-fowner"
        cmd = ["setpriv", f"--inh-caps={caps}", f"--bounding-set={caps}", *cmd]
    proc = subprocess.run(
        cmd,
        env=env,
        input=(ctx.stdin or "").encode(),
        capture_output=True,
        timeout=180,
        preexec_fn=_limit_child,
    )
    err = proc.stderr.decode("utf-8", "replace")
    tb = err if TRACEBACK in err else None
    return Outcome(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        err,
        tb,
        time.monotonic() - t0,
    )


# --------------------------------------------------------------------------- database checks
def _snapshot(db: Path) -> dict[str, str]:
    out = {}
    for p in sorted(db.rglob("*")) if db.is_dir() else []:
        rel = p.relative_to(db).as_posix()
        if p.is_file() and not p.is_symlink() and rel.startswith("gen-") or rel == "CURRENT":
            try:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                out[rel] = "unreadable"
    return out


def _restore_modes(folder: Path) -> None:
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            with suppress(OSError):
                os.chmod(p, 0o755 if p.is_dir() else 0o644)


def _check_db_works(ctx: Ctx, db: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["identify", str(ctx.photo), "-d", str(db), "-f", "json", "-q", "-j", "1"],
        env=_env(ctx),
    )
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exc_info
    assert res.exit_code == 0, f"database no longer names Obama: exit {res.exit_code} {res.stderr}"
    people = [
        f["identity"]["person"] for r in json.loads(res.stdout) for f in r["faces"] if f["identity"]
    ]
    assert people == ["obama"], people
    try:
        from facekit.database import Database  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from facekit.index import Database
    info = Database.open(db).info()
    assert info.persons >= 5 and info.faces >= 9, (
        f"stored people or faces lost: {info.persons} people, {info.faces} faces (was 5, 9)"
    )


# --------------------------------------------------------------------------- the test
def _params() -> list[object]:
    out = []
    for c in CASES:
        marks = []
        if c.id in XFAIL:
            marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[c.id]))
        out.append(pytest.param(c, id=c.id, marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_bad_input(case: Case, badinput_base: Path, shared: Path, tmp_path: Path):
    ctx = Ctx(tmp_path / "case", shared, badinput_base)
    ctx.tmp.mkdir()
    argv = case.build(ctx)
    before = _snapshot(ctx.db) if (case.db and ctx.db) else {}
    out = run_case(case, argv, ctx)
    try:
        _verdict(case, ctx, argv, out, before)
    finally:
        _restore_modes(ctx.tmp)


def _verdict(case: Case, ctx: Ctx, argv: list[str], out: Outcome, before: dict[str, str]) -> None:
    shown = f"facekit {' '.join(argv)[:300]}\nexit {out.exit_code}\nstderr:\n{out.stderr[-3000:]}"
    assert out.traceback is None, f"traceback from {shown}\n{out.traceback}"
    assert TRACEBACK not in out.stderr and TRACEBACK not in out.stdout, (
        f"traceback printed: {shown}"
    )
    assert out.seconds < FIFO_PATIENCE or not any(p.is_fifo() for p in ctx.tmp.rglob("*")), (
        f"blocked reading a FIFO for {out.seconds:.0f} s: {shown}"
    )
    assert out.exit_code in case.exit, (
        f"exit {out.exit_code}, expected {sorted(case.exit)}: {shown}"
    )
    lines = [ANSI.sub("", line) for line in out.stderr.splitlines()]
    assert all(len(line) < 2000 for line in lines), (
        f"a stderr line of over 2000 characters: {shown}"
    )
    if out.exit_code not in (0, 1) and case.names is not None:
        named = [line for line in lines if case.names in line]
        assert named, f"no stderr line names {case.names!r}: {shown}"
        assert any(re.search(case.problem, line, re.I) for line in named), (
            f"no stderr line naming {case.names!r} says what is wrong (/{case.problem}/): {shown}"
        )
    if case.check is not None:
        case.check(ctx, out)
    if case.db and ctx.db is not None:
        _restore_modes(ctx.tmp)
        after = _snapshot(ctx.db)
        lost = {
            k
            for k, v in before.items()
            if after.get(k) != v and not (k == "CURRENT" and out.exit_code == 0)
        }
        if case.db == "intact":
            assert not lost, f"stored database files changed or removed: {sorted(lost)}: {shown}"
        elif case.db == "works":
            _check_db_works(ctx, ctx.db)
    shutil.rmtree(ctx.tmp, ignore_errors=True)
