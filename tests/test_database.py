"""The generation store (facekit.database) on synthetic galleries: empty databases, lost or
damaged CURRENT, damaged manifests and indices, unwritable folders and full disks, and the
authentication and encryption of encrypted databases (issue 15). No models needed."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facekit.database import FACE_COLUMNS, Database, Person
from facekit.errors import DatabaseError, KeyRequiredError

KEY = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch):
    """Fewer PBKDF2 rounds (the count is stored in each manifest, so reading is unchanged)."""
    import facekit.crypto

    monkeypatch.setattr(facekit.crypto, "KDF_ITERATIONS", 2000)


@pytest.fixture
def small_exact(monkeypatch):
    """Search through the Voyager index from 100 faces up (keeps the galleries small)."""
    import facekit.index

    monkeypatch.setattr(facekit.index, "EXACT_MAX", 100)


def _gallery(n: int, people: int = 20, seed: int = 0, dim: int = 128):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dim)).astype(np.float32)
    owner = rng.integers(0, people, n)
    vec = centres[owner] + 0.5 * rng.normal(size=(n, dim)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True) + 1e-12
    faces = pd.DataFrame({c: [0] * n for c in FACE_COLUMNS})
    faces["person"] = [f"p{i}" for i in owner]
    faces["source"] = [f"p{i}/{j}.jpg" for j, i in enumerate(owner)]
    faces["origin"] = "folder"
    persons = {f"p{i}": Person(f"p{i}", f"Person {i}") for i in range(people)}
    return faces, {"dlib": vec.reshape(n, dim)}, persons


def _commit(path: Path, n: int = 50, seed: int = 0, **kw):
    faces, vectors, persons = _gallery(n, seed=seed)
    with Database.lock(path):
        return Database.commit(
            path,
            faces=faces,
            vectors=vectors,
            persons=persons,
            pipeline={"detector": "dlib-hog"},
            fingerprints={"dlib": "x"},
            weights={"dlib": 1.0},
            **kw,
        )


def _use(db: Database) -> None:
    """Read everything a command can read."""
    assert db.persons is not None and db.files is not None and db.person_ids is not None
    if db.n_faces:
        db.knn("dlib", db.vectors["dlib"][:2], 3)
    db.index("dlib")


def _gen(path: Path) -> str:
    return (path / "CURRENT").read_text().split()[0]


def _rewrite(path: Path, name: str, data: bytes) -> None:
    """Replace a file of the live generation AND update every checksum, as an attacker with
    write access (or a buggy tool) would: checksums alone cannot catch it."""
    g = path / _gen(path)
    (g / name).write_bytes(data)
    if name != "manifest.json":
        m = json.loads((g / "manifest.json").read_text())
        m["files"][name] = hashlib.sha256(data).hexdigest()
        m.setdefault("sizes", {})[name] = len(data)
        (g / "manifest.json").write_text(json.dumps(m))
    sha = hashlib.sha256((g / "manifest.json").read_bytes()).hexdigest()
    rest = (path / "CURRENT").read_text().split()[2:]
    (path / "CURRENT").write_text(" ".join([g.name, sha, *rest]) + "\n")


# ------------------------------------------------------------------ empty database
def test_empty_database_is_valid(tmp_path):
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=0)
    db = Database.open(db_path)
    assert db.n_faces == 0 and len(db.faces) == 0 and db.index("dlib") is None
    ids, dist = db.knn("dlib", np.ones((2, 128), np.float32) / np.sqrt(128), 5)
    assert ids.shape == (2, 0) and dist.shape == (2, 0)
    assert db.verify().ok
    _commit(db_path, n=30)  # and the next build goes on from it
    assert Database.open(db_path).n_faces == 30


def test_empty_build_index_then_every_command(tmp_path, fr_examples):
    """A people folder whose photos hold no face: build-index stores an empty database
    (exit 1), which identify and a second build-index can read (was: Voyager 'only 0
    elements' traceback from every command)."""
    from PIL import Image

    people = tmp_path / "people"
    (people / "nobody").mkdir(parents=True)
    Image.new("RGB", (64, 48), (128, 128, 128)).save(people / "nobody" / "grey.png")
    db = tmp_path / "faces.db"
    env = {**os.environ, "FACEKIT_DB": str(db)}
    r = subprocess.run(
        ["facekit", "build-index", str(people), "-q"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    photo = fr_examples / "obama2.jpg"
    r = subprocess.run(
        ["facekit", "identify", str(photo), "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run(
        ["facekit", "build-index", str(people), "-q"], env=env, capture_output=True, text=True
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr


# ------------------------------------------------------------------ CURRENT lost / invalid
def test_lost_current_recovers_newest_generation(tmp_path):
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=40, seed=1)
    _commit(db_path, n=60, seed=2)
    (db_path / "CURRENT").unlink()
    assert Database.exists(db_path)
    db = Database.open(db_path)
    assert db.generation == "gen-000002" and db.n_faces == 60 and db.recovered
    assert db.recovered == "CURRENT is missing"  # also logged as a warning
    _commit(db_path, n=70, seed=3)  # a writer makes it live again and keeps it
    assert _gen(db_path) == "gen-000003" and (db_path / "gen-000002").is_dir()


def test_damaged_current_never_leaves_the_folder(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _commit(elsewhere, n=10, seed=5)
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=40, seed=1)
    sha = (elsewhere / "CURRENT").read_text().split()[1]
    for text in (f"../elsewhere/gen-000001 {sha}", "gen-1 abc", "", "\x00\xff garbage"):
        (db_path / "CURRENT").write_text(text)
        db = Database.open(db_path)
        assert db.path == db_path and db.n_faces == 40 and db.recovered


def test_lost_current_skips_damaged_generations_and_refuses_when_none_is_good(tmp_path):
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=40, seed=1)
    _commit(db_path, n=60, seed=2)
    (db_path / "CURRENT").unlink()
    (db_path / "gen-000002" / "faces.parquet").write_bytes(b"truncated")
    db = Database.open(db_path)
    assert db.generation == "gen-000001" and db.n_faces == 40
    (db_path / "gen-000001" / "manifest.json").write_text("{")
    with pytest.raises(DatabaseError, match="no generation is complete.*nothing was changed"):
        Database.open(db_path)
    assert (db_path / "gen-000001").is_dir() and (db_path / "gen-000002").is_dir()


# ------------------------------------------------------------------ manifest structure
@pytest.mark.parametrize(
    "edit",
    [
        lambda m: "{" + m[:40],  # truncated
        lambda m: json.dumps({k: v for k, v in json.loads(m).items() if k != "files"}),
        lambda m: json.dumps({**json.loads(m), "models": {"dlib": {"dim": "128"}}}),
        lambda m: json.dumps({**json.loads(m), "counts": {"faces": -1, "persons": 1}}),
        lambda m: json.dumps({**json.loads(m), "calibration": {"threshold": "low"}}),
        lambda m: json.dumps({**json.loads(m), "files": {"../../etc/passwd": "0" * 64}}),
        lambda m: json.dumps([1, 2, 3]),
        lambda m: "[" * 100000,
    ],
    ids=["truncated", "no-files", "dim-str", "neg-count", "bad-cal", "path", "list", "deep"],
)
def test_damaged_manifest_is_one_line_error(tmp_path, edit):
    db_path = tmp_path / "faces.db"
    _commit(db_path)
    mpath = db_path / _gen(db_path) / "manifest.json"
    _rewrite(db_path, "manifest.json", edit(mpath.read_text()).encode())
    with pytest.raises(DatabaseError, match="manifest.json"):
        _use(Database.open(db_path))


@pytest.mark.parametrize("name", ["index-dlib.voy", "faces.parquet", "persons.parquet"])
def test_garbage_file_with_updated_checksums(tmp_path, name, small_exact):
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=300)  # above the exact-search size: the index is used
    _rewrite(db_path, name, os.urandom(5000))
    with pytest.raises(DatabaseError, match=name.replace(".", r"\.")):
        _use(Database.open(db_path))
    assert not Database.open(db_path).verify().ok


def test_index_of_other_size_is_refused(tmp_path, small_exact):
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=300)
    other = tmp_path / "other.db"
    _commit(other, n=240)
    _rewrite(db_path, "index-dlib.voy", (other / _gen(other) / "index-dlib.voy").read_bytes())
    with pytest.raises(DatabaseError, match="holds 240 vectors"):
        Database.open(db_path).knn("dlib", np.ones((1, 128), np.float32), 3)


# ------------------------------------------------------------------ folders and disks
def test_db_path_is_a_file(tmp_path):
    f = tmp_path / "faces.db"
    f.write_text("not a database")
    with pytest.raises(DatabaseError, match="is a file"):
        Database.open(f)
    with pytest.raises(DatabaseError, match="is a file"):
        _commit(f)
    assert f.read_text() == "not a database"


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EACCES])
def test_write_failure_keeps_previous_generation(tmp_path, monkeypatch, err):
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=40)
    before = Database.open(db_path).vectors["dlib"].copy()
    real = Path.write_bytes

    def failing(self, data):
        if self.name == "persons.parquet":
            raise OSError(err, os.strerror(err), str(self))
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(DatabaseError, match="disk full" if err == errno.ENOSPC else "permission"):
        _commit(db_path, n=60, seed=9)
    monkeypatch.undo()
    assert sorted(
        p.name for p in db_path.iterdir() if p.name.startswith("gen") or p.name.startswith(".gen")
    ) == ["gen-000001"]
    assert np.array_equal(Database.open(db_path).vectors["dlib"], before)


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if r.returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")


def test_real_disk_full_and_read_only_folder(tmp_path):
    """A 1 MB tmpfs: the second, bigger build runs out of space; then the same folder read-only."""
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "1m")
    try:
        db_path = mnt / "faces.db"
        _commit(db_path, n=200)
        with pytest.raises(DatabaseError, match="disk full"):
            _commit(db_path, n=2000, seed=1)
        assert [p.name for p in db_path.iterdir() if "gen" in p.name] == ["gen-000001"]
        assert Database.open(db_path).n_faces == 200
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(DatabaseError, match="read-only|permission"):
            _commit(db_path, n=10, seed=2)
        _use(Database.open(db_path))  # readers still work
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


# ------------------------------------------------------------------ encryption
def test_encrypted_database_protects_everything(tmp_path, monkeypatch, small_exact):
    monkeypatch.setenv("FACEKIT_KEY", KEY)
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=300, encrypt=True)
    g = db_path / _gen(db_path)
    assert sorted(p.name for p in g.iterdir()) == ["data.zip", "manifest.json"]
    db = Database.open(db_path)
    vec = db.vectors["dlib"]
    raw = b"".join(p.read_bytes() for p in db_path.rglob("*") if p.is_file())
    assert vec[7].tobytes()[:16] not in raw and b"Person 3" not in raw
    assert db.index("dlib") is not None and len(db.index("dlib")) == 300
    # the threshold edited and every checksum updated: refused
    m = json.loads((g / "manifest.json").read_text())
    m["calibration"]["threshold"] = -50.0
    _rewrite(db_path, "manifest.json", json.dumps(m).encode())
    with pytest.raises(DatabaseError, match="fails authentication") as e:
        Database.open(db_path)
    assert e.value.exit_code == 5


def test_encrypted_current_is_authenticated(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_KEY", KEY)
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=30, encrypt=True)
    line = (db_path / "CURRENT").read_text().split()
    (db_path / "CURRENT").write_text(" ".join(line[:2]) + "\n")  # MAC stripped
    with pytest.raises(DatabaseError, match="CURRENT fails authentication"):
        Database.open(db_path)
    (db_path / "CURRENT").write_text(" ".join([*line[:2], "0" * 64]) + "\n")
    with pytest.raises(DatabaseError, match="CURRENT fails authentication"):
        Database.open(db_path)


def test_encrypted_downgrade_to_unauthenticated_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEKIT_KEY", KEY)
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=30, encrypt=True)
    m = json.loads((db_path / _gen(db_path) / "manifest.json").read_text())
    del m["auth"]
    m["format_version"] = 1
    _rewrite(db_path, "manifest.json", json.dumps(m).encode())
    with pytest.raises(DatabaseError, match="without authentication"):
        Database.open(db_path)


def test_encrypted_database_is_not_overwritten_without_its_key(tmp_path, monkeypatch):
    db_path = tmp_path / "faces.db"
    monkeypatch.setenv("FACEKIT_KEY", KEY)
    _commit(db_path, n=30, encrypt=True)
    monkeypatch.setenv("FACEKIT_KEY", "wrong")
    with pytest.raises(KeyRequiredError, match="refusing to overwrite"):
        _commit(db_path, n=40, encrypt=True)
    monkeypatch.delenv("FACEKIT_KEY")
    with pytest.raises(KeyRequiredError):
        _commit(db_path, n=40)  # a plaintext rebuild without the key: refused too
    monkeypatch.setenv("FACEKIT_KEY", KEY)
    assert Database.open(db_path).n_faces == 30  # untouched
    monkeypatch.setenv("FACEKIT_KEY", "new key")
    _commit(db_path, n=40, encrypt=True, discard_encrypted=True)  # explicit: allowed
    assert [p.name for p in db_path.iterdir() if p.name.startswith("gen")] == ["gen-000002"]
    assert Database.open(db_path).n_faces == 40


def test_encrypting_removes_plaintext_generations(tmp_path, monkeypatch):
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=30)
    _commit(db_path, n=31, seed=1)
    monkeypatch.setenv("FACEKIT_KEY", KEY)
    _commit(db_path, n=32, seed=2, encrypt=True)
    assert [p.name for p in db_path.iterdir() if p.name.startswith("gen")] == ["gen-000003"]
    raw = b"".join(p.read_bytes() for p in db_path.rglob("*") if p.is_file())
    assert b"Person 1" not in raw and not list(db_path.rglob("*.parquet"))


# ------------------------------------------------------------------ lazy open, db commands
def test_open_reads_only_the_manifest_and_survives_removal(tmp_path):
    """Open is lazy (tables read on first use), and what it opened stays readable even after
    writers removed its generation (the files are held open)."""
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=40, seed=1)
    db = Database.open(db_path)
    assert db._tables == {} and db._indices == {}
    _commit(db_path, n=41, seed=2)
    _commit(db_path, n=42, seed=3)
    assert not (db_path / "gen-000001").exists()
    _use(db)
    assert db.n_faces == 40 and len(db.faces) == 40


def test_faces_of_equals_isin(tmp_path):
    db_path = tmp_path / "faces.db"
    _commit(db_path, n=300)
    db = Database.open(db_path)
    for persons in (["p1"], ["p3", "p0", "nobody"], sorted(set(db.person_ids))):
        want = np.flatnonzero(np.isin(db.person_ids, persons))
        assert np.array_equal(db.faces_of(np.asarray(persons)), want)


def test_db_info_and_verify_commands(tmp_path):
    from typer.testing import CliRunner

    from facekit.cli import app

    db_path = tmp_path / "faces.db"
    _commit(db_path, n=40)
    r = CliRunner().invoke(app, ["db", "info", "-d", str(db_path), "-f", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)["faces"] == 40
    info = json.loads(r.stdout)
    cal = Database.open(db_path).calibration
    # the promise is shown: stated rate, expected strangers and enrolled named
    assert info["max_strangers"] == pytest.approx(cal.max_strangers, abs=1e-4)
    assert info["expected_strangers"] == pytest.approx(cal.expected_strangers, abs=1e-4)
    assert info["expected_named"] == (
        None if cal.expected_named is None else pytest.approx(cal.expected_named, abs=1e-4)
    )
    r = CliRunner().invoke(app, ["db", "verify", "-d", str(db_path)])
    assert r.exit_code == 0, r.output
    _rewrite(db_path, "faces.parquet", os.urandom(3000))
    r = CliRunner().invoke(app, ["db", "info", "-d", str(db_path), "-f", "json"])
    assert r.exit_code == 0  # info reads the manifest only
    r = CliRunner().invoke(app, ["db", "verify", "-d", str(db_path)])
    assert r.exit_code == 5 and "faces.parquet" in r.output and "Traceback" not in r.output
