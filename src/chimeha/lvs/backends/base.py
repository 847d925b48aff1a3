"""The interface every data-plane backend implements.

A backend holds *actual* state (what it has programmed), applies reconciler
operations, and says up front which services it cannot realise exactly, so
that ``select.choose`` never lets a backend silently approximate a scheduler.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from ..reconcile import Operation
from ..types import DesiredState, Service


class BackendError(RuntimeError):
    """Programming the data plane failed (the message says which command and why)."""


class Backend(Protocol):
    #: "nft" | "proxy" | "ipvs"
    name: str

    def unsupported(self, service: Service) -> str | None:
        """None when this backend implements ``service`` exactly, else why not (one sentence)."""

    async def apply(self, ops: Sequence[Operation]) -> None:
        """Program ``ops`` (from :func:`chimeha.lvs.reconcile.diff`); raises BackendError."""

    def read_actual(self) -> DesiredState:
        """What is programmed now (an empty state after a failure or an outside flush)."""

    async def close(self) -> None:
        """Remove everything this backend programmed (table, listeners)."""

    def stats(self) -> dict:
        """Per-service/real-server counters where the backend has them (JSON-able)."""
