"""SNMP through net-snmp's snmpd (AgentX), chime-ha beside the real keepalived 2.2.7.

Each node runs its own snmpd (``master agentx``) and its VRRP daemon as a
subagent; the test walks both with ``snmpwalk`` and compares what an
operator's poller would see: the same objects (OIDs) in the VRRPv3-MIB
(RFC 6527), the VRRP-MIB (RFC 2787) and keepalived's instance table, with the
values that describe the one virtual router agreeing (who is master, its
address, priorities, VRID). Then snmpd restarts under chime-ha, which must
register again by itself.
"""

from __future__ import annotations

import subprocess

import pytest

from chalab import Daemon, settle_on, wait_until

pytestmark = [pytest.mark.system, pytest.mark.keepalived]

A, B, VIP = "10.7.6.11", "10.7.6.12", "10.7.6.100"
SNMPD_CONF = ("master agentx\nagentXSocket /run/agentx.sock\nagentaddress udp:127.0.0.1:1161\n"
              "rocommunity public 127.0.0.1\n")
V3 = ".1.3.6.1.2.1.207"
V2 = ".1.3.6.1.2.1.68"
KA = ".1.3.6.1.4.1.9586.100.5"
V3_OPS = V3 + ".1.1.1.1"
KA_INST = KA + ".2.3.1"


def conf(state: str, priority: int) -> str:
    return f"""global_defs {{
    router_id node_{state.lower()}
    enable_snmp_rfc
    enable_snmp_vrrp
    snmp_socket unix:/run/agentx.sock
}}
vrrp_instance VI_S {{
    state {state}
    interface eth0
    virtual_router_id 47
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"""


def start_snmpd(node, tmp_path):
    node.write_file("/etc/keepalived/snmpd.conf", SNMPD_CONF)
    log = open(tmp_path / f"snmpd-{node.name}.log", "ab")
    node.run(["rm", "-f", "/run/agentx.sock"])
    proc = node.popen(["env", "SNMP_PERSISTENT_DIR=/run/snmp", "snmpd", "-f", "-Lo", "-C", "-c",
                       "/etc/keepalived/snmpd.conf", "-p", "/run/snmpd.pid"], stdout=log, stderr=subprocess.STDOUT)
    # keepalived's subagent gives up for a long while if the master is not there yet
    wait_until(lambda: node.run(["test", "-S", "/run/agentx.sock"], check=False).returncode == 0, 10,
               f"snmpd's AgentX socket on {node.name}")
    return proc


def walk(node, base: str) -> dict[str, str]:
    out = node.run(["snmpwalk", "-v2c", "-c", "public", "-On", "-t", "2", "127.0.0.1:1161", base], check=False)
    rows = {}
    for line in out.stdout.splitlines():
        if " = " in line and not line.split(" = ", 1)[1].startswith("No Such"):
            oid, value = line.split(" = ", 1)
            rows[oid] = value.strip()
    return rows


def test_snmp_walks_match_keepalived_and_survive_an_snmpd_restart(topology, tmp_path):
    from chimeha.lab.node import add_node

    a = add_node(topology, "a", f"{A}/24")
    b = add_node(topology, "b", f"{B}/24")
    snmpd = {n.name: start_snmpd(n, tmp_path) for n in (a, b)}
    chime = Daemon(a, "chime-ha", conf("MASTER", 200), tmp_path)
    ka = Daemon(b, "keepalived", conf("BACKUP", 100), tmp_path)
    try:
        ka.start()
        chime.start()
        settle_on([a, b], VIP, "a", timeout=10, hold=1.0)
        row = ".2.47.1"  # ifIndex 2 (eth0 in both namespaces), VRID 47, IPv4
        wait_until(lambda: walk(a, V3).get(V3_OPS + ".6" + row) == "INTEGER: 3", 10, "chime-ha: master(3)")
        wait_until(lambda: walk(b, V3).get(V3_OPS + ".6" + row) == "INTEGER: 2", 10, "keepalived: backup(2)")
        ours, theirs = walk(a, V3), walk(b, V3)
        # The same objects, except the associated-address row: RFC 6527's index carries the
        # InetAddress with its length (RFC 2578 7.7); keepalived 2.2.7 leaves the length out.
        assoc = V3 + ".1.1.2.1.2" + row
        assert ours.pop(assoc + ".4." + VIP) == "INTEGER: 1"
        assert theirs.pop(assoc + "." + VIP) == "INTEGER: 1"
        assert set(ours) == set(theirs)
        master_addr = "Hex-STRING: 0A 07 06 0B"
        assert ours[V3_OPS + ".3" + row] == theirs[V3_OPS + ".3" + row] == master_addr
        assert ours[V3_OPS + ".7" + row] == "Gauge32: 200" and theirs[V3_OPS + ".7" + row] == "Gauge32: 100"
        for col in (".8", ".9", ".10", ".13"):  # address count, interval, preempt, row status
            assert ours[V3_OPS + col + row] == theirs[V3_OPS + col + row], col

        ours2, theirs2 = walk(a, V2), walk(b, V2)
        assert set(ours2) == set(theirs2)
        assert ours2[V2 + ".1.3.1.3.2.47"] == "INTEGER: 3" and theirs2[V2 + ".1.3.1.3.2.47"] == "INTEGER: 2"
        assert ours2[V2 + ".1.3.1.7.2.47"] == theirs2[V2 + ".1.3.1.7.2.47"] == "IpAddress: " + A

        ours3, theirs3 = walk(a, KA_INST), walk(b, KA_INST)
        assert ours3 and set(ours3) <= set(theirs3)  # the basics keepalived serves, no invented column
        for col in (".2", ".3", ".10", ".12", ".13", ".15", ".19", ".30", ".34", ".35"):
            assert ours3[KA_INST + col + ".1"] == theirs3[KA_INST + col + ".1"], col
        assert ours3[KA_INST + ".4.1"] == "INTEGER: 2" and theirs3[KA_INST + ".4.1"] == "INTEGER: 1"

        # snmpd restarts: the subagent registers again without help (retry every 5 s).
        a.stop(snmpd.pop("a"))
        snmpd["a"] = start_snmpd(a, tmp_path)
        wait_until(lambda: walk(a, V3).get(V3_OPS + ".6" + row) == "INTEGER: 3", 15,
                   "chime-ha serving again after the snmpd restart")
        assert chime.alive() and "SNMP: AgentX session" in chime.log()
    except BaseException:
        print("--- chime-ha ---\n" + chime.log()[-4000:])
        print("--- keepalived ---\n" + ka.log()[-3000:])
        raise
    finally:
        chime.stop()
        ka.stop()
        for proc in snmpd.values():
            a.stop(proc) if proc in a.procs else b.stop(proc)


def test_checker_tables_show_real_server_health(topology, tmp_path):
    """enable_snmp_checker: virtualServerTable / realServerTable follow the health checkers."""
    import sys

    from chimeha.lab.node import add_node

    a = add_node(topology, "a", f"{A}/24")
    snmpd = start_snmpd(a, tmp_path)
    a.popen([sys.executable, "-m", "chimeha.lab.standins", "server", "--name", "a"])  # 8801 and 8802 here
    text = conf("MASTER", 200).replace("    enable_snmp_vrrp\n", "    enable_snmp_checker\n") + f"""
virtual_server {VIP} 8801 {{
    delay_loop 1
    lb_algo rr
    lb_kind NAT
    protocol TCP
    real_server {A} 8801 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
    real_server {A} 8809 {{
        TCP_CHECK {{
            connect_timeout 1
        }}
    }}
}}
"""
    chime = Daemon(a, "chime-ha", text, tmp_path, extra_args=("--dataplane", "none"))
    vs, rs = KA + ".3.3.1", KA + ".3.4.1"
    try:
        chime.start()
        wait_until(lambda: walk(a, rs).get(rs + ".6.1.2") == "INTEGER: 2", 20, "the dead real server as dead(2)")
        rows = walk(a, KA + ".3")
        assert rows[rs + ".6.1.1"] == "INTEGER: 1"  # alive
        assert rows[rs + ".5.1.2"] == "Gauge32: 8809"
        assert rows[vs + ".7.1"] == "Gauge32: 8801" and rows[vs + ".9.1"] == "INTEGER: 1"  # rr
        assert rows[vs + ".20.1"] == "Gauge32: 2" and rows[vs + ".21.1"] == "Gauge32: 1"
        assert not [k for k in rows if k.startswith(KA + ".2.")]  # enable_snmp_vrrp not set: no VRRP part
    except BaseException:
        print("--- chime-ha ---\n" + chime.log()[-4000:])
        raise
    finally:
        chime.stop()
        a.stop(snmpd)
