"""The registry of forwarding backends: one factory per data plane of catalog.DATAPLANE_DECLS.

The manager asks the registry for a backend by name instead of branching on
names; a backend's own options come from :class:`BackendOptions`, and each
factory picks what it needs. A test (tests/lvs/test_contract.py) checks that
every forwarding data plane the catalog declares has a factory here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from ..catalog import DATAPLANE_DECLS
from .base import Backend
from .ipvs import IpvsBackend
from .nft import NftBackend
from .proxy import ProxyBackend


@dataclass(frozen=True)
class BackendOptions:
    """What the manager knows that a backend may need."""

    log: logging.Logger
    #: run kernel tools inside this network namespace (tests, the lab); None = our own
    netns: str | None = None
    #: nft source NAT: "auto" | "always" | "never" (see nft.py)
    snat: str = "auto"
    #: proxy: relay on its own uvloop thread (None: when the caller's loop is not uvloop)
    proxy_own_loop: bool | None = None
    #: nft source address: "auto" | "masquerade" | "vip" (see nft.Renderer)
    snat_to: str = "auto"
    #: nft: named per-real-server counters (every packet of a DNATed flow is counted)
    nft_counters: bool = True
    #: proxy: "epoll" (default) or "transports" (the previous asyncio-protocol relay, for A/B)
    proxy_relay: str = "epoll"
    #: proxy: relay processes (see proxy_workers.py)
    proxy_workers: int = 1


FACTORIES: dict[str, Callable[[BackendOptions], Backend]] = {
    "ipvs": lambda o: IpvsBackend(log=o.log),
    "nft": lambda o: NftBackend(netns=o.netns, snat=o.snat, log=o.log, snat_to=o.snat_to,
                                    counters=o.nft_counters),
    "proxy": lambda o: ProxyBackend(log=o.log, own_loop=o.proxy_own_loop, relay=o.proxy_relay,
                                        workers=o.proxy_workers),
}

#: The data planes that forward (every one but auto and none).
FORWARDING = tuple(d.name for d in DATAPLANE_DECLS if d.forwards and d.rank is not None)


def make_backend(name: str, options: BackendOptions) -> Backend:
    """A new backend ``name``; KeyError names the known ones."""
    try:
        factory = FACTORIES[name]
    except KeyError:
        raise KeyError(f"no data plane backend {name!r} (known: {', '.join(FACTORIES)})") from None
    return factory(options)
