"""Outputs of identify / embed: annotated copies, file modes, output-path checks, error rows,
-q, readable tables, the README's jq pipeline (issue 10 items 2, 4, 8, 12, 15; issue 15)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest


def run(*args: str, cwd: Path | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facekit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        **kw,
    )


@pytest.fixture(scope="module")
def db(tmp_path_factory, fr_examples):
    root = tmp_path_factory.mktemp("out")
    r = run("build-index", str(fr_examples / "knn_examples" / "train"), "-d", str(root / "f.db"))
    assert r.returncode == 0, r.stderr
    return root / "f.db"


@pytest.fixture
def album(tmp_path, fr_examples):
    """Two folders with the same file name, a PNG, and an unreadable file with brackets."""
    (tmp_path / "album" / "a").mkdir(parents=True)
    (tmp_path / "album" / "b").mkdir()
    shutil.copy(fr_examples / "obama.jpg", tmp_path / "album" / "a" / "IMG_0001.jpg")
    shutil.copy(fr_examples / "biden.jpg", tmp_path / "album" / "b" / "IMG_0001.jpg")
    shutil.copy(fr_examples / "alex-lacamoire.png", tmp_path / "album" / "b" / "alex.png")
    (tmp_path / "album" / "b" / "[red]bad.jpg").write_bytes(b"not a photo")
    return tmp_path / "album"


def test_annotate_mirrors_tree_keeps_format_never_overwrites(db, album, tmp_path, fr_examples):
    from PIL import Image

    ann = tmp_path / "ann"
    r = run("identify", str(album), "-d", str(db), "--annotate", str(ann), "-f", "json")
    assert r.returncode == 3, r.stderr  # the bad file
    written = sorted(p.relative_to(ann).as_posix() for p in ann.rglob("*") if p.is_file())
    assert written == ["a/IMG_0001.jpg", "b/IMG_0001.jpg", "b/alex.png"]
    assert Image.open(ann / "b" / "alex.png").format == "PNG"
    assert Image.open(ann / "a" / "IMG_0001.jpg").format == "JPEG"
    # annotated files are created like any other file: 0666 less the umask, not mkstemp's 0600
    assert stat.S_IMODE((ann / "b" / "alex.png").stat().st_mode) == 0o644
    before = (ann / "a" / "IMG_0001.jpg").read_bytes()
    # a second run refuses before doing any work, and changes nothing
    r = run("identify", str(album), "-d", str(db), "--annotate", str(ann))
    assert r.returncode == 2 and "--overwrite" in r.stderr and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1
    assert (ann / "a" / "IMG_0001.jpg").read_bytes() == before
    r = run("identify", str(album), "-d", str(db), "--annotate", str(ann), "--overwrite", "-q")
    assert r.returncode == 3
    # never onto the photos themselves, even with --overwrite
    r = run("identify", str(album), "-d", str(db), "--annotate", str(album), "--overwrite")
    assert r.returncode == 2 and "input photo" in r.stderr
    assert (album / "a" / "IMG_0001.jpg").read_bytes() == (fr_examples / "obama.jpg").read_bytes()


def test_write_atomic_honours_umask_and_keeps_mode(tmp_path):
    from facekit.facetable import write_atomic

    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o640
    os.chmod(tmp_path / "a.txt", 0o664)
    write_atomic(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("y"))
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o664
    assert (tmp_path / "a.txt").read_text() == "y"


def test_write_atomic_disk_full_is_one_line_and_cleans_up(tmp_path):
    import errno

    from facekit.errors import OutputError
    from facekit.facetable import write_atomic

    (tmp_path / "out.parquet").write_text("previous")

    def full(tmp: str) -> None:
        Path(tmp).write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="out.parquet: disk full") as info:
        write_atomic(tmp_path / "out.parquet", full)
    assert info.value.exit_code == 74
    assert [p.name for p in tmp_path.iterdir()] == ["out.parquet"]
    assert (tmp_path / "out.parquet").read_text() == "previous"


def test_embed_outputs_are_checked_before_work(tmp_path, fr_examples):
    photo = str(fr_examples / "obama.jpg")
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["-o", str(tmp_path / "adir")], 2, "is a folder"),
        (["-o", str(tmp_path / "missing" / "f.parquet")], 2, "does not exist"),
        (["-o", str(tmp_path / "afile" / "f.parquet")], 2, "is a file"),
    ]
    for opts, code, text in cases:
        r = run("embed", photo, *opts)
        assert r.returncode == code, (opts, r.stderr)
        assert text in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_identify_annotate_pointing_at_a_file(db, tmp_path, fr_examples):
    (tmp_path / "afile").write_text("x")
    r = run(
        "identify",
        str(fr_examples / "obama.jpg"),
        "-d",
        str(db),
        "--annotate",
        str(tmp_path / "afile"),
    )
    assert r.returncode == 2 and "is a file" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def _as_unprivileged(args: list[str]) -> list[str]:
    """Root ignores permission bits: drop the capabilities that let it (setpriv)."""
    if os.geteuid() != 0:
        return args
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot test a permission-denied folder")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", *args]


def test_unwritable_output_folders_fail_before_work(db, tmp_path, fr_examples):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(fr_examples / "obama.jpg", photos / "o.jpg")
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    fk = [sys.executable, "-m", "facekit"]
    try:
        cases = [
            ["embed", str(photos), "-o", str(ro / "f.parquet")],
            ["identify", str(photos), "-d", str(db), "--annotate", str(ro / "ann")],
            ["identify", str(photos), "-d", str(db), "--annotate", str(ro)],
        ]
        for args in cases:
            r = subprocess.run(
                _as_unprivileged([*fk, *args]), capture_output=True, text=True, timeout=300
            )
            assert r.returncode == 74, (args, r.stderr)
            assert "permission denied" in r.stderr.lower() and str(ro) in r.stderr, r.stderr
            assert len(r.stderr.strip().splitlines()) == 1 and r.stdout == ""
        os.chmod(photos, 0o555)  # --sidecar into a read-only photo folder
        r = subprocess.run(
            _as_unprivileged([*fk, "embed", str(photos), "--sidecar"]),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert (
            r.returncode == 74
            and "--sidecar" in r.stderr
            and "permission denied" in r.stderr.lower()
        )
        assert list(photos.iterdir()) == [photos / "o.jpg"]
    finally:
        os.chmod(ro, 0o755)
        os.chmod(photos, 0o755)


def test_read_only_file_system(tmp_path, fr_examples):
    """A read-only bind mount (EROFS), in a private mount namespace (needs unshare as root)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private read-only bind mount")
    ro = tmp_path / "rofs"
    ro.mkdir()
    inner = (
        f"mount --bind -o ro {ro} {ro} && "
        f"{sys.executable} -m facekit embed {fr_examples / 'obama.jpg'} -o {ro / 'f.parquet'}"
    )
    r = subprocess.run(["unshare", "-m", "sh", "-c", inner], capture_output=True, text=True)
    if "mount" in r.stderr and r.returncode not in (74,):
        pytest.skip(f"cannot make a read-only mount here: {r.stderr.strip()}")
    assert r.returncode == 74 and "read-only file system" in r.stderr.lower(), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_quiet_keeps_errors_and_errors_are_marked_in_every_format(db, album):
    for fmt in ("csv", "ndjson", "json", "table"):
        r = run("identify", str(album), "-d", str(db), "-q", "-f", fmt)
        assert r.returncode == 3
        # -q hides progress and the summary, never the per-file error
        assert r.stderr.strip().splitlines() == [
            f"error: {album}/b/[red]bad.jpg: cannot identify image file (not an image, or an unsupported format)"
        ], r.stderr
        out = r.stdout
        if fmt == "csv":
            rows = list(csv.DictReader(io.StringIO(out)))
            bad = [row for row in rows if row["source"].endswith("bad.jpg")]
            assert bad and bad[0]["error"] and bad[0]["face"] == ""
            assert all(row["error"] == "" for row in rows if row is not bad[0])
        elif fmt == "ndjson":
            recs = [json.loads(ln) for ln in out.splitlines()]
            assert [bool(r["error"]) for r in recs].count(True) == 1
        elif fmt == "json":
            recs = json.loads(out)
            assert [r["source"].endswith("bad.jpg") for r in recs] == [
                bool(r["error"]) for r in recs
            ]
        else:
            assert "ERROR" in out and "[red]bad.jpg" in out


def test_embed_marks_errors_and_no_face_rows(tmp_path, album, fr_examples):
    shutil.copy(fr_examples / "knn_examples" / "test" / "alex_lacamoire1.jpg", album / "c.jpg")
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 120, 120)).save(album / "blank.png")  # no face
    r = run("embed", str(album), "-f", "csv", "-q")
    assert r.returncode == 3
    assert "[red]bad.jpg" in r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    by = {Path(row["source"]).name: row for row in rows}
    assert by["[red]bad.jpg"]["error"] and by["[red]bad.jpg"]["face"] == ""
    assert by["blank.png"]["error"] == "" and by["blank.png"]["face"] == ""
    assert by["c.jpg"]["face"] == "0" and len(json.loads(by["c.jpg"]["emb_dlib"])) == 128
    r = run("embed", str(album), "-f", "table", "-q")
    assert "ERROR" in r.stdout and "no face found" in r.stdout


def test_readme_jq_pipeline_prints_names(db, fr_examples, tmp_path):
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    shutil.copy(fr_examples / "two_people.jpg", tmp_path / "two.jpg")
    cmd = (
        f"{sys.executable} -m facekit identify {tmp_path} -d {db} --format ndjson"
        " | jq -c '{source, who: [.faces[].identity.name]}'"
    )
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=300)
    [line] = r.stdout.splitlines()
    assert sorted(json.loads(line)["who"]) == ["biden", "obama"]


def test_table_fits_80_columns():
    from facekit.render import render_rows

    rows = [
        {
            "source": f"/srv/photos/2024/holidays/very-long-folder-name-{i}/IMG_{i:04d}.jpg",
            "face": 0,
            "person": "unknown" if i % 2 else "Jane Doe (jane)",
            "confidence": None if i % 2 else "87",
            "note": "nearest: jane (31)" if i % 2 else None,
        }
        for i in range(5)
    ]
    buf = io.StringIO()
    render_rows(rows, buf, title="faces", width=80)
    lines = buf.getvalue().splitlines()
    assert max(len(ln) for ln in lines) <= 80
    assert "faces in /srv/photos/2024/holidays" in lines[0]
    body = [ln for ln in lines if ".jpg" in ln]
    assert len(body) == 5  # one line per row: no wrapping
    assert sum("unknown" in ln for ln in body) == 2


def test_video_and_cluster_outputs_are_checked_before_work(tmp_path, fr_examples):
    """Issue 15: `cluster -o` into a missing folder used to crash after all the work."""
    (tmp_path / "afile").write_text("x")
    photo = str(fr_examples / "obama.jpg")
    nodb = str(tmp_path / "no.db")
    cases = [
        (["video", "v.mp4", "-d", nodb, "--crops", str(tmp_path / "afile")], "is a file"),
        # (video creates missing folders of --timeline/--crops, so a missing parent is fine)
        (["video", "v.mp4", "-d", nodb, "--timeline", str(tmp_path)], "is a folder"),
        (["cluster", photo, "-o", str(tmp_path / "no" / "c.json")], "does not exist"),
        (["cluster", photo, "--sheets", str(tmp_path / "afile")], "is a file"),
    ]
    for args, text in cases:
        r = run(*args)
        assert r.returncode == 2, (args, r.stderr)
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)
        assert "Traceback" not in r.stderr


def test_disk_full_is_one_line_and_keeps_the_previous_output(tmp_path, fr_examples):
    """A real full disk: a 1 MB tmpfs in a private mount namespace (needs root and unshare)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a private tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    photos = " ".join(str(fr_examples / n) for n in ("obama.jpg", "biden.jpg", "two_people.jpg"))
    fk = f"{sys.executable} -m facekit"
    inner = (
        f"mount -t tmpfs -o size=1m tmpfs {mnt} && "
        f"{fk} embed {fr_examples / 'obama.jpg'} -o {mnt}/f.parquet -q && "
        f"cp {mnt}/f.parquet {tmp_path}/before.parquet && "
        f"(dd if=/dev/zero of={mnt}/fill bs=64k 2>/dev/null; true) && "
        f"{fk} embed {photos} -o {mnt}/f.parquet --force; echo rc=$?; "
        f"cmp {mnt}/f.parquet {tmp_path}/before.parquet && echo same; ls -a {mnt}"
    )
    r = subprocess.run(
        ["unshare", "-m", "sh", "-c", inner], capture_output=True, text=True, timeout=300
    )
    if "mount:" in r.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    assert "rc=74" in r.stdout, r.stdout + r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "disk full" in errors[0] and "f.parquet" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    assert "same" in r.stdout  # the previous table is untouched
    assert ".tmp" not in r.stdout  # and no temp file is left behind


def test_stderr_piped_has_no_blank_lines(db, album, tmp_path):
    """With stderr a pipe (cron, a log file), no progress bar is drawn: it used to leave an
    empty line before the summary of identify, embed, cluster and video."""
    runs = [
        run("identify", str(album / "a"), "-d", str(db), "-f", "csv"),
        run("embed", str(album / "a"), "-o", str(tmp_path / "e.parquet")),
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert r.stderr.strip(), "expected a summary line"
        assert "" not in r.stderr.splitlines(), repr(r.stderr)
