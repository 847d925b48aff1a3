"""The VRRP node: every instance and sync group of one configuration, sans I/O.

Theory of operation
-------------------
aioquic's connection object at node scale. One :class:`VrrpNode` holds what a
keepalived VRRP process holds: the instances (RFC 5798 / RFC 9568 section 6
state machines, :mod:`chimeha.vrrp.instance`) and keepalived's sync groups.
It never reads a clock or a socket; the daemon and the simulator drive the
same object with the same verbs:

* :meth:`receive_datagram` (payload plus the IP header facts, the receiving
  interface, ``now``): the receive checks of RFC 3768 / RFC 5798 section 7.1
  (:func:`chimeha.vrrp.packet.validate`) against the instances on that
  (interface, family), dispatch by VRID, drop counting by
  :class:`~chimeha.vrrp.packet.DropReason`. A peer's packet never raises.
* :meth:`set_tracked` (script, interface, file, process results after
  rise/fall), :meth:`get_timer` / :meth:`handle_timer`, :meth:`start`,
  :meth:`shutdown`, and reload as :meth:`plan_reload` (pure, refuses before
  anything changes) then :meth:`apply_reload`.
* outputs: one queue, :meth:`pop_actions`, of the instances' actions
  (SendAdvert, Add/RemoveAddresses, SendGratuitous, StateChanged,
  PriorityChanged, SplitBrain) and the node's own events (PacketDropped,
  VipsChanged, GroupStateChanged, InstanceRemoved), in the order they must
  be executed.

Node state beside the instances: the VRID clash check (one VRID per
interface and family), per-instance counters, the failover duration (last
advert heard from the old master -> our takeover, put into the
``StateChanged``), the split-brain status, which VIPs are held, and which
sync-group state was last reported (keepalived reports a group once all
members agree). Executor feedback (a failed send) comes back through
:meth:`note_send`.

Interfaces (keepalived's interface lifecycle): :meth:`set_interface` tells
the node that an interface exists (with its index and the addresses to
advertise from) or not. An instance whose interface is missing, or has no
address of the instance's family when none is configured (an IPv6 instance
needs the link-local address), waits in FAULT and recovers by itself; a new
index (the interface was deleted and created again) is reported as
:class:`InterfaceChanged` before any state change it causes, so the
executor rebuilds the sockets first. ``start(now, startup_delay)`` is
keepalived's vrrp_startup_delay. A sync-group member that hears a
lower-priority master makes its siblings re-announce their VIPs too
(keepalived 2.2.7 vrrp_state_master_rx).

Within one instance's actions the order is the instance's, except that on
takeover the VIPs and their gratuitous ARP/NA are queued before the
advertisement: the old master lets go when it hears that advert, so the
address must already answer here (keepalived does the same).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable, Mapping, Sequence

from chimeha.errors import ConfigError
from chimeha.vrrp import ah as ah_wire
from chimeha.vrrp import packet
from chimeha.vrrp.events import (AddAddresses, GroupStateChanged, InstanceRemoved, InstanceSpec, InterfaceChanged,
                                 LowerPriorityHeard, NodeEvent, PacketDropped, PriorityChanged, RemoveAddresses,
                                 RestoreLink, SendAdvert, SendGratuitous, SplitBrain, State, StateChanged, VipsChanged)
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.node_types import InstanceStats, InstanceStatus, ReloadPlan, spec_key, strip_where
from chimeha.vrrp.sync_group import SyncGroup

SocketKey = tuple[str, int]  # (interface, family)


class NodeConfigError(ConfigError):
    """The instances cannot run together on one node (a VRID clash, no interface)."""


def _bare(va) -> str:
    ip = getattr(va, "ip", None)
    return str(ip) if ip else str(getattr(va, "address", va)).split("/")[0]


def check_specs(specs: Sequence[InstanceSpec]) -> None:
    """Raise :class:`NodeConfigError` if ``specs`` cannot share one node."""
    seen: dict[tuple[str, int, int], str] = {}
    names: set[str] = set()
    for s in specs:
        if s.name in names:
            raise NodeConfigError(f"{s.where}vrrp_instance {s.name}: defined twice")
        names.add(s.name)
        key = (s.interface, s.family, s.vrid)
        if key in seen:
            raise NodeConfigError(f"{s.where}vrrp_instance {s.name}: virtual_router_id {s.vrid} is already "
                                  f"used by {seen[key]} on {s.interface} (IPv{s.family})")
        seen[key] = s.name


class VrrpNode:
    """All VRRP instances and sync groups of one node (see the module docstring)."""

    def __init__(self, specs: Iterable[InstanceSpec], groups: Mapping[str, Sequence[str]] | None = None):
        specs = tuple(specs)
        check_specs(specs)
        self.generation = 0  # bumped on every state, priority or split-brain change (pollers skip otherwise)
        self.drops: Counter = Counter()  # packets no instance could be blamed for, by reason
        self._instances: dict[str, VrrpInstance] = {}
        self._stats: dict[str, InstanceStats] = {}
        self._queue: list = []
        self._deadlines: dict[str, float | None] = {}
        self._group_words: dict[str, str] = {}
        self._started = False
        self._ah = ah_wire.AhGuard()
        self._ifindex: dict[str, int | None] = {}  # interface -> index last reported (None: missing)
        self._sources: dict[str, dict[int, str | None]] = {}  # interface -> {family: source} last reported
        # Bare VIP -> how many instances holding their VIPs list it: VipsChanged is queued for
        # every add/remove, so owned_vips() must not walk every instance each time (with 200
        # instances taking over together that walk was most of the takeover's CPU time).
        self._owned: Counter = Counter()
        self._install(specs, groups or {}, keep={})

    # -- structure ----------------------------------------------------------
    def _install(self, specs: tuple[InstanceSpec, ...], groups: Mapping[str, Sequence[str]],
                 keep: dict[str, tuple[VrrpInstance, InstanceStats]]) -> None:
        instances, stats = {}, {}
        for s in specs:
            if s.name in keep:
                instances[s.name], stats[s.name] = keep[s.name]
            else:
                instances[s.name], stats[s.name] = VrrpInstance(s), InstanceStats()
        self._instances, self._stats = instances, stats
        self._groups: dict[str, SyncGroup] = {}
        self._group_of: dict[str, SyncGroup] = {}
        for gname, members in groups.items():
            present = [instances[m] for m in members if m in instances]
            if present:
                grp = SyncGroup(gname, present)
                self._groups[gname] = grp
                for m in present:
                    self._group_of[m.name] = grp
        self._group_words = {g: w for g, w in self._group_words.items() if g in self._groups}
        self._expect: dict[SocketKey, dict[int, packet.Expectation]] = {}
        self._by_vrid: dict[tuple[SocketKey, int], str] = {}
        for s in specs:
            key = (s.interface, s.family)
            self._expect.setdefault(key, {})[s.vrid] = packet.expectation_for(s)
            self._by_vrid[(key, s.vrid)] = s.name
        self._deadlines = {n: i.get_timer() for n, i in instances.items()}
        self._ah.retain(specs)
        self._bares = {n: frozenset(_bare(v) for v in i.spec.virtual_ipaddresses) for n, i in instances.items()}
        self._owned = Counter(b for n, st in stats.items() if st.vips_owned for b in self._bares[n])

    @property
    def names(self) -> tuple[str, ...]:
        """Instance names in configuration order."""
        return tuple(self._instances)

    def instance(self, name: str) -> VrrpInstance:
        """The state machine of ``name`` (to read; feed it only through the node)."""
        return self._instances[name]

    def spec(self, name: str) -> InstanceSpec:
        return self._instances[name].spec

    def specs(self) -> tuple[InstanceSpec, ...]:
        return tuple(i.spec for i in self._instances.values())

    def state(self, name: str) -> State | None:
        inst = self._instances.get(name)
        return inst.state if inst else None

    def groups(self) -> dict[str, tuple[str, ...]]:
        """Sync group name -> member instance names."""
        return {g: tuple(m.name for m in grp.members) for g, grp in self._groups.items()}

    def socket_keys(self) -> dict[SocketKey, frozenset[str]]:
        """Every (interface, family) the instances use -> the multicast groups its socket must join.

        Empty (false) when every instance there is unicast; a group is the
        instance's ``mcast_group`` or the standard 224.0.0.18 / ff02::12.
        """
        out: dict[SocketKey, frozenset[str]] = {}
        for s in self.specs():
            key = (s.interface, s.family)
            groups = out.get(key, frozenset())
            if not s.unicast_peers:
                groups |= {s.mcast_group or (packet.MCAST_V4 if s.family == 4 else packet.MCAST_V6)}
            out[key] = groups
        return out

    def owned_vips(self) -> frozenset[str]:
        """Bare addresses of the VIPs this node currently holds."""
        return frozenset(self._owned)

    # -- inputs -------------------------------------------------------------
    def start(self, now: float, startup_delay: float = 0.0) -> None:
        """Leave INIT: every instance starts (RFC 5798 6.4.1); tracked results and interfaces set before count.

        ``startup_delay`` (vrrp_startup_delay): no instance takes over before ``now + startup_delay``.
        """
        self._started = True
        for inst in self._instances.values():
            inst.start(now, startup_delay)
        self._flush(self._instances, now)

    def set_interface(self, ifname: str, present: bool, ifindex: int | None, now: float, *,
                      sources: Mapping[int, str | None] | None = None) -> tuple[str, ...]:
        """The interface ``ifname`` exists (``present``, index ``ifindex``) or not; returns the instances on it.

        ``sources`` maps a family (4, 6) to the interface's address that
        adverts leave from (first primary IPv4 / the IPv6 link-local), None
        when it has none; a family left out is not judged. The first report
        of an interface records its index; a later change of index (deleted,
        created again) queues :class:`InterfaceChanged`.
        """
        index = ifindex if present else None
        known = ifname in self._ifindex
        old = self._ifindex.get(ifname)
        self._ifindex[ifname] = index
        if sources is not None:
            self._sources.setdefault(ifname, {}).update(sources)
        if known and old != index:
            self._queue.append(InterfaceChanged(ifname, present, index, old, now))
        touched = tuple(n for n, i in self._instances.items() if ifname in i.spec.interfaces())
        for n in touched:
            inst = self._instances[n]
            fault = self._link_fault(inst)
            for link in inst.spec.links() if self._started else ():
                if self._link_lost(link, ifname, present):
                    self._queue.append(RestoreLink(n, link, now))
            inst.set_link(fault, now)
        if self._started:
            self._flush(touched, now)
        return touched

    def _link_fault(self, inst: VrrpInstance) -> str | None:
        """Why ``inst`` cannot run on its interfaces as last reported (None: it can); sets its source address."""
        spec = inst.spec
        for name in spec.interfaces():
            if name in self._ifindex and self._ifindex[name] is None:
                return f"interface {name} does not exist"
        src_if = spec.source_interface
        known = self._sources.get(src_if, {})
        if src_if in self._ifindex and spec.family in known and not spec.source_configured:
            src = known[spec.family]
            if not src:
                return (f"interface {src_if} has no IPv6 link-local address" if spec.family == 6
                        else f"interface {src_if} has no IPv4 address")
            inst.with_primary_address(src)
        return None

    def _link_lost(self, link, ifname: str, present: bool) -> bool:
        """The VMAC/ipvlan is missing while its base exists: it must be created again."""
        base_up = self._ifindex.get(link.base) is not None
        if ifname == link.name:
            return not present and base_up
        return ifname == link.base and present and link.name in self._ifindex and self._ifindex[link.name] is None

    def interface_index(self, ifname: str) -> int | None:
        """The index last reported for ``ifname`` (None: missing or never reported)."""
        return self._ifindex.get(ifname)

    def receive_datagram(self, payload: bytes, source: str, destination: str, ttl_or_hop_limit: int | None,
                         family: int, ifname: str, now: float, *, ah: bool = False) -> None:
        """One VRRP datagram received on ``ifname``; judged, counted, dispatched. Never raises for a payload.

        ``ah``: the datagram came in as IPsec AH (protocol 51) and ``payload`` is
        the whole IPv4 datagram; its envelope is checked (:mod:`chimeha.vrrp.ah`)
        against the instance its VRID names before the VRRP checks.
        """
        key = (ifname, family)
        envelope = None
        if ah:
            try:
                envelope, payload = ah_wire.split(payload)
            except packet.PacketError as exc:
                self._dropped(None, key, exc.reason.value, str(exc), source, now)
                return
        name = self._by_vrid.get((key, payload[1])) if len(payload) > 1 else None
        if name is not None and (envelope is not None or self._ah.expects(name)):
            try:
                self._ah.check(self._instances[name].spec, envelope, payload)
            except packet.PacketError as exc:
                self._dropped(name, key, exc.reason.value, str(exc), source, now)
                return
        verdict = packet.validate(payload, source=source, destination=destination or "",
                                  ttl=ttl_or_hop_limit if ttl_or_hop_limit is not None else -1, family=family,
                                  expect=self._expect.get(key, {}))
        if isinstance(verdict, packet.Drop):
            name = self._by_vrid.get((key, verdict.vrid)) if verdict.vrid is not None else None
            self._dropped(name, key, verdict.reason.value, verdict.detail, source, now)
            return
        name = self._by_vrid[(key, verdict.vrid)]
        st = self._stats[name]
        st.received += 1
        st.last_rx = now
        self._instances[name].handle_advert(verdict, now)
        self._flush((name,), now)

    def _dropped(self, name: str | None, key: SocketKey, reason: str, detail: str, source: str,
                 now: float) -> None:
        if name is not None:
            self._stats[name].drops[reason] += 1
        else:
            self.drops[reason] += 1
        self._queue.append(PacketDropped(name or "", key[0], key[1], reason, detail, source, now))

    def seal_ah(self, name: str, vrrp: bytes, *, source: str, destination: str) -> bytes:
        """The IPv4 + AH datagram for one of ``name``'s adverts (advances its AH sequence number)."""
        return self._ah.seal(self._instances[name].spec, vrrp, source=source, destination=destination)

    def ah_socket_keys(self) -> frozenset[SocketKey]:
        """The (interface, family) pairs whose sockets must also speak IPsec AH."""
        return frozenset((s.interface, s.family) for s in self.specs() if ah_wire.uses_ah(s))

    def set_tracked(self, name: str, ok: bool, now: float, *, kind: str | None = None,
                    detail: str | None = None, value: int | None = None) -> tuple[str, ...]:
        """A tracked object changed (after rise/fall); every instance tracking it recomputes.

        ``kind`` ("script", "interface", "file", "process") narrows the match;
        returns the names of the instances that track it.
        """
        touched = tuple(n for n, i in self._instances.items()
                        if any(t.name == name and (kind is None or t.kind == kind) for t in i.spec.tracks))
        for n in touched:
            self._instances[n].set_tracked(name, ok, now, detail=detail, value=value)
        if self._started:
            self._flush(touched, now)
        return touched

    def master_unreachable(self, address: str, now: float, reason: str | None = None,
                           names: Iterable[str] | None = None) -> tuple[str, ...]:
        """A fast detector (a tracked BFD session) says ``address`` is gone: see
        :meth:`VrrpInstance.master_unreachable`. Only ``names`` (None: every
        instance) are asked; returns those whose Master_Down_Timer moved.

        Call it after :meth:`set_tracked` for the same event, so Skew_Time
        uses the priority the event left.
        """
        asked = tuple(self._instances) if names is None else tuple(n for n in names if n in self._instances)
        moved = tuple(n for n in asked if self._instances[n].master_unreachable(address, now, reason))
        if moved and self._started:
            self._flush(moved, now)
        return moved

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run (None: nothing is timed)."""
        times = [t for t in self._deadlines.values() if t is not None]
        return min(times) if times else None

    def handle_timer(self, now: float) -> None:
        """Run every instance timer due at ``now`` (calling early is harmless)."""
        due = [n for n, t in self._deadlines.items() if t is not None and t <= now]
        for n in due:
            self._instances[n].handle_timer(now)
        if due:
            self._flush(due, now)

    def shutdown(self, now: float) -> None:
        """SIGTERM: every MASTER sends priority 0 and removes its VIPs; all instances end in INIT."""
        for inst in self._instances.values():
            inst.shutdown(now)
        self._flush(self._instances, now)

    def note_send(self, name: str, ok: bool) -> None:
        """Executor feedback: one advertisement for ``name`` was sent (or failed to be)."""
        st = self._stats.get(name)
        if st is not None:
            if ok:
                st.sent += 1
            else:
                st.send_errors += 1

    def note_drop(self, reason: str) -> None:
        """Executor feedback: a datagram was lost before it could be judged (receive error, kernel drop)."""
        self.drops[reason] += 1

    def pop_actions(self) -> list:
        """Return and clear everything queued, in execution order."""
        out, self._queue = self._queue, []
        return out

    # -- reload -------------------------------------------------------------
    def plan_reload(self, specs: Iterable[InstanceSpec],
                    groups: Mapping[str, Sequence[str]] | None = None) -> ReloadPlan:
        """What a reload to ``specs`` would do; raises :class:`NodeConfigError`, changes nothing."""
        specs = tuple(specs)
        check_specs(specs)
        new = {s.name: s for s in specs}
        kept, changed, removed, gone, gone_routes = [], [], [], [], []
        for name, inst in self._instances.items():
            spec = new.get(name)
            if spec is None:
                removed.append(name)
            elif spec_key(spec) == spec_key(inst.spec):
                kept.append(name)
            else:
                changed.append(name)
                if self._stats[name].vips_owned:
                    # VIPs it no longer lists go; all of them when they move to another interface
                    # (use_vmac added or dropped): they are added again on the new one.
                    moved = spec.vip_interface != inst.spec.vip_interface
                    still = {_bare(v) for v in spec.virtual_ipaddresses}
                    lost = tuple(v for v in inst.spec.virtual_ipaddresses if moved or _bare(v) not in still)
                    if lost:
                        gone.append((name, lost))
                    routes = {strip_where(r) for r in spec.virtual_routes}
                    lost_routes = tuple(r for r in inst.spec.virtual_routes if strip_where(r) not in routes)
                    rules = set(spec.virtual_rules)
                    lost_rules = tuple(r for r in inst.spec.virtual_rules if r not in rules)
                    if lost_routes or lost_rules:
                        gone_routes.append((name, lost_routes, lost_rules))
        added = tuple(s.name for s in specs if s.name not in self._instances)
        grp = tuple((g, tuple(m)) for g, m in (groups or {}).items())
        return ReloadPlan(specs, grp, tuple(kept), tuple(changed), added, tuple(removed), tuple(gone),
                          tuple(gone_routes))

    def apply_reload(self, plan: ReloadPlan, now: float) -> None:
        """Carry out ``plan`` (from :meth:`plan_reload` on this node, nothing applied since)."""
        removed = [InstanceRemoved(n, self._instances[n].state, self._instances[n].priority, now)
                   for n in plan.removed]
        for name in plan.removed:
            self._instances[name].shutdown(now)
        self._flush(plan.removed, now)
        self._queue.extend(removed)
        old_state = {n: self._instances[n].state for n in plan.changed}
        keep = {n: (self._instances[n], self._stats[n]) for n in plan.kept}
        self._install(plan.specs, dict(plan.groups), keep)
        gone = dict(plan.vips_removed)
        gone_routes = {name: (routes, rules) for name, routes, rules in plan.routes_removed}
        for spec in plan.specs:
            name = spec.name
            if name in keep:
                continue
            inst = self._instances[name]
            fault = self._link_fault(inst)
            if fault is not None:
                inst.set_link(fault, now)  # still missing
            inst.start(now)
            if name in gone or name in gone_routes:
                routes, rules = gone_routes.get(name, ((), ()))
                self._queue.append(RemoveAddresses(name, gone.get(name, ()), (), routes, now, rules=rules))
            if old_state.get(name) is State.MASTER:
                inst.force_state(State.MASTER, now, "configuration reloaded while MASTER")
        for name in plan.kept:
            # keepalived ends the two-owners priority reduction at reload.
            self._instances[name].on_reload(now)
        self._flush(self._instances, now)

    # -- status -------------------------------------------------------------
    def instance_status(self, name: str) -> InstanceStatus | None:
        inst = self._instances.get(name)
        if inst is None:
            return None
        st = self._stats[name]
        master = inst.spec.primary_address if inst.state is State.MASTER else inst.master
        return InstanceStatus(
            name=name, spec=inst.spec, state=inst.state, priority=inst.priority, master=master,
            advert_interval=inst.advert_interval, counters=inst.counters.as_dict(), sent=st.sent,
            send_errors=st.send_errors, received=st.received, drops=dict(st.drops), vips_owned=st.vips_owned,
            last_change=st.last_change, failovers=tuple(st.failovers), failover_count=st.failover_count,
            split_brain_peer=st.split_peer, split_brain_since=st.split_since,
            faults=inst.faults if inst.in_fault else ())

    def status(self) -> tuple[InstanceStatus, ...]:
        return tuple(self.instance_status(n) for n in self._instances)

    # -- outputs ------------------------------------------------------------
    def _flush(self, names: Iterable[str], now: float) -> None:
        """Sync the groups of ``names``, queue every pending action with node bookkeeping."""
        todo = dict.fromkeys(names)
        for name in list(todo):
            grp = self._group_of.get(name)
            if grp is not None:
                grp.sync(now)
                todo.update(dict.fromkeys(m.name for m in grp.members))
        for name in todo:
            inst = self._instances[name]
            for action in _takeover_order(inst.pop_actions()):
                self._account(inst, action)
            self._deadlines[name] = inst.get_timer()

    def _account(self, inst: VrrpInstance, a) -> None:
        st = self._stats[inst.name]
        q = self._queue
        if isinstance(a, StateChanged):
            self.generation += 1
            if a.new is State.MASTER and a.old is State.BACKUP and st.last_rx is not None:
                seconds = round(a.at - st.last_rx, 4)
                st.note_failover(seconds)
                a = StateChanged(a.instance, a.old, a.new, a.reason, a.at, failover=seconds)
            if a.new is not State.MASTER:
                st.split_peer = st.split_since = None
            st.last_change = a
            q.append(a)
            grp = self._group_of.get(inst.name)
            if grp is not None:
                self._group_report(grp, a.at)
        elif isinstance(a, (AddAddresses, RemoveAddresses)):
            owned = isinstance(a, AddAddresses)
            if owned != st.vips_owned:
                if owned:
                    self._owned.update(self._bares[inst.name])
                else:
                    for b in self._bares[inst.name]:
                        self._owned[b] -= 1
                        if self._owned[b] <= 0:
                            del self._owned[b]  # nobody holds it now
            st.vips_owned = owned
            q.append(a)
            q.append(VipsChanged(inst.name, self.owned_vips(), a.at))
        elif isinstance(a, SplitBrain):
            self.generation += 1
            if a.healing:
                st.split_peer = st.split_since = None
            elif st.split_peer is None:
                st.split_peer, st.split_since = a.peer, a.at
            q.append(a)
        elif isinstance(a, PriorityChanged):
            self.generation += 1
            q.append(a)
        elif isinstance(a, LowerPriorityHeard):
            q.append(a)
            grp = self._group_of.get(inst.name)
            for sib in grp.members if grp is not None else ():
                if sib is not inst:
                    sib.announce_lower_priority(a.at)
                    for action in sib.pop_actions():
                        self._account(sib, action)
                    self._deadlines[sib.name] = sib.get_timer()
        else:
            q.append(a)

    def _group_report(self, grp: SyncGroup, at: float) -> None:
        states = {m.state for m in grp.members}
        if len(states) != 1:
            return
        if any(self._stats[m.name].last_change is None or self._stats[m.name].last_change.new is not m.state
               for m in grp.members):
            return  # a member's own transition is not queued yet: the group line comes after every member's
        state = states.pop()
        word = "STOP" if state is State.INIT else str(state)
        if self._group_words.get(grp.name) != word:
            self._group_words[grp.name] = word
            self._queue.append(GroupStateChanged(grp.name, word, at))


def _takeover_order(actions: list) -> list:
    """Move a takeover's SendAdvert after its AddAddresses and first gratuitous burst (see module doc)."""
    if not any(isinstance(a, AddAddresses) for a in actions):
        return actions
    out, held = [], []
    adding = False
    for a in actions:
        if isinstance(a, AddAddresses):
            adding = True
            out.append(a)
        elif adding and isinstance(a, SendAdvert):
            held.append(a)
        elif adding and isinstance(a, SendGratuitous) and a.why == "master":
            out.append(a)
            out.extend(held)
            held, adding = [], False
        else:
            if held:
                out.extend(held)
                held, adding = [], False
            out.append(a)
    out.extend(held)
    return out


__all__ = ["VrrpNode", "NodeConfigError", "NodeEvent", "InstanceStatus", "ReloadPlan", "check_specs"]
