"""Model -> keepalived.conf text.

``render(config)`` writes every typed field that differs from its default and
every uninterpreted ``options`` entry, so that ``loads(render(c)).config``
equals ``c`` apart from positions (``where``).  The output is canonical: one
keyword per line, four-space indentation, no comments.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable

from .model import (
    Config,
    GlobalDefs,
    HttpCheck,
    RealServer,
    TrackRef,
    VirtualAddress,
    VirtualServer,
    VrrpInstance,
)


def quote(word: str) -> str:
    """Quote a word if the lexer would otherwise split or mangle it."""
    if word and not any(c.isspace() or c in "{}#!\"'$\\@~" for c in word):
        return word
    out = word.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{out}"'


def _arg(a: str) -> str:
    # Inner quoting as split_command() reads it back: single quotes, or double if the arg has one.
    if a and not any(c.isspace() or c in "'\"" for c in a):
        return a
    return f'"{a}"' if "'" in a else f"'{a}'"


def _cmd(argv: Iterable[str]) -> str:
    """A command as one word: the whole command quoted when it has several arguments."""
    return quote(" ".join(_arg(a) for a in argv))


def _notify(w: "_W", obj, key: str) -> None:
    argv = getattr(obj, key)
    if argv is not None:
        w.line(key, _cmd(argv), *(quote(u) for u in obj.script_users.get(key, ())))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class _W:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, *words: str) -> None:
        self.lines.append("    " * self.depth + " ".join(words))

    def open(self, *words: str) -> None:
        self.line(*words, "{")
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    def options(self, opts) -> None:
        for key, occurrences in opts.items():
            for args in occurrences:
                self.line(key, *(quote(a) for a in args))


def render(config: Config) -> str:
    """keepalived.conf text for ``config``."""
    w = _W()
    _globals(w, config.global_defs)
    for key, occurrences in config.options.items():
        for args in occurrences:
            w.line(key, *(quote(a) for a in args))
    for b in config.blocks:
        _block(w, b)
    if config.static_ipaddresses:
        w.open("static_ipaddress")
        for a in config.static_ipaddresses:
            _address(w, a)
        w.close()
    for kw, items in (("static_routes", config.static_routes), ("static_rules", config.static_rules)):
        if items:
            w.open(kw)
            for r in items:
                w.line(*(quote(x) for x in r.words))
            w.close()
    for s in config.vrrp_scripts.values():
        w.open("vrrp_script", quote(s.name))
        if s.script:
            w.line("script", _cmd(s.script))
        _if(w, "interval", s.interval, 1.0, _num)
        if s.timeout is not None:
            w.line("timeout", _num(s.timeout))
        if s.weight or s.weight_reverse:
            w.line("weight", str(s.weight), *(["reverse"] if s.weight_reverse else []))
        _if(w, "rise", s.rise, 1, str)
        _if(w, "fall", s.fall, 1, str)
        if s.user:
            w.line("user", quote(s.user), *([quote(s.group)] if s.group else []))
        if s.init_fail:
            w.line("init_fail")
        w.options(s.options)
        w.close()
    for p in config.track_processes.values():
        w.open("vrrp_track_process", quote(p.name))
        if p.process:
            w.line("process", *(quote(x) for x in p.process))
        if p.param_match:
            w.line("param_match", *([] if p.param_match == "exact" else [p.param_match]))
        if p.weight or p.weight_reverse:
            w.line("weight", str(p.weight), *(["reverse"] if p.weight_reverse else []))
        if p.quorum_max != 0:  # quorum_max 0 implies quorum 0
            _if(w, "quorum", p.quorum, 1, str)
        _if(w, "delay", p.delay, 0.0, _num)  # first: it sets both of the delays that follow
        for key in ("quorum_max", "fork_delay", "terminate_delay"):
            if getattr(p, key) is not None:
                w.line(key, _num(getattr(p, key)))
        if p.full_command:
            w.line("full_command")
        w.options(p.options)
        w.close()
    for t in config.track_files.values():
        w.open("track_file", quote(t.name))
        if t.file:
            w.line("file", quote(t.file))
        if t.weight != 1 or t.weight_reverse:
            w.line("weight", str(t.weight), *(["reverse"] if t.weight_reverse else []))
        if t.init_file:
            w.line("init_file", *([str(t.init_file_value)] if t.init_file_value is not None else []),
                   *(["overwrite"] if t.init_file_overwrite else []))
        w.options(t.options)
        w.close()
    for g in config.sync_groups.values():
        w.open("vrrp_sync_group", quote(g.name))
        w.open("group")
        for m in g.group:
            w.line(quote(m))
        w.close()
        for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify"):
            _notify(w, g, key)
        for key in ("smtp_alert", "global_tracking", "sync_group_tracking_weight"):
            if getattr(g, key):
                w.line(key)
        if g.notify_priority_changes is not None:
            w.line("notify_priority_changes", "true" if g.notify_priority_changes else "false")
        _tracks(w, g)
        w.options(g.options)
        w.close()
    for inst in config.instances.values():
        _instance(w, inst, config.global_defs)
    for grp in config.virtual_server_groups.values():
        w.open("virtual_server_group", quote(grp.name))
        for m in grp.members:
            if m.fwmark is not None:
                w.line("fwmark", str(m.fwmark))
            else:
                end = ""
                if m.range_end is not None:
                    end = "-" + (format(m.range_end, "x") if ":" in (m.address or "") else str(m.range_end))
                w.line(f"{m.address}{end}", *([str(m.port)] if m.port is not None else []))
        w.close()
    for vs in config.virtual_servers:
        _virtual_server(w, vs)
    return "\n".join(w.lines) + "\n"


def _block(w: _W, b) -> None:
    if b.children is None:
        w.line(quote(b.keyword), *(quote(a) for a in b.args))
        return
    w.open(quote(b.keyword), *(quote(a) for a in b.args))
    for c in b.children:
        _block(w, c)
    w.close()


def _if(w: _W, key: str, value, default, fmt) -> None:
    if value != default:
        w.line(key, fmt(value))


def _globals(w: _W, g: GlobalDefs) -> None:
    d = GlobalDefs()
    if replace(g, where=d.where) == d:
        return  # all defaults: nothing to write
    w.open("global_defs")
    if g.router_id is not None:
        w.line("router_id", quote(g.router_id))
    for key in ("vmac_prefix", "vmac_addr_prefix"):
        if getattr(g, key) is not None:
            w.line(key, quote(getattr(g, key)))
    if g.vrrp_garp_extra_if is not None:
        w.line("vrrp_garp_extra_if", *(["all"] if g.vrrp_garp_extra_if[0] else []), str(g.vrrp_garp_extra_if[1]))
    _if(w, "vrrp_version", g.vrrp_version, 2, str)
    if g.enable_script_security:
        w.line("enable_script_security")
    if g.script_user:
        w.line("script_user", quote(g.script_user), *([quote(g.script_group)] if g.script_group else []))
    if g.notification_email:
        w.open("notification_email")
        for e in g.notification_email:
            w.line(quote(e))
        w.close()
    for key in ("notification_email_from", "smtp_server"):
        if getattr(g, key) is not None:
            w.line(key, *(quote(x) for x in getattr(g, key).split()))
    for key in ("smtp_connect_timeout", "vrrp_garp_master_delay", "vrrp_garp_master_refresh", "vrrp_startup_delay",
                "vrrp_garp_interval", "vrrp_gna_interval"):
        _if(w, key, getattr(g, key), getattr(d, key), _num)
    for key in ("vrrp_garp_master_repeat", "vrrp_garp_master_refresh_repeat", "vrrp_mcast_group4", "vrrp_mcast_group6"):
        _if(w, key, getattr(g, key), getattr(d, key), str)
    for key in ("vrrp_skip_check_adv_addr", "vrrp_strict", "dynamic_interfaces", "vrrp_check_unicast_src",
                "vrrp_lower_prio_no_advert", "vrrp_notify_priority_changes"):
        if getattr(g, key):
            w.line(key)
    for key in ("vrrp_notify_fifo", "notify_fifo"):
        if getattr(g, key):
            w.line(key, quote(getattr(g, key)))
    for key in ("vrrp_notify_fifo_script", "notify_fifo_script"):
        if getattr(g, key):
            w.line(key, _cmd(getattr(g, key)))
    _mail_and_lifecycle(w, g)
    w.options(g.options)
    w.close()


def _mail_and_lifecycle(w: _W, g: GlobalDefs) -> None:
    s = g.smtp
    if s is not None:
        if s.helo_name is not None:
            w.line("smtp_helo_name", quote(s.helo_name))
        for key, value in (("smtp_alert", s.alert), ("smtp_alert_vrrp", s.alert_vrrp),
                           ("smtp_alert_checker", s.alert_checker)):
            if value is not None:
                w.line(key, "on" if value else "off")
        for key, value in (("no_email_faults", s.no_email_faults), ("no_checker_emails", s.no_checker_emails)):
            if value:
                w.line(key)
    for kind, script in (("startup", g.startup_script), ("shutdown", g.shutdown_script)):
        if script is not None:
            owner = [quote(x) for x in (script.user, script.group) if x]
            w.line(f"{kind}_script", _cmd(script.argv), *owner)
            if script.timeout != 10.0:
                w.line(f"{kind}_script_timeout", _num(script.timeout))


def _address(w: _W, a: VirtualAddress) -> None:
    words = [a.address]
    for key, kw in (("broadcast", "brd"), ("dev", "dev"), ("scope", "scope"), ("label", "label"), ("peer", "peer")):
        if getattr(a, key) is not None:
            words += [kw, quote(getattr(a, key))]
    for key, kw in (("nodad", "-nodad"), ("no_track", "no_track"), ("home", "home"), ("noprefixroute", "noprefixroute")):
        if getattr(a, key):
            words.append(kw)
    if a.use_vmac is not None:
        words += ["use_vmac"] + ([quote(a.use_vmac)] if a.use_vmac else [])
    w.line(*words)


def _refs(w: _W, kw: str, refs: tuple[TrackRef, ...]) -> None:
    if not refs:
        return
    w.open(kw)
    for r in refs:
        extra = ["weight", str(r.weight)] if r.weight is not None else []
        if r.reverse and extra:
            extra.append("reverse")
        w.line(quote(r.name), *extra)
    w.close()


def _tracks(w: _W, obj) -> None:
    _refs(w, "track_script", obj.track_scripts)
    _refs(w, "track_interface", obj.track_interfaces)
    _refs(w, "track_file", obj.track_files)
    _refs(w, "track_process", obj.track_processes)
    if hasattr(obj, "track_bfds"):
        _refs(w, "track_bfd", obj.track_bfds)


def _instance(w: _W, i: VrrpInstance, g: GlobalDefs) -> None:
    d = VrrpInstance(name=i.name)
    w.open("vrrp_instance", quote(i.name))
    _if(w, "state", i.state, d.state, str)
    if i.interface is not None:
        w.line("interface", quote(i.interface))
    if i.virtual_router_id is not None:
        w.line("virtual_router_id", str(i.virtual_router_id))
    w.line("priority", str(i.priority))  # always: its default depends on state
    _if(w, "advert_int", i.advert_int, d.advert_int, _num)
    if i.version != (3 if i.family == 6 else g.vrrp_version):
        w.line("version", str(i.version))
    for key in ("native_ipv6", "nopreempt", "vmac_xmit_base", "dont_track_primary", "strict_mode",
                "skip_check_adv_addr", "smtp_alert"):
        if getattr(i, key):
            w.line(key)
    if not i.strict_mode and "strict_mode" in i.positions:
        w.line("strict_mode", "off")  # it says so against a global vrrp_strict
    if i.higher_prio_send_advert is not None:
        w.line("higher_prio_send_advert", "on" if i.higher_prio_send_advert else "off")
    _if(w, "preempt_delay", i.preempt_delay, 0.0, _num)
    for key in ("unicast_src_ip", "mcast_src_ip", "lvs_sync_daemon_interface"):
        if getattr(i, key) is not None:
            w.line(key, getattr(i, key))
    for key in ("garp_master_delay", "garp_master_refresh"):
        _if(w, key, getattr(i, key), getattr(g, "vrrp_" + key), _num)
    for key in ("garp_master_repeat", "garp_master_refresh_repeat"):
        _if(w, key, getattr(i, key), getattr(g, "vrrp_" + key), str)
    for key in ("garp_lower_prio_delay", "garp_lower_prio_repeat"):
        if getattr(i, key) is not None:
            w.line(key, _num(getattr(i, key)))
    _if(w, "down_timer_adverts", i.down_timer_adverts, 3, str)
    for key in ("check_unicast_src", "lower_prio_no_advert"):  # written where they differ from the global default
        _if(w, key, getattr(i, key), getattr(g, "vrrp_" + key), lambda on: "on" if on else "off")
    if i.vmac is not None and i.vmac.kind == "ipvlan":
        w.line("use_ipvlan", *(quote(x) for x in (i.vmac.name, i.vmac.address, i.vmac.mode) if x))
    elif i.vmac is not None:  # the name as written (a default one is derived again)
        w.line("use_vmac", *(quote(x) for x in (i.use_vmac, i.vmac.mac) if x))
    if i.use_vmac_addr:
        w.line("use_vmac_addr")
    if i.garp_extra_if is not None:
        w.line("garp_extra_if", *(["all"] if i.garp_extra_if[0] else []), str(i.garp_extra_if[1]))
    if i.accept is not None:
        w.line("accept" if i.accept else "no_accept")
    if i.auth_type or i.auth_pass is not None:
        w.open("authentication")
        if i.auth_type:
            w.line("auth_type", i.auth_type)
        if i.auth_pass is not None:
            w.line("auth_pass", quote(i.auth_pass))
        w.close()
    for kw, addrs in (("virtual_ipaddress", i.virtual_ipaddresses),
                      ("virtual_ipaddress_excluded", i.virtual_ipaddresses_excluded)):
        if addrs:
            w.open(kw)
            for a in addrs:
                _address(w, a)
            w.close()
    for kw, items in (("virtual_routes", i.virtual_routes), ("virtual_rules", i.virtual_rules)):
        if items:
            w.open(kw)
            for r in items:
                w.line(*(quote(x) for x in r.words))
            w.close()
    if i.unicast_peers:
        w.open("unicast_peer")
        for p in i.unicast_peers:
            ttl = [x for k in ("min_ttl", "max_ttl") if getattr(p, k) is not None for x in (k, str(getattr(p, k)))]
            w.line(p.address, *ttl)
        w.close()
    _tracks(w, i)
    for key in ("notify_master", "notify_backup", "notify_fault", "notify_stop", "notify", "notify_master_rx_lower_pri"):
        _notify(w, i, key)
    if i.notify_deleted is not None:
        _notify(w, i, "notify_deleted") if i.notify_deleted else w.line("notify_deleted")
    if i.notify_priority_changes is not None:
        w.line("notify_priority_changes", "true" if i.notify_priority_changes else "false")
    if i.mcast_dst_ip is not None:
        w.line("mcast_dst_ip", i.mcast_dst_ip)
    if i.unicast_ttl is not None:
        w.line("unicast_ttl", str(i.unicast_ttl))
    if i.unicast_fault_no_peer:
        w.line("unicast_fault_no_peer")
    w.options(i.options)
    w.close()


def _timing(w: _W, obj, defaults: dict) -> None:
    for key in ("connect_timeout", "delay_before_retry", "warmup", "delay_loop"):
        v = getattr(obj, key, None)
        if v is not None and v != defaults.get(key):
            w.line(key, _num(v))
    if getattr(obj, "retry", None) is not None:
        w.line("retry", str(obj.retry))


def _virtual_server(w: _W, vs: VirtualServer) -> None:
    d = VirtualServer()
    if vs.group is not None:
        head = ["group", quote(vs.group)]
    elif vs.fwmark is not None:
        head = ["fwmark", str(vs.fwmark)]
    else:
        head = [vs.address or "0.0.0.0", *([str(vs.port)] if vs.port is not None else [])]
    w.open("virtual_server", *head)
    _if(w, "delay_loop", vs.delay_loop, d.delay_loop, _num)
    _if(w, "lb_algo", vs.lb_algo, d.lb_algo, str)
    _if(w, "lb_kind", vs.lb_kind, d.lb_kind, str)
    if vs.protocol_explicit:
        w.line("protocol", vs.protocol)
    if vs.persistence_timeout is not None:
        w.line("persistence_timeout", str(vs.persistence_timeout))
    for key in ("persistence_granularity", "persistence_engine", "virtualhost", "ip_family", "sorry_server_lvs_method"):
        if getattr(vs, key) is not None:
            w.line(key, quote(getattr(vs, key)))
    _if(w, "quorum", vs.quorum, 1, str)
    _if(w, "hysteresis", vs.hysteresis, 0, str)
    for key in ("quorum_up", "quorum_down"):
        _notify(w, vs, key)
    if vs.smtp_alert is not None:
        w.line("smtp_alert", "on" if vs.smtp_alert else "off")
    for key in ("alpha", "omega", "inhibit_on_failure", "ha_suspend", "ops", "sorry_server_inhibit"):
        if getattr(vs, key):
            w.line(key)
    _if(w, "weight", vs.weight, 1, str)
    _timing(w, vs, {"delay_loop": vs.delay_loop})
    if vs.sorry_server is not None:
        w.line("sorry_server", vs.sorry_server.address,
               *([str(vs.sorry_server.port)] if vs.sorry_server.port is not None else []))
    w.options(vs.options)
    for rs in vs.real_servers:
        _real_server(w, rs)
    w.close()


def _real_server(w: _W, rs: RealServer) -> None:
    w.open("real_server", rs.address, *([str(rs.port)] if rs.port is not None else []))
    w.line("weight", str(rs.weight))
    if rs.inhibit_on_failure is not None:
        w.line("inhibit_on_failure", "on" if rs.inhibit_on_failure else "off")
    if rs.alpha is not None:
        w.line("alpha", "on" if rs.alpha else "off")
    if rs.smtp_alert:
        w.line("smtp_alert")
    for key in ("notify_up", "notify_down"):
        _notify(w, rs, key)
    for key in ("lvs_method", "virtualhost"):
        if getattr(rs, key) is not None:
            w.line(key, quote(getattr(rs, key)))
    _timing(w, rs, {})
    w.options(rs.options)
    for c in rs.checkers:
        _checker(w, c)
    w.close()


def _checker(w: _W, c) -> None:
    w.open(c.kind)
    _timing(w, c, {})
    for key in ("connect_ip", "bindto", "bind_if"):
        if getattr(c, key) is not None:
            w.line(key, quote(getattr(c, key)))
    for key in ("connect_port", "bind_port", "fwmark"):
        if getattr(c, key) is not None:
            w.line(key, str(getattr(c, key)))
    if c.alpha is not None:
        w.line("alpha", "on" if c.alpha else "off")
    if c.log_all_failures:
        w.line("log_all_failures")
    if isinstance(c, HttpCheck):
        for key in ("virtualhost", "http_protocol"):
            if getattr(c, key) is not None:
                w.line(key, quote(getattr(c, key)))
        if c.enable_sni:
            w.line("enable_sni")
        for u in c.urls:
            w.open("url")
            for key in ("path", "digest", "virtualhost", "regex"):
                if getattr(u, key) is not None:
                    w.line(key, quote(getattr(u, key)))
            if u.status_code:
                w.line("status_code", *u.status_code)
            if u.regex_no_match:
                w.line("regex_no_match")
            w.options(u.options)
            w.close()
    kind = c.kind
    if kind == "MISC_CHECK":
        if c.misc_path:
            w.line("misc_path", _cmd(c.misc_path))
        if c.misc_timeout is not None:
            w.line("misc_timeout", _num(c.misc_timeout))
        if c.misc_dynamic:
            w.line("misc_dynamic")
        if c.user:
            w.line("user", quote(c.user), *([quote(c.group)] if c.group else []))
    elif kind == "SMTP_CHECK":
        if c.helo_name:
            w.line("helo_name", quote(c.helo_name))
        for h in c.hosts:
            w.open("host")
            _timing(w, h, {})
            for key in ("connect_ip", "bindto"):
                if getattr(h, key) is not None:
                    w.line(key, getattr(h, key))
            if h.connect_port is not None:
                w.line("connect_port", str(h.connect_port))
            w.close()
    elif kind == "DNS_CHECK":
        _if(w, "type", c.type, "SOA", str)
        _if(w, "name", c.name, ".", quote)
    elif kind == "UDP_CHECK":
        if c.payload is not None:
            w.line("payload", quote(c.payload))
        if c.require_reply is not None:
            w.line("require_reply", *([] if c.require_reply is True else [quote(str(c.require_reply))]))
        for key in ("min_reply_length", "max_reply_length"):
            if getattr(c, key) is not None:
                w.line(key, str(getattr(c, key)))
    elif kind in ("FILE_CHECK", "BFD_CHECK"):
        key = "track_file" if kind == "FILE_CHECK" else "name"
        if getattr(c, key):
            w.line(key, quote(getattr(c, key)))
        if c.weight is not None:
            w.line("weight", str(c.weight), *(["reverse"] if c.weight_reverse else []))
    w.options(c.options)
    w.close()
