"""Developer sessions. `nox --list` shows them; CI runs `nox -s tests`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """Run the test suite in the current environment (install first: pip install -e '.[dev]')."""
    session.run("python", "-m", "pytest", "-q", *session.posargs)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff (lint + format check) and mypy."""
    session.run("ruff", "check", "src", "tests", "benchmarks")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks")
    session.run("mypy")


@nox.session(python=False, default=False)
def bench(session: nox.Session) -> None:
    """Benchmarks on ../shared (slow: several minutes); figures go to docs/performance.md."""
    for script in ("bench_embed.py", "bench_openset.py", "bench_cluster.py", "bench_video.py"):
        session.run("python", f"benchmarks/{script}", *session.posargs)
