"""Specs and actions exchanged between the pure VRRP core and its adapters.

The core (``VrrpInstance``) consumes calls with an explicit ``now`` and emits
these frozen action objects; the runtime executes them (raw socket, netlink,
notify scripts, journal). Nothing here performs I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from chimeha.track.spec import TrackSpec  # noqa: F401  re-exported; lives in track (track never imports vrrp)


class State(str, Enum):
    """VRRP states (RFC 5798 section 6.4) plus keepalived's FAULT."""

    INIT = "INIT"
    BACKUP = "BACKUP"
    MASTER = "MASTER"
    FAULT = "FAULT"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class InstanceSpec:
    """Everything the state machine needs to know about one vrrp_instance.

    ``advert_addresses`` are the bare addresses put in adverts (the VIPs of the
    instance's family); ``virtual_ipaddresses``/``excluded``/``routes`` are the
    config objects handed back untouched in Add/RemoveAddresses actions.
    """

    name: str
    vrid: int
    priority: int = 100
    version: int = 2
    family: int = 4
    advert_int: float = 1.0
    advert_addresses: tuple[str, ...] = ()
    primary_address: str = ""
    source_configured: bool = False  # primary_address is unicast_src_ip / mcast_src_ip, not the interface's
    interface: str = ""  # where the VRRP socket is: the VMAC, or the base with vmac_xmit_base
    # use_vmac / use_ipvlan (chimeha.vrrp.vmac.Link): the link to hold; its name is where VIPs
    # without a dev go (``vip_interface``), its base is where the source address comes from.
    link: Any = None
    extra_links: tuple[Any, ...] = ()  # VMACs of VIPs on other interfaces / of the other family (use_vmac_addr)
    # garp_extra_if: while MASTER, one gratuitous ARP/NA every this many seconds for these VIPs
    # (one per interface that carries no adverts: keepalived's vrrp_send_vmac_update); 0 = off
    garp_extra_interval: float = 0.0
    garp_extra_addresses: tuple[Any, ...] = ()
    initial_state: str = "BACKUP"
    nopreempt: bool = False
    preempt_delay: float = 0.0
    down_timer_adverts: int = 3
    auth_type: str | None = None
    auth_pass: str | None = None
    unicast_peers: tuple[str, ...] = ()
    check_unicast_src: bool = False
    unicast_peer_ttl: tuple[tuple[str, int | None, int | None], ...] = ()  # (peer, min_ttl, max_ttl)
    #: the multicast group adverts go to and are accepted on ("" = the standard 224.0.0.18 / ff02::12;
    #: unused with unicast peers): mcast_dst_ip, else global_defs vrrp_mcast_group4/6
    mcast_group: str = ""
    unicast_ttl: int | None = None  # TTL / hop limit of unicast adverts (None: 255)
    #: a configuration fault that holds the instance in FAULT for good (unicast_fault_no_peer without peers)
    config_fault: str | None = None
    skip_check_adv_addr: bool = False
    tracks: tuple[TrackSpec, ...] = ()
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    lower_prio_no_advert: bool = False
    # keepalived's split-brain repair (issue 10): a MASTER hearing a lower-priority master
    # re-announces its VIPs (burst now, another after the delay); 0 repeats = off.
    garp_lower_prio_delay: float = 5.0
    garp_lower_prio_repeat: int = 5
    higher_prio_send_advert: bool = False  # advertise once before yielding to a higher master
    garp_interval: float = 0.0  # seconds between two gratuitous ARPs on the interface (garp_group / global)
    gna_interval: float = 0.0  # the same for unsolicited neighbour advertisements
    virtual_ipaddresses: tuple[Any, ...] = ()
    virtual_ipaddresses_excluded: tuple[Any, ...] = ()
    virtual_routes: tuple[Any, ...] = ()
    virtual_rules: tuple[Any, ...] = ()  # config.rules.RuleSpec, held while MASTER like the routes
    sync_group: str | None = None
    #: accept mode: False (no_accept, or strict mode's default) drops traffic to the VIPs while held
    accept: bool = True
    where: str = ""  # "FILE:LINE: " of the vrrp_instance block, for messages ("" unknown)

    @property
    def vip_interface(self) -> str:
        """Where VIPs without a ``dev`` and their gratuitous ARP/NA go."""
        return self.link.name if self.link is not None else self.interface

    @property
    def source_interface(self) -> str:
        """Whose address the adverts leave from (the configured interface: a VMAC has none of its own)."""
        return self.link.base if self.link is not None else self.interface

    def interfaces(self) -> tuple[str, ...]:
        """Every interface the instance needs to run (socket, VIPs, source), each once."""
        return tuple(dict.fromkeys((self.interface, self.vip_interface, self.source_interface,
                                    *(lk.name for lk in self.extra_links))))

    def links(self) -> tuple[Any, ...]:
        """Every link the instance holds: its own, then its VIPs'."""
        return ((self.link,) if self.link is not None else ()) + tuple(self.extra_links)

    @property
    def is_owner(self) -> bool:
        """Priority 255: the address owner (RFC 5798 section 3)."""
        return self.priority == 255


@dataclass(frozen=True)
class Action:
    """Base class of everything the core asks the runtime to do."""

    instance: str


@dataclass(frozen=True)
class SendAdvert(Action):
    """Send one advertisement with these fields (encode with ``packet.encode``)."""

    vrid: int
    version: int
    family: int
    priority: int
    interval: float
    addresses: tuple[str, ...]
    auth_type: str | None = None
    auth_pass: str | None = None
    at: float = 0.0


@dataclass(frozen=True)
class AddAddresses(Action):
    """Install the VIPs (and excluded VIPs, routes, rules) of the instance."""

    addresses: tuple[Any, ...]
    excluded: tuple[Any, ...] = ()
    routes: tuple[Any, ...] = ()
    at: float = 0.0
    rules: tuple[Any, ...] = ()  # virtual_rules (config.rules.RuleSpec)


@dataclass(frozen=True)
class RemoveAddresses(Action):
    """Remove the VIPs (and excluded VIPs, routes, rules) of the instance."""

    addresses: tuple[Any, ...]
    excluded: tuple[Any, ...] = ()
    routes: tuple[Any, ...] = ()
    at: float = 0.0
    rules: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SendGratuitous(Action):
    """Send ``count`` gratuitous ARPs / unsolicited NAs for ``addresses`` now.

    ``why`` is "master" (first burst), "master-delay" (second burst after
    garp_master_delay), "refresh", "lower-priority" (a lower-priority master
    was heard) or "lower-priority-delay" (the burst garp_lower_prio_delay
    later). ``interval`` / ``na_interval``: the least time between two
    gratuitous ARPs / NAs sent on the interface (keepalived's
    vrrp_garp_interval, vrrp_gna_interval, garp_group); 0 = back to back.
    """

    addresses: tuple[Any, ...]
    interface: str = ""
    count: int = 1
    why: str = "master"
    at: float = 0.0
    interval: float = 0.0
    na_interval: float = 0.0


@dataclass(frozen=True)
class StateChanged(Action):
    """The instance moved from ``old`` to ``new`` at ``at`` for ``reason`` (operator words)."""

    old: State
    new: State
    reason: str
    at: float
    #: BACKUP -> MASTER only, filled in by the node: seconds from the last
    #: advert heard from the old master to this takeover (None: not measured).
    failover: float | None = None

    def __str__(self) -> str:
        return f"{self.at:.3f} {self.instance}: {self.old} -> {self.new} ({self.reason})"


@dataclass(frozen=True)
class PriorityChanged(Action):
    """The effective priority changed (tracking); ``reason`` names the cause.

    ``state`` is the instance's state when it changed (keepalived's notify
    FIFO says MASTER_PRIORITY or BACKUP_PRIORITY by it).
    """

    old: int
    new: int
    reason: str
    at: float
    state: State | None = field(default=None, compare=False)  # not part of equality (older tests)


@dataclass(frozen=True)
class SplitBrain(Action):
    """A split-brain episode starts (``healing`` False) or ends (``healing`` True).

    Start: we are MASTER and a valid advert from another master for our VRID
    did not make us step down (it has a lower priority, or the same priority
    from a lower address, or it keeps coming because our answers do not reach
    it). One start is emitted per rival master, the first one opens the
    episode. End: emitted once, when the last rival has been silent for its
    Master_Down_Interval, sent priority 0, or when we leave MASTER (then it
    comes just before that ``StateChanged``). ``peer``/``peer_priority`` name
    the rival (at the end: the last one heard); ``reason`` is operator words.
    """

    peer: str
    peer_priority: int
    local_priority: int
    reason: str
    at: float
    healing: bool = False


@dataclass(frozen=True)
class LowerPriorityHeard(Action):
    """As MASTER we heard ``peer`` advertise a lower priority (or lose the tie): another master exists.

    keepalived's trigger for garp_lower_prio_repeat (of this instance and of
    its sync-group siblings) and for notify_master_rx_lower_pri.
    """

    peer: str
    peer_priority: int
    at: float


@dataclass(frozen=True)
class NodeEvent:
    """Base class of what the node (not one instance) reports: drops, VIP set, groups."""


@dataclass(frozen=True)
class PacketDropped(NodeEvent):
    """A received datagram failed validation; ``instance`` is "" when no instance has its VRID."""

    instance: str
    interface: str
    family: int
    reason: str  # a packet.DropReason value ("checksum", "ttl", ...)
    detail: str
    source: str
    at: float


@dataclass(frozen=True)
class VipsChanged(NodeEvent):
    """The set of VIPs this node holds changed (``owned``: bare addresses of every instance)."""

    instance: str
    owned: frozenset[str]
    at: float


@dataclass(frozen=True)
class GroupStateChanged(NodeEvent):
    """Every member of sync group ``group`` now agrees on ``state`` ("STOP" for INIT), as keepalived reports it."""

    group: str
    state: str
    at: float


@dataclass(frozen=True)
class InstanceRemoved(NodeEvent):
    """A reload removed ``instance``; ``state``/``priority``: what it had just before.

    Queued after the instance's own shutdown actions. keepalived 2.2.7
    notifies such an instance as DELETED (``notify_deleted``) or, by default,
    as FAULT (unless it was in FAULT already), never as STOP.
    """

    instance: str
    state: State
    priority: int
    at: float


@dataclass(frozen=True)
class InterfaceChanged(NodeEvent):
    """``interface`` appeared (``present``, with ``ifindex``), disappeared, or was re-created with a new index.

    The executor rebuilds the VRRP sockets of the interface: a socket stays bound to the index it
    was opened on, and a re-created interface has a new one.
    """

    interface: str
    present: bool
    ifindex: int | None
    old_ifindex: int | None
    at: float


@dataclass(frozen=True)
class RestoreLink(NodeEvent):
    """Create ``link`` (a :class:`chimeha.vrrp.vmac.Link`) again: it was deleted, or went with its base.

    keepalived re-creates a VMAC deleted under it; the executor asks the
    runtime's link manager, and the interface monitor's next report brings
    the instance back (with sockets on the new index).
    """

    instance: str
    link: Any
    at: float


@dataclass
class Counters:
    """Per-instance counters the runtime exports as metrics."""

    adverts_sent: int = 0
    adverts_received: int = 0
    priority_zero_sent: int = 0
    priority_zero_received: int = 0
    became_master: int = 0
    released_master: int = 0
    entered_fault: int = 0
    split_brain: int = 0
    lower_priority_received: int = 0
    interval_adopted: int = 0
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        return d
