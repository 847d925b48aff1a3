"""``smtp_alert`` mails: sent by one worker thread with :mod:`smtplib`, never by the event loop.

:class:`Mailer` owns a bounded queue (``MAX_QUEUE`` mails; past that a mail is
dropped and logged) and a daemon thread that speaks SMTP as keepalived 2.2.7
does: ``HELO smtp_helo_name``, ``MAIL FROM:<notification_email_from>``, one
``RCPT TO`` per ``notification_email`` address, ``DATA`` with keepalived's
headers (:func:`chimeha.runtime.mail_format.message`), ``QUIT``.  Every step
is bounded by ``smtp_connect_timeout``.  A dead or refusing server is logged;
nothing waits for it, so a failover is never delayed by mail.

:class:`MailAlerts` decides which VRRP / checker / quorum event makes a mail
(keepalived's rules, see :mod:`chimeha.runtime.mail_format`) and feeds the
mailer; it is called on the event loop and does no I/O itself.
"""

from __future__ import annotations

import logging
import os
import pwd
import queue
import re
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass

from chimeha.config.model_notify import SmtpSettings
from chimeha.runtime import mail_format as fmt

log = logging.getLogger("chimeha.runtime.mail")

MAX_QUEUE = 100  # mails waiting for the worker; more are dropped (logged)


def local_name() -> str:
    """keepalived's get_local_name(): the canonical name of this host's nodename."""
    node = socket.gethostname()
    try:
        canon = socket.getaddrinfo(node, None, flags=socket.AI_CANONNAME)[0][3]
        return canon or node
    except (OSError, IndexError):
        return node


@dataclass(frozen=True)
class MailSettings:
    """Where and how to send, resolved from ``global_defs`` (keepalived's defaults filled in)."""

    host: str
    port: int
    timeout: float
    helo: str
    sender: str
    recipients: tuple[str, ...]
    router_id: str


def mail_settings(config, hostname: str | None = None) -> MailSettings | None:
    """None unless both ``notification_email`` and ``smtp_server`` are set (keepalived sends nothing then)."""
    gd = config.global_defs
    if not gd.notification_email or not gd.smtp_server:
        return None
    host, _, port = gd.smtp_server.partition(" ")
    name = hostname or local_name()
    smtp = gd.smtp or SmtpSettings()
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = "root"
    return MailSettings(host=host, port=int(port or 25), timeout=float(gd.smtp_connect_timeout or 30),
                        helo=smtp.helo_name or name, sender=gd.notification_email_from or f"{user}@{name}",
                        recipients=tuple(gd.notification_email), router_id=gd.router_id or name)


def rfc822_date(now: float | None = None) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S %z", time.localtime(now))


def deliver(settings: MailSettings, subject: str, body: str, date: str | None = None) -> None:
    """Send one mail now (blocking: the worker thread's job). Raises OSError / smtplib.SMTPException."""
    import smtplib  # here, not at import: it loads the email package (~1 MiB) a daemon without mails never needs

    data = fmt.message(settings.sender, settings.recipients, subject, body, date or rfc822_date())
    data = re.sub(rb"(?m)^\.", b"..", data)  # dot-stuffing (keepalived's texts never need it)
    s = smtplib.SMTP(timeout=settings.timeout)
    try:
        s.connect(settings.host, settings.port)  # raises unless the greeting is 220
        # keepalived's verbs, upper case (smtplib's helpers send lower case)
        steps = [("HELO", settings.helo, 250), ("MAIL", f"FROM:<{settings.sender}>", 250)]
        steps += [("RCPT", f"TO:<{r}>", 250) for r in settings.recipients] + [("DATA", "", 354)]
        for verb, arg, want in steps:
            code, reply = s.docmd(verb, arg)
            if code != want:
                raise smtplib.SMTPResponseException(code, f"{verb}: {reply.decode(errors='replace')}")
        s.send(data + b".\r\n")
        code, reply = s.getreply()
        if code != 250:
            raise smtplib.SMTPDataError(code, reply)
        s.docmd("QUIT")
    finally:
        s.close()


class Mailer:
    """A bounded queue of mails and the one thread that sends them (started at the first mail)."""

    def __init__(self, settings: MailSettings | None):
        self.settings = settings
        self.sent = self.failed = self.dropped = 0
        self.history: deque = deque(maxlen=50)  # (subject, outcome) for status and tests
        self._q: queue.Queue = queue.Queue(MAX_QUEUE)
        self._thread: threading.Thread | None = None

    def send(self, subject: str, body: str) -> bool:
        """Queue one mail; False when mail is not configured or the queue is full. Never blocks."""
        settings = self.settings
        if settings is None:
            return False
        try:
            self._q.put_nowait((settings, subject, body, rfc822_date()))
        except queue.Full:
            self.dropped += 1
            log.warning("SMTP alert dropped (%d mails already waiting for %s:%d): %s", MAX_QUEUE,
                        settings.host, settings.port, subject)
            return False
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="smtp-alert", daemon=True)
            self._thread.start()
        return True

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            settings, subject, body, date = item
            try:
                deliver(settings, subject, body, date)
                self.sent += 1
                self.history.append((subject, "sent"))
                log.info("SMTP alert sent to %s:%d: %s", settings.host, settings.port, subject)
            except (OSError, ValueError) as exc:  # smtplib.SMTPException is an OSError
                self.failed += 1
                self.history.append((subject, f"failed: {exc}"))
                log.warning("SMTP alert to %s:%d failed (%s): %s", settings.host, settings.port,
                            exc.__class__.__name__ + (f": {exc}" if str(exc) else ""), subject)

    @property
    def busy(self) -> bool:
        """True once a mail was queued (the worker thread is running)."""
        return self._thread is not None

    def close(self, timeout: float) -> bool:
        """Let the worker send what is queued, for at most ``timeout`` s (blocking). True if all went."""
        if self._thread is None:
            return True
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()


class MailAlerts:
    """keepalived's choice of mails; see the module docstring."""

    def __init__(self, mailer: Mailer | None = None):
        self.mailer = mailer or Mailer(None)
        self.config = None
        self.smtp = SmtpSettings()
        self._last: dict[tuple[str, str], str] = {}  # (INSTANCE|GROUP, name) -> state last mailed
        self._sent: set[str] = set()  # instances that have had their first notification
        self._member_of: dict[str, str] = {}
        self._group_state: dict[str, str] = {}  # sync group -> the state it last reported

    @property
    def router_id(self) -> str:
        s = self.mailer.settings
        return s.router_id if s is not None else ""

    def configure(self, config, hostname: str | None = None) -> None:
        """A (re)loaded config: new settings and flags; what was mailed is remembered."""
        self.config = config
        self.smtp = config.global_defs.smtp or SmtpSettings()
        self.mailer.settings = mail_settings(config, hostname)
        self._member_of = {m: g for g, sg in config.sync_groups.items() for m in sg.group}

    def vrrp(self, kind: str, name: str, state: str) -> bool:
        """An instance (INSTANCE) or sync group (GROUP) entered ``state``; True if a mail was queued."""
        if self.config is None or self.mailer.settings is None:
            return False
        cfg = (self.config.instances if kind == "INSTANCE" else self.config.sync_groups).get(name)
        if kind == "GROUP":
            self._group_state[name] = state
        else:
            first = name not in self._sent
            self._sent.add(name)
            # keepalived (send_instance_notifies): a member that has notified before stays silent when
            # its group is already in the state it enters (the group reports after its members)
            group = self._member_of.get(name)
            if not first and group is not None and self._group_state.get(group) == state:
                return False
        if cfg is None or not fmt.vrrp_alert(cfg, self.smtp):
            return False
        if self.smtp.no_email_faults and state == "FAULT":
            return False
        if self._last.get((kind, name)) == state:
            return False
        mail = fmt.vrrp_subject(self.router_id, kind, name, state)
        if mail is None:
            return False
        self._last[(kind, name)] = state
        return self.mailer.send(*mail)

    def checker(self, vs, rs, checker, ok: bool, was_alive: bool, alive: bool, detail: str = "") -> bool:
        """One checker of ``rs`` went up (``ok``) or down; ``was_alive``/``alive``: the real server's state."""
        if self.mailer.settings is None or not fmt.rs_alert(rs, self.smtp):
            return False
        if self.smtp.no_checker_emails and was_alive == alive:
            return False
        from chimeha.check.spec import checker_kind

        mail = fmt.checker_mail(self.router_id, vs, rs, checker_kind(checker), ok, alive,
                                bfd_name=getattr(checker, "name", None), timed_out="timed out" in (detail or ""))
        return mail is not None and self.mailer.send(*mail)

    def quorum(self, vs, up: bool, weight_sum: int) -> bool:
        if self.mailer.settings is None or not fmt.vs_alert(vs, self.smtp):
            return False
        return self.mailer.send(*fmt.quorum_mail(self.router_id, vs, up, weight_sum))

    def shutdown(self, vs, alive_rs: list) -> None:
        """Stop of an ``omega`` virtual server: its live real servers' and its own mail."""
        if self.mailer.settings is None:
            return
        rs_mail = [rs for rs in alive_rs if fmt.rs_alert(rs, self.smtp)]
        for mail in fmt.shutdown_mails(self.router_id, vs, rs_mail, fmt.vs_alert(vs, self.smtp)):
            self.mailer.send(*mail)
