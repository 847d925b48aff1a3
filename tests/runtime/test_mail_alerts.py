"""smtp_alert: config reading, keepalived 2.2.7's texts, and real SMTP over loopback (tests/smtpsink.py)."""

from __future__ import annotations

import smtplib
import socket

import pytest

from chimeha.config import loads
from chimeha.runtime import mail_format as fmt
from chimeha.runtime.mailer import MAX_QUEUE, Mailer, MailAlerts, MailSettings, deliver, mail_settings
from smtpsink import SmtpSink, body, headers

BASE = """
global_defs {
    router_id LAB1
    notification_email {
        ops@example.test
        oncall@example.test
    }
    notification_email_from ka@lab1.test
    smtp_server 127.0.0.1 %(port)s
    smtp_connect_timeout 3
    smtp_helo_name lab1.helo
    %(extra)s
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority 100
    virtual_ipaddress { 10.9.0.100/24 }
    %(inst)s
}
virtual_server 10.9.0.100 80 {
    protocol TCP
    %(vs)s
    real_server 10.9.0.21 8080 {
        %(rs)s
        TCP_CHECK { connect_timeout 1 }
    }
}
"""


def cfg(port=2525, extra="", inst="smtp_alert", vs="", rs=""):
    res = loads(BASE % {"port": port, "extra": extra, "inst": inst, "vs": vs, "rs": rs})
    assert res.ok, [str(d) for d in res.diagnostics]
    return res.config


# ------------------------------------------------------------------ config


def test_global_defs_read():
    c = cfg(extra="smtp_alert_vrrp off\nno_email_faults\nno_checker_emails\nsmtp_alert_checker")
    gd = c.global_defs
    assert gd.smtp_server == "127.0.0.1 2525" and gd.smtp_connect_timeout == 3.0
    assert gd.notification_email == ("ops@example.test", "oncall@example.test")
    assert gd.smtp.helo_name == "lab1.helo" and gd.smtp.alert_vrrp is False and gd.smtp.alert is None
    assert gd.smtp.no_email_faults and gd.smtp.no_checker_emails and gd.smtp.alert_checker is True


def test_smtp_server_default_port_and_bad_port():
    res = loads("global_defs {\n smtp_server mail.lab\n}\n")
    assert res.config.global_defs.smtp_server == "mail.lab 25"
    res = loads("global_defs {\n smtp_server mail.lab 99999\n}\n")  # keepalived -t: reported, ignored
    assert res.ok and res.config.global_defs.smtp_server is None
    assert any(d.line == 2 and d.code == "out-of-range" for d in res.diagnostics)


def test_connect_timeout_zero_becomes_one():
    res = loads("global_defs {\n smtp_connect_timeout 0\n}\n")
    assert res.config.global_defs.smtp_connect_timeout == 1.0
    assert any(d.line == 2 and d.severity == "warning" for d in res.diagnostics)


def test_defaults_resolve_as_keepalived():
    c = cfg(inst="")
    smtp = c.global_defs.smtp
    inst, vs = c.instances["VI_1"], c.virtual_servers[0]
    rs = vs.real_servers[0]
    assert not fmt.vrrp_alert(inst, smtp) and not fmt.vs_alert(vs, smtp)
    assert fmt.rs_alert(rs, smtp)  # keepalived: real servers mail unless told otherwise
    c = cfg(inst="", extra="smtp_alert")
    assert fmt.vrrp_alert(c.instances["VI_1"], c.global_defs.smtp) and fmt.vs_alert(c.virtual_servers[0], c.global_defs.smtp)
    c = cfg(inst="smtp_alert off", extra="smtp_alert\nsmtp_alert_checker off", rs="smtp_alert on")
    smtp = c.global_defs.smtp
    assert not fmt.vrrp_alert(c.instances["VI_1"], smtp)
    assert not fmt.vs_alert(c.virtual_servers[0], smtp) and fmt.rs_alert(c.virtual_servers[0].real_servers[0], smtp)
    c = cfg(inst="", extra="smtp_alert off\nsmtp_alert_vrrp on")
    assert fmt.vrrp_alert(c.instances["VI_1"], c.global_defs.smtp)


# ------------------------------------------------------------------ texts


def test_vrrp_texts():
    assert fmt.vrrp_subject("R", "INSTANCE", "VI_1", "MASTER") == (
        "[R] VRRP Instance VI_1 - Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <=")
    assert fmt.vrrp_subject("R", "INSTANCE", "VI_1", "STOP") == ("[R] VRRP Instance VI_1 - Stopping",
                                                                  "=> VRRP Instance stopping <=")
    assert fmt.vrrp_subject("R", "GROUP", "G", "FAULT") == (
        "[R] VRRP Group G - Entering FAULT state", "=> All VRRP group instances are now in FAULT state <=")
    assert fmt.vrrp_subject("R", "GROUP", "G", "DELETED") is None


def test_checker_and_quorum_texts():
    c = cfg()
    vs = c.virtual_servers[0]
    rs = vs.real_servers[0]
    tcp = rs.checkers[0]
    assert fmt.checker_mail("R", vs, rs, "TCP_CHECK", False, False) == (
        "[R] Realserver [10.9.0.21]:tcp:8080 of virtual server [10.9.0.100]:tcp:80 - DOWN",
        "=> TCP CHECK failed on service <=")
    assert fmt.checker_mail("R", vs, rs, "HTTP_GET", True, True)[1] == "=> CHECK succeed on service <="
    assert fmt.checker_mail("R", vs, rs, "MISC_CHECK", False, False, timed_out=True)[1] == \
        "=> MISC CHECK timed out on service <="
    assert fmt.checker_mail("R", vs, rs, "FILE_CHECK", False, False) is None
    assert tcp.kind == "TCP_CHECK"
    assert fmt.quorum_mail("R", vs, False, 0) == ("[R] Virtualserver [10.9.0.100]:tcp:80 - DOWN",
                                                  "=> Lost quorum 1+0=1 <= 0 <=")


def test_message_layout():
    data = fmt.message("a@b", ["x@y", "z@w"], "S", "B", "Fri, 04 Dec 2026 03:00:00 +0000")
    assert data == (b"Date: Fri, 04 Dec 2026 03:00:00 +0000\r\nFrom: a@b\r\nSubject: S\r\n"
                    b"X-Mailer: Keepalived\r\nTo: x@y, z@w\r\n\r\nB\r\n\r\n")


# ------------------------------------------------------------------ over loopback


def test_deliver_speaks_keepalived_smtp():
    with SmtpSink() as sink:
        s = mail_settings(cfg(port=sink.port))
        assert s.router_id == "LAB1" and s.helo == "lab1.helo" and s.sender == "ka@lab1.test"
        deliver(s, "[LAB1] VRRP Instance VI_1 - Entering MASTER state", "=> VRRP Instance is now owning VRRP VIPs <=")
        (m,) = sink.wait(1)
    assert m["commands"] == ["HELO lab1.helo", "MAIL FROM:<ka@lab1.test>", "RCPT TO:<ops@example.test>",
                                 "RCPT TO:<oncall@example.test>", "DATA"]
    h = headers(m)
    assert h["From"] == "ka@lab1.test" and h["To"] == "ops@example.test, oncall@example.test"
    assert h["X-Mailer"] == "Keepalived" and h["Subject"] == "[LAB1] VRRP Instance VI_1 - Entering MASTER state"
    assert body(m) == "=> VRRP Instance is now owning VRRP VIPs <=\r\n\r\n"


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_dead_server_is_logged_not_fatal(caplog):
    s = MailSettings("127.0.0.1", _dead_port(), 1.0, "h", "f@x", ("t@x",), "R")
    with pytest.raises(OSError):
        deliver(s, "S", "B")
    m = Mailer(s)
    assert m.send("S", "B")
    assert m.close(5.0)
    assert m.failed == 1 and m.sent == 0
    assert "failed" in caplog.text


def test_queue_is_bounded():
    # a server that accepts but never greets: the worker is stuck on the first mail
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    s = MailSettings("127.0.0.1", lsock.getsockname()[1], 2.0, "h", "f@x", ("t@x",), "R")
    m = Mailer(s)
    try:
        results = [m.send("S", "B") for _ in range(MAX_QUEUE + 5)]
        assert results.count(False) >= 4 and m.dropped >= 4
    finally:
        lsock.close()
        m.close(5.0)


def test_alerts_rules():
    with SmtpSink() as sink:
        c = cfg(port=sink.port, extra="no_email_faults")
        a = MailAlerts()
        a.configure(c, hostname="lab1")
        assert a.vrrp("INSTANCE", "VI_1", "BACKUP")
        assert not a.vrrp("INSTANCE", "VI_1", "BACKUP")  # same state: no second mail
        assert not a.vrrp("INSTANCE", "VI_1", "FAULT")  # no_email_faults
        assert a.vrrp("INSTANCE", "VI_1", "MASTER")
        vs = c.virtual_servers[0]
        rs = vs.real_servers[0]
        assert a.checker(vs, rs, rs.checkers[0], False, True, False)
        assert a.quorum(vs, False, 0) is False  # virtual server smtp_alert is off by default
        sink.wait(3)
        a.mailer.close(5.0)
        subjects = [headers(m)["Subject"] for m in sink.mails]
    assert subjects == ["[LAB1] VRRP Instance VI_1 - Entering BACKUP state",
                        "[LAB1] VRRP Instance VI_1 - Entering MASTER state",
                        "[LAB1] Realserver [10.9.0.21]:tcp:8080 of virtual server [10.9.0.100]:tcp:80 - DOWN"]


def test_no_checker_emails_only_when_the_server_changes():
    c = cfg(extra="no_checker_emails")
    a = MailAlerts()
    a.configure(c, hostname="lab1")
    sent = []
    a.mailer.send = lambda s, b: sent.append(s) or True
    vs = c.virtual_servers[0]
    rs = vs.real_servers[0]
    assert not a.checker(vs, rs, rs.checkers[0], False, False, False)  # another checker had it down already
    assert a.checker(vs, rs, rs.checkers[0], True, False, True)
    assert len(sent) == 1


def test_not_configured_sends_nothing():
    res = loads("vrrp_instance V {\n interface eth0\n virtual_router_id 1\n priority 100\n smtp_alert\n"
                " virtual_ipaddress { 10.0.0.1 }\n}\n")
    a = MailAlerts()
    a.configure(res.config)
    assert a.mailer.settings is None and not a.vrrp("INSTANCE", "V", "MASTER")
    assert smtplib  # stdlib only


def test_sync_group_member_is_silent_when_its_group_is_already_there():
    res = loads("""
global_defs {
    router_id R
    notification_email { a@b }
    smtp_server 127.0.0.1 2525
    smtp_alert
}
vrrp_sync_group G {
    group { V1 V2 }
}
vrrp_instance V1 {
 interface eth0
 virtual_router_id 1
 priority 100
 virtual_ipaddress { 10.0.0.1 }
}
vrrp_instance V2 {
 interface eth0
 virtual_router_id 2
 priority 100
 virtual_ipaddress { 10.0.0.2 }
}
""")
    assert res.ok, [str(d) for d in res.diagnostics]
    a = MailAlerts()
    a.configure(res.config, hostname="h")
    sent = []
    a.mailer.send = lambda s, b: sent.append(s) or True
    for ev in [("INSTANCE", "V1", "BACKUP"), ("INSTANCE", "V2", "BACKUP"), ("GROUP", "G", "BACKUP"),
               ("INSTANCE", "V1", "MASTER"), ("INSTANCE", "V2", "MASTER"), ("GROUP", "G", "MASTER"),
               ("INSTANCE", "V1", "BACKUP"), ("INSTANCE", "V2", "BACKUP"), ("GROUP", "G", "BACKUP"),
               ("INSTANCE", "V1", "MASTER"),  # the group is BACKUP: a member's own change is mailed
               ("GROUP", "G", "MASTER"), ("INSTANCE", "V2", "MASTER"),  # group already MASTER: V2 is silent
               ("INSTANCE", "V1", "STOP"), ("INSTANCE", "V2", "STOP"), ("GROUP", "G", "STOP")]:
        a.vrrp(*ev)
    assert sent == ["[R] VRRP Instance V1 - Entering BACKUP state", "[R] VRRP Instance V2 - Entering BACKUP state",
                    "[R] VRRP Group G - Entering BACKUP state",
                    "[R] VRRP Instance V1 - Entering MASTER state", "[R] VRRP Instance V2 - Entering MASTER state",
                    "[R] VRRP Group G - Entering MASTER state",
                    "[R] VRRP Instance V1 - Entering BACKUP state", "[R] VRRP Instance V2 - Entering BACKUP state",
                    "[R] VRRP Group G - Entering BACKUP state",
                    "[R] VRRP Instance V1 - Entering MASTER state", "[R] VRRP Group G - Entering MASTER state",
                    "[R] VRRP Instance V1 - Stopping", "[R] VRRP Instance V2 - Stopping",
                    "[R] VRRP Group G - Stopping"]


def test_omega_shutdown_texts():
    c = cfg(vs="smtp_alert")
    vs = c.virtual_servers[0]
    a = MailAlerts()
    a.configure(c, hostname="h")
    sent = []
    a.mailer.send = lambda s, b: sent.append((s, b)) or True
    a.shutdown(vs, list(vs.real_servers))
    assert sent == [("[LAB1] Realserver [10.9.0.21]:tcp:8080 of virtual server [10.9.0.100]:tcp:80 - DOWN",
                     "=> Shutting down <="),
                    ("[LAB1] Virtualserver [10.9.0.100]:tcp:80 - DOWN", "=> Shutting down <=")]
    assert fmt.quorum_mail("R", vs, True, 3)[1] == "=> Gained quorum 1+0=1 <= 3 <="
