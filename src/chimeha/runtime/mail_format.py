"""What an ``smtp_alert`` mail says, and who sends one: keepalived 2.2.7's texts, byte for byte.

No I/O here (the clock and the host name are arguments).  Sources read:
core/smtp.c (subjects, headers), vrrp/vrrp_notify.c (instance and sync-group
bodies), check/check_*.c (per-checker bodies), check/ipwrapper.c (quorum and
shutdown bodies), vrrp/vrrp.c and check/check_data.c (defaults).

Subjects, with ``R`` the router_id:

* ``[R] VRRP Instance NAME - Entering MASTER state`` (BACKUP, FAULT; ``Stopping``)
* ``[R] VRRP Group NAME - Entering MASTER state`` ...
* ``[R] Realserver [10.0.0.2]:tcp:80 of virtual server [10.0.0.1]:tcp:80 - UP``
* ``[R] Virtualserver [10.0.0.1]:tcp:80 - DOWN``

Defaults: an instance or sync group without ``smtp_alert`` takes
``smtp_alert_vrrp``, else ``smtp_alert``, else off; a virtual server takes
``smtp_alert_checker``, else ``smtp_alert``, else off; a real server the same
but **on** when neither is set (keepalived keeps that for compatibility).
"""

from __future__ import annotations

from chimeha.config.model_notify import SmtpSettings

INSTANCE_BODIES = {
    "MASTER": ("Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <="),
    "BACKUP": ("Entering BACKUP state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    "FAULT": ("Entering FAULT state", "=> VRRP Instance is no longer owning VRRP VIPs <="),
    "STOP": ("Stopping", "=> VRRP Instance stopping <="),
    "DELETED": ("Deleted", "=> VRRP Deleted at reload <="),
}
GROUP_BODIES = {
    "MASTER": ("Entering MASTER state", "=> All VRRP group instances are now in MASTER state <="),
    "BACKUP": ("Entering BACKUP state", "=> All VRRP group instances are now in BACKUP state <="),
    "FAULT": ("Entering FAULT state", "=> All VRRP group instances are now in FAULT state <="),
    "STOP": ("Stopping", "=> All VRRP group instances are now stopping <="),
}
# checker keyword -> (body when it succeeds, body when it fails); None: keepalived sends no mail
CHECKER_BODIES = {
    "TCP_CHECK": ("=> TCP CHECK succeed on service <=", "=> TCP CHECK failed on service <="),
    "HTTP_GET": ("=> CHECK succeed on service <=", "=> CHECK failed on service : HTTP request failed <="),
    "SSL_GET": ("=> CHECK succeed on service <=", "=> CHECK failed on service : HTTP request failed <="),
    "PING_CHECK": ("=> ICMP CHECK succeed on service <=", "=> ICMP CHECK failed on service <="),
    "UDP_CHECK": ("=> UDP CHECK succeed on service <=", "=> UDP CHECK failed on service <="),
    "DNS_CHECK": ("=> DNS_CHECK: succeed on service <=", "=> DNS_CHECK: failed on service <="),
    "SMTP_CHECK": ("=> CHECK succeed on service <=", "=> CHECK failed on service <="),
    "MISC_CHECK": ("=> MISC CHECK succeeded on service <=", "=> MISC CHECK failed on service <="),
    "FILE_CHECK": None,
}
MAX_SUBJECT = 255  # keepalived's MAX_HEADERS_LENGTH - 1
MAX_BODY = 511  # MAX_BODY_LENGTH - 1


def _flag(explicit: bool | None, *defaults: bool | None, last: bool = False) -> bool:
    for v in (explicit, *defaults):
        if v is not None:
            return v
    return last


def vrrp_alert(obj, smtp: SmtpSettings | None) -> bool:
    """Whether a VrrpInstance / SyncGroup config sends mails."""
    smtp = smtp or SmtpSettings()
    explicit = obj.smtp_alert if "smtp_alert" in obj.positions else None
    return _flag(explicit, smtp.alert_vrrp, smtp.alert)


def vs_alert(vs, smtp: SmtpSettings | None) -> bool:
    """Whether a virtual server sends quorum mails."""
    smtp = smtp or SmtpSettings()
    return _flag(vs.smtp_alert, smtp.alert_checker, smtp.alert)


def rs_alert(rs, smtp: SmtpSettings | None) -> bool:
    """Whether a real server's checkers send mails (on unless something says otherwise)."""
    smtp = smtp or SmtpSettings()
    explicit = rs.smtp_alert if "smtp_alert" in rs.positions else None
    return _flag(explicit, smtp.alert_checker, smtp.alert, last=True)


def _trio(address: str, protocol: str, port: int | None) -> str:
    return f"[{address}]:{protocol.lower()}:{port or 0}"


def fmt_vs(vs) -> str:
    """keepalived's FMT_VS: ``[ADDR]:tcp:PORT``, ``FWM N`` or ``[GROUP]:PORT``."""
    if vs.group:
        return f"[{vs.group}]:{vs.port or 0}"
    if vs.fwmark is not None:
        return f"FWM {vs.fwmark}"
    return _trio(vs.address, vs.protocol, vs.port)


def fmt_rs(rs, vs) -> str:
    """keepalived's FMT_RS: the real server's address, the virtual server's protocol, its port."""
    port = rs.port if rs.port is not None else vs.port
    return _trio(rs.address, vs.protocol, port)


def vrrp_subject(router_id: str, kind: str, name: str, state: str) -> tuple[str, str] | None:
    """(subject, body) for an instance (``kind`` INSTANCE) or sync group (GROUP) entering ``state``."""
    table = INSTANCE_BODIES if kind == "INSTANCE" else GROUP_BODIES
    if state not in table:
        return None
    what, body = table[state]
    label = "VRRP Instance" if kind == "INSTANCE" else "VRRP Group"
    return f"[{router_id}] {label} {name} - {what}", body


def checker_mail(router_id: str, vs, rs, kind: str, ok: bool, rs_alive: bool,
                 bfd_name: str | None = None, timed_out: bool = False) -> tuple[str, str] | None:
    """(subject, body) for one checker of ``rs`` going up (``ok``) or down; None if keepalived sends none.

    The subject's UP/DOWN is the real server's state after the change (all its
    checkers), as keepalived's ``rs->alive``.
    """
    if kind == "BFD_CHECK":
        body = f"=> BFD CHECK {bfd_name or ''} {'succeeded' if ok else 'failed'} on service <="
    else:
        bodies = CHECKER_BODIES.get(kind)
        if bodies is None:
            return None
        body = bodies[0] if ok else bodies[1]
        if kind == "MISC_CHECK" and timed_out and not ok:
            body = "=> MISC CHECK timed out on service <="
    return (f"[{router_id}] Realserver {fmt_rs(rs, vs)} of virtual server {fmt_vs(vs)} - "
            f"{'UP' if rs_alive else 'DOWN'}", body)


def quorum_mail(router_id: str, vs, up: bool, weight_sum: int) -> tuple[str, str]:
    """(subject, body) for a virtual server that gained (``up``) or lost quorum."""
    threshold = vs.quorum + (vs.hysteresis if up else -vs.hysteresis)
    what = "Gained quorum" if up else "Lost quorum"
    body = f"=> {what} {vs.quorum}+{vs.hysteresis}={threshold} <= {weight_sum} <="
    return f"[{router_id}] Virtualserver {fmt_vs(vs)} - {'UP' if up else 'DOWN'}", body


def shutdown_mails(router_id: str, vs, alive_rs: list, vs_mail: bool) -> list[tuple[str, str]]:
    """At stop, for an ``omega`` virtual server: each live real server's mail, then the virtual server's."""
    out = [(f"[{router_id}] Realserver {fmt_rs(rs, vs)} of virtual server {fmt_vs(vs)} - DOWN",
            "=> Shutting down <=") for rs in alive_rs]
    if vs_mail:
        out.append((f"[{router_id}] Virtualserver {fmt_vs(vs)} - DOWN", "=> Shutting down <="))
    return out


def message(sender: str, recipients: list[str] | tuple[str, ...], subject: str, body: str, date: str) -> bytes:
    """The DATA of one mail as keepalived writes it (smtplib adds the final ``.``)."""
    text = (f"Date: {date}\r\nFrom: {sender}\r\nSubject: {subject[:MAX_SUBJECT]}\r\n"
            f"X-Mailer: Keepalived\r\nTo: {', '.join(recipients)}\r\n\r\n{body[:MAX_BODY]}\r\n\r\n")
    return text.encode("utf-8", "replace")
