"""vrrp_strict / no_accept with real nftables, and sync-group tracking against keepalived 2.2.7, in namespaces.

* A chime-ha master in strict mode (VRRPv2, not the owner: no_accept) holds the
  VIP, and a client's ping and TCP connection to the VIP are dropped by the
  ``inet chimeha_vips`` table while the node's own address answers; at stop the
  table is gone. With ``accept`` (VRRPv3) the same VIP answers and no table exists.
* Two nodes, chime-ha and keepalived, each with a sync group of two instances
  whose *group* track_script checks a file: making it fail on the master moves
  both VIPs together to the other node (in both directions).
"""

from __future__ import annotations

import pytest

from chalab import Daemon, have_keepalived, holders, settle_on, wait_until

pytestmark = [pytest.mark.system]

A, B, C = "10.7.0.11", "10.7.0.12", "10.7.0.13"
VIP, VIP2 = "10.7.0.100", "10.7.0.101"
PORT = 8089
LISTENER = ("import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            f"s.bind(('0.0.0.0', {PORT}))\ns.listen(8)\nwhile True:\n    c, _ = s.accept()\n"
            "    c.sendall(b'hi')\n    c.close()\n")


def _strict_conf(accept: bool) -> str:
    version = "3" if accept else "2"
    # Not a timing test: the VRRPv3 case at 0.5 s (VRRPv2 takes whole seconds only).
    advert = "0.5" if accept else "1"
    return ("global_defs {\n    vrrp_strict\n}\n"
            "vrrp_instance VI_1 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 61\n"
            f"    priority 200\n    advert_int {advert}\n    version {version}\n"
            + ("    accept\n" if accept else "")
            + f"    virtual_ipaddress {{\n        {VIP}/24\n    }}\n}}\n")


def _reachable(client, target: str) -> tuple[bool, bool]:
    """(ping answered, TCP connection got the listener's greeting) from ``client`` to ``target``."""
    ping = client.run(["ping", "-c", "1", "-W", "1", target], check=False).returncode == 0
    probe = (f"import socket\ntry:\n    s = socket.create_connection(({target!r}, {PORT}), timeout=1.5)\n"
             "    print(s.recv(2).decode())\nexcept OSError:\n    print('no')\n")
    out = client.run(["python3", "-c", probe], check=False).stdout.strip()
    return ping, out == "hi"


def _table(node) -> str:
    return node.run(["nft", "list", "tables"], check=False).stdout


@pytest.mark.parametrize("accept", [False, True], ids=["no_accept-drops", "accept-answers"])
def test_strict_no_accept_drops_traffic_to_the_vip(topology, tmp_path, accept):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", f"{A}/24")
    c = add_node(topology, "c", f"{C}/24")
    d = Daemon(a, "chime-ha", _strict_conf(accept), tmp_path)
    listener = None
    try:
        listener = a.popen(["python3", "-c", LISTENER])
        wait_until(lambda: _reachable(c, A) == (True, True), 10, "the node's own address answers")
        d.start()
        wait_until(lambda: VIP in a.addresses_on(), 15, f"{VIP} on a")
        if accept:
            wait_until(lambda: _reachable(c, VIP) == (True, True), 5, "the VIP answers (accept)")
            assert "chimeha_vips" not in _table(a)
        else:
            wait_until(lambda: "chimeha_vips" in _table(a), 5, "the filter table")
            listing = a.run(["nft", "list", "table", "inet", "chimeha_vips"]).stdout
            assert VIP in listing and "drop" in listing
            assert _reachable(c, VIP) == (False, False)  # ping and TCP to the VIP dropped
            assert _reachable(c, A) == (True, True)  # the node itself still answers
            # ARP still answers for the VIP: the client learnt the VIP's MAC
            assert "lladdr" in c.run(["ip", "neigh", "show", VIP], check=False).stdout
        d.stop()
        wait_until(lambda: VIP not in a.addresses_on(), 10, "VIP removed at stop")
        assert "chimeha_vips" not in _table(a)  # removed at stop
    finally:
        d.stop()
        if listener is not None:
            a.stop(listener)
        if d.logfile.exists():
            print(d.log()[-3000:])


def _sync_conf(prio: int, state: str) -> str:
    # Not a timing test: VRRPv3 at 0.5 s halves every election and takeover (Master_Down_Interval ~1.8 s).
    insts = ""
    for name, vrid, vip in (("VI_1", 71, VIP), ("VI_2", 72, VIP2)):
        insts += (f"vrrp_instance {name} {{\n    state {state}\n    interface eth0\n    virtual_router_id {vrid}\n"
                  f"    priority {prio}\n    version 3\n    advert_int 0.5\n"
                  f"    virtual_ipaddress {{\n        {vip}/24\n    }}\n}}\n")
    return ("global_defs {\n    enable_script_security\n    script_user root\n}\n"
            "vrrp_script chk_fail_file {\n    script \"/run/bin/chk.sh\"\n    interval 1\n    fall 1\n    rise 1\n}\n"
            "vrrp_sync_group G {\n    group {\n        VI_1\n        VI_2\n    }\n"
            "    track_script {\n        chk_fail_file\n    }\n}\n" + insts)


CHK = "#!/bin/sh\n[ ! -e /run/fail ]\n"


@pytest.mark.keepalived
@pytest.mark.parametrize("master_kind", ["chime-ha", "keepalived"])
def test_sync_group_track_script_failure_moves_both_instances(topology, tmp_path, master_kind):
    if not have_keepalived():
        pytest.skip("keepalived is not installed")
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", f"{A}/24")
    b = add_node(topology, "b", f"{B}/24")
    other = "keepalived" if master_kind == "chime-ha" else "chime-ha"
    for n in (a, b):
        n.write_file("/run/bin/chk.sh", CHK, mode=0o755)
    master = Daemon(a, master_kind, _sync_conf(200, "MASTER"), tmp_path)
    backup = Daemon(b, other, _sync_conf(100, "BACKUP"), tmp_path)
    nodes = [a, b]
    try:
        backup.start()
        master.start()
        settle_on(nodes, VIP, "a", timeout=15)
        assert holders(nodes, VIP2) == ["a"]
        a.write_file("/run/fail", "1\n")  # the group's track_script fails on the master only
        wait_until(lambda: holders(nodes, VIP) == ["b"] and holders(nodes, VIP2) == ["b"], 10,
                   f"both VIPs on b (now {holders(nodes, VIP)} / {holders(nodes, VIP2)})")
        settle_on(nodes, VIP2, "b", timeout=5, hold=1.5)
        assert holders(nodes, VIP) == ["b"]  # together, and they stay together
        a.run(["rm", "-f", "/run/fail"])
        settle_on(nodes, VIP, "a", timeout=15)  # preempts back once the script succeeds
        wait_until(lambda: holders(nodes, VIP2) == ["a"], 5, "VIP2 back on a")
    finally:
        master.stop()
        backup.stop()
        for d in (master, backup):
            print(f"---- {d.kind} on {d.node.name}\n{d.log()[-2500:]}")


def test_strict_ipv6_vip_is_dropped_but_still_resolves(topology, tmp_path):
    """IPv6: ping6 to a no_accept VIP is dropped, yet neighbour discovery answers for it (keepalived's ND rule)."""
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", "fd00:7::11/64")
    c = add_node(topology, "c", "fd00:7::13/64")
    for n in (a, c):
        wait_until(lambda n=n: "tentative" not in n.run(["ip", "-6", "addr", "show", "dev", "eth0"]).stdout,
                   10, f"{n.name} IPv6 addresses usable")
    vip6 = "fd00:7::100"
    text = ("global_defs {\n    vrrp_strict\n}\n"
            "vrrp_instance VI_6 {\n    state BACKUP\n    interface eth0\n    virtual_router_id 62\n"
            f"    priority 200\n    advert_int 0.5\n    virtual_ipaddress {{\n        {vip6}/64\n    }}\n}}\n")  # IPv6 is VRRPv3: 0.5 s adverts (not a timing test)
    d = Daemon(a, "chime-ha", text, tmp_path)
    try:
        assert c.run(["ping", "-6", "-c", "1", "-W", "1", "fd00:7::11"], check=False).returncode == 0
        d.start()
        wait_until(lambda: vip6 in a.addresses_on(), 15, f"{vip6} on a")
        wait_until(lambda: "chimeha_vips" in _table(a), 5, "the filter table")
        wait_until(lambda: "tentative" not in a.run(["ip", "-6", "addr", "show", "dev", "eth0"]).stdout,
                   10, "the VIP usable (DAD done)")
        assert c.run(["ping", "-6", "-c", "2", "-i", "0.2", "-W", "1", vip6], check=False).returncode != 0
        neigh = c.run(["ip", "-6", "neigh", "show", vip6], check=False).stdout
        assert "lladdr" in neigh, neigh  # the solicitation for the VIP was answered
        assert c.run(["ping", "-6", "-c", "1", "-W", "1", "fd00:7::11"], check=False).returncode == 0
        d.stop()
        assert "chimeha_vips" not in _table(a)
    finally:
        d.stop()
        if d.logfile.exists():
            print(d.log()[-3000:])
