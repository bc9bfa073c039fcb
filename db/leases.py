"""Leases: at most one process runs a search at a time.

A running `evonorm search NAME` holds the lease of NAME: a row of the `leases` table
(schema v5) naming its process (pid, host, and on Linux the boot id and start time that
tell it from a later process reusing the pid), when it started and its last heartbeat.
`acquire` takes the lease in one write transaction, so of two processes started together
exactly one gets it; the other gets `SearchRunning` naming the holder. A lease whose
holder is gone is taken over at once: on the same host when that process no longer
exists (a SIGKILLed search resumes without waiting), from another host (a database on a
shared disk) when its heartbeat is older than `EXPIRY_SECONDS`. The holder renews the
heartbeat every `HEARTBEAT_SECONDS` (`renew`, from a thread of the CLI) and deletes the row
when it ends (`release`). `fence` makes every later write transaction of the holder's
database check, inside the transaction, that the lease is still its own: a holder whose
lease was taken over (from another host, after its heartbeat looked dead) gets
`SearchRunning` on its next write instead of writing over the new holder's work.

Nothing here knows what a search does; `LeaseStore` wraps an open `db.engine.Database`
like `db.rerank.RerankStore` does.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Connection, delete, insert, select, update

from db.engine import Database, utc_now
from db.errors import SearchRunning
from db.models import Lease

LEASES = Lease.__table__
HEARTBEAT_SECONDS = 5.0
# A lease held from another host is taken over when its heartbeat is this old (a process
# alive on this host never loses its lease to age: see `holder_alive`).
EXPIRY_SECONDS = 60.0


@dataclass(frozen=True)
class LeaseRecord:
    search_name: str
    token: str  # unique per acquisition: a renewal or release only touches its own row
    pid: int
    host: str
    process: str | None  # "boot id:start time" of the holder on Linux, else None
    started_at: datetime
    heartbeat_at: datetime


def process_identity(pid: int) -> str | None:
    """`boot id:start time` of process `pid` (Linux), None where /proc is unavailable or the
    process does not exist; a zombie counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 3
    if fields[0] in ("Z", "X"):
        return None
    return f"{boot}:{fields[19]}"  # field 22: start time in clock ticks since boot


def this_process() -> tuple[int, str, str | None]:
    pid = os.getpid()
    return pid, socket.gethostname(), process_identity(pid)


def holder_alive(lease: LeaseRecord, now: datetime) -> bool:
    """Whether the lease's holder may still be running.

    On this host: its process exists (and is the same process, where /proc tells). On
    another host nothing can be checked but the heartbeat: alive while it is younger than
    `EXPIRY_SECONDS`.
    """
    if lease.host != socket.gethostname():
        return (now - lease.heartbeat_at).total_seconds() < EXPIRY_SECONDS
    if lease.process is not None and sys.platform.startswith("linux"):
        return process_identity(lease.pid) == lease.process
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def describe(lease: LeaseRecord) -> str:
    """`pid P on HOST since T` (T in UTC, to the second)."""
    return f"pid {lease.pid} on {lease.host} since {lease.started_at:%Y-%m-%d %H:%M:%S} UTC"


def running_message(lease: LeaseRecord, now: datetime) -> str:
    text = (f"search {lease.search_name} is running ({describe(lease)}); wait for it to finish, "
            "or stop that process, then run this command again to resume it")
    if lease.host != socket.gethostname():
        age = (now - lease.heartbeat_at).total_seconds()
        text += (f". Its last heartbeat was {age:.0f} s ago: if {lease.host} is down, the lease "
                 f"expires {EXPIRY_SECONDS:.0f} s after that heartbeat")
    return text


def taken_over_message(lease: LeaseRecord, holder: LeaseRecord | None) -> str:
    now = f" by {describe(holder)}" if holder is not None else ""
    return (f"search {lease.search_name} was taken over{now} while this run went on (its "
            f"lease, held since {lease.started_at:%Y-%m-%d %H:%M:%S} UTC, looked abandoned: no "
            "heartbeat for too long); this run stopped without writing more. See "
            f"`evonorm status {lease.search_name}` for the process that runs it now")


def _record(row: object) -> LeaseRecord:
    return LeaseRecord(
        search_name=row.search_name, token=row.token, pid=row.pid, host=row.host,  # type: ignore[attr-defined]
        process=row.process, started_at=row.started_at, heartbeat_at=row.heartbeat_at,  # type: ignore[attr-defined]
    )


class LeaseStore:
    """Lease reads and writes on an open database (`LeaseStore(search_store)`)."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def lease(self, search_name: str) -> LeaseRecord | None:
        """The stored lease of the search (its holder may be gone: see `holder_alive`)."""
        with self._db.reading() as connection:
            row = connection.execute(
                select(LEASES).where(LEASES.c.search_name == search_name)).one_or_none()
            return None if row is None else _record(row)

    def check_free(self, search_name: str) -> None:
        """SearchRunning when a live process holds the search; reads only."""
        held = self.lease(search_name)
        now = utc_now()
        if held is not None and holder_alive(held, now) and not _is_this_process(held):
            raise SearchRunning(running_message(held, now))

    def acquire(self, search_name: str) -> tuple[LeaseRecord, LeaseRecord | None]:
        """Take the search's lease: (ours, the lease of a gone holder taken over, or None).

        SearchRunning, with nothing written, when a live process holds it.
        """
        self._db.require_writable()
        pid, host, process = this_process()
        now = utc_now()
        values = {"search_name": search_name, "token": uuid.uuid4().hex, "pid": pid,
                  "host": host, "process": process, "started_at": now, "heartbeat_at": now}
        with self._db.transaction(fenced=False) as connection:  # BEGIN IMMEDIATE: one at a time
            row = connection.execute(
                select(LEASES).where(LEASES.c.search_name == search_name)).one_or_none()
            previous = None if row is None else _record(row)
            if previous is not None:
                if holder_alive(previous, now) and not _is_this_process(previous):
                    raise SearchRunning(running_message(previous, now))
                connection.execute(delete(LEASES).where(LEASES.c.search_name == search_name))
            connection.execute(insert(LEASES).values(values))
        return LeaseRecord(**values), previous

    def fence(self, lease: LeaseRecord | None) -> None:
        """From now on each write transaction of the database first checks that `lease` is
        still held (SearchRunning otherwise, nothing written); None removes the check."""
        if lease is None:
            self._db.set_fence(None)
            return

        def still_held(connection: Connection) -> None:
            row = connection.execute(
                select(LEASES).where(LEASES.c.search_name == lease.search_name)).one_or_none()
            if row is None or row.token != lease.token:
                raise SearchRunning(taken_over_message(lease, None if row is None else _record(row)))

        self._db.set_fence(still_held)

    def renew(self, lease: LeaseRecord) -> bool:
        """Record a heartbeat; False when the lease is no longer ours (taken over)."""
        self._db.require_writable()
        with self._db.transaction(fenced=False) as connection:
            changed = connection.execute(
                update(LEASES)
                .where(LEASES.c.search_name == lease.search_name, LEASES.c.token == lease.token)
                .values(heartbeat_at=utc_now())
            ).rowcount
        return changed == 1

    def release(self, lease: LeaseRecord) -> None:
        """Give the lease up (a lease taken over meanwhile is left to its new holder)."""
        self._db.require_writable()
        with self._db.transaction(fenced=False) as connection:
            connection.execute(
                delete(LEASES)
                .where(LEASES.c.search_name == lease.search_name, LEASES.c.token == lease.token)
            )


def _is_this_process(lease: LeaseRecord) -> bool:
    """A lease this very process left behind (an earlier run in the same interpreter)."""
    pid, host, process = this_process()
    return (lease.pid, lease.host, lease.process) == (pid, host, process)


__all__ = [
    "EXPIRY_SECONDS",
    "HEARTBEAT_SECONDS",
    "LeaseRecord",
    "LeaseStore",
    "describe",
    "holder_alive",
    "process_identity",
    "this_process",
]
