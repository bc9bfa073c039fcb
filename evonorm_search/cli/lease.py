"""The lease a running `evonorm search` holds on its search, kept alive by a heartbeat.

One controller per search (docs/faults.md): `hold_lease` takes the search's lease
(`db.leases`) before the controller touches the search, renews it from a daemon thread
every `HEARTBEAT_SECONDS`, and gives it up when the block ends. The controller itself
knows nothing of it. Should another process take the lease over while this one runs
(possible only from another host after `EXPIRY_SECONDS` without a heartbeat), the
heartbeat interrupts the main thread like Ctrl-C, and the run stops without writing more.
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import click

from db.leases import HEARTBEAT_SECONDS, LeaseRecord, LeaseStore, describe
from db.store import SearchStore
from evonorm_search.errors import SearchRunning, StoreError


@dataclass
class HeldLease:
    record: LeaseRecord
    lost: bool = False  # another process took the lease over

    def lost_error(self) -> SearchRunning:
        name = self.record.search_name
        return SearchRunning(
            f"search {name} was taken over by another process while this run went on (its "
            f"lease, held since {self.record.started_at:%Y-%m-%d %H:%M:%S} UTC, had no "
            "heartbeat for too long); this run stopped without writing more. See "
            f"`evonorm status {name}` for the process that runs it now"
        )


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
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(leases, held, stop),
                            name="evonorm-lease-heartbeat", daemon=True)
    beat.start()
    try:
        yield held
    finally:
        stop.set()
        beat.join()
        if not held.lost:
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
        if not renewed:
            held.lost = True
            _thread.interrupt_main()  # the controller stops as on Ctrl-C
            return


__all__ = ["HeldLease", "hold_lease"]
