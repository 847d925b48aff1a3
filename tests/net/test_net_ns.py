"""The net layer against the real kernel, inside lab namespaces."""

from __future__ import annotations

import json
import time

import pytest

from nshelp_net import popen_py, run_py

pytestmark = pytest.mark.system

RECV_ONE = """
import json, select, sys
from chimeha.net.vrrpsock import VrrpSocket
s = VrrpSocket({ifname!r}, {family}, src_addr={src!r})
print("ready", flush=True)
out = []
deadline = __import__("time").time() + 8
while len(out) < {count} and __import__("time").time() < deadline:
    r, _, _ = select.select([s], [], [], 0.5)
    if r:
        m = s.recv()
        if m:
            out.append(dict(payload=m.payload.hex(), src=m.src, dst=m.dst, ttl=m.ttl, family=m.family))
print(json.dumps(out))
"""

SEND = """
import json
from chimeha.net.vrrpsock import VrrpSocket
s = VrrpSocket({ifname!r}, {family}, src_addr={src!r})
s.send(bytes.fromhex({payload!r}), {dst!r})
print(json.dumps(True))
"""


def _receive(rx, tx, family, payload, dst=None, rx_src=None, tx_src=None):
    proc = popen_py(rx, RECV_ONE.format(ifname=rx.ifname, family=family, src=rx_src, count=1))
    assert proc.stdout.readline().strip() == "ready"
    run_py(tx, SEND.format(ifname=tx.ifname, family=family, src=tx_src, payload=payload.hex(), dst=dst))
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_ipv4_multicast_advert_arrives_with_ttl_255_and_group_destination(topology):
    a = topology.add_host("a", "10.1.0.1/24")
    b = topology.add_host("b", "10.1.0.2/24")
    payload = bytes([0x31, 7, 100, 1, 0, 100, 0, 0]) + bytes([10, 1, 0, 9])
    got = _receive(b, a, 4, payload)
    assert got == [dict(payload=payload.hex(), src="10.1.0.1", dst="224.0.0.18", ttl=255, family=4)]


def test_ipv4_unicast_advert_reaches_peer_address(topology):
    a = topology.add_host("a", "10.1.0.1/24")
    b = topology.add_host("b", "10.1.0.2/24")
    payload = b"\x21\x05\x64\x01\x00\x01\x00\x00" + bytes(4) + bytes(8)
    got = _receive(b, a, 4, payload, dst="10.1.0.2", tx_src="10.1.0.1")
    assert got[0]["dst"] == "10.1.0.2" and got[0]["src"] == "10.1.0.1"
    assert got[0]["ttl"] == 255 and got[0]["payload"] == payload.hex()


def test_ipv6_multicast_advert_has_hop_limit_255(topology):
    a = topology.add_host("a", "fd00:1::1/64")
    b = topology.add_host("b", "fd00:1::2/64")
    payload = bytes([0x31, 9, 100, 1, 0, 100, 0, 0]) + bytes(16)
    # Link-local addresses need a moment to leave the tentative state.
    deadline = time.time() + 10
    while time.time() < deadline:
        if "tentative" not in a.run(["ip", "-6", "addr", "show", "dev", a.ifname]).stdout:
            break
        time.sleep(0.1)
    got = _receive(b, a, 6, payload)
    assert len(got) == 1
    assert got[0]["dst"] == "ff02::12" and got[0]["ttl"] == 255
    assert got[0]["src"].startswith("fe80::")
    assert got[0]["payload"] == payload.hex()


def test_socket_on_missing_interface_is_a_clear_error(topology):
    a = topology.add_host("a", "10.1.0.1/24")
    out = run_py(a, """
import json
from chimeha.net.vrrpsock import VrrpSocket, VrrpSocketError
try:
    VrrpSocket("nosuch0", 4)
    print(json.dumps("no error"))
except VrrpSocketError as e:
    print(json.dumps(str(e)))
""")
    assert "nosuch0" in out and "does not exist" in out


def test_vip_add_delete_is_idempotent_and_honours_label_and_nodad(topology):
    a = topology.add_host("a", "10.1.0.1/24", "fd00:1::1/64")
    out = run_py(a, """
import json
from chimeha.net.addresses import AddressManager, Vip
m = AddressManager()
v4 = Vip("10.1.0.10", 32, "eth0", label="eth0:vip")
v6 = Vip("fd00:1::10", 128, "eth0", nodad=True)
res = [m.add(v4), m.add(v4), m.present(v4), m.add(v6), m.present(v6)]
import subprocess
res.append(subprocess.run(["ip", "addr", "show", "dev", "eth0"], capture_output=True, text=True).stdout)
res += [m.delete(v4), m.delete(v4), m.present(v4), m.delete(v6), m.present(v6)]
print(json.dumps(res))
""")
    assert out[:5] == [True, False, True, True, True]
    shown = out[5]
    assert "10.1.0.10/32" in shown and "eth0:vip" in shown
    line6 = next(line for line in shown.splitlines() if "fd00:1::10/128" in line)
    assert "nodad" in line6 and "tentative" not in line6
    assert out[6:] == [True, False, False, True, False]


def test_virtual_route_add_delete(topology):
    a = topology.add_host("a", "10.1.0.1/24")
    out = run_py(a, """
import json, subprocess
from chimeha.net.addresses import AddressManager, Route
m = AddressManager()
r = Route("10.77.0.0/16", gateway="10.1.0.254")
res = [m.route("add", r), m.route("add", r)]
res.append(subprocess.run(["ip", "route"], capture_output=True, text=True).stdout)
res += [m.route("del", r), m.route("del", r)]
res.append(subprocess.run(["ip", "route"], capture_output=True, text=True).stdout)
print(json.dumps(res))
""")
    assert out[0] is True and out[1] is False
    assert "10.77.0.0/16 via 10.1.0.254" in out[2]
    assert out[3] is True and out[4] is False
    assert "10.77.0.0/16" not in out[5]


def test_gratuitous_arp_updates_a_neighbours_cache(topology):
    a = topology.add_host("a", "10.1.0.1/24")
    b = topology.add_host("b", "10.1.0.2/24")
    # b believes 10.1.0.10 lives at a made-up MAC; a's GARP must override it.
    b.run(["ip", "neigh", "replace", "10.1.0.10", "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale"])
    mac = run_py(a, """
import json
from chimeha.net.garp import Announcer
an = Announcer("eth0")
an.announce("10.1.0.10")
print(json.dumps(an.mac.hex(":")))
""")
    deadline = time.time() + 5
    seen = ""
    while time.time() < deadline:
        seen = b.run(["ip", "neigh", "show", "10.1.0.10", "dev", "eth0"]).stdout
        if mac in seen:
            break
        time.sleep(0.05)
    assert mac in seen


def test_unsolicited_na_updates_a_neighbours_cache(topology):
    a = topology.add_host("a", "fd00:1::1/64")
    b = topology.add_host("b", "fd00:1::2/64")
    b.run(["ip", "-6", "neigh", "replace", "fd00:1::10", "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "stale"])
    deadline = time.time() + 10
    while time.time() < deadline:
        if "tentative" not in a.run(["ip", "-6", "addr", "show", "dev", "eth0"]).stdout:
            break
        time.sleep(0.1)
    mac = run_py(a, """
import json
from chimeha.net.garp import Announcer
an = Announcer("eth0")
an.announce("fd00:1::10")
print(json.dumps(an.mac.hex(":")))
""")
    deadline = time.time() + 5
    seen = ""
    while time.time() < deadline:
        seen = b.run(["ip", "-6", "neigh", "show", "fd00:1::10", "dev", "eth0"]).stdout
        if mac in seen:
            break
        time.sleep(0.05)
    assert mac in seen


def test_blackhole_route_reaches_the_kernel(topology):
    a = topology.add_host("a", "10.1.0.1/24")
    out = run_py(a, """
import json, subprocess
from chimeha.net.addresses import AddressManager, Route
m = AddressManager()
r = Route("10.66.0.0/16", type="blackhole")
res = [m.route("add", r), subprocess.run(["ip", "route"], capture_output=True, text=True).stdout, m.route("del", r)]
print(json.dumps(res))
""")
    assert out[0] is True and "blackhole 10.66.0.0/16" in out[1] and out[2] is True


SAME_AS_PYROUTE2 = """
import json, socket, subprocess, sys
from chimeha.net.addresses import AddressManager, Route, Vip

def kernel_view():
    text = ""
    for cmd in (["ip", "-d", "addr", "show", "dev", "eth0"], ["ip", "-d", "route", "show", "table", "all"],
                ["ip", "-6", "-d", "route", "show", "table", "all"]):
        text += subprocess.run(cmd, capture_output=True, text=True).stdout
    # per-namespace facts (interface index, link-local address) are not ours
    return [l for l in text.splitlines() if not any(w in l for w in ("fe80", "eth0@if", "valid_lft", "link/ether"))]

VIPS = [Vip("10.1.0.10", 32, "eth0"), Vip("10.1.0.11", 24, "eth0", label="eth0:v", broadcast="10.1.0.255"),
        Vip("10.1.0.12", 32, "eth0", peer="10.1.0.99"), Vip("10.1.0.13", 32, "eth0", scope=254),
        Vip("10.1.0.14", 32, "eth0", scope=253), Vip("fd00:1::10", 64, "eth0", nodad=True),
        Vip("10.1.0.15", 24, "eth0", label="eth0:v", broadcast="10.1.0.255", scope=253),  # refused by the kernel
        Vip("10.1.0.16", 32, "nosuch0")]
ROUTES = [Route("10.77.0.0/16", gateway="10.1.0.254"), Route("10.78.0.0/16", dev="eth0"),
          Route("10.79.0.0/16", dev="eth0", src="10.1.0.1", metric=50), Route("10.66.0.0/16", type="blackhole"),
          Route("10.67.0.0/16", type="unreachable", table=100), Route("10.68.0.0/16", gateway="10.1.0.254", table=1000),
          Route("0.0.0.0/0", gateway="10.1.0.254", table=200), Route("fd00:9::/64", gateway="fd00:1::fe"),
          Route("10.69.0.0/16", dev="eth0", scope=253), Route("10.70.0.1/32", type="prohibit"),
          Route("10.71.0.0/16", gateway="10.9.9.9")]  # unreachable gateway: refused

def attempt(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"

m = AddressManager()
out = []
for v in VIPS:
    out += [attempt(m.add, v), attempt(m.add, v), m.present(v)]
for r in ROUTES:
    out += [attempt(m.route, "add", r), attempt(m.route, "add", r)]
idx = m.ifindex("eth0")
out.append([(a.get("IFA_ADDRESS"), a.get("IFA_LOCAL"), a["flags"] & 1, a["prefixlen"])
            for fam in (socket.AF_INET, socket.AF_INET6) for a in m.raw_addresses(idx, fam)
            if not str(a.get("IFA_ADDRESS")).startswith("fe80")])
out.append(kernel_view())
for r in ROUTES:
    out += [attempt(m.route, "del", r), attempt(m.route, "del", r)]
for v in VIPS:
    out += [attempt(m.delete, v), attempt(m.delete, v), m.present(v)]
out.append(kernel_view())
print(json.dumps(out))
"""


def test_address_and_route_battery_is_idempotent_and_leaves_no_trace(topology):
    # A battery of VIP and route operations, errors included, in a fresh
    # namespace: each add is done once (the repeat reports "already there"),
    # the kernel shows what was asked, and deleting everything restores it.
    import sys

    host = topology.add_host("hb", "10.1.0.1/24", "fd00:1::1/64")
    proc = host.run([sys.executable, "-c", SAME_AS_PYROUTE2, "pyroute2"], check=False)
    assert proc.returncode == 0, proc.stderr
    ours = json.loads(proc.stdout)
    # and the battery did something: VIPs and routes came and went
    assert ours[:3] == [True, False, True]
    before = next(x for x in ours if isinstance(x, list) and any("10.77.0.0/16" in l for l in x))
    assert any("blackhole 10.66.0.0/16" in l for l in before)
    assert any("10.68.0.0/16 via 10.1.0.254 dev eth0 table 1000" in l for l in before)
    assert any("inet 10.1.0.12 peer 10.1.0.99/32" in l for l in before)
    assert not any("10.77.0.0/16" in l for l in ours[-1])
