"""Capability declarations: virtual servers, real servers and their checkers.

Data only (see ``capabilities``).  The connection and timing keywords shared
by the checkers are declared once in ``CHECKER_COMMON`` and apply to every
checker that has them; ``CHECKER_OVERRIDES`` holds per-checker exceptions.
To record that chime-ha now acts on a keyword, change its entry to
``ok(...)``: one line.
"""

from __future__ import annotations

from .capabilities_base import SNMP, noeff, ok, todo
from .keywords import CHECKERS as _CHECKERS  # the one list of checker keywords the reader knows
_RS = "virtual_server real_server"

CHECKER_COMMON = {
    "connect_ip": ok(field="TcpCheck.connect_ip"),
    "connect_port": ok(field="TcpCheck.connect_port"),
    "bindto": ok(field="TcpCheck.bindto"),
    "bind_port": ok(field="TcpCheck.bind_port"),
    "bind_if": ok(field="TcpCheck.bind_if"),
    "connect_timeout": ok(field="TcpCheck.connect_timeout"),
    "fwmark": ok(field="TcpCheck.fwmark"),
    "retry": ok(field="TcpCheck.retry"),
    "delay_before_retry": ok(field="TcpCheck.delay_before_retry"),
    "warmup": ok(field="TcpCheck.warmup"),
    "delay_loop": ok(field="TcpCheck.delay_loop"),
    "alpha": ok(field="TcpCheck.alpha"),
    "log_all_failures": todo("every checker failure is logged whatever this says",
                             field="TcpCheck.log_all_failures"),
}

_HTTP = {
    "url": ok(field="HttpCheck.urls"),
    "url path": ok(field="HttpUrl.path"),
    "url digest": ok(field="HttpUrl.digest"),
    "url status_code": ok(field="HttpUrl.status_code"),
    "url virtualhost": ok(field="HttpUrl.virtualhost"),
    "url regex": ok(field="HttpUrl.regex"),
    "url regex_no_match": ok(field="HttpUrl.regex_no_match"),
    "url regex_options": todo("regex options are not applied; the regex is matched with Python's defaults"),
    "url regex_stack": noeff("PCRE2's JIT stack size: chime-ha matches with Python's re, which has none"),
    "url regex_min_offset": todo("the regex is searched in the whole body"),
    "url regex_max_offset": todo("the regex is searched in the whole body"),
    "virtualhost": ok(field="HttpCheck.virtualhost"),
    "http_protocol": ok(field="HttpCheck.http_protocol"),
    "enable_sni": ok(field="HttpCheck.enable_sni"),
    "fast_recovery": todo("a failed real server is re-checked at the normal delay_loop"),
    "nb_get_retry": ok(),  # deprecated synonym of retry (2.2.7 says so too)
}

CHECKER_SPECIFIC = {
    "HTTP_GET": _HTTP,
    "SSL_GET": _HTTP,
    "MISC_CHECK": {
        "misc_path": ok(field="MiscCheck.misc_path"),
        "misc_timeout": ok(field="MiscCheck.misc_timeout"),
        "misc_dynamic": ok(field="MiscCheck.misc_dynamic"),
        "user": ok(field="MiscCheck.user"),
    },
    "SMTP_CHECK": {
        "helo_name": ok(field="SmtpCheck.helo_name"),
        "host": ok(field="SmtpCheck.hosts"),
        **{f"host {kw}": c for kw, c in CHECKER_COMMON.items()},
    },
    "DNS_CHECK": {"type": ok(field="DnsCheck.type"), "name": ok(field="DnsCheck.name")},
    "UDP_CHECK": {
        "payload": ok(field="UdpCheck.payload"),
        "require_reply": ok(field="UdpCheck.require_reply"),
        "min_reply_length": ok(field="UdpCheck.min_reply_length"),
        "max_reply_length": ok(field="UdpCheck.max_reply_length"),
    },
    "FILE_CHECK": {"track_file": ok(field="FileCheck.track_file"), "weight": ok(field="FileCheck.weight")},
    "BFD_CHECK": {"name": ok(field="BfdCheck.name")},
}

# Per-checker exceptions to CHECKER_COMMON ("CHECKER keyword" -> capability).
CHECKER_OVERRIDES: dict[str, object] = {}

ENTRIES = {
    # ------------------------------------------------------------------ virtual_server
    "virtual_server lb_algo": ok(field="VirtualServer.lb_algo"),
    "virtual_server lvs_sched": ok(),
    "virtual_server lb_kind": ok(field="VirtualServer.lb_kind"),
    "virtual_server lvs_method": ok(),
    "virtual_server protocol": ok(field="VirtualServer.protocol"),
    "virtual_server delay_loop": ok(field="VirtualServer.delay_loop"),
    "virtual_server connect_timeout": ok(field="VirtualServer.connect_timeout"),
    "virtual_server retry": ok(field="VirtualServer.retry"),
    "virtual_server delay_before_retry": ok(field="VirtualServer.delay_before_retry"),
    "virtual_server warmup": ok(field="VirtualServer.warmup"),
    "virtual_server persistence_timeout": ok(field="VirtualServer.persistence_timeout"),
    "virtual_server persistence_granularity": ok(field="VirtualServer.persistence_granularity"),
    "virtual_server persistence_engine": todo("IPVS persistence engines (SIP) are not programmed",
                                              field="VirtualServer.persistence_engine"),
    "virtual_server virtualhost": ok(field="VirtualServer.virtualhost"),
    "virtual_server sorry_server": ok(field="VirtualServer.sorry_server"),
    "virtual_server sorry_server_inhibit": ok(field="VirtualServer.sorry_server_inhibit"),
    "virtual_server sorry_server_lvs_method": ok(field="VirtualServer.sorry_server_lvs_method"),
    "virtual_server quorum": ok(field="VirtualServer.quorum"),
    "virtual_server hysteresis": ok(field="VirtualServer.hysteresis"),
    "virtual_server quorum_up": ok(field="VirtualServer.quorum_up"),
    "virtual_server quorum_down": ok(field="VirtualServer.quorum_down"),
    "virtual_server alpha": ok(field="VirtualServer.alpha"),
    "virtual_server omega": ok(field="VirtualServer.omega"),
    "virtual_server inhibit_on_failure": ok(field="VirtualServer.inhibit_on_failure"),
    "virtual_server ha_suspend": ok(field="VirtualServer.ha_suspend"),
    "virtual_server ops": todo("one-packet scheduling is not programmed", field="VirtualServer.ops"),
    "virtual_server weight": ok(field="VirtualServer.weight"),
    "virtual_server ip_family": todo("the family comes from the addresses", field="VirtualServer.ip_family"),
    "virtual_server hashed": todo("'hashed' is not applied"),
    "virtual_server sh-port": ok(),
    "virtual_server sh-fallback": ok(),
    "virtual_server mh-port": ok(),
    "virtual_server mh-fallback": ok(),
    "virtual_server flag-1": ok(),
    "virtual_server flag-2": ok(),
    "virtual_server flag-3": todo("scheduler flag-3 is not programmed", field="VirtualServer.flag_3"),
    "virtual_server smtp_alert": ok(field="VirtualServer.smtp_alert"),
    "virtual_server snmp_name": todo(SNMP),
    "virtual_server real_server": ok(field="VirtualServer.real_servers"),
    # ------------------------------------------------------------------ real_server
    f"{_RS} weight": ok(field="RealServer.weight"),
    f"{_RS} inhibit_on_failure": ok(field="RealServer.inhibit_on_failure"),
    f"{_RS} notify_up": ok(field="RealServer.notify_up"),
    f"{_RS} notify_down": ok(field="RealServer.notify_down"),
    f"{_RS} lvs_method": ok(field="RealServer.lvs_method"),
    f"{_RS} connect_timeout": ok(field="RealServer.connect_timeout"),
    f"{_RS} retry": ok(field="RealServer.retry"),
    f"{_RS} delay_before_retry": ok(field="RealServer.delay_before_retry"),
    f"{_RS} warmup": ok(field="RealServer.warmup"),
    f"{_RS} delay_loop": ok(field="RealServer.delay_loop"),
    f"{_RS} alpha": ok(field="RealServer.alpha"),
    f"{_RS} virtualhost": ok(field="RealServer.virtualhost"),
    f"{_RS} uthreshold": todo("connection thresholds are not programmed"),
    f"{_RS} lthreshold": todo("connection thresholds are not programmed"),
    f"{_RS} smtp_alert": ok(field="RealServer.smtp_alert"),
    f"{_RS} snmp_name": todo(SNMP),
    **{f"{_RS} {c}": ok() for c in _CHECKERS},
    # ------------------------------------------------------------------ SSL
    "SSL ca": todo("client certificates for SSL_GET are not implemented"),
    "SSL certificate": todo("client certificates for SSL_GET are not implemented"),
    "SSL key": todo("client certificates for SSL_GET are not implemented"),
    "SSL password": todo("client certificates for SSL_GET are not implemented"),
}


def checker_entries(grammar_kids) -> dict:
    """Entries for every checker keyword path, from the common and specific tables.

    ``grammar_kids(path)`` gives the keywords the grammar has below a path,
    so a shared keyword is declared only for the checkers that have it.
    """
    out = {}
    for c in _CHECKERS:
        specific = CHECKER_SPECIFIC.get(c, {})
        for kw in grammar_kids(("virtual_server", "real_server", c)):
            cap = CHECKER_OVERRIDES.get(f"{c} {kw}") or specific.get(kw) or CHECKER_COMMON.get(kw)
            if cap is not None:
                out[f"{_RS} {c} {kw}"] = cap
        for sub, cap in specific.items():
            if " " in sub:
                out[f"{_RS} {c} {sub}"] = cap
    return out

