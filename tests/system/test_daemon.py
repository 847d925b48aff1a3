"""chime-ha nodes in namespaces: link cut/restore, SIGTERM, SIGHUP, stale VIPs, hostile packets.

VRRPv3 with advert_int 0.1 keeps these fast; the seed's own timings are
exercised in test_seed.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest

from chalab import Daemon, holders, settle_on, wait_until

pytestmark = pytest.mark.system

VIP = "10.9.0.100"
# With advert_int 0.1 a wrong second master shows up within Master_Down_Interval
# (about 0.33 s): holding a settled VIP for 0.5 s is enough to catch it.
HOLD = 0.5


def conf(state: str, priority: int, extra: str = "", vip: str = VIP + "/24") -> str:
    return textwrap.dedent(f"""\
        vrrp_instance VI_F {{
            state {state}
            interface eth0
            virtual_router_id 77
            priority {priority}
            advert_int 0.1
            version 3
            virtual_ipaddress {{
                {vip}
            }}
        {extra}}}
        """)


@pytest.fixture
def pair(topology, tmp_path):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.9.0.11/24")
    b = add_node(topology, "b", "10.9.0.12/24")
    da = Daemon(a, "chime-ha", conf("MASTER", 200), tmp_path, control=True)
    db = Daemon(b, "chime-ha", conf("BACKUP", 100), tmp_path, control=True)
    try:
        yield a, b, da, db
    finally:
        da.stop()
        db.stop()
        # pytest shows captured output only when the test failed
        print("--- a ---\n" + da.log()[-6000:])
        print("--- b ---\n" + db.log()[-6000:])


def test_link_cut_restore_and_sigterm(pair):
    a, b, da, db = pair
    nodes = [a, b]
    db.start()
    da.start()
    settle_on(nodes, VIP, "a", timeout=8, hold=HOLD)

    a.link_down()  # a loses carrier: FAULT, VIP dropped; b hears nothing and takes over
    settle_on(nodes, VIP, "b", timeout=5, hold=HOLD)
    wait_until(lambda: da.status()["instances"]["VI_F"]["state"] == "FAULT", 5, "a in FAULT")

    a.link_up()  # a recovers to BACKUP, hears the lower priority b and preempts
    settle_on(nodes, VIP, "a", timeout=8, hold=HOLD)
    sb = db.status()["instances"]["VI_F"]
    assert sb["state"] == "BACKUP" and sb["master_address"] == "10.9.0.11"

    before = sb["priority_zero_received"]
    da.stop()  # SIGTERM: a sends priority 0 and removes the VIP
    settle_on(nodes, VIP, "b", timeout=3, hold=HOLD)
    assert db.status()["instances"]["VI_F"]["priority_zero_received"] > before
    assert "MASTER -> INIT (shutdown)" in da.log()


def test_sighup_reload_keeps_vip_under_traffic_and_refuses_bad_config(pair, topology):
    from chimeha.lab.node import add_node

    a, b, da, db = pair
    client = add_node(topology, "client", "10.9.0.50/24")
    db.start()
    da.start()
    settle_on([a, b], VIP, "a", timeout=8, hold=HOLD)
    s0 = da.status()["instances"]["VI_F"]

    # A valid new config: one more instance, placed first so every line of VI_F moves;
    # VI_F itself is unchanged, so it keeps MASTER and its VIP.
    second = conf("BACKUP", 50).replace("VI_F", "VI_G").replace("77", "78").replace(VIP, "10.9.0.101")
    a.write_file(da.conf, second + "\n\n" + conf("MASTER", 200))
    ping = client.popen(["ping", "-n", "-q", "-i", "0.02", "-c", "150", "-W", "1", VIP],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)  # traffic is flowing before the reload
    da.signal("HUP")
    wait_until(lambda: da.status()["node"]["reloads"] == 1, 5, "reload counted")
    out, _ = ping.communicate(timeout=20)
    assert " 0% packet loss" in out, out
    s1 = da.status()["instances"]
    assert s1["VI_F"]["state"] == "MASTER"
    assert s1["VI_F"]["became_master"] == s0["became_master"]  # state was not reset
    assert "VI_G" in s1
    assert holders([a, b], VIP) == ["a"]

    # A changed instance (new priority) is rebuilt but stays MASTER: no VIP gap either.
    a.write_file(da.conf, second + conf("MASTER", 180))
    ping = client.popen(["ping", "-n", "-q", "-i", "0.02", "-c", "100", "-W", "1", VIP],
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(0.5)
    da.signal("HUP")
    wait_until(lambda: da.status()["node"]["reloads"] == 2, 5, "second reload counted")
    out, _ = ping.communicate(timeout=20)
    assert " 0% packet loss" in out, out
    s2 = da.status()["instances"]["VI_F"]
    assert s2["state"] == "MASTER" and s2["base_priority"] == 180
    assert holders([a, b], VIP) == ["a"]

    # An invalid config is refused with its diagnostics; the old one keeps running.
    a.write_file(da.conf, "vrrp_instance BROKEN {\n    virtual_router_id 999\n")
    da.signal("HUP")
    wait_until(lambda: "reload refused" in da.log(), 5, "the refusal in the log")
    assert f"{da.conf}:" in da.log().split("reload refused", 1)[1]  # file:line diagnostics
    st = da.status()
    assert st["node"]["reloads"] == 2 and st["instances"]["VI_F"]["state"] == "MASTER"
    assert da.alive()
    settle_on([a, b], VIP, "a", timeout=1, hold=0.5)


def test_stale_vip_from_a_killed_run_is_removed(pair):
    a, b, da, db = pair
    # b "crashed" while master: the VIP is still on its interface.
    b.run(["ip", "addr", "add", VIP + "/24", "dev", "eth0"])
    assert holders([a, b], VIP) == ["b"]
    da.start()
    db.start()
    settle_on([a, b], VIP, "a", timeout=8, hold=HOLD)
    assert "removed stale VIP" in db.log()


HOSTILE = r"""
import socket, struct, sys, json
from chimeha.vrrp import packet
from chimeha.net.vrrpsock import VrrpSocket
src = "10.9.0.66"
good = lambda **kw: packet.encode(3, kw.get("vrid", 77), kw.get("prio", 250), kw.get("addrs", ["10.9.0.100"]),
                                   0.1, source=src)
s = VrrpSocket("eth0", 4)
sent = {}
def send(name, data, ttl=255):
    s.sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
    s.send(data)
    sent[name] = sent.get(name, 0) + 1
bad_sum = bytearray(good()); bad_sum[6] ^= 0xFF
send("checksum", bytes(bad_sum))
send("ttl", good(), ttl=1)
send("length", b"\x31\x4d")
v2 = packet.encode(2, 77, 250, ["10.9.0.100"], 1, auth_type="PASS", auth_pass="x")
send("version", v2)
send("vrid-unknown", good(vrid=99))
send("address-list", good(addrs=["10.9.0.99"]))
send("garbage", bytes(range(256)) * 2)
print(json.dumps(sent))
"""


def test_hostile_packets_are_counted_and_harmless(pair, topology):
    from chimeha.lab.node import add_node

    a, b, da, db = pair
    evil = add_node(topology, "evil", "10.9.0.66/24")
    a.run(["mkdir", "-p", "/run/dumps"])
    da.extra_args = ("--dump-dir", "/run/dumps")
    da.start()
    settle_on([a], VIP, "a", timeout=8, hold=HOLD)
    out = evil.run([sys.executable, "-c", HOSTILE])
    sent = json.loads(out.stdout)

    def drops():
        st = da.status()
        total = dict(st["drops_by_reason"])  # no instance matched (unknown VRID, undecodable)
        for reason, n in st["instances"]["VI_F"]["drops_by_reason"].items():
            total[reason] = total.get(reason, 0) + n
        return total

    wanted = {"checksum", "ttl", "length", "version", "vrid-unknown", "address-list"}
    # every datagram is dropped (the garbage one as a bad version), none accepted
    wait_until(lambda: sum(drops().values()) == sum(sent.values()), 5,
               f"every hostile packet counted (sent {sent}, counted {drops()})")
    d = drops()
    assert wanted <= set(d)
    assert d["checksum"] == 1 and d["ttl"] == 1 and d["vrid-unknown"] == 1 and d["address-list"] == 1
    st = da.status()["instances"]["VI_F"]
    assert st["state"] == "MASTER" and st["adverts_received"] == 0
    assert da.alive()

    # --dump-dir: SIGUSR2's keepalived.stats lands there, with the counted drops
    da.signal("USR2")
    stats = wait_until(lambda: a.run(["cat", "/run/dumps/keepalived.stats"], check=False).stdout, 5,
                       "keepalived.stats in --dump-dir")
    assert "VRRP Instance: VI_F" in stats
    assert "checksum: 1" in stats  # listed under keepalived-style "Other Drops"


def test_missing_interface_is_a_clear_startup_error(topology, tmp_path):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.9.0.11/24")
    d = Daemon(a, "chime-ha", conf("MASTER", 200).replace("interface eth0", "interface nosuch0"), tmp_path)
    d.start()
    wait_until(lambda: d.proc.poll() is not None, 10, "chime-ha to exit")
    assert d.proc.returncode == 1
    assert "interface nosuch0 does not exist" in d.log()
    assert "Traceback" not in d.log()
    d.proc = None


NOTIFY_REC = "#!/bin/sh\necho \"$*\" >> /run/notify.log\n"


def test_notify_scripts_and_fifo_in_keepalived_format(topology, tmp_path):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.9.0.11/24")
    a.write_file("/run/rec.sh", NOTIFY_REC, mode=0o755)
    a.run(["mkfifo", "/run/vrrp.fifo"])
    reader = a.popen(["cat", "/run/vrrp.fifo"], stdout=subprocess.PIPE, text=True)
    extra = ('    notify_master "/run/rec.sh to-master"\n'
             '    notify_stop "/run/rec.sh to-stop"\n'
             '    notify /run/rec.sh\n')
    text = "global_defs {\n    vrrp_notify_fifo /run/vrrp.fifo\n}\n" + conf("MASTER", 255, extra)
    d = Daemon(a, "chime-ha", text, tmp_path)
    try:
        d.start()
        settle_on([a], VIP, "a", timeout=5, hold=0.2)
        wait_until(lambda: "INSTANCE VI_F MASTER 255" in a.read_file("/run/notify.log")
                   if a.run(["test", "-e", "/run/notify.log"], check=False).returncode == 0 else False,
                   5, "notify scripts for MASTER")
        d.stop()
        lines = a.read_file("/run/notify.log").splitlines()
        assert lines == ["to-master", "INSTANCE VI_F MASTER 255", "to-stop", "INSTANCE VI_F STOP 255"]
        out = reader.stdout.read()  # the daemon closed the FIFO: cat sees EOF
        assert out.splitlines() == ['INSTANCE "VI_F" MASTER 255', 'INSTANCE "VI_F" STOP 255']
    finally:
        d.stop()
        print(d.log()[-4000:])


def test_sync_group_follows_a_faulted_member_and_reports_group_lines(topology, tmp_path):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.9.0.11/24")
    a.run(["mkfifo", "/run/vrrp.fifo"])
    reader = a.popen(["cat", "/run/vrrp.fifo"], stdout=subprocess.PIPE, text=True)
    a.write_file("/run/flag", "0\n")
    text = ("global_defs {\n    vrrp_notify_fifo /run/vrrp.fifo\n}\n"
            "track_file flag {\n    file /run/flag\n    weight 0\n}\n"
            "vrrp_sync_group G {\n    group {\n        VI_F\n        VI_G\n    }\n}\n"
            + conf("BACKUP", 100, "    track_file {\n        flag\n    }\n")
            + conf("BACKUP", 100, vip="10.9.0.101/24").replace("VI_F", "VI_G").replace("77", "78"))
    d = Daemon(a, "chime-ha", text, tmp_path)
    try:
        d.start()
        wait_until(lambda: {VIP, "10.9.0.101"} <= a.addresses_on(), 5, "both VIPs (alone on the link)")
        a.write_file("/run/flag", "1\n")  # VI_F faults; the group takes VI_G down with it
        wait_until(lambda: not ({VIP, "10.9.0.101"} & a.addresses_on()), 5, "both VIPs released")
        a.write_file("/run/flag", "0\n")
        wait_until(lambda: {VIP, "10.9.0.101"} <= a.addresses_on(), 5, "both VIPs back")
        d.stop()
        lines = reader.stdout.read().splitlines()
        group = [line for line in lines if line.startswith("GROUP")]
        assert group == ['GROUP "G" BACKUP 0', 'GROUP "G" MASTER 0', 'GROUP "G" FAULT 0', 'GROUP "G" BACKUP 0',
                         'GROUP "G" MASTER 0', 'GROUP "G" STOP 0'], lines
        assert 'INSTANCE "VI_G" FAULT 100' in lines
    finally:
        d.stop()
        print(d.log()[-5000:])


def test_virtual_server_follows_vip_ownership(topology, tmp_path):
    """The daemon hands VIP ownership to the virtual-server manager (userspace proxy here)."""
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "10.9.0.11/24")
    client = add_node(topology, "client", "10.9.0.50/24")
    a.popen([sys.executable, "-c", (
        "import socketserver\n"
        "class H(socketserver.BaseRequestHandler):\n"
        "    def handle(self): self.request.sendall(b'backend-a\\n')\n"
        "socketserver.TCPServer.allow_reuse_address = True\n"
        "socketserver.TCPServer(('10.9.0.11', 9000), H).serve_forever()\n")])
    vs = ("virtual_server 10.9.0.100 8080 {\n    lb_algo rr\n    lb_kind NAT\n    protocol TCP\n"
          "    real_server 10.9.0.11 9000 {\n        weight 1\n    }\n}\n")
    d = Daemon(a, "chime-ha", conf("MASTER", 200) + vs, tmp_path, control=True,
               extra_args=("--dataplane", "proxy"))
    try:
        d.start()
        settle_on([a], VIP, "a", timeout=5, hold=0.2)

        def fetch():
            p = client.run(["nc", "-w", "2", VIP, "8080"], check=False, timeout=10)
            return p.stdout.strip()
        assert wait_until(lambda: fetch() == "backend-a", 10, "the virtual server answering on the VIP")
        vss = d.status()["virtual_servers"]
        assert len(vss) == 1 and vss[0]["active"] is True
    finally:
        d.stop()
        print(d.log()[-5000:])
