"""smtp_alert mails and the startup/shutdown scripts of a real ``chime-ha run`` in a lab namespace.

A test SMTP receiver (tests/smtpsink.py) listens on the node's loopback; the
daemon starts alone (BACKUP, then MASTER when nobody answers), a TCP_CHECK
fails against a closed port, then SIGTERM stops it.  With keepalived 2.2.7
installed the same VRRP transitions are also run by keepalived against the
same receiver, and both mails are compared (everything but the Date).
"""

from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path

import pytest

from chalab import Daemon, have_keepalived, in_parallel, wait_until

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from smtpsink import body, headers, read_jsonl  # noqa: E402

pytestmark = pytest.mark.system

SINK = str(Path(__file__).resolve().parents[1] / "smtpsink.py")
PORT = 2525
VIP = "10.9.0.100"


GROUP = textwrap.dedent("""\
    vrrp_sync_group G_M {
        group {
            VI_M
            VI_N
        }
        smtp_alert
    }
    vrrp_instance VI_N {
        state BACKUP
        interface eth0
        virtual_router_id %(vrid)d
        priority 100
        advert_int 0.5
        version 3
        smtp_alert
        virtual_ipaddress {
            10.9.0.101/24
        }
    }
    """)


def conf(extra_global: str = "", lvs: bool = True, group: bool = False, vrid: int = 61) -> str:
    """VI_M has ``vrid`` (VI_N ``vrid + 1``): two nodes on one bridge must not share an instance.

    VRRPv3 at 0.5 s (the mails name no version): MASTER after ~1.8 s alone instead of v2's ~3.6 s.
    """
    vs = textwrap.dedent(f"""\
        virtual_server {VIP} 80 {{
            protocol TCP
            delay_loop 1
            smtp_alert
            real_server 127.0.0.1 9 {{
                TCP_CHECK {{
                    connect_timeout 1
                    retry 0
                }}
            }}
        }}
        """) if lvs else ""
    return textwrap.dedent(f"""\
        global_defs {{
            router_id LAB1
            notification_email {{
                ops@example.test
                oncall@example.test
            }}
            notification_email_from ka@lab1.test
            smtp_server 127.0.0.1 {PORT}
            smtp_connect_timeout 3
            smtp_helo_name lab1.helo
            {extra_global}
        }}
        vrrp_instance VI_M {{
            state BACKUP
            interface eth0
            virtual_router_id {vrid}
            priority 100
            advert_int 0.5
            version 3
            smtp_alert
            virtual_ipaddress {{
                {VIP}/24
            }}
        }}
        """) + vs + (GROUP % {"vrid": vrid + 1} if group else "")


def start_sink(node, out: Path):
    proc = node.popen([sys.executable, SINK, "127.0.0.1", str(PORT), str(out)])
    probe = [sys.executable, "-c", f"import socket; socket.create_connection(('127.0.0.1', {PORT}), 1).close()"]
    wait_until(lambda: node.run(probe, check=False).returncode == 0, 10, "SMTP sink listening")
    return proc


def subjects(mails) -> list[str]:
    return [headers(m)["Subject"] for m in mails]


def mail_node(topology, name: str, address: str = "10.9.0.11"):
    from chimeha.lab.node import add_node

    return add_node(topology, name, f"{address}/24")


def run_vrrp_cycle(topology, tmp_path, kind: str, name: str, extra_global: str = "", lvs: bool = False,
                   group: bool = False, until: str = "VRRP Instance VI_M - Entering MASTER state", between=None,
                   node=None, vrid: int = 61):
    """Start ``kind`` alone on a node, wait for MASTER's mail, SIGTERM it; the received mails."""
    node = node or mail_node(topology, name)
    out = tmp_path / f"{name}-mails.jsonl"
    sink = start_sink(node, out)
    d = Daemon(node, kind, conf(extra_global, lvs=lvs, group=group, vrid=vrid), tmp_path)
    try:
        d.start()
        wait_until(lambda: until in " ".join(subjects(read_jsonl(out))), 20, f"{kind}: {until}")
        time.sleep(0.5)  # any mail that would follow the awaited one
        if lvs:
            wait_until(lambda: len(read_jsonl(out)) >= 4, 20, f"{kind}: checker and quorum mails")
        if between is not None:
            between(node, out)
        d.stop()
        time.sleep(0.5)
        return node, read_jsonl(out), d
    finally:
        d.stop()
        node.stop(sink)
        print(f"--- {kind} ---\n" + d.log()[-5000:])


def test_chime_ha_mails_and_lifecycle_scripts(topology, tmp_path):
    out = tmp_path / "a-mails.jsonl"
    up, down = tmp_path / "startup.txt", tmp_path / "shutdown.txt"
    for path, target in ((tmp_path / "up.sh", up), (tmp_path / "down.sh", down)):
        # what the script saw: mails received so far and the VIP on eth0 or not
        path.write_text(f"#!/bin/sh\nsleep 0.5\n{{ wc -l < {out} 2>/dev/null || echo 0; "
                        f"ip -4 -o addr show dev eth0 | grep -c {VIP}; }} > {target}\nexit 0\n")
        path.chmod(0o755)
    extra = (f"startup_script {tmp_path}/up.sh\nshutdown_script {tmp_path}/down.sh\n"
             "shutdown_script_timeout 5\nenable_script_security")
    def real_server_comes_up(node, out):
        server = node.popen([sys.executable, "-c", "import socket\ns = socket.create_server(('127.0.0.1', 9))\n"
                             "while True: s.accept()[0].close()"])
        try:
            wait_until(lambda: "Virtualserver [10.9.0.100]:tcp:80 - UP" in " ".join(subjects(read_jsonl(out))), 20,
                       "quorum regained mail")
        finally:
            node.stop(server)

    node, mails, d = run_vrrp_cycle(topology, tmp_path, "chime-ha", "a", extra, lvs=True,
                                    between=real_server_comes_up)
    got = subjects(mails)
    assert got[0] == "[LAB1] VRRP Instance VI_M - Entering BACKUP state", got
    assert "[LAB1] VRRP Instance VI_M - Entering MASTER state" in got, got
    assert "[LAB1] Realserver [127.0.0.1]:tcp:9 of virtual server [10.9.0.100]:tcp:80 - DOWN" in got
    assert "[LAB1] Virtualserver [10.9.0.100]:tcp:80 - DOWN" in got
    assert got[-1] == "[LAB1] VRRP Instance VI_M - Stopping"
    by_subject = {headers(m)["Subject"]: m for m in mails}
    rs = by_subject["[LAB1] Realserver [127.0.0.1]:tcp:9 of virtual server [10.9.0.100]:tcp:80 - DOWN"]
    assert body(rs) == "=> TCP CHECK failed on service <=\r\n\r\n"
    assert body(by_subject["[LAB1] Virtualserver [10.9.0.100]:tcp:80 - DOWN"]) == \
        "=> Lost quorum 1+0=1 <= 0 <=\r\n\r\n"
    assert body(by_subject["[LAB1] Realserver [127.0.0.1]:tcp:9 of virtual server [10.9.0.100]:tcp:80 - UP"]) == \
        "=> TCP CHECK succeed on service <=\r\n\r\n"
    assert body(by_subject["[LAB1] Virtualserver [10.9.0.100]:tcp:80 - UP"]) == \
        "=> Gained quorum 1+0=1 <= 1 <=\r\n\r\n"
    m = by_subject["[LAB1] VRRP Instance VI_M - Entering MASTER state"]
    assert m["helo"] == "lab1.helo" and m["mail_from"] == "<ka@lab1.test>"
    assert m["rcpt_to"] == ["<ops@example.test>", "<oncall@example.test>"]
    h = headers(m)
    assert h["From"] == "ka@lab1.test" and h["To"] == "ops@example.test, oncall@example.test"
    assert h["X-Mailer"] == "Keepalived" and body(m) == "=> VRRP Instance is now owning VRRP VIPs <=\r\n\r\n"
    # startup ran before any instance (no mail yet, no VIP); shutdown after the VIP left and the STOP mail went
    assert up.read_text().split() == ["0", "0"], up.read_text()
    seen_mails, vip_at_stop = down.read_text().split()
    assert vip_at_stop == "0" and int(seen_mails) == len(mails)
    log = d.log()
    assert log.index("Running startup script") < log.index("started 1 VRRP instance")


def test_stuck_smtp_server_does_not_delay_failover(topology, tmp_path):
    """A receiver that accepts and never greets: each mail waits smtp_connect_timeout (3 s) on the mail
    thread, yet MASTER comes after Master_Down_Interval (~1.8 s), before the first mail gives up."""
    from chimeha.lab.node import add_node

    node = add_node(topology, "b", "10.9.0.12/24")
    hole = node.popen([sys.executable, "-c",
                       "import socket, time\n"
                       f"s = socket.create_server(('127.0.0.1', {PORT})); conns = []\n"
                       "while True: conns.append(s.accept())"])
    d = Daemon(node, "chime-ha", conf(lvs=False), tmp_path)
    try:
        time.sleep(0.3)
        d.start()
        wait_until(lambda: "SMTP alert to 127.0.0.1:2525 failed" in d.log(), 20, "first mail timed out")
        log = d.log()
        assert "BACKUP -> MASTER" in log
        assert log.index("BACKUP -> MASTER") < log.index("SMTP alert to 127.0.0.1:2525 failed")
        assert d.alive()
    finally:
        d.stop()
        node.stop(hole)
        print(d.log()[-3000:])


def _both_cycles(topology, tmp_path, **kw):
    """chime-ha's and keepalived's cycles at once, on two nodes with their own VRIDs (mails name no VRID)."""
    c, k = mail_node(topology, "c", "10.9.0.11"), mail_node(topology, "k", "10.9.0.12")
    return in_parallel(lambda: run_vrrp_cycle(topology, tmp_path, "chime-ha", "c", node=c, vrid=61, **kw),
                       lambda: run_vrrp_cycle(topology, tmp_path, "keepalived", "k", node=k, vrid=71, **kw))


@pytest.mark.keepalived
def test_same_mails_as_keepalived(topology, tmp_path):
    if not have_keepalived():
        pytest.skip("needs keepalived")
    (_, ours, _), (_, theirs, _) = _both_cycles(topology, tmp_path)

    def strip(mails):
        return [(m["helo"], m["mail_from"], m["rcpt_to"],
                 {k: v for k, v in headers(m).items() if k != "Date"}, body(m)) for m in mails]

    assert subjects(theirs)[:2] == subjects(ours)[:2]
    assert strip(ours)[:2] == strip(theirs)[:2]
    # keepalived's Date header is RFC 822 local time, as ours
    assert headers(theirs[0])["Date"][:4] == headers(ours[0])["Date"][:4]
    print("keepalived:", subjects(theirs), "chime-ha:", subjects(ours))


@pytest.mark.keepalived
def test_sync_group_mails_as_keepalived(topology, tmp_path):
    """Members mail their first state (BACKUP); from then on the group speaks for them (MASTER)."""
    if not have_keepalived():
        pytest.skip("needs keepalived")
    until = "VRRP Group G_M - Entering MASTER state"
    (_, ours, _), (_, theirs, _) = _both_cycles(topology, tmp_path, group=True, until=until)
    print("keepalived:", subjects(theirs), "chime-ha:", subjects(ours))

    def running(mails):  # keepalived sends in parallel: arrival order is not theirs to keep; no stop mails
        return sorted((headers(m)["Subject"], body(m)) for m in mails if not headers(m)["Subject"].endswith("Stopping"))

    assert running(ours) == running(theirs)
    assert len(running(ours)) == 6  # both instances and the group, BACKUP then MASTER
