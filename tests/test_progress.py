"""Progress lines show the total and an ETA when the total is known (issue 10 item 16)."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

import facekit.cli.common as common


def _capture(monkeypatch) -> io.StringIO:
    buf = io.StringIO()
    monkeypatch.setattr(common, "stderr", lambda: Console(file=buf, force_terminal=True, width=100))
    return buf


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_known_total_shows_count_of_total_and_eta(monkeypatch):
    buf = _capture(monkeypatch)
    seen = []
    for x in common.track(range(5), 5, "identifying", quiet=False, unit="files"):
        time.sleep(0.15)
        seen.append(x)
    assert seen == list(range(5))
    out = plain(buf.getvalue())
    assert re.search(r"identifying .*\b[0-5]/5 files\b", out), out
    assert "ETA 0:00:0" in out and "/?" not in out


def test_unknown_total_shows_a_count_not_a_question_mark(monkeypatch):
    buf = _capture(monkeypatch)
    with common.ProgressBar("embedding gallery", quiet=False, unit="photos") as bar:
        for _ in range(3):
            bar.advance()
            time.sleep(0.1)
        bar._progress.refresh()
        bar.set_total(10)  # learnt late: from now on a bar and an ETA
        for _ in range(3):
            time.sleep(0.15)
            bar.advance()
        bar._progress.refresh()
    out = plain(buf.getvalue())
    assert "3 photos" in out and "/?" not in out
    assert "6/10 photos" in out and "ETA" in out


def test_quiet_prints_nothing(monkeypatch):
    buf = _capture(monkeypatch)
    assert list(common.track(iter([1, 2]), 2, "x", quiet=True)) == [1, 2]
    with common.ProgressBar("y", 3, quiet=True) as bar:
        bar.advance()
    assert buf.getvalue() == ""
