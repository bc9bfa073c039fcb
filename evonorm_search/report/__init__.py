"""The search report: `build_report(store, search_name, out_dir)` writes `out_dir/index.html`.

The package owns turning a stored search into a page people can read offline: `data`
gathers the numbers from the store, `plots` draws them, `html` lays the page out.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from evonorm_search.errors import EvonormError
from evonorm_search.output import write_text_file

if TYPE_CHECKING:
    from db.store import SearchStore


def build_report(store: SearchStore, search_name: str, out_dir: str | Path) -> Path:
    """Write the report of search `search_name` to `out_dir/index.html`; return that path.

    Creates `out_dir` if needed. EvonormError when `out_dir` is a file or not writable,
    OutputWriteError when its disk is full (no partial page is left); StoreError when the
    search does not exist.
    """
    from evonorm_search.report.data import gather
    from evonorm_search.report.html import render

    directory = Path(out_dir).expanduser()
    if directory.exists() and not directory.is_dir():
        raise EvonormError(f"{directory} is a file; pass -o with a directory for the report")
    page = render(gather(store, search_name))
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise EvonormError(
            f"cannot create the report's directory {directory} ({error.strerror}); pass -o "
            "with a writable directory"
        ) from error
    target = directory / "index.html"
    write_text_file(target, page, what="the report", fix="pass -o with another directory")
    return target


__all__ = ["build_report"]
