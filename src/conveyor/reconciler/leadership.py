"""Leadership: one process at a time performs the duties, the holder of a database lease."""

from __future__ import annotations

import logging

from conveyor.store.leases import LeaseStore

log = logging.getLogger("conveyor.maintenance")  # the name its log lines have always carried

LEASE_NAME = "maintenance"


def lease_ttl_s(reconcile_s: float) -> float:
    """How long the lease outlives its last renewal: three passes, and 2 s at least."""
    return max(2.0, 3 * reconcile_s)


class Leadership:
    """Whether this process leads: it holds lease ``LEASE_NAME`` (on the database's clock),
    renewed on every call; another takes it over once it lapses. Without a lease store the
    process always leads (and ``leading`` stays False: there is nothing to release)."""

    def __init__(self, leases: LeaseStore | None, holder: str, ttl_s: float) -> None:
        self.leases = leases
        self.holder = holder
        self.ttl_s = ttl_s
        self.leading = False  # whether this process held the lease at its last try

    def lead(self) -> bool:
        """Take or renew the lease; True while this process holds it (one round trip)."""
        if self.leases is None:
            return True
        leading = self.leases.acquire(LEASE_NAME, self.holder, self.ttl_s)
        if leading != self.leading:
            log.info("%s maintenance duties", "taking over" if leading else "handing over")
        self.leading = leading
        return leading

    def release(self) -> None:
        """Give the lease up, so that another process takes over at once, not on expiry."""
        if self.leases is not None and self.leading:
            self.leases.release(LEASE_NAME, self.holder)
            self.leading = False
