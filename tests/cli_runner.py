"""Running the real `evonorm` console entry point in-process, for the CLI tests."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from evonorm_search.cli import main


def run_evonorm(*args: str) -> tuple[int, str, str]:
    """`evonorm ARGS...` through `main()` (exit-code handling included): (exit code,
    stdout, stderr)."""
    saved = sys.argv
    with CliRunner().isolation() as (out, err, _):
        sys.argv = ["evonorm", *args]
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        finally:
            sys.argv = saved
        return code, out.getvalue().decode(), err.getvalue().decode()
