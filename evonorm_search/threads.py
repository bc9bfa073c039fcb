"""`torch_threads`: run a block with a given number of torch intra-op threads.

Shared by the fingerprint filter (controller side) and the workers' evaluations: both
set the thread count for a block and put the previous one back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """`threads` intra-op threads inside the block (None: leave as is); the previous
    count is restored after. Setting the count is skipped when it would not change."""
    previous = torch.get_num_threads()
    change = threads is not None and threads != previous
    if change:
        torch.set_num_threads(threads)  # type: ignore[arg-type]
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(previous)
