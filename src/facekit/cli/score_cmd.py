"""``facekit score``: one ranked row per person over identify/video results."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from .common import (
    FormatOpt,
    QuietOpt,
    VerboseOpt,
    handle_errors,
    resolve_format,
    setup_logging,
    stderr,
)


def score_cmd(
    results: Annotated[
        list[str],
        typer.Argument(
            metavar="RESULTS...",
            help="JSON/NDJSON from `facekit identify` or `facekit video`: files, folders, or - for stdin.",
            show_default=False,
        ),
    ],
    fmt: FormatOpt = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Rank the people named across many results: Score, Hits, confidence, id, name.

    Example:

        facekit identify stills/ -d faces.db -f ndjson | facekit score -

        facekit score results/ --format csv > ranking.csv

    Score = sum over photos/videos of the person's best confidence / 100 in each (so a
    person seen in many stills accumulates evidence); Hits = photos/videos naming them;
    confidence = mean best confidence; distance_<model> = mean cosine distance of those
    faces. Sorted by Score. See docs/clustering.md.

    Exit codes: 0 someone ranked; 1 no person named; 3 unreadable input.
    """
    from ..render import Format, Renderer
    from ..score import read_records, score_records

    setup_logging(verbose, quiet)
    with handle_errors():
        table = score_records(read_records(results, sys.stdin))
        out = resolve_format(fmt)
        renderer = Renderer(out, columns=table.columns, title="people", wrap=lambda recs: recs[0])
        if out is Format.ndjson:
            for row in table.to_record()["people"]:
                renderer.add(row)
        else:
            renderer.add(table.to_record(), table.rows())
        renderer.close()
        if not quiet:
            stderr().print(
                f"done: {table.records} results ({table.photos} photos, {table.videos} videos), "
                f"{len(table.people)} people"
                + (f", {table.ignored} ignored" if table.ignored else ""),
                highlight=False,
            )
        raise typer.Exit(0 if table.people else 1)
