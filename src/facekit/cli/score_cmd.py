"""``facekit score``: one ranked row per person over identify/video results."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..render import count
from .common import (
    FormatOpt,
    QuietOpt,
    VerboseOpt,
    handle_errors,
    resolve_format,
    setup_logging,
    stderr,
)

#: Bad inputs listed one per line on stderr; beyond this many, only their count.
MAX_LISTED = 20


def score_cmd(
    results: Annotated[
        list[str],
        typer.Argument(
            metavar="RESULTS",
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

    Files, lines and records that cannot be used (not JSON, not UTF-8, over 16 MB, nested
    over 64 deep, or breaking the record contract) are skipped with one warning each (kept
    under -q) and the ranking of the rest is still printed.

    Exit codes: 0 someone ranked; 1 no person named; 3 some input was skipped as bad
    (the ranking of the rest is printed).
    """
    from rich.text import Text

    from ..render import Format, Renderer
    from ..score import BadInput, iter_records, score_records

    setup_logging(verbose, quiet)
    with handle_errors():
        bad: list[BadInput] = []
        table = score_records(iter_records(results, sys.stdin, bad), bad)
        out = resolve_format(fmt)
        renderer = Renderer(out, columns=table.columns, title="people", wrap=lambda recs: recs[0])
        if out is Format.ndjson:
            for row in table.to_record()["people"]:
                renderer.add(row)
        else:
            renderer.add(table.to_record(), table.rows())
        renderer.close()
        err = stderr()
        for item in bad[:MAX_LISTED]:
            err.print(Text.assemble(("warning:", "yellow"), " ", str(item)), highlight=False)
        if len(bad) > MAX_LISTED:
            err.print(
                Text.assemble(
                    ("warning:", "yellow"), f" ... and {len(bad) - MAX_LISTED} more bad inputs"
                ),
                highlight=False,
            )
        if not quiet:
            err.print(
                f"done: {count(table.records, 'result')} ({count(table.photos, 'photo')}, "
                f"{count(table.videos, 'video')}), {count(len(table.people), 'person')}"
                + (f", {table.ignored} with errors" if table.ignored else "")
                + (f", {len(bad)} bad inputs skipped" if bad else ""),
                highlight=False,
                markup=False,
            )
        raise typer.Exit(3 if bad else 0 if table.people else 1)
