"""``global_defs { ... }`` -> :class:`~chimeha.config.model.GlobalDefs` (and the option bag helpers).

Split from :mod:`chimeha.config.build` to keep modules small; the same rules:
typed keywords are set through ``setters``, known untyped ones are kept in
``options``, unknown ones are warned about.
"""

from __future__ import annotations

from typing import Callable

from . import keywords as K
from ..snmp.agentx import parse_address as agentx_address
from .model import GlobalDefs, LvsSyncDaemon
from .model_notify import LifecycleScript, SmtpSettings
from .parser import Stmt
from .build_vrrpx import global_group
from .values import Ctx, valid_ip

Opts = dict[str, list[tuple[str, ...]]]


def add_option(opts: Opts, st: Stmt) -> None:
    """Keep a known keyword without a typed field in the node's ``options``."""
    opts.setdefault(st.name, []).append(st.words())


def freeze_options(opts: Opts) -> dict[str, tuple[tuple[str, ...], ...]]:
    return {k: tuple(v) for k, v in opts.items()}


# --------------------------------------------------------------------------- global_defs


def _dynamic_interfaces(s: Stmt, ctx: Ctx) -> bool:
    """keepalived 2.2.7: ``dynamic_interfaces [allow_if_changes]``; any other word is reported and ignored."""
    # chime-ha always follows a re-created interface (allow_if_changes is its behaviour).
    if s.args and s.args[0].text != "allow_if_changes":
        ctx.warning(s.where, "invalid-value", f"unknown dynamic_interfaces option '{s.args[0].text}' "
                    "(keepalived knows only allow_if_changes); ignored")
    return True


def _garp_extra(s: Stmt, ctx: Ctx):
    from .build_vmac import garp_extra_if  # build_vmac imports nothing of this module

    return garp_extra_if(s, ctx)


def _vmac_prefix(s: Stmt, ctx: Ctx) -> str | None:
    """A prefix that makes invalid interface names is refused (keepalived would fail to create the link).

    A long one is cut to fit, as keepalived's create_vmac_name does.
    """
    word = ctx.word(s)
    if word is not None and any(c in "/:" or c.isspace() for c in word):
        ctx.error(s.where, "invalid-value", f"{s.name} '{word}' cannot start an interface name (no '/', ':' or "
                  "white space)")
        return None
    return word


def build_global_defs(stmts: list[Stmt], ctx: Ctx) -> GlobalDefs:
    if not stmts:
        return GlobalDefs()
    f: dict = {"where": stmts[0].where}
    opts: Opts = {}
    setters: dict[str, Callable[[Stmt], None]] = {
        "router_id": lambda s: f.__setitem__("router_id", ctx.word(s)),
        "vmac_prefix": lambda s: f.__setitem__("vmac_prefix", _vmac_prefix(s, ctx)),
        "vrrp_garp_extra_if": lambda s: f.__setitem__("vrrp_garp_extra_if", _garp_extra(s, ctx)),
        "vrrp_vmac_garp_intvl": lambda s: f.__setitem__("vrrp_garp_extra_if", _garp_extra(s, ctx)),
        "vmac_addr_prefix": lambda s: f.__setitem__("vmac_addr_prefix", _vmac_prefix(s, ctx)),
        "vrrp_version": lambda s: f.__setitem__("vrrp_version", ctx.int_arg(s, 2, 3, what="vrrp_version")),
        "enable_script_security": lambda s: f.__setitem__("enable_script_security", ctx.bool_arg(s)),
        "notification_email_from": lambda s: f.__setitem__("notification_email_from", ctx.word(s)),
        "smtp_server": lambda s: f.__setitem__("smtp_server", _smtp_server(s, ctx)),
        "smtp_connect_timeout": lambda s: f.__setitem__("smtp_connect_timeout", _smtp_timeout(s, ctx)),
        "vrrp_mcast_group4": lambda s: f.__setitem__("vrrp_mcast_group4", global_group(ctx, s.where, s.name, ctx.ip_arg(s))),
        "vrrp_mcast_group6": lambda s: f.__setitem__("vrrp_mcast_group6", global_group(ctx, s.where, s.name, ctx.ip_arg(s))),
        "vrrp_notify_priority_changes": lambda s: f.__setitem__("vrrp_notify_priority_changes", ctx.bool_arg(s)),
        "vrrp_garp_master_delay": lambda s: f.__setitem__("vrrp_garp_master_delay", ctx.float_arg(s, 0, 255)),
        "vrrp_garp_master_repeat": lambda s: f.__setitem__("vrrp_garp_master_repeat", ctx.int_arg(s, 0)),
        "vrrp_garp_master_refresh": lambda s: f.__setitem__("vrrp_garp_master_refresh", ctx.float_arg(s, 0)),
        "vrrp_garp_master_refresh_repeat": lambda s: f.__setitem__("vrrp_garp_master_refresh_repeat", ctx.int_arg(s, 0)),
        "vrrp_skip_check_adv_addr": lambda s: f.__setitem__("vrrp_skip_check_adv_addr", ctx.bool_arg(s)),
        "vrrp_strict": lambda s: f.__setitem__("vrrp_strict", ctx.bool_arg(s)),
        "vrrp_startup_delay": lambda s: f.__setitem__("vrrp_startup_delay", ctx.float_arg(s, 0)),
        "dynamic_interfaces": lambda s: f.__setitem__("dynamic_interfaces", _dynamic_interfaces(s, ctx)),
        # keepalived 2.2.7: 0.000001..4294.967295 s; 0 (its own sample config) is reported and ignored.
        "vrrp_garp_interval": lambda s: f.__setitem__("vrrp_garp_interval", ctx.float_arg(
            s, 0.000001, 4294.967295, what="vrrp_garp_interval", soft=True)),
        "vrrp_gna_interval": lambda s: f.__setitem__("vrrp_gna_interval", ctx.float_arg(
            s, 0.000001, 4294.967295, what="vrrp_gna_interval", soft=True)),
        # garp (issue 10 item 2)
        "vrrp_garp_lower_prio_delay": lambda s: f.__setitem__("vrrp_garp_lower_prio_delay", ctx.float_arg(s, 0)),
        "vrrp_garp_lower_prio_repeat": lambda s: f.__setitem__("vrrp_garp_lower_prio_repeat", ctx.int_arg(s, 0)),
        "vrrp_higher_prio_send_advert": lambda s: f.__setitem__("vrrp_higher_prio_send_advert", ctx.bool_arg(s)),
    }

    def snmp(*fields: str) -> Callable[[Stmt], None]:
        def set_flags(s: Stmt) -> None:
            on = ctx.bool_arg(s) if s.args else True
            for name in fields:
                f[name] = on
        return set_flags

    setters["enable_snmp_vrrp"] = setters["enable_snmp_keepalived"] = snmp("enable_snmp_vrrp")
    setters["enable_snmp_checker"] = snmp("enable_snmp_checker")
    setters["enable_snmp_rfcv2"] = snmp("enable_snmp_rfcv2")
    setters["enable_snmp_rfcv3"] = snmp("enable_snmp_rfcv3")
    setters["enable_snmp_rfc"] = snmp("enable_snmp_rfcv2", "enable_snmp_rfcv3")
    def snmp_socket(s: Stmt) -> None:
        word = ctx.word(s)
        try:
            agentx_address(word)
        except ValueError as exc:  # a warning: keepalived would start, only SNMP is lost
            ctx.warning(s.where, "invalid-snmp-socket", f"snmp_socket: {exc}; the SNMP subagent will not start")
        f["snmp_socket"] = word

    setters["snmp_socket"] = snmp_socket

    def script_user(s: Stmt) -> None:
        f["script_user"] = ctx.word(s)
        if len(s.args) > 1:
            f["script_group"] = s.args[1].text

    def email(s: Stmt) -> None:
        f["notification_email"] = tuple(f.get("notification_email", ())) + tuple(
            w for c in ctx.block(s) for w in (c.name, *c.words()))

    def fifo(s: Stmt) -> None:
        # ``notify_fifo FILE [username [groupname]]``: the owner words are read, not applied.
        f[s.name] = ctx.word(s)
        if len(s.args) > 1:
            ctx.warning(s.where, "not-implemented", f"'{s.name}': the FIFO owner ({' '.join(s.words()[1:])}) is "
                        "not implemented in chime-ha: the FIFO is created root-owned, mode 0600")

    setters["script_user"] = script_user
    setters["notification_email"] = email
    for key in ("vrrp_notify_fifo", "notify_fifo"):
        setters[key] = fifo
    for key in ("vrrp_notify_fifo_script", "notify_fifo_script"):
        setters[key] = lambda s: f.__setitem__(s.name, ctx.notify_arg(s, {}))
    for key in ("vrrp_check_unicast_src", "vrrp_lower_prio_no_advert"):
        setters[key] = lambda s: f.__setitem__(s.name, ctx.bool_arg(s))
    setters["lvs_sync_daemon"] = lambda s: f.__setitem__("lvs_sync_daemon", _lvs_sync_daemon(s, ctx))
    smtp: dict = {}
    life: dict = {}
    setters["smtp_helo_name"] = lambda s: smtp.__setitem__("helo_name", ctx.word(s))
    for key, name in (("smtp_alert", "alert"), ("smtp_alert_vrrp", "alert_vrrp"),
                      ("smtp_alert_checker", "alert_checker"), ("no_email_faults", "no_email_faults"),
                      ("no_checker_emails", "no_checker_emails")):
        setters[key] = lambda s, n=name: smtp.__setitem__(n, ctx.bool_arg(s))
    for kind in ("startup", "shutdown"):
        setters[f"{kind}_script"] = lambda s, k=kind: _lifecycle_script(s, ctx, life, k)
        # keepalived 2.2.7: 1..1000 s, anything else is reported and ignored
        setters[f"{kind}_script_timeout"] = lambda s, k=kind: life.__setitem__(f"{k}_timeout", ctx.int_arg(
            s, 1, 1000, what=s.name, soft=True))
    positions = {}
    for gst in stmts:
        for st in ctx.block(gst):
            positions.setdefault(st.name, st.where)
            if st.name in setters:
                setters[st.name](st)
            elif st.name in K.GLOBAL_DEFS:
                add_option(opts, st)
            else:
                ctx.unknown(st, K.GLOBAL_DEFS | set(setters), "global_defs")
    if smtp:
        f["smtp"] = SmtpSettings(**{k: v for k, v in smtp.items() if v is not None})
    for kind in ("startup", "shutdown"):
        script = life.get(kind)
        if script is not None:
            timeout = life.get(f"{kind}_timeout")
            f[f"{kind}_script"] = LifecycleScript(script[0], float(timeout or 10), *script[1], where=script[2])
    f = {k: v for k, v in f.items() if v is not None}
    if f.get("vrrp_notify_fifo") and f.get("vrrp_notify_fifo") == f.get("notify_fifo"):
        ctx.warning(positions["notify_fifo"], "same-fifo", f"notify_fifo and vrrp_notify_fifo are both "
                    f"{f['notify_fifo']}: every VRRP event would be written to it twice")
    return GlobalDefs(**f, options=freeze_options(opts), positions=positions)


def _lifecycle_script(st: Stmt, ctx: Ctx, life: dict, kind: str) -> None:
    """``startup_script|shutdown_script COMMAND [username [groupname]]``; a second one is refused (keepalived)."""
    if kind in life:
        ctx.warning(st.where, "duplicate-script", f"{kind} script already specified; this one is ignored "
                    "(as keepalived)")
        return
    users: dict = {}
    argv = ctx.notify_arg(st, users)
    if argv is not None:
        owner = users.get(st.name, ())
        life[kind] = (argv, (owner[0] if owner else None, owner[1] if len(owner) > 1 else None), st.where)


def _smtp_server(st: Stmt, ctx: Ctx) -> str | None:
    """``smtp_server HOST [PORT]`` (port 25 by default), kept as "HOST PORT"."""
    if not ctx.need(st, 1, "a host"):
        return None
    port = st.args[1].text if len(st.args) > 1 else "25"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        ctx.warning(st.where, "out-of-range", f"smtp_server port '{port}' must be 1..65535; no mail will be "
                    "sent (keepalived reports it and ignores the server)")
        return None
    return f"{st.args[0].text} {int(port)}"


def _smtp_timeout(st: Stmt, ctx: Ctx) -> float | None:
    """keepalived 2.2.7: whole seconds; 0 is reported and taken as 1."""
    v = ctx.int_arg(st, 0, 2**32 // 1000000, what="smtp_connect_timeout", soft=True)
    if v == 0:
        ctx.warning(st.where, "out-of-range", "smtp_connect_timeout must be greater than 0; using 1 (as keepalived)")
        v = 1
    return None if v is None else float(v)


def _lvs_sync_daemon(st: Stmt, ctx: Ctx) -> LvsSyncDaemon | None:
    """keepalived's ``lvs_sync_daemon INTERFACE [VRRP_INSTANCE] [id N] [maxlen N] [port N] [ttl N] [group IP]``."""
    if not ctx.need(st, 1, "an interface"):
        return None
    words = [a.text for a in st.args]
    f: dict = {"interface": words[0], "where": st.where}
    ranges = {"id": ("sync_id", 0, 255), "maxlen": ("maxlen", 1, 65507), "port": ("port", 1, 65535),
              "ttl": ("ttl", 1, 255)}
    i = 1
    if i < len(words) and words[i] not in ranges and words[i] != "group":
        f["instance"] = words[i]
        i += 1
    while i < len(words):
        opt = words[i]
        if i + 1 >= len(words) or (opt not in ranges and opt != "group"):
            ctx.error(st.where, "bad-argument", f"lvs_sync_daemon: unexpected '{opt}' (expected id, maxlen, "
                      "port, ttl or group followed by a value)")
            return None
        val = words[i + 1]
        if opt == "group":
            if not valid_ip(val):
                ctx.error(st.where, "bad-argument", f"lvs_sync_daemon group '{val}' is not an IP address")
                return None
            f["group"] = val
        else:
            name, lo, hi = ranges[opt]
            if not val.isdigit() or not lo <= int(val) <= hi:
                ctx.error(st.where, "bad-argument", f"lvs_sync_daemon {opt} '{val}' must be {lo}..{hi}")
                return None
            if name == "port":
                f[name] = int(val)
            else:  # IPVS sync-protocol details with no conntrackd counterpart
                ctx.warning(st.where, "not-implemented", f"'lvs_sync_daemon {opt}' is not implemented in "
                            "chime-ha: conntrackd (which replicates connections for the nft data plane) has "
                            "no such setting; ignored")
        i += 2
    return LvsSyncDaemon(**f)


