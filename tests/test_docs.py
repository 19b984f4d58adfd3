"""The docs stay true: the CLI reference matches --help, and every command is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [
    "build-index",
    "identify",
    "video",
    "cluster",
    "enroll",
    "score",
    "embed",
    "models",
    "db",
    "people",
]


def test_cli_reference_is_up_to_date():
    pytest.importorskip("cogapp")
    r = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", str(ROOT / "docs" / "cli.md")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert r.returncode == 0, (
        f"docs/cli.md is out of date: run `cog -r docs/cli.md`\n{r.stdout}{r.stderr}"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_readme_and_reference(command):
    readme = (ROOT / "README.md").read_text()
    reference = (ROOT / "docs" / "cli.md").read_text()
    assert f"facekit {command}" in readme
    assert f"## `facekit {command}`" in reference


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("models", "db", "people")])
def test_help_has_an_example(command):
    from typer.testing import CliRunner

    from facekit.cli import app

    result = CliRunner().invoke(app, [command, "--help"])
    assert (
        result.exit_code == 0
        and "Example" in result.output
        and f"facekit {command}" in result.output
    )


@pytest.mark.parametrize(
    "args, sentence",
    [
        (
            ["identify"],
            "Every face gets the top-k people with per-model distances and a 0-100 confidence; "
            "a face below the calibrated threshold is unknown",
        ),
        (
            ["people"],
            "Later build-index runs keep it over people.json / people.csv (and warn where",
        ),
    ],
)
def test_help_prose_is_reflowed_to_the_terminal(args, sentence):
    """Docstring paragraphs are joined, so help wraps at the terminal's width instead of
    keeping the ~95-column hard breaks (ragged at 80 columns; Typer keeps single newlines)."""
    from typer.testing import CliRunner

    from facekit.cli import app

    r = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "300", "NO_COLOR": "1"})
    assert r.exit_code == 0
    assert any(sentence in line for line in r.output.splitlines()), r.output


def test_reflow_keeps_examples_and_lists():
    from facekit.cli import reflow_help

    text = "Summary.\n\nOne line\nwrapped here.\n\nExample:\n\n    a\n    b\n\n- x\n- y"
    assert reflow_help(text) == (
        "Summary.\n\nOne line wrapped here.\n\nExample:\n\n    a\n    b\n\n- x\n- y"
    )


def test_usage_lines_name_arguments_in_capitals():
    """Usage lines read like the README's (`facekit identify PHOTO...`): no Python parameter
    names (`{paths}...`, `[people_dir]`) and no doubled markers (`[[NAME...]]...`)."""
    import re

    usage = [
        line
        for line in (ROOT / "docs" / "cli.md").read_text().splitlines()
        if line.strip().startswith("Usage: facekit")
    ]
    assert len(usage) > 20
    for line in usage:
        args = line.split("[OPTIONS]", 1)[1]
        assert not re.search(r"[a-z]", args.replace("COMMAND [ARGS]", "")), line
        assert "[[" not in args and "...}" not in args and "...]" not in args, line
