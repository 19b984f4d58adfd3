"""Every error is one line with a documented exit code (issue 10 items 10, 13)."""

from __future__ import annotations

import errno
import importlib
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from facekit.cli import app


def invoke(args: list[str]):
    return CliRunner().invoke(app, args, env={"FACEKIT_DEBUG": ""})


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (ValueError("index 3 is out of bounds"), 70, "internal error: ValueError: index 3"),
        (
            MemoryError("Unable to allocate 37.3 GiB"),
            71,
            "out of memory (Unable to allocate 37.3 GiB)",
        ),
        (OSError(errno.ENOSPC, "No space left on device", "out.json"), 74, "out.json: disk full"),
        (
            PermissionError(errno.EACCES, "Permission denied", "/ro/x"),
            74,
            "/ro/x: permission denied",
        ),
        (FileExistsError(errno.EEXIST, "File exists", "/a/file"), 74, "/a/file: already exists"),
        (
            NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/x"),
            74,
            "/f/x: a path component",
        ),
    ],
)
def test_unexpected_errors_are_one_line_with_their_code(monkeypatch, tmp_path, exc, code, text):
    mod = importlib.import_module("facekit.cli.identify_cmd")

    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(mod, "expand_inputs", boom)
    db = tmp_path / "f.db"
    from facekit.index import Database  # an empty database is enough to get past opening

    monkeypatch.setattr(Database, "open", classmethod(lambda cls, p: _FakeDb()))
    r = invoke(["identify", "x.jpg", "-d", str(db)])
    assert r.exit_code == code, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and text.lower() in lines[0].lower(), r.output
    if code == 70:
        assert "FACEKIT_DEBUG=1" in lines[0] and "report" in lines[0]


class _FakeDb:
    models = ("dlib",)
    config = None


def test_internal_error_traceback_with_debug(monkeypatch):
    mod = importlib.import_module("facekit.cli.identify_cmd")

    monkeypatch.setattr(mod, "expand_inputs", lambda *a, **k: 1 / 0)
    from facekit.index import Database

    monkeypatch.setattr(Database, "open", classmethod(lambda cls, p: _FakeDb()))
    r = CliRunner().invoke(app, ["identify", "x.jpg"], env={"FACEKIT_DEBUG": "1"})
    assert isinstance(r.exception, ZeroDivisionError)


def _helps(command, path=()):
    """(where, text) of every help text of the click command tree."""
    yield " ".join(path) or "facekit", command.help or ""
    for p in command.params:
        yield f"{' '.join(path)} {p.name}", getattr(p, "help", None) or ""
    for name, sub in getattr(command, "commands", {}).items():
        yield from _helps(sub, (*path, name))


def test_square_brackets_in_help_survive_rich_markup():
    """Rich markup would eat "[x, y, w, h]": no help text may lose characters to it."""
    import typer.main
    from rich.text import Text

    root = typer.main.get_command(app)
    helps = list(_helps(root))
    assert len(helps) > 50
    for where, text in helps:
        shown = Text.from_markup(text).plain
        assert shown == text.replace("\\[", "["), f"{where}: Rich markup eats part of {text!r}"
    out = CliRunner().invoke(app, ["embed", "--help"], env={"COLUMNS": "300"}).output
    assert "box [x, y, w, h] in original pixels" in re.sub(r"[\s│]+", " ", out)


def test_docs_reference_keeps_brackets():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text()
    flat = re.sub(r"[\s│]+", " ", text)
    assert "box [x, y, w, h] in original pixels" in flat


def test_user_text_is_not_rich_markup(tmp_path):
    """A path such as bad/[red]x.jpg is printed as it is."""
    bad = tmp_path / "[red]x.jpg"
    bad.write_bytes(b"junk")
    r = subprocess.run(
        [sys.executable, "-m", "facekit", "embed", str(bad), "-f", "ndjson", "-q"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 3 and f"{bad}:" in r.stderr, r.stderr
