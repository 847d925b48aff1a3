"""Statement tree -> typed model for the LVS part: virtual servers, groups, checkers.

The one deliberate difference from keepalived lives here: a ``weight`` line
with no number inside a ``real_server`` is a *warning* and the real server
takes the virtual server's ``weight`` (default 1); keepalived 2.2.7 exits on
it, which takes the whole daemon (VRRP included) down.
"""

from __future__ import annotations

from . import keywords as K
from .model import (
    BfdCheck,
    DnsCheck,
    FileCheck,
    HttpCheck,
    HttpUrl,
    MiscCheck,
    PingCheck,
    RealServer,
    SmtpCheck,
    TcpCheck,
    UdpCheck,
    VirtualServer,
    VirtualServerGroup,
    VirtualServerGroupEntry,
)
from .parser import Stmt
from .values import Ctx, valid_ip

from chimeha.lvs.catalog import ALGORITHMS as LB_ALGOS  # noqa: E402  (one declaration per scheduler)
from chimeha.lvs.types import LB_KINDS  # noqa: E402  (one declaration of the forwarding methods)

_CHECKERS = {
    "TCP_CHECK": TcpCheck, "HTTP_GET": HttpCheck, "SSL_GET": HttpCheck, "MISC_CHECK": MiscCheck,
    "SMTP_CHECK": SmtpCheck, "DNS_CHECK": DnsCheck, "UDP_CHECK": UdpCheck, "PING_CHECK": PingCheck,
    "FILE_CHECK": FileCheck, "BFD_CHECK": BfdCheck,
}


def _opt(opts: dict, st: Stmt) -> None:
    opts.setdefault(st.name, []).append(st.words())


def _freeze(opts: dict) -> dict:
    return {k: tuple(v) for k, v in opts.items()}


def _port(ctx: Ctx, st: Stmt, i: int) -> int | None:
    if len(st.args) <= i:
        return None
    try:
        p = int(st.args[i].text)
    except ValueError:
        ctx.error(st.where, "invalid-port", f"'{st.args[i].text}' is not a port number")
        return None
    if not 0 <= p <= 65535:
        ctx.error(st.where, "invalid-port", f"port {p} is out of range (0..65535)")
        return None
    return p


def _timing(ctx: Ctx, s: Stmt, f: dict, known: frozenset) -> bool:
    """Timing keywords shared by virtual servers, real servers and checkers (those ``known`` there)."""
    n = s.name
    if n not in known:
        return False
    if n == "connect_timeout":
        # keepalived 2.2.7: 1 us .. 4294.967295 s (UINT_MAX us); outside that it is reported and ignored.
        f[n] = ctx.float_arg(s, 0.000001, 4294.967295, what=n, soft=True)
    elif n == "delay_loop":
        f[n] = ctx.float_arg(s, 0.000001, what=n, soft=True)
    elif n in ("delay_before_retry", "warmup"):
        f[n] = ctx.float_arg(s, 0, what=n)
    elif n in ("retry", "nb_get_retry"):
        if n == "nb_get_retry":
            # Only HTTP_GET/SSL_GET know it in 2.2.7 (elsewhere it is unknown), as a deprecated synonym.
            ctx.warning(s.where, "deprecated", "nb_get_retry is deprecated; use 'retry'")
        f["retry"] = ctx.int_arg(s, 0, what=n)
    else:
        return False
    return True


# --------------------------------------------------------------------------- virtual_server


def build_virtual_server(st: Stmt, ctx: Ctx) -> VirtualServer | None:
    """``virtual_server ADDR PORT | fwmark N | group NAME { ... }``."""
    if not ctx.need(st, 1, "an address, 'fwmark N' or 'group NAME'"):
        ctx.block(st)
        return None
    f: dict = {"where": st.where}
    head = st.args[0].text
    if head == "fwmark":
        f["fwmark"] = ctx.int_arg(st, 1, 2**32 - 1, i=1, what="fwmark")
        if f["fwmark"] is None:
            return None
    elif head == "group":
        if not ctx.need(st, 2, "a group name"):
            return None
        f["group"] = st.args[1].text
    else:
        ip = valid_ip(head.strip("[]"))
        if ip is None:
            ctx.error(st.where, "invalid-address", f"virtual_server address '{head}' is not an IP address")
            return None
        f["address"] = str(ip)
        f["port"] = _port(ctx, st, 1)
        if len(st.args) < 2:
            ctx.error(st.where, "missing-parameter", f"virtual_server {head} is missing its port")
    opts: dict = {}
    positions = {}
    users: dict = {}
    pending_rs: list[Stmt] = []
    sorry: Stmt | None = None
    for s in ctx.block(st):
        n = s.name
        positions.setdefault(n, s.where)
        if _timing(ctx, s, f, K.VIRTUAL_SERVER):
            continue
        if n in ("lb_algo", "lvs_sched"):
            f["lb_algo"] = ctx.choice(s, LB_ALGOS)
        elif n in ("lb_kind", "lvs_method"):
            f["lb_kind"] = ctx.choice(s, LB_KINDS)
        elif n == "protocol":
            f["protocol"] = ctx.choice(s, ("TCP", "UDP", "SCTP"), upper=True)
            f["protocol_explicit"] = f["protocol"] is not None
        elif n == "persistence_timeout":
            # A bare persistence_timeout means keepalived's default of 360 s.
            # keepalived 2.2.7 accepts 1..2678400 (31 days); 0 is reported and ignored (no persistence).
            f["persistence_timeout"] = (ctx.int_arg(s, 1, 2678400, what="persistence_timeout", soft=True)
                                        if s.args else 360)
        elif n in ("persistence_granularity", "persistence_engine", "virtualhost", "ip_family"):
            f[n] = ctx.word(s)
        elif n in ("quorum", "hysteresis"):
            f[n] = ctx.int_arg(s, 0 if n == "hysteresis" else 1, what=n)
        elif n in ("quorum_up", "quorum_down"):
            f[n] = ctx.notify_arg(s, users)
        elif n in ("alpha", "omega", "inhibit_on_failure", "ha_suspend", "ops", "sorry_server_inhibit", "smtp_alert"):
            f[n] = ctx.bool_arg(s)
        elif n == "sorry_server_lvs_method":
            f[n] = ctx.choice(s, LB_KINDS)
        elif n == "weight":
            # The default weight of this virtual server's real servers (keepalived has it since 1.3.7).
            f["weight"] = ctx.int_arg(s, 0, 2**31 - 1, what="weight")
        elif n in ("sh-port", "sh-fallback", "mh-port", "mh-fallback", "flag-1", "flag-2", "flag-3"):
            f[n.replace("-", "_")] = True
        elif n == "real_server":
            pending_rs.append(s)
        elif n == "sorry_server":
            sorry = s
        elif n in K.VIRTUAL_SERVER:
            _opt(opts, s)
        else:
            ctx.unknown(s, K.VIRTUAL_SERVER, f"virtual_server {head}")
    # flag-3 is declared not-implemented (capabilities); a flag for another scheduler is
    # accepted but unused here, so say so (a code of its own: the keyword itself acts).
    for n in ("sh-port", "sh-fallback", "mh-port", "mh-fallback", "flag-1", "flag-2"):
        algo = f.get("lb_algo") or "wlc"
        if n in positions and ((n[:2] in ("sh", "mh") and n[:2] != algo)
                               or (n.startswith("flag") and algo not in ("sh", "mh"))):
            ctx.warning(positions[n], "scheduler-flag-unused", f"'{n}' has no effect here: lb_algo is {algo}")
    if not f.get("protocol_explicit") and f.get("fwmark") is None:
        f["protocol"] = "UDP"  # what keepalived silently does; validate() warns about it
    default_weight = f.get("weight") if f.get("weight") is not None else 1
    rss = []
    for s in pending_rs:
        rs = _real_server(s, ctx, default_weight)
        if rs is not None:
            rss.append(rs)
    f["real_servers"] = tuple(rss)
    if sorry is not None and ctx.need(sorry, 1, "an address"):
        ip = valid_ip(sorry.args[0].text)
        if ip is None:
            ctx.error(sorry.where, "invalid-address", f"sorry_server address '{sorry.args[0].text}' is not an IP address")
        else:
            f["sorry_server"] = RealServer(str(ip), sorry.where, _port(ctx, sorry, 1), default_weight)
    return VirtualServer(**{k: v for k, v in f.items() if v is not None}, options=_freeze(opts), positions=positions,
                         script_users=users)


def _real_server(st: Stmt, ctx: Ctx, default_weight: int) -> RealServer | None:
    if not ctx.need(st, 1, "an address"):
        return None
    ip = valid_ip(st.args[0].text)
    if ip is None:
        ctx.error(st.where, "invalid-address", f"real_server address '{st.args[0].text}' is not an IP address")
        return None
    f: dict = {"address": str(ip), "where": st.where, "port": _port(ctx, st, 1), "weight": default_weight}
    opts: dict = {}
    positions = {}
    users: dict = {}
    checkers = []
    body = st.block if st.block is not None else []
    for s in body:
        n = s.name
        positions.setdefault(n, s.where)
        if _timing(ctx, s, f, K.REAL_SERVER):
            continue
        if n == "weight":
            if not s.args:
                ctx.warning(s.where, "bare-weight",
                            f"'weight' without a value in real_server {st.args[0].text}: using the virtual "
                            f"server's weight ({default_weight}); keepalived 2.2.7 refuses to start on this line")
            else:
                w = ctx.int_arg(s, 0, 2**31 - 1, what="weight")
                if w is not None:
                    f["weight"] = w
        elif n in ("inhibit_on_failure", "alpha", "smtp_alert"):
            f[n] = ctx.bool_arg(s)
        elif n in ("notify_up", "notify_down"):
            f[n] = ctx.notify_arg(s, users)
        elif n == "lvs_method":
            f[n] = ctx.choice(s, LB_KINDS)
        elif n == "virtualhost":
            f[n] = ctx.word(s)
        elif n in _CHECKERS:
            c = _checker(s, ctx)
            if c is not None:
                checkers.append(c)
        elif n in K.REAL_SERVER:
            _opt(opts, s)
        else:
            ctx.unknown(s, K.REAL_SERVER | set(_CHECKERS), f"real_server {st.args[0].text}")
    f["checkers"] = tuple(checkers)
    return RealServer(**{k: v for k, v in f.items() if v is not None}, options=_freeze(opts), positions=positions,
                      script_users=users)


# --------------------------------------------------------------------------- checkers


def _checker(st: Stmt, ctx: Ctx, known: frozenset | None = None):
    kind = st.name
    cls = _CHECKERS[kind]
    f: dict = {"where": st.where, "kind": kind}
    if kind == "SSL_GET":
        f["ssl"] = True
    opts: dict = {}
    context = kind if known is None else f"{kind} host"
    known = K.CHECKER_KEYWORDS[kind] if known is None else known
    urls = []
    body = st.block if st.block is not None else ctx.block(st)
    for s in body:
        n = s.name
        if n not in known:
            ctx.unknown(s, known, context)
            continue
        if _timing(ctx, s, f, known):
            continue
        if n == "connect_ip" or n == "bindto":
            f[n] = ctx.ip_arg(s)
        elif n in ("connect_port", "bind_port"):
            if ctx.need(s):
                f[n] = _port(ctx, s, 0)
        elif n == "bind_if":
            f[n] = ctx.word(s)
        elif n == "fwmark":
            f[n] = ctx.int_arg(s, 0, 2**32 - 1, what="fwmark")
        elif n in ("alpha", "log_all_failures"):
            f[n] = ctx.bool_arg(s)
        elif kind in ("HTTP_GET", "SSL_GET") and n == "url":
            urls.append(_url(s, ctx))
        elif kind in ("HTTP_GET", "SSL_GET") and n in ("virtualhost", "http_protocol"):
            f[n] = ctx.word(s)
        elif kind in ("HTTP_GET", "SSL_GET") and n == "enable_sni":
            f[n] = ctx.bool_arg(s)
        elif kind == "MISC_CHECK" and n == "misc_path":
            f[n] = ctx.script_arg(s)
        elif kind == "MISC_CHECK" and n == "misc_timeout":
            f[n] = ctx.float_arg(s, 0, what=n)
        elif kind == "MISC_CHECK" and n == "misc_dynamic":
            f[n] = True
        elif kind == "MISC_CHECK" and n == "user":
            f["user"] = ctx.word(s)
            if len(s.args) > 1:
                f["group"] = s.args[1].text
        elif kind == "SMTP_CHECK" and n == "helo_name":
            f[n] = ctx.word(s)
        elif kind == "SMTP_CHECK" and n == "host":
            sub = _checker(Stmt(s.keyword.__class__("SMTP_CHECK", s.keyword.file, s.keyword.line), [], s.block), ctx,
                           K.SMTP_HOST)
            f["hosts"] = f.get("hosts", ()) + ((sub,) if sub is not None else ())
        elif kind == "DNS_CHECK" and n == "type":
            f[n] = ctx.choice(s, ("A", "NS", "CNAME", "SOA", "MX", "TXT", "AAAA"), upper=True)
        elif kind == "DNS_CHECK" and n == "name":
            f[n] = ctx.word(s)
        elif kind == "UDP_CHECK" and n in ("payload", "require_reply") and s.args:
            # keepalived allows blanks inside these hex strings ("Ab12f 3 456").
            f[n] = " ".join(t.text for t in s.args)
        elif kind == "UDP_CHECK" and n == "payload":
            f[n] = ctx.word(s)
        elif kind == "UDP_CHECK" and n == "require_reply":
            f[n] = True
        elif kind == "UDP_CHECK" and n in ("min_reply_length", "max_reply_length"):
            f[n] = ctx.int_arg(s, 0, 65535, what=n)
        elif kind in ("FILE_CHECK", "BFD_CHECK") and n in ("track_file", "name"):
            f["track_file" if kind == "FILE_CHECK" else "name"] = ctx.word(s)
        elif kind == "FILE_CHECK" and n == "dynamic":
            f["dynamic"] = True
        elif kind in ("FILE_CHECK", "BFD_CHECK") and n == "weight":
            f["weight"] = ctx.int_arg(s, -2147483647, 2147483647, what="weight")
            f["weight_reverse"] = len(s.args) > 1 and s.args[1].text == "reverse"
        else:
            _opt(opts, s)
    if kind in ("HTTP_GET", "SSL_GET"):
        f["urls"] = tuple(urls)
        if not urls:
            ctx.error(st.where, "missing-url", f"{kind} has no url {{ ... }} block")
    if kind == "MISC_CHECK" and not f.get("misc_path"):
        ctx.error(st.where, "missing-script", "MISC_CHECK has no misc_path")
    if kind == "FILE_CHECK" and not f.get("track_file"):
        ctx.error(st.where, "missing-parameter", "FILE_CHECK has no track_file")
    if kind == "BFD_CHECK" and not f.get("name"):
        ctx.error(st.where, "missing-parameter", "BFD_CHECK has no name")
    return cls(**{k: v for k, v in f.items() if v is not None}, options=_freeze(opts))


def _url(st: Stmt, ctx: Ctx) -> HttpUrl:
    f: dict = {"where": st.where}
    opts: dict = {}
    for s in ctx.block(st):
        n = s.name
        if n in ("path", "digest", "virtualhost", "regex"):
            f[n] = ctx.word(s)
        elif n == "status_code":
            f[n] = s.words() if ctx.need(s) else None
            for code in f[n] or ():
                lo, _, hi = code.partition("-")
                if not (lo.isdigit() and 100 <= int(lo) <= 599 and (not hi or (hi.isdigit() and int(lo) <= int(hi) <= 599))):
                    ctx.error(s.where, "invalid-value", f"status_code '{code}' is not an HTTP status (100-599) or range")
        elif n == "regex_no_match":
            f[n] = True
        elif n in K.HTTP_URL:
            _opt(opts, s)
        else:
            ctx.unknown(s, K.HTTP_URL, "url")
    if not f.get("path"):
        ctx.error(st.where, "missing-parameter", "url block has no path")
    return HttpUrl(**{k: v for k, v in f.items() if v is not None}, options=_freeze(opts))


# --------------------------------------------------------------------------- virtual_server_group


def build_virtual_server_group(st: Stmt, name: str, body: list[Stmt], ctx: Ctx) -> VirtualServerGroup:
    """``virtual_server_group NAME { ADDR[-END] PORT ... fwmark N ... }``."""
    members = []
    for s in body:
        if s.name == "fwmark":
            fw = ctx.int_arg(s, 1, 2**32 - 1, what="fwmark")
            if fw is not None:
                members.append(VirtualServerGroupEntry(s.where, fwmark=fw))
            continue
        addr, _, end = s.name.partition("-")
        if "/" in addr:
            addr = addr.split("/", 1)[0]
        ip = valid_ip(addr)
        if ip is None:
            ctx.error(s.where, "invalid-address", f"virtual_server_group {name}: '{s.name}' is not an address or range")
            continue
        range_end = None
        if end:
            try:
                range_end = int(end, 16 if ip.version == 6 else 10)
            except ValueError:
                ctx.error(s.where, "invalid-address", f"virtual_server_group {name}: bad range end '{end}'")
                continue
        port = _port(ctx, s, 0)
        members.append(VirtualServerGroupEntry(s.where, str(ip), range_end, port))
    return VirtualServerGroup(name, st.where, tuple(members))
