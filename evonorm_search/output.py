"""Writing the files a user asks for (a report page, an exported layer): whole or not at all.

`write_text_file` writes to a temporary file next to the target and renames it over the
target only once every byte is written, so a full disk or an I/O error never leaves a
truncated file behind (nor clobbers an older complete one), and it names the fix: free
space (`OutputWriteError`, exit status 74) or choose another path (`EvonormError`, 2).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from evonorm_search.errors import EvonormError, OutputWriteError

# The machine's faults (a full disk or quota, a failing disk, a read-only file system, a
# file-size limit), as opposed to a path the user can simply change.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG)


def write_text_file(target: Path, text: str, *, what: str, fix: str) -> None:
    """Write `text` to `target` atomically. `what` names the file in messages ("the
    report"), `fix` says how to choose another place ("pass -o with another directory")."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno in DISK_ERRNOS:
            raise OutputWriteError(
                f"cannot write {what} to {target} ({error.strerror}); nothing was written there. "
                f"Free space on that disk, or {fix}, then run the same command again"
            ) from None
        raise EvonormError(f"cannot write {what} to {target} ({error.strerror}); {fix}") from None


__all__ = ["DISK_ERRNOS", "write_text_file"]
