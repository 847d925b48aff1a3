"""A simulated LAN segment of N nodes running the pure VRRP core on a fake clock.

Theory of operation
-------------------
Discrete-event simulation in the style of h11's ``ConnectionPair`` and
aioquic's ``roundtrip``: one queue of timed events (advert deliveries, script
runs, operator events) plus every instance's own timer (``get_timer()``). The
loop always advances the clock to the earliest of those, runs it, and routes
the actions the instances queued:

* ``SendAdvert`` is encoded with :func:`chimeha.vrrp.packet.encode` and, on
  every other node whose link is up, checked with ``packet.validate`` exactly
  as the runtime would (so a v2 advert_int or auth mismatch is dropped and
  counted here too) before ``handle_advert``. Delivery takes ``latency``
  seconds (0 by default: timelines then follow the RFC formulas exactly).
* ``AddAddresses``/``RemoveAddresses`` update who holds each VIP; a change of
  holder is a "VIP move" in the timeline.
* ``vrrp_script`` checks run every ``interval`` from node start through
  :class:`chimeha.track.Hysteresis` (rise/fall) and feed ``set_tracked``.
* A link cut drops the node's traffic both ways and, like a pulled cable,
  tells instances tracking that interface (keepalived's default for the
  instance's own interface) that it is down.

Ties in time are processed in insertion order, so runs are deterministic.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

from chimeha.sim.bfd import BfdLinks, BfdModel
from chimeha.track.hysteresis import Hysteresis
from chimeha.vrrp import packet
from chimeha.vrrp.events import (
    AddAddresses,
    InstanceSpec,
    PacketDropped,
    PriorityChanged,
    RemoveAddresses,
    SendAdvert,
    SplitBrain,
    State,
    StateChanged,
)
from chimeha.vrrp.instance import VrrpInstance
from chimeha.vrrp.node import VrrpNode


@dataclass(frozen=True)
class ScriptModel:
    """A vrrp_script as the simulator runs it: timing only, health set by events."""

    name: str
    interval: float = 1.0
    rise: int = 1
    fall: int = 1
    init_fail: bool = False


@dataclass(frozen=True)
class Record:
    """One line of the simulated timeline."""

    at: float
    node: str
    kind: str  # "state", "vip", "split-brain", "split-brain-end", "drop", "event", "priority"
    text: str
    instance: str = ""
    data: dict = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        who = f"{self.node}/{self.instance}" if self.instance else self.node
        return f"{self.at:9.3f}  {who:<18} {self.text}"


class Node:
    """One simulated host: a :class:`VrrpNode` (the daemon's own core), its scripts and link."""

    def __init__(self, seg: "Segment", name: str, address: str, specs: Iterable[InstanceSpec],
                 groups: dict[str, tuple[str, ...]] | None = None, scripts: Iterable[ScriptModel] = (),
                 bfd: Iterable[BfdModel] = ()):
        self.seg = seg
        self.bfd = tuple(bfd)  # bfd_instance timers (chimeha.sim.bfd)
        self.name = name
        self.address = address
        self.specs = [s if s.primary_address else replace(s, primary_address=_address_for(address, s.family))
                      for s in specs]
        self.group_defs = dict(groups or {})
        self.scripts = {s.name: s for s in scripts}
        self.health: dict[str, bool] = {s: True for s in self.scripts}
        self.link_up = True
        self.input_up = True  # False: incoming VRRP dropped (a firewall rule), sending still works
        self.running = False
        self.core = VrrpNode(self.specs, self.group_defs)
        self._hyst: dict[str, Hysteresis] = {}
        self._epoch = 0  # bumps on stop so stale script runs are ignored

    @property
    def instances(self) -> dict[str, VrrpInstance]:
        """The node's instances by name (read only; they are fed through ``core``)."""
        return {n: self.core.instance(n) for n in self.core.names}

    def boot(self, now: float) -> None:
        self.core = VrrpNode(self.specs, self.group_defs)
        self._hyst = {n: Hysteresis(s.rise, s.fall, s.init_fail) for n, s in self.scripts.items()}
        self.running = True
        self._epoch += 1
        for name, h in self._hyst.items():
            if not h.ok:
                self.core.set_tracked(name, False, now, detail=h.detail())
        if not self.link_up:
            for s in self.specs:
                if any(t.kind == "interface" and t.name == s.source_interface for t in s.tracks):
                    self.core.set_tracked(s.source_interface, False, now, kind="interface")
        self.core.start(now)
        for name, s in self.scripts.items():
            self.seg._push(now, self._run_script, name, self._epoch)

    def _run_script(self, now: float, name: str, epoch: int) -> None:
        if not self.running or epoch != self._epoch:
            return
        hyst = self._hyst[name]
        change = hyst.feed(self.health[name])
        if change is not None:
            self.seg.record(now, self.name, "event", f"{name} now {'OK' if change else 'FAILED'} ({hyst.detail()})")
            self.core.set_tracked(name, change, now, detail=hyst.detail())
        self.seg._push(now + self.scripts[name].interval, self._run_script, name, epoch)

    def interfaces(self, family: int) -> list[str]:
        """The node's interfaces (one per configured name) that carry ``family``."""
        return [ifname for (ifname, fam) in self.core.socket_keys() if fam == family]

    def state_of(self, instance: str) -> State | None:
        return self.core.state(instance)


class Segment:
    """The shared wire and clock (see module docstring)."""

    def __init__(self, latency: float = 0.0):
        self.latency = latency
        self.now = 0.0
        self.nodes: dict[str, Node] = {}
        self.timeline: list[Record] = []
        self.drops: dict[tuple[str, str], int] = {}
        self.vip_holders: dict[str, set[str]] = {}
        self._queue: list = []
        self._seq = itertools.count()
        #: called with (node name, action, now) for every action a node queues, before it is routed
        self.action_hooks: list[Callable[[str, object, float], None]] = []
        self.bfd = BfdLinks()

    # -- building --------------------------------------------------------
    def add_node(self, name: str, address: str, specs: Iterable[InstanceSpec], *,
                 groups: dict[str, tuple[str, ...]] | None = None,
                 scripts: Iterable[ScriptModel] = (), bfd: Iterable[BfdModel] = ()) -> Node:
        """Add a host with its instances; it boots at :meth:`start` or :meth:`start_node`."""
        node = Node(self, name, address, specs, groups, scripts, bfd)
        self.nodes[name] = node
        self.bfd.pair(self.nodes)
        return node

    def start(self, at: float | None = None) -> None:
        """Boot every node at ``at`` (default: now), in the order they were added."""
        for name in self.nodes:
            self.start_node(name, at)

    # -- operator events (scheduled) ------------------------------------
    def start_node(self, name: str, at: float | None = None) -> None:
        self._at(at, self._do_start, name)

    def stop_node(self, name: str, at: float | None = None) -> None:
        """The daemon stops cleanly (SIGTERM): a MASTER sends priority 0."""
        self._at(at, self._do_stop, name)

    def crash_node(self, name: str, at: float | None = None) -> None:
        """The node dies without a word (power loss): no priority 0."""
        self._at(at, self._do_crash, name)

    def link_down(self, name: str, at: float | None = None) -> None:
        self._at(at, self._do_link, name, False)

    def link_up(self, name: str, at: float | None = None) -> None:
        self._at(at, self._do_link, name, True)

    def partition(self, name: str, at: float | None = None) -> None:
        """Lose the node's VRRP traffic both ways while its carrier stays up (no FAULT):
        a filtering switch or firewall, the classic split-brain recipe."""
        self._at(at, self._do_partition, name, True)

    def heal(self, name: str, at: float | None = None) -> None:
        self._at(at, self._do_partition, name, False)

    def reload(self, name: str, at: float | None = None, specs: Iterable[InstanceSpec] | None = None,
               groups: dict[str, tuple[str, ...]] | None = None) -> None:
        """The daemon reloads (SIGHUP): its configuration unchanged, or ``specs``/``groups`` when given."""
        self._at(at, self._do_reload, name, None if specs is None else tuple(specs), groups)

    def cut_input(self, name: str, at: float | None = None) -> None:
        """Drop the node's incoming VRRP only (it still sends): one-way loss, the
        split brain where one master keeps hearing the other."""
        self._at(at, self._do_input, name, False)

    def restore_input(self, name: str, at: float | None = None) -> None:
        self._at(at, self._do_input, name, True)

    def check_fail(self, name: str, script: str, at: float | None = None) -> None:
        """From ``at`` on, every run of ``script`` on ``name`` fails (detected at its next runs)."""
        self._at(at, self._do_health, name, script, False)

    def check_ok(self, name: str, script: str, at: float | None = None) -> None:
        self._at(at, self._do_health, name, script, True)

    def set_tracked(self, name: str, track: str, ok: bool, at: float | None = None) -> None:
        """Directly set a tracked object (interface, file, process) on every instance of ``name``."""
        self._at(at, self._do_tracked, name, track, ok)

    def inject(self, name: str, payload: bytes, source: str, at: float | None = None, *, ttl: int = 255,
               family: int = 4, destination: str | None = None) -> None:
        """A datagram from a host outside the simulation reaches ``name`` (on each interface of ``family``)."""
        self._at(at, self._do_inject, name, payload, source, ttl, family, destination)

    # -- running ---------------------------------------------------------
    def run_until(self, t_end: float) -> None:
        """Advance the clock to ``t_end``, processing everything due on the way."""
        while True:
            t_q = self._queue[0][0] if self._queue else None
            t_i, owner = self._next_node_timer()
            candidates = [t for t in (t_q, t_i) if t is not None]
            if not candidates:
                break
            t_next = min(candidates)
            if t_next > t_end:
                break
            self.now = t_next
            if t_q is not None and t_q <= t_next:
                _, _, fn, args = heapq.heappop(self._queue)
                fn(self.now, *args)
            else:
                owner.core.handle_timer(self.now)
            self._route()
        self.now = max(self.now, t_end)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.now + seconds)

    # -- queries ---------------------------------------------------------
    def masters(self, instance: str) -> list[str]:
        """Names of running nodes where ``instance`` is MASTER."""
        return [n.name for n in self.nodes.values() if n.running and n.state_of(instance) is State.MASTER]

    def state(self, node: str, instance: str) -> State | None:
        return self.nodes[node].state_of(instance)

    def instance(self, node: str, instance: str) -> VrrpInstance:
        return self.nodes[node].core.instance(instance)

    def holders(self, vip: str) -> set[str]:
        """Nodes that currently have ``vip`` installed."""
        return set(self.vip_holders.get(vip, set()))

    def records(self, kind: str | None = None) -> list[Record]:
        return [r for r in self.timeline if kind is None or r.kind == kind]

    def record(self, at: float, node: str, kind: str, text: str, instance: str = "", **data) -> None:
        self.timeline.append(Record(at, node, kind, text, instance, data))

    def schedule(self, t: float, fn: Callable, *args) -> None:
        """Run ``fn(now, *args)`` at ``t`` (ties in insertion order): for models such as chimeha.sim.bfd."""
        self._push(t, fn, *args)

    # -- internals -------------------------------------------------------
    def _push(self, t: float, fn: Callable, *args) -> None:
        heapq.heappush(self._queue, (t, next(self._seq), fn, args))

    def _at(self, at: float | None, fn: Callable, *args) -> None:
        self._push(self.now if at is None else at, fn, *args)

    def _next_node_timer(self):
        best, owner = None, None
        for node in self.nodes.values():
            if not node.running:
                continue
            t = node.core.get_timer()
            if t is not None and (best is None or t < best):
                best, owner = t, node
        return best, owner

    def _do_start(self, now: float, name: str) -> None:
        node = self.nodes[name]
        if node.running:
            return
        self.record(now, name, "event", "node starts")
        node.boot(now)
        self.bfd.booted(name)
        self.bfd.refresh(self, now)

    def _do_stop(self, now: float, name: str) -> None:
        node = self.nodes[name]
        if not node.running:
            return
        self.record(now, name, "event", "node stops (priority 0 if MASTER)")
        node.core.shutdown(now)
        self._route()
        node.running = False
        self.bfd.refresh(self, now, stopped=name)

    def _do_crash(self, now: float, name: str) -> None:
        node = self.nodes[name]
        if not node.running:
            return
        self.record(now, name, "event", "node crashes (silent)")
        node.running = False
        node.core.pop_actions()
        for vip, holders in self.vip_holders.items():
            if name in holders:
                holders.discard(name)
                self.record(now, name, "vip", f"VIP {vip} lost with the node", vip=vip)
        self.bfd.refresh(self, now)

    def _do_link(self, now: float, name: str, up: bool) -> None:
        node = self.nodes[name]
        if node.link_up == up:
            return
        node.link_up = up
        self.record(now, name, "event", "link restored" if up else "link cut")
        if node.running:
            for ifname in sorted({s.source_interface for s in node.specs}):  # the cable: not a VMAC
                node.core.set_tracked(ifname, up, now, kind="interface")
        self.bfd.refresh(self, now)

    def _do_partition(self, now: float, name: str, cut: bool) -> None:
        node = self.nodes[name]
        if node.link_up == (not cut):
            return
        node.link_up = not cut
        self.record(now, name, "event", "partitioned (carrier up)" if cut else "partition healed")
        self.bfd.refresh(self, now)

    def _do_reload(self, now: float, name: str, specs=None, groups=None) -> None:
        node = self.nodes[name]
        if not node.running:
            return
        self.record(now, name, "event", "configuration reloaded")
        core = node.core
        if specs is not None:
            node.specs = [s if s.primary_address else replace(s, primary_address=_address_for(node.address, s.family))
                          for s in specs]
            node.group_defs = dict(groups or {})
        core.apply_reload(core.plan_reload(node.specs if specs is not None else core.specs(),
                                           node.group_defs if specs is not None else core.groups()), now)

    def _do_input(self, now: float, name: str, up: bool) -> None:
        node = self.nodes[name]
        if node.input_up == up:
            return
        node.input_up = up
        self.record(now, name, "event", "incoming VRRP restored" if up else "incoming VRRP dropped (still sending)")

    def _do_health(self, now: float, name: str, script: str, ok: bool) -> None:
        node = self.nodes[name]
        if script not in node.health:
            raise KeyError(f"node {name} has no vrrp_script {script!r}")
        node.health[script] = ok
        self.record(now, name, "event", f"{script} starts {'succeeding' if ok else 'failing'}")

    def _do_tracked(self, now: float, name: str, track: str, ok: bool) -> None:
        node = self.nodes[name]
        self.record(now, name, "event", f"{track} {'up' if ok else 'down'}")
        if node.running:
            node.core.set_tracked(track, ok, now)

    def _do_inject(self, now: float, name: str, payload: bytes, source: str, ttl: int, family: int,
                   destination: str | None) -> None:
        node = self.nodes[name]
        if not (node.running and node.link_up and node.input_up):
            return
        dest = destination or (packet.MCAST_V4 if family == 4 else packet.MCAST_V6)
        for ifname in node.interfaces(family):
            node.core.receive_datagram(payload, source, dest, ttl, family, ifname, now)

    def _deliver(self, now: float, src: str, dst: str, adv_action: SendAdvert, payload: bytes,
                 dest: str | None = None) -> None:
        sender, node = self.nodes[src], self.nodes[dst]
        if not (node.running and node.link_up and node.input_up and sender.link_up):
            return
        dest = dest or (packet.MCAST_V4 if adv_action.family == 4 else packet.MCAST_V6)
        for ifname in node.interfaces(adv_action.family):
            node.core.receive_datagram(payload, sender_address(sender, adv_action), dest, 255,
                                       adv_action.family, ifname, now)

    def _route(self) -> None:
        for node in self.nodes.values():
            for act in node.core.pop_actions():
                for hook in self.action_hooks:
                    hook(node.name, act, self.now)
                self._apply(node, act)

    def _apply(self, node: Node, act) -> None:
        now = self.now
        if isinstance(act, SendAdvert):
            if not node.link_up:
                return
            src = sender_address(node, act)
            spec = next((sp for sp in node.specs if sp.name == act.instance), None)
            # The instance's group (mcast_dst_ip / vrrp_mcast_group4/6) goes into the v3 checksum.
            dest = (spec.mcast_group if spec is not None and spec.mcast_group else
                    packet.MCAST_V4 if act.family == 4 else packet.MCAST_V6)
            payload = packet.encode(act.version, act.vrid, act.priority, act.addresses, act.interval,
                                    family=act.family, auth_type=act.auth_type, auth_pass=act.auth_pass,
                                    source=src, destination=dest)
            for other in self.nodes:
                if other != node.name:
                    self._push(now + self.latency, self._deliver, node.name, other, act, payload, dest)
            # Counted as the daemon's executor counts: one send per unicast peer, else one multicast.
            for _peer in (spec.unicast_peers if spec else ()) or (None,):
                node.core.note_send(act.instance, True)
        elif isinstance(act, PacketDropped):
            # One wire carries every VRID: an advert for a VRID this node does not run is not an error here.
            if act.reason == packet.DropReason.VRID_UNKNOWN.value:
                return
            key = (node.name, act.reason)
            first = key not in self.drops
            self.drops[key] = self.drops.get(key, 0) + 1
            if first:
                self.record(now, node.name, "drop", f"dropped ({act.reason}): {act.detail}" if act.detail
                            else f"dropped ({act.reason})", act.instance, reason=act.reason)
        elif isinstance(act, StateChanged):
            self.record(now, node.name, "state", f"{act.old} -> {act.new}: {act.reason}", act.instance,
                        old=act.old.value, new=act.new.value, reason=act.reason)
        elif isinstance(act, PriorityChanged):
            self.record(now, node.name, "priority", f"priority {act.old} -> {act.new}: {act.reason}", act.instance,
                        old=act.old, new=act.new)
        elif isinstance(act, SplitBrain):
            if act.healing:
                self.record(now, node.name, "split-brain-end", act.reason, act.instance, peer=act.peer)
            else:
                self.record(now, node.name, "split-brain", f"split brain: {act.reason}", act.instance, peer=act.peer)
        elif isinstance(act, (AddAddresses, RemoveAddresses)):
            add = isinstance(act, AddAddresses)
            spec = next((sp for sp in node.specs if sp.name == act.instance), None)
            for vip in _vips(act.addresses or (spec.advert_addresses if spec else ())):
                holders = self.vip_holders.setdefault(vip, set())
                if (node.name in holders) != add:
                    (holders.add if add else holders.discard)(node.name)
                    self.record(now, node.name, "vip", f"VIP {vip} {'added' if add else 'removed'}", act.instance,
                                vip=vip)


def sender_address(node: Node, act: SendAdvert) -> str:
    """The source address a node's advert carries (its instance's primary address)."""
    spec = next((s for s in node.specs if s.name == act.instance), None)
    return spec.primary_address if spec and spec.primary_address else node.address


def _address_for(address: str, family: int) -> str:
    """The node's address for an instance of ``family`` (a link-local one derived for IPv6)."""
    is_v6 = ":" in address
    if (family == 6) == is_v6:
        return address
    if family == 6:
        return "fe80::" + "".join(f"{int(o):02x}" for o in address.split(".")[-2:])
    return "192.0.2." + str(int(address.rsplit(":", 1)[-1] or "0", 16) % 254 + 1)


def _vips(addresses) -> list[str]:
    return [getattr(v, "ip", None) or str(getattr(v, "address", v)).split("/")[0] for v in addresses]
