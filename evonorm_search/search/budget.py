"""What a search's budget counts: candidates submitted for evaluation.

Shared by the loop (`controller`), the strategies (whose stall clocks count evaluations)
and the views that report progress. Fingerprint duplicates and probe (NaN/inf)
rejections are stored without any evaluation, so they do not count; hash and neutral
skips leave no row at all.
"""

from __future__ import annotations

from typing import Protocol

FINGERPRINT_STAGE = "fingerprint"


class _Row(Protocol):
    status: str
    stage: str | None


def counts_toward_budget(record: _Row) -> bool:
    """Whether the candidate was submitted for evaluation (see `SearchConfig.budget`)."""
    if record.status == "duplicate":
        return False
    return not (record.status == "rejected" and record.stage == FINGERPRINT_STAGE)
