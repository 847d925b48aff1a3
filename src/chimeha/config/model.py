"""The typed configuration model: frozen dataclasses with keepalived's defaults.

Every node carries ``where: Where`` (file and line of the keyword that opened
it) so that later stages (validation, the runtime, the journal) can point an
operator at the exact line.  Units follow keepalived's configuration language:
times are seconds as ``float`` (``advert_int 0.5`` is 0.5), weights and
priorities are plain ints.

``script_users`` maps a notify-style keyword (``notify_master``, ``quorum_up``,
``notify_up`` ...) to the ``username [groupname]`` written after its command.
``positions`` maps a keyword to the ``Where`` of the line that set it (for
diagnostics that must point at, say, the ``priority`` line rather than the
block).  Keywords that keepalived accepts but that have no typed field here are kept,
uninterpreted, in each node's ``options`` mapping (keyword -> tuple of the
argument tuples of every occurrence), so nothing a config says is lost and
``render()`` can write it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Union

from .where import NOWHERE, Diagnostic, Severity, Where

__all__ = [
    "Where",
    "Diagnostic",
    "GlobalDefs",
    "LvsSyncDaemon",
    "VrrpScript",
    "TrackProcess",
    "TrackFile",
    "TrackRef",
    "SyncGroup",
    "VirtualAddress",
    "Route",
    "Rule",
    "UnicastPeer",
    "VrrpInstance",
    "TcpCheck",
    "HttpUrl",
    "HttpCheck",
    "MiscCheck",
    "SmtpCheck",
    "DnsCheck",
    "UdpCheck",
    "PingCheck",
    "FileCheck",
    "BfdCheck",
    "RealServer",
    "VirtualServerGroupEntry",
    "VirtualServerGroup",
    "VirtualServer",
    "Block",
    "Config",
    "LoadResult",
    "Checker",
    "Severity",
    "NOWHERE",
]

_EMPTY: Mapping[str, tuple[tuple[str, ...], ...]] = {}


# --------------------------------------------------------------------------- globals


@dataclass(frozen=True)
class LvsSyncDaemon:
    """``global_defs { lvs_sync_daemon INTERFACE [VRRP_INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group IP] }``.

    chime-ha runs conntrackd (FTFW) on ``interface`` for the nft data plane; the
    instance's MASTER state decides who commits the replicated connections.
    """

    interface: str
    instance: str | None = None
    port: int | None = None  # conntrackd's multicast UDP port (default 3780)
    group: str | None = None  # conntrackd's multicast group (default 225.0.0.50)
    where: Where = NOWHERE


@dataclass(frozen=True)
class GlobalDefs:
    """``global_defs { ... }``."""

    where: Where = NOWHERE
    router_id: str | None = None
    vrrp_version: int = 2
    enable_script_security: bool = False
    script_user: str | None = None
    script_group: str | None = None
    notification_email: tuple[str, ...] = ()
    notification_email_from: str | None = None
    smtp_server: str | None = None
    smtp_connect_timeout: float = 30.0
    vrrp_mcast_group4: str = "224.0.0.18"
    vmac_prefix: str | None = None  # default VMAC names: PREFIX.VRID (keepalived: "vrrp")
    vmac_addr_prefix: str | None = None
    vrrp_garp_extra_if: tuple[bool, int] | None = None  # (all, seconds): default of garp_extra_if
    vrrp_mcast_group6: str = "ff02::12"
    vrrp_garp_master_delay: float = 5.0
    vrrp_garp_master_repeat: int = 5
    vrrp_garp_master_refresh: float = 0.0
    vrrp_garp_master_refresh_repeat: int = 1
    vrrp_skip_check_adv_addr: bool = False
    vrrp_strict: bool = False
    vrrp_startup_delay: float = 0.0
    dynamic_interfaces: bool = False
    vrrp_garp_interval: float = 0.0
    vrrp_gna_interval: float = 0.0
    # SNMP (chimeha.snmp): which MIBs the AgentX subagent serves, and the master agent's socket.
    enable_snmp_vrrp: bool = False  # KEEPALIVED-MIB VRRP part (enable_snmp_keepalived is its old name)
    enable_snmp_rfcv2: bool = False  # VRRP-MIB, RFC 2787 (enable_snmp_rfc sets both)
    enable_snmp_rfcv3: bool = False  # VRRPv3-MIB, RFC 6527
    enable_snmp_checker: bool = False  # KEEPALIVED-MIB checker part: virtual and real servers
    snmp_socket: str | None = None  # net-snmp transport spec; None = unix:/var/agentx/master
    #: defaults of every instance's check_unicast_src / lower_prio_no_advert (folded in by the reader)
    vrrp_check_unicast_src: bool = False
    vrrp_lower_prio_no_advert: bool = False
    #: notify FIFOs: VRRP events only, and every event; the ``*_script`` reader commands
    vrrp_notify_fifo: str | None = None
    vrrp_notify_fifo_script: tuple[str, ...] | None = None
    notify_fifo: str | None = None
    notify_fifo_script: tuple[str, ...] | None = None
    lvs_sync_daemon: LvsSyncDaemon | None = None
    # garp (issue 10 item 2): None = keepalived's default, the garp_master_* value
    vrrp_garp_lower_prio_delay: float | None = None
    vrrp_garp_lower_prio_repeat: int | None = None
    vrrp_higher_prio_send_advert: bool = False
    # mail alerts and startup/shutdown scripts: chimeha.config.model_notify (None: keepalived's defaults)
    smtp: "SmtpSettings | None" = None  # noqa: F821
    startup_script: "LifecycleScript | None" = None  # noqa: F821
    shutdown_script: "LifecycleScript | None" = None  # noqa: F821
    vrrp_notify_priority_changes: bool = False  # default of notify_priority_changes (instance, sync group)
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)
    positions: Mapping[str, Where] = field(default_factory=dict, compare=False, repr=False)


# --------------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class VrrpScript:
    """``vrrp_script NAME { ... }``: a periodic check whose exit status is tracked."""

    name: str
    where: Where = NOWHERE
    script: tuple[str, ...] = ()
    interval: float = 1.0
    timeout: float | None = None
    weight: int = 0
    weight_reverse: bool = False
    rise: int = 1
    fall: int = 1
    user: str | None = None
    group: str | None = None
    init_fail: bool = False
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)
    positions: Mapping[str, Where] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class TrackProcess:
    """``vrrp_track_process NAME { ... }``.

    ``param_match`` is None, "exact" (the bare keyword), "partial" or "initial";
    ``delay`` also sets ``fork_delay`` and ``terminate_delay`` when read
    (:mod:`chimeha.track.process` has the semantics).
    """

    name: str
    where: Where = NOWHERE
    process: tuple[str, ...] = ()
    param_match: str | None = None
    weight: int = 0
    weight_reverse: bool = False
    quorum: int = 1
    quorum_max: int | None = None
    delay: float = 0.0
    fork_delay: float | None = None
    terminate_delay: float | None = None
    full_command: bool = False
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class TrackFile:
    """``vrrp_track_file NAME { ... }`` / ``track_file NAME { ... }``."""

    name: str
    where: Where = NOWHERE
    file: str | None = None
    weight: int = 1
    weight_reverse: bool = False
    init_file: bool = False
    init_file_value: int | None = None
    init_file_overwrite: bool = False
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class TrackRef:
    """A reference from an instance or sync group to a tracked object.

    ``weight`` None means "use the tracked object's own weight".
    """

    name: str
    where: Where = NOWHERE
    weight: int | None = None
    reverse: bool = False


@dataclass(frozen=True)
class SyncGroup:
    """``vrrp_sync_group NAME { group { ... } ... }``."""

    name: str
    where: Where = NOWHERE
    group: tuple[str, ...] = ()
    notify_master: tuple[str, ...] | None = None
    notify_backup: tuple[str, ...] | None = None
    notify_fault: tuple[str, ...] | None = None
    notify_stop: tuple[str, ...] | None = None
    notify: tuple[str, ...] | None = None
    smtp_alert: bool = False
    notify_priority_changes: bool | None = None  # None: global vrrp_notify_priority_changes
    global_tracking: bool = False
    sync_group_tracking_weight: bool = False
    track_scripts: tuple[TrackRef, ...] = ()
    track_interfaces: tuple[TrackRef, ...] = ()
    track_files: tuple[TrackRef, ...] = ()
    track_processes: tuple[TrackRef, ...] = ()
    track_bfds: tuple[TrackRef, ...] = ()
    script_users: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)
    positions: Mapping[str, Where] = field(default_factory=dict, compare=False, repr=False)


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True)
class VirtualAddress:
    """One line of ``virtual_ipaddress`` / ``static_ipaddress``.

    ``address`` is always CIDR: a bare IPv4 address becomes ``/32``, IPv6 ``/128``.
    """

    address: str
    where: Where = NOWHERE
    dev: str | None = None
    label: str | None = None
    scope: str | None = None
    broadcast: str | None = None
    peer: str | None = None
    nodad: bool = False
    no_track: bool = False
    home: bool = False
    noprefixroute: bool = False
    use_vmac: str | None = None
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    @property
    def ip(self) -> str:
        """The address without its prefix length."""
        return self.address.split("/", 1)[0]


@dataclass(frozen=True)
class Route:
    """One line of ``virtual_routes`` / ``static_routes`` (kept as words)."""

    words: tuple[str, ...]
    where: Where = NOWHERE
    destination: str | None = None
    via: str | None = None
    dev: str | None = None


@dataclass(frozen=True)
class Rule:
    """One line of ``virtual_rules`` / ``static_rules``: its words and typed ``config.rules.RuleSpec``."""

    words: tuple[str, ...]
    where: Where = NOWHERE
    spec: Any = None


@dataclass(frozen=True)
class UnicastPeer:
    """One address of ``unicast_peer { ... }``."""

    address: str
    where: Where = NOWHERE
    min_ttl: int | None = None
    max_ttl: int | None = None


# --------------------------------------------------------------------------- VRRP instance


@dataclass(frozen=True)
class VrrpInstance:
    """``vrrp_instance NAME { ... }``."""

    name: str
    where: Where = NOWHERE
    state: Literal["MASTER", "BACKUP"] = "BACKUP"
    interface: str | None = None
    virtual_router_id: int | None = None
    priority: int = 100
    advert_int: float = 1.0
    version: int = 2
    family: int = 4
    native_ipv6: bool = False
    nopreempt: bool = False
    preempt_delay: float = 0.0
    auth_type: Literal["PASS", "AH"] | None = None
    auth_pass: str | None = None
    virtual_ipaddresses: tuple[VirtualAddress, ...] = ()
    virtual_ipaddresses_excluded: tuple[VirtualAddress, ...] = ()
    virtual_routes: tuple[Route, ...] = ()
    virtual_rules: tuple[Rule, ...] = ()
    track_scripts: tuple[TrackRef, ...] = ()
    track_interfaces: tuple[TrackRef, ...] = ()
    track_files: tuple[TrackRef, ...] = ()
    track_processes: tuple[TrackRef, ...] = ()
    track_bfds: tuple[TrackRef, ...] = ()
    unicast_src_ip: str | None = None
    unicast_peers: tuple[UnicastPeer, ...] = ()
    mcast_src_ip: str | None = None
    mcast_dst_ip: str | None = None  # None: global vrrp_mcast_group4/6 (checked: multicast, instance family)
    unicast_ttl: int | None = None  # TTL / hop limit of unicast adverts (None: 255 / kernel default)
    unicast_fault_no_peer: bool = False  # unicast without peers -> FAULT (not multicast)
    garp_master_delay: float = 5.0
    garp_master_repeat: int = 5
    garp_master_refresh: float = 0.0
    garp_master_refresh_repeat: int = 1
    garp_lower_prio_delay: float | None = None
    garp_lower_prio_repeat: int | None = None
    notify_master: tuple[str, ...] | None = None
    notify_backup: tuple[str, ...] | None = None
    notify_fault: tuple[str, ...] | None = None
    notify_stop: tuple[str, ...] | None = None
    notify_master_rx_lower_pri: tuple[str, ...] | None = None
    notify: tuple[str, ...] | None = None
    notify_deleted: tuple[str, ...] | None = None  # () = bare keyword: report DELETED (no script)
    notify_priority_changes: bool | None = None  # None: the sync group's, else the global default
    smtp_alert: bool = False
    down_timer_adverts: int = 3
    use_vmac: str | None = None  # the use_vmac NAME ("" without one); the whole link is ``vmac``
    vmac_xmit_base: bool = False
    vmac: "VmacConfig | None" = None  # use_vmac / use_ipvlan (config.model_vmac)
    use_vmac_addr: bool = False
    garp_extra_if: tuple[bool, int] | None = None  # (all, seconds); keepalived's vmac_garp_intvl
    vip_vmacs: "tuple[VipVmac, ...]" = ()  # VMACs of VIPs on other interfaces/families (config.model_vmac)
    dont_track_primary: bool = False
    accept: bool | None = None
    strict_mode: bool = False
    skip_check_adv_addr: bool = False
    #: drop adverts from an address that is not a unicast_peer (default: global vrrp_check_unicast_src)
    check_unicast_src: bool = False
    #: a master hearing a lower priority stays quiet (default: global vrrp_lower_prio_no_advert)
    lower_prio_no_advert: bool = False
    lvs_sync_daemon_interface: str | None = None
    higher_prio_send_advert: bool | None = None  # garp (issue 10): None = global vrrp_higher_prio_send_advert
    script_users: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)
    positions: Mapping[str, Where] = field(default_factory=dict, compare=False, repr=False)


# --------------------------------------------------------------------------- LVS


@dataclass(frozen=True)
class _CheckerBase:
    where: Where = NOWHERE
    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    delay_loop: float | None = None
    connect_ip: str | None = None
    connect_port: int | None = None
    bindto: str | None = None
    bind_port: int | None = None
    bind_if: str | None = None
    fwmark: int | None = None
    alpha: bool | None = None
    log_all_failures: bool = False
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class TcpCheck(_CheckerBase):
    """``TCP_CHECK { ... }``: a TCP connect to the real server (or connect_ip:port)."""

    kind: str = "TCP_CHECK"


@dataclass(frozen=True)
class HttpUrl:
    """One ``url { ... }`` of HTTP_GET / SSL_GET."""

    where: Where = NOWHERE
    path: str | None = None
    digest: str | None = None
    status_code: tuple[str, ...] = ()
    virtualhost: str | None = None
    regex: str | None = None
    regex_no_match: bool = False
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class HttpCheck(_CheckerBase):
    """``HTTP_GET`` / ``SSL_GET { url { ... } ... }``."""

    kind: str = "HTTP_GET"
    ssl: bool = False
    urls: tuple[HttpUrl, ...] = ()
    virtualhost: str | None = None
    http_protocol: str | None = None
    enable_sni: bool = False
    nb_get_retry: int | None = None


@dataclass(frozen=True)
class MiscCheck(_CheckerBase):
    """``MISC_CHECK { misc_path ... }``: an external script."""

    kind: str = "MISC_CHECK"
    misc_path: tuple[str, ...] = ()
    misc_timeout: float | None = None
    misc_dynamic: bool = False
    user: str | None = None
    group: str | None = None


@dataclass(frozen=True)
class SmtpCheck(_CheckerBase):
    """``SMTP_CHECK { ... }``."""

    kind: str = "SMTP_CHECK"
    helo_name: str | None = None
    hosts: tuple["SmtpCheck", ...] = ()


@dataclass(frozen=True)
class DnsCheck(_CheckerBase):
    """``DNS_CHECK { type ... name ... }``."""

    kind: str = "DNS_CHECK"
    type: str = "SOA"
    name: str = "."


@dataclass(frozen=True)
class UdpCheck(_CheckerBase):
    """``UDP_CHECK { ... }``."""

    kind: str = "UDP_CHECK"
    payload: str | None = None
    require_reply: str | bool | None = None
    min_reply_length: int | None = None
    max_reply_length: int | None = None


@dataclass(frozen=True)
class PingCheck(_CheckerBase):
    """``PING_CHECK { ... }``: ICMP echo."""

    kind: str = "PING_CHECK"


@dataclass(frozen=True)
class FileCheck(_CheckerBase):
    """``FILE_CHECK { track_file NAME ... }``."""

    kind: str = "FILE_CHECK"
    track_file: str | None = None
    weight: int | None = None
    weight_reverse: bool = False
    #: ``dynamic``: the file's value (times weight) becomes the real server's weight
    dynamic: bool = False


@dataclass(frozen=True)
class BfdCheck(_CheckerBase):
    """``BFD_CHECK { name ... }``."""

    kind: str = "BFD_CHECK"
    name: str | None = None
    weight: int | None = None
    weight_reverse: bool = False


Checker = Union[TcpCheck, HttpCheck, MiscCheck, SmtpCheck, DnsCheck, UdpCheck, PingCheck, FileCheck, BfdCheck]


@dataclass(frozen=True)
class RealServer:
    """``real_server ADDR [PORT] { ... }`` (also ``sorry_server``)."""

    address: str
    where: Where = NOWHERE
    port: int | None = None
    weight: int = 1
    inhibit_on_failure: bool | None = None
    notify_up: tuple[str, ...] | None = None
    notify_down: tuple[str, ...] | None = None
    lvs_method: str | None = None
    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    delay_loop: float | None = None
    alpha: bool | None = None
    smtp_alert: bool = False
    virtualhost: str | None = None
    checkers: tuple[Checker, ...] = ()
    script_users: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)
    positions: Mapping[str, Where] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class VirtualServerGroupEntry:
    """One member line of a ``virtual_server_group``: ``ADDR[-END] PORT`` or ``fwmark N``."""

    where: Where = NOWHERE
    address: str | None = None
    range_end: int | None = None
    port: int | None = None
    fwmark: int | None = None


@dataclass(frozen=True)
class VirtualServerGroup:
    """``virtual_server_group NAME { ... }``."""

    name: str
    where: Where = NOWHERE
    members: tuple[VirtualServerGroupEntry, ...] = ()


@dataclass(frozen=True)
class VirtualServer:
    """``virtual_server ADDR PORT | fwmark N | group NAME { ... }``.

    ``protocol_explicit`` records whether ``protocol`` was written: keepalived
    silently falls back when it is not.
    """

    where: Where = NOWHERE
    address: str | None = None
    port: int | None = None
    fwmark: int | None = None
    group: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    protocol_explicit: bool = False
    lb_algo: str = "wlc"
    lb_kind: str = "NAT"
    delay_loop: float = 60.0
    persistence_timeout: int | None = None
    persistence_granularity: str | None = None
    persistence_engine: str | None = None
    virtualhost: str | None = None
    sorry_server: RealServer | None = None
    sorry_server_inhibit: bool = False
    sorry_server_lvs_method: str | None = None
    quorum: int = 1
    hysteresis: int = 0
    quorum_up: tuple[str, ...] | None = None
    quorum_down: tuple[str, ...] | None = None
    alpha: bool = False
    omega: bool = False
    inhibit_on_failure: bool = False
    ha_suspend: bool = False
    ops: bool = False
    smtp_alert: bool | None = None  # None: global_defs smtp_alert_checker / smtp_alert decide
    weight: int = 1
    connect_timeout: float | None = None
    retry: int | None = None
    delay_before_retry: float | None = None
    warmup: float | None = None
    ip_family: str | None = None
    #: scheduler flags: sh-port, sh-fallback, mh-port, mh-fallback, flag-1..3 (IPVS_SVC_F_SCHED1..3)
    sh_port: bool = False
    sh_fallback: bool = False
    mh_port: bool = False
    mh_fallback: bool = False
    flag_1: bool = False
    flag_2: bool = False
    flag_3: bool = False
    real_servers: tuple[RealServer, ...] = ()
    script_users: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)
    positions: Mapping[str, Where] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> str:
        """A human identifier: ``ADDR:PORT``, ``fwmark N`` or ``group NAME``."""
        if self.group is not None:
            return f"group {self.group}"
        if self.fwmark is not None:
            return f"fwmark {self.fwmark}"
        addr = f"[{self.address}]" if self.address and ":" in self.address else self.address
        return f"{addr}:{self.port}" if self.port is not None else str(addr)


# --------------------------------------------------------------------------- other blocks


@dataclass(frozen=True)
class Block:
    """A known block without a typed model (``bfd_instance``, ``garp_group``,
    ``linkbeat_interfaces``, ``interface_up_down_delays``, ``track_group``,
    ``SSL``), kept as a statement tree so nothing is lost."""

    keyword: str
    where: Where = NOWHERE
    args: tuple[str, ...] = ()
    children: tuple["Block", ...] | None = None


# --------------------------------------------------------------------------- top level


@dataclass(frozen=True)
class Config:
    """A whole node's configuration (one main file plus its includes)."""

    where: Where = NOWHERE
    global_defs: GlobalDefs = field(default_factory=GlobalDefs)
    vrrp_scripts: Mapping[str, VrrpScript] = field(default_factory=dict, hash=False)
    track_processes: Mapping[str, TrackProcess] = field(default_factory=dict, hash=False)
    track_files: Mapping[str, TrackFile] = field(default_factory=dict, hash=False)
    sync_groups: Mapping[str, SyncGroup] = field(default_factory=dict, hash=False)
    instances: Mapping[str, VrrpInstance] = field(default_factory=dict, hash=False)
    virtual_server_groups: Mapping[str, VirtualServerGroup] = field(default_factory=dict, hash=False)
    virtual_servers: tuple[VirtualServer, ...] = ()
    static_ipaddresses: tuple[VirtualAddress, ...] = ()
    static_routes: tuple[Route, ...] = ()
    static_rules: tuple[Rule, ...] = ()
    blocks: tuple[Block, ...] = ()
    options: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class LoadResult:
    """What ``load()``/``loads()`` return; never an exception."""

    config: Config | None
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]
