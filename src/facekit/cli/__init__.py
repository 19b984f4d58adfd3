"""The ``facekit`` command line (Typer). One thin module per command; output via :mod:`facekit.render`."""

from __future__ import annotations

import typer

from .cluster_cmd import cluster_cmd, enroll_cmd
from .db_cmd import db_app
from .embed_cmd import embed_cmd
from .identify_cmd import identify_cmd
from .index_cmd import build_index_cmd
from .models_cmd import models_app
from .people_cmd import people_app
from .score_cmd import score_cmd
from .video_cmd import video_cmd
from .xmp_cmd import import_xmp_cmd

app = typer.Typer(
    name="facekit",
    help="Face recognition for photo and video libraries: embed faces, build a database of known "
    "people, identify them in photos and videos, cluster unknown faces.\n\n"
    "Quick start:  facekit build-index ./people  &&  facekit identify photo.jpg",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

# Commands in pipeline order: what --help lists.
app.command("build-index")(build_index_cmd)
app.command("identify")(identify_cmd)
app.command("video")(video_cmd)
app.command("cluster")(cluster_cmd)
app.command("enroll")(enroll_cmd)
app.command("import-xmp")(import_xmp_cmd)
app.command("score")(score_cmd)
app.command("embed")(embed_cmd)
app.add_typer(people_app, name="people")
app.add_typer(models_app, name="models")
app.add_typer(db_app, name="db")


_LIST_MARKS = ("- ", "* ", "• ", "|", "│")


def reflow_help(text: str) -> str:
    """Join the hard-wrapped lines of each prose paragraph of a command's help.

    Typer's Rich help keeps single line breaks, so docstrings wrapped at ~95 columns came
    out ragged at a terminal's 80 (a line of 80, then a line of 15, ...). Paragraphs with an
    indented line (examples) or a list line are kept as written.
    """
    paragraphs = text.split("\n\n")
    out = []
    for para in paragraphs:
        lines = para.split("\n")
        if len(lines) > 1 and not any(
            line[:1].isspace() or line.lstrip().startswith(_LIST_MARKS) or line.startswith("\b")
            for line in lines
        ):
            para = " ".join(line.strip() for line in lines)
        out.append(para)
    return "\n\n".join(out)


def _reflow_commands(typer_app: typer.Typer) -> None:
    import inspect

    for info in typer_app.registered_commands:
        doc = info.help if info.help is not None else inspect.getdoc(info.callback)
        if doc:
            info.help = reflow_help(inspect.cleandoc(doc))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _reflow_commands(group.typer_instance)


_reflow_commands(app)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", is_eager=True, callback=_version
    ),
) -> None:
    """Face recognition for photo and video libraries."""


def quiet_resource_tracker() -> None:
    """Keep multiprocessing's resource tracker from writing to stderr.

    The tracker, a helper process started with this interpreter's ``-W`` options, cleans up
    the worker pool's semaphores itself but reports them as "leaked" when a run is interrupted
    (SIGTERM, Ctrl-C), after facekit's one-line error, where scripts read the last line.
    """
    import sys

    option = "ignore::UserWarning:multiprocessing.resource_tracker"
    if option not in sys.warnoptions:
        sys.warnoptions.append(option)


def main() -> None:
    """Console-script entry point.

    Ends the process with ``os._exit`` once the command has finished, its ``atexit``
    handlers have run and its output is flushed: interpreter finalisation can tear down native thread pools (ONNX Runtime, OpenCV)
    in an order that aborts the process ("terminate called without an active exception",
    exit -6) after all the work was done, which scripts would read as a crash. Every command
    releases what it holds (locks, worker pools, a local Ray instance) before returning.
    """
    import contextlib
    import os
    import sys

    quiet_resource_tracker()
    try:
        app()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:  # SystemExit("message"): printed as Python would
            print(exc.code, file=sys.stderr)
            code = 1
    import atexit

    # atexit handlers still run (logging, multiprocessing's semaphore and child clean-up);
    # only the interpreter's own teardown of modules and native objects is skipped
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            stream.flush()
    os._exit(code)
