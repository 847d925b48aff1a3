"""The interface every data-plane backend implements, and the registry of backends.

A backend says up front which services it cannot realise exactly (so that
``select.choose`` never lets a backend silently approximate a scheduler),
whether the host can run it at all (``preflight``), reads what is programmed
*now* (``read_actual``: for a kernel backend, the kernel itself, so that the
reconciler sees drift such as a flushed ruleset and repairs it) and applies
reconciler operations relative to the state it last read.

Contract between ``read_actual`` and ``apply``: the operations passed to
``apply`` are ``diff(desired, read_actual())``; the backend applies them to the
state it read, so after ``apply`` the data plane holds ``desired``.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ...errors import HostError
from ..reconcile import Operation
from ..types import DesiredState, Service


class BackendError(HostError):
    """Programming the data plane failed (the message says which command and why)."""


class Backend(Protocol):
    #: the data plane's name in catalog.DATAPLANE_DECLS ("nft" | "proxy" | "ipvs")
    name: str
    #: why the last ``read_actual`` differed from what was programmed (None: it did not)
    drift: str | None

    def unsupported(self, service: Service) -> str | None:
        """None when this backend implements ``service`` exactly, else why not (one sentence)."""

    async def preflight(self) -> str | None:
        """None when this host can run the backend (programs, kernel support), else why not."""

    async def read_actual(self) -> DesiredState:
        """What is programmed now, read from the data plane itself (empty after an outside flush)."""

    async def apply(self, ops: Sequence[Operation]) -> None:
        """Program ``ops`` (from :func:`chimeha.lvs.reconcile.diff` against ``read_actual()``); raises BackendError."""

    async def verify(self) -> bool:
        """True when the data plane still holds exactly what this backend last programmed."""

    async def close(self) -> None:
        """Remove everything this backend programmed (table, listeners)."""

    def stats(self) -> dict:
        """Per-service/real-server counters where the backend has them (JSON-able)."""

