"""IPVS data plane over generic netlink (pyroute2): NAT, DR and TUN.

Reconciler operations are first *encoded* into :class:`IpvsCall` records by a
pure function (:func:`encode`), then sent with pyroute2's ``IPVS`` socket. The
split exists because the development machines have no ``ip_vs`` module: the
encoding (commands, attribute names and values, forwarding methods, flags,
persistence netmask) is tested byte for byte against pyroute2's message
encoder without a kernel; the send path only runs where IPVS exists.

IPVS itself implements every scheduler, persistence and connection counting,
so this backend never declines a service on those grounds. It is the only
backend that can do DR and TUN.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from typing import Sequence

from ..reconcile import AddDest, AddService, DelDest, DelService, EditDest, EditService, Operation, apply_to
from ..types import DesiredState, Destination, Service, ServiceKey
from .base import BackendError

log = logging.getLogger("chimeha.lvs.ipvs")

PROTOCOLS = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
#: IP_VS_CONN_F_* forwarding methods (ipvsadm -m / -g / -i).
FWD_METHODS = {"NAT": 0, "TUN": 2, "DR": 3}
IP_VS_SVC_F_PERSISTENT = 0x0001
IP_VS_SVC_F_SCHED1 = 0x0008  # sh-fallback / mh-fallback
IP_VS_SVC_F_SCHED2 = 0x0010  # sh-port / mh-port


@dataclass(frozen=True)
class IpvsCall:
    """One generic-netlink request: ``obj`` "service"|"dest", ``command`` add|set|del."""

    obj: str
    command: str
    service: dict
    dest: dict | None = field(default=None)


def service_fields(svc: Service | ServiceKey) -> dict:
    key = svc if isinstance(svc, ServiceKey) else svc.key
    out: dict = {"protocol": PROTOCOLS[key.protocol]}
    if key.fwmark is not None:
        out["fwmark"] = key.fwmark
        out["af"] = socket.AF_INET6 if key.family == 6 else socket.AF_INET
    else:
        out["af"] = socket.AF_INET6 if key.family == 6 else socket.AF_INET
        out["addr"] = key.address
        out["port"] = key.port
    if isinstance(svc, Service):
        out["sched_name"] = svc.scheduler
        persistent = bool(svc.persistence_timeout)
        flags = IP_VS_SVC_F_PERSISTENT if persistent else 0
        flags |= IP_VS_SVC_F_SCHED1 if "fallback" in svc.flags else 0
        flags |= IP_VS_SVC_F_SCHED2 if "port" in svc.flags else 0
        out["flags"] = {"flags": flags, "mask": 0xFFFF}
        out["timeout"] = svc.persistence_timeout or 0
        if key.family == 4:
            out["netmask"] = (svc.persistence_netmask if persistent and svc.persistence_netmask
                              else "255.255.255.255")
    return out


def dest_fields(d: Destination) -> dict:
    return {"addr": d.address, "port": d.port, "weight": d.weight,
            "fwd_method": FWD_METHODS[d.lb_kind],
            "addr_family": socket.AF_INET6 if ":" in d.address else socket.AF_INET}


def encode(ops: Sequence[Operation]) -> list[IpvsCall]:
    """Pure: the netlink requests that perform ``ops`` in order."""
    out = []
    for op in ops:
        if isinstance(op, AddService):
            out.append(IpvsCall("service", "add", service_fields(op.service)))
        elif isinstance(op, EditService):
            out.append(IpvsCall("service", "set", service_fields(op.service)))
        elif isinstance(op, DelService):
            out.append(IpvsCall("service", "del", service_fields(op.key)))
        else:
            cmd = {AddDest: "add", EditDest: "set", DelDest: "del"}[type(op)]
            out.append(IpvsCall("dest", cmd, service_fields(op.service), dest_fields(op.dest)))
    return out


def kernel_unavailable() -> str | None:
    """None when this kernel has IPVS, else the reason (for select.py and logs)."""
    if os.path.exists("/proc/net/ip_vs"):
        return None
    return "this kernel has no ip_vs module (/proc/net/ip_vs is missing; try `modprobe ip_vs`)"


class IpvsBackend:
    """Program the kernel's IP Virtual Server table over generic netlink."""

    name = "ipvs"

    def __init__(self, log: logging.Logger | None = None):
        self.log = log or globals()["log"]
        self._state = DesiredState()
        self.drift: str | None = None
        self._sock = None

    def unsupported(self, service: Service) -> str | None:
        why = kernel_unavailable()
        return f"{service.key}: {why}" if why else None

    def _socket(self):
        if self._sock is None:
            why = kernel_unavailable()
            if why:
                raise BackendError(why)
            from pyroute2 import IPVS
            self._sock = IPVS()
        return self._sock

    async def apply(self, ops: Sequence[Operation]) -> None:
        from pyroute2 import IPVSDest, IPVSService

        sock = self._socket()
        for call in encode(ops):
            svc = IPVSService(**call.service)
            try:
                if call.obj == "service":
                    sock.service(call.command, service=svc)
                else:
                    sock.dest(call.command, service=svc, dest=IPVSDest(**call.dest))
            except Exception as e:  # pyroute2 raises NetlinkError and friends
                raise BackendError(f"ipvs {call.obj} {call.command} {call.service}: {e}") from None
        self._state = apply_to(self._state, list(ops))

    async def preflight(self) -> str | None:
        return kernel_unavailable()

    async def read_actual(self) -> DesiredState:
        """What this backend programmed. Not read back from the kernel: IPVS cannot be exercised
        on the machines this project is tested on (no ip_vs module), so a dump parser would be
        untested code (drift repair is nft's, see nft_read.py)."""
        self.drift = None
        return self._state

    async def verify(self) -> bool:
        return True

    async def close(self) -> None:
        if self._state.services:
            from ..reconcile import diff
            try:
                await self.apply(diff(DesiredState(), self._state))
            except BackendError as e:
                self.log.warning("removing IPVS services failed: %s", e)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def stats(self) -> dict:
        return {}
