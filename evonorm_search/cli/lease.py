"""The lease a running `evonorm search` holds on its search, kept alive by a heartbeat.

One controller per search (docs/faults.md): `hold_lease` takes the search's lease
(`db.leases`) before the controller touches the search, renews it from a daemon thread
every `HEARTBEAT_SECONDS`, and gives it up when the block ends. The controller itself
knows nothing of it. Should another process take the lease over while this one runs
(possible only from another host after `EXPIRY_SECONDS` without a heartbeat), the lease's
fence makes this run's next write fail with SearchRunning (exit status 3): it stops
without writing over the new holder's work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click

from db.leases import HEARTBEAT_SECONDS, LeaseRecord, LeaseStore, describe
from db.store import SearchStore
from evonorm_search.errors import DatabaseDamaged, StoreError


@dataclass
class HeldLease:
    record: LeaseRecord
    lost: bool = False  # another process took the lease over (seen by the heartbeat)


@contextmanager
def hold_lease(store: SearchStore, name: str) -> Iterator[HeldLease]:
    """Hold search `name`'s lease for the block (SearchRunning, nothing written, if a live
    process holds it); a lease left by a dead process is taken over, and said so."""
    leases = LeaseStore(store)
    record, previous = leases.acquire(name)
    if previous is not None and (previous.pid, previous.host) != (record.pid, record.host):
        click.echo(f"taking over search {name!r} from a run that is gone ({describe(previous)})",
                   err=True)
    held = HeldLease(record)
    leases.fence(record)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(leases, held, stop),
                            name="evonorm-lease-heartbeat", daemon=True)
    beat.start()
    damaged = False
    try:
        yield held
    except DatabaseDamaged:
        damaged = True  # found mid-run: write nothing more to it (a later run takes over)
        raise
    finally:
        stop.set()
        beat.join()
        leases.fence(None)
        if not held.lost and not damaged:
            try:
                leases.release(record)
            except StoreError:  # e.g. the disk is full: a dead holder's lease is taken over
                pass


def _heartbeat(leases: LeaseStore, held: HeldLease, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_SECONDS):
        try:
            renewed = leases.renew(held.record)
        except StoreError:  # a full disk, a moved file: the controller's next write says so
            continue
        if not renewed:  # the next write of the run fails (the fence): nothing to do here
            held.lost = True
            return


__all__ = ["HeldLease", "hold_lease"]
