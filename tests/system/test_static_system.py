"""static_ipaddress / static_routes / static_rules and virtual_rules with a real ``chime-ha run`` in a namespace.

What the kernel holds (``ip -j addr/route/rule``) is checked at start, after a
SIGHUP with a changed file, and after stop; the same scenario run by the real
keepalived 2.2.7 gives the same ``ip -j rule`` entries and the same routes.

The instance is alone on its LAN and MASTER: its VIP must stay through the
reload that changes its virtual routes and rules.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from chalab import Daemon, have_keepalived, wait_until

from chimeha.lab.static_scene import NODE_ADDRESS, VIP, static_config

pytestmark = pytest.mark.system

FIRST = static_config(
    static_ipaddress=["10.77.0.5/24 dev eth0", "fd00:77::5/64 dev eth0"],
    static_routes=["10.78.0.0/24 via 10.77.0.1 dev eth0", "10.79.0.0/24 dev eth0 table 100",
                   "fd00:78::/64 via fd00:77::1 dev eth0"],
    static_rules=["from 10.77.0.0/24 table 100 preference 200",
                  "to 10.80.0.0/16 table 101",
                  "fwmark 0x10/0xff lookup 102 priority 300",
                  "iif eth0 uidrange 100-200 table 103 preference 301",
                  "ipproto tcp dport 80-80 sport 1000-2000 table 104 preference 302",
                  "from 10.77.0.9 blackhole preference 303",
                  "not from all table 105 preference 304 no_track",
                  "from all goto 400 preference 305",
                  "from all nop preference 400",
                  "inet6 x from fd00::/64 table 106",
                  "to 10.83.0.0/24 realms 3/4 suppress_prefixlength 0 table 5 preference 314"],
    virtual_routes=["10.81.0.0/24 via 10.77.0.1 dev eth0", "10.82.0.0/24 dev eth0"],
    virtual_rules=["from 10.77.0.100 table 110 preference 500", "to 10.82.0.0/24 table 111",
                   "to fd02::/64 table 112 preference 501"])

SECOND = static_config(
    static_ipaddress=["10.77.0.6/24 dev eth0"],
    static_routes=["10.78.0.0/24 via 10.77.0.1 dev eth0"],
    static_rules=["from 10.77.0.0/24 table 100 preference 200", "to 10.85.0.0/16 table 101"],
    virtual_routes=["10.81.0.0/24 via 10.77.0.1 dev eth0", "10.84.0.0/24 dev eth0"],
    virtual_rules=["from 10.77.0.100 table 110 preference 500", "to 10.86.0.0/24 table 113 preference 502"])

DEFAULT_RULES = {0, 32766, 32767}


def snapshot(node) -> dict:
    """The rules, the non-kernel routes and the addresses of eth0, as ``ip -j`` shows them."""
    rules = []
    for fam in ("-4", "-6"):
        rules += [r for r in json.loads(node.run(["ip", "-j", fam, "rule"]).stdout)
                  if r.get("priority") not in DEFAULT_RULES]
    routes = []
    for fam in ("-4", "-6"):
        routes += [{k: r.get(k) for k in ("dst", "gateway", "dev", "table", "protocol", "type")}
                   for r in json.loads(node.run(["ip", "-j", fam, "route", "show", "table", "all"]).stdout)
                   if r.get("protocol") not in ("kernel", "ra")]
    addrs = {a["local"] for a in json.loads(node.run(["ip", "-j", "addr", "show", "eth0"]).stdout)[0]["addr_info"]}
    return {"rules": sorted(rules, key=lambda r: (r["priority"], json.dumps(r, sort_keys=True))),
            "routes": sorted(routes, key=lambda r: json.dumps(r, sort_keys=True)), "addrs": addrs}


def run_scenario(topology, tmp_path, kind: str, name: str) -> dict:
    """Start ``kind`` with FIRST, SIGHUP with SECOND, stop: the snapshot after each step, VIP losses counted."""
    from chimeha.lab.node import add_node

    node = add_node(topology, name, NODE_ADDRESS)
    node.run(["ip", "addr", "add", "fd00:77::11/64", "dev", "eth0", "nodad"])
    d = Daemon(node, kind, FIRST, tmp_path)
    out: dict = {}
    try:
        d.start()
        wait_until(lambda: VIP in node.addresses_on() and any(
            r.get("priority") == 501 for r in snapshot(node)["rules"]), 15, f"{kind}: VIP and virtual rules")
        time.sleep(0.5)
        out["start"] = snapshot(node)
        missing = []
        stop = threading.Event()

        def watch():
            while not stop.is_set():
                if VIP not in node.addresses_on():
                    missing.append(time.monotonic())
                time.sleep(0.02)
        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            node.write_file(d.conf, SECOND)
            d.signal("HUP")
            wait_until(lambda: any(r.get("priority") == 502 for r in snapshot(node)["rules"]) and
                       "10.77.0.6" in snapshot(node)["addrs"], 15, f"{kind}: the reloaded rules")
            time.sleep(1.0)
        finally:
            stop.set()
            watcher.join()
        out["reload"] = snapshot(node)
        out["vip_missing"] = len(missing)
        d.stop()
        out["stop"] = snapshot(node)
        return out
    finally:
        d.stop()
        print(f"--- {kind} ---\n" + d.log()[-5000:])


def rule_at(snap, prio):
    return [r for r in snap["rules"] if r["priority"] == prio]


def test_static_and_virtual_rules_start_reload_stop(topology, tmp_path):
    got = run_scenario(topology, tmp_path, "chime-ha", "a")
    start, reload, stop = got["start"], got["reload"], got["stop"]
    # start: the static set and the MASTER's virtual set, protocol 18 except the no_track rule
    assert {"10.77.0.5", "fd00:77::5", VIP} <= start["addrs"]
    assert rule_at(start, 200) == [{"priority": 200, "src": "10.77.0.0", "srclen": 24, "table": "100",
                                    "protocol": "keepalived"}]
    assert rule_at(start, 16384)[0]["dst"] == "10.80.0.0" and rule_at(start, 16383)[0]["dst"] == "10.82.0.0"
    assert rule_at(start, 304) == [{"priority": 304, "not": None, "src": "all", "table": "105"}]
    assert rule_at(start, 302)[0]["sport_start"] == 1000 and rule_at(start, 302)[0]["dport"] == 80
    assert rule_at(start, 301)[0]["uid_end"] == 200 and rule_at(start, 305)[0]["goto"] == 400
    assert {r["priority"] for r in start["rules"]} >= {300, 303, 314, 400, 500, 501}
    v6 = [r for r in start["rules"] if r.get("src") == "fd00::"]
    assert v6 and v6[0]["priority"] == 16384  # its own family's counter
    dsts = {r["dst"]: r for r in start["routes"]}
    assert {"10.78.0.0/24", "10.79.0.0/24", "10.81.0.0/24", "10.82.0.0/24", "fd00:78::/64"} <= set(dsts)
    assert all(r["protocol"] == "keepalived" for r in start["routes"])
    assert dsts["10.79.0.0/24"]["table"] == "100"
    # reload: what left the file is gone, what is new is there, the VIP never left
    assert got["vip_missing"] == 0
    assert "10.77.0.5" not in reload["addrs"] and "fd00:77::5" not in reload["addrs"]
    assert {"10.77.0.6", VIP} <= reload["addrs"]
    assert {r["priority"] for r in reload["rules"]} == {200, 500, 502, 16384}
    assert rule_at(reload, 16384)[0]["dst"] == "10.85.0.0"
    assert {r["dst"] for r in reload["routes"]} == {"10.78.0.0/24", "10.81.0.0/24", "10.84.0.0/24"}
    # stop: nothing left
    assert stop["rules"] == [] and stop["routes"] == []
    assert not {"10.77.0.6", VIP} & stop["addrs"]


@pytest.mark.skipif(not have_keepalived(), reason="keepalived not installed")
def test_same_kernel_state_as_keepalived(topology, tmp_path):
    ours = run_scenario(topology, tmp_path, "chime-ha", "a")
    theirs = run_scenario(topology, tmp_path, "keepalived", "k")
    for step in ("start", "reload", "stop"):
        assert ours[step]["rules"] == theirs[step]["rules"], step
        assert ours[step]["routes"] == theirs[step]["routes"], step
        def global_addrs(snap):
            return {a for a in snap["addrs"] if not a.startswith("fe80:")}  # link-local: each node's own MAC
        assert global_addrs(ours[step]) == global_addrs(theirs[step]), step
        assert len(ours[step]["rules"]) == {"start": 14, "reload": 4, "stop": 0}[step], step
    assert theirs["vip_missing"] == 0
