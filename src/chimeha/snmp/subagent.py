"""The AgentX subagent: a connection to snmpd's master agent, serving the VRRP MIBs.

Thin asyncio adapter around :mod:`chimeha.snmp.agentx` (wire format) and
:mod:`chimeha.snmp.mib` (the objects). keepalived's behaviour, kept:

* it connects to ``snmp_socket`` (default ``unix:/var/agentx/master``) when
  any of ``enable_snmp_vrrp`` / ``enable_snmp_checker`` / ``enable_snmp_rfcv2``
  / ``enable_snmp_rfcv3`` is set, and retries every few seconds while snmpd is absent or restarts:
  SNMP never delays or stops VRRP, and a missing master agent is logged
  once, not every retry;
* each request is answered from the node's status at that moment (one view
  is reused for requests within 100 ms, so a walk of many GetNexts sees one
  consistent table and does not rebuild it each time).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

from chimeha import __version__
from chimeha.runtime.tasks import cancel_and_wait
from chimeha.snmp import agentx, mib
from chimeha.snmp.mib_checker import checker_objects

log = logging.getLogger("chimeha.snmp")

RETRY_SECONDS = 5.0
VIEW_TTL = mib.REFRESH_MS / 1000
SUBAGENT_OID = mib.KEEPALIVED_MIB  # sysObjectID-like identity sent in Open


class Subagent:
    """One AgentX session for ``daemon`` (see the module docstring)."""

    def __init__(self, daemon: Any, address: str | None, *, keepalived_mib: bool, rfcv2: bool, rfcv3: bool,
                 checker: bool = False, router_id: str | None = None, retry: float = RETRY_SECONDS):
        self.daemon = daemon
        self.address = agentx.parse_address(address)
        ka = mib.KEEPALIVED_MIB
        # keepalived's parts register apart (global, vrrp, check), so another agent may serve the rest
        self.subtrees = tuple(t for t, on in ((ka + (1,), keepalived_mib or checker), (ka + (2,), keepalived_mib),
                                              (ka + (3,), checker), (mib.VRRP_MIB, rfcv2),
                                              (mib.VRRPV3_MIB, rfcv3)) if on)
        self.router_id = router_id
        self.retry = retry
        self.connected = False
        self.requests = 0
        self._task: asyncio.Task | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._session = 0
        self._view: tuple[float, agentx.MibView] | None = None
        self._started = time.monotonic()

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="snmp-subagent")

    async def close(self) -> None:
        if self._writer is not None and self.connected:
            try:
                self._writer.write(agentx.close_pdu(self._session))
                await asyncio.wait_for(self._writer.drain(), 1.0)
            except (OSError, asyncio.TimeoutError):
                pass
        await cancel_and_wait(self._task)
        self._close_writer()

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.connected = False

    async def _run(self) -> None:
        complained = False
        while True:
            try:
                await self._serve()
                complained = False  # a clean Close from the master: reconnect at once
            except (OSError, EOFError, asyncio.IncompleteReadError, agentx.AgentXError) as exc:
                if not complained:
                    log.warning("SNMP: AgentX master at %s unavailable (%s); retrying every %.0f s",
                                _show(self.address), exc, self.retry)
                    complained = True
            finally:
                self._close_writer()
            await asyncio.sleep(self.retry)

    async def _connect(self):
        kind, host, port = self.address
        if kind == "unix":
            return await asyncio.open_unix_connection(host)
        return await asyncio.open_connection(host, port, family=socket.AF_UNSPEC)

    async def _serve(self) -> None:
        reader, self._writer = await asyncio.wait_for(self._connect(), 5.0)
        self._writer.write(agentx.open_pdu(SUBAGENT_OID, f"chime-ha {__version__}", packet_id=1))
        resp = await self._read(reader)
        if resp.header.type != agentx.RESPONSE or resp.error:
            raise agentx.AgentXError(f"Open refused by the master (error {resp.error})")
        self._session = resp.header.session_id
        for i, subtree in enumerate(self.subtrees, start=2):
            self._writer.write(agentx.register_pdu(self._session, subtree, packet_id=i))
            resp = await self._read(reader)
            if resp.error:  # e.g. duplicateRegistration: another agent serves it; keep the rest
                log.warning("SNMP: registering %s refused (error %d)", ".".join(map(str, subtree)), resp.error)
        self.connected = True
        log.info("SNMP: AgentX session %d with %s, serving %s", self._session, _show(self.address),
                 ", ".join(".".join(map(str, t)) for t in self.subtrees))
        while True:
            req = await self._read(reader)
            if req.header.type == agentx.CLOSE:
                log.info("SNMP: the master closed the AgentX session")
                return
            out = agentx.answer(req, self.view()) if req.header.type != agentx.RESPONSE else None
            self.requests += 1
            if out is not None:
                self._writer.write(out)
                await self._writer.drain()

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> agentx.Request:
        head = await reader.readexactly(agentx.HEADER_LEN)
        body = await reader.readexactly(agentx.decode_header(head).payload_length)
        return agentx.decode(head + body)

    # -- the objects ----------------------------------------------------------------
    def view(self) -> agentx.MibView:
        now = time.monotonic()
        if self._view is not None and now - self._view[0] < VIEW_TTL:
            return self._view[1]
        node = self.daemon.node
        statuses = node.status()
        ifindex = {}
        for st in statuses:
            try:
                ifindex[st.spec.interface] = socket.if_nametoindex(st.spec.interface)
            except OSError:
                pass
        ticks = int((now - self._started) * 100)
        objects: dict = {}
        ka = mib.KEEPALIVED_MIB
        if ka + (1,) in self.subtrees:
            objects.update(mib.keepalived_objects(statuses if ka + (2,) in self.subtrees else (),
                                                  version=f"chime-ha {__version__}", router_id=self.router_id))
        if ka + (3,) in self.subtrees:
            config, lvs = self.daemon.config, self.daemon.lvs
            snap = lvs.snapshot()["virtual_servers"] if lvs is not None else []
            objects.update(checker_objects(config.virtual_servers if config else (), snap))
        if mib.VRRP_MIB in self.subtrees:
            objects.update(mib.vrrpv2_objects(statuses, ifindex, uptime_ticks=ticks, node_drops=node.drops))
        if mib.VRRPV3_MIB in self.subtrees:
            objects.update(mib.vrrpv3_objects(statuses, ifindex, uptime_ticks=ticks, node_drops=node.drops))
        view = agentx.MibView(objects)
        self._view = (now, view)
        return view


def _show(address: tuple[str, str, int]) -> str:
    kind, host, port = address
    return f"unix:{host}" if kind == "unix" else f"tcp:{host}:{port}"


def from_config(daemon: Any, config: Any) -> Subagent | None:
    """A subagent for ``config``'s SNMP settings, or None when no MIB is enabled (or the address is bad)."""
    g = config.global_defs
    if not (g.enable_snmp_vrrp or g.enable_snmp_rfcv2 or g.enable_snmp_rfcv3 or g.enable_snmp_checker):
        return None
    try:
        return Subagent(daemon, g.snmp_socket, keepalived_mib=g.enable_snmp_vrrp, rfcv2=g.enable_snmp_rfcv2,
                        rfcv3=g.enable_snmp_rfcv3, checker=g.enable_snmp_checker, router_id=g.router_id)
    except ValueError as exc:
        log.error("SNMP: %s; the subagent is not started", exc)
        return None
