"""Wire compatibility with the real keepalived 2.2.7, captured live in lab namespaces.

keepalived runs as MASTER in one namespace; a second namespace captures its
adverts off the bridge. Our validator must accept them with the right fields,
our encoder must produce the same bytes for the same parameters, and the
priority-0 advert it sends on SIGTERM must match too. Nothing is checked in:
every packet is captured during the test.
"""

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import pytest

from chimeha.vrrp import packet
from chimeha.vrrp.packet import Advertisement, Expectation

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

HELPER = os.path.join(os.path.dirname(__file__), "capture_helper.py")


def ka_conf(version, vips, auth=True, advert_int="1", prio=255):
    auth_block = "  authentication {\n    auth_type PASS\n    auth_pass 1111\n  }\n" if auth else ""
    vip_lines = "\n".join(f"    {v}" for v in vips)
    return (
        "global_defs {\n  router_id ka1\n  vrrp_version %d\n}\n"
        "vrrp_instance VI_1 {\n  state MASTER\n  interface eth0\n  virtual_router_id 51\n"
        "  priority %d\n  advert_int %s\n%s  virtual_ipaddress {\n%s\n  }\n}\n"
    ) % (version, prio, advert_int, auth_block, vip_lines)


def read_records(proc, selector, until, want):
    """Read capture lines until ``want(records)`` holds or the deadline passes."""
    recs = []
    while time.time() < until and not want(recs):
        for key, _ in selector.select(timeout=0.2):
            line = key.fileobj.readline()
            if line.startswith("{"):
                recs.append(json.loads(line))
    return recs


def capture_keepalived(topology, tmp_path, conf_text, *, wait_v6=False):
    ka = topology.add_host("ka", "192.168.231.11/24")
    lis = topology.add_host("lis", "192.168.231.12/24")
    if wait_v6:
        # keepalived needs the interface's link-local address (DAD takes ~1-2 s).
        deadline = time.time() + 15
        while time.time() < deadline:
            out = ka.run(["ip", "-6", "addr", "show", "dev", "eth0", "scope", "link"], check=False).stdout
            if "inet6 fe80" in out and "tentative" not in out:
                break
            time.sleep(0.1)
    conf = tmp_path / "ka.conf"
    conf.write_text(conf_text)
    check = subprocess.run(["keepalived", "-t", "-f", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    cap = lis.popen([sys.executable, HELPER, "eth0", "30"], stdout=subprocess.PIPE, text=True)
    sel = selectors.DefaultSelector()
    sel.register(cap.stdout, selectors.EVENT_READ)
    deadline = time.time() + 10
    ready = False
    while time.time() < deadline and not ready:
        for key, _ in sel.select(timeout=0.2):
            ready = key.fileobj.readline().strip() == "ready"
    assert ready, "capture helper did not start"
    log = open(tmp_path / "ka.log", "w")
    proc = ka.popen(["keepalived", "-n", "-l", "-D", "-P", "-f", str(conf), "-p", str(tmp_path / "ka.pid"),
                     "-r", str(tmp_path / "vrrp.pid"), "-c", str(tmp_path / "chk.pid")],
                    stdout=log, stderr=subprocess.STDOUT)
    try:
        live = read_records(cap, sel, time.time() + 20,
                            lambda r: sum(1 for x in r if bytes.fromhex(x["payload"])[2] != 0) >= 2)
        os.kill(proc.pid, signal.SIGTERM)
        live += read_records(cap, sel, time.time() + 10,
                             lambda r: any(bytes.fromhex(x["payload"])[2] == 0 for x in r))
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        cap.kill()
        log.close()
    return live, (tmp_path / "ka.log").read_text()


def split(recs):
    adverts = [r for r in recs if bytes.fromhex(r["payload"])[2] != 0]
    zeros = [r for r in recs if bytes.fromhex(r["payload"])[2] == 0]
    return adverts, zeros


def check_record(rec, exp, *, version, prio, interval, vips, auth):
    raw = bytes.fromhex(rec["payload"])
    res = packet.validate(raw, source=rec["src"], destination=rec["dst"], ttl=rec["ttl"],
                          family=rec["family"], expect=exp)
    assert isinstance(res, Advertisement), res
    assert (res.version, res.vrid, res.priority, res.interval) == (version, 51, prio, interval)
    assert res.addresses == tuple(vips) and res.source == rec["src"]
    ours = packet.encode(version, 51, prio, vips, interval, family=rec["family"],
                         auth_type="PASS" if auth else None, auth_pass="1111" if auth else None,
                         source=rec["src"], destination=rec["dst"])
    assert ours == raw, f"ours {ours.hex()} != keepalived {raw.hex()}"


def test_v2_pass_ipv4_adverts_and_priority_zero(topology, tmp_path):
    vips = ["192.168.231.10", "192.168.231.20"]
    recs, log = capture_keepalived(topology, tmp_path, ka_conf(2, vips))
    adverts, zeros = split(recs)
    assert len(adverts) >= 2 and zeros, log
    exp = Expectation(vrid=51, version=2, family=4, interval=1.0, auth_type="PASS", auth_pass="1111",
                      addresses=tuple(vips))
    for rec in adverts:
        assert (rec["src"], rec["dst"], rec["ttl"]) == ("192.168.231.11", "224.0.0.18", 255)
        check_record(rec, exp, version=2, prio=255, interval=1.0, vips=vips, auth=True)
    check_record(zeros[0], exp, version=2, prio=0, interval=1.0, vips=vips, auth=True)
    # keepalived paces adverts at advert_int: consecutive captures ~1 s apart
    assert 0.8 < adverts[1]["t"] - adverts[0]["t"] < 1.2
    # and a wrong password from the same bytes is refused
    bad = Expectation(vrid=51, version=2, auth_type="PASS", auth_pass="2222", addresses=tuple(vips))
    res = packet.validate(bytes.fromhex(adverts[0]["payload"]), source=adverts[0]["src"],
                          destination=adverts[0]["dst"], ttl=255, family=4, expect=bad)
    assert res.reason is packet.DropReason.AUTH


def test_v3_ipv4_adverts_use_the_pseudo_header_checksum(topology, tmp_path):
    vips = ["192.168.231.10"]
    recs, log = capture_keepalived(topology, tmp_path, ka_conf(3, vips, auth=False, advert_int="0.5", prio=200))
    adverts, zeros = split(recs)
    assert len(adverts) >= 2 and zeros, log
    exp = Expectation(vrid=51, version=3, family=4, interval=0.5, addresses=tuple(vips))
    for rec in adverts:
        assert rec["ttl"] == 255 and rec["dst"] == "224.0.0.18"
        check_record(rec, exp, version=3, prio=200, interval=0.5, vips=vips, auth=False)
        raw = bytes.fromhex(rec["payload"])
        assert packet.checksum16(raw) != 0  # not the v2-style checksum
    check_record(zeros[0], exp, version=3, prio=0, interval=0.5, vips=vips, auth=False)


def test_v3_ipv6_adverts(topology, tmp_path):
    vips = ["2001:db8::10", "2001:db8::11"]
    # 0.5 s: keepalived (priority 150) waits a Master_Down_Interval before its first advert
    recs, log = capture_keepalived(topology, tmp_path, ka_conf(3, vips, auth=False, advert_int="0.5", prio=150),
                                   wait_v6=True)
    adverts, zeros = split(recs)
    assert len(adverts) >= 2 and zeros, log
    exp = Expectation(vrid=51, version=3, family=6, interval=0.5, addresses=tuple(vips))
    for rec in adverts:
        assert rec["family"] == 6 and rec["dst"] == "ff02::12" and rec["ttl"] == 255
        assert rec["src"].startswith("fe80::")
        check_record(rec, exp, version=3, prio=150, interval=0.5, vips=vips, auth=False)
    check_record(zeros[0], exp, version=3, prio=0, interval=0.5, vips=vips, auth=False)


SENDER = os.path.join(os.path.dirname(__file__), "send_helper.py")


def wait_line(proc, selector, prefix, deadline):
    while time.time() < deadline:
        for key, _ in selector.select(timeout=0.1):
            line = key.fileobj.readline()
            if line.startswith(prefix):
                return True
            if not line and proc.poll() is not None:
                return False
    return False


def link_local(host):
    deadline = time.time() + 15
    while time.time() < deadline:
        out = host.run(["ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"], check=False).stdout
        if "inet6 fe80" in out and "tentative" not in out:
            return out.split("inet6 ")[1].split("/")[0]
        time.sleep(0.1)
    raise AssertionError("no usable link-local address")


@pytest.mark.parametrize("version,family", [(2, 4), (3, 4), (3, 6)], ids=["v2-pass-ipv4", "v3-ipv4", "v3-ipv6"])
def test_keepalived_obeys_our_adverts_and_our_priority_zero(topology, tmp_path, version, family):
    """A keepalived BACKUP hears our priority-200 adverts (stays BACKUP past its down
    interval, so it accepted every check), then our priority 0 (takes over after its
    Skew_Time, well before a master-down timeout could)."""
    ka = topology.add_host("ka", "192.168.231.11/24")
    peer = topology.add_host("peer", "192.168.231.12/24")
    if family == 4:
        vips, src = ["192.168.231.10"], "192.168.231.12"
    else:
        vips = ["2001:db8::10"]
        link_local(ka)
        src = link_local(peer)
    auth = version == 2
    conf = tmp_path / "ka.conf"
    conf.write_text(ka_conf(version, vips, auth=auth, prio=100).replace("state MASTER", "state BACKUP"))
    spec = {"family": family, "ifname": "eth0", "source": src, "version": version, "vrid": 51,
            "priority": 200, "vips": vips, "interval": 1.0, "auth_pass": "1111" if auth else None,
            "seconds": 6.0, "then_zero": True}
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), "..", "..", "src"))
    sender = peer.popen([sys.executable, SENDER, json.dumps(spec)], stdout=subprocess.PIPE, text=True, env=env)
    sel = selectors.DefaultSelector()
    sel.register(sender.stdout, selectors.EVENT_READ)
    assert wait_line(sender, sel, "sent 1", time.time() + 10), "sender did not start"
    log = open(tmp_path / "ka.log", "w")
    proc = ka.popen(["keepalived", "-n", "-l", "-D", "-P", "-f", str(conf), "-p", str(tmp_path / "ka.pid"),
                     "-r", str(tmp_path / "vrrp.pid"), "-c", str(tmp_path / "chk.pid")],
                    stdout=log, stderr=subprocess.STDOUT)
    vip = vips[0]
    try:
        # While we advertise priority 200 (6 s > keepalived's 3.6 s down interval) the VIP
        # must never appear on the keepalived node.
        seen_early = False
        end = time.time() + 12
        zero_sent = False
        while time.time() < end:
            for key, _ in sel.select(timeout=0.05):
                if key.fileobj.readline().startswith("sent zero"):
                    zero_sent = True
            if zero_sent:
                break
            seen_early |= vip in ka.addresses_on()
        zero_at = time.time()
        assert zero_sent, "sender never sent priority 0"
        assert not seen_early, (tmp_path / "ka.log").read_text()
        # After priority 0: Skew_Time (0.61 s); a timeout would need >= 2.6 s.
        took = None
        while time.time() < zero_at + 2.5:
            if vip in ka.addresses_on():
                took = time.time() - zero_at
                break
            time.sleep(0.02)
        logtext = (tmp_path / "ka.log").read_text()
        assert took is not None, logtext
        assert "Entering MASTER STATE" in logtext
        assert "invalid" not in logtext.lower() and "bad" not in logtext.lower(), logtext
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def test_v3_unicast_checksum_uses_the_peer_destination(topology, tmp_path):
    vips = ["192.168.231.10"]
    text = ka_conf(3, vips, auth=False, prio=255).replace(
        "  virtual_ipaddress", "  unicast_src_ip 192.168.231.11\n  unicast_peer {\n    192.168.231.12\n  }\n"
        "  virtual_ipaddress")
    recs, log = capture_keepalived(topology, tmp_path, text)
    adverts, zeros = split(recs)
    assert len(adverts) >= 2 and zeros, log
    exp = Expectation(vrid=51, version=3, family=4, interval=1.0, addresses=tuple(vips),
                      unicast_peers=("192.168.231.11",), check_unicast_src=True)
    for rec in adverts + zeros[:1]:
        assert (rec["src"], rec["dst"]) == ("192.168.231.11", "192.168.231.12")
        check_record(rec, exp, version=3, prio=bytes.fromhex(rec["payload"])[2], interval=1.0, vips=vips,
                     auth=False)
        # the same bytes do not verify against the multicast group
        res = packet.validate(bytes.fromhex(rec["payload"]), source=rec["src"], destination=packet.MCAST_V4,
                              ttl=255, family=4, expect=exp)
        assert res.reason is packet.DropReason.CHECKSUM
