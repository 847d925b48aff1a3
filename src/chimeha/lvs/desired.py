"""Desired data-plane state from the configuration, health and VIP ownership.

Theory of operation
-------------------
:func:`desired_state` is a pure function of

* the config model (``Config.virtual_servers`` and ``virtual_server_groups``),
* ``owned_vips``: the VRRP virtual addresses this node holds right now,
* ``health``: the combined checker verdict per real server (:func:`rs_id`),
* the previous result (for quorum hysteresis, which needs memory).

Rules (keepalived.conf(5), "Virtual server(s)"):

* A real server without a health verdict starts up, or down in ``alpha`` mode
  (the virtual server's or its own). A real server without checkers is up.
* An up real server gets its configured weight, or the dynamic weight the
  checkers report (MISC_CHECK ``misc_dynamic``). A down one is removed, or kept
  with weight 0 when ``inhibit_on_failure`` applies (its own value, else the
  virtual server's).
* Quorum: the sum of the live weights is compared with ``quorum``; with
  ``hysteresis`` H the service loses quorum below ``quorum - H`` and regains it
  at ``quorum + H`` (between the two it keeps its previous state). Without
  quorum and with a ``sorry_server``, the real servers are replaced by the
  sorry server (kept at weight 0 when quorum is met and
  ``sorry_server_inhibit`` is set); without a sorry server the live ones stay.
* Only the VIP holder forwards: a virtual server whose address is one of the
  config's VRRP virtual addresses is desired only while this node owns it.
  Addresses no VRRP instance manages (and fwmark services) are always desired,
  as with keepalived, where LVS is configured whatever the VRRP state.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .catalog import ALGORITHMS, SCHEDULER
from .schedulers import mask_client
from .types import DesiredState, Destination, LvsConfigError, Service, ServiceKey


@dataclass(frozen=True)
class RsHealth:
    """A real server's combined checker verdict (``weight`` None = configured)."""

    up: bool
    weight: int | None = None


def rs_id(vs: Any, rs: Any) -> str:
    """The key of one real server of one virtual server, for ``health`` maps and logs."""
    port = rs.port if rs.port is not None else (vs.port if vs.port is not None else 0)
    host = f"[{rs.address}]" if ":" in rs.address else rs.address
    return f"{vs.protocol} {vs.key} -> {host}:{port}"


def vs_id(vs: Any) -> str:
    return f"{vs.protocol} {vs.key}"


def _bare_ip(addr: str) -> str:
    return addr.split("/")[0]


def vrrp_addresses(config: Any) -> set[str]:
    """Every address a VRRP instance of ``config`` may hold (canonical text form)."""
    out = set()
    for inst in getattr(config, "instances", {}).values():
        for va in tuple(inst.virtual_ipaddresses) + tuple(getattr(inst, "virtual_ipaddresses_excluded", ())):
            out.add(_canon(_bare_ip(va.address)))
    return out


def _canon(addr: str) -> str:
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return addr


def service_keys(vs: Any, groups: Mapping[str, Any]) -> list[ServiceKey]:
    """The IPVS services one ``virtual_server`` block stands for (groups expand)."""
    if vs.group is not None:
        group = groups.get(vs.group)
        if group is None:
            raise LvsConfigError(f"virtual_server group {vs.group!r} is not defined")
        keys = []
        for m in group.members:
            if m.fwmark is not None:
                keys.append(ServiceKey(vs.protocol, fwmark=m.fwmark))
                continue
            first = ipaddress.ip_address(m.address)
            last_octet = m.range_end if m.range_end is not None else None
            count = 1 if last_octet is None else last_octet - (int(first) & 0xFF) + 1
            for i in range(max(count, 1)):
                keys.append(ServiceKey(vs.protocol, str(first + i), m.port))
        return keys
    if vs.fwmark is not None:
        return [ServiceKey(vs.protocol, fwmark=vs.fwmark)]
    return [ServiceKey(vs.protocol, _canon(vs.address), vs.port)]


def _quorum(vs: Any, live_weight: int, before: bool | None) -> bool:
    q, h = vs.quorum, vs.hysteresis
    if before is None:
        return live_weight >= q
    if before:
        return not (live_weight < q - h)
    return live_weight >= q + h


def _rs_port(vs: Any, rs: Any) -> int:
    if rs.port is not None:
        return rs.port
    return vs.port if vs.port is not None else 0


def desired_state(config: Any, owned_vips: Iterable[str] | None, health: Mapping[str, Any] | None = None,
                  previous: DesiredState | None = None) -> DesiredState:
    """What this node's data plane should hold now (see the module docstring).

    ``owned_vips`` None means "no VRRP gating" (forward every virtual server).
    ``health`` maps :func:`rs_id` to an :class:`RsHealth` (or any object with
    ``up`` and ``weight``, or a ``(up, weight)`` pair).
    """
    health = health or {}
    owned = None if owned_vips is None else {_canon(_bare_ip(a)) for a in owned_vips}
    managed = vrrp_addresses(config)
    groups = getattr(config, "virtual_server_groups", {}) or {}
    prev_q = previous.quorum if previous is not None else {}
    services: dict[ServiceKey, Service] = {}
    notes: dict[str, str] = {}
    quorum: dict[str, bool] = {}
    for vs in config.virtual_servers:
        vid = vs_id(vs)
        dests: list[Destination] = []
        live_weight = 0
        for rs in vs.real_servers:
            alpha = rs.alpha if rs.alpha is not None else vs.alpha
            h = health.get(rs_id(vs, rs))
            if h is None:
                up, weight = (not (alpha and rs.checkers)), None
            elif isinstance(h, tuple):
                up, weight = h
            else:
                up, weight = h.up, h.weight
            weight = rs.weight if weight is None else weight
            kind = (rs.lvs_method or vs.lb_kind or "NAT").upper()
            inhibit = rs.inhibit_on_failure if rs.inhibit_on_failure is not None else vs.inhibit_on_failure
            if up:
                live_weight += weight
                dests.append(Destination(rs.address, _rs_port(vs, rs), weight, kind))
            elif inhibit:
                dests.append(Destination(rs.address, _rs_port(vs, rs), 0, kind))
        has_quorum = _quorum(vs, live_weight, prev_q.get(vid))
        quorum[vid] = has_quorum
        sorry = False
        if vs.sorry_server is not None:
            ss = vs.sorry_server
            kind = (vs.sorry_server_lvs_method or ss.lvs_method or vs.lb_kind or "NAT").upper()
            if not has_quorum:
                dests = [Destination(ss.address, _rs_port(vs, ss), max(ss.weight, 1), kind)]
                sorry = True
            elif vs.sorry_server_inhibit:
                dests.append(Destination(ss.address, _rs_port(vs, ss), 0, kind))
        try:
            keys = service_keys(vs, groups)
            _check_service(vs, keys)
        except (LvsConfigError, ValueError) as e:
            notes[vid] = f"{_where(vs)}: not forwarded: {e}"
            continue
        gated = [k for k in keys if k.address is not None and k.address in managed]
        if owned is not None and gated and not all(k.address in owned for k in gated):
            notes[vid] = "standby: VIP held by another node"
            keys = [k for k in keys if k.address is None or k.address not in managed or k.address in owned]
        else:
            notes[vid] = "forwarding" + (" (sorry server: quorum lost)" if sorry else "")
        netmask = vs.persistence_granularity if vs.persistence_timeout else None
        flags = scheduler_flags(vs)
        for key in keys:
            services[key] = Service(key, vs.lb_algo, vs.persistence_timeout or None, netmask,
                                    (vs.lb_kind or "NAT").upper(), tuple(dests), sorry, flags)
    return DesiredState(services, notes, quorum)


def scheduler_flags(vs: Any) -> tuple[str, ...]:
    """sh/mh flags from the typed ``sh-port``/``sh-fallback``/``mh-port``/``mh-fallback`` fields.

    ``flag-1`` is the fallback flag and ``flag-2`` the port flag (IPVS_SVC_F_SCHED1/2), as in
    ipvsadm; only schedulers that declare a flag (catalog.py) take it.
    """
    decl = SCHEDULER.get(vs.lb_algo)
    if decl is None or not decl.flags:
        return ()
    prefix = vs.lb_algo.replace("-", "_")
    out = []
    if getattr(vs, f"{prefix}_fallback", False) or vs.flag_1:
        out.append("fallback")
    if getattr(vs, f"{prefix}_port", False) or vs.flag_2:
        out.append("port")
    return tuple(f for f in out if f in decl.flags)


def _check_service(vs: Any, keys: list[ServiceKey]) -> None:
    """Refuse what no data plane could program (the config validator reports these too)."""
    if vs.lb_algo not in ALGORITHMS:
        raise LvsConfigError(f"unknown lb_algo {vs.lb_algo!r}")
    if vs.persistence_timeout and vs.persistence_granularity:
        for k in keys:
            mask_client("::" if k.family == 6 else "0.0.0.0", vs.persistence_granularity)


def _where(vs: Any) -> str:
    w = getattr(vs, "where", None)
    return f"{w.file}:{w.line}" if w is not None and getattr(w, "file", None) else vs_id(vs)


def quorum_changes(before: DesiredState | None, after: DesiredState) -> list[tuple[str, bool]]:
    """(virtual server id, quorum now) for each virtual server whose quorum flipped."""
    if before is None:
        return []
    return [(k, v) for k, v in after.quorum.items() if k in before.quorum and before.quorum[k] != v]


def sync_master(config: Any, instance: str | None, owned: Iterable[str] | None) -> bool:
    """Whether this node is the master for ``lvs_sync_daemon`` (it commits replicated connections).

    The VRRP instance named there is MASTER exactly while it holds its virtual
    addresses, so VIP ownership (what the reconciler already follows) decides.
    Without an instance: any VRRP address held. ``owned`` None (no VRRP gating)
    means master.
    """
    if owned is None:
        return True
    held = {_canon(_bare_ip(a)) for a in owned}
    insts = getattr(config, "instances", {})
    if instance is not None and instance in insts:
        mine = {_canon(_bare_ip(va.address)) for va in insts[instance].virtual_ipaddresses}
        return bool(mine) and mine <= held
    return bool(held & vrrp_addresses(config))
