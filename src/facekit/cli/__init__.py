"""The ``facekit`` command line (Typer). One thin module per command; output via :mod:`facekit.render`."""

from __future__ import annotations

import typer

from .embed_cmd import embed_cmd
from .models_cmd import models_app

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

app.command("embed")(embed_cmd)
app.add_typer(models_app, name="models")


def _register_optional() -> None:
    """Commands added by later modules register here (kept in one place)."""
    import importlib

    for mod, attr, name in (
        ("index_cmd", "build_index_cmd", "build-index"),
        ("identify_cmd", "identify_cmd", "identify"),
        ("video_cmd", "video_cmd", "video"),
        ("cluster_cmd", "cluster_cmd", "cluster"),
        ("cluster_cmd", "enroll_cmd", "enroll"),
        ("score_cmd", "score_cmd", "score"),
    ):
        try:
            module = importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{mod}":
                raise
            continue
        app.command(name)(getattr(module, attr))


_register_optional()


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(__version__)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_version),
) -> None:
    """Face recognition for photo and video libraries."""


def main() -> None:
    """Console-script entry point."""
    app()
