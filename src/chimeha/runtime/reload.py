"""Reload, phase by phase: read off the loop, preflight the host, then one apply.

A reload must change nothing unless it can change everything. So the daemon
(:meth:`chimeha.runtime.daemon.Daemon.reload`) runs, in order:

1. :func:`load_config` reads and parses the file in a worker thread with a
   timeout: an 8 MB file or a FIFO named as an include cannot stall the
   advertisements of the running instances, and SIGTERM still works.
2. :func:`build_specs` turns the model into instance specs and checks that
   they can share one node (VRID clash) - pure.
3. :func:`preflight` asks the host what the new instances need: the
   interface exists, has an address to advertise from, a raw socket can be
   opened. It opens only sockets for (interface, family) pairs not open yet
   and hands them back; on any failure it closes those and raises.
4. Only then does the daemon plan (:meth:`VrrpNode.plan_reload`, pure) and
   apply the plan with no ``await`` in between.

Nothing here reads daemon internals; the daemon passes what is needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import socket
from dataclasses import dataclass
from typing import Any, Callable

from chimeha.errors import ChimeHaError, HostError, LocalError
from chimeha.vrrp.events import InstanceSpec
from chimeha.vrrp.from_config import instance_specs, sync_groups
from chimeha.vrrp.node import check_specs

log = logging.getLogger("chimeha.runtime")

#: How long reading and parsing a configuration may take before the reload is refused.
LOAD_TIMEOUT = 30.0


class ReloadRefused(LocalError):
    """The new configuration cannot be used; the old one keeps running unchanged."""


class PreflightError(HostError):
    """The host cannot run the new instances (missing interface, no address, no socket)."""


def _load_without_gc_pauses(path: str):
    """``chimeha.config.load(path)`` with the cyclic garbage collector paused.

    A thread does not keep the event loop running by itself: a big file
    allocates millions of objects, and each full collection they trigger holds
    the GIL for the whole walk. Measured with 8 MB of unused vrrp_script blocks
    (40,000): collections of up to 0.42 s while parsing, the loop stalled and
    the backup took the VIPs (advert_int 0.1). Reference counting still frees
    everything acyclic meanwhile. The result is then frozen (``gc.freeze``):
    a configuration lives until the next reload, and otherwise the first
    collections after the parse walk its 200,000 new objects (0.1-0.2 s each).
    A model node has no cycles, so a frozen configuration is still freed when
    replaced; what leaks is cyclic garbage that happened to exist at the
    freeze (about 140 objects per reload, measured).
    """
    from chimeha.config import load

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        result = load(path)
        gc.freeze()
        return result
    finally:
        if was_enabled:
            gc.enable()


async def load_config(path: str, timeout: float = LOAD_TIMEOUT):
    """``chimeha.config.load(path)`` in a worker thread, bounded by ``timeout``; raises :class:`ReloadRefused`."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(_load_without_gc_pauses, path), timeout)
    except asyncio.TimeoutError:
        # The worker thread may stay blocked (a FIFO nobody writes); it is a
        # daemon-less thread of the default executor and does not hold the loop.
        raise ReloadRefused(f"{path}: reading the configuration took more than {timeout:g} s "
                            "(a FIFO or a stalled file system?); still running the old one") from None


def build_specs(config: Any) -> tuple[list[InstanceSpec], dict[str, tuple[str, ...]]]:
    """Specs and sync groups for ``config``; raises a ConfigError on a VRID clash or a missing interface."""
    specs = instance_specs(config)
    for s in specs:
        if not s.interface:
            raise ReloadRefused(f"{s.where}vrrp_instance {s.name}: no interface")
    check_specs(specs)
    return specs, sync_groups(config)


def _exists(ifname: str) -> bool:
    try:
        socket.if_nametoindex(ifname)
        return True
    except OSError:
        return False


@dataclass
class Preflight:
    """What :func:`preflight` found: specs with their source address, and sockets it opened."""

    specs: list[InstanceSpec]
    opened: dict[tuple[str, int], Any]

    def close(self) -> None:
        for sock in self.opened.values():
            try:
                sock.close()
            except OSError:
                pass
        self.opened = {}


def preflight(specs: list[InstanceSpec], *, open_sockets: set[tuple[str, int]],
              primary_address: Callable[[str, int], str | None],
              socket_factory: Callable[..., Any], allow_missing: bool = False) -> Preflight:
    """Check the host for every spec; open sockets for new (interface, family) pairs.

    ``primary_address(ifname, family)`` looks an address up (netlink);
    ``open_sockets`` are the pairs the daemon already has. Raises
    :class:`PreflightError` after closing whatever it opened. A missing
    interface is refused unless ``allow_missing`` (keepalived's
    dynamic_interfaces); an interface without an address to advertise from is
    not refused: the node keeps that instance in FAULT until it has one.
    """
    result = Preflight([], {})
    try:
        for s in specs:
            missing = [n for n in s.interfaces() if not _exists(n)]
            if missing:
                what = (f"interface {missing[0]} does not exist" if s.link is None or missing[0] == s.link.base
                        else f"its {s.link.kind} {missing[0]} does not exist")
                if not allow_missing:
                    raise PreflightError(f"{s.where}vrrp_instance {s.name}: {what}")
                log.warning("%svrrp_instance %s: %s; waiting in FAULT for it (dynamic_interfaces)",
                            s.where, s.name, what)
                result.specs.append(s)
                continue
            if not s.primary_address:
                src = primary_address(s.source_interface, s.family)
                if not src:
                    log.warning("vrrp_instance %s: interface %s has no IPv%d address%s; waiting in FAULT for one",
                                s.name, s.source_interface, s.family,
                                " (IPv6 needs a link-local address)" if s.family == 6 else "")
                else:
                    s = dataclasses.replace(s, primary_address=src)
            result.specs.append(s)
            key = (s.interface, s.family)
            if key not in open_sockets and key not in result.opened:
                try:
                    # Unicast-only interfaces stay out of the multicast group, as keepalived's do.
                    result.opened[key] = socket_factory(s.interface, s.family, join_group=False)
                except OSError as exc:
                    raise PreflightError(f"vrrp_instance {s.name}: {exc}") from exc
    except ChimeHaError:
        result.close()
        raise
    return result
